#!/usr/bin/env bash
# Install everything the test suite needs from the project's own files, run the lint and type
# gates (ruff and mypy --strict, configured in pyproject.toml), then the tests.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/sftpd -x`).
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests drive real SSH clients (tests/clients/ is the matrix of those customers use) and a
# headless browser and HAProxy, each from its Debian package: command, then the package that ships it.
clients=(
    sftp openssh-client
    scp openssh-client
    lftp lftp
    rclone rclone
    curl curl
    psftp putty-tools
    sshfs sshfs
    # The admin status page is tested in a real headless browser (tests/service/admin/test_page.py).
    chromium chromium
    chromedriver chromium-driver
    # PROXY protocol v2 is tested behind a real HAProxy (tests/sftpd/test_proxy_protocol.py).
    haproxy haproxy
)
missing=()
for ((i = 0; i < ${#clients[@]}; i += 2)); do
    # (haproxy lives in /usr/sbin, outside a normal user's PATH)
    if ! command -v "${clients[i]}" >/dev/null 2>&1 && [ ! -x "/usr/sbin/${clients[i]}" ]; then
        missing+=("${clients[i + 1]}")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "the tests need these packages: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
