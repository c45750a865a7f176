"""Request bodies read within bounds: at most ``api.max_body_bytes``, nested at most
``api.max_json_depth`` deep, numbers finite.

The size is checked against ``Content-Length`` before a byte is read, and counted while the body
streams in (chunked uploads declare no length), so an oversized body costs at most the limit in
memory. The endpoints call this only after a token from the headers or the query string has been
accepted; a body is read to look for a token only when there is none there.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request

from ledger.errors import BadRequest, PayloadTooLarge, RecordInvalid

#: A NUL character is refused wherever a string enters (403): no field takes one, and PostgreSQL's
#: text cannot hold one, so it would otherwise be a 500 there and stored on SQLite.
NUL_REFUSED = "{where} holds a NUL character (\\u0000), which no parameter takes"


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or ``PayloadTooLarge`` as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes, max_depth: int) -> Any:
    """The JSON value of ``raw``; None for an empty body.

    ``RecordInvalid`` for text that is not JSON or holds NaN, Infinity or a number too large for a
    float; ``BadRequest`` for objects and arrays nested deeper than ``max_depth``.
    """
    if not raw.strip():
        return None
    try:
        # As json.loads reads bytes (UTF-8, -16 or -32), with one decoder made once.
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
        value = _DECODER.decode(text)
    except RecursionError:  # deeper than the interpreter's own limit: far past max_depth
        raise _too_deep(max_depth) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordInvalid(f"the request body is not valid JSON: {exc}") from None
    # Fewer brackets than the limit (any ordinary request) cannot nest past it: skip the walk.
    if raw.count(b"[") + raw.count(b"{") > max_depth and _deeper_than(value, max_depth):
        raise _too_deep(max_depth)
    if "\\u0000" in text and _holds_nul(value):  # JSON can spell a NUL only so
        raise RecordInvalid(NUL_REFUSED.format(where="the request body"))
    return value


def _holds_nul(value: Any) -> bool:
    """Whether a string of ``value`` (a key too) holds a NUL character."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range for a number")
    return number


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than ``limit`` levels (a scalar body is depth 0),
    walked one level at a time."""
    level = [value] if isinstance(value, (dict, list)) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            below += [child for child in children if isinstance(child, (dict, list))]
        level = below
    return False


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than {limit} bytes")


def _too_deep(limit: int) -> BadRequest:
    return BadRequest(f"the request body nests objects and arrays deeper than {limit} levels")
