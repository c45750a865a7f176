#!/usr/bin/env bash
# Benchmarks of sftp-inbox side by side with OpenSSH's internal-sftp (issue 5).
#
#   sudo bench/run.sh [--quick] [--cases 1,2,...] [--runs N] [--output FILE]
#
# Installs what is missing (Debian's openssh-server and openssh-client; the project with its
# `bench` extra into .venv), then runs
# bench/compare.py. A full run of every case writes docs/BENCHMARKS.md; --quick only prints.
# Needs root: it creates a system user `benchuser`, a chroot /srv/benchchroot and a private sshd
# on a loopback port, and removes them again at the end.
set -euo pipefail

cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "bench/run.sh: run as root (it creates a chrooted system user and a private sshd)" >&2
    exit 2
fi

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v sftp >/dev/null || missing+=(openssh-client)
if [ ! -x .venv/bin/python ] && ! python3 -m venv --help >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench/run.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
python=.venv/bin/python
# The bench extra: psutil, and xlwt to write the XLS signal file.
if ! (cd / && "$python" -c "import psutil, xlwt, service.daemon, service.sftpctl") >/dev/null 2>&1; then
    echo "bench/run.sh: installing the project with its bench extra into .venv" >&2
    "$python" -m pip install -q -e '.[bench]'
fi

exec "$python" -m bench.compare "$@"
