"""Integer graph IR shared by the importers (TFLite, ONNX QDQ) and the runtime.

Activations are NHWC. Scales stay float32 in the IR (the source's values, untouched); prepare()
derives the integer kernel parameters of one arithmetic profile. Structural parameters (strides,
explicit paddings, dilations, fused activation name, permutation...) live in Node.attrs, named alike
for every importer.

Node.op names an entry of emu.graph.ops.REGISTRY (conv2d, depthwise_conv2d, fully_connected, avg_pool, max_pool,
softmax, add, sub, mul, maximum, minimum, concat, pad, reshape, transpose, strided_slice, sigmoid, tanh, leaky_relu,
hard_sigmoid, hard_swish, requantize, reduce_mean, prelu, dequantize, matmul), the one
table of op families.
"""
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tensor:
    """One tensor: shape, numpy dtype, quantization (float32 scales, integer zero-points, axis) and,
    for constants, its data (None for activations)."""
    name: str
    shape: tuple
    dtype: np.dtype
    scale: np.ndarray = None          # float32 [1] per-tensor or [C] per-channel; None if not quantized
    zero_point: np.ndarray = None     # int64, same length as scale
    quant_axis: int = None            # axis of per-channel quantization (None: per-tensor)
    data: np.ndarray = None           # constant contents (shape `shape`, dtype `dtype`)

    @property
    def is_constant(self):
        return self.data is not None

    @property
    def per_channel(self):
        return self.scale is not None and self.scale.size > 1

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Node:
    """One layer: op family, layer name, input/output tensor names (None = optional input absent)."""
    op: str
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)


@dataclass
class Graph:
    """A topologically ordered int8 network; `source` says where it came from (e.g. 'tflite:<path>').
    `float_inputs`: the inputs (int8 tensor names) that the source model computes from a float32 input with its own
    quantize op (TFLite: a QUANTIZE float32 -> int8 reading a model input, absorbed by the importer); a runtime with
    input_boundary 'float32' applies that quantization to them."""
    tensors: dict
    nodes: list
    inputs: list
    outputs: list
    source: str = ""
    float_inputs: tuple = ()

    def tensor(self, name):
        return self.tensors[name]

    def activations(self):
        """Names of the non-constant tensors in execution order (inputs first, then node outputs)."""
        seen, order = set(), []
        for n in self.inputs:
            if n not in seen:
                seen.add(n)
                order.append(n)
        for node in self.nodes:
            for n in node.outputs:
                if n not in seen:
                    seen.add(n)
                    order.append(n)
        return order


MAP_ABOVE_BYTES = 256 << 20    # a larger model file is memory-mapped (read-only) instead of read into memory


def read_model_file(path, kind, ext, mappable=False):
    """(bytes, source name "kind:path") of a model file, each problem one N6Error: missing, unreadable, empty.
    mappable: a file over MAP_ABOVE_BYTES comes back as a read-only mmap (a TFLite model with its buffers stored by
    offset can be many GB; arrays made with np.frombuffer keep the map alive)."""
    import mmap
    from pathlib import Path

    from ..errors import N6Error, printable
    p = Path(path)
    if not p.is_file():
        raise N6Error(f"model file {printable(p, 4096)} does not exist; pass the path of a {ext} file")
    try:
        if mappable and p.stat().st_size > MAP_ABOVE_BYTES:
            with open(p, "rb") as f:
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), f"{kind}:{printable(p, 4096)}"
        data = p.read_bytes()
    except OSError as e:
        raise N6Error(f"cannot read model file {printable(p, 4096)} ({e.strerror}); check its permissions") from None
    return data, f"{kind}:{printable(p, 4096)}"


def _quant_record(t):
    if t is None or t.scale is None:
        return None, None
    return [float(s) for s in t.scale], [int(z) for z in t.zero_point]


def node_macs(graph, node):
    """Multiply-accumulates of one inference of `node` (0 for data-movement ops)."""
    out = graph.tensors[node.outputs[0]]
    if node.op in ("conv2d", "depthwise_conv2d"):
        w = graph.tensors[node.inputs[1]]
        kh, kw = w.shape[1], w.shape[2]
        per_out = kh * kw * (w.shape[3] if node.op == "conv2d" else 1)
        return out.size * per_out
    if node.op == "fully_connected":
        w = graph.tensors[node.inputs[1]]
        return out.size * w.shape[1]
    if node.op == "avg_pool" or node.op == "max_pool":
        return out.size * node.attrs["kernel_h"] * node.attrs["kernel_w"]
    if node.op in ("add", "sub", "mul", "softmax"):
        return out.size
    if node.op == "matmul":
        return out.size * graph.tensors[node.inputs[0]].shape[-2 if node.attrs.get("adj_a") else -1]
    return 0


def inspect_graph(graph):
    """Per-layer records for display: a list of dicts with keys name, op, inputs, outputs (each a list of
    {name, shape, dtype, scale, zero_point, quant_axis}), attrs and macs. Pure data, no formatting."""
    def desc(n):
        if n is None:
            return None
        t = graph.tensors[n]
        scale, zp = _quant_record(t)
        return dict(name=t.name, shape=tuple(int(d) for d in t.shape), dtype=np.dtype(t.dtype).name,
                    scale=scale, zero_point=zp, quant_axis=t.quant_axis, constant=t.is_constant)

    return [dict(name=node.name, op=node.op, inputs=[desc(n) for n in node.inputs],
                 outputs=[desc(n) for n in node.outputs], attrs=dict(node.attrs),
                 macs=int(node_macs(graph, node)))
            for node in graph.nodes]


# ---- validation: shapes, sizes, graph order and per-op shape consistency (both importers, before prepare) ----

MAX_DIM = 1 << 24                   # one dimension
MAX_GRAPH_BYTES = 256 << 20         # every tensor of a graph together (activations and constants)


def _err(msg):
    from ..errors import N6Error
    return N6Error(msg)


def _q(name):
    from ..errors import quoted
    return quoted(name)


def check_shape(shape, what, fix="re-export the model"):
    """A tensor shape of positive dimensions <= MAX_DIM whose size fits MAX_GRAPH_BYTES (one int8 byte per value);
    checked before anything of that shape is allocated. Returns the shape as a tuple of Python ints."""
    dims = []
    for d in shape:
        d = int(d)
        if d <= 0:
            raise _err(f"{what} has shape {list(int(x) for x in shape)} with a dimension of {d}; every dimension must "
                       f"be >= 1: {fix}")
        if d > MAX_DIM:
            raise _err(f"{what} has shape {list(int(x) for x in shape)} with a dimension of {d} (more than {MAX_DIM}); "
                       f"{fix}")
        dims.append(d)
    n = 1
    for d in dims:
        n *= d
    if n > MAX_GRAPH_BYTES:
        raise _err(f"{what} has shape {dims}: {n} values exceed the emulator's {MAX_GRAPH_BYTES >> 20} MB limit per "
                   f"model; {fix}")
    return tuple(dims)


def _check_quant(t, what):
    if t.scale is None:
        return
    s = np.asarray(t.scale, np.float64)
    if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        bad = s[~(np.isfinite(s) & (s > 0))] if s.size else s
        raise _err(f"{what} {_q(t.name)} has scale {float(bad[0]) if bad.size else '[]'}; quantization scales must be "
                   f"finite and > 0: re-quantize the model")
    zp = np.asarray(t.zero_point)
    if zp.size != s.size:
        raise _err(f"{what} {_q(t.name)} has {s.size} scale(s) but {zp.size} zero-point(s); re-quantize the model")
    if t.dtype == np.int8 and (np.any(zp < -128) or np.any(zp > 127)):
        raise _err(f"{what} {_q(t.name)} has zero-point {int(zp[(zp < -128) | (zp > 127)][0])} outside the int8 "
                   f"range -128..127; re-quantize the model")


def _out_hw(n, k, s, d, before, after):
    return (n + before + after - ((k - 1) * d + 1)) // s + 1


def check_node(graph, node):
    """Shapes, dtypes and geometry of one IR node agree with what its op computes (one-line N6Error naming the
    layer and the field otherwise)."""
    T = graph.tensors
    a = node.attrs
    layer = f"layer {_q(node.name)} ({node.op})"

    def t(i):
        return T[node.inputs[i]]

    o = T[node.outputs[0]]

    def need(cond, msg):
        if not cond:
            raise _err(f"{layer}: {msg}; re-export the model")

    def positive(*names):
        for nm in names:
            need(isinstance(a.get(nm), (int, np.integer)) and a[nm] >= 1, f"{nm} = {a.get(nm)} must be >= 1")

    def nonneg(*names):
        for nm in names:
            need(isinstance(a.get(nm, 0), (int, np.integer)) and a.get(nm, 0) >= 0,
                 f"{nm} = {a.get(nm)} must be >= 0")

    need(len(node.outputs) == 1, f"has {len(node.outputs)} outputs, expected 1")
    if node.op == "dequantize":          # int8 -> float32 (the one op with a float output)
        x = t(0)
        need(len(node.inputs) == 1 and x.dtype == np.int8 and x.scale is not None and x.scale.size == 1,
             f"input {_q(x.name)} must be an int8 activation with per-tensor quantization")
        need(o.dtype == np.float32 and tuple(o.shape) == tuple(x.shape),
             f"output {_q(o.name)} must be float32 of the input's shape {list(x.shape)}")
        return
    for n in node.inputs[:1] + node.outputs:
        need(T[n].dtype == np.int8 and T[n].scale is not None and T[n].scale.size == 1,
             f"tensor {_q(n)} must be an int8 activation with per-tensor quantization")
    if node.op in ("conv2d", "depthwise_conv2d", "fully_connected"):
        need(len(node.inputs) >= 2 and node.inputs[1] is not None, "has no weights")
        w = t(1)
        need(w.data is not None, f"weights {_q(w.name)} are not constant (absent weight buffer)")
        need(w.dtype == np.int8 and w.scale is not None, f"weights {_q(w.name)} must be int8 and quantized "
             f"(got {np.dtype(w.dtype).name if w.dtype is not None else 'an unsupported type'})")
        fc = node.op == "fully_connected"
        need(len(w.shape) == (2 if fc else 4), f"weights {_q(w.name)} have shape {list(w.shape)}, expected "
             f"{'2-D [out, in]' if fc else '4-D'}")
        n_out = w.shape[3] if node.op == "depthwise_conv2d" else w.shape[0]
        need(w.scale.size in (1, n_out), f"weights {_q(w.name)} have {w.scale.size} scales for {n_out} output "
             f"channels")
        if w.scale.size > 1:
            need(w.quant_axis == (3 if node.op == "depthwise_conv2d" else 0),
                 f"weights {_q(w.name)} are quantized along axis {w.quant_axis}, not the output-channel axis")
        b = node.inputs[2] if len(node.inputs) > 2 else None
        if b is not None:
            bt = T[b]
            need(bt.data is not None and bt.dtype == np.int32, f"bias {_q(b)} must be a constant int32 tensor")
            need(bt.size == n_out, f"bias {_q(b)} has {bt.size} values for {n_out} output channels")
        x = t(0)
        if fc:
            depth = w.shape[1]
            need(x.size % depth == 0, f"input of {x.size} values is not a multiple of the weights' depth {depth}")
            need(len(o.shape) >= 1 and o.shape[-1] == n_out and o.size == x.size // depth * n_out,
                 f"output shape {list(o.shape)} does not match input {list(x.shape)} and weights {list(w.shape)}")
            return
        need(len(x.shape) == 4 and len(o.shape) == 4, f"needs 4-D NHWC input and output, got {list(x.shape)} and "
             f"{list(o.shape)}")
        positive("stride_h", "stride_w", "dilation_h", "dilation_w")
        nonneg("pad_top", "pad_bottom", "pad_left", "pad_right")
        kh, kw = w.shape[1], w.shape[2]
        if node.op == "depthwise_conv2d":
            positive("ch_mult")
            need(w.shape[0] == 1 and n_out == x.shape[3] * a["ch_mult"] and o.shape[3] == n_out,
                 f"filter {list(w.shape)}, input channels {x.shape[3]}, depth multiplier {a['ch_mult']} and output "
                 f"channels {o.shape[3]} disagree")
        else:
            cin_g = w.shape[3]
            need(x.shape[3] % cin_g == 0 and n_out % (x.shape[3] // cin_g) == 0 and o.shape[3] == n_out,
                 f"input channels {x.shape[3]}, filter {list(w.shape)} and output channels {o.shape[3]} do not "
                 f"form whole groups")
        eh, ew = (kh - 1) * a["dilation_h"] + 1, (kw - 1) * a["dilation_w"] + 1
        need(x.shape[1] + a["pad_top"] + a["pad_bottom"] >= eh and x.shape[2] + a["pad_left"] + a["pad_right"] >= ew,
             f"the {eh}x{ew} (dilated) filter is larger than the padded {x.shape[1]}x{x.shape[2]} input")
        oh = _out_hw(x.shape[1], kh, a["stride_h"], a["dilation_h"], a["pad_top"], a["pad_bottom"])
        ow = _out_hw(x.shape[2], kw, a["stride_w"], a["dilation_w"], a["pad_left"], a["pad_right"])
        need(o.shape[0] == x.shape[0] and (o.shape[1], o.shape[2]) == (oh, ow),
             f"output shape {list(o.shape)} does not match the {oh}x{ow} the geometry gives for input "
             f"{list(x.shape)}")
        return
    if node.op in ("avg_pool", "max_pool"):
        x = t(0)
        need(len(x.shape) == 4 and len(o.shape) == 4, f"needs 4-D NHWC input and output, got {list(x.shape)} and "
             f"{list(o.shape)}")
        positive("kernel_h", "kernel_w", "stride_h", "stride_w")
        nonneg("pad_top", "pad_bottom", "pad_left", "pad_right")
        need(a["pad_top"] < a["kernel_h"] and a.get("pad_bottom", 0) < a["kernel_h"] and a["pad_left"] < a["kernel_w"]
             and a.get("pad_right", 0) < a["kernel_w"], "paddings must be smaller than the pooling window")
        need(x.shape[1] + a["pad_top"] + a.get("pad_bottom", 0) >= a["kernel_h"]
             and x.shape[2] + a["pad_left"] + a.get("pad_right", 0) >= a["kernel_w"],
             f"the {a['kernel_h']}x{a['kernel_w']} window is larger than the padded input {list(x.shape)}")
        oh = _out_hw(x.shape[1], a["kernel_h"], a["stride_h"], 1, a["pad_top"], a.get("pad_bottom", 0))
        ow = _out_hw(x.shape[2], a["kernel_w"], a["stride_w"], 1, a["pad_left"], a.get("pad_right", 0))
        need((o.shape[0], o.shape[3]) == (x.shape[0], x.shape[3]) and (o.shape[1], o.shape[2]) == (oh, ow),
             f"output shape {list(o.shape)} does not match the pooled input {list(x.shape)} ({oh}x{ow})")
        return
    if node.op == "softmax":
        need(t(0).shape == o.shape, f"input {list(t(0).shape)} and output {list(o.shape)} shapes differ")
        beta = a.get("beta", 1.0)
        need(np.isfinite(beta) and 0 < beta <= 1e6, f"beta = {beta} must be a finite number > 0")
        return
    if node.op in ("sigmoid", "tanh", "leaky_relu", "hard_sigmoid", "hard_swish", "requantize"):
        need(len(node.inputs) == 1, "needs one input")
        need(tuple(t(0).shape) == tuple(o.shape), f"input {list(t(0).shape)} and output {list(o.shape)} shapes differ")
        for nm in ("alpha", "beta"):
            v = a.get(nm)
            need(v is None or (isinstance(v, float) and np.isfinite(v)), f"{nm} = {v} must be a finite number")
        return
    if node.op == "matmul":       # a [..., M, K] x b [..., K, N] (adj_a / adj_b: stored transposed), numpy broadcast
        need(len(node.inputs) == 2 and all(i is not None for i in node.inputs), "needs two inputs")
        a_, b_ = t(0), t(1)
        need(b_.dtype == np.int8 and b_.scale is not None and b_.scale.size == 1,
             f"tensor {_q(b_.name)} must be int8 with per-tensor quantization")
        ok = len(a_.shape) >= 2 and len(b_.shape) >= 2 and len(o.shape) >= 2
        if ok:
            am, ak = a_.shape[-2:][::-1] if a.get("adj_a") else a_.shape[-2:]
            bk, bn = b_.shape[-2:][::-1] if a.get("adj_b") else b_.shape[-2:]
            try:
                batch = np.broadcast_shapes(tuple(a_.shape[:-2]), tuple(b_.shape[:-2]))
            except ValueError:
                batch = None
            ok = ak == bk and batch is not None and tuple(o.shape) == tuple(batch) + (am, bn)
        need(ok, f"inputs {list(a_.shape)} x {list(b_.shape)} (adj {bool(a.get('adj_a'))}, {bool(a.get('adj_b'))}) "
                 f"do not multiply to the output {list(o.shape)}")
        return
    if node.op == "prelu":
        need(len(node.inputs) == 2 and node.inputs[1] is not None, "needs an input and an alpha")
        al = t(1)
        need(al.data is not None and al.dtype == np.int8 and al.scale is not None and al.scale.size == 1,
             f"alpha {_q(al.name)} must be a constant int8 tensor with per-tensor quantization")
        need(tuple(t(0).shape) == tuple(o.shape), f"input {list(t(0).shape)} and output {list(o.shape)} shapes differ")
        try:
            shp = np.broadcast_shapes(al.shape, o.shape)
        except ValueError:
            shp = None
        need(len(al.shape) <= len(o.shape) and shp == tuple(o.shape),
             f"alpha {list(al.shape)} does not broadcast to the output {list(o.shape)}")
        return
    if node.op in ("add", "sub", "mul", "maximum", "minimum"):
        need(len(node.inputs) == 2 and all(i is not None for i in node.inputs), "needs two inputs")
        for i in node.inputs:
            need(T[i].dtype == np.int8 and T[i].scale is not None and T[i].scale.size == 1,
                 f"tensor {_q(i)} must be int8 with per-tensor quantization")
        try:
            shp = np.broadcast_shapes(t(0).shape, t(1).shape)
        except ValueError:
            shp = None
        need(shp == tuple(o.shape), f"inputs {list(t(0).shape)} and {list(t(1).shape)} do not broadcast to the "
             f"output {list(o.shape)}")
        return
    if node.op == "concat":
        shapes = [T[i].shape for i in node.inputs]
        ax = a.get("axis")
        need(isinstance(ax, (int, np.integer)) and 0 <= ax < len(o.shape), f"axis = {ax} is out of range")
        ok = all(len(s) == len(o.shape) and all(s[k] == o.shape[k] for k in range(len(s)) if k != ax) for s in shapes)
        need(ok and sum(s[ax] for s in shapes) == o.shape[ax], f"inputs {[list(s) for s in shapes]} do not "
             f"concatenate to {list(o.shape)}")
        return
    x = t(0)
    if node.op == "reshape":
        need(x.size == o.size, f"input {list(x.shape)} and output {list(o.shape)} hold different numbers of values")
        return
    if node.op == "transpose":
        perm = list(a.get("perm", ()))
        need(len(x.shape) <= 4 and sorted(perm) == list(range(len(x.shape))),
             f"perm {perm} is not a permutation of the {len(x.shape)} input axes (at most 4)")
        need(tuple(o.shape) == tuple(x.shape[p] for p in perm), f"output shape {list(o.shape)} is not the input "
             f"{list(x.shape)} permuted by {perm}")
        return
    if node.op == "reduce_mean":
        rows, k, inner = a.get("rows"), a.get("k"), a.get("inner", 1)
        need(all(isinstance(v, int) and v >= 1 for v in (rows, k, inner)) and rows % inner == 0,
             "rows, k and inner must be >= 1 (rows a multiple of inner)")
        need(x.size == rows * k and o.size == rows, f"input {list(x.shape)} is not {rows} rows of {k} values, or the "
             f"output {list(o.shape)} is not one value per row")
        return
    if node.op == "strided_slice":
        st, sp, sd, shrink = a.get("starts", []), a.get("stops", []), a.get("steps", []), a.get("shrink", [])
        need(len(st) == len(sp) == len(sd) == len(x.shape), f"slice of {len(st)} axes for a {len(x.shape)}-D input")
        need(all(s != 0 for s in sd), "steps must be non-zero")
        need(all(-1 <= b <= d and -1 <= e <= d for b, e, d in zip(st, sp, x.shape)), "slice bounds out of range")
        lengths = [len(range(b, e, s)) for b, e, s in zip(st, sp, sd)]
        kept = [n for ax, n in enumerate(lengths) if ax not in shrink]
        need(all(n >= 1 for n in lengths) and tuple(kept) == tuple(o.shape),
             f"the slice gives {kept}, the output is {list(o.shape)}")
        return
    if node.op == "pad":
        pads = a.get("pads", [])
        need(len(pads) == len(x.shape) <= 4, f"{len(pads)} padding pairs for a {len(x.shape)}-D input (at most 4-D)")
        need(all(b >= 0 and e >= 0 for b, e in pads), f"paddings {pads} must be >= 0")
        need(tuple(o.shape) == tuple(d + b + e for d, (b, e) in zip(x.shape, pads)),
             f"output shape {list(o.shape)} is not the input {list(x.shape)} padded by {pads}")
        v = a.get("pad_value")
        need(v is None or -128 <= v <= 127, f"pad value {v} is not an int8")
        return


def check_graph(graph, fix="re-export the model"):
    """Validate a whole graph before anything is prepared or allocated: every tensor's shape (positive dims, size
    limits: MAX_GRAPH_BYTES for all tensors together), quantization (finite positive scales, int8 zero-points),
    graph order (every input produced before it is used, every tensor produced once) and each node's shapes."""
    total = 0
    for name, t in graph.tensors.items():
        check_shape(t.shape, f"tensor {_q(name)}", fix)
        if t.dtype is None:
            continue
        total += t.size * np.dtype(t.dtype).itemsize
        if total > MAX_GRAPH_BYTES:
            raise _err(f"the model's tensors need more than {MAX_GRAPH_BYTES >> 20} MB (at tensor {_q(name)}, shape "
                       f"{list(t.shape)}); the emulator refuses models this large: {fix}")
        if t.data is not None and tuple(t.data.shape) != tuple(t.shape):
            raise _err(f"constant {_q(name)} holds {t.data.size} values for shape {list(t.shape)}; {fix}")
        _check_quant(t, "tensor")
    available = set(graph.inputs)
    for n in graph.inputs:
        if n not in graph.tensors or graph.tensors[n].is_constant:
            raise _err(f"model input {_q(n)} is missing or constant; {fix}")
    for node in graph.nodes:
        for n in node.inputs:
            if n is None:
                continue
            if n not in graph.tensors:
                raise _err(f"layer {_q(node.name)} ({node.op}) reads tensor {_q(n)} that does not exist; {fix}")
            if not graph.tensors[n].is_constant and n not in available:
                raise _err(f"layer {_q(node.name)} ({node.op}) uses tensor {_q(n)} before it is produced (the "
                           f"layers are not in execution order, or it is never produced); {fix}")
        for n in node.outputs:
            if n not in graph.tensors or graph.tensors[n].is_constant or n in available:
                raise _err(f"layer {_q(node.name)} ({node.op}) writes tensor {_q(n)} that is a constant, a model "
                           f"input or the output of an earlier layer; {fix}")
            available.add(n)
        check_node(graph, node)
    for n in graph.outputs:
        if n not in available:
            raise _err(f"model output {_q(n)} is never produced; {fix}")
    return graph
