#!/usr/bin/env bash
# The programs outside pip that a make target needs, installed from Debian's packages when missing.
#
#   deploy/system-packages.sh PROGRAM...     e.g. chromium chromedriver kubectl dockerd
#
# Each PROGRAM is a command; the table below names its Debian package. What is already on PATH is left
# alone. Missing ones are installed with apt-get when this runs as root on a machine that has it; otherwise
# it prints one line saying what to install and exits 2, before anything else runs. The Makefile calls it
# first in `make test` (chromium and its driver, for the browser tests), `make k8s-validate` (kubectl) and `make test-compose` (Docker), so a new
# user and CI take the same path. SEAL_SKIP_BROWSER_TESTS=1 drops chromium and chromedriver from what is
# needed.
set -euo pipefail

# Docker's packages come with their recommended ones (cgroupfs-mount, xz-utils...), as the compose test has
# always installed them (marked +); the others without.
package_of() {
  case "$1" in
    chromium) echo chromium ;;
    chromedriver) echo chromium-driver ;;  # selenium drives Chromium through it (tests/service/test_ui_browser.py)
    kubectl) echo kubernetes-client ;;
    dockerd) echo docker.io+ ;;
    docker-compose) echo docker-compose+ ;;
    debootstrap) echo debootstrap+ ;;
    *) echo "system-packages.sh: no Debian package known for '$1'" >&2; exit 64 ;;
  esac
}

missing=()
for program in "$@"; do
  if { [ "$program" = chromium ] || [ "$program" = chromedriver ]; } && [ "${SEAL_SKIP_BROWSER_TESTS:-}" = 1 ]; then
    continue
  fi
  package=$(package_of "$program")
  if ! command -v "$program" >/dev/null 2>&1; then
    missing+=("$package")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

names=("${missing[@]%+}")
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${names[*]}. Install them first (Debian: sudo apt-get install -y ${names[*]}), then run make again." >&2
  exit 2
fi
echo "installing from Debian's packages: ${names[*]}"
started=$(date +%s)
apt-get update -qq
plain=() recommended=()
for package in "${missing[@]}"; do
  case "$package" in *+) recommended+=("${package%+}") ;; *) plain+=("$package") ;; esac
done
export DEBIAN_FRONTEND=noninteractive
[ ${#plain[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${plain[@]}" >/dev/null
[ ${#recommended[@]} -eq 0 ] || apt-get install -y -qq "${recommended[@]}" >/dev/null
echo "installed ${names[*]} in $(($(date +%s) - started)) s"
