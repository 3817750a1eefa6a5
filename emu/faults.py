"""Faults: a firmware as it is, not as it should be. The `[faults]` table of the device TOML names the ways a
board deviates from the device the rest of the description specifies (the device the model expects), and
emu.device.Device reproduces them at the stage of the chain where they act, so a mismatching board can be
emulated byte for byte and emu.diagnose can search for the deviation that explains a board's data.

    [faults]                                   # one key per fault of the catalogue; value: its parameters
    input-transposed = {}                      # (or `true`): every parameter at its default
    wrong-scale = { scale = 0.2214 }
    [faults.log-epsilon]
    eps = 1e-6

    dev = Device("board.toml"); dev.faults; dev.warnings; dev.settings["faults"]
    dev.with_(faults={"input-transposed": {}}) ; dev.with_(**{"faults.wrong-zero-point": {"zero_point": 0}})

Stages, in chain order (Fault.stage): where a fault acts.
    pcm       the recording before the app's framing
    build     an existing switch of the front end or of the network (the device description's own fields,
              changed the way Device.with_ changes them: nothing is re-parsed)
    log       the float log-mel between the front end's log and the app's quantization (st-f16/st-f32)
    quantize  the app's quantization itself (float log -> int8), with the app's own code (emu.frontend.st)
    buffer    the input buffer as the app writes it: element order, stride, type and bytes
    network   the network's arithmetic (a build switch of [model])

Catalogue (parameters with their defaults; None = resolved against the device, and recorded resolved):

  input-transposed         buffer  The app writes the features in the order the model does not read: frame-major
                                   (buf[frame * n_mels + mel]) into a mel-major input, or the reverse. No
                                   parameters. With it, an [input].layout contradicting the model is accepted
                                   (a warning naming the fault) and taken as the firmware's; with a layout that
                                   matches the model, the fault flips it.
  nchw-nhwc                buffer  written = None ("nhwc" | "nchw"; None: the layout the model's buffer is not:
                                   ONNX buffers are NCHW, TFLite NHWC). The app writes the 4-D input tensor in
                                   that layout and the network reads the bytes in its own. With one channel the
                                   two layouts are the same bytes: the fault changes nothing (a warning says so).
  double-quantization      buffer  by = "model" ("model" | "app"). The int8 features, taken as float values, are
                                   quantized a second time: by the model's own input quantization
                                   (clamp(round(x / scale) + zp), the profile's input rounding: the app handed
                                   float(q) to a float input) or by the app's quantization code again.
  missing-quantization     quantize cast = "wrap" ("wrap" | "saturate"). The float log is written without
                                   quantization: (int8_t)(int32_t)log as C does it (truncation, VCVT saturation
                                   to int32, the low 8 bits), or "saturate": truncation then clamp to int8.
  float-bytes-as-int8      buffer  dtype = "float32" ("float32" | "float16"). The app writes its float log-mel
                                   (float32, or float16_t as stored) into the int8 buffer: the network reads the
                                   first N bytes (little-endian) of the float array, in the app's write order.
  int8-uint8               buffer  The app quantizes for the other 8-bit type (zero-point off by 128) and the
                                   network reads the bytes as its own: every byte's top bit flipped (q ^ 0x80).
  wrong-scale              build   scale (required). The app quantizes with this scale instead of the input
                                   buffer's ([frontend].quant_scale; 1/scale stored as configured).
  wrong-zero-point         build   zero_point (required, -128..127): [frontend].quant_zero_point (the app's int8
                                   terms, like that field: for a uint8 model, the board's zero-point - 128).
  inverse-scale-precision  build   dtype = None ("f16" | "f32"; None: the other of [frontend].inv_scale_dtype):
                                   the type the app stores 1/scale in.
  truncation               quantize The app casts without roundf: (int16_t)(log * inv_scale + zp) truncates
                                   toward zero (the app's quantization code with its rounding step removed).
  normalisation-mismatch   log     mean = None, std = None. The app normalises the log-mel, (log - mean) / std,
                                   computed in float32 and stored in the device type, although the model was
                                   trained without it. Both None: per patch, over the patch's finite log values
                                   (the per-sample normalisation of training scripts; -inf holes stay -inf).
                                   The reverse case (normalised in training only) is the inverse map: give
                                   mean = -m / s and std = 1 / s for training's (m, s).
  log-epsilon              log     eps = 1e-4 (> 0). The app computes logf(mel + eps) (float32 sum, log stored in
                                   the device type): quiet bins no longer give -inf.
  log-base                 log     base = None ("ln" | "log10" | "log2" | "db"; None: log10 for an ln device,
                                   else ln). The app's log function: log10f / log2f stored in the device type,
                                   or 10*log10f clamped at -top_db ("db").
  frame-count              build   n_frames = None, fill = 0. The firmware's frame count: patches of n_frames
                                   frames (stride n_frames * hop), written with its own stride
                                   (buf[mel * n_frames + frame] or buf[frame * n_mels + mel]); writes past the
                                   model's buffer are dropped (on a board they overwrite what follows), elements
                                   it does not reach keep `fill` (a zeroed buffer). None: the [frontend].n_frames
                                   of a description that contradicts the model (a warning names the fault);
                                   with a description that matches the model it must be given.
  patch-shift              pcm     samples = None (None: win - hop, the app's kept samples, or hop / 2 when
                                   there are none). The board's patches start `samples` later in the recording
                                   than the app's framing (negative: earlier, zeros before the recording): the
                                   stream is advanced (or delayed) before framing. Recordings only: a single
                                   patch handed to Device.trace(patch) is taken as given.
  frontend-precision       build/log precision = None ("f16" | "f32" | "float64"; None: f32 for an st-f16 device,
                                   f16 for st-f32). f16/f32: ST's column in that type ([frontend].profile, same
                                   build); float64: the float64 PC reference (emu.frontend.float_ref), rounded to
                                   float32 and quantized by the app (no f16 holes).
  f16-underflow            build/log holes = None ("zero" | "saturate" | "floor"; None: the other of
                                   [frontend].neg_inf_cast). What the quiet mel bins whose f16 energy underflows
                                   to 0 (log -inf) become: "zero" = the (int16) cast of -inf as Arm's VCVT gives it
                                   (feature 0), "saturate" = -128 ([frontend].neg_inf_cast), "floor" = the energy
                                   floored at the smallest f16 subnormal 2^-24, then the app's log and
                                   quantization. st-f16 only.
  fft-build                build   isa = None, optimization = None (None: the other of [frontend].isa; the
                                   configured optimization for helium, "Os" for scalar): the CMSIS-DSP build.
  arithmetic-profile       network profile = None, rounding = None (None: onnxruntime for a fixed-point device, else
                                   cmsis-nn; the profile's default rounding): [model].profile / rounding.

Between-stage faults compose in chain order: mel -> f16 floor -> log (epsilon, base) -> float64 log ->
normalisation -> quantization (truncation | missing-quantization | the app's) -> layout, stride, NCHW/NHWC ->
bytes (float bytes | the model's type) -> int8-uint8 -> double quantization. Combinations that contradict each
other (two replacements of the same step) are refused with a one-line error.
"""
import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np

from emu.config import ConfigError

STAGES = ("pcm", "build", "log", "quantize", "buffer", "network")
F16_TINY = np.float32(2.0 ** -24)     # the smallest f16 subnormal


class FaultError(ConfigError):
    """An invalid [faults] entry, or a fault that cannot act on the described device (one line)."""


# ---------------------------------------------------------------------------------------------------
# what a fault knows about the intended device
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Context:
    """The intended device a fault deviates from (built by emu.device.Device before the faults act)."""
    frontend: object          # FrontendParams, quantization resolved (the app's scale and zero-point)
    model: object             # config.ModelSection
    layout: str               # [input].layout as written
    boundary: str             # [input].boundary
    input_shape: tuple        # the model's input buffer shape
    io_dtype: object          # np.dtype of the input buffer (int8 | uint8)
    buffer_layout: str        # "NCHW" (ONNX buffers keep the ONNX layout) | "NHWC" (TFLite)
    n_coefs: int              # rows of the features (mels or MFCCs)
    coef: str                 # "mel" | "mfcc"
    model_frames: Optional[int]   # frames the model input holds (size / n_coefs), None when it does not divide
    natural_layout: Optional[str]  # the order the model reads ("mel-major" | "frame-major"), None if ambiguous

    @property
    def float_log(self):
        return self.frontend.profile in ("st-f16", "st-f32")

    @property
    def size(self):
        return int(np.prod(self.input_shape))

    def formula(self, layout, n_frames=None):
        n = self.model_frames if n_frames is None else n_frames
        c = self.coef
        if layout == "mel-major":
            return f"buf[{c} * {n} + frame]"
        return f"buf[frame * {self.n_coefs} + {c}]"


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.9g}"
    return str(v)


# ---------------------------------------------------------------------------------------------------
# the catalogue
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fault:
    """One deviation of the firmware (see the module doc). Subclasses: name, stage, summary, parameters as
    fields; resolve(ctx) fills the None defaults from the intended device; build() changes existing switches;
    fix(ctx) says what to change in the firmware."""
    name: ClassVar[str] = ""
    stage: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def params(self):
        """The parameters (None omitted: TOML has no null)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def label(self):
        """e.g. "wrong-scale(scale=0.2)"; "input-transposed" (parameters at a non-None default are left out)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        p = {k: v for k, v in self.params().items() if defaults.get(k) is None or v != defaults[k]}
        return self.name + ("(" + ", ".join(f"{k}={_fmt(v)}" for k, v in p.items()) + ")" if p else "")

    def resolve(self, ctx):
        """This fault with every None default resolved against the intended device; FaultError when it cannot act
        on that device."""
        return self

    def noop(self, ctx):
        """Why the (resolved) fault changes nothing on this device, or None."""
        return None

    def build(self, fe, model):
        """(FrontendParams, ModelSection) the board runs, from the intended ones."""
        return fe, model

    def fix(self, ctx):
        return ""

    def _need_float_log(self, ctx):
        if not ctx.float_log:
            raise FaultError(f"fault {self.name} acts on the app's float log-mel: it needs an st-f16/st-f32 front end "
                             f"(this device runs {ctx.frontend.profile})")

    def _err(self, field, value, what):
        raise FaultError(f"[faults.{self.name}].{field} = {value!r} {what}")

    def _choice(self, field, allowed):
        v = getattr(self, field)
        if v is not None and v not in allowed:
            self._err(field, v, f"is not supported; use one of {', '.join(map(repr, allowed))}")


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class InputTransposed(Fault):
    name: ClassVar[str] = "input-transposed"
    stage: ClassVar[str] = "buffer"
    summary: ClassVar[str] = "the features written in the order the model does not read (frame-major <-> mel-major)"

    def resolve(self, ctx):
        if ctx.natural_layout is None and ctx.n_coefs == ctx.model_frames:
            raise FaultError(f"fault input-transposed: the model input {list(ctx.input_shape)} holds as many "
                             f"{ctx.coef}s as frames; both orders have the same shape, so the buffer cannot tell them "
                             f"apart: describe the order with [input].layout instead")
        return self

    def written(self, ctx):
        """The layout the firmware writes."""
        if ctx.natural_layout is None:
            return "frame-major" if ctx.layout == "mel-major" else "mel-major"
        return "frame-major" if ctx.natural_layout == "mel-major" else "mel-major"

    def fix(self, ctx):
        want = ctx.natural_layout or ctx.layout
        return (f"write the features {want} as the model reads them: {ctx.formula(want)} "
                f"(the board writes {ctx.formula(self.written(ctx))})")


@dataclass(frozen=True)
class NchwNhwc(Fault):
    name: ClassVar[str] = "nchw-nhwc"
    stage: ClassVar[str] = "buffer"
    summary: ClassVar[str] = "the input tensor written in the other 4-D layout (NCHW <-> NHWC)"
    written: Optional[str] = None

    def __post_init__(self):
        self._choice("written", ("nhwc", "nchw"))

    def resolve(self, ctx):
        if len(ctx.input_shape) != 4:
            raise FaultError(f"fault nchw-nhwc needs a 4-D model input, this one is {list(ctx.input_shape)}")
        own = ctx.buffer_layout.lower()
        w = self.written or ("nhwc" if own == "nchw" else "nchw")
        if w == own:
            self._err("written", w, "is the model's own buffer layout; the fault writes the other one")
        return dataclasses.replace(self, written=w)

    def channels(self, ctx):
        return ctx.input_shape[1] if ctx.buffer_layout == "NCHW" else ctx.input_shape[3]

    def noop(self, ctx):
        if self.channels(ctx) == 1:
            return (f"the model input {list(ctx.input_shape)} has one channel: NCHW and NHWC are the same bytes "
                    f"(a transposed feature map is input-transposed)")
        return None

    def permute(self, flat, ctx):
        """Elements [P, size] in the model's order -> the order the firmware writes them."""
        x = flat.reshape((flat.shape[0],) + tuple(ctx.input_shape))
        perm = (0, 1, 3, 4, 2) if ctx.buffer_layout == "NCHW" else (0, 1, 4, 2, 3)
        return np.ascontiguousarray(x.transpose(perm)).reshape(flat.shape)

    def fix(self, ctx):
        n, a, b, c = ctx.input_shape
        if ctx.buffer_layout == "NCHW":
            return (f"write the input in the model's NCHW order, buf[(c * {b} + h) * {c} + w] for the input "
                    f"[{n}x{a}x{b}x{c}] (the board writes NHWC), or generate the model with channel-last I/O")
        return (f"write the input in the model's NHWC order, buf[(h * {b} + w) * {c} + c] for the input "
                f"[{n}x{a}x{b}x{c}] (the board writes NCHW)")


@dataclass(frozen=True)
class DoubleQuantization(Fault):
    name: ClassVar[str] = "double-quantization"
    stage: ClassVar[str] = "buffer"
    summary: ClassVar[str] = "the int8 features quantized a second time"
    by: str = "model"

    def __post_init__(self):
        self._choice("by", ("model", "app"))

    def resolve(self, ctx):
        if ctx.boundary != "int8":
            raise FaultError("fault double-quantization acts on the app's int8 features; [input].boundary is float32")
        if self.by == "app":
            self._need_float_log(ctx)
        return self

    def fix(self, ctx):
        fe = ctx.frontend
        second = ("the model's own input QuantizeLinear (float input)" if self.by == "model"
                  else "the app's quantization a second time")
        return (f"quantize once: write the app's int8 features (scale {fe.quant_scale:.9g}, zero-point "
                f"{fe.quant_zero_point}) straight into the int8 input buffer; the board passes them through {second}")


@dataclass(frozen=True)
class MissingQuantization(Fault):
    name: ClassVar[str] = "missing-quantization"
    stage: ClassVar[str] = "quantize"
    summary: ClassVar[str] = "the float log-mel cast to int8 without quantization"
    cast: str = "wrap"

    def __post_init__(self):
        self._choice("cast", ("wrap", "saturate"))

    def resolve(self, ctx):
        self._need_float_log(ctx)
        if ctx.boundary != "int8":
            raise FaultError("fault missing-quantization: [input].boundary is float32, the app writes no int8")
        return self

    def quantize(self, log, state):
        from emu.frontend import st
        cast = st.CAST_WRAP8 if self.cast == "wrap" else st.CAST_INT32
        return st.app_quantize(log, state, rounding="truncate", cast=cast, inv_scale=1.0, zero_point=0)

    def fix(self, ctx):
        fe = ctx.frontend
        return (f"quantize the log-mel before writing it: q = sat8((int16_t)roundf(log * (1 / {fe.quant_scale:.9g}) "
                f"+ {fe.quant_zero_point})) with the input buffer's scale and zero-point; the board writes "
                + ("(int8_t)(int32_t)log" if self.cast == "wrap" else "the log saturated to int8"))


@dataclass(frozen=True)
class FloatBytesAsInt8(Fault):
    name: ClassVar[str] = "float-bytes-as-int8"
    stage: ClassVar[str] = "buffer"
    summary: ClassVar[str] = "the float log-mel's bytes written into the int8 buffer"
    dtype: str = "float32"

    def __post_init__(self):
        self._choice("dtype", ("float32", "float16"))

    def resolve(self, ctx):
        self._need_float_log(ctx)
        if ctx.boundary != "int8":
            raise FaultError("fault float-bytes-as-int8: [input].boundary is already float32")
        return self

    def to_bytes(self, flat, io_dtype):
        """Float elements [P, size] -> the first `size` bytes of each window's float array, as io_dtype."""
        f = np.ascontiguousarray(flat.astype(np.float32 if self.dtype == "float32" else np.float16).astype("<" + (
            "f4" if self.dtype == "float32" else "f2")))
        raw = f.view(np.uint8).reshape(flat.shape[0], -1)[:, :flat.shape[1]]
        return np.ascontiguousarray(raw).view(io_dtype)

    def fix(self, ctx):
        return (f"quantize the features to {np.dtype(ctx.io_dtype).name} before writing them (the input buffer holds "
                f"{ctx.size} {np.dtype(ctx.io_dtype).name} values; the board copies the bytes of a {self.dtype} array)")


@dataclass(frozen=True)
class Int8Uint8(Fault):
    name: ClassVar[str] = "int8-uint8"
    stage: ClassVar[str] = "buffer"
    summary: ClassVar[str] = "quantized for the other 8-bit type: zero-point off by 128 (byte ^ 0x80)"

    def on_bytes(self, buf):
        return (buf.view(np.uint8) ^ np.uint8(0x80)).view(buf.dtype)

    def fix(self, ctx):
        own = np.dtype(ctx.io_dtype).name
        other = "uint8" if own == "int8" else "int8"
        zp = ctx.frontend.quant_zero_point + (128 if own == "uint8" else 0)
        ozp = zp + 128 if own == "int8" else zp - 128
        return (f"the input buffer is {own} with zero-point {zp}: quantize with that zero-point into {own}_t "
                f"(the board quantizes for {other}, zero-point {ozp})")


@dataclass(frozen=True)
class WrongScale(Fault):
    name: ClassVar[str] = "wrong-scale"
    stage: ClassVar[str] = "build"
    summary: ClassVar[str] = "the app quantizes with another scale"
    scale: float = None

    def __post_init__(self):
        if self.scale is None:
            raise FaultError("[faults.wrong-scale].scale is required: the scale the firmware quantizes with")
        if not _is_number(self.scale) or not self.scale > 0:
            self._err("scale", self.scale, "must be a number > 0")
        object.__setattr__(self, "scale", float(self.scale))

    def resolve(self, ctx):
        if ctx.boundary != "int8":
            raise FaultError("fault wrong-scale acts on the app's quantization; [input].boundary is float32")
        return self

    def noop(self, ctx):
        if np.float32(self.scale) == np.float32(ctx.frontend.quant_scale):
            return f"scale {self.scale:.9g} is the input buffer's own"
        return None

    def build(self, fe, model):
        return fe.replace(quant_scale=self.scale), model

    def fix(self, ctx):
        return (f"quantize with the input buffer's scale {ctx.frontend.quant_scale:.9g} (read it from the runtime's "
                f"buffer info), not {self.scale:.9g}")


@dataclass(frozen=True)
class WrongZeroPoint(Fault):
    name: ClassVar[str] = "wrong-zero-point"
    stage: ClassVar[str] = "build"
    summary: ClassVar[str] = "the app quantizes with another zero-point"
    zero_point: int = None

    def __post_init__(self):
        if self.zero_point is None:
            raise FaultError("[faults.wrong-zero-point].zero_point is required: the zero-point the firmware uses")
        if not _is_int(self.zero_point) or not -128 <= self.zero_point <= 127:
            self._err("zero_point", self.zero_point, "must be an integer in -128..127")

    def resolve(self, ctx):
        if ctx.boundary != "int8":
            raise FaultError("fault wrong-zero-point acts on the app's quantization; [input].boundary is float32")
        return self

    def noop(self, ctx):
        if self.zero_point == ctx.frontend.quant_zero_point:
            return f"zero-point {self.zero_point} is the input buffer's own"
        return None

    def build(self, fe, model):
        return fe.replace(quant_zero_point=self.zero_point), model

    def fix(self, ctx):
        return (f"quantize with the input buffer's zero-point {ctx.frontend.quant_zero_point} (the runtime's buffer "
                f"info), not {self.zero_point}")


@dataclass(frozen=True)
class InverseScalePrecision(Fault):
    name: ClassVar[str] = "inverse-scale-precision"
    stage: ClassVar[str] = "build"
    summary: ClassVar[str] = "1/scale stored in another float type (f16 vs f32)"
    dtype: Optional[str] = None

    def __post_init__(self):
        self._choice("dtype", ("f16", "f32"))

    def resolve(self, ctx):
        self._need_float_log(ctx)
        return dataclasses.replace(self, dtype=self.dtype or ("f32" if ctx.frontend.inv_scale_dtype == "f16" else "f16"))

    def noop(self, ctx):
        if self.dtype == ctx.frontend.inv_scale_dtype:
            return f"the device already stores 1/scale as {self.dtype}"
        inv = np.float32(1.0) / np.float32(ctx.frontend.quant_scale)
        if np.float32(np.float16(inv)) == inv:
            return f"1/scale = {float(inv):.9g} is exact in f16"
        return None

    def build(self, fe, model):
        return fe.replace(inv_scale_dtype=self.dtype), model

    def fix(self, ctx):
        inv = np.float32(1.0) / np.float32(ctx.frontend.quant_scale)
        want = ctx.frontend.inv_scale_dtype
        value = float(np.float16(inv)) if want == "f16" else float(inv)
        return (f"store 1/scale as {'float16_t' if want == 'f16' else 'float'} ({value:.9g}) as the device "
                f"description says, not as {'float16_t' if self.dtype == 'f16' else 'float'}")


@dataclass(frozen=True)
class Truncation(Fault):
    name: ClassVar[str] = "truncation"
    stage: ClassVar[str] = "quantize"
    summary: ClassVar[str] = "the app casts without roundf (truncation toward zero)"

    def resolve(self, ctx):
        self._need_float_log(ctx)
        if ctx.boundary != "int8":
            raise FaultError("fault truncation acts on the app's quantization; [input].boundary is float32")
        return self

    def quantize(self, log, state):
        from emu.frontend import st
        return st.app_quantize(log, state, rounding="truncate")

    def fix(self, ctx):
        return "round before the cast: (int16_t)roundf(log * inv_scale + zero_point), not (int16_t)(log * inv_scale + zero_point)"


@dataclass(frozen=True)
class NormalisationMismatch(Fault):
    name: ClassVar[str] = "normalisation-mismatch"
    stage: ClassVar[str] = "log"
    summary: ClassVar[str] = "the log-mel normalised (log - mean) / std on one side only"
    mean: Optional[float] = None
    std: Optional[float] = None

    def __post_init__(self):
        if (self.mean is None) != (self.std is None):
            raise FaultError("[faults.normalisation-mismatch]: give both mean and std, or neither (per-patch "
                             "normalisation)")
        if self.mean is not None:
            if not _is_number(self.mean):
                self._err("mean", self.mean, "must be a finite number")
            if not _is_number(self.std) or not self.std > 0:
                self._err("std", self.std, "must be a number > 0")
            object.__setattr__(self, "mean", float(self.mean))
            object.__setattr__(self, "std", float(self.std))

    def resolve(self, ctx):
        self._need_float_log(ctx)
        return self

    def log(self, log, fe):
        x = np.asarray(log, np.float32)
        if self.mean is None:
            fin = x[np.isfinite(x)].astype(np.float64)
            m = np.float32(fin.mean()) if fin.size else np.float32(0)
            s = np.float32(fin.std()) if fin.size else np.float32(1)
            if not s > 0:
                s = np.float32(1)
        else:
            m, s = np.float32(self.mean), np.float32(self.std)
        y = (x - m) / s
        return _device_round(y, fe)

    def fix(self, ctx):
        what = ("per-patch (log - mean(log)) / std(log)" if self.mean is None
                else f"(log - {self.mean:.6g}) / {self.std:.6g}")
        return (f"remove the normalisation {what} from the firmware: the model was trained on the raw log-mel "
                f"(or normalise the training features the same way)")


@dataclass(frozen=True)
class LogEpsilon(Fault):
    name: ClassVar[str] = "log-epsilon"
    stage: ClassVar[str] = "log"
    summary: ClassVar[str] = "the app computes log(mel + eps)"
    eps: float = 1e-4

    def __post_init__(self):
        if not _is_number(self.eps) or not self.eps > 0:
            self._err("eps", self.eps, "must be a number > 0")
        object.__setattr__(self, "eps", float(self.eps))

    def resolve(self, ctx):
        self._need_float_log(ctx)
        return self

    def fix(self, ctx):
        return (f"compute logf(mel) without the epsilon, as the model's features were (the board computes "
                f"logf(mel + {self.eps:g}f)), or train with the same epsilon")


@dataclass(frozen=True)
class LogBase(Fault):
    name: ClassVar[str] = "log-base"
    stage: ClassVar[str] = "log"
    summary: ClassVar[str] = "another log function (log10 / log2 / dB instead of ln)"
    base: Optional[str] = None

    def __post_init__(self):
        self._choice("base", ("ln", "log10", "log2", "db"))

    def resolve(self, ctx):
        self._need_float_log(ctx)
        return dataclasses.replace(self, base=self.base or ("log10" if ctx.frontend.log == "ln" else "ln"))

    def noop(self, ctx):
        if self.base == ctx.frontend.log:
            return f"the device's log is already {self.base}"
        return None

    def fix(self, ctx):
        names = {"ln": "logf", "log10": "log10f", "log2": "log2f", "db": "10 * log10f"}
        return f"use {names[ctx.frontend.log]} as the model's features did, not {names[self.base]}"


@dataclass(frozen=True)
class FrameCount(Fault):
    name: ClassVar[str] = "frame-count"
    stage: ClassVar[str] = "build"
    summary: ClassVar[str] = "a frame-count constant that is not the model's"
    n_frames: Optional[int] = None
    fill: int = 0

    def __post_init__(self):
        if self.n_frames is not None and (not _is_int(self.n_frames) or self.n_frames <= 0):
            self._err("n_frames", self.n_frames, "must be a positive integer")
        if not _is_int(self.fill) or not -128 <= self.fill <= 127:
            self._err("fill", self.fill, "must be an integer in -128..127")

    def resolve(self, ctx):
        if ctx.model_frames is None:
            raise FaultError(f"fault frame-count: the model input {list(ctx.input_shape)} does not hold a whole number "
                             f"of {ctx.n_coefs}-{ctx.coef} frames; make [frontend] match the model's coefficients")
        n = self.n_frames
        configured = ctx.frontend.n_frames
        if n is None:
            if configured == ctx.model_frames:
                raise FaultError(f"[faults.frame-count].n_frames is required: the frame count the firmware uses "
                                 f"(the model's is {ctx.model_frames})")
            n = configured
        elif configured != ctx.model_frames and n != configured:
            self._err("n_frames", n, f"contradicts [frontend].n_frames = {configured}; give one of them")
        return dataclasses.replace(self, n_frames=n)

    def noop(self, ctx):
        if self.n_frames == ctx.model_frames:
            return f"{self.n_frames} frames is the model's own frame count"
        return None

    def build(self, fe, model):
        return fe.replace(n_frames=self.n_frames), model

    def fix(self, ctx):
        hop = ctx.frontend.hop_length
        return (f"set the frame count to {ctx.model_frames} (the model input {'x'.join(map(str, ctx.input_shape))}): "
                f"patches of {ctx.model_frames} frames = {ctx.model_frames * hop} new samples, written "
                f"{ctx.formula(ctx.natural_layout or ctx.layout)}; the board uses {self.n_frames}")


@dataclass(frozen=True)
class PatchShift(Fault):
    name: ClassVar[str] = "patch-shift"
    stage: ClassVar[str] = "pcm"
    summary: ClassVar[str] = "the board's patches start at another sample of the recording"
    samples: Optional[int] = None

    def __post_init__(self):
        if self.samples is not None and not _is_int(self.samples):
            self._err("samples", self.samples, "must be an integer (samples; negative: earlier)")

    def resolve(self, ctx):
        fe = ctx.frontend
        s = self.samples
        if s is None:
            s = fe.keep_samples if fe.keep_samples > 0 else max(1, fe.hop_length // 2)
        return dataclasses.replace(self, samples=s)

    def noop(self, ctx):
        return "a shift of 0 samples" if self.samples == 0 else None

    def stream(self, blocks):
        """The board's stream from the recording's int16 blocks: `samples` dropped (or zeros prefixed)."""
        s = self.samples
        if s < 0:
            yield np.zeros(-s, np.int16)
            yield from blocks
            return
        drop = s
        for b in blocks:
            if drop >= b.size:
                drop -= b.size
                continue
            yield b[drop:]
            drop = 0

    def fix(self, ctx):
        fe = ctx.frontend
        when = f"{self.samples} samples later" if self.samples > 0 else f"{-self.samples} samples earlier"
        return (f"frame the stream as the app does: the first patch is {fe.keep_samples} zeros then the first "
                f"{fe.new_samples} samples, each next patch {fe.new_samples} samples on (the board's patches start "
                f"{when})")


@dataclass(frozen=True)
class FrontendPrecision(Fault):
    name: ClassVar[str] = "frontend-precision"
    stage: ClassVar[str] = "build"
    summary: ClassVar[str] = "the front end computed in another precision (f16 / f32 / float64)"
    precision: Optional[str] = None

    def __post_init__(self):
        self._choice("precision", ("f16", "f32", "float64"))

    def resolve(self, ctx):
        self._need_float_log(ctx)
        own = "f16" if ctx.frontend.profile == "st-f16" else "f32"
        return dataclasses.replace(self, precision=self.precision or ("f32" if own == "f16" else "f16"))

    def noop(self, ctx):
        own = "f16" if ctx.frontend.profile == "st-f16" else "f32"
        return f"the device's front end is already {own}" if self.precision == own else None

    def build(self, fe, model):
        if self.precision == "float64":
            return fe, model
        return fe.replace(profile="st-f16" if self.precision == "f16" else "st-f32"), model

    def fix(self, ctx):
        fe = ctx.frontend
        return (f"build the front end as {fe.build} ({'float16' if fe.profile == 'st-f16' else 'float32'} column) as "
                f"the model's features were; the board's is "
                + ("the float64 PC reference" if self.precision == "float64" else f"the {self.precision} column"))


@dataclass(frozen=True)
class F16Underflow(Fault):
    name: ClassVar[str] = "f16-underflow"
    stage: ClassVar[str] = "build"
    summary: ClassVar[str] = "the f16 holes (quiet mel bins whose energy underflows) take another value"
    holes: Optional[str] = None

    def __post_init__(self):
        self._choice("holes", ("zero", "saturate", "floor"))

    def resolve(self, ctx):
        if ctx.frontend.profile != "st-f16":
            raise FaultError(f"fault f16-underflow: the holes are f16 mel energies that underflow to 0; this device "
                             f"runs {ctx.frontend.profile} (use frontend-precision for an f16 board)")
        own = ctx.frontend.neg_inf_cast
        return dataclasses.replace(self, holes=self.holes or ("saturate" if own == "zero" else "zero"))

    def noop(self, ctx):
        if self.holes == ctx.frontend.neg_inf_cast:
            return f"the device's holes already become what neg_inf_cast = {self.holes!r} gives"
        return None

    def build(self, fe, model):
        if self.holes == "floor":
            return fe, model
        return fe.replace(neg_inf_cast=self.holes), model

    def fix(self, ctx):
        own = {"zero": "feature 0 (the (int16) cast of -inf on Arm: VCVT gives INT32_MIN, low 16 bits 0)",
               "saturate": "-128 (a saturating cast)"}[ctx.frontend.neg_inf_cast]
        board = {"zero": "0", "saturate": "-128", "floor": "the quantized log of 2^-24"}[self.holes]
        return (f"the quiet mel bins (f16 energy 0, log -inf) must become {own} as in the model's features; the "
                f"board makes them {board}")


@dataclass(frozen=True)
class FftBuild(Fault):
    name: ClassVar[str] = "fft-build"
    stage: ClassVar[str] = "build"
    summary: ClassVar[str] = "another CMSIS-DSP build (Helium vs scalar, -Os vs -Ofast)"
    isa: Optional[str] = None
    optimization: Optional[str] = None

    def __post_init__(self):
        self._choice("isa", ("helium", "scalar"))
        self._choice("optimization", ("Os", "Ofast"))

    def resolve(self, ctx):
        self._need_float_log(ctx)
        fe = ctx.frontend
        isa = self.isa or ("scalar" if fe.isa == "helium" else "helium")
        opt = self.optimization or (fe.optimization if isa == "helium" else "Os")
        if isa == "scalar" and opt != "Os":
            self._err("optimization", opt, "is emulated for isa = \"helium\" only")
        return dataclasses.replace(self, isa=isa, optimization=opt)

    def noop(self, ctx):
        fe = ctx.frontend
        if (self.isa, self.optimization) == (fe.isa, fe.optimization):
            return f"the device is already {fe.build}"
        return None

    def build(self, fe, model):
        changes = dict(isa=self.isa, optimization=self.optimization)
        if self.isa == "helium":   # the Helium build's arithmetic is fixed: the scalar switches take their defaults
            changes.update(f16_intermediates="per-op", accumulation="scalar", fma=False)
        return fe.replace(**changes), model

    def fix(self, ctx):
        fe = ctx.frontend
        want = ("CMSIS-DSP with Helium (MVE) paths, -mcpu=cortex-m55" + f" -{fe.optimization}" if fe.isa == "helium"
                else "the portable C CMSIS-DSP (no MVE)")
        got = "Helium -" + self.optimization if self.isa == "helium" else "the scalar C build"
        return f"build the front end with {want}, as the model's features were; the board runs {got}"


@dataclass(frozen=True)
class ArithmeticProfile(Fault):
    name: ClassVar[str] = "arithmetic-profile"
    stage: ClassVar[str] = "network"
    summary: ClassVar[str] = "the network computed with another integer arithmetic"
    profile: Optional[str] = None
    rounding: Optional[str] = None

    def __post_init__(self):
        from emu.graph.profiles import PROFILES
        if self.profile is not None:
            self._choice("profile", tuple(PROFILES))
            if self.rounding is not None:
                self._choice("rounding", PROFILES[self.profile].roundings)
        elif self.rounding is not None and not isinstance(self.rounding, str):
            self._err("rounding", self.rounding, "must be a rounding name")

    def resolve(self, ctx):
        from emu.graph.profiles import PROFILES
        own = ctx.model.arithmetic
        prof = self.profile or ("onnxruntime" if own.fixed_point else "cmsis-nn")
        if self.rounding is not None and self.rounding not in PROFILES[prof].roundings:
            self._err("rounding", self.rounding, f"is not a rounding of profile {prof!r}; use one of "
                      f"{', '.join(PROFILES[prof].roundings)}")
        return dataclasses.replace(self, profile=prof, rounding=self.rounding or PROFILES[prof].rounding)

    def noop(self, ctx):
        own = ctx.model.arithmetic
        if (self.profile, self.rounding) == (own.name, own.rounding):
            return f"the device already computes with {own.name}/{own.rounding}"
        return None

    def build(self, fe, model):
        return fe, model.replace(profile=self.profile, rounding=self.rounding)

    def fix(self, ctx):
        own = ctx.model.arithmetic
        return (f"the board's network arithmetic is {self.profile} (rounding {self.rounding}), not {own.name} "
                f"({own.rounding}): check the kernel library/runtime the firmware links, or describe the device "
                f"with [model].profile = \"{self.profile}\"")


CATALOGUE = (InputTransposed, NchwNhwc, DoubleQuantization, MissingQuantization, FloatBytesAsInt8, Int8Uint8,
             WrongScale, WrongZeroPoint, InverseScalePrecision, Truncation, NormalisationMismatch, LogEpsilon,
             LogBase, FrameCount, PatchShift, FrontendPrecision, F16Underflow, FftBuild, ArithmeticProfile)
FAULTS = {cls.name: cls for cls in CATALOGUE}
_ORDER = {cls.name: i for i, cls in enumerate(CATALOGUE)}


# ---------------------------------------------------------------------------------------------------
# the [faults] table
# ---------------------------------------------------------------------------------------------------

def make(name, params=None):
    """One fault from its catalogue name and a parameter mapping (TOML table; `True` = defaults)."""
    if name not in FAULTS:
        raise FaultError(f"unknown fault [faults].{name}; the catalogue: {', '.join(FAULTS)}")
    cls = FAULTS[name]
    if params is True or params is None:
        params = {}
    if not isinstance(params, dict):
        raise FaultError(f"[faults].{name} = {params!r} must be a table of parameters (or {{}} / true for the "
                         f"defaults)")
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise FaultError(f"unknown parameter [faults.{name}].{unknown[0]}; "
                         + (f"parameters: {', '.join(fields)}" if fields else "the fault has no parameters"))
    return cls(**params)


def parse(value):
    """A tuple of Faults (catalogue order) from the [faults] table, a list of Faults, or None."""
    if value is None:
        return ()
    if isinstance(value, Fault):
        value = (value,)
    if isinstance(value, dict):
        out = [make(k, v) for k, v in value.items()]
    else:
        try:
            out = list(value)
        except TypeError:
            raise FaultError(f"[faults] must be a table of faults, got {value!r}") from None
        if not all(isinstance(f, Fault) for f in out):
            raise FaultError("faults must be emu.faults.Fault values or a [faults] table")
    names = [f.name for f in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FaultError(f"fault {dup[0]} given twice; a firmware has one of each")
    return tuple(sorted(out, key=lambda f: _ORDER[f.name]))


def to_table(faults):
    """The [faults] table of a tuple of Faults (a fault without parameters is an empty table)."""
    return {f.name: f.params() for f in faults}


def label(faults):
    """"none" or the faults' labels joined with " + "."""
    return " + ".join(f.label() for f in faults) if faults else "none"


# ---------------------------------------------------------------------------------------------------
# applying them (called by emu.device.Device at each stage)
# ---------------------------------------------------------------------------------------------------

def _device_round(x, fe):
    """float32 values stored in the device type (binary16 RNE for st-f16)."""
    x = np.asarray(x, np.float32)
    if fe.profile == "st-f16":
        from emu.frontend.f16 import round_to_f16
        return round_to_f16(x)
    return x


class Applied:
    """The resolved faults of one device, by name, with the stage functions Device calls."""

    def __init__(self, faults, ctx):
        self.ctx = ctx
        self.faults = tuple(faults)
        self.by_name = {f.name: f for f in self.faults}
        for a, b in (("missing-quantization", "truncation"), ("float-bytes-as-int8", "missing-quantization"),
                     ("float-bytes-as-int8", "truncation"), ("float-bytes-as-int8", "double-quantization"),
                     ("frontend-precision", "log-epsilon"), ("frontend-precision", "log-base"),
                     ("frontend-precision", "f16-underflow"), ("float-bytes-as-int8", "frame-count")):
            if a in self.by_name and b in self.by_name:
                if a == "frontend-precision" and self.by_name[a].precision != "float64":
                    continue
                raise FaultError(f"faults {a} and {b} both replace the same step of the chain; keep one")
        self.floor = self.get("f16-underflow") is not None and self.get("f16-underflow").holes == "floor"
        self.float64 = self.get("frontend-precision") is not None and self.get("frontend-precision").precision == "float64"
        self.log_faults = any(f.stage in ("log", "quantize") for f in self.faults) or self.floor or self.float64
        self.float_buffer = "float-bytes-as-int8" in self.by_name

    def get(self, name):
        return self.by_name.get(name)

    def __contains__(self, name):
        return name in self.by_name

    def build(self, fe, model):
        for f in self.faults:
            fe, model = f.build(fe, model)
        return fe, model

    def stream(self, blocks):
        f = self.get("patch-shift")
        return blocks if f is None else f.stream(blocks)

    def stages(self, st, frontend, float_ref=None):
        """The board's log and features of one patch from the front end's stage dict `st` (pcm, mel, log,
        features): (dict with 'log' and 'features' replaced, notes [(fault name, array, layout)])."""
        if not self.log_faults:
            return st, []
        fe = frontend.params
        notes = []
        log = st["log"]
        eps, base = self.get("log-epsilon"), self.get("log-base")
        if self.floor or eps is not None or base is not None:
            mel = st["mel"]
            if self.floor:
                mel = np.where(mel <= 0, F16_TINY, mel).astype(np.float32)
            from emu.frontend import st as st_mod
            log = st_mod.app_log(mel, fe, eps=0.0 if eps is None else eps.eps, log=None if base is None else base.base)
            for f in (self.get("f16-underflow") if self.floor else None, eps, base):
                if f is not None:
                    notes.append((f.name, log, f"float32 [{fe.n_mels}, {fe.n_frames}] the board's log: "
                                  + ("energy floored at 2^-24, " if self.floor else "")
                                  + (f"log(mel + {eps.eps:g}), " if eps is not None else "")
                                  + f"{(base.base if base is not None else fe.log)}, stored in the device type"))
        if self.float64:
            log = np.asarray(float_ref.patch(st["pcm"]), np.float64).astype(np.float32)
            notes.append(("frontend-precision", log, f"float32 [{fe.n_mels}, {fe.n_frames}] the float64 PC reference "
                          f"log-mel (emu.frontend.float_ref) rounded to float32: the board's log"))
        norm = self.get("normalisation-mismatch")
        if norm is not None:
            log = norm.log(log, fe)
            notes.append((norm.name, log, f"float32 [{fe.n_mels}, {fe.n_frames}] the board's log after "
                          + ("per-patch (log - mean) / std" if norm.mean is None
                             else f"(log - {norm.mean:g}) / {norm.std:g}")))
        q = next((f for f in self.faults if f.stage == "quantize"), None)
        if q is not None:
            feats = q.quantize(log, frontend.state)
            notes.append((q.name, feats, f"int8 [{fe.n_mels}, {fe.n_frames}] the board's features: "
                          + ("(int16_t)(log * inv_scale + zp), no roundf" if q.name == "truncation"
                             else "(int8_t)(int32_t)log" if q.cast == "wrap" else "sat8((int32_t)log)")))
        elif log is not st["log"]:
            from emu.frontend import st as st_mod
            feats = st_mod.app_quantize(log, frontend.state)
        else:
            feats = st["features"]
        out = dict(st)
        out["log"], out["features"] = log, feats
        return out, notes

    def fill(self):
        f = self.get("frame-count")
        return 0 if f is None else f.fill

    def arrange(self, flat):
        """Elements [P, size] in the model's order -> the firmware's (nchw-nhwc)."""
        f = self.get("nchw-nhwc")
        if f is None or f.noop(self.ctx):
            return flat, None
        out = f.permute(flat, self.ctx)
        return out, (f.name, f"elements written {f.written.upper()} into the model's {self.ctx.buffer_layout} buffer")

    def to_bytes(self, flat, io_dtype):
        f = self.get("float-bytes-as-int8")
        return f.to_bytes(flat, io_dtype)

    def on_bytes(self, buf, device):
        """The buffer's bytes after the byte-level faults: (buffer, notes)."""
        notes = []
        f = self.get("int8-uint8")
        if f is not None:
            buf = f.on_bytes(buf)
            notes.append((f.name, buf, "the board's bytes: each byte ^ 0x80 (quantized for the other 8-bit type)"))
        f = self.get("double-quantization")
        if f is not None:
            x = buf.astype(np.float32)
            if f.by == "model":
                from emu.graph.prepare import quantize_float
                g = device.graph
                q = quantize_float(x, g.tensors[g.inputs[0]], device.session.arithmetic)
            else:
                from emu.frontend import st as st_mod
                x = device.session.model.to_internal(buf).astype(np.float32)
                q = st_mod.app_quantize(x, device.frontend.state)
            buf = device.session.model.from_internal(q)
            notes.append((f.name, buf, "the board's bytes: the int8 features quantized again by "
                          + ("the model's input quantization" if f.by == "model" else "the app's quantization")))
        return buf, notes


# ---------------------------------------------------------------------------------------------------
# the hypotheses emu.diagnose tries: each fault with a small set of parameter values that make sense
# ---------------------------------------------------------------------------------------------------

def candidates(ctx):
    """Resolved single faults worth trying on the device `ctx` (inapplicable and no-op ones left out)."""
    fe = ctx.frontend
    out = []

    def add(f):
        try:
            r = f.resolve(ctx)
        except FaultError:
            return
        if r.noop(ctx) is None or r.name == "nchw-nhwc":   # nchw-nhwc on 1 channel: kept, it ties `none`
            if r not in out:
                out.append(r)

    add(InputTransposed())
    add(NchwNhwc())
    for by in ("model", "app"):
        add(DoubleQuantization(by=by))
    for cast in ("wrap", "saturate"):
        add(MissingQuantization(cast=cast))
    for dt in ("float32", "float16"):
        add(FloatBytesAsInt8(dtype=dt))
    add(Int8Uint8())
    if fe.quant_scale is not None:
        for k in (2.0, 0.5, 4.0, 0.25, 256.0 / 255.0, 255.0 / 256.0):
            add(WrongScale(scale=float(np.float32(fe.quant_scale * k))))
        zp = fe.quant_zero_point
        for z in (0, zp - 1, zp + 1, -zp, zp - 128, zp + 128, -128):
            if -128 <= z <= 127 and z != zp:
                add(WrongZeroPoint(zero_point=int(z)))
    add(InverseScalePrecision())
    add(Truncation())
    add(NormalisationMismatch())
    for eps in (1e-10, 1e-6, 1e-4, 1e-2):
        add(LogEpsilon(eps=eps))
    for base in ("ln", "log10", "log2", "db"):
        add(LogBase(base=base))
    if ctx.model_frames is not None:
        m = ctx.model_frames
        for n in sorted({m - 1, m + 1, m - 2, m + 2, 32, 50, 64, 100} - {m}):
            if n > 0:
                add(FrameCount(n_frames=n))
    for s in (fe.keep_samples, -fe.keep_samples, fe.hop_length // 2, -(fe.hop_length // 2), fe.hop_length,
              -fe.hop_length, 1, -1):
        if s != 0:
            add(PatchShift(samples=int(s)))
    for prec in ("f16", "f32", "float64"):
        add(FrontendPrecision(precision=prec))
    for holes in ("zero", "saturate", "floor"):
        add(F16Underflow(holes=holes))
    for isa, opt in (("scalar", "Os"), ("helium", "Os"), ("helium", "Ofast")):
        add(FftBuild(isa=isa, optimization=opt))
    from emu.graph.profiles import PROFILES
    for name, prof in PROFILES.items():
        for r in prof.roundings:
            add(ArithmeticProfile(profile=name, rounding=r))
    return out
