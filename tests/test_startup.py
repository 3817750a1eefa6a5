"""Start-up: a command imports only what it needs (no `onnx` to run a .tflite model, none to run an ONNX model whose
import is cached), and the imported-model cache (emu.models: per-user folder next to the Numba cache, keyed by the
file's SHA-256 and the emulator version) falls back to parsing when it cannot be used; the ST front-end tables are cached the same way (emu.diskcache)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import emu
from emu import _install, models

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "emu" / "data" / "kws" / "model_qdq.onnx"


def _env(cache_dir):
    """A child environment whose model cache is `cache_dir` while Numba keeps this process's (warm) kernel cache."""
    env = dict(os.environ, N6EMU_CACHE_DIR=str(cache_dir), PYTHONPATH=str(REPO))
    folder = _install.state[0] if _install.state else None
    if folder:
        env["NUMBA_CACHE_DIR"] = folder
    return env


def _child(code, env):
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600,
                       cwd=str(REPO))
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip().splitlines()[-1]


def test_run_of_a_tflite_model_does_not_import_onnx(mlperf_model, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 49, 10, 1), np.int8))
    code = ("import sys; from emu.cli import main; "
            f"rc = main(['run', {str(mlperf_model)!r}, '--input', {str(tmp_path / 'x.npy')!r}, '--output', "
            f"{str(tmp_path / 'y.npy')!r}]); print(rc, 'onnx' in sys.modules)")
    assert _child(code, _env(tmp_path / "cache")) == "0 False"
    assert np.load(tmp_path / "y.npy").shape == (1, 12)


def test_bundled_onnx_import_is_cached_and_needs_no_onnx_the_second_time(tmp_path):
    code = ("import sys, numpy as np; from emu.models import import_model, ModelSession; "
            f"m = import_model({str(BUNDLED)!r}); "
            "x = np.arange(-128, 1832).astype(np.int8).reshape(1, 1, 40, 49); "
            "q, f = ModelSession(m, 'onnxruntime').run(x); "
            "print('onnx' in sys.modules, m.graph.source.endswith('model_qdq.onnx'), q.tobytes().hex())")
    env = _env(tmp_path)
    first = _child(code, env).split()
    entries = list((tmp_path / "models").glob("*.pickle"))
    assert len(entries) == 1 and entries[0].name.endswith(
        f"-{emu.__version__}-{models.MODEL_CACHE_FORMAT}-{models._importer_digest()}.pickle")
    second = _child(code, env).split()
    assert first[0] == "True" and second[0] == "False", "the second import must come from the cache"
    assert first[1:] == second[1:] == ["True", first[2]]


def test_cache_folder_follows_the_kernel_cache_settings(tmp_path):
    assert models.model_cache_dir({"N6EMU_CACHE_DIR": str(tmp_path)}) == str(tmp_path / "models")
    assert models.model_cache_dir({"XDG_CACHE_HOME": str(tmp_path), "NUMBA_CACHE_DIR": "/elsewhere"}) == \
        str(tmp_path / "n6emu" / "models")


def test_unwritable_cache_falls_back_to_parsing(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("N6EMU_CACHE_DIR", str(blocker / "sub"))
    m = models.import_model(BUNDLED)
    assert m.onnx is not None and not (blocker / "sub").exists()


def test_broken_or_foreign_entries_are_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("N6EMU_CACHE_DIR", str(tmp_path))
    fresh = models.import_model(BUNDLED)
    entry = Path(models._cache_file(str(BUNDLED)))
    for junk in (b"\x80\x05truncated", b"not a pickle at all"):
        entry.write_bytes(junk)
        again = models.import_model(BUNDLED)
        assert [n.op for n in again.graph.nodes] == [n.op for n in fresh.graph.nodes]
        assert models._cached_onnx(str(BUNDLED)) is not None      # rewritten by the re-parse


def test_entry_is_keyed_by_content_and_version(tmp_path, monkeypatch):
    monkeypatch.setenv("N6EMU_CACHE_DIR", str(tmp_path))
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(BUNDLED.read_bytes())
    before = models._cache_file(str(copy))
    assert before == models._cache_file(str(BUNDLED))
    monkeypatch.setattr(emu, "__version__", "0.0.0-other")
    after = models._cache_file(str(copy))
    assert after != before and "-0.0.0-other-" in after
    copy.write_bytes(BUNDLED.read_bytes() + b" ")
    assert models._cache_file(str(copy)) != after
    last = models._cache_file(str(copy))
    monkeypatch.setattr(models, "_importer_digest", lambda: "0123456789abcdef")    # an edited importer
    assert models._cache_file(str(copy)) != last and models._cache_file(str(copy)).endswith("-0123456789abcdef.pickle")


@pytest.mark.parametrize("name", ["copy.onnx"])
def test_cached_model_names_the_path_it_was_imported_from(tmp_path, monkeypatch, name):
    monkeypatch.setenv("N6EMU_CACHE_DIR", str(tmp_path))
    models.import_model(BUNDLED)
    copy = tmp_path / name
    copy.write_bytes(BUNDLED.read_bytes())
    assert models.import_model(copy).graph.source == f"onnx:{copy}"


# ---- front-end tables ------------------------------------------------------------------------------------------

def _same_state(a, b):
    """Two prepared states hold the same fields: arrays equal bit for bit, everything else equal."""
    import dataclasses
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), f.name
        elif dataclasses.is_dataclass(x) and not isinstance(x, type):
            _same_state(x, y)
        elif isinstance(x, (tuple, list)) and any(isinstance(v, np.ndarray) for v in x):
            assert all(np.array_equal(v, w) for v, w in zip(x, y)), f.name
        else:
            assert x == y or (x != x and y != y), f.name       # NaN (no scale) equals NaN


def test_front_end_tables_are_cached_by_parameters_and_sources(tmp_path, monkeypatch):
    import dataclasses

    from emu import diskcache
    from emu.frontend import registry, st
    from emu.frontend.params import FrontendParams
    monkeypatch.setenv("N6EMU_CACHE_DIR", str(tmp_path))
    params = FrontendParams(quant_scale=0.11069949716329575, quant_zero_point=78)
    calls = []

    def counting(p, *a, **k):
        calls.append(p)
        return st.prepare(p, *a, **k)
    spec = dataclasses.replace(registry.FRONTENDS["st-f16"], prepare=counting)
    monkeypatch.setitem(registry.FRONTENDS, "st-f16", spec)
    entries = lambda: len(list((tmp_path / "frontends").glob("*.pickle")))    # noqa: E731
    first = registry.FrontEnd(params).state
    again = registry.FrontEnd(params).state
    assert len(calls) == 1 and entries() == 1
    _same_state(first, again)
    _same_state(again, st.prepare(params))                                    # the cached tables are prepare's
    registry.FrontEnd(params.replace(n_mels=32))                              # other parameters: another entry
    assert len(calls) == 2 and entries() == 2
    monkeypatch.setitem(diskcache._DIGESTS, ("frontend", "cheader.py", "fixedpoint.py", "f32math.py"), "0" * 16)
    registry.FrontEnd(params)                                                 # an edited front end: computed again
    assert len(calls) == 3 and entries() == 3
    table = params.replace(mel_source=str(tmp_path / "mel.npy"))              # a file's tables: never cached
    monkeypatch.setitem(registry.FRONTENDS, "st-f16", dataclasses.replace(spec, prepare=lambda p: calls.append(p)))
    registry._prepared(registry.FRONTENDS["st-f16"], table)
    registry._prepared(registry.FRONTENDS["st-f16"], table)
    assert len(calls) == 5 and entries() == 3
