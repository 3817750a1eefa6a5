"""The device chain end to end (DESIGN §1, §4, §6): PCM -> patches -> front end -> int8 input buffer ->
network -> int8 output -> dequantize/softmax -> decision, exactly as the firmware sequences it.

    dev = Device()                          # the bundled default device (emu/data/device_default.toml)
    dev = Device("my_board.toml")           # or a DeviceConfig
    feats, silence = dev.features(pcm)      # int8 [P, n_coefs, n_frames] per patch + silence sums
    buf = dev.input_buffer(feats)           # int8 [P, *model input shape], bytes in the configured layout
    out = dev.run(buf)                      # int8 [P, n_classes]
    recs = dev.decide(out, silence)         # probabilities, first-maximum decision, threshold, gate
    for rec in dev.replay(["a.wav", "dir/"]): ...   # streamed, bounded memory, one record per patch

Every arithmetic choice is a field of the DeviceConfig; `dev.settings` (the config as a mapping plus the
resolved input quantization and model) is recorded with every result.
"""
import os

import numpy as np

from emu import audio
from emu.config import ConfigError, DeviceConfig, load_config

BATCH_PATCHES = 32   # patches per network call while streaming (memory: ~BATCH_PATCHES x 32 KB of PCM)


class FrontEnd:
    """One front-end profile behind one interface. Features are canonical [n_coefs, n_frames] int8
    (coef-major), whatever order the profile module returns (MFCC mode returns frame-major)."""

    def __init__(self, params):
        if params.profile in ("st-f16", "st-f32"):
            from emu.frontend import st as module
        else:
            from emu.frontend import cmsis_q15 as module
        self.params = params
        self.module = module
        self.state = module.prepare(params)
        self.frame_major = params.profile == "cmsis-q15" and self.state.q15.mode == "mfcc"
        self.has_silence_sum = params.profile in ("st-f16", "st-f32")

    @property
    def n_coefs(self):
        if self.params.profile == "cmsis-q15" and self.state.q15.mode == "mfcc":
            return int(self.state.q15.n_mfcc)
        return int(self.params.n_mels)

    def stages(self, pcm_patch):
        """Every stage of one patch (the profile's own names), plus 'features' in canonical order."""
        st = self.module.compute_stages(pcm_patch, self.state)
        feats = st["int8"] if "int8" in st else st["features"]
        st["features"] = np.ascontiguousarray(feats.T if self.frame_major else feats)
        return st

    def patch(self, pcm_patch, boundary="int8"):
        """(features [n_coefs, n_frames], silence sum or NaN when the profile has no gate signal).
        boundary "int8": the app's int8 quantization; "float32": the float log-mel handed to the model's own
        QuantizeLinear (st-* profiles: the device-typed log stage, -inf where the mel energy underflowed)."""
        st = self.stages(pcm_patch)
        feats = st["features"] if boundary == "int8" else np.ascontiguousarray(st["log"], np.float32)
        return feats, float(st.get("silence_sum", np.nan))


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


class Device:
    """A configured device chain (see module doc). `config`: None (bundled), a TOML path or a DeviceConfig."""

    def __init__(self, config=None):
        from emu.graph.runtime import Runtime
        from emu.models import load_model

        cfg = config if isinstance(config, DeviceConfig) else load_config(config)
        self.config = cfg
        model_path = cfg.model_path()
        self.model_path = model_path
        self.graph = load_model(model_path)
        g = self.graph
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise ConfigError(f"{model_path}: the device chain drives one input and one output, the model has "
                              f"{len(g.inputs)} inputs and {len(g.outputs)} outputs")
        t_in, t_out = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
        fe = frontend_params(cfg, g)
        self.frontend = FrontEnd(fe)
        self.boundary = cfg.input.boundary
        if self.boundary == "float32" and fe.profile == "cmsis-q15":
            raise ConfigError("[input].boundary = \"float32\" needs a float front end (st-f16 or st-f32); "
                              "the cmsis-q15 front end only makes int8 features")
        self.input_shape = tuple(int(d) for d in t_in.shape)
        self._check_layout(model_path)
        self.runtime = Runtime(g, profile=cfg.model.profile, backend=cfg.model.backend, rounding=cfg.model.rounding,
                               input_boundary=self.boundary)
        self.n_classes = int(np.prod(t_out.shape))
        self.output_scale = None if t_out.scale is None else np.float32(t_out.scale[0])
        self.output_zero_point = None if t_out.zero_point is None else int(t_out.zero_point[0])
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
        d["runtime"] = self.runtime.metadata
        return d

    # ---- the stages -------------------------------------------------------------------------------

    def patches(self, pcm):
        """The app's patches of an in-memory int16 recording: iterator of (index, patch)."""
        p = self.frontend.params
        return audio.patches([np.asarray(pcm, np.int16)], p.win_length - p.hop_length, p.n_frames * p.hop_length)

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
        """The network input buffer as the app writes it ([input].layout), shaped like the model input
        (int8, or float32 at a float32 input boundary)."""
        f = np.asarray(feats, np.int8 if self.boundary == "int8" else np.float32)
        single = f.ndim == 2
        f = f[None] if single else f
        if self.config.input.layout == "frame-major":
            f = f.transpose(0, 2, 1)
        buf = np.ascontiguousarray(f).reshape((f.shape[0],) + self.input_shape)
        return buf[0] if single else buf

    def run(self, buffers):
        """int8 network outputs [P, n_classes] for input buffers [P, *input shape]."""
        b = np.asarray(buffers)
        if b.shape[0] == 0:
            return np.zeros((0, self.n_classes), np.int8)
        return np.asarray(self.runtime.run(b)).reshape(b.shape[0], self.n_classes)

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

    def replay_pcm(self, blocks, name="<pcm>", on_patch=None):
        """Records of one stream of int16 blocks (see replay)."""
        p = self.frontend.params
        keep, new = p.win_length - p.hop_length, p.n_frames * p.hop_length
        pending = []

        def flush():
            feats = np.stack([f for _, f, _ in pending])
            outs = self.run(self.input_buffer(feats))
            sil = np.asarray([s for _, _, s in pending], np.float32)
            for (k, _, s), o, d in zip(pending, outs, self.decide(outs, sil)):
                # patch k holds the new samples [k*new, (k+1)*new) of the stream (plus `keep` before them)
                yield dict(file=name, window=k, start_s=k * new / p.sample_rate, end_s=(k + 1) * new / p.sample_rate,
                           output=o, probabilities=d["probabilities"], index=d["index"], score=d["score"],
                           label=d["label"], gated=d["gated"], silence_sum=s)
            pending.clear()

        for k, patch in audio.patches(blocks, keep, new):
            f, s = self.frontend.patch(patch, self.boundary)
            pending.append((k, f, s))
            if on_patch is not None:
                on_patch(k, patch)
            if len(pending) == BATCH_PATCHES:
                yield from flush()
        if pending:
            yield from flush()

    def replay(self, inputs, rate=None, progress=None, on_patch=None):
        """Stream audio files/folders/globs through the chain: one record per patch (window).

        `rate` is the sample rate of raw/.npy inputs; WAV rates must equal the config's. `progress(done,
        total)` is called with sample counts; `on_patch(info, k, patch)` sees each PCM patch (for dumps).
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
        block = BATCH_PATCHES * p.n_frames * p.hop_length
        for info in infos:
            def blocks(info=info):
                nonlocal done
                for b in audio.iter_blocks(info, block):
                    yield b
                    done += b.size
                    if progress is not None:
                        progress(done, total)
            hook = None if on_patch is None else (lambda k, patch, info=info: on_patch(info, k, patch))
            yield from self.replay_pcm(blocks(), name=info.path, on_patch=hook)

