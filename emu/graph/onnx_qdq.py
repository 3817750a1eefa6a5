"""ONNX QDQ importer (onnxruntime quantize_static / PyTorch export) -> emu.graph.ir.Graph, with ST AI layout
rules, and the model's I/O boundary (ModelRunner). The arithmetic lives in emu.graph.profiles ("onnxruntime":
ORT/MLAS float32 requantization; "cmsis-nn": TFLite multipliers from the same scales), emu.graph.ops and Runtime.

    model = load_onnx_qdq("model_qdq.onnx")                 # OnnxModel(graph, io dtype, I/O quantization, tail)
    out = ModelRunner(model, "onnxruntime").run(x, input_boundary="float32")   # dict(output=int8, float=probs)

Layout (ST Edge AI for STM32N6: the generated network keeps the model's I/O layout): the int8 input/output buffers keep the ONNX model's layout and
shape (e.g. NCHW [1,1,40,49]); explicit runtime `transpose` nodes take a channel-first input to the
channel-last (NHWC) layout of the kernels and take a 4-D output back. Weights are transposed once: conv to
OHWI, depthwise to [1,KH,KW,C*M], Gemm/MatMul to [Out,K]. Flatten/Reshape of a 4-D activation first
transposes back to NCHW so the flat element order equals the ONNX model's exactly.
Folding: DQ -> op -> (Relu|Clip) -> Q becomes one integer node; Relu/Clip become an activation range
(act_min/act_max = Q(0), Q(6): exact, rounding is monotone) and a TFLite activation name for cmsis-nn.
Supported: Conv (incl. depthwise, grouped, dilated, auto_pad; Conv1D with 3-D weights as a 2-D convolution of
height 1 on [N, 1, L, C]), Relu, Clip (folded, or standalone as a requantization), MaxPool, AveragePool,
GlobalAveragePool (2-D and 1-D), Gemm, MatMul(+Add), MatMul of two activations (ORT's QLinearMatMul), Add, Sub,
Mul (activation or quantized constant operands, numpy broadcasting), Concat, Split, Sigmoid, Tanh, LeakyRelu,
LSTM and GRU (DQ -> float LSTM/GRU -> Q, weights int8 through DequantizeLinear or float; onnxruntime's float kernels
emulated exactly: emu.graph.ops.recurrent_onnx),
PRelu (quantized or float32 slope), HardSigmoid, HardSwish, ReduceMean (one contiguous run of axes), a
quantized Softmax (DQ -> Softmax -> Q, any axis), layout ops (below), and a final DequantizeLinear (+ float Softmax).
Layout-only ops (Transpose, Reshape, Squeeze, Unsqueeze, Flatten, Identity) run on the int8 values, exact because
they commute with quantization: before the first QuantizeLinear (tf2onnx's leading NHWC -> NCHW Transpose: the
input buffer keeps the ONNX input's layout; a Transpose that turns channel-last data into NCHW costs nothing, the
data already is in the kernels' order), between a DequantizeLinear and a QuantizeLinear of the same scale/zero-point
(folded), and after the last DequantizeLinear (runtime layout steps before the output buffer). Activations are held
as (IR tensor, layout, ONNX shape) with layout 'flat' (ONNX order), 'nhwc' (4-D, channel-last) or 'nlc' (3-D
[N, C, L] held as [N, 1, L, C]); conversions are emitted where an op needs them.
Every unsupported op of a model is named at once, with its layers, in one line.
uint8 activations: mapped to int8 by a zero-point shift of -128 (x - 128, zp - 128), exact for every op of
both profiles (all of them depend on x - zp only); the I/O buffers keep uint8 (OnnxModel.io_dtype).
Tail: a graph ending in DequantizeLinear (+ Softmax) gives a float32 output after the int8 output.
"""
from dataclasses import dataclass

import numpy as np

from ..errors import N6Error, printable, quoted
from .ir import MAX_GRAPH_BYTES, Graph, Node, Tensor, check_graph, check_shape, read_model_file
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


def internal_axis(layout, axis):
    """The internal (IR tensor) axis of logical ONNX axis `axis` of an activation in `layout`."""
    if layout == "nhwc":
        return TO_NHWC.index(axis)
    if layout == "nlc":                  # logical [N, C, L] held as [N, 1, L, C]
        return (0, 3, 2)[axis]
    return axis


def internal_order(data, layout):
    """Logical-order constant data (same rank as the activation) in the activation's internal layout."""
    if layout == "nhwc":
        return data.transpose(TO_NHWC)
    if layout == "nlc":
        return data.transpose(0, 2, 1)[:, None]
    return data


# ---- loading ------------------------------------------------------------------------------------------

def load_onnx_qdq(model, name=None, io_layout="original"):
    """Import a QDQ ONNX model (path, bytes or onnx.ModelProto) into an OnnxModel, validated (graph order, attributes,
    shapes, sizes) before anything runs. Raises N6Error (one line) for every malformed or unsupported model.
    io_layout: 'original' (ST default: I/O buffers in the ONNX layout, runtime transposes) or 'channel-last'
    (ST's option to force NHWC I/O buffers: no transposes at the boundary)."""
    import onnx
    if io_layout not in IO_LAYOUTS:
        raise N6Error(f"unknown I/O layout {io_layout!r}; choose one of {list(IO_LAYOUTS)}")
    if isinstance(model, onnx.ModelProto):
        proto, source = model, f"onnx:{printable(name or model.graph.name)}"
    else:
        if isinstance(model, (bytes, bytearray)):
            data, source = bytes(model), f"onnx:{printable(name or '<bytes>')}"
        else:
            data, source = read_model_file(model, "onnx", ".onnx")
        if not data:
            raise N6Error(f"{source} is empty (0 bytes), not an ONNX protobuf; pass a .onnx model file")
        try:
            proto = onnx.ModelProto()
            proto.ParseFromString(data)
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends: one message for all
            raise N6Error(f"{source} is not an ONNX protobuf ({type(e).__name__}); pass a .onnx model file") from None
    if not proto.HasField("graph") or not (len(proto.graph.node) or len(proto.graph.input)):
        raise N6Error(f"{source} holds no ONNX graph (no nodes, no inputs): not an ONNX model file; pass a .onnx "
                      f"model file")
    try:          # the ONNX standard's own rules (node arity, attributes, opset imports), as onnxruntime applies them
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise N6Error(f"{source} is not a valid ONNX model ({printable(first, 300)}); re-export the .onnx file") \
            from None
    except Exception as e:  # noqa: BLE001 - the checker's other failures on corrupt protobufs
        raise N6Error(f"{source}: the model file is malformed ({type(e).__name__}); re-export the .onnx file") \
            from None
    with np.errstate(all="ignore"):
        try:
            return _Importer(proto, source, io_layout).run()
        except N6Error:
            raise
        except (KeyError, IndexError, ValueError, TypeError, AttributeError, OverflowError) as e:
            # last resort for structural corruption the checks above do not name
            raise N6Error(f"{source}: the model file is malformed ({type(e).__name__}: {printable(e)}); re-export "
                          f"the .onnx file") from None


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


# the ONNX attributes (opset <= 21) of the ops the importer reads; any other name is a corrupt or foreign model
KNOWN_ATTRIBUTES = {
    "QuantizeLinear": {"axis", "saturate"},
    "DequantizeLinear": {"axis"},
    "Conv": {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"},
    "MaxPool": {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"},
    "AveragePool": {"auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"},
    "GlobalAveragePool": set(), "Relu": set(), "Clip": {"min", "max"}, "Flatten": {"axis"},
    "Reshape": {"allowzero"}, "Transpose": {"perm"}, "Gemm": {"alpha", "beta", "transA", "transB"},
    "MatMul": set(), "Add": set(), "Mul": set(), "Concat": {"axis"}, "Softmax": {"axis"},
    "Squeeze": {"axes"}, "Unsqueeze": {"axes"}, "Identity": set(),
    "Sigmoid": set(), "Tanh": set(), "LeakyRelu": {"alpha"}, "HardSigmoid": {"alpha", "beta"}, "HardSwish": set(),
    "Sub": set(), "ReduceMean": {"axes", "keepdims", "noop_with_empty_axes"}, "PRelu": set(),
    "Split": {"axis", "split", "num_outputs"},
    "LSTM": {"activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size", "input_forget",
             "layout"},
    "GRU": {"activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size",
            "linear_before_reset", "layout"},
}
# float ops that only move data: exact before the first QuantizeLinear, after the last DequantizeLinear and between
# a DequantizeLinear and a QuantizeLinear of the same scale/zero-point (they commute with quantization)
LAYOUT_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity")
# every op type the importer reads (the rest is listed at once as unsupported)
SUPPORTED_OPS = ("QuantizeLinear", "DequantizeLinear", "Conv", "Gemm", "MatMul", "Relu", "Clip", "MaxPool",
                 "AveragePool", "GlobalAveragePool", "Add", "Sub", "Mul", "Concat", "Softmax", "Sigmoid", "Tanh",
                 "LeakyRelu", "HardSigmoid", "HardSwish", "ReduceMean", "PRelu", "Split", "LSTM", "GRU") + LAYOUT_OPS


def _ints(node, name, n, default, lo, source):
    """An INTS (or INT when n is None) attribute checked for length and lower bound before use."""
    v = _attr(node, name, default)
    vals = [v] if n is None else v
    ok = isinstance(vals, (list, tuple)) and (n is None or len(vals) == n) and \
        all(isinstance(x, (int, np.integer)) and lo <= x <= (1 << 30) for x in vals)
    if not ok:
        raise N6Error(f"{source}: node {quoted(node.name or node.output[0])} ({node.op_type}) has {name} = {v}; "
                      f"it needs {'one integer' if n is None else f'{n} integers'} >= {lo}: re-export the model")
    return [int(x) for x in vals] if n is not None else int(vals[0])


def _to_array(t, what, source):
    """numpy value of a TensorProto after checking its dims and storage (no external data, sizes bounded)."""
    from onnx import TensorProto, numpy_helper
    if t.data_location == TensorProto.EXTERNAL or len(t.external_data):
        raise N6Error(f"{source}: {what} {quoted(t.name)} is stored in an external data file, which the "
                      f"emulator does not read; save the model with all tensors inside the .onnx file")
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise N6Error(f"{source}: {what} {quoted(t.name)} has shape {dims}; dimensions must be >= 0: re-export "
                      f"the model")
    n = int(np.prod(dims, dtype=np.float64)) if dims else 1
    if n > MAX_GRAPH_BYTES:
        raise N6Error(f"{source}: {what} {quoted(t.name)} has shape {dims}: more values than the emulator's "
                      f"{MAX_GRAPH_BYTES >> 20} MB limit; re-export the model")
    try:
        return numpy_helper.to_array(t)
    except Exception as e:  # noqa: BLE001 - onnx raises several types for inconsistent storage
        raise N6Error(f"{source}: {what} {quoted(t.name)} is malformed ({type(e).__name__}: {printable(e)}); "
                      f"re-export the model") from None


class _Importer:
    def __init__(self, proto, source, io_layout="original"):
        self.proto, self.source, self.io_layout = proto, source, io_layout
        g = proto.graph
        self.consts = {t.name: _to_array(t, "initializer", source) for t in g.initializer}
        for n in g.node:
            if n.op_type == "Constant":
                if len(n.output) != 1:
                    raise N6Error(f"{source}: Constant node {quoted(n.name)} has {len(n.output)} outputs; "
                                  f"re-export the model")
                v = _attr(n, "value")
                if v is not None:
                    if not hasattr(v, "dims"):
                        raise N6Error(f"{source}: Constant node {quoted(n.name)} has a non-tensor value; "
                                      f"re-export the model")
                    self.consts[n.output[0]] = _to_array(v, "constant", source)
        self.nodes = [n for n in g.node if n.op_type != "Constant"]
        self._check_order(g)
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

    def _check_order(self, g):
        """Every node input is a graph input, a constant or the output of an earlier node, and every tensor is
        produced once (ONNX requires topological order)."""
        available = {i.name for i in g.input} | set(self.consts)
        for node in g.node:
            if not len(node.output):
                raise N6Error(f"{self.source}: node {quoted(node.name)} ({printable(node.op_type)}) has no "
                              f"output; re-export the model")
            if node.op_type == "Constant":
                continue
            known = KNOWN_ATTRIBUTES.get(node.op_type)
            if known is not None:
                for a in node.attribute:
                    if a.name not in known:
                        raise N6Error(f"{self.source}: node {quoted(node.name or node.output[0])} "
                                      f"({node.op_type}) has unknown attribute {quoted(a.name)} (valid: "
                                      f"{', '.join(sorted(known)) or 'none'}); re-export the model")
            for i in node.input:
                if i and i not in available:
                    raise N6Error(f"{self.source}: node {quoted(node.name or node.output[0])} "
                                  f"({printable(node.op_type)}) uses tensor {quoted(i)} before it is produced "
                                  f"(nodes out of topological order, or a missing producer); re-export the model")
            for o in node.output:
                if o in available and o:
                    raise N6Error(f"{self.source}: tensor {quoted(o)} is produced twice (node "
                                  f"{quoted(node.name or o)}); re-export the model")
                available.add(o)

    # -- helpers --
    def fail(self, node, what):
        raise N6Error(f"{what} (node {quoted(node.name or node.output[0])}, op {printable(node.op_type)})")

    def ints(self, node, name, n, default, lo=1):
        return _ints(node, name, n, default, lo, self.source)

    def const(self, name, node):
        if name not in self.consts:
            self.fail(node, f"input {name!r} must be a constant")
        return self.consts[name]

    def fresh(self, base):
        self.k += 1
        return f"{base}#{self.k}"

    def add_tensor(self, name, shape, scale=None, zp=None, data=None, dtype=np.int8, axis=None):
        shape = check_shape(shape, f"{self.source}: tensor {quoted(name)}", "re-export the model")
        self.total_bytes = getattr(self, "total_bytes", 0) + int(np.prod(shape, dtype=np.int64)) * \
            np.dtype(dtype).itemsize
        if self.total_bytes > MAX_GRAPH_BYTES:
            raise N6Error(f"{self.source}: the model's tensors need more than {MAX_GRAPH_BYTES >> 20} MB (at "
                          f"{quoted(name)}, shape {list(shape)}); the emulator refuses models this large")
        self.tensors[name] = Tensor(name, tuple(int(d) for d in shape), np.dtype(dtype),
                                    None if scale is None else np.atleast_1d(np.asarray(scale, np.float32)),
                                    None if zp is None else np.atleast_1d(np.asarray(zp, np.int64)), axis, data)
        return name

    def only_consumer(self, name, node):
        c = self.consumers.get(name, [])
        if len(c) != 1:
            self.fail(node, f"tensor {name!r} must feed exactly one node in a QDQ pattern, found {len(c)}")
        return c[0]

    def scale_of(self, name, node, per_channel=False):
        """A float32 quantization scale constant (scalar, or 1-D when per_channel), finite and > 0."""
        s = np.asarray(self.const(name, node))
        if s.dtype != np.float32 or s.size == 0 or (s.ndim > 0 and not per_channel and s.size != 1) or s.ndim > 1:
            self.fail(node, f"scale {quoted(name)} is {s.dtype} of shape {list(s.shape)}; QDQ scales are float32 "
                      f"scalars (or 1-D per channel): re-quantize the model")
        s = s.reshape(-1)
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            self.fail(node, f"scale {quoted(name)} holds {float(s[~(np.isfinite(s) & (s > 0))][0])}; scales must "
                      f"be finite and > 0: re-quantize the model")
        return s

    def zp_of(self, name, node, dtypes=(np.int8, np.uint8)):
        z = self.consts.get(name)
        if z is None:
            self.fail(node, f"zero-point {quoted(name)} must be a constant")
        if z.dtype not in dtypes:
            self.fail(node, f"zero-point {quoted(name)} is {z.dtype}; it must be "
                      f"{' or '.join(np.dtype(d).name for d in dtypes)}: re-quantize the model")
        return z

    def qparams(self, qnode):
        if len(qnode.input) < 2 or len(qnode.input) > 3 or len(qnode.output) != 1:
            self.fail(qnode, "a QuantizeLinear/DequantizeLinear needs 2 or 3 inputs and one output")
        scale = np.float32(self.scale_of(qnode.input[1], qnode)[0])
        zp_arr = self.zp_of(qnode.input[2], qnode) if len(qnode.input) > 2 and qnode.input[2] else None
        if zp_arr is not None and zp_arr.size != 1:
            self.fail(qnode, f"zero-point {quoted(qnode.input[2])} has {zp_arr.size} values; an activation is "
                      f"quantized per tensor")
        zp = 0 if zp_arr is None else int(zp_arr.reshape(-1)[0])
        dtype = np.uint8 if zp_arr is not None and zp_arr.dtype == np.uint8 else np.int8
        return scale, zp, dtype

    def dq_weight(self, name, node, bias=False):
        """(int data, float32 scales, int64 zero-points, axis) of a DequantizeLinear of a constant (int8/uint8
        weights; int32 when `bias`)."""
        dq = self.producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in self.consts:
            if name in self.consts:
                self.fail(node, f"weight {name!r} is float (not quantized): the model must be QDQ; {HOW_TO_QUANTIZE}")
            self.fail(node, f"input {name!r} must be a DequantizeLinear of a constant")
        data = self.consts[dq.input[0]]
        if len(dq.input) < 2 or len(dq.input) > 3:
            self.fail(dq, "a DequantizeLinear needs 2 or 3 inputs")
        if data.dtype not in ((np.int32,) if bias else (np.int8, np.uint8)):
            self.fail(node, f"{'bias' if bias else 'weight'} {quoted(dq.input[0])} is {data.dtype}; "
                      f"{'an int32 bias' if bias else 'int8 (or uint8) weights'} are needed: {HOW_TO_QUANTIZE}")
        scale = self.scale_of(dq.input[1], dq, per_channel=True)
        zp = (np.asarray(self.zp_of(dq.input[2], dq, (data.dtype,))).astype(np.int64).reshape(-1)
              if len(dq.input) > 2 and dq.input[2] else np.zeros(scale.size, np.int64))
        if zp.size != scale.size:
            self.fail(dq, f"{scale.size} scale(s) but {zp.size} zero-point(s)")
        axis = _attr(dq, "axis", 1)
        if scale.size > 1:
            if not isinstance(axis, int) or not -data.ndim <= axis < data.ndim or data.shape[axis] != scale.size:
                self.fail(dq, f"{scale.size} per-channel scales do not match axis {axis} of "
                          f"{quoted(dq.input[0])} (shape {list(data.shape)})")
            axis %= data.ndim
        if data.dtype == np.uint8:
            data, zp = (data.astype(np.int16) - 128).astype(np.int8), zp - 128
        return data, scale, zp, axis

    def act_in(self, name, node, nhwc=False):
        """IR tensor of an activation input given through DequantizeLinear (nhwc: a 4-D one in the kernels' NHWC
        layout, converted once and kept)."""
        dq = self.producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            self.fail(node, f"input {name!r} is not dequantized from an int8 tensor: the model must be QDQ; "
                      f"{HOW_TO_QUANTIZE}")
        q = dq.input[0]
        if q not in self.act:
            self.fail(node, f"tensor {quoted(q)} is not a quantized activation the importer knows")
        entry = self.act[q]
        t = self.tensors[entry[0]]
        s, zp, dtype = self.qparams(dq)
        if dtype != self.io_dtype or s != np.float32(t.scale[0]) or zp + self.shift != int(t.zero_point[0]):
            self.fail(node, f"DequantizeLinear {quoted(dq.name or name)} uses scale {float(s):.9g} / zero-point "
                      f"{zp} ({np.dtype(dtype).name}) but its QuantizeLinear uses {float(t.scale[0]):.9g} / "
                      f"{int(t.zero_point[0]) - self.shift} ({np.dtype(self.io_dtype).name}); a QDQ pair must share "
                      f"them: {HOW_TO_QUANTIZE}")
        if nhwc and len(entry[2]) == 4 and entry[1] != "nhwc":
            entry = self.act[q] = self.normalize(entry, node)
        return entry

    def out_q(self, node):
        """Follows node's output through optional Relu/Clip to its QuantizeLinear: (q node, act_min, act_max)."""
        name = node.output[0]
        nxt = self.only_consumer(name, node)
        lo = hi = None
        if nxt.op_type in ("Relu", "Clip"):
            lo, hi = self.clip_bounds(nxt)
            self.done.add(id(nxt))
            nxt = self.only_consumer(nxt.output[0], nxt)
        return self.quantize_with_bounds(node, nxt, lo, hi)

    def clip_bounds(self, nxt):
        """(lo, hi) of a Relu (0, None) or Clip (its min/max inputs or attributes, None when absent)."""
        if nxt.op_type == "Relu":
            return 0.0, None

        def bound(i, attr):
            if len(nxt.input) > i and nxt.input[i]:
                v = np.asarray(self.const(nxt.input[i], nxt))
                if v.size != 1 or v.dtype != np.float32:
                    self.fail(nxt, f"Clip bound {quoted(nxt.input[i])} must be a float32 scalar")
                return float(v.reshape(-1)[0])
            v = _attr(nxt, attr)
            return None if v is None else float(v)
        return bound(1, "min"), bound(2, "max")

    def quantize_with_bounds(self, node, nxt, lo, hi):
        """(q node, scale, zero-point, act_min, act_max) of the QuantizeLinear `nxt` after a Relu/Clip (lo, hi)."""
        if nxt.op_type != "QuantizeLinear":
            self.fail(node, f"output must be quantized by a QuantizeLinear (found {nxt.op_type}); {HOW_TO_QUANTIZE}")
        self.done.add(id(nxt))
        scale, zp, dtype = self.qparams(nxt)
        if dtype != self.io_dtype:
            self.fail(nxt, f"QuantizeLinear to {np.dtype(dtype).name} in a model whose input is "
                      f"{np.dtype(self.io_dtype).name}; mixed int8/uint8 activations are unsupported: "
                      f"{HOW_TO_QUANTIZE}")
        zp += self.shift
        # Q(relu(v)) == max(Q(v), Q(0)); Q(clip(v,lo,hi)) == clamp(Q(v), Q(lo), Q(hi)): round_half_even is monotone
        act_min = INT8_MIN if lo is None else max(INT8_MIN, int(np.rint(np.float32(lo) / scale)) + zp)
        act_max = INT8_MAX if hi is None else min(INT8_MAX, int(np.rint(np.float32(hi) / scale)) + zp)
        names = {(None, None): "NONE", (0.0, None): "RELU", (0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1"}
        self.activation = names.get((lo, hi))
        if self.activation is None:
            self.fail(node, f"Clip({lo}, {hi}) has no TFLite activation equivalent; use Relu, Relu6 or Clip(-1, 1)")
        return nxt, scale, zp, act_min, act_max

    def same_quantization(self, q, t, node):
        """A data-movement op (Reshape, Flatten, Transpose) copies int8 values: its QuantizeLinear must keep the
        input's scale and zero-point (quantize_static does), else ORT would requantize."""
        s, zp, dtype = self.qparams(q)
        if dtype != self.io_dtype or s != np.float32(t.scale[0]) or zp + self.shift != int(t.zero_point[0]):
            self.fail(node, f"output QuantizeLinear uses scale {float(s):.9g} / zero-point {zp} but the input has "
                      f"{float(t.scale[0]):.9g} / {int(t.zero_point[0]) - self.shift}; a data-movement op must keep "
                      f"the quantization: {HOW_TO_QUANTIZE}")

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

    def check_supported(self):
        """Every op type the importer does not read, listed at once: one line naming each op and its layers."""
        bad = {}
        for n in self.nodes:
            if n.op_type not in SUPPORTED_OPS:
                bad.setdefault(printable(n.op_type), []).append(printable(n.name or n.output[0]))
        if bad:
            parts = []
            for op, layers in bad.items():
                shown = ", ".join(quoted(x) for x in layers[:5]) + (f", ... ({len(layers) - 5} more)"
                                                                    if len(layers) > 5 else "")
                parts.append(f"{op} ({len(layers)} layer{'s' if len(layers) > 1 else ''}: {shown})")
            supported = [op for op in SUPPORTED_OPS if op not in ("QuantizeLinear", "DequantizeLinear")]
            raise N6Error(f"{self.source}: unsupported ops: {', '.join(parts)}; supported: {', '.join(supported)}")

    # -- main --
    def run(self):
        g = self.proto.graph
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.done = set()
        if not self.nodes:
            raise N6Error(f"{self.source} has no nodes: not a usable ONNX model; pass a QDQ-quantized .onnx model")
        if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for n in self.nodes):
            raise N6Error(f"{self.source} is a float (unquantized) ONNX model; {HOW_TO_QUANTIZE}")
        inits = set(self.consts)
        inputs = [i for i in g.input if i.name not in inits]
        if len(inputs) != 1 or len(g.output) != 1:
            raise N6Error(f"{self.source} must have one input and one output (got {len(inputs)} and {len(g.output)})")
        inp = inputs[0]
        shape = []
        for d in inp.type.tensor_type.shape.dim:     # a symbolic (dim_param) or unset dimension is a batch of 1
            v = int(d.dim_value) if d.WhichOneof("value") == "dim_value" else 1
            if v <= 0 or v > (1 << 24):
                raise N6Error(f"{self.source}: input {quoted(inp.name)} has dimension {v} in shape "
                              f"{[int(x.dim_value) if x.WhichOneof('value') == 'dim_value' else x.dim_param for x in inp.type.tensor_type.shape.dim]}; "
                              f"every dimension must be 1..{1 << 24}: re-export the model with its real input shape")
            shape.append(v)
        shape = check_shape(shape, f"{self.source}: input {quoted(inp.name)}", "re-export the model")
        self.check_supported()
        # float layout-only ops before the first QuantizeLinear (tf2onnx: a leading NHWC -> NCHW Transpose) run on
        # the quantized values: the input buffer keeps the ONNX input's layout and shape (ST keeps the I/O layout)
        lead, cur = [], inp.name
        while True:
            cons = self.consumers.get(cur, [])
            if len(cons) == 1 and cons[0].op_type in LAYOUT_OPS:
                lead.append(cons[0])
                cur = cons[0].output[0]
                continue
            break
        if len(cons) != 1 or cons[0].op_type != "QuantizeLinear":
            found = ", ".join(sorted({f"{c.op_type} {quoted(c.name or c.output[0])}" for c in cons})) or "nothing"
            rnn_hint = " (quantize_static leaves LSTM/GRU float, input included, unless op_types_to_quantize lists " \
                "them)" if any(c.op_type in ("LSTM", "GRU") for c in cons) else ""
            raise N6Error(f"{self.source}: input {quoted(inp.name)} reaches {found} before any QuantizeLinear; "
                          f"only layout ops ({', '.join(LAYOUT_OPS)}) may stand before the first QuantizeLinear: "
                          f"{HOW_TO_QUANTIZE}{rnn_hint}" if found != "nothing" else
                          f"{self.source}: input {quoted(inp.name)} feeds no QuantizeLinear; {HOW_TO_QUANTIZE}")
        q_in = cons[0]
        in_scale, in_zp, self.io_dtype = self.qparams(q_in)
        self.shift = -128 if self.io_dtype == np.uint8 else 0
        self.done.add(id(q_in))
        if len(shape) == 4 and self.io_layout == "channel-last" and not lead:
            buf = self.add_tensor(inp.name, tuple(shape[p] for p in TO_NHWC), in_scale, in_zp + self.shift)
            entry = (buf, "nhwc", shape)
        else:
            buf = self.add_tensor(inp.name, shape, in_scale, in_zp + self.shift)
            entry = (buf, "flat", shape)
        for node in lead:
            entry = self.apply_layout(entry, node)
            self.done.add(id(node))
        self.act[q_in.output[0]] = self.normalize(entry, q_in)     # a 4-D input to NHWC right away (as ST does)

        tail, softmax_axis, out_dq, tail_chain = None, -1, None, []
        for node in self.nodes:
            if id(node) in self.done:
                continue
            op = node.op_type
            if op == "DequantizeLinear":
                if node.input[0] in self.consts:
                    continue                       # weights: read by their consumer
                chain, cur = [], node.output[0]    # float layout ops after the last DequantizeLinear
                while True:
                    nxt = self.consumers.get(cur, [])
                    if cur != g.output[0].name and len(nxt) == 1 and nxt[0].op_type in LAYOUT_OPS:
                        chain.append(nxt[0])
                        cur = nxt[0].output[0]
                        continue
                    break
                if cur == g.output[0].name:
                    tail, out_dq, tail_chain = "dequantize", node, chain
                elif len(nxt) == 1 and nxt[0].op_type == "Softmax" and nxt[0].output[0] == g.output[0].name:
                    tail, out_dq, tail_chain = "dequantize+softmax", node, chain
                    softmax_axis = self.ints(nxt[0], "axis", None, -1, lo=-8)
                    self.done.add(id(nxt[0]))
                else:
                    continue
                for c in chain:
                    self.done.add(id(c))
                continue
            if op == "QuantizeLinear":
                self.fail(node, "QuantizeLinear without a supported producer")
            if op == "Softmax":
                self.quantized_softmax(node)
                continue
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                self.fail(node, f"unsupported op {op}; supported: {', '.join(SUPPORTED_OPS)}")
            handler(node)

        # output
        if out_dq is not None:
            final = out_dq.input[0]
        else:
            final = self.producer[g.output[0].name].output[0] if g.output[0].name in self.producer else None
        if final not in self.act:
            raise N6Error(f"{self.source}: output {g.output[0].name!r} is not a quantized tensor; {HOW_TO_QUANTIZE}")
        entry = self.act[final]
        for node in tail_chain:
            entry = self.apply_layout(entry, node, channel_last=False)
        keep_nhwc = entry[1] == "nhwc" and self.io_layout == "channel-last" and not tail_chain
        out_name = entry[0] if keep_nhwc else self.to_identity(entry, self.producer[final])
        out_shape = tuple(self.tensors[out_name].shape)
        if tail == "dequantize+softmax" and not -len(out_shape) <= softmax_axis < len(out_shape):
            raise N6Error(f"{self.source}: the final Softmax has axis {softmax_axis}, outside the {len(out_shape)}-D "
                          f"output; re-export the model")
        used = {i for n in self.ir_nodes for i in n.inputs} | {o for n in self.ir_nodes for o in n.outputs}
        tensors = {k: v for k, v in self.tensors.items() if k in used or k == buf}
        graph = Graph(tensors, self.ir_nodes, [buf], [out_name], self.source)
        o_scale = o_zp = None
        if out_dq is not None:
            o_scale, o_zp, _ = self.qparams(out_dq)
        check_graph(graph, "re-export the model")
        return OnnxModel(graph, self.io_dtype, inp.name, tuple(self.tensors[buf].shape), in_scale, in_zp, out_shape,
                         o_scale, o_zp, tail, softmax_axis)

    # -- ops --
    def op_Conv(self, node):
        entry = self.act_in(node.input[0], node, nhwc=True)
        w, ws, wzp, _ = self.dq_weight(node.input[1], node)
        if w.ndim not in (3, 4):
            self.fail(node, f"only 1-D and 2-D convolutions are supported (weights {list(w.shape)})")
        one_d = w.ndim == 3
        nd = 1 if one_d else 2
        if one_d:                        # Conv1D: a 2-D convolution of height 1 on [N, 1, L, C]
            if len(entry[2]) != 3:
                self.fail(node, f"a Conv with 3-D weights needs a 3-D [N, C, L] input, got shape {list(entry[2])}")
            entry = self.to_nlc(entry, node)
            w = w[:, :, None, :]
        x_name, layout, shape = entry
        bias = self.bias(node, 2, w.shape[0], self.tensors[x_name].scale[0], ws)
        q, scale, zp, act_min, act_max = self.out_q(node)
        x = self.tensors[x_name]
        if not one_d and (layout != "nhwc" or len(x.shape) != 4):
            self.fail(node, f"Conv needs a 4-D NCHW input, got shape {list(shape)}")
        n, h, wd, cin = x.shape
        cout, cin_g, kh, kw = w.shape
        group = self.ints(node, "group", None, 1)
        k = [kh, kw][2 - nd:]
        if _attr(node, "kernel_shape") is not None and self.ints(node, "kernel_shape", nd, None) != k:
            self.fail(node, f"kernel_shape {list(_attr(node, 'kernel_shape'))} does not match the weights "
                      f"{list(w.shape) if not one_d else [cout, cin_g, kw]}")
        strides = self.ints(node, "strides", nd, [1] * nd)
        dilations = self.ints(node, "dilations", nd, [1] * nd)
        sh, sw = ([1] + strides) if one_d else strides
        dh, dw = ([1] + dilations) if one_d else dilations
        if group == 1 and cin_g != cin:
            self.fail(node, f"weights {list(w.shape)} expect {cin_g} input channels, the input has {cin}")
        if ws.size not in (1, cout):
            self.fail(node, f"{ws.size} weight scales for {cout} output channels")
        pt, pl, pb, pr = self.pads(node, (h, wd), (kh, kw), (sh, sw), (dh, dw), nd)
        if h + pt + pb < (kh - 1) * dh + 1 or wd + pl + pr < (kw - 1) * dw + 1:
            self.fail(node, f"the {kh}x{kw} kernel (dilations {dh}x{dw}) is larger than the padded {h}x{wd} input")
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
        self.act[q.output[0]] = (out, "nlc", (n, cout, ow)) if one_d else (out, "nhwc", (n, cout, oh, ow))

    def pads(self, node, hw, k, s, d, nd=2):
        """(top, left, bottom, right) of a 2-D window; nd=1: the ONNX attributes describe the width only."""
        auto = _attr(node, "auto_pad", b"NOTSET")
        auto = auto.decode("utf-8", "replace") if isinstance(auto, bytes) else str(auto)
        if auto in ("NOTSET", ""):
            p = self.ints(node, "pads", 2 * nd, [0] * (2 * nd), lo=0)
            if nd == 1:
                return 0, int(p[0]), 0, int(p[1])
            return int(p[0]), int(p[1]), int(p[2]), int(p[3])
        if auto == "VALID":
            return 0, 0, 0, 0
        if auto not in ("SAME_UPPER", "SAME_LOWER"):
            self.fail(node, f"auto_pad = {quoted(auto)} is not NOTSET, VALID, SAME_UPPER or SAME_LOWER")
        res = []
        for i in range(2):
            out = -(-hw[i] // s[i])
            total = max((out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - hw[i], 0)
            small, big = total // 2, total - total // 2
            res.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return res[0][0], res[1][0], res[0][1], res[1][1]

    def bias(self, node, idx, n_out, x_scale=None, w_scales=None):
        if len(node.input) <= idx or not node.input[idx]:
            return None
        return self.bias_tensor(node.input[idx], node, n_out, x_scale, w_scales)

    def bias_tensor(self, name, node, n_out, x_scale, w_scales):
        """The int32 bias of a DequantizeLinear(bias, s_b, zp_b): used as is by the integer kernels (and by ORT's
        fused QLinearConv/QGemm), which is exact only when s_b = s_in * s_w[c] (float32, up to rounding) and
        zp_b = 0 - what quantize_static writes. Any other bias quantization is refused: ORT would dequantize it
        with its own scale when it does not fuse, and the integer graph cannot express that."""
        b, bs, bzp, _ = self.dq_weight(name, node, bias=True)
        b = b.reshape(-1)
        if b.size != n_out:
            self.fail(node, f"bias {quoted(name)} has {b.size} values for {n_out} output channels")
        if np.any(bzp != 0):
            self.fail(node, f"bias {quoted(name)} has zero-point {int(bzp[bzp != 0][0])}; an int32 bias needs "
                      f"zero-point 0: {HOW_TO_QUANTIZE}")
        if x_scale is not None:
            want = (np.float32(x_scale) * np.asarray(w_scales, np.float32)).astype(np.float32)
            want = np.broadcast_to(want, (n_out,)) if want.size in (1, n_out) else want
            got = np.broadcast_to(bs, (n_out,)) if bs.size in (1, n_out) else None
            if got is None or not np.allclose(got, want, rtol=1e-5, atol=0):
                k = 0 if got is None else int(np.argmax(~np.isclose(got, want, rtol=1e-5, atol=0)))
                self.fail(node, f"bias {quoted(name)} has scale {float(bs.reshape(-1)[min(k, bs.size - 1)]):.9g} "
                          f"but input scale x weight scale is {float(want[k]):.9g} (channel {k}); the emulator needs "
                          f"bias scale = s_in * s_w and zero-point 0: {HOW_TO_QUANTIZE}")
        return self.add_tensor(self.fresh(name), (n_out,), data=np.ascontiguousarray(b, np.int32), dtype=np.int32)

    def op_Gemm(self, node):
        if _attr(node, "alpha", 1.0) != 1.0 or _attr(node, "beta", 1.0) != 1.0 or _attr(node, "transA", 0):
            self.fail(node, "Gemm needs alpha = beta = 1 and transA = 0")
        w, ws, wzp, axis = self.dq_weight(node.input[1], node)
        if w.ndim != 2:
            self.fail(node, f"Gemm weights must be 2-D, got shape {list(w.shape)}")
        trans_b = _attr(node, "transB", 0)
        if ws.size > 1 and axis != (0 if trans_b else 1):
            self.fail(node, f"weights are quantized per channel along axis {axis}, not the output axis")
        if not trans_b:
            w = w.T
        x_scale = self.tensors[self.act_in(node.input[0], node)[0]].scale[0]
        self.fc(node, node.input[0], w, ws, wzp, self.bias(node, 2, w.shape[0], x_scale, ws), node)

    def op_MatMul(self, node):
        dq = self.producer.get(node.input[1])
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] not in self.consts:
            return self.matmul_activations(node)
        w, ws, wzp, axis = self.dq_weight(node.input[1], node)
        if w.ndim != 2:
            self.fail(node, "MatMul weights must be 2-D")
        if ws.size > 1 and axis != 1:
            self.fail(node, f"weights are quantized per channel along axis {axis}, not the output axis 1")
        bias, end = None, node
        nxt = self.only_consumer(node.output[0], node)
        if nxt.op_type == "Add":
            other = nxt.input[1] if nxt.input[0] == node.output[0] else nxt.input[0]
            x_scale = self.tensors[self.act_in(node.input[0], node)[0]].scale[0]
            bias = self.bias_tensor(other, nxt, w.shape[1], x_scale, ws)
            self.done.add(id(nxt))
            end = nxt
        self.fc(node, node.input[0], w.T, ws, wzp, bias, end)

    def matmul_activations(self, node):
        """DQ(a) x DQ(b) -> Q with two activations of equal batch dims: onnxruntime fuses it into QLinearMatMul (an
        exact int32 product, emu.graph.ops.matmul). A DequantizeLinear shared with other nodes (or, int8, a
        QuantizeLinear feeding several DequantizeLinear) keeps ORT from fusing (it then runs a float MatMul), so
        those are refused."""
        for name in node.input[:2]:
            if len(self.consumers.get(name, [])) != 1:
                self.fail(node, f"input {quoted(name)} feeds other nodes too; onnxruntime then runs the MatMul in "
                          f"float, which is unsupported: give each consumer its own DequantizeLinear")
            # int8: ORT's QDQS8ToU8 rewrite turns a QuantizeLinear -> DequantizeLinear pair to uint8 only when the
            # QuantizeLinear feeds that one DequantizeLinear; with one input left int8 the types differ and the
            # MatMul is not fused (float MatMul), so both pairs must be 1:1
            src = self.producer[name].input[0]
            if self.io_dtype == np.int8 and len(self.consumers.get(src, [])) != 1:
                self.fail(node, f"the int8 tensor {quoted(src)} before input {quoted(name)} feeds "
                          f"{len(self.consumers.get(src, []))} DequantizeLinear nodes; onnxruntime then runs the "
                          f"MatMul in float, which is unsupported: quantize each MatMul input once for it alone")
        ea, eb = self.act_in(node.input[0], node), self.act_in(node.input[1], node)
        sa, sb = ea[2], eb[2]
        if len(sa) < 2 or len(sb) < 2 or len(sa) != len(sb) or tuple(sa[:-2]) != tuple(sb[:-2]) or sa[-1] != sb[-2]:
            self.fail(node, f"MatMul of activations {list(sa)} x {list(sb)} is unsupported; both inputs need the "
                      f"same rank (>= 2), equal batch dimensions and matching inner dimensions")
        nxt = self.only_consumer(node.output[0], node)
        if nxt.op_type in ("Relu", "Clip"):      # ORT keeps MatMul -> Relu -> Q unfused (a float MatMul)
            self.fail(node, f"a {nxt.op_type} between a MatMul of two activations and its QuantizeLinear keeps "
                      f"onnxruntime from fusing it (it runs in float), which is unsupported; quantize the MatMul "
                      f"output directly")
        a, b = self.to_identity(ea, node), self.to_identity(eb, node)
        q, scale, zp, act_min, act_max = self.quantize_with_bounds(node, nxt, None, None)
        shape = tuple(sa[:-1]) + (sb[-1],)
        out = self.add_tensor(q.output[0], shape, scale, zp)
        self.emit("matmul", node.name or q.output[0], [a, b], [out], activation=self.activation, act_min=act_min,
                  act_max=act_max)
        self.act[q.output[0]] = (out, "flat", shape)

    def fc(self, node, x_in, w, ws, wzp, bias, end):
        entry = self.act_in(x_in, node)
        x_name = self.to_identity(entry, node)
        x = self.tensors[x_name]
        q, scale, zp, act_min, act_max = self.out_q(end)
        n_out = w.shape[0]
        if x.size != w.shape[1]:
            self.fail(node, f"input of {x.size} values does not match weights {w.shape}")
        if ws.size not in (1, n_out):
            self.fail(node, f"{ws.size} weight scales for {n_out} outputs")
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
        entry = self.act_in(node.input[0], node, nhwc=True)
        one_d = len(entry[2]) == 3               # 1-D pools run as 2-D pools of height 1 on [N, 1, L, C]
        nd = 1 if one_d else 2
        if one_d:
            entry = self.to_nlc(entry, node)
        x_name, layout, shape = entry
        x = self.tensors[x_name]
        if not one_d and (layout != "nhwc" or len(x.shape) != 4):
            self.fail(node, f"{op} needs a 4-D NCHW (or 3-D NCL) input, got shape {list(shape)}")
        n, h, w, c = x.shape
        q, scale, zp, act_min, act_max = self.out_q(node)
        if op == "GlobalAveragePool":
            kh, kw, sh, sw, pt, pl, pb, pr = h, w, 1, 1, 0, 0, 0, 0
        else:
            if _attr(node, "ceil_mode", 0):
                self.fail(node, "ceil_mode=1 is unsupported; export with ceil_mode=False")
            if list(_attr(node, "dilations", [1] * nd)) != [1] * nd or len(node.output) > 1:
                self.fail(node, f"{op} with dilations or indices is unsupported")
            k = self.ints(node, "kernel_shape", nd, None)
            st = self.ints(node, "strides", nd, [1] * nd)
            kh, kw = ([1] + k) if one_d else k
            sh, sw = ([1] + st) if one_d else st
            pt, pl, pb, pr = self.pads(node, (h, w), (kh, kw), (sh, sw), (1, 1), nd)
            if max(pt, pb) >= kh or max(pl, pr) >= kw:
                self.fail(node, f"pads {[pt, pl, pb, pr]} must be smaller than the {kh}x{kw} kernel")
            if h + pt + pb < kh or w + pl + pr < kw:
                self.fail(node, f"the {kh}x{kw} kernel is larger than the padded {h}x{w} input")
            if self.ints(node, "count_include_pad", None, 0, lo=0) > 1:
                self.fail(node, "count_include_pad must be 0 or 1")
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
        self.act[q.output[0]] = (out, "nlc", (n, c, ow)) if one_d else (out, "nhwc", (n, c, oh, ow))

    def op_MaxPool(self, node):
        self.pool(node, "MaxPool")

    def op_AveragePool(self, node):
        self.pool(node, "AveragePool")

    def op_GlobalAveragePool(self, node):
        self.pool(node, "GlobalAveragePool")

    # -- layout-only ops (Transpose, Reshape, Squeeze, Unsqueeze, Flatten, Identity) --
    def layout_target(self, node, shape):
        """(kind, perm, output shape) of a layout op on a logical input `shape`: kind 'transpose' (perm), 'reshape'
        or 'identity'."""
        op, rank = node.op_type, len(shape)
        if op == "Identity":
            return "identity", None, tuple(shape)
        if op == "Transpose":
            perm = self.ints(node, "perm", rank, list(range(rank - 1, -1, -1)), lo=0)
            if sorted(perm) != list(range(rank)):
                self.fail(node, f"perm {perm} is not a permutation of the {rank} input axes")
            return "transpose", list(perm), tuple(shape[p] for p in perm)
        if op == "Flatten":
            axis = self.ints(node, "axis", None, 1, lo=-rank)
            if axis > rank:
                self.fail(node, f"axis {axis} is out of range for a {rank}-D input")
            axis = axis + rank if axis < 0 else axis
            return "reshape", None, (int(np.prod(shape[:axis], dtype=np.int64)),
                                     int(np.prod(shape[axis:], dtype=np.int64)))
        if op in ("Squeeze", "Unsqueeze"):
            axes = None
            if len(node.input) > 1 and node.input[1]:
                a = np.asarray(self.const(node.input[1], node))
                if a.dtype != np.int64 or a.ndim != 1:
                    self.fail(node, f"axes {quoted(node.input[1])} must be a 1-D int64 constant")
                axes = [int(v) for v in a]
            elif _attr(node, "axes") is not None:
                axes = [int(v) for v in _attr(node, "axes")]
            if op == "Squeeze":
                if axes is None:
                    return "reshape", None, tuple(d for d in shape if d != 1)
                if any(not -rank <= v < rank for v in axes) or len({v % rank for v in axes}) != len(axes):
                    self.fail(node, f"axes {axes} are out of range or repeated for a {rank}-D input")
                axes = {v % rank for v in axes}
                if any(shape[v] != 1 for v in axes):
                    self.fail(node, f"axes {sorted(axes)} of shape {list(shape)} are not all 1")
                return "reshape", None, tuple(d for i, d in enumerate(shape) if i not in axes)
            if axes is None:
                self.fail(node, "Unsqueeze needs axes")
            out_rank = rank + len(axes)
            if any(not -out_rank <= v < out_rank for v in axes) or len({v % out_rank for v in axes}) != len(axes):
                self.fail(node, f"axes {axes} are out of range or repeated for a {out_rank}-D output")
            axes, it = {v % out_rank for v in axes}, iter(shape)
            return "reshape", None, tuple(1 if i in axes else next(it) for i in range(out_rank))
        # Reshape
        if len(node.input) < 2:
            self.fail(node, "Reshape needs a shape input")
        spec = np.asarray(self.const(node.input[1], node))
        if spec.dtype != np.int64 or spec.ndim != 1 or spec.size > 8:
            self.fail(node, f"shape {quoted(node.input[1])} must be a 1-D int64 constant of at most 8 values")
        target = [int(v) for v in spec]
        if any(v < -1 for v in target) or target.count(-1) > 1 or any(v == 0 and i >= rank
                                                                       for i, v in enumerate(target)):
            self.fail(node, f"target shape {target} is invalid (values >= -1, one -1 at most, 0 only to copy an "
                      f"existing dimension)")
        if _attr(node, "allowzero", 0) and 0 in target:
            self.fail(node, "allowzero = 1 with a 0 in the target shape gives an empty tensor")
        target = [shape[i] if v == 0 else v for i, v in enumerate(target)]
        total = int(np.prod(shape, dtype=np.int64))
        if -1 in target:
            known = int(np.prod([v for v in target if v != -1], dtype=np.int64))
            target[target.index(-1)] = total // known if known else 0
        if int(np.prod(target, dtype=np.float64)) != total:
            self.fail(node, f"target shape {target} does not hold the input's {total} values (shape {list(shape)})")
        return "reshape", None, tuple(target)

    def out_name(self, base):
        return base if base not in self.tensors else self.fresh(base)

    def apply_layout(self, entry, node, channel_last=True, out_name=None):
        """The int8 entry of a layout op's output: the op on the quantized values (exact: it only moves them).
        A Transpose that turns a channel-last identity-layout 4-D tensor into NCHW costs nothing (the data already
        is in the kernels' NHWC order); other ops emit IR transpose/reshape nodes. The result is in identity layout
        unless it stayed channel-last (call normalize() at the end of a chain). out_name: the IR name of a tensor
        this op creates (default: the op's ONNX output name)."""
        kind, perm, new_shape = self.layout_target(node, entry[2])
        new_name = self.out_name(node.output[0] if out_name is None else out_name)
        if kind == "identity":
            return entry
        name, layout, shape = entry
        if kind == "transpose":
            if perm == list(range(len(shape))):
                return entry
            if layout == "nhwc" and perm == list(TO_NHWC):
                return (name, "flat", new_shape)        # NCHW -> NHWC of channel-last data: its own order, no copy
            if layout == "nhwc":
                inv = [TO_NHWC.index(a) for a in range(4)]          # logical axis -> internal axis
                internal_perm = [inv[perm[TO_NHWC[k]]] for k in range(4)]
                if internal_perm == [0, 1, 2, 3]:
                    return (name, "nhwc", new_shape)
                t = self.tensors[name]
                if not channel_last:            # at the output: straight to the ONNX order, one transpose
                    out = self.add_tensor(new_name, new_shape, t.scale, t.zero_point)
                    self.emit("transpose", node.name or node.output[0], [name], [out],
                              perm=[inv[perm[k]] for k in range(4)])
                    return (out, "flat", new_shape)
                out = self.add_tensor(new_name, tuple(new_shape[TO_NHWC[k]] for k in range(4)),
                                      t.scale, t.zero_point)
                self.emit("transpose", node.name or node.output[0], [name], [out], perm=internal_perm)
                return (out, "nhwc", new_shape)
            name = self.to_identity((name, layout, shape), node)
            if len(shape) == 4 and perm == list(TO_NCHW):
                return (name, "nhwc", new_shape)                      # channel-last data seen as NCHW: no copy
            if len(shape) > 4:
                self.fail(node, f"a {len(shape)}-D Transpose is unsupported (at most 4-D)")
            t = self.tensors[name]
            if len(shape) == 4 and channel_last:      # to the kernels' NHWC in the same copy
                out = self.add_tensor(new_name, tuple(new_shape[TO_NHWC[k]] for k in range(4)),
                                      t.scale, t.zero_point)
                self.emit("transpose", node.name or node.output[0], [name], [out],
                          perm=[perm[TO_NHWC[k]] for k in range(4)])
                return (out, "nhwc", new_shape)
            out = self.add_tensor(new_name, new_shape, t.scale, t.zero_point)
            self.emit("transpose", node.name or node.output[0], [name], [out], perm=perm)
            return (out, "flat", new_shape)
        name = self.to_identity(entry, node)
        t = self.tensors[name]
        if tuple(t.shape) == tuple(new_shape):
            return (name, "flat", new_shape)
        out = self.add_tensor(new_name, new_shape, t.scale, t.zero_point)
        self.emit("reshape", node.name or node.output[0], [name], [out])
        return (out, "flat", new_shape)

    def normalize(self, entry, node):
        """A 4-D activation in the kernels' layout (NHWC); other ranks as they are."""
        if len(entry[2]) == 4 and entry[1] != "nhwc":
            return (self.to_layout((entry[0], "nchw", entry[2]), "nhwc", node), "nhwc", entry[2])
        return entry

    def to_identity(self, entry, node):
        """An IR tensor of `entry` whose element order is the ONNX logical order (NCHW / NCL / flat)."""
        name, layout, shape = entry
        if layout == "nhwc":
            return self.to_layout(entry, "nchw", node)
        if layout == "nlc":                  # internal [N, 1, L, C] of a logical [N, C, L]
            t = self.tensors[name]
            mid = self.add_tensor(self.fresh(name), (shape[0], shape[1], 1, shape[2]), t.scale, t.zero_point)
            if shape[1] == 1 or shape[2] == 1:
                self.emit("reshape", self.fresh(f"{node.name}_reshape"), [name], [mid])
            else:
                self.emit("transpose", self.fresh(f"{node.name}_transpose"), [name], [mid], perm=list(TO_NCHW))
            out = self.add_tensor(self.fresh(name), tuple(shape), t.scale, t.zero_point)
            self.emit("reshape", self.fresh(f"{node.name}_reshape"), [mid], [out])
            return out
        return name

    def to_nlc(self, entry, node):
        """A 3-D activation [N, C, L] as the kernels' [N, 1, L, C] (Conv1D and 1-D pools run as 2-D, height 1)."""
        name, layout, shape = entry
        if layout == "nlc":
            return entry
        name = self.to_identity(entry, node)
        t = self.tensors[name]
        n, c, length = shape
        mid = self.add_tensor(self.fresh(name), (n, c, 1, length), t.scale, t.zero_point)
        self.emit("reshape", self.fresh(f"{node.name}_reshape"), [name], [mid])
        out = self.add_tensor(self.fresh(name), (n, 1, length, c), t.scale, t.zero_point)
        if c == 1 or length == 1:
            self.emit("reshape", self.fresh(f"{node.name}_reshape"), [mid], [out])
        else:
            self.emit("transpose", self.fresh(f"{node.name}_transpose"), [mid], [out], perm=list(TO_NHWC))
        return (out, "nlc", tuple(shape))

    def layout_chain(self, node):
        """DQ -> layout op(s) -> Q with the same scale/zero-point: the ops on the int8 values (folded)."""
        entry = self.act_in(node.input[0], node)
        chain = [node]
        while True:
            nxt = self.only_consumer(chain[-1].output[0], chain[-1])
            if nxt.op_type not in LAYOUT_OPS:
                break
            chain.append(nxt)
        cur = chain[-1]
        if nxt.op_type != "QuantizeLinear":
            self.fail(cur, f"output must be quantized by a QuantizeLinear (found {nxt.op_type}); {HOW_TO_QUANTIZE}")
        for op in chain:          # the last op's tensor is named after the QuantizeLinear output
            entry = self.apply_layout(entry, op, out_name=nxt.output[0] if op is cur else None)
            self.done.add(id(op))
        self.done.add(id(nxt))
        self.same_quantization(nxt, self.tensors[entry[0]], cur)
        self.act[nxt.output[0]] = entry         # 4-D: converted to NHWC by the first consumer that needs it

    op_Transpose = op_Reshape = op_Flatten = op_Squeeze = op_Unsqueeze = op_Identity = layout_chain

    def const_operand(self, name, like, node):
        """A DequantizeLinear of a constant used as an Add/Mul operand: an int8 IR constant broadcastable to the
        activation `like` (its layout applied), per-tensor quantized."""
        data, scale, zp, _ = self.dq_weight(name, node)
        if scale.size != 1:
            self.fail(node, "a per-channel quantized constant operand is unsupported")
        shape = tuple(like[2])
        data = data.reshape((1,) * (len(shape) - data.ndim) + data.shape)
        data = internal_order(data, like[1])
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
        if len(a[2]) != len(b[2]):
            self.fail(node, f"{node.op_type} inputs of different ranks are unsupported (got {list(a[2])} and "
                      f"{list(b[2])})")
        try:
            logical = np.broadcast_shapes(a[2], b[2])
        except ValueError:
            self.fail(node, f"{node.op_type} inputs {list(a[2])} and {list(b[2])} do not broadcast")
        if a[1] != b[1]:
            a = (self.to_identity(a, node), "flat", a[2])
            b = (self.to_identity(b, node), "flat", b[2])
        q, scale, zp, act_min, act_max = self.out_q(node)
        out = self.add_tensor(q.output[0], np.broadcast_shapes(self.tensors[a[0]].shape, self.tensors[b[0]].shape),
                              scale, zp)
        self.emit(op, node.name or q.output[0], [a[0], b[0]], [out], activation=self.activation, act_min=act_min,
                  act_max=act_max)
        self.act[q.output[0]] = (out, a[1], tuple(logical))

    def quantized_softmax(self, node):
        """DQ -> Softmax -> Q (quantize_static's default, ORT QLinearSoftmax): an IR softmax over the last axis."""
        consumers = self.consumers.get(node.output[0], [])
        if len(consumers) != 1 or consumers[0].op_type != "QuantizeLinear":
            self.fail(node, "an inner float Softmax is unsupported: only a final DequantizeLinear + Softmax or a "
                      "quantized Softmax (DQ -> Softmax -> Q) are")
        x_name, layout, shape = self.act_in(node.input[0], node)
        axis = self.ints(node, "axis", None, -1, lo=-len(shape))
        if axis >= len(shape):
            self.fail(node, f"axis {axis} is out of range for a {len(shape)}-D input")
        axis %= len(shape)
        internal_last = internal_axis(layout, axis) == len(self.tensors[x_name].shape) - 1
        q, scale, zp, _, _ = self.out_q(node)
        if internal_last:
            out = self.add_tensor(q.output[0], self.tensors[x_name].shape, scale, zp)
            self.emit("softmax", node.name or q.output[0], [x_name], [out], beta=1.0)
            self.act[q.output[0]] = (out, layout, shape)
            return
        # another axis: move it last (an exact int8 transpose), softmax, move it back
        if len(shape) > 4:
            self.fail(node, f"Softmax over axis {axis} of a {len(shape)}-D tensor is unsupported (at most 4-D)")
        x_name = self.to_identity((x_name, layout, shape), node)
        t = self.tensors[x_name]
        perm = [k for k in range(len(shape)) if k != axis] + [axis]
        moved = tuple(shape[k] for k in perm)
        a = self.add_tensor(self.fresh(x_name), moved, t.scale, t.zero_point)
        self.emit("transpose", self.fresh(f"{node.name}_transpose"), [x_name], [a], perm=perm)
        b = self.add_tensor(self.fresh(q.output[0]), moved, scale, zp)
        self.emit("softmax", node.name or q.output[0], [a], [b], beta=1.0)
        out = self.add_tensor(q.output[0], tuple(shape), scale, zp)
        self.emit("transpose", self.fresh(f"{node.name}_transpose"), [b], [out], perm=[perm.index(k)
                                                                                     for k in range(len(shape))])
        self.act[q.output[0]] = (out, "flat", shape)

    def op_Relu(self, node):
        """A Relu/Clip with its own DequantizeLinear and QuantizeLinear (quantize_static writes one after a tensor
        with several consumers): Q(relu(DQ(x))) == clamp(Q(DQ(x)), Q(0)), a requantization with an output range."""
        x_name, layout, shape = self.act_in(node.input[0], node)
        lo, hi = self.clip_bounds(node)
        self.done.add(id(node))
        q, scale, zp, act_min, act_max = self.quantize_with_bounds(node, self.only_consumer(node.output[0], node),
                                                                   lo, hi)
        out = self.add_tensor(q.output[0], self.tensors[x_name].shape, scale, zp)
        self.emit("requantize", node.name or q.output[0], [x_name], [out], activation=self.activation,
                  act_min=act_min, act_max=act_max)
        self.act[q.output[0]] = (out, layout, shape)

    op_Clip = op_Relu

    def op_Add(self, node):
        self.binary(node, "add")

    def op_Sub(self, node):
        self.binary(node, "sub")

    def unary(self, node, op, **attrs):
        """DQ -> activation -> Q: an IR unary op (a 256-entry table per layer, see emu.graph.ops.unary)."""
        x_name, layout, shape = self.act_in(node.input[0], node)
        q, scale, zp, act_min, act_max = self.out_q(node)
        out = self.add_tensor(q.output[0], self.tensors[x_name].shape, scale, zp)
        self.emit(op, node.name or q.output[0], [x_name], [out], activation=self.activation, act_min=act_min,
                  act_max=act_max, **attrs)
        self.act[q.output[0]] = (out, layout, shape)

    def float_attr(self, node, name, default):
        v = _attr(node, name, default)
        if not isinstance(v, float) or not np.isfinite(v):
            self.fail(node, f"{name} = {v} must be a finite float")
        return float(np.float32(v))

    def op_ReduceMean(self, node):
        """DQ -> ReduceMean over one contiguous run of axes -> Q (onnxruntime runs it in float, in an order that
        depends on where the run lies; emu.graph.ops.reduce)."""
        entry = self.act_in(node.input[0], node)
        shape = entry[2]
        rank = len(shape)
        if len(node.input) > 1 and node.input[1]:
            a = np.asarray(self.const(node.input[1], node))
            if a.dtype != np.int64 or a.ndim != 1:
                self.fail(node, f"axes {quoted(node.input[1])} must be a 1-D int64 constant")
            axes = [int(v) for v in a]
        else:
            axes = _attr(node, "axes")
            axes = None if axes is None else [int(v) for v in axes]
        if not axes:
            if _attr(node, "noop_with_empty_axes", 0):
                self.fail(node, "ReduceMean with noop_with_empty_axes = 1 and no axes is an identity; remove it")
            axes = list(range(rank))
        if any(not -rank <= v < rank for v in axes) or len({v % rank for v in axes}) != len(axes):
            self.fail(node, f"axes {axes} are out of range or repeated for a {rank}-D input")
        axes = sorted(v % rank for v in axes)
        # ORT's OptimizeShapeForFastReduce: size-1 dimensions dropped, neighbours of the same kind merged; one run of
        # reduced dimensions is [outer, k, inner] (KR: inner = 1, RK: outer = 1, KRK), anything else is refused
        kinds = [i in axes for i in range(rank) if shape[i] != 1]
        runs = [kinds[i] for i in range(len(kinds)) if i == 0 or kinds[i] != kinds[i - 1]]
        if runs.count(True) > 1:
            self.fail(node, f"ReduceMean over axes {axes} of a {rank}-D tensor of shape {list(shape)} is unsupported; "
                      f"the reduced axes (ignoring size-1 ones) must be one contiguous run (e.g. [1], [1, 2] or "
                      f"[2, 3] of NCHW)")
        red = [i for i in range(rank) if i in axes or shape[i] == 1]
        first = next((i for i in range(rank) if i in axes and shape[i] != 1), axes[0])
        last = max((i for i in range(rank) if i in axes and shape[i] != 1), default=axes[-1])
        outer = int(np.prod([shape[i] for i in range(first) if i not in red], dtype=np.int64))
        inner = int(np.prod([shape[i] for i in range(last + 1, rank) if i not in red], dtype=np.int64))
        k = int(np.prod([shape[i] for i in axes], dtype=np.int64))
        keep = self.ints(node, "keepdims", None, 1, lo=0)
        out_shape = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keep else \
            tuple(d for i, d in enumerate(shape) if i not in axes)
        x_name = self.to_identity(entry, node)
        q, scale, zp, act_min, act_max = self.out_q(node)
        out = self.add_tensor(q.output[0], out_shape if out_shape else (1,), scale, zp)
        self.emit("reduce_mean", node.name or q.output[0], [x_name], [out], rows=outer * inner, k=k, inner=inner,
                  activation=self.activation, act_min=act_min, act_max=act_max)
        self.act[q.output[0]] = (out, "flat", out_shape if out_shape else (1,))

    def float_const(self, name, node, what):
        """(float32 values, is a float initializer) of a constant LSTM/GRU operand as onnxruntime computes it: a float
        initializer (onnxruntime prepacks it) or a DequantizeLinear of an integer constant: float32(int32(q) - zp) *
        scale (per tensor or along its axis)."""
        if name in self.consts:
            data = np.asarray(self.consts[name])
            if data.dtype != np.float32 or not np.all(np.isfinite(data)):
                self.fail(node, f"{what} {quoted(name)} must be finite float32 values or a DequantizeLinear of a "
                          f"constant")
            return np.ascontiguousarray(data), True
        dq = self.producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in self.consts:
            self.fail(node, f"{what} {quoted(name)} must be a constant (a float initializer or a DequantizeLinear of "
                      f"one); computed {what} values are unsupported")
        q = np.asarray(self.consts[dq.input[0]])
        if q.dtype not in (np.int8, np.uint8, np.int16, np.uint16, np.int32):
            self.fail(dq, f"{quoted(dq.input[0])} is {q.dtype}; an integer constant is needed")
        s = self.scale_of(dq.input[1], dq, per_channel=True)
        z = np.asarray(self.consts[dq.input[2]]).astype(np.int64).reshape(-1) if len(dq.input) > 2 and dq.input[2] \
            else np.zeros(s.size, np.int64)
        if z.size != s.size:
            self.fail(dq, f"{s.size} scale(s) but {z.size} zero-point(s)")
        shape = [1] * q.ndim
        if s.size > 1:
            axis = _attr(dq, "axis", 1)
            if not -q.ndim <= axis < q.ndim or q.shape[axis] != s.size:
                self.fail(dq, f"{s.size} per-channel scales do not match axis {axis} of {quoted(dq.input[0])} "
                          f"(shape {list(q.shape)})")
            shape[axis % q.ndim] = s.size
        diff = (q.astype(np.int64) - z.reshape(shape)).astype(np.float32)
        return np.ascontiguousarray((diff * s.reshape(shape).astype(np.float32)).astype(np.float32)), False

    def op_LSTM(self, node):
        self.recurrent(node, "lstm")

    def op_GRU(self, node):
        self.recurrent(node, "gru")

    def recurrent(self, node, kind):
        """DQ(X) -> LSTM / GRU -> QuantizeLinear per used output (Y, Y_h, Y_c; layout ops may stand between the
        output and its QuantizeLinear, as quantize_static leaves a float LSTM's Y_h -> Squeeze -> Q). onnxruntime runs
        the node in float (DeepCPU kernels): one IR node onnx_lstm / onnx_gru per quantized output
        (emu.graph.ops.recurrent_onnx). Batch 1, layout 0, default activations, no clip, no sequence_lens, no
        peepholes, no input_forget; directions forward, reverse and bidirectional; GRU linear_before_reset 0 or 1."""
        op = node.op_type
        gates = 4 if kind == "lstm" else 3
        for name in ("clip", "activation_alpha", "activation_beta"):
            if _attr(node, name) is not None:
                self.fail(node, f"{op} attribute {name} is unsupported (onnxruntime's default {op} only)")
        if kind == "lstm" and _attr(node, "input_forget", 0):
            self.fail(node, "LSTM attribute input_forget = 1 is unsupported")
        if _attr(node, "layout", 0):
            self.fail(node, f"{op} attribute layout = {_attr(node, 'layout')} is unsupported (only layout 0: "
                      f"[seq_length, batch, input_size])")
        direction = _attr(node, "direction", b"forward")
        direction = direction.decode("utf-8", "replace") if isinstance(direction, bytes) else str(direction)
        if direction not in ("forward", "reverse", "bidirectional"):
            self.fail(node, f"{op} attribute direction = {quoted(direction)} is not forward, reverse or "
                      f"bidirectional")
        n_dir = 2 if direction == "bidirectional" else 1
        default = (["sigmoid", "tanh", "tanh"] if kind == "lstm" else ["sigmoid", "tanh"]) * n_dir
        acts = _attr(node, "activations")
        if acts is not None:
            names = [a.decode("utf-8", "replace").lower() if isinstance(a, bytes) else str(a).lower() for a in acts]
            if names != default:
                self.fail(node, f"{op} attribute activations = {names} is unsupported; only the defaults "
                          f"({', '.join(default)}) are")
        lbr = int(_attr(node, "linear_before_reset", 0)) if kind == "gru" else 0
        if lbr not in (0, 1):
            self.fail(node, f"GRU attribute linear_before_reset = {lbr} must be 0 or 1")
        ins = list(node.input) + [""] * (8 - len(node.input))
        if ins[4]:
            self.fail(node, f"{op} input sequence_lens is unsupported (every sequence runs its full length)")
        if kind == "lstm" and ins[7]:
            self.fail(node, "LSTM input P (peepholes) is unsupported")
        if kind == "gru" and ins[6]:
            self.fail(node, f"GRU has no input 7 ({quoted(ins[6])})")
        entry = self.act_in(ins[0], node)
        if len(entry[2]) != 3 or entry[2][1] != 1:
            self.fail(node, f"{op} input X has shape {list(entry[2])}; only [seq_length, 1, input_size] (batch 1) is "
                      f"supported")
        steps, isz = int(entry[2][0]), int(entry[2][2])
        w, packed_w = self.float_const(ins[1], node, "weights W")
        r, packed_r = self.float_const(ins[2], node, "weights R")
        if r.ndim != 3 or r.shape[0] != n_dir or r.shape[1] % gates or r.shape[1] != gates * r.shape[2]:
            self.fail(node, f"{op} weights R have shape {list(r.shape)}; [{n_dir}, {gates} * hidden_size, "
                      f"hidden_size] is needed")
        hsz = int(r.shape[2])
        hs_attr = _attr(node, "hidden_size")
        if hs_attr is not None and int(hs_attr) != hsz:
            self.fail(node, f"{op} attribute hidden_size = {hs_attr} but R has shape {list(r.shape)}")
        if w.shape != (n_dir, gates * hsz, isz):
            self.fail(node, f"{op} weights W have shape {list(w.shape)}; [{n_dir}, {gates * hsz}, {isz}] is needed")
        extra = []
        for idx, what, shape in ((3, "bias B", (n_dir, 2 * gates * hsz)), (5, "initial_h", (n_dir, 1, hsz)),
                                 (6, "initial_c", (n_dir, 1, hsz))):
            if idx == 6 and kind == "gru" or not ins[idx]:
                extra.append(None)
                continue
            v, _ = self.float_const(ins[idx], node, what)
            if v.shape != shape:
                self.fail(node, f"{op} input {what} has shape {list(v.shape)}; {list(shape)} is needed")
            extra.append(self.add_tensor(self.fresh(ins[idx]), shape, data=v, dtype=np.float32))
        x_name = self.to_identity(entry, node)
        wt = self.add_tensor(self.fresh(ins[1]), w.shape, data=w, dtype=np.float32)
        rt = self.add_tensor(self.fresh(ins[2]), r.shape, data=r, dtype=np.float32)
        shapes = {"Y": (steps, n_dir, 1, hsz), "Y_h": (n_dir, 1, hsz), "Y_c": (n_dir, 1, hsz)}
        outputs = node.output
        final = self.proto.graph.output[0].name
        for which, o in zip(("Y", "Y_h", "Y_c"), outputs):
            if not o or not self.consumers.get(o):
                continue
            chain, cur = [], o
            while True:
                cons = self.consumers.get(cur, [])
                if len(cons) != 1:
                    self.fail(node, f"{op} output {quoted(cur)} must feed exactly one QuantizeLinear (through layout "
                              f"ops), found {len(cons)} consumers")
                if cons[0].op_type not in LAYOUT_OPS:
                    break
                chain.append(cons[0])
                cur = cons[0].output[0]
            q, scale, zp, act_min, act_max = self.quantize_with_bounds(node, cons[0], None, None)
            for c in chain:
                self.done.add(id(c))
            if q.output[0] != final and all(c.op_type == "DequantizeLinear" and not self.consumers.get(c.output[0])
                                            and c.output[0] != final for c in self.consumers.get(q.output[0], [])):
                continue                     # quantize_static's Q -> DQ of an unused output
            out = self.add_tensor(q.output[0] if not chain else self.fresh(o), shapes[which], scale, zp)
            self.emit(f"onnx_{kind}", f"{node.name or o}#{which}", [x_name, wt, rt] + extra, [out], output=which,
                      direction=direction, steps=steps, input_size=isz, hidden_size=hsz, linear_before_reset=lbr,
                      packed_w=bool(packed_w), packed_r=bool(packed_r), activation="NONE", act_min=act_min,
                      act_max=act_max)
            res = (out, "flat", shapes[which])
            for c in chain:
                res = self.apply_layout(res, c, channel_last=False,
                                        out_name=q.output[0] if c is chain[-1] else None)
            self.act[q.output[0]] = res

    def op_Sigmoid(self, node):
        self.unary(node, "sigmoid")

    def op_Tanh(self, node):
        self.unary(node, "tanh")

    def op_LeakyRelu(self, node):
        self.unary(node, "leaky_relu", alpha=self.float_attr(node, "alpha", 0.01))

    def op_PRelu(self, node):
        """DQ -> PRelu -> Q with the slope a DequantizeLinear of a constant (per-tensor quantized) or a float32
        constant (what quantize_static writes; at most 256 distinct values), unidirectionally broadcastable to the
        input: an IR prelu (onnxruntime runs the float PRelu between the DQ and the Q; emu.graph.ops.prelu)."""
        if len(node.input) != 2 or not node.input[1]:
            self.fail(node, "PRelu needs an input and a slope")
        entry = self.act_in(node.input[0], node)
        slope = node.input[1]
        float_slope = slope in self.consts          # quantize_static leaves the slope float: DQ -> PRelu(k) -> Q
        if float_slope:
            data = np.asarray(self.consts[slope])
            if data.dtype != np.float32 or not np.all(np.isfinite(data)):
                self.fail(node, f"slope {quoted(slope)} must be finite float32 values or a DequantizeLinear of a "
                          f"constant")
            values = np.unique(data)
            if values.size > 256:
                self.fail(node, f"slope {quoted(slope)} holds {values.size} distinct values; at most 256 are "
                          f"supported (quantize the slope)")
        else:
            data = self.dq_weight(slope, node)[0]
        try:
            ok = len(data.shape) <= len(entry[2]) and np.broadcast_shapes(data.shape, entry[2]) == tuple(entry[2])
        except ValueError:
            ok = False
        if not ok:
            self.fail(node, f"slope of shape {list(data.shape)} does not broadcast to the input {list(entry[2])}")
        extra = {}
        if float_slope:     # an int8 constant of indices into the distinct float32 slope values (ops.prelu)
            idx = (np.searchsorted(values, data) - 128).astype(np.int8)
            idx = internal_order(idx.reshape((1,) * (len(entry[2]) - idx.ndim) + idx.shape), entry[1])
            internal = np.ascontiguousarray(np.broadcast_to(idx, self.tensors[entry[0]].shape))
            alpha = self.add_tensor(self.fresh(slope), internal.shape, np.float32(1), 0, internal)
            extra["alpha_f32"] = tuple(float(v) for v in values)
        else:
            alpha = self.const_operand(slope, entry, node)[0]
        q, scale, zp, act_min, act_max = self.out_q(node)
        out = self.add_tensor(q.output[0], self.tensors[entry[0]].shape, scale, zp)
        self.emit("prelu", node.name or q.output[0], [entry[0], alpha], [out], activation=self.activation,
                  act_min=act_min, act_max=act_max, **extra)
        self.act[q.output[0]] = (out, entry[1], entry[2])

    def op_Split(self, node):
        """DQ -> Split -> one QuantizeLinear per output: consecutive slices of the int8 tensor (exact data movement);
        an output quantized with another scale/zero-point is requantized afterwards (DQ -> float copy -> Q)."""
        x_name, layout, shape = self.act_in(node.input[0], node)
        rank = len(shape)
        axis = self.ints(node, "axis", None, 0, lo=-rank)
        if axis >= rank:
            self.fail(node, f"axis {axis} is out of range for a {rank}-D input")
        axis %= rank
        n, dim = len(node.output), shape[axis]
        if any(not o for o in node.output):
            self.fail(node, "Split with an unused (empty) output is unsupported")
        if len(node.input) > 1 and node.input[1]:
            sizes = np.asarray(self.const(node.input[1], node))
            if sizes.dtype != np.int64 or sizes.ndim != 1:
                self.fail(node, f"split {quoted(node.input[1])} must be a 1-D int64 constant")
            sizes = [int(v) for v in sizes]
        elif _attr(node, "split") is not None:
            sizes = [int(v) for v in _attr(node, "split")]
        else:          # equal pieces (opset 18 num_outputs: ceil(dim / n), the last one smaller)
            k = self.ints(node, "num_outputs", None, n)
            if k != n:
                self.fail(node, f"num_outputs = {k} but the node has {n} outputs")
            chunk = -(-dim // n)
            sizes = [min(chunk, dim - i * chunk) for i in range(n)]
        if len(sizes) != n or any(v < 1 for v in sizes) or sum(sizes) != dim:
            self.fail(node, f"split sizes {sizes} do not cut axis {axis} of length {dim} into {n} non-empty pieces")
        t = self.tensors[x_name]
        iaxis = internal_axis(layout, axis)
        start = 0
        for o, size in zip(node.output, sizes):
            q, scale, zp, act_min, act_max = self.quantize_with_bounds(node, self.only_consumer(o, node), None, None)
            starts, stops = [0] * len(t.shape), list(t.shape)
            starts[iaxis], stops[iaxis] = start, start + size
            start += size
            piece_shape = list(t.shape)
            piece_shape[iaxis] = size
            logical = list(shape)
            logical[axis] = size
            same = scale == np.float32(t.scale[0]) and zp == int(t.zero_point[0])
            piece = self.add_tensor(q.output[0] if same else self.fresh(q.output[0]), piece_shape, t.scale,
                                    t.zero_point)
            self.emit("strided_slice", self.fresh(f"{node.name or o}_split") if not same else (node.name or o) +
                      f"#{q.output[0]}", [x_name], [piece], starts=starts, stops=stops, steps=[1] * len(t.shape),
                      shrink=[], in_dim0=int(t.shape[0]))
            if not same:
                out = self.add_tensor(q.output[0], piece_shape, scale, zp)
                self.emit("requantize", f"{node.name or o}#{q.output[0]}", [piece], [out], activation="NONE",
                          act_min=act_min, act_max=act_max)
                piece = out
            self.act[q.output[0]] = (piece, layout, tuple(logical))

    def op_HardSigmoid(self, node):
        self.unary(node, "hard_sigmoid", alpha=self.float_attr(node, "alpha", 0.2),
                   beta=self.float_attr(node, "beta", 0.5))

    def op_HardSwish(self, node):
        self.unary(node, "hard_swish")

    def op_Mul(self, node):
        self.binary(node, "mul")

    def op_Concat(self, node):
        ins = [self.act_in(i, node) for i in node.input]
        if len({e[1] for e in ins}) > 1:
            ins = [(self.to_identity(e, node), "flat", e[2]) for e in ins]
        layout, shape0 = ins[0][1], ins[0][2]
        axis = self.ints(node, "axis", None, None, lo=-len(shape0))
        if axis >= len(shape0):
            self.fail(node, f"axis {axis} is out of range for {len(shape0)}-D inputs")
        axis %= len(shape0)
        if any(e[1] != layout or len(e[2]) != len(shape0) or
               any(e[2][k] != shape0[k] for k in range(len(shape0)) if k != axis) for e in ins):
            self.fail(node, f"inputs {[list(e[2]) for e in ins]} cannot be concatenated along axis {axis}")
        iaxis = internal_axis(layout, axis)
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

    def __init__(self, model, profile="onnxruntime", elementwise=None, backend="numba", rounding=None, prepared=None,
                 state="keep"):
        from .runtime import Runtime
        arithmetic = resolve(profile, rounding)
        if isinstance(profile, str) and not arithmetic.fixed_point and elementwise is None:   # a value keeps its own
            elementwise = ort_default_elementwise(model.io_dtype)
        arithmetic = arithmetic.choose(elementwise=elementwise)
        self.model, self.profile, self.arithmetic = model, arithmetic.name, arithmetic
        # prepared: the same graph already prepared under this arithmetic (reused, e.g. by Device.with_)
        self.runtime = Runtime(model.graph if prepared is None else prepared, arithmetic, backend=backend, state=state)

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
