"""Every file and folder n6emu writes, in one place: atomic, checked, with the user's permissions.

A file is rendered into a temporary file in its destination folder, flushed, fsync'ed and its size checked
against what was written (numpy's `tofile` path can drop a failed flush of a small array), then os.replace()d
into place. A folder of outputs (dumps, stages, vectors) is filled under a temporary folder beside it and
moved into place whole. On any failure (a full disk, Ctrl-C, SIGTERM: the CLI turns signals into exceptions)
the temporaries are removed and nothing is left behind. Files get mode 0666 and folders 0777, less the umask,
as `open()` and `mkdir` would give them (tempfile's 0600/0700 are not kept).
"""
import contextlib
import io
import os
import shutil
import tempfile

import numpy as np

from emu.errors import N6Error


def umask():
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode():
    return 0o666 & ~umask()


def dir_mode():
    return 0o777 & ~umask()


def _write_error(path, exc):
    why = exc.strerror or exc.__class__.__name__ if isinstance(exc, OSError) else str(exc)
    return N6Error(f"{path}: could not write it ({why}); check the free space and permissions of its folder "
                   f"(nothing was written)")


def check_file_target(path, flag=None):
    """A file output must not name an existing folder."""
    if os.path.isdir(path):
        name = f"{flag} {path}" if flag else path
        raise N6Error(f"{name}: is a folder; give a file name (e.g. {os.path.join(path, 'out' + _ext(path))})")


def _ext(path):
    return os.path.splitext(path)[1] or ".npy"


def _makedirs(folder):
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise N6Error(f"{folder}: cannot create the output folder ({exc.strerror}); give a writable location") from None


def finish_file(f, path):
    """Flush, fsync and check the size of a binary file object written from its start; close it."""
    try:
        f.flush()
        expected = f.tell()
        os.fsync(f.fileno())
        actual = os.fstat(f.fileno()).st_size
        if actual != expected:
            raise OSError(0, f"{actual} of {expected} bytes reached the disk; is it full?")
    finally:
        f.close()


class Staged:
    """A file being written beside `path`: `.file` (binary, or text when `text`), then commit() or discard()."""

    def __init__(self, path, text=False, newline=None):
        self.path = path = os.fspath(path)
        check_file_target(path)
        folder = os.path.dirname(os.path.abspath(path))
        _makedirs(folder)
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
        except OSError as exc:
            raise _write_error(path, exc) from None
        try:
            os.fchmod(fd, file_mode())
        except OSError:
            pass
        self._raw = os.fdopen(fd, "wb")
        self.file = io.TextIOWrapper(self._raw, encoding="utf-8", newline=newline) if text else self._raw

    def commit(self):
        """Check what was written and move it into place; on failure remove it and raise N6Error."""
        try:
            if self.file is not self._raw:
                self.file.flush()
            finish_file(self._raw, self.path)
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.discard()
            raise _write_error(self.path, exc) from None

    def discard(self):
        with contextlib.suppress(Exception):
            self._raw.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.tmp)


@contextlib.contextmanager
def atomic_file(path, text=False, newline=None):
    """Yield an open file beside `path` that replaces `path` when the block ends without an exception."""
    s = Staged(path, text=text, newline=newline)
    try:
        yield s.file
    except OSError as exc:
        s.discard()
        raise _write_error(s.path, exc) from None
    except BaseException:
        s.discard()
        raise
    s.commit()


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` that the caller writes by name; checked and moved into place after.
    (Prefer atomic_file: a file written by name cannot be fsync'ed by its writer.)"""
    s = Staged(path)
    s._raw.close()
    try:
        try:
            yield s.tmp
        except OSError as exc:
            raise _write_error(s.path, exc) from None
        _commit_by_name(s)
    finally:
        s.discard()


def _commit_by_name(s, expected=None):
    """Move a Staged file written by name into place: fsync it, check its size (when `expected`), replace; an
    OSError removes it and becomes the one-line write error."""
    try:
        with open(s.tmp, "rb+") as f:
            os.fsync(f.fileno())
            if expected is not None and os.fstat(f.fileno()).st_size != expected:
                raise OSError(0, "the file is shorter than the array; is the disk full?")
        os.replace(s.tmp, s.path)
    except OSError as exc:
        s.discard()
        raise _write_error(s.path, exc) from None


def save_npy(path, array):
    with atomic_file(path) as f:
        np.save(f, np.asarray(array), allow_pickle=False)


def save_npz(path, arrays):
    """np.savez of a name -> array mapping (names may contain '/' and ':', as tensor names do)."""
    with atomic_file(path) as f:
        np.savez(f, **{str(k): np.asarray(v) for k, v in arrays.items()})


def write_text(path, text):
    with atomic_file(path, text=True, newline="\n") as f:
        f.write(text)


def write_bytes(path, data):
    with atomic_file(path) as f:
        f.write(data)


@contextlib.contextmanager
def npy_stream(path, shape, dtype):
    """Yield a writable memory map of a new .npy (shape, dtype) beside `path`; checked and moved into place when
    the block ends (outputs larger than memory are filled chunk by chunk)."""
    s = Staged(path)
    s._raw.close()
    try:
        try:
            mm = np.lib.format.open_memmap(s.tmp, mode="w+", dtype=dtype, shape=tuple(shape))
        except OSError as exc:
            raise _write_error(s.path, exc) from None
        yield mm
        mm.flush()
        expected = mm.offset + mm.nbytes
        del mm
        _commit_by_name(s, expected)
    finally:
        s.discard()


def check_new_folder(path, flag):
    """An output folder must be new or empty (it is replaced whole)."""
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise N6Error(f"{flag} {path}: exists and is not an empty folder; give a new folder")


@contextlib.contextmanager
def staged_folder(path, prefix=".n6emu-"):
    """Yield a temporary folder beside `path` (mode 0777 less the umask); when the block ends without an
    exception it becomes `path` (new or empty), otherwise it is removed with everything in it."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    _makedirs(parent)
    try:
        tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
        os.chmod(tmp, dir_mode())
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        yield tmp
        try:
            if os.path.isdir(path):
                os.rmdir(path)           # empty (checked by the caller): replaced whole
            os.replace(tmp, path)
        except OSError as exc:
            raise _write_error(path, exc) from None
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def makedirs(path):
    """A folder inside a staged folder (mode from the umask, as os.makedirs gives it)."""
    os.makedirs(path, exist_ok=True)


def write_into(path, data):
    """A file inside a staged folder: created by open() (umask permissions), flushed, fsync'ed, size-checked."""
    try:
        f = open(path, "wb")
        f.write(data)
        finish_file(f, path)
    except OSError as exc:
        raise _write_error(path, exc) from None


def npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()
