"""lut_s8_f32: int8 -> float32 through a 256-entry float32 table (flat arrays): out[i] = table[x[i] + 128].

TFLite DEQUANTIZE of an int8 tensor has 256 possible results, prepared once by emu.graph.ops.quantize; the kernel
only indexes (no float arithmetic). Allocation-free.
"""
import numpy as np

from emu.jit import njit
from emu.kernels.backends import check_array, check_shape


@njit(cache=True)
def _lut_s8_f32(inp, table, out):
    for i in range(inp.size):
        out[i] = table[np.int32(inp[i]) + 128]


def bind_lut_s8_f32(inp, table, out):
    """Check once; returns a no-argument callable running the unchecked kernel on these arrays."""
    inp = check_array("inp", inp, np.int8, 1)
    out = check_array("out", out, np.float32, 1, writable=True)
    table = check_array("table", table, np.float32, 1)
    check_shape("out", out, inp.shape)
    check_shape("table", table, (256,))
    return lambda: _lut_s8_f32(inp, table, out)


def lut_s8_f32(inp, table, out):
    bind_lut_s8_f32(inp, table, out)()
