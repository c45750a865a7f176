"""Feeds: a template, a mapping of its columns to request fields, and a destination.

Files directly in a tenant's ``in/`` go to its default feed, files in ``in/<feed>/`` to that feed.
Operators write feeds in TOML (commented examples in ``etc/feeds/``)::

    name = "orders"                    # also the folder name under in/
    template = "signals"               # a shipped template, or an inline [template] table
                                       # (see ingest.rows.templates; it may `extends` a shipped one)
    [mapping]
    kind = "signal"                    # a kind of ingest.rows.kinds: "signal", "lookup", "call"...
    table = "accounts"                 # lookup only: the lookup table to fill
    unmapped = "custom_data"           # where other columns go: the kind's open section
                                       # (custom_data, data, attributes) or "ignore"
    [mapping.columns]                  # file column = request field (or "ignore")
    "Order ID" = "signal.partner_unique_id"
    "Plan" = "custom_data.plan_type"
    [mapping.constants]                # request field = the same value for every row
    "signal.name" = "Sale"

    [destination]                      # optional
    url = "https://example.com/api"    # default: the embedded API
    token = "..."                      # default: the tenant's own token

A template column that is not listed under ``mapping.columns`` goes to the request field of the
same name when the kind has one (``transaction_id`` to ``search.transaction_id``, ``primary_key``
to ``lookup.primary_key``, ``call_start`` to ``call.call_start``), else to the ``unmapped`` section
under its own name. Columns the template does not list (when it keeps them) go to ``unmapped`` too.
So the shipped templates need no ``[mapping.columns]`` at all. An inline template column that
declares no type takes the type of the request field it is mapped to.

A feed is checked whole when it is parsed; every error names the line of the offending key.
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from collections.abc import Mapping as MappingType
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from ingest.rows import fields
from ingest.rows.coercion import checker
from ingest.rows.errors import FeedError
from ingest.rows.fields import IGNORE, OPEN_SECTIONS, Target
from ingest.rows.kinds import KINDS
from ingest.rows.templates import Template, TemplateError, get_template, parse_template

__all__ = [
    "DEFAULT_FEED",
    "REQUIRED_TARGETS",
    "Destination",
    "Feed",
    "FeedError",
    "Mapping",
    "default_feeds",
    "format_feed",
    "parse_feed",
    "resolve_routes",
]

#: The feed of files dropped directly in ``in/``.
DEFAULT_FEED = "signals"

FEED_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}", re.ASCII)
TABLE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)

#: A new tenant's feeds, parsed like any operator's file so they obey the same rules.
DEFAULT_FEED_TEXTS = {
    "signals": 'name = "signals"\ntemplate = "signals"\n[mapping]\nkind = "signal"\n',
    "calls": 'name = "calls"\ntemplate = "calls"\n[mapping]\nkind = "call"\n',
}

#: Request fields a row of each kind cannot do without (declared in ``ingest.rows.kinds``).
REQUIRED_TARGETS = {name: kind.required for name, kind in KINDS.items()}

_FEED_KEYS = frozenset({"name", "template", "mapping", "destination"})
_MAPPING_KEYS = frozenset({"kind", "table", "unmapped", "columns", "constants"})
_DESTINATION_KEYS = frozenset({"url", "token"})
_TIMESTAMP_TYPES = frozenset({"timestamp", "iso_utc"})
# Checkers want a zone; constants are never timestamps, so any zone gives the same answer.
_CONSTANT_ZONE = ZoneInfo("UTC")

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Destination:
    """Where requests go. ``None`` means the embedded API, and the tenant's own token."""

    url: str | None = None
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Mapping:
    """How the columns of a row become a request; see the module docstring.

    ``columns`` are the explicit entries (file column, target or None to ignore it),
    ``constants`` the fixed values (target, canonical text).
    """

    kind: str
    columns: tuple[tuple[str, Target | None], ...] = ()
    constants: tuple[tuple[Target, str], ...] = ()
    unmapped: str | None = None
    table: str | None = None

    @property
    def unmapped_section(self) -> str | None:
        """The section unlisted columns go to; None when they are ignored."""
        if self.unmapped == IGNORE:
            return None
        return self.unmapped or OPEN_SECTIONS[self.kind]


@dataclass(frozen=True)
class Feed:
    """A tenant's feed; see the module docstring. Made by ``parse_feed`` or ``default_feeds``."""

    name: str
    template: Template
    mapping: Mapping
    destination: Destination = Destination()

    @cached_property
    def routes(self) -> dict[str, Target | None]:
        """Target of every template column and explicitly mapped column, by lower-case name."""
        return resolve_routes(self.template, self.mapping)

    def target(self, column: str) -> Target | None:
        """Where the value of ``column`` goes; None when it is dropped."""
        try:
            return self._targets[column]
        except KeyError:
            pass
        lowered = column.lower()
        if lowered in self.routes:
            target = self.routes[lowered]
        else:
            section = self.mapping.unmapped_section
            target = Target(section, column) if section else None
        self._targets[column] = target
        return target

    @cached_property
    def _targets(self) -> dict[str, Target | None]:
        """Answers of ``target`` so far: it is asked once per value of every row."""
        return {}


def parse_feed(text: str, source: str = "<feed>") -> Feed:
    """A feed from its TOML text; FeedError names ``source``, the line and the reason."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, reason = _decode_error(text, exc)
        raise FeedError(source, line, reason) from None
    try:
        return _build_feed(data)
    except _Invalid as exc:
        raise FeedError(source, _line_of(text, exc.path), exc.reason) from None


@functools.cache
def _parsed_default_feeds() -> dict[str, Feed]:
    return {
        name: parse_feed(text, f"<default feed {name}>")
        for name, text in DEFAULT_FEED_TEXTS.items()
    }


def default_feeds() -> dict[str, Feed]:
    """A new tenant's feeds: ``signals`` (the default) and ``calls``; parsed once, a fresh dict."""
    return dict(_parsed_default_feeds())


def format_feed(feed: Feed) -> str:
    """The feed as an operator reads it: each column, its type and where its values go."""
    template, mapping = feed.template, feed.mapping
    destination = feed.destination.url or "the embedded API"
    token = "the tenant's token" if feed.destination.token is None else "the feed's own token"
    lines = [
        f"feed {feed.name}: {mapping.kind} requests to {destination}, with {token}",
        (f"template {template.name}: {'ordered' if template.ordered else 'any order'},"
        f" other columns {template.extra_columns}"),
    ]
    if mapping.table:
        lines.append(f"lookup table {mapping.table}")
    for column in template.columns:
        target = feed.target(column.name)
        flags = " required" if column.required else ""
        lines.append(f"  {column.name} ({column.type}{flags}) -> {target or IGNORE}")
    for name, target in mapping.columns:
        if template.column(name) is None:
            lines.append(f"  {name} (extra column) -> {target or IGNORE}")
    for target, value in mapping.constants:
        lines.append(f"  constant {json.dumps(value)} -> {target}")
    if template.extra_columns == "custom_data":
        lines.append(f"  other columns -> {mapping.unmapped_section or IGNORE}.COLUMN")
    return "\n".join(lines)


def resolve_routes(template: Template, mapping: Mapping) -> dict[str, Target | None]:
    """Targets by lower-case column name; ValueError when two sources claim one target."""
    claimed: dict[tuple[str, str], str] = {}

    def claim(target: Target | None, source: str) -> Target | None:
        if target is None:
            return None
        key = (target.section, target.field.lower())
        if key in claimed:
            raise ValueError(f"{claimed[key]} and {source} both map to {target}")
        claimed[key] = source
        return target

    for constant, _ in mapping.constants:
        claim(constant, f"constant {constant}")
    routes: dict[str, Target | None] = {}
    for name, explicit in mapping.columns:
        routes[name.lower()] = claim(explicit, f"column {name!r}")
    section = mapping.unmapped_section
    for column in template.columns:
        if column.name.lower() in routes:
            continue
        target = fields.by_name(mapping.kind, column.name)
        if target is None and section:
            target = Target(section, column.name)
        routes[column.name.lower()] = claim(target, f"column {column.name!r}")
    return routes


class _Invalid(Exception):
    def __init__(self, path: KeyPath, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


def _build_feed(data: dict[str, Any]) -> Feed:
    _refuse_unknown(data, _FEED_KEYS, ())
    name = data.get("name")
    if not isinstance(name, str) or not FEED_NAME.fullmatch(name):
        raise _Invalid(
            ("name",),
            "the feed needs a name of 1-32 lower-case letters, digits, '-' or '_'"
            " (it is also the folder name under in/)",
        )
    raw_mapping = data.get("mapping")
    if not isinstance(raw_mapping, dict):
        raise _Invalid(("mapping",), "the feed needs a [mapping] table with at least its kind")
    _refuse_unknown(raw_mapping, _MAPPING_KEYS, ("mapping",))
    kind = raw_mapping.get("kind")
    if kind not in fields.KINDS:
        raise _Invalid(
            ("mapping", "kind"), f"mapping kind must be one of {', '.join(fields.KINDS)}"
        )
    explicit = _explicit_columns(kind, raw_mapping.get("columns", {}))
    template = _template(data.get("template"), name, kind, explicit)
    mapping = Mapping(
        kind=kind,
        columns=tuple(explicit.items()),
        constants=_constants(kind, raw_mapping.get("constants", {})),
        unmapped=_unmapped(kind, raw_mapping.get("unmapped")),
        table=_table(kind, raw_mapping.get("table")),
    )
    _check_columns_exist(template, explicit)
    try:
        routes = resolve_routes(template, mapping)
    except ValueError as exc:
        raise _Invalid(("mapping",), str(exc)) from None
    _check_required_targets(mapping, routes)
    return Feed(name=name, template=template, mapping=mapping, destination=_destination(data))


def _explicit_columns(kind: str, raw: Any) -> dict[str, Target | None]:
    if not isinstance(raw, dict):
        raise _Invalid(
            ("mapping", "columns"), 'mapping.columns must be a table: "column" = "field"'
        )
    explicit: dict[str, Target | None] = {}
    seen: set[str] = set()
    for column, value in raw.items():
        path = ("mapping", "columns", column)
        if not column.strip():
            raise _Invalid(path, "a mapped column has an empty name")
        if column.lower() in seen:
            raise _Invalid(path, f"column {column!r} is mapped twice")
        seen.add(column.lower())
        if not isinstance(value, str):
            raise _Invalid(
                path, f'column {column!r}: the field must be a string like "signal.name"'
            )
        explicit[column.strip()] = None if value == IGNORE else _target(kind, value, path)
    return explicit


def _target(kind: str, text: str, path: KeyPath) -> Target:
    try:
        return fields.parse_target(kind, text)
    except ValueError as exc:
        raise _Invalid(path, str(exc)) from None


def _template(raw: Any, name: str, kind: str, explicit: dict[str, Target | None]) -> Template:
    if isinstance(raw, str):
        try:
            return get_template(raw)
        except KeyError as exc:
            raise _Invalid(("template",), str(exc.args[0])) from None
    if not isinstance(raw, dict):
        raise _Invalid(
            ("template",), "template must name a shipped template or be a [template] table"
        )
    by_column = {column.lower(): target for column, target in explicit.items()}

    def default_type(column: str) -> str:
        target = by_column.get(column.lower()) or fields.by_name(kind, column)
        if target is None:
            return "string"
        return fields.target_type(target)

    try:
        return parse_template(raw, name=name, default_type=default_type)
    except TemplateError as exc:
        raise _Invalid(("template", *exc.path), exc.reason) from None


def _constants(kind: str, raw: Any) -> tuple[tuple[Target, str], ...]:
    if not isinstance(raw, dict):
        raise _Invalid(
            ("mapping", "constants"), 'mapping.constants must be a table: "field" = value'
        )
    constants = []
    for key, value in raw.items():
        path = ("mapping", "constants", key)
        target = _target(kind, key, path)
        type_name = fields.target_type(target)
        if type_name in _TIMESTAMP_TYPES:
            raise _Invalid(path, f"{target} is a timestamp and cannot be a constant")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        elif not isinstance(value, str):
            raise _Invalid(path, f"the constant for {target} must be a string, number or boolean")
        try:
            constants.append((target, checker(type_name, _CONSTANT_ZONE)(value)))
        except ValueError as exc:
            raise _Invalid(path, f"the constant for {target}: {exc}") from None
    return tuple(constants)


def _unmapped(kind: str, raw: Any) -> str:
    allowed = (OPEN_SECTIONS[kind], IGNORE)
    if raw is None:
        return OPEN_SECTIONS[kind]
    if raw not in allowed:
        raise _Invalid(
            ("mapping", "unmapped"),
            f"for {kind} requests, unmapped must be {allowed[0]!r} or {allowed[1]!r}",
        )
    return str(raw)


def _table(kind: str, raw: Any) -> str | None:
    if not KINDS[kind].table:
        if raw is not None:
            raise _Invalid(("mapping", "table"), f"only a {_TABLE_KINDS} mapping has a table")
        return None
    if not isinstance(raw, str) or not TABLE_NAME.fullmatch(raw):
        raise _Invalid(
            ("mapping", "table") if raw is not None else ("mapping",),
            f"a {kind} mapping needs the table's name: 1-64 letters, digits, '-' or '_'",
        )
    return raw


_TABLE_KINDS = " or ".join(name for name, kind in KINDS.items() if kind.table)


def _check_columns_exist(template: Template, explicit: MappingType[str, Target | None]) -> None:
    if template.extra_columns == "custom_data":
        return
    verb = "refuses" if template.extra_columns == "forbidden" else "ignores"
    for column in explicit:
        if template.column(column) is None:
            raise _Invalid(
                ("mapping", "columns", column),
                f"column {column!r} is not in template {template.name!r},"
                f" which {verb} other columns",
            )


def _check_required_targets(mapping: Mapping, routes: dict[str, Target | None]) -> None:
    given = {target for target in routes.values() if target} | {t for t, _ in mapping.constants}
    kind = KINDS[mapping.kind]
    for target in kind.required:
        if target not in given:
            raise _Invalid(("mapping",), f"no column or constant gives {target}, which is required")
    for rule in kind.one_of:
        if not set(rule.targets) & given:
            *first, last = map(str, rule.targets)
            named = f"{', '.join(first)} or {last}" if first else last
            raise _Invalid(("mapping",), rule.feed_error.format(targets=named))


def _destination(data: dict[str, Any]) -> Destination:
    raw = data.get("destination", {})
    if not isinstance(raw, dict):
        raise _Invalid(("destination",), "destination must be a table with url and/or token")
    _refuse_unknown(raw, _DESTINATION_KEYS, ("destination",))
    url, token = raw.get("url"), raw.get("token")
    if url is not None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise _Invalid(
                ("destination", "url"), "destination url must be an http:// or https:// URL"
            )
        url = url.rstrip("/")
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise _Invalid(("destination", "token"), "destination token must be a non-empty string")
    return Destination(url=url, token=token)


def _refuse_unknown(data: MappingType[str, Any], known: frozenset[str], path: KeyPath) -> None:
    for key in data:
        if key not in known:
            raise _Invalid((*path, key), f"unknown key {key!r}; known: {', '.join(sorted(known))}")


# --- locating keys in the TOML text ---------------------------------------------------------

_ERROR_POSITION = re.compile(r"\s*\((?:at line (\d+), column \d+|at end of document)\)$")
_KEY_PART = re.compile(r"""\s*(?:([A-Za-z0-9_-]+)|"((?:[^"\\]|\\.)*)"|'([^']*)')\s*""")


def _decode_error(text: str, exc: tomllib.TOMLDecodeError) -> tuple[int, str]:
    """tomllib's message split into the line and the reason."""
    message = str(exc)
    match = _ERROR_POSITION.search(message)
    if match is None:
        return 1, message
    line = int(match.group(1)) if match.group(1) else text.count("\n") + 1
    return line, message[: match.start()]


def _line_of(text: str, path: KeyPath) -> int:
    """The line (1-based) that defines ``path``, or the nearest enclosing table; 1 if none.

    A light scanner, not a TOML parser: it follows table headers, arrays of tables and (dotted,
    quoted) keys at line starts, which is how feed files are written.
    """
    best_line, best_depth = 1, 0
    table: KeyPath = ()
    arrays: dict[KeyPath, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[["):
            keys = _keys(stripped[2:].split("]]", 1)[0])
            index = arrays.get(keys, -1) + 1
            arrays[keys] = index
            table = (*keys, index)
            current = table
        elif stripped.startswith("["):
            table = _keys(stripped[1:].split("]", 1)[0])
            current = table
        elif "=" in stripped:
            current = (*table, *_keys(stripped.split("=", 1)[0]))
        else:
            continue
        depth = _common_prefix(current, path)
        if depth == len(current) and depth > best_depth:
            best_line, best_depth = number, depth
            if depth == len(path):
                break
    return best_line


def _keys(text: str) -> tuple[str, ...]:
    keys: list[str] = []
    for part in _split_dotted(text):
        match = _KEY_PART.fullmatch(part)
        if match is None:
            return tuple(keys)
        bare, basic, literal = match.groups()
        if basic is not None:
            try:
                keys.append(json.loads(f'"{basic}"'))
            except json.JSONDecodeError:
                keys.append(basic)
        else:
            keys.append(bare if bare is not None else literal)
    return tuple(keys)


def _split_dotted(text: str) -> list[str]:
    """``a."b.c".d`` into its parts, keeping the quotes for _KEY_PART."""
    parts, current, quote, escaped = [], [], "", False
    for char in text:
        if quote:
            current.append(char)
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
            current.append(char)
        elif char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _common_prefix(left: KeyPath, right: KeyPath) -> int:
    depth = 0
    for a, b in zip(left, right):
        if a != b:
            break
        depth += 1
    return depth
