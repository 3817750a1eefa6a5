"""Profile "prepare": all float math of a graph done once, producing the integer kernel parameters.

prepare(graph, profile, rounding) -> Prepared: for every node a dict of the kernel's scalar/array
arguments (names as in the KERNEL SPEC of emu.kernels), plus the profile name and rounding recorded.
A new profile (e.g. "onnxruntime") is a new entry in PROFILES with its own per-op functions; the
runtime only consumes the resulting dicts.
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

    @property
    def metadata(self):
        return dict(profile=self.profile, rounding=self.rounding, source=self.graph.source)


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
    o = g.tensors[node.outputs[0]]
    act_min, act_max = activation_range(node.attrs["activation"], o)
    a = node.attrs
    return dict(kernel_h=a["kernel_h"], kernel_w=a["kernel_w"], stride_h=a["stride_h"], stride_w=a["stride_w"],
                pad_top=a["pad_top"], pad_left=a["pad_left"], act_min=act_min, act_max=act_max)


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


PROFILES = {
    "cmsis-nn": dict(default_rounding="double", roundings=("double", "single"), ops=dict(
        conv2d=_cmsis_conv, depthwise_conv2d=_cmsis_conv, fully_connected=_cmsis_fc, avg_pool=_cmsis_pool,
        max_pool=_cmsis_pool, softmax=_cmsis_softmax, add=_cmsis_add, mul=_cmsis_mul, pad=_cmsis_pad,
        reshape=_no_params, transpose=_no_params)),
}


def prepare(graph, profile="cmsis-nn", rounding=None):
    """Integer kernel parameters of every node of `graph` under `profile` (rounding None = its default)."""
    spec = PROFILES.get(profile)
    if spec is None:
        raise N6Error(f"unknown arithmetic profile {profile!r}; choose one of {sorted(PROFILES)}")
    rounding = spec["default_rounding"] if rounding is None else rounding
    if rounding not in spec["roundings"]:
        raise N6Error(f"profile {profile!r} has no rounding {rounding!r}; choose one of {list(spec['roundings'])}")
    code = fx.rounding_code(rounding)
    single = code == fx.SINGLE_ROUNDING
    out = Prepared(graph, profile, rounding)
    for node in graph.nodes:
        fn = spec["ops"].get(node.op)
        if fn is None:
            raise N6Error(f"profile {profile!r} does not implement op {node.op} (layer {node.name!r})")
        try:
            params = fn(graph, node, single)
        except ValueError as e:   # a multiplier outside what the profile's quantizer accepts
            raise N6Error(f"layer {node.name!r} ({node.op}): {e}; its scales are outside the range {profile} "
                          f"supports, re-quantize the model") from None
        if node.op in ("conv2d", "depthwise_conv2d", "fully_connected", "mul"):
            params["rounding"] = code
        out.params[node.name] = params
    return out
