"""Checks of the compose files that need no image, for deploy/ci/compose_test.sh. Reads `docker-compose config`
output on stdin (PyYAML: the virtual environment has it, through transformers).

  check_compose.py config ENV_FILE      every image pinned (quay.io/minio/...@sha256:... or a seal-lab image
                                        built here); the root credentials only in the store and store-init;
                                        the seal-lab services with the services' account, no bucket creation,
                                        the shared SEAL_AUTH_TOKEN; every service hardened (hardening_problems)
                                        and every model service with its torch threads
  check_compose.py minio-init ENV_FILE  MinIO's store-init script run by sh with a stand-in `mc` that records
                                        its calls: the policy is valid JSON limited to the bucket, a rerun
                                        (policy already attached) succeeds, any other mc error fails the job
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

PINNED_MINIO = re.compile(r"quay\.io/minio/(minio|mc):RELEASE\.[0-9T-]+Z@sha256:[0-9a-f]{64}")
BUILT_HERE = re.compile(r"seal-lab(-[a-z0-9]+)?:[A-Za-z0-9_.-]+")
STORE_SERVICES = {"store", "store-init"}
ROOT_VARIABLES = ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")
MODEL_PROGRAMS = {"seal-generator", "seal-trainer", "seal-evaluator"}


def read_env_file(path: str) -> dict[str, str]:
    values = {}
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            values[name.strip()] = value
    return values


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # "NAME=value" items
        env = dict(item.split("=", 1) for item in env)
    return {name: "" if value is None else str(value) for name, value in env.items()}


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(item) for item in value]  # type: ignore[attr-defined]


def _positive(value: object) -> bool:
    """A limit that limits: a count or size above zero (512, `3g`, `1.5GiB`, 3221225472), not 0 or -1."""
    size = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*(?:[bkmgt]i?b?)?", str(value).strip(), re.IGNORECASE)
    return size is not None and float(size.group(1)) > 0


def hardening_problems(name: str, service: dict) -> list[str]:
    """What `service` lacks, one line each. Every service: a read-only root filesystem with a tmpfs on /tmp, no
    capabilities (none added back), no privilege gain through setuid files, memory and process limits; a
    model service also its torch threads (three of them share a machine's cores)."""
    problems = []
    limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    if service.get("read_only") not in (True, "true"):
        problems.append("read_only is not true")
    if "/tmp" not in [entry.split(":", 1)[0] for entry in _as_list(service.get("tmpfs"))]:
        problems.append("no tmpfs on /tmp")
    if "ALL" not in [cap.upper() for cap in _as_list(service.get("cap_drop"))]:
        problems.append("cap_drop lacks ALL")
    if _as_list(service.get("cap_add")) or service.get("privileged") in (True, "true"):
        problems.append("adds capabilities back (cap_add or privileged)")
    if not {"no-new-privileges", "no-new-privileges:true"} & set(_as_list(service.get("security_opt"))):
        problems.append("security_opt lacks no-new-privileges:true")
    if not _positive(service.get("mem_limit", limits.get("memory"))):
        problems.append("no mem_limit")
    if not _positive(service.get("pids_limit", limits.get("pids"))):
        problems.append("no pids_limit")
    if MODEL_PROGRAMS & set(_as_list(service.get("command"))):
        threads = environment(service).get("SEAL_MODEL_TORCH_THREADS", "")
        if not threads.isdigit() or int(threads) < 1:
            problems.append(f"SEAL_MODEL_TORCH_THREADS is {threads!r}, not a count of threads")
    problems += [f"publishes {port} on every interface" for port in unbound_ports(service)]
    return [f"{name}: {problem}" for problem in problems]


def unbound_ports(service: dict) -> list[str]:
    """Published ports without a host address: Docker then listens on every interface of the host. Each
    port must name one (`127.0.0.1:8000:8000`, `${SEAL_PUBLISH_ADDRESS:-127.0.0.1}:50052:50052`). Short
    syntax (Compose v1's `config` output) or long (v2's, with `host_ip`)."""
    unbound = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published") and not port.get("host_ip"):
                unbound.append(str(port.get("published")))
        elif str(port).count(":") < 2 or str(port).split(":", 1)[0] in ("", "0.0.0.0", "::"):
            unbound.append(str(port))
    return unbound


def check_config(env_file: str) -> None:
    values = read_env_file(env_file)
    root_password = values["MINIO_ROOT_PASSWORD"]
    services = yaml.safe_load(sys.stdin)["services"]
    problems = []
    for name, service in sorted(services.items()):
        image = service.get("image", "")
        if not (PINNED_MINIO.fullmatch(image) or BUILT_HERE.fullmatch(image)):
            problems.append(
                f"{name}: image {image!r} is neither quay.io/minio/... pinned by digest nor seal-lab's"
            )
        problems += hardening_problems(name, service)
        if name in STORE_SERVICES:
            continue
        env = environment(service)
        leaked = [v for v in ROOT_VARIABLES if v in env] + [k for k, v in env.items() if v == root_password]
        if leaked:
            problems.append(f"{name}: sees the root credentials ({', '.join(sorted(set(leaked)))})")
        if env.get("SEAL_STORE_KIND") == "s3":
            if env.get("SEAL_STORE_S3_ACCESS_KEY") != values["SEAL_S3_ACCESS_KEY"]:
                problems.append(f"{name}: SEAL_STORE_S3_ACCESS_KEY is not the services' account")
            if env.get("SEAL_STORE_S3_CREATE_BUCKET") != "false":
                problems.append(f"{name}: SEAL_STORE_S3_CREATE_BUCKET is not false")
        if env.get("SEAL_AUTH_TOKEN") != values["SEAL_AUTH_TOKEN"]:  # they listen on 0.0.0.0 in the container
            problems.append(f"{name}: SEAL_AUTH_TOKEN is not the token of the env file")
    if problems:
        sys.exit("FAIL:\n  " + "\n  ".join(problems))
    print(
        f"ok: {len(services)} services: "
        + ", ".join(f"{n} ({s['image']})" for n, s in sorted(services.items()))
    )


FAKE_MC = """#!/bin/sh
echo "$*" >> "$MC_LOG"
case "$*" in
  "admin policy create "*) cp "$6" "$MC_POLICY" ;;
  "admin policy attach "*)
    case "$MC_ATTACH" in
      ok) ;;
      attached) echo "mc: <ERROR> Unable to make user/group policy association. The specified policy change is already in effect." >&2; exit 1 ;;
      *) echo "mc: <ERROR> Unable to make user/group policy association. Access Denied." >&2; exit 1 ;;
    esac ;;
esac
"""


def check_minio_init(env_file: str) -> None:
    values = read_env_file(env_file)
    service = yaml.safe_load(sys.stdin)["services"]["store-init"]
    assert service["entrypoint"] == ["/bin/sh", "-euc"], service["entrypoint"]
    (script,) = service["command"]
    script = script.replace("$$", "$")  # `config` prints compose's escape; the container gets one `$`
    bucket = environment(service)["SEAL_BUCKET"]
    # docker-compose.yml's store is plain HTTP inside its network; the GPU box's speaks HTTPS, and its
    # store-init then gets the lab CA in mc's CAs folder (v1 prints volumes as strings, v2 as mappings).
    scheme = "https" if any("/.mc/certs/CAs/" in str(v) for v in service.get("volumes", [])) else "http"
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "mc").write_text(FAKE_MC)
        (Path(work) / "mc").chmod(0o755)
        env = {
            **environment(service),
            "PATH": f"{work}:/usr/bin:/bin",
            "TMPDIR": work,
            "MC_LOG": f"{work}/calls",
            "MC_POLICY": f"{work}/policy.json",
        }
        outcomes = {}
        for attach in ("ok", "attached", "denied"):
            run = subprocess.run(
                ["sh", "-euc", script],
                env={**env, "MC_ATTACH": attach},
                cwd=work,
                capture_output=True,
                text=True,
            )
            outcomes[attach] = run.returncode
        calls = Path(work, "calls").read_text().splitlines()
        policy = json.loads(Path(work, "policy.json").read_text())
    if outcomes != {"ok": 0, "attached": 0, "denied": 1}:
        sys.exit(
            f"FAIL: store-init exit codes {outcomes}; expected ok and already-attached 0, another error 1"
        )
    expected_calls = [
        f"alias set store {scheme}://store:9000 {values['MINIO_ROOT_USER']} {values['MINIO_ROOT_PASSWORD']}",
        f"mb --ignore-existing store/{bucket}",
        "admin policy create store seal-lab-services",
        f"admin user add store {values['SEAL_S3_ACCESS_KEY']} {values['SEAL_S3_SECRET_KEY']}",
        f"admin policy attach store seal-lab-services --user {values['SEAL_S3_ACCESS_KEY']}",
    ]
    for expected, call in zip(expected_calls, calls, strict=False):
        if not call.startswith(expected):
            sys.exit(f"FAIL: store-init called `mc {call}`, expected `mc {expected}...`")
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    if resources != {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}:
        sys.exit(f"FAIL: the services' policy reaches {sorted(resources)}")
    actions = sorted({a for statement in policy["Statement"] for a in statement["Action"]})
    print(
        f"ok: store-init (stand-in mc): {len(calls)} mc calls over 3 runs; policy on {bucket!r}: {', '.join(actions)}"
    )


if __name__ == "__main__":
    command, env_file = sys.argv[1:3]
    {"config": check_config, "minio-init": check_minio_init}[command](env_file)
