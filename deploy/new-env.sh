#!/bin/sh
# Create .env from .env.example with fresh random secrets: `make env`, or `deploy/new-env.sh [TARGET]`
# (default: .env at the repository root). Every `NAME=` line of the example whose NAME ends in _PASSWORD,
# _SECRET_KEY or _TOKEN gets 32 random letters and digits from /dev/urandom; other lines are copied as they are.
# Refuses to overwrite an existing file. The file is created readable by its owner only. POSIX sh.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
example="$root/.env.example"
target=${1:-"$root/.env"}

if [ -e "$target" ]; then
  echo "new-env: $target exists; not overwriting it (remove it first to start over)" >&2
  exit 1
fi

random_secret() {
  # 32 characters from [A-Za-z0-9]: about 190 bits, within MinIO's 8-40 character limit for secret keys.
  LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32
}

umask 077
tmp="$target.tmp.$$"
trap 'rm -f "$tmp"' EXIT
filled=""
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    *_PASSWORD= | *_SECRET_KEY= | *_TOKEN=)
      name=${line%=}
      secret=$(random_secret)
      if [ "${#secret}" -ne 32 ]; then
        echo "new-env: could not read random bytes from /dev/urandom" >&2
        exit 1
      fi
      printf '%s=%s\n' "$name" "$secret"
      filled="$filled $name"
      ;;
    *) printf '%s\n' "$line" ;;
  esac
done <"$example" >"$tmp"
mv "$tmp" "$target"
trap - EXIT

echo "new-env: wrote $target (mode 600) from .env.example"
for name in $filled; do
  echo "  $name: 32 random characters"
done
for name in MINIO_ROOT_USER SEAL_S3_ACCESS_KEY; do
  value=$(sed -n "s/^$name=//p" "$target")
  [ -n "$value" ] && echo "  $name=$value (from the example)"
done
echo "On a laptop of a two-machine setup, replace SEAL_S3_ACCESS_KEY, SEAL_S3_SECRET_KEY and SEAL_AUTH_TOKEN by the GPU box's."
