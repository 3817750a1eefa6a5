"""The `n6emu` command line: in-process and as a subprocess; every user mistake is one line, exit 2,
no traceback, no partial output."""
import io
import json
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from emu.cli import main
from emu.kernels.backends import choose_backend


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
        # three inputs: "auto" runs them on the C twins when they are built (emu.kernels.backends.choose_backend)
        assert meta["profile"] == "cmsis-nn" and meta["rounding"] == "double"
        assert meta["backend"] == choose_backend("auto", 3)
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


# ---- issue 15: first run, silent successes, outputs, signals, --json, hostile names -----------------------------

import os  # noqa: E402
import signal  # noqa: E402
import stat  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from test_audio import write_wav  # noqa: E402

CLIPS = Path(__file__).resolve().parent.parent / "emu" / "data" / "clips"


class _Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def no_device(monkeypatch):
    """Building the device (and compiling) is an error: the command must fail before."""
    import emu.device

    class Boom:
        def __init__(self, *a, **k):
            raise AssertionError("the device was built before the inputs were checked")
    monkeypatch.setattr(emu.device, "Device", Boom)


def bundled_model():
    from emu.config import load_config
    return load_config().model_path()


def test_inputs_are_checked_before_the_device_is_built(tmp_path, no_device):
    write_wav(tmp_path / "short.wav", np.zeros(8000, np.int16))
    write_wav(tmp_path / "st44.wav", np.zeros(8820, np.int16), rate=44100, channels=2)
    cases = [
        (["replay", str(tmp_path / "missing.wav")], "no such file"),
        (["replay", str(tmp_path / "short.wav")], r"^n6emu: error: no window: .*short\.wav is 0\.50 s, shorter than "
                                                  r"one 0\.98 s patch$"),
        (["replay", str(tmp_path / "st44.wav")], "2 channels.*44100 Hz.*16000 Hz"),
        (["replay", str(CLIPS / "yes.wav"), "--dump", str(tmp_path / "d"), "--windows", "100"],
         "no such window; the longest file has 1 window"),
        (["features", str(tmp_path / "short.wav"), "--output", str(tmp_path / "f.npy")], "0.50 s, shorter"),
        (["features", str(CLIPS), "--output", str(tmp_path / "f.npy")], "is a folder of 12 recording.*one recording"),
        (["vectors", "--audio", str(tmp_path / "missing.wav"), "--out", str(tmp_path / "v")], "no such file"),
    ]
    for argv, needle in cases:
        code, out, err = call(argv)
        assert_one_line_error(code, err, needle)
        assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.wav", "st44.wav"]


def test_compile_notice_only_on_a_terminal_with_a_cold_cache(tmp_path, monkeypatch, no_device):
    import emu.cli as cli
    for tty, cold, shown in ((True, True, True), (True, False, False), (False, True, False)):
        monkeypatch.setattr(cli, "_kernels_cold", lambda cold=cold, **what: cold)
        err = _Tty() if tty else io.StringIO()
        for backend in (["--backend", "numba"], []):   # a one-clip replay on "auto" runs on the C twins: no compile
            with pytest.raises(AssertionError, match="device was built"):
                cli.main(["replay", str(CLIPS / "yes.wav")] + backend, out=io.StringIO(), err=err)
            notice = [line for line in err.getvalue().splitlines() if "compiling kernels" in line]
            assert notice == (["n6emu: compiling kernels (first run only, about 20 s)"]
                              if shown and (backend or choose_backend("auto", 1) == "numba") else [])
            err = _Tty() if tty else io.StringIO()


def test_first_run_compiles_the_network_in_a_second_process_only_for_the_command(monkeypatch, no_device):
    """Cold cache: the `n6emu` process (main() without argv) of a device command starts the network's compile
    helper for its device when it runs on Numba; in-process calls (argv given), `--backend c`, a short job on
    "auto" (the C twins) and a warm cache do not."""
    import emu._install
    import emu.cli as cli
    started = []
    monkeypatch.setattr(emu._install, "compile_network_in_background", started.append)
    clip = str(CLIPS / "yes.wav")
    numba = ["--backend", "numba"]
    auto_numba = choose_backend("auto", 1) == "numba"        # the C twins are not built
    for argv, cold, extra, expected in ((None, True, numba, [None]),
                                        (["replay", clip] + numba, True, [], []),
                                        (None, False, numba, []),
                                        (None, True, ["--backend", "c"], []),
                                        (None, True, [], [None] if auto_numba else [])):
        started.clear()
        monkeypatch.setattr(cli, "_kernels_cold", lambda cold=cold, **what: cold)
        monkeypatch.setattr(sys, "argv", ["n6emu", "replay", clip] + extra)
        with pytest.raises(AssertionError, match="device was built"):
            cli.main(argv, out=io.StringIO(), err=io.StringIO())
        assert started == expected, (argv, cold, extra)


def test_network_compile_helper_leaves_the_device_nothing_to_compile(tmp_path):
    """emu._install's compile helper, run in a fresh kernel cache, compiles the device's network kernels with the
    argument types the device chain passes: a device in the same cache then runs its network on cache hits only."""
    env = dict(os.environ, N6EMU_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("NUMBA_CACHE_DIR", None)
    from emu._install import HELPER_COMMAND
    res = subprocess.run([sys.executable, "-c", HELPER_COMMAND, ""], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    probe = textwrap.dedent("""
        import sys, numpy as np
        from numba.core.dispatcher import Dispatcher
        from emu.device import Device
        dev = Device()
        p = dev.frontend.params
        out = dev.run(dev.input_buffer(np.zeros((2, p.n_mels, p.n_frames), np.int8)))
        hits = misses = 0
        for name, mod in list(sys.modules.items()):
            if name.startswith("emu.kernels") or name == "emu.fixedpoint":
                for d in vars(mod).values():
                    if isinstance(d, Dispatcher) and d._cache_hits:
                        hits += sum(d._cache_hits.values())
                        misses += sum(d._cache_misses.values())
                    elif isinstance(d, Dispatcher):
                        misses += sum(d._cache_misses.values())
        print(out.shape[0], hits, misses)
    """)
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    rows, hits, misses = map(int, res.stdout.split())
    assert rows == 2 and hits > 0 and misses == 0, res.stdout


def test_cold_cache_detection_follows_numba_cache_dir(tmp_path):
    code = "from emu.cli import _kernels_cold; print(_kernels_cold())"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "empty-cache"))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "True", res.stderr


def test_progress_bar_clock_eta_and_results_never_overwritten(monkeypatch):
    import emu.cli as cli
    buf = io.StringIO()
    p = cli._Progress(buf, True, t0=time.monotonic() - 50)
    p(10, 100)
    time.sleep(0.25)
    p(50, 100)
    text = buf.getvalue()
    assert re.search(r"\s5\d\.\d s  ETA ", text) and "ETA    ? s" in text
    assert re.search(r"50\.0%.*ETA +0\.[0-9] s", text)
    # one stream for results and bar (a terminal): every result line is whole, the bar never on it
    both = _Tty()
    code = cli.main(["replay", str(CLIPS / "yes.wav"), str(CLIPS / "no.wav"), "--progress"], out=both, err=both)
    assert code == 0
    segments = both.getvalue().split("\n")
    results = [s for s in segments if "yes.wav" in s or "no.wav" in s]
    assert len(results) == 2
    for s in results:
        line = s.rsplit("\x1b[K", 1)[-1]
        assert "\r" not in line and "[" not in line and re.match(r"\s+0\.00-0\.98 s  ", line), repr(s)
    assert segments[-3].rsplit("\x1b[K", 1)[-1].startswith("2 windows from 2 file(s)")


def test_progress_clock_counts_from_the_command_start(monkeypatch):
    import emu.device
    real = emu.device.Device

    class Slow(real):
        def __init__(self, *a, **k):
            time.sleep(1.0)
            super().__init__(*a, **k)
    monkeypatch.setattr(emu.device, "Device", Slow)
    err = io.StringIO()
    assert main(["replay", str(CLIPS / "yes.wav"), "--progress"], out=io.StringIO(), err=err) == 0
    first = re.search(r"%\s+(\d+\.\d) s", err.getvalue())
    assert first and float(first.group(1)) >= 1.0, err.getvalue()


def test_replay_reports_files_without_a_window_and_leftover_samples(tmp_path):
    write_wav(tmp_path / "short.wav", np.zeros(8000, np.int16))
    code, out, err = call(["replay", str(CLIPS / "yes.wav"), str(tmp_path / "short.wav"), "--out",
                           str(tmp_path / "r.jsonl")])
    assert code == 0, err
    assert re.search(r"no window: .*short\.wav is 0\.50 s, shorter than one 0\.98 s patch", out)
    assert "320 sample(s) (0.02 s) after the last patch of 1 file(s) not computed" in out
    meta = json.loads((tmp_path / "r.jsonl.settings.json").read_text())
    by_file = {Path(i["file"]).name: i for i in meta["inputs"]}
    assert by_file["yes.wav"]["windows"] == 1 and by_file["yes.wav"]["leftover_samples"] == 320
    assert by_file["short.wav"]["windows"] == 0 and len(meta["no_window"]) == 1


def test_replay_windows_match_by_range_without_allocating(tmp_path):
    code, out, err = call(["replay", str(CLIPS / "yes.wav"), "--dump", str(tmp_path / "d"), "--windows",
                           "0,5-99999999999"])
    assert code == 0, err
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["yes_w00000.npz"]
    assert "--windows: 5-99999999999 matched no window of any file" in out


def test_below_threshold_and_the_model_class_are_told_apart(tmp_path):
    (tmp_path / "t.toml").write_text("[app]\nthreshold = 0.99\nsilence_gate = false\n")
    code, out, err = call(["replay", str(CLIPS / "yes.wav"), str(CLIPS / "unknown_forward.wav"), "--config",
                           str(tmp_path / "t.toml")])
    assert code == 0, err
    lines = out.splitlines()
    assert "unknown (below threshold)" in lines[0] and "top=yes" in lines[0]
    assert any("(below threshold): no class's probability exceeded [app].threshold = 0.99" in x for x in lines)
    code, out, _ = call(["replay", str(CLIPS / "unknown_forward.wav")])
    assert "_unknown_ " in out.splitlines()[0] and "below threshold" not in out


def test_json_outputs_are_one_document(tmp_path):
    code, out, err = call(["replay", str(CLIPS / "yes.wav"), str(CLIPS / "no.wav"), "--json"])
    assert code == 0, err
    d = json.loads(out)
    assert d["windows"] == 2 and [r["label"] for r in d["records"]] == ["yes", "no"]
    assert d["files"][0]["leftover_samples"] == 320
    code, out, err = call(["inspect", bundled_model(), "--json"])
    assert code == 0, err
    d = json.loads(out)
    assert d["layers"] and d["macs"] == sum(layer["macs"] for layer in d["layers"]) and d["inputs"][0]["shape"]
    code, out, _ = call(["inspect", bundled_model(), "--memory", "--json"])
    assert code == 0 and json.loads(out)["memory"]["peak_bytes"] > 0
    code, out, err = call(["features", str(CLIPS / "yes.wav"), "--output", str(tmp_path / "f.npy"), "--json"])
    assert code == 0, err
    d = json.loads(out)
    assert d["shape"] == [1, 40, 49] and d["leftover_samples"] == 320


def test_conformance_json(conformance_dir, tmp_path):
    shutil.copytree(conformance_dir / "basic", tmp_path / "ok" / "basic")
    code, out, _ = call(["conformance", str(tmp_path / "ok"), "--json"])
    d = json.loads(out)
    assert code == 0 and d["passed"] == 1 and d["cases"][0]["status"] == "PASS"


def test_run_output_folder_empty_batch_and_failed_write(tmp_path, monkeypatch):
    model = bundled_model()
    x = np.zeros((2, 1, 1, 40, 49), np.int8)
    np.save(tmp_path / "in.npy", x)
    np.save(tmp_path / "empty.npy", np.zeros((0, 1, 1, 40, 49), np.int8))
    (tmp_path / "outdir").mkdir()
    code, _, err = call(["run", model, "--input", str(tmp_path / "in.npy"), "--output", str(tmp_path / "outdir")])
    assert_one_line_error(code, err, "--output .*outdir: is a folder; give a file name")
    code, _, err = call(["run", model, "--input", str(tmp_path / "empty.npy"), "--output", str(tmp_path / "o.npy")])
    assert_one_line_error(code, err, "empty.*no input")
    import emu.outputs

    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(emu.outputs.os, "fsync", full)
    code, _, err = call(["run", model, "--input", str(tmp_path / "in.npy"), "--output", str(tmp_path / "o.npy")])
    assert_one_line_error(code, err, "o.npy: could not write it \\(No space left on device\\)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.npy", "in.npy", "outdir"]


def test_run_streams_a_batch_memory_mapped_in_chunks(tmp_path, monkeypatch):
    import emu.cli as cli
    from emu.models import ModelSession
    model = bundled_model()
    x = np.random.default_rng(5).integers(-128, 128, (7, 1, 1, 40, 49)).astype(np.int8)
    np.save(tmp_path / "in.npy", x)
    want, _ = ModelSession(model).run(x)
    calls, real_load, real_run = [], np.load, ModelSession.run
    monkeypatch.setattr(cli, "RUN_CHUNK", 3)
    monkeypatch.setattr(np, "load", lambda *a, **k: (calls.append(k.get("mmap_mode")), real_load(*a, **k))[1])
    sizes = []
    monkeypatch.setattr(ModelSession, "run", lambda self, b, *a: (sizes.append(len(b)), real_run(self, b, *a))[1])
    code, out, err = call(["run", model, "--input", str(tmp_path / "in.npy"), "--output", str(tmp_path / "o.npy")])
    assert code == 0, err
    assert calls[0] == "r" and sizes == [3, 3, 1]
    monkeypatch.setattr(np, "load", real_load)
    y = np.load(tmp_path / "o.npy")
    assert np.array_equal(y, want) and stat.S_IMODE(os.stat(tmp_path / "o.npy").st_mode) == 0o666 & ~_umask()


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_hostile_names_are_escaped(tmp_path, monkeypatch):
    name = "a\x1b[31mred\nb.wav"
    write_wav(tmp_path / name, np.zeros(16000, np.int16))
    code, out, err = call(["replay", str(tmp_path / name)])
    assert code == 0, err
    assert "\x1b" not in out and "\\x1b[31mred" in out and len(out.splitlines()) == 3
    code, _, err = call(["replay", str(tmp_path / "gone\x1b]2;t\x07.wav")])
    assert_one_line_error(code, err, "no such file")
    assert "\x1b" not in err
    import emu.graph.ir as ir
    real = ir.inspect_graph

    def hostile(graph):
        layers = real(graph)
        layers[0] = dict(layers[0], name="evil\x1b]0;title\x07\nname", op="conv\x1b[2J")
        return layers
    monkeypatch.setattr(ir, "inspect_graph", hostile)
    code, out, _ = call(["inspect", bundled_model()])
    assert code == 0 and "\x1b" not in out and "\x07" not in out and "evil\\x1b]0;title\\x07" in out
    assert not any(line.startswith("name") for line in out.splitlines())


def _wait_for(pred, proc, timeout=240):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("kind", ["out", "dump", "stages"])
def test_sigterm_removes_temporaries(tmp_path, kind):
    long = tmp_path / "in" / "long.wav"
    long.parent.mkdir()
    write_wav(long, (np.random.default_rng(0).standard_normal(16000 * 600) * 3000).astype(np.int16))
    work = tmp_path / "work"
    work.mkdir()
    argv = {"out": ["replay", str(long), "--out", str(work / "r.jsonl")],
            "dump": ["replay", str(long), "--dump", str(work / "d")],
            "stages": ["features", str(long), "--output", str(work / "f.npy"), "--stages", str(work / "s")]}[kind]
    proc = subprocess.Popen([sys.executable, "-m", "emu.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        started = _wait_for(lambda: any(p.name.startswith(".") for p in work.iterdir()), proc)
        assert started, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("n6emu: terminated") and "Traceback" not in err
    assert list(work.iterdir()) == []
