"""Trace: one ordered record of every stage of one run of the device chain (or of the network alone), plus the
settings that produced it. What `replay --dump`, `features --stages` and `run --dump` write, and what diagnosis,
golden vectors and comparisons read.

Stage names (one namespace for every front end and model):
    frontend/<stage>     the front end's canonical stages (emu.frontend.registry: pcm, framed, windowed, fft,
                         spectrum, mel, log, features, silence_sum, and profile extras such as power, mfcc)
    input_buffer         the network input buffer as the board holds it: the model's I/O type (int8, or uint8 for
                         uint8 QDQ models; float32 at a float32 input boundary), shape and [input].layout
    network/<tensor>     every activation of the integer graph by tensor name, int8 NHWC (the graph's internal
                         int8: uint8 models' tensors are value - 128)
    output               the network output buffer in the model's I/O type
    probabilities        float32 after the app's dequantize/softmax
Each stage carries its array and a one-line description of its layout; `settings` holds every choice
(config, profiles, switches) and `decision` the app's decision when the trace covers the whole chain.

    t = Device().trace(pcm_patch)
    t["frontend/features"], t["input_buffer"], t.names(), t.describe("input_buffer")
    t.save("w0.npz"); Trace.load("w0.npz")
"""
import json
from dataclasses import dataclass

import numpy as np

from emu.errors import N6Error

META_KEY = "__meta__"


@dataclass
class Stage:
    name: str
    value: np.ndarray
    layout: str


class Trace:
    """Ordered stages (name -> Stage) plus settings and, for a whole-chain trace, the decision."""

    def __init__(self, settings=None):
        self.settings = dict(settings or {})
        self.stages = {}
        self.decision = None

    def add(self, name, value, layout):
        if name in self.stages:
            raise N6Error(f"trace stage {name!r} recorded twice")
        self.stages[name] = Stage(name, np.asarray(value), layout)
        return self

    def extend(self, other, prefix=""):
        """Append another trace's stages (optionally under a prefix); its settings are merged."""
        for s in other.stages.values():
            self.add(prefix + s.name, s.value, s.layout)
        self.settings.update(other.settings)
        return self

    def __getitem__(self, name):
        try:
            return self.stages[name].value
        except KeyError:
            raise KeyError(f"no stage {name!r} in this trace; stages: {', '.join(self.stages)}") from None

    def __contains__(self, name):
        return name in self.stages

    def __iter__(self):
        return iter(self.stages)

    def __len__(self):
        return len(self.stages)

    def names(self, prefix=""):
        return [n for n in self.stages if n.startswith(prefix)]

    def describe(self, name):
        s = self.stages[name]
        return f"{name}: {s.value.dtype} {list(s.value.shape)} {s.layout}"

    def arrays(self):
        """name -> array, plus META_KEY: a JSON string with settings, layouts and decision (for .npz files)."""
        out = {n: s.value for n, s in self.stages.items()}
        out[META_KEY] = np.array(json.dumps(self.meta(), default=_json_default))
        return out

    def meta(self):
        return dict(settings=self.settings, layouts={n: s.layout for n, s in self.stages.items()},
                    order=list(self.stages), decision=self.decision)

    def save(self, path):
        """Write every stage to one .npz (atomically) with the metadata under META_KEY."""
        from emu.outputs import save_npz
        save_npz(path, self.arrays())

    @classmethod
    def load(cls, path):
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise N6Error(f"{path}: not a readable trace .npz ({exc.__class__.__name__}); write it with "
                          f"Trace.save or `n6emu replay --dump`") from None
        if META_KEY not in data:
            raise N6Error(f"{path}: no {META_KEY} record; it is not a trace written by n6emu")
        meta = json.loads(str(data.pop(META_KEY)))
        t = cls(meta.get("settings"))
        for name in meta.get("order", data):
            t.add(name, data[name], meta["layouts"].get(name, ""))
        t.decision = meta.get("decision")
        return t


def frontend_trace(frontend, pcm_patch, settings=None):
    """Trace of the front end alone on one patch: frontend/<stage> for every canonical stage of its profile."""
    t = Trace(settings)
    for name, value in frontend.stages(pcm_patch).items():
        t.add(f"frontend/{name}", value, frontend.layout(name))
    return t


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"cannot record {type(v).__name__} in a trace's settings")
