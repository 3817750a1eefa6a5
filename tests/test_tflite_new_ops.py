"""TFLite ops added for issue 12, randomized models vs tflite-micro on every tensor: SUB, MAXIMUM, MINIMUM,
CONCATENATION, EXPAND_DIMS, STRIDED_SLICE, MEAN, QUANTIZE (int8 -> int8), LOGISTIC, TANH, LEAKY_RELU, HARD_SWISH (the
unary ones on every input code); and every unsupported op named at once."""
import numpy as np
import pytest

from emu.errors import N6Error
from emu.graph import Runtime, load_tflite
from tflite_builder import ACT, ModelBuilder, act_tensor

pytest.importorskip("tflite_micro",
                    reason='oracle unavailable: tflite-micro is not installed; pip install -e ".[test]"')
from emu.reference import TflmReference  # noqa: E402


def sample_inputs(rng, shape, n_random=6):
    """Random int8 inputs plus all -128, all 127, alternating extremes and (when it fits) every code."""
    size = int(np.prod(shape))
    x = rng.integers(-128, 128, size=(n_random + 4,) + tuple(shape)).astype(np.int8)
    x[n_random] = -128
    x[n_random + 1] = 127
    x[n_random + 2] = np.where(np.arange(size) % 2 == 0, -128, 127).astype(np.int8).reshape(shape)
    x[n_random + 3] = (np.arange(size) % 256 - 128).astype(np.int8).reshape(shape)
    return x


def check(model, rng, n_random=6):
    graph = load_tflite(model)
    tflm_check(model, sample_inputs(rng, graph.tensors[graph.inputs[0]].shape, n_random), graph)
    return graph


def tflm_check(model, x, graph=None):
    """emu vs tflite-micro on every tensor of `model` for the input batch x (int8, or float32 for float I/O)."""
    mine = Runtime(load_tflite(model) if graph is None else graph).run_all(x)
    ref = TflmReference(model).run_all(x, names=list(mine))
    for name in mine:
        a, b = mine[name], ref[name].reshape(mine[name].shape)
        bad = np.argwhere(a != b)
        assert not len(bad), f"tensor {name!r}: {len(bad)} of {a.size} differ; first at {tuple(bad[0])}: emu " \
                             f"{a[tuple(bad[0])]} vs tflite-micro {b[tuple(bad[0])]}"
    return mine


def act(b, rng, name, shape, scale=None, zp=None):
    """tflite_builder.act_tensor that remembers each tensor's (scale, zero-point) in b.meta."""
    scale = np.float32(rng.uniform(0.005, 0.2)) if scale is None else np.float32(scale)
    zp = _zp(rng) if zp is None else int(zp)
    idx = act_tensor(b, rng, name, shape, scale=scale, zp=zp)
    if not hasattr(b, "meta"):
        b.meta = {}
    b.meta[idx] = (scale, zp)
    return idx


def _zp(rng):
    return int(rng.choice([-128, 127, rng.integers(-128, 128), rng.integers(-128, 128)]))


def _scale_of(idx, b):
    return b.meta[idx][0]


def _zp_of(idx, b):
    return b.meta[idx][1]


def branch(b, rng, x, shape, name, scale=None, zp=None):
    """A second activation derived from x by a QUANTIZE (requantization) into its own scale/zero-point."""
    y = act(b, rng, name, shape, scale=scale, zp=zp)
    b.op("QUANTIZE", [x], [y])
    return y


@pytest.mark.parametrize("seed", range(30))
def test_sub_with_broadcast_equals_tflm(seed):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    shape = (1, int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 5)))
    x = act(b, rng, "x", shape, scale=np.float32(rng.uniform(0.005, 0.2)), zp=_zp(rng))
    y = branch(b, rng, x, shape, "y", scale=np.float32(rng.uniform(0.005, 0.2)), zp=_zp(rng))
    left, right = (x, y)
    if seed % 3 == 1:         # broadcast: the second operand is a max-pooled [1, 1, W, C] of y
        p = act(b, rng, "p", (1, 1, shape[2], shape[3]), scale=_scale_of(y, b), zp=_zp_of(y, b))
        b.op("MAX_POOL_2D", [y], [p], padding=1, stride_w=1, stride_h=1, filter_width=1, filter_height=shape[1],
             fused_activation_function=0)
        right = p
    out = act(b, rng, "out", shape, scale=np.float32(rng.uniform(0.005, 0.3)), zp=_zp(rng))
    b.op("SUB", [left, right] if seed % 2 == 0 else [right, left], [out],
         fused_activation_function=ACT[str(rng.choice(list(ACT)))])
    check(b.build([x], [out]), rng)


@pytest.mark.parametrize("op", ["MAXIMUM", "MINIMUM"])
@pytest.mark.parametrize("seed", range(10))
def test_maximum_minimum_equal_tflm(op, seed):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    shape = (1, int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 5)))
    s, z = np.float32(rng.uniform(0.005, 0.2)), _zp(rng)
    x = act(b, rng, "x", shape, scale=s, zp=z)
    pooled_shape = (1, 1, shape[2], shape[3]) if seed % 2 else shape
    p = act(b, rng, "p", pooled_shape, scale=s, zp=z)
    b.op("MAX_POOL_2D", [x], [p], padding=1, stride_w=1, stride_h=1, filter_width=1,
         filter_height=shape[1] if seed % 2 else 1, fused_activation_function=0)
    neg = act(b, rng, "n", pooled_shape, scale=s, zp=z)
    b.op("AVERAGE_POOL_2D", [p], [neg], padding=0, stride_w=1, stride_h=1, filter_width=min(2, shape[3]),
         filter_height=1, fused_activation_function=0)
    out = act(b, rng, "out", shape, scale=s, zp=z)
    b.op(op, [x, neg] if seed % 4 < 2 else [neg, x], [out])
    check(b.build([x], [out]), rng)


@pytest.mark.parametrize("seed", range(20))
def test_concatenation_and_expand_dims_equal_tflm(seed):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    shape = (1, int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 5)))
    s, z = np.float32(rng.uniform(0.005, 0.2)), _zp(rng)
    x = act(b, rng, "x", shape, scale=s, zp=z)
    y = act(b, rng, "y", shape, scale=s, zp=z)
    b.op("MAX_POOL_2D", [x], [y], padding=0, stride_w=1, stride_h=1, filter_width=1, filter_height=1,
         fused_activation_function=0)
    axis = int(rng.integers(-4, 4))
    out_shape = list(shape)
    out_shape[axis] *= 3
    c = act(b, rng, "c", out_shape, scale=s, zp=z)
    b.op("CONCATENATION", [x, y, x], [c], axis=axis, fused_activation_function=0)
    where = int(rng.integers(0, 5))
    ax = b.tensor("ax", (1,), np.int32, data=np.array([where], np.int32))
    e_shape = list(out_shape)
    e_shape.insert(where, 1)
    e = act(b, rng, "e", e_shape, scale=s, zp=z)
    b.op("EXPAND_DIMS", [c, ax], [e])
    r = act(b, rng, "r", out_shape, scale=s, zp=z)
    b.op("RESHAPE", [e], [r])
    check(b.build([x], [r]), rng)


@pytest.mark.parametrize("seed", range(40))
def test_quantize_requantizes_like_tflm(seed):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    shape = (1, 16, 16)
    x = act(b, rng, "x", shape, scale=np.float32(10 ** rng.uniform(-3, 0)), zp=_zp(rng))
    y = act(b, rng, "y", shape, scale=np.float32(10 ** rng.uniform(-3, 0)), zp=_zp(rng))
    b.op("QUANTIZE", [x], [y])
    check(b.build([x], [y]), rng, n_random=2)


@pytest.mark.parametrize("op", ["LOGISTIC", "TANH"])
@pytest.mark.parametrize("seed", range(40))
def test_logistic_tanh_all_codes_equal_tflm(op, seed):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    shape = (1, 16, 16)                    # 256 values: one input holds every code
    s_in = np.float32(10 ** rng.uniform(-3, 0.3))
    x = act(b, rng, "x", shape, scale=s_in, zp=_zp(rng))
    y = act(b, rng, "y", shape, scale=np.float32(1 / 256 if op == "LOGISTIC" else 1 / 128),
                   zp=-128 if op == "LOGISTIC" else 0)
    b.op(op, [x], [y])
    check(b.build([x], [y]), rng, n_random=2)


def test_unsupported_ops_listed_at_once():
    rng = np.random.default_rng(0)
    b = ModelBuilder()
    x = act(b, rng, "x", (1, 4, 4, 2))
    h = act(b, rng, "h1", (1, 4, 4, 2))
    b.op("GATHER", [x, x], [h])
    h2 = act(b, rng, "h2", (1, 4, 4, 2))
    b.op("GATHER", [h, x], [h2])
    lr = act(b, rng, "lr", (1, 8))
    b.op("MyCustomOp", [h2], [lr])          # not a builtin: written as a CUSTOM op with this custom_code
    with pytest.raises(N6Error, match=r"unsupported ops: GATHER \(2 layers: 'h1', 'h2'\), MyCustomOp \(1 layer: "
                                      r"'lr'\)"):
        load_tflite(b.build([x], [lr]))


@pytest.mark.parametrize("seed", range(40))
def test_hard_swish_all_codes_equal_tflm(seed):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    shape = (1, 16, 16)
    x = act(b, rng, "x", shape, scale=np.float32(10 ** rng.uniform(-2.5, -0.5)), zp=_zp(rng))
    y = act(b, rng, "y", shape, scale=np.float32(10 ** rng.uniform(-2.5, -0.5)), zp=_zp(rng))
    b.op("HARD_SWISH", [x], [y])
    check(b.build([x], [y]), rng, n_random=2)


@pytest.mark.parametrize("seed", range(40))
def test_strided_slice_equals_tflm(seed):
    """Random begin/end/strides (negative indices and strides), begin/end/shrink masks."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    shape = (1, int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 5)))
    s, z = np.float32(rng.uniform(0.005, 0.2)), _zp(rng)
    x = act(b, rng, "x", shape, scale=s, zp=z)
    while True:
        begin, end, strides = [], [], []
        bm = em = sm = 0
        for ax, d in enumerate(shape):
            st = int(rng.choice([1, 1, 2, 3, -1, -2])) if ax else 1
            begin.append(int(rng.integers(-d, d)))
            end.append(int(rng.integers(-d - 1, d + 2)))
            strides.append(st)
            bm |= int(rng.random() < 0.25) << ax
            em |= int(rng.random() < 0.25) << ax
            sm |= int(ax > 0 and st > 0 and rng.random() < 0.15) << ax     # the converter: shrink with stride > 0
        offset = False
        lengths = []
        for ax, d in enumerate(shape):
            st = strides[ax]
            e = begin[ax] + end[ax] if offset else end[ax]
            a0 = (0 if st > 0 else d - 1) if bm >> ax & 1 else (begin[ax] + d if begin[ax] < 0 else begin[ax])
            a0 = min(max(a0, 0), d) if st > 0 else min(max(a0, -1), d - 1)
            if sm >> ax & 1:
                lengths.append(1 if 0 <= a0 < d else 0)
                continue
            e0 = (d if st > 0 else -1) if em >> ax & 1 else (e + d if e < 0 else e)
            e0 = min(max(e0, 0), d) if st > 0 else min(max(e0, -1), d - 1)
            lengths.append(len(range(a0, e0, st)))
        if all(n >= 1 for n in lengths):
            break
    out_shape = [n for ax, n in enumerate(lengths) if not sm >> ax & 1]
    vec = [b.tensor(f"v{k}", (4,), np.int32, data=np.array(v, np.int32)) for k, v in enumerate((begin, end, strides))]
    y = act(b, rng, "y", out_shape, scale=s, zp=z)
    b.op("STRIDED_SLICE", [x] + vec, [y], begin_mask=bm, end_mask=em, shrink_axis_mask=sm, offset=offset)
    check(b.build([x], [y]), rng, n_random=3)


def test_strided_slice_refuses_what_tflm_does_not_run():
    rng = np.random.default_rng(0)
    for opts, what in ((dict(shrink_axis_mask=2), "positive stride"), (dict(offset=True), "offset")):
        b = ModelBuilder()
        x = act(b, rng, "x", (1, 4, 4, 2), scale=0.1, zp=0)
        strides = [1, -1, 1, 1] if what == "positive stride" else [1, 1, 1, 1]
        vec = [b.tensor(f"v{k}", (4,), np.int32, data=np.array(v, np.int32))
               for k, v in enumerate(([0, 2, 0, 0], [1, 1, 4, 2], strides))]
        y = act(b, rng, "y", (1, 4, 2), scale=0.1, zp=0)
        b.op("STRIDED_SLICE", [x] + vec, [y], **opts)
        with pytest.raises(N6Error, match=what):
            load_tflite(b.build([x], [y]))


@pytest.mark.parametrize("seed", range(40))
def test_leaky_relu_all_codes_equal_tflm(seed):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    shape = (1, 16, 16)
    x = act(b, rng, "x", shape, scale=np.float32(10 ** rng.uniform(-3, 0)), zp=_zp(rng))
    y = act(b, rng, "y", shape, scale=np.float32(10 ** rng.uniform(-3, 0)), zp=_zp(rng))
    b.op("LEAKY_RELU", [x], [y], alpha=float(rng.choice([0.01, 0.1, 0.2, 0.3, rng.uniform(0, 1)])))
    check(b.build([x], [y]), rng, n_random=2)


@pytest.mark.parametrize("seed", range(60))
def test_mean_equals_tflm(seed):
    """MEAN: keep_dims 4-D over axes 1, 2 (a global average), same quantization in and out, other contiguous axes
    (negative too) with and without keep_dims, random shapes and zero-points."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    shape = (1, int(rng.integers(1, 8)), int(rng.integers(1, 8)), int(rng.integers(1, 6)))
    kind = seed % 3
    s_in, z_in = np.float32(rng.uniform(0.005, 0.2)), _zp(rng)
    s_out, z_out = (s_in, z_in) if kind == 1 else (np.float32(rng.uniform(0.005, 0.2)), _zp(rng))
    x = act(b, rng, "x", shape, scale=s_in, zp=z_in)
    if kind == 0:
        axes, keep = [1, 2], True
    else:
        first = int(rng.integers(1, 4))
        last = int(rng.integers(first, 4))
        axes, keep = list(range(first, last + 1)), bool(rng.integers(0, 2))
        if rng.random() < 0.3:
            axes = [a - 4 for a in axes]
    ax_pos = [a % 4 for a in axes]
    out_shape = [1 if i in ax_pos else d for i, d in enumerate(shape)] if keep else \
        [d for i, d in enumerate(shape) if i not in ax_pos]
    at = b.tensor("axes", (len(axes),), np.int32, data=np.array(axes, np.int32))
    y = act(b, rng, "y", out_shape, scale=s_out, zp=z_out)
    b.op("MEAN", [x, at], [y], keep_dims=keep)
    check(b.build([x], [y]), rng, n_random=4)
