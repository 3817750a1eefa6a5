"""How this copy of n6emu is installed: where Numba caches the compiled kernels, and how to get the C twins.

Numba cache. The kernels are `@njit(cache=True)`; by default Numba would write its cache next to the sources,
inside the installed package (which then cannot be uninstalled cleanly, and crashes at import when read-only).
`configure_numba_cache()` runs from emu/__init__.py, before any kernel is decorated, and points Numba at a
per-user folder instead, chosen in this order:

1. `NUMBA_CACHE_DIR`, when set (Numba's own variable: respected as given);
2. `$N6EMU_CACHE_DIR/numba`, when N6EMU_CACHE_DIR is set;
3. `$XDG_CACHE_HOME/n6emu/numba`, else `~/.cache/n6emu/numba`.

In cases 2 and 3 the kernels go one level deeper, into a folder named by the SHA-256 of the kernel sources
(KERNEL_SOURCES: every module that defines an @njit function). Numba itself checks only the timestamp of the file
that defines a kernel, so a kernel whose callee changed in another file (st.py calling f16.py) would be loaded stale;
keyed by the sources, any edit or another version starts a fresh folder (the older ones are pruned, the newest
KEEP_KERNEL_FOLDERS kept). Under it Numba keeps one subfolder per source folder (its name ends in a hash of the
full source path), so an editable checkout and a regular install never share cache entries. When the chosen folder cannot
be written, the kernels are compiled in memory on every run (no caching) and one line on stderr says so and how
to fix it; nothing is ever written inside the package.

C twins. The cffi extensions emu._c_* are compiled at install time when a C compiler is present and are
optional; `c_twin_missing(module, error)` is the one-line message of everything that needs one and finds it
absent.
"""
import os
import sys
import tempfile

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
ENV_VAR = "N6EMU_CACHE_DIR"

#: (folder, reason) after configure_numba_cache(): the Numba cache folder in use, or None and why there is none.
state = None

KERNEL_SOURCES = ("fixedpoint.py", "kernels", "frontend")    # files and folders (*.py inside) defining @njit kernels
KEEP_KERNEL_FOLDERS = 3


def kernel_digest():
    """SHA-256 (16 hex digits) of the kernel sources (KERNEL_SOURCES)."""
    from emu.diskcache import source_digest
    return source_digest(*KERNEL_SOURCES)


def kernel_cache_dir(environ=os.environ):
    """(folder, variable) of the Numba cache: default_cache_dir's, one level deeper into the kernel sources' digest
    folder unless NUMBA_CACHE_DIR named it (see the module docstring)."""
    folder, source = default_cache_dir(environ)
    if source == "NUMBA_CACHE_DIR":          # Numba's own variable is respected as given
        return folder, source
    return os.path.join(folder, kernel_digest()), source


def _prune_kernel_folders(root, current):
    """Remove all but the KEEP_KERNEL_FOLDERS most recently used digest folders under `root` (never `current`)."""
    import shutil
    try:
        names = [n for n in os.listdir(root) if len(n) == 16 and all(c in "0123456789abcdef" for c in n)]
        old = sorted((n for n in names if n != current), key=lambda n: os.path.getmtime(os.path.join(root, n)),
                     reverse=True)[KEEP_KERNEL_FOLDERS - 1:]
        for n in old:
            shutil.rmtree(os.path.join(root, n), ignore_errors=True)
    except OSError:
        pass


def default_cache_dir(environ=os.environ):
    """The Numba cache folder n6emu asks for, from the environment (see the module docstring), and the name of
    the variable that set it (None for the per-user default)."""
    if environ.get("NUMBA_CACHE_DIR"):
        return os.path.abspath(os.path.expanduser(environ["NUMBA_CACHE_DIR"])), "NUMBA_CACHE_DIR"
    if environ.get(ENV_VAR):
        return os.path.join(os.path.abspath(os.path.expanduser(environ[ENV_VAR])), "numba"), ENV_VAR
    base = environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):   # the XDG spec: a relative value is ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "n6emu", "numba"), None


def writable_dir(path):
    """None when `path` is (or could be made) a folder that can be written, else the reason (an OSError text)."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return None


def _inside_package(path):
    path = os.path.realpath(path)
    return path == os.path.realpath(PACKAGE_DIR) or path.startswith(os.path.realpath(PACKAGE_DIR) + os.sep)


def configure_numba_cache(environ=os.environ, stderr=None):
    """Point Numba's cache at the per-user folder (sets NUMBA_CACHE_DIR in `environ`, and numba.config when
    Numba is already imported); when it cannot be written, turn caching off for n6emu's kernels and print one
    notice line on `stderr`. Returns (folder, None) or (None, reason). Idempotent."""
    global state
    if state is not None:
        return state
    folder, source = kernel_cache_dir(environ)
    if source != "NUMBA_CACHE_DIR" and not os.path.isdir(folder):
        _prune_kernel_folders(os.path.dirname(folder), os.path.basename(folder))
    reason = writable_dir(folder)
    if reason is None and _inside_package(folder):
        reason = "it is inside the installed package"
    if reason is None:
        environ["NUMBA_CACHE_DIR"] = folder
        numba_config = sys.modules.get("numba.core.config")
        if numba_config is not None:
            numba_config.CACHE_DIR = folder
        state = (folder, None)
        return state
    _disable_kernel_caching()
    how = (f"set {source} to a writable folder" if source else
           f"set {ENV_VAR} (or XDG_CACHE_HOME) to a writable folder")
    print(f"n6emu: cannot write the kernel cache folder {folder} ({reason}); kernels are compiled on every run "
          f"(a minute or more each time): {how}", file=stderr or sys.stderr)
    state = (None, reason)
    return state


def _disable_kernel_caching():
    """Make `cache=True` a no-op for functions defined in this package (Numba would otherwise write next to the
    sources, or fail with "no locator available"); other code's caching is left as it is."""
    from numba.core import dispatcher

    original = dispatcher.Dispatcher.enable_caching
    if getattr(original, "_n6emu", False):
        return

    def enable_caching(self):
        code = getattr(self.py_func, "__code__", None)
        if code is not None and _inside_package(code.co_filename):
            return   # n6emu's kernel: compiled in memory, not cached
        return original(self)

    enable_caching._n6emu = True
    dispatcher.Dispatcher.enable_caching = enable_caching


def is_source_checkout():
    """True when this package runs from a source tree (editable install or the repository itself): setup.py and
    the C sources sit next to it."""
    root = os.path.dirname(PACKAGE_DIR)
    return os.path.isfile(os.path.join(root, "setup.py")) and os.path.isdir(os.path.join(root, "csrc"))


def c_twin_missing(module, error=None, alternative="or use the default backend 'numba'"):
    """One line for an absent or unloadable C twin `module` (e.g. "emu._c_kernels"): why, how to get it for this
    kind of install (source checkout or installed copy), and `alternative`; `error` is the import's ImportError."""
    if is_source_checkout():
        build = f"run `python3 -m pip install -e .` in {os.path.dirname(PACKAGE_DIR)}"
    else:
        build = ("reinstall n6emu from its source folder or sdist (`python3 -m pip install --force-reinstall "
                 "--no-deps .` there)")
    if error is not None and not (isinstance(error, ModuleNotFoundError) and error.name == module):
        what, fix = f"the C twin {module} is built but does not load ({error})", f"rebuild it: {build}"
    else:
        what = f"the C twin {module} is not built (it is compiled at install time when a C compiler is present)"
        fix = f"install a C compiler (e.g. `apt-get install gcc`), then {build}"
    return f"{what}; {fix}" + (f"; {alternative}" if alternative else "")


def skip_numba_blas_probe():
    """For the `n6emu` command's own process only: Numba probes for BLAS the first time any kernel loads
    (numba.np.arraymath imports scipy.linalg, about 0.5 s of every warm start). n6emu's kernels never call BLAS
    (no np.dot / np.linalg in @njit code), so the command tells Numba there is none. Not done on `import emu`: a
    user's own Numba code in the same process may need BLAS. Done when Numba is imported (emu.jit), not before:
    a command that runs on the C twins never imports it."""
    from emu import jit
    jit.after_load(_no_blas_probe)


def _no_blas_probe():
    if "numba.np.arraymath" in sys.modules:
        return                              # too late: the probe has run
    import numba.np.linalg as nl

    def no_blas():
        raise ImportError("BLAS is not used by n6emu's kernels")
    nl.ensure_blas = no_blas


# ---- first run: the network's kernels compiled by a second process -----------------------------------------

HELPER_COMMAND = "import sys; from emu._install import compile_network; compile_network(sys.argv[1])"


def compile_network_in_background(config_path):
    """First run of a device command (cold kernel cache), two cores or more: start a helper process that compiles
    the network kernels of device `config_path` (None: the bundled device) into the shared cache while this one
    compiles the front end's, which it needs first; this process then loads them from the cache. Numba compiles
    one function at a time per process, so this is the one way to use a second core. The helper writes nothing
    but the cache (atomic files: both processes may compile a kernel, the results are the same) and is stopped
    when this process exits. Returns the Popen, or None when not started (one core, or no kernel cache)."""
    import atexit
    import subprocess
    if state is None or state[0] is None:
        return None
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    if cores < 2:
        return None
    try:
        child = subprocess.Popen([sys.executable, "-c", HELPER_COMMAND, config_path or ""],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None
    atexit.register(_stop, child)
    return child


def _stop(child):
    if child.poll() is None:
        child.terminate()
        child.wait()


def compile_network(config_path):
    """The helper of compile_network_in_background: runs the device's network on zero input buffers, one and two
    (every kernel it calls is compiled, with the argument types the device chain passes) and the st-f16 front end's
    silence sum, which runs after its other kernels. Started as `python -c` (HELPER_COMMAND), config_path "" for the
    bundled device."""
    skip_numba_blas_probe()
    import numpy as np

    from emu.config import load_config
    from emu.models import ModelSession, import_model
    cfg = load_config(config_path or None)
    m = cfg.model
    if m.backend == "c":
        return                                   # nothing to compile ("auto": the command chose Numba)
    model = import_model(cfg.model_path(), cfg.input.io_layout)
    session = ModelSession(model, m.profile, "numba", rounding=m.rounding, elementwise=m.elementwise,
                           state=m.state)
    dtype = np.float32 if cfg.input.boundary == "float32" else model.io_dtype
    for batch in (1, 2):                     # one patch, and several (batches take other kernels)
        session.run(np.zeros((batch,) + model.input_shape[1:], dtype), cfg.input.boundary)
    if cfg.frontend.profile == "st-f16":
        from emu.frontend import helium_f16, st
        st._f16_silence(np.zeros(helium_f16.LANES, np.float32), 1, 1, 1, np.zeros(1, np.float32))

