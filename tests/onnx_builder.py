"""Tests' builder of randomized float ONNX graphs, quantized to QDQ with onnxruntime quantize_static.

build_float_model(spec, seed) -> onnx.ModelProto (float32, NCHW input [1,C,H,W]) from a small layer list;
quantize_qdq(float_model, calibration, per_channel, activation_type) -> QDQ onnx.ModelProto (bytes on disk
are not needed: onnxruntime quantizes through temporary files which are removed);
ort_session(model) -> onnxruntime InferenceSession at the default optimization level.
onnxruntime is the oracle (a test extra): without it the tests using these helpers skip, saying how to install it.

Layer spec entries (dicts): conv(cout,k,stride,pad,group,dilation,relu|relu6|none), maxpool(k,stride,pad),
avgpool(k,stride,pad), gap, flatten, gemm(out), add_branch (conv branch summed with its input),
mul_branch, concat_branch, transpose_hw.
"""
import os
import tempfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
ORT_MISSING = 'oracle unavailable: onnxruntime is not installed; pip install -e ".[test]"'


def onnxruntime():
    """The onnxruntime module, or a skip of the calling test naming how to install it."""
    return pytest.importorskip("onnxruntime", reason=ORT_MISSING)


class _Builder:
    def __init__(self, rng):
        self.rng = rng
        self.nodes, self.inits, self.k = [], [], 0

    def name(self, base):
        self.k += 1
        return f"{base}_{self.k}"

    def const(self, base, arr):
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def node(self, op, inputs, **attrs):
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(op), **attrs))
        return out

    def conv(self, x, cin, cout, k, stride=1, pad=0, group=1, dilation=1, act="none", bias=True):
        kh, kw = (k, k) if isinstance(k, int) else k
        w = self.rng.normal(0, 1.0 / np.sqrt(kh * kw * cin / group), (cout, cin // group, kh, kw)).astype(np.float32)
        ins = [x, self.const("w", w)]
        if bias:
            ins.append(self.const("b", self.rng.normal(0, 0.2, cout).astype(np.float32)))
        pads = [pad] * 4 if isinstance(pad, int) else list(pad)
        y = self.node("Conv", ins, kernel_shape=[kh, kw], strides=[stride, stride], pads=pads, group=group,
                      dilations=[dilation, dilation])
        return self.act(y, act)

    def act(self, y, act):
        if act == "relu":
            return self.node("Relu", [y])
        if act == "relu6":
            return self.node("Clip", [y, self.const("lo", np.float32(0)), self.const("hi", np.float32(6))])
        return y


def out_hw(h, k, s, p0, p1, d=1):
    return (h + p0 + p1 - ((k - 1) * d + 1)) // s + 1


def build_float_model(spec, in_shape, seed=0, softmax=True):
    """Float32 model from a layer list `spec` applied to an NCHW input `in_shape` = (1, C, H, W)."""
    rng = np.random.default_rng(seed)
    b = _Builder(rng)
    x = "input"
    c, h, w = in_shape[1], in_shape[2], in_shape[3]
    flat = None
    for layer in spec:
        kind = layer["op"]
        if kind == "conv":
            k = layer.get("k", 3)
            s, p, g, d = layer.get("stride", 1), layer.get("pad", 0), layer.get("group", 1), layer.get("dilation", 1)
            cout = layer.get("cout", c) if g == 1 else c * layer.get("mult", 1) if g == c else layer["cout"]
            x = b.conv(x, c, cout, k, s, p, g, d, layer.get("act", "none"), layer.get("bias", True))
            kh, kw = (k, k) if isinstance(k, int) else k
            h, w, c = out_hw(h, kh, s, p, p, d), out_hw(w, kw, s, p, p, d), cout
        elif kind in ("maxpool", "avgpool"):
            k, s, p = layer.get("k", 2), layer.get("stride", 2), layer.get("pad", 0)
            attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)
            x = b.node("MaxPool" if kind == "maxpool" else "AveragePool", [x], **attrs)
            h, w = out_hw(h, k, s, p, p), out_hw(w, k, s, p, p)
        elif kind == "gap":
            x = b.node("GlobalAveragePool", [x])
            h = w = 1
        elif kind == "flatten":
            x = b.node("Flatten", [x], axis=1)
            flat = c * h * w
        elif kind == "gemm":
            n_in = flat
            wt = rng.normal(0, 1.0 / np.sqrt(n_in), (layer["out"], n_in)).astype(np.float32)
            bias = rng.normal(0, 0.2, layer["out"]).astype(np.float32)
            x = b.node("Gemm", [x, b.const("fw", wt), b.const("fb", bias)], transB=1)
            x = b.act(x, layer.get("act", "none"))
            flat = layer["out"]
        elif kind == "add_branch":
            y = b.conv(x, c, c, 3, 1, 1, 1, 1, "relu")
            x = b.node("Add", [x, y])
        elif kind == "mul_branch":
            y = b.conv(x, c, c, 1, 1, 0, 1, 1, "none")
            x = b.node("Mul", [x, y])
        elif kind == "concat_branch":
            y = b.conv(x, c, layer.get("cout", c), 1, 1, 0, 1, 1, "relu")
            x = b.node("Concat", [x, y], axis=1)
            c = c + layer.get("cout", c)
        elif kind == "transpose_hw":
            x = b.node("Transpose", [x], perm=[0, 1, 3, 2])
            h, w = w, h
        else:
            raise ValueError(f"unknown layer kind {kind}")
    if softmax:
        x = b.node("Softmax", [x], axis=-1)
    out_shape = [1, flat] if flat is not None else [1, c, h, w]
    b.nodes[-1].output[0] = "output"
    graph = helper.make_graph(b.nodes, "rand", [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(in_shape))],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


class _Reader:
    def __init__(self, name, batches):
        self.it = iter([{name: x} for x in batches])

    def get_next(self):
        return next(self.it, None)


def quantize_qdq(float_model, calibration, per_channel=True, activation_type="int8", weight_type="int8",
                 extra_options=None, float_softmax=True, op_types_to_quantize=None):
    """onnxruntime.quantization.quantize_static in QDQ format; calibration = list of float32 inputs.
    float_softmax: keep Softmax float (nodes_to_exclude, the ST tail); False quantizes it (QLinearSoftmax).
    op_types_to_quantize: None (quantize_static's default: every op its QDQ registry knows; LSTM/GRU stay float
    with float weights) or a list (e.g. including 'LSTM' / 'GRU': their inputs, weights and outputs get Q/DQ)."""
    onnxruntime()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    qt = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "f.onnx"), os.path.join(d, "q.onnx")
        onnx.save(float_model, src)
        quantize_static(src, dst, _Reader(float_model.graph.input[0].name, calibration),
                        quant_format=QuantFormat.QDQ, per_channel=per_channel, activation_type=qt[activation_type],
                        weight_type=qt[weight_type], calibrate_method=CalibrationMethod.MinMax,
                        extra_options=extra_options or {}, op_types_to_quantize=op_types_to_quantize,
                        nodes_to_exclude=[n.name for n in float_model.graph.node
                                          if float_softmax and n.op_type == "Softmax"])
        return onnx.load(dst)


def ort_session(model, optimized_path=None):
    ort = onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def intermediate_model(model, names):
    """A copy of `model` whose graph outputs are the tensors `names` (for per-tensor comparison)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    for n in names:
        m.graph.output.append(helper.make_empty_tensor_value_info(n))
    return m


def strip_softmax(model):
    """A copy of a model ending in DequantizeLinear -> Softmax whose output is the DequantizeLinear's (upstream
    nodes untouched, so onnxruntime fuses them the same way)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    out = m.graph.output[0].name
    sm = [n for n in m.graph.node if n.op_type == "Softmax" and n.output[0] == out][0]
    m.graph.node.remove(sm)
    for n in m.graph.node:
        for i, o in enumerate(n.output):
            if o == sm.input[0]:
                n.output[i] = out
    return m


def matmul_add_model(seed=0):
    """Conv -> Relu -> GlobalAveragePool -> Reshape -> MatMul -> Add (a PyTorch-style Linear), float32."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["input", "wc"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Reshape", ["g", "shape"], ["f"], name="reshape"),
             helper.make_node("MatMul", ["f", "w2"], ["m"], name="matmul"),
             helper.make_node("Add", ["m", "b2"], ["output"], name="add")]
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (4, 2, 3, 3)).astype(np.float32), "wc"),
             numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
             numpy_helper.from_array(rng.normal(0, 0.3, (4, 5)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(0, 0.3, 5).astype(np.float32), "b2")]
    g = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 6, 6])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    return m


def rnn_model(op, steps, input_size, hidden, output="Y_h", direction="forward", bias=True, initial_h=False,
              initial_c=False, linear_before_reset=0, quantized_weights=True, seed=0, weight_scale=0.3,
              x_quant=(0.05, 0), out_quant=(0.01, 0), dtype="int8", attrs=None):
    """X [steps, 1, input_size] -> QuantizeLinear -> DequantizeLinear -> LSTM / GRU -> the model output.
    Weights (W, R, B, initial_h/c): int8 per tensor through DequantizeLinear (quantized_weights) or float
    initializers. output: 'Y', 'Y_h' or 'Y_c' -> QuantizeLinear(out_quant) -> DequantizeLinear -> 'output'; or None:
    every LSTM/GRU output is a float model output (for float-level comparison). attrs: extra node attributes.
    Returns (model, dict of the float values onnxruntime computes for W, R, B, h0, c0 (absent ones None))."""
    rng = np.random.default_rng(seed)
    gates = 4 if op == "LSTM" else 3
    n_dir = 2 if direction == "bidirectional" else 1
    np_t = np.int8 if dtype == "int8" else np.uint8
    nodes, inits, vals = [], [], {}
    inits += [numpy_helper.from_array(np.float32(x_quant[0]), "x_s"), numpy_helper.from_array(np_t(x_quant[1]), "x_z")]
    nodes += [helper.make_node("QuantizeLinear", ["input", "x_s", "x_z"], ["x_q"]),
              helper.make_node("DequantizeLinear", ["x_q", "x_s", "x_z"], ["x"])]

    def weight(name, shape, sd):
        f = (rng.normal(0, 1, shape) * sd).astype(np.float32)
        if not quantized_weights:
            inits.append(numpy_helper.from_array(f, name))
            vals[name] = f
            return name
        s = np.float32(max(float(np.abs(f).max()), 1e-3) / 127)
        q = np.clip(np.rint(f / s), -127, 127).astype(np.int8)
        inits.extend([numpy_helper.from_array(q, name + "_q"), numpy_helper.from_array(s, name + "_s"),
                      numpy_helper.from_array(np.int8(0), name + "_z")])
        nodes.append(helper.make_node("DequantizeLinear", [name + "_q", name + "_s", name + "_z"], [name]))
        vals[name] = (q.astype(np.float32) * s).astype(np.float32)
        return name

    ins = ["x", weight("W", (n_dir, gates * hidden, input_size), weight_scale),
           weight("R", (n_dir, gates * hidden, hidden), weight_scale),
           weight("B", (n_dir, 2 * gates * hidden), 0.3) if bias else "", "",
           weight("h0", (n_dir, 1, hidden), 0.5) if initial_h else ""]
    if op == "LSTM":
        ins.append(weight("c0", (n_dir, 1, hidden), 1.0) if initial_c else "")
    while ins[-1] == "":
        ins.pop()
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node_attrs = dict(hidden_size=hidden, direction=direction)
    if op == "GRU":
        node_attrs["linear_before_reset"] = linear_before_reset
    node_attrs.update(attrs or {})
    nodes.append(helper.make_node(op, ins, outs, name="rnn", **node_attrs))
    out_shapes = dict(Y=[steps, n_dir, 1, hidden], Y_h=[n_dir, 1, hidden], Y_c=[n_dir, 1, hidden])
    if output is None:
        graph_outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, out_shapes[o]) for o in outs]
    else:
        inits += [numpy_helper.from_array(np.float32(out_quant[0]), "o_s"),
                  numpy_helper.from_array(np_t(out_quant[1]), "o_z")]
        nodes += [helper.make_node("QuantizeLinear", [output, "o_s", "o_z"], ["o_q"]),
                  helper.make_node("DequantizeLinear", ["o_q", "o_s", "o_z"], ["output"])]
        graph_outs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shapes[output])]
    g = helper.make_graph(nodes, "rnn", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                       [steps, 1, input_size])], graph_outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m, dict(W=vals["W"], R=vals["R"], B=vals.get("B"), h0=vals.get("h0"), c0=vals.get("c0"))


def kws_rnn_float_model(op="LSTM", hidden=32, n_classes=12, seed=0, conv_front=False):
    """A small recurrent KWS model, float32: features [1, 49, 10] -> Transpose to [49, 1, 10] -> LSTM/GRU(hidden)
    -> Y_h -> Squeeze -> Gemm(n_classes) -> Softmax. conv_front: [1, 1, 49, 10] -> Conv(8, 3x3) -> Relu ->
    Transpose/Reshape to [49, 1, 80] first (then quantize_static quantizes the recurrent input even when it leaves
    the LSTM/GRU float)."""
    rng = np.random.default_rng(seed)
    gates = 4 if op == "LSTM" else 3
    nodes, inits = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    if conv_front:
        in_shape, feat = [1, 1, 49, 10], 80
        nodes += [helper.make_node("Conv", ["input", const("cw", rng.normal(0, 0.4, (8, 1, 3, 3)).astype(np.float32)),
                                            const("cb", rng.normal(0, 0.1, 8).astype(np.float32))], ["c"],
                                   pads=[1, 1, 1, 1], name="conv"),
                  helper.make_node("Relu", ["c"], ["cr"], name="relu"),
                  helper.make_node("Transpose", ["cr"], ["ct"], perm=[2, 0, 1, 3], name="to_time_major"),
                  helper.make_node("Reshape", ["ct", const("seq_shape", np.array([49, 1, feat], np.int64))], ["xt"],
                                   name="to_sequence")]
    else:
        in_shape, feat = [1, 49, 10], 10
        nodes.append(helper.make_node("Transpose", ["input"], ["xt"], perm=[1, 0, 2], name="to_time_major"))
    w = rng.normal(0, 1.0 / np.sqrt(feat), (1, gates * hidden, feat)).astype(np.float32)
    r = rng.normal(0, 1.0 / np.sqrt(hidden), (1, gates * hidden, hidden)).astype(np.float32)
    b = rng.normal(0, 0.1, (1, 2 * gates * hidden)).astype(np.float32)
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    nodes += [helper.make_node(op, ["xt", const("W", w), const("R", r), const("B", b)], outs, hidden_size=hidden,
                               name=op.lower()),
              helper.make_node("Squeeze", ["Y_h", const("axes0", np.array([0], np.int64))], ["h"], name="last"),
              helper.make_node("Gemm", ["h", const("fw", rng.normal(0, 0.3, (n_classes, hidden)).astype(np.float32)),
                                        const("fb", rng.normal(0, 0.1, n_classes).astype(np.float32))], ["logits"],
                               transB=1, name="fc"),
              helper.make_node("Softmax", ["logits"], ["output"], axis=-1, name="softmax")]
    g = helper.make_graph(nodes, "kws_rnn", [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, n_classes])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m
