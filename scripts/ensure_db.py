"""Create the PostgreSQL database named by the LABELHUB_DB_* settings if it does not exist.

Usage: python scripts/ensure_db.py [NAME]   (NAME defaults to LABELHUB_DB_NAME, else "labelhub")
"""

from __future__ import annotations

import sys

import psycopg
from psycopg import sql

from labelhub import settings  # plain module: it only reads the environment


def ensure_database(name: str | None = None) -> bool:
    """Create the database if missing; return True when it was created."""
    db = settings.DATABASES["default"]
    name = name or db["NAME"]
    conninfo = {
        "dbname": "postgres",
        "user": db["USER"],
        "password": db["PASSWORD"] or None,
        "host": db["HOST"],
        "port": db["PORT"],
    }
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else None
    created = ensure_database(target)
    label = target or settings.DATABASES["default"]["NAME"]
    print(f"==> database {label}: {'created' if created else 'exists'}")
