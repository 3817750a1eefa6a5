"""Shared pytest fixtures: the ../shared folder (skip cleanly when absent) and the --run-slow flag."""
import os
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


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent")
    return SHARED


@pytest.fixture(scope="session")
def conformance_dir(shared_dir):
    d = shared_dir / "conformance" / "cmsis-nn"
    if not d.is_dir():
        pytest.skip(f"{d} is absent")
    return d


@pytest.fixture(scope="session")
def mlperf_model(shared_dir):
    p = shared_dir / "models" / "kws_ref_model.tflite"
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return p


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
