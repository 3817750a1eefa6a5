"""Adapters to external reference interpreters (optional extras), used as bit-exact oracles.

tflite-micro (PyPI `tflite-micro`): the cmsis-nn profile's oracle. The interpreter is created with
InterpreterConfig.kPreserveAllTensors so every intermediate tensor can be read after invoke().
"""
from pathlib import Path

import numpy as np

from .errors import N6Error


def _tflm_runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as e:
        raise N6Error(f"tflite-micro is not installed ({e}); pip install tflite-micro") from None
    return runtime


class TflmReference:
    """tflite-micro interpreter over one .tflite model (path or bytes) that returns every tensor by the
    importer's tensor names (emu.graph.tflite.tensor_names)."""

    def __init__(self, model, arena_size=None):
        from .graph.tflite import graph_inputs, tensor_names
        if isinstance(model, (bytes, bytearray, memoryview)):
            self.model_bytes = bytes(model)
        else:
            p = Path(model)
            if not p.is_file():
                raise N6Error(f"model file {p} does not exist; pass the path of a .tflite file")
            self.model_bytes = p.read_bytes()
        rt = _tflm_runtime()
        self.names = tensor_names(self.model_bytes)
        if arena_size is None:   # tflite-micro's default (10x the model) is too small for tiny models
            arena_size = max(10 * len(self.model_bytes), 1 << 20)
        self._interp = rt.Interpreter.from_bytes(
            self.model_bytes, arena_size=arena_size,
            intrepreter_config=rt.InterpreterConfig.kPreserveAllTensors)
        self.n_inputs = len(graph_inputs(self.model_bytes))
        details = [self._interp.get_input_details(i) for i in range(self.n_inputs)]
        self.input_shapes = [tuple(int(d) for d in det["shape"]) for det in details]
        self.input_dtypes = [np.dtype(det["dtype"]) for det in details]    # int8, or float32 (a QUANTIZE input)

    def _invoke(self, sample):
        arrays = sample if isinstance(sample, (list, tuple)) else [sample]
        for i, a in enumerate(arrays):
            self._interp.set_input(np.ascontiguousarray(a, dtype=self.input_dtypes[i]).reshape(self.input_shapes[i]), i)
        self._interp.invoke()

    def run_all_one(self, sample):
        """Every tensor (constants included) for one sample: dict name -> array copy."""
        self._invoke(sample)
        out = {}
        for i, name in enumerate(self.names):   # index bound from the flatbuffer: TFLM segfaults past it
            t = self._interp.GetTensor(i, 0)
            out[name] = np.array(t["tensor_data"], copy=True)
        return out

    def run_all(self, batch, names=None):
        """Stacked tensors for a batch (leading axis N): dict name -> array [N, ...] (only `names` if given)."""
        result = None
        for k in range(len(batch)):
            one = self.run_all_one(batch[k])
            if names is not None:
                one = {n: one[n] for n in names}
            if result is None:
                result = {n: np.empty((len(batch),) + v.shape, v.dtype) for n, v in one.items()}
            for n, v in one.items():
                result[n][k] = v
        return result

    def run(self, sample, output_index=0):
        self._invoke(sample)
        return np.array(self._interp.get_output(output_index), copy=True)
