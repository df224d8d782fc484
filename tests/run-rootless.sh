#!/usr/bin/env bash
# Runs the sandbox tests again the ways ocibuild is used without full root (called by
# `make test` as root, after the root tests):
#   1. `-m rootless` as ocibuild-sub (ranges in /etc/subuid + /etc/subgid: full id map),
#   2. `-m rootless` as ocibuild-nosub (no ranges: single-id map + seccomp),
#   3. `-m chroot` as root with CAP_SYS_ADMIN dropped (no namespaces: chroot + copy).
# Each gets its own world-readable copy of the source tree and its own HOME/XDG_CACHE_HOME, and
# uses the world-readable venv made by tests/install-deps.sh. Exits non-zero if any run fails.
# RUN_ROOTLESS_TESTS=tests/executor limits the runs to some test paths.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "run-rootless: must run as root (it creates test users and drops privileges)" >&2
  exit 1
fi
VENV=${OCIBUILD_TEST_VENV:-/opt/ocibuild-test-venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "run-rootless: $VENV missing; run tests/install-deps.sh first" >&2
  exit 1
fi

# Test users: exactly one sub-id range for ocibuild-sub, none for ocibuild-nosub (useradd may
# add ranges on its own, depending on login.defs).
for user in ocibuild-sub ocibuild-nosub; do
  id "$user" >/dev/null 2>&1 || useradd -m -s /bin/sh "$user"
done
for file in /etc/subuid /etc/subgid; do
  touch "$file"
  sed -i '/^ocibuild-sub:/d; /^ocibuild-nosub:/d' "$file"
  echo "ocibuild-sub:200000:65536" >>"$file"
done

# Debian's udev rule makes /dev/fuse 0666; machines without udev leave it 0600, which would hide
# the rootless fuse-overlayfs snapshotter from these tests.
[ -c /dev/fuse ] && chmod 0666 /dev/fuse

WORK=$(mktemp -d /tmp/ocibuild-rootless.XXXXXX)
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
chmod 755 "$WORK"
failed=0

run_as() {  # run_as LABEL USER MARK [setpriv args...]: writes $WORK/LABEL/{out,rc}
  local label=$1 user=$2 mark=$3
  shift 3
  local dir="$WORK/$label"
  mkdir -p "$dir/home" "$dir/cache" "$dir/tmp"
  cp -a ocibuild tests pyproject.toml "$dir/"  # -a: hard links in test contexts stay links
  if [ -d testdata ]; then cp -r testdata "$dir/"; fi
  chmod -R a+rX "$dir"
  # The user's own checkout, as a real user has it (a build context it owns is root's own
  # in its user namespace; the conformance cases make fifos and odd names in theirs).
  chown -R "$user:" "$dir/tests"
  chown -R "$user" "$dir/home" "$dir/cache" "$dir/tmp"
  (cd "$dir" && setpriv "$@" --reuid "$user" --regid "$user" --init-groups \
     env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$dir/home" XDG_CACHE_HOME="$dir/cache" \
     TMPDIR="$dir/tmp" PYTHONDONTWRITEBYTECODE=1 \
     "$VENV/bin/python" -m pytest -q --tb=short -p no:cacheprovider --continue-on-collection-errors \
     -m "$mark" ${RUN_ROOTLESS_TESTS:-tests}) >"$dir/out" 2>&1
  echo $? >"$dir/rc"
}

report() {  # report LABEL DESCRIPTION
  local dir="$WORK/$1" rc
  rc=$(cat "$dir/rc")
  echo "== run-rootless: $2"
  # rc 5: nothing selected (no tests carry the mark) is not a failure.
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
    grep -E '^(FAILED|ERROR) |^E  ' "$dir/out" | head -n 80
    failed=1
  fi
  tail -n 1 "$dir/out"
}

# The three runs are independent (own trees, users, caches): run them side by side.
run_as sub ocibuild-sub rootless &
run_as nosub ocibuild-nosub rootless &
run_as chroot root chroot --bounding-set -sys_admin --inh-caps -sys_admin &
wait
report sub "ocibuild-sub (full sub-id map), -m rootless"
report nosub "ocibuild-nosub (single id), -m rootless"
report chroot "root without CAP_SYS_ADMIN, -m chroot"

exit $failed
