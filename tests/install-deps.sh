#!/usr/bin/env bash
# Installs everything `make test` needs on a fresh Debian 12 machine. Idempotent and quick when
# everything is already there. System packages need root (CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  docker-registry   # the real CNCF distribution registry, for integration tests
  busybox-static    # base image rootfs built by the fixtures
  skopeo umoci      # other tools that must accept our outputs
  uidmap            # newuidmap/newgidmap for rootless with subuid ranges
  fuse-overlayfs fuse3
  zstd pigz tar gzip bzip2 xz-utils
  python3-venv python3-pip  # the interpreter the unprivileged test user runs
  git openssl iproute2 util-linux debootstrap
  util-linux-extra  # fincore: what a file leaves in the page cache
  apache2-utils     # htpasswd (bcrypt) for the TLS + basic-auth test registry
  time              # /usr/bin/time: peak RSS of benchmarked subprocesses
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing Debian packages (need root): ${missing[*]}" >&2; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import requests, pyzstd, zlib_ng, pytest, hypothesis, cryptography, ruff, pytest_timeout, ocibuild.fs.zstdlib' 2>/dev/null; then
  "$PYTHON" -m pip install -q --disable-pip-version-check -e '.[test]'
fi
"$PYTHON" -c 'import ocibuild' 2>/dev/null || "$PYTHON" -m pip install -q --no-deps -e .

# A world-readable virtual environment for tests that run as an unprivileged user (the build
# machine's own Python may live under /root).
VENV=/opt/ocibuild-test-venv
if [ "$(id -u)" = 0 ] && ! "$VENV/bin/python" -c 'import requests, pyzstd, zlib_ng, pytest, hypothesis, cryptography, pytest_timeout, ocibuild.fs.zstdlib' 2>/dev/null; then
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check requests 'pyzstd>=0.19' zlib-ng pytest hypothesis cryptography pytest-timeout
fi
