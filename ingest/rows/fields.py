"""The request fields a column can be mapped to, per kind of destination request.

A target is ``section.field``. Fixed sections have a known set of fields, each with a value type
(``ingest.rows.coercion``) that the mapped value must satisfy. Each kind also has one *open* section
whose field names are free: custom data for signals, marketing data for lookup rows, attributes
for calls. Custom and marketing data fields must exist in the tenant's data dictionary
[invoca-sftp-signal-upload.txt]; call attributes need not. The kinds, their sections and types are
declared in ``ingest.rows.kinds``; this module only answers questions about targets.
"""

from __future__ import annotations

from ingest.rows.kinds import KINDS as _REGISTRY
from ingest.rows.kinds import Target

__all__ = [
    "DICTIONARY_SECTIONS",
    "FIXED_FIELDS",
    "IGNORE",
    "KINDS",
    "OPEN_SECTIONS",
    "Target",
    "by_name",
    "parse_target",
    "target_type",
]

# Views of the registry (ingest.rows.kinds), which alone says what each kind has.
KINDS = tuple(_REGISTRY)

#: The mapping target that drops a column.
IGNORE = "ignore"

FIXED_FIELDS: dict[str, dict[str, dict[str, str]]] = {
    kind.name: {section: dict(names) for section, names in kind.fixed.items()}
    for kind in _REGISTRY.values()
}

OPEN_SECTIONS = {kind.name: kind.open_section for kind in _REGISTRY.values()}
OPEN_SECTION_TYPES = {kind.open_section: kind.open_type for kind in _REGISTRY.values()}
DICTIONARY_SECTIONS = frozenset(
    kind.open_section for kind in _REGISTRY.values() if kind.dictionary
)


def parse_target(kind: str, text: str) -> Target:
    """``section.field`` as a Target of ``kind``; ValueError says which targets exist."""
    section, dot, field = text.partition(".")
    field = field.strip()
    if dot and section == OPEN_SECTIONS[kind] and field:
        return Target(section, field)
    fixed = FIXED_FIELDS[kind]
    if dot and field in fixed.get(section, {}):
        return Target(section, field)
    choices = "; ".join(f"{name}.X (X: {', '.join(fields)})" for name, fields in fixed.items())
    raise ValueError(
        f"{text!r} is not a field of a {kind} request; use {choices}; {OPEN_SECTIONS[kind]}.NAME;"
        f" or {IGNORE!r}"
    )


def target_type(target: Target) -> str:
    """The value type a target requires."""
    type_name = OPEN_SECTION_TYPES.get(target.section) or _FIXED_TYPES.get(target)
    if type_name is None:
        raise KeyError(str(target))
    return type_name


def by_name(kind: str, column: str) -> Target | None:
    """The fixed field named like ``column`` (case-insensitive), if ``kind`` has one; in the
    registry's spelling, which may have capitals (ASAPP's ``conversation_externalId``)."""
    return _BY_NAME[kind].get(column.lower())


_FIXED_TYPES = {
    Target(section, name): type_name
    for sections in FIXED_FIELDS.values()
    for section, names in sections.items()
    for name, type_name in names.items()
}

def _fields_by_name() -> dict[str, dict[str, Target]]:
    """Each kind's fixed fields by lower-case name; the first section declaring a name wins."""
    by_kind: dict[str, dict[str, Target]] = {}
    for kind, sections in FIXED_FIELDS.items():
        names = by_kind.setdefault(kind, {})
        for section, fields in sections.items():
            for field in fields:
                names.setdefault(field.lower(), Target(section, field))
    return by_kind


_BY_NAME = _fields_by_name()
