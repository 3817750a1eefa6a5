"""CMSIS-DSP's C sources, from the cmsisdsp sdist on PyPI (downloaded once per session, nothing copied into
the project): `source_dir(tmp)` returns the unpacked folder or skips naming the missing oracle.
N6EMU_CMSISDSP_SRC names an already unpacked sdist (offline runs)."""
import glob
import os
import subprocess
import sys
import tarfile

import pytest

_cached = None
HOW_TO = ("the download needs network access to PyPI and the test extras (pip install -e \".[test]\"); or set "
          "N6EMU_CMSISDSP_SRC to an unpacked cmsisdsp sdist (pip download --no-binary :all: --no-deps cmsisdsp)")


def source_dir(tmp):
    """The unpacked cmsisdsp sdist folder (Include/, PrivateInclude/, Source/)."""
    global _cached
    if _cached is not None:
        return _cached
    given = os.environ.get("N6EMU_CMSISDSP_SRC")
    if given:
        _cached = given
        return given
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                        "--no-build-isolation", "-q", "-d", str(tmp), "cmsisdsp"],
                       capture_output=True, text=True, timeout=300)
    archives = glob.glob(os.path.join(str(tmp), "cmsisdsp-*.tar.gz"))
    if not archives:
        pytest.skip(f"oracle unavailable: cmsisdsp sources (pip download failed: "
                    f"{r.stderr.strip().splitlines()[-1:]}); {HOW_TO}")
    with tarfile.open(archives[0]) as tf:
        tf.extractall(tmp, filter="data")
    _cached = [d for d in glob.glob(os.path.join(str(tmp), "cmsisdsp-*")) if os.path.isdir(d)][0]
    return _cached
