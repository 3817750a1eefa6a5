"""ST column front end (st-f16, st-f32): oracles are CMSIS-DSP's own C sources built at test time (FFT and
f16 dot products), numpy float16/float32 step-by-step references for the column stages, the C twin
(Numba == C for every switch), and numpy's DFT for structure."""
import ctypes
import ctypes.util
import itertools
import os
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from emu.frontend import st
from emu.frontend.params import FrontendError, FrontendParams, from_toml, to_toml

import cmsis_sources
from signals import signal

# the portable-C build with a separate power buffer: what these x86 oracles check (the Helium build and the
# app's in-place power are proven on the Cortex-M55 in test_st_helium.py)
DEFAULT = FrontendParams(quant_scale=30 / 255, quant_zero_point=42, isa="scalar", inplace_power=False)
# the C twin: fixture c_frontend_st (tests/conftest.py) skips only when no C compiler can build it, else fails
CMSISDSP_MISSING = 'oracle unavailable: the cmsisdsp package (PyPI wheel) is not installed; pip install -e ".[test]"'


# ---------------------------------------------------------------------------------------------------
# CMSIS-DSP C sources as the oracle (built at test time from the cmsisdsp sdist, nothing copied)
# ---------------------------------------------------------------------------------------------------

_WRAP_F32 = r"""
int oracle_rfft_f32(int n, float *in, float *out){ arm_rfft_fast_instance_f32 S;
  if (arm_rfft_fast_init_f32(&S, n)) return -1; arm_rfft_fast_f32(&S, in, out, 0); return 0; }
"""
_WRAP = '#include "arm_math.h"\n#include "arm_math_f16.h"\n' + _WRAP_F32 + r"""
int oracle_rfft_f16(int n, float16_t *in, float16_t *out){ arm_rfft_fast_instance_f16 S;
  if (arm_rfft_fast_init_f16(&S, n)) return -1; arm_rfft_fast_f16(&S, in, out, 0); return 0; }
void oracle_dot_f16(const float16_t *a, const float16_t *b, int n, float16_t *r){ arm_dot_prod_f16(a, b, n, r); }
"""
_SOURCES = ["TransformFunctions/arm_cfft_f32.c", "TransformFunctions/arm_cfft_radix8_f32.c",
            "TransformFunctions/arm_bitreversal2.c", "TransformFunctions/arm_rfft_fast_f32.c",
            "TransformFunctions/arm_rfft_fast_init_f32.c", "TransformFunctions/arm_cfft_init_f32.c",
            "CommonTables/arm_common_tables.c", "CommonTables/arm_const_structs.c",
            "TransformFunctions/arm_cfft_f16.c", "TransformFunctions/arm_cfft_radix4_f16.c",
            "TransformFunctions/arm_bitreversal_f16.c", "TransformFunctions/arm_rfft_fast_f16.c",
            "TransformFunctions/arm_rfft_fast_init_f16.c", "TransformFunctions/arm_cfft_init_f16.c",
            "CommonTables/arm_common_tables_f16.c", "CommonTables/arm_const_structs_f16.c",
            "BasicMathFunctions/arm_dot_prod_f16.c"]


@pytest.fixture(scope="session")
def cmsis_oracle(tmp_path_factory):
    """{'16': lib (gcc -fexcess-precision=16: every f16 op rounded), 'standard': lib (f16 statements in
    float32), both -O2 -ffp-contract=off, no fast-math}, via cffi ABI mode."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("oracle unavailable: gcc is not installed (apt-get install gcc)")
    import cffi
    tmp = tmp_path_factory.mktemp("cmsisdsp")
    src = cmsis_sources.source_dir(tmp)
    srcs = [os.path.join(src, "Source", s) for s in _SOURCES]
    absent = [os.path.relpath(s, src) for s in srcs if not os.path.isfile(s)]
    if absent:
        pytest.skip(f"oracle unavailable: the cmsisdsp sdist at {src} lacks {absent[:3]} (another source layout); "
                    f"{cmsis_sources.HOW_TO}")
    (tmp / "prelude.h").write_text("typedef _Float16 float16_t;\n#define ARM_FLOAT16_SUPPORTED 1\n")
    (tmp / "wrap.c").write_text(_WRAP)
    # a compiler limit (no _Float16 / -fexcess-precision=16 on this gcc) skips; with it, the oracle must build
    (tmp / "probe.c").write_text("float16_t probe(float16_t a, float16_t b) { return a * b + a; }\n")
    for mode in ("16", "standard"):
        r = subprocess.run([gcc, "-c", "-std=c11", f"-fexcess-precision={mode}", "-include", str(tmp / "prelude.h"),
                            str(tmp / "probe.c"), "-o", str(tmp / "probe.o")], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"oracle unavailable: this gcc does not compile _Float16 with -fexcess-precision={mode} "
                        f"({r.stderr.strip().splitlines()[:1]}); install gcc >= 12")
    ffi = cffi.FFI()
    ffi.cdef("int oracle_rfft_f32(int n, float *in, float *out);"
             "int oracle_rfft_f16(int n, uint16_t *in, uint16_t *out);"
             "void oracle_dot_f16(const uint16_t *a, const uint16_t *b, int n, uint16_t *r);")
    libs = {}
    for mode in ("16", "standard"):
        so = tmp / f"oracle_{mode}.so"
        cmd = [gcc, "-O2", "-fPIC", "-shared", "-std=c11", "-ffp-contract=off", f"-fexcess-precision={mode}",
               "-D__GNUC_PYTHON__", "-include", str(tmp / "prelude.h"), "-I", os.path.join(src, "Include"),
               "-I", os.path.join(src, "PrivateInclude"), str(tmp / "wrap.c"), *srcs, "-o", str(so)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"the CMSIS-DSP oracle does not build with {gcc}:\n{r.stderr[-4000:]}", pytrace=False)
        libs[mode] = ffi.dlopen(str(so))
    return ffi, libs


def _params_for(n_fft, **kw):
    n_mels = 4 if n_fft < 64 else 10 if n_fft < 512 else 40
    return FrontendParams(n_fft=n_fft, win_length=n_fft // 2, hop_length=n_fft // 4, n_frames=4,
                          n_mels=n_mels, fmin=100.0 if n_fft < 512 else 50.0, quant_scale=0.1, isa="scalar", **kw)


def _frames(rng, n, count, dtype):
    out = [np.zeros(n), np.where(np.arange(n) % 2 == 0, 1.0, -1.0), np.ones(n) * (32767 / 32768)]
    for _ in range(count):
        out.append(rng.standard_normal(n) * rng.choice([1e-4, 1e-2, 0.3, 1.0]))
    return [np.clip(x, -1, 32767 / 32768).astype(dtype).astype(np.float32) for x in out]


@pytest.mark.parametrize("n_fft", [32, 64, 128, 256, 512, 1024, 2048, 4096])
def test_st_f32_fft_equals_cmsis_source(cmsis_oracle, c_frontend_st, n_fft):
    ffi, libs = cmsis_oracle
    state = st.prepare(_params_for(n_fft, profile="st-f32"))
    for x in _frames(np.random.default_rng(n_fft), n_fft, 20, np.float32):
        ref = np.empty(n_fft, np.float32)
        xin = x.copy()
        assert libs["16"].oracle_rfft_f32(n_fft, ffi.cast("float *", xin.ctypes.data), ffi.cast("float *", ref.ctypes.data)) == 0
        got = st.rfft_packed(x, state)
        np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))
        np.testing.assert_array_equal(c_frontend_st.rfft_packed_c(x, state).view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("mode,lib", [("per-op", "16"), ("f32", "standard")])
@pytest.mark.parametrize("n_fft", [32, 64, 128, 256, 512, 1024, 2048, 4096])
def test_st_f16_fft_equals_cmsis_source(cmsis_oracle, c_frontend_st, n_fft, mode, lib):
    ffi, libs = cmsis_oracle
    state = st.prepare(_params_for(n_fft, f16_intermediates=mode))
    for x in _frames(np.random.default_rng(n_fft + 1), n_fft, 20, np.float16):
        xb = x.astype(np.float16).view(np.uint16).copy()
        ref = np.empty(n_fft, np.uint16)
        assert libs[lib].oracle_rfft_f16(n_fft, ffi.cast("uint16_t *", xb.ctypes.data), ffi.cast("uint16_t *", ref.ctypes.data)) == 0
        got = st.rfft_packed(x, state)
        np.testing.assert_array_equal(got.astype(np.float16).view(np.uint16), ref)
        np.testing.assert_array_equal(c_frontend_st.rfft_packed_c(x, state).view(np.uint32), got.view(np.uint32))


@pytest.mark.parametrize("mode,lib", [("per-op", "16"), ("f32", "standard")])
def test_st_f16_mel_dot_equals_cmsis_dot_prod_f16(cmsis_oracle, mode, lib):
    ffi, libs = cmsis_oracle
    p = DEFAULT.replace(f16_intermediates=mode)
    state = st.prepare(p)
    coefs = state.mel_coefs.astype(np.float16).view(np.uint16).copy()
    rng = np.random.default_rng(5)
    for scale in [1e-6, 1e-3, 1.0, 30.0, 3000.0]:
        col = (np.abs(rng.standard_normal(p.n_bins)) * scale).astype(np.float16)
        colb = col.view(np.uint16).copy()
        ref = np.empty(p.n_mels, np.uint16)
        r = np.zeros(1, np.uint16)
        for m in range(p.n_mels):
            a, n = int(state.mel_start[m]), int(state.mel_stop[m] - state.mel_start[m] + 1)
            libs[lib].oracle_dot_f16(ffi.cast("uint16_t *", colb.ctypes.data) + a,
                                     ffi.cast("uint16_t *", coefs.ctypes.data) + int(state.mel_offset[m]), n,
                                     ffi.cast("uint16_t *", r.ctypes.data))
            ref[m] = r[0]
        got = st.mel_dot(col.astype(np.float32), state)
        np.testing.assert_array_equal(got.astype(np.float16).view(np.uint16), ref)


@pytest.fixture(scope="session")
def cmsis_fast_math_rfft(cmsis_oracle, tmp_path_factory):
    """The f32 rfft sources built like the cmsisdsp wheel (-O3 -ffast-math, loop unrolling)."""
    import cffi
    src = cmsis_sources.source_dir(None)
    tmp = tmp_path_factory.mktemp("cmsisdsp_fast")
    (tmp / "wrap.c").write_text('#include "arm_math.h"\n' + _WRAP_F32)
    so = tmp / "fast.so"
    srcs = [os.path.join(src, "Source", s) for s in _SOURCES if "f16" not in s]
    # Compile with fast-math but link without it: gcc 12 links crtfastmath.o into a -ffast-math shared object,
    # which sets FTZ/DAZ in MXCSR for the whole test process when loaded (subnormals would then flush to 0).
    objs = []
    r = None
    for i, c in enumerate([str(tmp / "wrap.c"), *srcs]):
        obj = str(tmp / f"o{i}.o")
        r = subprocess.run([shutil.which("gcc"), "-c", "-O3", "-ffast-math", "-fPIC", "-std=c11", "-D__GNUC_PYTHON__",
                            "-DARM_MATH_LOOPUNROLL", "-I", os.path.join(src, "Include"), "-I",
                            os.path.join(src, "PrivateInclude"), c, "-o", obj], capture_output=True, text=True)
        if r.returncode != 0:
            break
        objs.append(obj)
    if r.returncode == 0:
        r = subprocess.run([shutil.which("gcc"), "-shared", *objs, "-o", str(so), "-lm"], capture_output=True, text=True)
    if r.returncode != 0:   # the same gcc and sources as cmsis_oracle, which built: not a missing tool
        pytest.fail(f"the fast-math CMSIS-DSP rfft does not build:\n{r.stderr[-4000:]}", pytrace=False)
    ffi = cffi.FFI()
    ffi.cdef("int oracle_rfft_f32(int n, float *in, float *out);")
    return ffi, ffi.dlopen(str(so))


def test_cmsisdsp_wheel_is_the_fast_math_build(cmsis_fast_math_rfft):
    """Why st-f32 is not compared bit-exactly with the PyPI wheel: the same sources built with the wheel's
    flags (-O3 -ffast-math) reproduce the wheel exactly, and differ from the IEEE build we match."""
    dsp = pytest.importorskip("cmsisdsp", reason=CMSISDSP_MISSING)
    ffi, lib = cmsis_fast_math_rfft
    inst = dsp.arm_rfft_fast_instance_f32()
    dsp.arm_rfft_fast_init_f32(inst, 1024)
    state = st.prepare(DEFAULT.replace(profile="st-f32"))
    differs = 0
    for x in _frames(np.random.default_rng(9), 1024, 10, np.float32):
        fast = np.empty(1024, np.float32)
        xin = x.copy()
        lib.oracle_rfft_f32(1024, ffi.cast("float *", xin.ctypes.data), ffi.cast("float *", fast.ctypes.data))
        np.testing.assert_array_equal(fast.view(np.uint32), dsp.arm_rfft_fast_f32(inst, x.copy(), 0).view(np.uint32))
        differs += not np.array_equal(fast, st.rfft_packed(x, state))
    assert differs > 0


def test_st_f32_fft_close_to_cmsisdsp_wheel():
    """The PyPI cmsisdsp wheel is built with -O3 -ffast-math (its setup.py), so its rfft_fast_f32 is not
    IEEE-reproducible; the IEEE build of the same sources is the bit-exact oracle above. Here: agreement
    to float32 rounding noise."""
    dsp = pytest.importorskip("cmsisdsp", reason=CMSISDSP_MISSING)
    state = st.prepare(DEFAULT.replace(profile="st-f32"))
    inst = dsp.arm_rfft_fast_instance_f32()
    dsp.arm_rfft_fast_init_f32(inst, 1024)
    for x in _frames(np.random.default_rng(2), 1024, 10, np.float32):
        ref = dsp.arm_rfft_fast_f32(inst, x.copy(), 0)
        got = st.rfft_packed(x, state)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * max(1.0, float(np.abs(ref).max())))


@pytest.mark.parametrize("profile,n_fft", [("st-f32", 128), ("st-f32", 512), ("st-f32", 1024), ("st-f16", 512),
                                           ("st-f16", 1024)])
def test_fft_is_the_dft(profile, n_fft):
    state = st.prepare(_params_for(n_fft, profile=profile))
    x = (np.random.default_rng(0).standard_normal(n_fft) * 0.3).astype(np.float16).astype(np.float32)
    got = st.rfft_packed(x, state)
    X = np.fft.rfft(x.astype(np.float64))
    tol = 1e-5 if profile == "st-f32" else 3e-3
    scale = np.abs(X).max()
    assert abs(got[0] - X[0].real) < tol * scale and abs(got[1] - X[-1].real) < tol * scale
    np.testing.assert_allclose(got[2::2], X.real[1:-1], atol=tol * scale)
    np.testing.assert_allclose(got[3::2], X.imag[1:-1], atol=tol * scale)


# ---------------------------------------------------------------------------------------------------
# the column stages against numpy step-by-step references (float16 arithmetic = per-op f16)
# ---------------------------------------------------------------------------------------------------

_LIBM = ctypes.CDLL(ctypes.util.find_library("m"))
_LIBM.logf.restype = ctypes.c_float
_LIBM.logf.argtypes = [ctypes.c_float]


def _roundf(y):
    r = np.trunc(y)
    return np.where(y - r >= 0.5, r + 1, np.where(y - r <= -0.5, r - 1, r)).astype(np.float32)


def _reference_columns(stages, state):
    """Independent per-op f16 reference of every stage after the FFT (numpy float16 arithmetic)."""
    p = state.params
    X = stages["fft"].astype(np.float16)
    nb = p.n_bins
    P = np.empty((p.n_frames, nb), np.float16)
    P[:, 0] = X[:, 0] * X[:, 0]
    P[:, nb - 1] = X[:, 1] * X[:, 1]
    P[:, 1:nb - 1] = X[:, 2:-1:2] * X[:, 2:-1:2] + X[:, 3::2] * X[:, 3::2]
    spec = P if p.spectrum == "power" else np.sqrt(P.astype(np.float32)).astype(np.float16)
    coefs = state.mel_coefs.astype(np.float16)
    mel = np.zeros((p.n_mels, p.n_frames), np.float16)
    for m in range(p.n_mels):
        a, b, o = state.mel_start[m], state.mel_stop[m], state.mel_offset[m]
        s = np.zeros(p.n_frames, np.float16)
        for j in range(b - a + 1):
            s = s + spec[:, a + j] * coefs[o + j]
        mel[m] = np.where(s > 0, s, np.float16(0))
    logs = np.array([[_LIBM.logf(float(v)) if v > 0 else -np.inf for v in row] for row in mel.astype(np.float32)],
                    dtype=np.float32).astype(np.float16)
    y = logs.astype(np.float32) * np.float32(state.inv_scale) + np.float32(p.quant_zero_point)
    with np.errstate(invalid="ignore"):
        r = _roundf(y)
        q = np.where(np.isfinite(r), np.clip(r, -128, 127), 0).astype(np.int8)   # -inf -> (int16)INT32_MIN = 0
    silence = np.float16(0)
    for row in spec:
        for v in row:
            silence = np.float16(silence + v)
    return dict(power=P, spectrum=spec, mel=mel, log=logs, features=q, silence_sum=silence)


@pytest.mark.parametrize("spectrum", ["power", "magnitude"])
@pytest.mark.parametrize("kind", ["speech", "quiet", "loud", "silence"])
def test_st_f16_column_stages_match_numpy_float16(kind, spectrum):
    p = DEFAULT.replace(spectrum=spectrum)
    state = st.prepare(p)
    pcm = signal(kind, p.patch_length, np.random.default_rng(3))
    got = st.compute_stages(pcm, state)
    ref = _reference_columns(got, state)
    with np.errstate(over="ignore"):
        for k in ("power", "spectrum", "mel", "log"):
            np.testing.assert_array_equal(got[k].astype(np.float16).view(np.uint16), ref[k].view(np.uint16), err_msg=k)
            np.testing.assert_array_equal(got[k], got[k].astype(np.float16).astype(np.float32), err_msg=k)
    np.testing.assert_array_equal(got["features"], ref["features"])
    assert np.float16(got["silence_sum"]) == ref["silence_sum"] or (np.isinf(ref["silence_sum"]) and np.isinf(got["silence_sum"]))


def test_framing_and_window_stage():
    p = DEFAULT
    state = st.prepare(p)
    pcm = signal("speech", p.patch_length, np.random.default_rng(4))
    got = st.compute_stages(pcm, state)
    pad = (p.n_fft - p.win_length) // 2
    for t in (0, 1, 25, p.n_frames - 1):
        seg = pcm[t * p.hop_length: t * p.hop_length + p.win_length]
        x = (seg.astype(np.float32) / np.float32(32768)).astype(np.float16)
        np.testing.assert_array_equal(got["framed"][t, pad:pad + p.win_length], x.astype(np.float32))
        assert not got["framed"][t, :pad].any() and not got["framed"][t, pad + p.win_length:].any()
        xw = x * state.window.astype(np.float16)
        np.testing.assert_array_equal(got["windowed"][t, pad:pad + p.win_length], xw.astype(np.float32))
    # a frame depends only on its own samples: shifting the patch by one hop shifts the columns
    shifted = np.concatenate([pcm[p.hop_length:], np.zeros(p.hop_length, np.int16)])
    got2 = st.compute_stages(shifted, state)
    np.testing.assert_array_equal(got2["features"][:, :-1], got["features"][:, 1:])


def test_st_f32_log_and_quantization_reference():
    p = DEFAULT.replace(profile="st-f32")
    state = st.prepare(p)
    pcm = signal("speech", p.patch_length, np.random.default_rng(8))
    got = st.compute_stages(pcm, state)
    X = got["fft"]
    P = np.empty((p.n_frames, p.n_bins), np.float32)
    P[:, 0], P[:, -1] = X[:, 0] * X[:, 0], X[:, 1] * X[:, 1]
    P[:, 1:-1] = X[:, 2:-1:2] * X[:, 2:-1:2] + X[:, 3::2] * X[:, 3::2]
    np.testing.assert_array_equal(got["power"], P)
    mel = np.empty((p.n_mels, p.n_frames), np.float32)
    for m in range(p.n_mels):
        a, b, o = state.mel_start[m], state.mel_stop[m], state.mel_offset[m]
        s = np.zeros(p.n_frames, np.float32)
        for j in range(b - a + 1):
            s = s + P[:, a + j] * state.mel_coefs[o + j]
        mel[m] = np.maximum(s, np.finfo(np.float32).tiny)
    np.testing.assert_array_equal(got["mel"], mel)
    logs = np.array([[_LIBM.logf(float(v)) for v in row] for row in mel], np.float32)
    np.testing.assert_array_equal(got["log"], logs)
    y = logs * state.inv_scale + np.float32(p.quant_zero_point)
    np.testing.assert_array_equal(got["features"], np.clip(_roundf(y), -128, 127).astype(np.int8))


def test_silence_gives_holes_and_zero_silence_sum():
    state = st.prepare(DEFAULT)
    got = st.compute_stages(np.zeros(DEFAULT.patch_length, np.int16), state)
    assert got["silence_sum"] == 0 and not got["mel"].any()
    assert np.all(np.isneginf(got["log"]))
    assert np.all(got["features"] == 0)                                  # (int16)(int32)-inf = 0, not -128
    sat = st.prepare(DEFAULT.replace(neg_inf_cast="saturate"))
    assert np.all(st.compute_patch(np.zeros(DEFAULT.patch_length, np.int16), sat) == -128)
    f32 = st.prepare(DEFAULT.replace(profile="st-f32"))
    got32 = st.compute_stages(np.zeros(DEFAULT.patch_length, np.int16), f32)
    np.testing.assert_array_equal(got32["log"], np.float32(np.log(np.float32(np.finfo(np.float32).tiny))))


def test_inverse_scale_is_f16():
    state = st.prepare(DEFAULT.replace(quant_scale=0.0305305))
    assert state.inv_scale == np.float32(32.75)
    state32 = st.prepare(DEFAULT.replace(quant_scale=0.0305305, inv_scale_dtype="f32"))
    assert state32.inv_scale == np.float32(1.0) / np.float32(0.0305305)


QUANT_CASES = [  # (log value, rounding, cast, expected) with inv_scale 1, zp 0
    (-np.inf, "half-away", "zero", 0), (-np.inf, "half-away", "saturate", -128),
    (np.inf, "half-away", "zero", -1), (np.inf, "half-away", "saturate", 127),
    (2.5, "half-away", "zero", 3), (2.5, "half-even", "zero", 2), (-2.5, "half-away", "zero", -3),
    (-2.5, "half-even", "zero", -2), (0.49999997, "half-away", "zero", 0), (126.5, "half-away", "zero", 127),
    (-128.5, "half-away", "zero", -128), (40000.0, "half-away", "zero", -128), (40000.0, "half-away", "saturate", 127),
    (65541.0, "half-away", "zero", 5), (3e9, "half-away", "zero", -1), (-3e9, "half-away", "zero", 0),
    (np.nan, "half-away", "zero", 0),
]


@pytest.mark.parametrize("v,rounding,cast,expected", QUANT_CASES)
def test_quantization_edge_cases(optional_twins, v, rounding, cast, expected):
    _check_quantize(optional_twins, DEFAULT.replace(quant_rounding=rounding, neg_inf_cast=cast), v, expected)


QUANT_CASES_F32 = [(40000.0, "zero", 127), (-40000.0, "zero", -128), (65541.0, "zero", 127), (3e9, "zero", 127),
                   (-np.inf, "zero", -128), (np.nan, "zero", 0), (-2.5, "zero", -3), (40000.0, "saturate", 127)]


@pytest.mark.parametrize("v,cast,expected", QUANT_CASES_F32)
def test_quantization_edge_cases_st_f32_int32_cast(optional_twins, v, cast, expected):
    _check_quantize(optional_twins, DEFAULT.replace(profile="st-f32", neg_inf_cast=cast), v, expected)


def _check_quantize(optional_twins, p, v, expected):
    codes = st._switch_codes(None, p)
    got = st._quantize(np.float32(v), np.float32(1.0), np.float32(0.0), codes["rounding"], codes["cast_mode"])
    assert got == expected
    ctwin = optional_twins.get("c_frontend_st")
    if ctwin is not None:
        state = dataclass_replace_inv(st.prepare(p), 1.0, p)
        assert ctwin.quantize_c([v], state)[0] == expected
    optional_twins.skip_unchecked()


def dataclass_replace_inv(state, inv, p):
    import dataclasses
    return dataclasses.replace(state, inv_scale=np.float32(inv), params=p.replace(quant_zero_point=0))


# ---------------------------------------------------------------------------------------------------
# Numba == C twin
# ---------------------------------------------------------------------------------------------------

SWITCHES = dict(profile=["st-f16", "st-f32"], f16_intermediates=["per-op", "f32"], spectrum=["power", "magnitude"],
                log=["ln", "db"], accumulation=["scalar", "lanes8"], fma=[False, True], inplace_power=[False, True],
                isa=["scalar", "helium"], optimization=["Os", "Ofast"],
                neg_inf_cast=["zero", "saturate"], quant_rounding=["half-away", "half-even"])


def _all_combos():
    keys = list(SWITCHES)
    for values in itertools.product(*SWITCHES.values()):
        d = dict(zip(keys, values))
        if d["profile"] == "st-f32" and d["f16_intermediates"] == "f32":
            continue
        if d["isa"] == "helium" and (d["f16_intermediates"], d["accumulation"], d["fma"]) != ("per-op", "scalar", False):
            continue                                    # the Helium build's arithmetic is fixed
        if d["isa"] == "scalar" and d["optimization"] == "Ofast":
            continue
        yield d


def _assert_same_stages(a, b, tag):
    for k in a:
        np.testing.assert_array_equal(np.atleast_1d(a[k]).view(np.uint8), np.atleast_1d(b[k]).view(np.uint8),
                                      err_msg=f"{tag}: stage {k}")


REPRESENTATIVE = [dict(), dict(f16_intermediates="f32"), dict(spectrum="magnitude", log="db"),
                  dict(accumulation="lanes8", fma=True), dict(fma=True, neg_inf_cast="saturate"),
                  dict(profile="st-f32"), dict(profile="st-f32", spectrum="magnitude", log="db", fma=True),
                  dict(profile="st-f32", accumulation="lanes8", quant_rounding="half-even"),
                  dict(inplace_power=True), dict(profile="st-f32", inplace_power=True, spectrum="magnitude"),
                  dict(isa="helium"), dict(isa="helium", inplace_power=True, spectrum="magnitude", log="db"),
                  dict(isa="helium", inplace_power=True, optimization="Ofast", neg_inf_cast="saturate"),
                  dict(profile="st-f32", isa="helium", spectrum="magnitude", quant_rounding="half-even"),
                  dict(profile="st-f32", isa="helium", optimization="Ofast", inplace_power=True)]


@pytest.mark.parametrize("switches", REPRESENTATIVE, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()) or "default")
def test_numba_equals_c_twin(c_frontend_st, switches):
    p = DEFAULT.replace(**switches)
    state = st.prepare(p)
    rng = np.random.default_rng(11)
    for kind in ("speech", "quiet", "loud", "silence", "full", "clip"):
        pcm = signal(kind, p.patch_length, rng)
        _assert_same_stages(st.compute_stages(pcm, state), c_frontend_st.compute_stages_c(pcm, state),
                            f"{switches} {kind}")


@pytest.mark.slow
def test_numba_equals_c_twin_every_switch_combination(c_frontend_st):
    rng = np.random.default_rng(12)
    for switches in _all_combos():
        p = DEFAULT.replace(**switches)
        state = st.prepare(p)
        for kind in ("speech", "silence", "full", "clip"):
            pcm = signal(kind, p.patch_length, rng)
            _assert_same_stages(st.compute_stages(pcm, state), c_frontend_st.compute_stages_c(pcm, state),
                                f"{switches} {kind}")


@settings(max_examples=25, deadline=None)
@given(seed=hst.integers(0, 2**32 - 1), amp=hst.sampled_from([1, 50, 3000, 32767]),
       profile=hst.sampled_from(["st-f16", "st-f32"]), n_fft=hst.sampled_from([256, 512, 1024]),
       isa=hst.sampled_from(["scalar", "helium"]))
def test_numba_equals_c_twin_random_patches(c_frontend_st, seed, amp, profile, n_fft, isa):
    p = FrontendParams(profile=profile, n_fft=n_fft, win_length=n_fft // 2, hop_length=n_fft // 4, n_frames=6,
                       n_mels=16, fmin=60.0, fmax=7000.0, quant_scale=0.12, quant_zero_point=-20, isa=isa)
    state = _prepared(p)
    rng = np.random.default_rng(seed)
    pcm = np.clip(rng.standard_normal(p.patch_length) * amp, -32768, 32767).astype(np.int16)
    _assert_same_stages(st.compute_stages(pcm, state), c_frontend_st.compute_stages_c(pcm, state), "random")


_STATES = {}


def _prepared(p):
    if p not in _STATES:
        _STATES[p] = st.prepare(p)
    return _STATES[p]


def test_c_twin_checks_arguments(c_frontend_st):
    state = st.prepare(DEFAULT)
    with pytest.raises(FrontendError, match="int16"):
        c_frontend_st.compute_stages_c(np.zeros(DEFAULT.patch_length, np.int32), state)
    with pytest.raises(FrontendError, match="shape"):
        c_frontend_st.compute_stages_c(np.zeros(100, np.int16), state)
    with pytest.raises(FrontendError, match="C-contiguous"):
        c_frontend_st.pointer(np.zeros((4, 4), np.float32)[:, 1], np.float32, 4, "float", "x")


# ---------------------------------------------------------------------------------------------------
# parameters, errors, API
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,msg", [(dict(n_fft=1000), "power of two"), (dict(win_length=2048), "exceeds n_fft"),
                                    (dict(fmax=9000.0), "sample_rate/2"), (dict(profile="st-f8"), "profile"),
                                    (dict(quant_zero_point=200), "int8"), (dict(hop_length=700), "hop_length")])
def test_param_errors(kw, msg):
    with pytest.raises(FrontendError, match=msg):
        FrontendParams(**kw)
    assert issubclass(FrontendError, ValueError)


def test_table_errors(tmp_path):
    with pytest.raises(FrontendError, match="no non-zero bin"):
        st.prepare(FrontendParams(n_fft=256, win_length=256, hop_length=128, n_mels=128, fmin=0.0, fmax=8000.0,
                                  mel_scale="htk", quant_scale=0.1))
    with pytest.raises(FrontendError, match="shape"):
        st.prepare(DEFAULT, mel_matrix=np.ones((40, 512), np.float32))
    with pytest.raises(FrontendError, match="window"):
        st.prepare(DEFAULT, window=np.ones(641))
    np.save(tmp_path / "m.npy", np.ones((513, 40), np.float32))
    with pytest.raises(FrontendError, match="transposed"):
        st.prepare(DEFAULT.replace(mel_source=str(tmp_path / "m.npy")))
    with pytest.raises(FrontendError, match="int16"):
        st.compute_patch(np.zeros(DEFAULT.patch_length, np.float32), st.prepare(DEFAULT))
    with pytest.raises(FrontendError, match="quant_scale"):
        st.compute_patch(np.zeros(DEFAULT.patch_length, np.int16), st.prepare(FrontendParams()))


def test_mel_source_files_are_used(tmp_path):
    from emu.frontend import tables
    m = tables.mel_filterbank(16000, 1024, 40, 50.0, 7500.0, scale="htk", norm=None)
    np.save(tmp_path / "train_mel.npy", m)
    s1 = st.prepare(DEFAULT.replace(mel_source=str(tmp_path / "train_mel.npy")))
    start, stop, coefs = tables.sparse_mel(m)
    tables.write_c_tables(tmp_path / "user_mel_tables.c", start, stop, coefs, dtype=np.float16)
    s2 = st.prepare(DEFAULT.replace(mel_source=str(tmp_path / "user_mel_tables.c")))
    np.testing.assert_array_equal(s1.mel_coefs, s2.mel_coefs)
    np.testing.assert_array_equal(s1.mel_coefs, coefs.astype(np.float16).astype(np.float32))


def test_params_toml_and_dict_roundtrip():
    p = DEFAULT.replace(spectrum="magnitude", fma=True, mel_norm="none")
    assert from_toml(to_toml(p)) == p
    assert FrontendParams.from_dict(p.to_dict()) == p
    with pytest.raises(FrontendError, match="unknown"):
        FrontendParams.from_dict({"nfft": 512})


def test_compute_patch_layout_and_device_tables():
    state = st.prepare(DEFAULT)
    q = st.compute_patch(signal("speech", DEFAULT.patch_length, np.random.default_rng(1)), state)
    assert q.shape == (40, 49) and q.dtype == np.int8
    assert state.f16_bits("window").dtype == np.uint16
    assert DEFAULT.patch_length == 16000


# ---------------------------------------------------------------------------------------------------
# the front-end registry: one set of stage names and layouts for every profile
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile,q15", [("st-f16", None), ("st-f32", None), ("cmsis-q15", {"mode": "logmel"}),
                                         ("cmsis-q15", {"mode": "mfcc", "n_mfcc": 10})])
def test_registry_stages_are_canonical(profile, q15):
    """Every profile's stages use the canonical names, each has a layout line, mel-domain stages are
    coefficient-major, and FrontEnd.patch returns the 'features' stage."""
    from emu.frontend.registry import FRONTENDS, FrontEnd
    p = DEFAULT.replace(profile=profile, q15=q15)
    fe = FrontEnd(p)
    pcm = signal("speech", p.patch_length, np.random.default_rng(2))
    stages = fe.stages(pcm)
    canonical = ["pcm", "framed", "windowed", "fft", "power", "spectrum", "mel", "log", "mfcc", "features",
                 "silence_sum"]
    assert list(stages) == [n for n in canonical if n in stages]
    assert {"pcm", "framed", "windowed", "fft", "spectrum", "log", "features"} <= set(stages)
    assert ("silence_sum" in stages) == fe.has_silence_sum == FRONTENDS[profile].has_silence_sum
    assert all(fe.layout(n) for n in stages)
    np.testing.assert_array_equal(stages["pcm"], pcm)
    assert stages["features"].shape == (fe.n_coefs, p.n_frames) and stages["features"].dtype == np.int8
    for name in ("mel", "log"):
        if name in stages:
            assert stages[name].shape == (p.n_mels, p.n_frames), name
    assert fe.frame_major == ("mfcc" in stages)
    feats, silence = fe.patch(pcm)
    np.testing.assert_array_equal(feats, stages["features"])
    assert np.isnan(silence) != fe.has_silence_sum
    if FRONTENDS[profile].float_log:
        np.testing.assert_array_equal(fe.patch(pcm, "float32")[0], stages["log"])
    else:
        with pytest.raises(FrontendError, match="int8 features only"):
            fe.patch(pcm, "float32")
    with pytest.raises(FrontendError, match="no stage"):
        fe.layout("int8")
