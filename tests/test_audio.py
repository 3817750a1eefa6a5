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
