"""Start SeaweedFS as seal-lab's S3 store: `entrypoint.py [DATA_DIR]` (default /data).

Two S3 identities, written to a private s3.json at every start (so a changed .env takes effect on restart,
and no secret is kept in the data volume):
- root (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD): every action; only the store-init job uses it;
- the services (SEAL_S3_ACCESS_KEY / SEAL_S3_SECRET_KEY): read, write, list and tag in SEAL_BUCKET only,
  so they can neither create buckets nor touch another one.
Then it execs `weed server` with the S3 gateway on :9000.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path


def required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"seaweedfs entrypoint: {name} is not set (see .env.example)")
    return value


def identities(bucket: str) -> dict:
    root = {
        "name": "root",
        "credentials": [
            {"accessKey": required("MINIO_ROOT_USER"), "secretKey": required("MINIO_ROOT_PASSWORD")}
        ],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    service = {
        "name": "seal-lab-services",
        "credentials": [
            {"accessKey": required("SEAL_S3_ACCESS_KEY"), "secretKey": required("SEAL_S3_SECRET_KEY")}
        ],
        # SeaweedFS's bucket-scoped actions: ACTION:BUCKET.
        "actions": [f"{action}:{bucket}" for action in ("Read", "Write", "List", "Tagging")],
    }
    if root["credentials"][0]["accessKey"] == service["credentials"][0]["accessKey"]:
        sys.exit("seaweedfs entrypoint: SEAL_S3_ACCESS_KEY must differ from MINIO_ROOT_USER")
    return {"identities": [root, service]}


def main() -> None:
    data = Path(sys.argv[1] if len(sys.argv) > 1 else "/data")
    bucket = os.environ.get("SEAL_BUCKET") or "seal-lab"
    (data / "weed").mkdir(parents=True, exist_ok=True)
    # Outside the data volume, readable by this user only.
    config_dir = Path(tempfile.mkdtemp(prefix="seaweedfs-"))
    s3_config = config_dir / "s3.json"
    with open(os.open(s3_config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        json.dump(identities(bucket), handle)
    # weed reads master.toml from its working directory: one volume per bucket (collection), not seven.
    (data / "master.toml").write_text(
        "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 1\ncopy_3 = 1\ncopy_other = 1\n"
    )
    os.chdir(data)
    weed = str(Path(sys.executable).parent / "weed")
    print(f"seaweedfs: S3 on :9000, data in {data}, bucket {bucket!r} for the services", flush=True)
    os.execv(
        weed,
        [
            # Only S3 listens beyond the container: the master, volume server and filer have no
            # authentication of their own, and reaching them would bypass the S3 identities.
            weed, "-logtostderr", "server", "-dir=weed", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-s3.ip.bind=0.0.0.0",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=100", "-volume.preStopSeconds=1",
            "-filer",
            "-s3", "-s3.port=9000", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={s3_config}",
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
