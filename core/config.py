"""Typed settings, loaded from one TOML file and overridden by command-line flags.

Every tunable of the product lives here, so there are no magic numbers scattered around the
code. ``etc/sftpd.toml`` is the commented example of this file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from core.db import Location, PostgresLocation
from core.errors import UsageError
from core.timestamps import PACIFIC_ZONE

MiB = 1024 * 1024

# The one default zone: of the schedule's slots and of a new tenant (its Excel-style timestamps,
# its reports). The Signal API's home zone, which the hosted original runs on.
DEFAULT_ZONE = PACIFIC_ZONE

# The Signal API version the embedded API serves and our feeds post to (any YYYY-MM-DD is accepted).
EMBEDDED_API_VERSION = "2020-10-01"

# The retention rules, by their setting names (``[retention]``, a tenant's overrides).
RETENTION_RULES = ("upload_days", "report_days", "rejected_days")
RETENTION_MAX_DAYS = 36500

# [server] workers: 0 means one per core, up to this many; no more than MAX_WORKERS in any case.
MAX_AUTO_WORKERS = 4
MAX_WORKERS = 64

# [post] embedded_batch_rows at most: a batch is one ledger transaction, read whole into memory.
MAX_BATCH_ROWS = 100_000


class ConfigError(ValueError, UsageError):
    """A setting is missing, unknown or of the wrong type; the message names it."""


@dataclass(frozen=True)
class ServerSettings:
    """The SSH/SFTP listener and the upload rules it enforces."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 2222
    keys_dir: Path = Path("keys")
    max_upload_bytes: int = 5 * MiB
    allowed_extensions: tuple[str, ...] = ("csv", "xlsx", "xls")
    # Suffixes clients use for uploads in progress (WinSCP, FileZilla, rclone, lftp, Cyberduck).
    temporary_suffixes: tuple[str, ...] = (".filepart", ".part", ".partial", ".tmp", ".upload")
    login_timeout_seconds: float = 60.0
    max_connections: int = 1000
    # Shape of paths under in/ (sftpd/rules.py): folder levels below in/, bytes per name (at
    # most 255, the OS limit) and bytes per whole path such as /in/a/b.csv.
    max_folder_depth: int = 8
    max_name_bytes: int = 255
    max_path_bytes: int = 1024
    # Connection limits (sftpd/limits.py): no one address or tenant can use up the listener.
    # Connections from one address not logged in yet, and all connections from one address.
    max_prelogin_per_source: int = 20
    max_connections_per_source: int = 100
    # An IPv6 source is its network of this many bits: one subscriber usually holds a /64.
    ipv6_prefix_length: int = 64
    # Logged-in connections per tenant, across workers and nodes (sftpd/sessions.py); one more
    # login is refused with the reason.
    max_sessions_per_tenant: int = 10
    # A logged-in connection with no SFTP request for this long is closed (0: never).
    idle_timeout_seconds: float = 600.0
    # An upload averaging less than this over the window is aborted, never published (0: off).
    min_upload_bytes_per_second: int = 1024
    upload_rate_window_seconds: float = 60.0
    # Files open at once per logged-in connection (a folder listing counts while it is read).
    max_handles_per_session: int = 64
    # On SIGTERM, uploads under way get this long to finish before they are discarded.
    drain_seconds: float = 30.0
    # Behind a load balancer (sftpd/proxy_protocol.py): connections from trusted_proxies (addresses
    # or CIDR networks) must begin with a PROXY protocol v2 header, whose client address is then
    # the connection's; connections from anywhere else are served as direct ones.
    proxy_protocol: bool = False
    trusted_proxies: tuple[str, ...] = ()
    # Processes serving SSH on the one port (service/workers.py): 1 is one process, as always;
    # N > 1 is a supervisor and N workers, each accepting (SO_REUSEPORT); 0 is one per core, at
    # most MAX_AUTO_WORKERS.
    workers: int = 1

    @property
    def worker_count(self) -> int:
        """How many processes serve SSH: ``workers``, or for 0 one per core up to a cap."""
        return self.workers or min(os.cpu_count() or 1, MAX_AUTO_WORKERS)

    def __post_init__(self) -> None:
        for entry in self.trusted_proxies:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ConfigError(f"server: trusted_proxies: {entry!r} is not an IP address or "
                                  "network (e.g. 10.0.0.5 or 10.0.0.0/24)") from None
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"server: workers: {self.workers} is not between 0 (one per core) "
                              f"and {MAX_WORKERS}")
        if self.worker_count > 1 and self.listen_port == 0:
            raise ConfigError("server: workers > 1 share one listen_port; port 0 (any free port) "
                              "would give each worker its own: name a port")
        if self.proxy_protocol and not self.trusted_proxies:
            raise ConfigError("server: proxy_protocol is on but trusted_proxies is empty: name "
                              "the load balancers' addresses")


@dataclass(frozen=True)
class DefenderSettings:
    """Brute-force protection, per account and per source address."""

    account_max_failures: int = 5
    account_window_seconds: float = 300.0
    account_lockout_seconds: float = 900.0
    # Per (account, source address) pair: failures from one address lock the account there.
    pair_max_failures: int = 5
    pair_window_seconds: float = 300.0
    pair_lockout_seconds: float = 900.0
    # The account-wide lockout spares sources that logged in to the account within this many
    # days (0: remember none, the account lockout stops every source).
    known_source_days: float = 90.0
    source_max_failures: int = 20
    source_window_seconds: float = 300.0
    source_lockout_seconds: float = 900.0
    failure_delay_seconds: float = 1.0


@dataclass(frozen=True)
class PasswordSettings:
    """argon2id cost; the defaults are OWASP's minimum (19 MiB, 2 passes, 1 lane)."""

    argon2_memory_kib: int = 19456
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1


@dataclass(frozen=True)
class ScheduleSettings:
    """When the processor runs, and how the watcher scans for files that arrived another way."""

    timezone: str = DEFAULT_ZONE
    hours: tuple[int, ...] = (0, 6, 12, 18)
    scan_interval_seconds: float = 60.0
    stable_seconds: float = 30.0
    # Tenants a run processes side by side, each under its own claim (``ingest.claims``); files
    # are read at most one per core at a time whatever this says.
    concurrent_tenants: int = 8


@dataclass(frozen=True)
class ApiSettings:
    """The embedded Signal API + Transactions API."""

    enabled: bool = True
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    rate_limit_requests: int = 100
    rate_limit_window_seconds: float = 60.0
    # Calls farther than this (in weighted seconds) from a call_start_time search never match.
    match_tolerance_seconds: float = 600.0
    # Largest request body read (413 beyond it, counted while streaming, after the token check).
    max_body_bytes: int = 1 * MiB
    # Deepest JSON nesting of a request body (objects and arrays; 400 beyond it).
    max_json_depth: int = 32


@dataclass(frozen=True)
class PostSettings:
    """How the processor posts rows to a destination."""

    rate_limit_requests: int = 100
    rate_limit_window_seconds: float = 60.0
    timeout_seconds: float = 30.0
    max_attempts: int = 8
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 120.0
    max_bad_row_share: float = 0.5
    # A row that used up max_attempts in a run is set aside this long before the next try.
    row_retry_after_seconds: float = 900.0
    # A row still failing (5xx, time-out, no connection) after this many tries in all, or this
    # many hours after it was queued, is marked failed with its last error.
    max_row_attempts_total: int = 24
    max_row_age_hours: float = 72.0
    # Rows for the embedded API are written into this data dir's ledger.db in process, in
    # batches, unpaced (ingest/delivery/destinations.py); false posts them over HTTP to the API
    # like a remote destination, paced and retried as above.
    embedded_in_process: bool = True
    # Rows per ledger transaction there: more commit less often and rewrite each index page less
    # (a 5 MB signal file's batches of 500 wrote 48,000 pages to the WAL, of 2,000 32,000);
    # fewer keep the embedded API's other writers waiting less (about 0.1 s per 1,000 signals).
    embedded_batch_rows: int = 1000

    def __post_init__(self) -> None:
        if isinstance(self.embedded_batch_rows, bool) or not 1 <= self.embedded_batch_rows <= MAX_BATCH_ROWS:
            raise ConfigError(f"post: embedded_batch_rows: {self.embedded_batch_rows} is not between 1 "
                              f"and {MAX_BATCH_ROWS}")


@dataclass(frozen=True)
class ParseSettings:
    """Bounds on reading one uploaded file: a child process of its own, and a workbook pre-check."""

    # Limits of the child that reads, validates and maps one file (ingest/sandbox.py).
    memory_mib: int = 2048
    cpu_seconds: float = 120.0
    wall_seconds: float = 300.0
    # A workbook is refused before any reader opens it when its zip directory or its first
    # sheet's declared size says it would unpack to far more than its upload (ingest/rows/precheck.py).
    max_workbook_entries: int = 1000
    max_unpacked_mib: int = 256
    # Per entry of 1 MiB or more unpacked; Apache POI's zip-bomb guard uses the same 100:1.
    max_compression_ratio: float = 100.0
    max_sheet_cells: int = 5_000_000


@dataclass(frozen=True)
class RetentionSettings:
    """How long files are kept once processed (``ingest/retention.py`` prunes them every hour and
    on ``sftpctl prune``); a tenant may have rules of its own (``sftpctl tenant retention``).
    0 days: gone at the first prune after processing."""

    # A processed upload: its file in in/ (only while it is still that very upload) and its
    # staged snapshot; the outbox keeps the rows it posted without their request bodies after it.
    upload_days: int = 30
    # A report in out/, and with it the file's per-row results and delivered notices; the mails
    # of the spool and the run records follow the same rule.
    report_days: int = 90
    # A rejected upload: its file in in/ and its snapshot.
    rejected_days: int = 30

    def __post_init__(self) -> None:
        for name in RETENTION_RULES:
            days = getattr(self, name)
            if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= RETENTION_MAX_DAYS:
                raise ConfigError(f"retention: {name}: expected whole days, 0 to {RETENTION_MAX_DAYS}")


@dataclass(frozen=True)
class MailSettings:
    """Failure e-mail. Without an SMTP host, messages are written as .eml files instead."""

    sender: str = "sftp-inbox@localhost"
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    # How long one SMTP conversation may take before the message goes to the .eml outbox instead.
    smtp_timeout_seconds: float = 30.0
    outbox_dir: Path | None = None


@dataclass(frozen=True)
class AdminSettings:
    """The operator's listener: /metrics, /healthz and the status page (service/admin/)."""

    listen_host: str = "127.0.0.1"
    # 0 turns the admin listener off.
    listen_port: int = 9090
    # A bearer token every request must carry; required when listen_host is not loopback.
    token: str = ""
    # Add a tenant label to the per-tenant figures (for small installations only).
    per_tenant_labels: bool = False
    # /healthz answers 503 when the data dir's file system has less free than this.
    min_free_disk_bytes: int = 1024 * MiB
    # A scrape or page load reads the state database for at most this long (503 beyond it).
    read_timeout_seconds: float = 5.0


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the state and the embedded ledger live (docs/postgresql.md)."""

    # Empty: SQLite files in data_dir (state.db, ledger.db), the embedded default.
    # ``postgresql://user:password@host:port/dbname`` (any libpq URL): a PostgreSQL database, one
    # schema per store (``state``, ``ledger``), shared by every node of an installation.
    url: str = ""
    # Whether a start may migrate a schema older than the program: "at-start" (SQLite's default:
    # one node), "explicit" (PostgreSQL's default: a cluster migrates with `sftpctl migrate`,
    # docs/postgresql.md); empty: the engine's default. A new, empty database is set up either way.
    migrate: str = ""

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"database: url: {self.url.split(':', 1)[0]!r} is not a database this program "
                              "speaks: leave it empty for SQLite files, or give a postgresql:// URL")
        if self.migrate not in ("", "at-start", "explicit"):
            raise ConfigError(f"database: migrate: {self.migrate!r}: say \"at-start\" or \"explicit\"")
        if self.migrate == "explicit" and not self.url:
            raise ConfigError("database: migrate = \"explicit\" is for PostgreSQL (a url): one SQLite node"
                              " migrates its own files at start")

    @property
    def migrates_at_start(self) -> bool:
        """Whether a start (or any command but ``sftpctl migrate``) may migrate an older schema."""
        return self.migrate == "at-start" if self.migrate else not self.url


@dataclass(frozen=True)
class Settings:
    """All settings. ``data_dir`` holds the state database, tenant folders and mail outbox."""

    data_dir: Path = Path("var")
    log_level: str = "INFO"
    server: ServerSettings = field(default_factory=ServerSettings)
    defender: DefenderSettings = field(default_factory=DefenderSettings)
    passwords: PasswordSettings = field(default_factory=PasswordSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    post: PostSettings = field(default_factory=PostSettings)
    parse: ParseSettings = field(default_factory=ParseSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    mail: MailSettings = field(default_factory=MailSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)

    @property
    def state_db(self) -> Path:
        """The state's SQLite file (used when ``[database] url`` is empty)."""
        return self.data_dir / "state.db"

    @property
    def state_location(self) -> Location:
        """Where the state store lives: ``[database] url``'s ``state`` schema, else :attr:`state_db`."""
        return PostgresLocation(self.database.url, "state", self.database.migrates_at_start) \
            if self.database.url else self.state_db

    @property
    def ledger_location(self) -> Location:
        """Where the embedded ledger lives: ``[database] url``'s ``ledger`` schema, else :attr:`ledger_db`."""
        return PostgresLocation(self.database.url, "ledger", self.database.migrates_at_start) \
            if self.database.url else self.ledger_db

    @property
    def ledger_db(self) -> Path:
        return self.data_dir / "ledger.db"

    @property
    def tenants_dir(self) -> Path:
        return self.data_dir / "tenants"

    @property
    def mail_spool(self) -> Path:
        """Where failure mail is written as ``.eml`` files (``[mail] outbox_dir`` keeps its name
        in config files, which operators already have)."""
        return self.mail.outbox_dir or self.data_dir / "mail"

    @property
    def api_url(self) -> str:
        return f"http://{self.api.listen_host}:{self.api.listen_port}"

    @property
    def embedded_api_base(self) -> str:
        """Where feeds without a destination of their own post."""
        return f"{self.api_url}/api/{EMBEDDED_API_VERSION}"

    def replace(self, **changes: Any) -> Settings:
        """A copy with top-level fields or ``section__field`` keys changed."""
        top: dict[str, Any] = {}
        sections: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            if "__" in key:
                section, name = key.split("__", 1)
                sections.setdefault(section, {})[name] = value
            else:
                top[key] = value
        for section, values in sections.items():
            top[section] = dataclasses.replace(getattr(self, section), **values)
        return dataclasses.replace(self, **top)


def load_settings(path: Path | None = None) -> Settings:
    """Read ``path`` (TOML) over the defaults; no file means the embedded defaults."""
    if path is None:
        return Settings()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return cast(Settings, _build(Settings, raw, str(path)))


def _build(cls: type, raw: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
    values = {name: _coerce(hints[name], value, f"{where}: {name}") for name, value in raw.items()}
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a [section]")
        return _build(cast(type, hint), value, where)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(options[0], value, where)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        return tuple(_coerce(item, v, where) for v in value)
    if hint is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a path string")
        return Path(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got a boolean")
    if not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
    return value


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) into its parts, with a clear error."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"listen address {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)
