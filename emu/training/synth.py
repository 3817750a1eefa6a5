"""Synthetic keyword dataset: espeak-ng speech, sox resampling to 16 kHz, numpy mixing into 1 s int16 clips.

Speakers are (espeak-ng voice, variant) pairs. The split is by speaker: every pair whose voice is in
HELD_OUT_VOICES or whose variant is in HELD_OUT_VARIANTS goes to the test set only. All randomness comes
from numpy Generators seeded from (seed, split, speaker, word, rendition), so a run is reproducible.
Clips: int16 [CLIP_SAMPLES] at 16 kHz: speech at a random peak level and time shift, plus a low-level
background noise (white/pink/brown) and TPDF dither of +-1 LSB, so no clip contains digital silence.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emu.errors import N6Error

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
LABELS = KEYWORDS + (SILENCE, UNKNOWN)
UNKNOWN_WORDS = (
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow", "zero", "one", "two",
    "three", "four", "five", "six", "seven", "eight", "nine", "learn", "follow", "forward", "backward",
    "visual", "cup", "yet", "know", "ask", "light", "write", "often", "top", "goal", "toss", "dawn", "lap",
    "bright", "kept", "noise", "nod", "ping", "apple", "water", "music", "hello", "table", "window",
    "garden", "open", "under", "dress", "rest", "bottle", "dinner", "sunday", "yellow", "stone", "gold",
)
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
          "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt2", "klatt3",
            "Andy", "Annie", "david", "linda", "max", "steph", "zac", "Alex", "Alicia", "anika", "benjamin",
            "ed", "john", "paul", "rob", "adam")
HELD_OUT_VOICES = ("en-029",)
HELD_OUT_VARIANTS = ("m3", "f2", "klatt2", "david", "steph")


@dataclass(frozen=True)
class SynthConfig:
    """Dataset size and mixing ranges (all levels in dBFS re int16 full scale)."""
    seed: int = 20261126
    keyword_takes_train: int = 2        # renditions per (speaker, keyword), train split
    keyword_takes_test: int = 1
    unknown_per_speaker_train: int = 4  # random unknown words per speaker
    unknown_per_speaker_test: int = 2
    mixes_per_take_train: int = 2       # noisy placements of each training utterance
    silence_train: int = 700
    silence_test: int = 120
    speed_wpm: tuple = (120, 210)
    pitch: tuple = (25, 75)
    peak_dbfs: tuple = (-32.0, -2.0)
    noise_dbfs: tuple = (-80.0, -48.0)  # background RMS for speech clips
    silence_dbfs: tuple = (-90.0, -40.0)


def speakers(split):
    """(voice, variant) pairs of a split ("train" or "test"), in a fixed order."""
    out = []
    for v in VOICES:
        for var in VARIANTS:
            held = v in HELD_OUT_VOICES or var in HELD_OUT_VARIANTS
            if held == (split == "test"):
                out.append((v, var))
    return out


def _rng(seed, *keys):
    """A numpy Generator seeded from the run seed and string keys (stable across runs and platforms)."""
    h = hashlib.sha256(("|".join([str(seed)] + [str(k) for k in keys])).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def check_tools():
    """Raise N6Error unless espeak-ng and sox are on PATH."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise N6Error(f"{tool} not found; install it (e.g. `apt-get install -y espeak-ng sox`)")


def speak(word, voice, variant, speed, pitch):
    """espeak-ng -> sox (rate 16 kHz, 16-bit mono) -> int16 array with leading/trailing quiet trimmed."""
    esp = subprocess.run(["espeak-ng", "-v", f"{voice}+{variant}", "-s", str(int(speed)), "-p", str(int(pitch)),
                          "-a", "100", "--stdout", word], capture_output=True, check=True)
    sx = subprocess.run(["sox", "-t", "wav", "-", "-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1",
                         "-L", "-r", str(SAMPLE_RATE), "-", "rate", "-h"],
                        input=esp.stdout, capture_output=True, check=True)
    pcm = np.frombuffer(sx.stdout, dtype="<i2").astype(np.int16)
    return _trim(pcm)


def _trim(pcm, rel_db=-40.0):
    """Cut leading/trailing samples quieter than rel_db below the peak (10 ms hold margin)."""
    a = np.abs(pcm.astype(np.int32))
    if a.max() == 0:
        return pcm[:0]
    idx = np.nonzero(a >= a.max() * 10 ** (rel_db / 20))[0]
    lo, hi = max(0, idx[0] - 160), min(len(pcm), idx[-1] + 160)
    return pcm[lo:hi]


def _colored_noise(rng, n, kind):
    """Unit-RMS noise: 'white', 'pink' (1/f power) or 'brown' (1/f^2), shaped in the frequency domain."""
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    spec = np.fft.rfft(white)
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec = spec / (np.sqrt(f) if kind == "pink" else f)
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return x / np.sqrt(np.mean(x * x))


def _to_int16(x, rng):
    """Float samples in LSB units + TPDF dither (+-1 LSB) -> rounded, saturated int16."""
    d = rng.uniform(-0.5, 0.5, x.shape) + rng.uniform(-0.5, 0.5, x.shape)
    return np.clip(np.round(x + d), -32768, 32767).astype(np.int16)


def mix(utterance, rng, cfg: SynthConfig):
    """One 1 s clip: utterance at a random peak level and random offset over background noise + dither."""
    u = utterance.astype(np.float64)
    if len(u) > CLIP_SAMPLES:
        start = (len(u) - CLIP_SAMPLES) // 2
        u = u[start:start + CLIP_SAMPLES]
    peak = 32768.0 * 10 ** (rng.uniform(*cfg.peak_dbfs) / 20)
    u = u * (peak / max(1.0, np.abs(u).max()))
    x = np.zeros(CLIP_SAMPLES)
    off = int(rng.integers(0, CLIP_SAMPLES - len(u) + 1))
    x[off:off + len(u)] = u
    kind = ("white", "pink", "brown")[int(rng.integers(0, 3))]
    x += _colored_noise(rng, CLIP_SAMPLES, kind) * 32768.0 * 10 ** (rng.uniform(*cfg.noise_dbfs) / 20)
    return _to_int16(x, rng)


def silence(rng, cfg: SynthConfig):
    """A 1 s noise-only clip (white/pink/brown at a random level) with dither."""
    kind = ("white", "pink", "brown")[int(rng.integers(0, 3))]
    level = 32768.0 * 10 ** (rng.uniform(*cfg.silence_dbfs) / 20)
    return _to_int16(_colored_noise(rng, CLIP_SAMPLES, kind) * level, rng)


def _jobs(split, cfg):
    """(label, word, voice, variant, take) utterance jobs of a split, deterministic order."""
    takes = cfg.keyword_takes_train if split == "train" else cfg.keyword_takes_test
    n_unk = cfg.unknown_per_speaker_train if split == "train" else cfg.unknown_per_speaker_test
    jobs = []
    for voice, variant in speakers(split):
        for kw in KEYWORDS:
            jobs.extend((kw, kw, voice, variant, t) for t in range(takes))
        rng = _rng(cfg.seed, split, voice, variant, "unknown-words")
        for t, i in enumerate(rng.choice(len(UNKNOWN_WORDS), size=n_unk, replace=False)):
            jobs.append((UNKNOWN, UNKNOWN_WORDS[i], voice, variant, t))
    return jobs


def synthesize(split, cfg: SynthConfig, workers=2, log=None):
    """Build a split: returns (pcm int16 [N, 16000], labels int64 [N], speaker str [N], word str [N])."""
    check_tools()
    jobs = _jobs(split, cfg)

    def one(job):
        label, word, voice, variant, take = job
        rng = _rng(cfg.seed, split, voice, variant, word, take)
        speed = int(rng.integers(cfg.speed_wpm[0], cfg.speed_wpm[1] + 1))
        pitch = int(rng.integers(cfg.pitch[0], cfg.pitch[1] + 1))
        return speak(word, voice, variant, speed, pitch), rng

    with ThreadPoolExecutor(max_workers=workers) as pool:
        spoken = list(pool.map(one, jobs))
    mixes = cfg.mixes_per_take_train if split == "train" else 1
    pcm, labels, spk, words = [], [], [], []
    for (label, word, voice, variant, _), (utt, rng) in zip(jobs, spoken):
        if len(utt) < 800:
            if log:
                log(f"skip empty utterance {word!r} {voice}+{variant}")
            continue
        for _ in range(mixes):
            pcm.append(mix(utt, rng, cfg))
            labels.append(LABELS.index(label))
            spk.append(f"{voice}+{variant}")
            words.append(word)
    n_sil = cfg.silence_train if split == "train" else cfg.silence_test
    rng = _rng(cfg.seed, split, "silence")
    for i in range(n_sil):
        pcm.append(silence(rng, cfg))
        labels.append(LABELS.index(SILENCE))
        spk.append("noise")
        words.append(SILENCE)
    return (np.stack(pcm), np.array(labels, dtype=np.int64), np.array(spk), np.array(words))


def load_or_synthesize(cache_dir: Path, split, cfg: SynthConfig, log=None):
    """The split from cache_dir/<split>_pcm.npz, synthesizing and caching it first if absent."""
    path = Path(cache_dir) / f"{split}_pcm_{cfg.seed}.npz"
    if path.is_file():
        d = np.load(path, allow_pickle=False)
        return d["pcm"], d["labels"], d["speakers"], d["words"]
    pcm, labels, spk, words = synthesize(split, cfg, log=log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, pcm=pcm, labels=labels, speakers=spk, words=words)
    tmp.replace(path)
    return pcm, labels, spk, words
