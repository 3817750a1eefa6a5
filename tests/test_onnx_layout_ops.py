"""Float layout-only ONNX ops (Transpose, Reshape, Squeeze, Unsqueeze, Flatten, Identity) around a QDQ graph:
before the first QuantizeLinear (the tf2onnx Keras route: an NHWC input and a leading NHWC -> NCHW Transpose),
between DequantizeLinear/QuantizeLinear pairs and after the last DequantizeLinear. Oracle: onnxruntime (default
optimizations) on the model quantize_static made; the emulator's float output must equal it bit for bit."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from emu.errors import N6Error
from emu.graph.onnx_qdq import load_onnx_qdq, run_model
from onnx_builder import OPSET, ort_session, quantize_qdq, strip_softmax

pytest.importorskip("onnxruntime", reason='oracle unavailable: pip install -e ".[test]"')


class G:
    """A tiny float ONNX graph writer (names are generated)."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.k = [], [], 0

    def const(self, arr):
        self.k += 1
        n = f"c{self.k}"
        self.inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def op(self, op, inputs, **attrs):
        self.k += 1
        out = f"{op.lower()}_{self.k}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.k}", **attrs))
        return out

    def conv(self, x, cin, cout, k=3, pad=1, group=1, stride=1, dilation=1, relu=True, one_d=False):
        kshape = (k,) if one_d else (k, k)
        w = self.rng.normal(0, 1.0 / np.sqrt(k * (1 if one_d else k) * cin / group),
                            (cout, cin // group) + kshape).astype(np.float32)
        b = self.rng.normal(0, 0.2, cout).astype(np.float32)
        nd = len(kshape)
        pads = [pad] * (2 * nd) if isinstance(pad, int) else list(pad)
        y = self.op("Conv", [x, self.const(w), self.const(b)], kernel_shape=list(kshape), pads=pads, group=group,
                    strides=[stride] * nd, dilations=[dilation] * nd)
        return self.op("Relu", [y]) if relu else y

    def gemm(self, x, n_in, n_out):
        w = self.rng.normal(0, 1.0 / np.sqrt(n_in), (n_out, n_in)).astype(np.float32)
        return self.op("Gemm", [x, self.const(w), self.const(self.rng.normal(0, 0.2, n_out).astype(np.float32))],
                       transB=1)

    def model(self, x_shape, y, y_shape):
        self.nodes[-1].output[0] = "output"
        for n in self.nodes:
            for i, name in enumerate(n.input):
                if name == y:
                    n.input[i] = "output"
        g = helper.make_graph(self.nodes, "layout", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                   list(x_shape))],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(y_shape))], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def keras_kws(seed=0, shape=(1, 10, 12, 1), n_classes=5, softmax=True):
    """Keras-style DS-CNN as tf2onnx writes it: NHWC input, Transpose to NCHW, convs, GAP, Reshape, Gemm."""
    g = G(seed)
    c = shape[3]
    x = g.op("Transpose", ["input"], perm=[0, 3, 1, 2])
    x = g.conv(x, c, 8, 3, 1, stride=2)
    x = g.conv(x, 8, 8, 3, 1, group=8)
    x = g.conv(x, 8, 8, 1, 0)
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Reshape", [x, g.const(np.array([1, 8], np.int64))])
    x = g.gemm(x, 8, n_classes)
    if softmax:
        x = g.op("Softmax", [x], axis=-1)
    return g.model(shape, x, (1, n_classes))


def calib(shape, rng, n=6):
    return [rng.normal(0, 1, shape).astype(np.float32) for _ in range(n)]


def inputs(shape, rng, n=12):
    xs = rng.normal(0, 1.3, (n,) + tuple(shape)).astype(np.float32)
    xs[0] = 0.0
    xs[1] = 60.0                 # saturates the input QuantizeLinear high
    xs[2] = -60.0                # and low
    return xs


def assert_equal_ort(q, xs, profile="onnxruntime", io_layout="original"):
    model = load_onnx_qdq(q, io_layout=io_layout)
    ref_model = strip_softmax(q) if q.graph.node[-1].op_type == "Softmax" else q
    sess = ort_session(ref_model)
    for i, x in enumerate(xs):
        (ref,) = sess.run(None, {"input": x})
        got = run_model(model, x, profile, "float32")
        f = got["float"]
        if model.output_tail == "dequantize+softmax":     # compare the dequantized output (before the float softmax)
            f = (got["output"].astype(np.int32) - model.output_zero_point).astype(np.float32) * model.output_scale
        assert f.shape == ref.shape, (f.shape, ref.shape)
        diff = f.view(np.int32) != ref.view(np.int32)
        assert not diff.any(), f"input {i}: {int(diff.sum())}/{diff.size} differ, first at {np.argwhere(diff)[0]}"
    return model


@pytest.mark.parametrize("act_type", ["int8", "uint8"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_keras_nhwc_model_with_leading_transpose(act_type, per_channel):
    shape = (1, 10, 12, 1)
    rng = np.random.default_rng(1)
    fm = keras_kws(1, shape)
    q = quantize_qdq(fm, calib(shape, rng), per_channel=per_channel, activation_type=act_type)
    first = [n for n in q.graph.node if "input" in n.input][0]
    assert first.op_type == "Transpose"             # the float Transpose stands before the first QuantizeLinear
    model = assert_equal_ort(q, inputs(shape, rng))
    g = model.graph
    # the input buffer keeps the model's NHWC layout; the Transpose costs nothing (data already channel-last)
    assert g.tensors[g.inputs[0]].shape == shape and model.input_shape == shape
    assert g.nodes[0].op == "conv2d" and g.nodes[0].inputs[0] == g.inputs[0]


def test_keras_nhwc_model_multichannel_input_and_cmsis_profile_runs():
    shape = (1, 9, 7, 3)
    rng = np.random.default_rng(2)
    q = quantize_qdq(keras_kws(2, shape), calib(shape, rng))
    assert_equal_ort(q, inputs(shape, rng))
    model = load_onnx_qdq(q)
    out = run_model(model, inputs(shape, rng)[3], "cmsis-nn", "float32")
    assert out["output"].shape == (1, 5)


def random_layout_model(seed):
    """Random float layout chains before the first quantized op, in the middle and after the last one."""
    rng = np.random.default_rng(seed)
    g = G(seed)
    h, w, c = int(rng.integers(4, 9)), int(rng.integers(4, 9)), int(rng.integers(1, 4))
    lead = int(rng.integers(0, 6))
    if lead == 0:                       # Keras NHWC
        in_shape = (1, h, w, c)
        x = g.op("Transpose", ["input"], perm=[0, 3, 1, 2])
    elif lead == 1:                     # flat features reshaped to NHWC, then to NCHW
        in_shape = (1, h * w * c)
        x = g.op("Reshape", ["input", g.const(np.array([1, h, w, c], np.int64))])
        x = g.op("Transpose", [x], perm=[0, 3, 1, 2])
    elif lead == 2:                     # [1, H, W] mel x frames, Unsqueeze to one channel
        c = 1
        in_shape = (1, h, w)
        x = g.op("Identity", ["input"])
        x = g.op("Unsqueeze", [x, g.const(np.array([1], np.int64))])
    elif lead == 3:                     # frame-major [1, W, H, C] -> NCHW by (0, 3, 2, 1)
        in_shape = (1, w, h, c)
        x = g.op("Transpose", ["input"], perm=[0, 3, 2, 1])
    elif lead == 4:                     # [1, H, W, C] + Squeeze of a leading axis pair
        in_shape = (1, 1, h, w, c)
        x = g.op("Squeeze", ["input", g.const(np.array([0], np.int64))])
        x = g.op("Unsqueeze", [x, g.const(np.array([0], np.int64))])
        x = g.op("Squeeze", [x, g.const(np.array([0], np.int64))])
        x = g.op("Reshape", [x, g.const(np.array([1, h, w, c], np.int64))])
        x = g.op("Transpose", [x], perm=[0, 3, 1, 2])
    else:                               # already NCHW, Flatten + Reshape back
        in_shape = (1, c, h, w)
        x = g.op("Flatten", ["input"], axis=2)
        x = g.op("Reshape", [x, g.const(np.array([1, c, h, w], np.int64))])
    cout = int(rng.integers(2, 6))
    x = g.conv(x, c, cout, 3, 1)
    mid = int(rng.integers(0, 3))
    if mid == 1:
        x = g.op("Transpose", [x], perm=[0, 1, 3, 2])
        h, w = w, h
    elif mid == 2:
        x = g.op("Identity", [x])
    x = g.conv(x, cout, cout, 3, 1, group=cout)
    tail = int(rng.integers(0, 5))
    if tail == 0:                       # NCHW -> NHWC output (Keras)
        x = g.op("Transpose", [x], perm=[0, 2, 3, 1])
        out_shape = (1, h, w, cout)
    elif tail == 1:
        x = g.op("Transpose", [x], perm=[0, 2, 3, 1])
        x = g.op("Reshape", [x, g.const(np.array([1, -1], np.int64))])
        out_shape = (1, h * w * cout)
    elif tail == 2:                     # PyTorch: GAP, Squeeze, Linear, Unsqueeze
        x = g.op("GlobalAveragePool", [x])
        x = g.op("Squeeze", [x, g.const(np.array([2, 3], np.int64))])
        x = g.gemm(x, cout, 4)
        x = g.op("Unsqueeze", [x, g.const(np.array([1], np.int64))])
        x = g.op("Identity", [x])
        out_shape = (1, 1, 4)
    elif tail == 3:
        x = g.op("Flatten", [x], axis=1)
        x = g.op("Softmax", [x], axis=-1)
        out_shape = (1, cout * h * w)
    else:
        x = g.op("Transpose", [x], perm=[0, 3, 2, 1])
        out_shape = (1, w, h, cout)
    return g.model(in_shape, x, out_shape), in_shape, rng


@pytest.mark.parametrize("seed", range(24))
def test_random_layout_chains_equal_onnxruntime(seed):
    fm, shape, rng = random_layout_model(seed)
    q = quantize_qdq(fm, calib(shape, rng), per_channel=bool(seed % 2),
                     activation_type="uint8" if seed % 3 == 0 else "int8")
    model = assert_equal_ort(q, inputs(shape, rng, 8))
    assert model.input_shape == shape


def test_float_preprocessing_before_quantization_is_named():
    """A float op that is not layout-only before the first QuantizeLinear: the error names it and the rule."""
    g = G(0)
    x = g.conv("input", 1, 2, 3, 1)
    fm = g.model((1, 1, 6, 6), x, (1, 2, 6, 6))
    rng = np.random.default_rng(0)
    q = quantize_qdq(fm, calib((1, 1, 6, 6), rng))
    q_in = [n for n in q.graph.node if "input" in n.input][0]
    assert q_in.op_type == "QuantizeLinear"
    q_in.input[0] = "scaled"                        # input -> float Mul (normalisation) -> QuantizeLinear
    q.graph.initializer.append(numpy_helper.from_array(np.float32(2.0), "two"))
    q.graph.node.insert(0, helper.make_node("Mul", ["input", "two"], ["scaled"], name="normalise"))
    with pytest.raises(N6Error, match=r"reaches Mul 'normalise' before any QuantizeLinear; only layout ops"):
        load_onnx_qdq(q)


def test_device_chain_drives_keras_model(tmp_path):
    """[model].path at a tf2onnx-style NHWC model [1, 40, 49, 1] (mels x frames x 1): the device chain's input
    buffer is written mel-major in the model's own layout and the network equals onnxruntime."""
    from emu.device import Device
    shape = (1, 40, 49, 1)
    rng = np.random.default_rng(5)
    q = quantize_qdq(keras_kws(5, shape, n_classes=4), [rng.normal(-3, 2, shape).astype(np.float32)
                                                        for _ in range(6)])
    path = tmp_path / "keras_kws.onnx"
    onnx.save(q, str(path))
    (tmp_path / "dev.toml").write_text(
        f'[model]\npath = "{path.as_posix()}"\nprofile = "onnxruntime"\nrounding = "half-even"\n'
        f'[input]\nlayout = "mel-major"\n[app]\nsilence_gate = false\nclasses = ["a", "b", "c", "d"]\n')
    dev = Device(str(tmp_path / "dev.toml"))
    pcm = (rng.normal(0, 3000, 16000 * 2)).clip(-32768, 32767).astype(np.int16)
    feats, silence = dev.features(pcm)
    buf = dev.input_buffer(feats)
    assert buf.shape[1:] == shape
    out = dev.run(buf)
    model = load_onnx_qdq(q)
    sess = ort_session(strip_softmax(q))
    for p in range(buf.shape[0]):
        x = (buf[p].astype(np.float32) - np.float32(model.input_zero_point)) * model.input_scale
        (ref,) = sess.run(None, {"input": x})
        want = np.rint(ref / model.output_scale).astype(np.int32) + model.output_zero_point
        assert np.array_equal(out[p].astype(np.int32).reshape(want.shape), want), p
    assert len(dev.decide(out, silence)) == buf.shape[0]


# ---- Conv1D (3-D weights) as a 2-D convolution of height 1 ------------------------------------------------

def conv1d_case(seed):
    """One random Conv1D (kernel, stride, dilation, pads or auto_pad, groups) + optional 1-D pool."""
    rng = np.random.default_rng(seed)
    g = G(seed)
    c, length = int(rng.integers(1, 6)), int(rng.integers(8, 30))
    k, s, d = int(rng.integers(1, 8)), int(rng.integers(1, 4)), int(rng.choice([1, 1, 2, 3]))
    eff = (k - 1) * d + 1
    if eff > length:
        d = 1
        eff = k
    kind = int(rng.integers(0, 3))
    group = c if kind == 1 else (c if kind == 2 and c > 1 else 1)
    cout = c * int(rng.integers(1, 3)) if group == c and c > 1 else int(rng.integers(1, 9))
    if group == c and c > 1 and kind == 2:
        cout = c                                   # depthwise, multiplier 1
    w = g.rng.normal(0, 1.0 / np.sqrt(k * c / group), (cout, c // group, k)).astype(np.float32)
    ins = ["input", g.const(w)]
    if rng.random() < 0.8:
        ins.append(g.const(g.rng.normal(0, 0.3, cout).astype(np.float32)))
    auto = str(rng.choice(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    attrs = dict(kernel_shape=[k], strides=[s], dilations=[d], group=group)
    if auto == "NOTSET":
        attrs["pads"] = [int(rng.integers(0, k)), int(rng.integers(0, k))]
        out_len = (length + sum(attrs["pads"]) - eff) // s + 1
    else:
        attrs["auto_pad"] = auto
        if auto != "VALID":
            attrs["dilations"] = [1]               # onnxruntime refuses dilation with SAME_*
        out_len = -(-length // s) if auto != "VALID" else (length - eff) // s + 1
    x = g.op("Conv", ins, **attrs)
    act = str(rng.choice(["relu", "none", "clip"]))
    if act == "relu":
        x = g.op("Relu", [x])
    elif act == "clip":
        x = g.op("Clip", [x, g.const(np.float32(0)), g.const(np.float32(6))])
    pool = int(rng.integers(0, 4))
    if pool and out_len >= 2:
        pk = int(rng.integers(2, min(out_len, 4) + 1))
        x = g.op("MaxPool" if pool == 1 else "AveragePool", [x], kernel_shape=[pk], strides=[int(rng.integers(1, 3))],
                 pads=[int(rng.integers(0, pk)), 0] if pool == 2 else [0, 0])
    return g, (1, c, length), x, rng


@pytest.mark.parametrize("seed", range(40))
def test_random_conv1d_equals_onnxruntime(seed):
    g, shape, x, rng = conv1d_case(seed)
    sess_shape = _infer_out_shape(g, shape, x)
    fm = g.model(shape, x, sess_shape)
    q = quantize_qdq(fm, calib(shape, rng), per_channel=bool(seed % 2),
                     activation_type="uint8" if seed % 4 == 3 else "int8")
    model = assert_equal_ort(q, inputs(shape, rng, 8))
    ops = [n.op for n in model.graph.nodes]
    assert "conv2d" in ops or "depthwise_conv2d" in ops


def _infer_out_shape(g, shape, y):
    """Output shape of the float graph (run it once in onnxruntime)."""
    tmp = helper.make_graph(list(g.nodes), "probe", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                   list(shape))],
                            [helper.make_empty_tensor_value_info(y)], list(g.inits))
    mm = helper.make_model(tmp, opset_imports=[helper.make_opsetid("", OPSET)])
    mm.ir_version = 8
    (out,) = ort_session(mm).run(None, {"input": np.zeros(shape, np.float32)})
    return out.shape


def tc_resnet(seed=0, n_mels=40, frames=49, n_classes=6):
    """TC-ResNet-style KWS model (as PyTorch exports it): mels as channels of a 1-D convolution over time,
    residual blocks with strided Conv1D and a 1x1 shortcut, GlobalAveragePool, Flatten, Linear, Softmax."""
    g = G(seed)
    x = g.conv("input", n_mels, 16, 3, 1, one_d=True)
    c = 16
    for cout, dil in ((24, 1), (32, 2)):
        y = g.conv(x, c, cout, 9, 4, stride=2, one_d=True)
        y = g.conv(y, cout, cout, 9, 4 * dil, dilation=dil, relu=False, one_d=True)
        sc = g.conv(x, c, cout, 1, 0, stride=2, one_d=True)
        x = g.op("Relu", [g.op("Add", [y, sc])])
        c = cout
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x], axis=1)
    x = g.gemm(x, c, n_classes)
    x = g.op("Softmax", [x], axis=-1)
    return g.model((1, n_mels, frames), x, (1, n_classes))


@pytest.mark.parametrize("act_type", ["int8", "uint8"])
def test_tc_resnet_conv1d_kws_equals_onnxruntime(act_type):
    shape = (1, 40, 49)
    rng = np.random.default_rng(9)
    q = quantize_qdq(tc_resnet(9), calib(shape, rng), activation_type=act_type)
    model = assert_equal_ort(q, inputs(shape, rng, 16))
    assert model.input_shape == shape
    ops = [n.op for n in model.graph.nodes]
    assert ops.count("conv2d") == 7 and "avg_pool" in ops
