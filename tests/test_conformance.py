"""CMSIS-NN conformance runner (emu/conformance.py): header parsing, classification, discovery, and every
CMSIS-NN test-data case reproduced exactly by the Numba and C kernel backends."""
import os
import re
import shutil
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive
from emu.conformance import CaseResult, discover, parse_arrays, parse_defines, run_all, run_case
from emu.errors import N6Error
from emu.kernels import ctwin
from emu.kernels.backends import get_backend


@pytest.fixture
def kernels_named(request):
    """Kernel namespace for a backend name: tests/naive.py, the Numba kernels, or the C twins (the c_kernels
    fixture: skipped only when no C compiler can build them). Any import problem of the project's own code fails."""
    def get(name):
        if name == "naive":  # tests/naive.py: the obvious reference implementations, same names and arguments
            return naive
        if name == "c":
            request.getfixturevalue("c_kernels")
        return get_backend(name)
    return get


@pytest.fixture(scope="module")
def any_backend():
    """A complete kernel backend for tests about the runner itself (C when built, else Numba)."""
    return "c" if ctwin.available() else "numba"


# ---- header parser -------------------------------------------------------------------------------------

def test_parse_defines_values_and_forms():
    text = """// comment line
#pragma once
#define CASE_A 7
#define CASE_NEG -128   // trailing comment
#define CASE_HEX 0x7F
#define CASE_NEGHEX -0x80
#define CASE_PAREN (-3)
#define CASE_PAD SAME
#define CASE_FLAG true
#define CASE_LIST                                   \\
    {                                               \\
        5, 4, -20, 0,                               \\
    }
/* block
#define CASE_HIDDEN 1 */
#define CASE_EMPTY
"""
    d = parse_defines(text)
    assert d == {"CASE_A": 7, "CASE_NEG": -128, "CASE_HEX": 127, "CASE_NEGHEX": -128, "CASE_PAREN": -3,
                 "CASE_PAD": "SAME", "CASE_FLAG": "true", "CASE_LIST": (5, 4, -20, 0), "CASE_EMPTY": ""}


def test_parse_arrays_types_signs_hex_null_alias():
    text = """#include <stdint.h>
const int8_t c_input[5] = {-128, 127, 0x10, -0x7f, 0};
const int32_t c_mult[3] = {2147483647, -2147483648,
                           1073741824};
const int32_t *const c_bias = NULL;
const int32_t *const c_biases = c_bias;
const int8_t c_out[2] = {1, -1};
const int8_t *const c_out_alias = c_out;
"""
    a = parse_arrays(text)
    assert a["c_input"].dtype == np.int8 and a["c_input"].tolist() == [-128, 127, 16, -127, 0]
    assert a["c_mult"].dtype == np.int32 and a["c_mult"].tolist() == [2**31 - 1, -2**31, 2**30]
    assert a["c_bias"] is None and a["c_biases"] is None
    assert a["c_out_alias"] is a["c_out"]


_C_TYPES = {np.int8: "int8_t", np.uint8: "uint8_t", np.int16: "int16_t", np.int32: "int32_t"}


def _c_literal(v, style):
    if style == "dec":
        return str(v)
    digits = format(abs(v), "x" if style == "hex" else "X")
    return ("-" if v < 0 else "") + ("0x" if style == "hex" else "0X") + digits


@st.composite
def _c_array(draw):
    """A C array definition in random formatting (decimal/hex literals, separators, trailing comma, length)."""
    dtype = draw(st.sampled_from(list(_C_TYPES)))
    info = np.iinfo(dtype)
    values = draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=1, max_size=40))
    n = len(values)
    styles = draw(st.lists(st.sampled_from(["dec", "hex", "HEX"]), min_size=n, max_size=n))
    seps = draw(st.lists(st.sampled_from([", ", ",", ",\n    ", " ,  "]), min_size=n - 1, max_size=n - 1))
    body = _c_literal(values[0], styles[0])
    for v, style, sep in zip(values[1:], styles[1:], seps):
        body += sep + _c_literal(v, style)
    if draw(st.booleans()):
        body += ","
    length = draw(st.sampled_from([str(n), ""]))
    return dtype, values, f"const {_C_TYPES[dtype]} case_x[{length}] = {{{body}}};"


@settings(max_examples=200, deadline=None)
@given(_c_array())
def test_parse_arrays_round_trip(arr):
    dtype, values, text = arr
    got = parse_arrays("// header\n#include <stdint.h>\n" + text + "\n")["case_x"]
    assert got.dtype == dtype and got.tolist() == values


@pytest.mark.parametrize("text, problem", [
    ("const int8_t x[3] = {1, 2};", "declared length"),
    ("const int8_t x[2] = {1, 128};", "does not fit"),
    ("const int32_t x[1] = {2147483648};", "does not fit"),
    ("const int8_t x[2] = {1, FOO};", "not an integer"),
    ("const int32_t *const b = missing;", "not defined"),
])
def test_parse_arrays_rejects_malformed(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_arrays(text)


# ---- discovery and classification -------------------------------------------------------------------

def _expected_case_dirs(root):
    found = []
    for dirpath, _dirs, files in os.walk(root):
        if "config_data.h" in files or any(re.match(r"layer_\d+_.+_config_data\.h$", f) for f in files):
            found.append(os.path.realpath(dirpath))
    return sorted(found)


def test_discover_finds_every_case_folder(conformance_dir):
    got = [os.path.realpath(p) for p in discover(conformance_dir)]
    assert sorted(got) == _expected_case_dirs(conformance_dir)
    assert len(got) == len(set(got)) and len(got) > 0


def test_discover_recurses_and_includes_root(conformance_dir, tmp_path):
    shutil.copytree(conformance_dir / "softmax", tmp_path / "a" / "b" / "softmax")
    shutil.copytree(conformance_dir / "ds_cnn_s", tmp_path / "net")
    (tmp_path / "a" / "empty").mkdir()
    names = [p.name for p in discover(tmp_path)]
    assert sorted(names) == ["net", "softmax"]
    assert [p.name for p in discover(tmp_path / "a" / "b" / "softmax")] == ["softmax"]
    with pytest.raises(N6Error):
        discover(tmp_path / "absent")


def test_unknown_backend_is_a_one_line_error(conformance_dir):
    with pytest.raises(N6Error):
        run_case(conformance_dir / "basic", backend="no-such-backend")


# ---- every case passes on every backend ----------------------------------------------------------------

_KINDS = {"conv_s8", "depthwise_conv_s8", "fully_connected_s8", "fully_connected_s8 (per-channel)", "avgpool_s8",
          "maxpool_s8", "softmax_s8", "add_s8", "mul_s8", "pad_s8", "transpose_s8", "network"}


@pytest.mark.parametrize("backend", ["numba", "c", "naive"])
def test_every_conformance_case_passes(conformance_dir, kernels_named, backend):
    kernels = kernels_named(backend)
    results = run_all(conformance_dir, backend=kernels)
    assert len(results) == len(_expected_case_dirs(conformance_dir))
    bad = [r for r in results if r.status != "PASS"]
    assert not bad, "\n".join(f"{r.status} {r.name} ({r.op}): {r.n_mismatch}/{r.n_total} at {r.first_mismatch}; "
                              f"{r.detail}" for r in bad)
    for r in results:
        assert r.n_mismatch == 0 and r.n_total > 0 and r.first_mismatch is None
    # the shared data exercises every kind of case the runner knows
    assert {r.op for r in results} == _KINDS


# ---- corrupted references and unknown layouts -------------------------------------------------------

def _corrupt(header, index):
    """Changes value `index` of the (only) array in header by +1 (wrapping within int8)."""
    text = header.read_text()
    m = re.search(r"\{([^}]*)\}", text)
    tokens = m.group(1).split(",")
    values = [t for t in range(len(tokens)) if tokens[t].strip()]
    pos = values[index]
    old = int(tokens[pos].strip(), 0)
    tokens[pos] = " " + str((old + 1 + 128) % 256 - 128)
    header.write_text(text[:m.start(1)] + ",".join(tokens) + text[m.end(1):])


def _out_shape(case_dir, op):
    """NHWC shape of the reference output, from the case's config (independent of the runner)."""
    d = parse_defines((case_dir / "config_data.h").read_text())
    p = case_dir.name.upper() + "_"
    g = lambda k: d[p + k]  # noqa: E731
    if op == "conv":
        return (g("INPUT_BATCHES"), g("OUTPUT_H"), g("OUTPUT_W"), g("OUT_CH"))
    if op == "fc":
        return (g("INPUT_BATCHES"), 1, 1, g("OUT_CH"))
    if op == "pool":
        return (g("BATCH_SIZE"), g("OUTPUT_H"), g("OUTPUT_W"), g("OUTPUT_C"))
    if op == "transpose":
        dims = g("OUT_DIM")[:g("PERM_SIZE")]
        return (1,) * (4 - len(dims)) + tuple(dims)
    raise AssertionError(op)


@pytest.mark.parametrize("case, ref_file, op", [
    ("basic", "output_ref_data.h", "conv"),
    ("kernel1x1", "output_ref_data.h", "conv"),            # 2 batches
    ("depthwise_mult_batches", "output_ref_data.h", "conv"),
    ("fully_connected", "output_ref_data.h", "fc"),        # 3 batches
    ("maxpooling", "output.h", "pool"),                    # 2 batches
    ("avgpooling_4", "output.h", "pool"),                  # 3 batches
    ("transpose_3dim", "output.h", "transpose"),
    ("transpose_chwn", "output.h", "transpose"),
])
def test_corrupted_reference_fails_at_its_nhwc_position(conformance_dir, tmp_path, any_backend, case, ref_file, op):
    src = conformance_dir / case
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    for trial in range(2):
        dst = tmp_path / f"{trial}" / case
        shutil.copytree(src, dst)
        shape = _out_shape(dst, op)
        index = int(rng.integers(0, int(np.prod(shape)))) if trial else int(np.prod(shape)) - 1
        _corrupt(dst / ref_file, index)
        r = run_case(dst, backend=any_backend)
        assert isinstance(r, CaseResult)
        assert (r.status, r.n_mismatch, r.n_total) == ("FAIL", 1, int(np.prod(shape))), r
        assert r.first_mismatch == tuple(int(i) for i in np.unravel_index(index, shape)), (r, shape, index)


def test_corrupted_network_output_fails(conformance_dir, tmp_path, any_backend):
    dst = tmp_path / "ds_cnn_s"
    shutil.copytree(conformance_dir / "ds_cnn_s", dst)
    _corrupt(dst / "output_ref_data.h", 5)
    r = run_case(dst, backend=any_backend)
    assert (r.status, r.op, r.n_mismatch, r.first_mismatch) == ("FAIL", "network", 1, (0, 0, 0, 5)), r


def test_unknown_folders_are_reported_not_raised(conformance_dir, tmp_path, any_backend):
    (tmp_path / "mystery").mkdir()
    (tmp_path / "mystery" / "config_data.h").write_text("#define MYSTERY_FOO 1\n#define MYSTERY_BAR SAME\n")
    # a conv-looking case whose weights are missing
    shutil.copytree(conformance_dir / "basic", tmp_path / "noweights")
    (tmp_path / "noweights" / "weights_data.h").unlink()
    # an array header that does not parse
    shutil.copytree(conformance_dir / "softmax", tmp_path / "garbled")
    (tmp_path / "garbled" / "input_data.h").write_text("const int8_t softmax_input[10] = {1, 2, x};\n")
    # a geometry that does not match the data
    shutil.copytree(conformance_dir / "conv_2", tmp_path / "badgeometry")
    cfg = tmp_path / "badgeometry" / "config_data.h"
    cfg.write_text(cfg.read_text().replace("CONV_2_INPUT_W 6", "CONV_2_INPUT_W 7"))
    # zero / negative dimensions
    shutil.copytree(conformance_dir / "conv_2", tmp_path / "zerochannels")
    cfg = tmp_path / "zerochannels" / "config_data.h"
    cfg.write_text(cfg.read_text().replace("CONV_2_OUT_CH 4", "CONV_2_OUT_CH 0"))
    shutil.copytree(conformance_dir / "avgpooling", tmp_path / "negative")
    cfg = tmp_path / "negative" / "config_data.h"
    cfg.write_text(cfg.read_text().replace("AVGPOOLING_OUTPUT_H 3", "AVGPOOLING_OUTPUT_H -3"))
    shutil.copytree(conformance_dir / "pad_int8_1", tmp_path / "zeropad")
    cfg = tmp_path / "zeropad" / "config_data.h"
    cfg.write_text(cfg.read_text().replace("PAD_INT8_1_INPUT_C 2", "PAD_INT8_1_INPUT_C 0"))
    # a network folder with a layer of an unknown op
    shutil.copytree(conformance_dir / "ds_cnn_s", tmp_path / "net")
    (tmp_path / "net" / "layer_14_lstm_config_data.h").write_text("#define LSTM_14_X 1\n#define LSTM_14_Y 2\n")
    results = {r.name: r for r in run_all(tmp_path, backend=any_backend)}
    assert set(results) == {"mystery", "noweights", "garbled", "badgeometry", "zerochannels", "negative",
                            "zeropad", "net"}
    for name, r in results.items():
        assert r.status == "UNKNOWN" and r.detail, r
        assert (r.n_mismatch, r.n_total, r.first_mismatch) == (0, 0, None)
    assert "weights" in results["noweights"].detail
    assert "lstm" in results["net"].detail


def test_headers_follow_test_data_h(conformance_dir, tmp_path, any_backend):
    """fully_connected holds stale headers of an older generator (input.h, weights.h, ...): only the ones
    test_data.h includes count. Without test_data.h every header is read (here: basic, no stale files)."""
    shutil.copytree(conformance_dir / "fully_connected", tmp_path / "fully_connected")
    assert run_case(tmp_path / "fully_connected", backend=any_backend).status == "PASS"
    shutil.copytree(conformance_dir / "basic", tmp_path / "basic")
    (tmp_path / "basic" / "test_data.h").unlink()
    assert run_case(tmp_path / "basic", backend=any_backend).status == "PASS"


def test_null_bias_means_zeros(conformance_dir, tmp_path, any_backend):
    case = "fully_connected_null_bias_0"
    d = tmp_path / case
    shutil.copytree(conformance_dir / case, d)
    assert not parse_arrays((d / "biases_data.h").read_text())[f"{case}_biases"].any()
    (d / "biases_data.h").write_text(f"#include <stdint.h>\nconst int32_t *const {case}_biases = NULL;\n")
    assert run_case(d, backend=any_backend).status == "PASS"


class _BrokenKernels:
    """A backend that computes nothing (leaves `out` untouched) or refuses its arguments."""

    def __init__(self, raise_error):
        self.raise_error = raise_error

    def __getattr__(self, name):
        def kernel(*args):
            if self.raise_error:
                raise ValueError(f"{name}: refused")
        return kernel


def test_runner_compares_what_the_backend_writes(conformance_dir):
    r = run_case(conformance_dir / "conv_2", backend=_BrokenKernels(False))
    ref = parse_arrays((conformance_dir / "conv_2" / "output_ref_data.h").read_text())["conv_2_output_ref"]
    assert r.status == "FAIL" and r.n_mismatch == int(np.count_nonzero(ref)) and r.n_total == ref.size
    r = run_case(conformance_dir / "conv_2", backend=_BrokenKernels(True))
    assert (r.status, r.op) == ("FAIL", "conv_s8") and "refused" in r.detail and "\n" not in r.detail


def test_network_intermediate_reference_is_checked(conformance_dir, tmp_path, any_backend):
    """A per-layer reference (<case>_layer_<k>_<op>_output_ref, included by test_data.h) is compared too: an
    all-zero one for layer 3 must fail there, with the layer named, although the final output is right."""
    dst = tmp_path / "ds_cnn_s"
    shutil.copytree(conformance_dir / "ds_cnn_s", dst)
    d = parse_defines((dst / "layer_3_conv_2d_config_data.h").read_text())
    size = d["CONV_2D_3_OUTPUT_H"] * d["CONV_2D_3_OUTPUT_W"] * d["CONV_2D_3_OUT_CH"]
    (dst / "layer_3_conv_2d_output_ref_data.h").write_text(
        f"const int8_t ds_cnn_s_layer_3_conv_2d_output_ref[{size}] = {{{', '.join(['0'] * size)}}};\n")
    index = dst / "test_data.h"
    index.write_text(index.read_text() + '#include "layer_3_conv_2d_output_ref_data.h"\n')
    r = run_case(dst, backend=any_backend)
    assert r.status == "FAIL" and "layer 3" in r.detail and r.n_total == size, r
    assert r.n_mismatch > 0 and len(r.first_mismatch) == 4


def test_single_rounding_is_a_real_switch(conformance_dir, kernels_named):
    """The reference data is double rounding: single rounding must break some requantizing cases (never make
    a folder UNKNOWN), and both backends must disagree with the data in exactly the same places."""
    per_backend = {}
    for name in ("numba", "c"):
        kernels = kernels_named(name)
        per_backend[name] = run_all(conformance_dir, backend=kernels, rounding="single")
    for results in per_backend.values():
        assert not [r for r in results if r.status == "UNKNOWN"]
        failed = [r for r in results if r.status == "FAIL"]
        assert failed and all(r.n_mismatch > 0 and r.first_mismatch is not None for r in failed)
        assert all(r.op in ("conv_s8", "depthwise_conv_s8", "network") or r.op.startswith("fully_connected")
                   or r.op == "mul_s8" for r in failed)
    numba, c = per_backend["numba"], per_backend["c"]
    assert [(r.name, r.status, r.n_mismatch, r.first_mismatch) for r in numba] == \
           [(r.name, r.status, r.n_mismatch, r.first_mismatch) for r in c]


def test_unknown_rounding_is_a_one_line_error(conformance_dir):
    with pytest.raises(N6Error, match="rounding"):
        run_all(conformance_dir, backend="c", rounding="nearest")


@pytest.mark.parametrize("case", ["basic", "avgpooling", "maxpooling_2", "transpose_nchw", "fc_per_ch"])
def test_renamed_folder_is_classified_by_content(conformance_dir, tmp_path, any_backend, case):
    """The <CASE>_ prefix is taken from the names inside the headers, not from the folder name."""
    shutil.copytree(conformance_dir / case, tmp_path / "renamed")
    direct = run_case(conformance_dir / case, backend=any_backend)
    renamed = run_case(tmp_path / "renamed", backend=any_backend)
    assert renamed.status == "PASS" and renamed.name == "renamed"
    assert (renamed.op, renamed.n_total) == (direct.op, direct.n_total)


_FUZZ_CASES = ["basic", "depthwise_2", "fully_connected", "fc_per_ch", "avgpooling_1", "maxpooling_3", "softmax",
               "add", "mul", "pad_int8_1", "transpose_matrix", "transpose_3dim"]


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(_FUZZ_CASES), pick=st.integers(0, 10**6),
       value=st.one_of(st.integers(-3, 40), st.sampled_from(["SAME", "{1, 0}", "0x7fffffff", "-2147483648"])))
def test_mutated_config_never_raises(conformance_dir, case, pick, value):
    """Any one define changed to another value: a CaseResult comes back (usually UNKNOWN or FAIL), no exception."""
    import tempfile
    from pathlib import Path
    kernels = get_backend("numba")
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / case
        shutil.copytree(conformance_dir / case, dst)
        cfg = dst / "config_data.h"
        text = cfg.read_text()
        names = re.findall(r"#define (\w+) ", text)
        name = names[pick % len(names)]
        text = re.sub(rf"(#define {name} )[^\n\\\\]*(\n)", lambda m: f"{m.group(1)}{value}{m.group(2)}", text, count=1)
        cfg.write_text(text)
        r = run_case(dst, backend=kernels)
    assert isinstance(r, CaseResult) and r.status in ("PASS", "FAIL", "UNKNOWN")
    assert "\n" not in r.detail
