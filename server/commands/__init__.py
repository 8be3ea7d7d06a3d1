"""What ``python -m server`` runs besides the app: serve, the database tasks, demo data."""
