"""deploy/ci/check_compose.py, the check CI runs over `docker-compose config`: every compose file passes it,
and its hardening rule catches each missing key.

No docker-compose here: the files are read as compose would after its variable substitution (a small
stand-in for `${NAME}`, `${NAME:-default}` and `${NAME:?message}`), the SeaweedFS override laid over the base
file. CI runs the same check on the real `docker-compose config` output (deploy/ci/compose_test.sh).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "deploy" / "ci" / "check_compose.py"
#: What `make env` writes (deploy/new-env.sh), and the laptop file's two required values.
ENV = {
    "MINIO_ROOT_USER": "seal-lab-admin",
    "MINIO_ROOT_PASSWORD": "r" * 32,
    "SEAL_S3_ACCESS_KEY": "seal-lab-svc",
    "SEAL_S3_SECRET_KEY": "s" * 32,
    "SEAL_AUTH_TOKEN": "t" * 48,
    "SEAL_TRAINER_ADDRESSES": "gpu-a:50052",
    "SEAL_S3_ENDPOINT": "gpu-a:9000",
}
#: (compose files, what `docker-compose config` would be given): every file CI checks.
STACKS = {
    "docker-compose.yml": ["docker-compose.yml"],
    "docker-compose.yml + SeaweedFS": ["docker-compose.yml", "deploy/docker-compose.seaweedfs.yml"],
    "gpu (store profile)": ["deploy/docker-compose.gpu.yml"],
    "laptop": ["deploy/docker-compose.laptop.yml"],
}
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}")


def _load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_compose", CHECKER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_compose = _load_checker()


def _substitute(text: str) -> str:
    def value(match: re.Match[str]) -> str:
        name, kind, default = match.groups()
        if name in ENV:
            return ENV[name]
        assert kind != ":?", f"{name} is required: {default}"
        return default or ""

    return VARIABLE.sub(value, text)


def _merge(base: dict, override: dict) -> dict:
    """Compose's override: mappings merged key by key, anything else replaced (lists are not redefined in
    this project's override, so appending or replacing them makes no difference here)."""
    merged = dict(base)
    for key, value in override.items():
        both_maps = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merge(base[key], value) if both_maps else value
    return merged


def services_of(files: list[str]) -> dict[str, dict]:
    config: dict = {}
    for name in files:
        config = _merge(config, yaml.safe_load(_substitute((ROOT / name).read_text())))
    return config["services"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_service_of_every_compose_file_is_hardened(stack):
    services = services_of(STACKS[stack])
    assert len(services) >= 3, services.keys()
    problems = [
        p for name, service in services.items() for p in check_compose.hardening_problems(name, service)
    ]
    assert problems == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_compose_file_passes_the_whole_check_ci_runs(stack, tmp_path):
    env_file = tmp_path / "ci.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in ENV.items()))
    config = yaml.safe_dump({"services": services_of(STACKS[stack])})
    check = subprocess.run(
        [sys.executable, str(CHECKER), "config", str(env_file)], input=config, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("ok:")


HARDENED = {
    "command": ["seal-trainer"],
    "read_only": True,
    "tmpfs": ["/tmp:size=1g,mode=1777"],
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
    "mem_limit": "4g",
    "pids_limit": 512,
    "environment": {"SEAL_MODEL_TORCH_THREADS": "2"},
}
BROKEN = {
    "read_only is not true": {"read_only": False},
    "no tmpfs on /tmp": {"tmpfs": ["/home/seal:size=16m"]},
    "cap_drop lacks ALL": {"cap_drop": ["NET_RAW"]},
    "adds capabilities back": {"cap_add": ["SYS_ADMIN"]},
    "security_opt lacks no-new-privileges": {"security_opt": ["no-new-privileges:false"]},
    "no mem_limit": {"mem_limit": "-1"},
    "no pids_limit": {"pids_limit": 0},
    "SEAL_MODEL_TORCH_THREADS is '0'": {"environment": {"SEAL_MODEL_TORCH_THREADS": "0"}},
}


def test_a_hardened_service_passes_in_the_shapes_compose_v1_and_v2_print():
    assert check_compose.hardening_problems("trainer", HARDENED) == []
    v2 = {**HARDENED, "mem_limit": "4294967296", "tmpfs": "/tmp", "security_opt": ["no-new-privileges"]}
    assert check_compose.hardening_problems("trainer", v2) == []
    swarm = {key: value for key, value in HARDENED.items() if key not in ("mem_limit", "pids_limit")}
    swarm["deploy"] = {"resources": {"limits": {"memory": "4G", "pids": 512}}}
    assert check_compose.hardening_problems("trainer", swarm) == []


@pytest.mark.parametrize("problem", BROKEN)
def test_each_missing_hardening_key_is_reported_with_the_service_name(problem):
    problems = check_compose.hardening_problems("trainer", {**HARDENED, **BROKEN[problem]})
    assert len(problems) == 1 and problems[0].startswith(f"trainer: {problem}"), problems


@pytest.mark.parametrize("key", ["read_only", "tmpfs", "cap_drop", "security_opt", "mem_limit", "pids_limit"])
def test_a_service_without_a_hardening_key_fails_the_check(key):
    service = {name: value for name, value in HARDENED.items() if name != key}
    assert len(check_compose.hardening_problems("trainer", service)) == 1


def test_a_service_that_is_not_a_model_service_needs_no_torch_threads():
    store = {**HARDENED, "command": ["server", "/data"], "environment": {}}
    assert check_compose.hardening_problems("store", store) == []


@pytest.mark.parametrize(
    ("ports", "unbound"),
    [
        (["127.0.0.1:8000:8000"], []),
        ([{"target": 50052, "published": "50052", "host_ip": "10.0.0.5"}], []),
        (["8000:8000"], ["8000:8000"]),
        (["0.0.0.0:9000:9000"], ["0.0.0.0:9000:9000"]),
        ([{"target": 9000, "published": "9000"}], ["9000"]),
    ],
)
def test_a_published_port_must_name_the_address_it_listens_on(ports, unbound):
    assert check_compose.unbound_ports({"ports": ports}) == unbound
