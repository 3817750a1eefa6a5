"""Fast paths of a single inference: the tile paths' one-shift requantization (emu/kernels/tiles.py) equals
fixedpoint.requantize_row, pointwise conv in u8 x s8 quads equals the general path, bound kernels called through their
compiled entry points (backends.compiled) equal the naive kernels, and the runtime's one-sample path (reshape views, no
input bookkeeping) gives tflite-micro's tensors."""
import numpy as np
import pytest
from numba import njit

from emu.fixedpoint import DOUBLE_ROUNDING, FLOAT32_RNE, SINGLE_ROUNDING, prepare_requantize, requantize_row
from emu.graph import Runtime, load_tflite
import naive
from emu.kernels import conv, pooling
from emu.kernels.backends import KernelArgumentError, bind, get_backend
from emu.kernels.tiles import TILE_DOUBLE_ROUNDING, has_quad_dot, tile_requantize, tile_requantize_row

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# ---- one-shift requantization -----------------------------------------------------------------------------------

@njit(cache=True)
def _rows(acc, qp, scale, off, lo, hi, rounding, out, tile):
    for p in range(out.shape[0] // acc.shape[0]):
        if tile:
            tile_requantize_row(acc, qp, scale, off, lo, hi, rounding, out, p * acc.shape[0])
        else:
            requantize_row(acc, qp, scale, off, lo, hi, rounding, out, p * acc.shape[0])


@pytest.mark.parametrize("seed", range(6))
def test_tile_requantize_row_equals_requantize_row(seed):
    rng = np.random.default_rng(seed)
    used = 0
    for trial in range(400):
        c = int(rng.integers(1, 70))
        bits = int(rng.integers(1, 33))
        acc = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), c).astype(np.int32)
        acc[:min(c, 4)] = np.array([INT32_MIN, INT32_MAX, 0, -1], np.int32)[:min(c, 4)] if trial % 3 == 0 \
            else acc[:min(c, 4)]
        mult = rng.integers(1 << 30, INT32_MAX, c).astype(np.int32) if trial % 4 else \
            rng.integers(INT32_MIN, INT32_MAX, c).astype(np.int32)
        if trial % 9 == 0:
            mult[0] = INT32_MIN
        shift = rng.integers(-31, 32, c) if trial % 2 else rng.integers(-12, 3, c)
        if trial % 10 == 0:
            shift[-1] = rng.choice([-62, -40, 33, 62])
        qp = prepare_requantize(mult, shift.astype(np.int32), DOUBLE_ROUNDING)
        tq, rounding = tile_requantize(qp, None, DOUBLE_ROUNDING)
        used += rounding == TILE_DOUBLE_ROUNDING
        off, lo, hi = int(rng.integers(-128, 128)), int(rng.integers(-128, 0)), int(rng.integers(0, 128))
        want, got = np.zeros(3 * c, np.int8), np.ones(3 * c, np.int8)
        _rows(acc, qp, None, off, lo, hi, DOUBLE_ROUNDING, want, False)
        _rows(acc, tq, None, off, lo, hi, rounding, got, True)
        assert np.array_equal(got, want), (trial, acc, mult, shift)
    assert 200 < used < 400       # both the one-shift form and the fallback ran


def test_tile_requantize_applies_to_double_rounding_only():
    qp = prepare_requantize(np.full(4, 1 << 30, np.int32), np.full(4, -3, np.int32), SINGLE_ROUNDING)
    assert tile_requantize(qp, None, SINGLE_ROUNDING) == (qp, SINGLE_ROUNDING)
    scale = np.ones(4, np.float32)
    assert tile_requantize(qp, scale, FLOAT32_RNE)[1] == FLOAT32_RNE
    qp = prepare_requantize(np.full(4, 1 << 30, np.int32), np.array([-3, 0, 2, -32], np.int32), DOUBLE_ROUNDING)
    assert tile_requantize(qp, None, DOUBLE_ROUNDING)[1] == DOUBLE_ROUNDING     # a right shift of 32


# ---- pointwise conv in u8 x s8 quads -----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_quad_pointwise_conv_equals_general_path(seed):
    """1x1 stride-1 conv with Cin % 4 == 0 (MODE_DIRECT): the quad tiles (on a CPU with AVX512-VNNI) equal the
    general path, extremes and wrapping biases included; batches split over threads too."""
    rng = np.random.default_rng(seed)
    quads = 0
    for t in range(60):
        n, h, w = int(rng.integers(1, 3)), int(rng.integers(1, 7)), int(rng.integers(1, 7))
        cin, cout = 4 * int(rng.integers(1, 30)), int(rng.integers(1, 150))
        if t % 5 in (1, 2):
            v = -128 if t % 5 == 1 else 127
            inp, filt = np.full((n, h, w, cin), v, np.int8), np.full((cout, 1, 1, cin), v, np.int8)
        else:
            inp = rng.integers(-128, 128, (n, h, w, cin)).astype(np.int8)
            filt = rng.integers(-128, 128, (cout, 1, 1, cin)).astype(np.int8)
        bias = (rng.integers(INT32_MIN, INT32_MAX, cout) if t % 3 == 0 else rng.integers(-40000, 40000, cout)) \
            .astype(np.int32)
        mult = rng.integers(1 << 30, INT32_MAX, cout).astype(np.int32)
        shift = rng.integers(-20, 3, cout).astype(np.int32)
        io, fo, rounding = int(rng.choice([128, -127, 0, 5, -3])), int(rng.choice([0, 0, 1, -1])), t % 2
        args = (inp, filt, bias, mult, shift, io, 7, 1, 1, 0, 0, 1, 1, -128, 127, rounding)
        got, want = np.zeros((n, h, w, cout), np.int8), np.ones((n, h, w, cout), np.int8)
        quads += conv._tile_args(conv._checked_conv_args(*args, got, None, fo, None, None), 1)[19]
        conv.bind_conv_s8(*args, got, filter_offset=fo)()
        conv._conv_s8(inp, filt, bias, prepare_requantize(mult, shift, rounding), None, io, fo, 7, 1, 1, 0, 0, 1, 1,
                      -128, 127, rounding, want, np.zeros(conv.conv_scratch_size(filt.shape), np.int32))
        assert np.array_equal(got, want), t
    assert (quads > 20) == has_quad_dot()


_QUAD_CHECK = """
import numpy as np
from numba import njit
from emu.kernels.tiles import LANES, pack_groups, quad_tile
T44, T11 = quad_tile(4, 4), quad_tile(1, 1)

@njit
def run(x, cin, wq, op, init, acc, big):
    if big:
        T44(x, 0, cin, cin // 4, wq, 0, 4 * op, init, 0, acc, 0, op)
    else:
        T11(x, 0, cin, cin // 4, wq, 0, 4 * op, init, 0, acc, 0, op)

rng = np.random.default_rng(5)
for big, rows, cout in ((True, 4, 64), (False, 1, 16)):
    for cin in (4, 8, 36):
        x = rng.integers(-128, 128, (rows, cin)).astype(np.int8)
        x[0] = -128
        w = rng.integers(-128, 128, (cout, cin)).astype(np.int64)
        w[0] = 127
        init = rng.integers(-2**31, 2**31, cout).astype(np.int32)
        acc = np.zeros(rows * cout, np.int32)
        run(x.reshape(-1), cin, pack_groups(w, 4, np.int8), cout, init, acc, big)
        want = (init.astype(np.int64) + (x.astype(np.int64) + 128) @ w.T + 2**31) % 2**32 - 2**31
        assert np.array_equal(acc.reshape(rows, cout), want), (big, cin)
print("quads ok")
"""


def test_quad_tile_sums_offset_quads():
    """quad_tile against numpy: (x + 128) * w summed in int32 (wrapping) on top of init."""
    exec(compile(_QUAD_CHECK, "quad_check", "exec"), {})


def test_quad_tile_portable_ir_without_vnni(tmp_path):
    """The generic IR quad_tile emits for a target without AVX512-VNNI gives the same sums (a child process compiling
    for the host's features minus avx512vnni)."""
    import os
    import subprocess
    import sys
    from llvmlite import binding
    feats = binding.get_host_cpu_features().flatten().replace("+avx512vnni", "-avx512vnni")
    env = dict(os.environ, NUMBA_CPU_FEATURES=feats, N6EMU_CACHE_DIR=str(tmp_path), NUMBA_CACHE_DIR=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", _QUAD_CHECK], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and "quads ok" in res.stdout, res.stderr[-2000:]


# ---- bound kernels through their compiled entry points ------------------------------------------------------------

def _chain(kernels, seed, float_conv=False):
    """Bound steps (backends.bind) of conv (padded, direct, gather) -> depthwise -> avgpool -> maxpool -> fully
    connected -> softmax with kernel namespace `kernels` (same values for the same seed); returns (steps, buffers)."""
    rng = np.random.default_rng(seed)
    shapes = dict(x=(1, 9, 6, 3), c1=(1, 5, 6, 16), c2=(1, 5, 6, 32), c3=(1, 4, 5, 24), d=(1, 4, 5, 24),
                  a=(1, 2, 3, 24), m=(1, 1, 2, 24), f=(1, 10), s=(1, 10))
    v = {name: np.zeros(shape, np.int8) for name, shape in shapes.items()}
    v["x"][...] = rng.integers(-128, 128, shapes["x"])

    def epi(cout):
        return (rng.integers(-5000, 5000, cout).astype(np.int32),
                rng.integers(1 << 30, INT32_MAX, cout).astype(np.int32), rng.integers(-9, -5, cout).astype(np.int32))

    def w(*shape):
        return rng.integers(-128, 128, shape).astype(np.int8)

    steps = []
    b, m, s = epi(16)
    steps.append(bind(kernels, "conv_s8", v["x"], w(16, 3, 2, 3), b, m, s, 7, -3, 2, 1, 1, 1, 1, 1, -128, 127,
                      DOUBLE_ROUNDING, v["c1"]))
    b, m, s = epi(32)
    if float_conv:
        steps.append(bind(kernels, "conv_s8", v["c1"], w(32, 1, 1, 16), b, None, None, 128, -128, 1, 1, 0, 0, 1, 1,
                          -128, 127, FLOAT32_RNE, v["c2"], scale=(rng.random(32) * 1e-3).astype(np.float32)))
    else:
        steps.append(bind(kernels, "conv_s8", v["c1"], w(32, 1, 1, 16), b, m, s, 128, -128, 1, 1, 0, 0, 1, 1,
                          -128, 127, SINGLE_ROUNDING, v["c2"]))
    b, m, s = epi(24)
    steps.append(bind(kernels, "conv_s8", v["c2"], w(24, 2, 2, 32), b, m, s, 5, 9, 1, 1, 0, 0, 1, 2, -100, 100,
                      DOUBLE_ROUNDING, v["c3"]))
    b, m, s = epi(24)
    steps.append(bind(kernels, "depthwise_conv_s8", v["c3"], w(1, 3, 3, 24), b, m, s, 1, -4, 6, 1, 1, 1, 1, 1, 1,
                      -128, 127, DOUBLE_ROUNDING, v["d"]))
    steps.append(bind(kernels, "avgpool_s8", v["d"], 2, 2, 2, 2, 0, 0, -128, 127, v["a"]))
    steps.append(bind(kernels, "maxpool_s8", v["a"], 2, 2, 2, 1, 0, 0, -120, 127, v["m"]))
    b, m, s = epi(10)
    steps.append(bind(kernels, "fully_connected_s8", v["m"].reshape(1, 48), w(10, 48), b, m, s, 3, 0, -7, -128, 127,
                      DOUBLE_ROUNDING, v["f"]))
    steps.append(bind(kernels, "softmax_s8", v["f"], 1242899200, 24, -124, v["s"]))
    return steps, v


@pytest.mark.parametrize("float_conv", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_bound_entry_points_equal_naive(seed, float_conv):
    fast, v = _chain(get_backend("numba"), seed, float_conv)
    slow, ref = _chain(naive, seed, float_conv)
    rng = np.random.default_rng(100 + seed)
    for _ in range(2):                                # the plan's buffers refilled: the bound calls see new contents
        for step in fast + slow:
            step()
        for name in v:
            assert np.array_equal(v[name], ref[name]), name
        v["x"][...] = ref["x"][...] = rng.integers(-128, 128, v["x"].shape)
    assert len(np.unique(v["s"])) > 1


def test_bound_avgpool_without_valid_tap_raises():
    x, y = np.zeros((1, 2, 2, 4), np.int8), np.zeros((1, 2, 2, 4), np.int8)
    step = pooling.bind_avgpool_s8(x, 1, 1, 1, 1, 1, 1, -128, 127, y)     # padding 1, window 1: no valid tap
    with pytest.raises(KernelArgumentError, match="no valid tap"):
        step()


# ---- the runtime's single inference ----------------------------------------------------------------------------

def test_mlperf_single_inference_matches_tflm(mlperf_model):
    pytest.importorskip("tflite_micro", reason="oracle unavailable: tflite-micro is not installed")
    from emu.reference import TflmReference
    graph, ref = load_tflite(mlperf_model), TflmReference(mlperf_model)
    rt = Runtime(graph)
    rng = np.random.default_rng(7)
    xs = rng.integers(-128, 128, (6, 1, 49, 10, 1)).astype(np.int8)
    xs[0], xs[1] = -128, 127
    _, steps = rt._plan(1)
    assert len(steps) == len(graph.nodes) - 1   # the reshape is a view
    for x in xs:
        want = ref.run_all(x[None])
        mine = rt.run_all(x)
        for name, a in mine.items():
            assert np.array_equal(a, want[name].reshape(a.shape)), name
        y = rt.run(x)
        assert np.array_equal(y, mine[graph.outputs[0]])
        assert np.array_equal(rt.run(x[None])[0], y)
        y[...] = 0                              # a copy, not the plan's buffer
        assert np.array_equal(rt.run(x), mine[graph.outputs[0]])
