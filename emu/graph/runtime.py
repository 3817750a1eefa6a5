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
(they never allocate). cmsis-nn steps are bound once per plan (emu.kernels.backends.bind: arguments and scratch
checked at plan time, the unchecked kernel per inference). A batch of N runs as one kernel call per layer when
every activation has a leading batch dimension of 1 that no layer moves (batch folded into axis 0); otherwise
sample by sample.
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
                 float_output=False, elementwise=None):
        if isinstance(graph, Prepared):
            if rounding is not None and rounding != graph.rounding or profile != graph.profile or \
                    elementwise is not None and elementwise != graph.elementwise:
                raise N6Error("the prepared graph was made for another profile/rounding; pass the Graph instead")
            self.prepared = graph
        else:
            self.prepared = prepare(graph, profile, rounding, elementwise)
        if self.prepared.profile == "onnxruntime" and backend not in ("numba",) and isinstance(backend, str):
            raise N6Error(f"the {backend!r} kernel backend implements the cmsis-nn profile only; use backend "
                          f"'numba' for the onnxruntime profile")
        self.graph = self.prepared.graph
        self.kernels, self.backend = resolve_backend(backend)
        self.profile = self.prepared.profile
        self.rounding = self.prepared.rounding
        self._plans = {}
        self.batch_folds = self._batch_folds()
        # I/O boundary (ST AI buffers): int8 input buffer; output int8, or dequantized to float32 when
        # float_output: float32(q - zp) * float32(scale) per tensor (what the app does before its softmax).
        # input_boundary 'float32': the model's own QuantizeLinear under the profile (onnxruntime: round half to
        # even of float32(x / scale); cmsis-nn: TFLite's round half away of the float32 quotient), then clamp.
        # Only models whose float input is quantized by the model itself (ONNX QDQ: QuantizeLinear) offer it.
        if input_boundary not in (None, "int8", "float32"):
            raise N6Error(f"unknown input boundary {input_boundary!r}; choose 'int8' (the application quantizes) "
                          f"or 'float32' (the model's QuantizeLinear)")
        if input_boundary == "float32" and not self.graph.source.startswith("onnx:"):
            raise N6Error(f"input boundary 'float32' is not available for {self.graph.source}: its "
                          f"inputs are int8 buffers; pass int8 input (quantize it with the input's scale/zero-point)")
        self.input_boundary = "int8" if input_boundary is None else input_boundary
        self.elementwise = self.prepared.elementwise
        self.float_output = bool(float_output)
        if self.float_output:
            for name in self.graph.outputs:
                if self.graph.tensors[name].per_channel:
                    raise N6Error(f"output {name!r} is per-channel quantized; float output needs per-tensor "
                                  f"quantization")

    @property
    def metadata(self):
        return dict(profile=self.profile, rounding=self.rounding, backend=self.backend, source=self.graph.source,
                    input_boundary=self.input_boundary, float_output=self.float_output, elementwise=self.elementwise)

    def quantize_inputs(self, inputs):
        """Float32 input(s) -> the int8 input buffer(s) under this profile's QuantizeLinear rule (see __init__)."""
        from .prepare import quantize_float
        g = self.graph
        if isinstance(inputs, dict):
            return {n: quantize_float(inputs[n], g.tensors[n], self.profile) if n in g.inputs else inputs[n]
                    for n in inputs}
        if isinstance(inputs, (list, tuple)):
            return [quantize_float(a, g.tensors[n], self.profile) for n, a in zip(g.inputs, inputs)]
        return quantize_float(inputs, g.tensors[g.inputs[0]], self.profile)

    def dequantize_output(self, name, q):
        """float32(q - zero_point) * float32(scale) of graph output `name` (per-tensor quantization)."""
        t = self.graph.tensors[name]
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
        """cmsis-nn: the KERNEL SPEC kernels (emu.kernels) with the parameters of prepare.PROFILES['cmsis-nn'];
        each step is bound once per plan (backends.bind: arguments checked here, unchecked kernel per run)."""
        from ..kernels.backends import bind
        k = self.kernels
        p = self.prepared.params[node.name]
        x = self._tensor(node.inputs[0], buffers)
        out = buffers[node.outputs[0]]
        op = node.op
        if op == "conv2d":
            args = (x, p["filt"], p["bias"], p["mult"], p["shift"], p["input_offset"], p["output_offset"],
                    p["stride_h"], p["stride_w"], p["pad_top"], p["pad_left"], p["dilation_h"], p["dilation_w"],
                    p["act_min"], p["act_max"], p["rounding"], out)
            return bind(k, "conv_s8", *args)
        if op == "depthwise_conv2d":
            args = (x, p["filt"], p["bias"], p["mult"], p["shift"], p["ch_mult"], p["input_offset"],
                    p["output_offset"], p["stride_h"], p["stride_w"], p["pad_top"], p["pad_left"],
                    p["dilation_h"], p["dilation_w"], p["act_min"], p["act_max"], p["rounding"], out)
            return bind(k, "depthwise_conv_s8", *args)
        if op == "fully_connected":
            depth = p["filt"].shape[1]
            if x.size % depth:
                raise N6Error(f"layer {node.name!r}: input of {x.size} values is not a multiple of the "
                              f"weights' depth {depth}; check the model")
            args = (x.reshape(-1, depth), p["filt"], p["bias"], p["mult"], p["shift"], p["input_offset"],
                    p["filter_offset"], p["output_offset"], p["act_min"], p["act_max"], p["rounding"],
                    out.reshape(-1, p["filt"].shape[0]))
            return bind(k, "fully_connected_s8", *args)
        if op == "avg_pool" and p.get("as_depthwise"):      # a rescaling mean (prepare._cmsis_mean)
            args = (x, p["filt"], p["bias"], p["mult"], p["shift"], p["ch_mult"], p["input_offset"],
                    p["output_offset"], p["stride_h"], p["stride_w"], p["pad_top"], p["pad_left"],
                    p["dilation_h"], p["dilation_w"], p["act_min"], p["act_max"], p["rounding"], out)
            return bind(k, "depthwise_conv_s8", *args)
        if op in ("avg_pool", "max_pool"):
            args = (x, p["kernel_h"], p["kernel_w"], p["stride_h"], p["stride_w"], p["pad_top"], p["pad_left"],
                    p["act_min"], p["act_max"], out)
            return bind(k, "avgpool_s8" if op == "avg_pool" else "maxpool_s8", *args)
        if op == "softmax":
            rows = x.reshape(-1, x.shape[-1])
            args = (rows, p["mult"], p["shift"], p["diff_min"], out.reshape(rows.shape))
            return bind(k, "softmax_s8", *args)
        if op in ("add", "mul"):
            flat, copies = self._flat_operands(node, buffers, out)
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

    def _onnxruntime_step(self, node, buffers):
        """onnxruntime: conv/depthwise/fully connected are the Numba cmsis-nn kernels bound with rounding FLOAT32_RNE,
        the weights' filter_offset and the float32 scales of prepare.PROFILES['onnxruntime']; the other ops are
        emu.kernels.ort (ORT/MLAS float math); MaxPool/Transpose/Reshape are the same kernels as cmsis-nn."""
        from ..kernels import ort
        from ..kernels.backends import bind, get_backend
        from .prepare import ORT_UINT8_DOMAIN_SHIFT
        p = self.prepared.params[node.name]
        x = self._tensor(node.inputs[0], buffers)
        out = buffers[node.outputs[0]]
        op = node.op
        geo = ("stride_h", "stride_w", "pad_top", "pad_left", "dilation_h", "dilation_w", "act_min", "act_max")
        if op in ("conv2d", "depthwise_conv2d", "fully_connected"):
            numba_kernels = get_backend("numba")
            ort_epilogue = dict(scale=p["scale"])
            if op != "fully_connected":
                ort_epilogue["filter_offset"] = p["filter_offset"]
        if op == "conv2d":
            args = (x, p["filt"], p["bias"], None, None, p["input_offset"], p["output_offset"],
                    *(p[k] for k in geo), p["rounding"], out)
            return bind(numba_kernels, "conv_s8", *args, **ort_epilogue)
        if op == "depthwise_conv2d":
            args = (x, p["filt"], p["bias"], None, None, p["ch_mult"], p["input_offset"], p["output_offset"],
                    *(p[k] for k in geo), p["rounding"], out)
            return bind(numba_kernels, "depthwise_conv_s8", *args, **ort_epilogue)
        if op == "fully_connected":
            depth = p["filt"].shape[1]
            if x.size % depth:
                raise N6Error(f"layer {node.name!r}: input of {x.size} values is not a multiple of the "
                              f"weights' depth {depth}; check the model")
            args = (x.reshape(-1, depth), p["filt"], p["bias"], None, None, p["input_offset"], p["filter_offset"],
                    p["output_offset"], p["act_min"], p["act_max"], p["rounding"], out.reshape(-1, p["filt"].shape[0]))
            return bind(numba_kernels, "fully_connected_s8", *args, **ort_epilogue)
        if op == "avg_pool" and p["global_pool"]:
            args = (x, p["scale"], p["input_offset"], p["output_offset"], p["act_min"], p["act_max"], out)
            return lambda: ort.global_avgpool_ort_s8(*args)
        if op == "avg_pool":
            args = (x, p["in_scale"], p["in_zero_point"], p["out_scale"], p["out_zero_point"], p["float_zero_point"],
                    p["kernel_h"], p["kernel_w"], p["stride_h"], p["stride_w"], p["pad_top"], p["pad_left"],
                    p["count_include_pad"], p["act_min"], p["act_max"], out)
            return lambda: ort.avgpool_ort_s8(*args)
        if op == "max_pool":
            args = (x, p["kernel_h"], p["kernel_w"], p["stride_h"], p["stride_w"], p["pad_top"], p["pad_left"],
                    p["act_min"], p["act_max"], out)
            return lambda: self.kernels.maxpool_s8(*args)
        if op in ("add", "mul"):
            flat, copies = self._flat_operands(node, buffers, out)
            args = (flat[0], flat[1], p["in_scales"][0], p["in_zps"][0], p["in_scales"][1], p["in_zps"][1],
                    p["out_scale"], p["out_zp"], op == "mul")
            if p["elementwise"] == "qlinear":
                fn, args = ort.qlinear_binary_ort_s8, args + (ORT_UINT8_DOMAIN_SHIFT,)
            else:
                fn = ort.dq_binary_ort_s8
            args = args + (p["act_min"], p["act_max"], out.reshape(-1))

            def run_elementwise():
                for dst, src in copies:
                    np.copyto(dst, src)
                fn(*args)
            return run_elementwise
        if op == "concat":
            axis = p["axis"]
            parts, start = [], 0
            for i, name in enumerate(node.inputs):
                src = self._tensor(name, buffers)
                scratch = np.empty(src.shape, np.int8)
                sl = [slice(None)] * out.ndim
                sl[axis] = slice(start, start + src.shape[axis])
                start += src.shape[axis]
                parts.append((src.reshape(-1), p["in_scales"][i], p["in_zps"][i], scratch, out[tuple(sl)]))

            def run_concat():
                for src, s_in, z_in, scratch, dst in parts:
                    ort.dq_requantize_ort_s8(src, s_in, z_in, p["out_scale"], p["out_zp"], scratch.reshape(-1))
                    np.copyto(dst, scratch)
            return run_concat
        if op == "softmax":
            rows = x.reshape(-1, x.shape[-1])
            args = (rows, p["table"], p["y_scale"], p["out_zero_point_raw"], p["domain_shift"], out.reshape(rows.shape))
            return lambda: ort.softmax_ort_s8(*args)
        if op in ("transpose", "reshape"):
            return self._cmsis_nn_step(node, buffers)
        raise N6Error(f"the onnxruntime profile has no kernel for op {op} (layer {node.name!r})")

    def _flat_operands(self, node, buffers, out):
        """Equal-length flat views of a binary op's two inputs (broadcast ones copied into scratch before each
        call): returns ([flat1, flat2], [(scratch, broadcast view), ...])."""
        flat, copies = [], []
        for name in node.inputs[:2]:
            src = self._tensor(name, buffers)
            if src.shape == out.shape:
                flat.append(src.reshape(-1))
                continue
            try:
                view = np.broadcast_to(src, out.shape)
            except ValueError:
                raise N6Error(f"layer {node.name!r} ({node.op}): input shape {src.shape} does not broadcast "
                              f"to the output {out.shape}") from None
            scratch = np.empty(out.shape, np.int8)
            copies.append((scratch, view))
            flat.append(scratch.reshape(-1))
        return flat, copies

    # profile name -> step builder(runtime, node, buffers); a new profile adds an entry (and its prepare branch)
    STEP_BUILDERS = {"cmsis-nn": _cmsis_nn_step, "onnxruntime": _onnxruntime_step}

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
