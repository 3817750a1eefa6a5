"""softmax (last axis, int8 in, int8 out with scale 1/256 and zero-point -128).

tflite: TFLM/CMSIS-NN softmax_s8 (gemmlowp fixed-point exp and reciprocal; input multiplier from beta * s_in in
Q5.26). mlas: ORT QLinearSoftmax (uint32 exp table from s_in, y_scale = uint32(1.0f / s_out)).
"""
from dataclasses import dataclass

import numpy as np

from ... import fixedpoint as fx
from ...errors import N6Error
from ...kernels.backends import bind as bind_kernel
from .common import Params, scale, zp
from .pooling import ORT_UINT8_DOMAIN_SHIFT

OPS = ("softmax",)
SOFTMAX_INPUT_INTEGER_BITS = 5   # TFLM kScaledDiffIntegerBits: diffs in Q5.26


@dataclass
class SoftmaxParams(Params):
    mult: int = 0                # tflite: input multiplier (> 1) and left shift, diff_min = -input radius
    shift: int = 0
    diff_min: int = 0
    table: np.ndarray = None     # mlas: uint32 exp lookup table
    y_scale: int = 0
    out_zero_point_raw: int = 0
    domain_shift: int = 0


def prepare(graph, node, profile):
    x, o = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    if not profile.fixed_point:
        from ...kernels.ort import softmax_lookup_table
        if node.attrs.get("beta", 1.0) != 1.0:
            raise N6Error(f"layer {node.name!r}: the onnxruntime profile has no softmax beta; use beta = 1")
        return SoftmaxParams(table=softmax_lookup_table(scale(x), x.shape[-1]),
                             y_scale=int(np.uint32(np.float32(1.0) / scale(o))),
                             out_zero_point_raw=zp(o) + ORT_UINT8_DOMAIN_SHIFT, domain_shift=ORT_UINT8_DOMAIN_SHIFT)
    if abs(float(scale(o)) - 1.0 / 256) > 0.001 / 256 or zp(o) != -128:
        raise N6Error(f"layer {node.name!r} (softmax) output must have scale 1/256 and zero-point -128 "
                      f"(got {float(scale(o))}, {zp(o)}); re-quantize with the TFLite converter")
    # PreprocessSoftmaxScaling: real = min(beta * s_in * 2^(31-5), 2^31 - 1) in double
    real = min(node.attrs["beta"] * float(scale(x)) * float(1 << (31 - SOFTMAX_INPUT_INTEGER_BITS)),
               float((1 << 31) - 1))
    mult, shift = fx.quantize_multiplier_greater_than_one(real)
    # CalculateInputRadius(5, shift, 31): floor((2^5 - 1) * 2^26 / 2^shift)
    radius = int(np.floor(((1 << SOFTMAX_INPUT_INTEGER_BITS) - 1) * float(1 << (31 - SOFTMAX_INPUT_INTEGER_BITS))
                          / float(1 << shift)))
    return SoftmaxParams(mult=int(mult), shift=int(shift), diff_min=-radius)


def bind(p, node, ins, out, kernels):
    rows = ins[0].reshape(-1, ins[0].shape[-1])
    if p.table is None:
        return bind_kernel(kernels, "softmax_s8", rows, p.mult, p.shift, p.diff_min, out.reshape(rows.shape))
    from ...kernels import ort
    args = (rows, p.table, p.y_scale, p.out_zero_point_raw, p.domain_shift, out.reshape(rows.shape))
    return lambda: ort.softmax_ort_s8(*args)
