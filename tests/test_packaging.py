"""Packaging and install (issue 15): where the Numba cache goes (never into the package; a one-line notice and no
caching when nothing is writable), the C twins' messages for source and installed copies, the sdist's manifest,
an install without a C compiler, one version source; and, behind --run-slow, tests/packaging/fresh_install.sh:
README commands 1 and 2 in a fresh venv, uninstall + install, and the wheel in a read-only venv and HOME."""
import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

import emu
from emu import _install

REPO = Path(__file__).resolve().parent.parent
NOTICE = "n6emu: cannot write the kernel cache folder"
CACHE_VARS = ("NUMBA_CACHE_DIR", "N6EMU_CACHE_DIR", "XDG_CACHE_HOME")


# ---------------------------------------------------------------------------------------------------------------
# cache folder selection (in process: the rule alone)
# ---------------------------------------------------------------------------------------------------------------

def test_cache_dir_default_is_per_user(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _install.default_cache_dir({}) == (str(tmp_path / ".cache" / "n6emu" / "numba"), None)
    # XDG_CACHE_HOME when absolute; a relative value is ignored (the XDG base directory rule)
    assert _install.default_cache_dir({"XDG_CACHE_HOME": "/x/cache"}) == ("/x/cache/n6emu/numba", None)
    assert _install.default_cache_dir({"XDG_CACHE_HOME": "rel"})[0] == str(tmp_path / ".cache" / "n6emu" / "numba")


def test_cache_dir_overrides():
    env = {"XDG_CACHE_HOME": "/x", "N6EMU_CACHE_DIR": "/n6"}
    assert _install.default_cache_dir(env) == ("/n6/numba", "N6EMU_CACHE_DIR")
    env["NUMBA_CACHE_DIR"] = "/nb"   # Numba's own variable, when the user set it, is respected as given
    assert _install.default_cache_dir(env) == ("/nb", "NUMBA_CACHE_DIR")


def test_this_process_caches_outside_the_package():
    folder, reason = _install.state
    if folder is None:
        pytest.skip(f"this test run has no writable kernel cache ({reason})")
    assert os.environ["NUMBA_CACHE_DIR"] == folder
    assert not _install._inside_package(folder)


# ---------------------------------------------------------------------------------------------------------------
# cache behaviour (subprocesses on a copy of the package, so that what they write can be checked)
# ---------------------------------------------------------------------------------------------------------------

PROBE = ("import emu, emu._install as i, emu.fixedpoint as fx; "
         "assert int(fx.wrap_int32(2**31)) == -2**31; print(emu.__file__); print(i.state[0])")


def _package_copy(where):
    """A copy of emu/ (Python sources only) under `where`: a package whose folder the test controls."""
    shutil.copytree(REPO / "emu", Path(where) / "emu",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "data", "training", "*.nbi", "*.nbc"))
    return Path(where) / "emu"


def _env(**kw):
    env = {k: v for k, v in os.environ.items() if k not in CACHE_VARS and k != "PYTHONPATH"}
    env.update({k: str(v) for k, v in kw.items()})
    return env


def _run_probe(pkg, prefix=(), **env):
    r = subprocess.run([*prefix, sys.executable, "-c", PROBE], cwd=pkg.parent, env=_env(PYTHONPATH=pkg.parent, **env),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stdout.splitlines()[0] == str(pkg / "__init__.py"), "the probe did not import the package copy"
    return r


def _numba_files(folder):
    return sorted(p for p in Path(folder).rglob("*") if p.suffix in (".nbi", ".nbc"))


def test_cache_goes_to_the_chosen_folder_and_never_into_the_package(tmp_path):
    """N6EMU_CACHE_DIR/numba/<kernel digest> holds the cache; two copies of the package (an editable and a regular install) get
    separate index folders under it (Numba names them by a hash of the source folder); the package folders hold
    no cache file."""
    cache = tmp_path / "cache"
    pkgs = [_package_copy(tmp_path / "site_a"), _package_copy(tmp_path / "site_b")]
    for pkg in pkgs:
        r = _run_probe(pkg, N6EMU_CACHE_DIR=cache, HOME=tmp_path / "home")
        folder = Path(r.stdout.splitlines()[1])   # N6EMU_CACHE_DIR/numba/<SHA-256 of the kernel sources>
        assert folder.parent == cache / "numba" and len(folder.name) == 16
        assert r.stderr == ""
        assert _numba_files(pkg) == [], "Numba cache written inside the package"
    index = [p for p in _numba_files(cache / "numba") if p.name.startswith("fixedpoint.wrap_int32")
             and p.suffix == ".nbi"]
    assert len({p.parent for p in index}) == 2, f"the two package copies share one index folder: {index}"
    assert not (tmp_path / "home").exists(), "the default cache folder was used despite N6EMU_CACHE_DIR"


def test_explicit_numba_cache_dir_is_respected(tmp_path):
    pkg = _package_copy(tmp_path / "site")
    r = _run_probe(pkg, NUMBA_CACHE_DIR=tmp_path / "nb", N6EMU_CACHE_DIR=tmp_path / "n6")
    assert r.stdout.splitlines()[1] == str(tmp_path / "nb")
    assert _numba_files(tmp_path / "nb") and not (tmp_path / "n6").exists()
    assert _numba_files(pkg) == []


def test_unwritable_cache_gives_one_notice_and_no_caching(tmp_path):
    """A cache folder that cannot be created (under a regular file: unwritable even for root): exit 0, one notice
    line on stderr naming the folder and the variable to set, no traceback, nothing cached anywhere."""
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    pkg = _package_copy(tmp_path / "site")
    r = _run_probe(pkg, HOME=blocker, XDG_CACHE_HOME=blocker / "cache")
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(NOTICE), r.stderr
    assert "N6EMU_CACHE_DIR" in lines[0] and str(blocker / "cache" / "n6emu" / "numba") in lines[0]
    assert r.stdout.splitlines()[1] == "None"
    assert _numba_files(pkg) == []
    # the same with an explicit (unwritable) NUMBA_CACHE_DIR: its name is the fix
    r = _run_probe(pkg, NUMBA_CACHE_DIR=blocker / "nb")
    assert len(r.stderr.splitlines()) == 1 and "set NUMBA_CACHE_DIR" in r.stderr, r.stderr
    assert _numba_files(pkg) == []


def _read_only_prefix():
    """The command prefix under which file modes apply (root ignores them unless CAP_DAC_OVERRIDE is dropped)."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be made for this process")
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--")


def test_read_only_package_and_home(tmp_path):
    """The package folder and HOME read-only (chmod a-w), no cache variable: the import works, one notice line,
    no traceback, no cache file."""
    prefix = _read_only_prefix()
    pkg = _package_copy(tmp_path / "site")
    home = tmp_path / "home"
    home.mkdir()
    for p in (home, *pkg.rglob("*"), pkg, pkg.parent):
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        r = _run_probe(pkg, prefix, HOME=home)
    finally:
        for p in (pkg.parent, pkg, *pkg.rglob("*"), home):
            p.chmod(p.stat().st_mode | 0o200)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(NOTICE), r.stderr
    assert _numba_files(pkg) == [] and not any(home.iterdir())


# ---------------------------------------------------------------------------------------------------------------
# the C twins: optional, and one line naming how to get them for this kind of install
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("checkout", [True, False])
def test_c_twin_message(monkeypatch, checkout):
    monkeypatch.setattr(_install, "is_source_checkout", lambda: checkout)
    absent = _install.c_twin_missing("emu._c_kernels", ModuleNotFoundError("no", name="emu._c_kernels"))
    broken = _install.c_twin_missing("emu._c_kernels", ImportError("undefined symbol: x"))
    for msg in (absent, broken):
        assert "\n" not in msg and "emu._c_kernels" in msg and "'numba'" in msg
        assert ("pip install -e ." in msg) == checkout
        assert ("--force-reinstall" in msg) == (not checkout)
    assert "apt-get install gcc" in absent and "not built" in absent
    assert "does not load (undefined symbol: x)" in broken and "rebuild" in broken


def test_backend_c_without_the_twin_is_one_line(monkeypatch):
    from emu.errors import N6Error
    from emu.kernels import backends, ctwin
    monkeypatch.setattr(ctwin, "_lib", None)
    monkeypatch.setattr(ctwin, "_IMPORT_ERROR", ModuleNotFoundError("no", name="emu._c_kernels"))
    with pytest.raises(N6Error) as e:
        backends.get_backend("c")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("backend 'c' is unavailable") and "apt-get install gcc" in msg


# ---------------------------------------------------------------------------------------------------------------
# metadata, manifest, builds
# ---------------------------------------------------------------------------------------------------------------

def test_one_version_source_and_metadata():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = meta["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "emu.__version__"}
    tree = ast.parse((REPO / "emu" / "__init__.py").read_text())
    literal = [n.value.value for n in tree.body if isinstance(n, ast.Assign)
               and any(getattr(t, "id", None) == "__version__" for t in n.targets)]
    assert literal == [emu.__version__], "__version__ must be a plain literal (setuptools reads it statically)"
    assert project["license"] == "Apache-2.0" and project["classifiers"] and project["keywords"]
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert not any(d.startswith("scipy") for d in project["dependencies"])
    assert any(d.startswith("scipy") for d in project["optional-dependencies"]["test"])


def test_emu_never_imports_scipy():
    found = []
    for path in (REPO / "emu").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "scipy"]
    assert found == []


def _clean_copy(dest):
    """What git tracks plus new files it does not ignore, copied to `dest` (no build products of the checkout)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the clean source copy needs git ls-files")
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _build(src, out, *args, env=None):
    if importlib.util.find_spec("build") is None:
        pytest.skip("the `build` package is not installed (pip install build)")
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "-o", str(out), *args, str(src)],
                       capture_output=True, text=True, env=env, timeout=600)
    if r.returncode and "Missing dependencies" in r.stdout + r.stderr:
        pytest.skip("the build requirements (setuptools>=77, cffi) are not installed here: " + r.stdout[-300:])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_sdist_carries_the_c_sources(tmp_path):
    src = _clean_copy(tmp_path / "src")
    _build(src, tmp_path / "dist", "--sdist")
    (sdist,) = (tmp_path / "dist").glob("n6emu-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
        pkg_info = t.extractfile(f"n6emu-{emu.__version__}/PKG-INFO").read().decode()
    csrc = {p.relative_to(REPO).as_posix() for p in (REPO / "csrc").glob("*") if p.suffix in (".c", ".h")}
    csrc |= {p.relative_to(REPO).as_posix() for p in (REPO / "csrc").glob("build_*.py")}
    missing = sorted((csrc | {"setup.py", "MANIFEST.in", "LICENSE", "csrc/cffi_common.py", "pyproject.toml"}) - names)
    assert missing == [], f"the sdist lacks {missing}"
    assert not [n for n in names if n.endswith((".so", ".o", ".nbi", ".nbc", ".pyc"))]
    assert f"\nVersion: {emu.__version__}\n" in pkg_info and "License-Expression: Apache-2.0" in pkg_info


def test_wheel_builds_without_a_c_compiler(tmp_path):
    """No C compiler: the build succeeds with a notice per C twin, and the wheel simply has no emu/_c_*.so."""
    src = _clean_copy(tmp_path / "src")
    env = dict(os.environ, CC="n6emu-no-such-cc")
    r = _build(src, tmp_path / "dist", "--wheel", env=env)
    assert "n6emu: building the optional C twin emu._c_kernels failed" in r.stdout + r.stderr
    (wheel,) = (tmp_path / "dist").glob("n6emu-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "emu/_install.py" in names and not [n for n in names if n.endswith(".so")]


# ---------------------------------------------------------------------------------------------------------------
# the whole thing, in fresh venvs (minutes)
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_fresh_install_script(tmp_path):
    """tests/packaging/fresh_install.sh: README commands 1 and 2 in a fresh venv, uninstall + install, the wheel
    with the C twins in a read-only venv and HOME, the sdist without a C compiler."""
    if importlib.util.find_spec("build") is None:
        pytest.skip("the `build` package is not installed (pip install build)")
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler (apt-get install gcc): the wheel with the C twins cannot be built")
    env = {k: v for k, v in os.environ.items() if k not in CACHE_VARS and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHON"] = sys.executable
    work = tmp_path / "work"
    r = subprocess.run(["bash", str(REPO / "tests" / "packaging" / "fresh_install.sh"), str(work)],
                       env=env, capture_output=True, text=True, timeout=3600)
    print(r.stdout[-6000:])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    shutil.rmtree(work, ignore_errors=True)   # two venvs, about 1 GB; kept (with their logs) when the test fails


def test_kernel_cache_is_keyed_by_the_kernel_sources(monkeypatch, tmp_path):
    """Numba checks only the defining file's timestamp; n6emu's cache folder is named by the SHA-256 of every kernel
    source, so an edit in a callee's file (f16.py under st.py) or another version never loads a stale kernel."""
    from emu import diskcache
    env = {"N6EMU_CACHE_DIR": str(tmp_path)}
    folder, source = _install.kernel_cache_dir(env)
    assert source == "N6EMU_CACHE_DIR" and folder == str(tmp_path / "numba" / _install.kernel_digest())
    monkeypatch.setitem(diskcache._DIGESTS, _install.KERNEL_SOURCES, "0" * 16)     # an edited kernel source
    assert _install.kernel_cache_dir(env)[0] == str(tmp_path / "numba" / ("0" * 16))
    assert _install.kernel_cache_dir(dict(env, NUMBA_CACHE_DIR="/nb")) == ("/nb", "NUMBA_CACHE_DIR")
    root = tmp_path / "numba"
    for k in range(6):                       # older digest folders are pruned, the newest kept; other names stay
        d = root / f"{k:016x}"
        d.mkdir(parents=True)
        os.utime(d, (1000 + k, 1000 + k))
    (root / "keep-me").mkdir()
    _install._prune_kernel_folders(str(root), "f" * 16)
    left = sorted(p.name for p in root.iterdir())
    assert left == [f"{k:016x}" for k in (4, 5)] + ["keep-me"]
