"""benchmarks/run_all.py --report-only renders RESULTS.md from the JSON files alone: missing files, a failed
benchmark, a missing peer and met/missed targets, from small synthetic JSONs (no benchmark is run)."""
import importlib.util
import json
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RUN_ALL = os.path.join(HERE, "..", "benchmarks", "run_all.py")


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("bench_run_all", RUN_ALL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MACHINE = dict(cpu="Test CPU", cores=2, python="3.11", versions=dict(numpy="2", numba=None))


def _write(d, name, obj):
    with open(os.path.join(d, name), "w") as f:
        json.dump(obj, f)


def _speed(litert=True, single=100e-6, cli_replay=0.8):
    t = {"n6emu single": single, "n6emu batch256 1 thread": 80e-6, "n6emu batch256 2 threads": 45e-6}
    if litert:
        t.update({"litert xnnpack 1 thread": 60e-6, "litert xnnpack 2 threads": 70e-6})
    xnn = t.get("litert xnnpack 1 thread")
    return dict(machine=MACHINE, mlperf=dict(
        model="m.tflite", litert="ai-edge-litert" if litert else "neither ai-edge-litert nor tflite-runtime",
        per_inference_seconds=t, n6emu_equals_litert_on_input=True if litert else None,
        ratio_single_vs_xnnpack=single / xnn if xnn else None,
        ratio_batch_2_threads_vs_xnnpack=45e-6 / xnn if xnn else None),
        bundled=dict(model="b.onnx", onnxruntime="onnxruntime 1", per_inference_seconds={
            "n6emu single cmsis-nn": 500e-6, "n6emu single onnxruntime": 300e-6, "onnxruntime 1 thread": 200e-6},
            ratio_single_vs_onnxruntime_1_thread={"cmsis-nn": 2.5, "onnxruntime": 1.5}),
        cli={"replay yes.wav": dict(median_seconds=cli_replay, runs=[cli_replay]),
             "python -c pass": dict(median_seconds=0.04)})


def _replay(minutes, wall, rss=200.0):
    return dict(machine=MACHINE, audio_seconds=60 * minutes, windows=61 * minutes, median_wall_seconds=wall,
                realtime_factor=60 * minutes / wall, peak_rss_mb=rss, peer=dict(seconds=wall / 3), load_average=[1, 1, 1])


def _render(run_all, d, plot=False):
    md = os.path.join(d, "RESULTS.md")
    png = os.path.join(d, "results.png") if plot else ""
    assert run_all.main(["--report-only", "--results-dir", str(d), "--report", md, "--plot", png]) == 0
    with open(md) as f:
        return f.read()


def _verdict(text, target_start):
    rows = [line for line in text.splitlines() if line.startswith("| " + target_start)]
    assert rows, f"no target row starting {target_start!r}"
    return rows[0].rsplit("|", 2)[-2].strip()


def test_empty_results_dir_reports_everything_missing(run_all, tmp_path):
    text = _render(run_all, tmp_path)
    assert "# Benchmark results" in text
    assert "**not run** (no `speed.json`" in text and "**not run** (no `replay_60min.json`" in text
    assert "0 met, 0 missed" in text
    assert _verdict(text, "MLPerf DS-CNN single") == "not measured"


def test_met_missed_peer_missing_and_failed(run_all, tmp_path):
    _write(tmp_path, "speed.json", _speed(litert=False, cli_replay=0.8))
    _write(tmp_path, "replay_1min.json", _replay(1, 1.2))
    _write(tmp_path, "replay_60min.json", _replay(60, 2.5))
    _write(tmp_path, "chain.json", dict(machine=MACHINE, fresh_device_s=0.1, with_profile_s=0.02, with_ratio=0.2,
                                        diagnose_s=5.0, diagnose_runs_s=[5.0]))
    _write(tmp_path, "frontend_st.json", {"machine": MACHINE, "results": {
        "st-f16-helium/numba": dict(seconds_per_patch=1e-3, realtime_factor=1000.0)}})
    _write(tmp_path, "dataset.json", dict(machine=MACHINE, files=10))   # stale: failed in this run
    with open(os.path.join(tmp_path, "frontend_q15.json"), "w") as f:      # unreadable
        f.write("{not json")
    _write(tmp_path, "run_all.json", dict(started="today", quick=True, cpu=dict(cpu="Test CPU", cores=2), benchmarks={
        "speed": dict(status="ok", returncode=0, wall_seconds=10, load_before=[1, 1, 1], load_after=[2, 1, 1],
                      cpu_busy_cores=1.5, cpu_own_cores=1.0, cpu_others_cores=0.5),
        "dataset": dict(status="failed", returncode=1, wall_seconds=3, load_before=[1, 1, 1], load_after=[1, 1, 1],
                        stderr_tail="Traceback\nModuleNotFoundError: No module named 'distributed'")}))
    text = _render(run_all, tmp_path, plot=True)
    assert os.path.getsize(os.path.join(tmp_path, "results.png")) > 1000
    # LiteRT missing: reported, the MLPerf targets not measured, no crash
    assert "Peer **missing**: neither ai-edge-litert nor tflite-runtime" in text
    assert _verdict(text, "MLPerf DS-CNN single") == "not measured"
    # met / missed
    assert _verdict(text, "bundled DS-CNN single inference, onnxruntime profile") == "**met**"
    assert _verdict(text, "bundled DS-CNN single inference, cmsis-nn profile") == "**missed**"
    assert _verdict(text, "1 h of audio in <= 3 s") == "**met**"
    assert _verdict(text, "st-f16 (Helium build)") == "**met**"
    assert _verdict(text, "warm `n6emu replay`") == "**met**"
    assert _verdict(text, "(issue 9)") == "**missed**"
    assert _verdict(text, "(issue 10)") == "**met**"
    # failed benchmark: reported with its error, its older JSON not used; unreadable JSON reported
    assert "**FAILED** in this run (exit 1): `ModuleNotFoundError: No module named 'distributed'`" in text
    assert "files / s" not in text
    assert "frontend_q15.json could not be read" in text
    assert _verdict(text, "cmsis-q15") == "not measured"
    # replay: 10 min missing, load table with the other users' share
    assert "| 10 min | **not run**" in text and "| 60 min | 3660 | 2.50 s |" in text
    assert "| speed | ok | 10 s | 1.00 -> 2.00 | 1.50 | 1.00 | 0.50 |" in text
