"""The device chain: replay equals the composition of the separately verified stages; streaming in any
chunking equals whole-file processing; bad inputs and contradicting configs are one-line errors."""
import io
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.cli import main
from test_audio import write_wav  # one WAV writer for the tests
from emu.config import ConfigError
from pathlib import Path

DATA_CLIPS = Path(__file__).resolve().parent.parent / "emu" / "data" / "clips"

MLPERF_TOML = """
[frontend]
profile = "cmsis-q15"
sample_rate = 16000
n_fft = 512
win_length = 480
hop_length = 320
n_mels = 40
fmin = 20.0
fmax = 4000.0
mel_scale = "htk"
mel_norm = "none"
n_frames = 49
[frontend.q15]
mode = "mfcc"
n_mfcc = {n_mfcc}
[model]
path = "{model}"
profile = "cmsis-nn"
[input]
layout = "{layout}"
[app]
silence_gate = false
"""


def mlperf_config(tmp_path, model, n_mfcc=10, layout="frame-major"):
    p = tmp_path / f"mlperf_{n_mfcc}_{layout}.toml"
    p.write_text(MLPERF_TOML.format(model=model, n_mfcc=n_mfcc, layout=layout))
    return p


def speechlike(n, seed):
    """Noise bursts with a slowly varying envelope, clipped at full scale in places."""
    rng = np.random.default_rng(seed)
    env = np.repeat(rng.uniform(0, 1, n // 800 + 1) ** 3, 800)[:n]
    x = rng.normal(0, 1, n) * env * 40000
    return np.clip(x, -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def mlperf_device(mlperf_model, tmp_path_factory):
    from emu.device import Device
    return Device(mlperf_config(tmp_path_factory.mktemp("cfg"), mlperf_model))


def test_replay_equals_composition_of_stages(mlperf_device, mlperf_model, tmp_path):
    """Independent composition: cmsis_q15 front end -> frame-major buffer -> Runtime -> softmax int8 dequant."""
    from emu.frontend import cmsis_q15
    from emu.graph.runtime import Runtime
    from emu.graph.tflite import load_tflite

    x = np.concatenate([speechlike(16000 * 3, 1), np.zeros(8000, np.int16), np.full(9000, 32767, np.int16)])
    write_wav(tmp_path / "a.wav", x)
    recs = list(mlperf_device.replay([str(tmp_path / "a.wav")]))

    params = mlperf_device.frontend.params
    state = cmsis_q15.prepare(params)
    rt = Runtime(load_tflite(mlperf_model))
    keep, new = params.win_length - params.hop_length, params.n_frames * params.hop_length
    padded = np.concatenate([np.zeros(keep, np.int16), x])
    n_patches = x.size // new
    assert len(recs) == n_patches
    for k, rec in enumerate(recs):
        feats = cmsis_q15.compute_patch(padded[k * new:k * new + keep + new], state)   # [10, 49] coefficient-major
        y = rt.run(feats.T.reshape(1, 49, 10, 1)).reshape(-1)
        assert np.array_equal(rec["output"], y)
        probs = (y.astype(np.float32) + 128) / 256
        assert np.array_equal(rec["probabilities"], probs)
        assert rec["index"] == int(np.argmax(probs)) and rec["window"] == k


@settings(max_examples=8, deadline=None)
@given(chunks=st.lists(st.integers(1, 20000), min_size=1, max_size=5), seed=st.integers(0, 1000))
def test_streaming_any_chunking_equals_whole(mlperf_device, chunks, seed):
    x = speechlike(16000 * 3 + 1234, seed)
    whole = list(mlperf_device.replay_pcm([x]))
    blocks, pos, i = [], 0, 0
    while pos < x.size:
        blocks.append(x[pos:pos + chunks[i % len(chunks)]])
        pos += chunks[i % len(chunks)]
        i += 1
    parts = list(mlperf_device.replay_pcm(iter(blocks)))
    assert len(parts) == len(whole) == 3
    for a, b in zip(whole, parts):
        assert np.array_equal(a["output"], b["output"]) and a["window"] == b["window"]


def test_decision_threshold_first_maximum_and_gate(mlperf_device):
    dev = mlperf_device
    out = np.full((3, 12), -128, np.int8)
    out[0, 3] = out[0, 5] = 100          # tie: the first maximum wins
    out[1, 2] = -1                       # p = 127/256 < 0.5 -> unknown
    out[2, 7] = 0                        # p = 0.5, not above the threshold -> unknown
    d = dev.decide(out)
    assert d[0]["index"] == 3 and d[0]["label"] == dev.classes[3]
    assert d[1]["label"] == "unknown" and d[2]["label"] == "unknown"


def call(argv):
    out, err = io.StringIO(), io.StringIO()
    return main(argv, out=out, err=err), out.getvalue(), err.getvalue()


def test_cli_replay_outputs_and_dump(mlperf_model, tmp_path):
    cfg = mlperf_config(tmp_path, mlperf_model)
    write_wav(tmp_path / "a.wav", speechlike(16000 * 2, 3))
    code, out, err = call(["replay", str(tmp_path / "a.wav"), "--config", str(cfg), "--out", str(tmp_path / "r.jsonl"),
                           "--dump", str(tmp_path / "dump"), "--windows", "1"])
    assert code == 0, err
    lines = [json.loads(s) for s in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["window"] for r in lines] == [0, 1]
    meta = json.loads((tmp_path / "r.jsonl.settings.json").read_text())
    assert meta["model"]["profile"] == "cmsis-nn" and meta["frontend"]["q15"]["mode"] == "mfcc"
    assert meta["frontend"]["quant_zero_point"] == 83
    dumps = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert dumps == ["a_w00001.npz"]
    with np.load(tmp_path / "dump" / "a_w00001.npz") as z:
        assert {"frontend/pcm", "input_buffer", "frontend/features", "frontend/spectrum", "output", "probabilities"} <= set(z.files)
        net = [n for n in z.files if n.startswith("network/")]
        assert len(net) >= 14
        assert np.array_equal(z["network/Identity"].reshape(-1), np.array(lines[1]["output"], np.int8))
    code, _, _ = call(["replay", str(tmp_path / "a.wav"), "--config", str(cfg), "--out", str(tmp_path / "r.csv")])
    assert code == 0 and (tmp_path / "r.csv").read_text().count("\n") == 3


def test_cli_replay_bad_inputs(mlperf_model, tmp_path):
    cfg = str(mlperf_config(tmp_path, mlperf_model))
    write_wav(tmp_path / "r44.wav", np.zeros(44100, np.int16), rate=44100)
    write_wav(tmp_path / "st.wav", np.zeros(3200, np.int16), channels=2)
    write_wav(tmp_path / "u8.wav", np.zeros(1600, np.uint8), width=1)
    (tmp_path / "odd.raw").write_bytes(b"\0" * 11)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "noaudio").mkdir()
    (tmp_path / "noaudio" / "x.txt").write_text("x")
    write_wav(tmp_path / "ok.wav", speechlike(16000, 0))
    bad13 = str(mlperf_config(tmp_path, mlperf_model, n_mfcc=13))
    badlayout = str(mlperf_config(tmp_path, mlperf_model, layout="mel-major"))
    out = tmp_path / "res.jsonl"
    cases = [
        ([str(tmp_path / "r44.wav")], cfg, "44100 Hz.*16000 Hz"),
        ([str(tmp_path / "st.wav")], cfg, "2 channels"),
        ([str(tmp_path / "u8.wav")], cfg, "8-bit"),
        ([str(tmp_path / "odd.raw"), "--rate", "16000"], cfg, "odd byte count"),
        ([str(tmp_path / "empty.wav")], cfg, "empty file"),
        ([str(tmp_path / "noaudio")], cfg, "folder without audio"),
        ([str(tmp_path / "ok.wav")], bad13, "holds 490 values.*13 MFCCs"),
        ([str(tmp_path / "ok.wav")], badlayout, "layout"),
        # a good file before a bad one: nothing is written (inputs are checked before any output)
        ([str(tmp_path / "ok.wav"), str(tmp_path / "st.wav")], cfg, "2 channels"),
    ]
    for argv, config, needle in cases:
        code, _, err = call(["replay", *argv, "--config", config, "--out", str(out)])
        assert code == 2, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert re.search(needle, err), err
        assert not out.exists() and not (tmp_path / "res.jsonl.settings.json").exists()


def test_config_contradicting_model_raises(mlperf_model, tmp_path):
    from emu.device import Device
    with pytest.raises(ConfigError, match="13 MFCCs"):
        Device(mlperf_config(tmp_path, mlperf_model, n_mfcc=13))


# ---- the bundled default device (bundled QDQ model, st-f16 front end, ST app semantics) ---------------

@pytest.fixture(scope="module")
def bundled():
    from emu.device import Device
    return Device()


def test_bundled_clips_are_classified(bundled):
    from pathlib import Path

    from emu import audio
    clips = sorted((Path(__file__).resolve().parent.parent / "emu" / "data" / "clips").glob("*.wav"))
    assert len(clips) >= 10
    for clip in clips:
        word = clip.stem.split("_")[0]
        recs = list(bundled.replay([str(clip)]))
        assert len(recs) == 1
        rec = recs[0]
        if word == "silence":
            assert rec["gated"] and rec["label"] is None
            assert rec["silence_sum"] < bundled.config.app.silence_threshold
        else:
            want = "_unknown_" if word == "unknown" else word
            assert rec["label"] == want, (clip.name, rec["label"], rec["score"])
            assert rec["silence_sum"] >= bundled.config.app.silence_threshold


def test_bundled_replay_equals_composition(bundled):
    """st-f16 compute_patch -> [1,1,40,49] mel-major buffer -> Runtime(cmsis-nn) -> float softmax."""
    from emu.frontend import st
    from emu.graph.runtime import Runtime

    x = speechlike(16000 * 2 + 5000, 11)
    recs = list(bundled.replay_pcm([x]))
    p = bundled.frontend.params
    state = st.prepare(p)
    rt = Runtime(bundled.graph, profile="cmsis-nn")
    padded = np.concatenate([np.zeros(320, np.int16), x])
    for k, rec in enumerate(recs):
        stages = st.compute_stages(padded[k * 15680:k * 15680 + 16000], state)
        y = rt.run(stages["features"].reshape(1, 1, 40, 49)).reshape(-1)
        assert np.array_equal(rec["output"], y)
        assert np.float32(rec["silence_sum"]) == stages["silence_sum"]


def test_bundled_float_boundary(bundled):
    """[input].boundary = float32: the f16 log stage goes through the model's QuantizeLinear (cmsis-nn rule)."""
    from emu.device import Device
    from emu.graph.runtime import Runtime

    dev = Device(bundled.config.replace("input", boundary="float32"))
    x = speechlike(16000, 5)
    feats, _ = dev.features(x)
    assert feats.dtype == np.float32 and feats.shape == (1, 40, 49)
    rt = Runtime(bundled.graph, profile="cmsis-nn", input_boundary="float32")
    want = rt.run(feats.reshape(1, 1, 40, 49)).reshape(-1)
    assert np.array_equal(list(dev.replay_pcm([x]))[0]["output"], want)
    bad = feats.copy()
    bad[0, 3, 7] = np.nan
    from emu.errors import N6Error
    with pytest.raises(N6Error, match="NaN feature"):
        dev.run(dev.input_buffer(bad))


@pytest.mark.parametrize("section, change, needle", [
    ("frontend", dict(n_mels=64), "holds 1960 values but the front end makes 64 mels"),
    ("input", dict(layout="frame-major"), "set layout = \"mel-major\""),
    ("app", dict(classes=("a", "b")), "2 class names for a model with 12 outputs"),
])
def test_bundled_config_contradicting_model(bundled, section, change, needle):
    from emu.device import Device
    with pytest.raises(ConfigError, match=re.escape(needle)):
        Device(bundled.config.replace(section, **change))


def test_cli_features_and_stages(tmp_path):
    """`n6emu features`: int8 patches equal st.compute_patch of the app's patches; --stages holds every stage."""
    from emu.config import load_config
    from emu.device import frontend_params
    from emu.frontend import st

    x = speechlike(16000 * 2, 21)
    write_wav(tmp_path / "a.wav", x)
    code, out, err = call(["features", str(tmp_path / "a.wav"), "--output", str(tmp_path / "f.npy"),
                           "--stages", str(tmp_path / "stages")])
    assert code == 0, err
    f = np.load(tmp_path / "f.npy")
    params = frontend_params(load_config())
    state = st.prepare(params)
    padded = np.concatenate([np.zeros(320, np.int16), x])
    assert f.shape == (2, 40, 49) and f.dtype == np.int8
    for k in range(2):
        patch = padded[k * 15680:k * 15680 + 16000]
        assert np.array_equal(f[k], st.compute_patch(patch, state))
        folder = tmp_path / "stages" / f"patch_{k:05d}"
        assert np.array_equal(np.load(folder / "pcm.npy"), patch)
        for name in ("framed", "windowed", "fft", "power", "spectrum", "mel", "log", "features", "silence_sum"):
            assert (folder / f"{name}.npy").is_file(), name


@pytest.mark.parametrize("toml, needle", [
    ('[frontend]\nn_fft = 1000\n', "power of two"),
    ('[frontend]\nwin_length = 2048\n', "win_length"),
    ('[frontend]\nfmax = 9000.0\n', "fmax"),
    ('[frontend]\nn_fft = 64\nwin_length = 64\nhop_length = 32\nquant_scale = 0.1\n', "no non-zero"),
])
def test_cli_features_bad_frontend(tmp_path, toml, needle):
    write_wav(tmp_path / "a.wav", speechlike(16000, 0))
    (tmp_path / "d.toml").write_text(toml)
    code, _, err = call(["features", str(tmp_path / "a.wav"), "--config", str(tmp_path / "d.toml"),
                         "--output", str(tmp_path / "f.npy")])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(needle, err), err
    assert not (tmp_path / "f.npy").exists()


def test_cli_features_short_audio(tmp_path):
    write_wav(tmp_path / "a.wav", speechlike(8000, 0))
    code, _, err = call(["features", str(tmp_path / "a.wav"), "--output", str(tmp_path / "f.npy")])
    assert code == 2 and "a.wav is 0.50 s, shorter than one 0.98 s patch" in err and not (tmp_path / "f.npy").exists()


@pytest.mark.slow
def test_bundled_heldout_accuracy_reproduces(bundled):
    """The 900 held-out clips (the training cache of `python -m emu.training`, located by N6EMU_KWS_CACHE or
    /tmp/n6emu-kws): replayed with the bundled default and fed as patches, the accuracies recorded in
    emu/data/kws/accuracy.json are reproduced exactly."""
    import glob
    import os
    from pathlib import Path

    cache = os.environ.get("N6EMU_KWS_CACHE", "/tmp/n6emu-kws")
    found = sorted(glob.glob(os.path.join(cache, "test_pcm_*.npz")))
    if not found:
        pytest.skip(f"no held-out clips in {cache} (run python -m emu.training --cache {cache})")
    acc = json.loads((Path(__file__).resolve().parent.parent / "emu" / "data" / "kws" / "accuracy.json").read_text())
    with np.load(found[-1]) as z:
        pcm, labels = z["pcm"], z["labels"]
    replay = np.array([list(bundled.replay_pcm([x]))[0]["index"] for x in pcm])
    assert (replay == labels).mean() == acc["replay_cmsis_nn_accuracy"]
    # qdq_device_accuracy is onnxruntime on the device's int8 features fed as patches: the onnxruntime profile
    from emu.device import Device
    ort = Device(bundled.config.replace("model", profile="onnxruntime", rounding=None))
    replay_ort = np.array([list(ort.replay_pcm([x]))[0]["index"] for x in pcm])
    assert (replay_ort == labels).mean() == acc["replay_onnxruntime_accuracy"]
    feats = np.stack([ort.frontend.patch(x)[0] for x in pcm])
    patch = np.argmax(ort.run(ort.input_buffer(feats)), axis=1)
    assert (patch == labels).mean() == acc["qdq_device_accuracy"]


def test_cli_names_the_device_build(tmp_path):
    """replay, features and the settings file say which build of the front end ran (isa, optimization)."""
    clip = str(DATA_CLIPS / "yes.wav")
    code, out, err = call(["replay", clip, "--out", str(tmp_path / "r.jsonl")])
    assert code == 0, err
    assert "front end st-f16 helium -Os" in out
    fe = json.loads((tmp_path / "r.jsonl.settings.json").read_text())["frontend"]
    assert (fe["isa"], fe["optimization"], fe["inplace_power"]) == ("helium", "Os", True)
    (tmp_path / "scalar.toml").write_text('[frontend]\nisa = "scalar"\ninplace_power = false\n')
    code, out, err = call(["features", clip, "--config", str(tmp_path / "scalar.toml"), "--output",
                           str(tmp_path / "f.npy")])
    assert code == 0 and "st-f16 scalar" in out, err
    helium = np.load(tmp_path / "f.npy")
    code, out, _ = call(["features", clip, "--output", str(tmp_path / "g.npy")])
    assert code == 0 and "st-f16 helium -Os" in out
    assert not np.array_equal(helium, np.load(tmp_path / "g.npy"))


@pytest.mark.parametrize("toml, needle", [
    ('[frontend]\naccumulation = "lanes8"\n', 'portable-C build.*isa = "scalar"'),
    ('[frontend]\nisa = "scalar"\noptimization = "Ofast"\n', "optimization.*helium"),
    ('[frontend]\nisa = "arm"\n', "isa.*helium, scalar"),
    ('[frontend]\nprofile = "cmsis-q15"\nisa = "helium"\n', "not emulated for cmsis-q15"),
    ('[frontend]\ninplace_power = "yes"\n', "inplace_power.*true or false"),
])
def test_cli_features_inconsistent_build(tmp_path, toml, needle):
    (tmp_path / "d.toml").write_text(toml)
    code, _, err = call(["features", str(DATA_CLIPS / "yes.wav"), "--config", str(tmp_path / "d.toml"),
                         "--output", str(tmp_path / "f.npy")])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(needle, err), err
    assert not (tmp_path / "f.npy").exists()


def test_features_refuses_float_or_non_int16_pcm(bundled):
    """A float recording in [-1, 1] cast to int16 is all zeros: every patch gated. Refused in one line."""
    from emu.errors import N6Error
    x = speechlike(16000, 1)
    for bad in (x.astype(np.float32) / 32768, x.astype(np.int32), np.stack([x, x])):
        with pytest.raises(N6Error) as e:
            bundled.features(bad)
        assert "int16" in str(e.value) and "\n" not in str(e.value)
    assert "(x * 32767).round().astype(np.int16)" in str(pytest.raises(N6Error, bundled.features, x / 32768.0).value)
    assert bundled.features(x)[0].shape == (1, 40, 49)


def test_leftover_samples(bundled):
    new = bundled.frontend.params.new_samples
    assert [bundled.leftover_samples(n) for n in (0, new - 1, new, 2 * new + 5)] == [0, new - 1, 0, 5]
