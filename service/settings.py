"""Settings as the command line sees them: the config file, then flags over it."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.config import Settings, load_settings, parse_listen


def add_settings_arguments(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """``--config`` and ``--data-dir``; with ``suppress`` a sub-command may repeat them."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", type=Path, default=default, metavar="FILE",
                        help="TOML settings file (example: etc/sftpd.toml)")
    parser.add_argument("--data-dir", type=Path, default=default, metavar="DIR",
                        help="state, tenant folders and mail (default: ./var)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Defaults, overridden by the config file, overridden by flags."""
    settings = load_settings(getattr(args, "config", None))
    changes: dict[str, object] = {}
    if getattr(args, "data_dir", None) is not None:
        changes["data_dir"] = args.data_dir
    listen = getattr(args, "listen", None)
    if listen:
        changes["server__listen_host"], changes["server__listen_port"] = parse_listen(listen)
    api_listen = getattr(args, "api_listen", None)
    if api_listen:
        changes["api__listen_host"], changes["api__listen_port"] = parse_listen(api_listen)
    return settings.replace(**changes) if changes else settings
