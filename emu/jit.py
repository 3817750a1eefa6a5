"""Numba, imported on first use: the kernel modules' `njit`, `intrinsic`, `prange` and `types`.

Importing Numba costs 0.3-0.5 s and its first kernel load another 0.25 s, more than a whole one-clip replay on the
C twins. The kernel modules therefore take their decorators from here: before Numba is loaded, `njit(...)` and
`intrinsic` return a placeholder holding the Python function and the options; the first use of any placeholder
(a call, an attribute such as `.compile`, or Numba typing it) imports Numba, makes every pending dispatcher and
intrinsic with exactly those options, and rebinds every `emu.*` module global that held a placeholder to the real
object, so Numba compiling a kernel only ever sees real dispatchers among its globals. Once Numba is loaded the
decorators return real objects directly. `prange` and `types` are placeholders rebound the same way; `types` may
only be used inside functions (intrinsic bodies) or, for `njit(locals=...)`, as type names in strings.

    from emu.jit import njit, prange            # instead of `from numba import njit, prange`

Nothing about what a kernel computes depends on this: the same decorator options reach Numba, the same cache.
"""
import importlib
import sys
import threading

_pending = []          # placeholders made before Numba was loaded, in definition order
_numba = None          # the numba module once loaded
_on_load = []          # callables run right after Numba is imported (before any kernel is made)
_lock = threading.RLock()   # one load, also when the first uses come from several threads


def after_load(fn):
    """Run fn() right after Numba is imported here (now, when it already is)."""
    if _numba is not None or "numba" in sys.modules:
        fn()
    else:
        _on_load.append(fn)


def _ready():
    """True when Numba is loaded here; when someone else imported it already, load it here too (it costs nothing
    more) so that the decorators return real objects."""
    if _numba is None and "numba" in sys.modules:
        load()
    return _numba is not None


def load():
    """Import Numba, make every pending dispatcher/intrinsic, rebind emu.* module globals. Idempotent."""
    global _numba
    if _numba is not None:
        return _numba
    with _lock:
        if _numba is not None:           # re-entered from _materialize below, or loaded by another thread
            return _numba
        import numba
        for fn in _on_load:
            fn()
        _on_load.clear()
        _numba = numba
        for p in _pending:
            p._materialize()
        for name, module in list(sys.modules.items()):
            if module is None or not (name == "emu" or name.startswith("emu.")):
                continue
            namespace = getattr(module, "__dict__", None)
            if namespace is None:
                continue
            for key, value in list(namespace.items()):
                if isinstance(value, _Placeholder):
                    namespace[key] = value._materialize()
        _pending.clear()
    return _numba


def resolved(obj):
    """obj, or the real object of a placeholder once Numba is loaded (for placeholders kept outside module
    globals, e.g. in a factory's cache, which load() does not rebind)."""
    if isinstance(obj, _Placeholder) and _numba is not None:
        return obj._materialize()
    return obj


class _Placeholder:
    """A Numba object not made yet; the first use makes it (see the module docstring)."""

    def __init__(self, make, name="", wrapped=None):
        self._make = make
        self._real = None
        self.__name__ = name
        if wrapped is not None:
            self.__wrapped__ = wrapped
            self.__qualname__ = wrapped.__qualname__
            self.__module__ = wrapped.__module__
            self.__doc__ = wrapped.__doc__
        _pending.append(self)

    def _materialize(self):
        if self._real is None:
            load()
            with _lock:
                if self._real is None:
                    self._real = self._make()
        return self._real

    def __call__(self, *args, **kwargs):
        return self._materialize()(*args, **kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):             # Python's own probes (copy, pickle, inspect) do not load Numba
            raise AttributeError(name)
        real = self._materialize()
        if name == "_numba_type_":          # Numba typing a placeholder held outside module globals
            if isinstance(real, _numba.core.dispatcher.Dispatcher):
                return _numba.typeof(real)
            from numba.core.registry import cpu_target
            ctx = cpu_target.typing_context
            ctx.refresh()
            return ctx.resolve_value_type(real)
        return getattr(real, name)

    def __repr__(self):
        return f"<{self.__name__} (Numba not loaded yet)>"


class _LazyModule(_Placeholder):
    """A Numba module (numba.core.types ...) imported on first attribute access."""

    def __init__(self, name):
        super().__init__(lambda: importlib.import_module(name), name)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._materialize(), name)


def _locals(options):
    """njit options with `locals` type names given as strings ("int32") turned into numba.types."""
    local_types = options.get("locals")
    if not local_types:
        return options
    return dict(options, locals={k: getattr(_numba.types, v) if isinstance(v, str) else v
                                 for k, v in local_types.items()})


def njit(*args, **options):
    """numba.njit with the same arguments (`njit`, `njit(**options)`, `njit(signature, **options)`)."""
    if args and callable(args[0]) and not options and len(args) == 1 and not isinstance(args[0], _Placeholder):
        return njit()(args[0])
    if _ready():
        return _numba.njit(*args, **_locals(options))

    def decorate(py_func):
        if _ready():
            return _numba.njit(*args, **_locals(options))(py_func)
        return _Placeholder(lambda: _numba.njit(*args, **_locals(options))(py_func), py_func.__name__, py_func)
    return decorate


def intrinsic(*args, **options):
    """numba.extending.intrinsic with the same arguments (`intrinsic`, `intrinsic(**options)`)."""
    if args and callable(args[0]) and len(args) == 1 and not options:
        return intrinsic()(args[0])

    def make_for(fn):
        from numba.extending import intrinsic as real_intrinsic
        return real_intrinsic(*args, **options)(fn) if (args or options) else real_intrinsic(fn)

    def decorate(fn):
        if _ready():
            return make_for(fn)
        return _Placeholder(lambda: make_for(fn), fn.__name__, fn)
    return decorate


prange = _Placeholder(lambda: _numba.prange, "prange")
types = _LazyModule("numba.core.types")
cgutils = _LazyModule("numba.core.cgutils")
