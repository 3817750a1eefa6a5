"""Data-movement ops: pad (constant value, the output zero-point unless given), reshape, transpose (up to 4-D),
strided_slice (per-axis start/stop/step resolved by the importer, shrunk axes dropped; a strided view copied).
Identical under every profile (no arithmetic)."""
from dataclasses import dataclass

import numpy as np

from ...errors import N6Error
from .common import Params, zp

OPS = ("pad", "reshape", "transpose", "strided_slice")


@dataclass
class LayoutParams(Params):
    pad_value: int = 0           # pad: the int8 fill value


def _pad4(shape):
    return (1,) * (4 - len(shape)) + tuple(shape)


def prepare(graph, node, profile):
    if node.op == "pad":
        value = node.attrs["pad_value"]
        return LayoutParams(pad_value=zp(graph.tensors[node.outputs[0]]) if value is None else int(value))
    return LayoutParams()


def bind(p, node, ins, out, kernels):
    x = ins[0]
    if node.op == "pad":
        pads = node.attrs["pads"]
        if len(pads) > 4:
            raise N6Error(f"layer {node.name!r} (pad): {len(pads)}-D padding is unsupported (at most 4-D)")
        before = np.array([0] * (4 - len(pads)) + [b for b, _ in pads], np.int32)
        args = (x.reshape(_pad4(x.shape)), before, p.pad_value, out.reshape(_pad4(out.shape)))
        return lambda: kernels.pad_s8(*args)
    if node.op == "transpose":
        perm = node.attrs["perm"]
        if len(perm) > 4:
            raise N6Error(f"layer {node.name!r} (transpose): {len(perm)}-D transposes are unsupported")
        lead = 4 - len(perm)
        perm4 = np.array(list(range(lead)) + [q + lead for q in perm], np.int32)
        args = (x.reshape(_pad4(x.shape)), perm4, out.reshape(_pad4(out.shape)))
        return lambda: kernels.transpose_s8(*args)
    if node.op == "strided_slice":
        a = node.attrs
        sl = [slice(b, e if e >= 0 else None, s) for b, e, s in zip(a["starts"], a["stops"], a["steps"])]
        if a.get("in_dim0") == 1:
            sl[0] = slice(None)                    # a leading 1 may hold a folded batch (runtime): keep every sample
        view = x[tuple(sl)]
        dst = out.reshape(view.shape)              # the output buffer seen with the shrunk axes kept (a view)
        return lambda: np.copyto(dst, view)
    src = x.reshape(out.shape)
    return lambda: np.copyto(out, src)
