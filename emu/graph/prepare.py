"""Profile "prepare": all float math of a graph done once, producing the integer kernel parameters.

prepare(graph, profile, rounding, elementwise) -> Prepared: for every node the Params dataclass of its op family
(emu.graph.ops) under one emu.graph.profiles.ArithmeticProfile (a registered name or the value itself); the
runtime only binds them to buffers.
"""
from dataclasses import dataclass, field

import numpy as np

from ..errors import N6Error
from . import ops
from .ops.common import INT8_MAX, INT8_MIN
from .profiles import ArithmeticProfile, resolve


@dataclass
class Prepared:
    """A graph plus the integer parameters of one arithmetic profile (params: layer name -> family Params)."""
    graph: object
    arithmetic: ArithmeticProfile
    params: dict = field(default_factory=dict)

    @property
    def profile(self):
        return self.arithmetic.name

    @property
    def rounding(self):
        return self.arithmetic.rounding

    @property
    def elementwise(self):
        """onnxruntime profile: 'qlinear' | 'dq-float' (None for fixed-point profiles)."""
        return None if self.arithmetic.fixed_point else self.arithmetic.elementwise

    @property
    def metadata(self):
        return dict(profile=self.profile, rounding=self.rounding, source=self.graph.source,
                    elementwise=self.elementwise)


def ort_default_elementwise(io_dtype):
    """What ORT (1.2x, x86 CPU EP) runs for QDQ Add/Mul: fused QLinearAdd/QLinearMul for uint8 activations
    ('qlinear'), unfused DequantizeLinear -> float op -> QuantizeLinear for int8 activations ('dq-float')."""
    return "qlinear" if np.dtype(io_dtype) == np.uint8 else "dq-float"


def quantize_float(x, tensor, profile):
    """The model's QuantizeLinear of float32 `x` into int8 with `tensor`'s per-tensor scale/zero-point under the
    profile's input quantization: clamp(round(float32(x) / scale) + zp), round half-even (MLAS) or half-away
    (TFLite: std::round of the quotient)."""
    arithmetic = resolve(profile)
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
    r = arithmetic.quantize(x / np.float32(tensor.scale[0]))   # +-inf saturate to the int8 range below
    return np.clip(r + int(tensor.zero_point[0]), INT8_MIN, INT8_MAX).astype(np.int8)


def prepare(graph, profile="cmsis-nn", rounding=None, elementwise=None):
    """Family Params of every node of `graph` under `profile` (name or ArithmeticProfile) with [model].rounding and
    (onnxruntime) elementwise chosen; None keeps the profile's default."""
    arithmetic = resolve(profile, rounding, elementwise)
    out = Prepared(graph, arithmetic)
    for node in graph.nodes:
        fam = ops.family(node)
        try:
            out.params[node.name] = fam.prepare(graph, node, arithmetic)
        except ValueError as e:   # a multiplier outside what the profile's quantizer accepts
            if isinstance(e, N6Error):
                raise
            raise N6Error(f"layer {node.name!r} ({node.op}): {e}; its scales are outside the range "
                          f"{arithmetic.name} supports, re-quantize the model") from None
    return out
