"""The tile fast paths of conv / depthwise (emu/kernels/tiles.py, conv.py, depthwise.py) == the general Numba paths
== tests/naive.py, exactly: every tile mode (1x1 in place, zero-point padded copy, gathered rows), odd channel
counts, padding, strides, dilations, int8 extremes and zero-points at both ends, both epilogues; a batch equals its
samples run one by one; the threaded split equals the single-thread run whatever numba.set_num_threads says."""
import numba
import numpy as np
import pytest

import naive
from emu.fixedpoint import FLOAT32_RNE, QP_ROWS, prepare_requantize
from emu.kernels import conv, depthwise
from emu.kernels.tiles import pack_pairs, wrap_int32_array

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def assert_same(got, want, what):
    if not np.array_equal(got, want):
        bad = np.argwhere(got != want)
        first = [tuple(int(i) for i in b) for b in bad[:5]]
        pytest.fail(f"{what}: {len(bad)} of {want.size} values differ, first at {first} (N,H,W,C): "
                    f"got {[int(got[f]) for f in first]}, want {[int(want[f]) for f in first]}")


def _data(rng, shape, flavour):
    if flavour == "min":
        return np.full(shape, -128, np.int8)
    if flavour == "max":
        return np.full(shape, 127, np.int8)
    if flavour == "extremes":
        return rng.choice(np.array([-128, 127], np.int8), shape)
    return rng.integers(-128, 128, shape).astype(np.int8)


def _out_size(size, k, stride, pad, dilation):
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def _case(seed, depthwise_case=False, **fixed):
    """One random conv/depthwise case as a dict; `fixed` overrides any field."""
    rng = np.random.default_rng(seed)
    c = dict(n=int(rng.integers(1, 4)), h=int(rng.integers(1, 9)), w=int(rng.integers(1, 10)),
             cin=int(rng.integers(1, 20)), cout=int(rng.integers(1, 80)), kh=int(rng.integers(1, 5)),
             kw=int(rng.integers(1, 5)), stride_h=int(rng.integers(1, 3)), stride_w=int(rng.integers(1, 3)),
             pad_top=int(rng.integers(0, 3)), pad_left=int(rng.integers(0, 3)), dilation_h=int(rng.integers(1, 3)),
             dilation_w=int(rng.integers(1, 3)), input_offset=int(rng.choice([128, -127, 0, 5, -3])),
             filter_offset=int(rng.choice([0, 0, 0, 3, -128, 127])), output_offset=int(rng.integers(-128, 128)),
             rounding=int(rng.integers(0, 3)), flavour=str(rng.choice(["random", "random", "min", "max", "extremes"])),
             act=(-128, 127) if rng.random() < 0.6 else (-100, 6))
    c.update(fixed)
    for _ in range(50):
        oh = _out_size(c["h"], c["kh"], c["stride_h"], c["pad_top"], c["dilation_h"])
        ow = _out_size(c["w"], c["kw"], c["stride_w"], c["pad_left"], c["dilation_w"])
        if oh >= 1 and ow >= 1:
            break
        c["h"] += 1
        c["w"] += 1
    c["out_shape"] = (c["n"], oh, ow, c["cin"] if depthwise_case else c["cout"])
    cout = c["out_shape"][3]
    c["inp"] = _data(rng, (c["n"], c["h"], c["w"], c["cin"]), c["flavour"])
    fshape = (1, c["kh"], c["kw"], cout) if depthwise_case else (cout, c["kh"], c["kw"], c["cin"])
    c["filt"] = _data(rng, fshape, c["flavour"])
    c["bias"] = rng.choice(np.array([0, INT32_MIN, INT32_MAX, 1000, -77777], np.int64), cout).astype(np.int32) \
        if rng.random() < 0.3 else rng.integers(-40000, 40000, cout).astype(np.int32)
    if c["rounding"] == FLOAT32_RNE:
        c["mult"] = c["shift"] = None
        c["scale"] = (rng.random(cout) * 0.02 + 1e-4).astype(np.float32)
    else:
        c["mult"] = rng.integers(1 << 30, INT32_MAX, cout).astype(np.int32)
        lo, hi = (-31, 30) if c["rounding"] == 1 else (-20, 4)
        c["shift"] = rng.integers(lo, hi + 1, cout).astype(np.int32)
        c["scale"] = None
    return c


def _geo(c):
    return [c[k] for k in ("stride_h", "stride_w", "pad_top", "pad_left", "dilation_h", "dilation_w")] + \
        [c["act"][0], c["act"][1], c["rounding"]]


def _qp(c):
    cout = c["out_shape"][3]
    return np.zeros((QP_ROWS, cout), np.int64) if c["scale"] is not None else \
        prepare_requantize(c["mult"], c["shift"], c["rounding"])


def run_conv(c, how):
    """'checked': conv_s8 (tile path when it applies); 'general': the transposed-filter path; 'bound': bind_conv_s8."""
    out = np.full(c["out_shape"], 55, np.int8)
    if how == "general":
        args = [c["inp"], c["filt"], c["bias"], _qp(c), c["scale"], c["input_offset"], c["filter_offset"],
                c["output_offset"]] + _geo(c) + [out, np.zeros(conv.conv_scratch_size(c["filt"].shape), np.int32)]
        conv._conv_s8(*args)
        return out
    args = [c["inp"], c["filt"], c["bias"], c["mult"], c["shift"], c["input_offset"], c["output_offset"]] + _geo(c)
    kw = dict(filter_offset=c["filter_offset"], scale=c["scale"])
    if how == "checked":
        conv.conv_s8(*args, out, **kw)
    else:
        conv.bind_conv_s8(*args, out, **kw)()
    return out


def run_depthwise(c, how):
    out = np.full(c["out_shape"], 55, np.int8)
    if how == "general":
        depthwise._depthwise_conv_s8(c["inp"], c["filt"], c["bias"], _qp(c), c["scale"], 1, c["input_offset"],
                                     c["filter_offset"], c["output_offset"], *_geo(c), out,
                                     np.zeros(c["out_shape"][3], np.int32))
        return out
    args = [c["inp"], c["filt"], c["bias"], c["mult"], c["shift"], 1, c["input_offset"], c["output_offset"]] + _geo(c)
    kw = dict(filter_offset=c["filter_offset"], scale=c["scale"])
    if how == "checked":
        depthwise.depthwise_conv_s8(*args, out, **kw)
    else:
        depthwise.bind_depthwise_conv_s8(*args, out, **kw)()
    return out


# ---- conv -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(60))
def test_conv_tile_path_equals_general_path(seed):
    c = _case(seed)
    assert_same(run_conv(c, "checked"), run_conv(c, "general"), f"conv tiles vs general, case {seed}")


@pytest.mark.parametrize("mode, fixed", [
    (conv.MODE_DIRECT, dict(kh=1, kw=1, stride_h=1, stride_w=1, pad_top=0, pad_left=0, cin=64, cout=64)),
    (conv.MODE_DIRECT, dict(kh=1, kw=1, stride_h=1, stride_w=1, pad_top=0, pad_left=0, cin=6, cout=17)),
    (conv.MODE_GATHER, dict(kh=1, kw=1, stride_h=1, stride_w=1, pad_top=0, pad_left=0, cin=7, cout=33)),   # odd Cin
    (conv.MODE_PADDED, dict(kh=10, kw=4, stride_h=2, stride_w=2, pad_top=4, pad_left=1, cin=1, cout=64,
                            dilation_w=1, h=49, w=10)),                                                 # MLPerf conv1
    (conv.MODE_PADDED, dict(kh=3, kw=3, stride_h=1, stride_w=1, pad_top=1, pad_left=1, cin=2, cout=80, dilation_w=1)),
    (conv.MODE_GATHER, dict(kh=3, kw=3, cin=3, cout=5, dilation_w=1)),                                  # odd KW*Cin
    (conv.MODE_GATHER, dict(kh=2, kw=2, cin=4, cout=16, dilation_w=2)),                                 # dilated
])
@pytest.mark.parametrize("flavour", ["random", "min", "max", "extremes"])
@pytest.mark.parametrize("offsets", [(128, 0), (-127, 0), (0, 127), (128, -128), (-127, 127)])
def test_conv_tile_modes_equal_general_path(mode, fixed, flavour, offsets):
    c = _case(hash((mode, flavour, offsets)) % 1000, flavour=flavour, input_offset=offsets[0],
              filter_offset=offsets[1], **fixed)
    got_mode = conv.conv_tile_mode(c["inp"].shape, c["filt"].shape, c["out_shape"], c["stride_h"], c["stride_w"],
                                   c["pad_top"], c["pad_left"], c["dilation_w"])
    assert got_mode == mode
    want = run_conv(c, "general")
    assert_same(run_conv(c, "checked"), want, f"conv tile mode {mode}")
    assert_same(run_conv(c, "bound"), want, f"bound conv tile mode {mode}")


def test_conv_tile_path_equals_naive():
    for seed in range(30):
        c = _case(1000 + seed, rounding=seed % 3)
        out = np.zeros(c["out_shape"], np.int8)
        naive.conv_s8(c["inp"], c["filt"], c["bias"], c["mult"], c["shift"], c["input_offset"], c["output_offset"],
                      *_geo(c), out, filter_offset=c["filter_offset"], scale=c["scale"])
        assert_same(run_conv(c, "checked"), out, f"conv tiles vs naive, case {seed}")


def test_conv_tile_path_accumulator_wraps_like_int32():
    """All-extreme data with a 3x3x64 field and a bias at INT32_MAX: the int32 sum wraps, as on the MCU."""
    c = _case(7, n=1, h=4, w=4, cin=64, cout=16, kh=3, kw=3, stride_h=1, stride_w=1, pad_top=1, pad_left=1,
              dilation_h=1, dilation_w=1, flavour="min", input_offset=-127, filter_offset=0, rounding=0)
    c["bias"][:] = INT32_MAX
    c["mult"][:] = 1 << 30
    c["shift"][:] = 0
    assert_same(run_conv(c, "checked"), run_conv(c, "general"), "wrapping conv")


def test_conv_paths_that_do_not_tile_fall_back():
    """An input zero-point outside int8 or w + filter_offset outside int16 keep the earlier paths."""
    filt = np.full((4, 1, 1, 2), 127, np.int8)
    bias = np.zeros(4, np.int32)
    assert conv.pack_conv_tiles(filt, bias, 129, 0) is None
    assert conv.pack_conv_tiles(filt, bias, 0, 32767) is None
    assert conv.pack_conv_tiles(filt, bias, -127, 32640) is not None
    c = _case(3, input_offset=300)
    assert_same(run_conv(c, "checked"), run_conv(c, "general"), "conv, input offset 300")


# ---- depthwise ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(60))
def test_depthwise_tile_path_equals_general_path(seed):
    c = _case(seed, depthwise_case=True)
    assert_same(run_depthwise(c, "checked"), run_depthwise(c, "general"), f"depthwise tiles vs general, case {seed}")


@pytest.mark.parametrize("fixed", [
    dict(kh=3, kw=3, stride_h=1, stride_w=1, pad_top=1, pad_left=1, cin=64, h=25, w=5),   # MLPerf DS-CNN layer
    dict(kh=3, kw=3, stride_h=2, stride_w=2, pad_top=0, pad_left=0, cin=17),
    dict(kh=1, kw=5, stride_h=1, stride_w=3, pad_top=0, pad_left=2, cin=80, dilation_w=2),
    dict(kh=3, kw=3, stride_h=1, stride_w=1, pad_top=2, pad_left=2, cin=1, dilation_h=2, dilation_w=2),
])
@pytest.mark.parametrize("flavour", ["random", "min", "max", "extremes"])
@pytest.mark.parametrize("offsets", [(128, 0), (-127, 0), (0, 127), (128, -128), (-127, 70000)])
def test_depthwise_tile_shapes_equal_general_path(fixed, flavour, offsets):
    c = _case(abs(len(flavour) * 1000 + offsets[0]), depthwise_case=True, flavour=flavour, input_offset=offsets[0],
              filter_offset=offsets[1], **fixed)
    want = run_depthwise(c, "general")
    assert_same(run_depthwise(c, "checked"), want, "depthwise tiles")
    assert_same(run_depthwise(c, "bound"), want, "bound depthwise tiles")


def test_depthwise_tile_path_equals_naive():
    for seed in range(30):
        c = _case(2000 + seed, depthwise_case=True, rounding=seed % 3)
        out = np.zeros(c["out_shape"], np.int8)
        naive.depthwise_conv_s8(c["inp"], c["filt"], c["bias"], c["mult"], c["shift"], 1, c["input_offset"],
                                c["output_offset"], *_geo(c), out, filter_offset=c["filter_offset"], scale=c["scale"])
        assert_same(run_depthwise(c, "checked"), out, f"depthwise tiles vs naive, case {seed}")


def test_depthwise_input_offset_outside_int8_falls_back():
    c = _case(5, depthwise_case=True, input_offset=200)
    assert depthwise.pack_depthwise_tiles(c["filt"], c["bias"], 200, 0) is None
    assert_same(run_depthwise(c, "checked"), run_depthwise(c, "general"), "depthwise, input offset 200")


# ---- batch and threads --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["conv1x1", "conv_padded", "conv_gather", "depthwise"])
def test_batch_equals_samples_and_threads_do_not_matter(kind):
    """A bound batch of 37 (threaded split over its sample ranges) equals each sample bound alone, under 1 and all
    of Numba's threads."""
    dw = kind == "depthwise"
    fixed = dict(conv1x1=dict(kh=1, kw=1, stride_h=1, stride_w=1, pad_top=0, pad_left=0, cin=32, cout=64),
                 conv_padded=dict(kh=3, kw=2, cin=3, cout=20, dilation_w=1),
                 conv_gather=dict(kh=3, kw=3, cin=3, cout=20, dilation_w=2),
                 depthwise=dict(kh=3, kw=3, cin=24))[kind]
    c = _case(11, depthwise_case=dw, n=37, rounding=0, **fixed)
    run = run_depthwise if dw else run_conv
    results = []
    for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
        numba.set_num_threads(threads)
        try:
            results.append(run(c, "bound"))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for r in results[1:]:
        assert_same(r, results[0], f"{kind}: threads")
    for b in (0, 1, 18, 36):
        one = dict(c, inp=c["inp"][b:b + 1].copy(), n=1, out_shape=(1,) + c["out_shape"][1:])
        assert_same(run(one, "bound"), results[0][b:b + 1], f"{kind}: sample {b} alone vs in the batch")


def test_scratch_split_covers_the_batch():
    assert conv.tile_chunks(1, 2) == 1
    assert conv.tile_chunks(256, 1) == 1
    assert conv.tile_chunks(5, 2) == 5
    assert conv.tile_chunks(256, 2) == 16


def test_pack_pairs_layout_and_bias_fold():
    w = np.arange(-7, 8, dtype=np.int64).reshape(3, 5)      # O=3, K=5
    p = pack_pairs(w).reshape(3, 16, 2)                      # K2=3, Op=16
    assert p.dtype == np.int16
    assert p[0, 1].tolist() == [w[1, 0], w[1, 1]] and p[2, 2].tolist() == [w[2, 4], 0] and not p[:, 3:].any()
    assert wrap_int32_array([INT32_MAX + 1, INT32_MIN - 1]).tolist() == [INT32_MIN, INT32_MAX]
