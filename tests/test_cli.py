"""The `n6emu` command line: in-process and as a subprocess; every user mistake is one line, exit 2,
no traceback, no partial output."""
import io
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from emu.cli import main


def call(argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code, err, needle):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert re.search(needle, lines[0], re.IGNORECASE), lines[0]


def test_inspect_mlperf(mlperf_model):
    code, out, _ = call(["inspect", str(mlperf_model)])
    assert code == 0
    assert "input " in out and "output " in out
    m = re.search(r"(\d+) layers, ([\d,]+) MACs per inference", out)
    assert m and int(m.group(1)) >= 10
    assert int(m.group(2).replace(",", "")) > 1_000_000
    assert "conv2d" in out and "depthwise_conv2d" in out and "fully_connected" in out


def test_run_batch_and_dump(mlperf_model, tmp_path):
    from emu.graph.runtime import Runtime
    from emu.models import load_model

    graph = load_model(mlperf_model)
    shape = graph.tensors[graph.inputs[0]].shape
    x = np.random.default_rng(1).integers(-128, 128, (3,) + tuple(shape)).astype(np.int8)
    np.save(tmp_path / "in.npy", x)
    code, out, err = call(["run", str(mlperf_model), "--input", str(tmp_path / "in.npy"),
                           "--output", str(tmp_path / "out.npy"), "--dump", str(tmp_path / "t.npz")])
    assert code == 0, err
    y = np.load(tmp_path / "out.npy")
    want = Runtime(graph).run(x)
    assert y.shape[0] == 3 and np.array_equal(y, want)
    with np.load(tmp_path / "t.npz") as z:
        meta = json.loads(str(z["__meta__"]))["settings"]
        assert meta["profile"] == "cmsis-nn" and meta["rounding"] == "double" and meta["backend"] == "numba"
        names = set(z.files) - {"__meta__"}
        assert {f"network/{n}" for n in graph.activations()} <= names and {"input_buffer", "output"} <= names
        assert np.array_equal(z[f"network/{graph.outputs[0]}"], want) and np.array_equal(z["output"], want)
        assert np.array_equal(z["input_buffer"], x)
    from emu.trace import Trace
    t = Trace.load(tmp_path / "t.npz")
    assert t.names()[0] == "input_buffer" and t.names()[-2:] == ["output", "float_output"] and "int8 NHWC" in t.stages[
        f"network/{graph.outputs[0]}"].layout


def test_run_errors(mlperf_model, tmp_path):
    good_in = tmp_path / "in.npy"
    np.save(good_in, np.zeros((1, 49, 10, 1), np.int8))
    out = tmp_path / "out.npy"
    np.save(tmp_path / "f32.npy", np.zeros((1, 49, 10, 1), np.float32))
    np.save(tmp_path / "shape.npy", np.zeros((1, 10, 49, 1), np.int8))
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    (tmp_path / "m.pb").write_bytes(b"x")
    cases = [
        (["run", str(tmp_path / "missing.tflite"), "--input", str(good_in), "--output", str(out)], "no such model"),
        (["run", str(tmp_path / "m.pb"), "--input", str(good_in), "--output", str(out)], "unknown model type"),
        (["run", str(mlperf_model), "--input", str(tmp_path / "f32.npy"), "--output", str(out)], "int8"),
        (["run", str(mlperf_model), "--input", str(tmp_path / "shape.npy"), "--output", str(out)], "shape"),
        (["run", str(mlperf_model), "--input", str(tmp_path / "bad.npy"), "--output", str(out)], "not a readable"),
        (["run", str(mlperf_model), "--input", str(tmp_path / "nope.npy"), "--output", str(out)], "no such input"),
        (["run", str(mlperf_model), "--input", str(good_in), "--output", str(out), "--profile", "xx"], "profile"),
        (["run", str(mlperf_model), "--output", str(out)], "--input"),
        (["frobnicate"], "invalid choice"),
    ]
    for argv, needle in cases:
        code, _, err = call(argv)
        assert_one_line_error(code, err, needle)
        assert not out.exists(), argv


def test_float_model_is_rejected(shared_dir, tmp_path):
    model = shared_dir / "models" / "kws_ref_model_float32.tflite"
    if not model.is_file():
        from conftest import _SHARED_HINT
        pytest.skip(f"oracle unavailable: {model} (the float MLPerf Tiny KWS model) is absent; {_SHARED_HINT}")
    code, _, err = call(["inspect", str(model)])
    assert_one_line_error(code, err, "quantiz")


def test_conformance_cli_pass_fail_unknown(conformance_dir, tmp_path):
    for case in ("basic", "softmax", "avgpooling"):
        shutil.copytree(conformance_dir / case, tmp_path / "ok" / case)
    code, out, _ = call(["conformance", str(tmp_path / "ok")])
    assert code == 0
    assert out.strip().splitlines()[-1] == "3 passed, 0 failed"
    assert sum(line.startswith("PASS ") for line in out.splitlines()) == 3

    # a corrupted reference output fails with a count and an NHWC position; an unknown folder is reported
    shutil.copytree(conformance_dir / "basic", tmp_path / "bad" / "basic")
    ref = tmp_path / "bad" / "basic" / "output_ref_data.h"
    text = ref.read_text()
    m = re.search(r"\{\s*(-?\d+)", text)
    ref.write_text(text[:m.start(1)] + str((int(m.group(1)) + 1 + 128) % 256 - 128) + text[m.end(1):])
    (tmp_path / "bad" / "mystery").mkdir()
    (tmp_path / "bad" / "mystery" / "config_data.h").write_text("#define MYSTERY_FOO 1\n")
    code, out, _ = call(["conformance", str(tmp_path / "bad")])
    assert code == 1
    lines = out.strip().splitlines()
    assert any(line.startswith("FAIL basic") and "1/" in line and "(0, 0, 0, 0)" in line for line in lines), out
    assert any(line.startswith("UNKNOWN") and "mystery" in line for line in lines), out
    assert lines[-1].startswith("0 passed, 1 failed")


def test_subprocess_entry_point(mlperf_model, tmp_path):
    res = subprocess.run([sys.executable, "-m", "emu.cli", "inspect", str(mlperf_model)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "MACs per inference" in res.stdout
    res = subprocess.run([sys.executable, "-m", "emu.cli", "run", str(tmp_path / "x.tflite"),
                          "--input", "a.npy", "--output", str(tmp_path / "o.npy")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "o.npy").exists()


def test_run_onnx_bundled_batch_float_output(tmp_path):
    """A batch through the bundled QDQ model: int8 logits equal one-by-one runs; the float output is the
    model's DequantizeLinear+Softmax tail per sample (not over the batch axis)."""
    import onnxruntime as ort

    from emu.config import load_config
    model = load_config().model_path()
    x = np.random.default_rng(3).integers(-128, 128, (3, 1, 1, 40, 49)).astype(np.int8)
    np.save(tmp_path / "in.npy", x)
    for profile in ("onnxruntime", "cmsis-nn"):
        code, _, err = call(["run", model, "--input", str(tmp_path / "in.npy"), "--output", str(tmp_path / "q.npy"),
                             "--profile", profile])
        assert code == 0, err
        code, _, err = call(["run", model, "--input", str(tmp_path / "in.npy"), "--output", str(tmp_path / "f.npy"),
                             "--profile", profile, "--float-output"])
        assert code == 0, err
        q, f = np.load(tmp_path / "q.npy"), np.load(tmp_path / "f.npy")
        assert q.shape == f.shape == (3, 1, 12) and q.dtype == np.int8 and f.dtype == np.float32
        for i in range(3):
            np.save(tmp_path / "one.npy", x[i])
            assert call(["run", model, "--input", str(tmp_path / "one.npy"), "--output", str(tmp_path / "q1.npy"),
                         "--profile", profile])[0] == 0
            assert np.array_equal(np.load(tmp_path / "q1.npy"), q[i])
        assert np.allclose(f.sum(axis=-1), 1.0, atol=1e-6)
        if profile == "onnxruntime":
            f_ort = f
    # onnxruntime profile: the float tail agrees with onnxruntime itself (float softmax: within a few ulps)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    t = sess.get_inputs()[0]
    scale, zp = 0.11069900542497635, 78
    for i in range(3):
        xf = (x[i].astype(np.float32) - zp) * np.float32(scale)
        want = sess.run(None, {t.name: xf})[0]
        assert np.allclose(f_ort[i], want, rtol=0, atol=1e-6)


def test_run_float_boundary_on_tflite_is_one_line(mlperf_model, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 49, 10, 1), np.float32))
    code, _, err = call(["run", str(mlperf_model), "--input", str(tmp_path / "x.npy"), "--output",
                         str(tmp_path / "o.npy"), "--input-boundary", "float32"])
    assert_one_line_error(code, err, "int8 inputs")
    assert not (tmp_path / "o.npy").exists()
