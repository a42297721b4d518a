"""Identifier built-ins: semver.is_valid, semver.compare (SemVer 2.0.0) and uuid.parse."""

from __future__ import annotations

import re
import uuid
from typing import Any, Final

from policy_engine.builtins.base import BUILTIN_ERROR, Builtin, BuiltinError, builtin, want_string
from policy_engine.values import UNDEFINED

__all__ = ["BUILTINS"]

_SEMVER: Final = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)


def is_valid_semver(value: object) -> bool:
    """Whether the value is a string holding a valid semantic version."""
    return isinstance(value, str) and _SEMVER.fullmatch(value) is not None


def _version(position: int, value: object) -> re.Match[str]:
    text = want_string("semver.compare", position, value)
    match = _SEMVER.fullmatch(text)
    if match is None:
        raise BuiltinError(
            BUILTIN_ERROR,
            f'semver.compare: operand {position}: string "{text}" is not a valid SemVer',
        )
    return match


def _prerelease_key(text: str | None) -> tuple[Any, ...]:
    # A version without a pre-release ranks above every pre-release of it.
    if text is None:
        return (1,)
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in text.split("."))
    return (0, parts)


def compare(a: object, b: object) -> int:
    """-1, 0 or 1 as version a is lower than, equal to or higher than b (build metadata ignored)."""
    first, second = _version(1, a), _version(2, b)
    key_a = (*(int(first.group(i)) for i in (1, 2, 3)), _prerelease_key(first.group(4)))
    key_b = (*(int(second.group(i)) for i in (1, 2, 3)), _prerelease_key(second.group(4)))
    return -1 if key_a < key_b else (1 if key_a > key_b else 0)


# ---------------------------------------------------------------- uuid.parse

_UUID: Final = re.compile(
    r"(?:urn:uuid:)?\{?([0-9a-fA-F]{8})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?"
    r"([0-9a-fA-F]{4})-?([0-9a-fA-F]{12})\}?"
)
_GREGORIAN_TO_UNIX_100NS: Final = 0x01B21DD213814000
_DOMAINS: Final = {0: "Person", 1: "Group", 2: "Org"}


def _variant(raw: bytes) -> str:
    top = raw[8] >> 5
    if top < 4:
        return "Reserved, NCS backward compatibility"
    if top < 6:
        return "RFC4122"
    if top == 6:
        return "Reserved, Microsoft Corporation backward compatibility"
    return "Reserved, future definition"


def parse_uuid(value: object) -> Any:
    """The fields of a UUID: version and variant, plus time, clock and node for versions 1 and 2."""
    text = want_string("uuid.parse", 1, value)
    match = _UUID.fullmatch(text)
    if match is None or (text.startswith("{") != text.endswith("}")):
        return UNDEFINED
    parsed = uuid.UUID("".join(match.groups()))
    raw = parsed.bytes
    fields: dict[str, Any] = {"version": raw[6] >> 4, "variant": _variant(raw)}
    if fields["version"] in (1, 2):
        timestamp = ((parsed.time_hi_version & 0x0FFF) << 48) | (parsed.time_mid << 32)
        timestamp |= parsed.time_low
        fields["time"] = (timestamp - _GREGORIAN_TO_UNIX_100NS) * 100
        fields["clocksequence"] = ((raw[8] & 0x3F) << 8) | raw[9]
        fields["nodeid"] = "-".join(f"{byte:02x}" for byte in raw[10:16])
        local = "local" if raw[10] & 0x02 else "global"
        cast = "multicast" if raw[10] & 0x01 else "unicast"
        fields["macvariables"] = f"{local}:{cast}"
        if fields["version"] == 2:
            fields["domain"] = _DOMAINS.get(raw[9], f"Domain{raw[9]}")
            fields["id"] = parsed.time_low
    return fields


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "semver.is_valid", is_valid_semver, "(vsn: any) -> boolean", 'semver.is_valid("1.2.3-rc.1")'
    ),
    builtin(
        "semver.compare",
        compare,
        "(a: string, b: string) -> number",
        'semver.compare("1.10.0", "1.9.2")',
    ),
    builtin(
        "uuid.parse",
        parse_uuid,
        "(uuid: string) -> object[string, any]",
        'uuid.parse("00000000-0000-4000-8000-000000000000")',
    ),
)
