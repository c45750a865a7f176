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
    # The stores are tested on a real PostgreSQL server too (tests/support/postgres.py).
    initdb postgresql
)
missing=()
for ((i = 0; i < ${#clients[@]}; i += 2)); do
    # (haproxy lives in /usr/sbin, outside a normal user's PATH; initdb in PostgreSQL's own bin)
    if ! command -v "${clients[i]}" >/dev/null 2>&1 && [ ! -x "/usr/sbin/${clients[i]}" ] \
        && ! compgen -G "/usr/lib/postgresql/*/bin/${clients[i]}" >/dev/null; then
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
if [ $# -eq 0 ]; then
    # tests/cluster runs on PostgreSQL whatever the switch says: once, in the pass below.
    .venv/bin/python -m pytest --ignore=tests/cluster
else
    .venv/bin/python -m pytest "$@"
fi

# The whole suite (no arguments) runs a second time with the stores on PostgreSQL, for the
# tests that pass there so far (docs/postgresql.md says what is left). All of tests/sftpd passes
# too (about 70 s); of it, the tests whose subject is the state (lockouts, logins, sessions) run twice.
postgres_dirs=(tests/core tests/sftpd/test_defender.py tests/sftpd/test_auth.py tests/sftpd/test_sessions.py tests/cluster)
postgres_dirs+=(tests/ledger/test_{store,requests,asapp,transactions_api,search,concurrency,calls,lookup_tables,signal_api,isolation}.py)  # the ledger's store (all of tests/ledger passes too, about 2.5x its SQLite time)
# The run, delivery, the daemon and sftpctl as processes of their own, the admin listener: about
# 5.5 min on PostgreSQL (under load; about 5 min on SQLite).
postgres_dirs+=(tests/ingest tests/service)
if [ $# -eq 0 ]; then
    SFTP_INBOX_TEST_DATABASE=postgresql .venv/bin/python -m pytest "${postgres_dirs[@]}"
fi
