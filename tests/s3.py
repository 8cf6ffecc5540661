"""A real S3 API server for tests: moto's ``ThreadedMotoServer`` on 127.0.0.1 (no network).

``s3_server`` (one per test session) serves the S3 protocol over HTTP on a free local port;
``s3_storage`` gives a test a fresh, empty bucket and points Django's default storage at it with
the same backend and options production uses (``labelhub.settings`` with LABELHUB_S3_BUCKET).
``S3Bucket.worker_env`` is what a Celery worker process needs to use the same bucket through the
production settings module. Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import logging
import socket
import uuid
from dataclasses import dataclass

import pytest

# Any credentials: moto accepts them all, and boto3 must find some (never the developer's own).
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "labelhub-test",
    "AWS_SECRET_ACCESS_KEY": "labelhub-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}
REGION = "us-east-1"
URL_SECONDS = 300


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class S3Bucket:
    endpoint_url: str
    name: str

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under ``prefix``, sorted."""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        )
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.name, Key=key)["Body"].read()

    def storage_settings(self) -> dict:
        """The ``STORAGES["default"]`` entry production builds for this bucket."""
        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": self.name,
                "endpoint_url": self.endpoint_url,
                "region_name": REGION,
                "querystring_auth": True,
                "querystring_expire": URL_SECONDS,
                "file_overwrite": False,
            },
        }

    def worker_env(self) -> dict[str, str]:
        """Environment for a process on the production settings module to use this bucket."""
        return {
            **FAKE_AWS_ENV,
            "LABELHUB_S3_BUCKET": self.name,
            "LABELHUB_S3_ENDPOINT_URL": self.endpoint_url,
            "LABELHUB_S3_REGION": REGION,
            "LABELHUB_S3_URL_SECONDS": str(URL_SECONDS),
        }


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def new_bucket(self) -> S3Bucket:
        bucket = S3Bucket(self.endpoint_url, f"labelhub-test-{uuid.uuid4().hex[:12]}")
        bucket.client().create_bucket(Bucket=bucket.name)
        return bucket


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 API server on 127.0.0.1, on a free port, for the whole session."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per S3 request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_storage(settings, monkeypatch, s3_server) -> S3Bucket:
    """Default storage is a fresh bucket on the test S3 server (local media root left empty)."""
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    bucket = s3_server.new_bucket()
    settings.STORAGES = {**settings.STORAGES, "default": bucket.storage_settings()}
    return bucket
