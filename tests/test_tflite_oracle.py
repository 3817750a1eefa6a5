"""Randomized int8 TFLite models (built here with tests/tflite_builder.py) vs tflite-micro, every tensor.

Each example: random geometry/quantization -> .tflite bytes -> emu (load_tflite + Runtime) and
tflite-micro (kPreserveAllTensors) on random inputs plus all -128, all 127 and alternating extremes;
every activation tensor must be identical.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.graph import Runtime, load_tflite
from tflite_builder import ACT, BACKEND_NAMES, PAD, ModelBuilder, act_tensor, conv_weights, load_backend, out_size

pytest.importorskip("tflite_micro",
                    reason='oracle unavailable: tflite-micro is not installed; pip install -e ".[test]"')
from emu.reference import TflmReference  # noqa: E402

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", params=BACKEND_NAMES)
def kernels(request):
    if request.param == "c":
        request.getfixturevalue("c_kernels")   # skipped only when no C compiler can build emu._c_kernels
    return load_backend(request.param)


def sample_inputs(rng, shape, n_random=4):
    """Random int8 inputs plus all -128, all 127 and alternating extremes: [n_random + 3, *shape]."""
    x = rng.integers(-128, 128, size=(n_random + 3,) + tuple(shape)).astype(np.int8)
    x[n_random] = -128
    x[n_random + 1] = 127
    alt = np.where(np.arange(int(np.prod(shape))) % 2 == 0, -128, 127).astype(np.int8).reshape(shape)
    x[n_random + 2] = alt
    return x


def first_mismatch(a, b):
    bad = np.argwhere(a != b)
    return f"{len(bad)} of {a.size} differ; first at {tuple(int(i) for i in bad[0])}: emu {a[tuple(bad[0])]} " \
           f"vs tflite-micro {b[tuple(bad[0])]}"


def check_against_tflm(model, kernels, rng, n_random=4):
    graph = load_tflite(model)
    rt = Runtime(graph, backend=kernels)
    x = sample_inputs(rng, graph.tensors[graph.inputs[0]].shape, n_random)
    mine = rt.run_all(x)
    ref = TflmReference(model).run_all(x, names=list(mine))
    assert set(mine) == set(ref)
    for name in mine:
        a, b = mine[name], ref[name].reshape(mine[name].shape)
        assert np.array_equal(a, b), f"tensor {name!r}: {first_mismatch(a, b)}"
    return mine


# ---- single-op models ----------------------------------------------------------------------------------

@st.composite
def conv_case(draw, depthwise=False):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.sampled_from([1, 1, 2, 3])), draw(st.sampled_from([1, 1, 2, 3]))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    h = draw(st.integers((kh - 1) * dh + 1, (kh - 1) * dh + 8))
    w = draw(st.integers((kw - 1) * dw + 1, (kw - 1) * dw + 8))
    groups = 1 if depthwise else draw(st.sampled_from([1, 1, 1, 2, 3]))
    cin = groups * draw(st.integers(1, 6 // groups))
    mult = draw(st.integers(1, 3)) if depthwise else None
    cout = cin * mult if depthwise else groups * draw(st.integers(1, 8 // groups))
    return dict(kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, padding=padding, h=h, w=w, cin=cin, cout=cout,
                groups=groups,
                mult=mult, act=draw(st.sampled_from(list(ACT))), per_channel=draw(st.booleans()),
                seed=draw(st.integers(0, 2**31)))


def build_conv(c, depthwise):
    rng = np.random.default_rng(c["seed"])
    b = ModelBuilder()
    s_in = np.float32(rng.uniform(0.005, 0.1))
    x = act_tensor(b, rng, "x", (1, c["h"], c["w"], c["cin"]), scale=s_in)
    oh = out_size(c["h"], c["kh"], c["sh"], c["dh"], c["padding"])
    ow = out_size(c["w"], c["kw"], c["sw"], c["dw"], c["padding"])
    if depthwise:
        wt, bt = conv_weights(b, rng, "w", (1, c["kh"], c["kw"], c["cout"]), c["cout"], c["per_channel"], 3, s_in)
    else:
        wt, bt = conv_weights(b, rng, "w", (c["cout"], c["kh"], c["kw"], c["cin"] // c["groups"]), c["cout"],
                              c["per_channel"], 0, s_in)
    y = act_tensor(b, rng, "y", (1, oh, ow, c["cout"]), scale=np.float32(rng.uniform(0.02, 0.5)))
    common = dict(padding=PAD[c["padding"]], stride_w=c["sw"], stride_h=c["sh"], dilation_w_factor=c["dw"],
                  dilation_h_factor=c["dh"], fused_activation_function=ACT[c["act"]])
    if depthwise:
        b.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y], depth_multiplier=c["mult"], **common)
    else:
        b.op("CONV_2D", [x, wt, bt], [y], **common)
    return b.build([x], [y]), rng


def random_conv_case(rng, depthwise):
    """The same space as conv_case, drawn with numpy (for the long @slow sweeps)."""
    kh, kw, sh, sw = (int(v) for v in rng.integers(1, [6, 6, 4, 4]))
    dh, dw = (int(v) for v in rng.choice([1, 1, 2, 3], size=2))
    groups = 1 if depthwise else int(rng.choice([1, 1, 1, 2, 3]))
    cin = groups * int(rng.integers(1, 6 // groups + 1))
    mult = int(rng.integers(1, 4)) if depthwise else None
    return dict(kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, padding=str(rng.choice(["SAME", "VALID"])),
                h=(kh - 1) * dh + int(rng.integers(1, 9)), w=(kw - 1) * dw + int(rng.integers(1, 9)), cin=cin,
                cout=cin * mult if depthwise else groups * int(rng.integers(1, 8 // groups + 1)), groups=groups,
                mult=mult, act=str(rng.choice(list(ACT))), per_channel=bool(rng.integers(0, 2)),
                seed=int(rng.integers(0, 2**31)))


@pytest.mark.slow
@pytest.mark.parametrize("depthwise", [False, True])
def test_conv_sweep_matches_tflm(kernels, depthwise):
    rng = np.random.default_rng(20261126 + depthwise)
    for _ in range(300):
        model, model_rng = build_conv(random_conv_case(rng, depthwise), depthwise)
        check_against_tflm(model, kernels, model_rng)


@SETTINGS
@given(c=conv_case())
def test_conv2d_matches_tflm(kernels, c):
    model, rng = build_conv(c, depthwise=False)
    check_against_tflm(model, kernels, rng)


@SETTINGS
@given(c=conv_case(depthwise=True))
def test_depthwise_conv2d_matches_tflm(kernels, c):
    model, rng = build_conv(c, depthwise=True)
    check_against_tflm(model, kernels, rng)


@SETTINGS
@given(k=st.integers(1, 80), n_out=st.integers(1, 16), rows=st.integers(1, 3), act=st.sampled_from(list(ACT)),
       per_channel=st.booleans(), seed=st.integers(0, 2**31))
def test_fully_connected_matches_tflm(kernels, k, n_out, rows, act, per_channel, seed):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s_in = np.float32(rng.uniform(0.005, 0.1))
    x = act_tensor(b, rng, "x", (rows, k), scale=s_in)
    wt, bt = conv_weights(b, rng, "w", (n_out, k), n_out, per_channel, 0, s_in)
    y = act_tensor(b, rng, "y", (rows, n_out), scale=np.float32(rng.uniform(0.05, 1.0)))
    with_bias = bool(rng.integers(0, 2))   # bias is optional in TFLite FC (-1 = absent)
    b.op("FULLY_CONNECTED", [x, wt, bt if with_bias else -1], [y], fused_activation_function=ACT[act])
    model = b.build([x], [y])
    # rows > 1 is a batch axis of the model itself: the runtime then runs sample by sample
    assert Runtime(load_tflite(model), backend=kernels).batch_folds == (rows == 1)
    check_against_tflm(model, kernels, rng)


@SETTINGS
@given(kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       padding=st.sampled_from(["SAME", "VALID"]), act=st.sampled_from(list(ACT)), avg=st.booleans(),
       h=st.integers(4, 10), w=st.integers(4, 10), c=st.integers(1, 5), seed=st.integers(0, 2**31))
def test_pooling_matches_tflm(kernels, kh, kw, sh, sw, padding, act, avg, h, w, c, seed):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s, zp = np.float32(rng.uniform(0.01, 0.1)), int(rng.integers(-128, 128))
    x = act_tensor(b, rng, "x", (1, h, w, c), scale=s, zp=zp)
    y = act_tensor(b, rng, "y", (1, out_size(h, kh, sh, 1, padding), out_size(w, kw, sw, 1, padding), c),
                   scale=s, zp=zp)
    b.op("AVERAGE_POOL_2D" if avg else "MAX_POOL_2D", [x], [y], padding=PAD[padding], stride_w=sw, stride_h=sh,
         filter_width=kw, filter_height=kh, fused_activation_function=ACT[act])
    check_against_tflm(b.build([x], [y]), kernels, rng)


@SETTINGS
@given(rows=st.integers(1, 4), n=st.integers(1, 40), beta=st.sampled_from([1.0, 0.5, 2.0]),
       seed=st.integers(0, 2**31))
def test_softmax_matches_tflm(kernels, rows, n, beta, seed):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    x = act_tensor(b, rng, "x", (1, rows, n), scale=np.float32(rng.uniform(0.01, 0.5)))
    y = b.tensor("y", (1, rows, n), np.int8, np.float32(1.0 / 256), -128)
    b.op("SOFTMAX", [x], [y], beta=beta)
    check_against_tflm(b.build([x], [y]), kernels, rng)


@SETTINGS
@given(op=st.sampled_from(["ADD", "MUL"]), act=st.sampled_from(list(ACT)), broadcast=st.booleans(),
       h=st.integers(1, 5), w=st.integers(1, 5), c=st.integers(1, 6), seed=st.integers(0, 2**31))
def test_add_mul_match_tflm(kernels, op, act, broadcast, h, w, c, seed):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    x = act_tensor(b, rng, "x", (1, h, w, c))
    cshape = (1, 1, 1, c) if broadcast else (1, h, w, c)
    cdata = rng.integers(-128, 128, size=cshape).astype(np.int8)
    k = b.tensor("k", cshape, np.int8, np.float32(rng.uniform(0.005, 0.2)), int(rng.integers(-128, 128)),
                 data=cdata)
    y = act_tensor(b, rng, "y", (1, h, w, c), scale=np.float32(rng.uniform(0.01, 0.3)))
    b.op(op, [x, k], [y], fused_activation_function=ACT[act])
    check_against_tflm(b.build([x], [y]), kernels, rng)


@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=4, max_size=4), padv2=st.booleans(), seed=st.integers(0, 2**31),
       data=st.data())
def test_pad_transpose_reshape_match_tflm(kernels, shape, padv2, seed, data):
    rng = np.random.default_rng(seed)
    pads = [[0, 0]] + [[data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))] for _ in range(3)]
    perm = [0] + list(rng.permutation(3) + 1)
    b = ModelBuilder()
    s, zp = np.float32(rng.uniform(0.01, 0.1)), int(rng.integers(-128, 128))
    x = act_tensor(b, rng, "x", tuple(shape), scale=s, zp=zp)
    padded = tuple(d + p0 + p1 for d, (p0, p1) in zip(shape, pads))
    pt = b.tensor("pads", (4, 2), np.int32, data=np.array(pads, np.int32))
    y = act_tensor(b, rng, "padded", padded, scale=s, zp=zp)
    if padv2:   # explicit constant pad value instead of the zero-point
        value = b.tensor("value", (1,), np.int8, s, zp, data=np.array([rng.integers(-128, 128)], np.int8))
        b.op("PADV2", [x, pt, value], [y])
    else:
        b.op("PAD", [x, pt], [y])
    tshape = tuple(padded[p] for p in perm)
    perm_t = b.tensor("perm", (4,), np.int32, data=np.array(perm, np.int32))
    z = act_tensor(b, rng, "transposed", tshape, scale=s, zp=zp)
    b.op("TRANSPOSE", [y, perm_t], [z])
    flat = (1, int(np.prod(tshape)))
    shape_t = b.tensor("shape", (2,), np.int32, data=np.array(flat, np.int32))
    r = act_tensor(b, rng, "flat", flat, scale=s, zp=zp)
    b.op("RESHAPE", [z, shape_t], [r], new_shape=list(flat))
    check_against_tflm(b.build([x], [r]), kernels, rng)


# ---- small multi-op models -----------------------------------------------------------------------------

@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), per_channel=st.booleans(), residual=st.booleans())
def test_small_dscnn_matches_tflm(kernels, seed, per_channel, residual):
    """conv -> depthwise -> pointwise (+ residual add) -> avgpool -> reshape -> FC -> softmax."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    h, w, c = 12, 6, 8
    s_x = np.float32(rng.uniform(0.05, 0.5))
    x = act_tensor(b, rng, "x", (1, 20, 8, 1), scale=s_x)
    w1, b1 = conv_weights(b, rng, "c1", (c, 5, 3, 1), c, per_channel, 0, s_x)
    s1 = np.float32(rng.uniform(0.05, 0.3))
    t1 = act_tensor(b, rng, "t1", (1, h - 2, w - 2, c), scale=s1, zp=-128)
    b.op("CONV_2D", [x, w1, b1], [t1], padding=PAD["SAME"], stride_w=2, stride_h=2, fused_activation_function=1)
    w2, b2 = conv_weights(b, rng, "dw", (1, 3, 3, c), c, per_channel, 3, s1)
    s2 = np.float32(rng.uniform(0.05, 0.3))
    t2 = act_tensor(b, rng, "t2", (1, h - 2, w - 2, c), scale=s2, zp=-128)
    b.op("DEPTHWISE_CONV_2D", [t1, w2, b2], [t2], padding=PAD["SAME"], stride_w=1, stride_h=1, depth_multiplier=1,
         fused_activation_function=3)
    w3, b3 = conv_weights(b, rng, "pw", (c, 1, 1, c), c, per_channel, 0, s2)
    s3 = np.float32(rng.uniform(0.05, 0.3))
    t3 = act_tensor(b, rng, "t3", (1, h - 2, w - 2, c), scale=s3, zp=-128)
    b.op("CONV_2D", [t2, w3, b3], [t3], padding=PAD["VALID"], stride_w=1, stride_h=1, fused_activation_function=1)
    qz = -128
    if residual:
        s4, qz = np.float32(rng.uniform(0.05, 0.5)), int(rng.integers(-128, 128))
        t4 = act_tensor(b, rng, "t4", (1, h - 2, w - 2, c), scale=s4, zp=qz)
        b.op("ADD", [t3, t1], [t4], fused_activation_function=0)
        t3, s3 = t4, s4
    t5 = b.tensor("pool", (1, 1, 1, c), np.int8, s3, qz)   # pooling keeps the input's quantization
    b.op("AVERAGE_POOL_2D", [t3], [t5], padding=PAD["VALID"], stride_w=w - 2, stride_h=h - 2, filter_width=w - 2,
         filter_height=h - 2)
    shp = b.tensor("shape", (2,), np.int32, data=np.array([1, c], np.int32))
    t6 = b.tensor("flat", (1, c), np.int8, s3, qz)
    b.op("RESHAPE", [t5, shp], [t6], new_shape=[1, c])
    w7, b7 = conv_weights(b, rng, "fc", (5, c), 5, False, 0, s3)
    t7 = act_tensor(b, rng, "logits", (1, 5), scale=np.float32(rng.uniform(0.05, 0.3)))
    b.op("FULLY_CONNECTED", [t6, w7, b7], [t7])
    t8 = b.tensor("probs", (1, 5), np.int8, np.float32(1.0 / 256), -128)
    b.op("SOFTMAX", [t7], [t8], beta=1.0)
    check_against_tflm(b.build([x], [t8]), kernels, rng, n_random=8)
