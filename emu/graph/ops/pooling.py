"""Pooling ops: avg_pool, max_pool.

tflite: TFLM average pool (sum, rounded division, same quantization in and out) and max pool; an average pool that
changes quantization (ONNX QDQ GlobalAveragePool) is a requantized mean, run as a depthwise conv with unit weights
(weighted.WeightedParams) through the profile's requantizer.
mlas: ORT QLinearGlobalAveragePool (integer sum, float32 scale s_in / (s_out * H*W)) when the window covers the
whole unpadded input, else QLinearAveragePool's float path in ORT's uint8 domain; max pool as tflite.
"""
from dataclasses import dataclass

import numpy as np

from ...errors import N6Error
from ...kernels.backends import bind as bind_kernel
from . import weighted
from .common import Params, geometry, output_range, scale, zp

OPS = ("avg_pool", "max_pool")
ORT_UINT8_DOMAIN_SHIFT = 128          # raw uint8 value = internal int8 value + 128 (zero points likewise)


@dataclass
class PoolParams(Params):
    kind: str                    # avg | max | ort-global-avg | ort-avg
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
    act_min: int
    act_max: int
    input_offset: int = 0        # ort-global-avg: -zp_in; +zp_out
    output_offset: int = 0
    scale: np.float32 = None     # ort-global-avg: float32 s_in / (s_out * float32(H*W))
    in_scale: np.float32 = None  # ort-avg: QLinearAveragePool's float path
    in_zero_point: int = 0
    out_scale: np.float32 = None
    out_zero_point: int = 0
    float_zero_point: int = 0    # out zero-point in ORT's uint8 domain
    count_include_pad: int = 0


def ort_pool_is_global(attrs, t_in):
    """ORT's QLinearAveragePool falls back to the (integer-sum) global average pool when the kernel covers the
    whole input and there is no padding; a GlobalAveragePool always is one."""
    if attrs.get("global_pool"):
        return True
    pads = (attrs["pad_top"], attrs["pad_left"], attrs.get("pad_bottom", 0), attrs.get("pad_right", 0))
    return (attrs["kernel_h"], attrs["kernel_w"]) == tuple(t_in.shape[1:3]) and not any(pads)


def _mean_as_depthwise(graph, node, profile, act_min, act_max):
    """clamp(requant(sum(x - zp_in), M, shift) + zp_out) with M from s_in / (H*W) / s_out: a depthwise conv with
    unit int8 weights over the whole map (TFLite's avgpool cannot rescale)."""
    x, o = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    a = node.attrs
    _, h, w, c = x.shape
    pads = (a["pad_top"], a["pad_left"], a.get("pad_bottom", 0), a.get("pad_right", 0))
    if (a["kernel_h"], a["kernel_w"]) != (h, w) or any(pads):
        raise N6Error(f"layer {node.name!r}: an average pool that changes scale has no cmsis-nn kernel unless it "
                      f"covers the whole unpadded input; use the onnxruntime profile")
    unit = np.full(c, np.float32(1.0) / np.float32(h * w), np.float32)
    mult, shift = profile.requantizer.per_channel(scale(x), unit, scale(o))
    return weighted.WeightedParams(
        kernel="depthwise_conv2d", filt=np.ones((1, h, w, c), np.int8), bias=np.zeros(c, np.int32),
        input_offset=-zp(x), filter_offset=0, output_offset=zp(o), act_min=act_min, act_max=act_max,
        **weighted.epilogue(profile, mult, shift))


def prepare(graph, node, profile):
    x, o = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    a = node.attrs
    act_min, act_max = output_range(graph, node, profile)
    base = dict(kernel_h=a["kernel_h"], kernel_w=a["kernel_w"], **geometry(a), act_min=act_min, act_max=act_max)
    if node.op == "max_pool":
        return PoolParams(kind="max", **base)
    if profile.fixed_point:
        if scale(x) != scale(o) or zp(x) != zp(o):
            return _mean_as_depthwise(graph, node, profile, act_min, act_max)
        return PoolParams(kind="avg", **base)
    if ort_pool_is_global(a, x):
        return PoolParams(kind="ort-global-avg", **base, input_offset=-zp(x), output_offset=zp(o),
                          scale=np.float32(scale(x) / (scale(o) * np.float32(x.shape[1] * x.shape[2]))))
    return PoolParams(kind="ort-avg", **base, in_scale=scale(x), in_zero_point=zp(x), out_scale=scale(o),
                      out_zero_point=zp(o), float_zero_point=zp(o) + ORT_UINT8_DOMAIN_SHIFT,
                      count_include_pad=int(a.get("count_include_pad", 0)))


def bind(p, node, ins, out, kernels):
    if isinstance(p, weighted.WeightedParams):
        return weighted.bind(p, node, ins, out, kernels)
    x = ins[0]
    window = (p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_top, p.pad_left)
    if p.kind in ("avg", "max"):
        return bind_kernel(kernels, "avgpool_s8" if p.kind == "avg" else "maxpool_s8", x, *window, p.act_min,
                           p.act_max, out)
    from ...kernels import ort
    if p.kind == "ort-global-avg":
        args = (x, p.scale, p.input_offset, p.output_offset, p.act_min, p.act_max, out)
        return lambda: ort.global_avgpool_ort_s8(*args)
    args = (x, p.in_scale, p.in_zero_point, p.out_scale, p.out_zero_point, p.float_zero_point, *window,
            p.count_include_pad, p.act_min, p.act_max, out)
    return lambda: ort.avgpool_ort_s8(*args)
