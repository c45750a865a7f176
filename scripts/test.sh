#!/usr/bin/env bash
# Install everything the test suite needs from the project's own files, run the lint and type
# gates (ruff and mypy --strict, configured in pyproject.toml), then the tests.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/sftpd -x`).
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests drive the real OpenSSH `sftp` client; Debian ships it in openssh-client.
if ! command -v sftp >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client
    else
        echo "the tests need the OpenSSH sftp client: sudo apt-get install openssh-client" >&2
        exit 1
    fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
