"""Minimal FlatBuffers reader and writer for the subset of the TFLite schema n6emu needs.

No generated code: field ids below are the public tensorflow/lite/schema/schema.fbs facts
(field id = position in the table declaration). FlatBuffers wire format, little-endian:
- the buffer starts with a uoffset (uint32) to the root table, then the 4-byte file identifier "TFL3";
- a table starts with an soffset (int32): vtable position = table position - soffset; the vtable is
  uint16 [vtable bytes, table bytes, field offsets...] (offset 0 = field absent, use the default);
- reference fields (tables, vectors, strings) hold a uoffset relative to the field's own position;
- vectors/strings: uint32 element count, then the elements (strings add a trailing NUL).
"""
import struct

import numpy as np

FILE_IDENTIFIER = b"TFL3"

# ---- schema facts (schema.fbs) --------------------------------------------------------------------
# table field ids
MODEL = dict(version=0, operator_codes=1, subgraphs=2, description=3, buffers=4)
OPERATOR_CODE = dict(deprecated_builtin_code=0, custom_code=1, version=2, builtin_code=3)
SUBGRAPH = dict(tensors=0, inputs=1, outputs=2, operators=3, name=4)
TENSOR = dict(shape=0, type=1, buffer=2, name=3, quantization=4, is_variable=5)
QUANTIZATION = dict(min=0, max=1, scale=2, zero_point=3, details_type=4, details=5, quantized_dimension=6)
OPERATOR = dict(opcode_index=0, inputs=1, outputs=2, builtin_options_type=3, builtin_options=4,
                custom_options=5)
BUFFER = dict(data=0, offset=1, size=2)

# builtin option tables: field name -> (id, struct format, default)
OPTIONS_FIELDS = {
    "Conv2DOptions": dict(padding=(0, "b", 0), stride_w=(1, "i", 0), stride_h=(2, "i", 0),
                          fused_activation_function=(3, "b", 0), dilation_w_factor=(4, "i", 1),
                          dilation_h_factor=(5, "i", 1)),
    "DepthwiseConv2DOptions": dict(padding=(0, "b", 0), stride_w=(1, "i", 0), stride_h=(2, "i", 0),
                                   depth_multiplier=(3, "i", 0), fused_activation_function=(4, "b", 0),
                                   dilation_w_factor=(5, "i", 1), dilation_h_factor=(6, "i", 1)),
    "Pool2DOptions": dict(padding=(0, "b", 0), stride_w=(1, "i", 0), stride_h=(2, "i", 0),
                          filter_width=(3, "i", 0), filter_height=(4, "i", 0),
                          fused_activation_function=(5, "b", 0)),
    "FullyConnectedOptions": dict(fused_activation_function=(0, "b", 0), weights_format=(1, "b", 0),
                                  keep_num_dims=(2, "?", False)),
    "SoftmaxOptions": dict(beta=(0, "f", 0.0)),
    "AddOptions": dict(fused_activation_function=(0, "b", 0)),
    "MulOptions": dict(fused_activation_function=(0, "b", 0)),
    "ReshapeOptions": dict(new_shape=(0, "[i]", None)),
    "PadOptions": dict(),
    "TransposeOptions": dict(),
    "SqueezeOptions": dict(squeeze_dims=(0, "[i]", None)),
    "ConcatenationOptions": dict(axis=(0, "i", 0), fused_activation_function=(1, "b", 0)),
    "SubOptions": dict(fused_activation_function=(0, "b", 0), pot_scale_int16=(1, "?", True)),
    "MaximumMinimumOptions": dict(),
    "ExpandDimsOptions": dict(),
    "LeakyReluOptions": dict(alpha=(0, "f", 0.0)),
    "ReducerOptions": dict(keep_dims=(0, "?", False)),
    "StridedSliceOptions": dict(begin_mask=(0, "i", 0), end_mask=(1, "i", 0), ellipsis_mask=(2, "i", 0),
                                new_axis_mask=(3, "i", 0), shrink_axis_mask=(4, "i", 0), offset=(5, "?", False)),
    # recurrent ops (emu.graph.ops.recurrent)
    "SVDFOptions": dict(rank=(0, "i", 0), fused_activation_function=(1, "b", 0),
                        asymmetric_quantize_inputs=(2, "?", False)),
    "UnidirectionalSequenceLSTMOptions": dict(fused_activation_function=(0, "b", 0), cell_clip=(1, "f", 0.0),
                                              proj_clip=(2, "f", 0.0), time_major=(3, "?", False),
                                              asymmetric_quantize_inputs=(4, "?", False),
                                              diagonal_recurrent_tensors=(5, "?", False)),
}
# BuiltinOptions union type codes
OPTIONS_TYPE = {"Conv2DOptions": 1, "DepthwiseConv2DOptions": 2, "Pool2DOptions": 5,
                "FullyConnectedOptions": 8, "SoftmaxOptions": 9, "AddOptions": 11, "ReshapeOptions": 17,
                "MulOptions": 21, "PadOptions": 22, "TransposeOptions": 26, "SqueezeOptions": 30,
                "ConcatenationOptions": 10, "SubOptions": 28, "MaximumMinimumOptions": 39, "ExpandDimsOptions": 52,
                "StridedSliceOptions": 32, "LeakyReluOptions": 75, "ReducerOptions": 27}
OPTIONS_TYPE.update(SVDFOptions=6, UnidirectionalSequenceLSTMOptions=71)      # recurrent ops
OPTIONS_FIELDS["BatchMatMulOptions"] = dict(adj_x=(0, "?", False), adj_y=(1, "?", False),
                                           asymmetric_quantize_inputs=(2, "?", False))
OPTIONS_TYPE.update(BatchMatMulOptions=101)
OPTIONS_NAME = {v: k for k, v in OPTIONS_TYPE.items()}

# BuiltinOperator codes (subset) and the options table each uses
BUILTIN_OPERATOR = {"ADD": 0, "AVERAGE_POOL_2D": 1, "CONCATENATION": 2, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 4,
                    "DEQUANTIZE": 6, "FULLY_CONNECTED": 9, "LOGISTIC": 14, "MAX_POOL_2D": 17, "MUL": 18,
                    "RELU": 19, "RELU6": 21, "RESHAPE": 22, "SOFTMAX": 25, "PAD": 34, "TRANSPOSE": 39,
                    "MEAN": 40, "SUB": 41, "SQUEEZE": 43, "PADV2": 60, "QUANTIZE": 114, "TANH": 28,
                    "STRIDED_SLICE": 45, "MAXIMUM": 55, "MINIMUM": 57, "EXPAND_DIMS": 70, "LEAKY_RELU": 98,
                    "HARD_SWISH": 117, "UNIDIRECTIONAL_SEQUENCE_LSTM": 44, "SVDF": 27, "PRELU": 54, "SPLIT": 49,
                    "BATCH_MATMUL": 126}
BUILTIN_NAME = {v: k for k, v in BUILTIN_OPERATOR.items()}
OPERATOR_OPTIONS = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
                    "AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions",
                    "FULLY_CONNECTED": "FullyConnectedOptions", "SOFTMAX": "SoftmaxOptions",
                    "ADD": "AddOptions", "MUL": "MulOptions", "RESHAPE": "ReshapeOptions",
                    "PAD": "PadOptions", "TRANSPOSE": "TransposeOptions", "SQUEEZE": "SqueezeOptions",
                    "CONCATENATION": "ConcatenationOptions", "SUB": "SubOptions",
                    "MAXIMUM": "MaximumMinimumOptions", "MINIMUM": "MaximumMinimumOptions",
                    "EXPAND_DIMS": "ExpandDimsOptions", "STRIDED_SLICE": "StridedSliceOptions",
                    "LEAKY_RELU": "LeakyReluOptions", "MEAN": "ReducerOptions"}
OPERATOR_OPTIONS.update(SVDF="SVDFOptions", UNIDIRECTIONAL_SEQUENCE_LSTM="UnidirectionalSequenceLSTMOptions")
OPERATOR_OPTIONS.update(BATCH_MATMUL="BatchMatMulOptions")
BUILTIN_OPERATOR.update(GATHER=36)          # named in tests of unsupported ops
BUILTIN_NAME.update({36: "GATHER"})

# TensorType codes -> numpy dtypes (subset)
TENSOR_TYPE = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_,
               7: np.int16, 9: np.int8, 10: np.float64}
TENSOR_TYPE_CODE = {np.dtype(v): k for k, v in TENSOR_TYPE.items()}
TENSOR_TYPE_NAME = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
                    7: "int16", 8: "complex64", 9: "int8", 10: "float64", 17: "int4"}

PADDING = {0: "SAME", 1: "VALID"}
ACTIVATION = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


# ---- reader ---------------------------------------------------------------------------------------

class FlatBufferError(ValueError):
    """The bytes are not a well-formed flatbuffer of the expected shape."""


class Table:
    """Read-only view of one flatbuffer table: typed field accessors by field id, with defaults."""

    __slots__ = ("buf", "pos", "_vt", "_vt_len", "_size")

    def __init__(self, buf, pos):
        if pos < 0 or pos + 4 > len(buf):
            raise FlatBufferError(f"table offset {pos} outside the buffer ({len(buf)} bytes)")
        if pos % 4:
            raise FlatBufferError(f"table at {pos} is not 4-byte aligned")
        self.buf = buf
        self.pos = pos
        self._vt = pos - struct.unpack_from("<i", buf, pos)[0]
        if self._vt < 0 or self._vt + 4 > len(buf):
            raise FlatBufferError(f"vtable offset {self._vt} outside the buffer")
        self._vt_len, self._size = struct.unpack_from("<HH", buf, self._vt)
        # the FlatBuffers verifier's rules: an even vtable size of at least 4 bytes, 2-byte aligned, inside the
        # buffer; the table's own bytes inside the buffer; every field inside the table (see _field)
        if self._vt % 2 or self._vt_len % 2 or self._vt_len < 4 or self._vt + self._vt_len > len(buf):
            raise FlatBufferError(f"vtable at {self._vt} (size {self._vt_len}) is malformed")
        if self._size < 4 or pos + self._size > len(buf):
            raise FlatBufferError(f"table at {pos} (size {self._size}) runs past the end of the buffer")
        for e in range(self._vt + 4, self._vt + self._vt_len, 2):
            off = struct.unpack_from("<H", buf, e)[0]
            if off and (off < 4 or off >= self._size):
                raise FlatBufferError(f"a field of the table at {pos} lies outside the table")

    def _field(self, fid):
        """Absolute position of field `fid`, or None when absent."""
        entry = 4 + 2 * fid
        if entry + 2 > self._vt_len:
            return None
        off = struct.unpack_from("<H", self.buf, self._vt + entry)[0]
        if off == 0:
            return None
        if off < 4 or off >= self._size:
            raise FlatBufferError(f"field {fid} of the table at {self.pos} lies outside the table")
        return self.pos + off

    def has(self, fid):
        return self._field(fid) is not None

    def _check(self, p, size, what):
        if p < 0 or p + size > len(self.buf):
            raise FlatBufferError(f"{what} at {p} runs past the end of the buffer ({len(self.buf)} bytes)")

    def scalar(self, fid, fmt, default):
        p = self._field(fid)
        if p is None:
            return default
        self._check(p, struct.calcsize("<" + fmt), "a field")
        return struct.unpack_from("<" + fmt, self.buf, p)[0]

    def _deref(self, fid):
        p = self._field(fid)
        if p is None:
            return None
        self._check(p, 4, "an offset")
        p += struct.unpack_from("<I", self.buf, p)[0]
        self._check(p, 4, "a vector or string")
        if p % 4:
            raise FlatBufferError(f"vector or string at {p} is not 4-byte aligned")
        return p

    def table(self, fid):
        p = self._deref(fid)
        return None if p is None else Table(self.buf, p)

    def string(self, fid):
        p = self._deref(fid)
        if p is None:
            return None
        n = struct.unpack_from("<I", self.buf, p)[0]
        self._check(p + 4, n, "a string")
        return bytes(self.buf[p + 4:p + 4 + n]).decode("utf-8", errors="replace")

    def vector(self, fid, dtype):
        """Vector of scalars as a (read-only) numpy array, or None when absent."""
        p = self._deref(fid)
        if p is None:
            return None
        n = struct.unpack_from("<I", self.buf, p)[0]
        dt = np.dtype(dtype).newbyteorder("<")
        if p + 4 + n * dt.itemsize > len(self.buf):
            raise FlatBufferError("vector runs past the end of the buffer")
        return np.frombuffer(self.buf, dtype=dt, count=n, offset=p + 4)

    def tables(self, fid):
        """Vector of tables as a list (empty when absent)."""
        p = self._deref(fid)
        if p is None:
            return []
        n = struct.unpack_from("<I", self.buf, p)[0]
        self._check(p + 4, 4 * n, "a vector of tables")
        out = []
        for i in range(n):
            e = p + 4 + 4 * i
            out.append(Table(self.buf, e + struct.unpack_from("<I", self.buf, e)[0]))
        return out


def root_table(buf):
    """Root table of a TFLite flatbuffer (raises FlatBufferError when the identifier is not TFL3)."""
    if len(buf) < 8:
        raise FlatBufferError(f"{len(buf)} bytes is too short for a flatbuffer")
    if bytes(buf[4:8]) != FILE_IDENTIFIER:
        raise FlatBufferError(f"file identifier is {bytes(buf[4:8])!r}, expected {FILE_IDENTIFIER!r}")
    return Table(buf, struct.unpack_from("<I", buf, 0)[0])


def read_options(table, options_name):
    """Decode a builtin options table into a dict of named fields (schema defaults when absent)."""
    spec = OPTIONS_FIELDS.get(options_name, {})
    out = {}
    for name, (fid, fmt, default) in spec.items():
        if table is None:
            out[name] = default
        elif fmt.startswith("["):
            v = table.vector(fid, np.int32)
            out[name] = None if v is None else [int(x) for x in v]
        else:
            out[name] = table.scalar(fid, fmt, default)
    return out


# ---- writer ---------------------------------------------------------------------------------------
# Objects to serialise: TableW (fields by id), VectorW (scalars or blob), TablesW (vector of tables),
# StringW. Layout is written front to back: each object is placed before the objects it references,
# so every uoffset points forward, as the format requires.

class TableW:
    def __init__(self):
        self.fields = {}   # fid -> ("scalar", fmt, value) | ("ref", obj)

    def scalar(self, fid, fmt, value):
        self.fields[fid] = ("scalar", fmt, value)
        return self

    def ref(self, fid, obj):
        if obj is not None:
            self.fields[fid] = ("ref", obj)
        return self


class VectorW:
    def __init__(self, values, dtype, align=4):
        self.data = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<")).reshape(-1)
        self.align = max(align, self.data.dtype.itemsize, 4)


class TablesW:
    def __init__(self, tables):
        self.tables = list(tables)


class StringW:
    def __init__(self, text):
        self.data = text.encode("utf-8")


def options_table(options_name, values):
    """TableW for a builtin options table from a dict of named fields (unknown names raise)."""
    spec = OPTIONS_FIELDS[options_name]
    t = TableW()
    for name, value in values.items():
        if name not in spec:
            raise KeyError(f"{options_name} has no field {name!r}")
        fid, fmt, _ = spec[name]
        if fmt.startswith("["):
            t.ref(fid, VectorW(value, np.int32))
        else:
            t.scalar(fid, fmt, value)
    return t


class _Writer:
    def __init__(self):
        self.buf = bytearray()

    def _align(self, n, extra=0):
        """Pad so that (len + extra) is a multiple of n."""
        while (len(self.buf) + extra) % n:
            self.buf.append(0)

    def emit(self, obj):
        if isinstance(obj, TableW):
            return self._table(obj)
        if isinstance(obj, VectorW):
            self._align(obj.align, 4)
            pos = len(self.buf)
            self.buf += struct.pack("<I", obj.data.size) + obj.data.tobytes()
            return pos
        if isinstance(obj, StringW):
            self._align(4)
            pos = len(self.buf)
            self.buf += struct.pack("<I", len(obj.data)) + obj.data + b"\0"
            return pos
        if isinstance(obj, TablesW):
            self._align(4)
            pos = len(self.buf)
            self.buf += struct.pack("<I", len(obj.tables)) + b"\0" * (4 * len(obj.tables))
            for i, t in enumerate(obj.tables):
                slot = pos + 4 + 4 * i
                child = self.emit(t)
                struct.pack_into("<I", self.buf, slot, child - slot)
            return pos
        raise TypeError(f"cannot serialise {type(obj).__name__}")

    def _table(self, t):
        # inline layout: soffset at 0, then fields sorted by size (largest first) so each is aligned
        items = []
        for fid, f in t.fields.items():
            size = struct.calcsize("<" + f[1]) if f[0] == "scalar" else 4
            items.append((fid, f, size))
        items.sort(key=lambda x: (-x[2], x[0]))
        offsets, cursor = {}, 4
        for fid, f, size in items:
            cursor = (cursor + size - 1) // size * size
            offsets[fid] = cursor
            cursor += size
        table_size = cursor
        nfields = max(t.fields) + 1 if t.fields else 0
        vt = struct.pack("<HH", 4 + 2 * nfields, table_size)
        vt += b"".join(struct.pack("<H", offsets.get(i, 0)) for i in range(nfields))
        self._align(8, len(vt))          # table start 8-aligned right after its vtable
        vt_pos = len(self.buf)
        self.buf += vt
        pos = len(self.buf)
        self.buf += b"\0" * table_size
        struct.pack_into("<i", self.buf, pos, pos - vt_pos)
        refs = []
        for fid, f, _ in items:
            if f[0] == "scalar":
                struct.pack_into("<" + f[1], self.buf, pos + offsets[fid], f[2])
            else:
                refs.append((pos + offsets[fid], f[1]))
        for slot, child in refs:
            cpos = self.emit(child)
            struct.pack_into("<I", self.buf, slot, cpos - slot)
        return pos


def serialize(root):
    """Bytes of a flatbuffer whose root is the TableW `root`, with the TFL3 file identifier."""
    w = _Writer()
    w.buf += b"\0\0\0\0" + FILE_IDENTIFIER
    pos = w.emit(root)
    struct.pack_into("<I", w.buf, 0, pos)
    w._align(16)
    return bytes(w.buf)
