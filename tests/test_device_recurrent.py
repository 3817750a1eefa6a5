"""A TFLite LSTM keyword model in the device chain: [model].state = "keep" (tflite-micro keeps the LSTM's variable
tensors from one ai_run to the next: the windows of a recording form one stream) or "reset" (every window from the
initial state, as the stateless model on the PC). Oracle: tflite-micro invoked on the device's own input buffers,
window after window (Interpreter.reset() before each window for "reset", before each recording for both)."""
import os

import numpy as np
import pytest

import emu
from emu import audio
from emu.config import load_config
from emu.device import Device
from tflite_builder import ModelBuilder
from test_tflite_recurrent import _f32, add_lstm

pytest.importorskip("tflite_micro", reason="oracle unavailable: tflite-micro is not installed; pip install -e .[test]")
from emu.reference import TflmReference  # noqa: E402

CLIPS = [os.path.join(os.path.dirname(emu.__file__), "data", "clips", f"{w}.wav") for w in ("yes", "no", "up", "down", "left")]


def lstm_kws_model():
    """[1, 49 frames, 40 mels] int8 -> LSTM(16) -> last step -> FULLY_CONNECTED(12) -> SOFTMAX."""
    rng = np.random.default_rng(11)
    b = ModelBuilder()
    shape, s_x = (1, 49, 40), _f32(0.1)
    x = b.tensor("features", shape, np.int8, s_x, -30)
    seq, _, _ = add_lstm(b, rng, x, shape, s_x, 16, False, cell_power=-11, cell_clip=0.0, hidden_q=(_f32(1 / 128), 0))
    vec = [b.tensor(f"ss{k}", (3,), np.int32, data=np.array(v, np.int32))
           for k, v in enumerate(([0, 48, 0], [1, 49, 16], [1, 1, 1]))]
    last = b.tensor("last", (1, 16), np.int8, _f32(1 / 128), 0)
    b.op("STRIDED_SLICE", [seq] + vec, [last], shrink_axis_mask=2)
    w = b.tensor("fc_w", (12, 16), np.int8, _f32(0.02), 0, data=rng.integers(-127, 128, (12, 16)).astype(np.int8))
    bias = b.tensor("fc_b", (12,), np.int32, _f32(0.02 / 128), 0,
                    data=rng.integers(-800, 800, 12).astype(np.int32))
    logits = b.tensor("logits", (1, 12), np.int8, _f32(0.05), 3)
    b.op("FULLY_CONNECTED", [last, w, bias], [logits], fused_activation_function=0)
    probs = b.tensor("probs", (1, 12), np.int8, _f32(1 / 256), -128)
    b.op("SOFTMAX", [logits], [probs], beta=1.0)
    return b.build([x], [probs])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("lstm")
    model = d / "lstm_kws.tflite"
    model.write_bytes(lstm_kws_model())
    labels = ",".join(f'"c{k}"' for k in range(12))
    devices = {}
    for state in ("keep", "reset"):
        cfg = d / f"{state}.toml"
        cfg.write_text(f'[model]\npath = "{model}"\nstate = "{state}"\n[input]\nlayout = "frame-major"\n'
                       f'[app]\nclasses = [{labels}]\n')
        devices[state] = Device(load_config(str(cfg)))
    pcm = np.concatenate([audio.load(c) for c in CLIPS])      # several windows of one recording
    return model, devices, pcm


def tflm_outputs(model, buffers, reset_each):
    ref = TflmReference(model.read_bytes())
    ref._interp.reset()
    out = []
    for buf in buffers:
        if reset_each:
            ref._interp.reset()
        out.append(ref.run(buf).reshape(-1))
    return np.stack(out)


@pytest.mark.parametrize("state", ["keep", "reset"])
def test_replay_equals_tflm_window_after_window(setup, state):
    model, devices, pcm = setup
    dev = devices[state]
    bufs, _ = dev.recording_buffers(pcm)
    assert len(bufs) >= 4
    ref = tflm_outputs(model, bufs, reset_each=state == "reset")
    for _ in range(2):       # a second replay of the recording starts from the initial state again
        got = np.stack([r["output"] for r in dev.replay_pcm([pcm])])
        assert np.array_equal(got, ref)
    assert dev.settings["model"]["state"] == state and dev.runtime.metadata["state"] == state


def test_keep_and_reset_differ_after_the_first_window(setup):
    _, devices, pcm = setup
    keep = np.stack([r["output"] for r in devices["keep"].replay_pcm([pcm])])
    reset = np.stack([r["output"] for r in devices["reset"].replay_pcm([pcm])])
    assert np.array_equal(keep[0], reset[0]) and not np.array_equal(keep[1:], reset[1:])


def test_trace_of_a_window_follows_the_windows_before_it(setup):
    _, devices, pcm = setup
    dev = devices["keep"]
    records = list(dev.replay_pcm([pcm]))
    for k in (0, 2, len(records) - 1):
        assert np.array_equal(dev.trace(pcm, window=k)["output"].reshape(-1), records[k]["output"])
    traced = dict(dev.traces(pcm))
    assert all(np.array_equal(traced[k]["output"].reshape(-1), r["output"]) for k, r in enumerate(records))
    # a traced window in the middle of a replay does not disturb the order of the state
    mixed = list(dev.replay_pcm([pcm], trace=lambda k: (lambda t: None) if k == 2 else None))
    assert all(np.array_equal(a["output"], b["output"]) for a, b in zip(mixed, records))


def test_state_is_a_checked_choice(tmp_path):
    from emu.config import ConfigError
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[model]\nstate = "carry"\n')
    with pytest.raises(ConfigError, match=r"\[model\]\.state = 'carry' is not supported; use one of 'keep', 'reset'"):
        load_config(str(cfg))


def test_memory_plan_counts_the_recurrent_state(setup, tmp_path):
    from emu.cli import main
    from emu.graph import load_tflite
    from emu.graph.memory import plan_memory
    model, _, _ = setup
    plan = plan_memory(load_tflite(str(model)))
    assert plan.state_bytes == 16 * 1 + 16 * 2 and plan.to_dict()["state_bytes"] == 48     # h int8 + c int16
    import io
    out = io.StringIO()
    assert main(["inspect", str(model), "--memory"], out=out) == 0
    assert "recurrent state 48 bytes" in out.getvalue()
