"""Helium (MVE) f16 CMSIS-DSP kernels (emu/frontend/helium_f16.py, C twin csrc/helium_f16.c).

Oracles: CMSIS-DSP built with the application's flags and run on QEMU's Cortex-M55 (tests/m55_dsp.py), and the
sdist's own table sources (arm_mve_tables_f16.c, arm_common_tables_f16.c, arm_common_tables.c), parsed at
test time. Every comparison is exact on the binary16 bit patterns (NaN payloads included)."""
import re
from pathlib import Path

import numpy as np
import pytest

import cmsis_sources
import m55
import m55_dsp
from emu.frontend import helium_f16, tables
from emu.frontend.f16 import to_f16_bits
from emu.frontend.params import FrontendError

# The C twin (emu.frontend.ctwin_helium) is compared by the tests of the Numba kernels, through conftest's
# optional_twins: a twin that is not built fails them, unless no C compiler exists; then they skip after the
# checks of the Numba kernels, naming what to install.

# output f16 count of one input set, per op of csrc/m55/dsp_primitives.c
_OUT_LEN = {"rfft_f16": lambda n: n, "cfft_f16": lambda n: 2 * n, "mag_squared_f16": lambda n: n,
            "mag_f16": lambda n: n, "dot_f16": lambda n: 1, "mult_f16": lambda n: n, "q15_to_f16": lambda n: n}
LENGTHS = list(range(1, 41)) + [63, 64, 65, 127, 257, 513, 1000]


# ---------------------------------------------------------------------------------------------------
# oracle plumbing
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def sdist(tmp_path_factory):
    return Path(cmsis_sources.source_dir(tmp_path_factory.mktemp("cmsisdsp_helium")))


@pytest.fixture(scope="session")
def device_elf(tmp_path_factory):
    """device_elf(opt): the CMSIS-DSP primitives program built at -Os (the app's Makefile) or -Ofast."""
    m55_dsp.skip_if_missing()
    cache = {}

    def get(opt):
        if opt not in cache:
            cache[opt] = m55_dsp.primitives_elf(tmp_path_factory.mktemp(f"m55_helium_{opt}"), opt=opt)
        return cache[opt]
    return get


@pytest.fixture(scope="session")
def elf(device_elf):
    return device_elf("Os")


def run_device(elf, jobs):
    """Run many (op, n, input_sets) records in one QEMU boot; returns one uint16 array [sets, out_len] per job."""
    body = []
    for op, n, sets in jobs:
        body.append(np.array([m55_dsp.OPS[op], n, len(sets)], "<i4").tobytes())
        for arrays in sets:
            body.extend(np.ascontiguousarray(a).tobytes() for a in arrays)
    raw = np.frombuffer(m55.run(elf, {"job.bin": b"".join(body)}, ["out.bin"])["out.bin"], np.uint16)
    out, pos = [], 0
    for op, n, sets in jobs:
        size = _OUT_LEN[op](n) * len(sets)
        out.append(raw[pos:pos + size].reshape(len(sets), -1))
        pos += size
    assert pos == raw.size, "device output size does not match the jobs"
    return out


def assert_bits_equal(got, want, what):
    got = np.asarray(got)
    want = np.asarray(want)
    gb = got if got.dtype == np.uint16 else to_f16_bits(got)
    wb = want if want.dtype == np.uint16 else to_f16_bits(want)
    assert gb.shape == wb.shape, f"{what}: shape {gb.shape} != {wb.shape}"
    bad = np.argwhere(gb != wb)
    if bad.size:
        first = [tuple(int(i) for i in b) for b in bad[:5]]
        raise AssertionError(f"{what}: {len(bad)} of {gb.size} f16 values differ; first at {first}: "
                             f"got {[hex(gb[b]) for b in first]} want {[hex(wb[b]) for b in first]}")


def f16(x):
    """float16 array (the device's bytes) of values rounded to f16."""
    with np.errstate(over="ignore"):
        return np.asarray(x, np.float64).astype(np.float32).astype(np.float16)


def from_bits(bits):
    return np.asarray(bits, np.uint16).view(np.float16)


# ---------------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------------

def special_values(n, kind, rng):
    """One f16 vector of a named kind (float16 array of n values)."""
    i = np.arange(n)
    if kind == "zeros":
        return f16(np.zeros(n))
    if kind == "neg_zeros":
        return f16(-np.zeros(n))
    if kind == "dc":
        return f16(np.full(n, 0.75))
    if kind == "full_dc":
        return f16(np.full(n, 32767 / 32768))
    if kind == "alt":
        return f16(np.where(i % 2 == 0, 1.0, -1.0))
    if kind == "sine":
        return f16(0.9 * np.sin(2 * np.pi * 3.3 * i / max(n, 1) + 0.3))
    if kind == "impulse":
        x = np.zeros(n)
        x[min(1, n - 1)] = 1.0
        return f16(x)
    if kind == "subnormal":
        return from_bits(rng.integers(0, 0x400, n) | (rng.integers(0, 2, n) << 15))
    if kind == "tiny_mix":
        return f16(rng.standard_normal(n) * 2.0 ** rng.integers(-26, -10, n))
    if kind == "near_overflow":
        return f16(rng.choice([-1, 1], n) * rng.uniform(20000, 65504, n))
    if kind == "max":
        return f16(np.where(i % 3 == 0, 65504.0, -65504.0))
    if kind == "inf":
        x = rng.standard_normal(n) * 0.5
        x[rng.integers(0, n)] = rng.choice([np.inf, -np.inf])
        return f16(x)
    if kind == "nan":
        b = to_f16_bits(f16(rng.standard_normal(n)).astype(np.float32))
        b[rng.integers(0, n)] = rng.choice([0x7E00, 0xFE00, 0x7C01, 0x7D55])   # quiet, negative, signalling NaNs
        return from_bits(b)
    if kind == "speech":
        q = np.clip(rng.standard_normal(n) * 3000 * np.sin(np.pi * i / n) ** 2, -32768, 32767).astype(np.int16)
        w = f16(tables.hann_periodic(n)).astype(np.float32)
        return f16(f16(q / 32768.0).astype(np.float32) * w)
    scale = float(kind)
    return f16(rng.standard_normal(n) * scale)


FRAME_KINDS = ["zeros", "neg_zeros", "dc", "full_dc", "alt", "sine", "impulse", "subnormal", "tiny_mix",
               "near_overflow", "max", "inf", "nan", "speech", "1e-4", "1e-3", "1e-2", "0.1", "0.5", "1.0", "100"]


def frames(n, rng, extra_random=4):
    out = [special_values(n, k, rng) for k in FRAME_KINDS]
    out += [special_values(n, str(rng.choice([1e-3, 0.05, 0.3, 1.0])), rng) for _ in range(extra_random)]
    return out


# ---------------------------------------------------------------------------------------------------
# (a) tables: generated == the sdist's C tables
# ---------------------------------------------------------------------------------------------------

def _c_array_body(text, name):
    m = re.search(r"\b%s\s*\[[^\]]*\][^=;]*=\s*\{(.*?)\}\s*;" % re.escape(name), text, re.S)
    assert m is not None, f"{name} not found in the CMSIS-DSP sources"
    return re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)


def _c_f16_table(text, name):
    toks = re.findall(r"\(float16_t\)\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?[fF]?)", _c_array_body(text, name))
    return tables.round_like_c(toks, np.float16)


def _c_int_table(text, name):
    return np.array([int(t) for t in re.findall(r"\d+", _c_array_body(text, name))], np.int64)


def _read(sdist, rel):
    return (sdist / "Source" / "CommonTables" / rel).read_text(encoding="utf-8-sig")


@pytest.mark.parametrize("fft_len", [16, 64, 256, 1024, 4096])
def test_rearranged_twiddles_equal_sdist(sdist, fft_len):
    text = _read(sdist, "arm_mve_tables_f16.c")
    *strides, offsets = helium_f16.rearranged_twiddles(fft_len)
    for m, got in zip((1, 2, 3), strides):
        want = _c_f16_table(text, f"rearranged_twiddle_stride{m}_{fft_len}_f16")
        assert_bits_equal(got, want.view(np.uint16), f"rearranged_twiddle_stride{m}_{fft_len}_f16")
        arr = _c_int_table(text, f"rearranged_twiddle_tab_stride{m}_arr_{fft_len}_f16")
        np.testing.assert_array_equal(offsets, arr, err_msg=f"stage offsets of stride {m}, length {fft_len}")


@pytest.mark.parametrize("n_fft", helium_f16.RFFT_SIZES)
def test_rfft_and_split_twiddles_equal_sdist(sdist, n_fft):
    text = _read(sdist, "arm_common_tables_f16.c")
    want = _c_f16_table(text, f"twiddleCoefF16_rfft_{n_fft}")
    assert_bits_equal(helium_f16.rfft_twiddles(n_fft), want.view(np.uint16), f"twiddleCoefF16_rfft_{n_fft}")
    cfft_len = n_fft // 2
    split = helium_f16.prepare_rfft(n_fft)[0]
    if (cfft_len.bit_length() - 1) % 2 == 1:          # radix-4-by-2 lengths use twiddleCoefF16_<len>
        full = _c_f16_table(text, f"twiddleCoefF16_{cfft_len}")
        assert_bits_equal(split, full[:cfft_len].view(np.uint16), f"twiddleCoefF16_{cfft_len} (first half)")
    else:
        assert split.size == 0


@pytest.mark.parametrize("fft_len", helium_f16.CFFT_SIZES)
def test_bit_reversal_equals_sdist_swap_table(sdist, fft_len):
    """arm_bitreversal_16_inpl_mve swaps the complex values of each pair of armBitRevIndexTable_fixed_<len>
    (byte offsets >> 3); the pairs are disjoint, so the result is one permutation: ours."""
    pairs = _c_int_table(_read(sdist, "arm_common_tables.c"), f"armBitRevIndexTable_fixed_{fft_len}").reshape(-1, 2) >> 3
    assert len(set(pairs.ravel().tolist())) == pairs.size, "swap pairs overlap: vector grouping would matter"
    perm = np.arange(fft_len)
    for a, b in pairs:
        perm[a], perm[b] = perm[b], perm[a]
    np.testing.assert_array_equal(helium_f16.bit_reversal(fft_len), perm)


def test_prepare_rejects_unsupported_sizes():
    with pytest.raises(FrontendError, match="n_fft 100"):
        helium_f16.prepare_rfft(100)
    with pytest.raises(FrontendError, match="cfft length 8"):
        helium_f16.prepare_cfft(8)
    with pytest.raises(FrontendError, match="optimization 'O2'"):
        helium_f16.prepare_rfft(64, "O2")
    with pytest.raises(FrontendError, match="not binary16"):
        helium_f16.rfft_packed(np.full(32, 0.1, np.float32))


# ---------------------------------------------------------------------------------------------------
# (b) Numba == Cortex-M55 (QEMU), (c) Numba == C twin
# ---------------------------------------------------------------------------------------------------

def _numba_rfft(x, opt="Os"):
    return helium_f16.rfft_packed(x.astype(np.float32), optimization=opt)


def _check_fft(elf, rng, per_size_random, ctwin, opt="Os"):
    jobs, inputs = [], []
    for n in helium_f16.RFFT_SIZES:
        xs = frames(n, rng, per_size_random)
        jobs.append(("rfft_f16", n, [(x,) for x in xs]))
        inputs.append(("rfft", n, xs))
    for n in helium_f16.CFFT_SIZES:
        xs = frames(2 * n, rng, 2)
        jobs.append(("cfft_f16", n, [(x,) for x in xs]))
        inputs.append(("cfft", n, xs))
    outs = run_device(elf, jobs)
    for (kind, n, xs), dev in zip(inputs, outs):
        for i, x in enumerate(xs):
            name = FRAME_KINDS[i] if i < len(FRAME_KINDS) else "random"
            if kind == "rfft":
                got = _numba_rfft(x, opt)
                assert_bits_equal(got, dev[i], f"-{opt} rfft_f16 n_fft={n} input {i} ({name})")
                if ctwin is not None:
                    assert_bits_equal(ctwin.rfft_packed_c(x.astype(np.float32), optimization=opt), got,
                                      f"-{opt} C twin rfft n_fft={n} input {i} ({name})")
            else:
                got = helium_f16.cfft(x.astype(np.float32))
                assert_bits_equal(got, dev[i], f"-{opt} cfft_f16 len={n} input {i} ({name})")
                if ctwin is not None:
                    buf = x.astype(np.float32)
                    ctwin.cfft_f16_c(buf, helium_f16.prepare_cfft(n))
                    assert_bits_equal(buf, got, f"C twin cfft len={n} input {i} ({name})")


@pytest.mark.parametrize("opt", helium_f16.OPTIMIZATIONS)
def test_rfft_and_cfft_equal_m55(device_elf, optional_twins, opt):
    ctwin = optional_twins.get("c_helium_f16")
    _check_fft(device_elf(opt), np.random.default_rng(20261201), per_size_random=6, ctwin=ctwin, opt=opt)
    optional_twins.skip_unchecked()


@pytest.mark.slow
@pytest.mark.parametrize("opt", helium_f16.OPTIMIZATIONS)
def test_rfft_and_cfft_equal_m55_sweep(device_elf, optional_twins, opt):
    ctwin = optional_twins.get("c_helium_f16")
    for seed in range(30):
        _check_fft(device_elf(opt), np.random.default_rng(1000 + seed), per_size_random=40, ctwin=ctwin, opt=opt)
    optional_twins.skip_unchecked()


def test_ofast_build_differs_from_os():
    """The two builds' rfft differ (only in the split's vector body), so the switch matters."""
    rng = np.random.default_rng(4)
    x = special_values(1024, "0.3", rng).astype(np.float32)
    a, b = _numba_rfft(x, "Os"), _numba_rfft(x, "Ofast")
    assert np.sum(to_f16_bits(a) != to_f16_bits(b)) > 50
    np.testing.assert_array_equal(a[:2], b[:2])


def _elementwise_inputs(op, n, rng):
    kinds = ["zeros", "neg_zeros", "alt", "subnormal", "tiny_mix", "near_overflow", "max", "inf", "nan",
             "1e-4", "1e-2", "1.0", "100"]
    m = 2 * n if op in ("mag_squared_f16", "mag_f16") else n
    if op == "q15_to_f16":
        return [(rng.integers(-32768, 32768, n).astype(np.int16),),
                (np.where(np.arange(n) % 2 == 0, 32767, -32768).astype(np.int16),),
                (rng.integers(-8, 8, n).astype(np.int16),)]
    if op in ("mult_f16", "dot_f16"):
        return [(special_values(m, a, rng), special_values(m, b, rng))
                for a, b in zip(kinds, kinds[3:] + kinds[:3])] + [(special_values(m, "1.0", rng),) * 2]
    return [(special_values(m, k, rng),) for k in kinds]


def _numba_op(op, n, arrays):
    a = [x if x.dtype == np.int16 else x.astype(np.float32) for x in arrays]
    if op == "mag_squared_f16":
        out = np.empty(n, np.float32)
        helium_f16.cmplx_mag_squared_f16(a[0], out, n)
    elif op == "mag_f16":
        out = np.empty(n, np.float32)
        helium_f16.cmplx_mag_f16(a[0], out, n)
    elif op == "dot_f16":
        out = np.array([helium_f16.dot_prod_f16(a[0], a[1], n)], np.float32)
    elif op == "mult_f16":
        out = np.empty(n, np.float32)
        helium_f16.mult_f16(a[0], a[1], out, n)
    else:
        out = np.empty(n, np.float32)
        helium_f16.q15_to_f16(a[0], out, n)
    return out


def _c_op(ctwin, op, n, arrays):
    a = [x if x.dtype == np.int16 else x.astype(np.float32) for x in arrays]
    out = np.empty(n, np.float32)
    if op == "mag_squared_f16":
        ctwin.cmplx_mag_squared_f16_c(a[0], out, n)
    elif op == "mag_f16":
        ctwin.cmplx_mag_f16_c(a[0], out, n)
    elif op == "dot_f16":
        out = np.array([ctwin.dot_prod_f16_c(a[0], a[1], n)], np.float32)
    elif op == "mult_f16":
        ctwin.mult_f16_c(a[0], a[1], out, n)
    else:
        ctwin.q15_to_f16_c(a[0], out, n)
    return out


ELEMENTWISE = ["q15_to_f16", "mult_f16", "mag_squared_f16", "dot_f16", "mag_f16"]


def _check_elementwise(elf, op, lengths, rng, ctwin):
    jobs = [(op, n, _elementwise_inputs(op, n, rng)) for n in lengths]
    for (_, n, sets), dev in zip(jobs, run_device(elf, jobs)):
        for i, arrays in enumerate(sets):
            got = _numba_op(op, n, arrays)
            assert_bits_equal(got, dev[i], f"{op} n={n} input set {i}")
            if ctwin is not None:
                assert_bits_equal(_c_op(ctwin, op, n, arrays), got, f"C twin {op} n={n} input set {i}")


@pytest.mark.parametrize("opt", helium_f16.OPTIMIZATIONS)
@pytest.mark.parametrize("op", ELEMENTWISE)
def test_elementwise_equal_m55(device_elf, optional_twins, op, opt):
    """Both builds compile these to the same arithmetic: one emulation for -Os and -Ofast."""
    _check_elementwise(device_elf(opt), op, LENGTHS, np.random.default_rng(ELEMENTWISE.index(op)),
                       optional_twins.get("c_helium_f16"))
    optional_twins.skip_unchecked()


@pytest.mark.slow
@pytest.mark.parametrize("op", ELEMENTWISE)
def test_elementwise_equal_m55_sweep(elf, optional_twins, op):
    rng = np.random.default_rng(7)
    _check_elementwise(elf, op, list(range(1, 130)) + [255, 256, 511, 1024, 2047, 4095], rng,
                       optional_twins.get("c_helium_f16"))
    optional_twins.skip_unchecked()


def test_q15_to_f16_all_values_equal_m55(elf, optional_twins):
    q = np.arange(-32768, 32768).astype(np.int16)
    (dev,) = run_device(elf, [("q15_to_f16", q.size, [(q,)])])
    got = helium_f16.q15_to_f16_array(q)
    assert_bits_equal(got, dev[0], "q15_to_f16 over all int16")
    ctwin = optional_twins.get("c_helium_f16")
    if ctwin is not None:
        out = np.empty(q.size, np.float32)
        ctwin.q15_to_f16_c(q, out, q.size)
        assert_bits_equal(out, got, "C twin q15_to_f16 over all int16")
    optional_twins.skip_unchecked()


def test_mult_all_f16_patterns_equal_m55(elf, optional_twins):
    """Every binary16 pattern (NaNs, infinities, subnormals, -0) times a few factors, incl. 0 and inf."""
    a = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    jobs = []
    for factor in (1.0, -0.5, 0.0, 3.0, 1024.0, 2.0 ** -13, np.inf):
        b = np.full(a.size, factor, np.float16)
        jobs.append(("mult_f16", a.size, [(a, b)]))
    ctwin = optional_twins.get("c_helium_f16")
    for (_, n, sets), dev in zip(jobs, run_device(elf, jobs)):
        got = _numba_op("mult_f16", n, sets[0])
        assert_bits_equal(got, dev[0], f"mult_f16 x {float(sets[0][1][0])}")
        if ctwin is not None:
            assert_bits_equal(_c_op(ctwin, "mult_f16", n, sets[0]), got, "C twin mult_f16")
    optional_twins.skip_unchecked()


def test_mag_all_f16_patterns_equal_m55(elf, optional_twins):
    """cmplx_mag/mag_squared on (x, y) for every binary16 x (y random normal or the same x): covers zero,
    subnormal, overflowing and NaN sums through the Newton iteration, full blocks and a tail block."""
    rng = np.random.default_rng(3)
    x = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    sets = []
    for y in (f16(rng.standard_normal(x.size) * 0.01), x):
        z = np.empty(2 * x.size, np.float16)
        z[0::2] = x
        z[1::2] = y
        sets.append((z,))
    n = x.size - 3                                      # 65533: last block is a 5-lane tail
    sets = [(s[0][:2 * n],) for s in sets]
    outs = run_device(elf, [("mag_f16", n, sets), ("mag_squared_f16", n, sets)])
    ctwin = optional_twins.get("c_helium_f16")
    for op, dev in zip(("mag_f16", "mag_squared_f16"), outs):
        for i, arrays in enumerate(sets):
            got = _numba_op(op, n, arrays)
            assert_bits_equal(got, dev[i], f"{op} all patterns set {i}")
            if ctwin is not None:
                assert_bits_equal(_c_op(ctwin, op, n, arrays), got, f"C twin {op} all patterns set {i}")
    optional_twins.skip_unchecked()


# ---------------------------------------------------------------------------------------------------
# semantics the app depends on
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_fft", [32, 256, 1024])
def test_in_place_power_spectrum_like_the_app(elf, optional_twins, n_fft):
    """The app: power[0] and power[n_fft/2] written first, then cmplx_mag_squared_f16(buf+2, buf+1, n/2-1)
    in place. Blocks read before they write, so the result equals the same call on a copy of the source
    (as the device computes it from separate buffers), with bin n/4 reading the overwritten element."""
    rng = np.random.default_rng(n_fft)
    x = special_values(n_fft, "speech", rng)
    X = _numba_rfft(x)
    buf = X.copy()
    buf[0] = np.float32(np.float16(X[0] * X[0]))
    buf[n_fft // 2] = np.float32(np.float16(X[1] * X[1]))
    src_copy = buf[2:].copy()
    helium_f16.cmplx_mag_squared_f16(buf[2:], buf[1:], n_fft // 2 - 1)
    (dev,) = run_device(elf, [("mag_squared_f16", n_fft // 2 - 1, [(f16(src_copy[:n_fft - 2]),)])])
    assert_bits_equal(buf[1:n_fft // 2], dev[0], "in-place power spectrum")
    ctwin = optional_twins.get("c_helium_f16")
    if ctwin is not None:
        cbuf = X.copy()
        cbuf[0], cbuf[n_fft // 2] = buf[0], buf[n_fft // 2]
        ctwin.cmplx_mag_squared_f16_c(cbuf[2:], cbuf[1:], n_fft // 2 - 1)
        assert_bits_equal(cbuf[:n_fft // 2 + 1], buf[:n_fft // 2 + 1], "C twin in-place power spectrum")
    optional_twins.skip_unchecked()


def _block_model(fn, src, dst_offset, n, lanes_in):
    """Reference for overlapping buffers: per block of 8, read every input, then write every output."""
    mem = src.copy()
    for base in range(0, n, 8):
        cnt = min(8, n - base)
        vals = [fn(mem[lanes_in * (base + j):lanes_in * (base + j) + lanes_in]) for j in range(cnt)]
        for j in range(cnt):
            mem[dst_offset + base + j] = vals[j]
    return mem


def test_overlapping_buffers_follow_block_order(optional_twins):
    """dst ahead of src (a hazard an element-by-element loop would get wrong): blocks read, then write."""
    rng = np.random.default_rng(5)
    n = 21
    ctwin = optional_twins.get("c_helium_f16")
    for offset in (1, 3, 5, 9):
        mem = f16(rng.standard_normal(2 * n + offset + 8)).astype(np.float32)
        ref = _block_model(lambda v: helium_f16.cmplx_mag_squared(v)[0], mem, offset, n, 2)
        got = mem.copy()
        helium_f16.cmplx_mag_squared_f16(got, got[offset:], n)
        assert_bits_equal(got, ref, f"mag_squared overlap offset {offset}")
        refm = _block_model(lambda v: helium_f16.mult(v, v)[0], mem, offset, n, 1)
        gotm = mem.copy()
        helium_f16.mult_f16(gotm, gotm, gotm[offset:], n)
        assert_bits_equal(gotm, refm, f"mult overlap offset {offset}")
        if ctwin is not None:
            c = mem.copy()
            ctwin.cmplx_mag_squared_f16_c(c, c[offset:], n)
            assert_bits_equal(c, ref, f"C twin mag_squared overlap offset {offset}")
    optional_twins.skip_unchecked()


@pytest.mark.parametrize("n_fft", helium_f16.RFFT_SIZES)
def test_rfft_is_the_dft(n_fft):
    """Structure, independent of the oracle: the packed output is numpy's rfft to f16 accuracy."""
    rng = np.random.default_rng(n_fft + 9)
    for _ in range(3):
        x = special_values(n_fft, "0.3", rng).astype(np.float32)
        X = np.fft.rfft(x.astype(np.float64))
        got = _numba_rfft(x)
        packed = np.empty(n_fft)
        packed[0], packed[1] = X[0].real, X[-1].real
        packed[2::2], packed[3::2] = X[1:-1].real, X[1:-1].imag
        err = np.max(np.abs(got - packed)) / np.sqrt(np.sum(x.astype(np.float64) ** 2) + 1e-30)
        assert err < 0.02, f"n_fft={n_fft}: max error {err:.3g} of the signal norm"


def test_fused_operations_matter():
    """VFMA/VCMLA round once: (1+2^-10)^2 - (1+2^-9) = 2^-20 exactly (an f16 subnormal), while rounding
    the product first gives 0; and a tie of the exact sum is broken by bits far below float32."""
    a = np.float32(1.0 + 2.0 ** -10)
    c = np.float32(-(1.0 + 2.0 ** -9))
    assert helium_f16._fma(a, a, c) == np.float32(2.0 ** -20)
    assert np.float32(np.float16(np.float32(np.float16(a * a)) + c)) == 0
    # x*y + c = 1 + 2^-11 + 2^-24: just above the tie between 1 and 1 + 2^-10, so it rounds up
    x = np.float32(1.0 + 2.0 ** -10)
    y = np.float32(1.0 - 2.0 ** -11)           # x*y = 1 + 2^-11 - 2^-21
    assert helium_f16._fma(x, y, np.float32(2.0 ** -21 + 2.0 ** -24)) == np.float32(1.0 + 2.0 ** -10)
