"""ONNX QDQ importer (onnxruntime quantize_static / PyTorch export) -> emu.graph.ir.Graph, with ST AI layout
rules, and the model's I/O boundary (ModelRunner). The arithmetic lives in emu.graph.profiles ("onnxruntime":
ORT/MLAS float32 requantization; "cmsis-nn": TFLite multipliers from the same scales), emu.graph.ops and Runtime.

    model = load_onnx_qdq("model_qdq.onnx")                 # OnnxModel(graph, io dtype, I/O quantization, tail)
    out = ModelRunner(model, "onnxruntime").run(x, input_boundary="float32")   # dict(output=int8, float=probs)

Layout (ST Edge AI for STM32N6, DESIGN §4): the int8 input/output buffers keep the ONNX model's layout and
shape (e.g. NCHW [1,1,40,49]); explicit runtime `transpose` nodes take a channel-first input to the
channel-last (NHWC) layout of the kernels and take a 4-D output back. Weights are transposed once: conv to
OHWI, depthwise to [1,KH,KW,C*M], Gemm/MatMul to [Out,K]. Flatten/Reshape of a 4-D activation first
transposes back to NCHW so the flat element order equals the ONNX model's exactly.
Folding: DQ -> op -> (Relu|Clip) -> Q becomes one integer node; Relu/Clip become an activation range
(act_min/act_max = Q(0), Q(6): exact, rounding is monotone) and a TFLite activation name for cmsis-nn.
Supported: Conv (incl. depthwise, grouped, dilated, auto_pad), Relu, Clip, MaxPool, AveragePool,
GlobalAveragePool, Flatten, Reshape, Transpose, Gemm, MatMul(+Add), Add, Mul (activation or quantized constant
operands), Concat, a quantized Softmax (DQ -> Softmax -> Q, last axis), and a final DequantizeLinear
(+ float Softmax).
uint8 activations: mapped to int8 by a zero-point shift of -128 (x - 128, zp - 128), exact for every op of
both profiles (all of them depend on x - zp only); the I/O buffers keep uint8 (OnnxModel.io_dtype).
Tail: a graph ending in DequantizeLinear (+ Softmax) gives a float32 output after the int8 output.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import N6Error
from .ir import Graph, Node, Tensor
from .prepare import ort_default_elementwise, quantize_float
from .profiles import resolve

HOW_TO_QUANTIZE = ("quantize it with onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QDQ, "
                   "per_channel=True) and a calibration data reader")
TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)
INT8_MIN, INT8_MAX = -128, 127
IO_LAYOUTS = ("original", "channel-last")
INPUT_BOUNDARIES = ("int8", "float32")


@dataclass
class OnnxModel:
    """An imported QDQ model: the int8 IR graph plus its I/O boundary.

    io_dtype: np.int8 or np.uint8 (the model's quantized I/O type; the graph itself is int8 throughout);
    input_shape: the input buffer's shape (the ONNX shape, or NHWC with io_layout='channel-last');
    input_scale/input_zero_point: the input QuantizeLinear (in io_dtype terms); output_tail: None,
    'dequantize' or 'dequantize+softmax'; output_scale/output_zero_point: the final DequantizeLinear;
    softmax_axis: axis of the float Softmax on the original output shape."""
    graph: Graph
    io_dtype: type
    input_name: str
    input_shape: tuple
    input_scale: np.float32
    input_zero_point: int
    output_shape: tuple
    output_scale: np.float32 = None
    output_zero_point: int = None
    output_tail: str = None
    softmax_axis: int = -1


# ---- loading ------------------------------------------------------------------------------------------

def load_onnx_qdq(model, name=None, io_layout="original"):
    """Import a QDQ ONNX model (path, bytes or onnx.ModelProto) into an OnnxModel. Raises N6Error.
    io_layout: 'original' (ST default: I/O buffers in the ONNX layout, runtime transposes) or 'channel-last'
    (ST's option to force NHWC I/O buffers: no transposes at the boundary)."""
    import onnx
    if io_layout not in IO_LAYOUTS:
        raise N6Error(f"unknown I/O layout {io_layout!r}; choose one of {list(IO_LAYOUTS)}")
    if isinstance(model, onnx.ModelProto):
        proto, source = model, f"onnx:{name or model.graph.name}"
    elif isinstance(model, (bytes, bytearray)):
        proto, source = onnx.load_from_string(bytes(model)), f"onnx:{name or '<bytes>'}"
    else:
        p = Path(model)
        if not p.is_file():
            raise N6Error(f"model file {p} does not exist; pass the path of a .onnx file")
        try:
            proto = onnx.load(str(p))
        except Exception as e:  # noqa: BLE001 - protobuf raises several types
            raise N6Error(f"{p} is not a valid ONNX model ({type(e).__name__}); pass a .onnx file") from None
        source = f"onnx:{p}"
    return _Importer(proto, source, io_layout).run()


def load_onnx(model, io_layout="original"):
    """The integer graph of a QDQ ONNX model (what emu.models.load_model returns for .onnx files): int8 throughout
    (uint8 models shifted by -128); use load_onnx_qdq for the I/O boundary (io dtype, float tail)."""
    return load_onnx_qdq(model, io_layout=io_layout).graph


def _attr(node, name, default=None):
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


class _Importer:
    def __init__(self, proto, source, io_layout="original"):
        from onnx import numpy_helper
        self.proto, self.source, self.io_layout = proto, source, io_layout
        g = proto.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        for n in g.node:
            if n.op_type == "Constant":
                v = _attr(n, "value")
                if v is not None:
                    self.consts[n.output[0]] = numpy_helper.to_array(v)
        self.nodes = [n for n in g.node if n.op_type != "Constant"]
        self.consumers = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.tensors, self.ir_nodes = {}, []
        # quantized activation name -> (ir tensor name, layout 'nhwc' | 'flat', logical ONNX shape)
        self.act = {}
        self.shift = 0        # -128 for uint8 activations
        self.io_dtype = np.int8
        self.k = 0

    # -- helpers --
    def fail(self, node, what):
        raise N6Error(f"{what} (node {node.name or node.output[0]!r}, op {node.op_type})")

    def const(self, name, node):
        if name not in self.consts:
            self.fail(node, f"input {name!r} must be a constant")
        return self.consts[name]

    def fresh(self, base):
        self.k += 1
        return f"{base}#{self.k}"

    def add_tensor(self, name, shape, scale=None, zp=None, data=None, dtype=np.int8, axis=None):
        self.tensors[name] = Tensor(name, tuple(int(d) for d in shape), np.dtype(dtype),
                                    None if scale is None else np.atleast_1d(np.asarray(scale, np.float32)),
                                    None if zp is None else np.atleast_1d(np.asarray(zp, np.int64)), axis, data)
        return name

    def only_consumer(self, name, node):
        c = self.consumers.get(name, [])
        if len(c) != 1:
            self.fail(node, f"tensor {name!r} must feed exactly one node in a QDQ pattern, found {len(c)}")
        return c[0]

    def qparams(self, qnode):
        scale = np.float32(self.const(qnode.input[1], qnode).reshape(-1)[0])
        zp_arr = self.consts.get(qnode.input[2]) if len(qnode.input) > 2 and qnode.input[2] else None
        zp = 0 if zp_arr is None else int(zp_arr.reshape(-1)[0])
        dtype = np.uint8 if zp_arr is not None and zp_arr.dtype == np.uint8 else np.int8
        return scale, zp, dtype

    def dq_weight(self, name, node):
        """(int data, float32 scales, int64 zero-points, axis) of a DequantizeLinear of a constant."""
        dq = self.producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in self.consts:
            if name in self.consts:
                self.fail(node, f"weight {name!r} is float (not quantized): the model must be QDQ; {HOW_TO_QUANTIZE}")
            self.fail(node, f"input {name!r} must be a DequantizeLinear of a constant")
        data = self.consts[dq.input[0]]
        scale = np.asarray(self.const(dq.input[1], dq), np.float32).reshape(-1)
        zp = (np.asarray(self.consts[dq.input[2]]).astype(np.int64).reshape(-1)
              if len(dq.input) > 2 and dq.input[2] else np.zeros(scale.size, np.int64))
        if data.dtype == np.uint8:
            data, zp = (data.astype(np.int16) - 128).astype(np.int8), zp - 128
        return data, scale, zp, _attr(dq, "axis", 1)

    def act_in(self, name, node):
        """IR tensor of an activation input given through DequantizeLinear."""
        dq = self.producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            self.fail(node, f"input {name!r} is not dequantized from an int8 tensor: the model must be QDQ; "
                      f"{HOW_TO_QUANTIZE}")
        q = dq.input[0]
        if q not in self.act:
            self.fail(node, f"tensor {q!r} is not a quantized activation the importer knows")
        return self.act[q]

    def out_q(self, node):
        """Follows node's output through optional Relu/Clip to its QuantizeLinear: (q node, act_min, act_max)."""
        name = node.output[0]
        nxt = self.only_consumer(name, node)
        lo = hi = None
        if nxt.op_type in ("Relu", "Clip"):
            if nxt.op_type == "Relu":
                lo = 0.0
            else:
                lo = float(self.consts[nxt.input[1]]) if len(nxt.input) > 1 and nxt.input[1] else _attr(nxt, "min")
                hi = float(self.consts[nxt.input[2]]) if len(nxt.input) > 2 and nxt.input[2] else _attr(nxt, "max")
            self.done.add(id(nxt))
            nxt = self.only_consumer(nxt.output[0], nxt)
        if nxt.op_type != "QuantizeLinear":
            self.fail(node, f"output must be quantized by a QuantizeLinear (found {nxt.op_type}); {HOW_TO_QUANTIZE}")
        self.done.add(id(nxt))
        scale, zp, _ = self.qparams(nxt)
        zp += self.shift
        # Q(relu(v)) == max(Q(v), Q(0)); Q(clip(v,lo,hi)) == clamp(Q(v), Q(lo), Q(hi)): round_half_even is monotone
        act_min = INT8_MIN if lo is None else max(INT8_MIN, int(np.rint(np.float32(lo) / scale)) + zp)
        act_max = INT8_MAX if hi is None else min(INT8_MAX, int(np.rint(np.float32(hi) / scale)) + zp)
        names = {(None, None): "NONE", (0.0, None): "RELU", (0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1"}
        self.activation = names.get((lo, hi))
        if self.activation is None:
            self.fail(node, f"Clip({lo}, {hi}) has no TFLite activation equivalent; use Relu, Relu6 or Clip(-1, 1)")
        return nxt, scale, zp, act_min, act_max

    def emit(self, op, name, inputs, outputs, **attrs):
        self.ir_nodes.append(Node(op, name, list(inputs), list(outputs), dict(attrs)))

    def to_layout(self, entry, layout, node):
        """An IR tensor of activation `entry` in `layout` ('nhwc' or 'nchw'), inserting a transpose if needed."""
        name, cur, shape = entry
        if cur == layout or len(shape) != 4:
            return name
        t = self.tensors[name]
        perm = TO_NCHW if layout == "nchw" else TO_NHWC
        new_shape = tuple(t.shape[p] for p in perm)
        if sorted(new_shape[1:]) == sorted(t.shape[1:]) and sum(d > 1 for d in t.shape) <= 1:
            out = self.add_tensor(self.fresh(name), new_shape, t.scale, t.zero_point)
            self.emit("reshape", self.fresh(f"{node.name}_reshape"), [name], [out])
            return out
        out = self.add_tensor(self.fresh(name), new_shape, t.scale, t.zero_point)
        self.emit("transpose", self.fresh(f"{node.name}_transpose"), [name], [out], perm=list(perm))
        return out

    # -- main --
    def run(self):
        g = self.proto.graph
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.done = set()
        if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for n in self.nodes):
            raise N6Error(f"{self.source} is a float (unquantized) ONNX model; {HOW_TO_QUANTIZE}")
        inits = set(self.consts)
        inputs = [i for i in g.input if i.name not in inits]
        if len(inputs) != 1 or len(g.output) != 1:
            raise N6Error(f"{self.source} must have one input and one output (got {len(inputs)} and {len(g.output)})")
        inp = inputs[0]
        shape = tuple(int(d.dim_value) if d.dim_value > 0 else 1 for d in inp.type.tensor_type.shape.dim)
        q_in = self.consumers.get(inp.name, [])
        if len(q_in) != 1 or q_in[0].op_type != "QuantizeLinear":
            raise N6Error(f"{self.source}: input {inp.name!r} must feed one QuantizeLinear; {HOW_TO_QUANTIZE}")
        q_in = q_in[0]
        in_scale, in_zp, self.io_dtype = self.qparams(q_in)
        self.shift = -128 if self.io_dtype == np.uint8 else 0
        self.done.add(id(q_in))
        if len(shape) == 4 and self.io_layout == "channel-last":
            buf = self.add_tensor(inp.name, tuple(shape[p] for p in TO_NHWC), in_scale, in_zp + self.shift)
            self.act[q_in.output[0]] = (buf, "nhwc", shape)
        else:
            buf = self.add_tensor(inp.name, shape, in_scale, in_zp + self.shift)
            self.act[q_in.output[0]] = (buf, "nchw" if len(shape) == 4 else "flat", shape)
        if len(shape) == 4 and self.io_layout == "original":
            nhwc = self.to_layout(self.act[q_in.output[0]], "nhwc", q_in)
            self.act[q_in.output[0]] = (nhwc, "nhwc", shape)

        tail, softmax_axis, out_dq = None, -1, None
        for node in self.nodes:
            if id(node) in self.done:
                continue
            op = node.op_type
            if op == "DequantizeLinear":
                if node.input[0] in self.consts:
                    continue                       # weights: read by their consumer
                nxt = self.consumers.get(node.output[0], [])
                if node.output[0] == g.output[0].name:
                    tail, out_dq = "dequantize", node
                elif len(nxt) == 1 and nxt[0].op_type == "Softmax" and nxt[0].output[0] == g.output[0].name:
                    tail, out_dq, softmax_axis = "dequantize+softmax", node, _attr(nxt[0], "axis", -1)
                    self.done.add(id(nxt[0]))
                continue
            if op == "QuantizeLinear":
                self.fail(node, "QuantizeLinear without a supported producer")
            if op == "Softmax":
                self.quantized_softmax(node)
                continue
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                self.fail(node, f"unsupported op {op}; supported: Conv, Gemm, MatMul(+Add), Relu, Clip, "
                          f"MaxPool, AveragePool, GlobalAveragePool, Flatten, Reshape, Transpose, Add, Mul, Concat, "
                          f"Softmax (float tail)")
            handler(node)

        # output
        if out_dq is not None:
            final = out_dq.input[0]
        else:
            final = self.producer[g.output[0].name].output[0] if g.output[0].name in self.producer else None
        if final not in self.act:
            raise N6Error(f"{self.source}: output {g.output[0].name!r} is not a quantized tensor; {HOW_TO_QUANTIZE}")
        entry = self.act[final]
        keep_nhwc = entry[1] == "nhwc" and self.io_layout == "channel-last"
        out_name = self.to_layout(entry, "nchw", self.producer[final]) if entry[1] == "nhwc" and not keep_nhwc \
            else entry[0]
        out_shape = tuple(self.tensors[out_name].shape)
        used = {i for n in self.ir_nodes for i in n.inputs} | {o for n in self.ir_nodes for o in n.outputs}
        tensors = {k: v for k, v in self.tensors.items() if k in used or k == buf}
        graph = Graph(tensors, self.ir_nodes, [buf], [out_name], self.source)
        o_scale = o_zp = None
        if out_dq is not None:
            o_scale, o_zp, _ = self.qparams(out_dq)
        return OnnxModel(graph, self.io_dtype, inp.name, tuple(self.tensors[buf].shape), in_scale, in_zp, out_shape,
                         o_scale, o_zp, tail, softmax_axis)

    # -- ops --
    def op_Conv(self, node):
        x_name, layout, shape = self.act_in(node.input[0], node)
        w, ws, wzp, _ = self.dq_weight(node.input[1], node)
        if w.ndim != 4:
            self.fail(node, f"only 2-D convolutions are supported (weights {w.shape})")
        bias = self.bias(node, 2, w.shape[0])
        q, scale, zp, act_min, act_max = self.out_q(node)
        x = self.tensors[x_name]
        n, h, wd, cin = x.shape
        cout, cin_g, kh, kw = w.shape
        group = int(_attr(node, "group", 1))
        sh, sw = _attr(node, "strides", [1, 1])
        dh, dw = _attr(node, "dilations", [1, 1])
        pt, pl, pb, pr = self.pads(node, (h, wd), (kh, kw), (sh, sw), (dh, dw))
        oh = (h + pt + pb - ((kh - 1) * dh + 1)) // sh + 1
        ow = (wd + pl + pr - ((kw - 1) * dw + 1)) // sw + 1
        if np.unique(wzp).size != 1:
            self.fail(node, "per-channel weight zero-points must all be equal")
        wq = dict(scale=ws if ws.size == cout else np.repeat(ws[:1], cout), zp=np.repeat(wzp[:1], cout))
        out = self.add_tensor(q.output[0], (n, oh, ow, cout), scale, zp)
        geom = dict(stride_h=int(sh), stride_w=int(sw), pad_top=int(pt), pad_left=int(pl), pad_bottom=int(pb),
                    pad_right=int(pr), dilation_h=int(dh), dilation_w=int(dw), activation=self.activation,
                    act_min=act_min, act_max=act_max)
        if group == 1:
            wt = self.add_tensor(self.fresh(node.input[1]), (cout, kh, kw, cin_g), wq["scale"], wq["zp"],
                                 np.ascontiguousarray(w.transpose(0, 2, 3, 1)), axis=0)
            self.emit("conv2d", node.name or q.output[0], [x_name, wt, bias], [out], **geom)
        elif group == cin and cin_g == 1:
            wt = self.add_tensor(self.fresh(node.input[1]), (1, kh, kw, cout), wq["scale"], wq["zp"],
                                 np.ascontiguousarray(w.transpose(1, 2, 3, 0)), axis=3)
            self.emit("depthwise_conv2d", node.name or q.output[0], [x_name, wt, bias], [out],
                      ch_mult=cout // cin, **geom)
        else:
            if cin % group or cout % group or cin // group != cin_g:
                self.fail(node, f"group {group} does not divide channels {cin} -> {cout}")
            wt = self.add_tensor(self.fresh(node.input[1]), (cout, kh, kw, cin_g), wq["scale"], wq["zp"],
                                 np.ascontiguousarray(w.transpose(0, 2, 3, 1)), axis=0)
            self.emit("conv2d", node.name or q.output[0], [x_name, wt, bias], [out], **geom)
        self.act[q.output[0]] = (out, "nhwc", (n, cout, oh, ow))

    def pads(self, node, hw, k, s, d):
        auto = _attr(node, "auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", ""):
            p = _attr(node, "pads", [0, 0, 0, 0])
            return int(p[0]), int(p[1]), int(p[2]), int(p[3])
        if auto == "VALID":
            return 0, 0, 0, 0
        res = []
        for i in range(2):
            out = -(-hw[i] // s[i])
            total = max((out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - hw[i], 0)
            small, big = total // 2, total - total // 2
            res.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return res[0][0], res[1][0], res[0][1], res[1][1]

    def bias(self, node, idx, n_out):
        if len(node.input) <= idx or not node.input[idx]:
            return None
        b, _, _, _ = self.dq_weight(node.input[idx], node)
        return self.add_tensor(self.fresh(node.input[idx]), (n_out,), data=np.ascontiguousarray(b.reshape(-1),
                                                                                                np.int32),
                               dtype=np.int32)

    def op_Gemm(self, node):
        if _attr(node, "alpha", 1.0) != 1.0 or _attr(node, "beta", 1.0) != 1.0 or _attr(node, "transA", 0):
            self.fail(node, "Gemm needs alpha = beta = 1 and transA = 0")
        w, ws, wzp, _ = self.dq_weight(node.input[1], node)
        if not _attr(node, "transB", 0):
            w = w.T
        self.fc(node, node.input[0], w, ws, wzp, self.bias(node, 2, w.shape[0]), node)

    def op_MatMul(self, node):
        w, ws, wzp, _ = self.dq_weight(node.input[1], node)
        if w.ndim != 2:
            self.fail(node, "MatMul weights must be 2-D")
        bias, end = None, node
        nxt = self.only_consumer(node.output[0], node)
        if nxt.op_type == "Add":
            other = nxt.input[1] if nxt.input[0] == node.output[0] else nxt.input[0]
            bias = self.add_tensor(self.fresh(other), (w.shape[1],), data=np.ascontiguousarray(
                self.dq_weight(other, nxt)[0].reshape(-1), np.int32), dtype=np.int32)
            self.done.add(id(nxt))
            end = nxt
        self.fc(node, node.input[0], w.T, ws, wzp, bias, end)

    def fc(self, node, x_in, w, ws, wzp, bias, end):
        entry = self.act_in(x_in, node)
        x_name = self.to_layout(entry, "nchw", node) if entry[1] == "nhwc" else entry[0]
        x = self.tensors[x_name]
        q, scale, zp, act_min, act_max = self.out_q(end)
        n_out = w.shape[0]
        if x.size != w.shape[1]:
            self.fail(node, f"input of {x.size} values does not match weights {w.shape}")
        if np.unique(wzp).size != 1:
            self.fail(node, "per-channel weight zero-points must all be equal")
        wt = self.add_tensor(self.fresh(node.input[1]), (n_out, w.shape[1]),
                             ws if ws.size == n_out else np.repeat(ws[:1], n_out), np.repeat(wzp[:1], n_out),
                             np.ascontiguousarray(w, np.int8), axis=0)
        out = self.add_tensor(q.output[0], (1, n_out), scale, zp)
        self.emit("fully_connected", node.name or q.output[0], [x_name, wt, bias], [out], activation=self.activation,
                  act_min=act_min, act_max=act_max)
        self.act[q.output[0]] = (out, "flat", (1, n_out))

    def pool(self, node, op):
        x_name, layout, shape = self.act_in(node.input[0], node)
        x = self.tensors[x_name]
        n, h, w, c = x.shape
        q, scale, zp, act_min, act_max = self.out_q(node)
        if op == "GlobalAveragePool":
            kh, kw, sh, sw, pt, pl, pb, pr = h, w, 1, 1, 0, 0, 0, 0
        else:
            if _attr(node, "ceil_mode", 0):
                self.fail(node, "ceil_mode=1 is unsupported; export with ceil_mode=False")
            if op == "MaxPool" and (_attr(node, "dilations", [1, 1]) != [1, 1] or len(node.output) > 1):
                self.fail(node, "MaxPool with dilations or indices is unsupported")
            kh, kw = _attr(node, "kernel_shape")
            sh, sw = _attr(node, "strides", [1, 1])
            pt, pl, pb, pr = self.pads(node, (h, w), (kh, kw), (sh, sw), (1, 1))
        oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
        out = self.add_tensor(q.output[0], (n, oh, ow, c), scale, zp)
        attrs = dict(kernel_h=int(kh), kernel_w=int(kw), stride_h=int(sh), stride_w=int(sw), pad_top=int(pt),
                     pad_left=int(pl), pad_bottom=int(pb), pad_right=int(pr), activation=self.activation,
                     act_min=act_min, act_max=act_max)
        if op == "MaxPool":
            xt = self.tensors[x_name]
            if float(xt.scale[0]) != float(scale) or int(xt.zero_point[0]) != zp:
                self.fail(node, "MaxPool input and output quantization differ; quantize_static keeps them equal")
            self.emit("max_pool", node.name or q.output[0], [x_name], [out], **attrs)
        else:
            self.emit("avg_pool", node.name or q.output[0], [x_name], [out], global_pool=op == "GlobalAveragePool",
                      count_include_pad=int(_attr(node, "count_include_pad", 0)), **attrs)
        self.act[q.output[0]] = (out, "nhwc", (n, c, oh, ow))

    def op_MaxPool(self, node):
        self.pool(node, "MaxPool")

    def op_AveragePool(self, node):
        self.pool(node, "AveragePool")

    def op_GlobalAveragePool(self, node):
        self.pool(node, "GlobalAveragePool")

    def reshape_like(self, node, new_shape):
        entry = self.act_in(node.input[0], node)
        x_name = self.to_layout(entry, "nchw", node) if entry[1] == "nhwc" else entry[0]
        q = self.only_consumer(node.output[0], node)
        if q.op_type != "QuantizeLinear":
            self.fail(node, "output must be quantized by a QuantizeLinear")
        self.done.add(id(q))
        t = self.tensors[x_name]
        out = self.add_tensor(q.output[0], new_shape, t.scale, t.zero_point)
        self.emit("reshape", node.name or q.output[0], [x_name], [out])
        self.act[q.output[0]] = (out, "flat" if len(new_shape) != 4 else "nchw", tuple(new_shape))
        if len(new_shape) == 4:
            self.act[q.output[0]] = (self.to_layout(self.act[q.output[0]], "nhwc", node), "nhwc", tuple(new_shape))

    def op_Flatten(self, node):
        shape = self.act_in(node.input[0], node)[2]
        axis = int(_attr(node, "axis", 1)) % max(len(shape), 1)
        self.reshape_like(node, (int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64))))

    def op_Reshape(self, node):
        shape = self.act_in(node.input[0], node)[2]
        target = [int(v) for v in self.const(node.input[1], node).reshape(-1)]
        target = [shape[i] if v == 0 else v for i, v in enumerate(target)]
        if -1 in target:
            known = int(np.prod([v for v in target if v != -1], dtype=np.int64))
            target[target.index(-1)] = int(np.prod(shape, dtype=np.int64)) // known
        self.reshape_like(node, tuple(target))

    def op_Transpose(self, node):
        x_name, layout, shape = self.act_in(node.input[0], node)
        perm = [int(p) for p in _attr(node, "perm", list(range(len(shape) - 1, -1, -1)))]
        q = self.only_consumer(node.output[0], node)
        if q.op_type != "QuantizeLinear":
            self.fail(node, "output must be quantized by a QuantizeLinear")
        self.done.add(id(q))
        t = self.tensors[x_name]
        logical = tuple(shape[p] for p in perm)
        if layout == "nhwc":
            inv = [TO_NHWC.index(a) for a in range(4)]          # logical axis -> internal axis
            internal_perm = [inv[perm[TO_NHWC[k]]] for k in range(4)]
            new_shape = tuple(logical[TO_NHWC[k]] for k in range(4))
            out = self.add_tensor(q.output[0], new_shape, t.scale, t.zero_point)
            self.emit("transpose", node.name or q.output[0], [x_name], [out], perm=internal_perm)
            self.act[q.output[0]] = (out, "nhwc", logical)
        else:
            out = self.add_tensor(q.output[0], logical, t.scale, t.zero_point)
            self.emit("transpose", node.name or q.output[0], [x_name], [out], perm=perm)
            self.act[q.output[0]] = (out, layout, logical)

    def const_operand(self, name, like, node):
        """A DequantizeLinear of a constant used as an Add/Mul operand: an int8 IR constant broadcastable to the
        activation `like` (its layout applied), per-tensor quantized."""
        data, scale, zp, _ = self.dq_weight(name, node)
        if scale.size != 1:
            self.fail(node, "a per-channel quantized constant operand is unsupported")
        shape = tuple(like[2])
        data = data.reshape((1,) * (len(shape) - data.ndim) + data.shape)
        if like[1] == "nhwc":
            data = data.transpose(TO_NHWC)
        internal = np.broadcast_to(data, self.tensors[like[0]].shape)
        t = self.add_tensor(self.fresh(name), internal.shape, scale, zp, np.ascontiguousarray(internal, np.int8))
        return (t, like[1], shape)

    def binary(self, node, op):
        consts = [self.producer.get(i) is not None and self.producer[i].input[0] in self.consts for i in node.input]
        if all(consts):
            self.fail(node, "both operands are constants; fold them before quantization")
        a = None if consts[0] else self.act_in(node.input[0], node)
        b = None if consts[1] else self.act_in(node.input[1], node)
        a = self.const_operand(node.input[0], b, node) if a is None else a
        b = self.const_operand(node.input[1], a, node) if b is None else b
        if a[2] != b[2] or a[1] != b[1]:
            self.fail(node, f"{node.op_type} inputs must have the same shape (got {a[2]} and {b[2]})")
        q, scale, zp, act_min, act_max = self.out_q(node)
        out = self.add_tensor(q.output[0], self.tensors[a[0]].shape, scale, zp)
        self.emit(op, node.name or q.output[0], [a[0], b[0]], [out], activation=self.activation, act_min=act_min,
                  act_max=act_max)
        self.act[q.output[0]] = (out, a[1], a[2])

    def quantized_softmax(self, node):
        """DQ -> Softmax -> Q (quantize_static's default, ORT QLinearSoftmax): an IR softmax over the last axis."""
        consumers = self.consumers.get(node.output[0], [])
        if len(consumers) != 1 or consumers[0].op_type != "QuantizeLinear":
            self.fail(node, "an inner float Softmax is unsupported: only a final DequantizeLinear + Softmax or a "
                      "quantized Softmax (DQ -> Softmax -> Q) are")
        x_name, layout, shape = self.act_in(node.input[0], node)
        axis = int(_attr(node, "axis", -1)) % len(shape)
        internal_last = layout != "nhwc" and axis == len(shape) - 1 or layout == "nhwc" and axis == 1
        if not internal_last:
            self.fail(node, f"Softmax over axis {axis} of a {len(shape)}-D tensor is unsupported; use the last "
                      f"axis of a 2-D tensor (e.g. after Flatten)")
        q, scale, zp, _, _ = self.out_q(node)
        out = self.add_tensor(q.output[0], self.tensors[x_name].shape, scale, zp)
        self.emit("softmax", node.name or q.output[0], [x_name], [out], beta=1.0)
        self.act[q.output[0]] = (out, layout, shape)

    def op_Relu(self, node):
        self.fail(node, f"a standalone {node.op_type} is unsupported: it must directly follow Conv, Gemm, MatMul, "
                  f"Add, Mul or a pool (it folds into that layer's output range)")

    op_Clip = op_Relu

    def op_Add(self, node):
        self.binary(node, "add")

    def op_Mul(self, node):
        self.binary(node, "mul")

    def op_Concat(self, node):
        ins = [self.act_in(i, node) for i in node.input]
        layout, shape0 = ins[0][1], ins[0][2]
        axis = int(_attr(node, "axis")) % len(shape0)
        iaxis = TO_NHWC.index(axis) if layout == "nhwc" else axis
        q, scale, zp, act_min, act_max = self.out_q(node)
        shape = list(self.tensors[ins[0][0]].shape)
        shape[iaxis] = sum(self.tensors[e[0]].shape[iaxis] for e in ins)
        out = self.add_tensor(q.output[0], shape, scale, zp)
        logical = list(shape0)
        logical[axis] = sum(e[2][axis] for e in ins)
        self.emit("concat", node.name or q.output[0], [e[0] for e in ins], [out], axis=iaxis)
        self.act[q.output[0]] = (out, layout, tuple(logical))


# ---- boundary: input quantization, output dequantization and softmax ---------------------------------

def quantize_input(model, x, profile="onnxruntime"):
    """Float32 features -> the model's quantized input buffer (io dtype, buffer layout) under `profile`'s
    QuantizeLinear rule (prepare.quantize_float: onnxruntime ties to even, cmsis-nn ties away from zero)."""
    x = np.asarray(x)
    if x.dtype == np.float32 and not _buffer_shape_ok(model.input_shape, x.shape):
        raise N6Error(f"the float input must have shape {model.input_shape} (or N x it), got {x.shape}")
    return from_internal(model, quantize_float(x, model.graph.tensors[model.graph.inputs[0]], profile))


def _buffer_shape_ok(shape, got):
    """One buffer (shape), a batch N x shape, or a batch along a leading 1 (as Runtime accepts)."""
    shape, got = tuple(shape), tuple(got)
    return got == shape or got[1:] == shape or (len(shape) > 0 and shape[0] == 1 and len(got) == len(shape)
                                                and got[1:] == shape[1:])


def to_internal(model, buf):
    """The model's I/O buffer (int8 or uint8) as the graph's int8 buffer (uint8: zero-point shift, x - 128)."""
    buf = np.asarray(buf)
    if buf.dtype != model.io_dtype:
        raise N6Error(f"the input buffer must be {np.dtype(model.io_dtype).name} (the model's quantized input "
                      f"type), got {buf.dtype}")
    if not _buffer_shape_ok(model.input_shape, buf.shape):
        raise N6Error(f"the input buffer must have shape {model.input_shape} (or N x it), got {buf.shape}")
    if model.io_dtype == np.uint8:
        return (buf.astype(np.int16) - 128).astype(np.int8)
    return np.ascontiguousarray(buf)


def from_internal(model, out):
    """The graph's int8 output as the model's I/O type."""
    if model.io_dtype == np.uint8:
        return (out.astype(np.int16) + 128).astype(np.uint8)
    return out


def dequantize_output(model, q):
    """DequantizeLinear of the io-typed output: float32(q - zp) * scale (ORT's order)."""
    return (np.asarray(q).astype(np.int32) - model.output_zero_point).astype(np.float32) * np.float32(model.output_scale)


def softmax_f32(x, axis=-1):
    """Float32 softmax: exp(x - max) / sum (not bit-exact with MLAS's exp polynomial: see tests)."""
    x = np.asarray(x, np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True, dtype=np.float32)).astype(np.float32)


class ModelRunner:
    """One imported model under one profile, prepared once (an emu.graph.runtime.Runtime plus the model's I/O
    boundary): run(x, input_boundary) -> dict(output=<io-typed buffer>, float=<dequantized (+softmax) or None>).
    profile: a registered name ('onnxruntime', 'cmsis-nn', ...) or an ArithmeticProfile; elementwise (mlas profiles):
    None = ort_default_elementwise(io dtype)."""

    def __init__(self, model, profile="onnxruntime", elementwise=None, backend="numba", rounding=None, prepared=None):
        from .runtime import Runtime
        arithmetic = resolve(profile, rounding)
        if isinstance(profile, str) and not arithmetic.fixed_point and elementwise is None:   # a value keeps its own
            elementwise = ort_default_elementwise(model.io_dtype)
        arithmetic = arithmetic.choose(elementwise=elementwise)
        self.model, self.profile, self.arithmetic = model, arithmetic.name, arithmetic
        # prepared: the same graph already prepared under this arithmetic (reused, e.g. by Device.with_)
        self.runtime = Runtime(model.graph if prepared is None else prepared, arithmetic, backend=backend)

    @property
    def metadata(self):
        return dict(self.runtime.metadata, io_dtype=np.dtype(self.model.io_dtype).name,
                    output_tail=self.model.output_tail)

    def run(self, x, input_boundary="int8"):
        """x: the int8/uint8 input buffer (input_boundary='int8', ST default: the app quantizes) or float32
        features (input_boundary='float32': the model's QuantizeLinear under this profile)."""
        model = self.model
        if input_boundary not in INPUT_BOUNDARIES:
            raise N6Error(f"unknown input boundary {input_boundary!r}; choose one of {list(INPUT_BOUNDARIES)}")
        if input_boundary == "float32":
            x = quantize_input(model, x, self.arithmetic)
        return self.finish(self.runtime.run(to_internal(model, x)))

    def finish(self, internal_out):
        """dict(output, float) from the graph's int8 output: the io-typed buffer and the float tail (or None)."""
        model = self.model
        q = from_internal(model, internal_out)
        f = None
        if model.output_tail is not None:
            f = dequantize_output(model, q)
            if model.output_tail == "dequantize+softmax":
                # the axis counts from the end of the model's output shape, so a leading batch axis N is skipped
                axis = model.softmax_axis
                f = softmax_f32(f, axis - len(model.output_shape) if axis >= 0 else axis)
        return dict(output=q, float=f)


def run_model(model, x, profile="onnxruntime", input_boundary="int8", elementwise=None):
    """One-shot ModelRunner(model, profile, elementwise).run(x, input_boundary) (see ModelRunner)."""
    return ModelRunner(model, profile, elementwise).run(x, input_boundary)
