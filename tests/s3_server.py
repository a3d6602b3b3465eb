"""A real S3-compatible server for the tests: moto in server mode, in its own process."""

import socket
import subprocess
import sys
import time

import boto3
import httpx

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "S3Server":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/moto-api/", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the S3 server did not start within 30 s")

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def environment(self, bucket: str) -> dict[str, str]:
        """The settings, as environment variables, of a publish target in `bucket`."""
        return {
            "PUBLISH_S3_BUCKET": bucket,
            "PUBLISH_S3_ENDPOINT_URL": self.url,
            "PUBLISH_S3_REGION": REGION,
            "PUBLISH_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "PUBLISH_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def storage_settings(self, bucket: str) -> dict:
        """The STORAGES entry settings.py makes of `environment(bucket)`."""
        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": self.url,
                "region_name": REGION,
                "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY,
                "file_overwrite": True,
                "default_acl": None,
                "querystring_auth": True,
            },
        }
