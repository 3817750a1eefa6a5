"""Front-end registry: profile name -> FrontendSpec (typed config, prepare, stages), and FrontEnd, the one
interface the device chain and the CLI use whatever the profile.

    spec = FRONTENDS["st-f16"]
    state = spec.prepare(params)                  # params: FrontendParams (+ its [frontend.q15] for cmsis-q15)
    stages = spec.stages(pcm_patch, state)        # canonical stage names, below
    fe = FrontEnd(params); feats, silence = fe.patch(pcm_patch)

Canonical stages of one patch (T = n_frames). Signal-domain stages are frame-major (one row per frame);
mel-domain stages (mel, log, mfcc, features) are coefficient-major [coefficient, frame], the order the app
writes the network input (buf[mel * n_frames + frame]). A stage a profile does not compute is absent;
FrontEnd.layout(name) describes each stage of the configured profile in one line.

    stage        st-f16 / st-f32             cmsis-q15 logmel            cmsis-q15 mfcc
    pcm          int16 [patch_length]        int16 [patch_length]        int16 [patch_length]
    framed       float32 [T, n_fft]          int16 [T, n_fft]            int16 [T, n_fft]
    windowed     float32 [T, n_fft]          int16 [T, n_fft]            int16 [T, n_fft] (peak-normalised)
    fft          float32 [T, n_fft] packed   int16 [T, 2*n_fft] full     int16 [T, 2*n_fft] full
    power        float32 [T, n_bins]         -                           -
    spectrum     float32 [T, n_bins]         int16 [T, n_bins]           int16 [T, n_bins]
    mel          float32 [n_mels, T]         int32 [n_mels, T]           -
    log          float32 [n_mels, T]         int32 [n_mels, T]           int32 [n_mels, T]
    mfcc         -                           -                           int16 [n_mfcc, T]
    features     int8 [n_mels, T]            int8 [n_mels, T]            int8 [n_mfcc, T]
    silence_sum  float32 scalar              -                           -

'fft' is the FFT output and 'spectrum' what feeds the mel filter bank (power or magnitude); 'power' (st) and
'mfcc' (cmsis-q15 mfcc mode) are profile extras. st-f16 arrays are float32 holding binary16 values.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from emu.frontend import cmsis_q15, st
from emu.frontend.params import FrontendError, FrontendParams


@dataclass(frozen=True)
class FrontendSpec:
    """One front-end profile: its typed configuration and its entry points (see the module doc)."""
    name: str                          # the [frontend].profile value
    config: type                       # the typed [frontend] table
    section: Optional[type]            # the typed profile sub-table ([frontend.q15]), None when it has none
    prepare: Callable                  # prepare(params) -> state (the tables the MCU holds)
    compute_stages: Callable           # compute_stages(pcm_patch, state) -> dict of canonical stages but 'pcm'
    coefficients: Callable             # coefficients(state) -> ("mel" | "mfcc", count): rows of 'features'
    layouts: Callable                  # layouts(state) -> {stage: one-line layout} for every stage it makes
    has_silence_sum: bool              # 'silence_sum' exists (the app's silence gate signal)
    float_log: bool                    # 'log' is the float log-mel a model's own QuantizeLinear can take

    def stages(self, pcm_patch, state) -> dict:
        """Every canonical stage of one int16 patch (module doc), 'pcm' first."""
        out = {"pcm": np.asarray(pcm_patch)}
        out.update(self.compute_stages(pcm_patch, state))
        return out


def _mels(state):
    return "mel", int(state.params.n_mels)


def _q15_coefficients(state):
    if state.q15.mode == "mfcc":
        return "mfcc", int(state.q15.n_mfcc)
    return _mels(state)


def _pcm_and_framed(p, sample, value):
    """Layouts of the two stages every profile shares (`value`: how a framed sample holds the pcm sample)."""
    return {
        "pcm": f"int16 [{p.patch_length}] the patch buffer: win - hop kept samples, then n_frames * hop new ones",
        "framed": f"{sample} [{p.n_frames}, {p.n_fft}] frame-major: {value} of pcm[hop*t : hop*t + win] at offset "
                  f"{(p.n_fft - p.win_length) // 2}, zeros elsewhere",
    }


def _st_layouts(state):
    p = state.params
    T, m, b = p.n_frames, p.n_mels, p.n_bins
    v = "float32 (binary16 values)" if p.profile == "st-f16" else "float32"
    log = "ln" if p.log == "ln" else "10*log10"
    return dict(_pcm_and_framed(p, v, "q15 / 32768"), **{
        "windowed": f"{v} [{T}, {p.n_fft}] frame-major: framed * window",
        "fft": f"{v} [{T}, {p.n_fft}] frame-major: arm_rfft_fast packed [X0.re, X(N/2).re, X1.re, X1.im, ...]",
        "power": f"{v} [{T}, {b}] frame-major: |X[k]|^2, k = 0..n_fft/2",
        "spectrum": f"{v} [{T}, {b}] frame-major: {p.spectrum} spectrum, the mel filter bank's input",
        "mel": f"{v} [{m}, {T}] mel-major: mel energies after the app's floor",
        "log": f"{v} [{m}, {T}] mel-major: {log} of mel",
        "features": f"int8 [{m}, {T}] mel-major: sat8(round(log * inv_scale + zero_point)), the app's quantization",
        "silence_sum": f"{v} scalar: the patch's running sum of every spectrum bin (the app's silence gate)",
    })


def _q15_layouts(state):
    p, q = state.params, state.q15
    T, m, b, n = p.n_frames, p.n_mels, p.n_bins, p.n_fft
    out = dict(_pcm_and_framed(p, "int16", "a copy"), **{
        "windowed": f"int16 [{T}, {n}] frame-major: framed times the q15 window (arm_mult_q15)",
        "fft": f"int16 [{T}, {2 * n}] frame-major: arm_rfft_q15 output, interleaved re/im of all n_fft bins, "
               f"DFT/n_fft",
        "spectrum": f"int16 [{T}, {b}] frame-major: " + ("3.13 power (arm_cmplx_mag_squared_q15)"
                                                         if p.spectrum == "power" and q.mode == "logmel"
                                                         else "2.14 magnitude (arm_cmplx_mag_q15)"),
    })
    if q.mode == "mfcc":
        out["windowed"] = (f"int16 [{T}, {n}] frame-major: framed after arm_mfcc_q15's peak normalisation, "
                           f"times the q15 window")
        out["log"] = f"int32 [{m}, {T}] mel-major: ln of the mel energies in q5.26 (before >> 19 to q8.7)"
        out["mfcc"] = f"int16 [{q.n_mfcc}, {T}] coefficient-major: arm_mfcc_q15 output, q8.7"
        out["features"] = f"int8 [{q.n_mfcc}, {T}] coefficient-major: the MFCCs requantized to int8"
        return out
    fmt = "q4.11" if q.log_precision == "q15" else "q5.26"
    out["mel"] = (f"int32 [{m}, {T}] mel-major: (q63 dot product + {q.mel_bias}) >> {q.mel_shift}, "
                  + ("sat16" if q.log_precision == "q15" else "sat31"))
    out["log"] = f"int32 [{m}, {T}] mel-major: ln of the mel energy in {fmt}"
    out["features"] = f"int8 [{m}, {T}] mel-major: the log requantized to int8"
    return out


def _st_spec(name):
    return FrontendSpec(name=name, config=FrontendParams, section=None, prepare=st.prepare,
                        compute_stages=st.compute_stages, coefficients=_mels, layouts=_st_layouts,
                        has_silence_sum=True, float_log=True)


FRONTENDS = {
    "st-f16": _st_spec("st-f16"),
    "st-f32": _st_spec("st-f32"),
    "cmsis-q15": FrontendSpec(name="cmsis-q15", config=FrontendParams, section=cmsis_q15.Q15Params,
                              prepare=cmsis_q15.prepare, compute_stages=cmsis_q15.compute_stages,
                              coefficients=_q15_coefficients, layouts=_q15_layouts, has_silence_sum=False,
                              float_log=False),
}


def frontend_spec(profile):
    """The registry entry of a profile name; an unknown name is a one-line error naming the known ones."""
    try:
        return FRONTENDS[profile]
    except KeyError:
        raise FrontendError(f"front-end profile {profile!r} is not registered; use one of "
                            f"{', '.join(FRONTENDS)}") from None


FRONTEND_CACHE_FORMAT = 1


def _prepared(spec, params):
    """spec.prepare(params), kept by emu.diskcache (frontends/) for the ST profiles when the tables depend on the
    parameters alone (a generated mel filter bank, not a file named by mel_source): the key is the parameters' JSON, the emulator
    version and the SHA-256 of the front-end sources (emu/frontend/*.py, cheader.py, fixedpoint.py)."""
    from emu.frontend.tables import TORCHAUDIO_FLAVORS
    if spec.name not in ("st-f16", "st-f32") or not (params.mel_source == "librosa"
                                                     or params.mel_source in TORCHAUDIO_FLAVORS):
        return spec.prepare(params)
    import json

    from emu import __version__, diskcache
    text = json.dumps(params.to_dict(), sort_keys=True, default=str)
    key = (f"{spec.name}-{diskcache.text_digest(text)[:32]}-{__version__}-{FRONTEND_CACHE_FORMAT}-"
           f"{diskcache.source_digest('frontend', 'cheader.py', 'fixedpoint.py', 'f32math.py')}")
    return diskcache.cached("frontends", key, object, lambda: spec.prepare(params))


class FrontEnd:
    """One front-end profile behind one interface: FrontEnd(params, backend) prepares the profile's state once;
    features are int8 [n_coefs, n_frames] (coefficient-major) for every profile. backend "numba": the Numba
    kernels (batched over lanes and threads); "c": the C twins (emu._c_frontend_st / emu._c_frontend_q15), one
    patch per call, no Numba loaded; the same values (tests/test_backend_auto.py)."""

    def __init__(self, params, backend="numba"):
        from emu.kernels.backends import BACKENDS
        if backend not in BACKENDS:
            raise FrontendError(f"unknown front-end backend {backend!r}; choose one of {list(BACKENDS)}")
        self.spec = frontend_spec(params.profile)
        self.params = params
        self.backend = backend
        self._c_stages = _c_twin_stages(self.spec.name) if backend == "c" else None
        self.state = _prepared(self.spec, params)
        kind, count = self.spec.coefficients(self.state)
        self.n_coefs = count
        self.frame_major = kind == "mfcc"     # MFCCs: the model (MLPerf KWS) reads them frame-major
        self.has_silence_sum = self.spec.has_silence_sum
        self._layouts = self.spec.layouts(self.state)
        self._fast = self.spec.name in ("st-f16", "st-f32") and st.fast_path(self.state)
        self._q15 = self.spec.name == "cmsis-q15"     # int8 features straight from the q15 patch / batch kernels

    def stages(self, pcm_patch):
        """Every stage of one patch under its canonical name (module doc), a dict of arrays."""
        if self._c_stages is not None:
            out = {"pcm": np.asarray(pcm_patch)}
            out.update(self._c_stages(pcm_patch, self.state))
            return out
        return self.spec.stages(pcm_patch, self.state)

    def layout(self, name):
        """One line: dtype, shape, order and meaning of stage `name` under this configuration."""
        try:
            return self._layouts[name]
        except KeyError:
            raise FrontendError(f"the {self.spec.name} front end has no stage {name!r}; its stages: "
                                f"{', '.join(self._layouts)}") from None

    def patch(self, pcm_patch, boundary="int8"):
        """(features [n_coefs, n_frames], silence sum or NaN when the profile has no gate signal).
        boundary "int8": the app's int8 quantization; "float32": the float log-mel handed to the model's own
        QuantizeLinear (st-* profiles: the device-typed log stage, -inf where the mel energy underflowed)."""
        if boundary != "int8" and not self.spec.float_log:
            floats = ", ".join(n for n, f in FRONTENDS.items() if f.float_log)
            raise FrontendError(f"the {self.spec.name} front end makes int8 features only; a {boundary} input "
                                f"boundary needs a float log-mel front end ({floats})")
        if self._c_stages is not None:
            out = self._c_stages(pcm_patch, self.state)
            if boundary == "int8":
                return out["features"], float(out.get("silence_sum", np.nan))
            return np.ascontiguousarray(out["log"], np.float32), float(out.get("silence_sum", np.nan))
        if self._fast:
            f, lg, sil = st.features_batch(st.check_patch(pcm_patch, self.params)[None], self.state)
            return (f[0] if boundary == "int8" else lg[0]), float(sil[0])
        if self._q15 and boundary == "int8":    # compute_stages' 'features' without the stage records
            return cmsis_q15.compute_patch(pcm_patch, self.state), float("nan")
        out = self.spec.compute_stages(pcm_patch, self.state)
        feats = out["features"] if boundary == "int8" else np.ascontiguousarray(out["log"], np.float32)
        return feats, float(out.get("silence_sum", np.nan))

    def patches(self, pcm_patches, boundary="int8"):
        """patch() of P patches at once (int16 [P, patch_length]): (features [P, n_coefs, n_frames], silence sums
        float32 [P], NaN without a gate signal). The st-f16 Helium build computes them in one batched call over
        Numba's threads (st.features_batch), cmsis-q15 in one batched call of its lane kernels
        (cmsis_q15.compute_patches); the values are patch()'s, whatever the thread count."""
        a = np.asarray(pcm_patches)
        if self._fast and self.backend == "numba" and boundary in ("int8", "float32"):
            f, lg, sil = st.features_batch(a, self.state)
            return (f if boundary == "int8" else lg), sil
        if self._q15 and self.backend == "numba" and boundary == "int8" and a.size:
            f = cmsis_q15.compute_patches(a, self.state)
            return f, np.full(f.shape[0], np.nan, np.float32)
        out = [self.patch(x, boundary) for x in a]
        p = self.params
        if not out:
            dtype = np.int8 if boundary == "int8" else np.float32
            return np.zeros((0, self.n_coefs, p.n_frames), dtype), np.zeros(0, np.float32)
        return np.stack([f for f, _ in out]), np.asarray([s for _, s in out], np.float32)


def _c_twin_stages(profile):
    """compute_stages(pcm_patch, state) -> the canonical stages but 'pcm', by the profile's C twin; raises the
    one-line error naming the build step when that twin is not built."""
    if profile == "cmsis-q15":
        from emu.frontend import ctwin_q15
        ctwin_q15.need()
        return ctwin_q15.compute_stages
    from emu.frontend import ctwin_st
    ctwin_st.need()
    return ctwin_st.compute_stages_c
