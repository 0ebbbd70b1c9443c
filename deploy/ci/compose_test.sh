#!/usr/bin/env bash
# The container stack, tested for real: Docker from Debian's packages, images built here with no registry,
# the SeaweedFS variant exactly as a user selects it (COMPOSE_FILE in the env file), a tiny round over HTTP,
# the adapter checked in the bucket, the services' credentials checked to be limited to their bucket,
# everything torn down. MinIO itself cannot be pulled here (no registry): its compose files and its
# store-init script are checked without it. Prints its duration. Needs root (apt, dockerd).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
started=$(date +%s)
project=sealci
port=${SEAL_CI_COORDINATOR_PORT:-18000}
python=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT  # until the stack exists; then cleanup() below
# Compose must see only the env file under test: no store variable from the caller's shell.
clean=(env -u MINIO_ROOT_USER -u MINIO_ROOT_PASSWORD -u SEAL_S3_ACCESS_KEY -u SEAL_S3_SECRET_KEY -u COMPOSE_FILE
  -u SEAL_BUCKET -u SEAL_S3_ENDPOINT -u SEAL_TRAINER_ADDRESSES -u MINIO_IMAGE -u MINIO_MC_IMAGE -u SEAL_IMAGE_TAG
  -u SEAL_AUTH_TOKEN -u SEAL_TLS_DIR -u SEAL_TLS_CLIENT_AUTH -u SEAL_PUBLISH_ADDRESS)
laptop=("SEAL_TRAINER_ADDRESSES=gpu-a:50052,gpu-b:50052" "SEAL_S3_ENDPOINT=gpu-a:9000")
step() { echo "== [$(( $(date +%s) - started ))s] $*"; }

step "Docker and debootstrap (installed from Debian's packages when missing)"
deploy/system-packages.sh dockerd docker-compose debootstrap
if ! docker info >/dev/null 2>&1; then
  step "starting dockerd"
  (dockerd >/tmp/seal-ci-dockerd.log 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null
fi

step "compose refuses to start with .env.example copied as is (its secrets are empty)"
cp .env.example "$work/example.env"
echo "COMPOSE_FILE=docker-compose.yml:deploy/docker-compose.seaweedfs.yml" >"$work/example-seaweedfs.env"
cat .env.example >>"$work/example-seaweedfs.env"
refuses() {  # ENV_FILE [compose options...]
  local env_file=$1; shift
  if "${clean[@]}" "${laptop[@]}" docker-compose --env-file "$env_file" "$@" config >/dev/null 2>"$work/refused.err"; then
    echo "FAIL: compose accepted $* with the example's empty secrets"; exit 1
  fi
  if ! grep -Eq "set (MINIO_ROOT_PASSWORD|SEAL_S3_SECRET_KEY|SEAL_AUTH_TOKEN) in \.env" "$work/refused.err"; then
    echo "FAIL: compose failed for another reason:"; cat "$work/refused.err"; exit 1
  fi
  echo "refused ${*:-(COMPOSE_FILE: docker-compose.yml + SeaweedFS)}: $(grep -Eo 'set [A-Z0-9_]+ in \.env[^"]*' "$work/refused.err" | tail -1)"
}
refuses "$work/example.env" -f docker-compose.yml
refuses "$work/example-seaweedfs.env"
refuses "$work/example.env" -f deploy/docker-compose.gpu.yml
refuses "$work/example.env" -f deploy/docker-compose.laptop.yml

step "make env's script: fresh secrets, never overwrites"
deploy/new-env.sh "$work/ci.env"
if deploy/new-env.sh "$work/ci.env" 2>/dev/null; then echo "FAIL: new-env.sh overwrote a file"; exit 1; fi
for name in MINIO_ROOT_PASSWORD SEAL_S3_SECRET_KEY SEAL_AUTH_TOKEN; do
  value=$(sed -n "s/^$name=//p" "$work/ci.env")
  [ "${#value}" -ge 24 ] || { echo "FAIL: $name has ${#value} characters"; exit 1; }
done
token=$(sed -n 's/^SEAL_AUTH_TOKEN=//p' "$work/ci.env")  # the API wants it: Authorization: Bearer
# The SeaweedFS variant, selected the way docs/deployment/store.md says: one COMPOSE_FILE line in the env file.
{ echo "COMPOSE_FILE=docker-compose.yml:deploy/docker-compose.seaweedfs.yml"
  echo "SEAL_COORDINATOR_PUBLISHED_PORT=$port"; } >>"$work/ci.env"

step "every compose file with the filled-in values: pinned images, root credentials in the store only"
config() { "${clean[@]}" "${laptop[@]}" docker-compose --env-file "$work/ci.env" "$@" config; }
config -f docker-compose.yml | "$python" deploy/ci/check_compose.py config "$work/ci.env"
config | "$python" deploy/ci/check_compose.py config "$work/ci.env"  # COMPOSE_FILE: + SeaweedFS
config -f deploy/docker-compose.gpu.yml --profile store | "$python" deploy/ci/check_compose.py config "$work/ci.env"
config -f deploy/docker-compose.laptop.yml | "$python" deploy/ci/check_compose.py config "$work/ci.env"
step "MinIO's store-init script (docker-compose.yml and the GPU box's), with a stand-in mc"
config -f docker-compose.yml | "$python" deploy/ci/check_compose.py minio-init "$work/ci.env"
config -f deploy/docker-compose.gpu.yml | "$python" deploy/ci/check_compose.py minio-init "$work/ci.env"

deploy/ci/build_images.sh
step "the coordinator's image holds none of the model extra"
docker run --rm seal-lab-coordinator:latest python -c '
from seal_lab.runtime import MODEL_PACKAGES, missing_model_packages
found = sorted(set(MODEL_PACKAGES) - set(missing_model_packages()))
assert not found, f"the coordinator image has {found}"
print("ok: none of", ", ".join(MODEL_PACKAGES))'
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^seal-lab'

compose=("${clean[@]}" docker-compose --env-file "$work/ci.env" -p "$project")
cleanup() {
  local status=$?
  step "tearing down"
  "${compose[@]}" logs --no-color --tail=40 >/tmp/seal-ci-compose.log 2>&1 || true
  if [ "$status" -ne 0 ]; then
    echo "-- last lines of the stack's logs (all in /tmp/seal-ci-compose.log)"
    grep -E '^(store|store-init)' /tmp/seal-ci-compose.log | tail -30 || true
  fi
  # Its data goes with it (-v), so no service needs its graceful stop (SeaweedFS's takes about 17 s).
  "${compose[@]}" down -v --remove-orphans --timeout 3 >/dev/null 2>&1 || true
  rm -rf "$work"
  echo "== [$(( $(date +%s) - started ))s] torn down"
}
trap cleanup EXIT

step "docker-compose up (SeaweedFS, as COMPOSE_FILE in the env file selects it)"
up_started=$(date +%s)
"${compose[@]}" up -d
"${compose[@]}" logs --no-color store-init | sed -n 's/^[^|]*| //p'
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
echo "all healthy $(( $(date +%s) - up_started ))s after up"

step "the services' containers hold no root credential"
root_password=$(sed -n 's/^MINIO_ROOT_PASSWORD=//p' "$work/ci.env")
for service in generator trainer evaluator coordinator; do
  if docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$("${compose[@]}" ps -q "$service")" \
      | grep -Eq "^MINIO_ROOT_|=$root_password\$"; then
    echo "FAIL: $service sees the root credentials"; exit 1
  fi
done
echo "ok"

step "every running container is hardened: read-only root, no capabilities, no new privileges, limits"
for service in store generator trainer evaluator coordinator; do
  id=$("${compose[@]}" ps -q "$service")
  seen=$(docker inspect --format \
    '{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}' "$id")
  read -r readonly caps opts memory pids <<<"$(echo "$seen" | tr -d '[]')"
  if [ "$readonly" != true ] || [ "$caps" != ALL ] || [ "${opts#no-new-privileges}" = "$opts" ] \
      || ! [[ "$memory" =~ ^[1-9][0-9]*$ ]] || ! [[ "$pids" =~ ^[1-9][0-9]*$ ]]; then
    echo "FAIL: $service runs with: $seen"; exit 1
  fi
  echo "$service: $seen"
done

step "a tiny round over HTTP"
refused=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/runs")
[ "$refused" = 401 ] || { echo "FAIL: /v1/runs answered $refused without the token, expected 401"; exit 1; }
echo "without the token: 401"
auth=(-H "Authorization: Bearer $token")
body='{"name": "compose-ci", "dataset": "demo", "limit": 1, "config": {"k": 1, "max_new_tokens": 48, "eval_max_new_tokens": 16, "retention_questions": 8}}'
run_id=$(curl -fsS "${auth[@]}" -X POST "http://127.0.0.1:$port/v1/runs" -H 'content-type: application/json' -d "$body" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
echo "run $run_id"
until status=$(curl -fsS "${auth[@]}" "http://127.0.0.1:$port/v1/runs/$run_id" | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])') \
      && [[ $status =~ ^(succeeded|completed_with_errors|failed)$ ]]; do
  if [ "$(date +%s)" -gt "$deadline" ]; then echo "FAIL: run did not finish"; exit 1; fi
  sleep 3
done
curl -fsS "${auth[@]}" "http://127.0.0.1:$port/v1/runs/$run_id" | python3 -c '
import json, sys
detail = json.load(sys.stdin)
print("status:", detail["status"], "| summary:", json.dumps(detail["results"]["summary"] if detail["results"] else None))
sys.exit(0 if detail["status"] == "succeeded" else 1)'

step "the adapter is in the bucket"
"${compose[@]}" exec -T coordinator python -c '
from seal_lab.settings import StoreSettings
from seal_lab.store.open import open_store
store = open_store(StoreSettings())
keys = store.list_keys("adapters/")
print("\n".join(keys))
assert any(k.endswith("/adapter_model.safetensors") for k in keys), "no adapter in the bucket"
print(f"{len(keys)} adapter objects in {store.location}")'

step "the coordinator's credentials cannot create a bucket or write outside the project bucket"
other="$project-other-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# Another bucket that exists, made with the root credentials in the store's container.
"${compose[@]}" exec -T store python -c '
import os, sys
from minio import Minio
Minio("127.0.0.1:9000", os.environ["MINIO_ROOT_USER"], os.environ["MINIO_ROOT_PASSWORD"], secure=False).make_bucket(sys.argv[1])
print("root made bucket", sys.argv[1])' "$other"
"${compose[@]}" exec -T coordinator python -c '
import io, sys
from minio import Minio
from minio.error import S3Error
from seal_lab.settings import StoreSettings
settings, other = StoreSettings(), sys.argv[1]
client = Minio(settings.s3_endpoint, settings.s3_access_key.get_secret_value(),
               settings.s3_secret_key.get_secret_value(), secure=settings.s3_secure)
def denied(what, action):
    try:
        action()
    except S3Error as exc:
        assert exc.code == "AccessDenied", f"{what}: {exc.code}, expected AccessDenied"
        return print("denied:", what)
    sys.exit(f"FAIL: the coordinator could {what}")
denied(f"create the bucket {other}-new", lambda: client.make_bucket(other + "-new"))
denied(f"write to the bucket {other}", lambda: client.put_object(other, "x", io.BytesIO(b"x"), 1))
client.put_object(settings.s3_bucket, "ci/probe", io.BytesIO(b"x"), 1)
client.remove_object(settings.s3_bucket, "ci/probe")
print("allowed: write and delete in", settings.s3_bucket)
# SeaweedFS: its master, volume server and filer (no S3 identities there) must not be reachable.
import socket
host = settings.s3_endpoint.rsplit(":", 1)[0]
for port in (9333, 8080, 8888, 19333, 18080, 18888):
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        continue
    sys.exit(f"FAIL: the store port {port} (no S3 authentication) is reachable from the coordinator")
print("closed to the coordinator: the store ports other than S3")' "$other"

echo "== compose stack test passed in $(( $(date +%s) - started ))s"
