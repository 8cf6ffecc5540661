"""Set-up shared by the bench scripts that run against Postgres (``export_scale``, ``fanout``)."""

from __future__ import annotations

import os

import psycopg


def ensure_database() -> None:
    """Create the database named by LABELHUB_DB_NAME on the local server if it is missing; the
    script migrates it after ``django.setup()``."""
    name = os.environ["LABELHUB_DB_NAME"]
    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
