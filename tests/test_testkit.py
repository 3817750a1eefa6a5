"""The firmware test kit (csrc/testkit, emu/testkit.py) on freshly generated vectors of the bundled device: every
vector passes on the host and on QEMU's Cortex-M55 with the same output; one changed value of one reference array
fails exactly that vector, naming it and the first mismatch; the generated headers compile as C99 (gcc, arm-none-eabi-
gcc) and C++17; frontend.h holds the tables and st_config values the C twin takes (ctwin_st.py's), and the other
front-end builds (st-f32, isa scalar) pass too. Uncovered parts (cmsis-q15 front end, onnxruntime layers) say so."""
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from emu import cheader, testkit
from emu.config import DATA_DIR
from emu.device import Device
from emu.frontend import st
from emu.vectors import write_vectors

CLIPS = [os.path.join(DATA_DIR, "clips", n) for n in ("yes.wav", "no.wav")]
FRONTEND_STAGES = ("framed", "windowed", "fft", "power", "spectrum", "mel", "log", "features", "silence_sum")
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$")


def need_host_cc():
    if shutil.which("gcc") is None:
        pytest.skip("no host C compiler (gcc) to build the test kit; apt-get install gcc")


def need_m55():
    reason = testkit.m55_missing("Cortex-M55 test kit run")
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def device():
    return Device()


@pytest.fixture(scope="module")
def vectors(tmp_path_factory, device):
    out = tmp_path_factory.mktemp("kit") / "vectors"
    write_vectors(device, CLIPS, str(out))
    return out


@pytest.fixture(scope="module")
def manifest(vectors):
    return json.loads((vectors / "manifest.json").read_text())


@pytest.fixture(scope="module")
def host_run(vectors, tmp_path_factory):
    need_host_cc()
    return testkit.build_and_run(vectors, "host", work_dir=tmp_path_factory.mktemp("host"))


def expected_names(manifest):
    """(case, name) of every vector the kit checks: front-end stages, input buffer, layers."""
    names = []
    for case in manifest["cases"]:
        names += [(case, f"frontend/{s}") for s in FRONTEND_STAGES] + [(case, "input_buffer")]
        names += [(case, layer["c_prefix"]) for layer in manifest["layers"]]
    return names


def test_host_run_passes_every_vector(host_run, manifest):
    code, lines = host_run
    assert code == 0, "\n".join(lines[-20:])
    names = expected_names(manifest)
    assert lines[:-1] == [f"PASS {c} {n}" for c, n in names]
    assert lines[-1] == f"{len(names)} passed, 0 failed"
    assert manifest["testkit"]["layers_not_covered"] == [] and manifest["testkit"]["frontend_note"] is None
    assert {"frontend.h", "n6_vectors.c"} <= {f["path"] for f in manifest["files"]}


def _edit_value(header, c_name, index, change):
    """Replace element `index` of array `c_name` in a generated header by change(literal)."""
    text = header.read_text()
    start = text.index("{", text.index(f" {c_name}[")) + 1
    end = text.index("};", start)
    token = list(re.finditer(r"[^,\s]+", text[start:end]))[index]
    a, b = start + token.start(), start + token.end()
    header.write_text(text[:a] + change(text[a:b]) + text[b:])


def _flip_low_bit(literal):
    if literal.startswith("0x"):
        return f"0x{int(literal.rstrip('u'), 16) ^ 1:08x}u"
    v = int(literal)
    return str(v - 1 if v == 127 else v + 1)


@pytest.mark.parametrize("part", ["frontend", "network"])
def test_one_changed_value_fails_exactly_that_vector(vectors, manifest, tmp_path, part):
    """A front-end stage of the second case (the kit recomputes it from pcm), or the last layer's output of the
    first case (read by no other layer): exactly that vector fails, at the changed position."""
    need_host_cc()
    last = manifest["layers"][-1]
    if part == "frontend":
        case, stage, name, index, where = "no_w0", "frontend/fft", "frontend/fft", 1029, r"\(frame 1, value 5\)"
    else:
        case, stage, name, index = "yes_w0", "network/" + last["outputs"][0], last["c_prefix"], 5
        where = r"\(NHWC 0,0,0,5\)"
    rec = next(a for a in manifest["arrays"] if a["case"] == case and a["stage"] == stage)
    copy = tmp_path / "vectors"
    shutil.copytree(vectors, copy)
    _edit_value(copy / rec["header"], rec["c_name"], index, _flip_low_bit)
    code, lines = testkit.build_and_run(copy, "host", work_dir=tmp_path / "build")
    failed = [line for line in lines if line.startswith("FAIL")]
    assert code == 1 and len(failed) == 1, "\n".join(failed)
    size = int(np.prod(rec["shape"]))
    value = r"\S+( \(\S+\))?"      # int8, or float32 bits with the value
    assert re.fullmatch(rf"FAIL {case} {re.escape(name)}: first mismatch at index {index} {where} expected {value} "
                        rf"got {value}, 1/{size} values differ", failed[0]), failed[0]
    n = len(expected_names(manifest))
    assert lines[-1] == f"{n - 1} passed, 1 failed"


MY_CONV = """#include "my_conv.h"
#include "kernels_s8.h"
/* a firmware conv that requantizes with single instead of double rounding */
void my_conv_s8(const int8_t *inp, int32_t n, int32_t h, int32_t w, int32_t cin, const int8_t *filt, int32_t cout,
                int32_t kh, int32_t kw, int32_t cin_g, const int32_t *bias, const int32_t *mult, const int32_t *shift,
                int32_t input_offset, int32_t output_offset, int32_t stride_h, int32_t stride_w, int32_t pad_top,
                int32_t pad_left, int32_t dilation_h, int32_t dilation_w, int32_t act_min, int32_t act_max,
                int32_t rounding, int8_t *out, int32_t oh, int32_t ow)
{
    n6_conv_s8(inp, n, h, w, cin, filt, cout, kh, kw, cin_g, bias, mult, shift, input_offset, output_offset,
               stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, !rounding, out, oh, ow);
}
"""


def test_own_firmware_function_replaces_a_twin(vectors, manifest, tmp_path):
    """N6K_CONV_S8 + N6K_USER_HEADER swap in a firmware conv: its rounding slip fails every conv layer and nothing
    else."""
    need_host_cc()
    (tmp_path / "my_conv.c").write_text(MY_CONV)
    decl = MY_CONV.split("{")[0].split("*/")[-1].strip() + ";\n"
    (tmp_path / "my_conv.h").write_text("#include <stdint.h>\n" + decl)
    code, lines = testkit.build_and_run(vectors, "host", work_dir=tmp_path / "build",
                                        extra_sources=[tmp_path / "my_conv.c"], includes=[tmp_path],
                                        defines=["N6K_CONV_S8=my_conv_s8", 'N6K_USER_HEADER="my_conv.h"'])
    failed = {tuple(line.split(":")[0].split()[1:]) for line in lines if line.startswith("FAIL")}
    convs = [layer["c_prefix"] for layer in manifest["layers"] if layer["op"] == "conv2d"]
    assert code == 1 and failed == {(c, n) for c in manifest["cases"] for n in convs}


def test_m55_run_passes_with_the_host_output(vectors, host_run, tmp_path):
    need_m55()
    code, lines = testkit.build_and_run(vectors, "m55", work_dir=tmp_path)
    assert code == 0, "\n".join(lines[-20:])
    assert lines == host_run[1]
    assert (tmp_path / "n6_testkit_m55.ld").is_file()


def _headers_unit(vectors, manifest):
    heads = ["n6_testkit.h", "frontend.h", "model.h"] + [f"{c}.h" for c in manifest["cases"]]
    return "".join(f'#include "{h}"\n' for h in heads) + "int main(void) { return (int)fe_window[1]; }\n"


def _compile(cmd, src):
    r = subprocess.run(cmd + [str(src), "-o", str(src) + ".o"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]


def test_generated_headers_compile_as_c99_cxx17_and_for_the_m55(vectors, manifest, tmp_path):
    need_host_cc()
    inc = [f"-I{testkit.KIT_DIR}", f"-I{testkit.CSRC}", f"-I{vectors}"]
    strict = ["-Wall", "-Wextra", "-Werror", "-c"]
    c_src, cxx_src = tmp_path / "headers.c", tmp_path / "headers.cpp"
    c_src.write_text(_headers_unit(vectors, manifest))
    cxx_src.write_text(_headers_unit(vectors, manifest))
    _compile(["gcc", "-std=c99", *strict, *inc], c_src)
    _compile(["gcc", "-std=c99", *strict, *inc], vectors / "n6_vectors.c")
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler (g++) for the C++17 check; apt-get install g++")
    _compile(["g++", "-std=c++17", *strict, *inc], cxx_src)
    need_m55()
    _compile([testkit.M55_GCC, *testkit.M55_CPU_FLAGS, "-std=c99", *strict, *inc], c_src)


def test_frontend_h_holds_what_the_c_twin_takes(vectors, device):
    """frontend.h reads back (emu.cheader) to the state's tables bit for bit, and its st_config values are the ones
    emu/frontend/ctwin_st.py sets (checked against its cffi struct when the extension is built)."""
    defines, arrays = cheader.read_header(vectors / "frontend.h")
    state = device.frontend.state
    p = state.params
    names = dict(fe_window=state.window, fe_mel_start=state.mel_start, fe_mel_stop=state.mel_stop,
                 fe_mel_offset=state.mel_offset, fe_mel_coefs=state.mel_coefs)
    names.update(zip(("fe_h16_tw_split", "fe_h16_tw1", "fe_h16_tw2", "fe_h16_tw3", "fe_h16_stage_off",
                      "fe_h16_bitrev", "fe_h16_tw_rfft"), state.helium_tables[:7]))
    assert set(arrays) == set(names)
    for name, want in names.items():
        assert arrays[name].dtype == want.dtype, name
        assert np.array_equal(arrays[name].view(np.uint8), want.view(np.uint8)), name
    sw = st._switch_codes(state, p)
    assert (defines["FE_N_FFT"], defines["FE_WIN"], defines["FE_HOP"], defines["FE_N_FRAMES"], defines["FE_N_MELS"],
            defines["FE_ALGO"], defines["FE_PREC"], defines["FE_CAST_MODE"], defines["FE_INPLACE"]) == \
           (p.n_fft, p.win_length, p.hop_length, p.n_frames, p.n_mels, state.algo, state.prec, sw["cast_mode"],
            int(p.inplace_power))
    assert np.float32(defines["FE_INV_SCALE"]) == state.inv_scale and defines["FE_ZP"] == p.quant_zero_point
    assert defines["FE_H16_OFAST"] == int(state.helium_tables[7][0]) and defines["FE_ISA_HELIUM"] == 1
    from emu.frontend import ctwin_st
    if ctwin_st.available():
        cfg = ctwin_st._config(state)
        for field in ("n_fft", "win", "hop", "n_frames", "n_mels", "pad_left", "algo", "prec", "spectrum_mode",
                      "log_mode", "acc_mode", "fma", "rounding", "cast_mode", "inplace"):
            assert defines[f"FE_{field.upper()}"] == getattr(cfg, field), field
        assert defines["FE_NEG_TOP_DB"] == "(-INFINITY)" and cfg.neg_top_db == -np.inf


@pytest.mark.parametrize("frontend", [{"profile": "st-f32"}, {"isa": "scalar"},
                                      pytest.param({"profile": "st-f32", "isa": "scalar"}, marks=pytest.mark.slow),
                                      pytest.param({"optimization": "Ofast"}, marks=pytest.mark.slow),
                                      pytest.param({"profile": "st-f32", "optimization": "Ofast"},
                                                   marks=pytest.mark.slow),
                                      pytest.param({"log": "db", "spectrum": "magnitude", "top_db": 80.0},
                                                   marks=pytest.mark.slow)],
                         ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_other_front_end_builds_pass_on_the_host(device, tmp_path, frontend):
    need_host_cc()
    out = tmp_path / "v"
    m = write_vectors(device.with_(frontend=frontend), CLIPS[:1], str(out))
    code, lines = testkit.build_and_run(out, "host", work_dir=tmp_path / "build")
    assert code == 0, "\n".join(line for line in lines if not line.startswith("PASS"))
    assert lines[-1] == f"{len(expected_names(m))} passed, 0 failed"


@pytest.mark.slow
@pytest.mark.parametrize("frontend", [{"profile": "st-f32"}, {"isa": "scalar"}, {"profile": "st-f32", "isa": "scalar"},
                                      {"log": "db", "spectrum": "magnitude", "top_db": 80.0},
                                      {"isa": "scalar", "f16_intermediates": "f32", "accumulation": "lanes8",
                                       "fma": True}],
                         ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_other_front_end_builds_pass_on_the_m55(device, tmp_path, frontend):
    """The same portable C on QEMU's Cortex-M55 (newlib's logf/log10f/sqrtf, the core's FPU), with the silence
    clip for the underflow paths (mel floor, log of 0, the -inf cast)."""
    need_host_cc()
    need_m55()
    out = tmp_path / "v"
    write_vectors(device.with_(frontend=frontend), [CLIPS[0], os.path.join(DATA_DIR, "clips", "silence.wav")],
                  str(out))
    host = testkit.build_and_run(out, "host", work_dir=tmp_path / "host")
    m55 = testkit.build_and_run(out, "m55", work_dir=tmp_path / "m55")
    assert host[0] == 0 and m55 == host, "\n".join(line for line in m55[1] if not line.startswith("PASS"))


def test_uncovered_parts_are_named(device, tmp_path):
    """cmsis-q15 front end: a documented omission (manifest, SKIP line); the onnxruntime profile's float-epilogue
    layers: SKIP lines naming why; everything else still passes."""
    need_host_cc()
    dev = device.with_(frontend={"profile": "cmsis-q15"}, app={"silence_gate": False},
                       **{"model.profile": "onnxruntime"})
    out = tmp_path / "v"
    m = write_vectors(dev, CLIPS[:1], str(out))
    assert "cmsis-q15" in m["testkit"]["frontend_note"] and not (out / "frontend.h").exists()
    not_covered = {r["layer"] for r in m["testkit"]["layers_not_covered"]}
    assert "l01_conv2d" in not_covered and "l00_transpose" not in not_covered
    code, lines = testkit.build_and_run(out, "host", work_dir=tmp_path / "build")
    assert code == 0, "\n".join(lines)
    assert f"SKIP yes_w0 frontend: {m['testkit']['frontend_note']}" in lines
    skips = [line for line in lines if line.startswith("SKIP yes_w0 l")]
    assert len(skips) == len(not_covered) and all("no C twin kernel" in line for line in skips)
    passed = int(SUMMARY.match(lines[-1]).group(1))
    assert passed == len(m["layers"]) - len(not_covered) and lines[-1].endswith(" 0 failed")
