"""The device chain end to end: PCM -> patches -> front end -> int8 input buffer ->
network -> int8 output -> dequantize/softmax -> decision, exactly as the firmware sequences it.

    dev = Device()                          # the bundled default device (emu/data/device_default.toml)
    dev = Device("my_board.toml")           # or a DeviceConfig
    feats, silence = dev.features(pcm)      # int8 [P, n_coefs, n_frames] per patch + silence sums
    buf = dev.input_buffer(feats)           # [P, *model input shape], the board's bytes in the configured layout
    out = dev.run(buf)                      # [P, n_classes] in the model's output type
    recs = dev.decide(out, silence)         # probabilities, first-maximum decision, threshold, gate
    for rec in dev.replay(["a.wav", "dir/"]): ...   # streamed, bounded memory, one record per patch
    t = dev.trace(pcm_patch)                # emu.trace.Trace: every stage and every network tensor, one record
    ort = dev.with_(**{"model.profile": "onnxruntime"})   # one change; the parsed model and tables are reused
    board = dev.with_(faults={"input-transposed": {}})    # the firmware as it is (emu/faults.py): [faults]

Faults ([faults], emu/faults.py) act where the firmware deviates: on the recording before framing, on the front
end's build switches, on the float log and the app's quantization between the front end's stages, on the input
buffer's order, stride and bytes, or on the network's arithmetic. `dev.faults` are the resolved faults,
`dev.warnings` what the description contradicts and a fault explains (or a fault that changes nothing here); both
are in `dev.settings`, and a trace shows each fault's output as a faults/<name> stage.

Every arithmetic choice is a field of the DeviceConfig; `dev.settings` (the config as a mapping plus the
resolved input quantization, arithmetic profile and model) is recorded with every result. The network runs
through emu.models.ModelSession, the same path as `n6emu run`.
"""
import copy
import json
import os

import numpy as np

from emu import audio
from emu import faults as faults_mod
from emu.config import ConfigError, DeviceConfig, load_config
from emu.errors import N6Error
from emu.frontend.registry import FrontEnd
from emu.kernels.backends import AUTO, choose_backend

BATCH_PATCHES = 256  # patches per front-end / network call while streaming (memory: ~BATCH_PATCHES x 130 KB)


def frontend_params(cfg, graph=None):
    """The config's [frontend] with the int8 quantization resolved: when quant_scale is omitted the app reads
    scale and zero-point from the model's input buffer info (the model is loaded if `graph` is None)."""
    fe = cfg.frontend
    if fe.quant_scale is not None:
        return fe
    if graph is None:
        from emu.models import load_model
        graph = load_model(cfg.model_path())
    t_in = graph.tensors[graph.inputs[0]]
    if t_in.scale is None:
        raise ConfigError(f"{cfg.model_path()}: the model input is not quantized; set [frontend].quant_scale "
                          "and quant_zero_point")
    return fe.replace(quant_scale=float(t_in.scale[0]), quant_zero_point=int(t_in.zero_point[0]))


def _int16_pcm(pcm, who):
    """The recording as a 1-D int16 array, or one N6Error: other dtypes are not cast (a float recording in
    [-1, 1] would become all zeros and gate every patch)."""
    a = np.asarray(pcm)
    if a.dtype != np.int16 or a.ndim != 1:
        hint = ("scale float audio in [-1, 1] with (x * 32767).round().astype(np.int16)" if a.dtype.kind == "f"
                else "give a 1-D int16 array")
        raise N6Error(f"{who} takes 1-D int16 PCM, got {a.dtype} with shape {a.shape}; {hint}, or read a file "
                      f"with emu.audio.load(path)")
    return a


def _labels_beside(model_path):
    p = os.path.join(os.path.dirname(model_path), "labels.txt")
    if not os.path.isfile(p):
        return None
    with open(p, encoding="utf-8") as f:
        return tuple(line.strip() for line in f if line.strip())


class _Shared:
    """What Devices made by with_() share: imported models by path, prepared graphs by (path, arithmetic) and
    prepared front ends by their resolved parameters. Everything in it is read-only once built."""

    def __init__(self):
        self.models, self.prepared, self.frontends = {}, {}, {}
        self._keys, self._table_keys = {}, {}       # FrontendParams -> its cache keys (params are frozen values)

    def model(self, path, io_layout="original"):
        from emu.models import import_model
        if (path, io_layout) not in self.models:
            self.models[(path, io_layout)] = import_model(path, io_layout)
        return self.models[(path, io_layout)]

    def frontend(self, params, backend="numba"):
        """The FrontEnd of `params` on kernel `backend` (one per pair, tables shared across app quantizations)."""
        key = self._keys.get(params) if params.q15 is None else None
        if key is None:
            key = json.dumps(params.to_dict(), sort_keys=True, default=str)
            if params.q15 is None:
                self._keys[params] = key
        key = (key, backend)
        if key not in self.frontends:
            base = self.frontends.get(("tables", backend) + self.table_key(params))
            if base is None:
                fe = FrontEnd(params, backend)
                if params.profile in ("st-f16", "st-f32"):
                    self.frontends[("tables", backend) + self.table_key(params)] = fe
            else:   # another app quantization over the same tables (faults wrong-scale, ...): share them
                from emu.frontend import st
                fe = copy.copy(base)
                fe.params, fe.state = params, st.requantized(base.state, params)
            self.frontends[key] = fe
        return self.frontends[key]

    def table_key(self, params):
        """The front end's parameters but the app's quantization (st-* profiles: what its stages up to the log
        depend on)."""
        from emu.frontend.st import QUANTIZATION_FIELDS
        key = self._table_keys.get(params) if params.q15 is None else None
        if key is None:
            d = params.to_dict()
            if params.profile in ("st-f16", "st-f32"):
                for k in QUANTIZATION_FIELDS:
                    d.pop(k, None)
            key = (json.dumps(d, sort_keys=True, default=str),)
            if params.q15 is None:
                self._table_keys[params] = key
        return key

    def float_ref(self, params):
        """The float64 PC reference front end (fault frontend-precision = "float64")."""
        from emu.frontend.float_ref import FloatLogMel
        key = "float64:" + json.dumps(params.to_dict(), sort_keys=True, default=str)
        if key not in self.frontends:
            self.frontends[key] = FloatLogMel(params)
        return self.frontends[key]


class Device:
    """A configured device chain (see module doc). `config`: None (bundled), a TOML path or a DeviceConfig."""

    def __init__(self, config=None, _shared=None):
        from emu.models import ModelSession

        cfg = config if isinstance(config, DeviceConfig) else load_config(config)
        if cfg.model.backend == AUTO:          # no job size here: the batched Numba kernels (the CLI chooses per job)
            cfg = cfg.replace("model", backend=choose_backend(AUTO))
        self.config = cfg
        self._shared = _Shared() if _shared is None else _shared
        model_path = cfg.model_path()
        self.model_path = model_path
        model = self._shared.model(model_path, cfg.input.io_layout)
        self.graph = g = model.graph
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise ConfigError(f"{model_path}: the device chain drives one input and one output, the model has "
                              f"{len(g.inputs)} inputs and {len(g.outputs)} outputs")
        intended = frontend_params(cfg, g)
        self.boundary = cfg.input.boundary
        if self.boundary == "float32" and intended.profile == "cmsis-q15":
            raise ConfigError("[input].boundary = \"float32\" needs a float front end (st-f16 or st-f32); "
                              "the cmsis-q15 front end only makes int8 features")
        self.input_shape = model.input_shape
        self.warnings = []
        self.fault_context = ctx = self._fault_context(cfg, intended, model)
        self.faults = tuple(f.resolve(ctx) for f in cfg.faults)
        self._faults = faults_mod.Applied(self.faults, ctx)
        for f in self.faults:
            why = f.noop(ctx)
            if why is not None:
                self.warnings.append(f"fault {f.label()} changes nothing on this device: {why}")
        self.layout = self._check_layout(ctx)
        fe, m = self._faults.build(intended, cfg.model)
        self.frontend = self._shared.frontend(fe, m.backend)
        self._float_ref = self._shared.float_ref(fe) if self._faults.float64 else None
        self._feature_stage = "log" if self.boundary == "float32" or self._faults.float_buffer else "features"
        self.session = ModelSession(model, m.profile, m.backend, rounding=m.rounding, elementwise=m.elementwise,
                                    state=m.state, prepared_cache=self._shared.prepared.setdefault((model_path, cfg.input.io_layout), {}))
        self.runtime = self.session.runtime
        t_out = g.tensors[g.outputs[0]]
        self.n_classes = int(np.prod(t_out.shape))
        self.output_scale, self.output_zero_point = model.output_quantization()
        self.output_is_softmax = bool(g.nodes) and g.nodes[-1].op == "softmax"
        classes = cfg.app.classes or _labels_beside(model_path)
        if classes is None:
            classes = tuple(f"class_{i}" for i in range(self.n_classes))
        if len(classes) != self.n_classes:
            raise ConfigError(f"{len(classes)} class names for a model with {self.n_classes} outputs; "
                              f"fix [app].classes (or the labels.txt beside the model)")
        self.classes = tuple(classes)
        if cfg.app.silence_gate and not self.frontend.has_silence_sum:
            raise ConfigError(f"[app].silence_gate needs the st-f16/st-f32 front end's silence sum; "
                              f"set silence_gate = false for {fe.profile}")

    def _fault_context(self, cfg, intended, model):
        """What a fault knows of the intended device (emu.faults.Context)."""
        fe = self._shared.frontend(intended, cfg.model.backend)
        n_coefs = fe.n_coefs
        size = int(np.prod(self.input_shape))
        frames = size // n_coefs if size % n_coefs == 0 else None
        dims = tuple(d for d in self.input_shape if d != 1)
        natural = None
        if frames is not None and len(dims) == 2 and n_coefs != frames:
            natural = {(n_coefs, frames): "mel-major", (frames, n_coefs): "frame-major"}.get(dims)
        return faults_mod.Context(
            frontend=intended, model=cfg.model, layout=cfg.input.layout, boundary=cfg.input.boundary,
            input_shape=self.input_shape, io_dtype=model.io_dtype,
            buffer_layout="NCHW" if model.onnx is not None else "NHWC", n_coefs=n_coefs,
            coef="mfcc" if fe.frame_major else "mel", model_frames=frames, natural_layout=natural)

    def with_(self, **changes):
        """A Device with some settings changed, rebuilding only what the change touches (the parsed model, the
        graph prepared under an unchanged profile and an unchanged front end's tables are reused).
        Keys are "section.field" (spelled with ** for the dot) or a section name with a dict of fields:
            dev.with_(**{"model.profile": "onnxruntime", "input.layout": "frame-major"})
            dev.with_(frontend={"n_mels": 40}, app={"threshold": 0.7})"""
        by_section = {}
        faults = None
        for key, value in changes.items():
            section, dot, name = key.partition(".")
            if section == "faults":
                if faults is None:
                    faults = faults_mod.to_table(self.config.faults)
                if not dot:
                    faults = faults_mod.to_table(faults_mod.parse(value))
                elif value is None or value is False:
                    faults.pop(name, None)
                else:
                    faults[name] = faults_mod.make(name, value).params()
                continue
            if section not in self.config.to_dict():
                raise ConfigError(f"unknown setting {key!r}; give 'section.field' with a section of "
                                  f"{', '.join(self.config.to_dict())}")
            if dot:
                by_section.setdefault(section, {})[name] = value
            elif isinstance(value, dict):
                by_section.setdefault(section, {}).update(value)
            else:
                raise ConfigError(f"with_({key}=...) needs a dict of [{key}] fields, or use '{key}.<field>'")
        cfg = self.config
        for section, fields in by_section.items():
            try:
                cfg = cfg.replace(section, **fields)
            except TypeError as exc:   # an unknown field name of the section's dataclass
                raise ConfigError(f"[{section}]: {exc}") from None
        if faults is not None:
            cfg = cfg.replace(faults=faults_mod.parse(faults))
        return Device(cfg, _shared=self._shared)

    # ---- configuration checks ---------------------------------------------------------------------

    def _check_layout(self, ctx):
        """The order the app writes the buffer in. A description that contradicts the model is an error, unless a
        fault of [faults] explains it (a warning naming the fault: the description is then the firmware's)."""
        n_coefs, n_frames = ctx.n_coefs, int(ctx.frontend.n_frames)
        size = ctx.size
        shape = "x".join(map(str, self.input_shape))
        what = "MFCCs" if ctx.coef == "mfcc" else "mels"
        layout = self.config.input.layout
        if size != n_coefs * n_frames:
            msg = (f"the model input [{shape}] holds {size} values but the front end makes {n_coefs} {what} x "
                   f"{n_frames} frames = {n_coefs * n_frames}")
            if "frame-count" not in self._faults or ctx.model_frames is None:
                raise ConfigError(f"{msg}; make [frontend] match the model")
            self.warnings.append(f"{msg}: kept as the firmware's, as [faults] frame-count describes")
        if ctx.natural_layout is not None and layout != ctx.natural_layout:
            d = tuple(d for d in self.input_shape if d != 1)
            msg = (f"the model input [{shape}] is {ctx.natural_layout} ({d[0]}x{d[1]}) but [input].layout = "
                   f"{layout!r}")
            if "input-transposed" not in self._faults:
                raise ConfigError(f"{msg}; set layout = \"{ctx.natural_layout}\"")
            self.warnings.append(f"{msg}: kept as the firmware's, as [faults] input-transposed describes")
        if "input-transposed" in self._faults:
            return self._faults.get("input-transposed").written(ctx)
        return layout

    @property
    def settings(self):
        """Every choice that determines the results, for records and manifests."""
        d = self.config.to_dict()
        d["frontend"] = self.frontend.params.to_dict()          # with the resolved quant scale/zp
        q15 = getattr(self.frontend.state, "q15", None)
        if q15 is not None:
            d["frontend"]["q15"] = q15.to_dict()                # every cmsis-q15 choice, defaults included
        d["model"] = dict(d["model"], resolved_path=os.path.abspath(self.model_path))
        d["runtime"] = self.session.metadata
        if self.faults:
            d["faults"] = faults_mod.to_table(self.faults)      # resolved parameters
            d["input"] = dict(d["input"], written_layout=self.layout)
        if self.warnings:
            d["warnings"] = list(self.warnings)
        return d

    # ---- the stages -------------------------------------------------------------------------------

    def patches(self, pcm):
        """The app's patches of an in-memory int16 recording: iterator of (index, patch)."""
        p = self.frontend.params
        return audio.patches(self._faults.stream([np.asarray(pcm, np.int16)]), p.keep_samples, p.new_samples)

    def _stages(self, patch):
        """The board's front-end stages of one patch (between-stage faults applied) and the faults' notes
        [(fault name, array, layout)]."""
        return self._faults.stages(self.frontend.stages(patch), self.frontend, self._float_ref)

    def _patch(self, patch):
        """(features as the app hands them to the buffer writer, silence sum) of one patch."""
        if not self._faults.log_faults and self._feature_stage == "features":
            return self.frontend.patch(patch, self.boundary)
        st, _ = self._stages(patch)
        f = st[self._feature_stage]
        return (np.ascontiguousarray(f, np.float32) if self._feature_stage == "log" else f,
                float(st.get("silence_sum", np.nan)))

    def features(self, pcm):
        """Features [P, n_coefs, n_frames] (int8, or float32 log-mel with [input].boundary = "float32" or the fault
        float-bytes-as-int8: what the app hands its buffer writer) and silence sums [P] of an int16 recording."""
        pcm = _int16_pcm(pcm, "Device.features()")
        feats, sil = [], []
        for _, patch in self.patches(pcm):
            f, s = self._patch(patch)
            feats.append(f)
            sil.append(s)
        n_coefs, n_frames = self.frontend.n_coefs, self.frontend.params.n_frames
        if not feats:
            dtype = np.int8 if self._feature_stage == "features" else np.float32
            return np.zeros((0, n_coefs, n_frames), dtype), np.zeros(0, np.float32)
        return np.stack(feats), np.asarray(sil, np.float32)

    def recording_buffers(self, pcm, stage_cache=None):
        """(input buffers [P, *input shape] in the board's bytes, silence sums [P]) of every patch of one int16
        recording, the buffers batched. stage_cache: a dict the caller owns (emu.diagnose), shared by Devices made
        by with_: the front end's stages of a recording are computed once per front-end build and stream shift
        (keyed by id(pcm): keep the array alive while the cache is used)."""
        shift = self._faults.get("patch-shift")
        key = (id(pcm), self._shared.table_key(self.frontend.params), 0 if shift is None else shift.samples)
        cached = None if stage_cache is None else stage_cache.get(key)
        if cached is None:
            keep = ("pcm", "mel", "log", "features", "silence_sum")
            cached = (self.frontend, [{k: v for k, v in self.frontend.stages(patch).items() if k in keep}
                                      for _, patch in self.patches(pcm)])
            if stage_cache is not None:
                stage_cache[key] = cached
        made_by, stages = cached
        if made_by is not self.frontend:   # the same stages up to the log, another app quantization
            from emu.frontend.st import app_quantize
            stages = [dict(st, features=app_quantize(st["log"], self.frontend.state)) for st in stages]
        feats, sil = [], []
        for st in stages:
            board, _ = self._faults.stages(st, self.frontend, self._float_ref)
            feats.append(board[self._feature_stage])
            sil.append(float(st.get("silence_sum", np.nan)))
        n_coefs, n_frames = self.frontend.n_coefs, self.frontend.params.n_frames
        f = (np.stack(feats) if feats else
             np.zeros((0, n_coefs, n_frames), np.int8 if self._feature_stage == "features" else np.float32))
        return self.input_buffer(f), np.asarray(sil, np.float32)

    def input_buffer(self, feats):
        """The network input buffer as the app writes it ([input].layout), shaped like the model input, in the
        board's bytes: the model's I/O type (int8; uint8 models: value + 128, what the app's quantization with the
        model's uint8 zero-point gives) or float32 at a float32 input boundary. Buffer faults of [faults] act here
        (order, stride, type, bytes)."""
        return self._buffer(feats)[0]

    def _buffer(self, feats):
        float_feats = self._feature_stage == "log"
        f = np.asarray(feats, np.float32 if float_feats else np.int8)
        single = f.ndim == 2
        f = f[None] if single else f
        if self.layout == "frame-major":
            f = f.transpose(0, 2, 1)
        flat = np.ascontiguousarray(f).reshape(f.shape[0], f.shape[1] * f.shape[2])
        size = int(np.prod(self.input_shape))
        notes = []
        if flat.shape[1] != size:        # frame-count: the firmware's stride, its writes cut at the buffer's end
            out = np.full((flat.shape[0], size), self._faults.fill(), flat.dtype)
            n = min(size, flat.shape[1])
            out[:, :n] = flat[:, :n]
            flat = out
            notes.append(("frame-count", f"{self.frontend.params.n_frames} frames written with the firmware's "
                          f"stride, {n} of {size} elements written"))
        flat, note = self._faults.arrange(flat)
        if note is not None:
            notes.append(note)
        shape = (flat.shape[0],) + self.input_shape
        if self._faults.float_buffer:
            buf = self._faults.to_bytes(flat, self.session.model.io_dtype).reshape(shape)
            notes.append(("float-bytes-as-int8", "the first bytes of the float log-mel array"))
        else:
            buf = flat.reshape(shape)
            if self.boundary == "int8":
                buf = self.session.model.from_internal(buf)
        notes = [(name, buf, text) for name, text in notes]
        if self.boundary == "int8":
            buf, more = self._faults.on_bytes(buf, self)
            notes.extend(more)
        if single:
            return buf[0], [(n, v[0], t) for n, v, t in notes]
        return buf, notes

    def run(self, buffers):
        """Network outputs [P, n_classes] (the model's output type) for input buffers [P, *input shape]."""
        b = np.asarray(buffers)
        if b.shape[0] == 0:
            return np.zeros((0, self.n_classes), self.session.model.io_dtype)
        q, _ = self.session.run(b, self.boundary)
        return np.asarray(q).reshape(b.shape[0], self.n_classes)

    def trace(self, pcm, window=None):
        """emu.trace.Trace of one patch through the whole chain: frontend/<stage> (canonical names), input_buffer
        (board bytes), network/<tensor>, output, probabilities, and the decision. window None: `pcm` is one patch
        of int16 PCM (exactly (n_frames - 1) * hop + win samples, the buffer the app hands its front end);
        window K: `pcm` is a recording and its patch K is traced the way replay frames it (the app's first patch
        starts with win - hop zeros), so a 1-second clip traced with window=0 equals replay's first record."""
        pcm = np.asarray(pcm)
        p = self.frontend.params
        self.runtime.reset_state()          # a trace starts from the initial recurrent state ([model].state)
        if window is None:
            if pcm.size != p.patch_length:
                raise N6Error(f"trace() takes one patch of {p.patch_length} samples (got {pcm.size}); for a recording pass "
                              f"window=K, or use traces()")
            patch = pcm
        else:
            patch, earlier = None, []
            for k, x in self.patches(pcm):
                if k == window:
                    patch = x
                    break
                if self.runtime.stateful:       # the windows before it feed the recurrent state, in order
                    earlier.append(self._patch(x)[0])
            if patch is None:
                raise N6Error(f"window {window} does not exist: the recording holds {self.patch_count(pcm.size)} "
                              f"patch(es)")
            if earlier:
                self.run(self.input_buffer(np.stack(earlier)))
        return self._trace(patch)

    def traces(self, pcm):
        """(index, Trace) of every patch of an int16 recording, in order (from the initial recurrent state)."""
        self.runtime.reset_state()
        for k, patch in self.patches(pcm):
            yield k, self._trace(patch)

    def leftover_samples(self, n_samples):
        """Samples of a recording of n_samples after its last patch: not computed (the device would still be
        waiting for the rest of the next patch)."""
        shift = self._faults.get("patch-shift")
        used = n_samples if shift is None else max(0, n_samples - shift.samples)
        return used - self.patch_count(n_samples) * self.frontend.params.new_samples

    def patch_count(self, n_samples):
        p = self.frontend.params
        shift = self._faults.get("patch-shift")
        if shift is not None:
            n_samples = max(0, n_samples - shift.samples)
        return n_samples // p.new_samples     # the first patch starts with keep_samples zeros

    def _trace(self, patch):
        from emu.trace import Trace
        t = Trace(self.settings)
        stages, notes = self._stages(patch)
        changed = {"log", "features"} if notes else set()
        for name, value in stages.items():
            layout = self.frontend.layout(name)
            if name in changed:
                layout += " (the board's, after [faults])"
            t.add(f"frontend/{name}", value, layout)
        feats = stages[self._feature_stage]
        buf, buf_notes = self._buffer(np.asarray(feats, np.float32) if self._feature_stage == "log" else feats)
        for name, value, layout in notes + buf_notes:
            t.add(f"faults/{name}", value, f"fault {self._faults.get(name).label()}: {layout}")
        net = self.session.trace(buf, "float32" if self.boundary == "float32" else "int8", settings={})
        t.extend(net)
        written = ("" if self.layout == self.config.input.layout
                   else f", written {self.layout} by the firmware ([faults] input-transposed)")
        t.stages["input_buffer"].layout = (f"{buf.dtype.name} {list(buf.shape)} model input buffer, "
                                           f"{self.config.input.layout} ([input].layout){written}"
                                           + (f"; faults: {faults_mod.label(self.faults)}" if self.faults else ""))
        out = t["output"].reshape(1, self.n_classes)
        silence = t["frontend/silence_sum"].reshape(1) if "frontend/silence_sum" in t else None
        d = self.decide(out, silence)[0]
        t.add("probabilities", d["probabilities"], "float32 [n_classes] after the app's dequantize/softmax")
        t.decision = dict(index=d["index"], score=d["score"], label=d["label"], gated=d["gated"])
        return t

    def probabilities(self, outputs):
        """Dequantize (float32 (q - zp) * scale) then the app's float softmax, unless the network already
        ends in a (quantized) softmax or [app].output = "int8"."""
        q = np.asarray(outputs)
        if self.output_scale is None:
            return q.astype(np.float32)
        x = (q.astype(np.float32) - np.float32(self.output_zero_point)) * self.output_scale
        if self.output_is_softmax or self.config.app.output == "int8":
            return x
        from emu.graph.onnx_qdq import softmax_f32   # the same float tail as the ONNX model runner
        return softmax_f32(x)

    def decide(self, outputs, silence=None):
        """Per patch: (index of the first maximum, its probability, label or None when gated)."""
        app = self.config.app
        probs = self.probabilities(outputs)
        out = []
        for k in range(probs.shape[0]):
            i = int(np.argmax(probs[k]))   # first maximum (strict >), like the app's loop
            score = float(probs[k, i])
            gated = bool(app.silence_gate and silence is not None and silence[k] < app.silence_threshold)
            if gated:
                label = None
            else:
                label = self.classes[i] if score > app.threshold else app.unknown_label
            out.append(dict(index=i, score=score, label=label, gated=gated, probabilities=probs[k]))
        return out

    # ---- streaming replay -------------------------------------------------------------------------

    def replay_pcm(self, blocks, name="<pcm>", trace=None):
        """Records of one stream of int16 blocks (see replay). trace(k) -> callable or None: for the patches it
        names, the record comes from a full Trace (self.trace's), handed to that callable, instead of the batch:
        each patch is computed once either way."""
        p = self.frontend.params
        new = p.new_samples
        pending = []        # (k, features, silence sum) for the batch, (k, pcm patch, None) for the batch's front
        #                     end at flush, or (k, Trace) for a traced patch
        batched = not self._faults.log_faults and self._feature_stage == "features"   # what _patch does in one call

        def record(k, o, d, s):
            # patch k holds the new samples [k*new, (k+1)*new) of the stream (plus `keep` before them)
            return dict(file=name, window=k, start_s=k * new / p.sample_rate, end_s=(k + 1) * new / p.sample_rate,
                        output=o, probabilities=d["probabilities"], index=d["index"], score=d["score"],
                        label=d["label"], gated=d["gated"], silence_sum=s)

        def flush():
            raw = [e for e in pending if len(e) == 3 and e[2] is None]
            if raw:                         # the front end of the batch's patches in one call (st.features_batch)
                feats, sil = self.frontend.patches(np.stack([x for _, x, _ in raw]), self.boundary)
                done = {k: (f, float(v)) for (k, _, _), f, v in zip(raw, feats, sil)}
                pending[:] = [(e[0],) + done[e[0]] if len(e) == 3 and e[2] is None else e for e in pending]
            batch = [e for e in pending if len(e) == 3]
            decided = {}
            if batch:
                outs = self.run(self.input_buffer(np.stack([f for _, f, _ in batch])))
                sil = np.asarray([s for _, _, s in batch], np.float32)
                decided = {k: (o, d, s) for (k, _, s), o, d in zip(batch, outs, self.decide(outs, sil))}
            for e in pending:
                if len(e) == 3:
                    yield record(e[0], *decided[e[0]])
                else:
                    k, t = e
                    d = dict(t.decision, probabilities=t["probabilities"])
                    sil = float(t["frontend/silence_sum"]) if "frontend/silence_sum" in t else np.nan
                    yield record(k, t["output"].reshape(self.n_classes), d, sil)
            pending.clear()

        self.runtime.reset_state()       # every recording starts from the initial recurrent state
        for k, patch in audio.patches(self._faults.stream(blocks), p.keep_samples, new):
            sink = None if trace is None else trace(k)
            if sink is not None:
                if self.runtime.stateful:   # the batch before it runs first: the state follows the windows' order
                    yield from flush()
                t = self._trace(patch)
                sink(t)
                pending.append((k, t))
            elif batched:
                pending.append((k, patch, None))    # front end at flush, with the batch
            else:
                f, s = self._patch(patch)
                pending.append((k, f, s))
            if len(pending) == BATCH_PATCHES:
                yield from flush()
        if pending:
            yield from flush()

    def pc(self):
        """The PC's pipeline for this device: the float64 log-mel reference front end (emu.frontend.float_ref)
        with the same int8 quantization and buffer, the network under onnxruntime's arithmetic, no firmware
        faults (what a notebook on the PC computes; `replay --compare pc`)."""
        return self.with_(faults={"frontend-precision": {"precision": "float64"}}, **{"model.profile": "onnxruntime"})

    def replay_dataset(self, inputs, labels=None, pad=False, compare=None, rate=None, workers=None, scheduler=None,
                       progress=None):
        """Replay a dataset (emu.dataset): -> (results, report, compared report or None). inputs: files/folders;
        labels: "folders", a CSV path or None; compare: another Device, "pc" (self.pc()) or None; workers /
        scheduler: Dask. results: FileResult per clip in input order (records, and `other` records when
        compared)."""
        from emu import dataset as D
        other = self.pc() if compare == "pc" else compare
        clips = D.list_clips(inputs, labels=labels)
        results = list(D.iter_results(self, clips, rate=rate, pad=pad, other=other, workers=workers,
                                      scheduler=scheduler, progress=progress))
        return results, D.report_of(results), (None if other is None else D.report_of(results, other=True))

    def replay(self, inputs, rate=None, progress=None, trace=None):
        """Stream audio files/folders/globs through the chain: one record per patch (window).

        `rate` is the sample rate of raw/.npy inputs; WAV rates must equal the config's. `progress(done,
        total)` is called with sample counts; `trace(info, k)` -> None or a callable that receives the Trace of
        patch k of file `info` (for dumps: the record of that patch is read from its trace).
        All inputs are checked before the first patch is computed, so a bad file fails fast.
        """
        p = self.frontend.params
        files = audio.find_audio(inputs)
        infos = []
        for f in files:
            infos.append(audio.open_checked(f, rate, p.sample_rate))
        total = sum(i.n_samples for i in infos)
        done = 0
        block = BATCH_PATCHES * p.new_samples
        for info in infos:
            def blocks(info=info):
                nonlocal done
                for b in audio.iter_blocks(info, block):
                    yield b
                    done += b.size
                    if progress is not None:
                        progress(done, total)
            hook = None if trace is None else (lambda k, info=info: trace(info, k))
            yield from self.replay_pcm(blocks(), name=info.path, trace=hook)

