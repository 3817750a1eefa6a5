"""Device description: one validated TOML document describing the whole chain (front end, model, input buffer, app).

    [frontend]   emu.frontend.params.FrontendParams (profile, FFT/mel/log parameters, the int8 feature
                 quantization and the UNKNOWN f16 switches); quant_scale / quant_zero_point may be
                 omitted: they are then read from the model's input buffer, as the app does.
    [model]
    path         model file (.onnx QDQ or .tflite int8), relative to the config file's folder;
                 "bundled:<name>" names a file in the package's data folder      "bundled:kws/model_qdq.onnx"
    profile      network arithmetic: a name of emu.graph.profiles.PROFILES ("cmsis-nn" |
                 "onnxruntime" | any registered profile)                            "cmsis-nn"
    rounding     requantization rounding, one of the profile's roundings: cmsis-nn "double" | "single";
                 onnxruntime "half-even"; omitted = the profile's default. A fixed-point profile also
                 takes any requantizer `n6emu fit` names: "single-TIE" (TIE: half-away, floor,
                 toward-zero, tosa-double), each optionally "/DERIVATION" of (M, shift) (float32,
                 truncate, m16), e.g. "single-floor/float32"                        omitted
    elementwise  onnxruntime only: QDQ Add/Mul as "dq-float" | "qlinear"; omitted = what ORT runs for
                 the model's I/O type (uint8: qlinear, int8: dq-float)              omitted
    backend      kernel implementation of the front end and the network: "numba" | "c" | "auto" (the
                 command picks per job: the C twins for short jobs, Numba for long ones, same values;
                 emu.kernels.backends.choose_backend); a Device built in Python takes "auto" as "numba"
                                                                                    "auto"
    state        recurrent layers (TFLite SVDF / LSTM with variable tensors): "keep" (tflite-micro keeps
                 them from one ai_run to the next: the windows of a recording form one stream) | "reset"
                 (every window starts from the initial state, as a stateless model on the PC); every
                 recording starts from the initial state                            "keep"
    [input]      the network's input buffer as the app fills it
    layout       "mel-major" (buf[mel * n_frames + frame], the ST app) | "frame-major"
                 (buf[frame * n_mels + mel])                                       "mel-major"
    boundary     "int8" (the app quantizes the features; ST default) | "float32" (the app hands float
                 log-mel and the model's own QuantizeLinear quantizes, under the profile)   "int8"
    io_layout    ST Edge AI's I/O layout option: "original" (an ONNX model's input buffer in its own NCHW
                 layout) | "channel-last" (4-D I/O buffers NHWC); TFLite models are
                 channel-last either way                                            "original"
    [app]        the application around the network (ST audio getting-started)
    silence_gate        suppress the decision of a patch whose silence sum is below the threshold   true
    silence_threshold   running f16 sum of all magnitude bins of a patch (st-* front ends)        3000.0
    output              "softmax": dequantize + float softmax (model tail); "int8": argmax of int8 "softmax"
    threshold           report a class only if its probability exceeds this                        0.5
    unknown_label       label reported below the threshold or when the gate suppresses             "unknown"
    classes             class names in output order; empty = the labels.txt beside the model       []
    [faults]     optional: how the firmware deviates from the device above (emu/faults.py: the catalogue, each
                 fault's parameters and the stage where it acts). One key per fault, its value a table of
                 parameters ({} or true: the defaults), e.g. `input-transposed = {}`,
                 `wrong-scale = { scale = 0.2214 }`. Without it a description that contradicts the model is an
                 error; a fault that explains the contradiction (input-transposed, frame-count) turns it into a
                 warning naming the fault (Device.warnings).

Unknown keys and tables are rejected with the key's name; every value is type- and range-checked.
"""
import dataclasses
import os
import tomllib
from dataclasses import dataclass, field

from emu.errors import N6Error, printable, quoted
from emu.frontend.params import FrontendParams, toml_value

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
BUNDLED_CONFIG = os.path.join(DATA_DIR, "device_default.toml")
BUNDLED_PREFIX = "bundled:"
MAX_CONFIG_BYTES = 1 << 20


class ConfigError(N6Error, ValueError):
    """An invalid or inconsistent device description (one line: the key, the problem, the fix)."""


def bundled_path(spec):
    """The file named by "bundled:<name>": a relative path inside the package data folder (emu/data). Absolute
    names, '..' components and symlinks leading out of the folder are refused."""
    rel = spec[len(BUNDLED_PREFIX):]
    root = os.path.realpath(DATA_DIR)
    full = os.path.realpath(os.path.join(root, rel))
    if not rel or os.path.isabs(rel) or "\\" in rel or os.path.commonpath([root, full]) != root or full == root:
        raise ConfigError(f"[model].path = {quoted(spec)} leaves the package data folder; \"bundled:\" names a "
                          f"file inside it, e.g. \"bundled:kws/model_qdq.onnx\" (give other files by their own path)")
    return full


def _check_keys(table, allowed, section):
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown key [{section}].{unknown[0]}; valid keys: {', '.join(sorted(allowed))}")


def _choice(section, name, value, allowed):
    if value not in allowed:
        raise ConfigError(f"[{section}].{name} = {value!r} is not supported; use one of {', '.join(map(repr, allowed))}")


@dataclass(frozen=True)
class ModelSection:
    path: str = BUNDLED_PREFIX + "kws/model_qdq.onnx"
    profile: str = "cmsis-nn"
    rounding: str = None
    backend: str = "auto"

    elementwise: str = None
    state: str = "keep"

    def __post_init__(self):
        from emu.graph.profiles import ELEMENTWISE_MODES, PROFILES, ArithmeticProfile
        from emu.kernels.backends import AUTO, BACKENDS
        if not isinstance(self.path, str) or not self.path:
            raise ConfigError("[model].path must be a model file path (.onnx or .tflite)")
        if "\0" in self.path:
            raise ConfigError(f"[model].path = {quoted(self.path)} contains a NUL character; give a file path")
        if self.path.startswith(BUNDLED_PREFIX):
            bundled_path(self.path)           # refuses names that leave the package data folder
        if isinstance(self.profile, ArithmeticProfile):   # a profile value (Python API), not only a registered name
            profile = self.profile
        else:
            _choice("model", "profile", self.profile, tuple(PROFILES))
            profile = PROFILES[self.profile]
        if self.rounding is not None:
            try:
                profile.choose(self.rounding)
            except N6Error as e:
                raise ConfigError(f"[model].rounding: {e}") from None
        if self.elementwise is not None:
            if profile.fixed_point:
                raise ConfigError(f"[model].elementwise is an option of the onnxruntime (mlas) profiles; remove it "
                                  f"for profile {profile.name!r}")
            _choice("model", "elementwise", self.elementwise, ELEMENTWISE_MODES[profile.formulation])
        _choice("model", "backend", self.backend, BACKENDS + (AUTO,))
        _choice("model", "state", self.state, ("keep", "reset"))

    @property
    def arithmetic(self):
        """The ArithmeticProfile with [model].rounding chosen (elementwise: resolved against the model's I/O type
        by emu.models)."""
        from emu.graph.profiles import resolve
        return resolve(self.profile, self.rounding)

    def replace(self, **changes):
        """A copy with fields changed; a new profile without its own rounding/elementwise takes its defaults."""
        if changes.get("profile", self.profile) != self.profile:
            changes.setdefault("rounding", None)
            changes.setdefault("elementwise", None)
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        d = dataclasses.asdict(self)
        if not isinstance(self.profile, str):
            d["profile"] = self.profile.name
        return d


@dataclass(frozen=True)
class InputSection:
    layout: str = "mel-major"
    boundary: str = "int8"
    io_layout: str = "original"

    def __post_init__(self):
        _choice("input", "layout", self.layout, ("mel-major", "frame-major"))
        _choice("input", "boundary", self.boundary, ("int8", "float32"))
        _choice("input", "io_layout", self.io_layout, ("original", "channel-last"))


@dataclass(frozen=True)
class AppSection:
    silence_gate: bool = True
    silence_threshold: float = 3000.0
    output: str = "softmax"
    threshold: float = 0.5
    unknown_label: str = "unknown"
    classes: tuple = ()

    def __post_init__(self):
        if not isinstance(self.silence_gate, bool):
            raise ConfigError(f"[app].silence_gate = {self.silence_gate!r} must be true or false")
        if isinstance(self.silence_threshold, bool) or not isinstance(self.silence_threshold, (int, float)) \
                or self.silence_threshold < 0:
            raise ConfigError(f"[app].silence_threshold = {self.silence_threshold!r} must be a number >= 0")
        _choice("app", "output", self.output, ("softmax", "int8"))
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or not 0 <= self.threshold < 1:
            raise ConfigError(f"[app].threshold = {self.threshold!r} must be a probability in [0, 1)")
        if not isinstance(self.unknown_label, str):
            raise ConfigError("[app].unknown_label must be a string")
        if not all(isinstance(c, str) for c in self.classes):
            raise ConfigError("[app].classes must be a list of strings")
        object.__setattr__(self, "classes", tuple(self.classes))


@dataclass(frozen=True)
class DeviceConfig:
    frontend: FrontendParams = field(default_factory=FrontendParams)
    model: ModelSection = field(default_factory=ModelSection)
    input: InputSection = field(default_factory=InputSection)
    app: AppSection = field(default_factory=AppSection)
    base_dir: str = DATA_DIR          # folder the relative paths are resolved against
    source: str = "<defaults>"        # where the description came from
    faults: tuple = ()                # emu.faults.Fault values, catalogue order ([faults])

    def __post_init__(self):
        if self.faults:
            from emu.faults import parse
            object.__setattr__(self, "faults", parse(self.faults))
        else:
            object.__setattr__(self, "faults", ())

    def model_path(self):
        """The model file named by [model].path, resolved against the config's folder or the package data."""
        p = self.model.path
        if p.startswith(BUNDLED_PREFIX):
            return bundled_path(p)
        return p if os.path.isabs(p) else os.path.normpath(os.path.join(self.base_dir, p))

    def to_dict(self):
        """Plain mapping (TOML tables) of every setting: recorded in results and vector manifests."""
        d = dict(frontend=self.frontend.to_dict(), model=self.model.to_dict(),
                 input=dataclasses.asdict(self.input),
                 app={**dataclasses.asdict(self.app), "classes": list(self.app.classes)})
        if self.faults:
            from emu.faults import to_table
            d["faults"] = to_table(self.faults)
        return d

    def replace(self, section=None, **changes):
        """A copy with fields of one section changed (validated again), e.g. replace("input", layout="frame-major")."""
        if section is None:
            return dataclasses.replace(self, **changes)
        part = getattr(self, section)
        new = part.replace(**changes) if hasattr(part, "replace") else dataclasses.replace(part, **changes)
        return dataclasses.replace(self, **{section: new})


_SECTIONS = {"model": ModelSection, "input": InputSection, "app": AppSection}


def from_dict(doc, base_dir=DATA_DIR, source="<dict>"):
    """Validate a parsed TOML document into a DeviceConfig; unknown tables/keys are errors naming them."""
    _check_keys(doc, ("frontend",) + tuple(_SECTIONS) + ("faults",), "top level")
    parts = {}
    for name, cls in _SECTIONS.items():
        table = doc.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table")
        _check_keys(table, [f.name for f in dataclasses.fields(cls)], name)
        try:
            parts[name] = cls(**table)
        except TypeError as exc:  # wrong value types caught by the dataclass constructor
            raise ConfigError(f"[{name}]: {exc}") from None
    fe = doc.get("frontend", {})
    if not isinstance(fe, dict):
        raise ConfigError("[frontend] must be a table")
    frontend = FrontendParams.from_dict(fe)
    faults = doc.get("faults", {})
    if not isinstance(faults, dict):
        raise ConfigError("[faults] must be a table of faults, e.g. input-transposed = {}")
    from emu.faults import parse
    return DeviceConfig(frontend=frontend, base_dir=base_dir, source=source, faults=parse(faults), **parts)


def load_config(path=None):
    """Read and validate a device TOML file; None gives the bundled default device."""
    path = BUNDLED_CONFIG if path is None else os.fspath(path)
    shown = printable(path, 4096)
    if os.path.isdir(path):
        raise ConfigError(f"{shown} is a folder; give a device TOML file")
    if not os.path.isfile(path):
        raise ConfigError(f"{shown}: no such config file")
    if os.path.getsize(path) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{shown} is {os.path.getsize(path)} bytes, too large for a device description (at most "
                          f"{MAX_CONFIG_BYTES >> 10} KB); give a TOML device description")
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{shown}: invalid TOML ({printable(exc, 200)}); fix the file (see the bundled "
                          f"device_default.toml)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not a UTF-8 text file; give a TOML device description") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read the config ({exc.strerror}); check its permissions") from None
    except RecursionError:
        raise ConfigError(f"{shown}: TOML nested too deeply; give a device description") from None
    try:
        return from_dict(doc, base_dir=os.path.dirname(os.path.abspath(path)), source=shown)
    except N6Error as exc:
        raise ConfigError(f"{shown}: {exc}") from None


def to_toml(cfg):
    """The description as TOML text (round-trips through load_config)."""
    lines = []
    for section, table in cfg.to_dict().items():
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in table.items() if k not in nested and v is not None)
        for k, v in nested.items():
            lines.append(f"\n[{section}.{k}]")
            lines.extend(f"{kk} = {toml_value(vv)}" for kk, vv in v.items() if vv is not None)
        lines.append("")
    return "\n".join(lines)

