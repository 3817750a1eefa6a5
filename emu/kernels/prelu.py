"""prelu_s8: an int8 PReLU as a 256 x 256 lookup table indexed by (alpha code, input code), flat int8 arrays.

The output of one element is a function of its input code and the code of the alpha it is multiplied by, so the
exact result of every (alpha, x) pair is prepared once by emu.graph.ops.prelu (the profile's integer or float
formula) and the kernel only indexes: out[i] = table[(alpha[i] + 128) * 256 + x[i] + 128]. alpha is the constant
broadcast to the output length once, at bind time. Integer-only, allocation-free.
"""
import numpy as np

from emu.jit import njit
from emu.kernels.backends import check_array, check_no_alias, check_shape


@njit(cache=True)
def _prelu_s8(inp, alpha, table, out):
    for i in range(inp.size):
        out[i] = table[(np.int32(alpha[i]) + 128) * 256 + np.int32(inp[i]) + 128]


def bind_prelu_s8(inp, alpha, table, out):
    """Check once; returns a no-argument callable running the unchecked kernel on these arrays."""
    inp = check_array("inp", inp, np.int8, 1)
    alpha = check_array("alpha", alpha, np.int8, 1)
    out = check_array("out", out, np.int8, 1, writable=True)
    table = check_array("table", table, np.int8, 1)
    check_shape("out", out, inp.shape)
    check_shape("alpha", alpha, inp.shape)
    check_shape("table", table, (65536,))
    check_no_alias(out, inp)
    return lambda: _prelu_s8(inp, alpha, table, out)


def prelu_s8(inp, alpha, table, out):
    """Checked entry point: inp/alpha/out flat int8 of equal length, table int8[65536]."""
    bind_prelu_s8(inp, alpha, table, out)()
