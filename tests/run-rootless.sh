#!/usr/bin/env bash
# Placeholder until the sandbox lands: runs the rootless-marked tests as an unprivileged user.
set -euo pipefail
echo "run-rootless: no rootless tests yet"
