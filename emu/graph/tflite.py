"""TFLite int8 importer: .tflite flatbuffer -> emu.graph.ir.Graph (first subgraph).

Only structure and quantization are read; no float math happens here (see prepare.py). Paddings are
made explicit with TFLite's rule (ComputePaddingHeightWidth): total = max((out-1)*stride + eff_k - in, 0),
before = total // 2, after = total - before; eff_k = (k-1)*dilation + 1.
"""
from pathlib import Path

import numpy as np

from ..errors import N6Error
from . import tflite_fb as fb
from .ir import Graph, Node, Tensor

FUSED_ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
HOW_TO_QUANTIZE = ("convert it with the TFLite converter using a representative dataset, "
                   "optimizations=[tf.lite.Optimize.DEFAULT], supported_ops=[TFLITE_BUILTINS_INT8] and "
                   "inference_input_type/inference_output_type = tf.int8")


def load_tflite(path_or_bytes, name=None):
    """Import an int8 TFLite model (a path or the raw bytes) into a Graph. Raises N6Error."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        buf = bytes(path_or_bytes)
        source = f"tflite:{name or '<bytes>'}"
    else:
        p = Path(path_or_bytes)
        if not p.is_file():
            raise N6Error(f"model file {p} does not exist; pass the path of a .tflite file")
        buf = p.read_bytes()
        source = f"tflite:{p}"
    try:
        return _import(buf, source)
    except fb.FlatBufferError as e:
        raise N6Error(f"{source} is not a valid TFLite flatbuffer ({e}); pass a .tflite model file") from None


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


def _import(buf, source):
    model = fb.root_table(buf)
    subgraphs = model.tables(fb.MODEL["subgraphs"])
    if not subgraphs:
        raise N6Error(f"{source} has no subgraph; export a model with one inference graph")
    sg = subgraphs[0]
    buffers = model.tables(fb.MODEL["buffers"])
    codes = []
    for c in model.tables(fb.MODEL["operator_codes"]):
        code = max(c.scalar(fb.OPERATOR_CODE["deprecated_builtin_code"], "b", 0),
                   c.scalar(fb.OPERATOR_CODE["builtin_code"], "i", 0))
        codes.append(fb.BUILTIN_NAME.get(code, c.string(fb.OPERATOR_CODE["custom_code"]) or f"BUILTIN_{code}"))

    # tensors
    raw = sg.tables(fb.SUBGRAPH["tensors"])
    names = _tensor_names(raw)
    tensors = {}
    for i, t in enumerate(raw):
        name = names[i]
        shp = t.vector(fb.TENSOR["shape"], np.int32)
        shape = tuple(int(d) for d in shp) if shp is not None else ()
        tcode = t.scalar(fb.TENSOR["type"], "b", 0)
        dtype = fb.TENSOR_TYPE.get(tcode)
        scale = zp = axis = None
        q = t.table(fb.TENSOR["quantization"])
        if q is not None:
            s = q.vector(fb.QUANTIZATION["scale"], np.float32)
            if s is not None and s.size:
                scale = np.array(s, dtype=np.float32)
                z = q.vector(fb.QUANTIZATION["zero_point"], np.int64)
                zp = np.array(z, dtype=np.int64) if z is not None and z.size else np.zeros(scale.size, np.int64)
                if zp.size == 1 and scale.size > 1:
                    zp = np.repeat(zp, scale.size)
                if scale.size > 1:
                    axis = int(q.scalar(fb.QUANTIZATION["quantized_dimension"], "i", 0))
        data = None
        bidx = t.scalar(fb.TENSOR["buffer"], "I", 0)
        if 0 < bidx < len(buffers):
            raw_bytes = buffers[bidx].vector(fb.BUFFER["data"], np.uint8)
            if raw_bytes is not None and raw_bytes.size:
                if dtype is None:
                    raise N6Error(f"constant tensor {name!r} has unsupported TFLite type "
                                  f"{fb.TENSOR_TYPE_NAME.get(tcode, tcode)}; {HOW_TO_QUANTIZE}")
                data = np.frombuffer(raw_bytes.tobytes(), dtype=np.dtype(dtype).newbyteorder("<"))
                data = data.astype(dtype).reshape(shape)
        tensors[name] = Tensor(name, shape, np.dtype(dtype) if dtype is not None else None,
                               scale, zp, axis, data)

    inputs = [names[i] for i in sg.vector(fb.SUBGRAPH["inputs"], np.int32)]
    outputs = [names[i] for i in sg.vector(fb.SUBGRAPH["outputs"], np.int32)]
    for n in inputs + outputs:
        t = tensors[n]
        if t.dtype != np.int8 or t.scale is None:
            kind = "input" if n in inputs else "output"
            raise N6Error(f"model {kind} {n!r} is {_tname(t)}{'' if t.scale is not None else ' (not quantized)'}: "
                          f"the model must be fully int8-quantized; {HOW_TO_QUANTIZE}")

    nodes = []
    used_layers = set()
    for k, op in enumerate(sg.tables(fb.SUBGRAPH["operators"])):
        opname = codes[op.scalar(fb.OPERATOR["opcode_index"], "I", 0)]
        ins = [names[i] if i >= 0 else None for i in op.vector(fb.OPERATOR["inputs"], np.int32)]
        outs = [names[i] for i in op.vector(fb.OPERATOR["outputs"], np.int32)]
        layer = _unique(outs[0] if outs else f"op_{k}", used_layers)
        opt_name = fb.OPERATOR_OPTIONS.get(opname)
        opts = fb.read_options(op.table(fb.OPERATOR["builtin_options"]), opt_name) if opt_name else {}
        nodes.append(_convert(opname, layer, ins, outs, opts, tensors))
    return Graph(tensors, nodes, inputs, outputs, source)


def _tname(t):
    return np.dtype(t.dtype).name if t.dtype is not None else "an unsupported type"


def _require_int8(layer, opname, tensors, names):
    for n in names:
        t = tensors[n]
        if t.dtype != np.int8 or t.scale is None:
            raise N6Error(f"layer {layer!r} ({opname}) has {_tname(t)} tensor {n!r}: the model must be fully "
                          f"int8-quantized; {HOW_TO_QUANTIZE}")


def _activation(layer, opname, opts):
    act = fb.ACTIVATION.get(opts.get("fused_activation_function", 0), "?")
    if act not in FUSED_ACTIVATIONS:
        raise N6Error(f"layer {layer!r} ({opname}) uses fused activation {act}, unsupported; "
                      f"use NONE, RELU, RELU6 or RELU_N1_TO_1")
    return act


def _same_or_valid(layer, opname, padding, in_h, in_w, k_h, k_w, s_h, s_w, d_h, d_w, out_h, out_w):
    """Explicit paddings (top, bottom, left, right) with TFLite's rule; checks the stored output size."""
    pad_name = fb.PADDING.get(padding, "?")
    eff_h, eff_w = (k_h - 1) * d_h + 1, (k_w - 1) * d_w + 1
    if pad_name == "SAME":
        exp_h, exp_w = (in_h + s_h - 1) // s_h, (in_w + s_w - 1) // s_w
    elif pad_name == "VALID":
        exp_h, exp_w = (in_h - eff_h + s_h) // s_h, (in_w - eff_w + s_w) // s_w
    else:
        raise N6Error(f"layer {layer!r} ({opname}) has unknown padding code {padding}; re-export the model")
    if (exp_h, exp_w) != (out_h, out_w):
        raise N6Error(f"layer {layer!r} ({opname}) output is {out_h}x{out_w} but {pad_name} padding gives "
                      f"{exp_h}x{exp_w}; re-export the model")
    tot_h = max((out_h - 1) * s_h + eff_h - in_h, 0)
    tot_w = max((out_w - 1) * s_w + eff_w - in_w, 0)
    return dict(padding=pad_name, pad_top=tot_h // 2, pad_bottom=tot_h - tot_h // 2,
                pad_left=tot_w // 2, pad_right=tot_w - tot_w // 2)


def _convert(opname, layer, ins, outs, opts, tensors):
    def t(n):
        return tensors[n]

    if opname in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        _require_int8(layer, opname, tensors, ins[:2] + outs)
        x, w, o = t(ins[0]), t(ins[1]), t(outs[0])
        bias = ins[2] if len(ins) > 2 else None
        if bias is not None and t(bias).dtype != np.int32:
            raise N6Error(f"layer {layer!r} ({opname}) has a {_tname(t(bias))} bias; int8 models need int32 "
                          f"biases; {HOW_TO_QUANTIZE}")
        if len(x.shape) != 4 or len(w.shape) != 4:
            raise N6Error(f"layer {layer!r} ({opname}) needs 4-D NHWC input and weights, got {x.shape}, {w.shape}")
        s_h, s_w = opts["stride_h"], opts["stride_w"]
        d_h, d_w = opts["dilation_h_factor"], opts["dilation_w_factor"]
        attrs = dict(stride_h=s_h, stride_w=s_w, dilation_h=d_h, dilation_w=d_w,
                     activation=_activation(layer, opname, opts))
        attrs.update(_same_or_valid(layer, opname, opts["padding"], x.shape[1], x.shape[2], w.shape[1],
                                    w.shape[2], s_h, s_w, d_h, d_w, o.shape[1], o.shape[2]))
        if opname == "CONV_2D":
            if x.shape[3] % w.shape[3] or w.shape[0] % (x.shape[3] // w.shape[3]):
                raise N6Error(f"layer {layer!r} (CONV_2D): input channels {x.shape[3]} and filter {w.shape} "
                              f"do not form whole groups; re-export the model")
            attrs["groups"] = x.shape[3] // w.shape[3]
            return Node("conv2d", layer, [ins[0], ins[1], bias], outs, attrs)
        attrs["ch_mult"] = o.shape[3] // x.shape[3]
        if o.shape[3] != x.shape[3] * attrs["ch_mult"] or w.shape[3] != o.shape[3]:
            raise N6Error(f"layer {layer!r} (DEPTHWISE_CONV_2D): output channels {o.shape[3]} are not a multiple "
                          f"of input channels {x.shape[3]}; re-export the model")
        return Node("depthwise_conv2d", layer, [ins[0], ins[1], bias], outs, attrs)

    if opname == "FULLY_CONNECTED":
        _require_int8(layer, opname, tensors, ins[:2] + outs)
        if opts["weights_format"] != 0:
            raise N6Error(f"layer {layer!r} (FULLY_CONNECTED) uses shuffled weights; export with DEFAULT weights")
        bias = ins[2] if len(ins) > 2 else None
        if bias is not None and t(bias).dtype != np.int32:
            raise N6Error(f"layer {layer!r} (FULLY_CONNECTED) has a {_tname(t(bias))} bias; {HOW_TO_QUANTIZE}")
        return Node("fully_connected", layer, [ins[0], ins[1], bias], outs,
                    dict(activation=_activation(layer, opname, opts), keep_num_dims=bool(opts["keep_num_dims"])))

    if opname in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        x, o = t(ins[0]), t(outs[0])
        k_h, k_w, s_h, s_w = opts["filter_height"], opts["filter_width"], opts["stride_h"], opts["stride_w"]
        attrs = dict(kernel_h=k_h, kernel_w=k_w, stride_h=s_h, stride_w=s_w,
                     activation=_activation(layer, opname, opts))
        attrs.update(_same_or_valid(layer, opname, opts["padding"], x.shape[1], x.shape[2], k_h, k_w, s_h, s_w,
                                    1, 1, o.shape[1], o.shape[2]))
        return Node("avg_pool" if opname == "AVERAGE_POOL_2D" else "max_pool", layer, ins[:1], outs, attrs)

    if opname == "SOFTMAX":
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        return Node("softmax", layer, ins[:1], outs, dict(beta=float(np.float32(opts["beta"]))))

    if opname in ("ADD", "MUL"):
        _require_int8(layer, opname, tensors, ins[:2] + outs)
        return Node(opname.lower(), layer, ins[:2], outs, dict(activation=_activation(layer, opname, opts)))

    if opname in ("RESHAPE", "SQUEEZE"):
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        return Node("reshape", layer, ins[:1], outs, dict(shape=tuple(t(outs[0]).shape)))

    if opname in ("PAD", "PADV2"):
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        pads = t(ins[1]).data if len(ins) > 1 and ins[1] is not None else None
        if pads is None:
            raise N6Error(f"layer {layer!r} ({opname}) has non-constant paddings; freeze them in the model")
        pads = [(int(a), int(b)) for a, b in np.asarray(pads).reshape(-1, 2)]
        value = None          # PAD: the output zero-point
        if opname == "PADV2" and len(ins) > 2 and ins[2] is not None:
            c = t(ins[2])
            if c.data is None or c.dtype != np.int8:
                raise N6Error(f"layer {layer!r} (PADV2) needs a constant int8 pad value; freeze it in the model")
            value = int(c.data.reshape(-1)[0])
        return Node("pad", layer, ins[:1], outs, dict(pads=pads, pad_value=value))

    if opname == "TRANSPOSE":
        _require_int8(layer, opname, tensors, ins[:1] + outs)
        perm = t(ins[1]).data if len(ins) > 1 else None
        if perm is None:
            raise N6Error(f"layer {layer!r} (TRANSPOSE) has a non-constant permutation; freeze it in the model")
        return Node("transpose", layer, ins[:1], outs, dict(perm=tuple(int(p) for p in perm.reshape(-1))))

    raise N6Error(f"unsupported op {opname} in layer {layer!r}; supported: CONV_2D, DEPTHWISE_CONV_2D, "
                  f"FULLY_CONNECTED, AVERAGE_POOL_2D, MAX_POOL_2D, SOFTMAX, ADD, MUL, PAD, PADV2, RESHAPE, "
                  f"SQUEEZE, TRANSPOSE")
