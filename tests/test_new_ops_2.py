"""Issue 12, second part: PRelu (ONNX, vs onnxruntime) and PRELU (TFLite, vs tflite-micro) with per-channel alpha on
every input code; SPLIT / SPLIT_V (TFLite) and Split (ONNX), pure data movement with several outputs; TFLite models
with float32 I/O (QUANTIZE float32 -> int8 at the input, DEQUANTIZE int8 -> float32 at the output)."""
import numpy as np
import pytest
from onnx import helper, numpy_helper

from emu.graph.onnx_qdq import load_onnx_qdq, run_model
from onnx_builder import ort_session, quantize_qdq
from test_onnx_new_ops import _zp, conv_then, make_model, qdq
from test_tflite_new_ops import tflm_check


def compare(q, x, profile="onnxruntime"):
    model = load_onnx_qdq(q)
    (ref,) = ort_session(q).run(None, {"input": x})
    got = run_model(model, x, profile, "float32")["float"]
    assert got.shape == ref.shape
    diff = got.view(np.int32) != ref.view(np.int32)
    assert not diff.any(), f"{int(diff.sum())}/{diff.size} differ, first at {np.argwhere(diff)[0]}: " \
                           f"emu {got[tuple(np.argwhere(diff)[0])]} vs ort {ref[tuple(np.argwhere(diff)[0])]}"
    return model


# ---- ONNX PRelu ------------------------------------------------------------------------------------------------

def prelu_model(rng, c, dtype, slope_shape, float_slope=False):
    np_t = np.int8 if dtype == "int8" else np.uint8
    lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
    s1, s2 = np.float32(10 ** rng.uniform(-3, -0.5)), np.float32(10 ** rng.uniform(-3, -0.5))
    sa = np.float32(10 ** rng.uniform(-3, -0.5))
    z1, z2, za = _zp(rng, dtype), _zp(rng, dtype), _zp(rng, dtype)
    codes = rng.integers(lo, hi + 1, size=slope_shape).astype(np_t)
    codes.reshape(-1)[:2] = (lo, hi)[:codes.size]
    nodes, inits = [], []
    x = qdq(nodes, inits, "input", s1, z1, dtype)
    if float_slope:
        inits.append(numpy_helper.from_array(((codes.astype(np.float32) - za) * sa).astype(np.float32), "slope"))
    else:
        inits += [numpy_helper.from_array(codes, "slope_q"), numpy_helper.from_array(np.float32(sa), "slope_s"),
                  numpy_helper.from_array(np_t(za), "slope_z")]
        nodes.append(helper.make_node("DequantizeLinear", ["slope_q", "slope_s", "slope_z"], ["slope"]))
    nodes.append(helper.make_node("PRelu", [x, "slope"], ["y"], name="the_prelu"))
    y = qdq(nodes, inits, "y", s2, z2, dtype)
    nodes.append(helper.make_node("Identity", [y], ["output"]))
    shape = (1, c, 16, 16)
    return make_model(nodes, inits, [("input", shape)], shape), s1, z1


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("seed", range(20))
def test_prelu_every_code_equals_onnxruntime(dtype, seed):
    """Per-channel slope [C, 1, 1] (or a scalar, or [C, 16, 1]), quantized (DQ of a constant) or float32, and every
    input code in every channel."""
    rng = np.random.default_rng(seed)
    c = int(rng.integers(1, 9))
    slope_shape = [(c, 1, 1), (1,), (c, 16, 1)][seed % 3]
    model, s1, z1 = prelu_model(rng, c, dtype, slope_shape, float_slope=seed % 2 == 1)
    lo = -128 if dtype == "int8" else 0
    codes = (np.arange(256) + lo).reshape(16, 16)
    x = np.stack([rng.permutation(codes.reshape(-1)).reshape(16, 16) for _ in range(c)])[None]
    compare(model, ((x - z1).astype(np.float32) * s1).astype(np.float32))


def _prelu_graph(rng):
    return ([helper.make_node("PRelu", ["c", "k"], ["y"])],
            [numpy_helper.from_array(np.concatenate([rng.uniform(-0.5, 1.0, (3, 1, 1)), [[[0.25]]]])
                                     .astype(np.float32), "k")])


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_prelu_quantize_static_equals_onnxruntime(dtype):
    """quantize_static keeps the slope a float32 constant: DQ -> PRelu(k) -> Q."""
    shape = (1, 3, 6, 6)
    for seed in range(3):
        fm = conv_then(_prelu_graph, shape, seed)
        rng = np.random.default_rng(seed)
        q = quantize_qdq(fm, [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)],
                         per_channel=bool(seed % 2), activation_type=dtype, float_softmax=False)
        assert any(n.op_type == "PRelu" for n in q.graph.node)
        xs = rng.normal(0, 1.5, (10,) + shape).astype(np.float32)
        xs[0], xs[1] = 0.0, 40.0
        for x in xs:
            compare(q, x)


# ---- TFLite PRELU ----------------------------------------------------------------------------------------------

def every_code_per_channel(rng, n, shape):
    """n inputs of `shape` (channels last, H * W a multiple of 256): each channel holds every code, shuffled."""
    hw = int(np.prod(shape[:-1]))
    x = np.empty((n,) + tuple(shape), np.int8)
    for k in range(n):
        cols = [rng.permutation(np.arange(hw) % 256 - 128) for _ in range(shape[-1])]
        x[k] = np.stack(cols, axis=-1).reshape(shape).astype(np.int8)
    return x


@pytest.mark.parametrize("seed", range(30))
def test_tflite_prelu_every_code_equals_tflm(seed):
    pytest.importorskip("tflite_micro", reason='oracle unavailable: pip install -e ".[test]"')
    from test_tflite_new_ops import act
    from tflite_builder import ModelBuilder
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    c = int(rng.integers(1, 7))
    shape = (1, 16, 16, c)
    x = act(b, rng, "x", shape, scale=np.float32(10 ** rng.uniform(-3, 0)), zp=_zp(rng, "int8"))
    a_shape = [(c,), (1, 1, c), (16, 1, c), (1,)][seed % 4]
    codes = rng.integers(-128, 128, size=a_shape).astype(np.int8)
    codes.reshape(-1)[:2] = (-128, 127)[:codes.size]
    alpha = b.tensor("alpha", a_shape, np.int8, scale=np.float32(10 ** rng.uniform(-3, -0.5)),
                     zero_point=_zp(rng, "int8"), data=codes)
    y = act(b, rng, "y", shape, scale=np.float32(10 ** rng.uniform(-3, 0)), zp=_zp(rng, "int8"))
    b.op("PRELU", [x, alpha], [y])
    tflm_check(b.build([x], [y]), every_code_per_channel(rng, 3, shape))


# ---- TFLite SPLIT / SPLIT_V -----------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["SPLIT", "SPLIT_V"])
@pytest.mark.parametrize("seed", range(20))
def test_tflite_split_equals_tflm(op, seed, monkeypatch):
    """Random axis (negative too), 1..4 pieces (SPLIT_V: random sizes), pieces reassembled in reverse order by a
    CONCATENATION and one of them requantized, all tensors compared."""
    pytest.importorskip("tflite_micro", reason='oracle unavailable: pip install -e ".[test]"')
    from test_tflite_new_ops import act, sample_inputs
    from emu.graph import tflite_fb as fb
    from tflite_builder import ModelBuilder
    monkeypatch.setitem(fb.BUILTIN_OPERATOR, "SPLIT_V", 102)      # the builder's table does not name it
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    shape = [1, int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 7))]
    axis = int(rng.integers(1, 4))
    n = int(rng.integers(1, 5)) if op == "SPLIT" else int(rng.integers(1, shape[axis] + 1))
    if op == "SPLIT":
        shape[axis] = n * int(rng.integers(1, 3))
        sizes = [shape[axis] // n] * n
    else:
        cuts = sorted(rng.choice(np.arange(1, shape[axis]), size=n - 1, replace=False)) if n > 1 else []
        sizes = list(np.diff([0] + [int(c) for c in cuts] + [shape[axis]]))
    s, z = np.float32(rng.uniform(0.005, 0.2)), _zp(rng, "int8")
    x = act(b, rng, "x", tuple(shape), scale=s, zp=z)
    pieces = []
    for k, size in enumerate(sizes):
        ps = list(shape)
        ps[axis] = int(size)
        pieces.append(act(b, rng, f"piece{k}", tuple(ps), scale=s, zp=z))
    ax_val = axis - 4 if rng.random() < 0.3 else axis
    ax = b.tensor("axis", (), np.int32, data=np.array(ax_val, np.int32))
    if op == "SPLIT":
        b.op("SPLIT", [ax, x], pieces)          # tflite-micro splits by the outputs' shapes
    else:
        sz = b.tensor("sizes", (n,), np.int32, data=np.array(sizes, np.int32))
        b.op("SPLIT_V", [x, sz, ax], pieces)
    c = act(b, rng, "c", tuple(shape), scale=s, zp=z)
    b.op("CONCATENATION", pieces[::-1], [c], axis=axis, fused_activation_function=0)
    r = act(b, rng, "r", tuple(shape))
    b.op("QUANTIZE", [c], [r])
    tflm_check(b.build([x], [r]), sample_inputs(rng, tuple(shape), 4))


# ---- ONNX Split ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("seed", range(20))
def test_onnx_split_equals_onnxruntime(dtype, seed):
    """Split on a random axis (sizes as an input, as equal pieces, or opset 18's num_outputs), each piece quantized
    with the input's scale/zero-point (a pure copy) or its own (requantized), reassembled by a Concat."""
    rng = np.random.default_rng(seed)
    shape = [1, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 6))]
    axis = int(rng.integers(1, 4))
    kind = seed % 3
    n = int(rng.integers(1, 4))
    if kind == 0:
        shape[axis] = max(shape[axis], n)
        cuts = sorted(rng.choice(np.arange(1, shape[axis]), size=n - 1, replace=False)) if n > 1 else []
        sizes = [int(v) for v in np.diff([0] + [int(c) for c in cuts] + [shape[axis]])]
    elif kind == 1:
        shape[axis] = n * int(rng.integers(1, 3))
        sizes = [shape[axis] // n] * n
    else:
        shape[axis] = max(shape[axis], n + 1)
        chunk = -(-shape[axis] // n)
        sizes = [min(chunk, shape[axis] - i * chunk) for i in range(n)]
        if min(sizes) < 1:
            shape[axis], sizes = n * chunk, [chunk] * n
    s, z = np.float32(10 ** rng.uniform(-2.5, -0.5)), _zp(rng, dtype)
    nodes, inits = [], []
    x = qdq(nodes, inits, "input", s, z, dtype)
    outs = [f"p{k}" for k in range(n)]
    ax = axis - 4 if rng.random() < 0.3 else axis
    if kind == 0:
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
        nodes.append(helper.make_node("Split", [x, "sizes"], outs, axis=ax))
    elif kind == 1:
        nodes.append(helper.make_node("Split", [x], outs, axis=ax))
    else:
        nodes.append(helper.make_node("Split", [x], outs, axis=ax, num_outputs=n))
    pieces = []
    for k, o in enumerate(outs):
        own = rng.random() < 0.4
        pieces.append(qdq(nodes, inits, o, np.float32(10 ** rng.uniform(-2.5, -0.5)) if own else s,
                          _zp(rng, dtype) if own else z, dtype))
    nodes.append(helper.make_node("Concat", pieces[::-1], ["cc"], axis=axis))
    y = qdq(nodes, inits, "cc", s, z, dtype)
    nodes.append(helper.make_node("Identity", [y], ["output"]))
    model = make_model(nodes, inits, [("input", shape)], shape, opset=18 if kind == 2 else 13)
    xs = rng.normal(0, 0.3, (6,) + tuple(shape)).astype(np.float32)
    xs[0], xs[1] = 0.0, 40.0
    for xx in xs:
        compare(model, xx)


# ---- TFLite DEQUANTIZE (float32 output) -----------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(20))
def test_tflite_dequantize_output_equals_tflm(seed):
    """int8 model with a float32 output through DEQUANTIZE (after a requantization, every code reached): the float
    outputs equal tflite-micro's bit for bit, run() returns them."""
    pytest.importorskip("tflite_micro", reason='oracle unavailable: pip install -e ".[test]"')
    from emu.graph import Runtime, load_tflite
    from emu.reference import TflmReference
    from test_tflite_new_ops import act, sample_inputs
    from tflite_builder import ModelBuilder
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    shape = (1, 16, 16)
    x = act(b, rng, "x", shape, scale=np.float32(10 ** rng.uniform(-3, 0)), zp=_zp(rng, "int8"))
    y = act(b, rng, "y", shape, scale=np.float32(10 ** rng.uniform(-4, 1)), zp=_zp(rng, "int8"))
    b.op("QUANTIZE", [x], [y])
    out = b.tensor("out", shape, np.float32)
    b.op("DEQUANTIZE", [y], [out])
    model = b.build([x], [out])
    xs = sample_inputs(rng, shape, 3)
    mine = tflm_check(model, xs)
    assert mine["out"].dtype == np.float32
    got = Runtime(load_tflite(model)).run(xs)
    ref = np.stack([TflmReference(model).run(s) for s in xs])
    assert got.dtype == np.float32 and np.array_equal(got.view(np.int32), ref.reshape(got.shape).view(np.int32))


# ---- ONNX MatMul of two activations -----------------------------------------------------------------------------

def matmul_model(rng, dtype, shape, how, relu=False):
    """input [..., M, 2K] -> Q -> DQ -> Split on the last axis: a = Q -> DQ of the first half; b = the second half
    (Q -> DQ) -> Transpose or Reshape to [..., K, M] (same quantization) -> LeakyRelu -> Q (own scale) -> DQ;
    Q(MatMul(a, b)) (or Q(Relu(MatMul(a, b)))). Every Q feeds one DQ and every DQ one node (what ORT fuses)."""
    s, z = np.float32(10 ** rng.uniform(-2.5, -0.5)), _zp(rng, dtype)
    nodes, inits = [], []
    x = qdq(nodes, inits, "input", s, z, dtype)
    nodes.append(helper.make_node("Split", [x], ["h1", "h2"], axis=-1))
    a = qdq(nodes, inits, "h1", s, z, dtype)
    h2 = qdq(nodes, inits, "h2", s, z, dtype)
    rank = len(shape)
    half = list(shape[:-1]) + [shape[-1] // 2]
    if how == "transpose":
        perm = list(range(rank - 2)) + [rank - 1, rank - 2]
        nodes.append(helper.make_node("Transpose", [h2], ["t"], perm=perm))
    else:
        inits.append(numpy_helper.from_array(np.array(half[:-2] + [half[-1], half[-2]], np.int64), "bs"))
        nodes.append(helper.make_node("Reshape", [h2, "bs"], ["t"]))
    t = qdq(nodes, inits, "t", s, z, dtype)
    nodes.append(helper.make_node("LeakyRelu", [t], ["l"], alpha=float(rng.uniform(0.05, 0.9))))
    b = qdq(nodes, inits, "l", np.float32(10 ** rng.uniform(-2.5, -0.5)), _zp(rng, dtype), dtype)
    nodes.append(helper.make_node("MatMul", [a, b], ["mm"]))
    src = "mm"
    if relu:
        nodes.append(helper.make_node("Relu", ["mm"], ["mr"]))
        src = "mr"
    y = qdq(nodes, inits, src, np.float32(10 ** rng.uniform(-2, 0.5)), _zp(rng, dtype), dtype)
    nodes.append(helper.make_node("Identity", [y], ["output"]))
    out_shape = tuple(half[:-1]) + (half[-2],)
    return make_model(nodes, inits, [("input", shape)], out_shape), s


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("seed", range(15))
def test_matmul_two_activations_equals_onnxruntime(dtype, seed, tmp_path):
    """Rank 2, 3 and 4 (batch dims), Transpose or Reshape before the second input; onnxruntime runs each as
    QLinearMatMul (checked in its optimized graph)."""
    import onnx
    rng = np.random.default_rng(seed)
    m, k = int(rng.integers(1, 12)), int(rng.integers(1, 80))
    shape = [(1, m, 2 * k), (m, 2 * k), (1, 3, m, 2 * k)][seed % 3]
    model, s = matmul_model(rng, dtype, shape, "transpose" if seed % 2 else "reshape")
    ort_session(model, optimized_path=str(tmp_path / "opt.onnx"))
    assert "QLinearMatMul" in [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    xs = (rng.normal(0, 1, (6,) + shape) * s * rng.uniform(5, 80)).astype(np.float32)
    xs[0] = 0.0
    xs[1] = 1e4
    for x in xs:
        compare(model, x)


def test_matmul_with_a_shared_dequantize_is_refused():
    """onnxruntime does not fuse a MatMul whose DequantizeLinear feeds another node (it runs it in float)."""
    from emu.errors import N6Error
    nodes, inits = [], []
    a = qdq(nodes, inits, "input", 0.05, 3, "int8")
    nodes.append(helper.make_node("Transpose", [a], ["t"], perm=[0, 2, 1]))
    b = qdq(nodes, inits, "t", 0.05, 3, "int8")
    nodes.append(helper.make_node("MatMul", [a, b], ["mm"]))
    y = qdq(nodes, inits, "mm", 0.3, 0, "int8")
    nodes.append(helper.make_node("Identity", [y], ["output"]))
    with pytest.raises(N6Error, match="feeds other nodes too"):
        load_onnx_qdq(make_model(nodes, inits, [("input", (1, 4, 6))], (1, 4, 4)))


def test_matmul_int8_with_a_shared_quantize_is_refused():
    """int8: a QuantizeLinear feeding two DequantizeLinear stays int8 in ORT's S8->U8 rewrite: no fusion (float)."""
    from emu.errors import N6Error
    nodes, inits = [], []
    inits += [numpy_helper.from_array(np.float32(0.05), "s"), numpy_helper.from_array(np.int8(3), "z")]
    nodes += [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["xq"]),
              helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["a"]),
              helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["a2"]),
              helper.make_node("Transpose", ["a2"], ["t"], perm=[0, 2, 1])]
    b = qdq(nodes, inits, "t", 0.05, 3, "int8")
    nodes.append(helper.make_node("MatMul", ["a", b], ["mm"]))
    y = qdq(nodes, inits, "mm", 0.3, 0, "int8")
    nodes.append(helper.make_node("Identity", [y], ["output"]))
    with pytest.raises(N6Error, match="onnxruntime then runs the MatMul in float"):
        load_onnx_qdq(make_model(nodes, inits, [("input", (1, 4, 6))], (1, 4, 4)))


def test_matmul_relu_is_refused():
    """ORT keeps MatMul -> Relu -> Q of two activations unfused (float MatMul): refused, not approximated."""
    from emu.errors import N6Error
    model, _ = matmul_model(np.random.default_rng(0), "int8", (1, 4, 6), "transpose", relu=True)
    with pytest.raises(N6Error, match="keeps onnxruntime from fusing"):
        load_onnx_qdq(model)


def test_matmul_under_cmsis_nn_is_tflite_batch_matmul():
    """Under the fixed-point profile the MatMul is TFLite's int8 BatchMatMul: exact int32 sum, one
    MultiplyByQuantizedMultiplier by QuantizeMultiplier(double(s_a) * double(s_b) / double(s_out))."""
    from emu import fixedpoint as fx
    from emu.graph import Runtime
    rng = np.random.default_rng(7)
    model, s = matmul_model(rng, "int8", (1, 3, 5, 18), "transpose")
    g = load_onnx_qdq(model).graph
    node = next(n for n in g.nodes if n.op == "matmul")
    x = rng.integers(-128, 128, size=(4,) + tuple(g.tensors[g.inputs[0]].shape)).astype(np.int8)
    t = Runtime(g, profile="cmsis-nn").run_all(x)
    ta, tb, to = (g.tensors[n] for n in (node.inputs[0], node.inputs[1], node.outputs[0]))
    m, sh = fx.quantize_multiplier(float(ta.scale[0]) * float(tb.scale[0]) / float(to.scale[0]))
    acc = np.matmul(t[node.inputs[0]].astype(np.int64) - int(ta.zero_point[0]),
                    t[node.inputs[1]].astype(np.int64) - int(tb.zero_point[0]))
    want = np.array([int(fx.requantize_double(np.int32(v), np.int32(m), np.int32(sh))) for v in acc.reshape(-1)])
    want = np.clip(want + int(to.zero_point[0]), -128, 127).reshape(acc.shape)
    assert np.array_equal(t[node.outputs[0]], want)
