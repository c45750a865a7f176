"""Text from tenants (file names, cell values) made safe to show on an operator's terminal.

A file name is chosen by the customer. Printed raw, a C0 or C1 control character can move the
cursor, retitle the window or recolour the screen, and a bidi control such as U+202E (RIGHT-TO-LEFT
OVERRIDE) makes ``report<U+202E>vsc.exe`` show as ``reportexe.csv``. Every such character is
shown as its escape (``\\u202e``, ``\\x1b``) instead. JSON output stays JSON: ``json.dumps``
escapes C0 controls already, :func:`json_safe` escapes the rest the same way.
"""

from __future__ import annotations

# C0 controls, DEL, C1 controls; the Arabic letter mark, LRM/RLM, the line and paragraph
# separators, the embeddings and overrides (U+202A-U+202E) and the isolates (U+2066-U+2069).
UNSAFE = frozenset(
    [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029,
     *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_TERMINAL = {code: _escape(code) for code in UNSAFE}
_TEXT = {code: value for code, value in _TERMINAL.items() if chr(code) not in "\n\t"}
# What json.dumps(ensure_ascii=False) leaves as it is: inside a JSON string, \uXXXX is the same text.
_JSON = {code: f"\\u{code:04x}" for code in UNSAFE if code >= 0x7F}


def for_terminal(value: object) -> str:
    """One value (a table cell, a name) with every control and bidi character escaped."""
    return str(value).translate(_TERMINAL)


def text_for_terminal(text: str) -> str:
    """Lines of text for a terminal: as :func:`for_terminal`, keeping newlines and tabs."""
    return text.translate(_TEXT)


def json_safe(text: str) -> str:
    """JSON text from ``json.dumps(..., ensure_ascii=False)`` with DEL, C1 and bidi controls
    escaped too; still the same JSON value, readable non-ASCII letters kept."""
    return text.translate(_JSON)
