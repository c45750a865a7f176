"""A private OpenSSH ``sshd`` on a loopback port: the peer operators already trust.

It runs from its own config file and host keys in a scratch folder, with Debian's defaults
otherwise, and serves one system user chrooted to a root-owned folder with a writable ``in/``
through ``internal-sftp`` -- the setup an operator would compare us with. The user, the chroot
and the daemon are removed again when the context exits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from bench.cgroup import CpuGroup
from bench.endpoint import HOST, REMOTE_INBOX, Endpoint, free_port, wait_for_banner
from bench.errors import NotAvailable

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
CHROOT = Path("/srv/benchchroot")
USER = "benchuser"
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0
HOST_KEY_TYPES = ("ed25519", "rsa")
# Unauthenticated connections sshd accepts at once; the memory case opens hundreds in bursts.
MAX_STARTUPS = 1000

CONFIG = """\
# Private sshd for bench/: loopback only, password logins of one chrooted SFTP user.
Port {port}
ListenAddress {host}
{host_keys}
PidFile {folder}/sshd.pid
UsePAM {use_pam}
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication no
PermitRootLogin no
AllowUsers {user}
MaxStartups {max_startups}
UseDNS no
Subsystem sftp internal-sftp

Match User {user}
    ChrootDirectory {chroot}
    ForceCommand internal-sftp
    AllowTcpForwarding no
    X11Forwarding no
"""


@contextmanager
def private_sshd(folder: Path, password: str, use_pam: bool = True) -> Iterator[Endpoint]:
    """Run sshd until the context exits; ``folder`` holds its config, keys and log."""
    if not SSHD.exists():
        raise NotAvailable(f"{SSHD} missing: install openssh-server (bench/run.sh does)")
    if os.geteuid() != 0:
        raise NotAvailable("a private sshd with a chrooted system user needs root")
    folder.mkdir(parents=True, exist_ok=True)
    daemon: subprocess.Popen[bytes] | None = None
    group = CpuGroup.create("sftp-inbox-bench-openssh")
    try:
        _create_user(password)
        inbox = _create_chroot()
        port = free_port()
        config = _write_config(folder, port, use_pam)
        with (folder / "sshd.log").open("ab") as log:
            daemon = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if group is not None and not group.add(daemon.pid):
            group = None
        if not wait_for_banner(port, START_TIMEOUT_SECONDS):
            raise NotAvailable(f"sshd did not start; see {folder / 'sshd.log'}")
        yield Endpoint(name="OpenSSH", port=port, user=USER, password=password, inbox=inbox,
                       pid=daemon.pid, idle_processes=1, cpu_group=group)
    finally:
        if daemon is not None:
            _stop(daemon)
        if group is not None:
            group.remove()
        _remove_user_and_chroot()

def sshd_version() -> str:
    """``OpenSSH_9.2p1 Debian-2+deb12u6`` as sshd itself reports it (it has no ``-V``)."""
    result = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True, check=False)
    for line in (result.stderr or result.stdout).splitlines():
        if line.startswith("OpenSSH"):
            return line.split(",")[0].strip()
    return "unknown"


def _create_user(password: str) -> None:
    if subprocess.run(["id", USER], capture_output=True, check=False).returncode != 0:
        _run(["useradd", "--no-create-home", "--home-dir", "/", "--shell", "/usr/sbin/nologin", USER])
    _run(["chpasswd"], stdin=f"{USER}:{password}\n")


def _create_chroot() -> Path:
    """sshd refuses a chroot that is not root-owned or is writable by group or others."""
    shutil.rmtree(CHROOT, ignore_errors=True)
    CHROOT.mkdir(parents=True, mode=0o755)
    os.chown(CHROOT, 0, 0)
    CHROOT.chmod(0o755)
    inbox = CHROOT / REMOTE_INBOX
    inbox.mkdir(mode=0o755)
    shutil.chown(inbox, user=USER, group=USER)
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    return inbox


def _write_config(folder: Path, port: int, use_pam: bool) -> Path:
    keys = []
    for kind in HOST_KEY_TYPES:
        key = folder / f"ssh_host_{kind}_key"
        if not key.exists():
            _run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key)])
        keys.append(f"HostKey {key}")
    config = folder / "sshd_config"
    config.write_text(CONFIG.format(
        host=HOST, port=port, host_keys="\n".join(keys), folder=folder,
        use_pam="yes" if use_pam else "no", user=USER, max_startups=MAX_STARTUPS, chroot=CHROOT,
    ))
    _run([str(SSHD), "-t", "-f", str(config)])
    return config


def _stop(daemon: subprocess.Popen[bytes]) -> None:
    """Stop the listener and every session process it forked."""
    try:
        family = [psutil.Process(daemon.pid), *psutil.Process(daemon.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for process in reversed(family):
        with suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(family, timeout=STOP_TIMEOUT_SECONDS)
    for process in alive:
        process.kill()
    daemon.wait()


def _remove_user_and_chroot() -> None:
    shutil.rmtree(CHROOT, ignore_errors=True)
    subprocess.run(["userdel", USER], capture_output=True, check=False)


def _run(argv: list[str], stdin: str | None = None) -> None:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NotAvailable(f"{argv[0]} failed: {(result.stderr or result.stdout).strip()[:200]}")
