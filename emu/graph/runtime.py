"""Runtime: executes a prepared int8 graph with a kernel backend, keeping every tensor by name.

Runtime(graph, profile="cmsis-nn", backend="numba", rounding=None, input_boundary=None, float_output=False,
        elementwise=None)   profile: a registered name or an emu.graph.profiles.ArithmeticProfile
  .run(inputs)      -> output array (one graph output) or tuple of arrays; a leading batch axis N in
                       the input gives N outputs (shape (N,) + output shape)
  .run_all(inputs)  -> dict tensor name -> int8 array for every activation (inputs, intermediates,
                       outputs), batched the same way
  .metadata         -> dict(profile, rounding, backend, source, input_boundary, float_output, elementwise, state,
                       arithmetic): recorded
                       with every result
  float_output=True -> run() returns float32(q - zp) * scale of each output (run_all stays int8)
  state="keep"      -> recurrent layers (SVDF, LSTM: emu.graph.ops.recurrent) keep their variable tensors from one
                       sample to the next and across run() calls, as a tflite-micro interpreter does between Invoke()
                       calls (a firmware calling ai_run once per window); "reset" starts every sample from the
                       initial state (a stateless Keras model per window). .reset_state() resets by hand and
                       .states (layer -> {tensor name: array}) shows the current state.

Planning: every activation buffer is allocated once per batch size (a plan); kernels write into them
(they never allocate); a reshape's output is a view of its input's buffer (no copy, no step). The runtime is a loop
over bound steps: each node's op family (emu.graph.ops) binds its prepared Params to the plan's buffers once per plan
(arguments and scratch checked then, the unchecked kernel's compiled entry point per inference). A batch of N runs
as one kernel call per layer when every activation has a leading batch dimension of 1 that no layer moves (batch
folded into axis 0); otherwise sample by sample. Speed lives in the kernels' bind: conv and depthwise pack their
weights there (emu/kernels/conv.py, depthwise.py: register-tile paths) and, for a batch plan, split the batch into
contiguous sample ranges run on Numba's threads (numba.set_num_threads sets how many; results never depend on it);
one sample runs on one thread; run() of one sample array skips the batch bookkeeping.
"""
import numpy as np

from ..errors import N6Error
from ..kernels.backends import BACKENDS, get_backend
from . import ops
from .prepare import Prepared, prepare
from .profiles import resolve


def resolve_backend(backend):
    """Kernel namespace for a backend name ('numba' | 'c'), or the object itself if it already provides
    the kernels (e.g. tests/naive.py as a module)."""
    if not isinstance(backend, str):
        return backend, getattr(backend, "__name__", type(backend).__name__)
    if backend not in BACKENDS:
        raise N6Error(f"unknown kernel backend {backend!r}; choose one of {list(BACKENDS)}")
    return get_backend(backend), backend


class Runtime:
    """Executes one graph under one arithmetic profile with one kernel backend (see module doc)."""

    def __init__(self, graph, profile="cmsis-nn", backend="numba", rounding=None, input_boundary=None,
                 float_output=False, elementwise=None, state="keep"):
        if isinstance(graph, Prepared):
            if resolve(profile, rounding, elementwise) != graph.arithmetic:
                raise N6Error("the prepared graph was made for another profile/rounding; pass the Graph instead")
            self.prepared = graph
        else:
            self.prepared = prepare(graph, profile, rounding, elementwise)
        if not self.prepared.arithmetic.fixed_point and backend not in ("numba",) and isinstance(backend, str):
            raise N6Error(f"the {backend!r} kernel backend implements fixed-point profiles only; use backend "
                          f"'numba' for the {self.prepared.profile} profile")
        self.graph = self.prepared.graph
        self.kernels, self.backend = resolve_backend(backend)
        self.arithmetic = self.prepared.arithmetic
        self.profile = self.prepared.profile
        self.rounding = self.prepared.rounding
        self._plans = {}
        if state not in ("keep", "reset"):
            raise N6Error(f"unknown recurrent state mode {state!r}; choose 'keep' (tflite-micro: state kept between "
                          f"invocations) or 'reset' (every sample starts from the initial state)")
        self.state = state
        # True when recurrent layers (SVDF, TFLite LSTM) keep their state from one sample to the next: then the order
        # of the samples matters
        self.stateful = state == "keep" and any(getattr(ops.family(n), "STATEFUL", False) for n in self.graph.nodes)
        self._states = {}     # layer -> its recurrent family's state object, shared by every plan
        self.batch_folds = self._batch_folds()
        # I/O boundary (ST AI buffers): int8 input buffer; output int8, or dequantized to float32 when
        # float_output: float32(q - zp) * float32(scale) per tensor (what the app does before its softmax).
        # input_boundary 'int8' (the default, for every model): the int8 input buffer, filled by the application
        # (it quantizes the features itself). input_boundary 'float32': float32 features through the model's own
        # quantize op under the profile (cmsis-nn: tflite-micro's AffineQuantize, round half away of the float32
        # quotient x / scale; onnxruntime: round half to even), + zero-point, clamped (a quotient beyond the int32 range
        # saturates; tflite-micro's float -> int32 cast is undefined there). Only models whose float input
        # is quantized by the model itself offer it: ONNX QDQ (QuantizeLinear; every input) and TFLite models with a
        # float32 input read by one QUANTIZE float32 -> int8 (Graph.float_inputs; other inputs stay int8).
        if input_boundary not in (None, "int8", "float32"):
            raise N6Error(f"unknown input boundary {input_boundary!r}; choose 'int8' (the application quantizes) "
                          f"or 'float32' (the model's own quantize op)")
        if input_boundary == "float32" and not self._float_input_names():
            raise N6Error(f"input boundary 'float32' is not available for {self.graph.source}: its inputs are int8 "
                          f"buffers; pass int8 input (quantize it with the input's scale/zero-point), the model has "
                          f"no QUANTIZE float32 -> int8 of its own")
        self.input_boundary = "int8" if input_boundary is None else input_boundary
        self.elementwise = self.prepared.elementwise
        self.float_output = bool(float_output)
        # run()'s one-sample path: the input shape it takes (None: several inputs or float32 input) and the outputs
        g = self.graph
        self._one_shape = tuple(g.tensors[g.inputs[0]].shape) if len(g.inputs) == 1 and \
            self.input_boundary == "int8" else None
        self._out_shapes = tuple((name, tuple(g.tensors[name].shape)) for name in g.outputs)
        if self.float_output:
            for name in self.graph.outputs:
                if self.graph.tensors[name].per_channel:
                    raise N6Error(f"output {name!r} is per-channel quantized; float output needs per-tensor "
                                  f"quantization")

    @property
    def metadata(self):
        return dict(profile=self.profile, rounding=self.rounding, backend=self.backend, source=self.graph.source,
                    input_boundary=self.input_boundary, float_output=self.float_output, elementwise=self.elementwise,
                    state=self.state, arithmetic=self.arithmetic.to_dict())



    @property
    def states(self):
        """The recurrent layers' variable tensors now: layer name -> {TFLite tensor name: array} (live arrays)."""
        return {layer: st.arrays for layer, st in self._states.items()}

    def reset_state(self):
        """Every recurrent layer's state back to its initial value (tflite-micro's ResetVariableTensors)."""
        for st in self._states.values():
            st.reset()

    def _float_input_names(self):
        """Graph inputs that the model quantizes from float32 (ONNX QDQ: all; TFLite: Graph.float_inputs)."""
        g = self.graph
        return tuple(g.inputs) if g.source.startswith("onnx:") else tuple(g.float_inputs)

    def quantize_inputs(self, inputs):
        """Float32 input(s) -> the int8 input buffer(s) under this profile's quantize rule (see __init__); inputs that
        the model does not quantize (int8 inputs of a TFLite model) pass through unchanged."""
        from .prepare import quantize_float
        g = self.graph
        names = self._float_input_names()

        def q(n, a):
            return quantize_float(a, g.tensors[n], self.arithmetic) if n in names else a

        if isinstance(inputs, dict):
            return {n: q(n, a) for n, a in inputs.items()}
        if isinstance(inputs, (list, tuple)):
            return [q(n, a) for n, a in zip(g.inputs, inputs)]
        return q(g.inputs[0], inputs)

    def dequantize_output(self, name, q):
        """float32(q - zero_point) * float32(scale) of graph output `name` (per-tensor quantization); an output that
        is float32 already (a TFLite DEQUANTIZE tail) is returned as it is."""
        t = self.graph.tensors[name]
        if t.dtype == np.float32:
            return np.asarray(q, np.float32)
        return (q.astype(np.int32) - np.int32(t.zero_point[0])).astype(np.float32) * np.float32(t.scale[0])

    # ---- input handling ---------------------------------------------------------------------------

    def _normalise_inputs(self, inputs):
        """Returns (list of arrays with a leading batch axis, batch size N, batched flag)."""
        g = self.graph
        if self.input_boundary == "float32":
            inputs = self.quantize_inputs(inputs)
        if isinstance(inputs, dict):
            missing = [n for n in g.inputs if n not in inputs]
            if missing:
                raise N6Error(f"missing model input(s) {missing}; pass a dict with keys {g.inputs}")
            arrays = [inputs[n] for n in g.inputs]
        elif isinstance(inputs, (list, tuple)):
            arrays = list(inputs)
        else:
            arrays = [inputs]
        if len(arrays) != len(g.inputs):
            raise N6Error(f"the model has {len(g.inputs)} input(s) {g.inputs}, got {len(arrays)} array(s)")
        out, sizes, batched = [], set(), None
        for name, a in zip(g.inputs, arrays):
            a = np.asarray(a)
            t = g.tensors[name]
            if a.dtype != np.int8:
                raise N6Error(f"input {name!r} must be int8 (quantized with scale {float(t.scale[0]):g}, "
                              f"zero-point {int(t.zero_point[0])}), got {a.dtype}")
            shape = tuple(t.shape)
            if a.shape == shape:
                b, arr = False, a.reshape((1,) + shape)
            elif a.shape[1:] == shape:
                b, arr = True, a
            elif len(shape) >= 1 and shape[0] == 1 and a.ndim == len(shape) and a.shape[1:] == shape[1:]:
                b, arr = True, a.reshape((a.shape[0],) + shape)
            else:
                raise N6Error(f"input {name!r} must have shape {shape} (or N x {shape} for a batch), got {a.shape}")
            batched = b if batched is None else (batched or b)
            sizes.add(arr.shape[0])
            out.append(np.ascontiguousarray(arr))
        if len(sizes) != 1:
            raise N6Error(f"all inputs must have the same batch size, got {sorted(sizes)}")
        return out, sizes.pop(), batched

    # ---- planning ---------------------------------------------------------------------------------

    def _batch_folds(self):
        g = self.graph
        for name in g.activations():
            s = g.tensors[name].shape
            if len(s) == 0 or s[0] != 1:
                return False
        for node in g.nodes:
            if node.op == "transpose" and node.attrs["perm"][0] != 0:
                return False
            if node.op == "pad" and tuple(node.attrs["pads"][0]) != (0, 0):
                return False
        return True

    def _plan(self, nb):
        """Buffers and bound kernel calls for `nb` samples folded into axis 0; a reshape's output is a view of its
        input's buffer (the same bytes: no copy, no step)."""
        if nb in self._plans:
            return self._plans[nb]
        g = self.graph
        buffers = {}
        for name in g.activations():
            t = g.tensors[name]
            if not t.is_constant:
                buffers[name] = np.zeros((t.shape[0] * nb,) + tuple(t.shape[1:]), t.dtype)
        aliased = set()
        for node in g.nodes:
            src, dst = (node.inputs[0] if node.inputs else None), node.outputs[0]
            if (node.op == "reshape" and src in buffers and dst in buffers and dst != src
                    and buffers[src].dtype == buffers[dst].dtype and buffers[src].size == buffers[dst].size):
                buffers[dst] = buffers[src].reshape(buffers[dst].shape)
                aliased.add(dst)
        steps = [self._step(node, buffers) for node in g.nodes if node.outputs[0] not in aliased]
        plan = (buffers, steps)
        if len(self._plans) >= 4:     # keep a few batch sizes, not one plan per size ever seen
            self._plans.pop(next(iter(self._plans)))
        self._plans[nb] = plan
        return plan

    def _tensor(self, name, buffers):
        if name in buffers:
            return buffers[name]
        t = self.graph.tensors[name]
        if t.data is None:
            raise N6Error(f"tensor {name!r} is used before it is produced; the graph is not in execution order")
        return np.ascontiguousarray(t.data, dtype=np.int8)

    def _step(self, node, buffers):
        """A no-argument callable running `node` on the plan's buffers: its op family's bind (emu.graph.ops)."""
        ins = [self._tensor(name, buffers) for name in node.inputs if name is not None]
        fam, params = ops.family(node), self.prepared.params[node.name]
        if getattr(fam, "STATEFUL", False):
            if node.name not in self._states:
                self._states[node.name] = fam.new_state(params)
            return fam.bind(params, node, ins, buffers[node.outputs[0]], self.kernels, state=self._states[node.name],
                            reset=self.state == "reset")
        return fam.bind(params, node, ins, buffers[node.outputs[0]], self.kernels)

    # ---- execution --------------------------------------------------------------------------------

    def _execute(self, arrays, n):
        """Runs n samples; yields (sample slice start, buffers) after each chunk of execution."""
        g = self.graph
        chunk = n if self.batch_folds else 1
        buffers, steps = self._plan(chunk)
        for start in range(0, n, chunk):
            for name, a in zip(g.inputs, arrays):
                np.copyto(buffers[name], a[start:start + chunk].reshape(buffers[name].shape))
            for step in steps:
                step()
            yield start, chunk, buffers

    def _collect(self, names, arrays, n, batched):
        g = self.graph
        result = {name: np.empty((n,) + tuple(g.tensors[name].shape), g.tensors[name].dtype) for name in names}
        for start, chunk, buffers in self._execute(arrays, n):
            for name in names:
                result[name][start:start + chunk] = buffers[name].reshape((chunk,) + tuple(g.tensors[name].shape))
        if not batched:
            result = {name: a[0] for name, a in result.items()}
        return result

    def run(self, inputs):
        """Model output(s) for int8 input(s); a leading batch axis N gives N outputs."""
        if type(inputs) is np.ndarray and inputs.shape == self._one_shape and inputs.dtype == np.int8:
            res = self._run_one(inputs)       # one sample, one array: what _collect does, without its bookkeeping
        else:
            arrays, n, batched = self._normalise_inputs(inputs)
            res = self._collect(self.graph.outputs, arrays, n, batched)
        if self.float_output:
            res = {name: self.dequantize_output(name, q) for name, q in res.items()}
        outs = tuple(res[name] for name in self.graph.outputs)
        return outs[0] if len(outs) == 1 else outs

    def _run_one(self, x):
        """{output name: array} for one sample x (int8, the input's shape) of a one-input graph."""
        buffers, steps = self._plans[1] if 1 in self._plans else self._plan(1)
        np.copyto(buffers[self.graph.inputs[0]], x)
        for step in steps:
            step()
        return {name: buffers[name].reshape(shape).copy() for name, shape in self._out_shapes}

    def run_all(self, inputs):
        """Every activation tensor (name -> int8 array) for int8 input(s), in execution order."""
        arrays, n, batched = self._normalise_inputs(inputs)
        names = [a for a in self.graph.activations() if not self.graph.tensors[a].is_constant]
        return self._collect(names, arrays, n, batched)
