"""ONNX LSTM and GRU between DequantizeLinear and QuantizeLinear: onnx_lstm, onnx_gru (one IR node per quantized
output Y, Y_h or Y_c of the ONNX node; attrs output, direction, steps, input_size, hidden_size, linear_before_reset,
packed_w, packed_r, act_min/act_max).

Inputs: the int8 sequence X (the ONNX [T, 1, I] values, batch 1) and float32 constants W [D, G*H, I], R [D, G*H, H],
then optional B [D, 2*G*H], initial_h [D, 1, H], initial_c [D, 1, H] (None when absent): the values onnxruntime
computes for them (a DequantizeLinear of int8 weights, or float initializers).
mlas only: onnxruntime never fuses the node; it runs its float DeepCPU kernels on the dequantized input and quantizes
the output (emu.kernels.ort_rnn: MLAS SGEMM summation orders, MLAS logistic/tanh, ORT's own GRU polynomials), bit
for bit on x86-64 with FMA. The cmsis-nn (TFLite) profiles have no such layer: refused.
"""
from dataclasses import dataclass

import numpy as np

from ...errors import N6Error
from .common import FloatBetweenParams, output_range, scale, zp

OPS = ("onnx_lstm", "onnx_gru")


@dataclass
class OnnxRnnParams(FloatBetweenParams):
    layer: object               # emu.kernels.ort_rnn.RnnLayer: the float32 constants as onnxruntime sees them


def prepare(graph, node, profile):
    if profile.fixed_point:
        raise N6Error(f"profile {profile.name!r} does not implement op {node.op} (layer {node.name!r}): an ONNX "
                      f"{node.op[5:].upper()} runs in float in onnxruntime; use the onnxruntime profile")
    x, o = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    act_min, act_max = output_range(graph, node, profile)
    consts = []
    for n in list(node.inputs[1:]) + [None] * (6 - len(node.inputs)):
        t = None if n is None else graph.tensors[n]
        if t is not None and (t.data is None or t.dtype != np.float32):
            raise N6Error(f"layer {node.name!r} ({node.op}): input {n!r} must be a float32 constant")
        consts.append(None if t is None else np.ascontiguousarray(t.data, np.float32))
    from ...kernels.ort_rnn import RnnLayer     # lazily: ort_rnn imports emu.graph.ops.unary
    a = node.attrs
    layer = RnnLayer(node.op[5:], *consts, direction=a["direction"], linear_before_reset=int(a.get(
        "linear_before_reset", 0)), packed_w=bool(a["packed_w"]), packed_r=bool(a["packed_r"]))
    return OnnxRnnParams(scale(x), zp(x), scale(o), zp(o), act_min, act_max, layer)


def bind(p, node, ins, out, kernels):
    """The weights come from the params (the runtime hands constants over as int8 arrays)."""
    from ...kernels.ort_rnn import RnnScratch, rnn_ort_s8
    a = node.attrs
    steps, isz = int(a["steps"]), int(a["input_size"])
    x = ins[0].reshape(-1, steps, isz)          # samples folded into axis 0 (T = 1 models) stay independent
    o = out.reshape(x.shape[0], -1)
    scratch = RnnScratch(p.layer.kind, steps, isz, int(p.layer.r.shape[2]))
    return lambda: rnn_ort_s8(p.layer, a["output"], x, p.s_in, p.zp_in, p.s_out, p.zp_out, p.act_min, p.act_max, o,
                              scratch=scratch)
