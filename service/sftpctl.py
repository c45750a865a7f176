"""``sftpctl``: provision tenants, logins, feeds and tokens; check samples; run and inspect runs.

Every command talks to the same state database as the running daemon, so changes take effect
there at once. Errors print one line on stderr and exit non-zero; ``--json`` prints for scripts,
errors included: one JSON object on stderr (:func:`_error`), stdout left empty. Every error meant
for the operator derives from :class:`core.errors.SftpInboxError`; its kind picks the exit code
(:data:`EXIT_CODES`), and anything else is a bug reported as exit 70. A reader that goes away
(``sftpctl uploads acme | head``) ends the command quietly with 141, as git does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from core.clock import parse_iso, utcnow
from core.config import RETENTION_RULES
from core.crypto import rotate_master_key, rotation_in_progress
from core.display import for_terminal, json_safe
from core.errors import Conflict, NotFound, SftpInboxError, UsageError, kind_of
from core.logs import JsonFormatter
from core.passwords import generate_password
from core.tenants import Tenant
from ingest import check_sample, format_check
from ingest.delivery import DROPPED
from ingest.retention import Pruner
from ingest.rows import Feed, format_feed, parse_feed
from ingest.rows.fields import DICTIONARY_SECTIONS
from service.context import Context
from service.embedded_api import embedded_api_running, serving_note
from service.output import print_fields, print_json, print_table, print_text, to_plain
from service.progress import RunPrinter
from service.purge import purge_tenant
from service.settings import add_settings_arguments, settings_from_args
from sftpd.sessions import END_POLL_SECONDS, end_sessions, live_sessions


class CommandError(UsageError):
    """A command line that cannot be carried out as given (a missing ``--yes``, no IDs)."""


class ArgumentsError(UsageError):
    """argparse's own refusal (an unknown command, a missing argument), with its parser for usage."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """argparse that raises its errors, so ``main`` reports them like any other (JSON with ``--json``).

    Sub-command parsers are made of the same class (argparse's ``parser_class`` default)."""

    def error(self, message: str) -> NoReturn:
        raise ArgumentsError(self, message)


# Exit code and JSON ``type`` of each kind of error (core/errors.py); README and --help show it.
EXIT_CODES: dict[type[SftpInboxError], tuple[int, str]] = {
    SftpInboxError: (1, "failed"),
    UsageError: (2, "usage"),
    NotFound: (3, "not_found"),
    Conflict: (4, "conflict"),
}
EXIT_INTERNAL = 70  # EX_SOFTWARE: not an error of ours, so a bug or the machine (disk, database)
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell shows for git when its reader went away

EXIT_EPILOG = """\
exit codes:
  0    done
  1    failed: the command ran but its work did not all succeed (a check or a run with failed
       rows or files)
  2    usage: a wrong argument, setting, name or value (a tenant name, a password, a feed file)
  3    not_found: no such tenant, feed, outbox row or file
  4    conflict: not in the present state (the tenant exists, a run works on the tenant, the row
       was posted)
  70   internal: an unexpected error; one line, then a JSON log line with the traceback
  130  interrupted
  141  stdout closed before the output was written (`sftpctl uploads acme | head`): quietly
With --json an error is one line on stderr instead, and stdout stays empty:
  {"error": {"type": TYPE, "message": MESSAGE, "exit_code": CODE}}
TYPE being the word after the code above."""

EXAMPLES = """\
examples (one command a line):
  sftpctl tenant add acme --email ops@acme.example
  sftpctl tenant disable acme
  sftpctl tenant enable acme
  sftpctl fields add acme plan_type score
  sftpctl feed set acme etc/feeds/orders.toml
  sftpctl feed remove acme orders
  sftpctl check acme sample.csv
  sftpctl run --tenant acme
  sftpctl outbox retry 42 43
  sftpctl tenant retention acme --upload-days 7 --report-days default
  sftpctl prune --dry-run
  sftpctl outbox drop --tenant acme --yes
  sftpctl --json uploads acme
  sftpctl sessions --tenant acme
  sftpctl keys rotate
  sftpctl migrate"""


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in words[:words.index("--")] if "--" in words else "--json" in words
    args: argparse.Namespace | None = None
    context: Context | None = None
    try:
        args = build_parser().parse_args(words)
        as_json = bool(args.json)
        context = Context(settings_from_args(args))
        code = args.handler(context, args) or 0
        sys.stdout.flush()  # here, where a reader that went away is still ours to handle
        return int(code)
    except BrokenPipeError:
        return _stdout_gone()
    except ArgumentsError as exc:
        if not as_json:  # argparse's own words and usage line, as without this class
            exc.parser.print_usage(sys.stderr)
            sys.stderr.write(f"{exc.parser.prog}: error: {exc}\n")
            return EXIT_CODES[UsageError][0]
        return _error(*EXIT_CODES[UsageError], str(exc), as_json)
    except SftpInboxError as exc:
        code, kind = EXIT_CODES[kind_of(exc)]
        return _error(code, kind, str(exc), as_json)
    except KeyboardInterrupt:
        return _error(EXIT_INTERRUPTED, "interrupted", "interrupted", as_json)
    except Exception as exc:  # noqa: BLE001 - a bug or the machine: one line, then the log
        message = f"unexpected {type(exc).__name__}: {exc}"
        _error(EXIT_INTERNAL, "internal", message, as_json, note=" (traceback in the log line below)")
        _log_crash(exc, args)
        return EXIT_INTERNAL
    finally:
        if context is not None:
            context.close()


def _error(code: int, kind: str, message: str, as_json: bool, note: str = "") -> int:
    """``sftpctl: error: ...`` as one escaped line on stderr; with ``--json``, instead, one line of
    ``{"error": {"type": ..., "message": ..., "exit_code": ...}}`` there (escaped as ``print_json``
    escapes), so a script reads stdout for results and stderr for what went wrong."""
    if as_json:
        error = {"error": {"type": kind, "message": message, "exit_code": code}}
        sys.stderr.write(json_safe(json.dumps(error, ensure_ascii=False)) + "\n")
    else:
        sys.stderr.write(f"sftpctl: error: {for_terminal(message)}{note}\n")
    return code


def _stdout_gone() -> int:
    """The reader of stdout went away (``| head``): nothing more to say to anyone, so no traceback
    and no message. stdout points at /dev/null from here on, so the interpreter's last flush at
    exit cannot fail again (the recipe of Python's ``signal`` documentation)."""
    _silence_stdout()
    return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a file (a test's capture): nothing will be flushed to a pipe
        pass


def _log_crash(exc: Exception, args: argparse.Namespace | None) -> None:
    """The daemon's JSON log line (one line, traceback inside) on stderr, for a bug report."""
    command = " ".join(filter(None, (getattr(args, "command", None), getattr(args, "action", None))))
    record = logging.getLogger("sftpctl").makeRecord(
        "sftpctl", logging.ERROR, __file__, 0, "sftpctl.crashed", (), (type(exc), exc, exc.__traceback__),
        extra={"fields": {"command": command}})
    sys.stderr.write(json_safe(JsonFormatter().format(record)) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sftpctl", description="Operate the managed SFTP inbox.",
                     epilog=f"{EXAMPLES}\n\n{EXIT_EPILOG}", formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables (errors too, on stderr)")
    common = _Parser(add_help=False)
    add_settings_arguments(common, suppress=True)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(group: Any, name: str, handler: Callable[..., int | None], help: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, help=help, description=help, parents=[common])
        sub.set_defaults(handler=handler)
        return sub

    tenant = commands.add_parser("tenant", help="add, change and remove tenants").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    sub = command(tenant, "add", tenant_add, "create a tenant with its login and folders")
    sub.add_argument("name")
    sub.add_argument("--email", required=True, help="contact that receives failure e-mails")
    sub.add_argument("--timezone", default="America/Los_Angeles", help="for Excel-style timestamps")
    sub.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    command(tenant, "list", tenant_list, "list tenants")
    command(tenant, "show", tenant_show, "show one tenant").add_argument("name")
    sub = command(tenant, "passwd", tenant_passwd,
                  "set a new password (and restore a removed login); open sessions are closed")
    sub.add_argument("name")
    sub.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    command(tenant, "disable", tenant_disable, "refuse the tenant's logins and close its open sessions"
            ).add_argument("name")
    command(tenant, "enable", tenant_enable, "allow the tenant's logins again").add_argument("name")
    command(tenant, "unlock", tenant_unlock, "clear a brute-force lockout").add_argument("name")
    sub = command(tenant, "email", tenant_email, "change the contact e-mail")
    sub.add_argument("name")
    sub.add_argument("email")
    command(tenant, "remove", tenant_remove,
            "remove the login and close its open sessions; files, settings and history stay, processing waits"
            ).add_argument("name")
    sub = command(tenant, "retention", tenant_retention,
                  "set the days the tenant's files are kept (`default`: the installation's [retention]);"
                  " with no option, show the rules in force")
    sub.add_argument("name")
    for rule in RETENTION_RULES:
        sub.add_argument(f"--{rule.replace('_', '-')}", dest=rule, type=_days, metavar="N|default",
                         help=f"days, 0 or more, or `default` ({RETENTION_HELP[rule]})")
    sub.add_argument("--clear", action="store_true", help="every rule back to the installation's")
    sub = command(tenant, "purge", tenant_purge, "delete the tenant, its files and history")
    sub.add_argument("name")
    sub.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")

    fields = commands.add_parser("fields", help="the tenant's data dictionary").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    command(fields, "list", fields_list, "list custom data fields").add_argument("tenant")
    for name, handler, text in (("add", fields_add, "add custom data fields"),
                                ("remove", fields_remove, "remove custom data fields")):
        sub = command(fields, name, handler, text)
        sub.add_argument("tenant")
        sub.add_argument("fields", nargs="+", metavar="FIELD")

    token = commands.add_parser("token", help="the tenant's API token").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    command(token, "show", token_show, "print the API token").add_argument("tenant")
    command(token, "rotate", token_rotate, "replace the API token").add_argument("tenant")

    feed = commands.add_parser("feed", help="the tenant's feeds").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    sub = command(feed, "set", feed_set, "add or replace a feed from a TOML file")
    sub.add_argument("tenant")
    sub.add_argument("file", type=Path)
    sub.add_argument("--default", action="store_true",
                     help="make it the tenant's default feed (files directly in in/)")
    sub = command(feed, "remove", feed_remove, "remove a feed set with `feed set` (a shipped one comes back)")
    sub.add_argument("tenant")
    sub.add_argument("name")
    sub = command(feed, "show", feed_show, "show the tenant's feeds")
    sub.add_argument("tenant")
    sub.add_argument("name", nargs="?", help="one feed, with its template and mapping")

    sub = command(commands, "check", check, "dry run of read, validate and map on a sample file;"
                  " exits non-zero unless every row would be posted")
    sub.add_argument("tenant")
    sub.add_argument("file", type=Path)
    sub.add_argument("--feed", help="feed to check against (default: the tenant's default feed)")
    sub = command(commands, "run", run, "process staged uploads now and wait, with progress")
    sub.add_argument("--tenant", help="only this tenant")
    sub = command(commands, "runs", runs, "list processing runs")
    sub.add_argument("--limit", type=int, default=20)
    sub = command(commands, "uploads", uploads, "a tenant's upload history and states")
    sub.add_argument("name")
    sub.add_argument("--limit", type=int, default=50)
    outbox = command(commands, "outbox", outbox_list,
                     "rows whose delivery is stuck: pending after failed tries, or given up on")
    outbox.add_argument("--tenant", help="only this tenant")
    actions = outbox.add_subparsers(dest="action", metavar="ACTION")
    sub = command(actions, "retry", outbox_retry, "put rows back to pending, their tries forgotten")
    sub.add_argument("ids", nargs="*", type=int, metavar="ID")
    sub.add_argument("--tenant", help="every stuck row of this tenant")
    sub = command(actions, "drop", outbox_drop, f"fail rows for good ({DROPPED!r})")
    sub.add_argument("ids", nargs="*", type=int, metavar="ID")
    sub.add_argument("--tenant", help="every stuck row of this tenant (needs --yes)")
    sub.add_argument("--yes", action="store_true", help="confirm dropping a tenant's rows")
    sub = command(commands, "prune", prune, "delete the files and state the retention rules say are due,"
                  " and print them (the daemon does it every hour)")
    sub.add_argument("--tenant", help="only this tenant (run records are pruned by a whole prune only)")
    sub.add_argument("--dry-run", action="store_true", help="delete nothing; print what would be deleted")
    keys = commands.add_parser(
        "keys", help="the master key that encrypts stored files", description=KEYS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    command(keys, "show", keys_show, "where the master key is, its id, and whether a rotation is unfinished")
    command(keys, "rotate", keys_rotate,
            "wrap every stored file's data key with a new master key (no data re-encrypted); the old key"
            " is deleted at the end; a running daemon picks the new key up by itself, no restart;"
            " run it again to finish a rotation that was killed")
    command(keys, "decrypt", keys_decrypt,
            "write a stored file's content (a report, a spooled .eml, an upload) to stdout").add_argument(
                "file", type=Path)
    command(commands, "migrate", migrate,
            "apply every pending schema migration of every component, once, each store in one transaction,"
            " and say what changed (on PostgreSQL a node refuses to start on an older schema: docs/postgresql.md)")
    listing = command(commands, "sessions", sessions, "logged-in SFTP sessions now, on every worker and node")
    listing.add_argument("--tenant", help="only this tenant")
    actions = listing.add_subparsers(dest="action", metavar="ACTION")
    sub = command(actions, "end", sessions_end, "close sessions, wherever they are served, within seconds")
    sub.add_argument("ids", nargs="*", type=int, metavar="ID")
    sub.add_argument("--tenant", help="every session of this tenant")
    command(commands, "lockouts", lockouts, "list active brute-force lockouts")
    command(commands, "unblock", unblock, "clear the lockout of a source address").add_argument("address")
    return parser


KEYS_HELP = """\
Uploads, snapshots, reports in out/ and spooled mail are stored encrypted (AES-256-GCM), each
file under its own data key, wrapped by the master key in [server] keys_dir (master.key, 0600).
Back that file up apart from the data dir: without it no stored file can be read.

`keys rotate` gives every file's data key a new master key; only the 68-byte key slot of each
file is rewritten, so it is quick. The daemon may keep running: it loads the new key before it
seals its next file, and reloads when it meets a file wrapped by a key it does not hold. One
rotation at a time (another one exits 4). A rotation killed midway keeps every file readable
(master-retiring.key is then kept) and is finished by running it again."""


def read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password from stdin when asked, else a generated one (``True``: print it once)."""
    if not args.password_stdin:
        return generate_password(), True
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        raise CommandError("no password on stdin")
    return password, False


def tenant_add(context: Context, args: argparse.Namespace) -> None:
    password, generated = read_password(args)
    tenant = context.tenants.add(args.name, args.email, password, timezone=args.timezone)
    if args.json:
        print_json({"name": tenant.name, "email": tenant.email, "timezone": tenant.timezone,
                    **({"password": password} if generated else {})})
        return
    print(f"created tenant {tenant.name!r} with folders in/ and out/")
    if generated:
        print(f"password: {password}\n(shown once; store it now)")


def tenant_list(context: Context, args: argparse.Namespace) -> None:
    locked = {lock.key for lock in context.defender.lockouts() if lock.kind == "account"}
    rows = [
        {"name": t.name, "email": t.email, "login": "yes" if t.has_login else "removed",
         "enabled": t.enabled, "locked": t.name in locked, "timezone": t.timezone}
        for t in context.tenants.all()
    ]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["name", "email", "login", "enabled", "locked", "timezone"], empty="no tenants")


def tenant_show(context: Context, args: argparse.Namespace) -> None:
    tenant = context.tenants.get(args.name)
    locks = [lock for lock in context.defender.lockouts() if lock.kind == "account" and lock.key == tenant.name]
    record = {
        "name": tenant.name,
        "email": tenant.email,
        "login": "yes" if tenant.has_login else "removed (files wait until `sftpctl tenant passwd`)",
        "enabled": tenant.enabled,
        "locked until": locks[0].until if locks else None,
        "timezone": tenant.timezone,
        "root": str(context.tenants.folders(tenant.name).root),
        "feeds": [feed.name for feed in context.ingest.feeds.list(tenant.name)],
        "data dictionary": context.tenants.dictionary(tenant.name),
        "uploads": len(context.uploads.history(tenant.name)),
        "created": tenant.created_at,
    }
    if args.json:
        print_json({**record, "retention": _retention_json(tenant)})
    else:
        print_fields({**record, **_retention_fields(tenant)})


def tenant_passwd(context: Context, args: argparse.Namespace) -> None:
    password, generated = read_password(args)
    context.tenants.set_password(args.name, password)
    ended = _end_tenant_sessions(context, args.name, PASSWORD_CHANGED)
    if args.json:
        print_json({"name": args.name, **({"password": password} if generated else {}), "sessions_ended": ended})
    else:
        print(f"password of {args.name!r} changed" + (f": {password}" if generated else "") + _ending(ended))


def tenant_disable(context: Context, args: argparse.Namespace) -> None:
    context.tenants.set_enabled(args.name, False)
    ended = _end_tenant_sessions(context, args.name, DISABLED)
    _done(args, f"tenant {args.name!r} disabled: it cannot log in{_ending(ended)}")


def tenant_enable(context: Context, args: argparse.Namespace) -> None:
    context.tenants.set_enabled(args.name, True)
    _done(args, f"tenant {args.name!r} enabled")


def tenant_unlock(context: Context, args: argparse.Namespace) -> None:
    context.tenants.get(args.name)
    cleared = context.defender.unlock_account(args.name)
    _done(args, f"tenant {args.name!r} unlocked" if cleared else f"tenant {args.name!r} was not locked")


def tenant_email(context: Context, args: argparse.Namespace) -> None:
    context.tenants.set_email(args.name, args.email)
    _done(args, f"contact of {args.name!r} is now {args.email}")


def tenant_remove(context: Context, args: argparse.Namespace) -> None:
    context.tenants.remove_login(args.name)
    ended = _end_tenant_sessions(context, args.name, LOGIN_REMOVED)
    _done(args, f"login of {args.name!r} removed; its files wait unprocessed until "
                f"`sftpctl tenant passwd {args.name}` sets a new one{_ending(ended)}")


# What the client of a session ended by an operator is told, as the SSH disconnect's reason.
PASSWORD_CHANGED = "the account's password was changed: log in again with the new one"
DISABLED = "the account was disabled by the service's operators"
LOGIN_REMOVED = "the account's login was removed by the service's operators"
ENDED = "the session was closed by the service's operators"


def _end_tenant_sessions(context: Context, tenant: str, reason: str) -> int:
    """A login that no longer holds ends the sessions it opened, on every worker and node: a
    leaked password, or a tenant cut off, keeps no session open."""
    return len(end_sessions(context.db, reason, tenant=tenant))


def _ending(count: int) -> str:
    return f"; {count} open session(s) closing within {END_POLL_SECONDS:g} s" if count else ""


RETENTION_HELP = {
    "upload_days": "a processed upload's file in in/ and its snapshot",
    "report_days": "a report in out/, its per-row results, the tenant's spooled mails",
    "rejected_days": "a rejected upload's file in in/ and its snapshot",
}
DEFAULT_DAYS = "default"


def _days(text: str) -> int | str:
    """A ``--*-days`` value: whole days, or ``default`` (the installation's)."""
    if text == DEFAULT_DAYS:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole days or {DEFAULT_DAYS!r}, got {text!r}") from None


def _retention_json(tenant: Tenant) -> dict[str, Any]:
    return {**{rule: getattr(tenant.retention, rule) for rule in RETENTION_RULES}, "own": list(tenant.retention_own)}


def _retention_fields(tenant: Tenant) -> dict[str, str]:
    """``upload days: 30 (installation)``, one line per rule, as ``tenant show`` prints them."""
    return {rule.replace("_", " "): f"{getattr(tenant.retention, rule)}"
            f" ({'tenant' if rule in tenant.retention_own else 'installation'})" for rule in RETENTION_RULES}


def tenant_retention(context: Context, args: argparse.Namespace) -> None:
    changes: dict[str, int | None] = dict.fromkeys(RETENTION_RULES) if args.clear else {}
    for rule in RETENTION_RULES:
        value = getattr(args, rule)
        if value is not None:
            changes[rule] = None if value == DEFAULT_DAYS else value
    tenant = context.tenants.set_retention(args.name, changes)
    if args.json:
        print_json({"name": tenant.name, **_retention_json(tenant)})
    else:
        print_fields({"name": tenant.name, **_retention_fields(tenant)})


def prune(context: Context, args: argparse.Namespace) -> int:
    if args.tenant:
        context.tenants.get(args.tenant)
    pruner = Pruner(context.settings, context.db, context.tenants, context.at_rest)
    result = pruner.prune(utcnow(), args.tenant, args.dry_run)
    for problem in result.problems:
        sys.stderr.write(f"sftpctl: prune: {for_terminal(problem)}\n")
    if args.json:
        print_json({**to_plain(result), "counts": result.counts})
        return 1 if result.problems else 0
    verb = "would delete" if result.dry_run else "deleted"
    rows = [{"tenant": item.tenant, "what": item.what, "upload": item.upload_id, "rule": f"{item.rule} = {item.days}",
             "path": item.path} for item in result.deleted]
    if rows:
        print_table(rows, ["tenant", "what", "upload", "rule", "path"])
    if result.kept:
        print_table([to_plain(item) for item in result.kept], ["tenant", "what", "upload_id", "reason", "path"])
    files = ", ".join(f"{number} {what}" for what, number in sorted(result.counts.items())) or "no file"
    state = result.state
    print_text(f"{verb}: {files}; {state.bodies} request bodies emptied, {state.row_results} row results,"
               f" {state.outbox_rows} outbox rows, {state.notices} notices, {state.runs} run records")
    return 1 if result.problems else 0


def _key_roots(context: Context) -> list[Path]:
    """Where stored files are: the data dir, and the mail spool if it is elsewhere."""
    data, spool = context.settings.data_dir, context.settings.mail_spool
    inside = spool.resolve() == data.resolve() or data.resolve() in spool.resolve().parents
    return [data] if inside or not spool.exists() else [data, spool]


def keys_show(context: Context, args: argparse.Namespace) -> None:
    keyring = context.at_rest.keyring
    record = {
        "master_key": str(keyring.current.path), "key_id": keyring.current.key_id.hex(),
        "rotation_unfinished": rotation_in_progress(context.at_rest.keys_dir),
        "retiring_key_id": keyring.retiring.key_id.hex() if keyring.retiring else None,
        "data_dir": str(context.settings.data_dir),
    }
    if args.json:
        print_json(record)
    else:
        print_fields(record)


def keys_rotate(context: Context, args: argparse.Namespace) -> int:
    """Rotate over every place stored files are; tampered and foreign files are listed (they
    could not be read before either), and make the exit code 1."""
    keys_dir = context.at_rest.keys_dir  # a lost key of a data dir with sealed files stops here
    report = rotate_master_key(keys_dir, _key_roots(context))
    skipped = [*(("tampered", path) for path in report.tampered), *(("foreign key", path) for path in report.foreign)]
    for why, path in skipped:
        sys.stderr.write(f"sftpctl: keys rotate: left as it was ({why}): {for_terminal(str(path))}\n")
    if args.json:
        print_json(report)
    else:
        print_text(f"master key {report.old_key_id} -> {report.new_key_id}"
                   f"{' (an interrupted rotation finished)' if report.resumed else ''}: {report.rewrapped} file(s)"
                   f" rewrapped, {report.already_current} already under the new key, {len(skipped)} left as they"
                   f" were; the old key is deleted")
    return 1 if skipped else 0


def keys_decrypt(context: Context, args: argparse.Namespace) -> None:
    try:
        reader = context.at_rest.open(args.file)
    except FileNotFoundError:
        raise NotFound(f"no file {args.file}") from None
    except IsADirectoryError:
        raise CommandError(f"{args.file} is a folder") from None
    with reader:
        while chunk := reader.read(1024 * 1024):
            sys.stdout.buffer.write(chunk)


def tenant_purge(context: Context, args: argparse.Namespace) -> None:
    if not args.yes:
        raise CommandError(f"purge deletes all files and history of {args.name!r}; add --yes to confirm")
    purge_tenant(context, args.name)
    _done(args, f"tenant {args.name!r} purged: its files, uploads, queued rows and ledger calls")


def fields_list(context: Context, args: argparse.Namespace) -> None:
    context.tenants.get(args.tenant)
    names = context.tenants.dictionary(args.tenant)
    if args.json:
        print_json(names)
    else:
        print("\n".join(names) if names else "(no custom data fields)")


def fields_add(context: Context, args: argparse.Namespace) -> None:
    context.tenants.add_fields(args.tenant, args.fields)
    _done(args, f"data dictionary of {args.tenant!r}: {', '.join(context.tenants.dictionary(args.tenant))}")


def fields_remove(context: Context, args: argparse.Namespace) -> None:
    context.tenants.get(args.tenant)
    context.tenants.remove_fields(args.tenant, args.fields)
    _done(args, f"data dictionary of {args.tenant!r}: "
                f"{', '.join(context.tenants.dictionary(args.tenant)) or '(empty)'}")


def token_show(context: Context, args: argparse.Namespace) -> None:
    token = context.tenants.get(args.tenant).api_token
    print_json({"tenant": args.tenant, "api_token": token}) if args.json else print(token)


def token_rotate(context: Context, args: argparse.Namespace) -> None:
    token = context.tenants.rotate_token(args.tenant)
    print_json({"tenant": args.tenant, "api_token": token}) if args.json else print(token)


def feed_set(context: Context, args: argparse.Namespace) -> None:
    context.tenants.get(args.tenant)
    try:
        text = args.file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise NotFound(f"{args.file}: {exc.strerror}") from None
    except OSError as exc:
        raise CommandError(f"{args.file}: {exc.strerror}") from None
    missing = _missing_fields(parse_feed(text, str(args.file)), context.tenants.dictionary(args.tenant))
    if missing:
        names = ", ".join(missing)
        raise CommandError(f"{args.file}: fields not in the data dictionary of {args.tenant!r}: {names};"
                           f" add them first: sftpctl fields add {args.tenant} {' '.join(missing)}")
    feed = context.ingest.feeds.set(args.tenant, text, source=str(args.file), default=args.default)
    _done(args, f"feed {feed.name!r} of {args.tenant!r} set from {args.file}"
                + (" (default feed)" if args.default else ""))


def _missing_fields(feed: Feed, dictionary: Sequence[str]) -> list[str]:
    """Custom (or marketing) data fields the feed names, by a column or a constant, that the
    dictionary lacks (compared as validation compares them, ignoring case). Columns the feed
    does not name (``unmapped``) can only be checked in a file, by ``check`` and the run."""
    targets = [*feed.routes.values(), *(target for target, _ in feed.mapping.constants)]
    named = {target.field for target in targets if target is not None and target.section in DICTIONARY_SECTIONS}
    known = {name.lower() for name in dictionary}
    return sorted(name for name in named if name.lower() not in known)


def feed_remove(context: Context, args: argparse.Namespace) -> None:
    context.tenants.get(args.tenant)
    store = context.ingest.feeds
    store.get(args.tenant, args.name)  # NotFound, naming the feeds there are
    was_default = store.default_name(args.tenant) == args.name
    waiting = [staged for staged in context.ingest.staged.waiting([args.tenant]) if staged.feed == args.name]
    if waiting:
        raise Conflict(f"{len(waiting)} file(s) of feed {args.name!r} wait for the next run (e.g. {waiting[0].path});"
                       f" they would be rejected: process them first (sftpctl run --tenant {args.tenant})")
    if not store.remove(args.tenant, args.name):
        raise CommandError(f"feed {args.name!r} is one every tenant has and cannot be removed;"
                           " `feed set` replaces it")
    shipped = store.find(args.tenant, args.name)
    message = f"feed {args.name!r} of {args.tenant!r} removed"
    if shipped is not None:
        message += "; the shipped feed of that name is back"
    elif not was_default:
        message += f"; files put in in/{args.name}/ are refused from now on"
    if was_default:
        message += f"; files directly in in/ go to feed {store.default_name(args.tenant)!r} now"
    _done(args, message)


def feed_show(context: Context, args: argparse.Namespace) -> None:
    context.tenants.get(args.tenant)
    store = context.ingest.feeds
    if args.name:
        feed = store.get(args.tenant, args.name)
        if args.json:
            print_json({"feed": feed, "text": store.text(args.tenant, args.name)})
        else:
            print_text(format_feed(feed))
        return
    default = store.default(args.tenant).name
    rows = [{"feed": f.name, "default": f.name == default, "kind": f.mapping.kind,
             "folder": "in/" if f.name == default else f"in/{f.name}/",
             "destination": f.destination.url or "embedded API"} for f in store.list(args.tenant)]
    print_json(rows) if args.json else print_table(rows, ["feed", "default", "kind", "folder", "destination"])


def check(context: Context, args: argparse.Namespace) -> int:
    tenant = context.tenants.get(args.tenant)
    store = context.ingest.feeds
    feed = store.get(tenant.name, args.feed) if args.feed else store.default(tenant.name)
    settings = context.settings
    result = check_sample(
        args.file, feed, context.tenants.dictionary(tenant.name), ZoneInfo(tenant.timezone),
        settings.post.max_bad_row_share, settings.server.max_upload_bytes,
        settings.server.allowed_extensions, settings.parse,
    )
    if args.json:
        print_json({
            "file": str(result.path), "feed": result.feed, "template": result.template,
            "timezone": result.timezone, "ok": result.ok, "file_error": result.file_error,
            "rows": result.rows, "good": result.good, "bad": result.bad,
            "row_errors": [{"row": row.row_number, "error": row.error} for row in result.row_errors],
            "requests": [{"row": number, "method": request.method, "path": request.path, "body": request.body}
                         for number, request in result.requests],
        })
    else:
        print_text(format_check(result))
    return 0 if result.ok else 1


def run(context: Context, args: argparse.Namespace) -> int:
    if args.tenant:
        context.tenants.get(args.tenant)

    # A reader that goes away (``| head``) silences the output; the run still finishes its work.
    printer = RunPrinter(on_gone=_silence_stdout)

    async def go() -> Any:
        async with embedded_api_running(context.settings, context.tenants) as embedded_base:
            if embedded_base and not args.json:
                printer.note(serving_note(context.settings, embedded_base))
            return await context.ingest.run(tenant=args.tenant, trigger="manual",
                                            progress=None if args.json else printer,
                                            embedded_base=embedded_base)

    summary = asyncio.run(go())
    if printer.gone:
        return EXIT_BROKEN_PIPE
    if args.json:
        print_json(summary)
    return 0 if summary.ok else 1


def runs(context: Context, args: argparse.Namespace) -> None:
    rows = []
    for record in context.ingest.runs(args.limit):
        row = to_plain(record)
        if record.status == "running":  # rows of the tenants it works on now, and its expected finish
            pace = context.ingest.run_pace(record.id)
            row.update(posted=pace.done, pending=pace.left, expected_finish=pace.expected_finish())
        rows.append(row)
    if args.json:
        print_json(rows)
    else:
        columns = ["id", "trigger", "started_at", "finished_at", "status", "files", "posted", "failed", "rejected",
                   "pending", "expected_finish"]
        print_table(rows, columns, empty="no runs yet")


def uploads(context: Context, args: argparse.Namespace) -> None:
    context.tenants.get(args.name)
    rows = [to_plain(item) for item in context.ingest.upload_states(args.name, limit=args.limit)]
    if args.json:
        print_json(rows)
    else:
        columns = ["id", "path", "size", "received_at", "source", "state", "posted", "failed", "rejected",
                   "pending", "expected_finish"]
        print_table(rows, columns, empty=f"no uploads for {args.name!r}")


def outbox_list(context: Context, args: argparse.Namespace) -> None:
    if args.tenant:
        context.tenants.get(args.tenant)
    items = context.ingest.outbox.stuck(args.tenant)
    if args.json:
        print_json([{**to_plain(item), "age_seconds": round(item.age_seconds)} for item in items])
        return
    rows = [{"id": item.id, "tenant": item.tenant, "file": item.file, "row": item.row, "state": item.state,
             "attempts": item.attempts, "age": _age(item.age_seconds), "next try": item.next_attempt_at,
             "last error": item.error} for item in items]
    print_table(rows, ["id", "tenant", "file", "row", "state", "attempts", "age", "next try", "last error"],
                empty="no stuck rows")


def outbox_retry(context: Context, args: argparse.Namespace) -> None:
    ids, tenant = _outbox_targets(context, args)
    count = context.ingest.retry_rows(ids, tenant)
    _done(args, f"{count} row(s) back to pending; the next run sends them")


def outbox_drop(context: Context, args: argparse.Namespace) -> None:
    ids, tenant = _outbox_targets(context, args)
    if tenant and not args.yes:
        raise CommandError(f"drop fails every stuck row of {tenant!r} for good; add --yes to confirm")
    count = context.ingest.outbox.drop(ids, tenant)
    _done(args, f"{count} row(s) dropped; their files finish at the next run")


def _outbox_targets(context: Context, args: argparse.Namespace) -> tuple[list[int], str | None]:
    if bool(args.ids) == bool(args.tenant):
        raise CommandError("name the rows: one or more IDs (see `sftpctl outbox`), or --tenant NAME")
    if args.tenant:
        context.tenants.get(args.tenant)
    return list(args.ids), args.tenant


def _age(seconds: float) -> str:
    """``3d04h``, ``2h05m`` or ``7m``: enough to see how long a row has waited."""
    minutes = int(seconds // 60)
    days, hours = divmod(minutes // 60, 24)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes % 60:02d}m" if hours else f"{minutes}m"


def migrate(context: Context, args: argparse.Namespace) -> None:
    from service.schema import migrate_all

    done = migrate_all(context.settings)
    if args.json:
        print_json([{**to_plain(item), "changed": item.changed} for item in done])
        return
    for item in done:
        change = f"{item.before} -> {item.after}" if item.changed else f"{item.after} (current)"
        print_text(f"{item.store}: {item.component} {change}")
    changed = sum(item.changed for item in done)
    print_text(f"migrated {changed} component{'s' if changed != 1 else ''}" if changed
               else "nothing to migrate: every schema is current")


def sessions(context: Context, args: argparse.Namespace) -> None:
    if args.tenant:
        context.tenants.get(args.tenant)
    rows = [to_plain(session) for session in live_sessions(context.db, args.tenant)]
    if args.json:
        print_json(rows)
        return
    now = utcnow()
    for row in rows:
        row["age"] = _age((now - parse_iso(row["opened_at"])).total_seconds())
    print_table(rows, ["id", "tenant", "source", "host", "pid", "opened_at", "age"], empty="no sessions open")


def sessions_end(context: Context, args: argparse.Namespace) -> None:
    if bool(args.ids) == bool(args.tenant):
        raise CommandError("name the sessions: one or more IDs (see `sftpctl sessions`), or --tenant NAME")
    if args.tenant:
        context.tenants.get(args.tenant)
    ended = end_sessions(context.db, ENDED, tenant=args.tenant, ids=args.ids)
    if args.ids and not ended:
        raise NotFound(f"no open session with id {', '.join(map(str, args.ids))}")
    _done(args, f"{len(ended)} session(s) closing within {END_POLL_SECONDS:g} s")


def lockouts(context: Context, args: argparse.Namespace) -> None:
    rows = [to_plain(lock) for lock in context.defender.lockouts()]
    print_json(rows) if args.json else print_table(rows, ["kind", "key", "source", "until", "failures"],
                                                   empty="no active lockouts")


def unblock(context: Context, args: argparse.Namespace) -> None:
    cleared = context.defender.unlock_source(args.address)
    _done(args, f"source {args.address} unblocked" if cleared else f"source {args.address} was not blocked")


def _done(args: argparse.Namespace, message: str) -> None:
    print_json({"ok": True, "message": message}) if args.json else print_text(message)


if __name__ == "__main__":
    sys.exit(main())
