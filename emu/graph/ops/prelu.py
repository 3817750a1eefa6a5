"""PReLU of an int8 tensor with a constant int8 alpha (per-tensor quantized, per-channel or any broadcastable values):
out = x >= 0 ? x : alpha * x.

Each element's output depends only on its input code and its alpha code, so the layer is a 256 x 256 int8 table
(all arithmetic here, once) applied by the integer-only kernel emu.kernels.prelu.prelu_s8.
tflite (TFLM reference_ops::BroadcastPrelu4DSlow, int8): v = x - zp_x; v >= 0: MultiplyByQuantizedMultiplier(v, M1,
  s1) with M1 = QuantizeMultiplier(double(s_x) / double(s_out)); else MultiplyByQuantizedMultiplier(v * (a - zp_a),
  M2, s2) with M2 = QuantizeMultiplier(double(s_x) * double(s_a) / double(s_out)); + zp_out, clamped to int8.
mlas (onnxruntime: no fused QLinear PRelu, the float PRelu runs between DequantizeLinear and QuantizeLinear):
  x = float32(s_x * (c - zp_x)), a = float32(s_a * (a - zp_a)), y = x > 0 ? x : float32(x * a), QuantizeLinear
  (round half even of float32(y / s_out) + zp_out, saturated), then the fused Relu/Clip range. A float32 slope
  (quantize_static leaves PRelu's slope float) is given as attrs alpha_f32 (its distinct values) and an int8 constant
  of indices into them (code k - 128: value k); only the mlas formulation runs it.
"""
from dataclasses import dataclass

import numpy as np

from ... import fixedpoint as fx
from ...errors import N6Error
from .common import Params, output_range, scale, zp

OPS = ("prelu",)


@dataclass
class PreluParams(Params):
    table: np.ndarray            # int8 [65536]: output of input code c with alpha code a at (a + 128) * 256 + c + 128


def tflm_table(x, a, o, act_min, act_max):
    present = sorted({int(v) for v in np.unique(a.data)})       # rows of the alpha codes the constant holds
    m1, s1 = fx.quantize_multiplier(float(scale(x)) / float(scale(o)))
    m2, s2 = fx.quantize_multiplier(float(scale(x)) * float(scale(a)) / float(scale(o)))
    table = np.zeros((256, 256), np.int8)
    lo, hi = max(act_min, -128), min(act_max, 127)
    for c in range(-128, 128):
        v = c - zp(x)
        if v >= 0:
            r = int(fx.requantize_double(np.int32(v), np.int32(m1), np.int32(s1))) + zp(o)
            table[:, c + 128] = min(max(r, lo), hi)
            continue
        for ac in present:
            r = int(fx.requantize_double(np.int32(v * (ac - zp(a))), np.int32(m2), np.int32(s2))) + zp(o)
            table[ac + 128, c + 128] = min(max(r, lo), hi)
    return table.reshape(-1)


def ort_table(x, a, o, act_min, act_max, alpha_f32=None):
    codes = np.arange(-128, 128, dtype=np.int32)
    xf = (scale(x) * (codes - zp(x)).astype(np.float32)).astype(np.float32)[None, :]      # DequantizeLinear
    if alpha_f32 is None:
        af = (scale(a) * (codes - zp(a)).astype(np.float32)).astype(np.float32)[:, None]
    else:                        # a float slope: alpha code k - 128 indexes its k-th distinct value
        af = np.zeros(256, np.float32)
        af[:len(alpha_f32)] = np.asarray(alpha_f32, np.float32)
        af = af[:, None]
    y = np.where(xf > 0, xf, (xf * af).astype(np.float32)).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.rint((y / scale(o)).astype(np.float32)).astype(np.float64) + zp(o)          # QuantizeLinear
    return np.ascontiguousarray(np.clip(q, max(act_min, -128), min(act_max, 127)).astype(np.int8).reshape(-1))


def prepare(graph, node, profile):
    x, a, o = (graph.tensors[n] for n in (node.inputs[0], node.inputs[1], node.outputs[0]))
    act_min, act_max = output_range(graph, node, profile)
    alpha_f32 = node.attrs.get("alpha_f32")
    if not profile.fixed_point:
        return PreluParams(table=ort_table(x, a, o, act_min, act_max, alpha_f32))
    if alpha_f32 is not None:
        raise N6Error(f"layer {node.name!r} (prelu) has a float (unquantized) slope, which profile {profile.name!r} "
                      f"cannot run in integers; quantize the slope or use the onnxruntime profile")
    return PreluParams(table=tflm_table(x, a, o, act_min, act_max))


def bind(p, node, ins, out, kernels):
    from ...kernels.prelu import bind_prelu_s8
    alpha = np.ascontiguousarray(np.broadcast_to(ins[1], out.shape), np.int8).reshape(-1)   # constant: once
    return bind_prelu_s8(ins[0].reshape(-1), alpha, p.table, out.reshape(-1))
