"""Atomic output files: every file the tool writes appears whole or not at all.

Each writer renders into a temporary file in the destination folder, then os.replace()s it into place,
so an error (or Ctrl-C) never leaves a partial .npy/.npz/.jsonl behind.
"""
import contextlib
import os
import tempfile

import numpy as np


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_npy(path, array):
    """np.save without numpy appending '.npy' to the temporary name."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(array))


def save_npz(path, arrays):
    """np.savez of a name -> array mapping (names may contain '/' and ':', as tensor names do)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{str(k): np.asarray(v) for k, v in arrays.items()})


def write_text(path, text):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
