"""dequantize: an int8 tensor to float32 at the model output (TFLite DEQUANTIZE, tflite-micro's
reference_ops::Dequantize): out = float32(double(scale) * (q - zero_point)), one rounding of the exact product (the
same under every profile). The 256 possible results are a table applied by emu.kernels.dequantize."""
from dataclasses import dataclass

import numpy as np

from .common import Params, scale, zp

OPS = ("dequantize",)


@dataclass
class QuantizeParams(Params):
    table: np.ndarray            # float32 [256]: the value of code c at index c + 128


def prepare(graph, node, profile):
    x = graph.tensors[node.inputs[0]]
    codes = np.arange(-128, 128, dtype=np.int64)
    table = (np.float64(scale(x)) * (codes - zp(x)).astype(np.float64)).astype(np.float32)
    return QuantizeParams(table=np.ascontiguousarray(table))


def bind(p, node, ins, out, kernels):
    from ...kernels.dequantize import bind_lut_s8_f32
    return bind_lut_s8_f32(ins[0].reshape(-1), p.table, out.reshape(-1))
