"""matmul: the product of two int8 activations a [..., M, K] x b [..., K, N] (batch dims equal, or all 1 on one side).

tflite (TFLite reference BatchMatMul, int8): acc = sum (a - zp_a) * (b - zp_b), MultiplyByQuantizedMultiplier by
  QuantizeMultiplier(double(s_a) * double(s_b) / double(s_out)), + zp_out, clamped.
mlas (onnxruntime fuses DQ -> MatMul -> Q with two activations into QLinearMatMul, int8 and uint8): the same exact
  int32 accumulation, MlasRequantizeOutput with the float32 scale float32(s_a * s_b) / s_out (round half to even).
The kernel is emu.kernels.matmul.matmul_s8.
"""
from dataclasses import dataclass

import numpy as np

from ... import fixedpoint as fx
from .common import Params, output_range, scale, zp

OPS = ("matmul",)


@dataclass
class MatmulParams(Params):
    a_offset: int
    b_offset: int
    out_offset: int
    act_min: int
    act_max: int
    mode: int                    # 0: TFLite double rounding (mult, shift); 1: MLAS float32 (scale)
    mult: int = 0
    shift: int = 0
    scale: np.float32 = np.float32(0)


def prepare(graph, node, profile):
    a, b, o = (graph.tensors[n] for n in (node.inputs[0], node.inputs[1], node.outputs[0]))
    act_min, act_max = output_range(graph, node, profile)
    base = dict(a_offset=-zp(a), b_offset=-zp(b), out_offset=zp(o), act_min=act_min, act_max=act_max)
    if profile.fixed_point:
        m, s = fx.quantize_multiplier(float(scale(a)) * float(scale(b)) / float(scale(o)))
        return MatmulParams(**base, mode=0, mult=m, shift=s)
    return MatmulParams(**base, mode=1, scale=np.float32(np.float32(scale(a) * scale(b)) / scale(o)))


def bind(p, node, ins, out, kernels):
    from ...kernels.matmul import bind_matmul_s8
    a, b = ins[0], ins[1]
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    return bind_matmul_s8(a.reshape(-1, m, k), b.reshape(-1, k, n), p.a_offset, p.b_offset, p.mode, p.mult, p.shift,
                          p.scale, p.out_offset, p.act_min, p.act_max, out.reshape(-1, m, n))
