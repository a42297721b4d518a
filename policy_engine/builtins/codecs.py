"""Text encodings: base64, base64url, hex, urlquery.

Rego strings are Unicode; a decoded byte string that is not valid UTF-8 keeps
one U+FFFD per invalid byte, as Go's strings do when read rune by rune.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from typing import Any, Final

from policy_engine.builtins.base import (
    BUILTIN_ERROR,
    EVAL_TYPE_ERROR,
    Builtin,
    BuiltinError,
    builtin,
    want_object,
    want_string,
)
from policy_engine.values import sort_key, type_name

__all__ = ["BUILTINS", "go_text"]


def _one_per_byte(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    return ("\ufffd", error.start + 1)


codecs.register_error("rego-go-runes", _one_per_byte)


def go_text(raw: bytes) -> str:
    """Bytes as a Rego string: UTF-8, one U+FFFD per byte that is not part of a valid rune."""
    return raw.decode("utf-8", errors="rego-go-runes")


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")


_STANDARD: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URL_SAFE: Final = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def _decode64(name: str, text: str, url: bool) -> bytes:
    alphabet = _URL_SAFE if url else _STANDARD
    if url and len(text) % 4:
        text += "=" * (-len(text) % 4)  # base64url.decode also takes the unpadded form
    if alphabet.fullmatch(text) is None or len(text) % 4:
        raise BuiltinError(BUILTIN_ERROR, f"{name}: illegal base64 data at input byte 0")
    try:
        if url:
            return base64.urlsafe_b64decode(text)
        return base64.b64decode(text, validate=True)
    except binascii.Error as problem:
        raise BuiltinError(BUILTIN_ERROR, f"{name}: {problem}") from None


def b64_encode(value: object) -> str:
    """The string's UTF-8 bytes in standard base64, padded."""
    return base64.b64encode(_bytes(want_string("base64.encode", 1, value))).decode()


def b64_decode(value: object) -> str:
    """The text a standard, padded base64 string encodes."""
    return go_text(_decode64("base64.decode", want_string("base64.decode", 1, value), url=False))


def b64_is_valid(value: object) -> bool:
    """Whether the string is valid standard base64."""
    try:
        _decode64("base64.is_valid", want_string("base64.is_valid", 1, value), url=False)
    except BuiltinError:
        return False
    return True


def b64url_encode(value: object) -> str:
    """The string's UTF-8 bytes in URL-safe base64, padded."""
    return base64.urlsafe_b64encode(_bytes(want_string("base64url.encode", 1, value))).decode()


def b64url_encode_no_pad(value: object) -> str:
    """The string's UTF-8 bytes in URL-safe base64 without padding."""
    raw = _bytes(want_string("base64url.encode_no_pad", 1, value))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def b64url_decode(value: object) -> str:
    """The text a URL-safe base64 string encodes (padded or not)."""
    text = want_string("base64url.decode", 1, value)
    return go_text(_decode64("base64url.decode", text, url=True))


def hex_encode(value: object) -> str:
    """The string's UTF-8 bytes as lower-case hexadecimal."""
    return _bytes(want_string("hex.encode", 1, value)).hex()


def hex_decode(value: object) -> str:
    """The text a hexadecimal string encodes."""
    text = want_string("hex.decode", 1, value)
    for character in text:
        if character not in "0123456789abcdefABCDEF":
            raise BuiltinError(
                BUILTIN_ERROR,
                f"hex.decode: invalid byte: U+{ord(character):04X} {character!r}",
            )
    if len(text) % 2:
        raise BuiltinError(BUILTIN_ERROR, "hex.decode: encoding/hex: odd length hex string")
    return go_text(bytes.fromhex(text))


_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_UNRESERVED: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
)
_PERCENT_OR_PLUS: Final = re.compile(r"(?:%[0-9A-Fa-f]{2})+|\+")


def quote_plus(text: str) -> str:
    """Go's url.QueryEscape: unreserved bytes stay, space is `+`, the rest `%XX`."""
    out: list[str] = []
    for byte in _bytes(text):
        if byte in _UNRESERVED:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def unquote_plus(text: str) -> str:
    """Go's url.QueryUnescape, once escapes are known to be well formed."""

    def decode(match: re.Match[str]) -> str:
        run = match.group(0)
        return " " if run == "+" else go_text(bytes.fromhex(run.replace("%", "")))

    return _PERCENT_OR_PLUS.sub(decode, text)


def url_encode(value: object) -> str:
    """The string escaped for a URL query (space as `+`)."""
    return quote_plus(want_string("urlquery.encode", 1, value))


def url_decode(value: object) -> str:
    """The string a URL-query-escaped text stands for."""
    text = want_string("urlquery.decode", 1, value)
    bad = _ESCAPE.search(text)
    if bad is not None:
        escape = text[bad.start() : bad.start() + 3]
        raise BuiltinError(BUILTIN_ERROR, f'urlquery.decode: invalid URL escape "{escape}"')
    return unquote_plus(text)


def _query_values(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (tuple, list, frozenset)):
        items = sorted(value, key=sort_key) if isinstance(value, frozenset) else value
        if all(isinstance(item, str) for item in items):
            return list(items)
    raise BuiltinError(
        EVAL_TYPE_ERROR,
        f"urlquery.encode_object: operand 1 must be object[string: string|array[string]"
        f"|set[string]] but got {type_name(value)} at key {key!r}",
    )


def url_encode_object(value: object) -> str:
    """A URL query from an object of strings, arrays or sets of strings (keys sorted)."""
    mapping = want_object("urlquery.encode_object", 1, value)
    parts: list[str] = []
    for key in sorted(mapping, key=sort_key):
        if not isinstance(key, str):
            raise BuiltinError(
                EVAL_TYPE_ERROR, "urlquery.encode_object: operand 1 must have string keys"
            )
        for item in _query_values(key, mapping[key]):
            parts.append(f"{quote_plus(key)}={quote_plus(item)}")
    return "&".join(parts)


def url_decode_object(value: object) -> dict[str, Any]:
    """An object from a URL query: each key with the array of its values, in order."""
    text = want_string("urlquery.decode_object", 1, value)
    found: dict[str, list[str]] = {}
    for part in text.split("&"):
        if not part:
            continue
        key, _, item = part.partition("=")
        found.setdefault(url_decode(key), []).append(url_decode(item))
    return {key: tuple(items) for key, items in found.items()}


_S2S = "(x: string) -> string"

BUILTINS: tuple[Builtin, ...] = (
    builtin("base64.encode", b64_encode, _S2S, 'base64.encode("hello")'),
    builtin("base64.decode", b64_decode, _S2S, 'base64.decode("aGVsbG8=")'),
    builtin(
        "base64.is_valid", b64_is_valid, "(x: string) -> boolean", 'base64.is_valid("aGVsbG8=")'
    ),
    builtin("base64url.encode", b64url_encode, _S2S, 'base64url.encode("subjects?_d")'),
    builtin(
        "base64url.encode_no_pad", b64url_encode_no_pad, _S2S, 'base64url.encode_no_pad("hello")'
    ),
    builtin("base64url.decode", b64url_decode, _S2S, 'base64url.decode("aGVsbG8")'),
    builtin("hex.encode", hex_encode, _S2S, 'hex.encode("hi")'),
    builtin("hex.decode", hex_decode, _S2S, 'hex.decode("6869")'),
    builtin("urlquery.encode", url_encode, _S2S, 'urlquery.encode("a=b c")'),
    builtin("urlquery.decode", url_decode, _S2S, 'urlquery.decode("a%3Db+c")'),
    builtin(
        "urlquery.encode_object",
        url_encode_object,
        "(object: object[string, string | array[string] | set[string]]) -> string",
        'urlquery.encode_object({"model": "gpt-4o", "tag": ["a", "b"]})',
    ),
    builtin(
        "urlquery.decode_object",
        url_decode_object,
        "(x: string) -> object[string, array[string]]",
        'urlquery.decode_object("a=1&b=2&a=3")',
    ),
)
