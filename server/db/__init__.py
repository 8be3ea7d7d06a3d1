"""PostgreSQL plumbing: the pool and its metrics, the connection wrapper, named SQL,
migrations, the embedded development server and the outbox writer."""
