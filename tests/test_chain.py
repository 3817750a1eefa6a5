"""One chain, one trace: arithmetic profiles as values, Device.with_ (rebuild only what a change touches),
Device.trace (every stage under one name), and one network path for `run` and the device chain."""
import numpy as np
import pytest

import naive
from emu import fixedpoint as fx
from emu.device import Device
from emu.errors import N6Error
from emu.graph.profiles import CMSIS_NN, PROFILES, ArithmeticProfile, Requantizer, register
from emu.graph.runtime import Runtime
from emu.models import ModelSession
from emu.trace import Trace
from emu import audio

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1

# A new arithmetic profile that differs from cmsis-nn only in its rounding is this one value: an accelerator whose
# requantizer takes TFLite's single-rounding multipliers and shifts the 64-bit product right without a nudge.
NPU_FLOOR = CMSIS_NN.derive("npu-floor", requantizer=Requantizer("floor", fx.SINGLE_ROUNDING, tie="floor"))


@pytest.fixture(scope="module")
def bundled():
    return Device()


@pytest.fixture(scope="module")
def clips():
    import glob
    import os
    from emu.config import DATA_DIR
    paths = sorted(glob.glob(os.path.join(DATA_DIR, "clips", "*.wav")))
    assert len(paths) >= 6
    return [np.concatenate(list(audio.iter_blocks(audio.probe(p), 1 << 16))) for p in paths]


# ---- the requantizer's ties, against Python integers ---------------------------------------------------------

def _exact(acc, m, shift, tie):
    """round(acc * M / 2^(31 - shift)) with Python integers, by tie rule, wrapped to int32."""
    num, den = acc * m, 1 << (31 - shift)
    floor_q = num // den
    rem = num - floor_q * den
    if tie == "floor":
        q = floor_q
    elif tie == "toward-zero":
        q = floor_q + (1 if rem and num < 0 else 0)
    elif tie == "half-up":
        q = floor_q + (1 if 2 * rem >= den else 0)
    elif tie == "tosa-double":   # TOSA apply_scale_32(double_round): round = 2^(s-1) +/- 2^30 (sign of acc) if s > 31
        right = 31 - shift
        rnd = (1 << (right - 1)) + ((1 << 30) * (1 if acc >= 0 else -1) if right > 31 else 0)
        q = (num + rnd) >> right
    else:   # half-away
        q = floor_q + (1 if 2 * rem > den or (2 * rem == den and num > 0) else 0)
    return (q + (1 << 31)) % (1 << 32) - (1 << 31)


@pytest.mark.parametrize("tie", fx.SINGLE_TIES)
def test_single_rounding_ties_equal_exact_integers(tie):
    rng = np.random.default_rng(5)
    shifts = np.array([-31, -20, -9, -1, 0, 5, 30] * 40, np.int32)
    mults = rng.integers(1 << 30, INT32_MAX, shifts.size).astype(np.int32)
    mults[:7] = 1 << 30                             # one channel per shift with M = 2^30 (exact ties below)
    mults[7], mults[8] = INT32_MAX, 1
    accs = [INT32_MIN, INT32_MAX, 0, -1, 1] + rng.integers(INT32_MIN, INT32_MAX, 400).tolist()
    qp = fx.prepare_requantize(mults, shifts, fx.SINGLE_ROUNDING, tie)
    checked = ties = 0
    for c in range(mults.size):
        m, s = int(mults[c]), int(shifts[c])
        cases = list(accs)
        if m == 1 << 30 and s <= 0:   # acc * 2^30 / 2^(31-s) = acc / 2^(1-s): exact halves at acc = odd * 2^-s
            cases += [k << -s for k in range(-39, 40, 2) if INT32_MIN <= k << -s <= INT32_MAX]
        for acc in cases:
            got = int(fx.requantize_prepared(np.int32(acc), qp, c, fx.SINGLE_ROUNDING))
            assert got == _exact(acc, m, s, tie), (acc, m, s, tie)
            checked += 1
            ties += (acc * m) % (1 << (31 - s)) == 1 << (30 - s)
    assert checked > 10000 and ties >= 40


def test_half_up_tie_is_tflite_single_rounding():
    rng = np.random.default_rng(6)
    mult, shift = rng.integers(1 << 30, INT32_MAX, 64).astype(np.int32), rng.integers(-31, 31, 64).astype(np.int32)
    qp = fx.prepare_requantize(mult, shift, fx.SINGLE_ROUNDING)
    for acc in rng.integers(INT32_MIN, INT32_MAX, 200):
        for c in range(64):
            assert fx.requantize_prepared(np.int32(acc), qp, c, 1) == naive.requantize(int(acc), int(mult[c]),
                                                                                       int(shift[c]), 1)


# ---- a new profile is one value ----------------------------------------------------------------------------

def _naive_floor(monkeypatch):
    """The naive reference kernels with single rounding replaced by a floor shift (exact int64 numpy)."""
    original = naive.requantize_array

    def requantize_array(acc, mult, shift, rounding):
        if rounding != 1:
            return original(acc, mult, shift, rounding)
        x = naive._wrap32_array(acc)
        m = np.broadcast_to(np.asarray(mult, np.int64), x.shape)
        total = 31 - np.broadcast_to(np.asarray(shift, np.int64), x.shape)
        return naive._wrap32_array((x * m) >> total)
    monkeypatch.setattr(naive, "requantize_array", requantize_array)


def test_new_profile_is_one_value_and_runs_the_bundled_model(bundled, clips, monkeypatch):
    npu = bundled.with_(**{"model.profile": NPU_FLOOR})
    assert npu.settings["runtime"]["arithmetic"]["requantizer"] == dict(name="floor", mode="single", tie="floor",
                                                                          derivation="tflite")
    assert npu.graph is bundled.graph and npu.frontend is bundled.frontend
    feats = np.concatenate([bundled.features(c)[0] for c in clips[:4]])
    bufs = bundled.input_buffer(feats)
    got = npu.run(bufs)
    # independent reference: the naive kernels (Python/numpy) with TFLite single-rounding multipliers and a floor
    _naive_floor(monkeypatch)
    want = Runtime(bundled.graph, "cmsis-nn", rounding="single", backend=naive).run(bufs)
    assert np.array_equal(got, want.reshape(got.shape))
    assert not np.array_equal(got, bundled.run(bufs))      # the rounding shows in the outputs
    with pytest.raises(N6Error, match="numba kernel backend only"):
        npu.with_(**{"model.backend": "c"}).run(bufs)


def test_registered_profile_is_a_config_and_cli_choice(tmp_path):
    from emu.cli import build_parser
    from emu.config import from_dict
    try:
        register(NPU_FLOOR)
        cfg = from_dict({"model": {"profile": "npu-floor"}})
        assert cfg.model.arithmetic == NPU_FLOOR
        assert "npu-floor" in build_parser()._subparsers._group_actions[0].choices["run"]._option_string_actions[
            "--profile"].choices
    finally:
        PROFILES.pop("npu-floor")
    with pytest.raises(N6Error, match="npu-floor"):
        from_dict({"model": {"profile": "npu-floor"}})


def test_profile_values_are_validated():
    with pytest.raises(N6Error, match="float32"):
        ArithmeticProfile("x", "mlas", Requantizer("double", fx.DOUBLE_ROUNDING), "half-even", "dq-float")
    with pytest.raises(N6Error, match="tie"):
        Requantizer("bad", fx.DOUBLE_ROUNDING, tie="floor")
    with pytest.raises(N6Error, match="no rounding 'single'"):
        PROFILES["onnxruntime"].choose(rounding="single")


# ---- Device.with_ ----------------------------------------------------------------------------------------------

def test_with_profile_reuses_and_equals_a_fresh_device(bundled, clips):
    """with_ re-parses nothing (same graph and front-end objects; its time: benchmarks/bench_chain.py) and gives
    what a fresh Device with that config gives."""
    fresh = Device(bundled.config.replace("model", profile="onnxruntime"))
    ort = bundled.with_(**{"model.profile": "onnxruntime"})
    assert ort.graph is bundled.graph and ort.frontend is bundled.frontend
    assert ort.settings == fresh.settings and ort.settings["model"]["rounding"] is None
    for pcm in clips:
        a = [(r["index"], r["output"].tolist(), r["label"]) for r in ort.replay_pcm([pcm])]
        b = [(r["index"], r["output"].tolist(), r["label"]) for r in fresh.replay_pcm([pcm])]
        assert a == b


def test_with_rebuilds_only_what_changes(bundled):
    d = bundled.with_(input={"layout": "mel-major"}, app={"threshold": 0.7})
    assert d.session.prepared is bundled.session.prepared and d.frontend is bundled.frontend
    assert d.config.app.threshold == 0.7
    d2 = bundled.with_(**{"frontend.log": "db"})
    assert d2.frontend is not bundled.frontend and d2.graph is bundled.graph
    back = d2.with_(**{"frontend.log": bundled.config.frontend.log})
    assert back.frontend is bundled.frontend
    with pytest.raises(N6Error, match="unknown setting 'modle.profile'"):
        bundled.with_(**{"modle.profile": "onnxruntime"})
    with pytest.raises(N6Error, match="profile"):
        bundled.with_(**{"model.profile": "tflm"})
    with pytest.raises(N6Error, match="rounding"):
        bundled.with_(**{"model.rounding": "half-even"})


# ---- Device.trace ----------------------------------------------------------------------------------------------

def test_trace_holds_every_stage_under_one_name(bundled, clips, tmp_path):
    pcm = clips[0]
    k, patch = next(iter(bundled.patches(pcm)))
    t = bundled.trace(patch)
    names = t.names()
    fe = [n for n in names if n.startswith("frontend/")]
    assert fe[:3] == ["frontend/pcm", "frontend/framed", "frontend/windowed"]
    for stage in ("fft", "spectrum", "mel", "log", "features", "silence_sum"):
        assert f"frontend/{stage}" in t
    assert names.index("input_buffer") > names.index("frontend/features")
    assert names[-2:] == ["output", "probabilities"] or names[-3:] == ["output", "float_output", "probabilities"]
    feats, sil = bundled.frontend.patch(patch)
    assert np.array_equal(t["frontend/features"], feats) and t["frontend/silence_sum"] == np.float32(sil)
    assert np.array_equal(t["input_buffer"], bundled.input_buffer(feats))
    assert np.array_equal(t["frontend/features"], bundled.features(pcm)[0][0])
    rec = next(iter(bundled.replay_pcm([pcm])))
    assert np.array_equal(t["output"].reshape(-1), rec["output"])
    assert t.decision["label"] == rec["label"] and t.decision["index"] == rec["index"]
    net = t.names("network/")
    assert len(net) == len(bundled.graph.activations())
    assert np.array_equal(t[f"network/{bundled.graph.outputs[0]}"].reshape(-1), rec["output"])
    assert "mel-major" in t.stages["input_buffer"].layout
    assert t.settings["runtime"]["profile"] == "cmsis-nn"
    t.save(tmp_path / "t.npz")
    back = Trace.load(tmp_path / "t.npz")
    assert back.names() == names and back.decision == t.decision and back.settings == t.settings
    for n in names:
        assert np.array_equal(back[n], t[n]) and back[n].dtype == t[n].dtype
    assert np.array_equal(bundled.trace(pcm, window=0)["output"], t["output"])
    two = np.concatenate([pcm, clips[1]])
    with pytest.raises(N6Error, match="window=K"):
        bundled.trace(two)
    with pytest.raises(N6Error, match="window 99"):
        bundled.trace(two, window=99)
    assert [k for k, _ in bundled.traces(two)] == [0, 1]


# ---- one network path: uint8 QDQ models --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def uint8_device(tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="onnxruntime (oracle extra) quantizes the uint8 test model")
    import onnx
    from onnx_builder import build_float_model, quantize_qdq
    spec = [dict(op="conv", cout=8, k=(3, 3), stride=2, pad=1, act="relu"),
            dict(op="conv", group=8, mult=1, k=3, pad=1, act="relu"), dict(op="conv", cout=8, k=1, act="relu"),
            dict(op="gap"), dict(op="flatten"), dict(op="gemm", out=12)]
    shape = (1, 1, 40, 49)
    rng = np.random.default_rng(3)
    fm = build_float_model(spec, shape, seed=3, softmax=False)
    calib = [rng.normal(-3, 2, shape).astype(np.float32) for _ in range(8)]
    d = tmp_path_factory.mktemp("u8")
    onnx.save(quantize_qdq(fm, calib, activation_type="uint8"), str(d / "m.onnx"))
    (d / "dev.toml").write_text('[model]\npath = "m.onnx"\nprofile = "onnxruntime"\n[app]\nsilence_gate = false\n')
    return Device(str(d / "dev.toml")), str(d / "m.onnx")


def test_uint8_model_buffer_holds_board_bytes_and_run_equals_replay(uint8_device, clips):
    dev, path = uint8_device
    feats, _ = dev.features(clips[1])
    buf = dev.input_buffer(feats)
    assert buf.dtype == np.uint8
    t_in = dev.graph.tensors[dev.graph.inputs[0]]
    assert np.array_equal(buf.astype(int).reshape(feats.shape[0], -1), feats.reshape(feats.shape[0], -1).astype(int) + 128)
    assert int(t_in.zero_point[0]) + 128 == dev.session.model.onnx.input_zero_point
    session = ModelSession(path, "onnxruntime")                 # what `n6emu run` builds
    assert session.arithmetic.elementwise == dev.session.arithmetic.elementwise == "qlinear"
    q, _ = session.run(buf)
    assert q.dtype == np.uint8 and np.array_equal(q.reshape(dev.run(buf).shape), dev.run(buf))
    t = dev.trace(clips[1], window=0)
    assert t["input_buffer"].dtype == np.uint8 and t["output"].dtype == np.uint8
    assert "board value - 128" in t.stages[f"network/{dev.graph.outputs[0]}"].layout


def test_replay_records_equal_with_and_without_traces(bundled, clips, tmp_path):
    """A traced patch is computed once (front end + network inside its Trace) and its record equals the batch's."""
    pcm = np.concatenate(clips[:3])
    plain = list(bundled.replay_pcm([pcm]))
    got = {}
    traced = list(bundled.replay_pcm([pcm], trace=lambda k: (lambda t: got.setdefault(k, t)) if k in (0, 2) else None))
    assert sorted(got) == [0, 2] and len(plain) == len(traced) == 3
    for a, b in zip(plain, traced):
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(a[key], b[key]) or (a[key] != a[key] and b[key] != b[key]), key
    assert np.array_equal(got[2]["output"].reshape(-1), plain[2]["output"])


def test_cli_dump_of_a_window_that_does_not_exist(tmp_path):
    import io
    from emu.cli import main
    from test_audio import write_wav
    write_wav(tmp_path / "a.wav", np.zeros(16000, np.int16))
    out, err = io.StringIO(), io.StringIO()
    code = main(["replay", str(tmp_path / "a.wav"), "--dump", str(tmp_path / "d"), "--windows", "5"], out, err)
    assert code == 2 and "no such window" in err.getvalue() and err.getvalue().count("\n") == 1
    assert not (tmp_path / "d").exists()
