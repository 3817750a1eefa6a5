"""emu.outputs: every write atomic, checked (flush, fsync, size) and with the umask's permissions; failures leave
nothing behind (issue 15)."""
import errno
import os
import stat

import numpy as np
import pytest

from emu import outputs
from emu.errors import N6Error


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def leftovers(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


@pytest.mark.parametrize("mask, fmode, dmode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750), (0o002, 0o664, 0o775)])
def test_files_and_folders_follow_the_umask(tmp_path, umask, mask, fmode, dmode):
    umask(mask)
    outputs.save_npy(tmp_path / "a.npy", np.arange(3))
    outputs.save_npz(tmp_path / "b.npz", {"x/y": np.arange(2)})
    outputs.write_text(tmp_path / "c.txt", "hi\n")
    with outputs.npy_stream(tmp_path / "d.npy", (4, 2), np.int8) as y:
        y[:] = 1
    for name in ("a.npy", "b.npz", "c.txt", "d.npy"):
        assert mode(tmp_path / name) == fmode, name
    with outputs.staged_folder(tmp_path / "dump") as tmp:
        outputs.write_into(os.path.join(tmp, "x.npy"), outputs.npy_bytes(np.zeros(2)))
    assert mode(tmp_path / "dump") == dmode and mode(tmp_path / "dump" / "x.npy") == fmode
    assert np.array_equal(np.load(tmp_path / "d.npy"), np.ones((4, 2), np.int8))
    assert leftovers(tmp_path) == []


def test_a_short_write_is_an_error_and_leaves_nothing(tmp_path):
    """What numpy's tofile path can do on a full disk: the bytes never reach the file, no exception."""
    with pytest.raises(N6Error, match="could not write.*disk"):
        with outputs.atomic_file(tmp_path / "o.npy") as f:
            np.save(f, np.arange(1000))
            f.flush()
            os.ftruncate(f.fileno(), 10)
    assert os.listdir(tmp_path) == []


def test_a_failed_fsync_is_an_error_and_leaves_nothing(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(outputs.os, "fsync", full)
    for write in (lambda: outputs.save_npy(tmp_path / "o.npy", np.arange(3)),
                  lambda: outputs.write_text(tmp_path / "o.txt", "x"),
                  lambda: outputs.write_into(str(tmp_path / "o.bin"), b"abc")):
        with pytest.raises(N6Error) as e:
            write()
        assert "No space left" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(N6Error):
        with outputs.npy_stream(tmp_path / "s.npy", (2,), np.int8) as y:
            y[:] = 3
    # write_into writes inside a staged folder, which the caller removes; the others leave nothing
    assert sorted(os.listdir(tmp_path)) in ([], ["o.bin"])
    assert not (tmp_path / "o.npy").exists() and not (tmp_path / "o.txt").exists() and not (tmp_path / "s.npy").exists()


def test_an_error_in_the_body_removes_the_temporaries(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with outputs.atomic_file(tmp_path / "o.npy") as f:
            f.write(b"partial")
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        with outputs.staged_folder(tmp_path / "dump") as tmp:
            outputs.write_into(os.path.join(tmp, "a.bin"), b"x")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_a_folder_is_not_a_file_target(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(N6Error, match="is a folder"):
        outputs.save_npy(tmp_path / "d", np.zeros(1))
    with pytest.raises(N6Error, match="exists and is not an empty folder"):
        (tmp_path / "e").mkdir()
        (tmp_path / "e" / "x").write_text("x")
        outputs.check_new_folder(str(tmp_path / "e"), "--dump")
