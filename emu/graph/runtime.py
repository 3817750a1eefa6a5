"""Runtime: executes a prepared int8 graph with a kernel backend, keeping every tensor by name.

Runtime(graph, profile="cmsis-nn", backend="numba", rounding=None, input_boundary=None, float_output=False)
  .run(inputs)      -> output array (one graph output) or tuple of arrays; a leading batch axis N in
                       the input gives N outputs (shape (N,) + output shape)
  .run_all(inputs)  -> dict tensor name -> int8 array for every activation (inputs, intermediates,
                       outputs), batched the same way
  .metadata         -> dict(profile, rounding, backend, source, input_boundary, float_output): recorded
                       with every result
  float_output=True -> run() returns float32(q - zp) * scale of each output (run_all stays int8)

Planning: every activation buffer is allocated once per batch size (a plan); kernels write into them
(they never allocate). A batch of N runs as one kernel call per layer when every activation has a
leading batch dimension of 1 that no layer moves (batch folded into axis 0); otherwise sample by sample.
"""
import numpy as np

from ..errors import N6Error
from .prepare import Prepared, prepare

BACKENDS = ("numba", "c")


def resolve_backend(backend):
    """Kernel namespace for a backend name ('numba' | 'c'), or the object itself if it already provides
    the kernels (e.g. tests/naive.py as a module)."""
    if not isinstance(backend, str):
        return backend, getattr(backend, "__name__", type(backend).__name__)
    if backend not in BACKENDS:
        raise N6Error(f"unknown kernel backend {backend!r}; choose one of {list(BACKENDS)}")
    try:
        from ..kernels.backends import get_backend
    except ImportError as e:
        raise N6Error(f"kernel backends are unavailable ({e}); reinstall n6emu") from None
    return get_backend(backend), backend


def _pad4(shape):
    return (1,) * (4 - len(shape)) + tuple(shape)


class Runtime:
    """Executes one graph under one arithmetic profile with one kernel backend (see module doc)."""

    def __init__(self, graph, profile="cmsis-nn", backend="numba", rounding=None, input_boundary=None,
                 float_output=False):
        if isinstance(graph, Prepared):
            if rounding is not None and rounding != graph.rounding or profile != graph.profile:
                raise N6Error("the prepared graph was made for another profile/rounding; pass the Graph instead")
            self.prepared = graph
        else:
            self.prepared = prepare(graph, profile, rounding)
        self.graph = self.prepared.graph
        self.kernels, self.backend = resolve_backend(backend)
        self.profile = self.prepared.profile
        self.rounding = self.prepared.rounding
        self._plans = {}
        self.batch_folds = self._batch_folds()
        # I/O boundary (ST AI buffers): int8 input buffer; output int8, or dequantized to float32 when
        # float_output: float32(q - zp) * float32(scale) per tensor (what the app does before its softmax).
        if input_boundary not in (None, "int8"):
            raise N6Error(f"input boundary {input_boundary!r} is not available for {self.graph.source}: its "
                          f"inputs are int8 buffers; pass int8 input (quantize it with the input's scale/zero-point)")
        self.input_boundary = "int8"
        self.float_output = bool(float_output)
        if self.float_output:
            for name in self.graph.outputs:
                if self.graph.tensors[name].per_channel:
                    raise N6Error(f"output {name!r} is per-channel quantized; float output needs per-tensor "
                                  f"quantization")

    @property
    def metadata(self):
        return dict(profile=self.profile, rounding=self.rounding, backend=self.backend, source=self.graph.source,
                    input_boundary=self.input_boundary, float_output=self.float_output)

    def dequantize_output(self, name, q):
        """float32(q - zero_point) * float32(scale) of graph output `name` (per-tensor quantization)."""
        t = self.graph.tensors[name]
        return (q.astype(np.int32) - np.int32(t.zero_point[0])).astype(np.float32) * np.float32(t.scale[0])

    # ---- input handling ---------------------------------------------------------------------------

    def _normalise_inputs(self, inputs):
        """Returns (list of arrays with a leading batch axis, batch size N, batched flag)."""
        g = self.graph
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
        """Buffers and bound kernel calls for `nb` samples folded into axis 0."""
        if nb in self._plans:
            return self._plans[nb]
        g = self.graph
        buffers = {}
        for name in g.activations():
            t = g.tensors[name]
            if t.is_constant:
                continue
            shape = (t.shape[0] * nb,) + tuple(t.shape[1:])
            buffers[name] = np.zeros(shape, t.dtype)
        steps = [self._step(node, buffers) for node in g.nodes]
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
        """A no-argument callable running `node` on the plan's buffers, bound by the profile's step builder."""
        builder = self.STEP_BUILDERS.get(self.profile)
        if builder is None:
            raise N6Error(f"the runtime cannot execute profile {self.profile!r}; choose one of "
                          f"{sorted(self.STEP_BUILDERS)}")
        return builder(self, node, buffers)

    def _cmsis_nn_step(self, node, buffers):
        """cmsis-nn: the KERNEL SPEC kernels (emu.kernels) with the parameters of prepare.PROFILES['cmsis-nn']."""
        k = self.kernels
        p = self.prepared.params[node.name]
        x = self._tensor(node.inputs[0], buffers)
        out = buffers[node.outputs[0]]
        op = node.op
        if op == "conv2d":
            args = (x, p["filt"], p["bias"], p["mult"], p["shift"], p["input_offset"], p["output_offset"],
                    p["stride_h"], p["stride_w"], p["pad_top"], p["pad_left"], p["dilation_h"], p["dilation_w"],
                    p["act_min"], p["act_max"], p["rounding"], out)
            return lambda: k.conv_s8(*args)
        if op == "depthwise_conv2d":
            args = (x, p["filt"], p["bias"], p["mult"], p["shift"], p["ch_mult"], p["input_offset"],
                    p["output_offset"], p["stride_h"], p["stride_w"], p["pad_top"], p["pad_left"],
                    p["dilation_h"], p["dilation_w"], p["act_min"], p["act_max"], p["rounding"], out)
            return lambda: k.depthwise_conv_s8(*args)
        if op == "fully_connected":
            depth = p["filt"].shape[1]
            if x.size % depth:
                raise N6Error(f"layer {node.name!r}: input of {x.size} values is not a multiple of the "
                              f"weights' depth {depth}; check the model")
            args = (x.reshape(-1, depth), p["filt"], p["bias"], p["mult"], p["shift"], p["input_offset"],
                    p["filter_offset"], p["output_offset"], p["act_min"], p["act_max"], p["rounding"],
                    out.reshape(-1, p["filt"].shape[0]))
            return lambda: k.fully_connected_s8(*args)
        if op in ("avg_pool", "max_pool"):
            fn = k.avgpool_s8 if op == "avg_pool" else k.maxpool_s8
            args = (x, p["kernel_h"], p["kernel_w"], p["stride_h"], p["stride_w"], p["pad_top"], p["pad_left"],
                    p["act_min"], p["act_max"], out)
            return lambda: fn(*args)
        if op == "softmax":
            rows = x.reshape(-1, x.shape[-1])
            args = (rows, p["mult"], p["shift"], p["diff_min"], out.reshape(rows.shape))
            return lambda: k.softmax_s8(*args)
        if op in ("add", "mul"):
            y = self._tensor(node.inputs[1], buffers)
            copies = []
            flat = []
            for src in (x, y):
                if src.shape == out.shape:
                    flat.append(src.reshape(-1))
                else:
                    try:
                        view = np.broadcast_to(src, out.shape)
                    except ValueError:
                        raise N6Error(f"layer {node.name!r} ({op}): input shape {src.shape} does not broadcast "
                                      f"to the output {out.shape}") from None
                    scratch = np.empty(out.shape, np.int8)
                    copies.append((scratch, view))
                    flat.append(scratch.reshape(-1))
            o = out.reshape(-1)
            if op == "add":
                args = (flat[0], flat[1], p["in1_offset"], p["in1_mult"], p["in1_shift"], p["in2_offset"],
                        p["in2_mult"], p["in2_shift"], p["left_shift"], p["out_mult"], p["out_shift"],
                        p["out_offset"], p["act_min"], p["act_max"], o)
                fn = k.add_s8
            else:
                args = (flat[0], flat[1], p["in1_offset"], p["in2_offset"], p["out_mult"], p["out_shift"],
                        p["out_offset"], p["act_min"], p["act_max"], p["rounding"], o)
                fn = k.mul_s8

            def run_elementwise():
                for dst, src in copies:
                    np.copyto(dst, src)
                fn(*args)
            return run_elementwise
        if op == "pad":
            pads = node.attrs["pads"]
            if len(pads) > 4:
                raise N6Error(f"layer {node.name!r} (pad): {len(pads)}-D padding is unsupported (at most 4-D)")
            before = np.array([0] * (4 - len(pads)) + [b for b, _ in pads], np.int32)
            args = (x.reshape(_pad4(x.shape)), before, p["pad_value"], out.reshape(_pad4(out.shape)))
            return lambda: k.pad_s8(*args)
        if op == "transpose":
            perm = node.attrs["perm"]
            if len(perm) > 4:
                raise N6Error(f"layer {node.name!r} (transpose): {len(perm)}-D transposes are unsupported")
            lead = 4 - len(perm)
            perm4 = np.array(list(range(lead)) + [q + lead for q in perm], np.int32)
            args = (x.reshape(_pad4(x.shape)), perm4, out.reshape(_pad4(out.shape)))
            return lambda: k.transpose_s8(*args)
        if op == "reshape":
            src = x.reshape(out.shape)
            return lambda: np.copyto(out, src)
        raise N6Error(f"the runtime has no kernel for op {op} (layer {node.name!r})")

    # profile name -> step builder(runtime, node, buffers); a new profile adds an entry (and its prepare branch)
    STEP_BUILDERS = {"cmsis-nn": _cmsis_nn_step}

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
        arrays, n, batched = self._normalise_inputs(inputs)
        res = self._collect(self.graph.outputs, arrays, n, batched)
        if self.float_output:
            res = {name: self.dequantize_output(name, q) for name, q in res.items()}
        outs = tuple(res[name] for name in self.graph.outputs)
        return outs[0] if len(outs) == 1 else outs

    def run_all(self, inputs):
        """Every activation tensor (name -> int8 array) for int8 input(s), in execution order."""
        arrays, n, batched = self._normalise_inputs(inputs)
        names = [a for a in self.graph.activations() if not self.graph.tensors[a].is_constant]
        return self._collect(names, arrays, n, batched)
