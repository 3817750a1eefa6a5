"""cmsis-q15 front end: Numba == cmsisdsp (pure-C CMSIS-DSP build) == C twin, np.array_equal only.

Oracles: the `cmsisdsp` package (arm_rfft_q15, arm_cfft_q15, arm_cmplx_mag(_squared)_q15, arm_vlog_q15/q31,
arm_mult_q15, arm_dot_prod_q15, arm_float_to_q15, arm_mfcc_q15) for the pure-C semantics; an independent
packed-intrinsic transcription (below) of the ARM_MATH_DSP butterflies for the `dsp-ext` variant.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.frontend import cmsis_q15 as q15

CMSISDSP_MISSING = 'oracle unavailable: the cmsisdsp package is not installed; pip install -e ".[test]"'
try:        # the oracle: without it only the tests marked needs_cmsisdsp skip, the others still check our code
    import cmsisdsp as dsp
    from cmsisdsp import datatype as cdt
    from cmsisdsp import mfcc as cmfcc
    _CMSISDSP_ERROR = None
except ImportError as e:
    dsp = cdt = cmfcc = None
    _CMSISDSP_ERROR = e


@pytest.fixture(scope="module")
def cmsisdsp_oracle():
    if _CMSISDSP_ERROR is not None:
        pytest.skip(f"{CMSISDSP_MISSING} ({_CMSISDSP_ERROR})")
    return dsp


needs_cmsisdsp = pytest.mark.usefixtures("cmsisdsp_oracle")

RNG_SEED = 20261126


def _first_mismatch(ref, got):
    bad = np.flatnonzero(np.asarray(ref).reshape(-1) != np.asarray(got).reshape(-1))
    return f"{bad.size} mismatches, first at {bad[:5].tolist()}"


def _signals(n, rng, count):
    """Random full-scale, small random, silence, full-scale +/- constants, clipped loud sine, impulse."""
    t = np.arange(n)
    sine = np.clip(60000.0 * np.sin(2 * np.pi * 7.3 * t / n), -32768, 32767).astype(np.int16)
    impulse = np.zeros(n, np.int16)
    impulse[n // 3] = -32768
    fixed = [np.zeros(n, np.int16), np.full(n, 32767, np.int16), np.full(n, -32768, np.int16), sine, impulse,
             np.where(t % 2 == 0, 32767, -32768).astype(np.int16)]
    rand = []
    for i in range(count):
        amp = (32768, 3000, 40)[i % 3]
        rand.append(rng.integers(-amp, amp, n).astype(np.int16))
    return fixed + rand


def _rfft_oracle(n):
    inst = dsp.arm_rfft_instance_q15()
    assert dsp.arm_rfft_init_q15(inst, n, 0, 1) == 0
    return lambda x: dsp.arm_rfft_q15(inst, x.copy())


# ------------------------------------------------------------------------------------------ tables

@needs_cmsisdsp
def test_float_to_q15_truncate_matches_arm_float_to_q15():
    rng = np.random.default_rng(RNG_SEED)
    x = np.concatenate([rng.uniform(-1.2, 1.2, 5000), np.arange(-40, 40) / 32768.0 + 0.5 / 32768.0,
                        [1.0, -1.0, 0.0, 0.99999, -0.99999]]).astype(np.float32)
    assert np.array_equal(q15.float_to_q15(x, "truncate"), dsp.arm_float_to_q15(x))


@needs_cmsisdsp
def test_float_to_q15_half_even_matches_cmsisdsp_convert():
    rng = np.random.default_rng(RNG_SEED + 1)
    x = np.concatenate([rng.uniform(-1.1, 1.1, 5000), (np.arange(-40, 40) + 0.5) / 32768.0])
    assert np.array_equal(q15.float_to_q15(x, "half-even"), cdt.convert(x, cdt.Q15))


def test_float_to_q15_half_away_ties():
    x = (np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5]) / 32768.0).astype(np.float32)
    assert q15.float_to_q15(x, "half-away").tolist() == [1, 2, 3, -1, -2, -3]


# ------------------------------------------------------------------------------------------ FFT

@needs_cmsisdsp
@pytest.mark.parametrize("cfft_len", [16, 32, 64, 128, 256, 512, 1024])
def test_cfft_q15_matches_cmsisdsp(cfft_len):
    inst = dsp.arm_cfft_instance_q15()
    assert dsp.arm_cfft_init_q15(inst, cfft_len) == 0
    rng = np.random.default_rng(RNG_SEED + cfft_len)
    for x in _signals(2 * cfft_len, rng, 6):
        ref = dsp.arm_cfft_q15(inst, x.copy(), 0, 1)
        got = x.copy()
        q15._cfft_q15(got, cfft_len, q15.twiddle_q15(cfft_len), q15.bitrev_permutation(cfft_len), 0)
        assert np.array_equal(ref, got), _first_mismatch(ref, got)


@needs_cmsisdsp
@pytest.mark.parametrize("n_fft", [256, 512, 1024, 2048])
def test_rfft_q15_matches_cmsisdsp(n_fft):
    oracle = _rfft_oracle(n_fft)
    rng = np.random.default_rng(RNG_SEED + n_fft)
    for x in _signals(n_fft, rng, 9):
        ref = oracle(x)
        got = q15.rfft_q15(x)
        assert got.shape == (2 * n_fft,)
        assert np.array_equal(ref, got), _first_mismatch(ref, got)


@needs_cmsisdsp
@pytest.mark.slow
@pytest.mark.parametrize("n_fft", [32, 64, 128, 256, 512, 1024, 2048, 4096])
def test_rfft_q15_matches_cmsisdsp_sweep(n_fft):
    oracle = _rfft_oracle(n_fft)
    rng = np.random.default_rng(RNG_SEED + 7 * n_fft)
    for x in _signals(n_fft, rng, 150):
        assert np.array_equal(oracle(x), q15.rfft_q15(x))


@needs_cmsisdsp
@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-32768, 32767), min_size=512, max_size=512))
def test_rfft_q15_hypothesis_512(values):
    x = np.array(values, dtype=np.int16)
    assert np.array_equal(_rfft_oracle(512)(x), q15.rfft_q15(x))


def test_rfft_q15_overwrites_input_like_c():
    rng = np.random.default_rng(RNG_SEED)
    x = rng.integers(-20000, 20000, 256).astype(np.int16)
    keep = x.copy()
    out = q15.rfft_q15(x, overwrite_input=True)
    assert not np.array_equal(x, keep)                   # buffer used as the cfft work area
    assert np.array_equal(out, q15.rfft_q15(keep))


def test_rfft_q15_scaling_is_dft_over_n():
    # a pure cosine at bin 5: |X[5]| = N * A/2 -> output ~ A/2 (DFT/N), i.e. (log2N+1).(15-log2N) format
    n, amp = 1024, 16000
    x = np.round(amp * np.cos(2 * np.pi * 5 * np.arange(n) / n)).astype(np.int16)
    out = q15.rfft_q15(x).astype(np.int64)
    assert abs(out[10] - amp // 2) <= 4 and abs(out[11]) <= 4


# --------------------------------------------------------------------------- dsp-ext (no oracle build)

def _w16(v):
    return ((int(v) + 32768) & 0xFFFF) - 32768


def _w32(v):
    return ((int(v) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _s16(v):
    return max(-32768, min(32767, int(v)))


# packed-lane intrinsics on (lo, hi) = (re, im) pairs, little endian, as documented by Arm
def _qadd16(a, b): return (_s16(a[0] + b[0]), _s16(a[1] + b[1]))
def _qsub16(a, b): return (_s16(a[0] - b[0]), _s16(a[1] - b[1]))
def _shadd16(a, b): return ((a[0] + b[0]) >> 1, (a[1] + b[1]) >> 1)
def _shsub16(a, b): return ((a[0] - b[0]) >> 1, (a[1] - b[1]) >> 1)
def _qasx(a, b): return (_s16(a[0] - b[1]), _s16(a[1] + b[0]))
def _qsax(a, b): return (_s16(a[0] + b[1]), _s16(a[1] - b[0]))
def _shasx(a, b): return ((a[0] - b[1]) >> 1, (a[1] + b[0]) >> 1)
def _shsax(a, b): return ((a[0] + b[1]) >> 1, (a[1] - b[0]) >> 1)
def _smuad(a, b): return _w32(a[0] * b[0] + a[1] * b[1])
def _smusdx(a, b): return _w32(a[0] * b[1] - a[1] * b[0])
def _pkhbt(lo, hi): return (_w16(lo), _w16(hi >> 16))
def _half(a): return _shadd16(a, (0, 0))


def _naive_radix4_dsp(z, off, n, coef, tw):
    """ARM_MATH_DSP arm_radix4_butterfly_q15 on complex list z[off:off+n] written with packed intrinsics."""
    def c(k):
        return (int(coef[2 * k]), int(coef[2 * k + 1]))

    def rot(cc, v):
        return _pkhbt(_smuad(cc, v) >> 16, _smusdx(cc, v))

    n2, ic = n >> 2, 0
    for i0 in range(n2):
        ia, ib, ic_, idd = off + i0, off + i0 + n2, off + i0 + 2 * n2, off + i0 + 3 * n2
        t = _half(_half(z[ia]))
        s = _half(_half(z[ic_]))
        r, s = _qadd16(t, s), _qsub16(t, s)
        b4, d4 = _half(_half(z[ib])), _half(_half(z[idd]))
        t = _qadd16(b4, d4)
        z[ia] = _shadd16(r, t)
        r = _qsub16(r, t)
        z[ib] = rot(c(2 * ic), r)
        t = _qsub16(b4, d4)
        r, s = _qasx(s, t), _qsax(s, t)
        z[ic_] = rot(c(ic), s)
        z[idd] = rot(c(3 * ic), r)
        ic += tw
    tw <<= 2
    k = n >> 2
    while k > 4:
        n1, n2 = n2, n2 >> 2
        ic = 0
        for j in range(n2):
            c1, c2, c3 = c(ic), c(2 * ic), c(3 * ic)
            ic += tw
            for i0 in range(j, n, n1):
                ia, ib, ic_, idd = off + i0, off + i0 + n2, off + i0 + 2 * n2, off + i0 + 3 * n2
                r, s = _qadd16(z[ia], z[ic_]), _qsub16(z[ia], z[ic_])
                t = _qadd16(z[ib], z[idd])
                u = _qsub16(z[ib], z[idd])
                z[ia] = _half(_shadd16(r, t))
                r = _shsub16(r, t)
                z[ib] = rot(c2, r)
                r, s = _shasx(s, u), _shsax(s, u)
                z[ic_] = rot(c1, s)
                z[idd] = rot(c3, r)
        tw <<= 2
        k >>= 2
    for i0 in range(0, n, 4):
        a, b, cc, d = z[off + i0], z[off + i0 + 1], z[off + i0 + 2], z[off + i0 + 3]
        r, t = _qadd16(a, cc), _qadd16(b, d)
        s, u = _qsub16(a, cc), _qsub16(b, d)
        z[off + i0], z[off + i0 + 1] = _shadd16(r, t), _shsub16(r, t)
        z[off + i0 + 2], z[off + i0 + 3] = _shsax(s, u), _shasx(s, u)


def _naive_cfft_dsp(x, n):
    coef = q15.twiddle_q15(n)
    z = [(int(x[2 * i]), int(x[2 * i + 1])) for i in range(n)]
    if n in (16, 64, 256, 1024):
        _naive_radix4_dsp(z, 0, n, coef, 1)
    else:
        h = n >> 1
        for i in range(h):
            cc = (int(coef[2 * i]), int(coef[2 * i + 1]))
            t, s = _half(z[i]), _half(z[i + h])
            r = _qsub16(t, s)
            z[i] = _shadd16(t, s)
            z[i + h] = _pkhbt(_smuad(cc, r) >> 16, _smusdx(cc, r))
        _naive_radix4_dsp(z, 0, h, coef, 2)
        _naive_radix4_dsp(z, h, h, coef, 2)
        z = [(_w16(a << 1), _w16(b << 1)) for a, b in z]
    rev = q15.bitrev_permutation(n)
    out = np.empty(2 * n, np.int16)
    for i in range(n):
        out[2 * i], out[2 * i + 1] = z[rev[i]]
    return out


@pytest.mark.parametrize("cfft_len", [16, 32, 64, 128, 256])
def test_cfft_dsp_ext_matches_packed_intrinsic_transcription(cfft_len):
    rng = np.random.default_rng(RNG_SEED + 3 * cfft_len)
    for x in _signals(2 * cfft_len, rng, 4):
        got = x.copy()
        q15._cfft_q15(got, cfft_len, q15.twiddle_q15(cfft_len), q15.bitrev_permutation(cfft_len), 1)
        ref = _naive_cfft_dsp(x, cfft_len)
        assert np.array_equal(ref, got), _first_mismatch(ref, got)


def test_dsp_ext_differs_from_pure_c_by_a_few_lsb():
    rng = np.random.default_rng(RNG_SEED)
    worst = 0
    for n_fft in (256, 512, 1024):
        for _ in range(5):
            x = rng.integers(-32768, 32768, n_fft).astype(np.int16)
            d = np.abs(q15.rfft_q15(x, "pure-c").astype(int) - q15.rfft_q15(x, "dsp-ext").astype(int))
            worst = max(worst, int(d.max()))
    assert 1 <= worst <= 8


# ------------------------------------------------------------------------- magnitude, log, mult, dot

def _edge_complex(rng, n):
    edges = np.array([-32768, -32768, 32767, 32767, -32768, 32767, 0, 0, 1, 0, 0, -1, -32768, 0, 0, 32767],
                     np.int16)
    return np.concatenate([edges, rng.integers(-32768, 32768, n).astype(np.int16),
                           rng.integers(-64, 64, n).astype(np.int16)])


@needs_cmsisdsp
def test_cmplx_mag_q15_matches_cmsisdsp():
    x = _edge_complex(np.random.default_rng(RNG_SEED), 100000)
    assert np.array_equal(dsp.arm_cmplx_mag_q15(x), q15.cmplx_mag_q15(x))


@needs_cmsisdsp
def test_cmplx_mag_squared_q15_matches_cmsisdsp():
    x = _edge_complex(np.random.default_rng(RNG_SEED + 1), 100000)
    assert np.array_equal(dsp.arm_cmplx_mag_squared_q15(x), q15.cmplx_mag_squared_q15(x))


@needs_cmsisdsp
def test_vlog_q15_matches_cmsisdsp_exhaustively():
    x = np.arange(-32768, 32768).astype(np.int16)
    assert np.array_equal(dsp.arm_vlog_q15(x), q15.vlog_q15(x))


@needs_cmsisdsp
def test_vlog_q31_matches_cmsisdsp():
    rng = np.random.default_rng(RNG_SEED)
    x = np.concatenate([np.array([0, 1, -1, 2, 3, 2**31 - 1, -2**31, 1 << 30, (1 << 30) - 1], np.int64),
                        rng.integers(-2**31, 2**31, 100000), rng.integers(0, 1 << 12, 2000),
                        1 << rng.integers(0, 31, 200)]).astype(np.int32)
    assert np.array_equal(dsp.arm_vlog_q31(x), q15.vlog_q31(x))


@needs_cmsisdsp
def test_sqrt_q31_matches_cmsisdsp():
    rng = np.random.default_rng(RNG_SEED)
    x = np.concatenate([[0, 1, 2, 3, -1, -2**31, 2**31 - 1, 1 << 30], rng.integers(0, 2**31, 3000),
                        1 << rng.integers(0, 31, 300), rng.integers(0, 1 << 16, 1000)]).astype(np.int32)
    ref = np.array([dsp.arm_sqrt_q31(int(v))[1] for v in x], np.int32)
    assert np.array_equal(ref, q15.sqrt_q31(x))


@needs_cmsisdsp
def test_mult_and_dot_q15_match_cmsisdsp():
    rng = np.random.default_rng(RNG_SEED)
    a = np.concatenate([[-32768, -32768, 32767], rng.integers(-32768, 32768, 5000)]).astype(np.int16)
    b = np.concatenate([[-32768, 32767, 32767], rng.integers(-32768, 32768, 5000)]).astype(np.int16)
    assert np.array_equal(dsp.arm_mult_q15(a, b), q15.mult_q15(a, b))
    assert int(dsp.arm_dot_prod_q15(a, b)) == q15.dot_prod_q15(a, b)


# ------------------------------------------------------------------------------------------ MFCC

def _cmsis_mfcc_setup(n_fft, n_mels, n_dct, rounding="half-even"):
    """Tables as CMSIS-DSP's mfcc examples build them (float helpers -> q15), shared by both sides."""
    f_len, f_pos, f_coefs = cmfcc.melFilterMatrix(cdt.F64, 20, 8000, n_mels, 16000, n_fft)
    dct = cmfcc.dctMatrix(cdt.F64, n_dct, n_mels)
    win = np.hanning(n_fft)          # the example's window
    if rounding == "truncate":
        conv = lambda v: dsp.arm_float_to_q15(np.asarray(v, np.float32))  # noqa: E731
    else:
        conv = lambda v: cdt.convert(v, cdt.Q15)  # noqa: E731
    win16, coefs16, dct16 = conv(win), conv(f_coefs), conv(dct)
    assert np.array_equal(win16, q15.float_to_q15(win, rounding))
    inst = dsp.arm_mfcc_instance_q15()
    assert dsp.arm_mfcc_init_q15(inst, n_fft, n_mels, n_dct, dct16, f_pos, f_len, coefs16, win16) == 0
    tables = q15.mfcc_tables(n_fft, win16, f_pos, f_len, coefs16, dct16, n_dct)
    return inst, tables


def _mfcc_signals(n, rng):
    sigs = _signals(n, rng, 6)
    clipped = np.clip(rng.normal(0, 40000, n), -32768, 32767).astype(np.int16)
    quiet = rng.integers(-3, 4, n).astype(np.int16)
    return sigs + [clipped, quiet]


@needs_cmsisdsp
@pytest.mark.parametrize("n_fft,n_mels,n_dct,rounding", [(256, 20, 13, "half-even"), (512, 40, 13, "truncate"),
                                                         (1024, 40, 10, "half-even")])
def test_mfcc_q15_matches_cmsisdsp(n_fft, n_mels, n_dct, rounding):
    inst, tables = _cmsis_mfcc_setup(n_fft, n_mels, n_dct, rounding)
    rng = np.random.default_rng(RNG_SEED + n_fft)
    tmp = np.zeros(2 * n_fft + 2, np.int32)
    for x in _mfcc_signals(n_fft, rng):
        status, ref = dsp.arm_mfcc_q15(inst, x.copy(), tmp)
        assert status == 0
        got = q15.mfcc_q15(x, tables)
        assert np.array_equal(ref, got), _first_mismatch(ref, got)


@needs_cmsisdsp
@pytest.mark.slow
@pytest.mark.parametrize("n_fft", [256, 512, 1024, 2048])
def test_mfcc_q15_matches_cmsisdsp_sweep(n_fft):
    inst, tables = _cmsis_mfcc_setup(n_fft, 40, 13)
    rng = np.random.default_rng(RNG_SEED + 11 * n_fft)
    tmp = np.zeros(2 * n_fft + 2, np.int32)
    for _ in range(40):
        for x in _mfcc_signals(n_fft, rng):
            assert np.array_equal(dsp.arm_mfcc_q15(inst, x.copy(), tmp)[1], q15.mfcc_q15(x, tables))


# --------------------------------------------------------------------------- front-end patch API

from emu.frontend import params as params_mod  # noqa: E402


def _params(**kw):
    base = dict(profile="cmsis-q15", quant_scale=0.0305305, quant_zero_point=42, spectrum="magnitude")
    base.update(kw)
    return params_mod.FrontendParams(**base)


def _patch_pcm(n, rng, kind):
    t = np.arange(n)
    if kind == "speechlike":
        x = 9000 * np.sin(2 * np.pi * 440 * t / 16000) * (1 + np.sin(2 * np.pi * 3 * t / 16000)) / 2
        return np.clip(x + rng.normal(0, 400, n), -32768, 32767).astype(np.int16)
    if kind == "silence":
        return np.zeros(n, np.int16)
    if kind == "fullscale":
        return rng.integers(-32768, 32768, n).astype(np.int16)
    return np.clip(rng.normal(0, 50000, n), -32768, 32767).astype(np.int16)      # clipped


@needs_cmsisdsp
def test_logmel_patch_stages_and_layout():
    p = _params()
    state = q15.prepare(p)
    rng = np.random.default_rng(RNG_SEED)
    pcm = _patch_pcm(p.patch_length, rng, "speechlike")
    s = q15.compute_stages(pcm, state)
    assert s["features"].shape == (p.n_mels, p.n_frames) and s["features"].dtype == np.int8
    assert np.array_equal(q15.compute_patch(pcm, state), s["features"])
    # each stage equals the public primitive applied to the previous stage (frame 7)
    t = 7
    frame = np.zeros(p.n_fft, np.int16)
    pad = (p.n_fft - p.win_length) // 2
    frame[pad:pad + p.win_length] = pcm[t * p.hop_length: t * p.hop_length + p.win_length]
    assert np.array_equal(s["framed"][t], frame)
    windowed = q15.mult_q15(frame, state.window)
    assert np.array_equal(s["windowed"][t], windowed)
    assert np.array_equal(s["fft"][t], dsp.arm_rfft_q15(_rfft_inst(p.n_fft), windowed.copy()))
    assert np.array_equal(s["spectrum"][t], dsp.arm_cmplx_mag_q15(s["fft"][t][: p.n_fft + 2]))
    runs = np.split(state.mel_coefs, np.cumsum(state.mel_len)[:-1])
    for m in (0, 17, p.n_mels - 1):
        seg = s["spectrum"][t][state.mel_start[m]: state.mel_start[m] + state.mel_len[m]]
        acc = int(dsp.arm_dot_prod_q15(seg, runs[m]))
        assert s["mel"][m, t] == min((acc + 537) >> 10, 2**31 - 1)
    assert np.array_equal(s["log"][:, t] - state.log_offset, dsp.arm_vlog_q31(s["mel"][:, t]))


@needs_cmsisdsp
def test_logmel_q15_log_stage_is_vlog_q15():
    p = _params(q15={"log_precision": "q15", "mel_shift": 14})
    state = q15.prepare(p)
    s = q15.compute_stages(_patch_pcm(p.patch_length, np.random.default_rng(RNG_SEED), "clipped"), state)
    assert s["mel"].min() >= -32768 and s["mel"].max() <= 32767
    assert np.array_equal(np.clip(s["log"] - state.log_offset, -32768, 32767),
                          dsp.arm_vlog_q15(s["mel"].astype(np.int16).reshape(-1)).reshape(s["log"].shape))
    assert state.log_offset == (14 + 10 + 1 - 15) * q15.LN2_Q4_11


_RFFT_INSTANCES = {}


def _rfft_inst(n):
    if n not in _RFFT_INSTANCES:
        inst = dsp.arm_rfft_instance_q15()
        dsp.arm_rfft_init_q15(inst, n, 0, 1)
        _RFFT_INSTANCES[n] = inst
    return _RFFT_INSTANCES[n]


@pytest.mark.parametrize("spectrum,log_precision", [("magnitude", "q31"), ("power", "q31"), ("magnitude", "q15")])
def test_logmel_log_tracks_float_natural_log(spectrum, log_precision):
    """Semantic check of the fixed-point exponent bookkeeping: ln(mel energy) of loud bands within 0.25
    (median) of a float64 computation of the same front end, on bands whose sat31 mel sum keeps >= 8 bits
    (q15 power bins (3.13, >>17) underflow: power mode is checked with mel_shift 0 and no bias)."""
    from emu.frontend import tables
    q = {"mel_shift": 0, "mel_bias": 0} if spectrum == "power" else {}
    if log_precision == "q15":
        q = {"log_precision": "q15"}                        # loud mel sums of this signal fit sat16
    p = _params(spectrum=spectrum, q15=q)
    state = q15.prepare(p)
    t = np.arange(p.patch_length)
    noise = np.random.default_rng(RNG_SEED).normal(0, 2000, t.size)
    pcm = np.clip(30000 * np.sin(2 * np.pi * 440 * t / 16000) + 12000 * np.sin(2 * np.pi * 1500 * t / 16000)
                  + noise, -32768, 32767).astype(np.int16)
    stages = q15.compute_stages(pcm, state)
    got = stages["log"] / float(1 << (11 if log_precision == "q15" else 26))
    win = tables.hann_periodic(p.win_length)
    pad = (p.n_fft - p.win_length) // 2
    frames = np.zeros((p.n_frames, p.n_fft))
    for t in range(p.n_frames):
        frames[t, pad:pad + p.win_length] = pcm[t * p.hop_length: t * p.hop_length + p.win_length] / 32768.0 * win
    spec = np.abs(np.fft.rfft(frames, axis=1))
    if spectrum == "power":
        spec = spec ** 2
    mel = tables.mel_filterbank(16000, p.n_fft, p.n_mels, p.fmin, p.fmax).astype(np.float64)
    ref = np.log(spec @ mel.T + 1e-30).T                      # [n_mels, n_frames] like the stages
    loud = (stages["mel"] >= 256) & (stages["mel"] < (32767 if log_precision == "q15" else 2**31 - 1))
    assert loud.sum() >= 100
    assert np.median(np.abs(got[loud] - ref[loud])) < 0.1


@needs_cmsisdsp
def test_mfcc_patch_mode_for_mlperf_input():
    p = _params(n_fft=1024, win_length=640, hop_length=320, n_mels=40, fmin=20.0, fmax=4000.0, mel_scale="htk",
                mel_norm="none", quant_scale=0.5847029, quant_zero_point=83, q15={"mode": "mfcc", "n_mfcc": 10})
    state = q15.prepare(p)
    pcm = _patch_pcm(p.patch_length, np.random.default_rng(RNG_SEED), "speechlike")
    s = q15.compute_stages(pcm, state)
    assert s["features"].shape == (10, 49) and s["features"].dtype == np.int8
    tables = q15.mfcc_tables(p.n_fft, state.window, state.mel_start, state.mel_len, state.mel_coefs,
                             state.dct, 10)
    t = 11
    frame = np.zeros(p.n_fft, np.int16)
    frame[192:192 + 640] = pcm[t * 320: t * 320 + 640]
    assert np.array_equal(s["framed"][t], frame)
    assert np.array_equal(s["mfcc"][:, t], q15.mfcc_q15(frame, tables))
    inst = dsp.arm_mfcc_instance_q15()
    dsp.arm_mfcc_init_q15(inst, p.n_fft, p.n_mels, 10, state.dct, state.mel_start, state.mel_len,
                          state.mel_coefs, state.window)
    assert np.array_equal(s["mfcc"][:, t], dsp.arm_mfcc_q15(inst, frame.copy(), np.zeros(2050, np.int32))[1])
    # int8 = q8.7 / 128 / scale + zp (TFLite double rounding): within the rounding of the exact value
    exact = s["mfcc"].astype(np.float64) / 128.0 / 0.5847029 + 83
    assert np.all(np.abs(s["features"] - np.clip(exact, -128, 127)) <= 0.5 + 1e-6)


def test_silence_patch_is_constant():
    p = _params()
    state = q15.prepare(p)
    feats = q15.compute_patch(np.zeros(p.patch_length, np.int16), state)
    assert np.all(feats == feats[0, 0])       # every mel is vlog(bias >> shift) + offset


def test_bad_inputs_raise_one_line_errors():
    from emu.errors import N6Error
    with pytest.raises(N6Error):
        q15.rfft_q15(np.zeros(100, np.int16))
    with pytest.raises(N6Error):
        q15.rfft_q15(np.zeros(256, np.int16), fft_variant="helium")
    with pytest.raises(N6Error):
        q15.cmplx_mag_q15(np.zeros(3, np.int16))
    with pytest.raises(N6Error):
        q15.mult_q15(np.zeros(3, np.float32), np.zeros(3, np.int16))
    with pytest.raises(N6Error):
        q15.Q15Params(mode="spectrogram")
    state = q15.prepare(_params())
    with pytest.raises(N6Error):
        q15.compute_patch(np.zeros(100, np.int16), state)
    with pytest.raises(N6Error):
        q15.compute_patch(np.zeros(state.params.patch_length, np.int16), state, _params(n_mels=20))
    with pytest.raises(N6Error):
        q15.prepare(_params(profile="st-f16"))
    with pytest.raises(N6Error):
        q15.prepare(_params(q15={"bogus": 1}))


# ------------------------------------------------------------------------------------------ C twin

# emu.frontend.ctwin_q15 comes from conftest's fixture c_frontend_q15: it skips only when no C compiler can
# build emu._c_frontend_q15; a twin that is not built although a compiler is there fails.

@pytest.mark.parametrize("variant", ["pure-c", "dsp-ext"])
def test_c_twin_primitives_equal_numba(c_frontend_q15, variant):
    ctwin = c_frontend_q15
    rng = np.random.default_rng(RNG_SEED)
    for n_fft in (32, 256, 512, 1024, 2048, 4096):
        for x in _signals(n_fft, rng, 3):
            assert np.array_equal(q15.rfft_q15(x, variant), ctwin.rfft_q15(x, variant))
    x = _edge_complex(rng, 20000)
    assert np.array_equal(q15.cmplx_mag_q15(x), ctwin.cmplx_mag_q15(x))
    assert np.array_equal(q15.cmplx_mag_squared_q15(x), ctwin.cmplx_mag_squared_q15(x))
    assert np.array_equal(q15.mult_q15(x, x[::-1].copy()), ctwin.mult_q15(x, x[::-1].copy()))
    full = np.arange(-32768, 32768).astype(np.int16)
    assert np.array_equal(q15.vlog_q15(full), ctwin.vlog_q15(full))
    y = np.concatenate([[0, 1, -1, 2**31 - 1, -2**31], rng.integers(-2**31, 2**31, 20000)]).astype(np.int32)
    assert np.array_equal(q15.vlog_q31(y), ctwin.vlog_q31(y))


@needs_cmsisdsp
def test_c_twin_mfcc_equal_numba(c_frontend_q15):
    ctwin = c_frontend_q15
    _, tables = _cmsis_mfcc_setup(512, 40, 13)
    rng = np.random.default_rng(RNG_SEED)
    for x in _mfcc_signals(512, rng):
        for variant in ("pure-c", "dsp-ext"):
            assert np.array_equal(q15.mfcc_q15(x, tables, variant), ctwin.mfcc_q15(x, tables, variant))


@pytest.mark.parametrize("mode,log_precision", [("logmel", "q31"), ("logmel", "q15"), ("mfcc", "q31")])
@pytest.mark.parametrize("spectrum", ["magnitude", "power"])
@pytest.mark.parametrize("variant", ["pure-c", "dsp-ext"])
def test_c_twin_patch_stages_equal_numba(c_frontend_q15, mode, log_precision, spectrum, variant):
    ctwin = c_frontend_q15
    p = _params(spectrum=spectrum, q15={"mode": mode, "fft_variant": variant, "log_precision": log_precision})
    state = q15.prepare(p)
    rng = np.random.default_rng(RNG_SEED)
    for kind in ("speechlike", "silence", "fullscale", "clipped"):
        pcm = _patch_pcm(p.patch_length, rng, kind)
        a, b = q15.compute_stages(pcm, state), ctwin.compute_stages(pcm, state)
        assert a.keys() == b.keys()
        for k in a:
            assert np.array_equal(a[k], b[k]), f"{kind} {k}: {_first_mismatch(a[k], b[k])}"


def test_c_twin_checks_buffers(c_frontend_q15):
    ctwin = c_frontend_q15
    from emu.errors import N6Error
    with pytest.raises(N6Error):
        ctwin._buf(np.zeros(4, np.int32), np.int16, 4, "x")
    with pytest.raises(N6Error):
        ctwin._buf(np.zeros(8, np.int16)[::2], np.int16, 4, "x")
    with pytest.raises(N6Error):
        ctwin._buf(np.zeros(5, np.int16), np.int16, 4, "x")


def test_mfcc_patch_feeds_the_mlperf_kws_model(mlperf_model):
    """The MFCC patch mode produces the MLPerf Tiny KWS input ([1,49,10,1] int8, scale 0.5847029, zp 83)."""
    pytest.importorskip("tflite_micro",
                        reason='oracle unavailable: tflite-micro is not installed; pip install -e ".[test]"')
    from emu.reference import TflmReference
    p = _params(n_fft=1024, win_length=640, hop_length=320, n_mels=40, fmin=20.0, fmax=4000.0, mel_scale="htk",
                mel_norm="none", quant_scale=0.5847029, quant_zero_point=83, q15={"mode": "mfcc", "n_mfcc": 10})
    state = q15.prepare(p)
    ref = TflmReference(mlperf_model)
    feats = q15.compute_patch(_patch_pcm(p.patch_length, np.random.default_rng(RNG_SEED), "speechlike"), state)
    out = np.asarray(ref.run(feats.T.reshape(1, 49, 10, 1)))            # the model reads [frame, mfcc]
    assert out.dtype == np.int8 and out.size == 12
