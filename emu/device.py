"""The device chain end to end (DESIGN §1, §4, §6): PCM -> patches -> front end -> int8 input buffer ->
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

Every arithmetic choice is a field of the DeviceConfig; `dev.settings` (the config as a mapping plus the
resolved input quantization, arithmetic profile and model) is recorded with every result. The network runs
through emu.models.ModelSession, the same path as `n6emu run`.
"""
import json
import os

import numpy as np

from emu import audio
from emu.config import ConfigError, DeviceConfig, load_config
from emu.errors import N6Error
from emu.frontend.registry import FrontEnd

BATCH_PATCHES = 32   # patches per network call while streaming (memory: ~BATCH_PATCHES x 32 KB of PCM)


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

    def model(self, path):
        from emu.models import import_model
        if path not in self.models:
            self.models[path] = import_model(path)
        return self.models[path]

    def frontend(self, params):
        key = json.dumps(params.to_dict(), sort_keys=True, default=str)
        if key not in self.frontends:
            self.frontends[key] = FrontEnd(params)
        return self.frontends[key]


class Device:
    """A configured device chain (see module doc). `config`: None (bundled), a TOML path or a DeviceConfig."""

    def __init__(self, config=None, _shared=None):
        from emu.models import ModelSession

        cfg = config if isinstance(config, DeviceConfig) else load_config(config)
        self.config = cfg
        self._shared = _Shared() if _shared is None else _shared
        model_path = cfg.model_path()
        self.model_path = model_path
        model = self._shared.model(model_path)
        self.graph = g = model.graph
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise ConfigError(f"{model_path}: the device chain drives one input and one output, the model has "
                              f"{len(g.inputs)} inputs and {len(g.outputs)} outputs")
        fe = frontend_params(cfg, g)
        self.frontend = self._shared.frontend(fe)
        self.boundary = cfg.input.boundary
        if self.boundary == "float32" and fe.profile == "cmsis-q15":
            raise ConfigError("[input].boundary = \"float32\" needs a float front end (st-f16 or st-f32); "
                              "the cmsis-q15 front end only makes int8 features")
        self.input_shape = model.input_shape
        self._check_layout(model_path)
        m = cfg.model
        self.session = ModelSession(model, m.profile, m.backend, rounding=m.rounding, elementwise=m.elementwise,
                                    prepared_cache=self._shared.prepared.setdefault(model_path, {}))
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

    def with_(self, **changes):
        """A Device with some settings changed, rebuilding only what the change touches (the parsed model, the
        graph prepared under an unchanged profile and an unchanged front end's tables are reused).
        Keys are "section.field" (spelled with ** for the dot) or a section name with a dict of fields:
            dev.with_(**{"model.profile": "onnxruntime", "input.layout": "frame-major"})
            dev.with_(frontend={"n_mels": 40}, app={"threshold": 0.7})"""
        by_section = {}
        for key, value in changes.items():
            section, dot, name = key.partition(".")
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
        return Device(cfg, _shared=self._shared)

    # ---- configuration checks ---------------------------------------------------------------------

    def _check_layout(self, model_path):
        n_coefs, n_frames = self.frontend.n_coefs, int(self.frontend.params.n_frames)
        size = int(np.prod(self.input_shape))
        shape = "x".join(map(str, self.input_shape))
        what = "MFCCs" if self.frontend.frame_major else "mels"
        if size != n_coefs * n_frames:
            raise ConfigError(f"the model input [{shape}] holds {size} values but the front end makes {n_coefs} "
                              f"{what} x {n_frames} frames = {n_coefs * n_frames}; make [frontend] match the model")
        dims = tuple(d for d in self.input_shape if d != 1)
        want = (n_coefs, n_frames) if self.config.input.layout == "mel-major" else (n_frames, n_coefs)
        if len(dims) == 2 and dims != want and dims == want[::-1] and n_coefs != n_frames:
            other = "frame-major" if self.config.input.layout == "mel-major" else "mel-major"
            raise ConfigError(f"the model input [{shape}] is {other} ({dims[0]}x{dims[1]}) but [input].layout = "
                              f"{self.config.input.layout!r}; set layout = \"{other}\"")

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
        return d

    # ---- the stages -------------------------------------------------------------------------------

    def patches(self, pcm):
        """The app's patches of an in-memory int16 recording: iterator of (index, patch)."""
        p = self.frontend.params
        return audio.patches([np.asarray(pcm, np.int16)], p.keep_samples, p.new_samples)

    def features(self, pcm):
        """Features [P, n_coefs, n_frames] (int8, or float32 log-mel with [input].boundary = "float32") and
        silence sums [P] of an int16 recording."""
        feats, sil = [], []
        for _, patch in self.patches(pcm):
            f, s = self.frontend.patch(patch, self.boundary)
            feats.append(f)
            sil.append(s)
        n_coefs, n_frames = self.frontend.n_coefs, self.frontend.params.n_frames
        if not feats:
            dtype = np.int8 if self.boundary == "int8" else np.float32
            return np.zeros((0, n_coefs, n_frames), dtype), np.zeros(0, np.float32)
        return np.stack(feats), np.asarray(sil, np.float32)

    def input_buffer(self, feats):
        """The network input buffer as the app writes it ([input].layout), shaped like the model input, in the
        board's bytes: the model's I/O type (int8; uint8 models: value + 128, what the app's quantization with the
        model's uint8 zero-point gives) or float32 at a float32 input boundary."""
        f = np.asarray(feats, np.int8 if self.boundary == "int8" else np.float32)
        single = f.ndim == 2
        f = f[None] if single else f
        if self.config.input.layout == "frame-major":
            f = f.transpose(0, 2, 1)
        buf = np.ascontiguousarray(f).reshape((f.shape[0],) + self.input_shape)
        if self.boundary == "int8":
            buf = self.session.model.from_internal(buf)
        return buf[0] if single else buf

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
        if window is None:
            if pcm.size != p.patch_length:
                raise N6Error(f"trace() takes one patch of {p.patch_length} samples (got {pcm.size}); for a recording pass "
                              f"window=K, or use traces()")
            patch = pcm
        else:
            patch = next((x for k, x in self.patches(pcm) if k == window), None)
            if patch is None:
                raise N6Error(f"window {window} does not exist: the recording holds {self.patch_count(pcm.size)} "
                              f"patch(es)")
        return self._trace(patch)

    def traces(self, pcm):
        """(index, Trace) of every patch of an int16 recording."""
        for k, patch in self.patches(pcm):
            yield k, self._trace(patch)

    def patch_count(self, n_samples):
        p = self.frontend.params
        return n_samples // p.new_samples     # the first patch starts with keep_samples zeros

    def _trace(self, patch):
        from emu.trace import frontend_trace
        t = frontend_trace(self.frontend, patch, self.settings)
        feats = t["frontend/features"] if self.boundary == "int8" else np.asarray(t["frontend/log"], np.float32)
        buf = self.input_buffer(feats)
        net = self.session.trace(buf, self.boundary, settings={})
        t.extend(net)
        t.stages["input_buffer"].layout = (f"{buf.dtype.name} {list(buf.shape)} model input buffer, "
                                           f"{self.config.input.layout} ([input].layout)")
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
        pending = []        # (k, features, silence sum) for the batch, or (k, Trace) for a traced patch

        def record(k, o, d, s):
            # patch k holds the new samples [k*new, (k+1)*new) of the stream (plus `keep` before them)
            return dict(file=name, window=k, start_s=k * new / p.sample_rate, end_s=(k + 1) * new / p.sample_rate,
                        output=o, probabilities=d["probabilities"], index=d["index"], score=d["score"],
                        label=d["label"], gated=d["gated"], silence_sum=s)

        def flush():
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

        for k, patch in audio.patches(blocks, p.keep_samples, new):
            sink = None if trace is None else trace(k)
            if sink is not None:
                t = self._trace(patch)
                sink(t)
                pending.append((k, t))
            else:
                f, s = self.frontend.patch(patch, self.boundary)
                pending.append((k, f, s))
            if len(pending) == BATCH_PATCHES:
                yield from flush()
        if pending:
            yield from flush()

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
            info = audio.probe(f, raw_rate=rate)
            audio.check_rate(info, p.sample_rate)
            infos.append(info)
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

