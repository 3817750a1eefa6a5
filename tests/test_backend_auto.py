"""The kernel backend a job runs on: "auto" (the default) picks the C twins for short jobs and Numba for long
ones (emu.kernels.backends.choose_backend), so both must compute the same thing end to end: the front end of every
profile on the C twins against the Numba kernels (features, float log, silence sum, bit for bit), the device chain's
records, and the CLI's outputs. A short job must not even import Numba (emu.jit loads it on first use)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emu import audio
from emu.config import load_config
from emu.device import Device, frontend_params
from emu.frontend import ctwin_q15, ctwin_st
from emu.frontend.registry import FrontEnd
from emu.kernels import backends, ctwin

REPO = Path(__file__).resolve().parent.parent
CLIPS = REPO / "emu" / "data" / "clips"
C_BUILT = ctwin.available() and ctwin_st.available() and ctwin_q15.available()
needs_c = pytest.mark.skipif(not C_BUILT, reason="the C twins are not built (needs gcc at install)")

BUNDLED = load_config(None)
BASE = frontend_params(BUNDLED)

# every front-end build the device can be configured to (st-* isa/optimization/in-place power, both q15 modes)
PROFILES = {
    "st-f16 helium Os in-place": {},
    "st-f16 helium Ofast": dict(optimization="Ofast", inplace_power=False),
    "st-f16 scalar": dict(isa="scalar"),
    "st-f32 helium": dict(profile="st-f32"),
    "st-f32 scalar": dict(profile="st-f32", isa="scalar"),
    "st-f16 magnitude dB": dict(spectrum="magnitude", log="db"),
}


def _patches(p, n_random=3, seed=7):
    """int16 patches [P, patch_length]: random speech-level noise, silence, full-scale square, a clipped tone,
    -32768 everywhere, and a single impulse."""
    rng = np.random.default_rng(seed)
    n = p.patch_length
    t = np.arange(n)
    out = [rng.normal(0, 3000, n).clip(-32768, 32767).astype(np.int16) for _ in range(n_random)]
    out += [np.zeros(n, np.int16),
            np.where((t // 8) % 2 == 0, 32767, -32768).astype(np.int16),
            (np.sin(2 * np.pi * 440 * t / p.sample_rate) * 60000).clip(-32768, 32767).astype(np.int16),
            np.full(n, -32768, np.int16),
            np.eye(1, n, n // 2, dtype=np.int16)[0] * 32767]
    return np.stack(out)


def _same_float(a, b):
    return np.array_equal(np.asarray(a, np.float32).view(np.uint32), np.asarray(b, np.float32).view(np.uint32))


@needs_c
@pytest.mark.parametrize("name", PROFILES)
def test_st_front_end_on_the_c_twins_equals_numba(name):
    params = BASE.replace(**PROFILES[name]) if PROFILES[name] else BASE
    numba_fe, c_fe = FrontEnd(params, "numba"), FrontEnd(params, "c")
    x = _patches(params)
    for boundary in ("int8", "float32"):
        fn, sn = numba_fe.patches(x, boundary)
        fc, sc = c_fe.patches(x, boundary)
        assert fc.dtype == fn.dtype and fc.shape == fn.shape
        assert _same_float(fc, fn) if boundary == "float32" else np.array_equal(fc, fn), (name, boundary)
        assert _same_float(sc, sn), name
        one, s1 = c_fe.patch(x[0], boundary)
        assert np.array_equal(one.view(np.uint8), fn[0].view(np.uint8)) and _same_float(s1, sn[0])
    _same_stages(numba_fe, c_fe, x[[0, 4]])


def _same_stages(numba_fe, c_fe, patches):
    """Every canonical stage (the traces, `features --stages`, replay --dump): same names, dtypes, shapes, bits."""
    for x in patches:
        a, b = numba_fe.stages(x), c_fe.stages(x)
        assert list(a) == list(b)
        for k in a:
            va, vb = np.asarray(a[k]), np.asarray(b[k])
            assert va.dtype == vb.dtype and va.shape == vb.shape, k
            assert np.array_equal(va.reshape(-1).view(np.uint8), vb.reshape(-1).view(np.uint8)), k


@needs_c
@pytest.mark.parametrize("mode", ["logmel", "mfcc"])
def test_q15_front_end_on_the_c_twins_equals_numba(mode):
    params = BASE.replace(profile="cmsis-q15", q15={"mode": mode} if mode == "mfcc" else {})
    numba_fe, c_fe = FrontEnd(params, "numba"), FrontEnd(params, "c")
    x = _patches(params)
    fn, sn = numba_fe.patches(x)
    fc, sc = c_fe.patches(x)
    assert np.array_equal(fc, fn) and fc.dtype == np.int8
    assert np.isnan(sc).all() and np.isnan(sn).all()
    _same_stages(numba_fe, c_fe, x[[0, 4]])


def test_unknown_front_end_backend_is_one_line():
    with pytest.raises(Exception, match="unknown front-end backend 'cuda'"):
        FrontEnd(BASE, "cuda")


@needs_c
def test_device_records_are_the_same_on_both_backends():
    files = sorted(str(p) for p in CLIPS.glob("*.wav"))
    numba_dev = Device(BUNDLED.replace("model", backend="numba"))
    c_dev = Device(BUNDLED.replace("model", backend="c"))
    assert c_dev.frontend.backend == "c" and c_dev.session.metadata["backend"] == "c"
    def records(dev):
        return [(r["file"], r["window"], r["index"], r["label"], r["gated"], r["output"].tobytes(),
                 np.asarray(r["probabilities"]).tobytes(), np.float32(r["silence_sum"]).tobytes())
                for r in dev.replay(files)]
    a, b = records(numba_dev), records(c_dev)
    assert len(a) >= len(files) and a == b


def test_a_device_built_in_python_takes_auto_as_numba():
    assert BUNDLED.model.backend == "auto"
    dev = Device(BUNDLED)
    assert dev.config.model.backend == "numba" and dev.settings["model"]["backend"] == "numba"


@pytest.mark.parametrize("n, fixed, expected", [
    (1, True, "c"), (backends.AUTO_C_MAX_ITEMS, True, "c"), (backends.AUTO_C_MAX_ITEMS + 1, True, "numba"),
    (None, True, "numba"), (1, False, "numba")])
def test_auto_picks_the_c_twins_for_short_fixed_point_jobs(n, fixed, expected):
    if not C_BUILT:
        expected = "numba"
    assert backends.choose_backend("auto", n, fixed, "st-f16") == expected
    assert backends.choose_backend("numba", 1) == "numba" and backends.choose_backend("c", 10 ** 6) == "c"


def test_auto_without_the_c_twins_is_numba(monkeypatch):
    monkeypatch.setattr(ctwin, "available", lambda: False)
    assert backends.choose_backend("auto", 1, True, "st-f16") == "numba"
    monkeypatch.undo()
    monkeypatch.setattr(ctwin_q15, "available", lambda: False)
    assert backends.choose_backend("auto", 1, True, "cmsis-q15") == "numba"


def _env():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    from emu import _install
    if _install.state and _install.state[0]:
        env["NUMBA_CACHE_DIR"] = _install.state[0]
    return env


def _python_child(code):
    """The lines `python -c code` prints, in a fresh interpreter (Numba not imported yet)."""
    r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=600,
                       cwd=str(REPO))
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip().splitlines()


def _cli_child(argv):
    """Run emu.cli.main(argv) in a fresh interpreter: (exit code, Numba imported?, stdout lines)."""
    lines = _python_child("import sys; from emu.cli import main; rc = main(%r); "
                          "print('NUMBA', rc, 'numba' in sys.modules)" % (argv,))
    _, rc, loaded = lines[-1].split()
    return int(rc), loaded == "True", lines[:-1]


@needs_c
def test_a_short_replay_runs_on_the_c_twins_without_importing_numba(tmp_path):
    clip = str(CLIPS / "yes.wav")
    rc, loaded, lines = _cli_child(["replay", clip])
    assert rc == 0 and not loaded, "a one-clip replay must not import Numba"
    summary = [k for k, line in enumerate(lines) if "windows from" in line]
    assert len(summary) == 1 and ", c kernels" in lines[summary[0]]
    rc, loaded, numba_lines = _cli_child(["replay", clip, "--backend", "numba"])
    assert rc == 0 and loaded and ", numba kernels" in numba_lines[summary[0]]
    assert lines[:summary[0]] == numba_lines[:summary[0]] and len(lines) == len(numba_lines)   # the same results


@needs_c
def test_a_short_run_uses_the_c_twins_and_a_long_one_numba(tmp_path):
    model = str(REPO / "emu" / "data" / "kws" / "model_qdq.onnx")
    shape = (1, 40, 49)
    rng = np.random.default_rng(3)
    for n in (1, backends.AUTO_C_MAX_ITEMS + 1):
        x = rng.integers(-128, 128, (n,) + shape).astype(np.int8)
        x[0] = -128
        np.save(tmp_path / "x.npy", x)
        outs = {}
        for backend in ("auto", "numba"):
            y = tmp_path / f"y_{backend}.npy"
            rc, loaded, _ = _cli_child(["run", model, "--input", str(tmp_path / "x.npy"), "--output", str(y),
                                        "--backend", backend])
            assert rc == 0
            outs[backend] = np.load(y)
            if backend == "auto":
                assert loaded == (n > backends.AUTO_C_MAX_ITEMS)
        assert np.array_equal(outs["auto"], outs["numba"])


def test_numba_is_loaded_on_the_first_kernel_use_and_the_globals_rebound():
    code = ("import sys; import emu.fixedpoint as fx, emu.kernels.softmax as sm; "
            "before = 'numba' in sys.modules; "
            "r = fx.srdhm(2**30, 2**30); "
            "from numba.core.dispatcher import Dispatcher; "
            "print(before, int(r), isinstance(fx.srdhm, Dispatcher), isinstance(sm.count_leading_zeros32, Dispatcher))")
    assert _python_child(code)[-1].split() == ["False", str(2 ** 29), "True", "True"]


@pytest.mark.parametrize("extra", [["--rounding", "single-floor"], ["--rounding", "single-half-away/m16"],
                                   ["--profile", "onnxruntime"]])
def test_auto_runs_numba_for_what_the_c_twins_do_not_implement(tmp_path, extra):
    """A requantizer with another tie or derivation (what `n6emu fit` names) and the float onnxruntime profile exist
    in the Numba kernels only: a one-input run on "auto" takes Numba and gives what --backend numba gives."""
    import io

    from emu.cli import main
    model = str(REPO / "emu" / "data" / "kws" / "model_qdq.onnx")
    x = np.random.default_rng(5).integers(-128, 128, (2, 1, 40, 49)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    outs = {}
    for backend in ("auto", "numba"):
        out, err = io.StringIO(), io.StringIO()
        y = tmp_path / f"y_{backend}.npy"
        rc = main(["run", model, "--input", str(tmp_path / "x.npy"), "--output", str(y), "--backend", backend]
                  + extra, out=out, err=err)
        assert rc == 0, err.getvalue()
        assert "backend numba)" in out.getvalue()
        outs[backend] = np.load(y)
    assert np.array_equal(outs["auto"], outs["numba"])


def test_user_numba_code_can_call_kernels_imported_before_numba():
    """A kernel imported from n6emu before Numba is loaded stays a placeholder in the user's namespace (only emu.*
    globals are rebound); the user's own @numba.njit code calling it (a dispatcher and an intrinsic) still compiles."""
    code = ("import sys; from emu.fixedpoint import srdhm, count_leading_zeros32, _ctlz32; "
            "before = 'numba' in sys.modules; import numba, numpy as np\n"
            "@numba.njit\n"
            "def f(a, b, x):\n"
            "    return srdhm(a, b) + count_leading_zeros32(x) + _ctlz32(np.int64(x))\n"
            "print(before, f(np.int32(2**30), np.int32(2**30), np.int32(1)))")
    assert _python_child(code)[-1].split() == ["False", str(2 ** 29 + 31 + 31)]
