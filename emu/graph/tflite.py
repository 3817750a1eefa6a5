"""TFLite int8 importer: .tflite flatbuffer -> emu.graph.ir.Graph (first subgraph).

Only structure and quantization are read; no float math happens here (see prepare.py). Paddings are
made explicit with TFLite's rule (ComputePaddingHeightWidth): total = max((out-1)*stride + eff_k - in, 0),
before = total // 2, after = total - before; eff_k = (k-1)*dilation + 1.

Float32 I/O: a float32 model input must feed one QUANTIZE float32 -> int8, which is absorbed (its int8 output is the
graph input, listed in Graph.float_inputs; Runtime(input_boundary="float32") applies it, "int8" takes the buffer the
application quantized); a float32 output must come from a DEQUANTIZE. Constant buffers are read from Buffer.data or,
in TFLite's large-model layout, from Buffer.offset/size (bytes after the flatbuffer, offset from the file start).
"""
import struct

import numpy as np

from ..errors import N6Error, printable, quoted
from . import tflite_fb as fb
from .ir import Graph, Node, Tensor, check_graph, check_shape, read_model_file

FUSED_ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
HOW_TO_QUANTIZE = ("convert it with the TFLite converter using a representative dataset, "
                   "optimizations=[tf.lite.Optimize.DEFAULT], supported_ops=[TFLITE_BUILTINS_INT8] and "
                   "inference_input_type/inference_output_type = tf.int8")


def load_tflite(path_or_bytes, name=None):
    """Import an int8 TFLite model (a path or the raw bytes) into a Graph, validated (indices, attributes, shapes,
    graph order, sizes) before anything runs. Raises N6Error (one line) for every malformed or unsupported model."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        buf = bytes(path_or_bytes)
        source = f"tflite:{printable(name or '<bytes>')}"
    else:
        buf, source = read_model_file(path_or_bytes, "tflite", ".tflite", mappable=True)
    if not len(buf):
        raise N6Error(f"{source} is empty (0 bytes), not a TFLite flatbuffer; pass a .tflite model file")
    try:
        graph = _import(buf, source)
    except fb.FlatBufferError as e:
        raise N6Error(f"{source} is not a valid TFLite flatbuffer ({e}); pass a .tflite model file") from None
    except (struct.error, IndexError, UnicodeDecodeError, OverflowError) as e:   # structural corruption
        raise N6Error(f"{source}: the model file is malformed ({type(e).__name__}: {printable(e)}); re-export "
                      f"the .tflite file") from None
    return check_graph(graph, "re-export the .tflite file")


def _unique(name, used):
    base, k = name, 1
    while name in used:
        name = f"{base}#{k}"
        k += 1
    used.add(name)
    return name


def _tensor_names(raw_tensors):
    """Unique tensor names in index order (TFLite allows duplicates: later ones get '#k' appended)."""
    used = set()
    return [_unique(t.string(fb.TENSOR["name"]) or f"tensor_{i}", used) for i, t in enumerate(raw_tensors)]


def tensor_names(buf):
    """Unique names of the first subgraph's tensors, indexed like the flatbuffer (the importer's names)."""
    return _tensor_names(fb.root_table(buf).tables(fb.MODEL["subgraphs"])[0].tables(fb.SUBGRAPH["tensors"]))


def graph_inputs(buf):
    """Tensor indices of the first subgraph's inputs."""
    sg = fb.root_table(buf).tables(fb.MODEL["subgraphs"])[0]
    return [int(i) for i in sg.vector(fb.SUBGRAPH["inputs"], np.int32)]


def _index(i, n, what, source):
    """A flatbuffer index checked against the length of what it indexes (a one-line N6Error otherwise)."""
    i = int(i)
    if not 0 <= i < n:
        raise N6Error(f"{source}: {what} is {i}, outside 0..{n - 1}; the .tflite file is corrupt: re-export it")
    return i


def _import(buf, source):
    model = fb.root_table(buf)
    subgraphs = model.tables(fb.MODEL["subgraphs"])
    if not subgraphs:
        raise N6Error(f"{source} has no subgraph; export a model with one inference graph")
    sg = subgraphs[0]
    buffers = model.tables(fb.MODEL["buffers"])
    _verify_unread(model, sg, buffers)
    codes = []
    for c in model.tables(fb.MODEL["operator_codes"]):
        code = max(c.scalar(fb.OPERATOR_CODE["deprecated_builtin_code"], "b", 0),
                   c.scalar(fb.OPERATOR_CODE["builtin_code"], "i", 0))
        codes.append(fb.BUILTIN_NAME.get(code) or EXTRA_BUILTINS.get(code) or
                     printable(c.string(fb.OPERATOR_CODE["custom_code"]) or "") or f"BUILTIN_{code}")

    # tensors
    raw = sg.tables(fb.SUBGRAPH["tensors"])
    if not raw:
        raise N6Error(f"{source} has no tensors; re-export the .tflite file")
    names = _tensor_names(raw)
    tensors = {}
    for i, t in enumerate(raw):
        name = names[i]
        shp = t.vector(fb.TENSOR["shape"], np.int32)
        shape = check_shape(shp if shp is not None else (), f"{source}: tensor {quoted(name)}",
                            "re-export the .tflite file")
        tcode = t.scalar(fb.TENSOR["type"], "b", 0)
        dtype = fb.TENSOR_TYPE.get(tcode)
        scale = zp = axis = None
        q = t.table(fb.TENSOR["quantization"])
        if q is not None:
            s = q.vector(fb.QUANTIZATION["scale"], np.float32)
            if s is not None and s.size:
                scale = np.array(s, dtype=np.float32)
                z = q.vector(fb.QUANTIZATION["zero_point"], np.int64)
                if z is None or z.size not in (1, scale.size):
                    raise N6Error(f"tensor {quoted(name)} has {scale.size} scale(s) but "
                                  f"{0 if z is None else z.size} zero-point(s); the .tflite file is corrupt: re-export "
                                  f"it")
                zp = np.array(z, dtype=np.int64)
                if zp.size == 1 and scale.size > 1:
                    zp = np.repeat(zp, scale.size)
                if scale.size > 1:
                    axis = int(q.scalar(fb.QUANTIZATION["quantized_dimension"], "i", 0))
                    if not 0 <= axis < len(shape) or shape[axis] != scale.size:
                        raise N6Error(f"tensor {quoted(name)} has {scale.size} per-channel scales along "
                                      f"quantized_dimension {axis} of shape {list(shape)}; re-export the .tflite file")
        data = None
        bidx = t.scalar(fb.TENSOR["buffer"], "I", 0)
        if bidx != 0:
            bidx = _index(bidx, len(buffers), f"the buffer index of tensor {quoted(name)}", source)
            raw_bytes = _buffer_bytes(buf, buffers[bidx], bidx, source)
            if raw_bytes is not None and raw_bytes.size:
                if dtype is None:
                    raise N6Error(f"constant tensor {quoted(name)} has unsupported TFLite type "
                                  f"{fb.TENSOR_TYPE_NAME.get(tcode, tcode)}; {HOW_TO_QUANTIZE}")
                need = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
                if raw_bytes.size != need:
                    raise N6Error(f"constant tensor {quoted(name)} holds {raw_bytes.size} bytes but its shape "
                                  f"{list(shape)} of {np.dtype(dtype).name} needs {need}; re-export the .tflite file")
                data = np.frombuffer(raw_bytes.tobytes(), dtype=np.dtype(dtype).newbyteorder("<"))
                data = data.astype(dtype).reshape(shape)
        tensors[name] = Tensor(name, shape, np.dtype(dtype) if dtype is not None else None,
                               scale, zp, axis, data)

    def io(field):
        v = sg.vector(fb.SUBGRAPH[field], np.int32)
        v = [] if v is None else v
        if len(v) == 0:
            raise N6Error(f"{source} has no {field}; re-export the .tflite file")
        return [names[_index(i, len(names), f"a model {field[:-1]}'s tensor index", source)] for i in v]

    inputs, outputs = io("inputs"), io("outputs")
    inputs, float_inputs, absorbed = _float_inputs(sg, codes, names, tensors, inputs, outputs, source)
    dequantized = _dequantized_outputs(sg, codes, names)
    for n in inputs + outputs:
        t = tensors[n]
        if n in outputs and n in dequantized and t.dtype == np.float32:
            continue               # a float32 output made by DEQUANTIZE of an int8 tensor (checked at that op)
        if t.dtype != np.int8 or t.scale is None:
            kind = "input" if n in inputs else "output"
            raise N6Error(f"model {kind} {quoted(n)} is {_tname(t)}"
                          f"{'' if t.scale is not None else ' (not quantized)'}: "
                          f"the model must be fully int8-quantized; {HOW_TO_QUANTIZE}")

    _check_supported(sg, codes, names, source)
    nodes = []
    used_layers = set()
    for k, op in enumerate(sg.tables(fb.SUBGRAPH["operators"])):
        if k in absorbed:          # the QUANTIZE of a float32 input: applied by the runtime (input_boundary float32)
            continue
        oc = _index(op.scalar(fb.OPERATOR["opcode_index"], "I", 0), len(codes), f"operator {k}'s opcode_index",
                    source)
        opname = codes[oc]
        vin = op.vector(fb.OPERATOR["inputs"], np.int32)
        vout = op.vector(fb.OPERATOR["outputs"], np.int32)
        ins = [None if i == -1 else names[_index(i, len(names), f"an input tensor index of operator {k} ({opname})",
                                                  source)] for i in (vin if vin is not None else [])]
        outs = [names[_index(i, len(names), f"an output tensor index of operator {k} ({opname})", source)]
                for i in (vout if vout is not None else [])]
        layer = _unique(printable(outs[0]) if outs else f"op_{k}", used_layers)
        n_in = MIN_INPUTS.get(opname, 1)
        multi = opname in MULTI_OUTPUT_OPS
        if (len(outs) < 1 if multi else len(outs) != 1) or len(ins) < n_in or any(i is None for i in ins[:n_in]):
            raise N6Error(f"layer '{layer}' ({opname}) has inputs {len(ins)} / outputs {len(outs)}; it needs "
                          f"{n_in} input(s) and {'1 or more outputs' if multi else '1 output'}: re-export the .tflite "
                          f"file")
        opt_name = fb.OPERATOR_OPTIONS.get(opname)
        opts = {}
        if opt_name:
            otype = op.scalar(fb.OPERATOR["builtin_options_type"], "B", 0)
            # options of another op's type are ignored (as tflite-micro's builtin_options_as_X() does): defaults
            table = op.table(fb.OPERATOR["builtin_options"]) if otype == fb.OPTIONS_TYPE[opt_name] else None
            opts = fb.read_options(table, opt_name)
        if multi:        # one IR node per output, each named after its output (the first: the layer name)
            nodes += _split(opname, [layer] + [_unique(printable(o), used_layers) for o in outs[1:]], ins, outs,
                            tensors)
            continue
        nodes.append(_convert(opname, layer, ins, outs, opts, tensors))
    return Graph(tensors, nodes, inputs, outputs, source, float_inputs)


def _float_inputs(sg, codes, names, tensors, inputs, outputs, source):
    """float32 model inputs: each must be read by exactly one QUANTIZE float32 -> int8 (per-tensor, same shape) and by
    nothing else. That QUANTIZE is absorbed: its int8 output becomes the graph input (the buffer the application fills
    when it quantizes itself, input_boundary 'int8'), listed in Graph.float_inputs so that a runtime with
    input_boundary 'float32' applies it (tflite-micro's AffineQuantize, see emu.graph.prepare.quantize_float).
    Returns (inputs, float_inputs, indices of the absorbed operators)."""
    floats = [n for n in inputs if tensors[n].dtype == np.float32]
    if not floats:
        return inputs, (), set()
    readers = {n: [] for n in floats}
    for k, op in enumerate(sg.tables(fb.SUBGRAPH["operators"])):
        oc = _index(op.scalar(fb.OPERATOR["opcode_index"], "I", 0), len(codes), f"operator {k}'s opcode_index",
                    source)
        vin = op.vector(fb.OPERATOR["inputs"], np.int32)
        vout = op.vector(fb.OPERATOR["outputs"], np.int32)
        for i in (vin if vin is not None else []):
            if 0 <= i < len(names) and names[i] in readers:
                readers[names[i]].append((k, codes[oc], [] if vout is None else [int(o) for o in vout]))
    inputs, float_inputs, absorbed = list(inputs), [], set()
    for n in floats:
        r = readers[n]
        if n in outputs or len(r) != 1 or r[0][1] != "QUANTIZE" or len(r[0][2]) != 1:
            what = "is also a model output" if n in outputs else \
                f"is read by {len(r)} op{'' if len(r) == 1 else 's'} ({', '.join(x[1] for x in r) or 'none'})"
            raise N6Error(f"model input {quoted(n)} is float32 and {what}: the model must be fully int8-quantized (a "
                          f"float32 input may only feed one QUANTIZE float32 -> int8); {HOW_TO_QUANTIZE}")
        k, _, (o,) = r[0]
        q = names[_index(o, len(names), f"the output tensor index of operator {k} (QUANTIZE)", source)]
        tq = tensors[q]
        if tq.dtype != np.int8 or tq.scale is None or tq.scale.size != 1 or tuple(tq.shape) != tuple(tensors[n].shape):
            raise N6Error(f"layer {quoted(q)} (QUANTIZE) quantizes the float32 input {quoted(n)} into {_tname(tq)} "
                          f"{list(tq.shape)}{'' if tq.scale is None or tq.scale.size == 1 else ' (per-channel)'}; "
                          f"only per-tensor int8 of the input's shape {list(tensors[n].shape)} is supported: "
                          f"{HOW_TO_QUANTIZE}")
        inputs[inputs.index(n)] = q
        float_inputs.append(q)
        absorbed.add(k)
    return inputs, tuple(float_inputs), absorbed


def _dequantized_outputs(sg, codes, names):
    """Names of the tensors a DEQUANTIZE op writes (the float32 outputs of a model with float I/O)."""
    out = set()
    for op in sg.tables(fb.SUBGRAPH["operators"]):
        oc = op.scalar(fb.OPERATOR["opcode_index"], "I", 0)
        vout = op.vector(fb.OPERATOR["outputs"], np.int32)
        if oc < len(codes) and codes[oc] == "DEQUANTIZE" and vout is not None:
            out.update(names[int(i)] for i in vout if 0 <= int(i) < len(names))
    return out


def _check_supported(sg, codes, names, source):
    """Every unsupported op of the model at once, one line: 'unsupported ops: GRU (2 layers: 'a', 'b'), ...'
    (layers named like the importer names them: by their first output tensor)."""
    bad, used = {}, set()
    for k, op in enumerate(sg.tables(fb.SUBGRAPH["operators"])):
        oc = _index(op.scalar(fb.OPERATOR["opcode_index"], "I", 0), len(codes), f"operator {k}'s opcode_index",
                    source)
        vout = op.vector(fb.OPERATOR["outputs"], np.int32)
        outs = [names[_index(i, len(names), f"an output tensor index of operator {k} ({codes[oc]})", source)]
                for i in (vout if vout is not None else [])]
        layer = _unique(printable(outs[0]) if outs else f"op_{k}", used)
        if codes[oc] not in SUPPORTED_OPS:
            bad.setdefault(codes[oc], []).append(layer)
    if bad:
        parts = []
        for op, layers in bad.items():
            shown = ", ".join(quoted(x) for x in layers[:5]) + (f", ... ({len(layers) - 5} more)" if len(layers) > 5
                                                                 else "")
            parts.append(f"{op} ({len(layers)} layer{'s' if len(layers) > 1 else ''}: {shown})")
        raise N6Error(f"{source}: unsupported ops: {', '.join(parts)}; supported: {', '.join(SUPPORTED_OPS)}")


def _verify_unread(model, sg, buffers):
    """Bounds of the fields the importer does not use but tflite-micro reads (strings, vectors): a corrupt one is
    refused here as the FlatBuffers verifier would, instead of being ignored (tflite-micro crashes on some)."""
    model.string(fb.MODEL["description"])
    sg.string(fb.SUBGRAPH["name"])
    for c in model.tables(fb.MODEL["operator_codes"]):
        c.string(fb.OPERATOR_CODE["custom_code"])
        c.scalar(fb.OPERATOR_CODE["version"], "i", 1)
    for t in sg.tables(fb.SUBGRAPH["tensors"]):
        t.scalar(fb.TENSOR["is_variable"], "?", False)
        q = t.table(fb.TENSOR["quantization"])
        if q is not None:
            q.vector(fb.QUANTIZATION["min"], np.float32)
            q.vector(fb.QUANTIZATION["max"], np.float32)
            if q.scalar(fb.QUANTIZATION["details_type"], "B", 0) != 0:
                raise fb.FlatBufferError("custom quantization details are not supported")
    for op in sg.tables(fb.SUBGRAPH["operators"]):
        op.vector(fb.OPERATOR["custom_options"], np.uint8)
    for b in buffers:
        b.scalar(fb.BUFFER["offset"], "Q", 0)
        b.scalar(fb.BUFFER["size"], "Q", 0)


def _buffer_bytes(buf, b, index, source):
    """The bytes of Buffer `b` (uint8 array, or None when empty): its `data` vector when not empty (what tflite-micro
    reads, and LiteRT first), else, in TFLite's large-model layout (files over 2 GB), `size` bytes at `offset` from
    the start of the file (offset > 1 marks such a buffer, as LiteRT and Vela read it; offset 1 is the converter's
    placeholder). An offset/size outside the file is a one-line N6Error."""
    data = b.vector(fb.BUFFER["data"], np.uint8)
    offset, size = b.scalar(fb.BUFFER["offset"], "Q", 0), b.scalar(fb.BUFFER["size"], "Q", 0)
    if (data is not None and data.size) or offset <= 1:
        return data
    if offset + size > len(buf):
        raise N6Error(f"{source}: buffer {index} is stored at offset {offset} with size {size}, past the end of "
                      f"the {len(buf)}-byte file; the file is truncated or corrupt: copy or re-export the .tflite "
                      f"file")
    return np.frombuffer(buf, np.uint8, count=size, offset=offset)


MIN_INPUTS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "ADD": 2, "MUL": 2, "PAD": 2, "PADV2": 2,
              "TRANSPOSE": 2, "SUB": 2, "MAXIMUM": 2, "MINIMUM": 2, "STRIDED_SLICE": 4, "MEAN": 2,
              "PRELU": 2, "SPLIT": 2, "SPLIT_V": 3}
MULTI_OUTPUT_OPS = ("SPLIT", "SPLIT_V")
EXTRA_BUILTINS = {102: "SPLIT_V"}     # builtin codes the importer reads that emu.graph.tflite_fb does not name
SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "SOFTMAX", "ADD",
                 "SUB", "MUL", "MAXIMUM", "MINIMUM", "CONCATENATION", "PAD", "PADV2", "RESHAPE", "SQUEEZE",
                 "EXPAND_DIMS", "TRANSPOSE", "STRIDED_SLICE", "QUANTIZE", "LOGISTIC", "TANH", "LEAKY_RELU",
                 "HARD_SWISH", "MEAN", "PRELU", "SPLIT", "SPLIT_V", "DEQUANTIZE")

MIN_INPUTS["BATCH_MATMUL"] = 2
SUPPORTED_OPS += ("BATCH_MATMUL",)


def _tname(t):
    return np.dtype(t.dtype).name if t.dtype is not None else "an unsupported type"


def _require_int8(layer, opname, tensors, names):
    for n in names:
        t = tensors[n]
        if t.dtype != np.int8 or t.scale is None:
            raise N6Error(f"layer '{layer}' ({opname}) has {_tname(t)} tensor {n!r}: the model must be fully "
                          f"int8-quantized; {HOW_TO_QUANTIZE}")


def _activation(layer, opname, opts):
    code = opts.get("fused_activation_function", 0)
    act = fb.ACTIVATION.get(code)
    if act is None:
        raise N6Error(f"layer '{layer}' ({opname}) has fused_activation_function = {code}, not a TFLite activation "
                      f"(0..{max(fb.ACTIVATION)}); the .tflite file is corrupt: re-export it")
    if act not in FUSED_ACTIVATIONS:
        raise N6Error(f"layer '{layer}' ({opname}) uses fused activation {act}, unsupported; "
                      f"use NONE, RELU, RELU6 or RELU_N1_TO_1")
    return act


def _positive(layer, opname, opts, *fields):
    """Integer options that must be >= 1 (strides, dilations, filter sizes), checked before any use."""
    for f in fields:
        if opts[f] < 1:
            raise N6Error(f"layer '{layer}' ({opname}) has {f} = {opts[f]}; it must be >= 1: the .tflite file is "
                          f"corrupt, re-export it")


def _rank(layer, opname, tensors, names, rank):
    for n in names:
        if len(tensors[n].shape) != rank:
            raise N6Error(f"layer '{layer}' ({opname}) needs {rank}-D tensors, {quoted(n)} has shape "
                          f"{list(tensors[n].shape)}; re-export the .tflite file")


def _same_or_valid(layer, opname, padding, in_h, in_w, k_h, k_w, s_h, s_w, d_h, d_w, out_h, out_w):
    """Explicit paddings (top, bottom, left, right) with TFLite's rule; checks the stored output size."""
    pad_name = fb.PADDING.get(padding, "?")
    eff_h, eff_w = (k_h - 1) * d_h + 1, (k_w - 1) * d_w + 1
    if pad_name == "SAME":
        exp_h, exp_w = (in_h + s_h - 1) // s_h, (in_w + s_w - 1) // s_w
    elif pad_name == "VALID":
        exp_h, exp_w = (in_h - eff_h + s_h) // s_h, (in_w - eff_w + s_w) // s_w
    else:
        raise N6Error(f"layer '{layer}' ({opname}) has padding = {padding}, not SAME (0) or VALID (1); the .tflite "
                      f"file is corrupt: re-export it")
    if eff_h > in_h and pad_name == "VALID" or eff_w > in_w and pad_name == "VALID":
        raise N6Error(f"layer '{layer}' ({opname}): the {eff_h}x{eff_w} window is larger than the {in_h}x{in_w} input "
                      f"with VALID padding; re-export the model")
    if (exp_h, exp_w) != (out_h, out_w):
        raise N6Error(f"layer '{layer}' ({opname}) output is {out_h}x{out_w} but {pad_name} padding gives "
                      f"{exp_h}x{exp_w}; re-export the model")
    tot_h = max((out_h - 1) * s_h + eff_h - in_h, 0)
    tot_w = max((out_w - 1) * s_w + eff_w - in_w, 0)
    return dict(padding=pad_name, pad_top=tot_h // 2, pad_bottom=tot_h - tot_h // 2,
                pad_left=tot_w // 2, pad_right=tot_w - tot_w // 2)


def _convert(opname, layer, ins, outs, opts, tensors):
    def t(n):
        return tensors[n]

    if opname in ("SVDF", "UNIDIRECTIONAL_SEQUENCE_LSTM"):
        return _recurrent(opname, layer, ins, outs, opts, tensors)

    if opname in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        _require_int8(layer, opname, tensors, ins[:2] + outs)
        x, w, o = t(ins[0]), t(ins[1]), t(outs[0])
        bias = ins[2] if len(ins) > 2 else None
        if bias is not None and t(bias).dtype != np.int32:
            raise N6Error(f"layer '{layer}' ({opname}) has a {_tname(t(bias))} bias; int8 models need int32 "
                          f"biases; {HOW_TO_QUANTIZE}")
        _rank(layer, opname, tensors, [ins[0], ins[1], outs[0]], 4)
        _positive(layer, opname, opts, "stride_h", "stride_w", "dilation_h_factor", "dilation_w_factor")
        s_h, s_w = opts["stride_h"], opts["stride_w"]
        d_h, d_w = opts["dilation_h_factor"], opts["dilation_w_factor"]
        attrs = dict(stride_h=s_h, stride_w=s_w, dilation_h=d_h, dilation_w=d_w,
                     activation=_activation(layer, opname, opts))
        attrs.update(_same_or_valid(layer, opname, opts["padding"], x.shape[1], x.shape[2], w.shape[1],
                                    w.shape[2], s_h, s_w, d_h, d_w, o.shape[1], o.shape[2]))
        if opname == "CONV_2D":
            if x.shape[3] % w.shape[3] or w.shape[0] % (x.shape[3] // w.shape[3]):
                raise N6Error(f"layer '{layer}' (CONV_2D): input channels {x.shape[3]} and filter {w.shape} "
                              f"do not form whole groups; re-export the model")
            attrs["groups"] = x.shape[3] // w.shape[3]
            return Node("conv2d", layer, [ins[0], ins[1], bias], outs, attrs)
        attrs["ch_mult"] = o.shape[3] // x.shape[3]
        if o.shape[3] != x.shape[3] * attrs["ch_mult"] or w.shape[3] != o.shape[3]:
            raise N6Error(f"layer '{layer}' (DEPTHWISE_CONV_2D): output channels {o.shape[3]} are not a multiple "
                          f"of input channels {x.shape[3]}; re-export the model")
        if opts["depth_multiplier"] != attrs["ch_mult"]:
            # tflite-micro's kernel loops over depth_multiplier output channels per input channel
            raise N6Error(f"layer '{layer}' (DEPTHWISE_CONV_2D) has depth_multiplier = {opts['depth_multiplier']} "
                          f"but {x.shape[3]} input and {o.shape[3]} output channels need {attrs['ch_mult']}; "
                          f"the .tflite file is corrupt: re-export it")
        return Node("depthwise_conv2d", layer, [ins[0], ins[1], bias], outs, attrs)

    if opname == "FULLY_CONNECTED":
        _require_int8(layer, opname, tensors, ins[:2] + outs)
        if opts["keep_num_dims"] not in (0, 1):
            raise N6Error(f"layer '{layer}' (FULLY_CONNECTED) has keep_num_dims = {opts['keep_num_dims']}; "
                          f"re-export the model")
        if opts["weights_format"] != 0:
            raise N6Error(f"layer '{layer}' (FULLY_CONNECTED) uses shuffled weights; export with DEFAULT weights")
        bias = ins[2] if len(ins) > 2 else None
        if bias is not None and t(bias).dtype != np.int32:
            raise N6Error(f"layer '{layer}' (FULLY_CONNECTED) has a {_tname(t(bias))} bias; {HOW_TO_QUANTIZE}")
        return Node("fully_connected", layer, [ins[0], ins[1], bias], outs,
                    dict(activation=_activation(layer, opname, opts), keep_num_dims=bool(opts["keep_num_dims"])))

    if opname in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        _rank(layer, opname, tensors, [ins[0], outs[0]], 4)
        _positive(layer, opname, opts, "filter_height", "filter_width", "stride_h", "stride_w")
        x, o = t(ins[0]), t(outs[0])
        k_h, k_w, s_h, s_w = opts["filter_height"], opts["filter_width"], opts["stride_h"], opts["stride_w"]
        attrs = dict(kernel_h=k_h, kernel_w=k_w, stride_h=s_h, stride_w=s_w,
                     activation=_activation(layer, opname, opts))
        attrs.update(_same_or_valid(layer, opname, opts["padding"], x.shape[1], x.shape[2], k_h, k_w, s_h, s_w,
                                    1, 1, o.shape[1], o.shape[2]))
        return Node("avg_pool" if opname == "AVERAGE_POOL_2D" else "max_pool", layer, ins[:1], outs, attrs)

    if opname == "SOFTMAX":
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        beta = float(np.float32(opts["beta"]))
        if not (np.isfinite(beta) and beta > 0):
            raise N6Error(f"layer '{layer}' (SOFTMAX) has beta = {beta}; it must be a finite number > 0: re-export "
                          f"the model")
        return Node("softmax", layer, ins[:1], outs, dict(beta=beta))

    if opname in ("ADD", "MUL", "SUB"):
        _require_int8(layer, opname, tensors, ins[:2] + outs)
        return Node(opname.lower(), layer, ins[:2], outs, dict(activation=_activation(layer, opname, opts)))

    if opname in ("MAXIMUM", "MINIMUM"):
        _require_int8(layer, opname, tensors, ins[:2] + outs)
        _same_quantization(layer, opname, tensors, ins[:2] + outs)
        return Node(opname.lower(), layer, ins[:2], outs, dict(activation="NONE"))

    if opname == "CONCATENATION":
        _require_int8(layer, opname, tensors, ins + outs)
        if _activation(layer, opname, opts) != "NONE":
            raise N6Error(f"layer '{layer}' (CONCATENATION) has a fused activation; tflite-micro supports none: "
                          f"re-export the model")
        _same_quantization(layer, opname, tensors, ins + outs)
        rank = len(t(outs[0]).shape)
        axis = opts["axis"]
        if not -rank <= axis < rank:
            raise N6Error(f"layer '{layer}' (CONCATENATION) has axis {axis} for {rank}-D tensors; re-export the model")
        return Node("concat", layer, list(ins), outs, dict(axis=axis % rank, activation="NONE"))

    if opname in ("LOGISTIC", "TANH"):
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        return Node("sigmoid" if opname == "LOGISTIC" else "tanh", layer, ins[:1], outs, dict(activation="NONE"))

    if opname == "MEAN":
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        shape = t(ins[0]).shape
        ax = t(ins[1]).data if len(ins) > 1 and ins[1] is not None else None
        if ax is None or ax.dtype not in (np.int32, np.int64):
            raise N6Error(f"layer '{layer}' (MEAN) needs constant int32 axes; freeze them in the model")
        rank = len(shape)
        axes = sorted({int(v) % rank for v in ax.reshape(-1) if -rank <= int(v) < rank})
        if len(axes) != ax.size or axes != list(range(axes[0], axes[-1] + 1)):
            raise N6Error(f"layer '{layer}' (MEAN) reduces axes {[int(v) for v in ax.reshape(-1)]} of a {rank}-D "
                          f"tensor; only one contiguous run of distinct axes is supported: re-export the model")
        outer = int(np.prod(shape[:axes[0]], dtype=np.int64))
        k = int(np.prod(shape[axes[0]:axes[-1] + 1], dtype=np.int64))
        inner = int(np.prod(shape[axes[-1] + 1:], dtype=np.int64))
        return Node("reduce_mean", layer, ins[:1], outs, dict(rows=outer * inner, k=k, inner=inner,
                                                              activation="NONE"))

    if opname == "HARD_SWISH":
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        return Node("hard_swish", layer, ins[:1], outs, dict(activation="NONE"))

    if opname == "LEAKY_RELU":
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        alpha = float(np.float32(opts["alpha"]))
        if not np.isfinite(alpha):
            raise N6Error(f"layer '{layer}' (LEAKY_RELU) has alpha = {alpha}; re-export the model")
        return Node("leaky_relu", layer, ins[:1], outs, dict(activation="NONE", alpha=alpha))

    if opname == "PRELU":
        _require_int8(layer, opname, tensors, ins[:2] + outs)
        x, al, o = t(ins[0]), t(ins[1]), t(outs[0])
        if al.data is None:
            raise N6Error(f"layer '{layer}' (PRELU) has a non-constant alpha; freeze it in the model")
        if al.scale.size != 1:
            raise N6Error(f"layer '{layer}' (PRELU) has a per-channel quantized alpha; tflite-micro uses one alpha "
                          f"scale: re-export the model")
        if len(o.shape) > 4 or len(al.shape) > 4:
            raise N6Error(f"layer '{layer}' (PRELU) has {max(len(o.shape), len(al.shape))}-D tensors; tflite-micro "
                          f"supports at most 4-D: re-export the model")
        if tuple(x.shape) != tuple(o.shape):
            raise N6Error(f"layer '{layer}' (PRELU): input {list(x.shape)} and output {list(o.shape)} differ; only "
                          f"the alpha may broadcast: re-export the model")
        return Node("prelu", layer, ins[:2], outs, dict(activation="NONE"))

    if opname == "BATCH_MATMUL":
        return _batch_matmul(layer, ins, outs, opts, tensors)

    if opname == "DEQUANTIZE":
        _require_int8(layer, opname, tensors, ins[:1])
        o = t(outs[0])
        if o.dtype != np.float32 or tuple(o.shape) != tuple(t(ins[0]).shape):
            raise N6Error(f"layer '{layer}' (DEQUANTIZE) writes {_tname(o)} {list(o.shape)}; only int8 -> float32 of "
                          f"the same shape is supported: re-export the model")
        if t(ins[0]).scale.size != 1:
            raise N6Error(f"layer '{layer}' (DEQUANTIZE) reads a per-channel quantized tensor; re-export the model")
        return Node("dequantize", layer, ins[:1], outs, dict(activation="NONE"))

    if opname == "QUANTIZE":
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        return Node("requantize", layer, ins[:1], outs, dict(activation="NONE"))

    if opname in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        return Node("reshape", layer, ins[:1], outs, dict(shape=tuple(t(outs[0]).shape)))

    if opname in ("PAD", "PADV2"):
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        pads = t(ins[1]).data if len(ins) > 1 and ins[1] is not None else None
        if pads is None:
            raise N6Error(f"layer '{layer}' ({opname}) has non-constant paddings; freeze them in the model")
        if pads.dtype not in (np.int32, np.int64) or pads.shape != (len(t(ins[0]).shape), 2):
            raise N6Error(f"layer '{layer}' ({opname}) has paddings of shape {list(pads.shape)} "
                          f"({np.dtype(pads.dtype).name}); it needs int32 [{len(t(ins[0]).shape)}, 2]: "
                          f"re-export the model")
        pads = [(int(a), int(b)) for a, b in np.asarray(pads).reshape(-1, 2)]
        value = None          # PAD: the output zero-point
        if opname == "PADV2" and len(ins) > 2 and ins[2] is not None:
            c = t(ins[2])
            if c.data is None or c.dtype != np.int8:
                raise N6Error(f"layer '{layer}' (PADV2) needs a constant int8 pad value; freeze it in the model")
            value = int(c.data.reshape(-1)[0])
        return Node("pad", layer, ins[:1], outs, dict(pads=pads, pad_value=value))

    if opname == "STRIDED_SLICE":
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        _same_quantization(layer, opname, tensors, ins[:1] + outs)
        return Node("strided_slice", layer, ins[:1], outs, _strided_slice(layer, t(ins[0]).shape, ins, opts, t,
                                                                          t(outs[0]).shape))

    if opname == "TRANSPOSE":
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        perm = t(ins[1]).data if len(ins) > 1 else None
        if perm is None:
            raise N6Error(f"layer '{layer}' (TRANSPOSE) has a non-constant permutation; freeze it in the model")
        if perm.dtype not in (np.int32, np.int64):
            raise N6Error(f"layer '{layer}' (TRANSPOSE) has a {np.dtype(perm.dtype).name} permutation; it needs "
                          f"int32: re-export the model")
        return Node("transpose", layer, ins[:1], outs, dict(perm=tuple(int(p) for p in perm.reshape(-1))))

    raise N6Error(f"unsupported op {opname} in layer '{layer}'; supported: {', '.join(SUPPORTED_OPS)}")


def _batch_matmul(layer, ins, outs, opts, tensors):
    """BATCH_MATMUL int8 (tflite-micro batch_matmul.cc): lhs [..., M, K] (adj_x: [..., K, M]) x rhs [..., K, N]
    (adj_y: [..., N, K]), ranks 2..5, batch dimensions broadcast; either operand may be constant; per-tensor
    quantization only (tflite-micro reads the first scale/zero-point); no fused activation."""
    _require_int8(layer, "BATCH_MATMUL", tensors, ins[:2] + outs)
    a, b, o = (tensors[n] for n in (ins[0], ins[1], outs[0]))
    for x in (a, b, o):
        if x.scale.size != 1:
            raise N6Error(f"layer '{layer}' (BATCH_MATMUL): tensor {quoted(x.name)} is per-channel quantized; "
                          f"tflite-micro's int8 BATCH_MATMUL uses one scale per tensor: re-export the model")
        if not 2 <= len(x.shape) <= 5:
            raise N6Error(f"layer '{layer}' (BATCH_MATMUL): tensor {quoted(x.name)} has shape {list(x.shape)}; "
                          f"tflite-micro supports ranks 2 to 5: re-export the model")
    adj_x, adj_y = bool(opts["adj_x"]), bool(opts["adj_y"])
    am, ak = a.shape[-2:][::-1] if adj_x else a.shape[-2:]
    bk, bn = b.shape[-2:][::-1] if adj_y else b.shape[-2:]
    try:
        batch = np.broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    except ValueError:
        batch = None
    if batch is None or ak != bk or tuple(o.shape) != tuple(batch) + (am, bn):
        raise N6Error(f"layer '{layer}' (BATCH_MATMUL): lhs {list(a.shape)} x rhs {list(b.shape)} (adj_x {adj_x}, "
                      f"adj_y {adj_y}) does not give the output {list(o.shape)}; re-export the model")
    return Node("matmul", layer, ins[:2], outs, dict(activation="NONE", adj_a=adj_x, adj_b=adj_y))


def _split(opname, layers, ins, outs, tensors):
    """SPLIT (inputs: axis, input) and SPLIT_V (input, size_splits, axis): tflite-micro copies consecutive pieces
    along the axis, each as long as its output tensor's dimension (size_splits is not read). One strided_slice
    node per output."""
    layer = layers[0]
    x_name, axis_name = (ins[1], ins[0]) if opname == "SPLIT" else (ins[0], ins[2])
    _require_int8(layer, opname, tensors, [x_name] + outs)
    _same_quantization(layer, opname, tensors, [x_name] + outs)
    shape = tensors[x_name].shape
    rank = len(shape)
    ax = tensors[axis_name].data
    if ax is None or ax.dtype not in (np.int32, np.int64) or ax.size != 1:
        raise N6Error(f"layer '{layer}' ({opname}) needs a constant int32 scalar axis; freeze it in the model")
    axis = int(ax.reshape(-1)[0])
    if not -rank <= axis < rank:
        raise N6Error(f"layer '{layer}' ({opname}) has axis {axis} for a {rank}-D input; re-export the model")
    axis %= rank
    start, nodes = 0, []
    for lay, o in zip(layers, outs):
        os_ = tensors[o].shape
        if len(os_) != rank or any(os_[k] != shape[k] for k in range(rank) if k != axis):
            raise N6Error(f"layer '{layer}' ({opname}): output {quoted(o)} of shape {list(os_)} is not a piece of the "
                          f"input {list(shape)} along axis {axis}; re-export the model")
        stops = list(shape)
        starts = [0] * rank
        starts[axis], stops[axis] = start, start + os_[axis]
        start += os_[axis]
        nodes.append(Node("strided_slice", lay, [x_name], [o], dict(starts=starts, stops=stops, steps=[1] * rank,
                                                                    shrink=[], in_dim0=int(shape[0]))))
    if start != shape[axis]:
        raise N6Error(f"layer '{layer}' ({opname}): the outputs hold {start} of the {shape[axis]} values along axis "
                      f"{axis}; re-export the model")
    return nodes


def _strided_slice(layer, shape, ins, opts, t, out_shape):
    """TFLM StridedSlice geometry resolved per axis (StartForAxis / StopForAxis of TFLite's strided_slice_logic):
    attrs starts, stops (-1: before index 0 for a negative stride), steps and the shrunk axes."""
    vals = []
    for n, what in zip(ins[1:4], ("begin", "end", "strides")):
        c = t(n)
        if c.data is None or c.dtype not in (np.int32, np.int64) or c.data.size != len(shape):
            raise N6Error(f"layer '{layer}' (STRIDED_SLICE) needs a constant int32 {what} of {len(shape)} values; "
                          f"freeze it in the model")
        vals.append([int(v) for v in c.data.reshape(-1)])
    begin, end, strides = vals
    if opts["ellipsis_mask"] or opts["new_axis_mask"]:
        raise N6Error(f"layer '{layer}' (STRIDED_SLICE) uses an ellipsis or new-axis mask, unsupported; re-export "
                      f"the model without them")
    if opts["offset"]:
        raise N6Error(f"layer '{layer}' (STRIDED_SLICE) uses offset = true, which tflite-micro does not run; "
                      f"re-export the model")
    starts, stops, shrink = [], [], []
    for ax, dim in enumerate(shape):
        st = strides[ax]
        if st == 0:
            raise N6Error(f"layer '{layer}' (STRIDED_SLICE) has stride 0 on axis {ax}; re-export the model")
        if opts["begin_mask"] >> ax & 1:
            start = 0 if st > 0 else dim - 1
        else:
            start = begin[ax] + dim if begin[ax] < 0 else begin[ax]
            start = min(max(start, 0), dim) if st > 0 else min(max(start, -1), dim - 1)
        if opts["shrink_axis_mask"] >> ax & 1:
            if st < 0:      # tflite-micro's loop then copies nothing and leaves the output unwritten
                raise N6Error(f"layer '{layer}' (STRIDED_SLICE) shrinks axis {ax} with stride {st}; a shrunk axis "
                              f"needs a positive stride (tflite-micro copies nothing otherwise): re-export the model")
            if not 0 <= start < dim:
                raise N6Error(f"layer '{layer}' (STRIDED_SLICE) shrinks axis {ax} at index {begin[ax]} of "
                              f"{dim}; re-export the model")
            stop, shrink = start + 1, shrink + [ax]
            strides[ax] = 1
        elif opts["end_mask"] >> ax & 1:
            stop = dim if st > 0 else -1
        else:
            stop = end[ax] + dim if end[ax] < 0 else end[ax]
            stop = min(max(stop, 0), dim) if st > 0 else min(max(stop, -1), dim - 1)
        starts.append(start)
        stops.append(stop)
    lengths = [len(range(a, b, c)) for a, b, c in zip(starts, stops, strides)]
    kept = [n for ax, n in enumerate(lengths) if ax not in shrink]
    if any(n < 1 for n in lengths) or tuple(kept) != tuple(out_shape):
        raise N6Error(f"layer '{layer}' (STRIDED_SLICE): the slice gives shape {kept}, the output tensor has "
                      f"{list(out_shape)}; re-export the model")
    return dict(starts=starts, stops=stops, steps=list(strides), shrink=shrink, in_dim0=int(shape[0]))


def _same_quantization(layer, opname, tensors, names):
    """Ops that move int8 values without rescaling (tflite-micro requires equal scale and zero-point)."""
    t0 = tensors[names[0]]
    for n in names[1:]:
        t = tensors[n]
        if t.scale.size != 1 or float(t.scale[0]) != float(t0.scale[0]) or int(t.zero_point[0]) != \
                int(t0.zero_point[0]):
            raise N6Error(f"layer '{layer}' ({opname}): tensor {quoted(n)} has scale {float(t.scale[0]):.9g} / "
                          f"zero-point {int(t.zero_point[0])} but {quoted(names[0])} has {float(t0.scale[0]):.9g} / "
                          f"{int(t0.zero_point[0])}; tflite-micro needs them equal: re-export the model")


# ---- recurrent ops (emu.graph.ops.recurrent): SVDF and UNIDIRECTIONAL_SEQUENCE_LSTM -------------------------------

MIN_INPUTS.update(SVDF=3, UNIDIRECTIONAL_SEQUENCE_LSTM=1)      # absent optional inputs are named by _recurrent
SUPPORTED_OPS += ("SVDF", "UNIDIRECTIONAL_SEQUENCE_LSTM")
# UNIDIRECTIONAL_SEQUENCE_LSTM inputs tflite-micro's standard LSTM refuses (lstm_shared.h indices) -> the feature
LSTM_VARIANT_INPUTS = {9: "peephole connections (cell_to_input weights)", 10: "peephole connections",
                       11: "peephole connections", 16: "a projection layer", 17: "a projection bias",
                       20: "layer normalization", 21: "layer normalization", 22: "layer normalization",
                       23: "layer normalization"}


def _recurrent_tensor(layer, opname, tensors, name, what, dtypes, constant):
    """A recurrent op's constant weight/bias or variable state tensor, checked: one of `dtypes`, quantized per
    tensor, constant (weights) or not (state); returns the Tensor."""
    t = tensors[name]
    kinds = " or ".join(np.dtype(d).name for d in dtypes)
    if t.dtype not in [np.dtype(d) for d in dtypes] or (t.scale is None and t.dtype != np.int32):
        raise N6Error(f"layer '{layer}' ({opname}) has {_tname(t)} {what} {quoted(name)}"
                      f"{' (not quantized)' if t.scale is None else ''}; it needs a quantized {kinds} tensor: "
                      f"{HOW_TO_QUANTIZE}")
    if t.scale is not None and t.scale.size != 1:
        raise N6Error(f"layer '{layer}' ({opname}) has per-channel quantized {what} {quoted(name)}; tflite-micro "
                      f"uses one scale per tensor here: re-export the model")
    if constant and t.data is None:
        raise N6Error(f"layer '{layer}' ({opname}) has a non-constant {what} {quoted(name)}; freeze it in the model")
    if not constant and t.data is not None:
        raise N6Error(f"layer '{layer}' ({opname}) stores initial values in its state tensor {quoted(name)}; "
                      f"tflite-micro starts variable tensors from zero: re-export the model without them")
    if constant and t.dtype == np.int8 and np.any(t.zero_point != 0):
        raise N6Error(f"layer '{layer}' ({opname}) has {what} {quoted(name)} with zero-point "
                      f"{int(t.zero_point[0])}; tflite-micro needs symmetric int8 weights: re-export the model")
    return t


def _recurrent(opname, layer, ins, outs, opts, tensors):
    """SVDF (tflite-micro svdf.cc, int8 input/output, int16 or int8 state and time weights) and
    UNIDIRECTIONAL_SEQUENCE_LSTM (tflite-micro's standard LSTM, int8 x int8 -> int16 cell: no CIFG, peephole,
    projection or layer norm). Their variable tensors go to attrs["state"]; the node's inputs are the activation
    input and the constants."""
    what = f"layer '{layer}' ({opname})"
    _require_int8(layer, opname, tensors, ins[:1] + outs)
    x, o = tensors[ins[0]], tensors[outs[0]]
    if opname == "SVDF":
        if len(ins) != 5:
            raise N6Error(f"{what} has {len(ins)} inputs; tflite-micro's SVDF takes 5 (input, weights_feature, "
                          f"weights_time, bias, activation state): re-export the model")
        for k, nm in ((3, "bias"), (4, "activation state")):
            if ins[k] is None:
                raise N6Error(f"{what} has no {nm} (input {k}); tflite-micro's int8 SVDF needs one: re-export the "
                              f"model")
        wf = _recurrent_tensor(layer, opname, tensors, ins[1], "weights_feature", (np.int8,), True)
        wt = _recurrent_tensor(layer, opname, tensors, ins[2], "weights_time", (np.int16, np.int8), True)
        b = _recurrent_tensor(layer, opname, tensors, ins[3], "bias", (np.int32,), True)
        st = _recurrent_tensor(layer, opname, tensors, ins[4], "activation state", (np.int16, np.int8), False)
        if st.dtype != wt.dtype:
            raise N6Error(f"{what} has {_tname(wt)} weights_time but a {_tname(st)} activation state; tflite-micro "
                          f"needs both int16 (or both int8): re-export the model")
        rank = int(opts["rank"])
        if rank < 1:
            raise N6Error(f"{what} has rank {rank}; it must be >= 1: re-export the model")
        act = fb.ACTIVATION.get(opts["fused_activation_function"], opts["fused_activation_function"])
        if act not in ("NONE", "RELU"):
            raise N6Error(f"{what} uses fused activation {act}; only NONE or RELU is supported (tflite-micro's int8 "
                          f"SVDF applies neither): re-export the model")
        ok = len(x.shape) == 2 and len(wf.shape) == 2 and len(wt.shape) == 2 and len(st.shape) == 2 and \
            len(o.shape) == 2 and wf.shape[1] == x.shape[1] and wf.shape[0] % rank == 0 and \
            wt.shape[0] == wf.shape[0] and b.shape == (wf.shape[0] // rank,) and \
            tuple(st.shape) == (x.shape[0], wt.shape[1] * wf.shape[0]) and \
            tuple(o.shape) == (x.shape[0], wf.shape[0] // rank)
        if not ok:
            raise N6Error(f"{what}: input {list(x.shape)}, weights_feature {list(wf.shape)}, weights_time "
                          f"{list(wt.shape)}, bias {list(b.shape)}, state {list(st.shape)} and output {list(o.shape)} "
                          f"do not form an SVDF of rank {rank}; re-export the model")
        want = float(np.float32(st.scale[0] * wt.scale[0]))
        if b.scale is None or not abs(float(b.scale[0]) - want) < 1e-5:
            raise N6Error(f"{what}: the bias scale {None if b.scale is None else float(b.scale[0])} is not "
                          f"state scale x weights_time scale ({want:.9g}); tflite-micro refuses it: re-export the "
                          f"model")
        return Node("svdf", layer, ins[:4], outs, dict(rank=rank, activation=act, state=[ins[4]]))

    if len(ins) != 24:
        raise N6Error(f"{what} has {len(ins)} inputs; tflite-micro's LSTM takes 24 (absent optional ones as -1): "
                      f"re-export the model")
    if ins[1] is None:
        raise N6Error(f"{what} uses CIFG (coupled input and forget gates: no input gate weights), unsupported: "
                      f"tflite-micro runs the standard LSTM only; re-export without it")
    for k, feature in LSTM_VARIANT_INPUTS.items():
        if ins[k] is not None:
            raise N6Error(f"{what} uses {feature}, unsupported: tflite-micro runs the standard LSTM only; re-export "
                          f"without it")
    names = dict(enumerate(("input", "input_to_input weights", "input_to_forget weights", "input_to_cell weights",
                            "input_to_output weights", "recurrent_to_input weights", "recurrent_to_forget weights",
                            "recurrent_to_cell weights", "recurrent_to_output weights")))
    names.update({12: "input gate bias", 13: "forget gate bias", 14: "cell gate bias", 15: "output gate bias",
                  18: "output (hidden) state", 19: "cell state"})
    for k, nm in names.items():
        if ins[k] is None:
            raise N6Error(f"{what} has no {nm} (input {k}); tflite-micro's LSTM needs it: re-export the model")
    w = [_recurrent_tensor(layer, opname, tensors, ins[k], names[k], (np.int8,), True) for k in range(1, 9)]
    biases = [_recurrent_tensor(layer, opname, tensors, ins[k], names[k], (np.int32,), True) for k in range(12, 16)]
    h = _recurrent_tensor(layer, opname, tensors, ins[18], "output (hidden) state", (np.int8,), False)
    c = _recurrent_tensor(layer, opname, tensors, ins[19], "cell state", (np.int16,), False)
    act = fb.ACTIVATION.get(opts["fused_activation_function"], opts["fused_activation_function"])
    if act != "TANH":
        raise N6Error(f"{what} has cell activation {act}; tflite-micro's integer LSTM implements TANH only (other "
                      f"codes reach an assertion): re-export the model")
    if opts["diagonal_recurrent_tensors"]:
        raise N6Error(f"{what} uses diagonal recurrent weights, unsupported: re-export the model without them")
    time_major = bool(opts["time_major"])
    if len(x.shape) != 3 or len(o.shape) != 3:
        raise N6Error(f"{what} needs 3-D input and output, got {list(x.shape)} and {list(o.shape)}; re-export the "
                      f"model")
    steps, batch = (x.shape[0], x.shape[1]) if time_major else (x.shape[1], x.shape[0])
    n_in, n_state = x.shape[2], (h.shape[1] if len(h.shape) >= 2 else -1)
    ok = all(tuple(t.shape) == (n_state, n_in) for t in w[:4]) and \
        all(tuple(t.shape) == (n_state, n_state) for t in w[4:]) and all(b.shape == (n_state,) for b in biases) and \
        h.size == batch * n_state and c.size == batch * n_state and tuple(o.shape) == (x.shape[0], x.shape[1], n_state)
    if not ok:
        raise N6Error(f"{what}: input {list(x.shape)} (time_major {time_major}), weights "
                      f"{[list(t.shape) for t in w]}, biases {[list(b.shape) for b in biases]}, states "
                      f"{list(h.shape)} / {list(c.shape)} and output {list(o.shape)} do not form an LSTM; re-export "
                      f"the model")
    power = float(np.log2(np.float64(c.scale[0])))
    if not -40 <= power <= 2:
        raise N6Error(f"{what} has cell state scale {float(c.scale[0]):.9g}; the integer LSTM needs about 2^-40 to "
                      f"2^2 (usually a power of two near 2^-11): re-export the model")
    return Node("lstm", layer, [ins[0]] + list(ins[1:9]) + list(ins[12:16]), outs,
                dict(time_major=time_major, steps=int(steps), batch=int(batch), cell_clip=float(opts["cell_clip"]),
                     activation="NONE", cell_activation="TANH", state=[ins[18], ins[19]]))
