"""CMSIS-NN conformance runner: replays CMSIS-NN unit-test folders through the emulator's int8 kernels.

A case folder holds C headers written by CMSIS-NN's test-data generator (TFLite reference kernels):
`config_data.h` (`#define <CASE>_<NAME> value`), typed arrays (`const int8_t <case>_<name>[N] = {...};`,
`const int32_t *const <case>_biases = NULL;` for a missing bias) and the reference output. A whole network
(ds_cnn_s) stores one set of headers per layer (`layer_<k>_<op>_<what>_data.h`) plus input and output.
When the folder has a `test_data.h`, only the headers it includes are read (some folders also hold stale
headers of older generator versions under other file names).

Public API (no printing here; emu/cli.py reports):
  parse_defines, parse_arrays: emu.cheader's header parser (re-exported; NAME -> int | float | tuple | str,
                      name -> np.ndarray of the declared C type | None for a NULL pointer)
  discover(root)      -> sorted list of case folders under root (recursively, root included)
  run_case(path, backend="numba", rounding="double") -> CaseResult
  run_all(root, backend="numba", rounding="double")  -> list[CaseResult], one per discovered folder

`rounding` ('double' | 'single', emu.fixedpoint names) is handed to the kernels that requantize with a
selectable rounding (conv, depthwise, fully connected, mul); CMSIS-NN's reference data is double rounding,
so 'single' is only useful to see which cases tell the two apart. Add and softmax have fixed rules.

Kernels are called through `emu.kernels.backends.get_backend(backend)` (a name) or any object that provides
the kernels under their spec names (e.g. tests/naive.py). Multipliers, shifts and offsets are taken from the
headers as given: the kernels must reproduce the reference output from the same integer parameters.
A folder whose layout is not recognised gives status "UNKNOWN" with the reason; never an exception.
"""
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cheader import CHeaderError, parse_arrays, parse_defines, parse_includes
from .errors import N6Error

PASS, FAIL, UNKNOWN = "PASS", "FAIL", "UNKNOWN"


@dataclass(frozen=True)
class CaseResult:
    """Outcome of one case. first_mismatch is the (N, H, W, C) position of the first differing output value
    (outputs of lower rank are viewed as NHWC, e.g. fully connected [N, Out] as [N, 1, 1, Out])."""
    name: str
    op: str
    status: str
    n_mismatch: int
    n_total: int
    first_mismatch: tuple = None
    detail: str = ""


class _Unrecognised(Exception):
    """The folder's content does not match a known case layout (reported as UNKNOWN, with the message)."""


# ---- header parsing (emu.cheader) ---------------------------------------------------------------------

def _case_headers(folder):
    """Headers that make up the case: those test_data.h includes (when present), else every *.h."""
    index = folder / "test_data.h"
    if index.is_file():
        names = parse_includes(index.read_text(errors="replace"))
        return [folder / n for n in names if (folder / n).is_file()]
    return sorted(p for p in folder.glob("*.h"))


def _common_prefix(names):
    """Longest common prefix of names, cut after its last underscore ('' when none)."""
    if not names:
        return ""
    lo, hi = min(names), max(names)
    n = 0
    while n < min(len(lo), len(hi)) and lo[n] == hi[n]:
        n += 1
    return lo[:lo[:n].rfind("_") + 1]


def _strip_prefix(mapping, prefix):
    return {k[len(prefix):] if prefix and k.startswith(prefix) else k: v for k, v in mapping.items()}


def _case_prefix(folder_name, define_names, array_names):
    """The `<CASE>_` prefix of the names (folder name when every name starts with it, else their common prefix)."""
    upper = folder_name.upper() + "_"
    if all(n.startswith(upper) for n in define_names) and all(n.startswith(upper.lower()) for n in array_names):
        return upper.lower()
    names = [n.lower() for n in define_names] + list(array_names)
    return _common_prefix(names)


# ---- discovery ----------------------------------------------------------------------------------------

_LAYER_FILE_RE = re.compile(r"^layer_(\d+)_(.+?)_config_data\.h$")


def _is_case_folder(folder):
    if (folder / "config_data.h").is_file():
        return True
    return any(_LAYER_FILE_RE.match(p.name) for p in folder.glob("layer_*_config_data.h"))


def discover(root):
    """Every folder under root (root included, recursively) that holds config_data.h or per-layer
    `layer_<k>_<op>_config_data.h` headers, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise N6Error(f"{root}: no such folder; give a folder of CMSIS-NN test-data cases")
    folders = [root] + sorted(p for p in root.rglob("*") if p.is_dir())
    return [f for f in folders if _is_case_folder(f)]


# ---- backends ---------------------------------------------------------------------------------------

def _resolve_backend(backend):
    """Kernel namespace for a backend name ('numba' | 'c') or an object already providing the kernels."""
    from .graph.runtime import resolve_backend
    return resolve_backend(backend)[0]


class _KernelRaised(Exception):
    """A kernel refused or failed on the case's arguments (reported as FAIL, with the message)."""


def _kernel(kernels, name):
    """The backend's kernel `name`, wrapped so that anything it raises becomes _KernelRaised."""
    fn = getattr(kernels, name, None)
    if fn is None:
        raise _Unrecognised(f"the kernel backend has no {name}")

    def call(*args):
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - any kernel failure is a FAIL of this case, reported in one line
            raise _KernelRaised(f"{name} raised {type(e).__name__}: {e}") from None
    return call


# ---- case helpers -----------------------------------------------------------------------------------

class _Headers:
    """Defines and arrays of one case (or one network layer) with their name prefixes removed; accessors
    raise _Unrecognised naming the missing or ill-typed item."""

    def __init__(self, defines, define_prefix, arrays, array_prefix):
        self.define_prefix, self.array_prefix = define_prefix, array_prefix
        self.defines = _strip_prefix(defines, define_prefix)
        self.arrays = _strip_prefix(arrays, array_prefix)

    def has(self, *keys):
        return all(k in self.defines for k in keys)

    def int(self, key, default=None):
        """Integer define `key`; default when absent (required when default is None)."""
        if key not in self.defines:
            if default is not None:
                return default
            raise _Unrecognised(f"the config has no {self.define_prefix}{key}")
        v = self.defines[key]
        if not isinstance(v, int):
            raise _Unrecognised(f"{self.define_prefix}{key} is {v!r}, expected an integer")
        return v

    def array(self, *names, dtype, size=None, required=True):
        """The first present array among names (aliases), as a contiguous array of dtype; None when absent
        and not required (a NULL pointer counts as absent)."""
        for n in names:
            if self.arrays.get(n) is not None:
                a = self.arrays[n]
                if a.dtype != dtype:
                    raise _Unrecognised(f"array {self.array_prefix}{n} is {a.dtype}, expected {np.dtype(dtype).name}")
                if size is not None and a.size != size:
                    raise _Unrecognised(f"array {self.array_prefix}{n} has {a.size} values, expected {size}")
                return np.ascontiguousarray(a)
        if required:
            raise _Unrecognised(f"no array {self.array_prefix}{names[0]} in the case headers")
        return None


def _read_headers(paths):
    defines, arrays = {}, {}
    for header in paths:
        text = header.read_text(errors="replace")
        defines.update(parse_defines(text))
        try:
            arrays.update(parse_arrays(text, source=header.name))
        except CHeaderError as e:
            raise _Unrecognised(str(e)) from None
    return defines, arrays


def _load_case(folder):
    """Headers of a single-op case folder, prefixes `<CASE>_` / `<case>_` removed."""
    defines, arrays = _read_headers(_case_headers(folder))
    prefix = _case_prefix(folder.name, list(defines), list(arrays))
    return _Headers(defines, prefix.upper(), arrays, prefix)


def _bias(case, n):
    """Bias array (bias/biases) or zeros when absent or NULL."""
    b = case.array("biases", "bias", dtype=np.int32, size=n, required=False)
    return np.zeros(n, np.int32) if b is None else b


def _expected(case, size):
    return case.array("output_ref", "output", dtype=np.int8, size=size)


def _as_nhwc(shape):
    shape = tuple(int(s) for s in shape)
    return (1,) * (4 - len(shape)) + shape


def _compare(name, op, got, ref, view_shape, detail=""):
    """Exact comparison; positions are reported in view_shape (4-D NHWC)."""
    got = got.reshape(-1)
    ref = ref.reshape(-1)
    bad = np.flatnonzero(got != ref)
    if bad.size == 0:
        return CaseResult(name, op, PASS, 0, int(ref.size), None, detail)
    first = tuple(int(i) for i in np.unravel_index(int(bad[0]), view_shape))
    msg = f"first differing value: got {int(got[bad[0]])}, reference {int(ref[bad[0]])}"
    return CaseResult(name, op, FAIL, int(bad.size), int(ref.size), first, msg + (f"; {detail}" if detail else ""))


# ---- per-op runners (each returns (op, got, ref, view_shape)) -----------------------------------------

def _conv_geometry(case):
    n = case.int("INPUT_BATCHES")
    h, w, cin = case.int("INPUT_H"), case.int("INPUT_W"), case.int("IN_CH")
    return n, h, w, cin


def _run_conv(case, k, rnd, depthwise):
    n, h, w, cin = _conv_geometry(case)
    cout = case.int("OUT_CH")
    kh, kw = case.int("FILTER_Y"), case.int("FILTER_X")
    oh, ow = case.int("OUTPUT_H"), case.int("OUTPUT_W")
    inp = case.array("input", dtype=np.int8, size=n * h * w * cin).reshape(n, h, w, cin)
    filt = case.array("weights", dtype=np.int8)
    mult = case.array("output_mult", "output_multiplier", dtype=np.int32, size=cout)
    shift = case.array("output_shift", dtype=np.int32, size=cout)
    bias = _bias(case, cout)
    ref = _expected(case, n * oh * ow * cout)
    out = np.zeros((n, oh, ow, cout), np.int8)
    common = (case.int("INPUT_OFFSET"), case.int("OUTPUT_OFFSET"), case.int("STRIDE_Y"), case.int("STRIDE_X"),
              case.int("PAD_Y"), case.int("PAD_X"), case.int("DILATION_Y", 1), case.int("DILATION_X", 1),
              case.int("OUT_ACTIVATION_MIN"), case.int("OUT_ACTIVATION_MAX"), rnd, out)
    if depthwise:
        ch_mult = case.int("CH_MULT", cout // cin if cin and cout % cin == 0 else None)
        if cin * ch_mult != cout or filt.size != kh * kw * cout:
            raise _Unrecognised(f"depthwise geometry: IN_CH {cin} x CH_MULT {ch_mult} != OUT_CH {cout} "
                                f"or {filt.size} weights != {kh}x{kw}x{cout}")
        _kernel(k, "depthwise_conv_s8")(inp, filt.reshape(1, kh, kw, cout), bias, mult, shift, ch_mult, *common)
        return "depthwise_conv_s8", out, ref, out.shape
    per_group = kh * kw * cout
    if filt.size % per_group or filt.size == 0 or cin % (filt.size // per_group):
        raise _Unrecognised(f"conv weights: {filt.size} values do not fit OUT_CH {cout} x {kh}x{kw} x (IN_CH/groups)")
    cin_g = filt.size // per_group
    if cout % (cin // cin_g):
        raise _Unrecognised(f"conv groups: OUT_CH {cout} is not divisible by {cin // cin_g} groups")
    _kernel(k, "conv_s8")(inp, filt.reshape(cout, kh, kw, cin_g), bias, mult, shift, *common)
    return "conv_s8", out, ref, out.shape


def _run_fully_connected(case, k, rnd):
    n = case.int("INPUT_BATCHES")
    depth, cout = case.int("ACCUMULATION_DEPTH"), case.int("OUT_CH")
    inp = case.array("input", dtype=np.int8, size=n * depth).reshape(n, depth)
    filt = case.array("weights", dtype=np.int8, size=cout * depth).reshape(cout, depth)
    bias = _bias(case, cout)
    mult = case.array("output_mult", "output_multiplier", dtype=np.int32, size=cout, required=False)
    shift = case.array("output_shift", dtype=np.int32, size=cout, required=False)
    if mult is None or shift is None:  # per-tensor quantization: one multiplier/shift in the config
        mult = np.full(cout, case.int("OUTPUT_MULTIPLIER"), np.int32)
        shift = np.full(cout, case.int("OUTPUT_SHIFT"), np.int32)
        op = "fully_connected_s8"
    else:
        op = "fully_connected_s8 (per-channel)"
    ref = _expected(case, n * cout)
    out = np.zeros((n, cout), np.int8)
    _kernel(k, "fully_connected_s8")(inp, filt, bias, mult, shift, case.int("INPUT_OFFSET"),
                                     case.int("FILTER_OFFSET", 0), case.int("OUTPUT_OFFSET"),
                                     case.int("OUT_ACTIVATION_MIN"), case.int("OUT_ACTIVATION_MAX"),
                                     rnd, out)
    return op, out, ref, (n, 1, 1, cout)


def _run_pool(case, k, rnd, kind):
    h, w, c = case.int("INPUT_H"), case.int("INPUT_W"), case.int("INPUT_C")
    oh, ow = case.int("OUTPUT_H"), case.int("OUTPUT_W")
    if case.int("OUTPUT_C", c) != c:
        raise _Unrecognised("pooling with OUTPUT_C != INPUT_C")
    inp = case.array("input_tensor", "input", dtype=np.int8)
    if inp.size % (h * w * c):
        raise _Unrecognised(f"pooling input of {inp.size} values is not a whole number of {h}x{w}x{c} images")
    n = inp.size // (h * w * c)
    if n != case.int("BATCH_SIZE", n):
        raise _Unrecognised(f"pooling input holds {n} images, BATCH_SIZE says {case.int('BATCH_SIZE')}")
    ref = _expected(case, n * oh * ow * c)
    out = np.zeros((n, oh, ow, c), np.int8)
    name = "avgpool_s8" if kind == "avg" else "maxpool_s8"
    _kernel(k, name)(inp.reshape(n, h, w, c), case.int("FILTER_H"), case.int("FILTER_W"), case.int("STRIDE_H"),
                     case.int("STRIDE_W"), case.int("PADDING_H"), case.int("PADDING_W"),
                     case.int("ACTIVATION_MIN"), case.int("ACTIVATION_MAX"), out)
    return name, out, ref, out.shape


def _run_softmax(case, k, rnd):
    rows, size = case.int("NUM_ROWS"), case.int("ROW_SIZE")
    mult = case.int("INPUT_MULT") if case.has("INPUT_MULT") else case.int("MULT")
    shift = case.int("INPUT_LEFT_SHIFT") if case.has("INPUT_LEFT_SHIFT") else case.int("SHIFT")
    inp = case.array("input", dtype=np.int8, size=rows * size).reshape(rows, size)
    ref = _expected(case, rows * size)
    out = np.zeros((rows, size), np.int8)
    _kernel(k, "softmax_s8")(inp, mult, shift, case.int("DIFF_MIN"), out)
    return "softmax_s8", out, ref, (rows, 1, 1, size)


def _run_add(case, k, rnd):
    size = case.int("DST_SIZE")
    in1 = case.array("input1", dtype=np.int8, size=size)
    in2 = case.array("input2", dtype=np.int8, size=size)
    ref = _expected(case, size)
    out = np.zeros(size, np.int8)
    _kernel(k, "add_s8")(in1, in2, case.int("INPUT1_OFFSET"), case.int("INPUT1_MULT"), case.int("INPUT1_SHIFT"),
                         case.int("INPUT2_OFFSET"), case.int("INPUT2_MULT"), case.int("INPUT2_SHIFT"),
                         case.int("LEFT_SHIFT"), case.int("OUTPUT_MULT"), case.int("OUTPUT_SHIFT"),
                         case.int("OUTPUT_OFFSET"), case.int("OUT_ACTIVATION_MIN"), case.int("OUT_ACTIVATION_MAX"),
                         out)
    return "add_s8", out, ref, (1, 1, 1, size)


def _run_mul(case, k, rnd):
    size = case.int("DST_SIZE")
    in1 = case.array("input1", dtype=np.int8, size=size)
    in2 = case.array("input2", dtype=np.int8, size=size)
    ref = _expected(case, size)
    out = np.zeros(size, np.int8)
    _kernel(k, "mul_s8")(in1, in2, case.int("INPUT1_OFFSET"), case.int("INPUT2_OFFSET"), case.int("OUTPUT_MULT"),
                         case.int("OUTPUT_SHIFT"), case.int("OUTPUT_OFFSET"), case.int("OUT_ACTIVATION_MIN"),
                         case.int("OUT_ACTIVATION_MAX"), rnd, out)
    return "mul_s8", out, ref, (1, 1, 1, size)


def _run_pad(case, k, rnd):
    axes = "NHWC"
    shape = tuple(case.int(f"INPUT_{a}") for a in axes)
    before = np.array([case.int(f"PRE_PAD_{a}") for a in axes], np.int32)
    after = [case.int(f"POST_PAD_{a}") for a in axes]
    if min(before.tolist() + after) < 0:
        raise _Unrecognised("negative padding")
    out_shape = tuple(s + int(b) + a for s, b, a in zip(shape, before, after))
    inp = case.array("input_tensor", "input", dtype=np.int8, size=int(np.prod(shape))).reshape(shape)
    ref = _expected(case, int(np.prod(out_shape)))
    out = np.zeros(out_shape, np.int8)
    _kernel(k, "pad_s8")(inp, before, case.int("PAD_VALUE"), out)
    return "pad_s8", out, ref, out_shape


def _run_transpose(case, k, rnd):
    perm = case.defines.get("PERM")
    in_dim = case.defines.get("IN_DIM")
    if not isinstance(perm, tuple) or not isinstance(in_dim, tuple):
        raise _Unrecognised("transpose: PERM and IN_DIM must be brace lists")
    rank = case.int("PERM_SIZE", len(perm))
    perm = perm[:rank]
    if not 1 <= rank <= 4 or sorted(perm) != list(range(rank)) or len(in_dim) < rank:
        raise _Unrecognised(f"transpose: PERM {perm} is not a permutation of {rank} axes")
    shape = tuple(in_dim[:rank])  # dims in memory order (outermost first); unused trailing entries are 0
    out_shape = tuple(shape[p] for p in perm)
    if "OUT_DIM" in case.defines and tuple(case.defines["OUT_DIM"][:rank]) != out_shape:
        raise _Unrecognised(f"transpose: OUT_DIM {case.defines['OUT_DIM'][:rank]} != IN_DIM permuted {out_shape}")
    size = int(np.prod(shape))
    inp = case.array("input_tensor", "input", dtype=np.int8, size=size)
    ref = _expected(case, size)
    lead = 4 - rank
    perm4 = np.array(list(range(lead)) + [p + lead for p in perm], np.int32)
    out4 = np.zeros(_as_nhwc(out_shape), np.int8)
    _kernel(k, "transpose_s8")(inp.reshape(_as_nhwc(shape)), perm4, out4)
    return "transpose_s8", out4, ref, out4.shape


# ---- whole network (ds_cnn_s style: one set of headers per layer) -------------------------------------

_LAYER_OPS = {"conv_2d": "conv", "depthwise_conv_2d": "depthwise", "average_pool_2d": "avgpool",
              "max_pool_2d": "maxpool", "fully_connected": "fc", "softmax": "softmax"}


def _load_layer(folder, case_prefix, index, op_name, arrays):
    """One network layer: its config (prefix e.g. CONV_2D_1_) and the arrays <case>_layer_<k>_<op>_<what>."""
    defines, _ = _read_headers([folder / f"layer_{index}_{op_name}_config_data.h"])
    prefix = _common_prefix(list(defines)) if len(defines) > 1 else ""
    stem = f"{case_prefix}layer_{index}_{op_name}_"
    layer = _Headers(defines, prefix, {n: a for n, a in arrays.items() if n.startswith(stem)}, stem)
    layer.index = index
    return layer


def _run_network(folder, k, rnd):
    """Chains the layers in index order (missing indices are reshapes); checks the final output and every
    per-layer reference present (arrays named <case>_layer_<k>_<op>_output_ref or ..._output)."""
    _, arrays = _read_headers(_case_headers(folder))
    layer_files = sorted((int(m.group(1)), m.group(2)) for m in
                         (_LAYER_FILE_RE.match(p.name) for p in folder.glob("layer_*_config_data.h")) if m)
    inputs = [n for n in arrays if n.endswith("_input") and "_layer_" not in n]
    if len(inputs) != 1:
        raise _Unrecognised(f"network: expected one <case>_input array, found {inputs}")
    case_prefix = inputs[0][:-len("input")]
    x = arrays[inputs[0]]
    if x is None:
        raise _Unrecognised("network: the input array is NULL")
    ref = arrays.get(case_prefix + "output_ref")
    if ref is None:
        raise _Unrecognised(f"network: no {case_prefix}output_ref array")
    checks = []  # (label, got, ref, view_shape)
    shape = None
    for index, op_name in layer_files:
        if op_name not in _LAYER_OPS:
            raise _Unrecognised(f"network layer {index}: unknown op {op_name!r}")
        layer = _load_layer(folder, case_prefix, index, op_name, arrays)
        kind = _LAYER_OPS[op_name]
        if shape is None:  # the first layer's config gives the network input geometry
            shape = (layer.int("INPUT_BATCHES", 1), layer.int("INPUT_H"), layer.int("INPUT_W"), layer.int("IN_CH"))
            if int(np.prod(shape)) != x.size:
                raise _Unrecognised(f"network input has {x.size} values, layer {index} expects {shape}")
        x = np.ascontiguousarray(x, dtype=np.int8)
        if kind in ("conv", "depthwise", "avgpool", "maxpool"):
            want = (layer.int("INPUT_H"), layer.int("INPUT_W"), layer.int("IN_CH"))
            if x.ndim != 4 or x.shape[1:] != want:  # after a reshape/FC: reinterpret the bytes as NHWC
                if x.size % int(np.prod(want)):
                    raise _Unrecognised(f"network layer {index} ({op_name}) expects HWC {want}, "
                                        f"gets {x.size} values")
                x = x.reshape(-1, *want)
            x, label = _network_spatial(layer, kind, x, k, rnd)
        elif kind == "fc":
            bias = layer.array("bias", "biases", dtype=np.int32, required=False)
            filt = layer.array("weights", dtype=np.int8)
            cout = bias.size if bias is not None else layer.int("OUT_CH")
            if filt.size % cout:
                raise _Unrecognised(f"network layer {index}: {filt.size} FC weights are not a multiple of {cout}")
            depth = filt.size // cout
            if x.size % depth:
                raise _Unrecognised(f"network layer {index}: input of {x.size} values, FC depth {depth}")
            out = np.zeros((x.size // depth, cout), np.int8)
            mult = np.full(cout, layer.int("OUTPUT_MULTIPLIER"), np.int32)
            shift = np.full(cout, layer.int("OUTPUT_SHIFT"), np.int32)
            _kernel(k, "fully_connected_s8")(x.reshape(-1, depth), filt.reshape(cout, depth),
                                             np.zeros(cout, np.int32) if bias is None else bias, mult, shift,
                                             layer.int("INPUT_OFFSET"), layer.int("FILTER_OFFSET", 0),
                                             layer.int("OUTPUT_OFFSET"), layer.int("OUT_ACTIVATION_MIN"),
                                             layer.int("OUT_ACTIVATION_MAX"), rnd, out)
            x, label = out.reshape(out.shape[0], 1, 1, cout), "fully_connected_s8"
        else:  # softmax over the last axis
            size = layer.int("ROW_SIZE", x.shape[-1])
            if x.size % size:
                raise _Unrecognised(f"network layer {index}: {x.size} values are not rows of {size}")
            out = np.zeros((x.size // size, size), np.int8)
            _kernel(k, "softmax_s8")(x.reshape(-1, size), layer.int("MULT"), layer.int("SHIFT"),
                                     layer.int("DIFF_MIN"), out)
            x, label = out.reshape(out.shape[0], 1, 1, size), "softmax_s8"
        layer_ref = layer.array("output_ref", "output", dtype=np.int8, required=False)
        if layer_ref is not None:
            if layer_ref.size != x.size:
                raise _Unrecognised(f"network layer {index}: reference of {layer_ref.size} values, output {x.size}")
            checks.append((f"layer {index} {op_name} ({label})", x, layer_ref, _as_nhwc(x.shape)))
    if ref.size != x.size:
        raise _Unrecognised(f"network output has {x.size} values, reference {ref.size}")
    return checks, x, ref


def _network_spatial(layer, kind, x, k, rnd):
    n = x.shape[0]
    oh, ow = layer.int("OUTPUT_H"), layer.int("OUTPUT_W")
    kh = layer.int("FILTER_Y") if layer.has("FILTER_Y") else layer.int("FILTER_H")
    kw = layer.int("FILTER_X") if layer.has("FILTER_X") else layer.int("FILTER_W")
    geometry = (layer.int("STRIDE_Y"), layer.int("STRIDE_X"), layer.int("PAD_Y"), layer.int("PAD_X"))
    act = (layer.int("OUT_ACTIVATION_MIN"), layer.int("OUT_ACTIVATION_MAX"))
    if kind in ("avgpool", "maxpool"):
        c = x.shape[3]
        out = np.zeros((n, oh, ow, c), np.int8)
        name = "avgpool_s8" if kind == "avgpool" else "maxpool_s8"
        _kernel(k, name)(x, kh, kw, *geometry, *act, out)
        return out, name
    cin, cout = x.shape[3], layer.int("OUT_CH")
    filt = layer.array("weights", dtype=np.int8)
    bias = layer.array("bias", "biases", dtype=np.int32, size=cout, required=False)
    bias = np.zeros(cout, np.int32) if bias is None else bias
    mult = layer.array("output_mult", "output_multiplier", dtype=np.int32, size=cout)
    shift = layer.array("output_shift", dtype=np.int32, size=cout)
    out = np.zeros((n, oh, ow, cout), np.int8)
    tail = (layer.int("INPUT_OFFSET"), layer.int("OUTPUT_OFFSET"), *geometry, layer.int("DILATION_Y", 1),
            layer.int("DILATION_X", 1), *act, rnd, out)
    if kind == "depthwise":
        if cout % cin or filt.size != kh * kw * cout:
            raise _Unrecognised(f"network layer {layer.index}: depthwise {cin}->{cout} with {filt.size} weights")
        _kernel(k, "depthwise_conv_s8")(x, filt.reshape(1, kh, kw, cout), bias, mult, shift, cout // cin, *tail)
        return out, "depthwise_conv_s8"
    if filt.size % (cout * kh * kw) or cin % max(filt.size // (cout * kh * kw), 1):
        raise _Unrecognised(f"network layer {layer.index}: {filt.size} conv weights for {cin}->{cout} {kh}x{kw}")
    _kernel(k, "conv_s8")(x, filt.reshape(cout, kh, kw, filt.size // (cout * kh * kw)), bias, mult, shift, *tail)
    return out, "conv_s8"


# ---- classification and entry points -----------------------------------------------------------------

def _classify(case):
    """Op of a single-op case from its config defines (None when no known layout matches); the runners
    then require the arrays that op needs."""
    d = case.defines
    if "PERM" in d and "IN_DIM" in d:
        return "transpose"
    if any(key.startswith("PRE_PAD_") for key in d) and "PAD_VALUE" in d:
        return "pad"
    if "DIFF_MIN" in d and "ROW_SIZE" in d:
        return "softmax"
    if "LEFT_SHIFT" in d and "INPUT1_MULT" in d:
        return "add"
    if "INPUT1_OFFSET" in d and "OUTPUT_MULT" in d:
        return "mul"
    if "FILTER_H" in d and "PADDING_H" in d and "INPUT_C" in d:
        p = case.array_prefix.lower()
        if "avg" in p:
            return "avgpool"
        if "max" in p:
            return "maxpool"
        return None
    if "ACCUMULATION_DEPTH" in d and "OUT_CH" in d:
        return "fc"
    if "FILTER_X" in d and "OUT_CH" in d and "IN_CH" in d:
        return "depthwise" if "CH_MULT" in d else "conv"
    return None


_KIND_OPS = {"conv": "conv_s8", "depthwise": "depthwise_conv_s8", "fc": "fully_connected_s8",
             "avgpool": "avgpool_s8", "maxpool": "maxpool_s8", "softmax": "softmax_s8", "add": "add_s8",
             "mul": "mul_s8", "pad": "pad_s8", "transpose": "transpose_s8"}


def _run_single(case, k, rnd):
    op = _classify(case)
    if op is None:
        raise _Unrecognised("config_data.h and arrays match no known case layout "
                            f"(defines: {', '.join(sorted(case.defines)[:6]) or 'none'})")
    if op in ("conv", "depthwise"):
        return _run_conv(case, k, rnd, op == "depthwise")
    if op == "fc":
        return _run_fully_connected(case, k, rnd)
    if op in ("avgpool", "maxpool"):
        return _run_pool(case, k, rnd, op[:3])
    return {"softmax": _run_softmax, "add": _run_add, "mul": _run_mul, "pad": _run_pad,
            "transpose": _run_transpose}[op](case, k, rnd)


def _rounding_code(rounding):
    """The kernels' requantization mode of a cmsis-nn rounding name (emu.graph.profiles)."""
    from .graph.profiles import resolve
    return resolve("cmsis-nn", rounding).requantizer.mode


def run_case(path, backend="numba", rounding="double"):
    """Runs one case folder through the backend's kernels and compares exactly with its reference output.
    Raises N6Error only for an unavailable backend or unknown rounding; any folder problem is UNKNOWN."""
    rnd = _rounding_code(rounding)
    return _run_folder(Path(path), _resolve_backend(backend), rnd)


def _run_folder(folder, kernels, rnd):
    name = folder.name
    is_network = not (folder / "config_data.h").is_file() and _is_case_folder(folder)
    op = "network" if is_network else "unknown"
    try:
        if is_network:
            checks, got, ref = _run_network(folder, kernels, rnd)
            for label, g, r, view in checks:
                res = _compare(name, "network", g, r, view, detail=label)
                if res.status != PASS:
                    return res
            n_layers = len(checks)
            detail = f"final output; {n_layers} intermediate reference(s) also match" if n_layers else "final output"
            return _compare(name, "network", got, ref, _as_nhwc(got.shape), detail=detail)
        case = _load_case(folder)
        op = _KIND_OPS.get(_classify(case), "unknown")  # reported if the kernel raises
        op, got, ref, view = _run_single(case, kernels, rnd)
        return _compare(name, op, got, ref, view)
    except _KernelRaised as e:
        return CaseResult(name, op, FAIL, 0, 0, None, str(e))
    except _Unrecognised as e:
        return CaseResult(name, op, UNKNOWN, 0, 0, None, str(e))
    except OSError as e:
        return CaseResult(name, op, UNKNOWN, 0, 0, None, f"cannot read the case: {e}")
    except (ArithmeticError, ValueError, TypeError, IndexError, KeyError) as e:  # inconsistent numbers in the case
        return CaseResult(name, op, UNKNOWN, 0, 0, None, f"inconsistent case data ({type(e).__name__}: {e})")


def run_all(root, backend="numba", rounding="double"):
    """run_case for every folder discover(root) finds, in path order."""
    rnd = _rounding_code(rounding)
    kernels = _resolve_backend(backend)
    return [_run_folder(f, kernels, rnd) for f in discover(root)]
