"""The fast st-f16 Helium path (lane-batched kernels, whole batches of patches over Numba's threads) against the
one-frame kernels it replaces: bit for bit on silence, full scale, clipping, noise and tones, for every switch the
fast path takes, and independent of the thread count."""
import numba
import numpy as np
import pytest
from numba import njit

from emu.frontend import f16, helium_f16 as h, st
from emu.frontend.params import FrontendParams
from emu.frontend.registry import FrontEnd

L = h.LANES
ALL_F16 = f16.from_f16_bits(np.arange(65536, dtype=np.uint32).astype(np.uint16))


def _bits_equal(a, b):
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


def _first_mismatch(a, b):
    a, b = (np.ascontiguousarray(v, np.float32).reshape(-1).view(np.uint32) for v in (a, b))
    bad = np.flatnonzero(a != b)
    return f"{bad.size} mismatches, first at flat index {bad[:5].tolist()}"


# ---------------------------------------------------------------------------------------------------------------
# helpers: branch-free rounding and fused multiply-add
# ---------------------------------------------------------------------------------------------------------------

@njit
def _rounds(x, o):
    for i in range(x.size):
        o[0, i] = f16.round_f16(x[i])
        o[1, i] = f16.round_f16_fast(x[i])
        o[2, i] = f16._round_sw(x[i])
        o[3, i] = f16.round_f16_dn(x[i])
        o[4, i] = f16.round_f16_dn_fast(x[i])
        o[5, i] = f16._round_sw_dn(x[i])


@njit
def _bits(x, o):
    for i in range(x.size):
        o[0, i] = f16.f32_to_f16_bits(x[i])
        o[1, i] = f16.f16_bits_fast(x[i])


@njit
def _fmas(a, b, c, o):
    for i in range(a.size):
        o[0, i] = h._fma(a[i], b[i], c[i])
        o[1, i] = f16.fma_f16_fast(a[i], b[i], c[i])
        o[2, i] = f16.fma_f16_finite_fast(a[i], b[i], c[i])


def _float32_samples(rng, n):
    """Random float32 bit patterns, every binary16 value, its neighbours and the midpoints between binary16 values."""
    rand = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    u = ALL_F16.view(np.uint32)
    near = np.concatenate([u, u + 1, u - 1, u + 0x1000, u + 0x0FFF, u + 0x1001]).view(np.float32)
    with np.errstate(all="ignore"):
        mids = ((ALL_F16[:-1].astype(np.float64) + ALL_F16[1:]) / 2).astype(np.float32)
    return np.ascontiguousarray(np.concatenate([rand, near, mids]))


def test_fast_rounding_equals_round_f16_everywhere():
    x = _float32_samples(np.random.default_rng(0), 2_000_000)
    o = np.empty((6, x.size), np.float32)
    _rounds(x, o)
    for k in (1, 2):
        assert _bits_equal(o[k], o[0]), _first_mismatch(o[k], o[0])
    for k in (4, 5):
        assert _bits_equal(o[k], o[3]), _first_mismatch(o[k], o[3])


def test_fast_bits_on_every_binary16_value():
    o = np.empty((2, ALL_F16.size), np.uint16)
    _bits(ALL_F16, o)
    nan = np.isnan(ALL_F16)
    assert np.array_equal(o[0][~nan], o[1][~nan])
    assert np.array_equal(o[1][~nan], np.arange(65536)[~nan])


@pytest.mark.parametrize("kind", ["any", "cancel", "small", "large"])
def test_fast_fma_equals_helium_fma(kind):
    rng = np.random.default_rng(["any", "cancel", "small", "large"].index(kind))
    n = 1_000_000
    pick = lambda lo, hi: ALL_F16[rng.integers(lo, hi, n)]   # noqa: E731
    a, b, c = pick(0, 65536), pick(0, 65536), pick(0, 65536)
    if kind == "cancel":                        # c close to -a*b: the exact sum is tiny, TwoSum's error matters
        with np.errstate(all="ignore"):
            c = (-(a.astype(np.float64) * b)).astype(np.float16).astype(np.float32)
            c = np.where(rng.random(n) < 0.5, c, np.nextafter(c.astype(np.float16), np.float16(np.inf)).astype(np.float32))
    elif kind == "small":                       # subnormal products and sums
        a, b, c = pick(0, 0x1800), pick(0, 0x5000) * rng.choice([-1, 1], n).astype(np.float32), pick(0, 0x2000)
    elif kind == "large":                       # near the overflow threshold
        a, b, c = pick(0x5800, 0x7C00), pick(0x3800, 0x5C00), pick(0x7000, 0x7C00) * np.float32(-1)
    a, b, c = (np.ascontiguousarray(v, np.float32) for v in (a, b, c))
    o = np.empty((3, n), np.float32)
    _fmas(a, b, c, o)
    assert _bits_equal(o[1], o[0]), _first_mismatch(o[1], o[0])
    with np.errstate(all="ignore"):
        finite = np.isfinite(a) & np.isfinite(b) & np.isfinite(c) & np.isfinite(o[0])
    assert _bits_equal(o[2][finite], o[0][finite]), _first_mismatch(o[2][finite], o[0][finite])


# ---------------------------------------------------------------------------------------------------------------
# lane-batched kernels against the one-frame kernels
# ---------------------------------------------------------------------------------------------------------------

def _frames(rng, n_fft):
    """LANES frames of binary16 values in [-1, 1]: zeros, full scale (+-1, alternating), square waves, tiny
    (subnormal) values, noise at several levels, an impulse."""
    fr = np.zeros((L, n_fft), np.float32)
    fr[1] = 1.0
    fr[2] = np.where(np.arange(n_fft) % 2 == 0, 1.0, -1.0)
    fr[3] = np.where(np.arange(n_fft) // 7 % 2 == 0, 1.0, -0.99997)
    fr[4] = ALL_F16[rng.integers(1, 0x400, n_fft)] * rng.choice([-1, 1], n_fft)
    fr[5, n_fft // 3] = 1.0
    for i in range(6, L):
        fr[i] = np.clip(rng.standard_normal(n_fft) * 10.0 ** -rng.integers(0, 5), -1, 1)
    return fr.astype(np.float16).astype(np.float32)


@pytest.mark.parametrize("n_fft", [64, 256, 512, 1024, 2048])
@pytest.mark.parametrize("optimization", ["Os", "Ofast"])
def test_rfft_lanes_equals_one_frame(n_fft, optimization):
    tabs = h.prepare_rfft(n_fft, optimization)
    fr = _frames(np.random.default_rng(n_fft), n_fft)
    ref = np.empty_like(fr)
    for i in range(L):
        h.rfft_fast_f16(fr[i].copy(), ref[i], tabs)
    buf = np.ascontiguousarray(fr.T).reshape(-1)
    out = np.empty_like(buf)
    h.rfft_fast_f16_lanes(buf, out, tabs, np.empty(16 * L, np.float32))
    got = out.reshape(n_fft, L).T
    assert _bits_equal(got, ref), _first_mismatch(got, ref)


def test_dot_lanes_equals_dot_prod_f16():
    rng = np.random.default_rng(5)
    n_bins = 80
    x = ALL_F16[rng.integers(0, 0x7C01, (L, n_bins))]           # non-negative, with infinities (overflowed power)
    x[3, :] = np.inf
    x[4, ::3] = 0.0
    coefs = ALL_F16[rng.integers(0, 0x3C01, 64)]                  # in [0, 1], zeros included
    xl = np.ascontiguousarray(x.T).reshape(-1)
    t = np.empty(16 * L, np.float32)
    out = np.empty(L, np.float32)
    for a, n in [(0, 1), (3, 7), (5, 8), (0, 9), (10, 16), (1, 33), (2, 64)]:
        h.dot_prod_f16_lanes(xl, a, coefs, 0, n, t, out)
        ref = np.array([h.dot_prod_f16(x[i, a:a + n].copy(), coefs[:n].copy(), n) for i in range(L)], np.float32)
        assert _bits_equal(out, ref), (a, n, _first_mismatch(out, ref))


# ---------------------------------------------------------------------------------------------------------------
# whole patches: features_batch / FrontEnd.patches against compute_stages
# ---------------------------------------------------------------------------------------------------------------

def _patches(params, seed=0):
    rng = np.random.default_rng(seed)
    n = params.patch_length
    t = np.arange(n) / params.sample_rate
    rows = [
        np.zeros(n),                                              # silence (mel holes, log -inf)
        np.full(n, 32767.0),                                      # full-scale DC
        np.where(np.sin(2 * np.pi * 50 * t) >= 0, 32767.0, -32768.0),   # clipping square wave
        40000 * np.sin(2 * np.pi * 1000 * t),                     # clipped sine (power overflows to inf)
        rng.integers(-32768, 32768, n),                           # full-scale white noise
        rng.standard_normal(n) * 3,                               # near-silence noise
        rng.standard_normal(n) * 300,
        rng.standard_normal(n) * 3000 + 5000 * np.sin(2 * np.pi * 440 * t),
        np.eye(1, n, n // 2)[0] * 32767,                          # one impulse
    ]
    for k in range(7):                                            # noise at random levels
        rows.append(rng.standard_normal(n) * 10.0 ** rng.uniform(0, 4.5))
    return np.clip(np.stack(rows), -32768, 32767).astype(np.int16)


CONFIGS = {
    "default": {},
    "magnitude-db": dict(spectrum="magnitude", log="db", top_db=80.0),
    "not-inplace-ofast": dict(inplace_power=False, optimization="Ofast"),
    "saturate-half-even": dict(neg_inf_cast="saturate", quant_rounding="half-even", inv_scale_dtype="f32"),
    "n_fft-512": dict(n_fft=512, win_length=400, hop_length=160, n_mels=32, n_frames=20),
}


def _params(**kw):
    base = dict(profile="st-f16", isa="helium", inplace_power=True, quant_scale=0.1168, quant_zero_point=42)
    base.update(kw)
    return FrontendParams(**base)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_features_batch_equals_compute_stages(name):
    params = _params(**CONFIGS[name])
    state = st.prepare(params)
    assert st.fast_path(state)
    pcm = _patches(params, seed=len(name))
    feats, logs, sil = st.features_batch(pcm, state)
    for i in range(pcm.shape[0]):
        ref = st.compute_stages(pcm[i], state)
        assert np.array_equal(feats[i], ref["features"]), (name, i)
        assert _bits_equal(logs[i], ref["log"]), (name, i, _first_mismatch(logs[i], ref["log"]))
        assert _bits_equal(sil[i], ref["silence_sum"]), (name, i, sil[i], ref["silence_sum"])
        if i < 3:
            assert np.array_equal(st.compute_patch(pcm[i], state), ref["features"])


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 17, 40])
def test_features_batch_any_batch_size(count):
    """Batches of every shape (partial lane blocks, the few-patch silence path, several silence groups)."""
    params = _params()
    state = st.prepare(params)
    pcm = np.concatenate([_patches(params, seed=s) for s in range(3)])[:count]
    feats, logs, sil = st.features_batch(pcm, state)
    for i in range(count):
        ref = st.compute_stages(pcm[i], state)
        assert np.array_equal(feats[i], ref["features"]) and _bits_equal(logs[i], ref["log"]), i
        assert _bits_equal(sil[i], ref["silence_sum"]), i


def test_frontend_patches_equal_patch_by_patch():
    params = _params()
    fe = FrontEnd(params)
    pcm = _patches(params, seed=9)
    for boundary in ("int8", "float32"):
        feats, sil = fe.patches(pcm, boundary)
        for i in range(pcm.shape[0]):
            ref = st.compute_stages(pcm[i], fe.state)
            want = ref["features"] if boundary == "int8" else ref["log"]
            f1, s1 = fe.patch(pcm[i], boundary)
            assert _bits_equal(feats[i], want) and _bits_equal(f1, want), (boundary, i)
            assert _bits_equal(np.float32(s1), ref["silence_sum"]) and _bits_equal(sil[i], ref["silence_sum"])


def test_other_builds_keep_their_path():
    for kw in (dict(isa="scalar"), dict(profile="st-f32")):
        params = _params(**kw)
        state = st.prepare(params)
        assert not st.fast_path(state)
        pcm = _patches(params)[:3]
        feats, logs, sil = st.features_batch(pcm, state)
        for i in range(3):
            ref = st.compute_stages(pcm[i], state)
            assert np.array_equal(feats[i], ref["features"]) and _bits_equal(sil[i], ref["silence_sum"])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
def test_results_do_not_depend_on_thread_count():
    params = _params()
    state = st.prepare(params)
    pcm = np.concatenate([_patches(params, seed=s) for s in range(3)])
    before = numba.get_num_threads()
    try:
        out = []
        for n in (1, 2):
            numba.set_num_threads(n)
            out.append(st.features_batch(pcm, state))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(*out):
        assert _bits_equal(a, b)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
def test_block_ranges_over_threads_cover_every_block_once():
    """emu.frontend.threads.over_threads: contiguous, disjoint ranges covering [0, n), at most
    numba.get_num_threads() of them and at least min_blocks blocks each; an exception in any range reaches the
    caller."""
    import threading

    from emu.frontend.threads import over_threads
    before = numba.get_num_threads()
    try:
        for threads, n_blocks, min_blocks in ((1, 37, 4), (2, 37, 4), (2, 7, 4), (2, 8, 4), (2, 1, 4), (2, 15, 8),
                                              (2, 16, 8)):
            numba.set_num_threads(threads)
            seen, lock = [], threading.Lock()

            def run(b0, b1):
                with lock:
                    seen.append((b0, b1))
            over_threads(run, n_blocks, min_blocks)
            ranges = sorted(seen)
            assert ranges[0][0] == 0 and ranges[-1][1] == n_blocks
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            assert len(ranges) == max(1, min(threads, n_blocks // min_blocks))

        def failing(b0, b1):
            if b0 > 0:
                raise ValueError("range failed")
        numba.set_num_threads(2)
        with pytest.raises(ValueError, match="range failed"):
            over_threads(failing, 40, 4)
    finally:
        numba.set_num_threads(before)


def test_device_replay_equals_patch_by_patch(tmp_path):
    """The replay's batched front end (Device.replay_pcm) gives the records of the patch-by-patch path."""
    from emu.device import Device
    dev = Device()
    params = dev.frontend.params
    rng = np.random.default_rng(3)
    pcm = np.clip(rng.standard_normal(params.new_samples * 5 + 123) * 2000, -32768, 32767).astype(np.int16)
    pcm[params.new_samples:2 * params.new_samples] = 0
    recs = list(dev.replay_pcm([pcm]))
    feats = np.stack([st.compute_stages(p, dev.frontend.state)["features"] for _, p in dev.patches(pcm)])
    sil = np.array([st.compute_stages(p, dev.frontend.state)["silence_sum"] for _, p in dev.patches(pcm)], np.float32)
    outs = dev.run(dev.input_buffer(feats))
    want = dev.decide(outs, sil)
    assert len(recs) == len(want) == 5
    for r, w, o, s in zip(recs, want, outs, sil):
        assert np.array_equal(r["output"], o) and r["label"] == w["label"] and r["gated"] == w["gated"]
        assert r["silence_sum"] == float(s)


# ---------------------------------------------------------------------------------------------------------------
# cmsis-q15: the rfft of LANES frames at a time against the frame-by-frame kernels
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_fft", [32, 64, 128, 256, 512, 1024, 2048])
def test_q15_rfft_lanes_equals_one_frame(n_fft):
    from emu.frontend import cmsis_q15 as q
    rng = np.random.default_rng(n_fft)
    tab = q.rfft_init_q15(n_fft)
    fr = rng.integers(-32768, 32768, (q.LANES, n_fft)).astype(np.int16)
    fr[0] = 0
    fr[1] = 32767
    fr[2] = -32768
    fr[3] = np.where(np.arange(n_fft) % 2, 32767, -32768)
    fr[4] >>= 8
    fr[5] = (rng.standard_normal(n_fft) * 3).astype(np.int16)
    ref = np.empty((q.LANES, 2 * n_fft), np.int16)
    for i in range(q.LANES):
        q._rfft_q15_kernel(fr[i].copy(), n_fft, tab.twiddle, tab.bitrev, tab.coef_a, tab.coef_b, tab.modifier, 0, ref[i])
    x = np.ascontiguousarray(fr.T).reshape(-1)          # int16 lanes, as the patch kernels pass them
    dst = np.empty(2 * n_fft * q.LANES, np.int16)
    q._rfft_q15_lanes(x, n_fft, tab.twiddle, tab.bitrev, tab.coef_a, tab.coef_b, tab.modifier, dst,
                      np.empty(16 * q.LANES, np.int16))
    assert np.array_equal(dst.reshape(2 * n_fft, q.LANES).T, ref)


Q15_CONFIGS = {
    "logmel-magnitude": dict(spectrum="magnitude", q15={"mode": "logmel"}),
    "logmel-power-q15log": dict(spectrum="power", q15={"mode": "logmel", "log_precision": "q15"}),
    "logmel-double-rounding": dict(spectrum="magnitude", q15={"mode": "logmel", "quant_rounding": "double"}),
    "mfcc": dict(spectrum="magnitude", fmin=20.0, fmax=4000.0, mel_scale="htk", mel_norm="none", q15={"mode": "mfcc"}),
    "mfcc-n_fft-512": dict(spectrum="magnitude", fmin=20.0, fmax=4000.0, mel_scale="htk", mel_norm="none",
                           n_fft=512, win_length=400, hop_length=160, n_mels=32, n_frames=20, q15={"mode": "mfcc"}),
}


@pytest.mark.parametrize("name", sorted(Q15_CONFIGS))
def test_q15_lanes_patch_equals_frame_by_frame(name):
    from emu.frontend import cmsis_q15 as q
    params = FrontendParams(profile="cmsis-q15", quant_scale=0.0305305, quant_zero_point=42, **Q15_CONFIGS[name])
    state = q.prepare(params)
    for i, pcm in enumerate(_patches(params, seed=len(name))):
        x = q._patch_pcm(state, pcm)
        new, old = q._run_patch(x, state, lanes=True), q._run_patch(x, state, lanes=False)
        for k in old:
            assert np.array_equal(new[k], old[k]), (name, i, k)
        assert np.array_equal(q.compute_patch(pcm, state), q.compute_stages(pcm, state)["features"])
