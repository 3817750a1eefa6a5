"""Elementwise ops: add, sub, mul, maximum, minimum (numpy broadcasting of the inputs), concat.

tflite: TFLite int8 Add and Sub (inputs scaled by 2^20, three double-rounding multipliers; emu.kernels.binary.sub_s8)
and Mul (one multiplier through the profile's requantizer); Maximum/Minimum/Concatenation move int8 values (equal
quantization required, as tflite-micro). mlas: ORT's DequantizeLinear -> float op -> QuantizeLinear ('dq-float', int8
activations) or fused QLinearAdd/QLinearMul in ORT's uint8 domain ('qlinear'); Sub always DQ -> float -> Q (ORT has
no fused QLinearSub); Concat requantizes each input.
"""
from dataclasses import dataclass

import numpy as np

from ... import fixedpoint as fx
from ...errors import N6Error
from . import weighted
from .common import Params, output_range, scale, zp
from .pooling import ORT_UINT8_DOMAIN_SHIFT

OPS = ("add", "sub", "mul", "maximum", "minimum", "concat")
ADD_LEFT_SHIFT = 20   # TFLite int8 Add: inputs are scaled up by 2^20 before rescaling


@dataclass
class ElementwiseParams(Params):
    op: str
    act_min: int
    act_max: int
    in1_offset: int = 0          # tflite: -zp of each input, +zp_out
    in2_offset: int = 0
    out_offset: int = 0
    in1_mult: int = 0            # tflite add: the three multipliers of the 2^20 scheme
    in1_shift: int = 0
    in2_mult: int = 0
    in2_shift: int = 0
    left_shift: int = 0
    out_mult: int = 0
    out_shift: int = 0
    rounding: int = fx.DOUBLE_ROUNDING   # tflite mul: the requantizer's mode (and its own pieces qp)
    requantizer: str = None
    qp: np.ndarray = None
    elementwise: str = None      # mlas: 'dq-float' | 'qlinear'
    in_scales: tuple = ()        # mlas: float32 scale and zero-point of every input, the output's, concat axis
    in_zps: tuple = ()
    out_scale: np.float32 = None
    out_zp: int = 0
    axis: int = None


def prepare(graph, node, profile):
    o = graph.tensors[node.outputs[0]]
    act_min, act_max = output_range(graph, node, profile)
    if node.op in ("maximum", "minimum"):     # raw int8 values: the same under every profile
        _check_same_quantization(graph, node, profile)
        return ElementwiseParams(node.op, act_min, act_max)
    if not profile.fixed_point and node.op == "sub":
        # onnxruntime has no fused QLinearSub: DQ -> float Sub -> Q for int8 and uint8 alike. a - b == a + (-b)
        # exactly in IEEE float32, and float32(-s2 * v) == -float32(s2 * v): an Add with the second scale negated
        s1, s2 = (scale(graph.tensors[i]) for i in node.inputs)
        return ElementwiseParams("sub", act_min, act_max, elementwise="dq-float", in_scales=(s1, -s2),
                                 in_zps=tuple(zp(graph.tensors[i]) for i in node.inputs), out_scale=scale(o),
                                 out_zp=zp(o))
    if not profile.fixed_point:
        return ElementwiseParams(node.op, act_min, act_max, elementwise=profile.elementwise,
                                 in_scales=tuple(scale(graph.tensors[i]) for i in node.inputs),
                                 in_zps=tuple(zp(graph.tensors[i]) for i in node.inputs), out_scale=scale(o),
                                 out_zp=zp(o), axis=node.attrs.get("axis"))
    if node.op == "concat":           # TFLM CONCATENATION: a copy (int8 inputs and output share scale/zero-point)
        _check_same_quantization(graph, node, profile)
        return ElementwiseParams("concat", act_min, act_max, axis=node.attrs.get("axis"))
    x1, x2 = graph.tensors[node.inputs[0]], graph.tensors[node.inputs[1]]
    base = dict(in1_offset=-zp(x1), in2_offset=-zp(x2), out_offset=zp(o))
    if node.op == "mul":
        m, s = profile.requantizer.multiplier(scale(x1), scale(x2), scale(o))
        e = weighted.epilogue(profile, np.array([m], np.int32), np.array([s], np.int32))
        return ElementwiseParams("mul", act_min, act_max, **base, out_mult=m, out_shift=s, rounding=e["rounding"],
                                 requantizer=e["requantizer"], qp=e["qp"])
    s1, s2, so = float(scale(x1)), float(scale(x2)), float(scale(o))
    twice_max = 2.0 * max(s1, s2)      # TFLite Add and Sub share the prepare (PrepareGeneralSubOrAdd)
    m1, sh1 = fx.quantize_multiplier_smaller_than_one(s1 / twice_max)
    m2, sh2 = fx.quantize_multiplier_smaller_than_one(s2 / twice_max)
    mo, sho = fx.quantize_multiplier_smaller_than_one(twice_max / (float(1 << ADD_LEFT_SHIFT) * so))
    return ElementwiseParams(node.op, act_min, act_max, **base, in1_mult=m1, in1_shift=sh1, in2_mult=m2,
                             in2_shift=sh2, left_shift=ADD_LEFT_SHIFT, out_mult=mo, out_shift=sho)


def _check_same_quantization(graph, node, profile):
    ts = [graph.tensors[n] for n in list(node.inputs) + list(node.outputs)]
    if any(scale(t) != scale(ts[-1]) or zp(t) != zp(ts[-1]) for t in ts):
        raise N6Error(f"layer {node.name!r} ({node.op}): under profile {profile.name!r} the inputs and the output "
                      f"must share scale and zero-point (it moves int8 values); use the onnxruntime profile")


def _flat_operands(node, ins, out):
    """Equal-length flat views of a binary op's two inputs (broadcast ones copied into scratch before each call):
    returns ([flat1, flat2], [(scratch, broadcast view), ...])."""
    flat, copies = [], []
    for src in ins[:2]:
        if src.shape == out.shape:
            flat.append(src.reshape(-1))
            continue
        try:
            view = np.broadcast_to(src, out.shape)
        except ValueError:
            raise N6Error(f"layer {node.name!r} ({node.op}): input shape {src.shape} does not broadcast to the "
                          f"output {out.shape}") from None
        scratch = np.empty(out.shape, np.int8)
        copies.append((scratch, view))
        flat.append(scratch.reshape(-1))
    return flat, copies


def bind(p, node, ins, out, kernels):
    from ...kernels import binary, ort
    if p.op == "concat":
        return _bind_concat(p, ins, out) if p.elementwise is not None else _bind_copy_concat(p, ins, out)
    flat, copies = _flat_operands(node, ins, out)
    o = out.reshape(-1)
    if p.op in ("maximum", "minimum", "sub") and p.elementwise is None:
        if p.op == "sub":
            run = binary.bind_sub_s8(flat[0], flat[1], p.in1_offset, p.in1_mult, p.in1_shift, p.in2_offset,
                                     p.in2_mult, p.in2_shift, p.left_shift, p.out_mult, p.out_shift, p.out_offset,
                                     p.act_min, p.act_max, o)
        else:
            run = binary.bind_minmax_s8(flat[0], flat[1], p.op == "maximum", o)

        def run_binary():
            for dst, src in copies:
                np.copyto(dst, src)
            run()
        return run_binary
    if p.elementwise is not None:
        args = (flat[0], flat[1], p.in_scales[0], p.in_zps[0], p.in_scales[1], p.in_zps[1], p.out_scale, p.out_zp,
                p.op == "mul")
        if p.elementwise == "qlinear":
            fn, args = ort.qlinear_binary_ort_s8, args + (ORT_UINT8_DOMAIN_SHIFT,)
        else:
            fn = ort.dq_binary_ort_s8
        args, kw = args + (p.act_min, p.act_max, o), {}
    elif p.op == "add":
        fn, kw = kernels.add_s8, {}
        args = (flat[0], flat[1], p.in1_offset, p.in1_mult, p.in1_shift, p.in2_offset, p.in2_mult, p.in2_shift,
                p.left_shift, p.out_mult, p.out_shift, p.out_offset, p.act_min, p.act_max, o)
    else:
        fn, kw = kernels.mul_s8, ({} if p.qp is None else dict(qp=p.qp))
        args = (flat[0], flat[1], p.in1_offset, p.in2_offset, p.out_mult, p.out_shift, p.out_offset, p.act_min,
                p.act_max, p.rounding, o)

    def run_elementwise():
        for dst, src in copies:
            np.copyto(dst, src)
        fn(*args, **kw)
    return run_elementwise


def _bind_copy_concat(p, ins, out):
    parts, start = [], 0
    for src in ins:
        sl = [slice(None)] * out.ndim
        sl[p.axis] = slice(start, start + src.shape[p.axis])
        start += src.shape[p.axis]
        parts.append((src, out[tuple(sl)]))

    def run_copy_concat():
        for src, dst in parts:
            np.copyto(dst, src)
    return run_copy_concat


def _bind_concat(p, ins, out):
    from ...kernels import ort
    parts, start = [], 0
    for i, src in enumerate(ins):
        scratch = np.empty(src.shape, np.int8)
        sl = [slice(None)] * out.ndim
        sl[p.axis] = slice(start, start + src.shape[p.axis])
        start += src.shape[p.axis]
        parts.append((src.reshape(-1), p.in_scales[i], p.in_zps[i], scratch, out[tuple(sl)]))

    def run_concat():
        for src, s_in, z_in, scratch, dst in parts:
            ort.dq_requantize_ort_s8(src, s_in, z_in, p.out_scale, p.out_zp, scratch.reshape(-1))
            np.copyto(dst, scratch)
    return run_concat
