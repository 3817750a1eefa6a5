"""CMSIS-NN's int8 kernels on the Cortex-M55 (QEMU, Helium build) as an oracle for the emulator's cmsis-nn kernels.

    lib = cmsis_nn_lib(arm_dir)                   # CMSIS-NN int8 sources from ../shared/arm, built for the M55
    elf = harness_elf(arm_dir)                    # csrc/m55/nn_harness.c linked against it
    rec = Recorder()                              # a kernel backend: runs the Numba kernels, records every call
    run_case(folder, backend=rec) / Runtime(model, backend=rec).run(x)
    job = Job(); ops = job.add_call(rec.calls[0]) # one job op per CMSIS-NN function variant of that call
    results = job.run(elf)                        # one QEMU boot for the whole job: [(status, int8 array), ...]

A recorded call keeps a copy of exactly what the emulator's kernel was given (input tensor, weights as laid out
by the importer, multipliers, shifts, offsets, geometry, activation range) and what it wrote; `add_call` turns it
into the equivalent CMSIS-NN call(s): the job format is documented at the top of csrc/m55/nn_harness.c. Nothing
from ../shared is copied: the library is compiled from there into the m55.py cache (keyed by content).
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

import m55

HARNESS = m55.M55_DIR / "nn_harness.c"
KINDS = {"conv": 1, "depthwise": 2, "fc": 3, "avgpool": 4, "maxpool": 5, "softmax": 6, "add": 7, "mul": 8,
         "pad": 9, "transpose": 10}
# position of `out` among each emulator kernel's positional arguments (emu/kernels/__init__.py contract)
OUT_INDEX = {"conv_s8": 16, "depthwise_conv_s8": 17, "fully_connected_s8": 11, "avgpool_s8": 9, "maxpool_s8": 9,
             "softmax_s8": 4, "add_s8": 14, "mul_s8": 10, "pad_s8": 3, "transpose_s8": 2}
DATA_INPUTS = {"add_s8": 2, "mul_s8": 2}   # number of leading activation inputs (1 for the others)

# CMSIS-NN folders holding the int8 kernels the harness calls and their helpers; float, int4 and int16 variants
# are left out (the float ones need the MVE float path and are not used here).
_SOURCE_DIRS = ("BasicMathFunctions", "ConvolutionFunctions", "FullyConnectedFunctions", "NNSupportFunctions",
                "PadFunctions", "PoolingFunctions", "SoftmaxFunctions", "TransposeFunctions")
_SKIP = re.compile(r"(_f16|_f32|_flt|_s4\w*|_s16\w*)\.c$")


def arm_paths(arm_dir):
    """(cmsis-nn folder, its Include, the CMSIS Core Include) under ../shared/arm."""
    arm_dir = Path(arm_dir)
    return arm_dir / "cmsis-nn", arm_dir / "cmsis-nn" / "Include", arm_dir / "cmsis-core" / "Include"


def missing(arm_dir):
    """None when the toolchain, QEMU and the CMSIS-NN / CMSIS Core sources are here, else the reason."""
    reason = m55.missing()
    if reason:
        return reason
    nn, nn_inc, core_inc = arm_paths(arm_dir)
    for p in (nn / "Source", nn_inc / "arm_nnfunctions.h", core_inc):
        if not p.exists():
            return f"Cortex-M55 CMSIS-NN oracle unavailable: {p} is absent"
    return None


def sources(arm_dir):
    nn = arm_paths(arm_dir)[0] / "Source"
    return sorted(p for d in _SOURCE_DIRS for p in (nn / d).glob("*.c")
                  if not _SKIP.search(p.name) and not p.name.startswith(("arm_nn_lstm", "arm_nn_vec_mat_mul_result")))


def _tag(base, defines):
    return base + "".join("-" + d.split("=")[0].lower() for d in defines)


def cmsis_nn_lib(arm_dir, defines=(), opt="Os"):
    """CMSIS-NN's int8 kernels compiled for the Cortex-M55 (Helium: __ARM_FEATURE_MVE=3 -> ARM_MATH_MVEI), cached
    by the content of the sources, the headers and the flags (m55.py)."""
    _, nn_inc, core_inc = arm_paths(arm_dir)
    return m55.static_lib(_tag("cmsis-nn", defines), sources(arm_dir), [str(nn_inc), str(core_inc)],
                          defines, opt)


def harness_elf(arm_dir, defines=(), opt="Os"):
    """csrc/m55/nn_harness.c linked against cmsis_nn_lib (cached)."""
    _, nn_inc, core_inc = arm_paths(arm_dir)
    lib = cmsis_nn_lib(arm_dir, defines, opt)
    return m55.build(_tag("nn-harness", defines), [HARNESS],
                     [str(nn_inc), str(core_inc), str(arm_paths(arm_dir)[0] / "Source")], defines, [lib], opt)


# ---- recording backend ----------------------------------------------------------------------------------

@dataclass
class Call:
    """One kernel call as the emulator made it: copied arguments (`args[OUT_INDEX]` is the emulator's output),
    keywords, and for each activation input the index of the earlier call that produced it (None: fed from outside)."""
    name: str
    args: tuple
    kwargs: dict
    producers: list = field(default_factory=list)

    @property
    def out(self):
        return self.args[OUT_INDEX[self.name]]


def _span(a):
    return (a.__array_interface__["data"][0], a.nbytes)


class Recorder:
    """A kernel backend (the emu/kernels contract: runtime and conformance runner accept it) that runs the Numba
    kernels and records every call. `calls` grows with each call; `reset()` starts a new recording."""

    def __init__(self, delegate="numba"):
        from emu.kernels.backends import get_backend
        self._kernels = get_backend(delegate)
        self.__name__ = f"recorder({delegate})"
        self.reset()

    def reset(self):
        self.calls = []
        self._spans = []   # output span of each call, in the delegate's buffers

    def __getattr__(self, name):
        if name in OUT_INDEX:
            return partial(self._call, name)
        raise AttributeError(name)

    def _call(self, name, *args, **kwargs):
        out = args[OUT_INDEX[name]]
        n_in = DATA_INPUTS.get(name, 1)
        copies = tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args)
        producers = [self._producer(args[i]) for i in range(n_in)]
        getattr(self._kernels, name)(*args, **kwargs)
        copies = copies[:OUT_INDEX[name]] + (np.array(out, copy=True),) + copies[OUT_INDEX[name] + 1:]
        self.calls.append(Call(name, copies, dict(kwargs), producers))
        self._spans.append(_span(out))

    def _producer(self, a):
        """Latest earlier call whose output buffer is `a` (same memory), else whose output holds the same bytes (a
        reshape that copied it), else None."""
        span = _span(a)
        for k in range(len(self.calls) - 1, -1, -1):
            if self._spans[k] == span:
                return k
        raw = np.ascontiguousarray(a).tobytes()
        for k in range(len(self.calls) - 1, -1, -1):
            if self.calls[k].out.nbytes == len(raw) and self.calls[k].out.tobytes() == raw:
                return k
        return None


# ---- jobs -----------------------------------------------------------------------------------------------

@dataclass
class Op:
    """A job op: what it computes (label), the CMSIS-NN function variant, and the emulator output it must equal."""
    index: int
    kind: str
    variant: str
    params: tuple
    expected: np.ndarray
    call: Call = None
    inputs_from: tuple = ()   # per leading array: the op whose M55 output feeds it (None: the recorded data)


class Job:
    """A sequence of CMSIS-NN calls for nn_harness.c; arrays of 64 bytes or more are stored once per job."""

    def __init__(self, rounding=0):
        self.rounding = rounding   # the harness's requantization: 0 double (default), 1 CMSIS_NN_USE_SINGLE_ROUNDING
        self.ops: list[Op] = []
        self._chunks = []
        self._n_inline = 0
        self._shared = {}

    # -- encoding
    def _array(self, a, src=None):
        """Encode one array: src an op index (the M55's own output of that op) or None (inline data)."""
        if src is not None:
            self._chunks.append(struct.pack("<2i", src, self.ops[src].expected.nbytes))
            return
        if a is None:
            self._chunks.append(struct.pack("<2i", -1, 0))
            self._n_inline += 1
            return
        raw = np.ascontiguousarray(a).tobytes()
        if len(raw) >= 64:
            key = (len(raw), hash(raw))
            hit = self._shared.get(key)
            if hit is not None and hit[1] == raw:
                self._chunks.append(struct.pack("<2i", -2 - hit[0], len(raw)))
                return
            self._shared[key] = (self._n_inline, raw)
        self._chunks.append(struct.pack("<2i", -1, len(raw)) + raw + b"\0" * (-len(raw) % 4))
        self._n_inline += 1

    def add(self, kind, params, arrays, expected, variant="", call=None, sources=()):
        """Append one op. arrays: int8/int32 ndarrays or None (NULL); sources: for the leading arrays, an op index
        to feed that op's M55 output instead of the array (None keeps the array)."""
        params = tuple(int(p) for p in params)
        self._chunks.append(struct.pack(f"<2i{len(params)}ii", KINDS[kind], len(params), *params, len(arrays)))
        for i, a in enumerate(arrays):
            src = sources[i] if i < len(sources) else None
            if a is not None and src is None:
                a = np.ascontiguousarray(a)
                if a.dtype not in (np.int8, np.int32):
                    raise TypeError(f"{kind}: array {i} has dtype {a.dtype}")
            self._array(a, src)
        op = Op(len(self.ops), kind, variant, params, np.ascontiguousarray(expected), call, tuple(sources))
        self.ops.append(op)
        return op

    def encode(self):
        return b"NNJ1" + struct.pack("<i", len(self.ops)) + b"".join(self._chunks)

    def run(self, elf, timeout=600):
        """Run the job on QEMU; returns [(status, int8 array shaped like the op's expected output), ...]."""
        raw = m55.run(elf, {"job.bin": self.encode()}, ["out.bin"], timeout)["out.bin"]
        results, pos = [], 0
        for op in self.ops:
            status, n = struct.unpack_from("<2i", raw, pos)
            pos += 8
            if n != op.expected.size:
                raise RuntimeError(f"op {op.index} ({op.kind} {op.variant}): the M55 wrote {n} values, "
                                   f"expected {op.expected.size}")
            data = np.frombuffer(raw, np.int8, n, pos).reshape(op.expected.shape)
            pos += n + (-n % 4)
            results.append((status, data))
        if pos != len(raw):
            raise RuntimeError(f"out.bin has {len(raw) - pos} trailing bytes")
        return results

    def _check_rounding(self, name, rounding):
        if int(rounding) != self.rounding:
            raise ValueError(f"{name}: emulator rounding code {rounding}, the job is for a CMSIS-NN build with "
                             f"rounding code {self.rounding}")

    # -- emulator kernel calls -> CMSIS-NN calls
    def add_call(self, call: Call, chain=None, variants="all", hints=None):
        """Append the CMSIS-NN call(s) equivalent to a recorded emulator kernel call, each expected to reproduce the
        emulator's output. chain: {call index: op index} to feed the M55's own output of the producing call instead
        of the recorded input. variants: 'all' (every CMSIS-NN function that takes these arguments: the wrapper TFLM
        calls plus the generic/optimised kernels it picks between) or 'primary' (the wrapper only).
        hints: {'transpose_rank': r, 'fc_per_channel': bool} from the case, when known. Returns the ops."""
        hints = hints or {}
        a, kw = call.args, call.kwargs
        sources = [chain.get(p) if chain is not None and p is not None else None for p in call.producers]
        name = call.name
        if kw.get("filter_offset", 0) != 0 or kw.get("scale") is not None:
            raise ValueError(f"{name}: filter_offset/scale keywords are the onnxruntime profile, not CMSIS-NN")
        ops = []

        def add(kind, params, arrays, variant=""):
            ops.append(self.add(kind, params, arrays, call.out, variant, call, sources))

        def bias_or_null(bias):
            """An all-zero bias goes in as NULL (what TFLM passes for a layer without bias): the same arithmetic,
            and CMSIS-NN's no-bias code paths get exercised."""
            return bias if bias.any() else None

        if name == "conv_s8":
            inp, filt, bias, mult, shift, in_off, out_off, sh, sw, pt, pl, dh, dw, amin, amax, rnd, out = a[:17]
            self._check_rounding(name, rnd)
            n, h, w, cin = inp.shape
            cout, kh, kwid, cin_g = filt.shape
            base = (n, h, w, cin, cout, kh, kwid, cin_g, out.shape[1], out.shape[2], in_off, out_off, sh, sw, pt, pl,
                    dh, dw, amin, amax)
            for fn, label in ((0, "arm_convolve_wrapper_s8"), (1, "arm_convolve_s8")):
                if fn == 0 or variants == "all":
                    # grouped: NULL bias is not safe (arm_convolve_s8 advances the NULL pointer per group)
                    add("conv", base + (fn,), [inp, filt, bias_or_null(bias) if cin_g == cin else bias, mult, shift],
                        label)
        elif name == "depthwise_conv_s8":
            (inp, filt, bias, mult, shift, ch_mult, in_off, out_off, sh, sw, pt, pl, dh, dw, amin, amax, rnd,
             out) = a[:18]
            self._check_rounding(name, rnd)
            n, h, w, cin = inp.shape
            _, kh, kwid, cout = filt.shape
            base = (n, h, w, cin, cout, kh, kwid, out.shape[1], out.shape[2], ch_mult, in_off, out_off, sh, sw, pt, pl,
                    dh, dw, amin, amax)
            fns = [(0, "arm_depthwise_conv_wrapper_s8")]
            if variants == "all":
                fns.append((1, "arm_depthwise_conv_s8"))
                if ch_mult == 1 and n == 1 and dh == 1 and dw == 1:
                    fns.append((2, "arm_depthwise_conv_s8_opt"))
            for fn, label in fns:
                add("depthwise", base + (fn,), [inp, filt, bias_or_null(bias), mult, shift], label)
        elif name == "fully_connected_s8":
            inp, filt, bias, mult, shift, in_off, f_off, out_off, amin, amax, rnd, out = a[:12]
            self._check_rounding(name, rnd)
            per_tensor = bool(np.all(mult == mult[0]) and np.all(shift == shift[0]))
            per_channel = not per_tensor or hints.get("fc_per_channel", False)
            if per_channel and f_off != 0:
                raise ValueError("arm_fully_connected_per_channel_s8 takes filter_offset 0 only (its Helium path "
                                 "requantizes 4 channels with one multiplier when it is not 0)")
            modes = [(1, "arm_fully_connected_per_channel_s8")] if per_channel else [(0, "arm_fully_connected_s8")]
            if variants == "all" and not per_channel and f_off == 0:
                modes.append((1, "arm_fully_connected_per_channel_s8"))
            for mode, label in modes:
                add("fc", (inp.shape[0], inp.shape[1], filt.shape[0], in_off, f_off, out_off, amin, amax, mode),
                    [inp, filt, bias_or_null(bias), mult, shift], label)
        elif name in ("avgpool_s8", "maxpool_s8"):
            inp, kh, kwid, sh, sw, pt, pl, amin, amax, out = a[:10]
            n, h, w, c = inp.shape
            kind = "avgpool" if name == "avgpool_s8" else "maxpool"
            add(kind, (n, h, w, c, out.shape[1], out.shape[2], kh, kwid, sh, sw, pt, pl, amin, amax), [inp],
                "arm_avgpool_s8" if kind == "avgpool" else "arm_max_pool_s8")
        elif name == "softmax_s8":
            inp, mult, shift, diff_min, out = a[:5]
            for fn, label in ((0, "arm_softmax_s8"), (1, "arm_softmax_s8 (Helium path)")):
                if fn == 0 or variants == "all":
                    add("softmax", (inp.shape[0], inp.shape[1], mult, shift, diff_min, fn), [inp], label)
        elif name == "add_s8":
            in1, in2 = a[0], a[1]
            add("add", (in1.size,) + tuple(a[2:14]), [in1, in2], "arm_elementwise_add_s8")
        elif name == "mul_s8":
            in1, in2, o1, o2, om, osh, ooff, amin, amax, rnd, out = a[:11]
            self._check_rounding(name, rnd)
            add("mul", (in1.size, o1, o2, om, osh, ooff, amin, amax), [in1, in2], "arm_elementwise_mul_s8")
        elif name == "pad_s8":
            inp, before, value, out = a[:4]
            after = [o - i - b for o, i, b in zip(out.shape, inp.shape, before.tolist())]
            add("pad", tuple(inp.shape) + tuple(before.tolist()) + tuple(after) + (value,), [inp], "arm_pad_s8")
        elif name == "transpose_s8":
            inp, perm, out = a[:3]
            perm = [int(p) for p in perm]
            rank = hints.get("transpose_rank") or _transpose_rank(inp.shape, perm)
            lead = 4 - rank
            if perm[:lead] != list(range(lead)) or any(d != 1 for d in inp.shape[:lead]):
                raise ValueError(f"transpose {perm} of {inp.shape} is not a rank-{rank} transpose")
            dims = list(inp.shape[lead:]) + [1] * lead
            p = [q - lead for q in perm[lead:]] + list(range(rank, 4))
            if rank in (2, 4) and p == [0, 1, 2, 3]:
                raise ValueError(f"arm_transpose_s8 transposes the last two axes for the rank-{rank} identity "
                                 "permutation: identities are outside its contract")
            add("transpose", [rank] + dims + p, [inp], "arm_transpose_s8")
        else:
            raise ValueError(f"no CMSIS-NN mapping for kernel {name}")
        return ops


def _transpose_rank(shape, perm):
    """Smallest rank r >= 2 with the leading 4 - r axes untouched and of size 1 (the emulator pads with them); a
    permutation that would be the 2-D identity stays rank 3 (CMSIS-NN's 2-D path always swaps)."""
    lead = 0
    while lead < 2 and perm[lead] == lead and shape[lead] == 1:
        lead += 1
    if lead == 2 and perm[2:] == [2, 3]:
        lead = 1
    return 4 - lead


# ---- comparisons -----------------------------------------------------------------------------------------

def describe_mismatch(op: Op, got, want, against="the emulator"):
    """One paragraph naming the op, its CMSIS-NN function, its integer parameters, how many values differ, the first
    positions and the distribution of differences (e.g. all +-1: a rounding rule)."""
    got = np.asarray(got).astype(np.int32)
    want = np.asarray(want).astype(np.int32).reshape(got.shape)
    bad = np.argwhere(got != want)
    diff = (got - want)[got != want]
    values, counts = np.unique(diff, return_counts=True)
    hist = ", ".join(f"{v:+d}: {c}" for v, c in zip(values.tolist(), counts.tolist()))
    first = "; ".join(f"{tuple(int(i) for i in b)} M55 {got[tuple(b)]} vs {want[tuple(b)]}" for b in bad[:5])
    return (f"op {op.index} {op.kind} via {op.variant} (params {op.params}): {len(bad)}/{got.size} values differ "
            f"from {against}; differences {{{hist}}}; first: {first}")
