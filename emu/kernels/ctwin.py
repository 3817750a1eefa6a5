"""C twins of the int8 network kernels (csrc/kernels_s8.c, module emu._c_kernels), same names and argument
order as the Numba kernels (see emu/kernels/__init__.py for the contract).

Every wrapper checks dtype, C-contiguity, rank and shape consistency, scalar ranges and output aliasing
before calling into C (the C code trusts its arguments), and raises `CTwinArgumentError` (a ValueError
and an N6Error) with a one-line message otherwise. Kernels return None and write into the caller's `out`.
"""
import numpy as np

from emu.errors import N6Error

try:
    from emu._c_kernels import ffi as _ffi, lib as _lib
except ImportError:  # not built yet: wrappers raise a one-line error naming the fix
    _ffi = _lib = None

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
# Shift ranges the C requantizers define (int64 intermediates): double rounding shifts by up to 62 either way;
# single rounding computes (acc*M + 2^(30-s)) >> (31-s), defined for -31 <= s <= 30 (TFLite's own range).
_SHIFT_RANGE = {0: (-62, 62), 1: (-31, 30)}


class CTwinArgumentError(N6Error, ValueError):
    """An argument a C kernel cannot take safely (wrong dtype/layout/shape/range); one line, names the fix."""


def available():
    """True when the compiled extension emu._c_kernels can be imported."""
    return _lib is not None


def _require_lib():
    if _lib is None:
        raise CTwinArgumentError("emu._c_kernels is not built; run `pip install -e .` or "
                                 "`python csrc/build_kernels.py` from the repository root")
    return _lib


def _array(name, a, dtype, ndim, writable=False):
    if not isinstance(a, np.ndarray):
        raise CTwinArgumentError(f"{name} must be a numpy array, got {type(a).__name__}; pass np.ascontiguousarray(...)")
    if a.dtype != dtype:
        raise CTwinArgumentError(f"{name} must have dtype {np.dtype(dtype).name}, got {a.dtype}; convert with .astype()")
    if a.ndim != ndim:
        raise CTwinArgumentError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise CTwinArgumentError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")
    if writable and not a.flags.writeable:
        raise CTwinArgumentError(f"{name} must be writable; pass a fresh output array")
    if a.size > INT32_MAX:
        raise CTwinArgumentError(f"{name} has {a.size} elements, more than the C kernels index (2^31-1)")
    return a


def _int(name, v, lo=INT32_MIN, hi=INT32_MAX):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise CTwinArgumentError(f"{name} must be an integer, got {v!r}")
    v = int(v)
    if not lo <= v <= hi:
        raise CTwinArgumentError(f"{name} = {v} is outside [{lo}, {hi}]")
    return v


def _rounding(rounding):
    return _int("rounding", rounding, 0, 1)


def _activation(act_min, act_max):
    lo = _int("act_min", act_min, -128, 127)
    hi = _int("act_max", act_max, -128, 127)
    if lo > hi:
        raise CTwinArgumentError(f"act_min {lo} > act_max {hi}; swap them")
    return lo, hi


def _shifts(name, shift, rounding):
    lo, hi = _SHIFT_RANGE[rounding]
    if shift.size and (int(shift.min()) < lo or int(shift.max()) > hi):
        raise CTwinArgumentError(f"{name} must lie in [{lo}, {hi}] for rounding {rounding}, got "
                                 f"[{int(shift.min())}, {int(shift.max())}]")


def _shape(name, a, expected):
    if tuple(a.shape) != tuple(expected):
        raise CTwinArgumentError(f"{name} has shape {a.shape}, expected {tuple(expected)}")


def _no_alias(out, *inputs):
    for a in inputs:
        if np.may_share_memory(out, a):
            raise CTwinArgumentError("out overlaps an input; pass a separate output buffer")


def _geometry(stride_h, stride_w, pad_top, pad_left, dilation_h=1, dilation_w=1):
    return (_int("stride_h", stride_h, 1), _int("stride_w", stride_w, 1),
            _int("pad_top", pad_top, 0), _int("pad_left", pad_left, 0),
            _int("dilation_h", dilation_h, 1), _int("dilation_w", dilation_w, 1))


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
        raise CTwinArgumentError(f"input channels {cin} are not a multiple of the filter's {cin_g} channels per group")
    groups = cin // cin_g
    if groups == 0 or cout % groups != 0:
        raise CTwinArgumentError(f"output channels {cout} are not divisible by groups {groups}")
    for name, a in (("bias", bias), ("mult", mult), ("shift", shift)):
        _shape(name, _array(name, a, np.int32, 1), (cout,))
    if out.shape[0] != n or out.shape[3] != cout:
        raise CTwinArgumentError(f"out has shape {out.shape}, expected ({n}, OH, OW, {cout})")
    rounding = _rounding(rounding)
    _shifts("shift", shift, rounding)
    geo = _geometry(stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w)
    lo, hi = _activation(act_min, act_max)
    _no_alias(out, inp, filt)
    lib.n6_conv_s8(_p("int8_t[]", inp), n, h, w, cin, _p("int8_t[]", filt), cout, kh, kw, cin_g,
                   _p("int32_t[]", bias), _p("int32_t[]", mult), _p("int32_t[]", shift),
                   _int("input_offset", input_offset), _int("output_offset", output_offset),
                   *geo, lo, hi, rounding, _p("int8_t[]", out), out.shape[1], out.shape[2])


def depthwise_conv_s8(inp, filt, bias, mult, shift, ch_mult, input_offset, output_offset, stride_h, stride_w,
                      pad_top, pad_left, dilation_h, dilation_w, act_min, act_max, rounding, out):
    """Depthwise 2-D convolution, filt [1,KH,KW,Cin*ch_mult], output channel oc = ic*ch_mult + m."""
    lib = _require_lib()
    inp = _array("inp", inp, np.int8, 4)
    filt = _array("filt", filt, np.int8, 4)
    out = _array("out", out, np.int8, 4, writable=True)
    n, h, w, cin = inp.shape
    ch_mult = _int("ch_mult", ch_mult, 1)
    cout = cin * ch_mult
    if filt.shape[0] != 1 or filt.shape[3] != cout:
        raise CTwinArgumentError(f"filt has shape {filt.shape}, expected (1, KH, KW, {cout}) for Cin {cin} x ch_mult {ch_mult}")
    kh, kw = filt.shape[1], filt.shape[2]
    for name, a in (("bias", bias), ("mult", mult), ("shift", shift)):
        _shape(name, _array(name, a, np.int32, 1), (cout,))
    if out.shape[0] != n or out.shape[3] != cout:
        raise CTwinArgumentError(f"out has shape {out.shape}, expected ({n}, OH, OW, {cout})")
    rounding = _rounding(rounding)
    _shifts("shift", shift, rounding)
    geo = _geometry(stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w)
    lo, hi = _activation(act_min, act_max)
    _no_alias(out, inp, filt)
    lib.n6_depthwise_conv_s8(_p("int8_t[]", inp), n, h, w, cin, _p("int8_t[]", filt), kh, kw,
                             _p("int32_t[]", bias), _p("int32_t[]", mult), _p("int32_t[]", shift), ch_mult,
                             _int("input_offset", input_offset), _int("output_offset", output_offset),
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
    _shape("filt", filt, (out_ch, k))
    for name, a in (("bias", bias), ("mult", mult), ("shift", shift)):
        _shape(name, _array(name, a, np.int32, 1), (out_ch,))
    _shape("out", out, (n, out_ch))
    rounding = _rounding(rounding)
    _shifts("shift", shift, rounding)
    lo, hi = _activation(act_min, act_max)
    _no_alias(out, inp, filt)
    lib.n6_fully_connected_s8(_p("int8_t[]", inp), n, k, _p("int8_t[]", filt), out_ch,
                              _p("int32_t[]", bias), _p("int32_t[]", mult), _p("int32_t[]", shift),
                              _int("input_offset", input_offset), _int("filter_offset", filter_offset),
                              _int("output_offset", output_offset), lo, hi, rounding, _p("int8_t[]", out))


def _pool_args(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out):
    inp = _array("inp", inp, np.int8, 4)
    out = _array("out", out, np.int8, 4, writable=True)
    n, h, w, c = inp.shape
    if out.shape[0] != n or out.shape[3] != c:
        raise CTwinArgumentError(f"out has shape {out.shape}, expected ({n}, OH, OW, {c})")
    kh = _int("kernel_h", kernel_h, 1)
    kw = _int("kernel_w", kernel_w, 1)
    sh, sw, pt, pl, _, _ = _geometry(stride_h, stride_w, pad_top, pad_left)
    lo, hi = _activation(act_min, act_max)
    _no_alias(out, inp)
    return (_p("int8_t[]", inp), n, h, w, c, kh, kw, sh, sw, pt, pl, lo, hi,
            _p("int8_t[]", out), out.shape[1], out.shape[2])


def avgpool_s8(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out):
    """Average pool over the non-padded taps; (sum +- cnt/2) / cnt with C truncating division; clamp."""
    lib = _require_lib()
    args = _pool_args(inp, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, act_min, act_max, out)
    if lib.n6_avgpool_s8(*args) != 0:
        raise CTwinArgumentError("an average-pool window lies entirely in the padding; reduce the padding or the output size")


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
    _shape("out", out, inp.shape)
    rows, row_size = inp.shape
    if row_size == 0 and rows:
        raise CTwinArgumentError("softmax rows are empty; pass at least one column")
    _no_alias(out, inp)
    lib.n6_softmax_s8(_p("int8_t[]", inp), rows, row_size, _int("mult", mult), _int("shift", shift, 0, 31),
                      _int("diff_min", diff_min), _p("int8_t[]", out))


def _elementwise(in1, in2, out):
    in1 = _array("in1", in1, np.int8, 1)
    in2 = _array("in2", in2, np.int8, 1)
    out = _array("out", out, np.int8, 1, writable=True)
    _shape("in2", in2, in1.shape)
    _shape("out", out, in1.shape)
    _no_alias(out, in1, in2)
    return in1, in2, out


def add_s8(in1, in2, in1_offset, in1_mult, in1_shift, in2_offset, in2_mult, in2_shift, left_shift,
           out_mult, out_shift, out_offset, act_min, act_max, out):
    """TFLite int8 Add (left-shift scheme, double rounding throughout) on equal-length flat arrays."""
    lib = _require_lib()
    in1, in2, out = _elementwise(in1, in2, out)
    lo, hi = _activation(act_min, act_max)
    lib.n6_add_s8(_p("int8_t[]", in1), _p("int8_t[]", in2), in1.size,
                  _int("in1_offset", in1_offset), _int("in1_mult", in1_mult), _int("in1_shift", in1_shift, -62, 62),
                  _int("in2_offset", in2_offset), _int("in2_mult", in2_mult), _int("in2_shift", in2_shift, -62, 62),
                  _int("left_shift", left_shift, 0, 31), _int("out_mult", out_mult),
                  _int("out_shift", out_shift, -62, 62), _int("out_offset", out_offset), lo, hi,
                  _p("int8_t[]", out))


def mul_s8(in1, in2, in1_offset, in2_offset, out_mult, out_shift, out_offset, act_min, act_max, rounding, out):
    """TFLite int8 Mul: requant((x1+o1)*(x2+o2)) + out_offset, clamped; equal-length flat arrays."""
    lib = _require_lib()
    in1, in2, out = _elementwise(in1, in2, out)
    rounding = _rounding(rounding)
    lo, hi = _activation(act_min, act_max)
    slo, shi = _SHIFT_RANGE[rounding]
    lib.n6_mul_s8(_p("int8_t[]", in1), _p("int8_t[]", in2), in1.size,
                  _int("in1_offset", in1_offset), _int("in2_offset", in2_offset), _int("out_mult", out_mult),
                  _int("out_shift", out_shift, slo, shi), _int("out_offset", out_offset), lo, hi, rounding,
                  _p("int8_t[]", out))


def pad_s8(inp, pad_before, pad_value, out):
    """Constant padding of a 4-D int8 tensor; pad_before[4] int32, pad_after implied by out.shape."""
    lib = _require_lib()
    inp = _array("inp", inp, np.int8, 4)
    pad_before = _array("pad_before", pad_before, np.int32, 1)
    out = _array("out", out, np.int8, 4, writable=True)
    _shape("pad_before", pad_before, (4,))
    if pad_before.min() < 0:
        raise CTwinArgumentError(f"pad_before {pad_before.tolist()} has a negative entry; cropping is not padding")
    for k in range(4):
        if out.shape[k] < inp.shape[k] + int(pad_before[k]):
            raise CTwinArgumentError(f"out axis {k} has {out.shape[k]} < input {inp.shape[k]} + pad_before {int(pad_before[k])}")
    _no_alias(out, inp)
    in_dims = np.array(inp.shape, np.int32)
    out_dims = np.array(out.shape, np.int32)
    lib.n6_pad_s8(_p("int8_t[]", inp), _p("int32_t[]", in_dims), _p("int32_t[]", pad_before),
                  _int("pad_value", pad_value, -128, 127), _p("int8_t[]", out), _p("int32_t[]", out_dims))


def transpose_s8(inp, perm, out):
    """4-D int8 transpose: out.shape[k] == inp.shape[perm[k]] (lower ranks passed with leading 1s)."""
    lib = _require_lib()
    inp = _array("inp", inp, np.int8, 4)
    perm = _array("perm", perm, np.int32, 1)
    out = _array("out", out, np.int8, 4, writable=True)
    if sorted(perm.tolist()) != [0, 1, 2, 3]:
        raise CTwinArgumentError(f"perm {perm.tolist()} is not a permutation of 0..3")
    _shape("out", out, [inp.shape[p] for p in perm.tolist()])
    _no_alias(out, inp)
    in_dims = np.array(inp.shape, np.int32)
    out_dims = np.array(out.shape, np.int32)
    lib.n6_transpose_s8(_p("int8_t[]", inp), _p("int32_t[]", in_dims), _p("int32_t[]", perm),
                        _p("int8_t[]", out), _p("int32_t[]", out_dims))


# ----------------------------------------------------------------------------------------------------
# Scalar fixed-point primitives of the C twin, exposed for cross-checks against emu.fixedpoint.
# ----------------------------------------------------------------------------------------------------

def srdhm(a, b):
    return int(_require_lib().n6_srdhm(_int("a", a), _int("b", b)))


def rdbp(x, exponent):
    return int(_require_lib().n6_rdbp(_int("x", x), _int("exponent", exponent, 0, 62)))


def requantize(acc, multiplier, shift, rounding):
    rounding = _rounding(rounding)
    lo, hi = _SHIFT_RANGE[rounding]
    return int(_require_lib().n6_requantize(_int("acc", acc), _int("multiplier", multiplier),
                                            _int("shift", shift, lo, hi), rounding))


def exp_on_negative_values(a):
    """gemmlowp exp on a Q5.26 value <= 0, result Q0.31."""
    return int(_require_lib().n6_exp_on_negative_values(_int("a", a, INT32_MIN, 0)))


def one_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp 1/(1+x) for a Q0.31 x in [0, 1), result Q0.31."""
    return int(_require_lib().n6_one_over_one_plus_x_for_x_in_0_1(_int("a", a, 0)))
