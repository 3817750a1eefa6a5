"""lut_s8: a 256-entry int8 lookup table applied elementwise (flat int8 arrays).

Every unary activation of an int8 tensor is a function of the 256 possible input codes, so its exact result is a
table the importer prepares once (emu.graph.ops.unary: the profile's float or fixed-point formula for each code) and
the kernel only indexes: out[i] = table[x[i] + 128]. Integer-only, allocation-free.
"""
import numpy as np

from emu.jit import njit
from emu.kernels.backends import check_array, check_no_alias, check_shape


@njit(cache=True)
def _lut_s8(inp, table, out):
    for i in range(inp.size):
        out[i] = table[np.int32(inp[i]) + 128]


def lut_s8(inp, table, out):
    """Checked entry point: inp/out flat int8 of equal length, table int8[256] indexed by code + 128."""
    bind_lut_s8(inp, table, out)()


def bind_lut_s8(inp, table, out):
    """Check once; returns a no-argument callable running the unchecked kernel on these arrays."""
    inp = check_array("inp", inp, np.int8, 1)
    out = check_array("out", out, np.int8, 1, writable=True)
    table = check_array("table", table, np.int8, 1)
    check_shape("out", out, inp.shape)
    check_shape("table", table, (256,))
    check_no_alias(out, inp)
    return lambda: _lut_s8(inp, table, out)
