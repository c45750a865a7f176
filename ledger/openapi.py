"""OpenAPI for endpoints that read their bodies by hand.

The endpoints parse JSON themselves (the token may be in the body, and must be checked before
the body is judged), so FastAPI cannot infer the request schemas; the same pydantic models that
validate the bodies are published here instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

REF_TEMPLATE = "#/components/schemas/{model}"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "errors": {
            "type": "object",
            "properties": {"class": {"type": "string"}, "invalid_data": {"type": "string"}},
            "required": ["class", "invalid_data"],
        }
    },
}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body has the shape of ``model``."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=model.__name__)}}},
        }
    }


Responses = dict[int | str, dict[str, Any]]

_ERROR_DESCRIPTIONS = {
    400: "A body nested deeper than api.max_json_depth",
    401: "Invalid or missing oauth token",
    403: "Invalid data or resource; see errors.class and errors.invalid_data",
    404: "No matching call (or unknown API version)",
    413: "A body larger than api.max_body_bytes (checked after the token)",
    429: "Rate limit exceeded; see Retry-After",
}


def answers(success: str, *errors: int, media_type: str | None = None) -> Responses:
    """The documented answers of a route: what a 200 means, and its error statuses."""
    documented: Responses = {200: {"description": success}}
    if media_type is not None:
        documented[200]["content"] = {media_type: {}}
    for status in errors:
        documented[status] = {
            "description": _ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": ERROR_SCHEMA}},
        }
    return documented


VERSION_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


def _describe_what_handlers_check(document: dict[str, Any]) -> None:
    """Say what the handlers enforce themselves: the ``{version}`` shape (else 404), and no
    422, since FastAPI's own parameter errors are answered as 403 like every other bad input."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "version" and parameter["in"] == "path":
                    parameter["schema"] = {
                        "type": "string", "pattern": VERSION_PATTERN, "examples": ["2020-10-01"]
                    }
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def publish_models(app: FastAPI, models: Sequence[type[BaseModel]]) -> None:
    """Make ``app.openapi()`` include the schemas of ``models`` (and of the models they use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            _, definitions = models_json_schema(
                [(model, "validation") for model in models], ref_template=REF_TEMPLATE
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(definitions.get("$defs", {}))
            _describe_what_handlers_check(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
