"""Helpers shared by the op families: tensor quantization access, TFLite activation ranges, constant operands, and
the Params base class (a dataclass per family; mapping-style access p["mult"] reads a field)."""
from dataclasses import dataclass, fields

import numpy as np

from ... import fixedpoint as fx
from ...errors import N6Error

INT8_MIN, INT8_MAX = -128, 127


@dataclass
class Params:
    """Base of every family's prepared parameters (all float math done; integers and prepared arrays only)."""

    def __getitem__(self, key):
        return getattr(self, key)

    def get(self, key, default=None):
        return getattr(self, key, default)

    def to_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class FloatBetweenParams(Params):
    """An op onnxruntime runs in float between DequantizeLinear and QuantizeLinear: the input's and the output's
    (scale, zero-point) and the output's clamp range."""
    s_in: np.float32
    zp_in: int
    s_out: np.float32
    zp_out: int
    act_min: int
    act_max: int


def zp(t):
    return int(t.zero_point[0])


def scale(t):
    return np.float32(t.scale[0])


def activation_range(activation, out_tensor):
    """TFLM CalculateActivationRangeQuantized for int8: q(f) = zp + round_half_away(float32(f / scale))."""
    s, z = scale(out_tensor), zp(out_tensor)

    def q(f):
        return z + fx.round_half_away(float(np.float32(f) / s))

    if activation == "NONE":
        return INT8_MIN, INT8_MAX
    if activation == "RELU":
        return max(INT8_MIN, q(0.0)), INT8_MAX
    if activation == "RELU6":
        return max(INT8_MIN, q(0.0)), min(INT8_MAX, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(INT8_MIN, q(-1.0)), min(INT8_MAX, q(1.0))
    raise N6Error(f"unsupported fused activation {activation!r}; use NONE, RELU, RELU6 or RELU_N1_TO_1")


def output_range(graph, node, profile):
    """(act_min, act_max) of a node's output: the TFLite fused activation (tflite formulation) or the ONNX
    importer's exact Q(relu)/Q(clip) bounds (mlas formulation; the full int8 range without them)."""
    a = node.attrs
    if profile.fixed_point:
        return activation_range(a["activation"], graph.tensors[node.outputs[0]])
    if "act_min" in a:
        return a["act_min"], a["act_max"]
    return INT8_MIN, INT8_MAX


def bias(graph, node, n_out):
    b = node.inputs[2] if len(node.inputs) > 2 else None
    if b is None:
        return np.zeros(n_out, np.int32)
    data = graph.tensors[b].data
    if data is None:
        raise N6Error(f"layer {node.name!r} has a non-constant bias; freeze the weights in the model")
    return np.ascontiguousarray(data.reshape(-1), dtype=np.int32)


def weights(graph, node):
    w = graph.tensors[node.inputs[1]]
    if w.data is None:
        raise N6Error(f"layer {node.name!r} has non-constant weights; freeze the weights in the model")
    return w


def geometry(attrs):
    """The strided-window geometry fields every windowed op shares (explicit paddings)."""
    return dict(stride_h=attrs["stride_h"], stride_w=attrs["stride_w"], pad_top=attrs["pad_top"],
                pad_left=attrs["pad_left"])
