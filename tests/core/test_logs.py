from __future__ import annotations

import io
import json
import logging

from core.logs import REDACTED, configure_logging, get_logger


def test_one_json_event_per_line_with_secrets_redacted() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", stream)
    try:
        log = get_logger("test")
        log.info("tenant.added", tenant="acme", password="hunter2-hunter2", api_token="abc123")
        log.warning("auth.failed", user="acme", source="127.0.0.1", Authorization="Bearer xyz")
    finally:
        logging.getLogger().handlers.clear()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["event"] == "tenant.added" and first["tenant"] == "acme"
    assert first["password"] == first["api_token"] == second["Authorization"] == REDACTED
    for secret in ("hunter2", "abc123", "xyz"):
        assert secret not in stream.getvalue()
