"""Health probe of the SeaweedFS store: exit 0 once its S3 gateway answers a signed request as root."""

import os
import sys

import urllib3
from minio import Minio

http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=3), retries=False)
client = Minio(
    "127.0.0.1:9000",
    access_key=os.environ["MINIO_ROOT_USER"],
    secret_key=os.environ["MINIO_ROOT_PASSWORD"],
    secure=False,
    http_client=http,
)
try:
    client.list_buckets()
except Exception as exc:  # any failure means "not ready yet"
    sys.exit(f"not ready: {type(exc).__name__}: {exc}")
