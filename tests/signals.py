"""Test PCM signals (int16): the kinds every front-end oracle test draws from.

speech (harmonics with a syllable envelope and a little noise), quiet / loud (the same at -55 / -1 dBFS),
silence, full (alternating full-scale samples), clip (clipped loud noise), noise60 (white noise at
-60 dBFS), square (full-scale 440 Hz square wave), dc (constant +32767), sine (1 kHz at -6 dBFS)."""
import numpy as np

KINDS = ("speech", "quiet", "loud", "silence", "full", "clip", "noise60", "square", "dc", "sine")


def signal(kind, n, rng, rate=16000):
    """n int16 samples of the given kind (deterministic for a given rng state)."""
    t = np.arange(n) / rate
    if kind == "silence":
        return np.zeros(n, np.int16)
    if kind == "full":
        return np.where(np.arange(n) % 2 == 0, 32767, -32768).astype(np.int16)
    if kind == "clip":
        return np.clip(rng.standard_normal(n) * 40000, -32768, 32767).astype(np.int16)
    if kind == "noise60":
        return np.clip(np.rint(rng.standard_normal(n) * 32768 * 10 ** (-60 / 20)), -32768, 32767).astype(np.int16)
    if kind == "square":
        return np.where(np.sin(2 * np.pi * 440 * t) >= 0, 32767, -32768).astype(np.int16)
    if kind == "dc":
        return np.full(n, 32767, np.int16)
    if kind == "sine":
        return np.rint(np.sin(2 * np.pi * 1000 * t + rng.random()) * 16384).astype(np.int16)
    f0 = 100 + 150 * rng.random()
    x = sum(np.sin(2 * np.pi * f0 * h * t + 6 * rng.random()) / h for h in range(1, 25))
    x *= 0.55 + 0.45 * np.sin(2 * np.pi * 3 * t + rng.random())
    amp = {"speech": 4000, "quiet": 60, "loud": 30000}[kind]
    return np.clip(x / np.abs(x).max() * amp + rng.standard_normal(n) * amp / 100, -32768, 32767).astype(np.int16)
