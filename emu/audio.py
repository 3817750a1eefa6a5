"""PCM input: WAV (16-bit PCM mono), raw int16 little-endian, .npy int16; and the app's patch framing.

Readers stream fixed-size int16 blocks with bounded memory (files of any length). Every problem with an
input is an N6Error naming the file, the problem and the fix.

Patch framing (ST audio getting-started application): a patch buffer holds `keep = win_length - hop_length`
samples kept from the previous patch followed by `n_frames * hop_length` new samples; the first patch starts
with `keep` zeros; an incomplete final patch is not computed (the device would still be waiting for samples).
"""
import glob
import math
import os
import pathlib
import shlex
import struct
from dataclasses import dataclass

import numpy as np

from emu.errors import N6Error

AUDIO_EXTENSIONS = (".wav", ".raw", ".pcm", ".npy")
_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_FLOAT = 0x0003
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE


@dataclass(frozen=True)
class AudioInfo:
    path: str
    kind: str            # "wav" | "raw" | "npy"
    sample_rate: int
    n_samples: int
    data_offset: int     # byte offset of the first sample (wav/raw); 0 for npy


def _resample_hint(info, expected):
    """One line: the rate is wrong, and a command that fixes it for this kind of file."""
    path, rate = info.path, info.sample_rate
    q = shlex.quote(path)
    if info.kind == "raw":
        fix = (f"`sox -t raw -r {rate} -e signed -b 16 -c 1 {q} -t raw -r {expected} -e signed -b 16 -c 1 "
               f"out.raw`")
    elif info.kind == "npy":
        g = math.gcd(int(rate), int(expected))
        fix = (f"`np.save('out.npy', scipy.signal.resample_poly(x, {expected // g}, {rate // g}).round()"
               f".clip(-32768, 32767).astype(np.int16))`")
    else:
        fix = f"`sox {q} -r {expected} -e signed-integer -b 16 -c 1 out.wav`"
    return f"{path}: sample rate {rate} Hz, the device config expects {expected} Hz; resample it first, e.g. {fix}"


def _wav_info(path, expected_rate=None):
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) == 0:
            raise N6Error(f"{path}: empty file; give a 16-bit PCM mono WAV")
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise N6Error(f"{path}: not a RIFF/WAVE file; give a 16-bit PCM mono WAV (or raw int16 with --rate)")
        fmt = None
        while True:
            ch = f.read(8)
            if len(ch) < 8:
                break
            cid, size = ch[:4], struct.unpack("<I", ch[4:])[0]
            if cid == b"fmt ":
                body = f.read(size)
                if len(body) < 16:
                    raise N6Error(f"{path}: truncated WAV fmt chunk; re-export the file as 16-bit PCM WAV")
                tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
                if tag == _WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
                    tag = struct.unpack("<H", body[24:26])[0]
                fmt = (tag, channels, rate, bits)
                if size % 2:
                    f.read(1)
            elif cid == b"data":
                if fmt is None:
                    raise N6Error(f"{path}: WAV data chunk before its fmt chunk; re-export the file")
                _check_wav_format(path, *fmt, expected_rate)
                offset = f.tell()
                avail = os.path.getsize(path) - offset
                size = min(size, avail)  # streaming writers leave 0 or 0xFFFFFFFF in the header
                if size == 0 or size == 0xFFFFFFFF:
                    size = avail
                if size % 2:
                    raise N6Error(f"{path}: WAV data has an odd byte count ({size}); the file is truncated")
                return rate, size // 2, offset
            else:
                f.seek(size + (size % 2), os.SEEK_CUR)
        raise N6Error(f"{path}: WAV without a data chunk; the file is truncated or not audio")


def _check_wav_format(path, tag, channels, rate, bits, expected_rate=None):
    """Every way the WAV differs from the device's recording format, in one line with one command fixing all."""
    problems = []
    if tag == _WAVE_FORMAT_FLOAT:
        problems.append(f"{bits}-bit float WAV")
    elif tag != _WAVE_FORMAT_PCM:
        problems.append(f"WAV format tag {tag:#x} (not PCM)")
    elif bits != 16:
        problems.append(f"{bits}-bit PCM WAV")
    if channels != 1:
        problems.append(f"{channels} channels")
    if problems and expected_rate is not None and rate != expected_rate:
        problems.append(f"sample rate {rate} Hz")
    if not problems:
        return
    at = f" at {expected_rate} Hz" if expected_rate is not None else ""
    r = f"-r {expected_rate} " if expected_rate is not None else ""
    raise N6Error(f"{path}: {', '.join(problems)}; the device records 16-bit PCM mono{at}: convert with "
                  f"`sox {shlex.quote(path)} {r}-e signed-integer -b 16 -c 1 out.wav`")


def probe(path, raw_rate=None, expected_rate=None):
    """Inspect an audio file without reading its samples. Raw and .npy files need `raw_rate` (the --rate option).
    `expected_rate` (the device's, when known) lets a WAV's wrong rate be reported with its other problems."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise N6Error(f"{path}: is a folder; give one audio file")
    if not os.path.isfile(path):
        raise N6Error(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".wav":
        rate, n, offset = _wav_info(path, expected_rate)
        return AudioInfo(path, "wav", rate, n, offset)
    if ext in (".raw", ".pcm"):
        if raw_rate is None:
            raise N6Error(f"{path}: raw PCM has no header; give its sample rate with --rate (int16 little-endian mono)")
        size = os.path.getsize(path)
        if size == 0:
            raise N6Error(f"{path}: empty file; nothing to replay")
        if size % 2:
            raise N6Error(f"{path}: raw int16 file with an odd byte count ({size}); it is truncated or not int16 PCM")
        return AudioInfo(path, "raw", int(raw_rate), size // 2, 0)
    if ext == ".npy":
        try:
            arr = np.load(path, mmap_mode="r")
        except Exception as exc:  # numpy raises several types for corrupt files
            raise N6Error(f"{path}: not a readable .npy file ({exc.__class__.__name__}); save it with numpy.save") from None
        if arr.dtype != np.int16 or arr.ndim != 1:
            raise N6Error(_npy_hint(path, arr))
        if arr.size == 0:
            raise N6Error(f"{path}: empty audio array; nothing to replay")
        if raw_rate is None:
            raise N6Error(f"{path}: .npy audio has no sample rate; give it with --rate")
        return AudioInfo(path, "npy", int(raw_rate), int(arr.size), 0)
    raise N6Error(f"{path}: unknown audio type {ext or '(no extension)'}; use .wav (16-bit PCM), .raw/.pcm (int16 LE) or .npy")


def _npy_hint(path, arr):
    """What is wrong with a .npy recording and the conversion that keeps its samples."""
    what = f"{arr.dtype} {'x'.join(map(str, arr.shape)) or 'scalar'}"
    mono = ""
    if arr.ndim == 2 and 1 in arr.shape:
        mono = ".ravel()"
    elif arr.ndim == 2:
        mono = f".mean(axis={int(np.argmin(arr.shape))})"
    if arr.dtype.kind == "f":
        peak = 0.0
        flat = arr.reshape(-1)
        for start in range(0, flat.size, 1 << 20):       # bounded memory on a memory map
            chunk = np.asarray(flat[start:start + (1 << 20)], np.float64)
            if chunk.size:
                peak = max(peak, float(np.nanmax(np.abs(chunk))))
        if peak <= 1.0:
            fix = f"(x{mono} * 32767).round().astype(np.int16)"
            why = "float samples in [-1, 1] must be scaled to int16"
        else:
            fix = f"x{mono}.round().clip(-32768, 32767).astype(np.int16)"
            why = "float samples must be rounded to int16"
    elif arr.dtype.kind in "iub":
        fix = f"x{mono}.clip(-32768, 32767).astype(np.int16)"
        why = "the device records 16-bit samples"
    else:
        return f"{path}: .npy audio must be a 1-D int16 array, got {what}; save the samples as int16"
    if mono and arr.dtype == np.int16:
        fix = f"x{mono}.round().astype(np.int16)"
        why = "the device takes one channel"
    return (f"{path}: .npy audio must be a 1-D int16 array, got {what} ({why}); convert with "
            f"np.save('out.npy', {fix})")


def check_rate(info, expected_rate):
    if info.sample_rate != expected_rate:
        raise N6Error(_resample_hint(info, expected_rate))


def open_checked(path, rate=None, expected_rate=None):
    """probe() + the rate check: an AudioInfo the device can replay, or one N6Error naming every problem."""
    info = probe(path, raw_rate=rate, expected_rate=expected_rate)
    if expected_rate is not None:
        check_rate(info, expected_rate)
    return info


def load(path, rate=None):
    """The int16 PCM of a WAV (16-bit PCM mono), raw int16 LE (.raw/.pcm) or .npy int16 file, checked as
    `n6emu replay` checks it (one-line N6Error naming the problem and the fix).

    rate: the sample rate in Hz. Raw and .npy files have no header and need it; a WAV's own rate must equal it
    when given (e.g. the device's: `audio.load(path, dev.frontend.params.sample_rate)`)."""
    path = os.fspath(path)
    kind = os.path.splitext(path)[1].lower()
    info = probe(path, raw_rate=rate, expected_rate=rate if kind == ".wav" else None)
    if rate is not None:
        check_rate(info, rate)
    return read_all(info)


def iter_blocks(info, block_samples):
    """Yield int16 blocks of at most `block_samples` samples (the last may be shorter)."""
    if info.kind == "npy":
        arr = np.load(info.path, mmap_mode="r")
        for start in range(0, info.n_samples, block_samples):
            yield np.array(arr[start:start + block_samples], dtype=np.int16)
        return
    with open(info.path, "rb") as f:
        f.seek(info.data_offset)
        left = info.n_samples
        while left > 0:
            n = min(block_samples, left)
            raw = f.read(2 * n)
            if len(raw) < 2 * n:
                raise N6Error(f"{info.path}: file ended early (truncated while reading)")
            left -= n
            yield np.frombuffer(raw, dtype="<i2").astype(np.int16)


def read_all(info):
    """The whole file as one int16 array (small files, tests)."""
    blocks = list(iter_blocks(info, 1 << 20))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.int16)


def patches(blocks, keep, new):
    """The app's patch framing over a stream of int16 blocks.

    Yields (index, patch) with patch = `keep` samples kept from the previous patch + `new` new samples;
    the first patch starts with `keep` zeros. Memory is bounded by one patch plus one block.
    """
    patch = np.zeros(keep + new, np.int16)
    fill = keep
    index = 0
    for block in blocks:
        pos = 0
        while pos < block.size:
            take = min(new + keep - fill, block.size - pos)
            patch[fill:fill + take] = block[pos:pos + take]
            fill += take
            pos += take
            if fill == keep + new:
                yield index, patch.copy()
                index += 1
                if keep:
                    patch[:keep] = patch[new:]
                fill = keep


def _glob(pattern):
    """glob.glob, except that `**` does not descend into symlinked folders (a link to a parent would loop)."""
    if "**" not in pattern:
        return glob.glob(pattern)
    parts = pathlib.PurePath(pattern).parts
    n = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = pathlib.Path(*parts[:n]) if n else pathlib.Path()
    return [str(p) for p in root.glob(str(pathlib.PurePath(*parts[n:])))]


def find_audio(specs):
    """Expand files, folders (recursively, without following symlinked folders) and glob patterns (`**` does
    not follow symlinked folders either) into a sorted, de-duplicated list of audio files."""
    out = []
    for spec in specs:
        spec = os.fspath(spec)
        if os.path.isdir(spec):
            found = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(spec)
                for name in names
                if name.lower().endswith(AUDIO_EXTENSIONS)
            )
            if not found:
                raise N6Error(f"{spec}: folder without audio files ({', '.join(AUDIO_EXTENSIONS)})")
            out.extend(found)
        elif os.path.isfile(spec):
            out.append(spec)
        elif glob.has_magic(spec):
            found = sorted(p for p in _glob(spec) if os.path.isfile(p))
            if not found:
                raise N6Error(f"{spec}: the pattern matches no file")
            out.extend(found)
        else:
            raise N6Error(f"{spec}: no such file or folder")
    seen = set()
    return [p for p in out if not (p in seen or seen.add(p))]
