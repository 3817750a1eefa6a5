"""Float64 reference of the ST log-mel column algorithm (the "PC" features: the device algorithm without its rounding).

Contract, per frame t of a patch (frame start = hop*t in the patch buffer, as the ST app frames it):
    x      = q15 / 32768 (float64), win_length samples placed at pad_left = (n_fft - win)//2 of n_fft zeros
    xw     = x * hann_periodic(win_length)                     (float64 window, no f16 table rounding)
    P[k]   = |rfft(xw)[k]|^2   (spectrum "power") or |X[k]| ("magnitude"), unnormalised
    mel    = M @ P             M = the float32 filter bank of `mel_source`, widened to float64
    L      = ln(mel)  (log "ln", no epsilon: mel == 0 gives -inf)  or  max(10*log10(mel), -top_db)  ("db")
Output layout: float64 [n_mels, n_frames], mel-major (buf[mel * n_frames + frame] when flattened).
`quantize_features` is the float-side int8 quantization with an explicit rounding rule; the device's own
quantization (f16 inverse scale, roundf, -inf cast) belongs to the device front end, not here.
"""
from __future__ import annotations

import numpy as np

from emu.frontend.params import FrontendError, FrontendParams
from emu.frontend.tables import hann_periodic, mel_matrix  # noqa: F401  (mel_matrix: public here too)


class FloatLogMel:
    """Float64 log-mel of whole patches with tables prepared once (window, filter bank)."""

    def __init__(self, params: FrontendParams):
        self.params = params
        self.window = hann_periodic(params.win_length)
        self.mel = mel_matrix(params).astype(np.float64)
        self.pad_left = (params.n_fft - params.win_length) // 2

    def patch(self, pcm: np.ndarray) -> np.ndarray:
        """int16 [patch_length] -> float64 [n_mels, n_frames] (see module contract)."""
        return self.batch(np.asarray(pcm)[np.newaxis, :])[0]

    def batch(self, pcm: np.ndarray) -> np.ndarray:
        """int16 [batch, patch_length] -> float64 [batch, n_mels, n_frames]."""
        p = self.params
        pcm = np.asarray(pcm)
        if pcm.dtype != np.int16:
            raise FrontendError(f"PCM dtype is {pcm.dtype}, expected int16 (q15); convert with "
                                f"np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)")
        if pcm.ndim != 2 or pcm.shape[1] != p.patch_length:
            raise FrontendError(f"PCM batch shape {pcm.shape} must be [batch, {p.patch_length}] "
                                f"(= (win - hop) + n_frames * hop samples per patch)")
        x = pcm.astype(np.float64) / 32768.0
        starts = p.hop_length * np.arange(p.n_frames)
        idx = starts[:, np.newaxis] + np.arange(p.win_length)[np.newaxis, :]
        frames = x[:, idx] * self.window                                  # [batch, n_frames, win]
        buf = np.zeros(frames.shape[:2] + (p.n_fft,), dtype=np.float64)
        buf[:, :, self.pad_left:self.pad_left + p.win_length] = frames
        spec = np.fft.rfft(buf, axis=-1)
        power = spec.real * spec.real + spec.imag * spec.imag
        mag = power if p.spectrum == "power" else np.sqrt(power)
        mel = np.einsum("mk,bfk->bmf", self.mel, mag)                     # [batch, n_mels, n_frames]
        with np.errstate(divide="ignore"):
            if p.log == "ln":
                return np.log(mel)
            return np.maximum(10.0 * np.log10(mel), -float(p.top_db))


def logmel_patch(pcm: np.ndarray, params: FrontendParams) -> np.ndarray:
    """int16 [patch_length] -> float64 log-mel [n_mels, n_frames] (one-shot convenience)."""
    return FloatLogMel(params).patch(pcm)


def quantize_features(features: np.ndarray, scale: float, zero_point: int, rounding: str) -> np.ndarray:
    """float features -> int8 clamp(round(x / scale) + zp); rounding "half-even" (ONNX QuantizeLinear,
    np.round) or "half-away" (C roundf); -inf -> -128, NaN is an error. Float64 division, zero-point added
    after rounding: not the app's rule (emu.frontend.st._quantize: round(x * T(1/scale) + zp) in float32, then
    the C cast, -inf -> 0), so the two are kept apart on purpose."""
    f = np.asarray(features, dtype=np.float64)
    if np.isnan(f).any():
        raise FrontendError("features contain NaN; check the PCM input and the mel table")
    if not scale > 0:
        raise FrontendError(f"quantization scale {scale!r} must be > 0")
    v = f / float(scale)
    if rounding == "half-even":
        r = np.round(v)
    elif rounding == "half-away":
        r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    else:
        raise FrontendError(f"rounding {rounding!r} is not supported; use 'half-even' or 'half-away'")
    r = np.clip(r + int(zero_point), -128, 127)
    return r.astype(np.int8)
