"""Front-end parameters: one frozen dataclass, the `[frontend]` table of the device TOML.

TOML `[frontend]` fields (defaults = the bundled KWS device front end: the ST audio getting-started log-mel):

    profile           "st-f16" | "st-f32" | "cmsis-q15"    device arithmetic (default "st-f16")
    isa               "helium" | "scalar": the CMSIS-DSP build the core runs. "helium" = the Cortex-M55's
                      MVE code paths (the STM32N6: arm_rfft_fast_*, arm_cmplx_mag_squared_*, arm_dot_prod_*
                      as vector code, and the application's own statements with the target's __fp16
                      semantics: float32 expressions, a*b+c fused into one vfma.f32, f16 on store);
                      "scalar" = the portable C build (cores without Helium, e.g. STM32U5, or a host).
                      Default "helium" for st-f16/st-f32; cmsis-q15 is emulated for "scalar" only
    optimization      "Os" | "Ofast": the build's optimisation level (the application's Makefile uses -Os,
                      its IDE project -Ofast); emulated for isa = "helium"   "Os"
    inplace_power     the application computes the power spectrum in the FFT output buffer: it stores the
                      DC power at element 0 and the Nyquist power at element n_fft/2, then
                      arm_cmplx_mag_squared reads element n_fft/2 as Re X[n_fft/4], so the power at bin
                      n_fft/4 is f16(P_nyquist^2) + Im(X[n_fft/4])^2, rounded once. false = a patched app
                      with a separate power buffer. Default true for st-f16 (ST's float16 column), false
                      for st-f32 (ST's float32 column keeps two buffers)
    sample_rate       Hz, int                              16000
    n_fft             FFT length, power of two             1024
    win_length        window length <= n_fft, centred in the FFT buffer (pad_left = (n_fft-win)//2)   640
    hop_length        samples between frame starts         320
    n_mels            mel filters                          40
    fmin, fmax        filter bank edges in Hz, fmax <= sample_rate/2 (None = sample_rate/2)   50, 7500
    mel_scale         "slaney" | "htk"                     "slaney"
    mel_norm          "slaney" | "none"                    "slaney" (area normalisation like librosa)
    mel_source        "librosa" | "torchaudio-avx512" | "torchaudio-avx2" (= "torchaudio") | "torchaudio-default"
                      (torchaudio.functional.melscale_fbanks as x86-64 torch computes it with that CPU capability)
                      | path to a [n_mels, n_fft/2+1] .npy or a GenHeaders-style .c/.h table   "librosa"
    spectrum          "power" (|X|^2) | "magnitude" (sqrt of the power, via float32 sqrtf)   "power"
    log               "ln" (natural log) | "db" (10*log10, clamped at -top_db)   "ln"
    top_db            dB floor magnitude for log = "db"; inf = no floor, as ST's app (HUGE_VALF)   inf
    n_frames          frames per patch                     49
    quant_scale       model input scale (float) or None when only float features are wanted   None
    quant_zero_point  model input zero-point (int8)        0
    inv_scale_dtype   "f16" | "f32": type of the stored 1/scale the app multiplies by   "f16"
    quant_rounding    "half-away" (C roundf, the device) | "half-even" (np.round, typical training)
                                                           "half-away"
    neg_inf_cast      "zero" | "saturate": the float -> int cast before sat8. "zero" = the device's C
                      cast ((int16) for st-f16, (int32) for st-f32) as Arm VCVT does it (saturate to
                      int32, NaN -> 0), so -inf -> INT32_MIN -> low 16 bits 0 -> feature 0 (not -128);
                      "saturate" = clamp to int8   "zero"
    f16_intermediates "per-op" (every operation rounded to f16) | "f32" (statement-level float32
                      expressions, rounded to f16 when stored)   "per-op"      (isa = "scalar" only)
    accumulation      "scalar" | "lanes8" (8 lanes, lane sums folded at the end) for the mel dot
                      products   "scalar"                                     (isa = "scalar" only)
    fma               fused multiply-add in the mel dot products (bool)   false   (isa = "scalar" only)
    q15               profile section for "cmsis-q15" (a mapping owned by emu/frontend/cmsis_q15.py)   None

isa = "helium" fixes the arithmetic to what the Cortex-M55 build computes (proven on QEMU's Cortex-M55).
For isa = "scalar" the portable-C build's unknowns (f16_intermediates, accumulation, fma) are switches
with the documented defaults: per-operation IEEE binary16 RNE, scalar order, no FMA. neg_inf_cast is a
switch for both (-inf -> 0 by default).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from emu.errors import N6Error


class FrontendError(N6Error, ValueError):
    """Invalid front-end parameters or tables (one line: the problem and the fix)."""


PROFILES = ("st-f16", "st-f32", "cmsis-q15")
MEL_SCALES = ("slaney", "htk")
MEL_NORMS = ("slaney", "none")
SPECTRA = ("power", "magnitude")
LOGS = ("ln", "db")
INV_SCALE_DTYPES = ("f16", "f32")
QUANT_ROUNDINGS = ("half-away", "half-even")
NEG_INF_CASTS = ("zero", "saturate")
F16_INTERMEDIATES = ("per-op", "f32")
ACCUMULATIONS = ("scalar", "lanes8")
ISAS = ("helium", "scalar")
OPTIMIZATIONS = ("Os", "Ofast")


# upper bounds of the integer sizes, checked before anything of that size is allocated (sample_rate: 8x 48 kHz;
# n_mels and n_frames: far above any keyword-spotting front end)
SIZE_LIMITS = dict(sample_rate=384000, n_fft=4096, win_length=4096, hop_length=4096, n_mels=1024, n_frames=4096)


def _show(v):
    """A TOML value for a message: repr, escaped (errors.printable) and cut to a readable length."""
    from emu.errors import printable
    return printable(repr(v), 60)


def _choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise FrontendError(f"frontend.{name} = {_show(value)} is not supported; use one of {', '.join(allowed)}")


@dataclass(frozen=True)
class FrontendParams:
    profile: str = "st-f16"
    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 640
    hop_length: int = 320
    n_mels: int = 40
    fmin: float = 50.0
    fmax: Optional[float] = 7500.0
    mel_scale: str = "slaney"
    mel_norm: str = "slaney"
    mel_source: str = "librosa"
    spectrum: str = "power"
    log: str = "ln"
    top_db: float = float("inf")
    n_frames: int = 49
    quant_scale: Optional[float] = None
    quant_zero_point: int = 0
    inv_scale_dtype: str = "f16"
    quant_rounding: str = "half-away"
    neg_inf_cast: str = "zero"
    f16_intermediates: str = "per-op"
    accumulation: str = "scalar"
    fma: bool = False
    isa: Optional[str] = None
    optimization: str = "Os"
    inplace_power: Optional[bool] = None
    q15: Optional[Any] = field(default=None, compare=True, hash=False)

    def __post_init__(self):
        _choice("profile", self.profile, PROFILES)
        _choice("mel_scale", self.mel_scale, MEL_SCALES)
        _choice("mel_norm", self.mel_norm, MEL_NORMS)
        _choice("spectrum", self.spectrum, SPECTRA)
        _choice("log", self.log, LOGS)
        _choice("inv_scale_dtype", self.inv_scale_dtype, INV_SCALE_DTYPES)
        _choice("quant_rounding", self.quant_rounding, QUANT_ROUNDINGS)
        _choice("neg_inf_cast", self.neg_inf_cast, NEG_INF_CASTS)
        _choice("f16_intermediates", self.f16_intermediates, F16_INTERMEDIATES)
        _choice("accumulation", self.accumulation, ACCUMULATIONS)
        # None = the profile's device default, resolved here so that settings record the value used
        if self.isa is None:
            object.__setattr__(self, "isa", "scalar" if self.profile == "cmsis-q15" else "helium")
        if self.inplace_power is None:
            object.__setattr__(self, "inplace_power", self.profile == "st-f16")
        _choice("isa", self.isa, ISAS)
        _choice("optimization", self.optimization, OPTIMIZATIONS)
        if not isinstance(self.inplace_power, bool):
            raise FrontendError(f"frontend.inplace_power = {self.inplace_power!r} must be true or false")
        if self.profile == "cmsis-q15":
            if self.isa != "scalar":
                raise FrontendError('frontend.isa = "helium" is not emulated for cmsis-q15 (its Helium q15 '
                                    'paths are not reproduced); set isa = "scalar"')
            if self.inplace_power:
                raise FrontendError("frontend.inplace_power applies to the ST column profiles; remove it for cmsis-q15")
        if self.isa == "helium":
            fixed = [(n, v) for n, v, d in (("f16_intermediates", self.f16_intermediates, "per-op"),
                                             ("accumulation", self.accumulation, "scalar"), ("fma", self.fma, False))
                     if v != d]
            if fixed:
                raise FrontendError(f"frontend.{fixed[0][0]} = {fixed[0][1]!r} is a switch of the portable-C build; "
                                    f'the Helium build\'s arithmetic is fixed: remove it or set isa = "scalar"')
        elif self.optimization != "Os":
            raise FrontendError(f'frontend.optimization = "{self.optimization}" is emulated for isa = "helium" '
                                f'only; the scalar build is the portable C at -Os: remove it or set isa = "helium"')
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "n_frames"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise FrontendError(f"frontend.{name} = {_show(v)} must be a positive integer")
            if v > SIZE_LIMITS[name]:   # checked before any table or buffer of that size is allocated
                raise FrontendError(f"frontend.{name} = {v} is larger than the emulator supports (at most "
                                    f"{SIZE_LIMITS[name]}); use a device-sized value")
        for name in ("fmin", "fmax", "top_db", "quant_scale"):
            v = getattr(self, name)
            if v is None and name in ("fmax", "quant_scale"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                raise FrontendError(f"frontend.{name} = {_show(v)} must be a number")
        if isinstance(self.quant_zero_point, bool) or not isinstance(self.quant_zero_point, int):
            raise FrontendError(f"frontend.quant_zero_point = {_show(self.quant_zero_point)} must be an integer")
        if not isinstance(self.mel_source, str) or not self.mel_source:
            raise FrontendError(f"frontend.mel_source = {_show(self.mel_source)} must be \"librosa\", "
                                f"\"torchaudio-avx2\" (or -avx512, -default) or the path of a .npy/.h/.c table")
        if self.n_fft & (self.n_fft - 1):
            raise FrontendError(f"frontend.n_fft = {self.n_fft} is not a power of two; use e.g. 512 or 1024")
        if self.n_fft < 32 or self.n_fft > 4096:
            raise FrontendError(f"frontend.n_fft = {self.n_fft} is outside CMSIS-DSP's rfft_fast range; use 32..4096")
        if self.win_length > self.n_fft:
            raise FrontendError(f"frontend.win_length = {self.win_length} exceeds n_fft = {self.n_fft}; "
                                f"shorten the window or raise n_fft")
        if self.hop_length > self.win_length:
            raise FrontendError(f"frontend.hop_length = {self.hop_length} exceeds win_length = "
                                f"{self.win_length}; the app keeps win-hop samples between patches")
        if not isinstance(self.fma, bool):
            raise FrontendError(f"frontend.fma = {self.fma!r} must be true or false")
        if not 0.0 <= float(self.fmin) < self.fmax_hz:
            raise FrontendError(f"frontend.fmin = {self.fmin} must be >= 0 and below fmax = {self.fmax_hz}")
        if self.fmax_hz > self.sample_rate / 2:
            raise FrontendError(f"frontend.fmax = {self.fmax} exceeds sample_rate/2 = {self.sample_rate / 2}; "
                                f"lower fmax")
        if self.quant_scale is not None and not float(self.quant_scale) > 0.0:
            raise FrontendError(f"frontend.quant_scale = {self.quant_scale!r} must be > 0")
        if not -128 <= int(self.quant_zero_point) <= 127:
            raise FrontendError(f"frontend.quant_zero_point = {self.quant_zero_point} is not an int8; use -128..127")
        if not float(self.top_db) > 0.0:
            raise FrontendError(f"frontend.top_db = {self.top_db} must be > 0")

    @property
    def fmax_hz(self) -> float:
        """fmax in Hz, sample_rate/2 when not given."""
        return float(self.sample_rate) / 2 if self.fmax is None else float(self.fmax)

    @property
    def build(self) -> str:
        """The device build in words, e.g. "st-f16 helium -Os" or "st-f32 scalar" (CLI lines name it)."""
        if self.isa == "helium":
            return f"{self.profile} helium -{self.optimization}"
        return f"{self.profile} {self.isa}"

    @property
    def n_bins(self) -> int:
        """Non-redundant FFT bins n_fft/2 + 1 (DC .. Nyquist)."""
        return self.n_fft // 2 + 1

    @property
    def keep_samples(self) -> int:
        """Samples a patch keeps from the previous one (win - hop; zeros before the first patch), as the ST app frames its patches."""
        return self.win_length - self.hop_length

    @property
    def new_samples(self) -> int:
        """New samples per patch (n_frames * hop): the stride of the app's patches in the stream."""
        return self.n_frames * self.hop_length

    @property
    def patch_length(self) -> int:
        """Samples in one patch buffer: keep_samples + new_samples = (n_frames - 1) * hop + win."""
        return self.keep_samples + self.new_samples

    def to_dict(self) -> dict:
        """Plain mapping for the TOML `[frontend]` table (None entries are omitted: TOML has no null)."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> "FrontendParams":
        """Build from a `[frontend]` mapping; unknown keys are an error naming the key."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise FrontendError(f"unknown [frontend] key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}")
        return cls(**d)

    def replace(self, **changes) -> "FrontendParams":
        """A copy with some fields changed (validated again). A new profile takes its own default for
        inplace_power, and for isa when moving to or from cmsis-q15, unless they are given too."""
        if "profile" in changes and changes["profile"] != self.profile:
            changes.setdefault("inplace_power", None)
            if "cmsis-q15" in (self.profile, changes["profile"]):
                changes.setdefault("isa", None)
        return dataclasses.replace(self, **changes)


def from_toml(text: str) -> FrontendParams:
    """Parse a TOML document and return its `[frontend]` table as FrontendParams (defaults if absent)."""
    import tomllib
    return FrontendParams.from_dict(tomllib.loads(text).get("frontend", {}))


def to_toml(params: FrontendParams) -> str:
    """The `[frontend]` table as TOML text (scalars only; a nested q15 mapping becomes [frontend.q15])."""
    lines = ["[frontend]"]
    sub = None
    for k, v in params.to_dict().items():
        if isinstance(v, dict):
            sub = (k, v)
            continue
        lines.append(f"{k} = {toml_value(v)}")
    if sub is not None:
        lines.append(f"\n[frontend.{sub[0]}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in sub[1].items())
    return "\n".join(lines) + "\n"


def toml_value(v):
    """One TOML value (bool, int, float, string, list of those): the one writer the device TOML files use."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise FrontendError(f"cannot write {v!r} to TOML; use scalars, lists or a mapping")
