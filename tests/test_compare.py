"""`n6emu compare` and its parts: emu.compare (sources, ST's validation metrics, first divergent layer) and
emu.boarddata (the capture readers). The profiles' comparison is checked against direct array comparisons of the
two traces, the onnxruntime profile against onnxruntime itself (every QDQ tensor), every reader on good and
malformed files (one line, exit 2 through the CLI), the metrics on hand-made arrays, and --json against the table."""
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emu import audio
from emu.boarddata import parse_dtype, parse_shape, read_board_data, stedgeai_role
from emu.cli import main
from emu.compare import (Incomparable, board_source, compare, compare_arrays, emulator_source, from_trace,
                         onnxruntime_source, tflm_source)
from emu.errors import N6Error
from emu.trace import Trace

REPO = Path(__file__).resolve().parent.parent
CLIPS = REPO / "emu" / "data" / "clips"
MODEL = REPO / "emu" / "data" / "kws" / "model_qdq.onnx"
FLOAT_MODEL = REPO / "emu" / "data" / "kws" / "model_float.onnx"
ORT_MISSING = 'oracle unavailable: onnxruntime is not installed; pip install -e ".[test]" (or pip install onnxruntime)'
TFLM_MISSING = ('oracle unavailable: tflite-micro is not installed; pip install -e ".[test]" '
                '(or pip install tflite-micro)')


def call(argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code, err, needle):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert re.search(needle, lines[0], re.IGNORECASE), lines[0]


@pytest.fixture(scope="module")
def dev():
    from emu.device import Device
    return Device()


@pytest.fixture(scope="module")
def dev_ort(dev):
    return dev.with_(**{"model.profile": "onnxruntime"})


def clip(name):
    return audio.read_all(audio.probe(CLIPS / f"{name}.wav"))


# ---- (a) cmsis-nn vs onnxruntime profiles: exactly the layers that differ -----------------------------------

@pytest.mark.parametrize("name", ["yes", "left", "unknown_forward"])
def test_profiles_diverge_exactly_where_the_traces_differ(dev, dev_ort, name):
    pcm = clip(name)
    ta, tb = dev.trace(pcm, window=0), dev_ort.trace(pcm, window=0)
    r = compare(emulator_source(dev, pcm=pcm, window=0), emulator_source(dev_ort, pcm=pcm, window=0))
    assert (r.a, r.b) == ("emu:cmsis-nn", "emu:onnxruntime")
    assert r.names() == list(ta) and not r.only_a and not r.only_b and not r.incomparable
    want = [n for n in ta if not np.array_equal(ta[n], tb[n])]
    assert r.diverging() == want
    assert r.first_divergent == want[0]
    assert want[0].startswith("network/") and not any(n.startswith("frontend/") for n in want), want
    for n in ta:
        s = r[n]
        assert s.n_differ == np.count_nonzero(ta[n] != tb[n]), n
        assert s.n_elements == ta[n].size
        if s.lsb_histogram is not None:
            d = np.abs(ta[n].astype(np.int64) - tb[n].astype(np.int64))
            assert sum(s.lsb_histogram.values()) == ta[n].size
            assert s.lsb_histogram.get(0, 0) == ta[n].size - s.n_differ
            assert s.max_lsb == d.max()
            assert s.lsb_histogram == {int(k): int(c) for k, c in zip(*np.unique(d, return_counts=True))}
    # network tensors are dequantized with their own scale/zero-point; the front end's float stages are raw
    first = r[want[0]]
    t = dev.graph.tensors[want[0][len("network/"):]]
    assert first.domain == "dequantized" and first.quant_a == (float(t.scale[0]), int(t.zero_point[0]))
    assert r["frontend/mel"].domain == "raw" and r["frontend/mel"].max_lsb is None
    assert r["output"].acc in (0.0, 1.0) and r["network/" + dev.graph.outputs[0]].acc is None


def test_profiles_cli_json_lists_the_same_layers(dev, dev_ort):
    pcm = clip("go")
    ta, tb = dev.trace(pcm, window=0), dev_ort.trace(pcm, window=0)
    code, out, err = call(["compare", "emu:cmsis-nn", "emu:onnxruntime", "--audio", str(CLIPS / "go.wav"), "--json"])
    assert code == 1, err                   # like diff: 1 when something differs
    d = json.loads(out)
    want = [n for n in ta if not np.array_equal(ta[n], tb[n])]
    assert [s["name"] for s in d["stages"] if s["n_differ"]] == want
    assert d["first_divergent"] == want[0] and d["n_diverging"] == len(want)
    for s in d["stages"]:
        assert s["n_differ"] == np.count_nonzero(ta[s["name"]] != tb[s["name"]])


def test_same_profile_is_identical_and_exits_0(tmp_path):
    code, out, err = call(["compare", "emu", "emu:cmsis-nn", "--audio", str(CLIPS / "yes.wav"), "--window", "0"])
    assert code == 0, err
    assert out.strip().splitlines()[-1].endswith("0 differ; first divergent: none")


# ---- (b) the onnxruntime profile vs onnxruntime --------------------------------------------------------------

def _network_tensors(graph):
    """The emulator's tensors that are QDQ tensors of the ONNX model (not the importer's '#k' layout copies)."""
    return [f"network/{n}" for n in graph.activations() if "#" not in n]


@pytest.mark.parametrize("name", ["yes", "stop", "silence"])
def test_onnxruntime_profile_equals_onnxruntime_on_every_qdq_tensor(dev_ort, name):
    pytest.importorskip("onnxruntime", reason=ORT_MISSING)
    pcm = clip(name)
    a = emulator_source(dev_ort, pcm=pcm, window=0)
    b = onnxruntime_source(MODEL, a["input_buffer"], reference=dev_ort.session.model)
    r = compare(a, b)
    exposed = set(_network_tensors(dev_ort.graph)) | {"input_buffer", "output"}
    assert exposed <= set(r.names()), exposed - set(r.names())
    for n in exposed:
        assert r[n].n_differ == 0 and r[n].max_lsb == 0 and r[n].cos == 1.0, (n, r[n].lsb_histogram)
    # the float Softmax after the last DequantizeLinear: numpy float32 vs MLAS's exp (a few ulp)
    fo = r["float_output"]
    assert fo.acc == 1.0 and fo.max_abs_error < 1e-6 and fo.l2r < 1e-6
    assert r.diverging() in ([], ["float_output"])


def test_onnxruntime_profile_equals_onnxruntime_on_a_batch(dev_ort):
    pytest.importorskip("onnxruntime", reason=ORT_MISSING)
    rng = np.random.default_rng(10)
    buf = rng.integers(-128, 128, (6, 1, 1, 40, 49)).astype(np.int8)
    buf[0] = -128
    buf[1] = 127
    a = emulator_source(dev_ort, input_buffer=buf)
    b = onnxruntime_source(MODEL, buf)
    r = compare(a, b)
    for n in set(_network_tensors(dev_ort.graph)) | {"input_buffer", "output"}:
        assert r[n].shape[0] == 6 and r[n].n_differ == 0, n
    assert r["output"].acc == 1.0


RANDOM_MODELS = {   # layouts: a transposed H/W and a Reshape to 2-D; uint8 with a concat; a square NCHW == NHWC shape
    "transpose-int8": ("int8", [dict(op="conv", cout=3, k=3, pad=1, act="relu"), dict(op="transpose_hw"),
                                dict(op="conv", cout=2, k=(3, 1)), dict(op="flatten"), dict(op="gemm", out=4)],
                       (1, 2, 7, 5), False),
    "concat-uint8": ("uint8", [dict(op="conv", cout=4, k=3, pad=1, act="relu"), dict(op="conv", group=4, mult=1, k=3),
                               dict(op="concat_branch", cout=2), dict(op="maxpool", k=2, stride=2), dict(op="gap"),
                               dict(op="flatten"), dict(op="gemm", out=5)], (1, 3, 9, 7), True),
    "square-int8": ("int8", [dict(op="conv", cout=4, k=1, act="relu"), dict(op="add_branch")], (1, 4, 4, 4), False),
}


@pytest.mark.parametrize("case", sorted(RANDOM_MODELS))
def test_onnxruntime_source_layouts_on_random_qdq_models(tmp_path, case):
    """onnxruntime's tensors land in the emulator's names, layouts and int8 terms: the onnxruntime profile matches
    them all (uint8 models: shifted by -128; 4-D tensors transposed, also where NCHW and NHWC shapes agree)."""
    pytest.importorskip("onnxruntime", reason=ORT_MISSING)
    import onnx
    from emu.models import ModelSession
    from onnx_builder import build_float_model, quantize_qdq
    act_type, spec, shape, softmax = RANDOM_MODELS[case]
    rng = np.random.default_rng(len(case))
    q = quantize_qdq(build_float_model(spec, shape, seed=4, softmax=softmax),
                     [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)], activation_type=act_type)
    path = tmp_path / "m.onnx"
    onnx.save(q, path)
    s = ModelSession(path, "onnxruntime")
    buf = s.input_bytes(rng.normal(0, 1.5, (5,) + shape).astype(np.float32), "float32")
    r = compare(from_trace(s.trace(buf), "emu"), onnxruntime_source(path, buf))
    names = set(r.names())
    assert {"input_buffer", "output", "float_output"} <= names
    assert {f"network/{n}" for n in s.graph.activations() if "#" not in n} <= names
    assert r.only_a == [n for n in r.only_a if "#" in n] and not r.only_b and not r.incomparable
    assert r.diverging() in ([], ["float_output"])          # a float Softmax tail: a few ulp
    assert r["float_output"].max_abs_error < 1e-6
    if case == "square-int8":                     # a 4-D output is no classifier output: no ACC
        assert r["output"].acc is None
    else:
        assert r["output"].acc == 1.0


def test_onnxruntime_cli_and_float_model(dev_ort):
    pytest.importorskip("onnxruntime", reason=ORT_MISSING)
    code, out, err = call(["compare", "emu:onnxruntime", "onnxruntime", "--audio", str(CLIPS / "no.wav"), "--json"])
    assert code in (0, 1), err
    d = json.loads(out)
    assert {s["name"] for s in d["stages"] if s["n_differ"]} <= {"float_output"}
    assert "network/input#1" in d["only_a"] and not d["only_b"]
    # the float model: every QuantizeLinear's float input, compared with the dequantized int8 tensor
    pcm = clip("no")
    a = emulator_source(dev_ort, pcm=pcm, window=0)
    f = onnxruntime_source(FLOAT_MODEL, a["input_buffer"], reference=dev_ort.session.model, label="float")
    r = compare(a, f)
    net = [n for n in r.names() if n.startswith("network/")]
    assert len(net) == len(_network_tensors(dev_ort.graph)) - 1        # all but the input
    for n in net:
        assert r[n].domain == "dequantized" and r[n].max_lsb is None and r[n].cos > 0.99, n
    assert r["float_output"].acc == 1.0


def test_onnxruntime_float_model_needs_the_qdq_reference(tmp_path):
    pytest.importorskip("onnxruntime", reason=ORT_MISSING)
    with pytest.raises(N6Error, match="float ONNX model"):
        onnxruntime_source(FLOAT_MODEL, np.zeros((1, 1, 40, 49), np.int8))


def test_tflm_source_equals_the_cmsis_nn_emulator(tmp_path):
    pytest.importorskip("tflite_micro", reason=TFLM_MISSING)
    from tflite_builder import ACT, PAD, ModelBuilder, act_tensor, conv_weights
    rng = np.random.default_rng(3)
    b = ModelBuilder()
    s_in = np.float32(0.05)
    x = act_tensor(b, rng, "x", (1, 6, 6, 2), scale=s_in)
    wt, bt = conv_weights(b, rng, "w", (4, 3, 3, 2), 4, True, 0, s_in)
    y = act_tensor(b, rng, "conv_out", (1, 6, 6, 4), scale=np.float32(0.1))
    b.op("CONV_2D", [x, wt, bt], [y], padding=PAD["SAME"], stride_w=1, stride_h=1, dilation_w_factor=1,
         dilation_h_factor=1, fused_activation_function=ACT["RELU"])
    model = tmp_path / "m.tflite"
    model.write_bytes(b.build([x], [y]))
    buf = rng.integers(-128, 128, (3, 1, 6, 6, 2)).astype(np.int8)
    np.save(tmp_path / "in.npy", buf)
    code, out, err = call(["run", str(model), "--input", str(tmp_path / "in.npy"), "--output",
                           str(tmp_path / "out.npy"), "--dump", str(tmp_path / "t.npz")])
    assert code == 0, err
    r = compare(from_trace(tmp_path / "t.npz"), tflm_source(model, buf))
    assert set(r.names()) == {"input_buffer", "network/x", "network/conv_out", "output"}
    assert not r.diverging()
    code, out, err = call(["compare", f"trace:{tmp_path / 't.npz'}", f"tflm:{model}"])
    assert code == 0, err
    assert "4 stages compared, 0 differ" in out


# ---- (c) board data readers ---------------------------------------------------------------------------------

def test_npy_and_stedgeai_npy_names(tmp_path):
    x = np.arange(12, dtype=np.int8).reshape(1, 12)
    np.save(tmp_path / "a.npy", x)
    d = read_board_data(tmp_path / "a.npy")
    assert d.format == "npy" and list(d.arrays) == [""] and np.array_equal(d.single(), x)
    np.save(tmp_path / "network_val_c_outputs_1.npy", x)
    d = read_board_data(tmp_path / "network_val_c_outputs_1.npy", shape="12")
    assert list(d.arrays) == ["c_outputs_1"] and d.single().shape == (12,)
    assert read_board_data(tmp_path / "a.npy", name="output").arrays.keys() == {"output"}
    assert read_board_data(tmp_path / "a.npy", dtype="int16").single().dtype == np.int16
    np.save(tmp_path / "big.npy", np.array([1, 300]))
    with pytest.raises(N6Error, match=r"300 is outside int8 \[-128, 127\]"):
        read_board_data(tmp_path / "big.npy", dtype="int8")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(N6Error, match="not a readable .npy"):
        read_board_data(tmp_path / "obj.npy")


def test_stedgeai_roles():
    assert stedgeai_role("c_outputs_1") == ("c", "outputs", 1)
    assert stedgeai_role("m_inputs_2") == ("m", "inputs", 2)
    assert stedgeai_role("/x/network_val_c_inputs.csv") == ("c", "inputs", 1)
    assert stedgeai_role("kws_val_m_outputs_3.npy") == ("m", "outputs", 3)
    assert stedgeai_role("output") is None and stedgeai_role("c_outputs") is None


def test_npz_all_arrays_by_name_and_trace_npz(tmp_path, dev):
    np.savez(tmp_path / "v.npz", m_inputs_1=np.zeros((2, 4), np.float32), c_outputs_1=np.ones((2, 3), np.int8))
    d = read_board_data(tmp_path / "v.npz")
    assert d.format == "npz" and list(d.arrays) == ["m_inputs_1", "c_outputs_1"]
    with pytest.raises(N6Error, match="holds 2 arrays"):
        d.single()
    assert list(read_board_data(tmp_path / "v.npz", name="c_outputs_1").arrays) == ["c_outputs_1"]
    with pytest.raises(N6Error, match="no array named 'x'.*m_inputs_1, c_outputs_1"):
        read_board_data(tmp_path / "v.npz", name="x")
    with pytest.raises(N6Error, match="a shape applies to one array"):
        read_board_data(tmp_path / "v.npz", shape="6")
    t = dev.trace(clip("on"), window=0)
    t.save(tmp_path / "t.npz")
    d = read_board_data(tmp_path / "t.npz")
    assert d.format == "trace" and isinstance(d.trace, Trace) and list(d.arrays) == list(t)
    assert np.array_equal(d.arrays["output"], t["output"])
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(N6Error, match="not a readable .npz"):
        read_board_data(tmp_path / "bad.npz")


def test_stedgeai_csv(tmp_path):
    p = tmp_path / "network_val_c_outputs_1.csv"
    p.write_text("# stedgeai validation data\n# dtype=int8\n-63,-25,7\n\n1, 2, 3,\n")
    d = read_board_data(p)
    assert d.format == "stedgeai-csv" and list(d.arrays) == ["c_outputs_1"]
    a = d.single()
    assert a.dtype == np.int8 and a.tolist() == [[-63, -25, 7], [1, 2, 3]]
    assert read_board_data(p, shape="1x3").single().shape == (2, 1, 3)
    assert read_board_data(p, dtype="float32").single().dtype == np.float32
    h = tmp_path / "h.csv"
    h.write_text("a,b\n0.5,1e-3\n")
    assert read_board_data(h).single().tolist() == [[0.5, 0.001]]
    bad = tmp_path / "ragged.csv"
    bad.write_text("1,2,3\n4,5\n")
    with pytest.raises(N6Error, match=r"line 2: 2 values, but the first sample has 3"):
        read_board_data(bad)
    big = tmp_path / "big.csv"
    big.write_text("# dtype=int8\n1,2\n3,200\n")
    with pytest.raises(N6Error, match=r"line 3 \(value #2\): 200 is outside int8"):
        read_board_data(big)
    with pytest.raises(N6Error, match="do not fill shape"):
        read_board_data(p, shape="4")
    (tmp_path / "empty.csv").write_text("# nothing\n")
    with pytest.raises(N6Error, match="no samples"):
        read_board_data(tmp_path / "empty.csv")


def test_raw_memory_dump(tmp_path):
    v = np.array([-2, 300, -32768, 7], np.int16)
    p = tmp_path / "dump.bin"
    p.write_bytes(b"\xAA\xBB" + v.astype("<i2").tobytes() + b"\x00")     # 2 header bytes, 1 trailing byte
    d = read_board_data(p, dtype="int16", shape=(2, 2), offset=2)
    assert d.format == "raw" and d.single().dtype == np.int16 and np.array_equal(d.single(), v.reshape(2, 2))
    assert np.array_equal(read_board_data(p, dtype="s16", shape="4", offset=2).single(), v)
    b = read_board_data(p, dtype="uint8").single()                      # no shape: every whole value
    assert b.size == 11 and b[0] == 0xAA
    with pytest.raises(N6Error, match=r"holds 11 bytes but 5 int16 values of shape \[5\] at offset 2 need 12 bytes"):
        read_board_data(p, dtype="int16", shape=5, offset=2)
    with pytest.raises(N6Error, match="give the dtype"):
        read_board_data(p)
    with pytest.raises(N6Error, match="not a whole number of int16"):
        read_board_data(p, dtype="int16", offset=2)
    with pytest.raises(N6Error, match="past the end"):
        read_board_data(p, dtype="int8", offset=50)
    f = tmp_path / "f.raw"
    f.write_bytes(np.array([1.5, -2.25], "<f4").tobytes())
    assert read_board_data(f, dtype="float32").single().tolist() == [1.5, -2.25]
    with pytest.raises(N6Error, match="byte offset applies to raw binary dumps"):
        np.save(tmp_path / "x.npy", v)
        read_board_data(tmp_path / "x.npy", offset=4)


def test_text_list(tmp_path):
    p = tmp_path / "uart.txt"
    p.write_text("-63 -25 -25\n4 5\n")
    d = read_board_data(p)
    assert d.format == "text" and d.single().tolist() == [-63, -25, -25, 4, 5] and d.single().dtype == np.int64
    q = tmp_path / "out.log"
    q.write_text("[-63, -25,\n  7, 127]\n")
    assert read_board_data(q, dtype="int8", shape="2x2").single().tolist() == [[-63, -25], [7, 127]]
    r = tmp_path / "capture"                # no extension: plain text is read as a text list
    r.write_text("(0.5; -1e-2)")
    assert read_board_data(r).single().tolist() == [0.5, -0.01]
    s = tmp_path / "s.txt"
    s.write_text("1 2\n3 200 4\n")
    with pytest.raises(N6Error, match=r"s.txt line 2 \(value #4\): 200 is outside int8 \[-128, 127\]"):
        read_board_data(s, dtype="int8")
    t = tmp_path / "t.txt"
    t.write_text("1 2.5\n")
    with pytest.raises(N6Error, match=r"2.5 is not an integer"):
        read_board_data(t, dtype="int8")
    u = tmp_path / "u.txt"
    u.write_text("1 2\nout: 3\n")
    with pytest.raises(N6Error, match=r"u.txt line 2: 'out:' is not a number"):
        read_board_data(u)
    e = tmp_path / "e.txt"
    e.write_text(" [ ] \n")
    with pytest.raises(N6Error, match="no numbers"):
        read_board_data(e)
    bin_like = tmp_path / "capture2"        # not text: a raw dump, which needs a dtype
    bin_like.write_bytes(b"\x00\x01\xff")
    with pytest.raises(N6Error, match="raw binary dump"):
        read_board_data(bin_like)
    assert read_board_data(bin_like, dtype="uint8").single().tolist() == [0, 1, 255]


def test_parse_dtype_shape_and_missing_file(tmp_path):
    assert parse_dtype("q15") == np.int16 and parse_dtype("F32") == np.float32 and parse_dtype(None) is None
    with pytest.raises(N6Error, match="unknown dtype 'i8'"):
        parse_dtype("i8")          # numpy's 'i8' is int64: not accepted, to avoid the confusion
    assert parse_shape("1x12") == (1, 12) and parse_shape("[1, 40, 49]") == (1, 40, 49) and parse_shape(12) == (12,)
    with pytest.raises(N6Error, match="positive dimensions"):
        parse_shape("1xa")
    with pytest.raises(N6Error, match="no such file"):
        read_board_data(tmp_path / "nope.bin", dtype="int8")


def test_board_source_mapping(dev, tmp_path):
    pcm = clip("yes")
    emu = emulator_source(dev, pcm=pcm, window=0)
    out = emu["output"]
    np.save(tmp_path / "o.npy", out.reshape(-1))
    s = board_source(read_board_data(tmp_path / "o.npy"), like=emu)
    assert list(s.stages) == ["output"]
    np.save(tmp_path / "f.npy", emu["float_output"].reshape(-1))
    assert list(board_source(read_board_data(tmp_path / "f.npy"), like=emu).stages) == ["float_output"]
    np.save(tmp_path / "i.npy", emu["input_buffer"].reshape(-1))
    assert list(board_source(read_board_data(tmp_path / "i.npy"), like=emu).stages) == ["input_buffer"]
    name = dev.graph.outputs[0]
    np.savez(tmp_path / "named.npz", **{name: out, "input_buffer": emu["input_buffer"], "junk": np.zeros(3)})
    s = board_source(read_board_data(tmp_path / "named.npz"), like=emu)
    assert list(s.stages) == [f"network/{name}", "input_buffer"] and any("junk" in n for n in s.notes)
    np.save(tmp_path / "odd.npy", np.zeros(7, np.int8))
    with pytest.raises(N6Error, match="7 int8 values match no stage.*--stage"):
        board_source(read_board_data(tmp_path / "odd.npy"), like=emu)
    s = board_source(read_board_data(tmp_path / "o.npy"), like=emu, stage=name)
    assert list(s.stages) == [f"network/{name}"]
    with pytest.raises(N6Error, match="not a stage of emu:cmsis-nn"):
        board_source(read_board_data(tmp_path / "o.npy"), like=emu, stage="nope")


def test_stedgeai_npz_through_the_cli(dev, tmp_path):
    """A stedgeai-style validation file: the model runs on its c_inputs_1, c_outputs_1 is compared, m_* are left
    out; one corrupted board value is found, counted and named."""
    from emu.models import ModelSession
    rng = np.random.default_rng(5)
    ins = rng.integers(-128, 128, (4, 1, 1, 40, 49)).astype(np.int8)
    q, f = ModelSession(dev.model_path, "cmsis-nn").run(ins)
    np.savez(tmp_path / "kws_val_io.npz", m_inputs_1=ins.astype(np.float32), c_inputs_1=ins,
             c_outputs_1=f.astype(np.float32), m_outputs_1=f.astype(np.float64))
    code, out, err = call(["compare", str(tmp_path / "kws_val_io.npz"), "emu", "--json"])
    assert code == 0, err
    d = json.loads(out)
    assert [s["name"] for s in d["stages"]] == ["input_buffer", "float_output"]
    assert d["stages"][1]["shape"] == [4, 1, 12] and d["stages"][1]["acc"] == 1.0
    assert any("m_outputs_1" in n for n in d["notes"])
    q2 = q.copy()
    q2[2, 0, 5] = np.int8(q2[2, 0, 5] + (1 if q2[2, 0, 5] < 127 else -1))
    np.savez(tmp_path / "int_val_io.npz", c_inputs_1=ins, c_outputs_1=q2)
    code, out, err = call(["compare", str(tmp_path / "int_val_io.npz"), "emu", "--json"])
    assert code == 1, err
    d = json.loads(out)
    o = next(s for s in d["stages"] if s["name"] == "output")
    assert o["n_differ"] == 1 and o["max_lsb"] == 1 and o["lsb_histogram"] == {"0": 47, "1": 1}
    assert d["first_divergent"] == "output"


def test_board_dump_round_trip_through_the_cli(dev, tmp_path):
    pcm = clip("up")
    out = dev.trace(pcm, window=0)["output"]
    out.astype("<i1").tofile(tmp_path / "out.bin")
    (tmp_path / "out.txt").write_text("[" + ", ".join(str(int(v)) for v in out.reshape(-1)) + "]\n")
    for extra in (["out.bin", "--dtype", "int8"], ["out.txt", "--dtype", "int8"], ["out.txt"]):
        code, text, err = call(["compare", str(tmp_path / extra[0]), "emu", "--audio", str(CLIPS / "up.wav")]
                               + extra[1:])
        assert code == 0, err
        assert re.search(r"^\s+output\s+1x12\s+0\s+0\s", text, re.M), text


@pytest.mark.parametrize("files,argv,needle", [
    ({"o.bin": b"\x01\x02"}, ["o.bin", "emu", "--dtype", "int8", "--shape", "1x12", "--input", "in.npy"],
     r"holds 2 bytes but 12 int8 values of shape \[1, 12\] at offset 0 need 12 bytes"),
    ({"o.bin": b"\x01\x02"}, ["o.bin", "emu", "--input", "in.npy"], r"raw binary dump has no header.*--dtype"),
    ({"o.txt": "1 2 200"}, ["o.txt", "emu", "--dtype", "int8", "--input", "in.npy"], r"200 is outside int8"),
    ({"o.txt": "1 two 3"}, ["o.txt", "emu", "--input", "in.npy"], r"'two' is not a number"),
    ({"o.csv": "1,2\n3\n"}, ["o.csv", "emu", "--input", "in.npy"], r"line 2: 1 values, but the first sample has 2"),
    ({"o.npz": b"garbage"}, ["o.npz", "emu", "--input", "in.npy"], r"not a readable .npz"),
    ({"o.npy": b"garbage"}, ["o.npy", "emu", "--input", "in.npy"], r"not a readable .npy"),
    ({"o.txt": "1 2 3"}, ["o.txt", "emu", "--input", "in.npy"], r"3 int64 values match no stage"),
    ({}, ["nothing-here", "emu", "--input", "in.npy"], r"is not a source"),
    ({}, ["emu:fast", "emu", "--input", "in.npy"], r"unknown arithmetic profile 'fast'"),
    ({}, ["emu", "emu:onnxruntime"], r"needs? .*--audio CLIP|runs the model: give --audio"),
    ({}, ["emu", "emu", "--input", "in.npy", "--dtype", "int8"], r"neither A nor B is one"),
    ({}, ["emu", "emu", "--window", "2", "--input", "in.npy"], r"--window picks a patch of --audio"),
    ({"o.txt": "1 2 3"}, ["o.txt", "emu", "--input", "in.npy", "--offset", "4"], r"offset applies to raw"),
    ({"in2.npy": None}, ["emu", "emu", "--input", "in2.npy"], r"holds 7 values but the model input"),
])
def test_malformed_inputs_are_one_line_errors(tmp_path, monkeypatch, files, argv, needle):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "in.npy", np.zeros((1, 1, 40, 49), np.int8))
    for name, content in files.items():
        if content is None:
            np.save(tmp_path / name, np.zeros(7, np.int8))
        elif isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        else:
            (tmp_path / name).write_text(content)
    code, out, err = call(["compare", *argv])
    assert_one_line_error(code, err, needle)
    assert out == ""


def test_malformed_input_as_a_subprocess(tmp_path):
    (tmp_path / "o.txt").write_text("5 -129\n")
    r = subprocess.run([sys.executable, "-m", "emu.cli", "compare", str(tmp_path / "o.txt"), "emu", "--dtype", "int8",
                        "--input", str(tmp_path / "o.txt")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stdout == ""
    assert_one_line_error(r.returncode, r.stderr, r"-129 is outside int8")


# ---- (d) the metrics on hand-made arrays ------------------------------------------------------------------

def test_metrics_on_floats():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 6.0])
    s = compare_arrays(a, b, name="x")
    assert s.domain == "raw" and s.n_elements == 4 and s.n_differ == 1
    assert s.rmse == pytest.approx(1.0) and s.mae == pytest.approx(0.5) and s.max_abs_error == pytest.approx(2.0)
    assert s.l2r == pytest.approx(2 / math.sqrt(50))
    assert s.cos == pytest.approx(38 / math.sqrt(30 * 50))
    assert s.max_lsb is None and s.lsb_histogram is None and s.acc is None
    same = compare_arrays(b, b)
    assert (same.n_differ, same.rmse, same.mae, same.l2r, same.cos) == (0, 0.0, 0.0, 0.0, pytest.approx(1.0))


def test_metrics_on_quantized_integers():
    a = np.array([0, 1, 2, -3], np.int8)
    b = np.array([0, 0, 5, -3], np.int8)
    s = compare_arrays(a, b, quant_b=(0.5, -1))        # a takes b's quantization (the same tensor)
    assert s.domain == "dequantized" and s.quant_a == s.quant_b == (0.5, -1)
    # dequantized: a = [0.5, 1, 1.5, -1], b = [0.5, 0.5, 3, -1]; e = [0, 0.5, -1.5, 0]
    assert s.rmse == pytest.approx(math.sqrt(2.5 / 4)) and s.mae == pytest.approx(0.5)
    assert s.max_abs_error == pytest.approx(1.5)
    assert s.l2r == pytest.approx(math.sqrt(2.5) / math.sqrt(0.25 + 0.25 + 9 + 1))
    assert s.cos == pytest.approx((0.25 + 0.5 + 4.5 + 1) / math.sqrt((0.25 + 1 + 2.25 + 1) * (0.25 + 0.25 + 9 + 1)))
    assert s.n_differ == 2 and s.max_lsb == 3 and s.lsb_histogram == {0: 2, 1: 1, 3: 1}
    r = compare_arrays(a, b)
    assert r.domain == "raw" and r.rmse == pytest.approx(math.sqrt(10 / 4)) and r.lsb_histogram == {0: 2, 1: 1, 3: 1}
    # int8 vs uint8 board bytes and an int64 text capture: compared as integers
    t = compare_arrays(np.array([0, 1, 2, -3], np.int64), b)
    assert t.n_differ == 2 and t.max_lsb == 3
    # an integer side against a float side: the integer side is dequantized
    m = compare_arrays(a, np.array([0.5, 1.0, 1.5, -1.0], np.float32), quant_a=(0.5, -1))
    assert m.domain == "dequantized" and m.n_differ == 0 and m.rmse == 0 and m.max_lsb is None


def test_metrics_edge_cases():
    z = np.zeros(4)
    s = compare_arrays(z, z)
    assert s.l2r == 0.0 and s.cos == 1.0
    s = compare_arrays(np.array([1.0, 0, 0, 0]), z)
    assert s.l2r is None and s.cos is None and s.to_dict()["l2r"] is None
    s = compare_arrays(np.array([np.nan, -np.inf, 1.0]), np.array([np.nan, -np.inf, 2.0]))
    assert s.n_differ == 1 and s.rmse == pytest.approx(1.0) and "2 non-finite" in s.note
    r = compare_arrays(np.arange(6).reshape(2, 3), np.arange(6))
    assert r.n_differ == 0 and "reshaped" in r.note
    with pytest.raises(Incomparable, match="5 values"):
        compare_arrays(np.arange(5), np.arange(6))


def test_acc_is_argmax_agreement_on_classifier_outputs():
    a = np.array([[1.0, 3.0, 2.0], [5.0, 0.0, 0.0]])
    b = np.array([[0.0, 2.0, 1.0], [0.0, 0.0, 9.0]])
    assert compare_arrays(a, b, classifier=True).acc == 0.5
    assert compare_arrays(a, b).acc is None
    ties = compare_arrays(np.array([[2.0, 2.0]]), np.array([[3.0, 1.0]]), classifier=True)
    assert ties.acc == 1.0                     # the first maximum, like the app's loop
    assert compare_arrays(np.array([[1, 2]], np.int8), np.array([[2, 1]], np.int8), classifier=True).acc == 0.0


def test_compare_orders_by_a_and_lists_one_sided_stages():
    t1, t2 = Trace(), Trace()
    for n, v in (("x", [1, 2]), ("y", [3]), ("only_a", [0])):
        t1.add(n, np.array(v, np.int8), "")
    for n, v in (("y", [4]), ("x", [1, 2]), ("only_b", [0])):
        t2.add(n, np.array(v, np.int8), "")
    r = compare(t1, t2)
    assert r.names() == ["x", "y"] and r.first_divergent == "y" and r.diverging() == ["y"]
    assert r.only_a == ["only_a"] and r.only_b == ["only_b"]
    assert r["y"].n_differ == 1 and r["y"].domain == "raw"
    d = r.to_dict()
    assert d["reference"] == "b" and d["stages"][1]["lsb_histogram"] == {"1": 1}
    with pytest.raises(KeyError):
        r["z"]


# ---- (e) --json carries the table's numbers ----------------------------------------------------------------

def _table_rows(text):
    rows, marked = {}, None
    for line in text.splitlines():
        m = re.match(r"^([ >]) (\S+)\s+(\S+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(dequantized|raw)"
                     r"(\s+<- first divergent)?$", line)
        if m:
            rows[m.group(2)] = m.groups()[2:8]
            if m.group(1) == ">":
                marked = m.group(2)
    return rows, marked


def test_json_carries_the_same_numbers_as_the_table():
    argv = ["compare", "emu:cmsis-nn", "emu:onnxruntime", "--audio", str(CLIPS / "right.wav")]
    code_t, table, err = call(argv)
    code_j, js, err2 = call(argv + ["--json"])
    assert code_t == code_j == 1, err + err2
    d = json.loads(js)
    rows, marked = _table_rows(table)
    assert list(rows) == [s["name"] for s in d["stages"]]
    assert marked == d["first_divergent"] is not None
    for s in d["stages"]:
        shape, n_differ, max_lsb, rmse, cos, domain = rows[s["name"]]
        assert shape == ("x".join(map(str, s["shape"])) if s["shape"] else "scalar")
        assert int(n_differ) == s["n_differ"]
        assert max_lsb == ("-" if s["max_lsb"] is None else str(s["max_lsb"]))
        assert rmse == ("n.a." if s["rmse"] is None else f"{s['rmse']:.6g}")
        assert cos == ("n.a." if s["cos"] is None else f"{s['cos']:.6g}")
        assert domain == s["domain"]
    for s in d["stages"]:
        if s["acc"] is not None:
            assert f"ACC {s['name']}: {s['acc']:.6g} (argmax agreement)" in table
    assert table.strip().splitlines()[-1] == (f"{d['n_compared']} stages compared, {d['n_diverging']} differ; "
                                              f"first divergent: {d['first_divergent']}")
