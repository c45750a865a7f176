"""How ``sftpctl`` prints: aligned tables for people, JSON for scripts.

Whatever is printed may hold a tenant's file name, so it goes through :mod:`core.display` first:
control and bidi characters are shown escaped, never sent to the terminal.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from core.display import for_terminal, json_safe, text_for_terminal


def to_plain(value: Any) -> Any:
    """Dataclasses and paths into JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {key: to_plain(item) for key, item in dataclasses.asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def print_json(value: Any, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(json_safe(json.dumps(to_plain(value), indent=2, ensure_ascii=False)) + "\n")


def print_text(text: str, stream: TextIO | None = None, end: str = "\n") -> None:
    """Free text (messages, a check's or a feed's listing), escaped for the terminal."""
    (stream or sys.stdout).write(text_for_terminal(text) + end)


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], stream: TextIO | None = None,
                empty: str = "(none)") -> None:
    out = stream or sys.stdout
    if not rows:
        out.write(empty + "\n")
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    out.write("  ".join(column.upper().ljust(width) for column, width in zip(columns, widths)).rstrip() + "\n")
    for line in cells:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() + "\n")


def print_fields(record: Mapping[str, Any], stream: TextIO | None = None) -> None:
    """One ``key: value`` per line, keys aligned."""
    out = stream or sys.stdout
    width = max((len(key) for key in record), default=0)
    for key, value in record.items():
        out.write(f"{for_terminal(key).ljust(width)}  {_cell(value)}\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(item) for item in value) or "-"
    return for_terminal(value)
