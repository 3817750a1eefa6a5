"""Seeded fuzzing of every file the CLI reads: models (.tflite, .onnx), device configs (TOML) and paths.

Each case is built from one integer seed (deterministic: `case(kind, seed)` rebuilds it) and run through the CLI
in-process (`emu.cli.main(argv, out, err)`). For every case: the exit status is 0 or 2 (never a traceback, never
another code); on 2 stderr is exactly one line and the output file does not exist. A model the CLI accepts and runs
must agree exactly with the external oracle: tflite-micro (run in a worker subprocess, since it segfaults on some
mutants: those are counted, not compared) for .tflite, onnxruntime (dequantized logits, bit for bit, under the
onnxruntime profile) for .onnx.

Reproduce one case:  N6EMU_FUZZ_CASE=KIND:SEED pytest tests/test_fuzz.py -k one_case   (see test_one_case)
Default run: FUZZ_CASES cases over all kinds; the slow sweep (--run-slow) runs SLOW_CASES.
"""
import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from emu.cli import main
from emu.graph import tflite_fb as fb
from tflite_builder import ModelBuilder

REPO = Path(__file__).resolve().parent.parent
KWS_ONNX = REPO / "emu" / "data" / "kws" / "model_qdq.onnx"
CLIP = REPO / "emu" / "data" / "clips" / "yes.wav"
BUNDLED_TOML = REPO / "emu" / "data" / "device_default.toml"

FUZZ_CASES = 2000
SLOW_CASES = 20000
# share of each kind in a run (sums to 1)
KINDS = {"tflite-bytes": 0.22, "tflite-craft": 0.18, "onnx-bytes": 0.14, "onnx-proto": 0.22, "config": 0.16,
         "paths": 0.08}


# ---- base models -----------------------------------------------------------------------------------------

def tflite_spec():
    """Attributes of the small base TFLite model (a crafted case changes some of them)."""
    return dict(h=6, w=5, cin=2, conv_cout=4, conv_k=3, conv_stride=1, conv_pad=0, conv_act=1, conv_dil=1,
                dw_mult=2, dw_k=3, dw_stride=2, dw_pad=0, dw_act=3, dw_depth_multiplier=None,
                pool_k=2, pool_stride=1, pool_pad=1, pool_kind="AVERAGE_POOL_2D", fc_out=3, softmax_beta=1.0,
                conv_w_dtype=np.int8, conv_w_const=True, in_shape=None, conv_opcode=None, conv_in_index=None,
                conv_bias_dtype=np.int32, in_scale=0.05, in_zp=-3, out_shape=None)


def build_tflite(spec, seed=0):
    """Conv -> DepthwiseConv -> Pool -> Reshape -> FullyConnected -> Softmax, int8, from `spec` (no checks: a spec
    may describe an invalid model on purpose)."""
    s = spec
    rng = np.random.default_rng(seed)
    b = ModelBuilder()

    def pad_out(n, k, st, pad, d=1):
        eff = (k - 1) * d + 1
        return (n + st - 1) // max(st, 1) if pad == 0 else (n - eff + st) // max(st, 1)

    h, w, cin = s["h"], s["w"], s["cin"]
    x = b.tensor("input", s["in_shape"] or (1, h, w, cin), np.int8, s["in_scale"], s["in_zp"])
    k = s["conv_k"]
    c1 = s["conv_cout"]
    wdata = rng.integers(-127, 128, (c1, k, k, cin)).astype(s["conv_w_dtype"]) if s["conv_w_const"] else None
    ws = rng.uniform(0.002, 0.02, c1).astype(np.float32)
    wt = b.tensor("conv_w", (c1, k, k, cin), s["conv_w_dtype"], ws, np.zeros(c1, np.int64), 0, wdata)
    bt = b.tensor("conv_b", (c1,), s["conv_bias_dtype"], (ws * s["in_scale"]).astype(np.float32),
                  np.zeros(c1, np.int64), 0, rng.integers(-500, 500, c1).astype(s["conv_bias_dtype"]))
    h1 = max(pad_out(h, k, s["conv_stride"], s["conv_pad"], max(s["conv_dil"], 1)), 1)
    w1 = max(pad_out(w, k, s["conv_stride"], s["conv_pad"], max(s["conv_dil"], 1)), 1)
    y1 = b.tensor("conv_out", (1, h1, w1, c1), np.int8, 0.08, 5)
    ins = [x, wt, bt]
    if s["conv_in_index"] is not None:
        ins[0] = s["conv_in_index"]
    b.op("CONV_2D", ins, [y1], padding=s["conv_pad"], stride_w=s["conv_stride"], stride_h=s["conv_stride"],
         fused_activation_function=s["conv_act"], dilation_w_factor=s["conv_dil"], dilation_h_factor=s["conv_dil"])
    m, kd = s["dw_mult"], s["dw_k"]
    c2 = c1 * m
    dws = rng.uniform(0.002, 0.02, c2).astype(np.float32)
    dwt = b.tensor("dw_w", (1, kd, kd, c2), np.int8, dws, np.zeros(c2, np.int64), 3,
                   rng.integers(-127, 128, (1, kd, kd, c2)).astype(np.int8))
    dbt = b.tensor("dw_b", (c2,), np.int32, (dws * np.float32(0.08)).astype(np.float32), np.zeros(c2, np.int64), 0,
                   rng.integers(-500, 500, c2).astype(np.int32))
    h2, w2 = pad_out(h1, kd, s["dw_stride"], s["dw_pad"]), pad_out(w1, kd, s["dw_stride"], s["dw_pad"])
    h2, w2 = max(h2, 1), max(w2, 1)
    y2 = b.tensor("dw_out", (1, h2, w2, c2), np.int8, 0.06, -7)
    dm = m if s["dw_depth_multiplier"] is None else s["dw_depth_multiplier"]
    b.op("DEPTHWISE_CONV_2D", [y1, dwt, dbt], [y2], padding=s["dw_pad"], stride_w=s["dw_stride"],
         stride_h=s["dw_stride"], depth_multiplier=dm, fused_activation_function=s["dw_act"])
    pk = s["pool_k"]
    h3, w3 = max(pad_out(h2, pk, s["pool_stride"], s["pool_pad"]), 1), max(pad_out(w2, pk, s["pool_stride"],
                                                                                    s["pool_pad"]), 1)
    y3 = b.tensor("pool_out", (1, h3, w3, c2), np.int8, 0.06, -7)
    b.op(s["pool_kind"], [y2], [y3], padding=s["pool_pad"], stride_w=s["pool_stride"], stride_h=s["pool_stride"],
         filter_width=pk, filter_height=pk, fused_activation_function=0)
    flat = h3 * w3 * c2
    shp = b.tensor("shape", (2,), np.int32, data=np.array([1, flat], np.int32))
    y4 = b.tensor("flat", (1, flat), np.int8, 0.06, -7)
    b.op("RESHAPE", [y3, shp], [y4], new_shape=[1, flat])
    n = s["fc_out"]
    fws = np.float32(0.01)
    fw = b.tensor("fc_w", (n, flat), np.int8, fws, 0, 0, rng.integers(-127, 128, (n, flat)).astype(np.int8))
    fbias = b.tensor("fc_b", (n,), np.int32, np.float32(0.06) * fws, 0, 0, rng.integers(-900, 900, n).astype(np.int32))
    y5 = b.tensor("logits", (1, n), np.int8, 0.1, 3)
    b.op("FULLY_CONNECTED", [y4, fw, fbias], [y5], fused_activation_function=0)
    y6 = b.tensor("probs", s["out_shape"] or (1, n), np.int8, 1.0 / 256, -128)
    b.op("SOFTMAX", [y5], [y6], beta=s["softmax_beta"])
    if s["conv_opcode"] is not None:
        b.operators[0].scalar(fb.OPERATOR["opcode_index"], "I", s["conv_opcode"])
    return b.build([x], [y6])


_CACHE = {}


def base_onnx_models():
    """(name, bytes) of the bundled KWS model and two small QDQ models built with onnx_builder (cached)."""
    if "onnx" not in _CACHE:
        import logging
        from onnx_builder import build_float_model, matmul_add_model, quantize_qdq
        logging.getLogger().setLevel(logging.ERROR)      # quantize_static's pre-processing advice
        rng = np.random.default_rng(7)
        spec = [dict(op="conv", cout=4, k=3, stride=1, pad=1, act="relu"), dict(op="maxpool", k=2, stride=2, pad=0),
                dict(op="conv", cout=4, k=3, stride=1, pad=1, group=4, act="relu6"), dict(op="gap"),
                dict(op="flatten"), dict(op="gemm", out=3)]
        f1 = build_float_model(spec, (1, 2, 8, 8), seed=3)
        q1 = quantize_qdq(f1, [rng.normal(0, 1, (1, 2, 8, 8)).astype(np.float32) for _ in range(4)])
        f2 = matmul_add_model(seed=5)
        q2 = quantize_qdq(f2, [rng.normal(0, 1, (1, 2, 6, 6)).astype(np.float32) for _ in range(4)])
        _CACHE["onnx"] = [("kws", KWS_ONNX.read_bytes()), ("small", q1.SerializeToString()),
                          ("matmul", q2.SerializeToString())]
    return _CACHE["onnx"]


# ---- mutations --------------------------------------------------------------------------------------------

def mutate_bytes(rng, data):
    data = bytearray(data)
    how = rng.integers(0, 5)
    if how == 0 or len(data) < 16:                   # truncate
        return bytes(data[:int(rng.integers(0, max(len(data), 1)))])
    if how == 1:                                     # flip a few random bytes
        for _ in range(int(rng.integers(1, 9))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
    elif how == 2:                                   # one byte anywhere in the first 512 (structure)
        data[int(rng.integers(0, min(len(data), 512)))] ^= 1 << int(rng.integers(0, 8))
    elif how == 3:                                   # overwrite a 4-byte word with an extreme value
        pos = int(rng.integers(0, len(data) - 4))
        data[pos:pos + 4] = int(rng.choice([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFF, 1000000000])) \
            .to_bytes(4, "little")
    else:                                            # splice: duplicate or delete a chunk
        a, b = sorted(int(v) for v in rng.integers(0, len(data), 2))
        data = data[:a] + data[b:] if rng.random() < 0.5 else data[:b] + data[a:b] + data[b:]
    return bytes(data)


CRAFT = [  # (field, values): attributes outside the legal range, inconsistent shapes, bad indices and types
    ("conv_stride", [0, -1, -7]), ("dw_stride", [0, -3]), ("conv_pad", [2, 5, -1, 127]), ("conv_act", [6, 9, -1, 4]),
    ("dw_act", [7, 127]), ("dw_depth_multiplier", [-128, 0, 1, 3, 99]), ("pool_k", [0, -2, 40]),
    ("pool_stride", [0, -1]), ("pool_pad", [3, -5]), ("conv_dil", [0, -2, 9]), ("conv_k", [7, 1]),
    ("in_shape", [(1, 0, 5, 2), (1, -3, 5, 2), (1, 6, 5, 1000000000), (1, 6, 5), (2, 6, 5, 2), (1, 6, 5, 3)]),
    ("conv_opcode", [5, 99, 1000]), ("conv_in_index", [50, 2000]), ("conv_w_dtype", [np.float32, np.int16, np.uint8]),
    ("conv_w_const", [False]), ("conv_bias_dtype", [np.int8, np.float32, np.int64]), ("softmax_beta", [0.0, -1.0,
                                                                                                      float("nan"),
                                                                                                      float("inf")]),
    ("in_scale", [0.0, -0.05, float("nan"), float("inf"), 1e-45]), ("in_zp", [300, -1000]),
    ("pool_kind", ["MAX_POOL_2D"]), ("out_shape", [(1, 4), (3,), (1, 1, 3)]), ("fc_out", [1]),
    ("dw_mult", [1, 3]), ("h", [1, 2, 40]),
]


def craft_tflite(rng):
    spec = tflite_spec()
    for _ in range(int(rng.integers(1, 3))):
        field, values = CRAFT[int(rng.integers(0, len(CRAFT)))]
        spec[field] = values[int(rng.integers(0, len(values)))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            return build_tflite(spec, seed=int(rng.integers(0, 1 << 30)))


HOSTILE_NAME = "\x1b[31mred\x1b[0m\x07\u202e\nname"


def mutate_onnx_proto(rng, data):
    """A structural mutation of a parsed ONNX model: attributes, input dims, initializer dtype/data, node order,
    names with escape codes, removed or duplicated nodes, bias quantization."""
    import onnx
    from onnx import numpy_helper
    m = onnx.ModelProto()
    m.ParseFromString(data)
    g = m.graph
    how = int(rng.integers(0, 12))
    nodes = list(g.node)
    node = nodes[int(rng.integers(0, len(nodes)))]
    if how == 0:      # an integer attribute out of range
        attrs = [a for n in nodes for a in n.attribute if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)]
        if attrs:
            a = attrs[int(rng.integers(0, len(attrs)))]
            v = int(rng.choice([0, -1, -5, 2, 7, 1000000000, -128]))
            if a.type == onnx.AttributeProto.INT:
                a.i = v
            elif len(a.ints):
                if rng.random() < 0.3:
                    a.ints.append(v)
                else:
                    a.ints[int(rng.integers(0, len(a.ints)))] = v
    elif how == 1:    # input dims
        dims = g.input[0].type.tensor_type.shape.dim
        d = dims[int(rng.integers(0, len(dims)))]
        d.dim_value = int(rng.choice([0, -5, 1000000000, 2, 3, 1 << 40]))
    elif how == 2:    # initializer dtype changed (data kept)
        inits = list(g.initializer)
        t = inits[int(rng.integers(0, len(inits)))]
        t.data_type = int(rng.choice([1, 2, 3, 5, 6, 7, 10, 11, 16, 0, 99]))
    elif how == 3:    # initializer values replaced (e.g. a float weight, a zero or negative scale)
        inits = list(g.initializer)
        t = inits[int(rng.integers(0, len(inits)))]
        a = numpy_helper.to_array(t)
        kind = rng.integers(0, 4)
        if kind == 0:
            with np.errstate(all="ignore"):
                new = np.asarray(a, np.float32) * np.float32(rng.choice([0.0, -1.0, np.inf, np.nan, 3.0]))
        elif kind == 1:
            new = a.reshape(-1)[: max(a.size - 1, 0)]
        elif kind == 2:
            new = np.asarray(a, np.float32)
        else:
            new = np.asarray(a).astype(rng.choice([np.int8, np.uint8, np.int32, np.int64]))
        t.CopyFrom(numpy_helper.from_array(np.asarray(new), t.name))
    elif how == 4:    # reorder: move a node earlier/later
        i, j = (int(v) for v in rng.integers(0, len(nodes), 2))
        nodes[i], nodes[j] = nodes[j], nodes[i]
        del g.node[:]
        g.node.extend(nodes)
    elif how == 5:    # hostile names
        old = node.output[0]
        node.name = HOSTILE_NAME
        for n in nodes:
            for k, i in enumerate(n.input):
                if i == old:
                    n.input[k] = HOSTILE_NAME + old
        for k, o in enumerate(node.output):
            if o == old:
                node.output[k] = HOSTILE_NAME + old
        for o in g.output:
            if o.name == old:
                o.name = HOSTILE_NAME + old
    elif how == 6:    # remove a node or an initializer
        if rng.random() < 0.5:
            g.node.remove(node)
        else:
            g.initializer.remove(list(g.initializer)[int(rng.integers(0, len(g.initializer)))])
    elif how == 7:    # bias quantization: scale / zero-point of a bias DequantizeLinear
        consts = {t.name: t for t in g.initializer}
        dqs = [n for n in nodes if n.op_type == "DequantizeLinear" and n.input[0] in consts
               and consts[n.input[0]].data_type == onnx.TensorProto.INT32]
        if dqs:
            dq = dqs[int(rng.integers(0, len(dqs)))]
            s = consts[dq.input[1]]
            a = numpy_helper.to_array(s) * np.float32(rng.choice([2.0, 0.5, 1.0000001, 1.5]))
            s.CopyFrom(numpy_helper.from_array(a.astype(np.float32), s.name))
    elif how == 8:    # duplicate a node (a tensor produced twice)
        g.node.append(node)
    elif how == 9:    # change an op type
        node.op_type = str(rng.choice(["Conv", "Relu", "Add", "QuantizeLinear", "DequantizeLinear", "Foo", "Softmax",
                                       "Reshape", "Gemm", "MaxPool"]))
    elif how == 10:   # an input renamed to a tensor that does not exist
        if len(node.input):
            node.input[int(rng.integers(0, len(node.input)))] = "nowhere"
    else:             # an attribute removed or its type changed
        if len(node.attribute):
            a = node.attribute[int(rng.integers(0, len(node.attribute)))]
            if rng.random() < 0.5:
                node.attribute.remove(a)
            else:
                a.type = onnx.AttributeProto.FLOAT
                a.f = float(rng.choice([0.5, -1.0]))
    return m.SerializeToString()


CONFIG_KEYS = {  # [section] key -> hostile or edge values
    ("frontend", "n_mels"): [10000000, 0, -4, 1.5, "40", True, 2048, 64],
    ("frontend", "n_fft"): [1000, 0, 1 << 40, 8192, 512],
    ("frontend", "n_frames"): [10 ** 9, 0, 49],
    ("frontend", "sample_rate"): [0, 10 ** 12, 8000],
    ("frontend", "hop_length"): [0, 100000],
    ("frontend", "win_length"): [2048, -1],
    ("frontend", "fmin"): ["low", -1.0, float("nan"), 8000.0],
    ("frontend", "fmax"): ["x", 1e12, float("inf"), 4000.0],
    ("frontend", "top_db"): ["big", 0.0, -3.0],
    ("frontend", "quant_scale"): [0.0, -1.0, "s", 0.1],
    ("frontend", "quant_zero_point"): [300, "z", 1.5, -128],
    ("frontend", "profile"): ["st-f64", 3, ["st-f16"]],
    ("frontend", "mel_source"): ["@missing.npy", "@dir", "@pickle.npy", "@hex.h", "@bad.h", "@short.npy", "@empty.h",
                                 "@npz.npy", "@text.npy", "nope", 5, "", "@big.npy"],
    ("model", "path"): ["bundled:../..", "bundled:/etc/passwd", "bundled:../config.py", "bundled:", "missing.onnx",
                        "@dir", "@empty.onnx", "@text.tflite", "model.txt", 7, "bundled:kws/../../cli.py",
                        "\x1b[2Jevil.onnx"],
    ("model", "profile"): ["fast", 1, "onnxruntime"],
    ("model", "backend"): ["gpu", 3.5],
    ("model", "rounding"): ["up", "single"],
    ("input", "layout"): ["diagonal", 3],
    ("app", "threshold"): [2.0, "half", -0.1],
    ("app", "classes"): [[1, 2], "yes", ["a"] * 3],
    ("app", "unknown_label"): [5],
    ("faults", "no-such-fault"): [{}],
    ("faults", "wrong-scale"): [{"scale": "x"}, {"scale": -1.0}, {"nope": 1}],
    ("nosection", "x"): [1],
}


def _toml(v):
    from emu.frontend.params import toml_value
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    if isinstance(v, float) and v != v:
        return "nan"
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    return toml_value(v)


def make_fixtures(d):
    """Files the config cases name with '@': tables in every wrong form."""
    d = Path(d)
    (d / "dir").mkdir(parents=True, exist_ok=True)
    np.save(d / "pickle.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(d / "short.npy", np.zeros((3, 4), np.float32))
    np.save(d / "big.npy", np.zeros((40, 513), np.float32))
    np.savez(d / "npz.npy", a=np.zeros(3))
    (d / "text.npy").write_text("not numpy")
    (d / "hex.h").write_text("const uint32_t user_melFiltersStartIndices[2] = {0x1, 0x2};\n"
                             "const uint32_t user_melFiltersStopIndices[2] = {0x2, 0x3};\n"
                             "const float32_t user_melFilterLut[4] = {0x1p-1f, 0.5f, 0x10, 0.25f};\n")
    (d / "bad.h").write_text("const uint32_t user_melFiltersStartIndices[2] = {0x1, 0xZZ};\n")
    (d / "empty.h").write_text("")
    (d / "empty.onnx").write_bytes(b"")
    (d / "text.tflite").write_text("hello")
    return d


def mutate_config(rng, fixtures):
    text = BUNDLED_TOML.read_text()
    how = rng.integers(0, 4)
    if how == 0:                   # raw text mutation (malformed TOML, or valid TOML with odd values)
        b = mutate_bytes(rng, text.encode())
        return b
    extra = {}
    for _ in range(int(rng.integers(1, 3))):
        keys = list(CONFIG_KEYS)
        sec, key = keys[int(rng.integers(0, len(keys)))]
        vals = CONFIG_KEYS[(sec, key)]
        v = vals[int(rng.integers(0, len(vals)))]
        if isinstance(v, str) and v.startswith("@"):
            v = str(fixtures / v[1:])
        extra.setdefault(sec, {})[key] = v
    lines, section = [], None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1]
        elif section in extra and "=" in s and s.split("=")[0].strip() in extra[section]:
            continue
        lines.append(line)
        if s == f"[{section}]" and section in extra:
            lines.extend(f"{k} = {_toml(v)}" for k, v in extra[section].items())
    for sec in extra:
        if f"[{sec}]" not in text:
            lines.append(f"[{sec}]")
            lines.extend(f'"{k}" = {_toml(v)}' for k, v in extra[sec].items())
    return "\n".join(lines).encode()


# ---- the oracles ------------------------------------------------------------------------------------------

_TFLM_WORKER = textwrap.dedent("""
    import sys, json, numpy as np
    from emu.reference import TflmReference
    for line in sys.stdin:
        req = json.loads(line)
        x = np.load(req["input"])
        ref = TflmReference(req["model"])
        out = [ref.run_all_one(x[i])[req["output"]] for i in range(len(x))]
        np.save(req["result"], np.stack(out))
        print("ok", flush=True)
""")


class TflmWorker:
    """tflite-micro in a subprocess (restarted after a crash): run(model, x, output_name, result) -> array or None
    when the oracle crashed on the model."""

    def __init__(self):
        self.p = None

    def _start(self):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        self.p = subprocess.Popen([sys.executable, "-c", _TFLM_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, env=env)

    def run(self, model, x_path, output, result):
        if self.p is None or self.p.poll() is not None:
            self._start()
        self.p.stdin.write(json.dumps(dict(model=str(model), input=str(x_path), output=output,
                                           result=str(result))) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if line.strip() != "ok":
            self.p.kill()
            self.p.wait()
            self.p = None
            return None
        return np.load(result)

    def close(self):
        if self.p is not None:
            self.p.stdin.close()
            self.p.kill()
            self.p.wait()


# ---- one case ---------------------------------------------------------------------------------------------

class Fuzz:
    def __init__(self, tmp, oracles=True):
        self.tmp = Path(tmp)
        self.fixtures = make_fixtures(self.tmp / "fixtures")
        self.stats = Counter()
        self.notes = []
        self.oracles = oracles
        self.tflm = TflmWorker() if oracles and _has("tflite_micro") else None
        self.tflite_base = build_tflite(tflite_spec())

    def cli(self, argv):
        out, err = io.StringIO(), io.StringIO()
        with warnings.catch_warnings():
            warnings.simplefilter("error")       # a warning printed on the way would be a failure of the case
            code = main([str(a) for a in argv], out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    def check(self, tag, argv, output=None):
        try:
            code, out, err = self.cli(argv)
        except BaseException as e:   # noqa: BLE001 - the point of the test: report the traceback with the case
            import traceback
            raise AssertionError(f"{tag}: `n6emu {' '.join(map(str, argv))}` raised {type(e).__name__}: {e}\n"
                                 f"{traceback.format_exc()}") from None
        assert code in (0, 2), f"{tag}: exit status {code}; stderr: {err!r}"
        if code == 2:
            lines = err.splitlines()
            assert len(lines) == 1, f"{tag}: stderr is not one line: {err!r}"
            assert "\x1b" not in err and "\x07" not in err, f"{tag}: unescaped control characters: {err!r}"
            if output is not None:
                assert not os.path.exists(output), f"{tag}: exit 2 but {output} was written"
        self.stats[f"exit{code}"] += 1
        return code, out, err

    def model_case(self, tag, data, ext, rng):
        path = self.tmp / f"m{ext}"
        path.write_bytes(data)
        code, _, _ = self.check(tag, ["inspect", path])
        if code != 0:
            self.stats[f"{ext} refused"] += 1
            return
        self.stats[f"{ext} accepted"] += 1
        from emu.models import import_model
        model = import_model(path)
        shape = model.input_shape
        x_path, out_path = self.tmp / "x.npy", self.tmp / "out.npy"
        if out_path.exists():
            out_path.unlink()
        if ext == ".onnx":
            om = model.onnx
            s, zp = float(om.input_scale), om.input_zero_point
            info = np.iinfo(om.io_dtype)
            x = rng.uniform((info.min - zp) * s, (info.max - zp) * s, (2,) + tuple(shape)).astype(np.float32)
            np.save(x_path, x)
            code, _, _ = self.check(tag, ["run", path, "--input", x_path, "--output", out_path, "--profile",
                                          "onnxruntime", "--input-boundary", "float32"], out_path)
            if code == 0:
                self.compare_ort(tag, data, model, x, np.load(out_path))
        else:
            x = rng.integers(-128, 128, (2,) + tuple(shape)).astype(np.int8)
            np.save(x_path, x)
            code, _, _ = self.check(tag, ["run", path, "--input", x_path, "--output", out_path], out_path)
            if code == 0:
                self.compare_tflm(tag, path, model, x_path, np.load(out_path))

    def compare_ort(self, tag, data, model, x, got):
        if not self.oracles or not _has("onnxruntime"):
            return
        import onnx
        import onnxruntime as ort
        from onnx_builder import strip_softmax

        from emu.graph.onnx_qdq import dequantize_output
        proto = onnx.ModelProto()
        proto.ParseFromString(data)
        try:
            logits = strip_softmax(proto) if model.onnx.output_tail == "dequantize+softmax" else proto
            so = ort.SessionOptions()
            so.intra_op_num_threads = so.inter_op_num_threads = 1
            so.log_severity_level = 4            # mutants make ORT log shape-merge warnings: not the test's output
            sess = ort.InferenceSession(logits.SerializeToString(), so, providers=["CPUExecutionProvider"])
            name = [i.name for i in sess.get_inputs()][0]
            ref = np.stack([sess.run(None, {name: x[i]})[0] for i in range(len(x))])
        except Exception as e:   # noqa: BLE001 - the oracle refuses the mutant: counted (and listed), not compared
            self.stats["onnxruntime refused"] += 1
            self.notes.append(f"{tag}: onnxruntime refused: {str(e)[:300]}")
            return
        if model.onnx.output_tail is None:
            same = np.array_equal(np.asarray(got).reshape(ref.shape), ref)
        else:
            deq = dequantize_output(model.onnx, got).reshape(ref.shape)
            same = np.array_equal(deq.view(np.int32), np.asarray(ref, np.float32).view(np.int32))
        assert same, f"{tag}: emulator (onnxruntime profile) and onnxruntime disagree"
        self.stats["onnxruntime agreed"] += 1

    def compare_tflm(self, tag, path, model, x_path, got):
        if self.tflm is None:
            return
        ref = self.tflm.run(path, x_path, model.graph.outputs[0], self.tmp / "ref.npy")
        if ref is None:
            self.stats["tflite-micro crashed"] += 1
            self.notes.append(f"{tag}: tflite-micro crashed")
            return
        assert np.array_equal(np.asarray(got).reshape(ref.shape), ref), \
            f"{tag}: emulator (cmsis-nn) and tflite-micro disagree"
        self.stats["tflite-micro agreed"] += 1

    def case(self, kind, seed):
        tag = f"case {kind}:{seed} (reproduce: N6EMU_FUZZ_CASE={kind}:{seed} pytest tests/test_fuzz.py -k one_case)"
        rng = np.random.default_rng([seed, list(KINDS).index(kind)])
        self.stats[kind] += 1
        if kind == "tflite-bytes":
            self.model_case(tag, mutate_bytes(rng, self.tflite_base), ".tflite", rng)
        elif kind == "tflite-craft":
            self.model_case(tag, craft_tflite(rng), ".tflite", rng)
        elif kind == "onnx-bytes":
            models = base_onnx_models()
            name, data = models[int(rng.integers(0, len(models)))] if rng.random() < 0.3 else models[1 + int(
                rng.integers(0, 2))]
            self.model_case(tag, mutate_bytes(rng, data), ".onnx", rng)
        elif kind == "onnx-proto":
            models = base_onnx_models()
            name, data = models[int(rng.integers(0, len(models)))]
            try:
                mutated = mutate_onnx_proto(rng, data)
            except Exception:   # noqa: BLE001 - a mutation the protobuf library itself refuses: nothing to test
                self.stats["onnx mutation not serialisable"] += 1
                return
            self.model_case(tag, mutated, ".onnx", rng)
        elif kind == "config":
            cfg = self.tmp / "cfg.toml"
            cfg.write_bytes(mutate_config(rng, self.fixtures))
            out = self.tmp / "res.jsonl"
            if out.exists():
                out.unlink()
            code, _, _ = self.check(tag, ["replay", CLIP, "--config", cfg, "--out", out], out)
            self.stats[f"config exit{code}"] += 1
        else:
            self.paths_case(tag, rng)

    def paths_case(self, tag, rng):
        d = self.tmp
        names = [d / "nope.onnx", d / "fixtures" / "dir", d / "fixtures" / "empty.onnx", d / "fixtures" / "text.tflite",
                 d / f"{HOSTILE_NAME}.onnx", d / "x.bin", "", "-", d / "fixtures" / "pickle.npy", "/dev/null",
                 d / "fixtures", str(d / "a") * 40]
        p = names[int(rng.integers(0, len(names)))]
        if isinstance(p, Path) and p.name.startswith("\x1b") and not p.exists():
            p.write_bytes(b"\x00" * int(rng.integers(0, 64)))
        how = int(rng.integers(0, 4))
        out = d / "po.npy"
        for stale in (out, d / "pr.jsonl", d / "pr.settings.json"):
            if stale.exists():
                stale.unlink()
        if how == 0:
            self.check(tag, ["inspect", p])
        elif how == 1:
            self.check(tag, ["run", p, "--input", d / "fixtures" / "short.npy", "--output", out], out)
        elif how == 2:
            self.check(tag, ["run", KWS_ONNX, "--input", p, "--output", out], out)
        else:
            self.check(tag, ["replay", CLIP, "--config", p, "--out", d / "pr.jsonl"], d / "pr.jsonl")

    def close(self):
        if self.tflm is not None:
            self.tflm.close()


def _has(mod):
    import importlib.util
    return importlib.util.find_spec(mod) is not None


def schedule(n):
    """(kind, seed) of n cases: each kind its share, seeds 0.. per kind (the same n gives the same cases)."""
    out = []
    for kind, share in KINDS.items():
        out.extend((kind, s) for s in range(max(1, round(n * share))))
    return out


def run_campaign(tmp_path, n):
    """Every case of schedule(n); failures are collected (each names its seed and how to replay it)."""
    f = Fuzz(tmp_path)
    failures = []
    try:
        for kind, seed in schedule(n):
            try:
                f.case(kind, seed)
            except AssertionError as e:
                failures.append(str(e))
    finally:
        f.close()
    print("fuzz:", dict(sorted(f.stats.items())))
    print("\n".join(f.notes))
    assert not failures, f"{len(failures)} failing fuzz case(s); first:\n" + "\n".join(failures[:5])
    return f.stats


def test_fuzz(tmp_path):
    stats = run_campaign(tmp_path, FUZZ_CASES)
    assert sum(stats[k] for k in KINDS) >= FUZZ_CASES


@pytest.mark.slow
def test_fuzz_sweep(tmp_path):
    run_campaign(tmp_path, SLOW_CASES)


if os.environ.get("N6EMU_FUZZ_CASE"):      # collected only to reproduce one case of a failed campaign
    def test_one_case(tmp_path):
        """One case by its KIND:SEED (environment variable N6EMU_FUZZ_CASE=KIND:SEED)."""
        kind, seed = os.environ["N6EMU_FUZZ_CASE"].rsplit(":", 1)
        f = Fuzz(tmp_path)
        try:
            f.case(kind, int(seed))
        finally:
            f.close()
