"""Stage-by-stage, layer-by-layer comparison of two runs of the chain: emulator profiles, onnxruntime,
tflite-micro, trace files and board captures, with ST Edge AI's validation metrics.

    a = emulator_source(Device(), pcm=clip, window=0)                          # every stage of one patch
    b = emulator_source(Device().with_(**{"model.profile": "onnxruntime"}), pcm=clip, window=0)
    r = compare(a, b)                   # CompareReport; b is the reference
    r.first_divergent, r.diverging(), r["output"].n_differ, r.to_dict(), r.table()
    compare(board_source(read_board_data("val_io.npz"), like=b), b)             # a board capture vs the emulator

Sources (Source: label, ordered stages name -> array, per-tensor (scale, zero-point) where known):
  emulator_source(device, pcm=, window=) / (device, input_buffer=)   Device.trace / the device's ModelSession.trace
  from_trace(trace or path, model=)       a Trace (Trace.save / `--dump`); quantization from `model` or the model
                                          path recorded in its settings
  onnxruntime_source(model, input_buffer, reference=)   onnxruntime on the .onnx model: a QDQ model gives every
                                          QuantizeLinear output (the emulator's tensor names); a float model gives
                                          the float tensor each QuantizeLinear of `reference` (the QDQ model) reads
  tflm_source(model, input_buffer)        tflite-micro (emu.reference.TflmReference): every activation by name
  board_source(board_data, like=, stage=) arrays read by emu.boarddata, named after the stages of `like`;
                                          board_input(board_data): the input buffer it holds, to run the others on

Names and layouts. Stages are named as in emu.trace (frontend/<stage>, input_buffer, network/<tensor>, output,
float_output, probabilities); the emulator's tensor names are the ONNX QuantizeLinear output names (TFLite: the
tensor names), its network tensors are int8 NHWC (uint8 models: value - 128) while onnxruntime gives the ONNX
layout: a 4-D onnxruntime tensor is transposed NCHW -> NHWC where the emulator holds it channel-last (decided by
shape, and for square shapes by the layout transposes the importer inserted). onnxruntime's uint8 tensors are
shifted by -128 like the emulator's; input_buffer and output stay in the model's I/O type on both sides.
How onnxruntime's intermediate tensors are read: exposing a QuantizeLinear output as a graph output (directly or
through an Identity) makes onnxruntime leave the producing layer unfused (float Conv + QuantizeLinear instead of
QLinearConv), which changes some values by 1 LSB (seen on the bundled model). So each tensor is read from its own
sub-model (the nodes it depends on) ending in a DequantizeLinear of it, which keeps onnxruntime's fusion, and the
integers are recovered exactly: q = rint(y / scale) + zero_point.
A board capture with one unnamed array is matched by size (and integer/float kind) to `output` (or
`float_output`), then `input_buffer`, then a unique network tensor; name it with `stage=` otherwise. Named arrays
match stage names, tensor names, or stedgeai's roles: c_inputs_1 -> input_buffer, c_outputs_1 -> output (float:
float_output); m_* (ST's reference-model run) are left out. An array with as many values as the stage but another
shape (a flat dump) is reshaped to the other side's shape.

Metrics (per common stage; B is the reference, as in ST's `validate`, "the output of the reference model is used
as ground truth"). Values are compared as float64 after dequantization, x = (q - zero_point) * scale, when the
stage's scale/zero-point are known (domain "dequantized"; an integer side without its own takes the other side's),
and as raw values otherwise (domain "raw"); e = a - b over the n elements:
  ACC   argmax agreement, classifier outputs only (output, float_output, probabilities shaped [classes],
        [1, classes] or [N, 1, ..., classes]): the fraction of rows (last axis = classes) whose first maximum is
        at the same index in A and B
  RMSE  sqrt(mean(e^2))
  MAE   mean(|e|)
  L2r   relative L2 error ||e||_2 / ||b||_2 (0 when both are 0; n.a. when only ||b|| is 0)
  COS   cosine similarity sum(a*b) / (||a||_2 ||b||_2) (1 when both are all zero; n.a. when one is)
and, when both sides are integers, on the raw integers: the LSB error histogram {|a - b|: count} (0, 1, 2, ...,
max |LSB|) and the count of differing elements (for float stages: elements not exactly equal; NaN equals NaN).
The first divergent stage is the first stage in execution order (the order of A's trace, or B's when A is a board
capture) with a differing element. ST's stedgeai reports also MEAN, STD and NSE; its COS range is given as (0, 1].
"""
import os
import re
from dataclasses import dataclass, field

import numpy as np

from emu.errors import N6Error

CLASSIFIER_STAGES = ("output", "float_output", "probabilities")
TO_NHWC = (0, 2, 3, 1)
ORT_MISSING = "onnxruntime is not installed; pip install onnxruntime (or the project's [test] extra)"


# ---- sources ----------------------------------------------------------------------------------------------

@dataclass
class Source:
    """One side of a comparison: ordered stages (execution order when `ordered`), per-tensor quantization
    (stage -> (scale, zero_point)) where known, and notes on what was left out or converted."""
    label: str
    stages: dict
    quant: dict = field(default_factory=dict)
    ordered: bool = True
    notes: list = field(default_factory=list)

    def __contains__(self, name):
        return name in self.stages

    def __getitem__(self, name):
        return self.stages[name]

    def names(self):
        return list(self.stages)


def model_quantization(model):
    """stage -> (scale, zero_point) of an emu.models.ImportedModel: input_buffer and output in the model's I/O
    type, network/<tensor> for every per-tensor quantized activation (internal int8)."""
    g = model.graph
    q = {}
    for name in g.activations():
        t = g.tensors[name]
        if t.scale is not None and t.scale.size == 1:
            q[f"network/{name}"] = (float(t.scale[0]), int(t.zero_point[0]))
    t_in = g.tensors[g.inputs[0]]
    if t_in.scale is not None and t_in.scale.size == 1:
        q["input_buffer"] = (float(t_in.scale[0]), int(t_in.zero_point[0]) + model.io_shift())
    scale, zp = model.output_quantization()
    if scale is not None:
        q["output"] = (float(scale), int(zp))
    return q


def _model_path_from_settings(settings):
    """The model file a trace's settings record (Device.settings, `run --dump`, ModelSession metadata), or None."""
    cands = []
    m = settings.get("model")
    if isinstance(m, dict):
        cands += [m.get("resolved_path"), m.get("path")]
    elif isinstance(m, str):
        cands.append(m)
    for d in (settings, settings.get("runtime") if isinstance(settings.get("runtime"), dict) else {}):
        src = d.get("source")
        if isinstance(src, str) and ":" in src:
            cands.append(src.split(":", 1)[1])
    for c in cands:
        if isinstance(c, str) and os.path.isfile(c):
            return c
    return None


def from_trace(trace, label=None, model=None):
    """A Source of an emu.trace.Trace (or the path of a trace .npz). Quantization comes from `model` (an
    ImportedModel or a model path) or from the model path recorded in the trace's settings, when it exists."""
    from emu.models import ImportedModel, import_model
    from emu.trace import Trace
    if not isinstance(trace, Trace):
        path = os.fspath(trace)
        trace = Trace.load(path)
        label = f"trace:{os.path.basename(path)}" if label is None else label
    if model is None:
        model = _model_path_from_settings(trace.settings)
    notes = []
    quant = {}
    if model is not None:
        try:
            m = model if isinstance(model, ImportedModel) else import_model(model)
            quant = model_quantization(m)
        except N6Error as exc:
            notes.append(f"quantization unknown ({exc}); metrics on raw values")
    return Source("trace" if label is None else label, {n: trace[n] for n in trace}, quant, True, notes)


def _input_batch(model, buf, boundary="int8", what="the input buffer"):
    """(buffer in the model's I/O type (or float32 at a float32 boundary), batched?) shaped like the model input
    or N x it; converts other integer types after a range check and float features through the model's
    QuantizeLinear (ONNX QDQ models)."""
    from emu.boarddata import _as_dtype
    buf = np.asarray(buf)
    shape = tuple(model.input_shape)
    size = int(np.prod(shape, dtype=np.int64))
    if buf.size == 0 or buf.size % size:
        raise N6Error(f"{what} holds {buf.size} values but the model input {list(shape)} takes {size} (or a multiple "
                      f"for several samples); check the capture or its shape")
    batched = buf.size != size
    buf = buf.reshape(((buf.size // size,) if batched else ()) + shape)
    io = model.io_dtype
    if buf.dtype.kind == "f":
        if boundary == "float32":
            return buf.astype(np.float32), batched
        if model.onnx is None:
            raise N6Error(f"{what} is float ({buf.dtype}) but the TFLite model takes {io.name}; give the quantized "
                          f"input buffer")
        from emu.graph.onnx_qdq import quantize_input
        return quantize_input(model.onnx, buf.astype(np.float32), "onnxruntime"), batched
    return _as_dtype(buf, io, what), batched


def emulator_source(device, pcm=None, window=None, input_buffer=None, label=None):
    """The emulator's Source: the whole chain of one patch (`pcm` with `window` as in Device.trace) or the network
    alone on `input_buffer` (the model's input shape, or N x it)."""
    sess = device.session
    label = f"emu:{sess.arithmetic.name}" if label is None else label
    if pcm is not None:
        t = device.trace(pcm, window=window)
    elif input_buffer is not None:
        buf, _ = _input_batch(sess.model, input_buffer, device.boundary)
        boundary = "float32" if buf.dtype.kind == "f" else "int8"
        t = sess.trace(buf, boundary, settings=device.settings)
    else:
        raise N6Error(f"{label}: the emulator needs an input: a recording (pcm) or an input buffer")
    return from_trace(t, label, sess.model)


def _onnx_consts(proto):
    from onnx import helper, numpy_helper
    consts = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(helper.get_attribute_value(a))
    return consts


def _ort_session(ort, proto):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise N6Error(f"onnxruntime cannot load the model ({str(exc).splitlines()[0][:200]})") from None


def _submodel(proto, target, tail=None):
    """A copy of `proto` computing only `target` (the nodes it depends on), whose one output is `target` or, with
    tail = (scale, zero-point names), a DequantizeLinear of it."""
    import onnx
    from onnx import helper
    producer = {o: n for n in proto.graph.node for o in n.output}
    need, stack = set(), [target]
    while stack:
        n = producer.get(stack.pop())
        if n is None or id(n) in need:
            continue
        need.add(id(n))
        stack.extend(i for i in n.input if i)
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    del m.graph.node[:]
    m.graph.node.extend(n for n in proto.graph.node if id(n) in need)
    out = target
    if tail is not None:
        out = f"{target}__n6emu_dq"
        m.graph.node.append(helper.make_node("DequantizeLinear", [target, *[t for t in tail if t]], [out]))
    del m.graph.output[:]
    m.graph.output.append(helper.make_empty_tensor_value_info(out))
    return m


def _emu_nhwc(graph, name):
    """Whether the emulator holds the 4-D tensor `name` channel-last: every channel-first tensor (an NCHW input
    buffer, a 4-D Reshape result) is followed by the importer's transpose to an NHWC copy named `name#k`."""
    for node in graph.nodes:
        if (node.op == "transpose" and node.inputs[:1] == [name] and node.outputs[0].startswith(f"{name}#")
                and node.attrs.get("perm") == list(TO_NHWC)):
            return False
    return True


def _to_emu_layout(value, emu_shape, nhwc, batched):
    """An onnxruntime value (ONNX layout) in the emulator's layout; None when the shapes cannot be matched."""
    core = value.shape[1:] if batched else value.shape
    emu_shape = tuple(emu_shape)
    if len(core) == 4:
        t_shape = tuple(core[p] for p in TO_NHWC)
        same, trans = tuple(core) == emu_shape, t_shape == emu_shape
        if trans and (nhwc or not same):
            axes = tuple(range(value.ndim - 4)) + tuple(value.ndim - 4 + p for p in TO_NHWC)
            return np.ascontiguousarray(value.transpose(axes))
        if same:
            return value
        return None
    if tuple(core) == emu_shape:
        return value
    if int(np.prod(core)) == int(np.prod(emu_shape)):
        return value.reshape(((value.shape[0],) if batched else ()) + emu_shape)
    return None


def onnxruntime_source(model_path, input_buffer, reference=None, label="onnxruntime"):
    """onnxruntime's Source for the .onnx model at `model_path` on `input_buffer` (the emulator model's input
    buffer in its I/O type, or N x it; fed to onnxruntime dequantized, x = float32(q - zp) * scale, so that the
    model's own QuantizeLinear gives the same bytes back). `reference`: the emulator's ImportedModel (names,
    layouts, input quantization); for a QDQ model it defaults to the model itself, a float model needs it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise N6Error(ORT_MISSING) from None
    import onnx
    from emu.models import import_model
    path = os.fspath(model_path)
    if not os.path.isfile(path):
        raise N6Error(f"{path}: no such model file")
    try:
        proto = onnx.load(path)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise N6Error(f"{path} is not a valid ONNX model ({type(exc).__name__}); pass a .onnx file") from None
    consts = _onnx_consts(proto)
    qnodes = [n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in consts]
    is_qdq = bool(qnodes)
    if is_qdq:     # its own tensor names (the emulator's model, when it is the same file)
        same = reference is not None and os.path.isfile(reference.path) and os.path.samefile(reference.path, path)
        reference = reference if same else import_model(path)
    elif reference is None or reference.onnx is None:
        raise N6Error(f"{path} is a float ONNX model: its tensors are compared under the QDQ model's names; give the "
                      f"QDQ model as the reference (the config's [model].path)")
    model = reference
    if model.onnx is None:
        raise N6Error(f"onnxruntime runs .onnx models; the emulator's model {model.path} is not one")
    graph = model.graph
    feed_name = next(i.name for i in proto.graph.input if i.name not in consts)
    raw = np.asarray(input_buffer)
    buf, batched = _input_batch(model, raw, "float32" if raw.dtype.kind == "f" else "int8")
    samples = buf if batched else buf[None]
    in_shape = tuple(model.onnx.input_shape)
    if buf.dtype.kind == "f":
        xs = samples.astype(np.float32)
    else:
        xs = ((samples.astype(np.int32) - np.int32(model.onnx.input_zero_point)).astype(np.float32)
              * np.float32(model.onnx.input_scale))
    stages, notes = {}, []

    def run(sess):
        return np.stack([sess.run(None, {feed_name: x.reshape(in_shape)})[0] for x in xs])

    def unbatch(v):
        return v if batched else v[0]

    def place(stage, v, tensor, internal_shift):
        """Tensor `tensor`'s onnxruntime value (N samples) in the emulator's terms: internal int8, its layout."""
        v = unbatch(v)
        if internal_shift:
            v = (v.astype(np.int16) - 128).astype(np.int8)
        emu = _to_emu_layout(v, graph.tensors[tensor].shape, _emu_nhwc(graph, tensor) if v.ndim >= 4 else False,
                             batched)
        if emu is None:
            notes.append(f"{stage}: onnxruntime shape {list(v.shape)} does not match the emulator's "
                         f"{list(graph.tensors[tensor].shape)}; left out")
            return
        stages[stage] = emu

    out_base = re.sub(r"#\d+$", "", graph.outputs[0])
    if is_qdq:
        graph_in = {i.name for i in proto.graph.input}
        for q in qnodes:
            name = q.output[0]
            tail = (q.input[1], q.input[2] if len(q.input) > 2 else None)
            y = run(_ort_session(ort, _submodel(proto, name, tail)))
            scale = np.float64(np.asarray(consts[q.input[1]]).reshape(-1)[0])
            zp_arr = consts.get(q.input[2]) if len(q.input) > 2 and q.input[2] else None
            qdt = np.dtype(zp_arr.dtype) if zp_arr is not None else np.dtype(np.uint8)
            zp = int(np.asarray(zp_arr).reshape(-1)[0]) if zp_arr is not None else 0
            info = np.iinfo(qdt)
            v = np.clip(np.rint(y.astype(np.float64) / scale) + zp, info.min, info.max).astype(qdt)
            u8 = qdt == np.uint8
            if q.input[0] in graph_in:
                stages["input_buffer"] = unbatch(v)
                if q.input[0] in graph.tensors:
                    place(f"network/{q.input[0]}", v, q.input[0], u8)
                continue
            if name in graph.tensors:
                place(f"network/{name}", v, name, u8)
            if name == out_base:
                stages["output"] = unbatch(v)
        if model.onnx.output_tail is not None:
            stages["float_output"] = unbatch(run(_ort_session(ort, proto)))
    else:
        qdq_proto = onnx.load(model.path)
        qdq_consts = _onnx_consts(qdq_proto)
        by_float = {n.input[0]: n.output[0] for n in qdq_proto.graph.node
                    if n.op_type == "QuantizeLinear" and n.input[0] not in qdq_consts}
        produced = [o for n in proto.graph.node for o in n.output]
        exposed = [f for f in produced if by_float.get(f) in graph.tensors and by_float[f] not in graph.inputs]
        outs = [o.name for o in proto.graph.output]
        from onnx import helper
        m = onnx.ModelProto()
        m.CopyFrom(proto)
        for f in exposed:
            if f not in outs:
                m.graph.output.append(helper.make_empty_tensor_value_info(f))
        sess = _ort_session(ort, m)
        names = [o.name for o in sess.get_outputs()]
        res = [sess.run(None, {feed_name: x.reshape(in_shape)}) for x in xs]
        values = {n: np.stack([r[i] for r in res]) for i, n in enumerate(names)}
        for f in exposed:
            t = by_float[f]
            place(f"network/{t}", values[f].astype(np.float32), t, False)
        if model.onnx.output_tail is not None and outs:
            stages["float_output"] = unbatch(values[outs[0]])
    order = ["input_buffer"] + [f"network/{n}" for n in graph.activations()] + ["output", "float_output"]
    ordered = {n: stages[n] for n in order if n in stages}
    return Source(label, ordered, model_quantization(model), True, notes)


def tflm_source(model_path, input_buffer, label="tflm"):
    """tflite-micro's Source for a .tflite model on `input_buffer` (int8, the model input shape or N x it):
    input_buffer, network/<activation> by the importer's tensor names, output."""
    from emu.models import import_model
    from emu.reference import TflmReference
    path = os.fspath(model_path)
    if not path.lower().endswith(".tflite"):
        raise N6Error(f"{path}: tflite-micro runs .tflite models; give one (tflm:MODEL.tflite)")
    model = import_model(path)
    ref = TflmReference(path)
    buf, batched = _input_batch(model, input_buffer)
    samples = buf if batched else buf[None]
    g = model.graph
    names = [n for n in g.activations() if n in ref.names]
    res = ref.run_all(samples, names=names)
    stages = {"input_buffer": buf}
    for n in names:
        v = res[n].reshape((len(samples),) + tuple(g.tensors[n].shape))
        stages[f"network/{n}"] = v if batched else v[0]
    if f"network/{g.outputs[0]}" in stages:
        stages["output"] = stages[f"network/{g.outputs[0]}"]
    return Source(label, stages, model_quantization(model), True, [])


def _stage_for(name, like):
    """The stage of `like` a named board array stands for, or None."""
    if like is not None:
        if name in like:
            return name
        if f"network/{name}" in like:
            return f"network/{name}"
    elif name in ("input_buffer", "output", "float_output", "probabilities") or "/" in name:
        return name
    return None


def board_source(data, like=None, stage=None, label=None):
    """A Source of board data (an emu.boarddata.BoardData or a path): its arrays named after the stages of `like`
    (the Source it will be compared with; see the module doc), or the one array put at `stage`."""
    from emu.boarddata import BoardData, read_board_data, stedgeai_role
    if not isinstance(data, BoardData):
        data = read_board_data(data)
    label = f"board:{os.path.basename(data.path)}" if label is None else label
    if data.trace is not None:
        return from_trace(data.trace, label)
    stages, notes = {}, []
    if stage is not None:
        if len(data.arrays) != 1:
            raise N6Error(f"{data.path}: --stage names the stage of a single array; the file holds "
                          f"{len(data.arrays)} ({', '.join(data.arrays)})")
        if like is not None and stage not in like and f"network/{stage}" in like:
            stage = f"network/{stage}"
        if like is not None and stage not in like:
            raise N6Error(f"{data.path}: stage {stage!r} is not a stage of {like.label}; give one of "
                          f"{', '.join(_short_list(like.names()))}")
        return Source(label, {stage: data.single()}, {}, False, notes)
    for name, v in data.arrays.items():
        role = stedgeai_role(name) if name else None
        if role is not None:
            side, io, k = role
            if side == "m":
                notes.append(f"{name}: stedgeai's reference-model run (m_*), not board data; left out")
                continue
            if k != 1:
                notes.append(f"{name}: input/output #{k}; the device chain has one input and one output; left out")
                continue
            if io == "inputs":
                target = "input_buffer"
            else:
                floaty = v.dtype.kind == "f"
                target = "float_output" if floaty and (like is None or "float_output" in like) else "output"
        elif name:
            target = _stage_for(name, like)
            if target is None:
                notes.append(f"{name}: matches no stage of {like.label if like is not None else 'the other side'}; "
                             f"left out")
                continue
        else:
            target = _match_by_size(v, like, data.path)
        if target in stages:
            raise N6Error(f"{data.path}: two arrays stand for stage {target!r}; keep one (name=)")
        stages[target] = v
    if not stages:
        raise N6Error(f"{data.path}: no array matches a stage of {like.label if like is not None else 'the other side'}"
                      f" ({'; '.join(notes)})")
    return Source(label, stages, {}, False, notes)


def board_input(data):
    """The input buffer a capture holds (a stage `input_buffer`, an array named so, or stedgeai's c_inputs_1),
    or None."""
    from emu.boarddata import stedgeai_role
    if data.trace is not None:
        return data.trace["input_buffer"] if "input_buffer" in data.trace else None
    for name, v in data.arrays.items():
        if name == "input_buffer" or stedgeai_role(name) == ("c", "inputs", 1):
            return v
    return None


def _short_list(names, n=8):
    return names[:n] + ([f"... ({len(names) - n} more)"] if len(names) > n else [])


def _match_by_size(v, like, path):
    if like is None:
        raise N6Error(f"{path}: one unnamed array and nothing to match it with; name its stage (--stage output, "
                      f"input_buffer or a tensor name)")
    kind_f = v.dtype.kind == "f"
    order = (["float_output", "probabilities", "output"] if kind_f else ["output"]) + ["input_buffer"]
    for s in order:
        if s in like and like[s].size == v.size and (like[s].dtype.kind == "f") == kind_f:
            return s
    cands = [s for s in like.names() if s.startswith("network/") and like[s].size == v.size
             and (like[s].dtype.kind == "f") == kind_f]
    if len(cands) == 1:
        return cands[0]
    sizes = ", ".join(f"{s} {like[s].size}" for s in ("output", "input_buffer") if s in like)
    raise N6Error(f"{path}: {v.size} {v.dtype.name} values match " + ("several stages" if cands else "no stage") +
                  f" of {like.label} by size ({sizes}); name the stage with --stage")


# ---- metrics ----------------------------------------------------------------------------------------------

class Incomparable(N6Error):
    """Two arrays of one stage that cannot be compared (different element counts)."""


@dataclass
class StageComparison:
    """The comparison of one stage (see the module doc for the metric definitions)."""
    name: str
    shape: tuple
    dtype_a: str
    dtype_b: str
    domain: str                    # "dequantized" or "raw"
    n_elements: int
    n_differ: int
    max_abs_error: float           # in the domain's units
    rmse: float
    mae: float
    l2r: float = None
    cos: float = None
    acc: float = None              # classifier outputs only
    max_lsb: int = None            # integer stages only
    lsb_histogram: dict = None     # {|a - b|: count}, integer stages only
    quant_a: tuple = None
    quant_b: tuple = None
    note: str = ""

    @property
    def differs(self):
        return self.n_differ > 0

    def to_dict(self):
        d = dict(name=self.name, shape=list(self.shape), dtype_a=self.dtype_a, dtype_b=self.dtype_b,
                 domain=self.domain, n_elements=self.n_elements, n_differ=self.n_differ,
                 max_abs_error=_num(self.max_abs_error), max_lsb=self.max_lsb, rmse=_num(self.rmse),
                 mae=_num(self.mae), l2r=_num(self.l2r), cos=_num(self.cos), acc=_num(self.acc),
                 lsb_histogram=None if self.lsb_histogram is None else
                 {str(k): int(v) for k, v in sorted(self.lsb_histogram.items())},
                 quant_a=None if self.quant_a is None else dict(scale=self.quant_a[0], zero_point=self.quant_a[1]),
                 quant_b=None if self.quant_b is None else dict(scale=self.quant_b[0], zero_point=self.quant_b[1]))
        if self.note:
            d["note"] = self.note
        return d


def _num(v):
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


def _dequantize(x, q):
    scale, zp = q
    return (x.astype(np.float64) - float(zp)) * float(np.float32(scale))


def compare_arrays(a, b, quant_a=None, quant_b=None, classifier=False, name=""):
    """StageComparison of two arrays of one stage (b: the reference). quant_*: (scale, zero_point) of an
    integer side, or None. Raises Incomparable when the element counts differ."""
    a, b = np.asarray(a), np.asarray(b)
    note = ""
    if a.shape != b.shape:
        if a.size != b.size:
            raise Incomparable(f"{a.size} values {list(a.shape)} vs {b.size} values {list(b.shape)}")
        note = f"A reshaped {list(a.shape)} -> {list(b.shape)}"
        a = a.reshape(b.shape)
    int_a, int_b = a.dtype.kind in "iub", b.dtype.kind in "iub"
    # an integer side without its own quantization takes the other side's (the same tensor's)
    qa = (quant_a if quant_a is not None else quant_b) if int_a else None
    qb = (quant_b if quant_b is not None else quant_a) if int_b else None
    domain = "dequantized" if (qa is not None or qb is not None) else "raw"
    va = _dequantize(a, qa) if qa is not None else a.astype(np.float64)
    vb = _dequantize(b, qb) if qb is not None else b.astype(np.float64)
    n = int(a.size)
    if int_a and int_b:
        d = np.abs(a.astype(np.int64) - b.astype(np.int64))
        n_differ = int(np.count_nonzero(d))
        values, counts = np.unique(d, return_counts=True)
        hist = {int(k): int(c) for k, c in zip(values, counts)}
        max_lsb = int(d.max()) if n else 0
    else:
        same = (va == vb) | (np.isnan(va) & np.isnan(vb))
        n_differ = int(n - np.count_nonzero(same))
        hist = max_lsb = None
    finite = np.isfinite(va) & np.isfinite(vb)
    n_left = int(n - np.count_nonzero(finite))
    if n_left:
        note = "; ".join(x for x in (note, f"{n_left} non-finite element(s) left out of the metrics") if x)
    va_f, vb_f = va[finite], vb[finite]
    e = va_f - vb_f
    if e.size == 0:
        return StageComparison(name, tuple(b.shape), a.dtype.name, b.dtype.name, domain, n, n_differ, None, None,
                               None, max_lsb=max_lsb, lsb_histogram=hist, quant_a=qa, quant_b=qb, note=note)
    rmse = float(np.sqrt(np.mean(e * e)))
    mae = float(np.mean(np.abs(e)))
    max_abs = float(np.max(np.abs(e)))
    ne, nb, na = float(np.linalg.norm(e)), float(np.linalg.norm(vb_f)), float(np.linalg.norm(va_f))
    l2r = (0.0 if ne == 0 else None) if nb == 0 else ne / nb
    if (na == 0 and nb == 0) or (ne == 0 and na > 0):
        cos = 1.0                        # identical values (exactly, not 1 - 1 ulp from the division)
    elif na == 0 or nb == 0:
        cos = None
    else:
        cos = float(np.clip(np.dot(va_f, vb_f) / (na * nb), -1.0, 1.0))
    acc = None
    if classifier and b.ndim >= 1 and b.shape[-1] > 1:
        ra, rb = va.reshape(-1, b.shape[-1]), vb.reshape(-1, b.shape[-1])
        acc = float(np.mean(np.argmax(ra, axis=1) == np.argmax(rb, axis=1)))
    return StageComparison(name, tuple(b.shape), a.dtype.name, b.dtype.name, domain, n, n_differ, max_abs, rmse, mae,
                           l2r, cos, acc, max_lsb, hist, qa, qb, note)


# ---- the report -------------------------------------------------------------------------------------------

@dataclass
class CompareReport:
    """Every common stage compared in execution order, the first divergent one, and what only one side has."""
    a: str
    b: str
    stages: list
    first_divergent: str = None
    only_a: list = field(default_factory=list)
    only_b: list = field(default_factory=list)
    incomparable: list = field(default_factory=list)     # (stage, reason)
    notes: list = field(default_factory=list)

    def __getitem__(self, name):
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r} in this comparison")

    def names(self):
        return [s.name for s in self.stages]

    def diverging(self):
        """Names of the stages with at least one differing element, in execution order."""
        return [s.name for s in self.stages if s.differs]

    def to_dict(self):
        return dict(a=self.a, b=self.b, reference="b", first_divergent=self.first_divergent,
                    n_compared=len(self.stages), n_diverging=len(self.diverging()),
                    stages=[s.to_dict() for s in self.stages], only_a=list(self.only_a), only_b=list(self.only_b),
                    incomparable=[dict(name=n, reason=r) for n, r in self.incomparable], notes=list(self.notes))

    def table(self):
        """The report as text lines for people (one line per stage; '>' marks the first divergent stage)."""
        head = ("stage", "shape", "n differ", "max|LSB|", "RMSE", "COS", "domain")
        rows = []
        for s in self.stages:
            rows.append((s.name, _shape(s.shape), str(s.n_differ), "-" if s.max_lsb is None else str(s.max_lsb),
                         _g(s.rmse), _g(s.cos), s.domain))
        w = [max([len(head[i])] + [len(r[i]) for r in rows]) for i in range(len(head))]
        lines = [f"A: {self.a}    B (reference): {self.b}",
                 f"  {head[0]:<{w[0]}}  {head[1]:<{w[1]}}  {head[2]:>{w[2]}}  {head[3]:>{w[3]}}  "
                 f"{head[4]:>{w[4]}}  {head[5]:>{w[5]}}  {head[6]}"]
        for s, r in zip(self.stages, rows):
            mark = ">" if s.name == self.first_divergent else " "
            lines.append(f"{mark} {r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>{w[3]}}  {r[4]:>{w[4]}}  "
                         f"{r[5]:>{w[5]}}  {r[6]}" + ("   <- first divergent" if mark == ">" else ""))
        for s in self.stages:
            if s.acc is not None:
                lines.append(f"ACC {s.name}: {_g(s.acc)} (argmax agreement)")
        for s in self.stages:
            if s.note:
                lines.append(f"note {s.name}: {s.note}")
        for n, reason in self.incomparable:
            lines.append(f"not comparable {n}: {reason}")
        if self.only_a:
            lines.append(f"only in A ({len(self.only_a)}): {', '.join(_short_list(self.only_a))}")
        if self.only_b:
            lines.append(f"only in B ({len(self.only_b)}): {', '.join(_short_list(self.only_b))}")
        for note in self.notes:
            lines.append(f"note: {note}")
        first = self.first_divergent or "none"
        lines.append(f"{len(self.stages)} stages compared, {len(self.diverging())} differ; first divergent: {first}")
        return "\n".join(lines)


def _shape(shape):
    return "x".join(str(int(d)) for d in shape) if len(shape) else "scalar"


def _g(v):
    return "n.a." if v is None else f"{v:.6g}"


def _as_source(x, other=None):
    from emu.boarddata import BoardData
    from emu.trace import Trace
    if isinstance(x, Source):
        return x
    if isinstance(x, Trace):
        return from_trace(x)
    if isinstance(x, BoardData):
        return board_source(x, like=other if isinstance(other, Source) else None)
    raise N6Error(f"cannot compare a {type(x).__name__}; give a Source, a Trace or BoardData")


def compare(a, b):
    """CompareReport of A against the reference B (Source, Trace or BoardData; board data is named after the
    other side's stages)."""
    from emu.boarddata import BoardData
    if isinstance(a, BoardData) and not isinstance(b, BoardData):
        b = _as_source(b)
        a = _as_source(a, b)
    else:
        a = _as_source(a)
        b = _as_source(b, a)
    order_src = a if a.ordered or not b.ordered else b
    other = b if order_src is a else a
    order = [n for n in order_src.names() if n in other] + [n for n in other.names() if n in order_src
                                                           and n not in order_src.names()]
    rows, incomparable = [], []
    for n in order:
        try:
            classifier = n in CLASSIFIER_STAGES and all(d == 1 for d in np.shape(b[n])[1:-1])
            rows.append(compare_arrays(a[n], b[n], a.quant.get(n), b.quant.get(n), classifier, n))
        except Incomparable as exc:
            incomparable.append((n, str(exc)))
    first = next((r.name for r in rows if r.differs), None)
    notes = [f"A: {x}" for x in a.notes] + [f"B: {x}" for x in b.notes]
    return CompareReport(a.label, b.label, rows, first, [n for n in a.names() if n not in b],
                         [n for n in b.names() if n not in a], incomparable, notes)
