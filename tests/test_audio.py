"""PCM readers and the app's patch framing: formats, errors, and chunking invariance."""
import struct
import wave

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu import audio
from emu.errors import N6Error


def write_wav(path, samples, rate=16000, channels=1, width=2):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples).tobytes())


def write_float_wav(path, samples, rate=16000):
    data = np.asarray(samples, np.float32).tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_wav_roundtrip_and_blocks(tmp_path):
    x = np.random.default_rng(0).integers(-32768, 32768, 12345).astype(np.int16)
    write_wav(tmp_path / "a.wav", x)
    info = audio.probe(tmp_path / "a.wav")
    assert (info.kind, info.sample_rate, info.n_samples) == ("wav", 16000, x.size)
    assert np.array_equal(audio.read_all(info), x)
    blocks = list(audio.iter_blocks(info, 1000))
    assert [b.size for b in blocks] == [1000] * 12 + [345]


def test_raw_and_npy(tmp_path):
    x = np.arange(-500, 500, dtype=np.int16)
    (tmp_path / "a.raw").write_bytes(x.astype("<i2").tobytes())
    np.save(tmp_path / "a.npy", x)
    for name in ("a.raw", "a.npy"):
        info = audio.probe(tmp_path / name, raw_rate=16000)
        assert np.array_equal(audio.read_all(info), x)


@pytest.mark.parametrize("case, needle", [
    ("stereo", "2 channels"),
    ("8bit", "8-bit PCM"),
    ("float", "float WAV"),
    ("empty", "empty file"),
    ("odd_raw", "odd byte count"),
    ("raw_no_rate", "--rate"),
    ("not_wav", "not a RIFF/WAVE"),
    ("npy_float", "1-D int16"),
    ("ext", "unknown audio type"),
])
def test_bad_inputs_one_line(tmp_path, case, needle):
    p = tmp_path / {"odd_raw": "x.raw", "raw_no_rate": "x.raw", "npy_float": "x.npy", "ext": "x.mp3"}.get(case, "x.wav")
    rate = 16000
    if case == "stereo":
        write_wav(p, np.zeros(200, np.int16), channels=2)
    elif case == "8bit":
        write_wav(p, np.zeros(100, np.uint8), width=1)
    elif case == "float":
        write_float_wav(p, np.zeros(100))
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "odd_raw":
        p.write_bytes(b"\x00" * 7)
    elif case == "raw_no_rate":
        p.write_bytes(b"\x00" * 8)
        rate = None
    elif case == "not_wav":
        p.write_bytes(b"hello world, not audio")
    elif case == "npy_float":
        np.save(p, np.zeros(10, np.float32))
    elif case == "ext":
        p.write_bytes(b"ID3")
    with pytest.raises(N6Error) as err:
        audio.probe(p, raw_rate=rate if case != "odd_raw" else 16000)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_wrong_rate_names_both_rates(tmp_path):
    write_wav(tmp_path / "a.wav", np.zeros(100, np.int16), rate=44100)
    info = audio.probe(tmp_path / "a.wav")
    with pytest.raises(N6Error, match="44100 Hz.*16000 Hz.*sox"):
        audio.check_rate(info, 16000)


def test_find_audio(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    write_wav(tmp_path / "d" / "b.wav", np.zeros(10, np.int16))
    write_wav(tmp_path / "d" / "e" / "a.wav", np.zeros(10, np.int16))
    (tmp_path / "d" / "notes.txt").write_text("x")
    found = audio.find_audio([tmp_path / "d", str(tmp_path / "d" / "*.wav")])
    assert found == [str(tmp_path / "d" / "b.wav"), str(tmp_path / "d" / "e" / "a.wav")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(N6Error, match="folder without audio"):
        audio.find_audio([tmp_path / "empty"])
    with pytest.raises(N6Error, match="matches no file"):
        audio.find_audio([str(tmp_path / "*.flac")])


def reference_patches(x, keep, new):
    """The framing written the obvious way: a zero prefix, then fixed strides of `new` samples."""
    padded = np.concatenate([np.zeros(keep, np.int16), x])
    count = x.size // new
    return [padded[i * new:i * new + keep + new] for i in range(count)]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 3000), keep=st.sampled_from([0, 3, 320]), new=st.sampled_from([1, 7, 490]),
       chunks=st.lists(st.integers(1, 700), min_size=1, max_size=8))
def test_patches_independent_of_chunking(n, keep, new, chunks):
    x = np.random.default_rng(n).integers(-32768, 32768, n).astype(np.int16)
    blocks, pos, i = [], 0, 0
    while pos < n:
        step = chunks[i % len(chunks)]
        blocks.append(x[pos:pos + step])
        pos += step
        i += 1
    got = list(audio.patches(iter(blocks), keep, new))
    want = reference_patches(x, keep, new)
    assert [k for k, _ in got] == list(range(len(want)))
    assert all(np.array_equal(g, w) for (_, g), w in zip(got, want))


# ---- hints that work, problems reported together, emu.audio.load, symlink loops (issue 15) -----------------

def _command(msg):
    """The shell command between backticks in a hint."""
    import re
    import shlex
    m = re.search(r"`([^`]+)`", msg)
    assert m, msg
    return shlex.split(m.group(1))


def test_raw_resample_hint_names_the_input_format_and_runs(tmp_path):
    import shutil
    import subprocess
    x = (np.sin(np.arange(48000) / 7.0) * 8000).astype("<i2")
    (tmp_path / "in.raw").write_bytes(x.tobytes())
    info = audio.probe(tmp_path / "in.raw", raw_rate=48000)
    with pytest.raises(N6Error) as e:
        audio.check_rate(info, 16000)
    cmd = _command(str(e.value))
    src = cmd.index(str(tmp_path / "in.raw"))
    # sox reads a headerless file only with its format before its name: type, rate, encoding, width, channels
    before = cmd[:src]
    assert before[0] == "sox" and before[before.index("-t") + 1] == "raw" and before[before.index("-r") + 1] == "48000"
    assert {"-e", "-b", "-c"} <= set(before) and before[before.index("-b") + 1] == "16"
    assert cmd[cmd.index("-r", src) + 1] == "16000"
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed: the hint's shape is checked, not run")
    subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=60)
    out = audio.probe(tmp_path / "out.raw", raw_rate=16000)
    assert abs(out.n_samples - 16000) <= 2


def test_float_npy_in_unit_range_is_told_to_scale(tmp_path):
    np.save(tmp_path / "f.npy", np.linspace(-1, 1, 100).astype(np.float32))
    with pytest.raises(N6Error) as e:
        audio.probe(tmp_path / "f.npy", raw_rate=16000)
    assert "(x * 32767).round().astype(np.int16)" in str(e.value) and "\n" not in str(e.value)
    np.save(tmp_path / "g.npy", np.linspace(-3000, 3000, 100))        # float holding int16 values: round, no scale
    with pytest.raises(N6Error) as e:
        audio.probe(tmp_path / "g.npy", raw_rate=16000)
    assert "x.round().clip(-32768, 32767).astype(np.int16)" in str(e.value) and "* 32767" not in str(e.value)


def test_stereo_and_wrong_rate_in_one_line_and_the_command_fixes_both(tmp_path):
    import shutil
    import subprocess
    write_wav(tmp_path / "s.wav", np.zeros(2 * 4410, np.int16), rate=44100, channels=2)
    with pytest.raises(N6Error) as e:
        audio.open_checked(tmp_path / "s.wav", None, 16000)
    msg = str(e.value)
    assert "2 channels" in msg and "44100 Hz" in msg and "16000 Hz" in msg and "\n" not in msg
    cmd = _command(msg)
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=60)
    info = audio.open_checked(tmp_path / "out.wav", None, 16000)
    assert info.sample_rate == 16000 and abs(info.n_samples - 1600) <= 2


def test_load_is_the_checked_reader(tmp_path):
    x = np.arange(-300, 300, dtype=np.int16)
    write_wav(tmp_path / "a.wav", x)
    (tmp_path / "a.raw").write_bytes(x.astype("<i2").tobytes())
    np.save(tmp_path / "a.npy", x)
    for name, rate in (("a.wav", None), ("a.wav", 16000), ("a.raw", 16000), ("a.npy", 16000)):
        y = audio.load(tmp_path / name, rate)
        assert y.dtype == np.int16 and np.array_equal(y, x)
    with pytest.raises(N6Error, match="--rate|sample rate"):
        audio.load(tmp_path / "a.raw")
    with pytest.raises(N6Error, match="16000 Hz.*8000 Hz"):
        audio.load(tmp_path / "a.wav", 8000)
    with pytest.raises(N6Error, match="is a folder"):
        audio.load(tmp_path)


def test_recursive_glob_and_folders_do_not_follow_symlink_loops(tmp_path):
    import subprocess
    import sys
    (tmp_path / "d" / "e").mkdir(parents=True)
    write_wav(tmp_path / "d" / "e" / "a.wav", np.zeros(10, np.int16))
    (tmp_path / "d" / "e" / "loop").symlink_to(tmp_path / "d")
    (tmp_path / "d" / "self").symlink_to(".")
    code = ("import sys; from emu import audio; print(audio.find_audio([sys.argv[1]])); "
            "print(audio.find_audio([sys.argv[2]]))")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d" / "**" / "*.wav"), str(tmp_path / "d")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    want = str([str(tmp_path / "d" / "e" / "a.wav")])
    assert res.stdout.splitlines() == [want, want]
