"""CMSIS-DSP Helium (MVE) f32 paths (emu.frontend.helium_f32 and its C twin) against the Cortex-M55 itself:
CMSIS-DSP from the cmsisdsp sdist built with the application's flags and run on QEMU mps3-an547
(tests/m55_dsp.py). Bit patterns are compared exactly (uint32), NaNs included.

(a) generated tables == the sdist's arm_mve_tables.c / arm_common_tables.c values;
(b) Numba == QEMU for every function, rfft n_fft 32..4096, cfft 16..4096, lengths covering every tail,
    inputs at many scales incl. silence, full scale, DC, sines, subnormals, values at the flush threshold,
    huge values (overflow to inf/NaN), and an overlapping in-place call built for the occasion;
(c) Numba == C twin. Bigger sweeps are @pytest.mark.slow (--run-slow).
"""
import math
import re
from pathlib import Path

import numpy as np
import pytest

import cmsis_sources
import m55
import m55_dsp
from emu.frontend import helium_f32 as hf
from emu.frontend import st
from emu.frontend import tables as ftables

# the C twin emu.frontend.ctwin_helium_f32: conftest's fixture c_helium_f32 (or optional_twins where the test also
# checks the Numba kernels) skips only when no C compiler can build it, else a twin that is not built fails

TINY = np.float32(2.0 ** -126)


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------

def assert_bits_equal(got, want, what):
    """Exact comparison of float32 bit patterns; the failure names the first mismatching positions and the count."""
    g = np.atleast_1d(np.asarray(got, dtype=np.float32)).view(np.uint32)
    w = np.atleast_1d(np.asarray(want, dtype=np.float32)).view(np.uint32)
    assert g.shape == w.shape, f"{what}: shape {g.shape} != {w.shape}"
    bad = np.flatnonzero(g != w)
    if bad.size:
        first = ", ".join(f"[{i}] {g[i]:#010x} ({g.view(np.float32)[i]!r}) != {w[i]:#010x} ({w.view(np.float32)[i]!r})"
                          for i in bad[:4])
        pytest.fail(f"{what}: {bad.size} of {g.size} values differ; first: {first}")


def _f32(x):
    with np.errstate(over="ignore", under="ignore"):
        return np.asarray(x, dtype=np.float64).astype(np.float32)


def _signals(rng, n, extra=0):
    """Named float32 input vectors of length n: every class the device arithmetic distinguishes."""
    t = np.arange(n)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * t / n)
    s = {
        "normal": rng.standard_normal(n),
        "milli": rng.standard_normal(n) * 1e-3,
        "kilo": rng.standard_normal(n) * 1e3,
        "q15 full scale": rng.integers(-32768, 32768, n) / 32768.0,
        "windowed speech-like": hann * rng.standard_normal(n) * 0.3,
        "alternating full scale": np.where(t % 2 == 0, 1.0, -1.0),
        "silence": np.zeros(n),
        "DC": np.full(n, 0.75),
        "negative DC": np.full(n, -1.0),
        "on-bin sine": np.sin(2 * np.pi * 3 * t / n),
        "off-bin sine": np.cos(2 * np.pi * 5.37 * t / n + 0.3) * 0.9,
        "impulse": (t == 1).astype(np.float64),
        "1e-30": rng.standard_normal(n) * 1e-30,
        "1e-19 (squares underflow)": rng.standard_normal(n) * 1e-19,
        "near 2^-126": rng.standard_normal(n) * 2e-38,
        "subnormal": rng.standard_normal(n) * 3e-39,
        "mixed subnormal": np.where(rng.random(n) < 0.5, rng.standard_normal(n) * 1e-40, rng.standard_normal(n)),
        "1e19 (squares overflow)": rng.standard_normal(n) * 1e19,
        "1e30": rng.standard_normal(n) * 1e30,
        "1e37": rng.standard_normal(n) * 1e37,
        "1e38 (overflow)": rng.standard_normal(n) * 1e38,
        "3e38": np.full(n, 3e38) * np.where(rng.random(n) < 0.5, 1.0, -1.0),
        "one inf": np.where(t == n // 3, np.inf, rng.standard_normal(n)),
    }
    for k in range(extra):
        s[f"random 10^{k % 9 - 4}"] = rng.standard_normal(n) * 10.0 ** (k % 9 - 4)
    return {k: _f32(v) for k, v in s.items()}


def _threshold_pairs(rng, n, target=2.0 ** -126):
    """Normal (a, b) with a*b within a few ulps of `target` (2^-126: the flush decision depends on the exact
    product, which often rounds up to 2^-126 from below)."""
    a = _f32(2.0 ** -63 * (1.0 + rng.random(n)))
    b = _f32(target / a.astype(np.float64))
    step = rng.integers(-2, 3, n).astype(np.int32)
    b = (b.view(np.int32) + step).view(np.float32)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
    return a * sign, b


def _fma_threshold_pairs(rng, n):
    """(a, b) for a dot product (n >= 8) whose lanes are fma(a1, b1, 3*2^-126) with a1*b1 ~ -2^-125: exact
    sums a few ulps around 2^-126, some rounding up to 2^-126 from below (flushed by the vector unit)."""
    a = np.zeros(n, np.float32)
    b = np.zeros(n, np.float32)
    a[:4] = 3 * 2.0 ** -63
    b[:4] = 2.0 ** -63
    a1, b1 = _threshold_pairs(rng, 4, 2.0 ** -125)
    a[4:8] = -np.abs(a1)
    b[4:8] = b1
    return a, b


# ----------------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    return cmsis_sources.source_dir(tmp_path_factory.mktemp("cmsisdsp"))


@pytest.fixture(scope="module")
def elf(tmp_path_factory):
    m55_dsp.skip_if_missing()
    return m55_dsp.primitives_elf(tmp_path_factory.mktemp("m55"))


@pytest.fixture(scope="module")
def elf_ofast(tmp_path_factory):
    """The primitives program with CMSIS-DSP built at -Ofast (the application's IDE project)."""
    m55_dsp.skip_if_missing()
    return m55_dsp.primitives_elf(tmp_path_factory.mktemp("m55_ofast"), "Ofast")


OVERLAP_PROGRAM = r"""
/* arm_cmplx_mag(_squared)_f32(buf + 2, buf + 1, n): the overlapping in-place call of the ST application.
   job.bin: int32 {op (1 squared, 2 magnitude), n, count}, then count buffers of 2n+2 floats; out.bin: them after. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <malloc.h>
#include "arm_math.h"

int main(void)
{
    FILE *in = fopen("job.bin", "rb"), *out = fopen("out.bin", "wb");
    int32_t head[3];
    if (in == NULL || out == NULL) { printf("m55: error: files\n"); return 1; }
    while (fread(head, sizeof head, 1, in) == 1) {
        uint32_t n = (uint32_t)head[1], len = 2 * n + 2;
        for (int32_t s = 0; s < head[2]; s++) {
            float32_t *buf = memalign(16, len * 4 + 16);
            if (buf == NULL || fread(buf, 4, len, in) != len) { printf("m55: error: job.bin\n"); return 1; }
            if (head[0] == 1) arm_cmplx_mag_squared_f32(buf + 2, buf + 1, n);
            else arm_cmplx_mag_f32(buf + 2, buf + 1, n);
            fwrite(buf, 4, len, out);
            free(buf);
        }
    }
    fclose(in);
    fclose(out);
    printf("m55: ok\n");
    return 0;
}
"""


@pytest.fixture(scope="module")
def overlap_elf(tmp_path_factory):
    m55_dsp.skip_if_missing()
    tmp = tmp_path_factory.mktemp("m55overlap")
    src_dir = cmsis_sources.source_dir(tmp)
    src = Path(tmp) / "helium_f32_overlap.c"
    src.write_text(OVERLAP_PROGRAM)
    return m55.build("helium_f32_overlap", [src], includes=m55_dsp.dsp_includes(src_dir),
                     libs=[m55_dsp.dsp_lib(tmp)])


# ----------------------------------------------------------------------------------------------------
# (a) tables
# ----------------------------------------------------------------------------------------------------

def _c_array(text, name):
    m = re.search(r"\b" + re.escape(name) + r"\s*\[[^\]]*\][^=;]*=\s*\{(.*?)\}", text, re.S)
    assert m is not None, f"{name} not found in the CMSIS-DSP sources"
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    return [t.strip() for t in body.split(",") if t.strip()]


def _c_floats(text, name):
    return ftables.round_like_c(_c_array(text, name), np.float32)


def _c_ints(text, name):
    return np.array([int(v, 0) for v in _c_array(text, name)], dtype=np.int64)


def test_tables_equal_cmsis_sources(sdist):
    common = Path(sdist, "Source", "CommonTables", "arm_common_tables.c").read_text()
    mve = Path(sdist, "Source", "CommonTables", "arm_mve_tables.c").read_text()
    header = Path(sdist, "Include", "arm_common_tables.h").read_text()
    for n_fft in hf.RFFT_LENGTHS:
        t = hf.prepare_rfft(n_fft)
        assert all(a.flags.c_contiguous for a in t) and len(t) == len(hf.RFFT_TABLES)
        assert_bits_equal(t[6], _c_floats(common, f"twiddleCoef_rfft_{n_fft}"), f"twiddleCoef_rfft_{n_fft}")
    for fft_len in hf.CFFT_LENGTHS:
        coef, tw1, tw2, tw3, offs, bitrev = hf.prepare_cfft(fft_len)
        assert coef.dtype == tw1.dtype == np.float32 and offs.dtype == bitrev.dtype == np.int32
        assert_bits_equal(coef, _c_floats(common, f"twiddleCoef_{fft_len}"), f"twiddleCoef_{fft_len}")
        np.testing.assert_array_equal(bitrev, _c_ints(common, f"armBitRevIndexTable_fixed_{fft_len}"),
                                      err_msg=f"armBitRevIndexTable_fixed_{fft_len}")
        n4 = fft_len if fft_len.bit_length() % 2 == 1 else fft_len // 2
        for s, tw in ((1, tw1), (2, tw2), (3, tw3)):
            assert_bits_equal(tw, _c_floats(mve, f"rearranged_twiddle_stride{s}_{n4}_f32"),
                              f"rearranged_twiddle_stride{s}_{n4}_f32")
            np.testing.assert_array_equal(offs, _c_ints(mve, f"rearranged_twiddle_tab_stride{s}_arr_{n4}_f32"))
        length = re.search(rf"ARMBITREVINDEXTABLE_FIXED_{fft_len}_TABLE_LENGTH \(\(uint16_t\)(\d+)\)", header)
        assert bitrev.size == int(length.group(1))


def test_tables_have_no_subnormals_and_bad_lengths_are_rejected():
    # the kernels flush only their data inputs: the tables must already be normal or zero
    for n_fft in hf.RFFT_LENGTHS:
        for a in hf.prepare_rfft(n_fft):
            if a.dtype == np.float32:
                assert not np.any((a != 0) & (np.abs(a) < TINY))
    with pytest.raises(hf.FrontendError, match="not supported"):
        hf.prepare_rfft(8192)
    with pytest.raises(hf.FrontendError, match="not supported"):
        hf.prepare_cfft(8)


# ----------------------------------------------------------------------------------------------------
# one-operation semantics
# ----------------------------------------------------------------------------------------------------

def test_fmaf_is_one_rounding():
    """The host fused multiply-add (llvm.fma.f32) against the exact TwoSum / round-to-odd emulation."""
    from numba import njit

    @njit
    def run(a, b, c, out):
        for i in range(a.size):
            out[i] = hf._fmaf(a[i], b[i], c[i])

    rng = np.random.default_rng(11)
    n = 20000
    a = _f32(rng.standard_normal(n) * 10.0 ** rng.integers(-25, 25, n))
    b = _f32(rng.standard_normal(n) * 10.0 ** rng.integers(-25, 25, n))
    with np.errstate(all="ignore"):       # near-cancellation cases c ~ -a*b, some products overflow float32
        c = np.where(rng.random(n) < 0.5, -(a * b), _f32(rng.standard_normal(n) * 10.0 ** rng.integers(-45, 38, n)))
        c = _f32(c + _f32(rng.standard_normal(n)) * np.abs(c) * np.float32(1e-7))
    out = np.empty(n, np.float32)
    run(a, b, c, out)
    ref = np.array([st._fma_rounded(a[i], b[i], c[i], st.PREC_F32) for i in range(n)], dtype=np.float32)
    assert_bits_equal(out, ref, "fmaf")


def test_vector_ops_flush_on_the_exact_result():
    # (1 - 2^-24) * 2^-126 rounds to 2^-126 but is below it before rounding: the vector unit gives 0
    a = np.array([1 - 2.0 ** -24, 1.5, 3e-39, -(1 + 2.0 ** -23)], np.float32)
    b = np.array([2.0 ** -126, 2.0 ** -126, 1.0, 2.0 ** -126], np.float32)
    assert_bits_equal(hf.mult(a, b), _f32([0.0, 1.5 * 2.0 ** -126, 0.0, -(1 + 2.0 ** -23) * 2.0 ** -126]), "mult")
    # scalar code keeps subnormals: a lane reduction of T and -1.5T is -0.5T
    assert_bits_equal(hf.dot([1, 1, 1, 1], [TINY, -1.5 * TINY, 0, 0]), _f32(-0.5 * 2.0 ** -126), "dot reduction")
    # magnitude of zero is 0 (the Newton step overflows to NaN, which vcmp lt replaces by 0)
    assert_bits_equal(hf.mag(np.zeros(8, np.float32)), np.zeros(4, np.float32), "mag(0)")


# ----------------------------------------------------------------------------------------------------
# (b) Numba == the Cortex-M55 (QEMU)
# ----------------------------------------------------------------------------------------------------

def _check_rfft(elf, n_fft, rng, extra=0, optimization="Os"):
    t = hf.prepare_rfft(n_fft, optimization)
    sigs = _signals(rng, n_fft, extra)
    dev = m55_dsp.primitive(elf, "rfft_f32", n_fft, [(x,) for x in sigs.values()])
    for (name, x), want in zip(sigs.items(), dev):
        buf = x.copy()
        out = np.empty(n_fft, np.float32)
        hf.rfft_fast_f32(buf, out, t)
        assert_bits_equal(out, want, f"rfft_fast_f32 -{optimization} n_fft={n_fft} {name}")


@pytest.mark.parametrize("n_fft", hf.RFFT_LENGTHS)
def test_rfft_matches_m55(elf, n_fft):
    _check_rfft(elf, n_fft, np.random.default_rng(n_fft))


@pytest.mark.parametrize("n_fft", [32, 256, 1024, 4096])
def test_rfft_ofast_matches_m55_ofast_build(elf_ofast, n_fft):
    """-Ofast regroups the split's vector sum; the two builds differ, and each emulation equals its build."""
    _check_rfft(elf_ofast, n_fft, np.random.default_rng(n_fft + 7), optimization="Ofast")
    x = _f32(np.random.default_rng(1).standard_normal(n_fft))
    assert not np.array_equal(hf.rfft(x, hf.prepare_rfft(n_fft, "Ofast")), hf.rfft(x, hf.prepare_rfft(n_fft)))


@pytest.mark.slow
@pytest.mark.parametrize("n_fft", hf.RFFT_LENGTHS)
def test_rfft_matches_m55_sweep(elf, n_fft):
    _check_rfft(elf, n_fft, np.random.default_rng(1000 + n_fft), extra=300)


def test_rfft_nan_sign_of_packed_nyquist(elf):
    """Random huge frames make Z[0] (hence X0/X(N/2)) NaN in some frames and the tail bins NaN in others."""
    rng = np.random.default_rng(7)
    n = 32
    frames = [_f32(rng.standard_normal(n) * 1e38) for _ in range(60)]
    dev = m55_dsp.primitive(elf, "rfft_f32", n, [(x,) for x in frames])
    assert any(d[1].view(np.uint32) == 0xFFC00000 for d in dev)
    assert any(np.isnan(d[1]) == False and np.isnan(d).any() for d in dev)  # noqa: E712
    t = hf.prepare_rfft(n)
    for i, (x, want) in enumerate(zip(frames, dev)):
        assert_bits_equal(hf.rfft(x, t), want, f"rfft huge frame {i}")


@pytest.mark.parametrize("fft_len", hf.CFFT_LENGTHS)
def test_cfft_matches_m55(elf, fft_len):
    rng = np.random.default_rng(fft_len + 1)
    t = hf.prepare_cfft(fft_len)
    sigs = _signals(rng, 2 * fft_len)
    dev = m55_dsp.primitive(elf, "cfft_f32", fft_len, [(x,) for x in sigs.values()])
    for (name, x), want in zip(sigs.items(), dev):
        buf = x.copy()
        hf.cfft_f32(buf, t)
        assert_bits_equal(buf, want, f"cfft_f32 L={fft_len} {name}")


PRIMITIVE_LENGTHS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 63, 255, 257, 511, 1024)


def _complex_sets(rng, n):
    sets = _signals(rng, 2 * n)
    near = (np.float32(2.0 ** -63).view(np.int32) + rng.integers(-3, 4, 2 * n).astype(np.int32)).view(np.float32)
    sets["squares at the flush threshold"] = near
    sets["re^2 + im^2 near 2^-126"] = _f32(np.sqrt(2.0 ** -127) * (1 + rng.standard_normal(2 * n) * 1e-6))
    return sets


@pytest.mark.parametrize("op", ["mag_squared_f32", "mag_f32"])
def test_cmplx_mag_matches_m55(elf, op):
    kernel = hf.cmplx_mag_squared_f32 if op == "mag_squared_f32" else hf.cmplx_mag_f32
    for n in PRIMITIVE_LENGTHS:
        sets = _complex_sets(np.random.default_rng(n), n)
        dev = m55_dsp.primitive(elf, op, n, [(x,) for x in sets.values()])
        for (name, x), want in zip(sets.items(), dev):
            dst = np.empty(n, np.float32)
            kernel(x, dst, n)
            assert_bits_equal(dst, want, f"{op} n={n} {name}")


def _pair_sets(rng, n):
    sa = _signals(rng, n)
    sb = _signals(rng, n)
    names = list(sa)
    pairs = {f"{k} x {names[(i + 3) % len(names)]}": (sa[k], sb[names[(i + 3) % len(names)]])
             for i, k in enumerate(names)}
    for k in range(3):
        pairs[f"products at the flush threshold {k}"] = _threshold_pairs(rng, n)
    if n >= 8:
        for k in range(8):
            pairs[f"fused sums at the flush threshold {k}"] = _fma_threshold_pairs(rng, n)
    return pairs


@pytest.mark.parametrize("op", ["dot_f32", "mult_f32"])
def test_dot_and_mult_match_m55(elf, op):
    for n in PRIMITIVE_LENGTHS:
        pairs = _pair_sets(np.random.default_rng(100 + n), n)
        dev = m55_dsp.primitive(elf, op, n, list(pairs.values()))
        for (name, (a, b)), want in zip(pairs.items(), dev):
            if op == "dot_f32":
                got = hf.dot_prod_f32(a, b, n)
            else:
                got = np.empty(n, np.float32)
                hf.mult_f32(a, b, got, n)
            assert_bits_equal(got, want, f"{op} n={n} {name}")


def test_q15_to_float_matches_m55(elf):
    for n in PRIMITIVE_LENGTHS + (65536,):
        rng = np.random.default_rng(n)
        x = (np.arange(n) - 32768).astype(np.int16) if n == 65536 else rng.integers(-32768, 32768, n).astype(np.int16)
        want = m55_dsp.primitive(elf, "q15_to_float", n, [(x,)])[0]
        got = np.empty(n, np.float32)
        hf.q15_to_float(x, got, n)
        assert_bits_equal(got, want, f"q15_to_float n={n}")


@pytest.mark.parametrize("op", [1, 2])
def test_overlapping_in_place_mag_matches_m55(overlap_elf, optional_twins, op):
    """f(buf + 2, buf + 1, n) as the ST application calls it on the packed FFT (n = n_fft/2 - 1)."""
    kernel = hf.cmplx_mag_squared_f32 if op == 1 else hf.cmplx_mag_f32
    ctwin = optional_twins.get("c_helium_f32")
    for n in (1, 3, 4, 7, 511):
        rng = np.random.default_rng(op * 1000 + n)
        bufs = [_f32(rng.standard_normal(2 * n + 2) * s) for s in (1.0, 1e3, 1e-20)]
        body = [np.array([op, n, len(bufs)], "<i4").tobytes()] + [b.tobytes() for b in bufs]
        out = m55.run(overlap_elf, {"job.bin": b"".join(body)}, ["out.bin"])["out.bin"]
        dev = np.frombuffer(out, np.float32).reshape(len(bufs), 2 * n + 2)
        for i, (b, want) in enumerate(zip(bufs, dev)):
            got = b.copy()
            kernel(got[2:], got[1:], n)
            assert_bits_equal(got, want, f"overlapping {'mag_squared' if op == 1 else 'mag'} n={n} set {i}")
            if ctwin is not None:
                got_c = b.copy()
                (ctwin.cmplx_mag_squared_f32 if op == 1 else ctwin.cmplx_mag_f32)(got_c[2:], got_c[1:], n)
                assert_bits_equal(got_c, want, f"C twin overlapping n={n} set {i}")
    optional_twins.skip_unchecked()


@pytest.mark.slow
@pytest.mark.parametrize("op", ["mag_squared_f32", "mag_f32", "dot_f32", "mult_f32"])
def test_primitives_match_m55_sweep(elf, op):
    rng = np.random.default_rng(99)
    for n in list(range(1, 70)) + [int(v) for v in rng.integers(70, 4097, 30)]:
        if op in ("mag_squared_f32", "mag_f32"):
            sets = _complex_sets(np.random.default_rng(n + 5000), n)
            dev = m55_dsp.primitive(elf, op, n, [(x,) for x in sets.values()])
            kernel = hf.cmplx_mag_squared_f32 if op == "mag_squared_f32" else hf.cmplx_mag_f32
            for (name, x), want in zip(sets.items(), dev):
                dst = np.empty(n, np.float32)
                kernel(x, dst, n)
                assert_bits_equal(dst, want, f"{op} n={n} {name}")
        else:
            pairs = _pair_sets(np.random.default_rng(n + 6000), n)
            dev = m55_dsp.primitive(elf, op, n, list(pairs.values()))
            for (name, (a, b)), want in zip(pairs.items(), dev):
                got = hf.dot(a, b) if op == "dot_f32" else hf.mult(a, b)
                assert_bits_equal(got, want, f"{op} n={n} {name}")


# ----------------------------------------------------------------------------------------------------
# (c) Numba == C twin
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_fft", [pytest.param(n, marks=pytest.mark.slow) if n > 1024 else n
                                   for n in hf.RFFT_LENGTHS])      # 2048/4096: ~40 s, in the --run-slow sweep
def test_c_twin_rfft_and_cfft(c_helium_f32, n_fft):
    ctwin = c_helium_f32
    rng = np.random.default_rng(n_fft + 77)
    for name, x in _signals(rng, n_fft, extra=20).items():
        for opt in ("Os", "Ofast"):
            t = hf.prepare_rfft(n_fft, opt)
            b1, b2 = x.copy(), x.copy()
            o1, o2 = np.empty(n_fft, np.float32), np.empty(n_fft, np.float32)
            hf.rfft_fast_f32(b1, o1, t)
            ctwin.rfft_fast_f32(b2, o2, t)
            assert_bits_equal(o2, o1, f"C twin rfft -{opt} n_fft={n_fft} {name}")
            assert_bits_equal(b2, b1, f"C twin rfft buffer -{opt} n_fft={n_fft} {name}")
    for fft_len in (n_fft // 2, n_fft):
        tc = hf.prepare_cfft(fft_len)
        x = _f32(rng.standard_normal(2 * fft_len))
        b1, b2 = x.copy(), x.copy()
        hf.cfft_f32(b1, tc)
        ctwin.cfft_f32(b2, tc)
        assert_bits_equal(b2, b1, f"C twin cfft L={fft_len}")


def test_c_twin_primitives(c_helium_f32):
    ctwin = c_helium_f32
    for n in PRIMITIVE_LENGTHS:
        rng = np.random.default_rng(n + 31)
        for name, x in _complex_sets(rng, n).items():
            for k_nb, k_c in ((hf.cmplx_mag_squared_f32, ctwin.cmplx_mag_squared_f32),
                              (hf.cmplx_mag_f32, ctwin.cmplx_mag_f32)):
                d1, d2 = np.empty(n, np.float32), np.empty(n, np.float32)
                k_nb(x, d1, n)
                k_c(x, d2, n)
                assert_bits_equal(d2, d1, f"C twin {k_nb.__name__} n={n} {name}")
        for name, (a, b) in _pair_sets(rng, n).items():
            assert_bits_equal(ctwin.dot_prod_f32(a, b, n), hf.dot_prod_f32(a, b, n), f"C twin dot n={n} {name}")
            d1, d2 = np.empty(n, np.float32), np.empty(n, np.float32)
            hf.mult_f32(a, b, d1, n)
            ctwin.mult_f32(a, b, d2, n)
            assert_bits_equal(d2, d1, f"C twin mult n={n} {name}")
        q = rng.integers(-32768, 32768, n).astype(np.int16)
        d1, d2 = np.empty(n, np.float32), np.empty(n, np.float32)
        hf.q15_to_float(q, d1, n)
        ctwin.q15_to_float(q, d2, n)
        assert_bits_equal(d2, d1, f"C twin q15_to_float n={n}")


def test_c_twin_checks_its_arguments(c_helium_f32):
    ctwin = c_helium_f32
    t = hf.prepare_rfft(64)
    with pytest.raises(hf.FrontendError, match="float32"):
        ctwin.rfft_fast_f32(np.zeros(64), np.zeros(64, np.float32), t)
    with pytest.raises(hf.FrontendError, match="contiguous"):
        ctwin.mult_f32(np.zeros(8, np.float32)[::2], np.zeros(4, np.float32), np.zeros(4, np.float32), 4)
    with pytest.raises(hf.FrontendError, match="expected at least"):
        ctwin.cmplx_mag_f32(np.zeros(6, np.float32), np.zeros(4, np.float32), 4)
    with pytest.raises(hf.FrontendError, match="tables are for"):
        ctwin.rfft_fast_f32(np.zeros(128, np.float32), np.zeros(128, np.float32), t)


def test_wrappers_validate():
    with pytest.raises(hf.FrontendError, match="n_fft"):
        hf.rfft(np.zeros(128, np.float32), hf.prepare_rfft(64))
    with pytest.raises(hf.FrontendError, match="int16"):
        hf.q15_to_f32(np.zeros(4, np.int32))
    assert math.isclose(float(hf.rfft(np.ones(64, np.float32))[0]), 64.0)
