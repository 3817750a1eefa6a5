"""Unary activations of one int8 tensor: sigmoid, tanh, leaky_relu, hard_sigmoid, hard_swish, and requantize (a
standalone Relu/Clip: DQ -> Q into the output's quantization, clamped to the act_min/act_max range).

An int8 activation has 256 possible codes, so each layer is a 256-entry int8 table prepared once (all float math
here) and applied by the integer-only kernel emu.kernels.lut.lut_s8.
mlas (what onnxruntime runs for the QDQ pattern DQ -> op -> Q):
  sigmoid:      fused QLinearSigmoid: x = float32(s_in * (c - zp_in)), MLAS logistic (x86 FMA3 kernel: clamp to
                [-18, 18], rational polynomial with fused multiply-adds, p / q + 0.5, max 0), QuantizeLinear
  tanh:         unfused float Tanh: MLAS tanh (x86 FMA3 kernel: clamp to [-9, 9], x * p(x^2) / q(x^2) with fused
                multiply-adds), then QuantizeLinear
  leaky_relu:   fused QLinearLeakyRelu: x >= 0 ? x : alpha * x on the same dequantized codes, QuantizeLinear
  hard_sigmoid: unfused float HardSigmoid: max(0, min(1, alpha * x + beta)) (multiply then add, float32)
  hard_swish:   unfused float; onnxruntime rewrites it to HardSigmoid(1/6, 0.5) followed by x * h (float32)
  QuantizeLinear: clamp(round_half_even(y / s_out) + zp_out), then the fused Relu/Clip range.
tflite (TFLM reference_integer_ops, int8): sigmoid = LOGISTIC (input rescaled to Q4.27 by a frexp multiplier,
  saturating outside the input radius, gemmlowp fixed-point logistic, RoundingDivideByPOT 23, output 1/256, -128),
  tanh = TANH (gemmlowp tanh, RoundingDivideByPOT 24, output 1/128, 0), requantize = QUANTIZE int8 -> int8
  (MultiplyByQuantizedMultiplier of x - zp_in by s_in / s_out), leaky_relu = LEAKY_RELU (two multipliers: s_in / s_out
  for x >= zp_in, float32 s_in * alpha / s_out below), hard_swish = HARD_SWISH (int16 fixed point); hard_sigmoid has
  none here.
"""
from dataclasses import dataclass
import numpy as np

from ... import fixedpoint as fx
from ...errors import N6Error
from ...f32math import fma_f32
from .common import Params, output_range, scale, zp

OPS = ("sigmoid", "tanh", "leaky_relu", "hard_sigmoid", "hard_swish", "requantize")

# MLAS logistic constants (float32), as the x86 kernels use them
LOGISTIC = dict(lower=-18.0, upper=18.0, alpha_9=4.37031012579801e-11, alpha_7=1.15627324459942e-07,
                alpha_5=6.08574864600143e-05, alpha_3=8.51377133304701e-03, alpha_1=2.48287947061529e-01,
                beta_10=6.10247389755681e-13, beta_8=5.76102136993427e-09, beta_6=6.29106785017040e-06,
                beta_4=1.70198817374094e-03, beta_2=1.16817656904453e-01, beta_0=9.93151921023180e-01)


# MLAS tanh constants (float32): the same rational approximation (Eigen's) in the x86 FMA3 kernel
TANH = dict(lower=-9.0, upper=9.0, alpha_13=-2.76076847742355e-16, alpha_11=2.00018790482477e-13,
            alpha_9=-8.60467152213735e-11, alpha_7=5.12229709037114e-08, alpha_5=1.48572235717979e-05,
            alpha_3=6.37261928875436e-04, alpha_1=4.89352455891786e-03, beta_6=1.19825839466702e-06,
            beta_4=1.18534705686654e-04, beta_2=2.26843463243900e-03, beta_0=4.89352518554385e-03)


@dataclass
class UnaryParams(Params):
    table: np.ndarray            # int8 [256]: output code of input code c at index c + 128


def mlas_logistic_fma3(x):
    """MLAS MlasLogisticKernelFma3 on float32 values."""
    k = {n: np.float32(v) for n, v in LOGISTIC.items()}
    v = np.minimum(np.maximum(np.asarray(x, np.float32), k["lower"]), k["upper"])
    v2 = (v * v).astype(np.float32)
    p = fma_f32(v2, k["alpha_9"], k["alpha_7"])
    for a in ("alpha_5", "alpha_3", "alpha_1"):
        p = fma_f32(v2, p, k[a])
    q = fma_f32(v2, k["beta_10"], k["beta_8"])
    for b in ("beta_6", "beta_4", "beta_2", "beta_0"):
        q = fma_f32(v2, q, k[b])
    p = (v * p).astype(np.float32)
    r = ((p / q).astype(np.float32) + np.float32(0.5)).astype(np.float32)
    return np.maximum(r, np.float32(0)).astype(np.float32)


def mlas_tanh_fma3(x):
    """MLAS tanh as the x86 FMA3 kernel computes it: clamp to [-9, 9], x * p(x^2) / q(x^2) with fused
    multiply-adds."""
    k = {n: np.float32(v) for n, v in TANH.items()}
    v = np.minimum(np.maximum(np.asarray(x, np.float32), k["lower"]), k["upper"])
    v2 = (v * v).astype(np.float32)
    p = fma_f32(v2, k["alpha_13"], k["alpha_11"])
    for a in ("alpha_9", "alpha_7", "alpha_5", "alpha_3", "alpha_1"):
        p = fma_f32(v2, p, k[a])
    q = fma_f32(v2, k["beta_6"], k["beta_4"])
    for b in ("beta_2", "beta_0"):
        q = fma_f32(v2, q, k[b])
    return ((v * p).astype(np.float32) / q).astype(np.float32)


def ort_function(op, attrs):
    """The float32 function onnxruntime applies between the DequantizeLinear and the QuantizeLinear."""
    if op == "requantize":
        return lambda x: x
    if op == "sigmoid":
        return mlas_logistic_fma3
    if op == "tanh":
        return mlas_tanh_fma3
    if op == "leaky_relu":
        alpha = np.float32(attrs.get("alpha", 0.01))
        return lambda x: np.where(x >= 0, x, (alpha * x).astype(np.float32)).astype(np.float32)
    if op in ("hard_sigmoid", "hard_swish"):
        alpha = np.float32(attrs.get("alpha", 0.2 if op == "hard_sigmoid" else 1.0 / 6.0))
        beta = np.float32(attrs.get("beta", 0.5))

        def hard_sigmoid(x):
            h = ((alpha * x).astype(np.float32) + beta).astype(np.float32)
            return np.maximum(np.minimum(h, np.float32(1)), np.float32(0)).astype(np.float32)
        if op == "hard_sigmoid":
            return hard_sigmoid
        return lambda x: (x * hard_sigmoid(x)).astype(np.float32)
    return None


# ---- tflite formulation (TFLM reference_integer_ops Logistic / Tanh, gemmlowp fixed point; Requantize) ----

TFLM_INPUT_INTEGER_BITS = 4          # logistic and tanh: inputs rescaled to Q4.27
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401),
               (4, 242))
INT32_MAX = (1 << 31) - 1


def _exp_on_negative_values(a, integer_bits):
    """gemmlowp exp_on_negative_values of a raw Q<integer_bits>.<31-integer_bits> value a <= 0 -> raw Q0.31."""
    fb = 31 - integer_bits
    one_quarter = 1 << (fb - 2)
    a_mod = (int(a) & (one_quarter - 1)) - one_quarter
    shifted = a_mod if integer_bits == 0 else int(fx.saturating_shift_left(np.int32(a_mod), integer_bits))
    result = int(fx.exp_on_interval_between_negative_one_quarter_and_0_excl(np.int32(shifted)))
    remainder = int(fx.wrap_int32(a_mod - int(a)))
    for e, mult in _EXP_BARREL:
        if integer_bits > e and (remainder >> (fb + e)) & 1:
            result = int(fx.srdhm(np.int32(result), np.int32(mult)))
    if integer_bits > 5 and int(a) < -(1 << (36 - integer_bits)):
        result = 0
    return INT32_MAX if int(a) == 0 else result


def _one_minus_x_over_one_plus_x(a):
    """gemmlowp one_minus_x_over_one_plus_x_for_x_in_0_1: raw Q0.31 -> raw Q0.31 (Newton-Raphson in Q2.29)."""
    half = int(fx.rounding_half_sum(np.int32(a), np.int32(INT32_MAX)))
    x = int(fx.wrap_int32(1515870810 + int(fx.srdhm(np.int32(half), np.int32(-1010580540)))))
    for _ in range(3):
        hx = int(fx.srdhm(np.int32(half), np.int32(x)))
        one_minus = int(fx.wrap_int32((1 << 29) - hx))
        x = int(fx.wrap_int32(x + int(fx.saturating_shift_left(fx.srdhm(np.int32(x), np.int32(one_minus)), 2))))
    return int(fx.saturating_shift_left(np.int32(fx.wrap_int32(x - (1 << 29))), 2))


def _tflm_input_params(s_in):
    """TFLM CalculateArithmeticOpData for int8 logistic/tanh: (multiplier, left shift, input radius) of
    s_in * 2^(31-4), frexp + round half away (no 2^31 correction, as TFLM), CalculateInputRadius(4, shift, 31)."""
    import math
    q, shift = math.frexp(float(s_in) * float(1 << (31 - TFLM_INPUT_INTEGER_BITS)))
    mult = int(fx.round_half_away(q * float(1 << 31)))
    max_rescaled = float((1 << TFLM_INPUT_INTEGER_BITS) - 1) * float(1 << (31 - TFLM_INPUT_INTEGER_BITS)) / \
        math.ldexp(1.0, shift)
    return mult, shift, int(math.floor(max_rescaled))


def tflm_table(op, x, o, act_min, act_max, node):
    """256-entry int8 table of TFLM's integer Logistic / Tanh / Requantize (QUANTIZE int8 -> int8)."""
    table = np.empty(256, np.int8)
    if op == "requantize":
        m, sh = fx.quantize_multiplier(float(scale(x)) / float(scale(o)))
        for c in range(-128, 128):
            v = int(fx.requantize_double(np.int32(c - zp(x)), np.int32(m), np.int32(sh))) + zp(o)
            table[c + 128] = min(max(v, act_min), act_max)
        return table
    if op == "hard_swish":
        return tflm_hard_swish_table(x, o, act_min, act_max, node)
    if op == "leaky_relu":     # TFLM QuantizeLeakyRelu: float32 (s_in * alpha) / s_out and s_in / s_out multipliers
        alpha = np.float32(node.attrs.get("alpha", 0.01))
        m_a, sh_a = fx.quantize_multiplier(float((scale(x) * alpha) / scale(o)))
        m_i, sh_i = fx.quantize_multiplier(float(scale(x) / scale(o)))
        for c in range(-128, 128):
            v = c - zp(x)
            m, sh = (m_i, sh_i) if v >= 0 else (m_a, sh_a)
            r = int(fx.requantize_double(np.int32(v), np.int32(m), np.int32(sh))) + zp(o)
            table[c + 128] = min(max(r, act_min, -128), act_max, 127)
        return table
    want = (1.0 / 256, -128) if op == "sigmoid" else (1.0 / 128, 0)
    if float(scale(o)) != np.float32(want[0]) or zp(o) != want[1]:
        raise N6Error(f"layer {node.name!r} ({op}) output must have scale {want[0]} and zero-point {want[1]} (got "
                      f"{float(scale(o))}, {zp(o)}); re-quantize with the TFLite converter")
    mult, shift, radius = _tflm_input_params(scale(x))
    for c in range(-128, 128):
        v = c - zp(x)
        if v <= -radius:
            r = -128
        elif v >= radius:
            r = 127
        else:
            a = int(fx.requantize_double(np.int32(v), np.int32(mult), np.int32(shift)))      # Q4.27
            if op == "sigmoid":
                if a == 0:
                    q0 = 1 << 30
                else:
                    pos = _one_over_one_plus_x(_exp_on_negative_values(-abs(a), TFLM_INPUT_INTEGER_BITS))
                    q0 = pos if a > 0 else int(fx.wrap_int32(INT32_MAX - pos))
                r = min(max(int(fx.rdbp(np.int32(q0), 23)) - 128, -128), 127)
            else:
                if a == 0:
                    q0 = 0
                else:   # neg_tanh_on_negative_values(-|a|): exp of 2 * (-|a|), the same raw read as Q5.26
                    t = _one_minus_x_over_one_plus_x(_exp_on_negative_values(-abs(a), TFLM_INPUT_INTEGER_BITS + 1))
                    q0 = -t if a < 0 else t
                r = min(max(int(fx.rdbp(np.int32(q0), 24)), -128), 127)
        table[c + 128] = min(max(r, act_min), act_max)
    return table


def _tdiv(a, b):
    """C integer division (truncates toward zero)."""
    q = abs(a) // b
    return q if a >= 0 else -q


def _srdhm16(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul on int16."""
    if a == b == -32768:
        return 32767
    ab = a * b
    return _tdiv(ab + ((1 << 14) if ab >= 0 else 1 - (1 << 14)), 1 << 15)


def _sdhm16(a, b):
    """TFLite's SaturatingDoublingHighMul on int16 (no rounding: C division truncates)."""
    if a == b == -32768:
        return 32767
    return _tdiv(a * b, 1 << 15)


def _sat_shl16(v, amount):
    return min(max(v * (1 << amount), -32768), 32767)


def _to_int16_multiplier(m32):
    """TFLite DownScaleInt32ToInt16Multiplier."""
    return 32767 if m32 >= INT32_MAX - (1 << 15) else (m32 + (1 << 15)) >> 16


def tflm_hard_swish_table(x, o, act_min, act_max, node):
    """TFLM HARD_SWISH int8 (reference_ops::HardSwish): int16 fixed point on a 2^7 finer input scale, a 'reluish'
    multiplier mapping [-3, 3] to [-1, 1], both multipliers cut to int16 (float32 prepare math)."""
    hires = np.float32(np.float32(1.0 / 128.0) * scale(x))
    m, out_exp = fx.quantize_multiplier(float(np.float32(hires / scale(o))))
    if out_exp > 0:
        raise N6Error(f"layer {node.name!r} (hard_swish): the output scale {float(scale(o))} is too small for the "
                      f"input scale {float(scale(x))} (tflite-micro refuses it); re-quantize the model")
    out_m16 = _to_int16_multiplier(m)
    rm, r_exp = fx.quantize_multiplier(float(np.float32(hires / (np.float32(3.0) / np.float32(32768.0)))))
    r_m16 = _to_int16_multiplier(rm)
    table = np.empty(256, np.int8)
    for c in range(-128, 128):
        hi = (((c - zp(x)) * 128 + 32768) & 0xFFFF) - 32768           # int16(input_value << 7)
        pre = _srdhm16(hi, out_m16)
        rv = hi
        if r_exp > 0:
            rv = _sat_shl16(rv, r_exp - 1)
        rv = _srdhm16(rv, r_m16)
        if r_exp > 0:
            rv = _sat_shl16(rv, 1)
        if r_exp < 0:
            rv = int(fx.rdbp(np.int32(rv), -r_exp))
        rv = (rv + (1 << 15)) >> 1
        v = int(fx.rdbp(np.int32(_sdhm16(rv, pre)), -out_exp)) + zp(o)
        table[c + 128] = min(max(v, act_min, -128), act_max, 127)
    return table


def _one_over_one_plus_x(a):
    return int(fx.one_over_one_plus_x_for_x_in_0_1(np.int32(a)))


def prepare(graph, node, profile):
    x, o = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    act_min, act_max = output_range(graph, node, profile)
    if profile.fixed_point:
        if node.op not in ("sigmoid", "tanh", "requantize", "leaky_relu", "hard_swish"):
            raise N6Error(f"profile {profile.name!r} does not implement op {node.op} (layer {node.name!r}); use "
                          f"the onnxruntime profile")
        return UnaryParams(table=tflm_table(node.op, x, o, act_min, act_max, node))
    fn = ort_function(node.op, node.attrs)
    if fn is None:
        raise N6Error(f"profile {profile.name!r} does not implement op {node.op} (layer {node.name!r})")
    codes = np.arange(-128, 128, dtype=np.int32)
    deq = (scale(x) * (codes - zp(x)).astype(np.float32)).astype(np.float32)      # DequantizeLinear
    y = fn(deq)
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.rint((y / scale(o)).astype(np.float32)).astype(np.float64) + zp(o)      # QuantizeLinear
    table = np.clip(q, max(act_min, -128), min(act_max, 127)).astype(np.int8)
    return UnaryParams(table=np.ascontiguousarray(table))


def bind(p, node, ins, out, kernels):
    from ...kernels.lut import bind_lut_s8
    return bind_lut_s8(ins[0].reshape(-1), p.table, out.reshape(-1))
