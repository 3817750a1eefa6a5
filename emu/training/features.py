"""Training features: the float64 reference log-mel (emu.frontend.float_ref) of 1 s clips, as float32
[N, 1, n_mels, n_frames] (the model's NCHW input, mel-major); and the device's st-f16 int8 features for
evaluation when emu.frontend.st is available.

A 1 s clip at 16 kHz is exactly one patch (patch_length = (win - hop) + n_frames * hop = 16000 with the
bundled front end): the clip is the patch buffer, frame t starts at hop * t.
"""
from __future__ import annotations

import numpy as np

from emu.errors import N6Error
from emu.frontend.float_ref import FloatLogMel
from emu.frontend.params import FrontendParams

# The bundled device front end (ST audio getting-started log-mel, float16 on the Cortex-M55); quant_scale/zero-point
# come from the model.
BUNDLED_FRONTEND = FrontendParams(profile="st-f16", sample_rate=16000, n_fft=1024, win_length=640,
                                  hop_length=320, n_mels=40, fmin=50.0, fmax=7500.0, mel_scale="slaney",
                                  mel_norm="slaney", mel_source="librosa", spectrum="power", log="ln",
                                  n_frames=49)


def _check_clips(pcm, params):
    if pcm.dtype != np.int16 or pcm.ndim != 2 or pcm.shape[1] != params.patch_length:
        raise N6Error(f"clips are {pcm.dtype} {pcm.shape}; expected int16 [N, {params.patch_length}] "
                      f"(one patch per clip)")


def float_features(pcm, params: FrontendParams = BUNDLED_FRONTEND, batch=256):
    """int16 [N, patch_length] -> float32 [N, 1, n_mels, n_frames] natural-log mel (float64 math)."""
    pcm = np.asarray(pcm)
    _check_clips(pcm, params)
    ref = FloatLogMel(params)
    out = np.empty((len(pcm), 1, params.n_mels, params.n_frames), dtype=np.float32)
    for i in range(0, len(pcm), batch):
        out[i:i + batch, 0] = ref.batch(pcm[i:i + batch])
    if not np.isfinite(out).all():
        raise N6Error("a clip has a zero mel energy (digital silence) giving ln(0) = -inf; add dither")
    return out


def device_features(pcm, params: FrontendParams):
    """int16 [N, patch_length] -> int8 [N, 1, n_mels, n_frames] from the emulator's ST column front end
    (params.profile st-f16/st-f32, params.quant_scale/zero_point set to the model's input quantization)."""
    try:
        from emu.frontend import st
    except ImportError as exc:
        raise N6Error(f"the ST front end emu.frontend.st is not importable ({exc}); "
                      f"evaluate with float features only") from exc
    pcm = np.asarray(pcm)
    _check_clips(pcm, params)
    state = st.prepare(params)
    out = np.empty((len(pcm), 1, params.n_mels, params.n_frames), dtype=np.int8)
    for i in range(len(pcm)):
        out[i, 0] = st.compute_patch(np.ascontiguousarray(pcm[i]), state, params)
    return out
