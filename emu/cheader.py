"""C header parsing: the one home for reading C test data and tables back into numpy.

Reads what CMSIS-NN's test-data generator, GenHeaders-style front-end tables and n6emu's golden-vector
writer print:
  `#define NAME value`                                  (backslash continuations allowed)
  `[static] [const] T name[N] [attributes] = {...};`    (T below; N a number, a macro name or empty;
                                                          several [..] dimensions allowed, inner braces too)
  `[static] const T *const name = NULL;` / `= other;`   (a missing array / an alias of an earlier one)
  `#include "file.h"`
Attributes: `__attribute__((...))`, `__ALIGNED(n)`, `_Alignas(n)` / `alignas(n)`, before the type or
after the dimensions, e.g. `const int8_t name[N] __attribute__((aligned(16))) = {...};`.

Element types (C_TYPES): int8_t/q7_t, uint8_t, int16_t/q15_t, uint16_t, int32_t/q31_t/int, uint32_t/
unsigned [int], int64_t/q63_t, uint64_t, size_t (32 bits: the Cortex-M target), float/float32_t,
float16_t/_Float16/__fp16, double/float64_t. Declarations of other types are ignored.

Literals: integers decimal, hex (0x), octal (leading 0) or binary (0b), signed, with any u/l suffix;
floating constants decimal or hex (0x1.8p-3), suffix none (double), f (float) or f16 (_Float16). Float
array values are exactly what a C compiler stores: the literal is rounded (RNE) to its own type, then to
the element type (round_like_c). A leading cast such as `(float16_t)` is ignored.

Public API:
  parse_defines(text) -> {NAME: int | float | tuple | str}   (never raises: unknown forms stay text)
  parse_arrays(text, source=None, types=None) -> {name: np.ndarray of the element type | None (NULL)}
  parse_includes(text) -> ["file.h", ...] (quoted includes, in order)
  read_header(path) -> (defines, arrays)
  round_like_c(values, dtype) -> float16/float32/float64 values a compiler stores for printed constants
  parse_float_literal(text) -> (sign, exact Fraction, literal format "f16" | "f32" | "f64")
Malformed input raises CHeaderError (an N6Error and a ValueError) with a one-line message naming the
source (when given) and the array.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import N6Error


class CHeaderError(N6Error, ValueError):
    """A C header or constant that does not parse; the message names the file (when known) and the array."""


C_TYPES = {
    "int8_t": np.int8, "q7_t": np.int8, "uint8_t": np.uint8,
    "int16_t": np.int16, "q15_t": np.int16, "uint16_t": np.uint16,
    "int32_t": np.int32, "q31_t": np.int32, "int": np.int32,
    "uint32_t": np.uint32, "unsigned int": np.uint32, "unsigned": np.uint32, "size_t": np.uint32,
    "int64_t": np.int64, "q63_t": np.int64, "uint64_t": np.uint64,
    "float": np.float32, "float32_t": np.float32,
    "float16_t": np.float16, "_Float16": np.float16, "__fp16": np.float16,
    "double": np.float64, "float64_t": np.float64,
}

# ---- literals ------------------------------------------------------------------------------------------

_INT_RE = re.compile(r"^([+-]?)\s*(0[xX][0-9a-fA-F]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)[uUlL]*$")
_FLOAT_RE = re.compile(r"^\s*([+-]?)\s*((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|0[xX][0-9a-fA-F.]+[pP][+-]?\d+)"
                       r"\s*(f16|F16|[fFlL])?\s*$")
_CAST_RE = re.compile(r"^\(\s*[A-Za-z_][\w ]*\)\s*")

# (precision bits incl. hidden, minimum normal exponent, maximum exponent)
_FORMATS = {"f16": (11, -14, 15), "f32": (24, -126, 127), "f64": (53, -1022, 1023)}
_DTYPE_FORMAT = {np.dtype(np.float16): "f16", np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def parse_int_literal(token):
    """C integer literal (optionally signed) -> Python int; ValueError when it is not one."""
    m = _INT_RE.match(token.strip())
    if m is None:
        raise ValueError(f"{token.strip()!r} is not an integer literal")
    digits = m.group(2)
    if digits[:2] in ("0x", "0X", "0b", "0B"):
        value = int(digits, 0)
    elif len(digits) > 1 and digits[0] == "0":
        value = int(digits, 8)
    else:
        value = int(digits)
    return -value if m.group(1) == "-" else value


def parse_float_literal(text):
    """C floating constant -> (sign +1/-1, exact |value| as a Fraction, literal format 'f64' | 'f32' | 'f16')."""
    m = _FLOAT_RE.match(str(text))
    if m is None:
        raise CHeaderError(f"{text!r} is not a C floating constant; expected e.g. 0.25f or -1.5e-3")
    sign, body, suffix = m.groups()
    if suffix and body.isdigit():
        raise CHeaderError(f"{text!r} is not a C floating constant (a suffix needs a '.' or an exponent)")
    if body[:2].lower() == "0x":
        mant, exp = re.split("[pP]", body[2:])
        whole, _, frac = mant.partition(".")
        if "." in frac or not (whole or frac):
            raise CHeaderError(f"{text!r} is not a C floating constant (hex mantissa {mant!r})")
        digits = int((whole or "0") + frac, 16)
        val = Fraction(digits, 16 ** len(frac)) * Fraction(2) ** int(exp)
    else:
        val = Fraction(body)
    literal_fmt = {"f": "f32", "F": "f32", "f16": "f16", "F16": "f16"}.get(suffix, "f64")
    return (-1 if sign == "-" else 1), val, literal_fmt


def _round_exact(value: Fraction, fmt: str):
    """Exact rational -> nearest value of binary format fmt (RNE), as a Python float, or +-inf."""
    p, emin, emax = _FORMATS[fmt]
    if value == 0:
        return 0.0
    sign = -1.0 if value < 0 else 1.0
    a = abs(value)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    e = max(e, emin)                                    # subnormals share the minimum quantum
    quantum = Fraction(2) ** (e - p + 1)
    n, rem = divmod(a, quantum)
    n = int(n)
    if rem * 2 > quantum or (rem * 2 == quantum and n % 2 == 1):
        n += 1
    r = Fraction(n) * quantum
    if r >= Fraction(2) ** (emax + 1):
        return sign * math.inf
    return sign * float(r)


def round_like_c(values, dtype):
    """Printed C constants (strings, or Python floats = double literals) -> numpy array of `dtype`
    (float16/float32/float64) holding exactly what a C compiler stores for `dtype x = <literal>;`
    (a scalar for a scalar argument)."""
    dt = np.dtype(dtype)
    if dt not in _DTYPE_FORMAT:
        raise CHeaderError(f"round_like_c supports float16/float32/float64, not {dt}")
    target = _DTYPE_FORMAT[dt]
    scalar = isinstance(values, (str, float, int))
    items = [values] if scalar else list(values)
    out = np.empty(len(items), dtype=dt)
    for i, v in enumerate(items):
        if isinstance(v, str):
            sgn, exact, lit_fmt = parse_float_literal(v)
        else:
            fv = float(v)
            if not math.isfinite(fv):
                out[i] = fv
                continue
            sgn, exact, lit_fmt = (-1 if math.copysign(1.0, fv) < 0 else 1), Fraction(abs(fv)), "f64"
        lit = _round_exact(exact, lit_fmt)             # value of the literal in its own type
        val = lit if math.isinf(lit) else _round_exact(Fraction(lit), target)
        out[i] = sgn * val if val != 0 else math.copysign(0.0, sgn)
    return out[0] if scalar else out


def _float_define(token):
    """A floating constant as a define value: its value in the literal's own type, as a Python float."""
    sgn, exact, fmt = parse_float_literal(token)
    value = _round_exact(exact, fmt)
    return sgn * value if value != 0 else math.copysign(0.0, sgn)


# ---- text structure -----------------------------------------------------------------------------------

def strip_comments(text):
    """Text with /* ... */ comments replaced by a space and // comments removed."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _where(source):
    return f"{source}: " if source else ""


def parse_includes(text):
    """Quoted `#include "name"` targets, in order."""
    return re.findall(r'^\s*#\s*include\s+"([^"]+)"', strip_comments(text), flags=re.M)


def parse_defines(text):
    """`#define NAME value` lines (with backslash continuations) -> dict. Values (outer parentheses dropped):
    int (decimal, hex, octal or binary, signed), float (a floating constant's value in its own type), tuple for
    brace lists `{5, 4, 20, 0,}`, otherwise the value text as written (e.g. 'SAME', 'true', '(1 << 4)', '')."""
    text = strip_comments(text).replace("\\\n", " ")
    defines = {}
    for line in text.splitlines():
        m = re.match(r"\s*#\s*define\s+(\w+)(?:\s+(.*))?$", line)
        if m is None:
            continue
        raw = (m.group(2) or "").strip()
        defines[m.group(1)] = _define_value(raw)
    return defines


def _number(token):
    try:
        return parse_int_literal(token)
    except ValueError:
        return _float_define(token)


def _define_value(raw):
    value = raw
    while value.startswith("(") and value.endswith(")"):
        value = value[1:-1].strip()
    try:
        if value.startswith("{") and value.endswith("}"):
            return tuple(_number(t) for t in value[1:-1].split(",") if t.strip())
        return _number(value)
    except ValueError:
        return raw


_ATTR = (r"(?:__attribute__\s*\(\((?:[^()]|\([^()]*\))*\)\)|__ALIGNED\s*\(\s*\w+\s*\)"
         r"|_Alignas\s*\([^()]*\)|alignas\s*\([^()]*\))")
_TYPE_ALT = "|".join(re.escape(t).replace(r"\ ", r"\s+") for t in sorted(C_TYPES, key=len, reverse=True))
_ARRAY_START = re.compile(
    r"(?<![\w*])(?:(?:(?:static|const)\b|" + _ATTR + r")\s*)*"
    r"\b(" + _TYPE_ALT + r")\s+(?:(?:const\b|" + _ATTR + r")\s*)*"
    r"([A-Za-z_]\w*)\s*((?:\[[^\[\]{};=]*\]\s*)+)(?:" + _ATTR + r"\s*)*=\s*")
_POINTER_RE = re.compile(
    r"(?<![\w*])(?:static\s+)?\bconst\s+(" + _TYPE_ALT + r")\s*\*\s*(?:const\s+)?([A-Za-z_]\w*)\s*=\s*"
    r"([A-Za-z_]\w*)\s*;")
_BRACE_OR_SEMI = re.compile(r"[{};]")
_PREPROCESSOR = re.compile(r"^[ \t]*#(?:[^\n\\]|\\.)*", re.M | re.S)


def _braced(text, start, where, name):
    """(inner text with nested braces removed, end index after the closing brace and the semicolon)."""
    if start >= len(text) or text[start] != "{":
        raise CHeaderError(f"{where}array {name}: expected '{{' after '=' (only brace initialisers are read)")
    depth, i = 0, None
    for m in _BRACE_OR_SEMI.finditer(text, start):
        if m.group() == ";":
            raise CHeaderError(f"{where}array {name}: ';' inside its initialiser (a '}}' is missing)")
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            i = m.start()
            break
    if i is None:
        raise CHeaderError(f"{where}array {name}: the initialiser is not closed with '}}'")
    semi = re.compile(r"\s*;").match(text, i + 1)
    if semi is None:
        raise CHeaderError(f"{where}array {name}: no ';' after the closing '}}'")
    inner = text[start + 1:i]
    return re.sub(r"[{}]", " ", inner), semi.end()


def _values(body, ctype, where, name):
    tokens = [t.strip() for t in body.split(",")]
    if tokens and tokens[-1] == "":
        tokens.pop()                       # one trailing comma is C
    if any(t == "" for t in tokens):
        raise CHeaderError(f"{where}array {name}: an empty value between two commas")
    tokens = [_CAST_RE.sub("", t) for t in tokens]
    dtype = np.dtype(C_TYPES[ctype])
    if dtype.kind == "f":
        try:
            return round_like_c(tokens, dtype)
        except CHeaderError as e:
            raise CHeaderError(f"{where}array {name}: {e}") from None
    values = []
    for t in tokens:
        try:
            values.append(parse_int_literal(t))
        except ValueError as e:
            raise CHeaderError(f"{where}array {name}: {e}") from None
    info = np.iinfo(dtype)
    bad = [v for v in values if v < info.min or v > info.max]
    if bad:
        raise CHeaderError(f"{where}array {name}: the value {bad[0]} does not fit {ctype} "
                           f"[{info.min}, {info.max}]")
    return np.array(values, dtype=dtype)


def _canonical_type(ctype):
    return re.sub(r"\s+", " ", ctype)


def parse_arrays(text, source=None, types=None):
    """Typed C array definitions -> dict name -> np.ndarray of the element type (values checked to fit and
    counted against the declared length; several numeric dimensions give that shape, else 1-D).
    `const T *const name = NULL;` gives None; `= other;` is other's array (defined before it).
    `types`: C type names to read (others are skipped unread); None reads every type of C_TYPES."""
    where = _where(source)
    text = _PREPROCESSOR.sub(lambda m: " " * len(m.group(0)), strip_comments(text))
    arrays = {}
    pos = 0
    while True:
        m = _ARRAY_START.search(text, pos)
        if m is None:
            break
        ctype, name, dims = _canonical_type(m.group(1)), m.group(2), m.group(3)
        body, pos = _braced(text, m.end(), where, name)
        if types is not None and ctype not in types:
            continue
        arr = _values(body, ctype, where, name)
        sizes = re.findall(r"\[([^\]]*)\]", dims)
        shape = [s.strip() for s in sizes]
        if all(s.isdigit() for s in shape):
            want = int(np.prod([int(s) for s in shape]))
            if want != arr.size:
                raise CHeaderError(f"{where}array {name}: declared length {'x'.join(shape)}, "
                                   f"{arr.size} values given")
            if len(shape) > 1:
                arr = arr.reshape([int(s) for s in shape])
        elif len(shape) > 1 and "" in shape[1:]:
            raise CHeaderError(f"{where}array {name}: only the first dimension may be left empty")
        arrays[name] = arr
    for ctype, name, target in _POINTER_RE.findall(text):
        if types is not None and _canonical_type(ctype) not in types:
            continue
        if target in ("NULL", "nullptr"):
            arrays[name] = None
        elif target in arrays:
            arrays[name] = arrays[target]
        else:
            raise CHeaderError(f"{where}pointer {name} refers to {target}, which is not defined before it")
    return arrays


def read_header(path):
    """(parse_defines, parse_arrays) of one header file; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise CHeaderError(f"{path}: cannot read the header ({e.strerror or e})") from None
    return parse_defines(text), parse_arrays(text, source=path)
