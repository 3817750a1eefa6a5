"""Kernel backends by name, and the argument checks shared by the Numba kernels' public wrappers.

get_backend("numba") -> namespace of the Numba kernels (emu/kernels/*.py)
get_backend("c")     -> emu.kernels.ctwin (C twins, module emu._c_kernels; imported lazily)
choose_backend("auto", n_items, ...) -> "c" | "numba": the implementation a job of n_items patches/inputs runs on
Both expose the same names with the same argument order (see emu/kernels/__init__.py): conv_s8,
depthwise_conv_s8, fully_connected_s8, avgpool_s8, maxpool_s8, softmax_s8, add_s8, mul_s8, pad_s8,
transpose_s8. Kernels write into the caller's `out` and return None.
A backend may also offer bind_<name>(same arguments) -> no-argument callable: the arguments are checked once and
the callable runs the unchecked kernel on those arrays (a runtime plan's fixed buffers). bind(kernels, name, *args)
uses it when present and otherwise wraps the checked kernel.
"""
import functools
import types

import numpy as np

from emu.errors import N6Error
from emu.fixedpoint import FLOAT32_RNE, QP_ROWS, prepare_requantize
from emu.jit import njit

BACKENDS = ("numba", "c")
AUTO = "auto"                 # a configuration / CLI value: choose_backend picks one of BACKENDS per job
# "auto" runs a job of at most this many patches (or network inputs) on the C twins, a longer one on Numba. The C
# twins are compiled at install and start at once (a one-clip replay: ~0.35 s in all) but compute one patch at a
# time (~11 ms per bundled patch); Numba costs ~0.7 s more to start (its import, the cached kernels' load) and
# then runs batches over lanes and threads several times faster. Both compute the same integers (the suite
# compares them), so the choice only moves time.
AUTO_C_MAX_ITEMS = 32
KERNEL_NAMES = ("conv_s8", "depthwise_conv_s8", "fully_connected_s8", "avgpool_s8", "maxpool_s8",
                "softmax_s8", "add_s8", "mul_s8", "pad_s8", "transpose_s8")

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
# Shift ranges the requantizers define: double rounding shifts by up to 62 either way (int64 intermediates);
# single rounding computes (acc*M + 2^(30-s)) >> (31-s), defined for -31 <= s <= 30 (same as the C twins).
SHIFT_RANGE = {0: (-62, 62), 1: (-31, 30)}


class KernelArgumentError(N6Error, ValueError):
    """An argument a kernel cannot take (wrong dtype/layout/shape/range); one line naming the fix."""


def get_backend(name):
    """Kernel namespace for a backend name ('numba' | 'c'); raises KernelArgumentError naming the fix."""
    if name == "numba":
        return _numba_backend()
    if name == "c":
        from emu.kernels import ctwin
        if not ctwin.available():
            raise KernelArgumentError(f"backend 'c' is unavailable: {ctwin.missing()}")
        return ctwin
    raise KernelArgumentError(f"unknown kernel backend {name!r}; choose one of {list(BACKENDS)}")


def choose_backend(requested, n_items=None, in_c=True, frontend_profile=None):
    """The backend a job runs on: `requested` itself unless it is "auto"; "auto" -> "c" when the job's size is
    known and small (n_items <= AUTO_C_MAX_ITEMS), its arithmetic is one the C twins implement (`in_c`: a
    fixed-point profile with TFLite's double or single rounding) and the C twins the job needs are built (the
    network's, and the front end's of `frontend_profile` when the job has one), else "numba"."""
    if requested != AUTO:
        return requested
    if n_items is None or n_items > AUTO_C_MAX_ITEMS or not in_c:
        return "numba"
    from emu.kernels import ctwin
    if not ctwin.available():
        return "numba"
    if frontend_profile is not None:
        if frontend_profile == "cmsis-q15":
            from emu.frontend import ctwin_q15 as twin
        else:
            from emu.frontend import ctwin_st as twin
        if not twin.available():
            return "numba"
    return "c"


_NUMBA = None


def _numba_backend():
    global _NUMBA
    if _NUMBA is None:
        from emu.kernels import conv, depthwise, elementwise, fully_connected, layout, pooling, softmax
        _NUMBA = types.SimpleNamespace(
            __name__="numba",
            conv_s8=conv.conv_s8, depthwise_conv_s8=depthwise.depthwise_conv_s8,
            fully_connected_s8=fully_connected.fully_connected_s8,
            avgpool_s8=pooling.avgpool_s8, maxpool_s8=pooling.maxpool_s8, softmax_s8=softmax.softmax_s8,
            add_s8=elementwise.add_s8, mul_s8=elementwise.mul_s8,
            pad_s8=layout.pad_s8, transpose_s8=layout.transpose_s8,
            bind_conv_s8=conv.bind_conv_s8, bind_depthwise_conv_s8=depthwise.bind_depthwise_conv_s8,
            bind_fully_connected_s8=fully_connected.bind_fully_connected_s8,
            bind_avgpool_s8=pooling.bind_avgpool_s8, bind_maxpool_s8=pooling.bind_maxpool_s8,
            bind_softmax_s8=softmax.bind_softmax_s8)
    return _NUMBA


def bind(kernels, name, *args, **kwargs):
    """A no-argument callable running kernel `name` of namespace `kernels` on `args` (and keyword `kwargs`): the
    backend's bind_<name> (arguments checked once, unchecked kernel per call) when it has one, else the checked
    kernel."""
    binder = getattr(kernels, "bind_" + name, None)
    if binder is not None:
        return binder(*args, **kwargs)
    fn = getattr(kernels, name)
    return lambda: fn(*args, **kwargs)


def compiled(kernel, *args):
    """A no-argument callable running the njit `kernel` on `args` through its compiled entry point for exactly these
    argument types (compiled, or loaded from the cache, now): each call skips the dispatcher's type resolution of
    every argument (~0.3-0.6 us of a bound tile kernel's ~25). For a plan's fixed buffers (types never change).
    A kernel that is not a Numba dispatcher (NUMBA_DISABLE_JIT) is called as it is."""
    if not hasattr(kernel, "compile"):
        return functools.partial(kernel, *args)
    from numba import typeof
    entry = kernel.compile(tuple(typeof(a) for a in args))
    return functools.partial(entry, *args)


# ---- argument checks used by the public wrappers (cheap: a few microseconds per call) -----------------

def check_array(name, a, dtype, ndim, writable=False):
    """a must be a C-contiguous ndarray of exactly `dtype` and rank `ndim`."""
    if not isinstance(a, np.ndarray):
        raise KernelArgumentError(f"{name} must be a numpy array, got {type(a).__name__}; pass np.ascontiguousarray(...)")
    if a.dtype != dtype:
        raise KernelArgumentError(f"{name} must have dtype {np.dtype(dtype).name}, got {a.dtype}; convert with .astype()")
    if a.ndim != ndim:
        raise KernelArgumentError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise KernelArgumentError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")
    if writable and not a.flags.writeable:
        raise KernelArgumentError(f"{name} must be writable; pass a fresh output array")
    return a


def check_int(name, v, lo=INT32_MIN, hi=INT32_MAX):
    """v must be an integer (not bool) in [lo, hi]; returns it as a Python int."""
    if type(v) is int and lo <= v <= hi:   # fast path for the common case
        return v
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise KernelArgumentError(f"{name} must be an integer, got {v!r}")
    v = int(v)
    if not lo <= v <= hi:
        raise KernelArgumentError(f"{name} = {v} is outside [{lo}, {hi}]")
    return v


def check_shape(name, a, expected):
    if tuple(a.shape) != tuple(expected):
        raise KernelArgumentError(f"{name} has shape {a.shape}, expected {tuple(expected)}")


def check_per_channel(count, rounding, bias, mult, shift):
    """bias/mult/shift: int32 1-D arrays of `count` values; shifts within SHIFT_RANGE[rounding]."""
    for name, a in (("bias", bias), ("mult", mult), ("shift", shift)):
        check_array(name, a, np.int32, 1)
        if a.shape[0] != count:
            raise KernelArgumentError(f"{name} has shape {a.shape}, expected ({count},)")
    if count:
        lo, hi = _min_max(shift)
        check_shift("shift", int(lo), rounding)
        check_shift("shift", int(hi), rounding)


@njit(cache=True)
def _min_max(a):
    """(min, max) of a non-empty 1-D int32 array in one pass (numpy's two reductions cost ~3 us per call)."""
    lo = a[0]
    hi = a[0]
    for v in a:
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    return lo, hi


def check_epilogue(count, rounding, bias, mult, shift, scale, qp=None):
    """The weighted kernels' requantization arguments (emu.fixedpoint.requantize_channel); returns
    (rounding, qp, scale) ready for the njit kernel. rounding DOUBLE_ROUNDING (0) / SINGLE_ROUNDING (1):
    int32 mult/shift of `count` values, scale None, qp = fixedpoint.prepare_requantize(mult, shift, rounding),
    or a requantizer's own prepared int64 qp [QP_ROWS, count] (mult/shift then unused and may be None);
    FLOAT32_RNE (2): float32 scale of `count` values, mult/shift None or int32 of `count` values (unused; qp zeros)."""
    rounding = check_int("rounding", rounding, 0, FLOAT32_RNE)
    if qp is not None:
        if rounding == FLOAT32_RNE or scale is not None:
            raise KernelArgumentError("qp (prepared fixed-point pieces) needs rounding 0 or 1 and scale=None")
        check_array("bias", bias, np.int32, 1)
        check_array("qp", qp, np.int64, 2)
        for name, a in (("bias", bias), ("qp", qp)):
            if a.shape[-1] != count or (name == "qp" and a.shape[0] != QP_ROWS):
                raise KernelArgumentError(f"{name} has shape {a.shape}, expected "
                                          f"{(QP_ROWS, count) if name == 'qp' else (count,)}")
        return rounding, qp, None
    if rounding == FLOAT32_RNE:
        check_array("bias", bias, np.int32, 1)
        if bias.shape[0] != count:
            raise KernelArgumentError(f"bias has shape {bias.shape}, expected ({count},)")
        if scale is None:
            raise KernelArgumentError("rounding FLOAT32_RNE (2) needs a float32 per-channel scale; pass scale=")
        check_array("scale", scale, np.float32, 1)
        if scale.shape[0] != count:
            raise KernelArgumentError(f"scale has shape {scale.shape}, expected ({count},)")
        if mult is not None and shift is not None:
            for name, a in (("mult", mult), ("shift", shift)):
                check_array(name, a, np.int32, 1)
                if a.shape[0] != count:
                    raise KernelArgumentError(f"{name} has shape {a.shape}, expected ({count},)")
        return rounding, np.zeros((QP_ROWS, count), np.int64), scale
    if scale is not None:
        raise KernelArgumentError(f"scale is only used with rounding FLOAT32_RNE (2), got rounding {rounding}; "
                                  "pass scale=None or rounding=2")
    check_per_channel(count, rounding, bias=bias, mult=mult, shift=shift)
    return rounding, prepare_requantize(mult, shift, rounding), None


def check_shift(name, shift, rounding):
    lo, hi = SHIFT_RANGE[rounding]
    return check_int(f"{name} (rounding {rounding})", shift, lo, hi)


def check_rounding(rounding):
    return check_int("rounding", rounding, 0, 1)


def check_activation(act_min, act_max):
    lo = check_int("act_min", act_min, -128, 127)
    hi = check_int("act_max", act_max, -128, 127)
    if lo > hi:
        raise KernelArgumentError(f"act_min {lo} > act_max {hi}; swap them")
    return lo, hi


def check_geometry(stride_h, stride_w, pad_top, pad_left, dilation_h=1, dilation_w=1):
    return (check_int("stride_h", stride_h, 1), check_int("stride_w", stride_w, 1),
            check_int("pad_top", pad_top, 0), check_int("pad_left", pad_left, 0),
            check_int("dilation_h", dilation_h, 1), check_int("dilation_w", dilation_w, 1))


def check_no_alias(out, *inputs):
    for a in inputs:
        if np.may_share_memory(out, a):
            raise KernelArgumentError("out overlaps an input; pass a separate output buffer")
