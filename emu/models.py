"""Model files (.tflite int8, .onnx QDQ) behind one interface, and the one path every network run takes.

    model = import_model("model_qdq.onnx")        # parsed once: the integer graph + the model's I/O boundary
    s = ModelSession(model, "cmsis-nn")           # prepared under one arithmetic profile, bound to one backend
    q, f = s.run(buf)                             # output in the model's I/O type, float output (tail) or None
    s2 = s.with_(profile="onnxruntime")           # the same imported graph, prepared again (nothing re-parsed)
    t = s.trace(buf)                              # emu.trace.Trace: input_buffer, network/<tensor>, output

`n6emu run` and the device chain (emu.device.Device: replay, trace) both run the network through ModelSession, so
the I/O conversions (uint8 buffers, float32 inputs through the model's QuantizeLinear) and the elementwise
arithmetic are the same for both.
"""
import os
import warnings
from dataclasses import dataclass

import numpy as np

from emu.errors import N6Error, printable

MODEL_TYPES = (".tflite", ".onnx")


def _kind(path):
    path = os.fspath(path)
    shown = printable(path, 4096)
    if os.path.isdir(path):
        raise N6Error(f"{shown} is a folder; give a {' or '.join(MODEL_TYPES)} model file")
    if not os.path.isfile(path):
        raise N6Error(f"{shown}: no such model file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in MODEL_TYPES:
        raise N6Error(f"{shown}: unknown model type {printable(ext) or '(no extension)'}; give a "
                      f"{' or '.join(MODEL_TYPES)} file")
    return path, ext


@dataclass
class ImportedModel:
    """What an importer made of a model file, shared by every session over it: the int8 graph and, for ONNX QDQ
    models, the I/O boundary (emu.graph.onnx_qdq.OnnxModel: uint8 buffers, QuantizeLinear, float tail)."""
    path: str
    graph: object
    onnx: object = None

    @property
    def io_dtype(self):
        """The board's buffer type: int8, or uint8 for uint8 QDQ models."""
        return np.dtype(self.onnx.io_dtype if self.onnx is not None else self.graph.tensors[self.graph.inputs[0]].dtype)

    @property
    def input_shape(self):
        return tuple(int(d) for d in self.graph.tensors[self.graph.inputs[0]].shape)

    def io_shift(self):
        """The board's value minus the graph's internal int8 value (128 for uint8 models)."""
        return 128 if self.io_dtype == np.uint8 else 0

    def output_quantization(self):
        """(scale, zero-point) of the output buffer in the board's terms (None, None if not quantized)."""
        t = self.graph.tensors[self.graph.outputs[0]]
        if t.scale is None:
            return None, None
        return np.float32(t.scale[0]), int(t.zero_point[0]) + self.io_shift()

    def to_internal(self, buf):
        if self.onnx is None:
            return buf
        from emu.graph.onnx_qdq import to_internal
        return to_internal(self.onnx, buf)

    def from_internal(self, q):
        if self.onnx is None:
            return q
        from emu.graph.onnx_qdq import from_internal
        return from_internal(self.onnx, q)


IO_LAYOUTS = ("original", "channel-last")


def import_model(path, io_layout="original"):
    """Parse a model file once (one-line N6Error for bad files). io_layout (ST Edge AI's option): "original" keeps
    an ONNX model's I/O buffers in its own layout (NCHW), "channel-last" makes 4-D I/O buffers NHWC; a TFLite
    model's I/O is channel-last either way."""
    if io_layout not in IO_LAYOUTS:
        raise N6Error(f"io_layout {io_layout!r} is not one of {list(IO_LAYOUTS)}")
    path, ext = _kind(path)
    # numpy warnings (overflow, divide by zero) of a malformed file must not be printed on the way to its error
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ext == ".tflite":
            from emu.graph.tflite import load_tflite
            return ImportedModel(path, load_tflite(path))
        cached = _cached_onnx(path, io_layout)
        if cached is not None:
            from pathlib import Path
            cached.graph.source = f"onnx:{printable(Path(path), 4096)}"   # as the importer names it: this path
            return ImportedModel(path, cached.graph, cached)
        from emu.graph.onnx_qdq import load_onnx_qdq
        onnx = load_onnx_qdq(path, io_layout=io_layout)
        _store_onnx(path, io_layout, onnx)
        return ImportedModel(path, onnx.graph, onnx)


# ---- imported-model cache --------------------------------------------------------------------------------------
# Importing an ONNX model needs the `onnx` package (about a second to import) and a parse. The imported OnnxModel
# (plain dataclasses and numpy arrays) is kept by emu.diskcache under models/<sha256 of the file>-<emulator
# version>-<format>-<importer code>.pickle: an edited model, another emulator version or an edited importer (the
# SHA-256 of emu/graph/*.py, emu/graph/ops/*.py, fixedpoint.py and f32math.py) gets a new entry.
MODEL_CACHE_FORMAT = 1


def _importer_digest():
    from emu import diskcache
    return diskcache.source_digest("graph", "graph/ops", "fixedpoint.py", "f32math.py")


def model_cache_dir(environ=None):
    """The folder of cached imported models (it may not exist yet)."""
    from emu import diskcache
    return diskcache.cache_dir("models", environ)


def _cache_key(path, io_layout="original"):
    import hashlib

    from emu import __version__
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None
    layout = "" if io_layout == "original" else f"-{io_layout}"
    return f"{digest}{layout}-{__version__}-{MODEL_CACHE_FORMAT}-{_importer_digest()}"


def _cache_file(path, io_layout="original"):
    from emu import diskcache
    key = _cache_key(path, io_layout)
    return None if key is None else diskcache.entry_path("models", key)


def _cached_onnx(path, io_layout="original"):
    """The cached OnnxModel of the file at `path`, or None (no entry, or one that does not load)."""
    from emu import diskcache
    from emu.graph.onnx_qdq import OnnxModel
    key = _cache_key(path, io_layout)
    return None if key is None else diskcache.load("models", key, OnnxModel)


def _store_onnx(path, io_layout, model):
    from emu import diskcache
    key = _cache_key(path, io_layout)
    if key is not None:
        diskcache.store("models", key, model)


def load_model(path):
    """Import a model file into an emu.graph.ir.Graph (int8 throughout); one-line N6Error for bad files."""
    return import_model(path).graph


class ModelSession:
    """A model prepared once under one profile (see module doc). run(x, input_boundary) -> (output buffer, float
    output or None): the output in the model's I/O type, and the float output (TFLite: dequantized; ONNX: the
    graph's DequantizeLinear(+Softmax) tail, None without a tail). run_all(x) -> every tensor by name.
    profile: a registered name or an emu.graph.profiles.ArithmeticProfile; elementwise: mlas profiles only (None:
    what ORT runs for the model's I/O type). `prepared_cache` (dict) is shared by sessions made with with_()."""

    def __init__(self, model, profile="cmsis-nn", backend="numba", rounding=None, elementwise=None,
                 prepared_cache=None, state="keep"):
        from emu.graph.onnx_qdq import ort_default_elementwise
        from emu.graph.prepare import prepare
        from emu.graph.profiles import resolve
        from emu.graph.runtime import Runtime
        self.model = model if isinstance(model, ImportedModel) else import_model(model)
        self.path = self.model.path
        self.graph = self.model.graph
        arithmetic = resolve(profile, rounding)
        if isinstance(profile, str) and not arithmetic.fixed_point and elementwise is None:   # a value keeps its own
            elementwise = ort_default_elementwise(self.model.io_dtype)
        self.arithmetic = arithmetic.choose(elementwise=elementwise)
        self.backend_name = backend
        self._cache = {} if prepared_cache is None else prepared_cache
        prepared = self._cache.get(self.arithmetic)
        if prepared is None:
            with np.errstate(all="ignore"):
                prepared = self._cache[self.arithmetic] = prepare(self.graph, self.arithmetic)
        self.prepared = prepared
        if self.model.onnx is not None:
            from emu.graph.onnx_qdq import ModelRunner
            self._onnx = ModelRunner(self.model.onnx, self.arithmetic, backend=backend, prepared=prepared, state=state)
            self.runtime = self._onnx.runtime
        else:
            self._onnx = None
            self.runtime = Runtime(prepared, self.arithmetic, backend=backend, state=state)
        self.state = state

    def with_(self, profile=None, backend=None, rounding=None, elementwise=None, state=None):
        """The same imported model under other choices (None keeps this session's; a profile given by name without
        a rounding takes that profile's default)."""
        return ModelSession(self.model, self.arithmetic if profile is None else profile,
                            self.backend_name if backend is None else backend, rounding=rounding,
                            elementwise=elementwise, prepared_cache=self._cache,
                            state=self.state if state is None else state)

    @property
    def metadata(self):
        return self._onnx.metadata if self._onnx is not None else self.runtime.metadata

    def _finish(self, internal_out):
        """(output buffer, float output or None) of the graph's int8 output (one-output models)."""
        if self._onnx is not None:
            r = self._onnx.finish(internal_out)
            return r["output"], r["float"]
        return internal_out, self.runtime.dequantize_output(self.graph.outputs[0], internal_out)

    def run(self, x, input_boundary="int8"):
        if self._onnx is not None:
            r = self._onnx.run(x, input_boundary)
            return r["output"], r["float"]
        q = self.runtime.run(self._tflite_input(x, input_boundary))
        if len(self.graph.outputs) != 1:
            return q, None
        return q, self.runtime.dequantize_output(self.graph.outputs[0], q)

    def input_bytes(self, x, input_boundary="int8"):
        """The input buffer as the board holds it (the model's I/O type) for x at `input_boundary`."""
        if self._onnx is None:
            return self._tflite_input(np.asarray(x), input_boundary)
        if input_boundary == "float32":
            from emu.graph.onnx_qdq import quantize_input
            return quantize_input(self._onnx.model, np.asarray(x), self.arithmetic)
        return np.asarray(x)

    def _tflite_input(self, x, input_boundary):
        """A TFLite model's int8 input for x at `input_boundary`: as given (int8), or through the model's own
        QUANTIZE float32 -> int8 (float32; Graph.float_inputs, tflite-micro's rounding under the profile)."""
        if input_boundary == "float32" and self.graph.float_inputs:
            return self.runtime.quantize_inputs(x)
        if input_boundary != "int8":
            raise N6Error(f"{self.path}: input boundary {input_boundary!r} needs a model that quantizes its float32 "
                          f"input itself (a QUANTIZE float32 -> int8); this model takes int8 inputs: quantize them "
                          f"with the input's scale/zero-point, or use the int8 boundary")
        return x

    def run_all(self, x, input_boundary="int8"):
        return self.runtime.run_all(self.model.to_internal(self.input_bytes(x, input_boundary)))

    def trace(self, x, input_boundary="int8", settings=None):
        """emu.trace.Trace of one network run: input_buffer (board bytes), network/<tensor> (internal int8 NHWC),
        output (the model's I/O type) and, when the model has one, float_output."""
        from emu.trace import Trace
        t = Trace(dict(self.metadata) if settings is None else settings)
        buf = self.input_bytes(x, input_boundary)
        t.add("input_buffer", buf, f"{self.model.io_dtype.name} model input buffer {list(self.model.input_shape)} "
                                   f"(the model's own layout)")
        shift = self.model.io_shift()
        tensors = self.runtime.run_all(self.model.to_internal(buf))
        for name, v in tensors.items():
            t.add(f"network/{name}", v, "int8 NHWC" + (f" (board value - {shift})" if shift else ""))
        if len(self.graph.outputs) != 1:      # several outputs: each is its network/<tensor> stage
            return t
        q, f = self._finish(tensors[self.graph.outputs[0]])     # the output of this very run, not a second one
        t.add("output", q, f"{np.asarray(q).dtype.name} model output buffer")
        if f is not None:
            t.add("float_output", f, "float32 dequantized output (the model's float tail)")
        return t
