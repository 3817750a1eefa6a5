"""Weighted ops: conv2d, depthwise_conv2d, fully_connected (and the rescaling mean, run as a depthwise conv).

prepare: int8 weights and int32 bias as the kernels consume them, the requantizer's arrays (tflite: TFLite
(M, shift) per output channel and the pieces qp; mlas: float32 s_in * s_w[c] / s_out as ORT computes it), offsets,
geometry and the activation range. bind: the KERNEL SPEC kernel (emu.kernels) of the backend; the mlas
formulation and non-standard requantizers run on the Numba kernels (the only ones with those epilogues).
"""
from dataclasses import dataclass

import numpy as np

from ... import fixedpoint as fx
from ...errors import N6Error
from ...kernels.backends import bind as bind_kernel, get_backend
from .common import Params, bias, geometry, output_range, scale, weights, zp

OPS = ("conv2d", "depthwise_conv2d", "fully_connected")
KERNELS = {"conv2d": "conv_s8", "depthwise_conv2d": "depthwise_conv_s8", "fully_connected": "fully_connected_s8"}


@dataclass
class WeightedParams(Params):
    kernel: str                  # conv2d | depthwise_conv2d | fully_connected
    filt: np.ndarray             # int8 OHWI | [1, KH, KW, C*M] | [Out, K]
    bias: np.ndarray             # int32 [Cout]
    input_offset: int            # -zp_in
    filter_offset: int           # -zp_w (0: symmetric weights)
    output_offset: int           # +zp_out
    act_min: int
    act_max: int
    rounding: int                # kernel epilogue mode: fx.DOUBLE_ROUNDING | SINGLE_ROUNDING | FLOAT32_RNE
    requantizer: str             # the profile's requantizer name (recorded)
    mult: np.ndarray = None      # int32 [Cout] (fixed point)
    shift: np.ndarray = None     # int32 [Cout], > 0 = left
    qp: np.ndarray = None        # int64 [5, Cout]: the requantizer's own pieces (None: standard, derived at bind)
    scale: np.ndarray = None     # float32 [Cout] (FLOAT32_RNE)
    stride_h: int = 1
    stride_w: int = 1
    pad_top: int = 0
    pad_left: int = 0
    dilation_h: int = 1
    dilation_w: int = 1
    ch_mult: int = 1


def _check_symmetric(node, w):
    if np.any(w.zero_point != 0):
        raise N6Error(f"layer {node.name!r} ({node.op}) has non-zero weight zero-points; int8 TFLite requires "
                      f"symmetric weights: re-quantize with the TFLite converter")


def epilogue(profile, mult, shift):
    """The requantizer fields of WeightedParams for fixed-point (mult, shift) arrays."""
    rq = profile.requantizer
    return dict(mult=mult, shift=shift, rounding=rq.mode, requantizer=rq.name,
                qp=None if rq.standard else rq.pieces(mult, shift))


def prepare(graph, node, profile):
    x, o = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    w = weights(graph, node)
    a = node.attrs
    fc = node.op == "fully_connected"
    if fc and len(w.shape) != 2:
        raise N6Error(f"layer {node.name!r} (fully_connected) needs 2-D weights [out, in], got {w.shape}")
    n_out = w.shape[3] if node.op == "depthwise_conv2d" else w.shape[0]
    scales = w.scale if w.scale.size == n_out else np.repeat(w.scale[:1], n_out)
    act_min, act_max = output_range(graph, node, profile)
    common = dict(kernel=node.op, filt=np.ascontiguousarray(w.data, dtype=np.int8), bias=bias(graph, node, n_out),
                  input_offset=-zp(x), output_offset=zp(o), act_min=act_min, act_max=act_max)
    if not fc:
        common.update(geometry(a), dilation_h=a["dilation_h"], dilation_w=a["dilation_w"])
        if node.op == "depthwise_conv2d":
            common["ch_mult"] = a["ch_mult"]
    if profile.fixed_point:
        rq = profile.requantizer
        if fc and not w.per_channel:
            m, s = rq.per_tensor_fc(scale(x), w.scale[0], scale(o))
            mult, shift = np.full(n_out, m, np.int32), np.full(n_out, s, np.int32)
            filter_offset = -int(w.zero_point[0])
        else:
            _check_symmetric(node, w)
            mult, shift = rq.per_channel(scale(x), scales, scale(o))
            filter_offset = 0
        return WeightedParams(**common, filter_offset=filter_offset, **epilogue(profile, mult, shift))
    if np.unique(w.zero_point).size != 1:
        raise N6Error(f"layer {node.name!r}: per-channel weight zero-points must all be equal")
    return WeightedParams(**common, filter_offset=-int(w.zero_point[0]), rounding=fx.FLOAT32_RNE,
                          requantizer=profile.requantizer.name, scale=ort_conv_scales(scale(x), scales, scale(o)))


def ort_conv_scales(s_in, w_scales, s_out):
    """QLinearConv / QGemm output scale per channel, float32 as ORT computes it: (s_in * s_w[c]) / s_out."""
    w = np.asarray(w_scales, np.float32)
    return np.ascontiguousarray((np.float32(s_in) * w) / np.float32(s_out), dtype=np.float32)


def bind(p, node, ins, out, kernels):
    x = ins[0]
    if p.rounding == fx.FLOAT32_RNE:      # the float32 epilogue exists in the Numba kernels only
        kernels = get_backend("numba")
    elif p.qp is not None and kernels is not get_backend("numba"):
        raise N6Error(f"layer {node.name!r}: requantizer {p.requantizer!r} runs on the numba kernel backend only "
                      f"(the C twins implement double and single rounding); use backend \"numba\"")
    epi = {}
    if p.rounding == fx.FLOAT32_RNE:
        epi["scale"] = p.scale
    if p.qp is not None:
        epi["qp"] = p.qp
    if p.kernel == "fully_connected":
        depth = p.filt.shape[1]
        if x.size % depth:
            raise N6Error(f"layer {node.name!r}: input of {x.size} values is not a multiple of the weights' depth "
                          f"{depth}; check the model")
        return bind_kernel(kernels, "fully_connected_s8", x.reshape(-1, depth), p.filt, p.bias, p.mult, p.shift,
                           p.input_offset, p.filter_offset, p.output_offset, p.act_min, p.act_max, p.rounding,
                           out.reshape(-1, p.filt.shape[0]), **epi)
    if p.filter_offset:
        epi["filter_offset"] = p.filter_offset
    geo = (p.stride_h, p.stride_w, p.pad_top, p.pad_left, p.dilation_h, p.dilation_w, p.act_min, p.act_max,
           p.rounding, out)
    if p.kernel == "conv2d":
        return bind_kernel(kernels, "conv_s8", x, p.filt, p.bias, p.mult, p.shift, p.input_offset, p.output_offset,
                           *geo, **epi)
    return bind_kernel(kernels, "depthwise_conv_s8", x, p.filt, p.bias, p.mult, p.shift, p.ch_mult, p.input_offset,
                       p.output_offset, *geo, **epi)
