"""Faults as configuration ([faults], emu/faults.py) and their diagnosis (emu/diagnose.py, `n6emu diagnose`).

Acceptance: for every fault of the catalogue, a board observation synthesized by injecting that fault into the
device (three clips) is diagnosed as that fault, top-1 or tied at top-1 (a tie must contain it); a fault-free
observation is diagnosed as `none`. On the bundled device and on a second model of another input shape
(a TC-ResNet-like [1, 32, 1, 61] temporal-convolution model over 32 htk mels, built here and quantized with
onnxruntime). Plus the [faults] table's parsing and one-line errors, the warnings, each fault's bytes against an
independent numpy statement, traces, and the CLI (text and --json).
"""
import glob
import io
import json
from pathlib import Path

import numpy as np
import pytest

from emu import audio, config
from emu import faults as F
from emu.cli import main
from emu.config import ConfigError
from emu.device import Device
from emu.diagnose import Diagnoser
from emu.errors import N6Error

ROOT = Path(__file__).resolve().parent.parent
CLIPS = [str(ROOT / "emu" / "data" / "clips" / f"{w}.wav") for w in ("yes", "go", "left")]

TC_TOML = """
[frontend]
profile = "st-f16"
isa = "helium"
sample_rate = 16000
n_fft = 512
win_length = 512
hop_length = 256
n_mels = 32
fmin = 20.0
fmax = 8000.0
mel_scale = "htk"
mel_norm = "slaney"
n_frames = 61

[model]
path = "tc_qdq.onnx"
profile = "cmsis-nn"

[input]
layout = "mel-major"

[app]
silence_gate = false
"""


def read(path):
    return audio.read_all(audio.probe(path))


@pytest.fixture(scope="module")
def pcms():
    return [read(p) for p in CLIPS]


@pytest.fixture(scope="module")
def bundled():
    return Device()


@pytest.fixture(scope="module")
def tc_device(tmp_path_factory):
    """A second model, not the bundled one: input [1, 32, 1, 61] (NCHW, the 32 mels as channels: TC-ResNet's
    layout), st-f16 front end with n_fft 512, hop 256, htk mels; random weights, quantized to QDQ by onnxruntime
    with the device front end's float log-mel of the bundled clips as calibration."""
    import onnx
    from onnx_builder import build_float_model, onnxruntime, quantize_qdq
    onnxruntime()
    import tomllib

    from emu.frontend.params import FrontendParams
    from emu.frontend.registry import FrontEnd
    d = tmp_path_factory.mktemp("tc")
    params = FrontendParams.from_dict(tomllib.loads(TC_TOML)["frontend"])
    fe = FrontEnd(params)
    calibration = []
    for path in sorted(glob.glob(str(ROOT / "emu" / "data" / "clips" / "*.wav"))):
        for _, patch in audio.patches([read(path)], params.keep_samples, params.new_samples):
            log = np.asarray(fe.stages(patch)["log"], np.float32)
            log = np.where(np.isfinite(log), log, log[np.isfinite(log)].min())   # holes: -inf in the float log
            calibration.append(log.reshape(1, 32, 1, 61))
    spec = [dict(op="conv", cout=24, k=(1, 5), stride=2, act="relu"),
            dict(op="conv", k=(1, 3), group=24, act="relu"),
            dict(op="conv", cout=16, k=1, act="relu"),
            dict(op="flatten"), dict(op="gemm", out=10)]
    onnx.save(quantize_qdq(build_float_model(spec, (1, 32, 1, 61), seed=7), calibration), str(d / "tc_qdq.onnx"))
    (d / "tc.toml").write_text(TC_TOML)
    return Device(d / "tc.toml")


def observe(dev, pcms):
    """What the board prints: the int8 outputs of every window of every clip, in order."""
    return np.concatenate([dev.run(dev.recording_buffers(p)[0]) for p in pcms])


def observe_inputs(dev, pcms):
    return np.concatenate([dev.recording_buffers(p)[0] for p in pcms])


def injections(dev):
    """One injected fault per catalogue entry, TOML parameters (defaults where the fault has them)."""
    fe = dev.frontend.params
    frames = dev.fault_context.model_frames
    return {
        "input-transposed": {}, "nchw-nhwc": {}, "double-quantization": {}, "missing-quantization": {},
        "float-bytes-as-int8": {}, "int8-uint8": {}, "wrong-scale": {"scale": fe.quant_scale * 2},
        "wrong-zero-point": {"zero_point": 0}, "inverse-scale-precision": {}, "truncation": {},
        "normalisation-mismatch": {}, "log-epsilon": {}, "log-base": {}, "frame-count": {"n_frames": frames - 1},
        "patch-shift": {}, "frontend-precision": {}, "f16-underflow": {}, "fft-build": {}, "arithmetic-profile": {},
    }


def test_injections_cover_the_catalogue(bundled):
    assert set(injections(bundled)) == set(F.FAULTS)


def test_catalogue_is_documented():
    import dataclasses
    for name, cls in F.FAULTS.items():
        assert f"\n  {name} " in F.__doc__, f"{name} undocumented"
        assert cls.stage in F.STAGES and cls.summary
        for field in dataclasses.fields(cls):
            assert f"{field.name} =" in F.__doc__ or f"{field.name} (" in F.__doc__, f"{name}.{field.name}"


@pytest.fixture(scope="module")
def bundled_diagnoser(bundled, pcms):
    return Diagnoser(bundled, pcms)


@pytest.fixture(scope="module")
def tc_diagnoser(tc_device, pcms):
    return Diagnoser(tc_device, pcms)


def check_diagnosed(dev, diagnoser, pcms, name, params):
    injected = dev.with_(faults={name: params})
    obs = observe(injected, pcms)
    assert obs.shape[0] == len(pcms)
    result = diagnoser.diagnose(obs)
    best = result.best
    assert best.exact_outputs == best.n_outputs == len(pcms), best.evidence
    tied = [e.names for e in result.ties]
    assert (name,) in tied, f"{name} injected, diagnosed {[e.hypothesis for e in result.ties]}"
    # every tied hypothesis is one the evidence cannot separate: it reproduces every window too
    assert all(e.exact_outputs == len(pcms) and e.score == best.score for e in result.ties)
    return result


@pytest.mark.parametrize("name", list(F.FAULTS))
def test_each_fault_is_diagnosed_bundled(bundled, bundled_diagnoser, pcms, name):
    check_diagnosed(bundled, bundled_diagnoser, pcms, name, injections(bundled)[name])


@pytest.mark.parametrize("name", list(F.FAULTS))
def test_each_fault_is_diagnosed_second_model(tc_device, tc_diagnoser, pcms, name):
    assert tc_device.input_shape == (1, 32, 1, 61) and tc_device.input_shape != Device().input_shape
    check_diagnosed(tc_device, tc_diagnoser, pcms, name, injections(tc_device)[name])


@pytest.mark.parametrize("which", ["bundled", "second"])
def test_fault_free_board_is_diagnosed_none(which, request, pcms):
    dev = request.getfixturevalue("bundled" if which == "bundled" else "tc_device")
    diag = request.getfixturevalue("bundled_diagnoser" if which == "bundled" else "tc_diagnoser")
    result = diag.diagnose(observe(dev, pcms))
    assert result.best.faults == () and result.best.exact_outputs == 3
    # with the input buffers too, only faults that change no byte of them can still tie with `none`: no-ops on
    # this device and the network's arithmetic (when its outputs happen to agree on these windows)
    result = diag.diagnose(observe(dev, pcms), observe_inputs(dev, pcms))
    assert result.best.faults == () and result.best.exact_inputs == 3
    for e in result.ties:
        assert all(f.noop(dev.fault_context) or f.stage == "network" for f in e.faults), e.hypothesis


def test_board_input_separates_output_ties(tc_device, pcms):
    """On one clip the second model's outputs do not move under the -Ofast build of the front end (a few features
    differ by one step): `none` and other faults tie with it. The board's input buffer separates them."""
    diag = Diagnoser(tc_device, pcms[:1], pairs=False)
    dev = tc_device.with_(faults={"fft-build": {"isa": "helium", "optimization": "Ofast"}})
    out_only = diag.diagnose(observe(dev, pcms[:1]))
    both = diag.diagnose(observe(dev, pcms[:1]), observe_inputs(dev, pcms[:1]))
    assert {("fft-build",), ()} <= {e.names if e.faults else () for e in out_only.ties}
    assert [e.names for e in both.ties] == [("fft-build",)]
    assert both.best.exact_inputs == 1 and both.best.n_inputs == 1


def test_pairs_of_faults_are_found_and_kept_only_when_they_add(bundled, bundled_diagnoser, pcms):
    dev = bundled.with_(faults={"input-transposed": {}, "wrong-zero-point": {"zero_point": 0}})
    result = bundled_diagnoser.diagnose(observe(dev, pcms))
    assert result.best.names == ("input-transposed", "wrong-zero-point")
    assert result.best.exact_outputs == 3
    # a pair whose second fault adds nothing to a single-fault explanation is not a second explanation
    single = bundled_diagnoser.diagnose(observe(bundled.with_(faults={"truncation": {}}), pcms))
    assert all(len(e.faults) == 1 for e in single.ties)


@pytest.mark.parametrize("which", ["bundled", "second"])
@pytest.mark.parametrize("k, zp_shift", [(1.37, None), (0.613, None), (1.23, -3)])
def test_quantization_parameters_off_the_grid_are_fitted_from_the_board_input(which, k, zp_shift, request, pcms):
    """A scale (and zero-point) the catalogue's grid does not hold is fitted from the board's input buffers and
    diagnosed exactly; without the input buffers nothing is fitted."""
    dev = request.getfixturevalue("bundled" if which == "bundled" else "tc_device")
    diag = request.getfixturevalue("bundled_diagnoser" if which == "bundled" else "tc_diagnoser")
    fe = dev.frontend.params
    faults = {"wrong-scale": {"scale": float(np.float32(fe.quant_scale * k))}}
    if zp_shift is not None:
        faults["wrong-zero-point"] = {"zero_point": fe.quant_zero_point + zp_shift}
    bad = dev.with_(faults=faults)
    obs, obs_in = observe(bad, pcms), observe_inputs(bad, pcms)
    assert diag.fitted(None) == []
    result = diag.diagnose(obs, obs_in)
    assert [e.names for e in result.ties] == [tuple(sorted(faults, key=lambda n: F._ORDER[n]))]
    assert result.best.exact_outputs == result.best.exact_inputs == len(pcms)
    fitted = dict((f.name, f) for f in result.best.faults)
    assert abs(fitted["wrong-scale"].scale / faults["wrong-scale"]["scale"] - 1) < 0.01
    assert fitted.get("wrong-zero-point", F.WrongZeroPoint(zero_point=fe.quant_zero_point)).zero_point == (
        fe.quant_zero_point + (zp_shift or 0))
    # the device's own quantization is never "fitted" into a fault
    assert diag.fitted(observe_inputs(dev, pcms).reshape(len(pcms), -1)) == []


@pytest.mark.slow
@pytest.mark.parametrize("which", ["bundled", "second"])
def test_every_candidate_is_diagnosed(which, request, pcms):
    """The full sweep: every parameter value diagnose tries, injected, is found (top-1 or in the top tie)."""
    dev = request.getfixturevalue("bundled" if which == "bundled" else "tc_device")
    diag = request.getfixturevalue("bundled_diagnoser" if which == "bundled" else "tc_diagnoser")
    for f in diag.singles:
        obs = observe(dev.with_(faults=[f]), pcms)
        if obs.shape[0] == 0:       # a frame count too long for 1 s clips: no window to print
            continue
        result = diag.diagnose(obs)
        assert (f,) in [e.faults for e in result.ties], f"{f.label()}: {[e.hypothesis for e in result.ties]}"


# ---- each fault's bytes, against a plain statement of what the firmware does --------------------------

def test_buffer_faults_bytes(bundled, pcms):
    base = observe_inputs(bundled, pcms)                     # [3, 1, 1, 40, 49] int8, mel-major
    feats = np.stack([bundled.features(p)[0][0] for p in pcms])
    assert np.array_equal(base.reshape(3, 40, 49), feats)
    tr = observe_inputs(bundled.with_(faults={"input-transposed": {}}), pcms)
    assert np.array_equal(tr.reshape(3, -1), feats.transpose(0, 2, 1).reshape(3, -1))   # buf[frame * 40 + mel]
    flip = observe_inputs(bundled.with_(faults={"int8-uint8": {}}), pcms)
    assert np.array_equal(flip.view(np.uint8), base.view(np.uint8) ^ 0x80)
    fb = observe_inputs(bundled.with_(faults={"float-bytes-as-int8": {}}), pcms)
    logs = [bundled.trace(p, window=0)["frontend/log"] for p in pcms]
    for k in range(3):
        raw = np.asarray(logs[k], "<f4").tobytes()[:40 * 49]
        assert fb[k].tobytes() == raw
    fc = bundled.with_(faults={"frame-count": {"n_frames": 48}})
    buf = observe_inputs(fc, pcms).reshape(3, -1)
    f48 = np.stack([fc.frontend.patch(next(fc.patches(p))[1])[0] for p in pcms])      # [3, 40, 48]
    want = np.zeros((3, 40 * 49), np.int8)
    want[:, :40 * 48] = f48.reshape(3, -1)                    # the firmware's stride, the rest untouched
    assert np.array_equal(buf, want)


def test_quantization_faults_against_c_semantics(bundled, pcms):
    t = bundled.trace(pcms[0], window=0)
    log = t["frontend/log"].astype(np.float64)
    mq = bundled.with_(faults={"missing-quantization": {}}).trace(pcms[0], window=0)
    i32 = np.where(np.isneginf(log), -2 ** 31, np.trunc(np.where(np.isfinite(log), log, 0))).astype(np.int64)
    assert np.array_equal(mq["frontend/features"], (i32 & 0xFF).astype(np.uint8).view(np.int8))   # low 8 bits
    tr = bundled.with_(faults={"truncation": {}}).trace(pcms[0], window=0)["frontend/features"].astype(int)
    rounded = t["frontend/features"].astype(int)
    with np.errstate(invalid="ignore"):
        y = log * float(bundled.frontend.state.inv_scale) + bundled.frontend.params.quant_zero_point
        fin = np.isfinite(y) & (np.abs(y) < 127) & (np.abs(y - np.round(y)) > 1e-4)   # away from float32 ties
    assert np.array_equal(tr[fin], np.trunc(y[fin]).astype(int))          # toward zero, no roundf
    assert (tr != rounded).any() and (np.abs(tr - rounded) <= 1).all()
    n = bundled.with_(faults={"normalisation-mismatch": {"mean": -5.0, "std": 4.0}}).trace(pcms[0], window=0)
    fin = np.isfinite(log)
    assert np.allclose(n["frontend/log"][fin], (log[fin] + 5.0) / 4.0, atol=2e-3)
    eps = bundled.with_(faults={"log-epsilon": {"eps": 1e-4}}).trace(pcms[0], window=0)
    mel = t["frontend/mel"].astype(np.float64)
    assert np.isfinite(eps["frontend/log"]).all()
    assert np.allclose(eps["frontend/log"], np.log(mel + 1e-4), atol=1e-2)


def test_switch_faults_go_through_the_switches(bundled):
    fe = bundled.frontend.params
    assert bundled.with_(faults={"inverse-scale-precision": {}}).frontend.params == fe.replace(inv_scale_dtype="f32")
    assert bundled.with_(faults={"fft-build": {}}).frontend.params == fe.replace(isa="scalar")
    assert bundled.with_(faults={"f16-underflow": {}}).frontend.params == fe.replace(neg_inf_cast="saturate")
    assert bundled.with_(faults={"wrong-scale": {"scale": 0.2}}).frontend.params == fe.replace(quant_scale=0.2)
    ort = bundled.with_(faults={"arithmetic-profile": {}})
    assert ort.session.arithmetic == bundled.with_(**{"model.profile": "onnxruntime"}).session.arithmetic
    # nothing is re-parsed: the same imported model, the tables of an unchanged build reused
    assert ort.session.model is bundled.session.model
    assert bundled.with_(faults={"wrong-zero-point": {"zero_point": 3}}).frontend.state.window is \
        bundled.frontend.state.window


def test_trace_equals_batch_path_for_every_candidate(bundled, pcms):
    """Device.trace (one patch, every stage recorded) and recording_buffers/run (batched) agree under every fault,
    and the trace shows the faults: settings, faults/<name> stages, the input buffer's layout line."""
    for f in F.candidates(bundled.fault_context):
        dev = bundled.with_(faults=[f])
        buf = dev.recording_buffers(pcms[0])[0]
        if buf.shape[0] == 0:
            continue
        t = dev.trace(pcms[0], window=0)
        assert np.array_equal(t["input_buffer"], buf[0]), f.label()
        assert np.array_equal(t["output"].reshape(-1), dev.run(buf)[0]), f.label()
        assert t.settings["faults"] == {f.name: f.params()}
        assert f.label() in t.describe("input_buffer")
        if f.stage in ("log", "quantize") or f.name in ("float-bytes-as-int8", "int8-uint8", "double-quantization"):
            assert f"faults/{f.name}" in t, f.label()


def test_replay_and_features_use_the_faults(bundled, pcms, tmp_path):
    dev = bundled.with_(faults={"wrong-zero-point": {"zero_point": 0}, "patch-shift": {"samples": -160}})
    recs = list(dev.replay(CLIPS))
    assert np.array_equal(np.stack([r["output"] for r in recs]), observe(dev, pcms))
    assert dev.patch_count(16000) == 1 and bundled.with_(faults={"patch-shift": {"samples": 400}}).patch_count(16000) == 0


# ---- the [faults] table ------------------------------------------------------------------------------

def write(tmp_path, text, name="dev.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_faults_table_parses_and_round_trips(tmp_path):
    p = write(tmp_path, '[faults]\ninput-transposed = {}\nint8-uint8 = true\nwrong-scale = { scale = 0.2 }\n'
                        '[faults.log-epsilon]\neps = 1e-6\n')
    cfg = config.load_config(p)
    assert [f.name for f in cfg.faults] == ["input-transposed", "int8-uint8", "wrong-scale", "log-epsilon"]
    assert cfg.faults[2] == F.WrongScale(scale=0.2) and cfg.faults[3].eps == 1e-6
    back = config.load_config(write(tmp_path, config.to_toml(cfg), "back.toml"))
    assert back.faults == cfg.faults and back.to_dict() == cfg.to_dict()
    assert "faults" not in config.load_config().to_dict()          # no [faults]: the description is unchanged


@pytest.mark.parametrize("text, needle", [
    ("[faults]\ninput-transposd = {}\n", r"unknown fault \[faults\]\.input-transposd; the catalogue: input-transposed"),
    ("[faults]\nwrong-scale = { scal = 0.2 }\n", r"unknown parameter \[faults\.wrong-scale\]\.scal; parameters: scale"),
    ("[faults]\nwrong-scale = {}\n", r"\[faults\.wrong-scale\]\.scale is required"),
    ("[faults]\nwrong-scale = { scale = -1.0 }\n", r"\[faults\.wrong-scale\]\.scale = -1\.0 must be a number > 0"),
    ("[faults]\nwrong-zero-point = { zero_point = 300 }\n", r"zero_point = 300 must be an integer in -128\.\.127"),
    ("[faults]\nlog-epsilon = { eps = 0.0 }\n", r"\[faults\.log-epsilon\]\.eps = 0\.0 must be a number > 0"),
    ("[faults]\nf16-underflow = { holes = \"nan\" }\n", r"holes = 'nan' is not supported; use one of 'zero'"),
    ("[faults]\nint8-uint8 = { x = 1 }\n", r"unknown parameter \[faults\.int8-uint8\]\.x; the fault has no parameters"),
    ("[faults]\ntruncation = 3\n", r"\[faults\]\.truncation = 3 must be a table of parameters"),
    ("faults = 3\n", r"\[faults\] must be a table"),
    ("[faults]\nnormalisation-mismatch = { mean = 1.0 }\n", "give both mean and std"),
    ("[faults]\narithmetic-profile = { profile = \"npu\" }\n", r"\[faults\.arithmetic-profile\]\.profile = 'npu'"),
])
def test_faults_errors_are_one_line(tmp_path, text, needle):
    p = write(tmp_path, text)
    with pytest.raises(N6Error, match=needle) as err:
        config.load_config(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)


@pytest.mark.parametrize("changes, needle", [
    ({"frontend.profile": "st-f32", "faults": {"f16-underflow": {}}}, "holes are f16 mel energies"),
    ({"faults": {"frame-count": {}}}, r"frame-count\]\.n_frames is required.*the model's is 49"),
    ({"faults": {"truncation": {}, "missing-quantization": {}}}, "both replace the same step"),
    ({"faults": {"frontend-precision": {"precision": "float64"}, "log-epsilon": {}}}, "both replace the same step"),
    ({"input.boundary": "float32", "faults": {"missing-quantization": {}}}, "boundary is float32"),
])
def test_faults_that_cannot_act_are_one_line_errors(bundled, changes, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        bundled.with_(**changes)
    assert "\n" not in str(err.value)


# ---- contradictions become warnings naming the fault ---------------------------------------------------

def test_contradicting_layout_is_an_error_without_faults_and_a_warning_with_them(bundled, pcms):
    with pytest.raises(ConfigError, match='set layout = "mel-major"'):
        bundled.with_(**{"input.layout": "frame-major"})
    described = bundled.with_(**{"input.layout": "frame-major", "faults": {"input-transposed": {}}})
    assert len(described.warnings) == 1 and "input-transposed" in described.warnings[0]
    assert "kept as the firmware's" in described.warnings[0]
    flipped = bundled.with_(faults={"input-transposed": {}})     # the layout that matches the model, flipped
    assert flipped.warnings == [] and described.layout == flipped.layout == "frame-major"
    assert np.array_equal(observe_inputs(described, pcms), observe_inputs(flipped, pcms))
    assert described.settings["warnings"] == described.warnings
    assert described.settings["input"]["written_layout"] == "frame-major"


def test_contradicting_frame_count_is_a_warning_with_the_fault(bundled):
    with pytest.raises(ConfigError, match="holds 1960 values"):
        bundled.with_(**{"frontend.n_frames": 48})
    dev = bundled.with_(**{"frontend.n_frames": 48, "faults": {"frame-count": {}}})
    assert dev.faults[0].n_frames == 48 and "frame-count" in dev.warnings[0]
    assert dev.frontend.params.n_frames == 48


def test_noop_fault_is_a_warning(bundled):
    dev = bundled.with_(faults={"nchw-nhwc": {}})
    assert "one channel" in dev.warnings[0] and "nchw-nhwc" in dev.warnings[0]


def test_second_model_nchw_nhwc_writes_channel_last(tc_device, pcms):
    base = observe_inputs(tc_device, pcms)
    nhwc = observe_inputs(tc_device.with_(faults={"nchw-nhwc": {}}), pcms)
    assert tc_device.with_(faults={"nchw-nhwc": {}}).warnings == []
    assert np.array_equal(nhwc.reshape(3, -1), base.transpose(0, 1, 3, 4, 2).reshape(3, -1))


# ---- the CLI ---------------------------------------------------------------------------------------

def call(argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def transposed_board(bundled, pcms, tmp_path_factory):
    """The board of the README: frame-major features into the mel-major model, outputs printed as text lines."""
    d = tmp_path_factory.mktemp("board")
    dev = bundled.with_(faults={"input-transposed": {}})
    out = observe(dev, pcms)
    (d / "uart.txt").write_text("".join("[" + ", ".join(map(str, row)) + "]\n" for row in out))
    np.save(d / "input.npy", observe_inputs(dev, pcms))
    return d


def test_cli_diagnose_text(transposed_board):
    """The README's case: 3 clips against the whole catalogue and its pairs (its time: benchmarks/bench_chain.py)."""
    code, out, err = call(["diagnose", "--audio", *CLIPS, "--board-output", str(transposed_board / "uart.txt")])
    assert code == 0, err
    assert int(out.rsplit("(", 1)[1].split()[0]) > 500          # "(1085 hypotheses in 7.7 s)"
    assert "Best explanation: input-transposed" in out
    assert "reproduces 3/3 outputs of 3 clips exactly" in out
    assert "fix: write the features mel-major as the model reads them: buf[mel * 49 + frame]" in out
    assert "hypotheses in" in out


def test_cli_diagnose_json_with_board_input(transposed_board):
    code, out, err = call(["diagnose", "--audio", *CLIPS, "--board-output", str(transposed_board / "uart.txt"),
                           "--board-input", str(transposed_board / "input.npy"), "--json", "--no-pairs"])
    assert code == 0, err
    entries = json.loads(out)
    top = entries[0]
    assert top["hypothesis"] == "input-transposed" and top["params"] == {"input-transposed": {}}
    assert top["exact_matches"] == 3 and top["exact_inputs"] == 3 and top["rank"] == 1
    assert "3/3 input buffers" in top["evidence"]
    assert all(set(e) >= {"hypothesis", "params", "score", "exact_matches", "evidence"} for e in entries)
    assert [e["score"] for e in entries] == sorted((e["score"] for e in entries), reverse=True)
    assert sum(e["rank"] == 1 for e in entries) == 1


def test_cli_diagnose_bad_board_output(transposed_board, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n")
    code, out, err = call(["diagnose", "--audio", CLIPS[0], "--board-output", str(bad)])
    assert code == 2 and "not a whole number of windows of 12 outputs" in err and err.count("\n") == 1


def test_cli_prints_device_warnings(tmp_path):
    cfg = write(tmp_path, '[input]\nlayout = "frame-major"\n[faults]\ninput-transposed = {}\n')
    code, out, err = call(["replay", CLIPS[0], "--config", str(cfg)])
    assert code == 0, err
    assert "warning:" in err and "input-transposed" in err


# ---- fit: the network's arithmetic from board input/output pairs ----------------------------------------

@pytest.fixture(scope="module")
def pairs(bundled, pcms):
    x = observe_inputs(bundled, pcms + [read(str(ROOT / "emu" / "data" / "clips" / f"{w}.wav"))
                                        for w in ("no", "up", "down", "stop", "on", "off")])
    return x


def test_fit_finds_the_arithmetic_or_its_ties(bundled, pairs):
    from emu.diagnose import fit
    y = bundled.run(pairs)                                      # cmsis-nn, double rounding: the bundled device
    entries = fit(bundled.session.model, pairs, y)
    top = [e.profile for e in entries if e.rank == 1]
    assert {p.name for p in top} == {"cmsis-nn"} and "double" in [p.rounding for p in top]
    assert entries[0].exact_windows == pairs.shape[0]
    y = bundled.with_(**{"model.profile": "onnxruntime"}).run(pairs)
    top = [e.profile for e in fit(bundled.session.model, pairs, y) if e.rank == 1]
    assert "onnxruntime" in [p.name for p in top]                # (tied with arithmetics these pairs do not separate)
    bad = bundled.run(pairs).astype(int)
    bad[0, 0] += 1                                               # one value the emulator cannot make
    best = fit(bundled.session.model, pairs, bad)[0]
    assert best.exact_windows == pairs.shape[0] - 1 and best.histogram == {-1: 1, 0: bad.size - 1}


def test_fit_ranks_every_candidate_arithmetic_first_on_its_own_outputs(bundled, pairs):
    """Each arithmetic fit tries (requantization order, tie rule, multiplier derivation) reproduces its own outputs
    top-1 or tied at top-1; the ones the outputs cannot separate are exactly the ties."""
    from emu.diagnose import arithmetic_candidates, fit
    from emu.models import ModelSession
    cands = arithmetic_candidates()
    assert len({(p.name, p.rounding, p.elementwise) for p in cands}) == len(cands) >= 14
    outs = [np.asarray(ModelSession(bundled.session.model, p).run(pairs)[0]).reshape(pairs.shape[0], -1)
            for p in cands]
    for p, y in zip(cands, outs):
        entries = fit(bundled.session.model, pairs, y, candidates=cands)
        top = [e.profile for e in entries if e.rank == 1]
        assert p in top, p.rounding
        assert {id(q) for q in top} == {id(q) for q, o in zip(cands, outs) if np.array_equal(o, y)}
    m16 = cands.index(next(p for p in cands if p.rounding == "double/m16"))
    assert sum(np.array_equal(o, outs[m16]) for o in outs) == 1      # an int16 multiplier is visible at the output


def test_requantizer_spec_in_config(tmp_path):
    from emu.device import Device
    cfg = write(tmp_path, '[model]\nrounding = "single-floor/m16"\n')
    dev = Device(cfg)
    assert dev.settings["runtime"]["arithmetic"]["requantizer"] == dict(
        name="single-floor/m16", mode="single", tie="floor", derivation="m16")
    code, out, err = call(["replay", CLIPS[0], "--config", str(write(tmp_path, '[model]\nrounding = "single-up"\n'))])
    assert code == 2 and err.count("\n") == 1 and "single-up" in err and "single[-TIE]" in err
    code, out, err = call(["replay", CLIPS[0], "--config", str(write(
        tmp_path, '[model]\nprofile = "onnxruntime"\nrounding = "double/m16"\n'))])
    assert code == 2 and err.count("\n") == 1 and "half-even" in err


def test_cli_fit_stedgeai_npz(bundled, pairs, tmp_path):
    np.savez(tmp_path / "network_val_io.npz", c_inputs_1=pairs, c_outputs_1=bundled.run(pairs),
             m_outputs_1=np.zeros(3))
    code, out, err = call(["fit", "--pairs", str(tmp_path)])
    assert code == 0, err
    assert f"{pairs.shape[0]} input/output pair(s)" in out and "Reproduces every pair exactly: cmsis-nn (rounding double)" in out
    code, out, err = call(["fit", "--pairs", str(tmp_path), "--json"])
    top = json.loads(out)[0]
    assert top["profile"]["name"] == "cmsis-nn" and top["exact_windows"] == pairs.shape[0] and top["histogram"] == {
        "0": bundled.run(pairs).size}
    code, out, err = call(["fit", "--pairs", str(tmp_path / "nope")])
    assert code == 2 and "no such folder" in err
    m16 = bundled.with_(**{"model.rounding": "double/m16"}).run(pairs)
    np.savez(tmp_path / "network_val_io.npz", c_inputs_1=pairs, c_outputs_1=m16)
    code, out, err = call(["fit", "--pairs", str(tmp_path)])
    assert code == 0 and 'in the device TOML: [model] profile = "cmsis-nn", rounding = "double/m16"' in out
