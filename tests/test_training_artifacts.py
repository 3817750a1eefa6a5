"""Checks of the committed KWS artifacts (emu/data/kws, emu/data/clips) and of the float64 reference front end
(emu/frontend/float_ref.py). No training here: the pipeline is `python -m emu.training` (see the README)."""
import json
import wave
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings, strategies as st

from emu.frontend.float_ref import FloatLogMel, quantize_features
from emu.frontend.params import FrontendParams, from_toml
from emu.frontend.tables import hann_periodic, mel_filterbank

DATA = Path(__file__).resolve().parent.parent / "emu" / "data"
KWS = DATA / "kws"
CLIPS = DATA / "clips"
INPUT_SHAPE = [1, 1, 40, 49]

# onnxruntime (an oracle, test extra) runs the committed models; only the tests that run them skip without it
ORT_MISSING = 'oracle unavailable: onnxruntime is not installed; pip install -e ".[test]"'


@pytest.fixture(scope="module")
def labels():
    return (KWS / "labels.txt").read_text().splitlines()


@pytest.fixture(scope="module")
def report():
    return json.loads((KWS / "accuracy.json").read_text())


@pytest.fixture(scope="module")
def frontend():
    return from_toml((KWS / "frontend.toml").read_text())


def _session(name):
    ort = pytest.importorskip("onnxruntime", reason=ORT_MISSING)
    return ort.InferenceSession(str(KWS / name), providers=["CPUExecutionProvider"])


def _init(model, name):
    for i in model.graph.initializer:
        if i.name == name:
            return onnx.numpy_helper.to_array(i)
    raise KeyError(name)


def _read_wav(path):
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000), path
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


# ---------------------------------------------------------------------------------------------- artifacts

def test_labels(labels):
    from emu.training.synth import LABELS
    assert labels == list(LABELS)
    assert len(labels) == 12 and len(set(labels)) == 12


@pytest.mark.parametrize("name", ["model_float.onnx", "model_qdq.onnx"])
def test_models_load_with_io_shapes(name, labels):
    sess = _session(name)
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.shape == INPUT_SHAPE and inp.type == "tensor(float)"
    assert out.shape == [1, len(labels)] and out.type == "tensor(float)"
    x = np.random.default_rng(0).uniform(-20, 4, INPUT_SHAPE).astype(np.float32)
    p = sess.run(None, {inp.name: x})[0]
    assert p.shape == (1, len(labels))
    assert np.all(p >= 0) and abs(float(p.sum()) - 1.0) < 1e-5


def test_float_model_is_folded_dscnn():
    m = onnx.load(str(KWS / "model_float.onnx"))
    ops = [n.op_type for n in m.graph.node]
    assert "BatchNormalization" not in ops
    assert ops[-1] == "Softmax"
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    assert len(convs) == 9                                   # first conv + 4 x (depthwise, pointwise)
    first = _init(m, convs[0].input[1])
    assert first.shape[1:] == (1, 10, 4)
    n_params = sum(int(np.prod(i.dims)) for i in m.graph.initializer)
    assert n_params <= 30000
    assert (KWS / "model_float.onnx").stat().st_size < 200_000


def test_qdq_per_channel_int8_and_float_softmax(frontend):
    m = onnx.load(str(KWS / "model_qdq.onnx"))
    nodes = list(m.graph.node)
    producers = {o: n for n in nodes for o in n.output}
    # the graph ends with DequantizeLinear -> Softmax (Softmax kept in float)
    assert nodes[-1].op_type == "Softmax" or producers[m.graph.output[0].name].op_type == "Softmax"
    softmax = producers[m.graph.output[0].name]
    assert producers[softmax.input[0]].op_type == "DequantizeLinear"
    convs = [n for n in nodes if n.op_type == "Conv"]
    assert len(convs) == 9
    for conv in convs:
        w_dq = producers[conv.input[1]]
        assert w_dq.op_type == "DequantizeLinear"
        w = _init(m, w_dq.input[0])
        w_scale = _init(m, w_dq.input[1])
        axis = [a.i for a in w_dq.attribute if a.name == "axis"]
        assert w.dtype == np.int8
        assert w_scale.shape == (w.shape[0],), "weights must be quantized per output channel"
        assert axis in ([], [0])
        x_dq = producers[conv.input[0]]
        assert x_dq.op_type == "DequantizeLinear"
        assert _init(m, x_dq.input[2]).dtype == np.int8, "activations must be int8"
    # the input QuantizeLinear matches the front end's int8 grid
    q_in = [n for n in nodes if n.op_type == "QuantizeLinear" and n.input[0] == m.graph.input[0].name]
    assert len(q_in) == 1
    scale, zp = _init(m, q_in[0].input[1]), _init(m, q_in[0].input[2])
    assert zp.dtype == np.int8
    assert float(scale) == frontend.quant_scale and int(zp) == frontend.quant_zero_point


def test_frontend_toml_is_the_bundled_device_front_end(frontend):
    expected = FrontendParams(profile="st-f16", sample_rate=16000, n_fft=1024, win_length=640, hop_length=320,
                              n_mels=40, fmin=50.0, fmax=7500.0, mel_scale="slaney", mel_norm="slaney",
                              spectrum="power", log="ln", n_frames=49)
    assert frontend == expected.replace(quant_scale=frontend.quant_scale,
                                        quant_zero_point=frontend.quant_zero_point)
    assert frontend.patch_length == 16000


def test_accuracy_file_consistent(report, labels, frontend):
    n = len(labels)
    assert report["labels"] == labels
    assert report["input_scale"] == frontend.quant_scale
    assert report["input_zero_point"] == frontend.quant_zero_point
    assert not set(report["test_speakers"]) & set(report["train_speakers"]), "split must be by speaker"
    counts = np.array(report["test_class_counts"])
    assert counts.sum() == report["n_test"] and np.all(counts > 0)
    names = [k[:-len("_accuracy")] for k in report if k.endswith("_accuracy")]
    assert {"float_device", "float_pc", "qdq_device", "qdq_pc"} <= set(names)
    for name in names:
        cm = np.array(report[f"{name}_confusion"])
        assert cm.shape == (n, n)
        assert np.array_equal(cm.sum(axis=1), counts)
        assert report[f"{name}_accuracy"] == pytest.approx(np.trace(cm) / counts.sum(), abs=1e-12)
    assert report["qdq_device_accuracy"] > 0.5
    assert report["parameters"] <= 30000


def test_clips_are_small_16k_mono_int16(report):
    files = sorted(CLIPS.glob("*.wav"))
    assert len(files) >= 10
    assert sum(f.stat().st_size for f in files) < 400_000
    assert sorted(c["file"] for c in report["example_clips"]) == [f.name for f in files]
    test_speakers = set(report["test_speakers"]) | {"noise"}
    for c in report["example_clips"]:
        assert c["speaker"] in test_speakers, "example clips must come from held-out speakers"
        pcm = _read_wav(CLIPS / c["file"])
        assert len(pcm) == 16000
        assert np.count_nonzero(pcm) > 0.9 * len(pcm), "clips carry a noise floor (no digital silence)"


def test_example_clip_predictions_reproduce_on_emulator_features(report, frontend, labels):
    from emu.frontend import st
    state = st.prepare(frontend)
    sess = _session("model_qdq.onnx")
    name = sess.get_inputs()[0].name
    scale, zp = np.float32(frontend.quant_scale), np.float32(frontend.quant_zero_point)
    for c in report["example_clips"]:
        q = st.compute_patch(_read_wav(CLIPS / c["file"]), state, frontend)
        x = ((q.astype(np.float32) - zp) * scale).reshape(INPUT_SHAPE)
        pred = labels[int(np.argmax(sess.run(None, {name: x})[0]))]
        assert pred == c["qdq_prediction"], c["file"]


# ---------------------------------------------------------------------------------- float64 reference

def _naive_logmel(pcm, p):
    """Independent oracle: explicit per-frame loop, direct DFT as a complex matrix product."""
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(p.win_length) / p.win_length)
    k = np.arange(p.n_fft // 2 + 1)[:, None]
    n = np.arange(p.n_fft)[None, :]
    dft = np.exp(-2j * np.pi * k * n / p.n_fft)
    mel = mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.fmin, p.fmax_hz, p.mel_scale,
                         None if p.mel_norm == "none" else p.mel_norm).astype(np.float64)
    out = np.empty((p.n_mels, p.n_frames))
    left = (p.n_fft - p.win_length) // 2
    for t in range(p.n_frames):
        buf = np.zeros(p.n_fft)
        seg = pcm[t * p.hop_length:t * p.hop_length + p.win_length].astype(np.float64) / 32768
        buf[left:left + p.win_length] = seg * win
        spec = np.abs(dft @ buf) ** 2
        if p.spectrum == "magnitude":
            spec = np.sqrt(spec)
        e = mel @ spec
        with np.errstate(divide="ignore"):
            out[:, t] = np.log(e) if p.log == "ln" else np.maximum(10 * np.log10(e), -p.top_db)
    return out


SMALL = FrontendParams(n_fft=256, win_length=200, hop_length=80, n_mels=16, n_frames=6, fmin=20.0, fmax=7000.0)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), amp=st.sampled_from([1, 3, 300, 32767]),
       spectrum=st.sampled_from(["power", "magnitude"]), log=st.sampled_from(["ln", "db"]))
def test_float_ref_matches_naive_dft(seed, amp, spectrum, log):
    p = SMALL.replace(spectrum=spectrum, log=log)
    pcm = np.random.default_rng(seed).integers(-amp, amp + 1, p.patch_length).astype(np.int16)
    got = FloatLogMel(p).patch(pcm)
    want = _naive_logmel(pcm, p)
    assert got.shape == (p.n_mels, p.n_frames) and got.dtype == np.float64
    assert np.array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=0, atol=1e-9)


def test_float_ref_bundled_tone_and_silence():
    p = FrontendParams()
    ref = FloatLogMel(p)
    assert np.allclose(ref.window, hann_periodic(640))
    silent = ref.patch(np.zeros(p.patch_length, np.int16))
    assert np.all(np.isneginf(silent)), "no epsilon: digital silence gives ln(0) = -inf"
    t = np.arange(p.patch_length)
    tone = np.round(16384 * np.sin(2 * np.pi * 1000 * t / 16000)).astype(np.int16)
    f = ref.patch(tone)
    mel = mel_filterbank(16000, 1024, 40, 50.0, 7500.0)
    assert np.all(np.argmax(f, axis=0) == np.argmax(mel[:, 64]))   # 1 kHz = bin 64 of 1024 at 16 kHz
    assert np.ptp(f[:, 1:-1], axis=1).max() < 1e-9                  # stationary tone: identical columns


def test_float_ref_validates_input():
    from emu.errors import N6Error
    ref = FloatLogMel(FrontendParams())
    with pytest.raises(N6Error, match="int16"):
        ref.patch(np.zeros(16000, np.float32))
    with pytest.raises(N6Error, match="16000"):
        ref.patch(np.zeros(1000, np.int16))


@pytest.mark.parametrize("rounding,want", [("half-even", [-2, -2, 0, 0, 2, 2]), ("half-away", [-3, -2, -1, 1, 2, 3])])
def test_quantize_features_rounding(rounding, want):
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
    assert quantize_features(x, 1.0, 0, rounding).tolist() == want
    sat = quantize_features(np.array([-np.inf, -1e9, 1e9]), 0.1, 5, rounding)
    assert sat.tolist() == [-128, -128, 127]
