"""Arithmetic profiles: the one definition of how a network's integer arithmetic is done, by name.

An ArithmeticProfile is a value: name, formulation (which family of integer/float formulas each op uses),
requantizer (the weighted ops' epilogue), input quantization (the model's own QuantizeLinear of float inputs) and
elementwise mode. Config validation, the CLI's choices, prepare, the runtime and every settings record read
PROFILES; adding a profile is one new value (register(), or pass the value itself wherever a name is accepted):

    NPU = CMSIS_NN.derive("npu-floor", requantizer=Requantizer("floor", SINGLE_ROUNDING, tie="floor"))
    Device().with_(**{"model.profile": NPU})

Requantizer: prepared arrays + one kernel. multipliers(real) gives TFLite (M, shift) pairs (or the float32 scale
of FLOAT32_RNE); pieces(mult, shift) gives the int64 qp [5, C] that emu.fixedpoint.requantize_prepared evaluates
(DOUBLE_ROUNDING: SRDHM then RDBP; SINGLE_ROUNDING: one shift of the 64-bit product, ties by `tie`).
"""
import dataclasses
from dataclasses import dataclass

import numpy as np

from .. import fixedpoint as fx
from ..errors import N6Error

FORMULATIONS = ("tflite", "mlas")     # TFLite/CMSIS-NN integer formulas | ONNX Runtime CPU (MLAS) float32 formulas
INPUT_QUANTIZATIONS = ("half-away", "half-even")   # round(float32(x) / scale): std::round | rint
ELEMENTWISE_MODES = {"tflite": ("tflite",), "mlas": ("dq-float", "qlinear")}


@dataclass(frozen=True)
class Requantizer:
    """The weighted ops' epilogue (conv, depthwise, fully connected, rescaling mean, mul): name (recorded as the
    profile's rounding), mode (kernel code: fx.DOUBLE_ROUNDING | fx.SINGLE_ROUNDING | fx.FLOAT32_RNE) and, for
    SINGLE_ROUNDING, the tie rule of its one shift (fx.SINGLE_TIES)."""
    name: str
    mode: int
    tie: str = "half-up"
    derivation: str = "tflite"    # how (M, shift) come from the scales: a name of fx.DERIVATIONS

    def __post_init__(self):
        if self.mode not in (fx.DOUBLE_ROUNDING, fx.SINGLE_ROUNDING, fx.FLOAT32_RNE):
            raise N6Error(f"requantizer {self.name!r}: mode {self.mode!r} is not DOUBLE_ROUNDING (0), "
                          f"SINGLE_ROUNDING (1) or FLOAT32_RNE (2)")
        if self.tie not in fx.SINGLE_TIES or (self.tie != "half-up" and self.mode != fx.SINGLE_ROUNDING):
            raise N6Error(f"requantizer {self.name!r}: tie {self.tie!r} needs mode SINGLE_ROUNDING and one of "
                          f"{list(fx.SINGLE_TIES)}")
        if self.derivation not in fx.DERIVATIONS or (self.derivation != "tflite" and not self.fixed_point):
            raise N6Error(f"requantizer {self.name!r}: derivation {self.derivation!r} needs a fixed-point mode and one "
                          f"of {list(fx.DERIVATIONS)}")

    @property
    def fixed_point(self):
        return self.mode != fx.FLOAT32_RNE

    @property
    def standard(self):
        """True when the C twins implement it (TFLite double or single rounding, ties half-up)."""
        return self.fixed_point and self.tie == "half-up"

    def _derive(self):
        return dict(single_rounding=self.mode == fx.SINGLE_ROUNDING, derivation=fx.DERIVATIONS[self.derivation])

    def multiplier(self, s1, s2, s_out):
        """(M, shift) of s1*s2/s_out (TFLite Mul: in double; single rounding clamps shift to 30)."""
        d = fx.DERIVATIONS[self.derivation]
        return fx.quantize_multiplier(d.ratio_of(s1, s2, s_out), **self._derive())

    def per_channel(self, s_in, w_scales, s_out):
        """(mult, shift) int32 arrays of a conv/depthwise layer (TFLite PopulateConvolutionQuantizationParams)."""
        return fx.per_channel_multipliers(s_in, w_scales, s_out, **self._derive())

    def per_tensor_fc(self, s_in, s_w, s_out):
        return fx.per_tensor_fc_multiplier(s_in, s_w, s_out, **self._derive())

    def pieces(self, mult, shift):
        """int64 qp [QP_ROWS, C] the kernels evaluate (fx.prepare_requantize with this tie)."""
        return fx.prepare_requantize(mult, shift, self.mode, self.tie)

    def to_dict(self):
        return dict(name=self.name, mode={0: "double", 1: "single", 2: "float32-rne"}[self.mode], tie=self.tie,
                    derivation=self.derivation)


REQUANTIZERS = {
    "double": Requantizer("double", fx.DOUBLE_ROUNDING),          # TFLite / CMSIS-NN default
    "single": Requantizer("single", fx.SINGLE_ROUNDING),          # TFLITE_SINGLE_ROUNDING / CMSIS_NN_USE_SINGLE_ROUNDING
    "half-even": Requantizer("half-even", fx.FLOAT32_RNE),        # MLAS: float32 scale, round half to even
}
REQUANTIZER_GRAMMAR = (f"double | single[-TIE] with TIE one of {', '.join(t for t in fx.SINGLE_TIES if t != 'half-up')}"
                       f", optionally followed by /DERIVATION, one of {', '.join(fx.DERIVATIONS)} (e.g. "
                       f"\"single-floor/float32\")")


def requantizer(spec):
    """A fixed-point Requantizer from its name: "double", "single", "single-TIE", each optionally "/DERIVATION"
    ("double/m16": double rounding of an int16 multiplier). The name is the spec, so settings record it as given."""
    base, slash, derivation = str(spec).partition("/")
    mode, _, tie = base.partition("-")
    known = mode in ("double", "single") and (not tie or (mode == "single" and tie in fx.SINGLE_TIES)) \
        and (not slash or derivation in fx.DERIVATIONS)
    if not known:
        raise N6Error(f"requantizer {spec!r} is not one of: {REQUANTIZER_GRAMMAR}")
    return Requantizer(str(spec), fx.ROUNDING_NAMES[mode], tie=tie or "half-up", derivation=derivation or "tflite")


@dataclass(frozen=True)
class ArithmeticProfile:
    """One network arithmetic (see module doc). roundings: the requantizer names [model].rounding may choose."""
    name: str
    formulation: str
    requantizer: Requantizer
    input_quantization: str
    elementwise: str
    roundings: tuple = ()

    def __post_init__(self):
        if self.formulation not in FORMULATIONS:
            raise N6Error(f"profile {self.name!r}: formulation {self.formulation!r} is not one of {list(FORMULATIONS)}")
        if self.requantizer.fixed_point != (self.formulation == "tflite"):
            raise N6Error(f"profile {self.name!r}: the {self.formulation} formulation needs a "
                          f"{'fixed-point' if self.formulation == 'tflite' else 'float32'} requantizer, got "
                          f"{self.requantizer.name!r}")
        if self.input_quantization not in INPUT_QUANTIZATIONS:
            raise N6Error(f"profile {self.name!r}: input quantization {self.input_quantization!r} is not one of "
                          f"{list(INPUT_QUANTIZATIONS)}")
        if self.elementwise not in ELEMENTWISE_MODES[self.formulation]:
            raise N6Error(f"profile {self.name!r}: elementwise mode {self.elementwise!r} is not one of "
                          f"{list(ELEMENTWISE_MODES[self.formulation])} ({self.formulation} formulation)")
        if not self.roundings:
            object.__setattr__(self, "roundings", (self.requantizer.name,))

    @property
    def rounding(self):
        return self.requantizer.name

    @property
    def fixed_point(self):
        return self.formulation == "tflite"

    def derive(self, name, **changes):
        """A new profile from this one with some fields changed (e.g. another requantizer)."""
        if "requantizer" in changes and "roundings" not in changes:
            changes["roundings"] = (changes["requantizer"].name,)
        return dataclasses.replace(self, name=name, **changes)

    def choose(self, rounding=None, elementwise=None):
        """This profile with [model].rounding / elementwise chosen (None keeps the default); validated."""
        p = self
        if rounding is not None and rounding != p.rounding:
            if rounding in p.roundings:
                p = dataclasses.replace(p, requantizer=REQUANTIZERS[rounding])
            elif p.fixed_point:    # any fixed-point requantizer by name (what `n6emu fit` reports)
                try:
                    p = dataclasses.replace(p, requantizer=requantizer(rounding))
                except N6Error:
                    raise N6Error(f"profile {p.name!r} has no rounding {rounding!r}; choose one of "
                                  f"{REQUANTIZER_GRAMMAR}") from None
            else:
                raise N6Error(f"profile {p.name!r} has no rounding {rounding!r}; choose one of {list(p.roundings)}")
        if elementwise is not None and elementwise != p.elementwise:
            if elementwise not in ELEMENTWISE_MODES[p.formulation]:
                raise N6Error(f"profile {p.name!r} has no elementwise mode {elementwise!r}; choose one of "
                              f"{list(ELEMENTWISE_MODES[p.formulation])}")
            p = dataclasses.replace(p, elementwise=elementwise)
        return p

    def quantize(self, values):
        """round(float32 quotient) of the model's QuantizeLinear: half-even (MLAS rint) or half-away (std::round);
        float64 result, before the zero-point and clamp."""
        v = np.asarray(values, np.float32)
        if self.input_quantization == "half-even":
            return np.rint(v).astype(np.float64)
        return np.sign(v) * np.floor(np.abs(v).astype(np.float64) + 0.5)

    def to_dict(self):
        """The settings record (every field by name)."""
        return dict(name=self.name, formulation=self.formulation, rounding=self.rounding,
                    requantizer=self.requantizer.to_dict(), input_quantization=self.input_quantization,
                    elementwise=self.elementwise)


CMSIS_NN = ArithmeticProfile("cmsis-nn", "tflite", REQUANTIZERS["double"], "half-away", "tflite",
                             roundings=("double", "single"))
ONNXRUNTIME = ArithmeticProfile("onnxruntime", "mlas", REQUANTIZERS["half-even"], "half-even", "dq-float",
                                roundings=("half-even",))

PROFILES = {p.name: p for p in (CMSIS_NN, ONNXRUNTIME)}


def register(profile):
    """Make a profile choosable by name (config [model].profile, CLI --profile); returns it."""
    if not isinstance(profile, ArithmeticProfile):
        raise N6Error(f"register() takes an ArithmeticProfile, got {type(profile).__name__}")
    PROFILES[profile.name] = profile
    return profile


def resolve(profile, rounding=None, elementwise=None):
    """An ArithmeticProfile from a name or a value, with rounding / elementwise chosen (None = its default)."""
    if not isinstance(profile, ArithmeticProfile):
        found = PROFILES.get(profile)
        if found is None:
            raise N6Error(f"unknown arithmetic profile {profile!r}; choose one of {sorted(PROFILES)}")
        profile = found
    return profile.choose(rounding, elementwise)


def rounding_names():
    """Every rounding name some registered profile accepts (CLI choices)."""
    return tuple(dict.fromkeys(r for p in PROFILES.values() for r in p.roundings))
