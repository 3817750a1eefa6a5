"""Shared pytest fixtures: the ../shared folder (skip cleanly when absent, saying how to provide it), the C kernel
extension and the front-end C twins (skip only when no C compiler can build them), and the --run-slow flag."""
import importlib
import os
import shlex
import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("N6EMU_SHARED", REPO.parent / "shared"))


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="run the full (slow) oracle sweeps; CI runs a representative subset")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long oracle sweeps; run with --run-slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow sweep: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def run_slow(request):
    """True when --run-slow was given: sweeps scale their case counts up."""
    return request.config.getoption("--run-slow")


_SHARED_HINT = "put the project's shared data folder next to the repository (../shared) or set N6EMU_SHARED to it"


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"oracle unavailable: {SHARED} (shared data: CMSIS-NN vectors, MLPerf Tiny model) is absent; "
                    f"{_SHARED_HINT}")
    return SHARED


@pytest.fixture(scope="session")
def conformance_dir(shared_dir):
    d = shared_dir / "conformance" / "cmsis-nn"
    if not d.is_dir():
        pytest.skip(f"oracle unavailable: {d} (CMSIS-NN conformance vectors) is absent; {_SHARED_HINT}")
    return d


@pytest.fixture(scope="session")
def mlperf_model(shared_dir):
    p = shared_dir / "models" / "kws_ref_model.tflite"
    if not p.is_file():
        pytest.skip(f"oracle unavailable: {p} (MLPerf Tiny KWS model) is absent; {_SHARED_HINT}")
    return p


def _c_compiler():
    """The C compiler cffi would build with ($CC, else Python's configured CC, else cc/gcc/clang), or None."""
    configured = os.environ.get("CC") or sysconfig.get_config_var("CC") or ""
    for cmd in shlex.split(configured)[:1] + ["cc", "gcc", "clang"]:
        found = shutil.which(cmd)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def c_kernels():
    """emu.kernels.ctwin with its extension emu._c_kernels loaded. Skips only when the extension is not built and
    no C compiler exists to build it (a build-environment condition); fails when it does not load (a broken build)
    or was not built although a compiler is there (the project's install step was skipped or failed)."""
    from emu.kernels import ctwin
    if ctwin.available():
        return ctwin
    try:
        import emu._c_kernels  # noqa: F401  (ctwin could not: show why)
    except ModuleNotFoundError as e:
        if e.name != "emu._c_kernels":
            pytest.fail(f"emu._c_kernels does not load: {e}; rebuild it with `pip install -e .`", pytrace=False)
    except ImportError as e:
        pytest.fail(f"emu._c_kernels is built but does not load ({e}); rebuild it with `pip install -e .`",
                    pytrace=False)
    else:
        pytest.fail("emu._c_kernels imports but emu.kernels.ctwin did not load it; check ctwin's import",
                    pytrace=False)
    compiler = _c_compiler()
    if compiler is None:
        pytest.skip("emu._c_kernels is not built and no C compiler was found (CC, cc, gcc, clang); install gcc, "
                    "then `pip install -e .` (or `python csrc/build_kernels.py`)")
    pytest.fail(f"emu._c_kernels is not built although a C compiler ({compiler}) is available: run `pip install -e .` "
                "(or `python csrc/build_kernels.py`) from the repository root", pytrace=False)


# The front-end C twins, by fixture name: (twin module, the cffi extension it loads, that extension's builder).
# One extension, emu._c_frontend_st, holds the ST column and both Helium kernel sets.
FRONTEND_TWINS = {
    "c_frontend_st": ("emu.frontend.ctwin_st", "emu._c_frontend_st", "csrc/build_frontend_st.py"),
    "c_frontend_q15": ("emu.frontend.ctwin_q15", "emu._c_frontend_q15", "csrc/build_frontend_q15.py"),
    "c_helium_f16": ("emu.frontend.ctwin_helium", "emu._c_frontend_st", "csrc/build_frontend_st.py"),
    "c_helium_f32": ("emu.frontend.ctwin_helium_f32", "emu._c_frontend_st", "csrc/build_frontend_st.py"),
}


def frontend_twin(name):
    """(twin module, None) when the front-end C twin `name` (a key of FRONTEND_TWINS) has its extension loaded.
    Otherwise, the rule of `c_kernels`: (None, skip reason) only when the extension is not built and no C compiler
    exists to build it (a build-environment condition); the calling test fails here when the extension does not
    load (a broken build) or was not built although a compiler is there (the project's install step was skipped
    or failed)."""
    module, extension, builder = FRONTEND_TWINS[name]
    twin = importlib.import_module(module)
    if twin.available():
        return twin, None
    build = f"`pip install -e .` (or `python {builder}`) from the repository root"
    try:
        importlib.import_module(extension)  # (the twin could not: show why)
    except ModuleNotFoundError as e:
        if e.name != extension:
            pytest.fail(f"{extension} does not load: {e}; rebuild it with {build}", pytrace=False)
    except ImportError as e:
        pytest.fail(f"{extension} is built but does not load ({e}); rebuild it with {build}", pytrace=False)
    else:
        pytest.fail(f"{extension} imports but {module} did not load it; check {module}'s import", pytrace=False)
    compiler = _c_compiler()
    if compiler is None:
        return None, (f"{extension} ({module}) is not built and no C compiler was found (CC, cc, gcc, clang); "
                      f"install gcc (apt-get install gcc), then run {build}")
    pytest.fail(f"{extension} ({module}) is not built although a C compiler ({compiler}) is available: run {build}",
                pytrace=False)


def _frontend_twin_or_skip(name):
    twin, reason = frontend_twin(name)
    if twin is None:
        pytest.skip(reason)
    return twin


@pytest.fixture(scope="session")
def c_frontend_st():
    """emu.frontend.ctwin_st with emu._c_frontend_st loaded (skip/fail rule: see frontend_twin)."""
    return _frontend_twin_or_skip("c_frontend_st")


@pytest.fixture(scope="session")
def c_frontend_q15():
    """emu.frontend.ctwin_q15 with emu._c_frontend_q15 loaded (skip/fail rule: see frontend_twin)."""
    return _frontend_twin_or_skip("c_frontend_q15")


@pytest.fixture(scope="session")
def c_helium_f16():
    """emu.frontend.ctwin_helium with emu._c_frontend_st loaded (skip/fail rule: see frontend_twin)."""
    return _frontend_twin_or_skip("c_helium_f16")


@pytest.fixture(scope="session")
def c_helium_f32():
    """emu.frontend.ctwin_helium_f32 with emu._c_frontend_st loaded (skip/fail rule: see frontend_twin)."""
    return _frontend_twin_or_skip("c_helium_f32")


class OptionalTwins:
    """For a test whose checks of the project's own Python/Numba code need no C twin, and which also compares a
    C twin: `get(name)` returns the twin (a key of FRONTEND_TWINS), or None when it is not built and no C compiler
    exists (any other missing twin fails the test at once). Run the C comparisons only when it is not None, and
    end the test with `skip_unchecked()`: when they did not run, the test skips there (its other checks passed),
    naming what to install, instead of passing without them."""

    def __init__(self):
        self._missing = []

    def get(self, name):
        twin, reason = frontend_twin(name)
        if twin is None and reason not in self._missing:
            self._missing.append(reason)
        return twin

    def skip_unchecked(self):
        if self._missing:
            pytest.skip("the other checks passed; the C twin comparison did not run: "
                        + "; ".join(self._missing))


@pytest.fixture
def optional_twins():
    """An OptionalTwins for this test."""
    return OptionalTwins()


@pytest.fixture(autouse=True)
def _ieee_fp_environment(request):
    """Fail the test that leaves flush-to-zero / denormals-are-zero set (e.g. by loading a -ffast-math shared
    object, whose crtfastmath constructor changes MXCSR for the whole process): every later float16/float32
    emulation result would silently change."""
    yield
    tiny = np.array([1.4e-45], np.float32)
    if tiny[0] == 0 or (tiny * np.float32(1.0))[0] == 0:
        pytest.fail(f"{request.node.nodeid} left FTZ/DAZ set in the FP environment; load fast-math code in a "
                    "subprocess or link it without -ffast-math", pytrace=False)
