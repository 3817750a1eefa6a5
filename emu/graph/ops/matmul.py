"""matmul: the product of two int8 tensors a [..., M, K] x b [..., K, N] -> [..., M, N] (attrs adj_a / adj_b: a is
stored [..., K, M] / b is stored [..., N, K]); the batch dimensions broadcast like numpy's (right-aligned, size 1
repeats). Either operand may be a constant (TFLite BATCH_MATMUL with constant RHS).

tflite (TFLite reference BatchMatMul, int8): acc = sum (a - zp_a) * (b - zp_b), MultiplyByQuantizedMultiplier by
  QuantizeMultiplier(double(s_a) * double(s_b) / double(s_out)), + zp_out, clamped (the product in double, as for
  FULLY_CONNECTED: checked against tflite-micro on scales where a float32 product differs,
  tests/test_tflite_boundary_bmm.py).
mlas (onnxruntime fuses DQ -> MatMul -> Q with two activations into QLinearMatMul, int8 and uint8): the same exact
  int32 accumulation, MlasRequantizeOutput with the float32 scale float32(s_a * s_b) / s_out (round half to even).
The kernel is emu.kernels.matmul.matmul_s8; prepare resolves the broadcast into per-matrix index vectors.
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
    adj_a: bool = False
    adj_b: bool = False
    a_index: np.ndarray = None   # int32 [matrices of one sample's output]: the operand's matrix for each
    b_index: np.ndarray = None
    a_step: int = 0              # matrices per sample of an activation operand (0: a constant, the same each sample)
    b_step: int = 0
    out_step: int = 1            # output matrices per sample
    a_mat: tuple = ()            # the stored matrix shapes (rows, cols) of a and b (a folded batch reshapes by them)
    b_mat: tuple = ()


def _matrices(shape):
    return int(np.prod(shape[:-2], dtype=np.int64))


def prepare(graph, node, profile):
    from ...kernels.matmul import broadcast_index
    a, b, o = (graph.tensors[n] for n in (node.inputs[0], node.inputs[1], node.outputs[0]))
    act_min, act_max = output_range(graph, node, profile)
    out_batch = tuple(o.shape[:-2])
    base = dict(a_offset=-zp(a), b_offset=-zp(b), out_offset=zp(o), act_min=act_min, act_max=act_max,
                adj_a=bool(node.attrs.get("adj_a", False)), adj_b=bool(node.attrs.get("adj_b", False)),
                a_index=broadcast_index(a.shape[:-2], out_batch), b_index=broadcast_index(b.shape[:-2], out_batch),
                a_step=0 if a.is_constant else _matrices(a.shape), b_step=0 if b.is_constant else _matrices(b.shape),
                out_step=_matrices(o.shape), a_mat=tuple(a.shape[-2:]), b_mat=tuple(b.shape[-2:]))
    if profile.fixed_point:
        m, s = fx.quantize_multiplier(float(scale(a)) * float(scale(b)) / float(scale(o)))
        return MatmulParams(**base, mode=0, mult=m, shift=s)
    return MatmulParams(**base, mode=1, scale=np.float32(np.float32(scale(a) * scale(b)) / scale(o)))


def bind(p, node, ins, out, kernels):
    """Buffers hold `samples` consecutive samples (a folded batch): activations advance by their matrices per
    sample, constants do not."""
    from ...kernels.matmul import bind_matmul_s8
    a, b = ins[0], ins[1]
    m = p.a_mat[1] if p.adj_a else p.a_mat[0]
    n = p.b_mat[0] if p.adj_b else p.b_mat[1]
    samples = out.size // (p.out_step * m * n)
    s = np.arange(samples, dtype=np.int32)[:, None]
    a_index = np.ascontiguousarray((p.a_index[None, :] + s * p.a_step).reshape(-1), dtype=np.int32)
    b_index = np.ascontiguousarray((p.b_index[None, :] + s * p.b_step).reshape(-1), dtype=np.int32)
    return bind_matmul_s8(a.reshape((-1,) + p.a_mat), b.reshape((-1,) + p.b_mat), p.a_offset, p.b_offset,
                          p.mode, p.mult, p.shift, p.scale, p.out_offset, p.act_min, p.act_max,
                          out.reshape(-1, m, n), a_index=a_index, b_index=b_index, adj_a=p.adj_a, adj_b=p.adj_b)
