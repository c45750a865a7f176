"""``python -m ledger``: the API alone, without the SFTP front door or the pipeline."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from core.config import ConfigError, Settings, load_settings, parse_listen
from core.logs import configure_logging
from core.passwords import PasswordHasher
from core.tenants import TenantStore, open_state
from ledger.server import ApiServer


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ledger", description=__doc__)
    parser.add_argument("--config", type=Path, help="settings file (TOML); defaults apply without one")
    parser.add_argument("--data-dir", type=Path, help="where state.db and ledger.db live")
    parser.add_argument("--listen", metavar="HOST:PORT", help="address to serve on (port 0 picks one)")
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if args.data_dir is not None:
        settings = settings.replace(data_dir=args.data_dir)
    if args.listen is not None:
        host, port = _listen(args.listen)
        settings = settings.replace(api__listen_host=host, api__listen_port=port)
    return settings


def _listen(text: str) -> tuple[str, int]:
    """Like ``parse_listen``, but port 0 (any free port) is allowed here."""
    host, _, port = text.rpartition(":")
    if host and port == "0":
        return host.strip("[]"), 0
    return parse_listen(text)


async def _serve(settings: Settings) -> None:
    db = open_state(settings.state_location)
    tenants = TenantStore(db, settings.tenants_dir, PasswordHasher(settings.passwords))
    server = ApiServer(settings, tenants)
    await server.start()
    print(f"listening on {server.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()
        db.close()


def main(argv: list[str] | None = None) -> int:
    try:
        settings = _settings(_arguments(argv))
    except ConfigError as exc:
        print(f"python -m ledger: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        asyncio.run(_serve(settings))
    except OSError as exc:
        address = f"{settings.api.listen_host}:{settings.api.listen_port}"
        print(f"python -m ledger: cannot listen on {address}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
