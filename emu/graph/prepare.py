"""Profile "prepare": all float math of a graph done once, producing the integer kernel parameters.

prepare(graph, profile, rounding) -> Prepared: for every node a dict of the kernel's scalar/array
arguments (names as in the KERNEL SPEC of emu.kernels), plus the profile name and rounding recorded.
A profile is an entry in PROFILES with its own per-op functions ("cmsis-nn": TFLite fixed-point
multipliers; "onnxruntime": ORT/MLAS float32 scales, round half to even); the runtime only consumes the
resulting dicts.
"""
from dataclasses import dataclass, field

import numpy as np

from .. import fixedpoint as fx
from ..errors import N6Error

INT8_MIN, INT8_MAX = -128, 127


@dataclass
class Prepared:
    """A graph plus the integer parameters of one arithmetic profile (params: layer name -> dict)."""
    graph: object
    profile: str
    rounding: str
    params: dict = field(default_factory=dict)
    elementwise: str = None           # onnxruntime profile: 'qlinear' | 'dq-float' (None for fixed-point profiles)

    @property
    def metadata(self):
        return dict(profile=self.profile, rounding=self.rounding, source=self.graph.source,
                    elementwise=self.elementwise)


# ---- shared helpers (TFLite / TFLM rules) -----------------------------------------------------------

def _zp(t):
    return int(t.zero_point[0])


def _s(t):
    return np.float32(t.scale[0])


def activation_range(activation, out_tensor):
    """TFLM CalculateActivationRangeQuantized for int8: q(f) = zp + round_half_away(float32(f / scale))."""
    scale, zp = _s(out_tensor), _zp(out_tensor)

    def q(f):
        return zp + fx.round_half_away(float(np.float32(f) / scale))

    if activation == "NONE":
        return INT8_MIN, INT8_MAX
    if activation == "RELU":
        return max(INT8_MIN, q(0.0)), INT8_MAX
    if activation == "RELU6":
        return max(INT8_MIN, q(0.0)), min(INT8_MAX, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(INT8_MIN, q(-1.0)), min(INT8_MAX, q(1.0))
    raise N6Error(f"unsupported fused activation {activation!r}; use NONE, RELU, RELU6 or RELU_N1_TO_1")


def _bias(g, node, n_out):
    b = node.inputs[2] if len(node.inputs) > 2 else None
    if b is None:
        return np.zeros(n_out, np.int32)
    data = g.tensors[b].data
    if data is None:
        raise N6Error(f"layer {node.name!r} has a non-constant bias; freeze the weights in the model")
    return np.ascontiguousarray(data.reshape(-1), dtype=np.int32)


def _weights(g, node):
    w = g.tensors[node.inputs[1]]
    if w.data is None:
        raise N6Error(f"layer {node.name!r} has non-constant weights; freeze the weights in the model")
    return w


def _check_symmetric(node, w):
    if np.any(w.zero_point != 0):
        raise N6Error(f"layer {node.name!r} ({node.op}) has non-zero weight zero-points; int8 TFLite requires "
                      f"symmetric weights: re-quantize with the TFLite converter")


# ---- cmsis-nn (== TFLM reference kernels) -------------------------------------------------------------

def _cmsis_conv(g, node, single):
    x, o = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    w = _weights(g, node)
    _check_symmetric(node, w)
    n_out = w.shape[0] if node.op == "conv2d" else w.shape[3]
    scales = w.scale if w.scale.size == n_out else np.repeat(w.scale[:1], n_out)
    mult, shift = fx.per_channel_multipliers(_s(x), scales, _s(o), single_rounding=single)
    act_min, act_max = activation_range(node.attrs["activation"], o)
    a = node.attrs
    p = dict(filt=np.ascontiguousarray(w.data, dtype=np.int8), bias=_bias(g, node, n_out), mult=mult,
             shift=shift, input_offset=-_zp(x), output_offset=_zp(o), stride_h=a["stride_h"],
             stride_w=a["stride_w"], pad_top=a["pad_top"], pad_left=a["pad_left"],
             dilation_h=a["dilation_h"], dilation_w=a["dilation_w"], act_min=act_min, act_max=act_max)
    if node.op == "depthwise_conv2d":
        p["ch_mult"] = a["ch_mult"]
    return p


def _cmsis_fc(g, node, single):
    x, o = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    w = _weights(g, node)
    if len(w.shape) != 2:
        raise N6Error(f"layer {node.name!r} (fully_connected) needs 2-D weights [out, in], got {w.shape}")
    n_out = w.shape[0]
    if w.per_channel:
        _check_symmetric(node, w)
        mult, shift = fx.per_channel_multipliers(_s(x), w.scale, _s(o), single_rounding=single)
    else:
        m, s = fx.per_tensor_fc_multiplier(_s(x), w.scale[0], _s(o), single_rounding=single)
        mult, shift = np.full(n_out, m, np.int32), np.full(n_out, s, np.int32)
    act_min, act_max = activation_range(node.attrs["activation"], o)
    return dict(filt=np.ascontiguousarray(w.data, dtype=np.int8), bias=_bias(g, node, n_out), mult=mult,
                shift=shift, input_offset=-_zp(x), filter_offset=-int(w.zero_point[0]), output_offset=_zp(o),
                act_min=act_min, act_max=act_max)


def _cmsis_pool(g, node, single):
    x, o = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    act_min, act_max = activation_range(node.attrs["activation"], o)
    a = node.attrs
    if node.op == "avg_pool" and (_s(x) != _s(o) or _zp(x) != _zp(o)):
        return _cmsis_mean(g, node, single, act_min, act_max)
    return dict(kernel_h=a["kernel_h"], kernel_w=a["kernel_w"], stride_h=a["stride_h"], stride_w=a["stride_w"],
                pad_top=a["pad_top"], pad_left=a["pad_left"], act_min=act_min, act_max=act_max)


def _cmsis_mean(g, node, single, act_min, act_max):
    """An average pool that changes quantization (ONNX QDQ GlobalAveragePool; TFLite's avgpool cannot rescale):
    run as a depthwise conv with unit int8 weights of scale 1/(H*W) over the whole map, i.e. a TFLite-style
    requantized mean: clamp(requant(sum(x - zp_in), M, shift) + zp_out) with M from s_in / (H*W) / s_out."""
    x, o = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    a = node.attrs
    _, h, w, c = x.shape
    pads = (a["pad_top"], a["pad_left"], a.get("pad_bottom", 0), a.get("pad_right", 0))
    if (a["kernel_h"], a["kernel_w"]) != (h, w) or any(pads):
        raise N6Error(f"layer {node.name!r}: an average pool that changes scale has no cmsis-nn kernel unless it "
                      f"covers the whole unpadded input; use the onnxruntime profile")
    unit = np.full(c, np.float32(1.0) / np.float32(h * w), np.float32)
    mult, shift = fx.per_channel_multipliers(_s(x), unit, _s(o), single_rounding=single)
    return dict(as_depthwise=True, filt=np.ones((1, h, w, c), np.int8), bias=np.zeros(c, np.int32), mult=mult,
                shift=shift, ch_mult=1, input_offset=-_zp(x), output_offset=_zp(o), stride_h=1, stride_w=1,
                pad_top=0, pad_left=0, dilation_h=1, dilation_w=1, act_min=act_min, act_max=act_max,
                rounding=fx.SINGLE_ROUNDING if single else fx.DOUBLE_ROUNDING)


SOFTMAX_INPUT_INTEGER_BITS = 5   # TFLM kScaledDiffIntegerBits: diffs in Q5.26


def _cmsis_softmax(g, node, single):
    x, o = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    if abs(float(_s(o)) - 1.0 / 256) > 0.001 / 256 or _zp(o) != -128:
        raise N6Error(f"layer {node.name!r} (softmax) output must have scale 1/256 and zero-point -128 "
                      f"(got {float(_s(o))}, {_zp(o)}); re-quantize with the TFLite converter")
    # PreprocessSoftmaxScaling: real = min(beta * s_in * 2^(31-5), 2^31 - 1) in double
    real = min(node.attrs["beta"] * float(_s(x)) * float(1 << (31 - SOFTMAX_INPUT_INTEGER_BITS)),
               float((1 << 31) - 1))
    mult, shift = fx.quantize_multiplier_greater_than_one(real)
    # CalculateInputRadius(5, shift, 31): floor((2^5 - 1) * 2^26 / 2^shift)
    radius = int(np.floor(((1 << SOFTMAX_INPUT_INTEGER_BITS) - 1) * float(1 << (31 - SOFTMAX_INPUT_INTEGER_BITS))
                          / float(1 << shift)))
    return dict(mult=int(mult), shift=int(shift), diff_min=-radius)


ADD_LEFT_SHIFT = 20   # TFLite int8 Add: inputs are scaled up by 2^20 before rescaling


def _cmsis_add(g, node, single):
    x1, x2, o = (g.tensors[n] for n in (node.inputs[0], node.inputs[1], node.outputs[0]))
    s1, s2, so = float(_s(x1)), float(_s(x2)), float(_s(o))
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = fx.quantize_multiplier_smaller_than_one(s1 / twice_max)
    m2, sh2 = fx.quantize_multiplier_smaller_than_one(s2 / twice_max)
    mo, sho = fx.quantize_multiplier_smaller_than_one(twice_max / (float(1 << ADD_LEFT_SHIFT) * so))
    act_min, act_max = activation_range(node.attrs["activation"], o)
    return dict(in1_offset=-_zp(x1), in1_mult=m1, in1_shift=sh1, in2_offset=-_zp(x2), in2_mult=m2, in2_shift=sh2,
                left_shift=ADD_LEFT_SHIFT, out_mult=mo, out_shift=sho, out_offset=_zp(o),
                act_min=act_min, act_max=act_max)


def _cmsis_mul(g, node, single):
    x1, x2, o = (g.tensors[n] for n in (node.inputs[0], node.inputs[1], node.outputs[0]))
    m, s = fx.quantize_multiplier(float(_s(x1)) * float(_s(x2)) / float(_s(o)), single_rounding=single)
    act_min, act_max = activation_range(node.attrs["activation"], o)
    return dict(in1_offset=-_zp(x1), in2_offset=-_zp(x2), out_mult=m, out_shift=s, out_offset=_zp(o),
                act_min=act_min, act_max=act_max)


def _cmsis_pad(g, node, single):
    o = g.tensors[node.outputs[0]]
    value = node.attrs["pad_value"]
    return dict(pad_value=_zp(o) if value is None else int(value))


def _no_params(g, node, single):
    return {}


# ---- onnxruntime (ONNX Runtime CPU EP / MLAS on x86: what the PC's QDQ model computes) ------------------------
# Float math of ORT's fused QLinear kernels, done once here; the loops are emu.kernels.ort. Facts:
# QLinearConv/QGemm/QLinearMatMul output scale per channel = float32(float32(s_in * s_w[c]) / s_out);
# QLinearGlobalAveragePool scale = s_in / (s_out * float32(H*W)); ORT runs int8 QDQ activations as uint8
# (its S8->U8 rewrite), which matters where a zero point is added in float (QLinearAveragePool, QLinearAdd/Mul).

ORT_UINT8_DOMAIN_SHIFT = 128          # raw uint8 value = internal int8 value + 128 (zero points likewise)
ORT_ELEMENTWISE_MODES = ("qlinear", "dq-float")


def ort_default_elementwise(io_dtype):
    """What ORT (1.2x, x86 CPU EP) runs for QDQ Add/Mul: fused QLinearAdd/QLinearMul for uint8 activations
    ('qlinear'), unfused DequantizeLinear -> float op -> QuantizeLinear for int8 activations ('dq-float')."""
    return "qlinear" if np.dtype(io_dtype) == np.uint8 else "dq-float"


def ort_conv_scales(s_in, w_scales, s_out):
    """QLinearConv / QGemm output scale per channel, float32 as ORT computes it: (s_in * s_w[c]) / s_out."""
    w = np.asarray(w_scales, np.float32)
    return np.ascontiguousarray((np.float32(s_in) * w) / np.float32(s_out), dtype=np.float32)


def ort_pool_is_global(attrs, t_in):
    """ORT's QLinearAveragePool falls back to the (integer-sum) global average pool when the kernel covers the
    whole input and there is no padding; a GlobalAveragePool always is one."""
    if attrs.get("global_pool"):
        return True
    pads = (attrs["pad_top"], attrs["pad_left"], attrs.get("pad_bottom", 0), attrs.get("pad_right", 0))
    return (attrs["kernel_h"], attrs["kernel_w"]) == tuple(t_in.shape[1:3]) and not any(pads)


def _ort_act(node):
    a = node.attrs
    if "act_min" in a:     # the ONNX importer's exact Q(relu)/Q(clip) bounds
        return a["act_min"], a["act_max"]
    return INT8_MIN, INT8_MAX


def _ort_weighted(g, node, _):
    x, o = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    w = _weights(g, node)
    n_out = w.shape[3] if node.op == "depthwise_conv2d" else w.shape[0]
    if np.unique(w.zero_point).size != 1:
        raise N6Error(f"layer {node.name!r}: per-channel weight zero-points must all be equal")
    scales = w.scale if w.scale.size == n_out else np.repeat(w.scale[:1], n_out)
    act_min, act_max = _ort_act(node)
    p = dict(filt=np.ascontiguousarray(w.data, dtype=np.int8), bias=_bias(g, node, n_out),
             scale=ort_conv_scales(_s(x), scales, _s(o)), input_offset=-_zp(x), filter_offset=-int(w.zero_point[0]),
             output_offset=_zp(o), act_min=act_min, act_max=act_max, rounding=fx.FLOAT32_RNE)
    if node.op != "fully_connected":
        a = node.attrs
        p.update(stride_h=a["stride_h"], stride_w=a["stride_w"], pad_top=a["pad_top"], pad_left=a["pad_left"],
                 dilation_h=a["dilation_h"], dilation_w=a["dilation_w"])
        if node.op == "depthwise_conv2d":
            p["ch_mult"] = a["ch_mult"]
    return p


def _ort_pool(g, node, _):
    x, o = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    a = node.attrs
    act_min, act_max = _ort_act(node)
    p = dict(kernel_h=a["kernel_h"], kernel_w=a["kernel_w"], stride_h=a["stride_h"], stride_w=a["stride_w"],
             pad_top=a["pad_top"], pad_left=a["pad_left"], act_min=act_min, act_max=act_max)
    if node.op == "avg_pool":
        if ort_pool_is_global(a, x):
            p.update(global_pool=True, input_offset=-_zp(x), output_offset=_zp(o),
                     scale=np.float32(_s(x) / (_s(o) * np.float32(x.shape[1] * x.shape[2]))))
        else:
            p.update(global_pool=False, in_scale=_s(x), in_zero_point=_zp(x), out_scale=_s(o), out_zero_point=_zp(o),
                     float_zero_point=_zp(o) + ORT_UINT8_DOMAIN_SHIFT,
                     count_include_pad=int(a.get("count_include_pad", 0)))
    return p


def _ort_requant_inputs(g, node, _):
    o = g.tensors[node.outputs[0]]
    act_min, act_max = _ort_act(node)
    return dict(in_scales=[_s(g.tensors[i]) for i in node.inputs], in_zps=[_zp(g.tensors[i]) for i in node.inputs],
                out_scale=_s(o), out_zp=_zp(o), act_min=act_min, act_max=act_max, axis=node.attrs.get("axis"))


def quantize_float(x, tensor, profile):
    """The model's QuantizeLinear of float32 `x` into int8 with `tensor`'s per-tensor scale/zero-point:
    onnxruntime: clamp(round_half_even(float32(x) / scale) + zp) (MLAS QuantizeLinear);
    cmsis-nn: clamp(round_half_away(float32(x) / scale) + zp) (TFLite quantize; std::round of the quotient)."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise N6Error(f"the float input must be float32, got {x.dtype}; convert it with x.astype(np.float32)")
    if tensor.scale is None or tensor.per_channel:
        raise N6Error(f"input {tensor.name!r} has no per-tensor quantization; pass the int8 buffer instead")
    nan = np.isnan(x)
    if nan.any():
        first = tuple(int(i) for i in np.argwhere(nan)[0])
        raise N6Error(f"{int(nan.sum())} NaN feature value(s) (first at index {first}) cannot be quantized; "
                      f"fix the front end that produced them (e.g. log of a negative value)")
    v = x / np.float32(tensor.scale[0])   # +-inf saturate to the int8 range below
    if profile == "onnxruntime":
        r = np.rint(v).astype(np.float64)
    elif profile == "cmsis-nn":
        r = np.sign(v) * np.floor(np.abs(v).astype(np.float64) + 0.5)
    else:
        raise N6Error(f"unknown arithmetic profile {profile!r}; choose one of {sorted(PROFILES)}")
    return np.clip(r + int(tensor.zero_point[0]), INT8_MIN, INT8_MAX).astype(np.int8)


def _ort_softmax(g, node, _):
    """QLinearSoftmax: uint32 exp table from s_in and the row length, y_scale = uint32(1.0f / s_out) (truncated),
    zero point in ORT's uint8 domain (identical results: the output only saturates at the top)."""
    from ..kernels.ort import softmax_lookup_table
    x, o = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    if node.attrs.get("beta", 1.0) != 1.0:
        raise N6Error(f"layer {node.name!r}: the onnxruntime profile has no softmax beta; use beta = 1")
    return dict(table=softmax_lookup_table(_s(x), x.shape[-1]), y_scale=int(np.uint32(np.float32(1.0) / _s(o))),
                out_zero_point_raw=_zp(o) + ORT_UINT8_DOMAIN_SHIFT, domain_shift=ORT_UINT8_DOMAIN_SHIFT)


PROFILES = {
    "onnxruntime": dict(default_rounding="half-even", roundings=("half-even",), fixed_point=False, ops=dict(
        conv2d=_ort_weighted, depthwise_conv2d=_ort_weighted, fully_connected=_ort_weighted, avg_pool=_ort_pool,
        max_pool=_ort_pool, add=_ort_requant_inputs, mul=_ort_requant_inputs, concat=_ort_requant_inputs,
        softmax=_ort_softmax,
        reshape=_no_params, transpose=_no_params)),
    "cmsis-nn": dict(default_rounding="double", roundings=("double", "single"), ops=dict(
        conv2d=_cmsis_conv, depthwise_conv2d=_cmsis_conv, fully_connected=_cmsis_fc, avg_pool=_cmsis_pool,
        max_pool=_cmsis_pool, softmax=_cmsis_softmax, add=_cmsis_add, mul=_cmsis_mul, pad=_cmsis_pad,
        reshape=_no_params, transpose=_no_params)),
}


def prepare(graph, profile="cmsis-nn", rounding=None, elementwise=None):
    """Integer kernel parameters of every node of `graph` under `profile` (rounding None = its default).
    elementwise (onnxruntime only): 'qlinear' | 'dq-float' for Add/Mul (None = 'dq-float', ORT's int8 choice)."""
    spec = PROFILES.get(profile)
    if spec is None:
        raise N6Error(f"unknown arithmetic profile {profile!r}; choose one of {sorted(PROFILES)}")
    rounding = spec["default_rounding"] if rounding is None else rounding
    if rounding not in spec["roundings"]:
        raise N6Error(f"profile {profile!r} has no rounding {rounding!r}; choose one of {list(spec['roundings'])}")
    fixed_point = spec.get("fixed_point", True)
    if fixed_point and elementwise is not None:
        raise N6Error(f"profile {profile!r} has no elementwise option; it is an onnxruntime-profile choice")
    if not fixed_point:
        elementwise = "dq-float" if elementwise is None else elementwise
        if elementwise not in ORT_ELEMENTWISE_MODES:
            raise N6Error(f"unknown elementwise mode {elementwise!r}; choose one of {list(ORT_ELEMENTWISE_MODES)}")
    code = fx.rounding_code(rounding) if fixed_point else None
    single = code == fx.SINGLE_ROUNDING
    out = Prepared(graph, profile, rounding, elementwise=elementwise)
    for node in graph.nodes:
        fn = spec["ops"].get(node.op)
        if fn is None:
            raise N6Error(f"profile {profile!r} does not implement op {node.op} (layer {node.name!r})")
        try:
            params = fn(graph, node, single)
        except ValueError as e:   # a multiplier outside what the profile's quantizer accepts
            raise N6Error(f"layer {node.name!r} ({node.op}): {e}; its scales are outside the range {profile} "
                          f"supports, re-quantize the model") from None
        if fixed_point and node.op in ("conv2d", "depthwise_conv2d", "fully_connected", "mul"):
            params["rounding"] = code
        if not fixed_point and node.op in ("add", "mul"):
            params["elementwise"] = elementwise
        out.params[node.name] = params
    return out
