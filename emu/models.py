"""Model files (.tflite int8, .onnx QDQ) behind one interface: load the integer graph, or open a session that
runs the model's own I/O boundary (int8/uint8 buffers, float32 input through its QuantizeLinear, float tail)."""
import os

import numpy as np

from emu.errors import N6Error

MODEL_TYPES = (".tflite", ".onnx")


def _kind(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise N6Error(f"{path}: no such model file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in MODEL_TYPES:
        raise N6Error(f"{path}: unknown model type {ext or '(no extension)'}; give a {' or '.join(MODEL_TYPES)} file")
    return path, ext


def load_model(path):
    """Import a model file into an emu.graph.ir.Graph (int8 throughout); one-line N6Error for bad files."""
    path, ext = _kind(path)
    if ext == ".tflite":
        from emu.graph.tflite import load_tflite
        return load_tflite(path)
    from emu.graph.onnx_qdq import load_onnx
    return load_onnx(path)


class ModelSession:
    """A model prepared once under one profile. run(x, input_boundary) -> (output buffer, float output or None):
    the output in the model's I/O type, and the float output (TFLite: dequantized; ONNX: the graph's
    DequantizeLinear(+Softmax) tail, None without a tail). run_all(x) -> every tensor by name."""

    def __init__(self, path, profile="cmsis-nn", backend="numba", rounding=None):
        path, ext = _kind(path)
        self.path = path
        if ext == ".onnx":
            from emu.graph.onnx_qdq import ModelRunner, load_onnx_qdq, to_internal
            self._onnx = ModelRunner(load_onnx_qdq(path), profile, backend=backend, rounding=rounding)
            self._to_internal = lambda x: to_internal(self._onnx.model, x)
            self.runtime = self._onnx.runtime
        else:
            from emu.graph.runtime import Runtime
            from emu.graph.tflite import load_tflite
            self._onnx = None
            self._to_internal = lambda x: x
            self.runtime = Runtime(load_tflite(path), profile, backend=backend, rounding=rounding)
        self.graph = self.runtime.graph

    @property
    def metadata(self):
        return self._onnx.metadata if self._onnx is not None else self.runtime.metadata

    def run(self, x, input_boundary="int8"):
        if self._onnx is not None:
            r = self._onnx.run(x, input_boundary)
            return r["output"], r["float"]
        if input_boundary != "int8":
            raise N6Error(f"{self.path}: a TFLite int8 model takes int8 inputs; quantize them first "
                          f"(input boundary {input_boundary!r} is for QDQ ONNX models)")
        q = self.runtime.run(x)
        if len(self.graph.outputs) != 1:
            return q, None
        return q, self.runtime.dequantize_output(self.graph.outputs[0], q)

    def run_all(self, x, input_boundary="int8"):
        if input_boundary == "float32":
            from emu.graph.onnx_qdq import quantize_input
            if self._onnx is None:
                raise N6Error(f"{self.path}: a TFLite int8 model takes int8 inputs; quantize them first")
            x = quantize_input(self._onnx.model, np.asarray(x), self._onnx.profile)
        return self.runtime.run_all(self._to_internal(x))
