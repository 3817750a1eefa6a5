"""The lane-batched cmsis-q15 kernels (LANES frames side by side: framing, magnitude, mel, log, quantization, the
MFCC tail) against the frame-by-frame kernels they replace, bit for bit (np.array_equal) on silence, full scale,
clipping, noise and impulses, for every n_fft the profile supports, and independent of the thread count; the
batch entry (compute_patches: the frames of P patches in one run of blocks) against compute_patch patch by patch,
and FrontEnd.patch / patches (the registry's cmsis-q15 dispatch) against compute_stages."""
import numba
import numpy as np
import pytest

from emu.frontend import cmsis_q15 as q
from emu.frontend.params import FrontendParams

L = q.LANES
PROFILE_N_FFT = (32, 64, 128, 256, 512, 1024, 2048, 4096)   # FrontendParams' range for n_fft
I32_EDGES = np.array([0, 1, -1, 2, 3, 2**31 - 1, -2**31, 2**30, 2**30 - 1, 2**30 + 1, 32767, 32768, -32768,
                      65535, 65536, 0x40000000, 0x3FFFFFFF, 0x7FFF0000, -0x7FFF0000], np.int64)


def _mismatch(a, b):
    bad = np.flatnonzero(np.asarray(a).reshape(-1) != np.asarray(b).reshape(-1))
    return f"{bad.size} mismatches, first at flat index {bad[:5].tolist()}"


def _spectra(n_fft, seed):
    """LANES complex spectra int16 [LANES, 2 * n_fft]: silence, full scale, the -32768 corners, impulses, noise."""
    rng = np.random.default_rng(seed)
    s = rng.integers(-32768, 32768, (L, 2 * n_fft)).astype(np.int16)
    s[0] = 0
    s[1] = 32767
    s[2] = -32768
    s[3] = np.where(np.arange(2 * n_fft) % 2, 32767, -32768)
    s[4] = 0
    s[4, ::37] = -32768
    s[5] = (rng.standard_normal(2 * n_fft) * 3).astype(np.int16)
    s[6] >>= 8
    s[7] = rng.choice(np.array([0, 1, -1, 181, -182, 23170, -23171, 32767, -32768], np.int16), 2 * n_fft)
    return s


def _to_lanes(frames, dtype=np.int32):
    """[LANES, n] -> [n * LANES] (value i of lane l at [i * LANES + l]); int16 is the kernels' spectrum type."""
    return np.ascontiguousarray(np.asarray(frames).T.astype(dtype)).reshape(-1)


def _from_lanes(x, rows):
    return np.asarray(x[:rows * L]).reshape(rows, L).T


# ---------------------------------------------------------------------------------------------------------------
# stage kernels
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_fft", PROFILE_N_FFT)
@pytest.mark.parametrize("power", [False, True])
def test_mag_lanes_equals_one_frame(n_fft, power):
    n_bins = n_fft // 2 + 1
    lut = q.sqrt_lut_q31()
    for seed in range(3):
        spec = _spectra(n_fft, seed * 100 + n_fft)
        ref = np.empty((L, n_bins), np.int16)
        for l in range(L):
            if power:
                q._cmplx_mag_squared_q15_kernel(spec[l], ref[l], n_bins)
            else:
                q._cmplx_mag_q15_kernel(spec[l], ref[l], n_bins, lut, np.empty(2 * n_bins, np.int64))
        mag = np.empty(n_bins * L, np.int32)
        q._mag_q15_lanes(_to_lanes(spec, np.int16), 0, n_bins, lut, power, mag, *_mag_scratch(n_bins))
        got = _from_lanes(mag, n_bins)
        assert np.array_equal(got, ref), (n_fft, power, seed, _mismatch(got, ref))
        b0, b1 = n_bins // 5, n_bins - n_bins // 3                   # a bin range (the mel runs' bins): rows b0..b1-1
        part = np.full(n_bins * L, -7, np.int32)
        q._mag_q15_lanes(_to_lanes(spec, np.int16), b0, b1, lut, power, part, *_mag_scratch(n_bins))
        got = _from_lanes(part, n_bins)
        assert np.array_equal(got[:, b0:b1], ref[:, b0:b1]) and np.all(got[:, :b0] == -7) and np.all(got[:, b1:] == -7)


def _mag_scratch(n_bins):
    """_mag_q15_lanes' scratch: re, im int16, num, sh int32 [n_bins * LANES]."""
    return [np.empty(n_bins * L, d) for d in (np.int16, np.int16, np.int32, np.int32)]


def test_mag_lanes_every_pair_of_small_and_edge_values():
    """Every (re, im) pair from a set of edge values, and all re, im in [-64, 64): the sqrt's normalisation and
    LUT index at every even shift."""
    edges = np.array([0, 1, -1, 2, -2, 3, 127, -128, 181, 255, 256, 4095, 8191, 16383, 16384, 23170, 23171, 32767,
                      -32767, -32768], np.int16)
    small = np.arange(-64, 64, dtype=np.int16)
    pairs = [(a, b) for a in edges for b in edges] + [(a, b) for a in small for b in small]
    pairs = np.array(pairs, np.int16)
    pairs = np.concatenate([pairs, np.zeros(((-len(pairs)) % L, 2), np.int16)]).astype(np.int16)
    n_bins = len(pairs) // L
    frames = pairs.reshape(L, n_bins * 2)
    lut = q.sqrt_lut_q31()
    mag = np.empty(n_bins * L, np.int32)
    q._mag_q15_lanes(_to_lanes(frames, np.int16), 0, n_bins, lut, False, mag, *_mag_scratch(n_bins))
    ref = q.cmplx_mag_q15(frames.reshape(-1)).reshape(L, n_bins)
    assert np.array_equal(_from_lanes(mag, n_bins), ref)


@pytest.mark.parametrize("sat16", [False, True])
@pytest.mark.parametrize("bias,shift", [(537, 10), (0, 0), (-5, 3), (1 << 20, 62), (2**31, 1)])
def test_mel_lanes_equals_mel_q31(sat16, bias, shift):
    rng = np.random.default_rng(shift)
    n_bins = 129
    mag = rng.integers(-32768, 32768, (L, n_bins)).astype(np.int16)
    mag[0] = 0
    mag[1] = 32767
    mag[2] = -32768
    starts = np.array([0, 0, 5, 60, 128, 3, 100], np.int32)
    lens = np.array([1, 129, 17, 40, 1, 0, 29], np.int32)
    coefs = rng.integers(-32768, 32768, int(lens.sum())).astype(np.int16)
    coefs[:130] = 32767
    coefs[150:160] = -32768
    ref = np.empty((L, starts.size), np.int32)
    for l in range(L):
        q._mel_q31(mag[l], starts, lens, coefs, bias, shift, ref[l])
        if sat16:
            ref[l] = np.clip(ref[l], -32768, 32767)
    out = np.empty(starts.size * L, np.int32)
    q._mel_lanes(_to_lanes(mag), starts, lens, coefs, bias, shift, sat16, out, np.empty(L, np.int64))
    got = _from_lanes(out, starts.size)
    assert np.array_equal(got, ref), _mismatch(got, ref)


@pytest.mark.parametrize("log_q15", [False, True])
@pytest.mark.parametrize("offset", [0, 12345, -(2**31), 2**31 - 1, -40000, 40000])
def test_vlog_lanes_equals_one_frame(log_q15, offset):
    rng = np.random.default_rng(7)
    vals = np.concatenate([I32_EDGES, 1 << np.arange(31), (1 << np.arange(1, 31)) - 1, (1 << np.arange(1, 31)) + 1,
                           -(1 << np.arange(31)), rng.integers(-2**31, 2**31, 3000),
                           rng.integers(-40000, 40000, 1000), rng.integers(0, 64, 200)])
    if log_q15:
        vals = np.clip(vals, -32768, 32767)                # the q15 log reads the sat16 mel
        ref = np.array([min(max(q._log_q15_scalar(v) + offset, -32768), 32767) for v in vals], np.int64)
    else:
        logs = q.vlog_q31(vals.astype(np.int32)).astype(np.int64)
        ref = np.clip(logs + offset, -2**31, 2**31 - 1)
    n = vals.size
    dst = np.empty(n, np.int32)
    q._vlog_lanes(vals.astype(np.int32), n, log_q15, offset, dst, *[np.empty(n, np.int32) for _ in range(3)])
    assert np.array_equal(dst, ref), _mismatch(dst, ref)


@pytest.mark.parametrize("rounding", ["single", "double"])
@pytest.mark.parametrize("scale,zp,frac", [(0.0305305, 42, 26), (1.0, 0, 7), (0.001, -128, 11), (3.7, 127, 26)])
def test_quantize_lanes_equals_quantize_s8(rounding, scale, zp, frac):
    from emu import fixedpoint
    mult, shift = fixedpoint.quantize_multiplier(1.0 / (scale * float(1 << frac)), single_rounding=rounding == "single")
    code = fixedpoint.rounding_code(rounding)
    rng = np.random.default_rng(frac)
    vals = np.concatenate([I32_EDGES, rng.integers(-2**31, 2**31, 5000), rng.integers(-2**20, 2**20, 2000)])
    vals = vals.astype(np.int32)
    ref = np.array([q._quantize_s8(v, mult, shift, zp, code) for v in vals], np.int64)
    dst = np.empty(vals.size, np.int32)
    q._quantize_lanes(vals, vals.size, mult, shift, zp, code, dst)
    assert np.array_equal(dst, ref), _mismatch(dst, ref)


def _frame(pcm, t, hop, win, pad, n_fft):
    buf = np.zeros(n_fft, np.int16)
    buf[pad:pad + win] = pcm[hop * t: hop * t + win]
    return buf


@pytest.mark.parametrize("n_fft,win,hop", [(32, 32, 16), (64, 40, 20), (512, 400, 160), (1024, 640, 320),
                                           (4096, 4096, 1024)])
@pytest.mark.parametrize("normalise", [False, True])
def test_frames_to_lanes_equals_one_frame(n_fft, win, hop, normalise):
    rng = np.random.default_rng(n_fft)
    pad = (n_fft - win) // 2
    n_frames = L + 5
    pcm = rng.integers(-32768, 32768, (n_frames - 1) * hop + win).astype(np.int16)
    pcm[:hop * 3] = 0                                                   # silent frames (peak 0)
    pcm[hop * 4: hop * 4 + win] = np.where(np.arange(win) % 3, 32767, -32768)   # full scale, clipping (peak 32767)
    pcm[hop * 7: hop * 7 + win] = 0
    pcm[hop * 7 + win // 2] = -32768                                    # an impulse
    pcm[hop * 9: hop * 9 + win] = (rng.standard_normal(win) * 3).astype(np.int16)
    window = np.zeros(n_fft, np.int16)
    window[pad:pad + win] = q.float_to_q15(np.hanning(win))
    window[pad] = 32767
    window[pad + win - 1] = -32768
    plen = pcm.size
    # one patch (n_t = n_frames), then 3 patches of n_t = 7 frames each (blocks straddle the patches)
    many = np.concatenate([pcm[:6 * hop + win], pcm[::-1][:6 * hop + win], pcm[hop:hop + 6 * hop + win]])
    for src, p_len, n_t, blocks in ((pcm, plen, n_frames, ((0, L), (1, n_frames - L), (1, 1))),
                                    (many, 6 * hop + win, 7, ((0, L), (1, 5), (1, 1)))):
        for blk, nl in blocks:
            x = np.full(n_fft * L, 12345, np.int16)
            sc = np.full(L, -1, np.int32)
            q._frames_to_lanes(src, p_len, n_t, blk, nl, hop, win, pad, window, n_fft, normalise, x,
                               np.empty(L * win, np.int16), np.empty(L, np.int64), np.empty(2 * L, np.int32), sc)
            for l in range(nl):
                f = blk * L + l
                patch = src[(f // n_t) * p_len:(f // n_t + 1) * p_len]
                buf = _frame(patch, f % n_t, hop, win, pad, n_fft)
                if normalise:
                    m = q._mfcc_pre(buf, window, n_fft)
                    assert sc[l] == ((m << 16) if m not in (0, 32767) else 0), (blk, l, m, sc[l])
                else:
                    q._mult_q15_kernel(buf, window, buf, n_fft)
                assert np.array_equal(x[l::L], buf), (n_t, blk, l, _mismatch(x[l::L], buf))


@pytest.mark.parametrize("n_fft", PROFILE_N_FFT)
def test_mfcc_post_lanes_equals_mfcc_post(n_fft):
    rng = np.random.default_rng(n_fft + 1)
    n_bins, n_mels, n_dct = n_fft // 2 + 1, 12, 13                   # n_dct > n_mels is allowed
    spec = _spectra(n_fft, n_fft)
    for l in range(8, L):                                             # realistic rfft outputs (conjugate halves)
        fr = (rng.standard_normal(n_fft) * 10.0 ** rng.uniform(0, 4.4)).clip(-32768, 32767).astype(np.int16)
        spec[l] = q.rfft_q15(fr)
    peaks = rng.integers(0, 32768, L)
    peaks[:4] = (0, 32767, 1, 32766)
    starts = np.sort(rng.integers(0, n_bins - 1, n_mels)).astype(np.int32)
    lens = np.minimum(rng.integers(1, n_bins, n_mels), n_bins - starts).astype(np.int32)
    coefs = rng.integers(0, 32768, int(lens.sum())).astype(np.int16)
    dct = rng.integers(-32768, 32768, n_dct * n_mels).astype(np.int16)
    lut = q.sqrt_lut_q31()
    log_exp = q._wrap32((n_fft.bit_length() - 1 + 2 + q.SHIFT_MELFILTER_SATURATION_Q15) * q.LOG2TOLOG_Q15)
    ref_bins, ref_log, ref_out = (np.empty((L, n), d) for n, d in ((n_bins, np.int16), (n_mels, np.int32),
                                                                    (n_dct, np.int16)))
    for l in range(L):
        q._mfcc_post(spec[l].copy(), np.empty(n_fft, np.int16), peaks[l], n_fft, lut, starts, lens, coefs, dct, n_dct,
                     np.empty(n_mels, np.int32), np.empty(n_fft + 2, np.int64), ref_bins[l], ref_log[l], ref_out[l])
    sc = np.where((peaks != 0) & (peaks != 32767), peaks << 16, 0).astype(np.int32)
    rows = max(n_bins, n_mels) * L
    mag, mel, lg, mf = (np.empty(n * L, np.int32) for n in (n_bins, n_mels, n_mels, n_dct))
    q._mfcc_post_lanes(_to_lanes(spec, np.int16), 0, n_bins, lut, starts, lens, coefs, dct, n_dct, log_exp, sc, mag,
                       mel, lg, mf, np.empty(n_bins * L, np.int16), np.empty(n_bins * L, np.int16),
                       np.empty(L, np.int64), *[np.empty(rows, np.int32) for _ in range(4)])
    assert np.array_equal(_from_lanes(mag, n_bins), ref_bins)
    assert np.array_equal(_from_lanes(lg, n_mels), ref_log)
    assert np.array_equal(_from_lanes(mf, n_dct), ref_out)


@pytest.mark.parametrize("n_fft", [4096])
def test_rfft_lanes_equals_one_frame_4096(n_fft):
    """tests/test_frontend_fast.py covers n_fft 32..2048; the profile's largest length here."""
    rng = np.random.default_rng(n_fft)
    tab = q.rfft_init_q15(n_fft)
    fr = rng.integers(-32768, 32768, (L, n_fft)).astype(np.int16)
    fr[0] = 0
    fr[1] = 32767
    fr[2] = -32768
    fr[3] = 0
    fr[3, 17] = 32767
    fr[4] = (rng.standard_normal(n_fft) * 3).astype(np.int16)
    ref = np.empty((L, 2 * n_fft), np.int16)
    for i in range(L):
        q._rfft_q15_kernel(fr[i].copy(), n_fft, tab.twiddle, tab.bitrev, tab.coef_a, tab.coef_b, tab.modifier, 0, ref[i])
    dst = np.empty(2 * n_fft * L, np.int16)
    q._rfft_q15_lanes(_to_lanes(fr, np.int16), n_fft, tab.twiddle, tab.bitrev, tab.coef_a, tab.coef_b, tab.modifier,
                      dst, np.empty(16 * L, np.int16))
    assert np.array_equal(_from_lanes(dst, 2 * n_fft), ref)


# ---------------------------------------------------------------------------------------------------------------
# whole patches: the lane kernels (records on and off) against the frame-by-frame patch kernels
# ---------------------------------------------------------------------------------------------------------------

def _signals(params, seed):
    rng = np.random.default_rng(seed)
    n = params.patch_length
    t = np.arange(n) / params.sample_rate
    rows = [np.zeros(n), np.full(n, 32767.0), np.full(n, -32768.0),
            np.where(np.sin(2 * np.pi * 50 * t) >= 0, 32767.0, -32768.0),
            40000 * np.sin(2 * np.pi * 1000 * t), rng.integers(-32768, 32768, n),
            rng.standard_normal(n) * 3, rng.standard_normal(n) * 3000 + 5000 * np.sin(2 * np.pi * 440 * t),
            np.eye(1, n, n // 2)[0] * 32767, np.eye(1, n, n // 3)[0] * -32768]
    for _ in range(3):
        rows.append(rng.standard_normal(n) * 10.0 ** rng.uniform(0, 4.5))
    return np.clip(np.stack(rows), -32768, 32767).astype(np.int16)


# n_fft -> (win, hop, n_mels, n_frames): every n_fft of the profile; n_frames gives last blocks of 16, 1, 3
# (one-frame kernels), 4, 15 (lanes) frames
SIZES = {32: (32, 16, 6, 17), 64: (64, 32, 8, 35), 128: (100, 50, 12, 20), 256: (200, 100, 16, 31),
         512: (400, 160, 32, 20), 1024: (640, 320, 40, 49), 2048: (1600, 800, 40, 19), 4096: (4096, 2048, 40, 16)}
MODES = {
    "logmel": dict(spectrum="magnitude", q15={"mode": "logmel"}),
    "logmel-power-q15log": dict(spectrum="power", q15={"mode": "logmel", "log_precision": "q15"}),
    "logmel-power-double": dict(spectrum="power", q15={"mode": "logmel", "quant_rounding": "double"}),
    "mfcc": dict(spectrum="magnitude", fmin=20.0, mel_scale="htk", mel_norm="none", q15={"mode": "mfcc"}),
    "mfcc-13": dict(spectrum="magnitude", fmin=20.0, mel_scale="htk", mel_norm="none",
                    q15={"mode": "mfcc", "n_mfcc": 13, "table_rounding": "half-even"}),
}


def _q15_params(n_fft, mode):
    win, hop, n_mels, n_frames = SIZES[n_fft]
    kw = dict(MODES[mode])
    if "fmin" in kw:
        kw["fmax"] = 4000.0
    return FrontendParams(profile="cmsis-q15", quant_scale=0.0305305, quant_zero_point=42, n_fft=n_fft,
                          win_length=win, hop_length=hop, n_mels=n_mels, n_frames=n_frames, **kw)


@pytest.mark.parametrize("n_fft", PROFILE_N_FFT)
@pytest.mark.parametrize("mode", sorted(MODES))
def test_patch_lanes_equals_frame_by_frame(n_fft, mode):
    state = q.prepare(_q15_params(n_fft, mode))
    for i, pcm in enumerate(_signals(state.params, seed=n_fft)):
        x = q._patch_pcm(state, pcm)
        old = q._run_patch(x, state, lanes=False)
        new = q._run_patch(x, state, lanes=True)
        assert sorted(new) == sorted(old)
        for k in old:
            assert np.array_equal(new[k], old[k]), (n_fft, mode, i, k, _mismatch(new[k], old[k]))
        fast = q._run_patch(x, state, record=False)["features"]
        assert np.array_equal(fast, old["features"]), (n_fft, mode, i)
        assert np.array_equal(q.compute_patch(pcm, state), q.compute_stages(pcm, state)["features"])


def test_dsp_ext_stays_frame_by_frame():
    """dsp-ext has no lane kernels: compute_patch and compute_stages take the frame-by-frame kernels."""
    for mode in ("logmel", "mfcc"):
        state = q.prepare(_q15_params(1024, mode), q15={**MODES[mode]["q15"], "fft_variant": "dsp-ext"})
        assert state.q15.fft_variant == "dsp-ext"
        for pcm in _signals(state.params, seed=5)[:6]:
            x = q._patch_pcm(state, pcm)
            old = q._run_patch(x, state, lanes=False)
            new = q._run_patch(x, state, lanes=True)
            for k in old:
                assert np.array_equal(new[k], old[k])
            feats = old["features"].T if mode == "mfcc" else old["features"]
            assert np.array_equal(q.compute_patch(pcm, state), feats)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
def test_results_do_not_depend_on_thread_count():
    before = numba.get_num_threads()
    try:
        for mode in ("logmel", "mfcc"):
            state = q.prepare(_q15_params(1024, mode))
            pcm = _signals(state.params, seed=9)
            out = []
            for n in (1, 2):
                numba.set_num_threads(n)
                out.append([(q.compute_patch(p, state), q.compute_stages(p, state)) for p in pcm])
            for (fa, sa), (fb, sb) in zip(*out):
                assert np.array_equal(fa, fb)
                assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    finally:
        numba.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------------------
# the batch entry: compute_patches (the frames of P patches as one run of LANES-frame blocks) against compute_patch
# ---------------------------------------------------------------------------------------------------------------

def _batch(params, seed):
    """The _signals rows (silence, full scale, clipping, noise, impulses) plus two rows mixing silence and clipping
    halves: 15 patches, an odd count."""
    rows = _signals(params, seed)
    n = params.patch_length
    half = np.zeros(n, np.int16)
    half[n // 2:] = 32767
    mixed = np.where(np.arange(n) % 2, -32768, 32767).astype(np.int16)
    mixed[: n // 3] = 0
    return np.concatenate([rows, half[None], mixed[None]])


@pytest.mark.parametrize("n_fft", [64, 256, 1024, 4096])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_compute_patches_equals_compute_patch(n_fft, mode):
    state = q.prepare(_q15_params(n_fft, mode))
    pcm = _batch(state.params, seed=n_fft + 3)
    ref = np.stack([q.compute_patch(x, state) for x in pcm])
    for count in (1, 2, 3, 5, len(pcm)):                       # odd counts: blocks straddle the patches
        got = q.compute_patches(pcm[:count], state)
        assert got.shape == ref[:count].shape and got.dtype == np.int8
        assert np.array_equal(got, ref[:count]), (n_fft, mode, count, _mismatch(got, ref[:count]))
    assert np.array_equal(q.compute_patches(pcm[::-1], state), ref[::-1])         # order does not matter
    assert q.compute_patches(pcm[:0], state).shape == (0,) + ref.shape[1:]


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
@pytest.mark.parametrize("mode", sorted(MODES))
def test_compute_patches_does_not_depend_on_thread_count(mode, monkeypatch):
    """One thread, and two threads splitting the blocks (a run of one block each at least: every split point)."""
    state = q.prepare(_q15_params(1024, mode))
    pcm = np.concatenate([_batch(state.params, seed=11)] * 2)[:29]               # 29 patches, 89 blocks
    ref = np.stack([q.compute_patch(x, state) for x in pcm])
    before = numba.get_num_threads()
    try:
        for threads, min_blocks in ((1, 8), (2, 8), (2, 1)):
            numba.set_num_threads(threads)
            monkeypatch.setattr(q, "MIN_BLOCKS_PER_THREAD", min_blocks)
            for count in (1, 3, 7, 29):
                assert np.array_equal(q.compute_patches(pcm[:count], state), ref[:count]), (threads, min_blocks, count)
    finally:
        numba.set_num_threads(before)


def test_compute_patches_dsp_ext_and_errors():
    from emu.errors import N6Error
    for mode in ("logmel", "mfcc"):
        state = q.prepare(_q15_params(512, mode), q15={**MODES[mode]["q15"], "fft_variant": "dsp-ext"})
        pcm = _batch(state.params, seed=2)[:5]
        assert np.array_equal(q.compute_patches(pcm, state), np.stack([q.compute_patch(x, state) for x in pcm]))
    state = q.prepare(_q15_params(512, "logmel"))
    n = state.params.patch_length
    with pytest.raises(N6Error, match="patches must be"):
        q.compute_patches(np.zeros(n, np.int16), state)
    with pytest.raises(N6Error, match="patches must be"):
        q.compute_patches(np.zeros((2, n + 1), np.int16), state)
    with pytest.raises(N6Error, match="outside int16"):
        q.compute_patches(np.full((2, n), 40000, np.int32), state)


@pytest.mark.parametrize("mode", ["logmel", "mfcc"])
def test_frontend_patches_take_the_q15_kernels(mode):
    """The registry's cmsis-q15 dispatch: FrontEnd.patch / patches give compute_stages' features, NaN silence."""
    from emu.frontend.registry import FrontEnd
    params = _q15_params(1024, mode)
    fe = FrontEnd(params)
    pcm = _batch(params, seed=4)[:9]
    ref = np.stack([q.compute_stages(x, fe.state)["features"] for x in pcm])
    feats, sil = fe.patches(pcm)
    assert np.array_equal(feats, ref) and sil.dtype == np.float32 and sil.shape == (9,) and np.all(np.isnan(sil))
    f0, s0 = fe.patch(pcm[0])
    assert np.array_equal(f0, ref[0]) and np.isnan(s0)
    empty, sil0 = fe.patches(np.zeros((0, params.patch_length), np.int16))
    assert empty.shape == (0,) + ref.shape[1:] and sil0.shape == (0,)
