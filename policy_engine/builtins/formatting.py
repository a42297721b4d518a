"""sprintf: Go's fmt.Sprintf over Rego values, the way OPA hands them to Go.

OPA converts each argument before calling Go: integers become Go `int64` (or
`*big.Int` past it), other numbers `float64`, strings stay strings and every
other value becomes its Rego text (`[1, "a"]`, `{"k": 1}`, `{1, 2}`, `set()`).
The verb then applies to that Go value, so `%d` of 1.5 gives `%!d(float64=1.5)`
and `%s` of 1 gives `%!s(int64=1)`, exactly as in OPA. Floats are formatted from
the exact Decimal, so `%.2f` never shows binary rounding noise.
"""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_EVEN, Context, Decimal
from functools import lru_cache
from typing import Final

import msgspec

from policy_engine.builtins.base import Builtin, builtin, want_array, want_string
from policy_engine.values import EXACT_CONTEXT, FrozenDict, int_text, is_number, sort_key

__all__ = ["BUILTINS", "rego_text", "sprintf"]

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_GO_MAX_WIDTH: Final = 1_000_000  # Go answers %!(BADWIDTH) beyond this
# float64's range: beyond it OPA's conversion gives Go an infinity.
_FLOAT64_MAX_EXPONENT: Final = 308
_DIRECTIVE: Final = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d*))?(.)?", re.DOTALL)


class _GoArg(msgspec.Struct, frozen=True):
    """An argument as Go sees it: its Go type name and the value to format."""

    go_type: str  # "int64", "*big.Int", "float64" or "string"
    value: int | Decimal | str


class _Spec(msgspec.Struct, frozen=True):
    flags: str
    width: int
    precision: int | None
    verb: str


def sprintf(format_text: object, values: object) -> str:
    text = want_string("sprintf", 1, format_text)
    args = [_go_arg(value) for value in want_array("sprintf", 2, values)]
    out: list[str] = []
    used = 0
    for piece in _parse_template(text):
        if isinstance(piece, str):
            out.append(piece)
        elif piece.verb == "%":
            out.append("%")
        elif piece.verb == "":
            out.append("%!(NOVERB)")
        elif used >= len(args):
            out.append(f"%!{piece.verb}(MISSING)")
        else:
            out.append(_format(piece, args[used]))
            used += 1
    if used < len(args):
        extra = ", ".join(f"{a.go_type}={_plain(a)}" for a in args[used:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


@lru_cache(maxsize=512)
def _parse_template(text: str) -> tuple[str | _Spec, ...]:
    """Literal text and directives, in order; cached because policies reuse their templates."""
    pieces: list[str | _Spec] = []
    position = 0
    for match in _DIRECTIVE.finditer(text):
        if match.start() > position:
            pieces.append(text[position : match.start()])
        position = match.end()
        pieces.append(_spec(match))
    if position < len(text):
        pieces.append(text[position:])
    return tuple(pieces)


def _spec(match: re.Match[str]) -> _Spec:
    flags, width, precision, verb = match.groups()
    return _Spec(
        flags=flags,
        width=int(width) if width else 0,
        precision=None if precision is None else int(precision or "0"),
        verb=verb or "",
    )


def _go_arg(value: object) -> _GoArg:
    if is_number(value):
        number = Decimal(repr(value)) if isinstance(value, float) else value
        if isinstance(number, int) and not isinstance(number, bool):
            in_int64 = _INT64_MIN <= number <= _INT64_MAX
            return _GoArg("int64" if in_int64 else "*big.Int", number)
        return _GoArg("float64", number)  # type: ignore[arg-type]
    if isinstance(value, str):
        return _GoArg("string", value)
    return _GoArg("string", rego_text(value))


def _format(spec: _Spec, arg: _GoArg) -> str:
    if spec.width > _GO_MAX_WIDTH:
        return "%!(BADWIDTH)"
    if spec.precision is not None and spec.precision > _GO_MAX_WIDTH:
        return "%!(BADPREC)"
    if spec.verb == "T":
        return _pad(arg.go_type, spec)
    if arg.go_type in ("int64", "*big.Int"):
        body = _format_int(spec, arg.value)  # type: ignore[arg-type]
    elif arg.go_type == "float64":
        body = _format_float(spec, arg.value)  # type: ignore[arg-type]
    else:
        body = _format_string(spec, arg.value)  # type: ignore[arg-type]
    if body is None:
        # Go's bad-verb form prints the value as %v with the same flags, width and
        # precision ("%.2f" of "null" shows `nu`, "%5d" of "1.5" `  1.5`, "%.2f" of 1 `01`).
        type_label = "big.Int" if arg.go_type == "*big.Int" else arg.go_type
        shown = None if spec.verb == "v" else _format(msgspec.structs.replace(spec, verb="v"), arg)
        return f"%!{spec.verb}({type_label}={_plain(arg) if shown is None else shown})"
    return body


def _plain(arg: _GoArg) -> str:
    if arg.go_type == "float64":
        return _shortest_float(arg.value)  # type: ignore[arg-type]
    return int_text(arg.value) if isinstance(arg.value, int) else str(arg.value)


_INT_BASES: Final = {"d": "d", "v": "d", "s": "d", "b": "b", "o": "o", "x": "x", "X": "X"}


def _format_int(spec: _Spec, number: int) -> str | None:
    if spec.verb in ("c", "q"):
        if not -(2**63) <= number < 2**63:
            return None  # a *big.Int is no rune: `%!q(big.Int=…)`
        # Go prints a number that is no valid code point as U+FFFD.
        valid = 0 <= number <= 0x10FFFF and not 0xD800 <= number <= 0xDFFF
        rune = chr(number) if valid else "\ufffd"
        return _pad(rune if spec.verb == "c" else _go_quote(rune, "'"), spec)
    base = _INT_BASES.get(spec.verb)
    if base is None or (spec.verb == "s" and -(2**63) <= number < 2**63):
        return None  # plain Go ints have no %s; only *big.Int does
    digits = int_text(abs(number)) if base == "d" else format(abs(number), base)
    if spec.precision is not None:
        # Go: the precision of an integer is its least number of digits (none for 0).
        digits = "" if spec.precision == 0 and number == 0 else digits.rjust(spec.precision, "0")
    if "#" in spec.flags and base in "xXbo":
        digits = {"x": "0x", "X": "0X", "b": "0b", "o": "0"}[base] + digits
    return _pad_number(_sign(number < 0, spec.flags), digits, spec)


def _format_float(spec: _Spec, signed: Decimal) -> str | None:
    verb = spec.verb
    # copy_abs is exact; abs() would round to the thread context's 28 digits.
    number = signed.copy_abs()
    if number.adjusted() > _FLOAT64_MAX_EXPONENT and verb in "fFeEgGv":
        return _pad("-Inf" if signed < 0 else "+Inf", spec)
    if verb in ("f", "F"):
        digits = format(number, f".{6 if spec.precision is None else spec.precision}f")
    elif verb in ("e", "E"):
        digits = _exponent_form(number, 6 if spec.precision is None else spec.precision)
        digits = digits.upper() if verb == "E" else digits
    elif verb in ("v", "g", "G") and spec.precision is None:
        digits = _shortest_float(number)
        digits = digits.upper() if verb == "G" else digits
    elif verb in ("g", "G", "v"):
        digits = _general_form(number, spec.precision or 1)
        digits = digits.upper() if verb == "G" else digits
    else:
        return None
    return _pad_number(_sign(signed < 0, spec.flags), digits, spec)


def _shortest_float(number: Decimal, exponent_from: int = 6) -> str:
    """Go's %v for a float64: plain digits, or exponent form outside [1e-4, 1e6).

    Go switches to `1.5e+06` from the sixth power of ten; Rego text (numbers
    inside arrays and objects) keeps plain digits up to 1e21 like JSON does.
    """
    normal = number.normalize(EXACT_CONTEXT)  # the thread's context would round at 28 digits
    exponent = normal.adjusted()
    if exponent < -4 or exponent >= exponent_from:
        return _exponent_form(normal, len(normal.as_tuple().digits) - 1)
    return format(normal, "f")


def _general_form(number: Decimal, significant: int) -> str:
    """Go's %.Ng: N significant digits, no trailing zeros, exponent form outside [1e-4, 1eN)."""
    rounded = Context(prec=significant, rounding=ROUND_HALF_EVEN).plus(number).normalize()
    exponent = rounded.adjusted()
    if exponent < -4 or exponent >= significant:
        return _exponent_form(rounded, len(rounded.as_tuple().digits) - 1)
    return format(rounded, "f")


def _exponent_form(number: Decimal, precision: int) -> str:
    mantissa, _, exponent = format(number, f".{precision}e").partition("e")
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}e{sign}{exponent.lstrip('+-').rjust(2, '0')}"


def _format_string(spec: _Spec, text: str) -> str | None:
    verb = spec.verb
    if verb in ("s", "v"):
        return _pad(text if spec.precision is None else text[: spec.precision], spec)
    if verb == "q":
        return _pad(_go_quote(text, '"'), spec)
    if verb in ("x", "X"):
        encoded = text.encode().hex()
        return _pad(encoded.upper() if verb == "X" else encoded, spec)
    return None


_GO_ESCAPES: Final = {
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
    "\v": "\\v", "\\": "\\\\",
}  # fmt: skip


def _go_quote(text: str, quote: str) -> str:
    """Go's strconv.Quote / QuoteRune: printable characters as they are, the usual
    backslash escapes, other ASCII controls as \\xNN, other unprintables as \\uNNNN."""
    out = [quote]
    for char in text:
        code = ord(char)
        if char == quote:
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append(quote)
    return "".join(out)


def _sign(negative: bool, flags: str) -> str:
    if negative:
        return "-"
    if "+" in flags:
        return "+"
    return " " if " " in flags else ""


def _pad_number(sign: str, digits: str, spec: _Spec) -> str:
    if "0" in spec.flags and "-" not in spec.flags:
        return sign + digits.rjust(spec.width - len(sign), "0")
    return _pad(sign + digits, spec)


def _pad(text: str, spec: _Spec) -> str:
    if "-" in spec.flags:
        return text.ljust(spec.width)
    return text.rjust(spec.width)


# ---------------------------------------------------------------- Rego text


def rego_text(value: object) -> str:
    """How OPA prints a value inside sprintf: Rego syntax, sets sorted, `set()` when empty."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value):
        number = Decimal(repr(value)) if isinstance(value, float) else value
        if isinstance(number, int):
            return int_text(number)
        return _shortest_float(number, exponent_from=21)  # type: ignore[arg-type]
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(rego_text(item) for item in value) + "]"
    if isinstance(value, (dict, FrozenDict)):
        pairs = sorted(value.items(), key=lambda pair: sort_key(pair[0]))
        return "{" + ", ".join(f"{rego_text(k)}: {rego_text(v)}" for k, v in pairs) + "}"
    if isinstance(value, frozenset):
        if not value:
            return "set()"
        return "{" + ", ".join(rego_text(m) for m in sorted(value, key=sort_key)) + "}"
    raise TypeError(f"not a policy value: {type(value).__name__}")


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "sprintf",
        sprintf,
        "(format: string, values: array[any]) -> string",
        'sprintf("%s has %d tokens", ["gpt-4o", 128])',
        doc="A string formatted from a Go-style template and an array of values.",
    ),
)
