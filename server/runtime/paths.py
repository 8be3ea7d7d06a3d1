"""Where the files that ship beside the package live."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = ROOT / "sql"
MIGRATIONS_DIR = ROOT / "migrations"
