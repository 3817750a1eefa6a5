"""Tests' own writer of small int8 TFLite models, built on emu.graph.tflite_fb's flatbuffer writer.

ModelBuilder: add tensors (activations or constants, per-tensor or per-channel quantization) and
builtin operators with their options, then build() the .tflite bytes that both tflite-micro and
emu.graph.tflite.load_tflite read. Helpers at the bottom make random, realistic layers.
"""
import numpy as np

from emu.graph import tflite_fb as fb


class ModelBuilder:
    def __init__(self):
        self.tensors = []      # TableW per tensor
        self.buffers = [fb.TableW()]   # buffer 0: the empty buffer (schema convention)
        self.opcodes = []      # builtin op names in opcode order
        self.operators = []

    def tensor(self, name, shape, dtype=np.int8, scale=None, zero_point=None, quant_axis=0, data=None,
               is_variable=False):
        """Add a tensor; returns its index. `scale`/`zero_point`: scalars or per-channel sequences. `is_variable`:
        a variable tensor (a recurrent op's state, kept by the interpreter between invocations)."""
        t = fb.TableW()
        if is_variable:
            t.scalar(fb.TENSOR["is_variable"], "?", True)
        t.ref(fb.TENSOR["shape"], fb.VectorW(list(shape), np.int32))
        t.scalar(fb.TENSOR["type"], "b", fb.TENSOR_TYPE_CODE[np.dtype(dtype)])
        t.ref(fb.TENSOR["name"], fb.StringW(name))
        if data is not None:
            data = np.ascontiguousarray(data, dtype=dtype).reshape(shape)
            buf = fb.TableW().ref(fb.BUFFER["data"], fb.VectorW(np.frombuffer(data.tobytes(), np.uint8),
                                                                   np.uint8, align=16))
            t.scalar(fb.TENSOR["buffer"], "I", len(self.buffers))
            self.buffers.append(buf)
        else:
            t.scalar(fb.TENSOR["buffer"], "I", 0)
        if scale is not None:
            scale = np.atleast_1d(np.asarray(scale, np.float32))
            zp = np.zeros(scale.size, np.int64) if zero_point is None else np.atleast_1d(
                np.asarray(zero_point, np.int64))
            q = fb.TableW()
            q.ref(fb.QUANTIZATION["scale"], fb.VectorW(scale, np.float32))
            q.ref(fb.QUANTIZATION["zero_point"], fb.VectorW(zp, np.int64))
            q.scalar(fb.QUANTIZATION["quantized_dimension"], "i", int(quant_axis))
            t.ref(fb.TENSOR["quantization"], q)
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, opname, inputs, outputs, **options):
        """Add a builtin operator (inputs may contain -1 for an absent optional input)."""
        if opname not in self.opcodes:
            self.opcodes.append(opname)
        o = fb.TableW()
        o.scalar(fb.OPERATOR["opcode_index"], "I", self.opcodes.index(opname))
        o.ref(fb.OPERATOR["inputs"], fb.VectorW(list(inputs), np.int32))
        o.ref(fb.OPERATOR["outputs"], fb.VectorW(list(outputs), np.int32))
        opt_name = fb.OPERATOR_OPTIONS.get(opname)
        if opt_name is not None:
            o.scalar(fb.OPERATOR["builtin_options_type"], "B", fb.OPTIONS_TYPE[opt_name])
            o.ref(fb.OPERATOR["builtin_options"], fb.options_table(opt_name, options))
        elif options:
            raise ValueError(f"{opname} takes no options")
        self.operators.append(o)

    def build(self, inputs, outputs, buffers_by_offset=False, first_offset=0):
        """The .tflite bytes. An op name that is not a builtin is written as a CUSTOM op with that custom_code.
        buffers_by_offset: TFLite's large-model layout (files over 2 GB): every non-empty buffer's bytes are placed
        after the flatbuffer (16-byte aligned) and its Buffer table holds only offset (from the start of the file)
        and size. first_offset: the first buffer starts at this offset or later (the bytes between are zeros:
        write_sparse makes such a file without storing them)."""
        codes = []
        for name in self.opcodes:
            c = fb.TableW()
            code = fb.BUILTIN_OPERATOR.get(name)
            if code is None:
                code = CUSTOM_CODE
                c.ref(fb.OPERATOR_CODE["custom_code"], fb.StringW(name))
            c.scalar(fb.OPERATOR_CODE["deprecated_builtin_code"], "b", min(code, 127))
            c.scalar(fb.OPERATOR_CODE["builtin_code"], "i", code)
            c.scalar(fb.OPERATOR_CODE["version"], "i", 1)
            codes.append(c)
        sg = fb.TableW()
        sg.ref(fb.SUBGRAPH["tensors"], fb.TablesW(self.tensors))
        sg.ref(fb.SUBGRAPH["inputs"], fb.VectorW(list(inputs), np.int32))
        sg.ref(fb.SUBGRAPH["outputs"], fb.VectorW(list(outputs), np.int32))
        sg.ref(fb.SUBGRAPH["operators"], fb.TablesW(self.operators))
        sg.ref(fb.SUBGRAPH["name"], fb.StringW("main"))
        model = fb.TableW()
        model.scalar(fb.MODEL["version"], "I", 3)
        model.ref(fb.MODEL["operator_codes"], fb.TablesW(codes))
        model.ref(fb.MODEL["subgraphs"], fb.TablesW([sg]))
        model.ref(fb.MODEL["description"], fb.StringW("n6emu test model"))
        model.ref(fb.MODEL["buffers"], fb.TablesW(self.buffers))
        if not buffers_by_offset:
            return fb.serialize(model)
        blobs = []
        for buf in self.buffers:
            field = buf.fields.get(fb.BUFFER["data"])
            blobs.append(field[1].data.tobytes() if field is not None and field[1].data.size else None)

        def by_offset(offsets):
            return fb.TablesW([fb.TableW() if blob is None else
                               fb.TableW().scalar(fb.BUFFER["offset"], "Q", off).scalar(fb.BUFFER["size"], "Q",
                                                                                        len(blob))
                               for blob, off in zip(blobs, offsets)])

        model.ref(fb.MODEL["buffers"], by_offset([2] * len(blobs)))     # placeholders: the same layout and length
        end = len(fb.serialize(model))
        offsets, tail = [], bytearray()
        gap = max(0, first_offset - end)
        for blob in blobs:
            pos = end + gap + len(tail)
            pad = -pos % 16
            tail += b"\0" * pad
            offsets.append(pos + pad)
            tail += blob or b""
        model.ref(fb.MODEL["buffers"], by_offset(offsets))
        head = fb.serialize(model)
        assert len(head) == end
        return head + bytes(tail) if not gap else (head, end + gap, bytes(tail))

    def write_sparse(self, path, inputs, outputs, first_offset):
        """Write the by-offset layout with its buffers at first_offset or later (e.g. past 4 GB) as a sparse file:
        the hole costs no disk space."""
        head, at, tail = self.build(inputs, outputs, buffers_by_offset=True, first_offset=first_offset)
        with open(path, "wb") as f:
            f.write(head)
            f.seek(at)
            f.write(tail)
        return path


CUSTOM_CODE = 32      # BuiltinOperator CUSTOM


# ---- random layer helpers ---------------------------------------------------------------------------

ACT = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
PAD = {"SAME": 0, "VALID": 1}


def out_size(n, k, stride, dilation, padding):
    eff = (k - 1) * dilation + 1
    return (n + stride - 1) // stride if padding == "SAME" else (n - eff + stride) // stride


def act_tensor(b, rng, name, shape, scale=None, zp=None):
    """An int8 activation tensor with a random (or given) scale and zero-point."""
    scale = np.float32(rng.uniform(0.005, 0.2)) if scale is None else scale
    if zp is None:   # extreme zero-points are over-represented: they expose offset/saturation bugs
        zp = int(rng.choice([-128, 127, rng.integers(-128, 128), rng.integers(-128, 128)]))
    return b.tensor(name, shape, np.int8, scale, zp)


def conv_weights(b, rng, name, shape, n_out, per_channel, axis, in_scale):
    w = rng.integers(-127, 128, size=shape, dtype=np.int64).astype(np.int8)
    s = rng.uniform(0.001, 0.02, size=n_out if per_channel else 1).astype(np.float32)
    wt = b.tensor(name, shape, np.int8, s, np.zeros(s.size, np.int64), quant_axis=axis, data=w)
    bias_scale = (np.float32(in_scale) * s).astype(np.float32)
    bias = rng.integers(-20000, 20000, size=n_out).astype(np.int32)
    bt = b.tensor(name + "_bias", (n_out,), np.int32, bias_scale if per_channel else bias_scale[:1],
                  np.zeros(bias_scale.size if per_channel else 1, np.int64), quant_axis=0, data=bias)
    return wt, bt


# ---- kernel backends under test -----------------------------------------------------------------------

BACKEND_NAMES = ("naive", "numba", "c")


def load_backend(name):
    """Kernel namespace for `name`: tests/naive.py, or emu.kernels.backends.get_backend(name). Nothing is swallowed:
    a test that wants "c" requests conftest's c_kernels fixture first (skipped only when no C compiler exists)."""
    if name == "naive":
        import naive
        return naive
    from emu.kernels.backends import get_backend
    return get_backend(name)
