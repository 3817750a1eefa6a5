"""Dataset replay (emu/dataset.py): labels, padding, reports, resumable output, and Dask workers giving the same
records as one process (Dask is the `dask` extra: those tests skip without it, naming it)."""
import glob
import json
import os
import time
import wave

import numpy as np
import pytest

from emu import audio
from emu import dataset as D
from emu.device import Device
from emu.errors import N6Error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIPS = sorted(glob.glob(os.path.join(ROOT, "emu", "data", "clips", "*.wav")))


def write_wav(path, x, rate=16000):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.asarray(x, "<i2").tobytes())


def make_dataset(root, n, seed=0):
    """n clips in word/ folders made from the bundled clips (gain, shift, noise); every 7th shorter than a window."""
    rng = np.random.default_rng(seed)
    words = {os.path.splitext(os.path.basename(c))[0]: audio.read_all(audio.probe(c)) for c in CLIPS}
    names = sorted(words)
    for i in range(n):
        w = names[i % len(names)]
        x = np.roll(words[w].astype(np.float64) * rng.uniform(0.3, 1.2), int(rng.integers(-800, 800)))
        x = x + rng.normal(0, 30, x.size)
        if i % 7 == 3:
            x = x[:int(rng.integers(4000, 15000))]
        write_wav(os.path.join(root, w, f"c{i:04d}.wav"), np.clip(np.round(x), -32768, 32767).astype(np.int16))
    return root


def lines(results):
    """Every record as a JSON line (arrays as lists): what byte-identical output means."""
    out = []
    for r in results:
        for rec in r.records:
            out.append(json.dumps({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in rec.items()},
                                  sort_keys=True))
    return out


@pytest.fixture(scope="module")
def dev():
    return Device()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_dataset(str(tmp_path_factory.mktemp("ds_small")), 36, seed=1)


def test_labels_from_folders_and_csv(small, tmp_path):
    clips = D.list_clips([small], labels="folders")
    assert len(clips) == 36 and all(c.label == os.path.basename(os.path.dirname(c.path)) for c in clips)
    assert [c.path for c in clips] == sorted(c.path for c in clips)
    csv_path = tmp_path / "labels.csv"
    rows = ["file,label"] + [f"{os.path.relpath(c.path, tmp_path)},{c.label.upper()}" for c in clips[:5]]
    csv_path.write_text("\n".join(rows) + "\n")
    from_csv = D.list_clips([], labels=str(csv_path))
    assert [(os.path.abspath(c.path), c.label) for c in from_csv] == [(c.path, c.label.upper()) for c in clips[:5]]
    with pytest.raises(N6Error, match="line 2 names"):
        (tmp_path / "bad.csv").write_text("file,label\nnope.wav,yes\n")
        D.list_clips([], labels=str(tmp_path / "bad.csv"))
    with pytest.raises(N6Error, match="not `file,label`"):
        (tmp_path / "bad2.csv").write_text("a,b,c\n")
        D.list_clips([], labels=str(tmp_path / "bad2.csv"))
    flat = tmp_path / "flat"
    write_wav(str(flat / "x.wav"), np.zeros(16000, np.int16))
    with pytest.raises(N6Error, match="folder named after its label"):
        D.list_clips([str(flat)], labels="folders")


def test_pad_centres_short_clips_and_no_window_files_are_counted(dev, tmp_path):
    new = dev.frontend.params.new_samples
    x = (np.arange(5001) % 200 * 50 - 5000).astype(np.int16)
    write_wav(str(tmp_path / "yes" / "short.wav"), x)
    clip = D.list_clips([str(tmp_path)], labels="folders")[0]
    plain = D.replay_file(dev, clip)
    assert plain.windows == 0 and plain.predicted == D.NO_WINDOW and plain.leftover == x.size
    padded = D.replay_file(dev, clip, pad=True)
    before = (new - x.size) // 2
    manual = np.concatenate([np.zeros(before, np.int16), x, np.zeros(new - x.size - before, np.int16)])
    want = list(dev.replay_pcm([manual], name=clip.path))
    assert padded.padded == new - x.size and padded.windows == 1 and padded.leftover == 0
    assert np.array_equal(padded.records[0]["output"], want[0]["output"])
    long = D.replay_file(dev, D.Clip(CLIPS[0]), pad=True)        # never padded or cut
    assert long.padded == 0 and long.leftover == long.n_samples - long.windows * new


def test_clip_decision_rules():
    def r(score, label, gated=False):
        return dict(score=score, label=label, gated=gated)
    assert D.clip_decision([]) == D.NO_WINDOW
    assert D.clip_decision([r(0.9, None, True)]) == D.GATED
    assert D.clip_decision([r(0.99, None, True), r(0.5, "a"), r(0.7, "b"), r(0.7, "c")]) == "b"


def test_report_counts_against_a_direct_count():
    rep = D.Report()
    truth = ["a", "a", "b", "b", "b", "c", None]
    pred = ["a", "b", "b", "b", D.NO_WINDOW, "a", "a"]
    for t, p in zip(truth, pred):
        rep.add(t, p)
    d = rep.to_dict()
    assert d["labels"] == ["a", "b", "c", D.NO_WINDOW] and d["files"] == 6 and d["correct"] == 3
    assert d["confusion"] == [[1, 1, 0, 0], [0, 2, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert d["per_class"]["b"] == dict(support=3, predicted=3, precision=2 / 3, recall=2 / 3)
    assert d["per_class"]["c"]["precision"] is None and d["per_class"]["c"]["recall"] == 0.0
    assert d["accuracy"] == 0.5


def test_compared_device_decides_the_same_windows(dev, small):
    pc = dev.with_(faults={"frontend-precision": {"precision": "float64"}}, **{"model.profile": "onnxruntime"})
    clips = D.list_clips([small], labels="folders")[:6]
    res = list(D.iter_results(dev, clips, other=pc))
    for r in res:
        assert len(r.other) == r.windows
        solo = D.replay_file(pc, D.Clip(r.path, r.label))
        assert lines([solo]) == [ln for ln in lines([D.FileResult(**dict(vars(r), records=r.other))])]


def test_resumable_output_after_an_interruption_equals_one_run(dev, small, tmp_path):
    clips = D.list_clips([small], labels="folders")[:10]
    res = list(D.iter_results(dev, clips, pad=True))

    def run(path, stop=None, resume=False):
        out = D.ResumableOutput(str(path), "fp1", header="h\n", resume=resume)
        for r in res[out.files_done:]:
            if stop is not None and out.files_done == stop:
                out.close()
                return out
            out.write_file([ln + "\n" for ln in lines([r])], r.summary())
        out.finish()
        return out

    run(tmp_path / "one.jsonl")
    part = run(tmp_path / "two.jsonl", stop=4)
    with open(part.partial, "ab") as f:
        f.write(b'{"torn": ')                             # a record cut by the interruption
    assert not (tmp_path / "two.jsonl").exists()
    with pytest.raises(N6Error, match="continue it with --resume"):
        D.ResumableOutput(str(tmp_path / "two.jsonl"), "fp1")
    with pytest.raises(N6Error, match="other settings"):
        D.ResumableOutput(str(tmp_path / "two.jsonl"), "fp2", resume=True)
    done = run(tmp_path / "two.jsonl", resume=True)
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()
    assert done.summaries == [r.summary() for r in res]
    assert sorted(os.listdir(tmp_path)) == ["one.jsonl", "two.jsonl"]


# ---- Dask ----------------------------------------------------------------------------------------------------

def _need_dask():
    pytest.importorskip("distributed", reason="Dask (the dask extra: pip install \"n6emu[dask]\") is not installed")


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    return make_dataset(str(tmp_path_factory.mktemp("ds_big")), 504, seed=2)


def test_two_workers_give_the_records_of_one_process(dev, big):
    _need_dask()
    clips = D.list_clips([big], labels="folders")
    assert len(clips) == 504
    one = list(D.iter_results(dev, clips, pad=True))
    two = list(D.iter_results(dev, clips, pad=True, workers=2))
    assert [r.index for r in two] == list(range(len(clips)))
    assert lines(two) == lines(one)
    assert [r.summary() for r in two] == [r.summary() for r in one]
    assert D.report_of(two).to_dict() == D.report_of(one).to_dict()
    assert sum(r.windows == 0 for r in D.iter_results(dev, clips[:70])) == 10     # every 7th is short


def test_a_killed_worker_costs_a_retry_not_a_record(dev, small):
    _need_dask()
    import signal

    from distributed import Client, LocalCluster
    clips = D.list_clips([small], labels="folders")
    one = list(D.iter_results(dev, clips))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        pids = sorted(client.run(os.getpid).values())
        got = []
        for r in D.iter_results(dev, clips, scheduler=client, in_flight=8):
            got.append(r)
            if len(got) == 3:
                os.kill(pids[0], signal.SIGKILL)
        for _ in range(100):         # the killed worker is gone (its nanny starts a new process)
            if pids[0] not in client.run(os.getpid, on_error="ignore").values():
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"worker process {pids[0]} was not killed")
    assert [r.index for r in got] == list(range(len(clips)))
    assert lines(got) == lines(one)


def test_dask_missing_is_one_line(monkeypatch, dev):
    import builtins
    real = builtins.__import__

    def no_dask(name, *a, **k):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(N6Error, match=r'pip install "n6emu\[dask\]"'):
        list(D.iter_results(dev, [D.Clip(CLIPS[0])], workers=2))


# ---- the CLI -------------------------------------------------------------------------------------------------

def call(argv):
    import io

    from emu.cli import main
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_report_and_compare_pc(dev, small, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (the plot extra) draws the report's PNG")
    rep = tmp_path / "rep"
    code, out, err = call(["replay", small, "--labels", "folders", "--pad", "--report", str(rep), "--compare", "pc",
                           "--out", str(tmp_path / "r.jsonl")])
    assert code == 0, err
    res, report, pc_report = dev.replay_dataset([small], labels="folders", pad=True, compare="pc")
    doc = json.loads((rep / "report.json").read_text())
    assert doc["device"] == report.to_dict() and doc["pc"] == pc_report.to_dict()
    assert f"accuracy {report.to_dict()['accuracy']:.4f}" in out
    differ = [r.path for r in res if r.predicted != r.other_predicted]
    assert [d["file"] for d in doc["differing"]] == differ and f"{len(differ)} clip(s) decided differently" in out
    rows = (rep / "device_confusion.csv").read_text().splitlines()
    assert rows[0].split(",")[1:] == report.to_dict()["labels"]
    assert (rep / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recs = [json.loads(ln) for ln in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["file"] for r in recs] == [r.path for r in res for _ in r.records]
    assert all(r["truth"] == os.path.basename(os.path.dirname(r["file"])) for r in recs)
    settings = json.loads((tmp_path / "r.jsonl.settings.json").read_text())
    assert settings["dataset"]["padded"] == sum(r.padded > 0 for r in res) > 0
    assert [f["file"] for f in settings["files"]] == [r.path for r in res]
    code, out, err = call(["replay", small, "--report", str(tmp_path / "rep2")])
    assert code == 2 and "--labels" in err and err.count("\n") == 1
    code, out, err = call(["replay", small, "--labels", "folders", "--resume"])
    assert code == 2 and "give --out too" in err


def test_cli_resume_after_sigterm_equals_an_uninterrupted_run(big, tmp_path):
    import signal
    import subprocess
    import sys
    cmd = [sys.executable, "-m", "emu.cli", "replay", big, "--labels", "folders", "--pad"]
    whole = tmp_path / "whole.csv"
    subprocess.run(cmd + ["--out", str(whole)], check=True, capture_output=True)
    cut = tmp_path / "cut.csv"
    proc = subprocess.Popen(cmd + ["--out", str(cut)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = tmp_path / "cut.csv.partial.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text() or '{"files": 0}')["files"] >= 40:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "--resume" in err and not cut.exists()
    done = json.loads(state.read_text())["files"]
    assert 40 <= done < 504
    rerun = subprocess.run(cmd + ["--out", str(cut), "--resume"], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert cut.read_bytes() == whole.read_bytes()
    assert json.loads((tmp_path / "cut.csv.settings.json").read_text()) == json.loads(
        (tmp_path / "whole.csv.settings.json").read_text())
    assert sorted(os.listdir(tmp_path)) == ["cut.csv", "cut.csv.settings.json", "whole.csv", "whole.csv.settings.json"]


def test_report_files_and_the_drawn_matrices(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (the plot extra) draws the report's PNG")
    a, b = D.Report(), D.Report()
    for t, p, q in [("x", "x", "y"), ("x", "y", "y"), ("y", "y", "y"), ("z", D.NO_WINDOW, "z")]:
        a.add(t, p)
        b.add(t, q)
    summaries = [dict(file=f"f{i}", label=t, predicted=p, other_predicted=q)
                 for i, (t, p, q) in enumerate([("x", "x", "y"), ("x", "y", "y")])]
    plot = D.write_report(str(tmp_path), a, b, summaries, names=("board", "pc"))
    assert np.array_equal(plot.data["board"], np.array(a.to_dict()["confusion"]))
    assert np.array_equal(plot.data["pc"], np.array(b.to_dict()["confusion"]))
    assert (tmp_path / "differing.csv").read_text().splitlines() == ["file,label,board,pc", "f0,x,x,y"]
    per = (tmp_path / "board_per_class.csv").read_text().splitlines()
    assert per[0] == "label,support,predicted,precision,recall" and per[1] == "x,2,1,1.000000,0.500000"


def test_cli_bad_worker_and_scheduler_options_are_one_line(small):
    code, out, err = call(["replay", small, "--workers", "0"])
    assert code == 2 and "--workers 0" in err and err.count("\n") == 1 and out == ""
    pytest.importorskip("distributed", reason="Dask (the dask extra: pip install \"n6emu[dask]\") is not installed")
    code, out, err = call(["replay", small, "--scheduler", "nonsense"])
    assert code == 2 and "--scheduler nonsense" in err and err.count("\n") == 1
