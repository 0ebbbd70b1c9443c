#!/usr/bin/env bash
# The container stack, tested for real: Docker from Debian's packages, images built here with no registry,
# `docker-compose.yml` + an override that only swaps the S3 server's image, a tiny round over HTTP, the
# adapter checked in the bucket, everything torn down. Prints its duration. Needs root (apt, dockerd).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
started=$(date +%s)
project=sealci
port=${SEAL_CI_COORDINATOR_PORT:-18000}

if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "== installing docker.io, docker-compose, debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose debootstrap >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  echo "== starting dockerd"
  (dockerd >/tmp/seal-ci-dockerd.log 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null
fi

echo "== compose refuses to start without the required secrets"
if env -u MINIO_ROOT_USER -u MINIO_ROOT_PASSWORD docker-compose -f docker-compose.yml config >/dev/null 2>/tmp/seal-ci-config.err; then
  echo "FAIL: compose accepted a configuration without MINIO_ROOT_USER"; exit 1
fi
grep -q "set MINIO_ROOT_USER in .env" /tmp/seal-ci-config.err && echo "refused: $(tail -c 120 /tmp/seal-ci-config.err)"

echo "== the GPU-box and laptop compose files are valid with .env.example's values"
(set -a; . ./.env.example; docker-compose -f deploy/docker-compose.gpu.yml config >/dev/null)
(set -a; . ./.env.example; SEAL_TRAINER_ADDRESSES=gpu-a:50052,gpu-b:50052 SEAL_S3_ENDPOINT=gpu-a:9000 \
  docker-compose -f deploy/docker-compose.laptop.yml config >/dev/null)
echo "valid"

deploy/ci/build_images.sh

export MINIO_ROOT_USER="ci-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export MINIO_ROOT_PASSWORD="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export SEAL_COORDINATOR_PUBLISHED_PORT=$port
compose=(docker-compose -p "$project" -f docker-compose.yml -f deploy/ci/docker-compose.ci.yml)
cleanup() {
  echo "== tearing down"
  "${compose[@]}" logs --tail=20 >/tmp/seal-ci-compose.log 2>&1 || true
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "== docker-compose up"
"${compose[@]}" up -d
deadline=$(( $(date +%s) + 600 ))
for service in generator trainer evaluator coordinator; do
  container=$("${compose[@]}" ps -q "$service")
  until [ "$(docker inspect --format '{{.State.Health.Status}}' "$container")" = healthy ]; do
    if [ "$(date +%s)" -gt "$deadline" ]; then
      "${compose[@]}" logs --tail=50 "$service"; echo "FAIL: $service not healthy"; exit 1
    fi
    sleep 2
  done
done
"${compose[@]}" ps

echo "== a tiny round over HTTP"
body='{"name": "compose-ci", "dataset": "demo", "limit": 1, "config": {"k": 1, "max_new_tokens": 48, "eval_max_new_tokens": 16}}'
run_id=$(curl -fsS -X POST "http://127.0.0.1:$port/v1/runs" -H 'content-type: application/json' -d "$body" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
echo "run $run_id"
until status=$(curl -fsS "http://127.0.0.1:$port/v1/runs/$run_id" | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])') \
      && [[ $status =~ ^(succeeded|completed_with_errors|failed)$ ]]; do
  if [ "$(date +%s)" -gt "$deadline" ]; then echo "FAIL: run did not finish"; exit 1; fi
  sleep 3
done
curl -fsS "http://127.0.0.1:$port/v1/runs/$run_id" | python3 -c '
import json, sys
detail = json.load(sys.stdin)
print("status:", detail["status"], "| summary:", json.dumps(detail["results"]["summary"] if detail["results"] else None))
sys.exit(0 if detail["status"] == "succeeded" else 1)'

echo "== the adapter is in the bucket"
"${compose[@]}" exec -T coordinator python -c '
from seal_lab.settings import StoreSettings
from seal_lab.store import open_store
store = open_store(StoreSettings())
keys = store.list_keys("adapters/")
print("\n".join(keys))
assert any(k.endswith("/adapter_model.safetensors") for k in keys), "no adapter in the bucket"
print(f"{len(keys)} adapter objects in {store.location}")'

echo "== compose stack test passed in $(( $(date +%s) - started ))s"
