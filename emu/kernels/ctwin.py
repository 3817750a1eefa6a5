"""C twins of the int8 network kernels (csrc/kernels_s8.c, module emu._c_kernels), same names and argument
order as the Numba kernels (see emu/kernels/__init__.py for the contract).

Every wrapper checks dtype, C-contiguity, rank and shape consistency, scalar ranges and output aliasing
before calling into C (the C code trusts its arguments), and raises
emu.kernels.backends.KernelArgumentError (a ValueError and an N6Error) with a one-line message otherwise.
Kernels return None and write into the caller's `out`.
"""
import numpy as np

from emu._install import c_twin_missing
from emu.kernels.backends import (INT32_MAX, INT32_MIN, SHIFT_RANGE, KernelArgumentError, check_activation,
                                  check_array, check_geometry, check_int, check_no_alias, check_rounding,
                                  check_shape)

try:
    from emu._c_kernels import ffi as _ffi, lib as _lib
    _IMPORT_ERROR = None
except ImportError as _e:  # not built (optional at install): wrappers raise a one-line error naming the fix
    _ffi = _lib = None
    _IMPORT_ERROR = _e

# The argument checks are emu.kernels.backends' (one home, shared with the Numba wrappers); the C code
# trusts its arguments, so every wrapper below runs them before the call. Shift ranges: SHIFT_RANGE.


def available():
    """True when the compiled extension emu._c_kernels can be imported."""
    return _lib is not None


def missing():
    """The one-line message for an absent emu._c_kernels: why, and how to get it for this install."""
    return c_twin_missing("emu._c_kernels", _IMPORT_ERROR)


def _require_lib():
    if _lib is None:
        raise KernelArgumentError(missing())
    return _lib


def _array(name, a, dtype, ndim, writable=False):
    a = check_array(name, a, dtype, ndim, writable)
    if any(d > INT32_MAX for d in a.shape):
        raise KernelArgumentError(f"{name} has shape {a.shape}; the C kernels take int32 dimensions")
    return a


def _shifts(name, shift, rounding):
    lo, hi = SHIFT_RANGE[rounding]
    if shift.size and (int(shift.min()) < lo or int(shift.max()) > hi):
        raise KernelArgumentError(f"{name} must lie in [{lo}, {hi}] for rounding {rounding}, got "
                                  f"[{int(shift.min())}, {int(shift.max())}]")


def _p(ctype, a):
    return _ffi.from_buffer(ctype, a)


def conv_s8(inp, filt, bias, mult, shift, input_offset, output_offset, stride_h, stride_w, pad_top, pad_left,
            dilation_h, dilation_w, act_min, act_max, rounding, out):
    """Grouped 2-D convolution, NHWC x OHWI -> NHWC int8 (groups = Cin // Cin_g); int32 wrapping accumulator."""
    lib = _require_lib()
    inp = _array("inp", inp, np.int8, 4)
    filt = _array("filt", filt, np.int8, 4)
    out = _array("out", out, np.int8, 4, writable=True)
    n, h, w, cin = inp.shape
    cout, kh, kw, cin_g = filt.shape
    if cin_g == 0 or cin % cin_g != 0:
        raise KernelArgumentError(f"input channels {cin} are not a multiple of the filter's {cin_g} channels per group")
    groups = cin // cin_g
    if groups == 0 or cout % groups != 0:
        raise KernelArgumentError(f"output channels {cout} are not divisible by groups {groups}")
    for name, a in (("bias", bias), ("mult", mult), ("shift", shift)):
        check_shape(name, _array(name, a, np.int32, 1), (cout,))
    if out.shape[0] != n or out.shape[3] != cout:
        raise KernelArgumentError(f"out has shape {out.shape}, expected ({n}, OH, OW, {cout})")
    rounding = check_rounding(rounding)
    _shifts("shift", shift, rounding)
    geo = check_geometry(stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w)
    lo, hi = check_activation(act_min, act_max)
    check_no_alias(out, inp, filt)
    lib.n6_conv_s8(_p("int8_t[]", inp), n, h, w, cin, _p("int8_t[]", filt), cout, kh, kw, cin_g,
                   _p("int32_t[]", bias), _p("int32_t[]", mult), _p("int32_t[]", shift),
                   check_int("input_offset", input_offset), check_int("output_offset", output_offset),
                   *geo, lo, hi, rounding, _p("int8_t[]", out), out.shape[1], out.shape[2])


def depthwise_conv_s8(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w,
                      pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out):
    """Depthwise 2-D convolution, filt [1,KH,KW,Cin*ch_mult], output channel oc = ic*ch_mult + m."""
    lib = _require_lib()
    inp = _array("inp", inp, np.int8, 4)
    filt = _array("filt", filt, np.int8, 4)
    out = _array("out", out, np.int8, 4, writable=True)
    n, h, w, cin = inp.shape
    ch_mult = check_int("ch_mult", ch_mult, 1)
    cout = cin * ch_mult
    if filt.shape[0] != 1 or filt.shape[3] != cout:
        raise KernelArgumentError(f"filt has shape {filt.shape}, expected (1, KH, KW, {cout}) "
                                  f"for Cin {cin} x ch_mult {ch_mult}")
    kh, kw = filt.shape[1], filt.shape[2]
    for name, a in (("bias", bias), ("mult", mult), ("shift", shift)):
        check_shape(name, _array(name, a, np.int32, 1), (cout,))
    if out.shape[0] != n or out.shape[3] != cout:
        raise KernelArgumentError(f"out has shape {out.shape}, expected ({n}, OH, OW, {cout})")
    rounding = check_rounding(rounding)
    _shifts("shift", shift, rounding)
    geo = check_geometry(stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w)
    lo, hi = check_activation(act_min, act_max)
    check_no_alias(out, inp, filt)
    lib.n6_depthwise_conv_s8(_p("int8_t[]", inp), n, h, w, cin, _p("int8_t[]", filt), kh, kw,
                             _p("int32_t[]", bias), _p("int32_t[]", mult), _p("int32_t[]", shift), ch_mult,
                             check_int("input_offset", input_offset), check_int("output_offset", output_offset),
                             *geo, lo, hi, rounding, _p("int8_t[]", out), out.shape[1], out.shape[2])


def fully_connected_s8(inp, filt, bias, mult, shift, input_offset, filter_offset, output_offset,
                       act_min, act_max, rounding, out):
    """Fully connected [N,K] x [Out,K] -> [N,Out]; per-tensor quantization = mult/shift filled with one value."""
    lib = _require_lib()
    inp = _array("inp", inp, np.int8, 2)
    filt = _array("filt", filt, np.int8, 2)
    out = _array("out", out, np.int8, 2, writable=True)
    n, k = inp.shape
    out_ch = filt.shape[0]
    check_shape("filt", filt, (out_ch, k))
    for name, a in (("bias", bias), ("mult", mult), ("shift", shift)):
        check_shape(name, _array(name, a, np.int32, 1), (out_ch,))
    check_shape("out", out, (n, out_ch))
    rounding = check_rounding(rounding)
    _shifts("shift", shift, rounding)
    lo, hi = check_activation(act_min, act_max)
    check_no_alias(out, inp, filt)
    lib.n6_fully_connected_s8(_p("int8_t[]", inp), n, k, _p("int8_t[]", filt), out_ch,
                              _p("int32_t[]", bias), _p("int32_t[]", mult), _p("int32_t[]", shift),
                              check_int("input_offset", input_offset), check_int("filter_offset", filter_offset),
                              check_int("output_offset", output_offset), lo, hi, rounding, _p("int8_t[]", out))


def _pool_args(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out):
    inp = _array("inp", inp, np.int8, 4)
    out = _array("out", out, np.int8, 4, writable=True)
    n, h, w, c = inp.shape
    if out.shape[0] != n or out.shape[3] != c:
        raise KernelArgumentError(f"out has shape {out.shape}, expected ({n}, OH, OW, {c})")
    kh = check_int("kernel_h", kernel_h, 1)
    kw = check_int("kernel_w", kernel_w, 1)
    sh, sw, pt, pl, _, _ = check_geometry(stride_h, stride_w, pad_top, pad_left)
    lo, hi = check_activation(act_min, act_max)
    check_no_alias(out, inp)
    return (_p("int8_t[]", inp), n, h, w, c, kh, kw, sh, sw, pt, pl, lo, hi,
            _p("int8_t[]", out), out.shape[1], out.shape[2])


def avgpool_s8(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out):
    """Average pool over the non-padded taps; (sum +- cnt/2) / cnt with C truncating division; clamp."""
    lib = _require_lib()
    args = _pool_args(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out)
    if lib.n6_avgpool_s8(*args) != 0:
        raise KernelArgumentError("an average-pool window lies entirely in the padding; "
                                  "reduce the padding or the output size")


def maxpool_s8(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out):
    """Max pool over the non-padded taps (an all-padding window gives -128); clamp."""
    lib = _require_lib()
    lib.n6_maxpool_s8(*_pool_args(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left,
                                  act_min, act_max, out))


def softmax_s8(inp, mult, shift, diff_min, out):
    """TFLM/CMSIS-NN int8 softmax per row (gemmlowp fixed point); output scale 1/256, zero point -128."""
    lib = _require_lib()
    inp = _array("inp", inp, np.int8, 2)
    out = _array("out", out, np.int8, 2, writable=True)
    check_shape("out", out, inp.shape)
    rows, row_size = inp.shape
    if row_size == 0 and rows:
        raise KernelArgumentError("softmax rows are empty; pass at least one column")
    check_no_alias(out, inp)
    lib.n6_softmax_s8(_p("int8_t[]", inp), rows, row_size, check_int("mult", mult), check_int("shift", shift, 0, 31),
                      check_int("diff_min", diff_min), _p("int8_t[]", out))


def _elementwise(in1, in2, out):
    in1 = _array("in1", in1, np.int8, 1)
    in2 = _array("in2", in2, np.int8, 1)
    out = _array("out", out, np.int8, 1, writable=True)
    check_shape("in2", in2, in1.shape)
    check_shape("out", out, in1.shape)
    check_no_alias(out, in1, in2)
    return in1, in2, out


def add_s8(in1, in2, in1_offset, in1_mult, in1_shift, in2_offset, in2_mult, in2_shift, left_shift,
           out_mult, out_shift, out_offset, act_min, act_max, out):
    """TFLite int8 Add (left-shift scheme, double rounding throughout) on equal-length flat arrays."""
    lib = _require_lib()
    in1, in2, out = _elementwise(in1, in2, out)
    lo, hi = check_activation(act_min, act_max)
    lib.n6_add_s8(_p("int8_t[]", in1), _p("int8_t[]", in2), in1.size,
                  check_int("in1_offset", in1_offset), check_int("in1_mult", in1_mult),
                  check_int("in1_shift", in1_shift, -62, 62),
                  check_int("in2_offset", in2_offset), check_int("in2_mult", in2_mult),
                  check_int("in2_shift", in2_shift, -62, 62),
                  check_int("left_shift", left_shift, 0, 31), check_int("out_mult", out_mult),
                  check_int("out_shift", out_shift, -62, 62), check_int("out_offset", out_offset), lo, hi,
                  _p("int8_t[]", out))


def mul_s8(in1, in2, in1_offset, in2_offset, out_mult, out_shift, out_offset, act_min, act_max, rounding, out):
    """TFLite int8 Mul: requant((x1+o1)*(x2+o2)) + out_offset, clamped; equal-length flat arrays."""
    lib = _require_lib()
    in1, in2, out = _elementwise(in1, in2, out)
    rounding = check_rounding(rounding)
    lo, hi = check_activation(act_min, act_max)
    slo, shi = SHIFT_RANGE[rounding]
    lib.n6_mul_s8(_p("int8_t[]", in1), _p("int8_t[]", in2), in1.size,
                  check_int("in1_offset", in1_offset), check_int("in2_offset", in2_offset),
                  check_int("out_mult", out_mult),
                  check_int("out_shift", out_shift, slo, shi), check_int("out_offset", out_offset), lo, hi, rounding,
                  _p("int8_t[]", out))


def pad_s8(inp, pad_before, pad_value, out):
    """Constant padding of a 4-D int8 tensor; pad_before[4] int32, pad_after implied by out.shape."""
    lib = _require_lib()
    inp = _array("inp", inp, np.int8, 4)
    pad_before = _array("pad_before", pad_before, np.int32, 1)
    out = _array("out", out, np.int8, 4, writable=True)
    check_shape("pad_before", pad_before, (4,))
    if pad_before.min() < 0:
        raise KernelArgumentError(f"pad_before {pad_before.tolist()} has a negative entry; cropping is not padding")
    for k in range(4):
        if out.shape[k] < inp.shape[k] + int(pad_before[k]):
            raise KernelArgumentError(f"out axis {k} has {out.shape[k]} < input {inp.shape[k]} "
                                      f"+ pad_before {int(pad_before[k])}")
    check_no_alias(out, inp)
    in_dims = np.array(inp.shape, np.int32)
    out_dims = np.array(out.shape, np.int32)
    lib.n6_pad_s8(_p("int8_t[]", inp), _p("int32_t[]", in_dims), _p("int32_t[]", pad_before),
                  check_int("pad_value", pad_value, -128, 127), _p("int8_t[]", out), _p("int32_t[]", out_dims))


def transpose_s8(inp, perm, out):
    """4-D int8 transpose: out.shape[k] == inp.shape[perm[k]] (lower ranks passed with leading 1s)."""
    lib = _require_lib()
    inp = _array("inp", inp, np.int8, 4)
    perm = _array("perm", perm, np.int32, 1)
    out = _array("out", out, np.int8, 4, writable=True)
    if sorted(perm.tolist()) != [0, 1, 2, 3]:
        raise KernelArgumentError(f"perm {perm.tolist()} is not a permutation of 0..3")
    check_shape("out", out, [inp.shape[p] for p in perm.tolist()])
    check_no_alias(out, inp)
    in_dims = np.array(inp.shape, np.int32)
    out_dims = np.array(out.shape, np.int32)
    lib.n6_transpose_s8(_p("int8_t[]", inp), _p("int32_t[]", in_dims), _p("int32_t[]", perm),
                        _p("int8_t[]", out), _p("int32_t[]", out_dims))


# ----------------------------------------------------------------------------------------------------
# Scalar fixed-point primitives of the C twin, exposed for cross-checks against emu.fixedpoint.
# ----------------------------------------------------------------------------------------------------

def srdhm(a, b):
    return int(_require_lib().n6_srdhm(check_int("a", a), check_int("b", b)))


def rdbp(x, exponent):
    return int(_require_lib().n6_rdbp(check_int("x", x), check_int("exponent", exponent, 0, 62)))


def requantize(acc, multiplier, shift, rounding):
    rounding = check_rounding(rounding)
    lo, hi = SHIFT_RANGE[rounding]
    return int(_require_lib().n6_requantize(check_int("acc", acc), check_int("multiplier", multiplier),
                                            check_int("shift", shift, lo, hi), rounding))


def exp_on_negative_values(a):
    """gemmlowp exp on a Q5.26 value <= 0, result Q0.31."""
    return int(_require_lib().n6_exp_on_negative_values(check_int("a", a, INT32_MIN, 0)))


def one_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp 1/(1+x) for a Q0.31 x in [0, 1), result Q0.31."""
    return int(_require_lib().n6_one_over_one_plus_x_for_x_in_0_1(check_int("a", a, 0)))
