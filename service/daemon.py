"""``sftpd serve``: the SFTP front door, the ingest pipeline and the embedded API in one process."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.compat import IncompatibleDependency
from core.config import ConfigError, Settings, parse_listen
from core.crypto.keys import MasterKeyError
from core.db import DatabaseUnavailable, SchemaTooNew, SchemaTooOld
from core.logs import configure_logging, get_logger
from service.settings import add_settings_arguments, settings_from_args

if TYPE_CHECKING:  # imported by serve(), after check_libraries(); a supervisor never needs them
    from ledger.server import ApiServer
    from service.admin import AdminServer, UploadEvents
    from service.context import Context
    from sftpd.events import UploadCompleted
    from sftpd.server import SftpServer

log = get_logger("sftpd.daemon")

DEMO_TENANT = "demo"
DEMO_EMAIL = "demo@example.com"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sftpd", description="Managed SFTP inbox with ingest hooks.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the SFTP server, the scheduler and the embedded API")
    add_settings_arguments(serve)
    serve.add_argument("--listen", metavar="HOST:PORT", help="SFTP listen address (default 127.0.0.1:2222)")
    serve.add_argument("--api-listen", metavar="HOST:PORT",
                       help="embedded Signal API listen address (default 127.0.0.1:8080)")
    serve.add_argument("--admin-listen", metavar="HOST:PORT",
                       help="metrics, health and status page listen address (default 127.0.0.1:9090)")
    serve.add_argument("--no-demo", action="store_true",
                       help="do not create the demo tenant when no tenant exists")
    # Given by the supervisor to the processes it starts ([server] workers > 1; service/workers.py).
    serve.add_argument("--worker", type=int, metavar="I", help=argparse.SUPPRESS)
    serve.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        if args.admin_listen:
            host, port = parse_listen(args.admin_listen)
            settings = settings.replace(admin__listen_host=host, admin__listen_port=port)
    except ConfigError as exc:
        print(f"sftpd: {exc}", file=sys.stderr)
        return 2
    if args.worker is None and not args.prepare and settings.server.worker_count > 1:
        # The supervisor imports none of the stores or servers: its first step, ``serve
        # --prepare``, checks the libraries and the settings as a daemon does, and fails as one.
        from service.workers import supervise

        configure_logging(settings.log_level)
        return supervise(settings, sys.argv[1:] if argv is None else list(argv))
    try:
        check_libraries()
    except IncompatibleDependency as exc:
        print(f"sftpd: cannot start: {exc}", file=sys.stderr)
        return 1
    from service.admin.access import exposure_problem

    problem = exposure_problem(settings.admin)
    if problem:
        print(f"sftpd: cannot start: {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        if args.prepare:
            from service.workers import prepare

            prepare(settings, demo=not args.no_demo)
            return 0
        if args.worker is not None:
            from service.workers import become_worker

            become_worker(args.worker)
        daemon = serve(settings, demo=not args.no_demo, worker=args.worker)
        try:
            import uvloop
        except ImportError:
            return asyncio.run(daemon)
        return uvloop.run(daemon)
    except MasterKeyError as exc:  # the key file is named; nothing was read or written
        print(f"sftpd: cannot start: {exc}", file=sys.stderr)
        return 2
    except (SchemaTooOld, SchemaTooNew) as exc:  # the schema is not this program's: nothing changed
        print(f"sftpd: cannot start: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:  # systemd starts it again (Restart=on-failure)
        print(f"sftpd: cannot start: {exc}", file=sys.stderr)
        return 1


def check_libraries() -> None:
    """Import the modules that rely on asyncssh's and uvicorn's internals and on fastapi-offline's
    files; each checks them as it is imported and raises :class:`IncompatibleDependency` if they
    moved. They are imported here rather than at the top so that the refusal is one line, not an
    import traceback."""
    import ledger.docs_page
    import ledger.uvicorn_compat  # noqa: F401
    import sftpd.asyncssh_compat  # noqa: F401


async def serve(settings: Settings, demo: bool = True, worker: int | None = None) -> int:
    """Run until SIGINT or SIGTERM, then drain: the SSH listener closes and no login or session
    begins, a run stops between delivery batches, uploads under way get ``[server]
    drain_seconds`` to finish (then are discarded), and the process exits 0.

    ``worker``: this process is that worker of ``[server] workers`` (service/workers.py); only
    worker 0 runs the schedule, the embedded API and the admin listener."""
    from ingest.retention import Pruner, prune_hourly
    from ledger.server import ApiServer  # after check_libraries(): see there
    from service.admin import AdminServer, CountingDefender, Live, UploadEvents
    from service.context import Context
    from service.workers import worker_settings
    from sftpd.server import SftpServer

    primary = not worker
    context = Context(settings)
    _ = context.at_rest  # a missing or wrong master key stops the start before anything is touched
    if demo:
        ensure_demo_tenant(context)
    ingest = context.ingest

    def hand_over(event: UploadCompleted) -> None:
        ingest.on_upload(event.upload, event.local_path, event.kept)

    def feed_folders(tenant: str) -> Sequence[str]:
        return ingest.feeds.names(tenant)

    defender = CountingDefender(context.db, settings.defender)
    sftp = SftpServer(worker_settings(settings), context.tenants, context.uploads, defender, on_upload=hand_over,
                      feed_folders=feed_folders, at_rest=context.at_rest)
    api = ApiServer(settings, context.tenants) if settings.api.enabled and primary else None
    upload_events = UploadEvents()
    live = Live(defender, upload_events, lambda: sftp.connection_count, sftp.limit_counters.snapshot)
    admin = AdminServer(settings, live, lambda: _port_of(sftp), lambda: _listeners(settings, _port_of(sftp), api)) \
        if settings.admin.listen_port and primary else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        if worker is None:
            loop.add_signal_handler(signum, _on_stop_signal, loop, stop, signum)
        else:  # the supervisor ends a worker at once with SIGKILL; a signal here only drains
            loop.add_signal_handler(signum, stop.set)
    try:
        if api is not None:
            await api.start()
        await sftp.start()
    except OSError as exc:
        log.error("daemon.start_failed", error=str(exc))
        print(f"sftpd: cannot listen: {exc}", file=sys.stderr)
        if api is not None:
            await api.close()
        context.close()
        return 1
    admin_note = await _start_admin(admin, upload_events)
    log.info("daemon.ready", sftp_port=sftp.port, api_port=api.port if api else None,
             data_dir=str(settings.data_dir))
    print(f"sftpd: listening on {settings.server.listen_host}:{sftp.port}"
          + (f", Signal API on {settings.api.listen_host}:{api.port}" if api else "") + admin_note, flush=True)
    stopped = asyncio.create_task(stop.wait())
    pipeline = asyncio.create_task(ingest.serve_forever() if primary else stop.wait(), name="ingest")
    pruning = asyncio.create_task(prune_hourly(Pruner(settings, context.db, context.tenants), ingest.claims)
                                  if primary else stop.wait(), name="retention")
    await asyncio.wait({pipeline, stopped}, return_when=asyncio.FIRST_COMPLETED)
    log.info("daemon.stopping", drain_seconds=settings.server.drain_seconds)
    # A run stops at its next await: between delivery batches, or while one is applied in a
    # worker thread, which still commits it and its outbox marks (waited for below).
    pipeline.cancel()
    pruning.cancel()
    drained = await sftp.drain(settings.server.drain_seconds)
    await asyncio.gather(pipeline, pruning, return_exceptions=True)
    await ingest.settled()  # the uploads published during the drain are staged
    if api is not None:
        await api.close()
    if admin is not None:
        upload_events.detach()
        await admin.close()
    await loop.shutdown_default_executor()  # before the databases close under a worker thread
    context.close()
    log.info("daemon.drained", uploads_finished=list(drained.finished),
             uploads_discarded=list(drained.discarded))
    if pipeline.done() and not pipeline.cancelled() and pipeline.exception():
        log.error("daemon.pipeline_failed", error=repr(pipeline.exception()))
        return 1
    return 0


def _on_stop_signal(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, signum: int) -> None:
    """The first SIGTERM or SIGINT drains (see :func:`serve`); a second one ends the process at
    once, as the signal would unhandled. That is safe too: every database write is a
    transaction, and the next run resumes what the outbox still holds."""
    if not stop.is_set():
        stop.set()
        return
    log.warning("daemon.stop_forced", signal=signal.Signals(signum).name)
    sys.stdout.flush()
    sys.stderr.flush()
    loop.remove_signal_handler(signum)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


async def _start_admin(admin: AdminServer | None, upload_events: UploadEvents) -> str:
    """Start the operator's listener; one that cannot listen is said, and tenants are served on
    (monitoring sees its scrapes fail). Returns the note for the ready line."""
    if admin is None:
        return ""
    try:
        await admin.start()
    except OSError as exc:
        log.error("admin.start_failed", error=str(exc))
        print(f"sftpd: admin listener not started: {exc}", file=sys.stderr, flush=True)
        return ""
    upload_events.attach()
    return f", admin on {admin.url}"


def _port_of(sftp: SftpServer) -> int | None:
    """The SSH listener's port, None once it is closed (the health check says so)."""
    try:
        return sftp.port
    except RuntimeError:
        return None


def _listeners(settings: Settings, sftp_port: int | None, api: ApiServer | None) -> dict[str, str]:
    """The status page's list of what this daemon listens on."""
    return {
        "SSH/SFTP": f"{settings.server.listen_host}:{sftp_port}" if sftp_port else "closed",
        "Signal API": f"{settings.api.listen_host}:{api.port}" if api else "off",
        "admin": f"{settings.admin.listen_host}:{settings.admin.listen_port}",
    }


def ensure_demo_tenant(context: Context) -> None:
    """On a fresh data dir, a tenant to try the server with; its password is printed once."""
    from core.passwords import generate_password

    if context.tenants.all():
        return
    password = generate_password()
    context.tenants.add(DEMO_TENANT, DEMO_EMAIL, password)
    port = context.settings.server.listen_port
    print(
        f"Created tenant {DEMO_TENANT!r} with password {password}\n"
        f"  connect:  sftp -P {port} {DEMO_TENANT}@{context.settings.server.listen_host}\n"
        f"  (shown once; change it with: sftpctl tenant passwd {DEMO_TENANT})",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
