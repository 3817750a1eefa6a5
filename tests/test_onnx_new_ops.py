"""New ONNX QDQ ops under the onnxruntime profile, bit for bit against onnxruntime (default optimizations):
Sigmoid (fused QLinearSigmoid), LeakyRelu (fused QLinearLeakyRelu), HardSigmoid and HardSwish (run in float between
DequantizeLinear and QuantizeLinear), Sub (float), Add/Mul with broadcasting, Concat, Softmax on any axis.

Unary ops are checked exhaustively: every one of the 256 input codes under random scales and zero-points (the
extremes -128/127, 0/255 over-represented), int8 and uint8."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from emu.errors import N6Error
from emu.graph.onnx_qdq import load_onnx_qdq, run_model
from onnx_builder import OPSET, ort_session, quantize_qdq

pytest.importorskip("onnxruntime", reason='oracle unavailable: pip install -e ".[test]"')

UNARY = [("Sigmoid", {}), ("Tanh", {}), ("LeakyRelu", dict(alpha=0.1)), ("LeakyRelu", {}), ("HardSigmoid", {}),
         ("HardSigmoid", dict(alpha=0.3, beta=0.4)), ("HardSwish", {})]


def _zp(rng, dtype):
    lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
    return int(rng.choice([lo, hi, rng.integers(lo, hi + 1), rng.integers(lo, hi + 1)]))


def qdq(nodes, inits, name, scale, zp, dtype):
    """Q -> DQ of tensor `name` (appends nodes/initializers); returns the DequantizeLinear output."""
    np_t = np.int8 if dtype == "int8" else np.uint8
    inits += [numpy_helper.from_array(np.float32(scale), f"{name}_s"), numpy_helper.from_array(np_t(zp), f"{name}_z")]
    nodes += [helper.make_node("QuantizeLinear", [name, f"{name}_s", f"{name}_z"], [f"{name}_q"]),
              helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [f"{name}_dq"])]
    return f"{name}_dq"


def make_model(nodes, inits, inputs, out_shape, opset=OPSET):
    for k, n in enumerate(nodes):
        if not n.name:
            n.name = f"{n.op_type}_{k}"
    g = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s))
                                         for n, s in inputs],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(out_shape))], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def unary_model(op, attrs, s1, z1, s2, z2, dtype, shape=(1, 256)):
    nodes, inits = [], []
    x = qdq(nodes, inits, "input", s1, z1, dtype)
    nodes.append(helper.make_node(op, [x], ["y"], name="the_op", **attrs))
    nodes[-1].output[0] = "y"
    y = qdq(nodes, inits, "y", s2, z2, dtype)
    nodes.append(helper.make_node("Identity", [y], ["output"]))
    return make_model(nodes, inits, [("input", shape)], shape)


def all_codes_input(s1, z1, dtype):
    codes = np.arange(-128, 128) if dtype == "int8" else np.arange(256)
    return ((codes - z1).astype(np.float32) * np.float32(s1)).reshape(1, 256)


def compare(q, x, profile="onnxruntime"):
    model = load_onnx_qdq(q)
    (ref,) = ort_session(q).run(None, {"input": x} if not isinstance(x, dict) else x)
    got = run_model(model, x, profile, "float32")["float"]
    assert got.shape == ref.shape
    diff = got.view(np.int32) != ref.view(np.int32)
    assert not diff.any(), f"{int(diff.sum())}/{diff.size} differ, first at {np.argwhere(diff)[0]}: " \
                           f"emu {got[tuple(np.argwhere(diff)[0])]} vs ort {ref[tuple(np.argwhere(diff)[0])]}"
    return model


@pytest.mark.parametrize("op,attrs", UNARY, ids=[f"{o}{'-' + str(a) if a else ''}" for o, a in UNARY])
@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_unary_all_codes_equal_onnxruntime(op, attrs, dtype):
    rng = np.random.default_rng(abs(hash((op, str(attrs), dtype))) % 2**32)
    for _ in range(40):
        s1 = np.float32(10 ** rng.uniform(-3.5, -0.3))
        s2 = np.float32(10 ** rng.uniform(-3.5, -1.0)) if op != "Sigmoid" or rng.random() < 0.3 else np.float32(1 / 256)
        z1, z2 = _zp(rng, dtype), _zp(rng, dtype)
        compare(unary_model(op, attrs, s1, z1, s2, z2, dtype), all_codes_input(s1, z1, dtype))


def conv_then(op_nodes, shape=(1, 3, 6, 6), seed=0):
    """Float model: Conv -> (op_nodes on 'c') -> Conv, to be quantized by quantize_static."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(0, .4, (4, shape[1], 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, .4, (3, 4, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c"], pads=[1, 1, 1, 1])]
    extra_nodes, extra_inits = op_nodes(rng)
    nodes += extra_nodes
    inits += extra_inits
    nodes.append(helper.make_node("Conv", ["y", "w2"], ["output"]))
    return make_model(nodes, inits, [("input", shape)], (1, 3) + shape[2:])


OP_GRAPHS = {
    "sigmoid": lambda rng: ([helper.make_node("Sigmoid", ["c"], ["y"])], []),
    "tanh": lambda rng: ([helper.make_node("Tanh", ["c"], ["y"])], []),
    "leaky_relu": lambda rng: ([helper.make_node("LeakyRelu", ["c"], ["y"], alpha=0.2)], []),
    "hard_swish": lambda rng: ([helper.make_node("HardSwish", ["c"], ["y"])], []),
    "hard_sigmoid_relu": lambda rng: ([helper.make_node("HardSigmoid", ["c"], ["h"]),
                                       helper.make_node("Relu", ["h"], ["y"])], []),
    "sub_activations": lambda rng: ([helper.make_node("Relu", ["c"], ["r"]),
                                     helper.make_node("Sub", ["r", "c"], ["y"])], []),
    "mul_broadcast_const": lambda rng: ([helper.make_node("Mul", ["c", "k"], ["y"])],
                                        [numpy_helper.from_array(rng.normal(0, 1, (1, 1, 6, 1)).astype(np.float32),
                                                                 "k")]),
    "reduce_mean_hw": lambda rng: ([helper.make_node("ReduceMean", ["c"], ["m"], axes=[2, 3], keepdims=1),
                                    helper.make_node("Add", ["c", "m"], ["y"])], []),
    "reduce_mean_w": lambda rng: ([helper.make_node("ReduceMean", ["c"], ["m"], axes=[-1], keepdims=1),
                                   helper.make_node("Mul", ["c", "m"], ["y"])], []),
    "softmax_axis1": lambda rng: ([helper.make_node("Softmax", ["c"], ["y"], axis=1)], []),
    "softmax_axis2": lambda rng: ([helper.make_node("Softmax", ["c"], ["y"], axis=2)], []),
    "concat_axis3": lambda rng: ([helper.make_node("Relu", ["c"], ["r"]),
                                  helper.make_node("Concat", ["c", "r"], ["cc"], axis=3),
                                  helper.make_node("MaxPool", ["cc"], ["y"], kernel_shape=[1, 2], strides=[1, 2])],
                                 []),
}


@pytest.mark.parametrize("name", sorted(OP_GRAPHS))
@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_quantize_static_graphs_equal_onnxruntime(name, dtype):
    shape = (1, 3, 6, 6)
    for seed in range(3):
        fm = conv_then(OP_GRAPHS[name], shape, seed)
        rng = np.random.default_rng(seed)
        try:
            q = quantize_qdq(fm, [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)],
                             per_channel=bool(seed % 2), activation_type=dtype, float_softmax=False)
        except Exception as e:        # noqa: BLE001
            pytest.skip(f"quantize_static cannot quantize {name}: {e}")
        xs = rng.normal(0, 1.5, (10,) + shape).astype(np.float32)
        xs[0], xs[1] = 0.0, 40.0
        for x in xs:
            compare(q, x)


def broadcast_model(op, left, right, s, z, dtype):
    """x [1, 4, 5, 6] (Q/DQ) and operands made from it by quantized pools of other shapes: `left`/`right` name
    'x' or a pool window (kh, kw) (MaxPool) or 'gap'; out = op(left, right), broadcast."""
    nodes, inits = [], []
    x = qdq(nodes, inits, "input", s[0], z[0], dtype)

    def operand(spec, k):
        if spec == "x":
            return x
        if spec == "gap":
            nodes.append(helper.make_node("GlobalAveragePool", [x], [f"p{k}"]))
            return qdq(nodes, inits, f"p{k}", s[1 + k], z[1 + k], dtype)
        nodes.append(helper.make_node("MaxPool", [x], [f"p{k}"], kernel_shape=list(spec), strides=list(spec)))
        return qdq(nodes, inits, f"p{k}", s[0], z[0], dtype)

    a, b = operand(left, 0), operand(right, 1)
    nodes.append(helper.make_node(op, [a, b], ["y"]))
    y = qdq(nodes, inits, "y", s[3], z[3], dtype)
    nodes.append(helper.make_node("Identity", [y], ["output"]))
    return make_model(nodes, inits, [("input", (1, 4, 5, 6))], (1, 4, 5, 6))


PAIRS = [("x", "gap"), ("gap", "x"), ("x", (5, 1)), ((1, 6), "x"), ((5, 1), (1, 6)), ((1, 6), (5, 1)),
         ("x", (5, 6)), ("x", "x")]


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_binary_ops_with_broadcasting_equal_onnxruntime(op, dtype):
    rng = np.random.default_rng(11)
    for left, right in PAIRS:
        for _ in range(3):
            s = [np.float32(10 ** rng.uniform(-2.5, -0.5)) for _ in range(4)]
            z = [_zp(rng, dtype) for _ in range(4)]
            m = broadcast_model(op, left, right, s, z, dtype)
            for k in range(4):
                x = rng.normal(0, 1.5, (1, 4, 5, 6)).astype(np.float32)
                if k == 0:
                    x[0, :, ::2] = 50.0
                compare(m, x)


def test_cmsis_nn_profile_refuses_onnx_only_ops():
    m = unary_model("HardSigmoid", {}, 0.05, 0, 0.04, 3, "int8")
    model = load_onnx_qdq(m)
    with pytest.raises(N6Error, match="does not implement op hard_sigmoid"):
        run_model(model, all_codes_input(0.05, 0, "int8"), "cmsis-nn", "float32")


def test_cmsis_nn_profile_runs_sigmoid_as_tflite_logistic():
    """Under cmsis-nn a QDQ Sigmoid is TFLite's int8 LOGISTIC (output 1/256, -128), which differs from ORT's."""
    m = unary_model("Sigmoid", {}, 0.05, 0, 1 / 256, -128, "int8")
    model = load_onnx_qdq(m)
    got = run_model(model, all_codes_input(0.05, 0, "int8"), "cmsis-nn", "float32")["output"]
    assert got.shape == (1, 256) and got.min() >= -128 and np.all(np.diff(got.astype(int)) >= 0)
    m = unary_model("Sigmoid", {}, 0.05, 0, 0.01, 0, "int8")
    with pytest.raises(N6Error, match="scale 0.00390625 and zero-point -128"):
        run_model(load_onnx_qdq(m), all_codes_input(0.05, 0, "int8"), "cmsis-nn", "float32")


def _has_fma3():
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " fma " in flags.replace("\n", " ") and " avx2 " in flags.replace("\n", " ")


@pytest.mark.skipif(not _has_fma3(), reason="onnxruntime dispatches its FMA3 logistic/tanh kernels on AVX2+FMA CPUs "
                                            "only (the emulated ones)")
@pytest.mark.parametrize("op", ["Sigmoid", "Tanh"])
def test_mlas_float_kernels_bit_exact(op):
    """The float functions behind the tables equal onnxruntime's float Sigmoid/Tanh bit for bit on 64k values
    (this is where the FMA3 kernel's fused multiply-adds show; the quantized tables rarely see them)."""
    from emu.graph.ops.unary import mlas_logistic_fma3, mlas_tanh_fma3
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 4, 40000), rng.uniform(-20, 20, 24000),
                        np.linspace(-0.01, 0.01, 1536)]).astype(np.float32).reshape(1, -1)
    g = helper.make_graph([helper.make_node(op, ["input"], ["output"])], "f",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(x.shape))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    (ref,) = ort_session(m).run(None, {"input": x})
    got = (mlas_logistic_fma3 if op == "Sigmoid" else mlas_tanh_fma3)(x)
    diff = got.view(np.int32) != ref.view(np.int32)
    assert not diff.any(), f"{int(diff.sum())} of {diff.size} differ, e.g. x={x[diff][0]!r}: {got[diff][0]!r} vs " \
                           f"{ref[diff][0]!r}"


def test_inspect_lists_every_unsupported_op(tmp_path):
    """`n6emu inspect` on an unsupported model: one line naming every unsupported op and its layers."""
    import io

    from emu.cli import main
    nodes, inits = [], []
    x = qdq(nodes, inits, "input", 0.05, 0, "int8")
    nodes += [helper.make_node("Elu", [x], ["a"], name="elu_1"), helper.make_node("Erf", ["a"], ["b"], name="erf"),
              helper.make_node("Elu", ["b"], ["c"], name="elu_2")]
    y = qdq(nodes, inits, "c", 0.05, 0, "int8")
    nodes.append(helper.make_node("Identity", [y], ["output"]))
    path = tmp_path / "m.onnx"
    onnx.save(make_model(nodes, inits, [("input", (1, 8))], (1, 8)), str(path))
    out, err = io.StringIO(), io.StringIO()
    assert main(["inspect", str(path)], out=out, err=err) != 0
    msg = err.getvalue().strip()
    assert "\n" not in msg
    assert "unsupported ops: Elu (2 layers: 'elu_1', 'elu_2'), Erf (1 layer: 'erf')" in msg


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_reduce_mean_trailing_axes_equal_onnxruntime(dtype):
    """DQ -> float ReduceMean -> Q over trailing axes of many row lengths (Eigen's summation order and the rows'
    16-byte alignment matter), keepdims 0/1, opset 18 axes input."""
    rng = np.random.default_rng(5)
    for shape, axes, keep in [((1, 4, 5, 6), [2, 3], 1), ((1, 3, 7, 9), [-2, -1], 0), ((1, 8, 10, 12), [3], 1),
                              ((1, 2, 33, 1), [2, 3], 1), ((1, 5, 3, 3), [1, 2, 3], 0), ((1, 6, 1, 13), [3], 0),
                              ((1, 37), [1], 1), ((2, 3, 11), [2], 1)]:
        for _ in range(3):
            s = [np.float32(10 ** rng.uniform(-2.5, -0.5)) for _ in range(2)]
            z = [_zp(rng, dtype) for _ in range(2)]
            nodes, inits = [], []
            x = qdq(nodes, inits, "input", s[0], z[0], dtype)
            inits.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
            nodes.append(helper.make_node("ReduceMean", [x, "axes"], ["m"], keepdims=keep))
            y = qdq(nodes, inits, "m", s[1], z[1], dtype)
            nodes.append(helper.make_node("Identity", [y], ["output"]))
            rank = len(shape)
            ax = sorted(a % rank for a in axes)
            out = tuple(1 if i in ax else d for i, d in enumerate(shape)) if keep else \
                tuple(d for i, d in enumerate(shape) if i not in ax)
            m = make_model(nodes, inits, [("input", shape)], out, opset=18)
            for k in range(4):
                xv = rng.normal(0, 1.5, shape).astype(np.float32)
                if k == 0:
                    xv[...] = 50.0
                compare(m, xv)


def _reduce_mean_model(shape, axes, keep, s, z, dtype):
    nodes, inits = [], []
    x = qdq(nodes, inits, "input", s[0], z[0], dtype)
    inits.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
    nodes.append(helper.make_node("ReduceMean", [x, "axes"], ["m"], keepdims=keep))
    y = qdq(nodes, inits, "m", s[1], z[1], dtype)
    nodes.append(helper.make_node("Identity", [y], ["output"]))
    rank = len(shape)
    ax = sorted(a % rank for a in axes)
    out = tuple(1 if i in ax else d for i, d in enumerate(shape)) if keep else \
        tuple(d for i, d in enumerate(shape) if i not in ax)
    return make_model(nodes, inits, [("input", shape)], out, opset=18)


# leading/middle axes: ORT's RK order (nothing kept before the run once size-1 dimensions are dropped) and KRK order
# (MLAS's M = 1 SGEMM, groups of four rows), plus runs that become trailing once size-1 dimensions are dropped
NON_TRAILING = [((1, 4, 5, 6), [1]), ((1, 8, 5, 6), [1, 2]), ((2, 4, 5, 6), [1]), ((2, 7, 5, 6), [1, 2]),
                ((1, 16, 49), [1]), ((3, 13, 10), [1]), ((2, 30, 7), [-2]), ((4, 6, 3, 5), [1, 2]),
                ((1, 1, 9, 5), [1, 2]), ((2, 3, 4, 1), [1, 2]), ((1, 5, 1, 7), [1, 3]), ((2, 1, 6, 3), [1, 2]),
                ((5, 3, 2), [0]), ((2, 3, 4, 5), [0, 1]), ((1, 2, 3), [0, 1]), ((3, 5, 1, 2), [1])]


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_reduce_mean_leading_and_middle_axes_equal_onnxruntime(dtype):
    """DQ -> ReduceMean -> Q over non-trailing axes ([1], [1, 2] of NCHW/NCW, batch 1 and > 1, keepdims 0/1): 16
    shapes x 3 quantizations x 4 inputs (one saturating) per dtype, bit for bit against onnxruntime."""
    rng = np.random.default_rng(17)
    n = 0
    for shape, axes in NON_TRAILING:
        for rep in range(3):
            s = [np.float32(10 ** rng.uniform(-2.5, -0.5)), np.float32(10 ** rng.uniform(-3, -1))]
            z = [_zp(rng, dtype) for _ in range(2)]
            m = _reduce_mean_model(shape, axes, rep % 2, s, z, dtype)
            for k in range(4):
                xv = rng.normal(0, 1.5, shape).astype(np.float32) * np.float32(rng.choice([1, 10]))
                if k == 0:
                    xv[...] = np.where(rng.random(shape) < 0.5, 60.0, -60.0).astype(np.float32)
                compare(m, xv)
                n += 1
    assert n == 192


def test_reduce_mean_leading_axes_batched_keeps_each_samples_order():
    """A batch of N samples folded into one buffer stays in ORT's RK order (outer = 1 per sample), not KRK: columns
    of 32 random codes followed by their negatives (shuffled) sum to 0 exactly, so the output (a very fine scale)
    is the rounding error of the float sum, which differs between the two orders."""
    from emu.graph.onnx_qdq import ModelRunner
    rng = np.random.default_rng(23)
    s_in = np.float32(0.0123457)
    m = _reduce_mean_model((1, 64, 3, 5), [1], 1, [s_in, np.float32(1e-8)], [0, 0], "int8")
    runner = ModelRunner(load_onnx_qdq(m), "onnxruntime")
    sess = ort_session(m)
    half = rng.integers(-127, 128, (6, 1, 32, 3, 5))
    codes = np.concatenate([half, -rng.permuted(half, axis=2)], axis=2)
    xs = (codes * s_in).astype(np.float32)
    got = runner.run(xs, "float32")["float"]
    for i in range(6):
        (ref,) = sess.run(None, {"input": xs[i]})
        assert np.array_equal(got[i].view(np.int32), ref.view(np.int32)), f"sample {i}"


@pytest.mark.parametrize("shape,axes", [((1, 64, 15), [1]), ((3, 64, 15), [1]), ((2, 8, 8, 15), [1, 2]),
                                        ((1, 8, 8, 15), [1, 2])])
def test_reduce_mean_summation_order_is_onnxruntimes(shape, axes):
    """Columns of 32 random codes and their negatives (shuffled) sum to 0 exactly: at a very fine output scale the
    output is the float sum's rounding error, which tells ORT's RK order (sequential rows) from its KRK order (MLAS's
    groups of four rows); 8 inputs per shape, bit for bit."""
    rng = np.random.default_rng(29)
    s_in = np.float32(0.0123457)
    m = _reduce_mean_model(shape, axes, 1, [s_in, np.float32(1e-8)], [0, 0], "int8")
    model = load_onnx_qdq(m)
    red = [a for a in range(len(shape)) if a in axes]
    for _ in range(8):
        moved = np.moveaxis(np.zeros(shape), red, list(range(len(red))))
        flat = moved.reshape(64, -1)
        half = rng.integers(-127, 128, (32, flat.shape[1]))
        flat = np.concatenate([half, -rng.permuted(half, axis=0)])
        codes = np.moveaxis(flat.reshape(moved.shape), list(range(len(red))), red)
        compare(m, (codes * s_in).astype(np.float32))
    assert model.graph.nodes[-1].op == "reduce_mean"


def test_reduce_mean_over_separate_runs_is_named():
    m = _reduce_mean_model((1, 4, 3, 3), [1, 3], 1, [0.05, 0.05], [0, 0], "int8")
    with pytest.raises(N6Error, match=r"ReduceMean over axes \[1, 3\] of a 4-D tensor of shape \[1, 4, 3, 3\] is "
                                      r"unsupported; the reduced axes \(ignoring size-1 ones\) must be one contiguous"):
        load_onnx_qdq(m)
