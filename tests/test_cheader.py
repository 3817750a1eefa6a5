"""emu.cheader: the one C-header parser (defines, typed arrays, pointers, includes, C-exact float literals).

Oracles: gcc (compiles the same header; the bytes it stores must equal the parsed arrays), the CMSIS-NN
conformance headers in ../shared, and hand-written expectations. Malformed input must raise CHeaderError
(an N6Error and a ValueError) in one line naming the file and the array.
"""
import ctypes
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu import cheader, conformance
from emu.cheader import CHeaderError, parse_arrays, parse_defines, parse_includes, read_header
from emu.errors import N6Error
from emu.frontend import tables

GCC = shutil.which("gcc")

# ---- arrays: declaration forms -------------------------------------------------------------------------


def test_golden_vector_declaration_with_alignment_attribute():
    text = """#pragma once
#include <stdint.h>
// golden vectors of layer 3
const int8_t kws_layer_3_output[6] __attribute__((aligned(16))) = {
    -128, 127, 0,
    0x10, -0x7f, 5,
};
const int32_t kws_layer_3_bias[2] __attribute__((aligned(16), section(".rodata.golden"))) = {-2147483648, 2147483647};
"""
    a = parse_arrays(text, source="golden_kws.h")
    assert a["kws_layer_3_output"].dtype == np.int8
    assert a["kws_layer_3_output"].tolist() == [-128, 127, 0, 16, -127, 5]
    assert a["kws_layer_3_bias"].dtype == np.int32 and a["kws_layer_3_bias"].tolist() == [-2**31, 2**31 - 1]


@pytest.mark.parametrize("decl", [
    "static const int16_t t[3] = {1, -2, 3};",
    "const static int16_t t[3] = {1, -2, 3};",
    "static int16_t t[3] = {1, -2, 3};",
    "int16_t t[] = {1, -2, 3,};",
    "__ALIGNED(8) static const int16_t t[3] = {1, -2, 3};",
    "_Alignas(8) const int16_t t[3] = {1, -2, 3};",
    "alignas(8) const int16_t t[3] = {1, -2, 3};",
    "const q15_t t[3] __attribute__ ((aligned (4))) = {1, -2, 3};",
    "const int16_t t[T_LEN] = {1, -2, 3};",
    "const int16_t\n    t [ 3 ]\n    =\n    { 1 , -2 ,\n 3 } ;",
    "const int16_t t[3] = { /* a { ; } comment */ 1, -2, // x; }\n 3};",
])
def test_declaration_forms(decl):
    a = parse_arrays(f"#define T_LEN 3\n{decl}\n")
    assert list(a) == ["t"] and a["t"].dtype == np.int16 and a["t"].tolist() == [1, -2, 3]


@pytest.mark.parametrize("ctype, dtype", [
    ("int8_t", np.int8), ("q7_t", np.int8), ("uint8_t", np.uint8), ("int16_t", np.int16), ("q15_t", np.int16),
    ("uint16_t", np.uint16), ("int32_t", np.int32), ("q31_t", np.int32), ("int", np.int32), ("uint32_t", np.uint32),
    ("unsigned", np.uint32), ("unsigned int", np.uint32), ("int64_t", np.int64), ("q63_t", np.int64),
    ("uint64_t", np.uint64), ("size_t", np.uint32),
])
def test_integer_types_take_their_extremes(ctype, dtype):
    info = np.iinfo(dtype)
    text = f"const {ctype} x[4] = {{{info.min}, {info.max}, 0, 1}};"
    a = parse_arrays(text)["x"]
    assert a.dtype == dtype and a.tolist() == [info.min, info.max, 0, 1]
    with pytest.raises(CHeaderError, match=f"does not fit {ctype}"):
        parse_arrays(f"const {ctype} x[1] = {{{info.max + 1}}};")


def test_integer_literal_forms():
    a = parse_arrays("const int32_t x[9] = {0x7F, 0X10, -0x80, 010, 0, 0b101, 7u, 9UL, -3ll};")["x"]
    assert a.tolist() == [127, 16, -128, 8, 0, 5, 7, 9, -3]   # 010 is octal, as in C


def test_float_arrays_hold_what_the_compiler_stores():
    text = """
const float f[4] = {0.1f, 0.1, 1e-46f, 3.4028235e38};
const double d[3] = {0.1, 0x1p-1074, -0.0};
static const float16_t h[4] = {(float16_t)0.1, 0x1.8p-1, 65520.0, 1e-8};
const float32_t g[2] = {1, -2};
"""
    a = parse_arrays(text)
    assert a["f"].dtype == np.float32 and a["d"].dtype == np.float64 and a["h"].dtype == np.float16
    assert a["f"].tolist() == [np.float32(0.1), np.float32(0.1), 0.0, np.float32(3.4028235e38)]
    assert a["d"][0] == 0.1 and a["d"][1] == 5e-324 and np.signbit(a["d"][2])
    assert a["h"][0] == np.float16(0.1) and a["h"][1] == 0.75 and np.isinf(a["h"][2]) and a["h"][3] == 0.0
    assert a["g"].tolist() == [1.0, -2.0]


def test_double_rounding_of_a_float_literal_stored_as_half():
    # 1 + 2^-11 + 2^-32 as a double literal rounds up to half 1 + 2^-10; the same digits with the f suffix are
    # first rounded to float32 (1 + 2^-11, the half tie), then to even: 1.0. The compiler stores exactly that.
    text = "0x1.00200001p0"
    a = parse_arrays(f"const float16_t h[2] = {{{text}, {text}f}};")["h"]
    assert a.tolist() == [1.0009765625, 1.0]


def test_multi_dimensional_arrays_keep_their_shape():
    a = parse_arrays("const int8_t w[2][3] = {{1, 2, 3}, {4, 5, 6}};\nconst int8_t v[][2] = {{1, 2}, {3, 4}};")
    assert a["w"].shape == (2, 3) and a["w"].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert a["v"].shape == (4,) and a["v"].tolist() == [1, 2, 3, 4]


def test_null_and_alias_pointers():
    text = """const int32_t c_bias_data[2] = {1, 2};
const int32_t *const c_bias = c_bias_data;
static const int8_t * const c_out = NULL;
const int8_t *c_other = nullptr;
"""
    a = parse_arrays(text)
    assert a["c_bias"] is a["c_bias_data"] and a["c_out"] is None and a["c_other"] is None


def test_other_types_preprocessor_lines_and_declarations_without_initialiser_are_ignored():
    text = """#define TABLE {1, 2, 3}
#define DECL const int8_t hidden[2] = {1, 2};
extern const int8_t declared[4];
void kernel(const int8_t in[], int n);
const my_struct_t s[1] = {{1, 2}};
const char name[4] = "abc";
const int8_t kept[1] = {7};
"""
    assert {k: v.tolist() for k, v in parse_arrays(text).items()} == {"kept": [7]}


def test_types_filter_reads_only_the_named_types():
    text = "const int8_t a[1] = {1};\nconst float b[1] = {0.5f};\nconst int8_t bad[1] = {999};"
    assert list(parse_arrays(text, types=("float",))) == ["b"]


# ---- defines and includes -------------------------------------------------------------------------------

def test_defines_values():
    text = """#define A 7
#define NEG (-128)   // comment
#define HEX 0x7F
#define OCT 010
#define SCALE 0.1
#define SCALE_F 0.1f
#define LIST { 5, 4, \\
               -20, 0, }
#define FLOATS {0.5f, 2}
#define EXPR (1 << 4)
#define PAD SAME
#define EMPTY
"""
    d = parse_defines(text)
    assert d == {"A": 7, "NEG": -128, "HEX": 127, "OCT": 8, "SCALE": 0.1, "SCALE_F": float(np.float32(0.1)),
                 "LIST": (5, 4, -20, 0), "FLOATS": (0.5, 2), "EXPR": "(1 << 4)", "PAD": "SAME", "EMPTY": ""}
    assert isinstance(d["A"], int) and isinstance(d["SCALE"], float)


def test_includes_in_order_without_system_headers_or_comments():
    text = '#include <stdint.h>\n#include "b.h"\n  #  include "a.h"\n// #include "old.h"\n/* #include "x.h" */'
    assert parse_includes(text) == ["b.h", "a.h"]


# ---- malformed input: one line, naming the file and the array ----------------------------------------------

@pytest.mark.parametrize("text, problem", [
    ("const int8_t x[3] = {1, 2};", "array x: declared length 3, 2 values given"),
    ("const int8_t x[2][2] = {{1, 2}, {3}};", "array x: declared length 2x2, 3 values given"),
    ("const int8_t x[2] = {1, 128};", "array x: the value 128 does not fit int8_t"),
    ("const uint8_t x[1] = {-1};", "array x: the value -1 does not fit uint8_t"),
    ("const int8_t x[2] = {1, FOO};", "array x: 'FOO' is not an integer literal"),
    ("const int32_t x[2] = {1, 2.5};", "array x: '2.5' is not an integer literal"),
    ("const int8_t x[3] = {1, , 3};", "array x: an empty value between two commas"),
    ("const float x[2] = {1.0f, 12f};", "array x: '12f' is not a C floating constant"),
    ("const float x[1] = {one};", "array x: 'one' is not a C floating constant"),
    ("const int8_t x[2] = {1, 2}\nconst int8_t y[1] = {3};", "array x: ';' inside its initialiser|array x: no ';'"),
    ("const int8_t x[2] = {1, 2;", "array x: ';' inside its initialiser"),
    ("const int8_t x[2] = {1, 2", "array x: the initialiser is not closed"),
    ("const int8_t x[2] = {1, 2}", "array x: no ';' after the closing"),
    ("const int8_t x[1] = 5;", "array x: expected '{'"),
    ("const int32_t *const b = missing;", "pointer b refers to missing, which is not defined before it"),
])
def test_malformed_input_is_one_line_naming_file_and_array(text, problem):
    with pytest.raises(CHeaderError, match=problem) as e:
        parse_arrays(text, source="case/weights_data.h")
    msg = str(e.value)
    assert msg.startswith("case/weights_data.h: ") and "\n" not in msg
    assert isinstance(e.value, N6Error) and isinstance(e.value, ValueError)


def test_read_header_names_the_file(tmp_path):
    p = tmp_path / "bad.h"
    p.write_text("#define N 2\nconst int8_t v[N] = {1, 2, 3};\nconst int8_t w[2] = {1, 999};\n")
    with pytest.raises(CHeaderError, match=r"bad\.h: array w: the value 999 does not fit int8_t"):
        read_header(p)
    with pytest.raises(CHeaderError, match=r"absent\.h: cannot read the header"):
        read_header(tmp_path / "absent.h")


def test_round_like_c_rejects_other_dtypes():
    with pytest.raises(CHeaderError, match="float16/float32/float64, not int32"):
        cheader.round_like_c(["1.0"], np.int32)


# ---- round trips -----------------------------------------------------------------------------------------

_INT_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]
_CTYPE = {np.int8: "int8_t", np.uint8: "uint8_t", np.int16: "int16_t", np.uint16: "uint16_t", np.int32: "int32_t",
          np.uint32: "uint32_t", np.int64: "int64_t", np.uint64: "uint64_t", np.float16: "float16_t",
          np.float32: "float", np.float64: "double"}


@st.composite
def c_array(draw):
    """(dtype, values, C text) in random formatting: hex/decimal integers, %.17g / %.9g+f / %.5g / hex floats."""
    dtype = draw(st.sampled_from(_INT_DTYPES + [np.float16, np.float32, np.float64]))
    n = draw(st.integers(0, 30))
    if np.dtype(dtype).kind == "f":
        bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]
        raw = draw(st.lists(st.integers(0, int(np.iinfo(bits).max)), min_size=n, max_size=n))
        values = np.array(raw, dtype=bits).view(dtype)
        values = values[np.isfinite(values)]
        fmt = draw(st.sampled_from(["exact", "hex"]))
        if fmt == "hex":
            texts = [float(v).hex() for v in values]
        else:
            texts = [tables.format_c_constant(v, dtype) if dtype != np.float64 else "%.17g" % v for v in values]
    else:
        info = np.iinfo(dtype)
        values = np.array(draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=n, max_size=n)), dtype)
        texts = [(hex(int(v)) if draw(st.booleans()) else str(int(v))) for v in values]
    sep = draw(st.sampled_from([", ", ",\n  ", ","]))
    align = draw(st.sampled_from(["", " __attribute__((aligned(16)))"]))
    body = sep.join(texts) + ("," if texts and draw(st.booleans()) else "")
    return dtype, values, f"const {_CTYPE[dtype]} v[{len(texts)}]{align} = {{{body}}};\n"


@settings(max_examples=300, deadline=None)
@given(c_array())
def test_printed_arrays_parse_back_exactly(case):
    dtype, values, text = case
    got = parse_arrays(text)["v"]
    assert got.dtype == dtype and got.shape == values.shape
    assert got.tobytes() == values.tobytes()


def test_gcc_stores_what_the_parser_reads(tmp_path):
    """One header with every element type, integer and float literal forms and the golden-vector attribute,
    compiled by gcc: the stored bytes equal the parsed arrays."""
    if GCC is None:
        pytest.skip("oracle unavailable: gcc is not installed (apt-get install gcc)")
    rng = np.random.default_rng(9)
    lines = ["#include <stdint.h>", "#include <stddef.h>", "typedef _Float16 float16_t;"]
    forms = ["0x7f", "-0x80", "010", "0b11", "5u", "-3l", "0"]
    for dtype in _INT_DTYPES:
        info = np.iinfo(dtype)
        vals = [str(int(v)) for v in rng.integers(int(info.min), int(info.max), 20, dtype=dtype, endpoint=True)]
        vals += [str(int(info.min)), str(int(info.max))] + [t for t in forms if info.min < 0 or t[0] != "-"]
        lines.append(f"const {_CTYPE[dtype]} a_{_CTYPE[dtype]}[] __attribute__((aligned(16))) = {{{', '.join(vals)}}};")
    floats = ["0.1", "0.1f", "-1e-8", "1e-46f", "0x1.8p-3", "0x1.00200001p0", "0x1.00200001p0f", "65519.99",
              "3.4028235e38", "1", "-0.0"]
    floats += ["%.17g" % v for v in rng.standard_normal(30) * np.exp2(rng.integers(-40, 40, 30))]
    for dtype in (np.float16, np.float32, np.float64):
        lines.append(f"static const {_CTYPE[dtype]} a_{np.dtype(dtype).name}[{len(floats)}] = "
                     f"{{{', '.join(floats)}}};")
        lines.append(f"const void *p_{np.dtype(dtype).name} = a_{np.dtype(dtype).name};")
    src = tmp_path / "all.c"
    src.write_text("\n".join(lines) + "\n")
    so = tmp_path / "all.so"
    r = subprocess.run([GCC, "-shared", "-fPIC", "-std=gnu11", "-o", str(so), str(src)], capture_output=True,
                       text=True)
    if r.returncode != 0 and "_Float16" in r.stderr:
        pytest.skip(f"oracle unavailable: this gcc does not compile _Float16 ({r.stderr.splitlines()[:1]}); "
                    "install gcc >= 12")
    assert r.returncode == 0, r.stderr[:2000]
    lib = ctypes.CDLL(str(so))
    parsed = parse_arrays(src.read_text(), source=src.name)
    for name, arr in parsed.items():
        if name.startswith("a_float"):                 # static arrays: read through their exported pointer
            ptr = ctypes.c_void_p.in_dll(lib, "p_" + name[2:]).value
        else:
            ptr = ctypes.addressof(ctypes.c_char.in_dll(lib, name))
        assert ctypes.string_at(ptr, arr.nbytes) == arr.tobytes(), name


# ---- the real headers and the consumers -------------------------------------------------------------------

def test_every_cmsis_nn_header_parses_to_sizes_its_config_names(conformance_dir):
    """Every header of the CMSIS-NN conformance data parses; in the single-op cases the input and reference output
    sizes match the config's geometry."""
    count = 0
    for path in sorted(conformance_dir.rglob("*.h")):
        defines, arrays = read_header(path)
        count += len(defines) + len(arrays)
    assert count > 1000
    d, a = read_header(conformance_dir / "basic" / "config_data.h")[0], {}
    for name in parse_includes((conformance_dir / "basic" / "test_data.h").read_text()):
        a.update(read_header(conformance_dir / "basic" / name)[1])
    n, h, w, c = d["BASIC_INPUT_BATCHES"], d["BASIC_INPUT_H"], d["BASIC_INPUT_W"], d["BASIC_IN_CH"]
    assert a["basic_input"].dtype == np.int8 and a["basic_input"].size == n * h * w * c
    out = a["basic_output_ref"]
    assert out.size == n * d["BASIC_OUTPUT_H"] * d["BASIC_OUTPUT_W"] * d["BASIC_OUT_CH"]
    assert a["basic_output_mult"].dtype == np.int32 and a["basic_output_mult"].size == d["BASIC_OUT_CH"]


def test_consumers_use_this_parser(tmp_path):
    """emu.conformance re-exports the parser; emu.frontend.tables reads its C tables with it (integers as int64,
    errors as FrontendError naming the file and array)."""
    assert conformance.parse_arrays is parse_arrays and conformance.parse_defines is parse_defines
    p = tmp_path / "tables.c"
    p.write_text("const uint32_t user_start[2] __attribute__((aligned(4))) = {1, 0x2};\n"
                 "const float16_t user_win[2] = {(float16_t)0.1, 0x1p-2};\nconst int8_t other[1] = {1};\n")
    arrays = tables.read_c_arrays(p)
    assert sorted(arrays) == ["user_start", "user_win"]
    assert arrays["user_start"].dtype == np.int64 and arrays["user_start"].tolist() == [1, 2]
    assert arrays["user_win"].dtype == np.float16 and arrays["user_win"].tolist() == [np.float16(0.1), 0.25]
    p.write_text("const uint32_t user_start[3] = {1, 2};\n")
    from emu.frontend.params import FrontendError
    with pytest.raises(FrontendError, match=r"tables\.c: array user_start: declared length 3, 2 values given"):
        tables.read_c_arrays(p)
