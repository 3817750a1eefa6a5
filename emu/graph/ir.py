"""Integer graph IR shared by the importers (TFLite, ONNX QDQ) and the runtime.

Activations are NHWC. Scales stay float32 in the IR (the source's values, untouched); prepare()
derives the integer kernel parameters of one arithmetic profile. Structural parameters (strides,
explicit paddings, dilations, fused activation name, permutation...) live in Node.attrs, named alike
for every importer.

Node.op names an entry of emu.graph.ops.REGISTRY (conv2d, depthwise_conv2d, fully_connected, avg_pool, max_pool,
softmax, add, mul, concat, pad, reshape, transpose), the one table of op families.
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
    """A topologically ordered int8 network; `source` says where it came from (e.g. 'tflite:<path>')."""
    tensors: dict
    nodes: list
    inputs: list
    outputs: list
    source: str = ""

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
    if node.op in ("add", "mul", "softmax"):
        return out.size
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
