"""Templates: what the columns of an uploaded file must be.

A template is agreed with the customer from a sample file, and every later upload must match it
[invoca-sftp-signal-upload.txt, evaluagent-bulk-file-upload.txt]. It lists columns (name, value
type, required or not, optionally the allowed values), says whether their order matters and what
happens to columns it does not list. Column names match case-insensitively.

Templates are TOML. The shipped ones live in ``ingest/rows/templates/*.toml``; a feed can name one or
define its own inline, optionally extending a shipped one. The format::

    name = "signals"
    description = "..."
    extends = "asapp_call_metadata"   # optional: start from this template's columns and rules
    ordered = false                   # true: listed columns present must appear in this order
    extra_columns = "custom_data"     # "custom_data": kept and mapped; "ignored"; "forbidden"

    [[columns]]
    name = "call_start"
    type = "iso_utc"                  # see ingest.rows.coercion.TYPE_NAMES; default "string"
    required = true                   # default false: the column may be absent or values missing
    choices = ["agent", "bot"]        # optional: the allowed values (matched case-insensitively)
    description = "..."
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.rows.coercion import TYPE_NAMES

__all__ = [
    "EXTRA_COLUMN_RULES",
    "Column",
    "Template",
    "TemplateError",
    "get_template",
    "parse_template",
    "shipped_templates",
]

EXTRA_COLUMN_RULES = ("custom_data", "ignored", "forbidden")

# Package data (see pyproject.toml); a plain path, as the package may be installed in any layout.
TEMPLATES_DIR = Path(__file__).with_name("templates")

_TEMPLATE_KEYS = frozenset(
    {"name", "description", "extends", "ordered", "extra_columns", "columns"}
)
_COLUMN_KEYS = frozenset({"name", "type", "required", "choices", "description"})


class TemplateError(ValueError):
    """A template definition is invalid. ``path`` is the key path of the offending value."""

    def __init__(self, path: tuple[str | int, ...], reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Column:
    """One column of a template; no ``choices`` means any value of its type."""

    name: str
    type: str = "string"
    required: bool = False
    choices: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Template:
    """What the header and values of a file must be; see the module docstring."""

    name: str
    columns: tuple[Column, ...]
    ordered: bool = False
    extra_columns: str = "forbidden"
    description: str = ""
    _by_name: dict[str, Column] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_by_name", {column.name.lower(): column for column in self.columns}
        )

    def column(self, name: str) -> Column | None:
        """The column called ``name``, ignoring case."""
        return self._by_name.get(name.lower())

    @property
    def required(self) -> tuple[Column, ...]:
        return tuple(column for column in self.columns if column.required)


TypeDefault = Callable[[str], str]


def parse_template(
    data: Mapping[str, Any], name: str | None = None, default_type: TypeDefault | None = None
) -> Template:
    """A template from its TOML table.

    ``name`` is used when the table has none (an inline template takes its feed's name);
    ``default_type(column)`` gives the type of a column that declares none (a feed infers it from
    the request field the column is mapped to), else ``string``.
    """
    _refuse_unknown(data, _TEMPLATE_KEYS, ())
    base = _base(data.get("extends"))
    template_name = _string(data, "name", (), name or (base.name if base else None))
    if not template_name:
        raise TemplateError((), "the template has no name")
    description = _string(data, "description", (), base.description if base else "")
    ordered = _boolean(data, "ordered", (), base.ordered if base else False)
    extra = _string(data, "extra_columns", (), base.extra_columns if base else "forbidden")
    if extra not in EXTRA_COLUMN_RULES:
        raise TemplateError(
            ("extra_columns",),
            f"extra_columns must be one of {', '.join(EXTRA_COLUMN_RULES)}, not {extra!r}",
        )
    raw_columns = data.get("columns", [])
    if not isinstance(raw_columns, list):
        raise TemplateError(("columns",), "columns must be an array of tables ([[columns]])")
    columns = list(base.columns) if base else []
    seen = {column.name.lower() for column in columns}
    for index, raw in enumerate(raw_columns):
        column = _column(raw, ("columns", index), default_type)
        if column.name.lower() in seen:
            raise TemplateError(
                ("columns", index, "name"), f"column {column.name!r} is listed twice"
            )
        seen.add(column.name.lower())
        columns.append(column)
    if not columns:
        raise TemplateError(("columns",), "the template lists no columns")
    return Template(
        name=template_name,
        columns=tuple(columns),
        ordered=ordered,
        extra_columns=extra,
        description=description,
    )


@functools.cache
def shipped_templates() -> dict[str, Template]:
    """The templates shipped in ``ingest/rows/templates``, by name (the file name without .toml)."""
    return {name: _load_shipped(name) for name in _shipped_names()}


def get_template(name: str) -> Template:
    """The shipped template ``name``; KeyError lists the names that exist."""
    templates = shipped_templates()
    try:
        return templates[name]
    except KeyError:
        raise KeyError(
            f"no shipped template named {name!r}; shipped: {', '.join(sorted(templates))}"
        ) from None


def _shipped_names() -> list[str]:
    return sorted(entry.stem for entry in TEMPLATES_DIR.glob("*.toml"))


def _load_shipped(name: str) -> Template:
    """One shipped template, read on its own so that shipped templates can extend each other."""
    entry = TEMPLATES_DIR / f"{name}.toml"
    try:
        template = parse_template(tomllib.loads(entry.read_text(encoding="utf-8")))
    except TemplateError as exc:
        raise RuntimeError(f"shipped template {entry.name}: {exc.reason}") from None
    if template.name != name:
        raise RuntimeError(f"shipped template {entry.name} is named {template.name!r}")
    return template


def _base(extends: Any) -> Template | None:
    if extends is None:
        return None
    if not isinstance(extends, str) or extends not in _shipped_names():
        raise TemplateError(
            ("extends",),
            f"extends must name a shipped template: {', '.join(_shipped_names())}",
        )
    return _load_shipped(extends)


def _column(raw: Any, path: tuple[str | int, ...], default_type: TypeDefault | None) -> Column:
    if not isinstance(raw, dict):
        raise TemplateError(path, "each column must be a table with at least a name")
    _refuse_unknown(raw, _COLUMN_KEYS, path)
    name = _string(raw, "name", path, "").strip()
    if not name:
        raise TemplateError(path, "a column has no name")
    fallback = default_type(name) if default_type else "string"
    type_name = _string(raw, "type", path, fallback)
    if type_name not in TYPE_NAMES:
        raise TemplateError(
            (*path, "type"),
            f"column {name!r}: unknown type {type_name!r}; known: {', '.join(TYPE_NAMES)}",
        )
    choices = raw.get("choices", [])
    if not isinstance(choices, list) or not all(isinstance(item, str) for item in choices):
        raise TemplateError(
            (*path, "choices"), f"column {name!r}: choices must be a list of strings"
        )
    return Column(
        name=name,
        type=type_name,
        required=_boolean(raw, "required", path, False),
        choices=tuple(choices),
        description=_string(raw, "description", path, ""),
    )


def _refuse_unknown(
    data: Mapping[str, Any], known: frozenset[str], path: tuple[str | int, ...]
) -> None:
    for key in data:
        if key not in known:
            raise TemplateError(
                (*path, key), f"unknown key {key!r}; known: {', '.join(sorted(known))}"
            )


def _string(data: Mapping[str, Any], key: str, path: tuple[str | int, ...], default: Any) -> Any:
    value = data.get(key, default)
    if value is not default and not isinstance(value, str):
        raise TemplateError((*path, key), f"{key} must be a string")
    return value


def _boolean(data: Mapping[str, Any], key: str, path: tuple[str | int, ...], default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise TemplateError((*path, key), f"{key} must be true or false")
    return value
