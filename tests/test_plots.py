"""`--plot DIR` (emu/plots.py): every figure drawn from real compare/diagnose results on the bundled device, checked
for what it shows (the data read back from the figure's artists equals the results, the difference equals A - B,
the first divergent stage and the ties are the marked ones), for valid PNG files written atomically, and through the
CLI (one `wrote` line per file; --json stays valid). Without matplotlib: one line, exit 2, nothing written; and
nothing else imports matplotlib."""
import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emu import audio, plots
from emu.cli import main
from emu.compare import board_source, compare, emulator_source
from emu.device import Device
from emu.diagnose import Diagnoser

ROOT = Path(__file__).resolve().parent.parent
CLIP_DIR = ROOT / "emu" / "data" / "clips"
CLIPS = [str(CLIP_DIR / f"{w}.wav") for w in ("yes", "go", "left")]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIX = 'pip install "n6emu[plot]"'


def call(argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def read(path):
    return audio.read_all(audio.probe(path))


def assert_png(path, min_w=400, min_h=250):
    """A whole PNG (signature, IHDR, decodable) of a sensible size; no temporary file left beside it."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR", path
    w, h = struct.unpack(">II", data[16:24])
    assert min_w <= w <= 5000 and min_h <= h <= 5000, (w, h)
    from matplotlib.image import imread
    assert imread(path).shape[:2] == (h, w)
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")]


def same(drawn, want):
    """Drawn values equal the wanted ones where the wanted are finite; non-finite ones are masked (blank)."""
    want = np.asarray(want, np.float64)
    ok = np.isfinite(want)
    return drawn.shape == want.shape and np.array_equal(drawn[ok], want[ok])


@pytest.fixture(scope="module")
def dev():
    return Device()


@pytest.fixture(scope="module")
def pcms():
    return [read(p) for p in CLIPS]


@pytest.fixture(scope="module")
def transposed(dev):
    """The classic fault: frame-major features written into the mel-major input buffer."""
    return dev.with_(faults={"input-transposed": {}})


# ---- compare ------------------------------------------------------------------------------------------------

def test_compare_logmel_shows_a_b_and_their_difference(dev, pcms, tmp_path):
    a = emulator_source(dev, pcm=pcms[0], window=0)
    b = emulator_source(dev.with_(faults={"log-epsilon": {"eps": 1e-6}}), pcm=pcms[0], window=0)
    r = compare(a, b)
    folder = tmp_path / "new" / "figs"                    # created when missing
    p = plots.compare_logmel(r, a, b, folder)
    assert p.path == str(folder / "compare_logmel.png") and p.data["stage"] == "frontend/log"
    assert_png(p.path)
    la, lb = a["frontend/log"].astype(np.float64), b["frontend/log"].astype(np.float64)
    assert la.shape == (40, 49)                           # [mel, frame]: coefficient-major
    assert same(p.data["a"], la) and same(p.data["b"], lb)
    with np.errstate(invalid="ignore"):
        d = la - lb
    assert same(p.data["diff"], d) and np.any(d[np.isfinite(d)] != 0)
    assert [m.sum() for m in p.data["masks"][:2]] == [np.sum(~np.isfinite(la)), np.sum(~np.isfinite(lb))]
    # one colour scale for both sides, a symmetric diverging one for the difference
    both = np.concatenate([la[np.isfinite(la)], lb[np.isfinite(lb)]])
    assert p.data["clims"][0] == p.data["clims"][1] == (both.min(), both.max())
    lim = np.abs(d[np.isfinite(d)]).max()
    assert p.data["clims"][2] == (-lim, lim) and p.data["cmaps"] == ["viridis", "viridis", "RdBu_r"]
    assert "frontend/log" in p.data["title"] and "[coefficient, frame]" in p.data["title"]
    assert p.data["units"] == "ln(mel energy)"


def test_compare_logmel_reads_the_input_buffer_as_the_model_does(dev, transposed, pcms, tmp_path):
    """Board data (a flat input buffer of the transposed firmware) against the emulator: only the input buffer is a
    mel-domain stage of both; the board's bytes are drawn as the model reads them: the features transposed."""
    t_emu, t_board = dev.trace(pcms[1], window=0), transposed.trace(pcms[1], window=0)
    np.savez(tmp_path / "board.npz", input_buffer=t_board["input_buffer"].reshape(-1), output=t_board["output"])
    a = emulator_source(dev, pcm=pcms[1], window=0)
    board = board_source(tmp_path / "board.npz", like=a)
    r = compare(board, a)
    p = plots.compare_logmel(r, board, a, tmp_path, context=dev.fault_context)
    assert p.data["stage"] == "input_buffer" and "as the model reads it (mel-major)" in p.data["title"]
    feats = t_emu["frontend/features"]
    assert same(p.data["b"], feats)                                       # B: the emulator's features
    assert same(p.data["a"], feats.T.reshape(40, 49))                     # A: frame-major bytes read mel-major
    assert same(p.data["diff"], feats.T.reshape(40, 49).astype(np.int64) - feats)
    assert p.data["units"] == "input buffer values (int8)"
    assert_png(p.path)


def test_compare_layers_bars_are_the_reports_metrics(dev, pcms, tmp_path):
    a = emulator_source(dev, pcm=pcms[2], window=0)
    b = emulator_source(dev.with_(**{"model.profile": "onnxruntime"}), pcm=pcms[2], window=0)
    r = compare(a, b)
    p = plots.compare_layers(r, tmp_path)
    assert_png(p.path)
    assert p.data["names"] == r.names()
    nan = float("nan")
    for attr in ("rmse", "mae", "max_lsb"):
        want = np.array([nan if getattr(s, attr) is None else getattr(s, attr) for s in r.stages], np.float64)
        assert np.array_equal(p.data[attr], want, equal_nan=True), attr
    assert r.first_divergent.startswith("network/") and p.data["highlighted"] == [r.first_divergent]
    assert r.first_divergent in p.what


# ---- diagnose -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def diagnoser(dev, pcms):
    return Diagnoser(dev, pcms, pairs=False)


def observe(d, pcms):
    return np.concatenate([d.run(d.recording_buffers(p)[0]) for p in pcms])


def test_diagnose_ranking_draws_scores_and_marks_ties(dev, diagnoser, pcms, tmp_path):
    result = diagnoser.diagnose(observe(dev, pcms))         # fault-free: `none` ties with a no-op fault
    p = plots.diagnose_ranking(result, tmp_path, top=10)
    assert_png(p.path)
    top = result.entries[:10]
    assert np.array_equal(p.data["scores"], [e.score for e in top])
    assert p.data["ranks"] == [e.rank for e in top]
    ranks = [e.rank for e in result.entries]
    assert p.data["tied"] == [ranks.count(e.rank) > 1 for e in top]
    assert sum(p.data["tied"][:len(result.ties)]) == len(result.ties) >= 2      # the rank-1 tie is marked
    for label, e, t in zip(p.data["labels"], top, p.data["tied"]):
        assert label.startswith(f"#{e.rank}{'=' if t else ''} ") and e.hypothesis[:40] in label
    first = p.data["colours"][0]
    assert all((c == first) == (e.rank == 1) for c, e in zip(p.data["colours"], top))
    assert "tied at rank 1" in p.what


def test_diagnose_logmel_is_the_emulator_against_the_board_input(dev, transposed, diagnoser, pcms, tmp_path):
    board_in = np.concatenate([transposed.recording_buffers(p)[0] for p in pcms])
    result = diagnoser.diagnose(observe(transposed, pcms), board_in)
    figs = plots.diagnose_plots(result, tmp_path, diagnoser, board_in)
    assert [os.path.basename(f.path) for f in figs] == ["diagnose_ranking.png", "diagnose_logmel.png"]
    assert sorted(os.listdir(tmp_path)) == ["diagnose_logmel.png", "diagnose_ranking.png"]
    p = figs[1]
    assert_png(p.path)
    emu0 = dev.recording_buffers(pcms[0])[0][0]             # [1, 1, 40, 49]: mel-major
    assert p.data["window"] == 0
    assert same(p.data["a"], emu0.reshape(40, 49)) and same(p.data["b"], board_in[0].reshape(40, 49))
    assert same(p.data["diff"], emu0.reshape(40, 49).astype(np.int64) - board_in[0].reshape(40, 49))
    assert plots.diagnose_plots(result, tmp_path, diagnoser, None)[1:] == []   # no board input: ranking only


# ---- the CLI ------------------------------------------------------------------------------------------------

def test_cli_compare_plot_json_and_device_warnings(tmp_path):
    cfg = tmp_path / "dev.toml"
    cfg.write_text('[input]\nlayout = "frame-major"\n[faults]\ninput-transposed = {}\n')
    folder = tmp_path / "a" / "b"
    code, out, err = call(["compare", "emu:cmsis-nn", "emu:onnxruntime", "--config", str(cfg), "--audio", CLIPS[0],
                           "--json", "--plot", str(folder)])
    assert code == 1, err
    d = json.loads(out)                                    # stdout: one JSON document
    want = [str(folder / "compare_logmel.png"), str(folder / "compare_layers.png")]
    assert d["plots"] == want
    lines = err.strip().splitlines()
    assert [ln for ln in lines if ln.startswith("n6emu: warning:") and "input-transposed" in ln]
    assert [ln.split(":")[0] for ln in lines if ln.startswith("wrote ")] == [f"wrote {w}" for w in want]
    assert sorted(os.listdir(folder)) == ["compare_layers.png", "compare_logmel.png"]
    for w in want:
        assert_png(w)


def test_cli_compare_board_plot_prints_one_line_per_file(dev, transposed, pcms, tmp_path):
    t = transposed.trace(pcms[0], window=0)
    np.savez(tmp_path / "board.npz", input_buffer=t["input_buffer"], output=t["output"])
    code, out, err = call(["compare", str(tmp_path / "board.npz"), "emu", "--audio", CLIPS[0], "--plot",
                           str(tmp_path / "figs")])
    assert code == 1 and err == "", err
    wrote = [ln for ln in out.splitlines() if ln.startswith("wrote ")]
    assert len(wrote) == 2 and "input_buffer" in wrote[0] and out.rstrip().endswith(wrote[-1])
    assert sorted(os.listdir(tmp_path / "figs")) == ["compare_layers.png", "compare_logmel.png"]


def test_cli_diagnose_plot(transposed, pcms, tmp_path):
    one = pcms[:1]                                            # one clip: the CLI path, not the search, is tested
    np.save(tmp_path / "in.npy", np.concatenate([transposed.recording_buffers(p)[0] for p in one]))
    (tmp_path / "uart.txt").write_text("".join(" ".join(map(str, row)) + "\n" for row in observe(transposed, one)))
    argv = ["diagnose", "--audio", CLIPS[0], "--board-output", str(tmp_path / "uart.txt"), "--board-input",
            str(tmp_path / "in.npy"), "--no-pairs", "--plot", str(tmp_path / "figs")]
    code, out, err = call(argv + ["--json"])
    assert code == 0, err
    assert json.loads(out)[0]["hypothesis"] == "input-transposed"
    assert len([ln for ln in err.splitlines() if ln.startswith("wrote ")]) == 2
    code, out, err = call(argv + ["--top", "3"])
    assert code == 0 and err == "", err
    assert "Best explanation: input-transposed" in out
    assert out.strip().splitlines()[-2:] == [f"wrote {tmp_path / 'figs' / 'diagnose_ranking.png'}: top 3 hypotheses "
                                             f"by score", out.strip().splitlines()[-1]]
    assert "diagnose_logmel.png: input buffer of window 0" in out
    for name in ("diagnose_ranking.png", "diagnose_logmel.png"):
        assert_png(tmp_path / "figs" / name, min_h=200)


# ---- without matplotlib -------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["compare", "emu:cmsis-nn", "emu:onnxruntime", "--audio", CLIPS[0]],
    ["diagnose", "--audio", CLIPS[0], "--board-output", CLIPS[0]],
])
def test_plot_without_matplotlib_is_one_line_exit_2_nothing_written(monkeypatch, tmp_path, argv):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)         # `import matplotlib...` raises ImportError
    folder = tmp_path / "figs"
    code, out, err = call(argv + ["--plot", str(folder)])
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "matplotlib is not installed" in lines[0] and FIX in lines[0], err
    assert not folder.exists() and os.listdir(tmp_path) == []


def test_nothing_but_plots_imports_matplotlib():
    code = ("import sys; import emu, emu.cli, emu.plots, emu.compare, emu.diagnose; from emu.cli import main; "
            "assert main(['inspect', sys.argv[1]]) == 0; print('matplotlib' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT / "emu" / "data" / "kws" / "model_qdq.onnx")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1:] == ["False"], (r.stdout, r.stderr)
