"""Pickled results of slow, deterministic preparation (imported ONNX models, front-end tables), kept in the per-user
cache folder next to the Numba kernel cache (emu._install: $N6EMU_CACHE_DIR, else $XDG_CACHE_HOME/n6emu or
~/.cache/n6emu) under <kind>/<key>.pickle.

A key names everything the result depends on: the caller's inputs (a file's SHA-256, the parameters' JSON), the
emulator version, a format number, and the SHA-256 of the source files that compute it (source_digest), so an
edited importer or front end in a source checkout never reads a stale entry. An unreadable or unwritable folder,
or a broken entry, falls back to computing, silently; entries are written atomically (temporary file + rename).
"""
import hashlib
import os
import pickle
import tempfile

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_DIGESTS = {}


def cache_dir(kind, environ=None):
    """The folder of cached `kind` entries (it may not exist yet)."""
    from emu._install import default_cache_dir
    env = dict(os.environ if environ is None else environ)
    env.pop("NUMBA_CACHE_DIR", None)     # Numba's own variable names only Numba's folder
    return os.path.join(os.path.dirname(default_cache_dir(env)[0]), kind)


def source_digest(*relative):
    """SHA-256 (16 hex digits) of the package's source files and folders (*.py directly inside) named relative to
    the package, computed once per process."""
    if relative not in _DIGESTS:
        h = hashlib.sha256()
        for rel in relative:
            path = os.path.join(PACKAGE_DIR, rel)
            names = sorted(os.listdir(path)) if os.path.isdir(path) else [""]
            for name in names:
                if name and not name.endswith(".py"):
                    continue
                with open(os.path.join(path, name) if name else path, "rb") as f:
                    h.update(f"{rel}/{name}".encode() + b"\0" + f.read())
        _DIGESTS[relative] = h.hexdigest()[:16]
    return _DIGESTS[relative]


def text_digest(text):
    return hashlib.sha256(text.encode()).hexdigest()


def entry_path(kind, key):
    return os.path.join(cache_dir(kind), f"{key}.pickle")


def load(kind, key, expected_type):
    """The cached object of `key`, or None (no entry, a broken one, or one of another type)."""
    path = entry_path(kind, key)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f)
    except Exception:     # a truncated or foreign entry: compute again (and overwrite it)
        return None
    return obj if isinstance(obj, expected_type) else None


def store(kind, key, obj):
    """Write the entry atomically; any failure leaves no entry and is ignored."""
    path = entry_path(kind, key)
    tmp = None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        tmp = None
    except Exception:
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def cached(kind, key, expected_type, compute):
    """load(kind, key) or compute() (then stored)."""
    obj = load(kind, key, expected_type)
    if obj is None:
        obj = compute()
        store(kind, key, obj)
    return obj
