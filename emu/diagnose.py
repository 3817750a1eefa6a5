"""Diagnosis of a board mismatch: which firmware fault (emu/faults.py) explains what the board computed.

    d = Diagnoser(Device("board.toml"), [pcm_a, pcm_b, pcm_c])      # the device as it should be, the clips played
    result = d.diagnose(board_output)                               # int8 [windows, n_classes] the board printed
    result = d.diagnose(board_output, board_input=dump)             # + the input buffers it held [windows, ...]
    result.best, result.ties, result.entries[:5]; report_text(result, device)
    entries = fit(model, board_inputs, board_outputs)               # which network arithmetic made them

Hypotheses: `none` (the device as described), every fault of the catalogue with a small set of parameter values
that make sense on that device (emu.faults.candidates), every combination of two different faults, and, when the
board's input buffers are given, the quantization scale / zero-point fitted to them (Diagnoser.fitted: any value,
not only the grid's). Each runs
through the whole chain (Device.with_: nothing is re-parsed; the front end's stages of each clip are computed once
per front-end build, identical input buffers run the network once) and is scored against the board's data:

    1. exact output windows: the int8 output of a window equals the board's, value for value;
    2. exact input buffers (when the board's input buffers are given);
    3. closeness: distance = mean |LSB| of the outputs (+ the inputs' when given); a window the hypothesis does
       not make (a shorter framing) counts as 255 LSB per value.
    score = exact_outputs * (n_inputs + 1) + exact_inputs + 1 / (1 + distance), which orders hypotheses exactly
    as the key (exact_outputs, exact_inputs, -distance). Equal keys are ties: faults the evidence cannot separate
    share a rank and are reported together, never one of them as the answer.

A combination of two faults is kept only when it scores strictly better than `none` and than each of its two
faults alone (a fault that adds nothing to an explanation does not make a second explanation); pairs are formed
from the single faults that change something on these clips. The faults a device description already lists in
[faults] are known: every hypothesis is added to them.

fit (`n6emu fit --pairs DIR`): the network alone. Given board input buffers and the outputs the board computed from
them, every arithmetic of arithmetic_candidates() (registered profiles x roundings x elementwise modes, double and
single rounding with each multiplier derivation, the single-rounding shift with each tie rule) runs the model; ranked by exact windows, exact values, mean |LSB|,
with the residual histogram (emulator - board) of each: how an NPU profile is fitted once users bring dumps.
"""
import hashlib
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from emu import faults as F
from emu.errors import N6Error

MISSING_LSB = 255.0
NET_BATCH = 64          # hypotheses per network call (each a few windows)


@dataclass
class Entry:
    """One ranked hypothesis."""
    faults: tuple
    rank: int
    score: float
    exact_outputs: int
    n_outputs: int
    exact_inputs: int
    n_inputs: int
    distance: float
    windows: int
    evidence: str

    @property
    def hypothesis(self):
        return F.label(self.faults)

    @property
    def names(self):
        return tuple(f.name for f in self.faults) or ("none",)

    def to_json(self):
        return dict(hypothesis=" + ".join(self.names), params={f.name: f.params() for f in self.faults},
                    label=self.hypothesis, rank=self.rank, score=round(self.score, 6),
                    exact_matches=self.exact_outputs, exact_outputs=self.exact_outputs, n_outputs=self.n_outputs,
                    exact_inputs=self.exact_inputs if self.n_inputs else None,
                    n_inputs=self.n_inputs if self.n_inputs else None,
                    mean_abs_lsb=round(self.distance, 6), windows=self.windows, evidence=self.evidence)


@dataclass
class Diagnosis:
    """Ranked entries (best first; ties share a rank), the device and the evidence's size."""
    entries: list
    n_windows: int
    n_clips: int
    n_hypotheses: int
    has_input: bool
    context: object = None
    known: tuple = field(default_factory=tuple)

    @property
    def best(self):
        return self.entries[0]

    @property
    def ties(self):
        """Every entry tied with the best (the best first)."""
        return [e for e in self.entries if e.rank == 1]

    def fixes(self, entry=None):
        e = self.best if entry is None else entry
        return [f.fix(self.context) for f in e.faults]


class Diagnoser:
    """The hypothesis search on one device and one set of recordings (see module doc). Predictions do not depend
    on the board's data: they are computed once and reused by every diagnose() call."""

    def __init__(self, device, recordings, pairs=True):
        self.device = device
        self.recordings = [np.ascontiguousarray(r, np.int16) for r in recordings]
        if not self.recordings:
            raise N6Error("diagnose needs at least one recording (the clips the board was played)")
        self.pairs = pairs
        self.known = tuple(device.faults)
        self._stage_cache = {}
        self._net_cache = {}
        self._pred = {}
        known_names = {f.name for f in self.known}
        self.singles = [f for f in F.candidates(device.fault_context) if f.name not in known_names]

    # ---- predictions -------------------------------------------------------------------------------

    def predict(self, hyp):
        """(outputs [W, n_classes], buffers [W, size], windows per recording) of a tuple of faults added to the
        device's own, or None when the faults cannot act together on this device."""
        self.predict_all([tuple(hyp)])
        return self._pred[tuple(hyp)]

    def predict_all(self, hyps):
        """Predictions of many hypotheses, the network runs batched (one call per arithmetic and NET_BATCH windows;
        identical input buffers run once)."""
        todo = {}                                      # net key -> (device, buffer, [(hyp, counts)])
        for key in hyps:
            key = tuple(key)
            if key in self._pred:
                continue
            try:
                dev = self.device.with_(faults=self.known + key) if key else self.device
            except N6Error:
                self._pred[key] = None
                continue
            bufs, counts = [], []
            for pcm in self.recordings:
                b, _ = dev.recording_buffers(pcm, self._stage_cache)
                bufs.append(b)
                counts.append(b.shape[0])
            buf = np.concatenate(bufs)
            net_key = (dev.session.arithmetic, dev.session.backend_name,
                       hashlib.blake2b(buf.tobytes(), digest_size=16).hexdigest(), buf.dtype.str, buf.shape)
            if net_key in self._net_cache:
                self._pred[key] = self._prediction(dev, self._net_cache[net_key], buf, counts)
            elif net_key in todo:
                todo[net_key][2].append((key, counts))
            else:
                todo[net_key] = (dev, buf, [(key, counts)])
        by_arith = {}
        for net_key, item in todo.items():
            by_arith.setdefault(net_key[:2], []).append((net_key, item))
        for items in by_arith.values():
            for i in range(0, len(items), NET_BATCH):
                chunk = items[i:i + NET_BATCH]
                dev = chunk[0][1][0]
                bufs = [item[1] for _, item in chunk]
                outs = dev.run(np.concatenate(bufs)) if sum(b.shape[0] for b in bufs) else None
                at = 0
                for (net_key, (d, buf, users)), b in zip(chunk, bufs):
                    out = outs[at:at + b.shape[0]] if outs is not None else d.run(b)
                    at += b.shape[0]
                    self._net_cache[net_key] = out
                    for key, counts in users:
                        self._pred[key] = self._prediction(d, out, buf, counts)

    @staticmethod
    def _prediction(dev, out, buf, counts):
        return (np.asarray(out).reshape(out.shape[0], dev.n_classes),
                buf.reshape(buf.shape[0], int(np.prod(dev.input_shape))), tuple(counts))

    def hypotheses(self):
        """Every hypothesis tried: (), each single fault, and (when pairs) each pair of different faults."""
        hyps = [()] + [(f,) for f in self.singles]
        if self.pairs:
            self.predict_all(hyps)
            base = self._pred[()]
            useful = [f for f in self.singles if self._changes(self._pred[(f,)], base)]
            for a, b in combinations(useful, 2):
                if a.name != b.name:
                    hyps.append(tuple(sorted((a, b), key=lambda f: F._ORDER[f.name])))
        return hyps

    @staticmethod
    def _changes(pred, base):
        """True when a single fault makes windows and changes some input buffer or output (else a pair with it is
        the other fault alone, or makes nothing to compare)."""
        if pred is None or pred[1].shape[0] == 0:
            return False
        return (base is None or pred[1].shape != base[1].shape or not np.array_equal(pred[1], base[1])
                or not np.array_equal(pred[0], base[0]))

    # ---- scoring -----------------------------------------------------------------------------------

    def _score(self, pred, board_out, board_in):
        out, buf, counts = pred
        w = board_out.shape[0]
        m = min(w, out.shape[0])
        exact_out = int(np.all(out[:m] == board_out[:m], axis=1).sum()) if m else 0
        diff = float(np.abs(out[:m].astype(np.int64) - board_out[:m].astype(np.int64)).sum())
        dist = (diff + MISSING_LSB * board_out.shape[1] * (w - m)) / max(1, board_out.size)
        exact_in, n_in = 0, 0
        if board_in is not None:
            n_in = board_in.shape[0]
            mi = min(n_in, buf.shape[0])
            if buf.shape[1] != board_in.shape[1]:
                raise N6Error(f"the board input buffers hold {board_in.shape[1]} values per window, the model input "
                              f"{buf.shape[1]}")
            if mi:
                exact_in = int(np.all(buf[:mi] == board_in[:mi], axis=1).sum())
                din = float(np.abs(buf[:mi].astype(np.float64) - board_in[:mi].astype(np.float64)).sum())
            else:
                din = 0.0
            dist += (din + MISSING_LSB * board_in.shape[1] * (n_in - mi)) / max(1, board_in.size)
        return exact_out, exact_in, n_in, dist, int(out.shape[0])

    # ---- parameters fitted to the board's input buffers (outside the catalogue's grid) ---------------------

    def _buffer_positions(self):
        """int64 [buffer size]: the index into a window's flattened [n_coefs, n_frames] features that each byte of
        the device's input buffer holds (its layout, probed with two int8 digit images), or None when the buffer is
        not a permutation of the features (a buffer fault that mixes them)."""
        dev = self.device
        n = dev.frontend.n_coefs * dev.frontend.params.n_frames
        idx = np.arange(n).reshape(dev.frontend.n_coefs, dev.frontend.params.n_frames)
        zero = dev.input_buffer(np.zeros(idx.shape, np.int8)).reshape(-1).astype(np.int64)
        lo = dev.input_buffer((idx % 128).astype(np.int8)).reshape(-1).astype(np.int64) - zero
        hi = dev.input_buffer((idx // 128 % 128).astype(np.int8)).reshape(-1).astype(np.int64) - zero
        pos = hi * 128 + lo
        if pos.size != n or not np.array_equal(np.sort(pos), np.arange(n)):
            return None
        return pos

    def fitted(self, board_input):
        """Hypotheses whose parameters are fitted to the board's input buffers: the (scale, zero-point) that
        quantize the device's own log-mel into the board's bytes. For each zero-point tried (the device's, the
        least-squares one and its neighbours, in that order), the inverse scales consistent with every unsaturated byte
        form an interval (round(L * inv + zp) == q <=> (q - zp - 1/2) <= L * inv <= (q - zp + 1/2)); the first
        zero-point with a non-empty interval is kept, with the device's own scale when it lies inside, else the
        interval's value the app can store (_scale_for_inverse): wrong-scale, wrong-zero-point or both. [] when the device has no float log stage or
        int8 quantization, or the bytes are not a permutation of the features."""
        dev = self.device
        fe = dev.frontend.params
        if board_input is None or dev.boundary != "int8" or getattr(fe, "quant_scale", None) is None \
                or dev._feature_stage != "features":
            return []
        pos = self._buffer_positions()
        if pos is None:
            return []
        logs = [dev.frontend.stages(patch).get("log") for pcm in self.recordings for _, patch in dev.patches(pcm)]
        if not logs or any(l is None for l in logs):
            return []
        m = min(len(logs), board_input.shape[0])
        L = np.stack([np.asarray(l, np.float64).reshape(-1) for l in logs[:m]])[:, pos].reshape(-1)
        q = np.asarray(board_input[:m], np.int64).reshape(-1)
        if np.dtype(dev.session.model.io_dtype) == np.uint8:
            q = q - 128
        keep = (q > -128) & (q < 127) & np.isfinite(L)
        L, q = L[keep], q[keep]
        if L.size < 2 or np.ptp(L) == 0:
            return []
        slope, icept = np.polyfit(L, q, 1)
        if not slope > 0:
            return []
        best = None
        for zp in dict.fromkeys([int(fe.quant_zero_point)] + [int(round(icept)) + d for d in (0, -1, 1)]):
            if not -128 <= zp <= 127:
                continue
            nz = L != 0
            if np.any(q[~nz] != zp):
                continue
            a = (q[nz] - zp - 0.5) / L[nz]
            b = (q[nz] - zp + 0.5) / L[nz]
            lo, hi = float(np.max(np.minimum(a, b))), float(np.min(np.maximum(a, b)))
            if lo <= hi and lo > 0:
                best = (zp, lo, hi)
                break
        if best is None:
            return []
        zp, lo, hi = best
        scale = _scale_for_inverse(fe, lo, hi)
        hyps = []
        ctx = dev.fault_context
        ws = F.WrongScale(scale=scale).resolve(ctx) if scale != fe.quant_scale else None
        wz = F.WrongZeroPoint(zero_point=zp).resolve(ctx) if zp != fe.quant_zero_point else None
        have = {f for f in self.singles}
        for h in ([ws] if ws else []) + ([wz] if wz else []):
            if h not in have:
                hyps.append((h,))
        if ws and wz:
            hyps.append(tuple(sorted((ws, wz), key=lambda f: F._ORDER[f.name])))
        return hyps

    def diagnose(self, board_output, board_input=None):
        """Rank every hypothesis against the board's output windows [W, n_classes] (and input buffers [W, ...])."""
        dev = self.device
        bo = np.asarray(board_output)
        if bo.size % dev.n_classes:
            raise N6Error(f"the board output holds {bo.size} values, not a whole number of windows of "
                          f"{dev.n_classes} outputs")
        bo = bo.reshape(-1, dev.n_classes).astype(np.int64)
        if bo.shape[0] == 0:
            raise N6Error("the board output holds no window; give the outputs the board printed for the clips")
        bi = None
        if board_input is not None:
            bi = np.asarray(board_input)
            size = int(np.prod(dev.input_shape))
            if bi.size % size:
                raise N6Error(f"the board input holds {bi.size} values, not a whole number of input buffers of "
                              f"{size} ({'x'.join(map(str, dev.input_shape))})")
            bi = bi.reshape(-1, size)
        scored = {}
        hyps = self.hypotheses()
        hyps += [h for h in self.fitted(bi) if h not in hyps]
        self.predict_all(hyps)
        for h in hyps:
            pred = self.predict(h)
            if pred is not None:
                scored[h] = self._score(pred, bo, bi)
        if () not in scored:
            raise N6Error("the device as described cannot run the recordings; check the config and the clips")

        def key(s):
            return (s[0], s[1], -s[3])

        kept = {}
        for h, s in scored.items():
            if len(h) == 2:
                parts = [scored.get(()), scored.get(h[:1]), scored.get(h[1:])]
                if any(p is not None and key(s) <= key(p) for p in parts):
                    continue
            kept[h] = s
        order = sorted(kept, key=lambda h: (-kept[h][0], -kept[h][1], kept[h][3], len(h),
                                             [F._ORDER[f.name] for f in h]))
        entries = []
        n_clips = len(self.recordings)
        for h in order:
            exact_out, exact_in, n_in, dist, windows = kept[h]
            better = sum(1 for g in kept.values() if key(g) > key(kept[h]))
            score = exact_out * (n_in + 1) + exact_in + 1.0 / (1.0 + dist)
            entries.append(Entry(faults=h, rank=better + 1, score=score, exact_outputs=exact_out,
                                 n_outputs=bo.shape[0], exact_inputs=exact_in, n_inputs=n_in, distance=dist,
                                 windows=windows, evidence=_evidence(exact_out, bo.shape[0], exact_in, n_in, dist,
                                                                     windows, n_clips)))
        return Diagnosis(entries=entries, n_windows=bo.shape[0], n_clips=n_clips, n_hypotheses=len(scored),
                         has_input=bi is not None, context=dev.fault_context, known=self.known)


def _scale_for_inverse(fe, lo, hi):
    """A float32 scale whose stored inverse (the app's T(1.0f/scale), emu.frontend.st.inverse_scale) lies in
    [lo, hi] and is nearest the middle: the device's own scale when its inverse is inside, else the inverse
    storable in T nearest the midpoint (the interval's midpoint when none is)."""
    from emu.frontend.st import inverse_scale
    if lo <= float(inverse_scale(fe)) <= hi:
        return fe.quant_scale
    mid = 0.5 * (lo + hi)
    store = np.float16 if fe.inv_scale_dtype == "f16" else np.float32
    near = store(mid)
    inside = [float(v) for v in (near, np.nextafter(near, store(np.inf)), np.nextafter(near, store(0)))
              if lo <= float(v) <= hi]
    target = min(inside, key=lambda v: abs(v - mid)) if inside else mid
    scale = np.float32(1.0) / np.float32(target)
    for _ in range(4):      # the float32 scale whose stored inverse is exactly the target (a neighbour at most)
        got = float(inverse_scale(fe.replace(quant_scale=float(scale))))
        if got == target or not inside:
            break
        scale = np.nextafter(scale, np.float32(np.inf if got > target else 0))
    return float(scale)


def _evidence(exact_out, n_out, exact_in, n_in, dist, windows, n_clips):
    clips = f"{n_clips} clip" + ("s" if n_clips != 1 else "")
    text = f"reproduces {exact_out}/{n_out} outputs of {clips} exactly"
    if n_in:
        text += f", {exact_in}/{n_in} input buffers"
    if exact_out < n_out or (n_in and exact_in < n_in):
        text += f"; mean |LSB| {dist:.2f}"
    if windows != n_out:
        text += f"; it makes {windows} windows, the board shows {n_out}"
    return text


def diagnose(device, recordings, board_output, board_input=None, pairs=True):
    """One-shot Diagnoser(device, recordings, pairs).diagnose(board_output, board_input)."""
    return Diagnoser(device, recordings, pairs=pairs).diagnose(board_output, board_input)


def read_recordings(device, paths, rate=None):
    """[(path, int16 PCM)] of audio files/folders/globs at the device's sample rate (the board's clips, in order)."""
    from emu import audio
    files = audio.find_audio(paths)
    out = []
    for f in files:
        info = audio.probe(f, raw_rate=rate)
        audio.check_rate(info, device.frontend.params.sample_rate)
        out.append((f, audio.read_all(info)))
    return out


def read_board(path, device, what):
    """The board's output windows [W, n_classes] (what = "output") or input buffers [W, size] (what = "input")
    from a capture file (emu.boarddata: .npy/.npz, stedgeai .csv, raw dump, text list of numbers)."""
    from emu.boarddata import read_board_data
    dtype = device.session.model.io_dtype
    if what == "input" and device.boundary == "float32":
        dtype = np.dtype(np.float32)
    data = read_board_data(path, dtype=dtype.name)
    names = (("output", "c_outputs_1") if what == "output" else ("input_buffer", "c_inputs_1"))
    if len(data.arrays) == 1:
        arr = data.single()
    else:
        pick = next((n for n in names if n in data.arrays), None)
        if pick is None:
            raise N6Error(f"{path}: holds {len(data.arrays)} arrays ({', '.join(data.arrays)}); give a file with the "
                          f"board's {what} only, or one with an array named {names[0]!r}")
        arr = data.arrays[pick]
    per = device.n_classes if what == "output" else int(np.prod(device.input_shape))
    arr = np.asarray(arr).reshape(-1)
    if arr.size == 0 or arr.size % per:
        unit = f"{per} outputs" if what == "output" else f"{per} values ({'x'.join(map(str, device.input_shape))})"
        raise N6Error(f"{path}: {arr.size} values is not a whole number of windows of {unit}")
    return arr.reshape(-1, per)


def report_text(result, device, top=8):
    """The diagnosis for people: the best explanation (or the tied ones, all of them), its evidence, the fix in the
    firmware's terms, and the runners-up."""
    ctx = result.context
    best, ties = result.best, result.ties
    lines = [f"{result.n_windows} window(s) of {result.n_clips} clip(s) against {result.n_hypotheses} hypotheses "
             f"(device: {device.config.source}" + (f"; known faults: {F.label(result.known)}" if result.known else "")
             + ")"]
    all_exact = best.exact_outputs == best.n_outputs and (not best.n_inputs or best.exact_inputs == best.n_inputs)
    some_exact = best.exact_outputs > 0 or best.exact_inputs > 0
    if not some_exact:
        lines.append("No hypothesis of the catalogue reproduces any window exactly: the board has a fault or an "
                     "arithmetic the catalogue does not describe (or other clips / another window order).")
        lines.append(f"Closest (by mean |LSB|, not an explanation): {best.hypothesis}")
        lines.append(f"  evidence: {best.evidence}")
    else:
        # tied entries whose faults all change nothing on this device are other names of `none`, not explanations
        noop = [e for e in ties if e.faults and all(f.noop(ctx) for f in e.faults)]
        real = [e for e in ties if e not in noop]
        if len(real) == 1:
            e = real[0]
            if not e.faults:
                lines.append("Best explanation: none - the device as described reproduces the board" if all_exact
                             else "Best explanation: none - no fault of the catalogue comes closer than the device "
                                  "as described")
            else:
                lines.append(f"Best explanation: {e.hypothesis}")
        else:
            lines.append(f"{len(real)} explanations reproduce the board equally well (tied, score {best.score:.4f}): "
                         f"the evidence cannot separate them; more clips, or the board's input buffers "
                         f"(--board-input), may:")
        for e in real:
            if len(real) > 1:
                lines.append(f"  - {e.hypothesis}" + ("" if e.faults else ": the device as described"))
            for f in e.faults:
                lines.append(f"    {f.name}: {f.summary}" if len(real) > 1 else f"  {f.name}: {f.summary}")
        lines.append(f"  evidence: {best.evidence}")
        if not all_exact:
            lines.append("  (not every window is reproduced: another fault may be at work; see the runners-up)")
        for e in real:
            for f in e.faults:
                lines.append(f"  fix{'' if len(real) == 1 else ' (if ' + e.hypothesis + ')'}: {f.fix(ctx)}")
        for e in noop:
            why = "; ".join(f.noop(ctx) for f in e.faults)
            lines.append(f"  (also consistent, as it changes nothing on this device: {e.hypothesis}: {why})")
    rest = [e for e in result.entries if e.rank > 1]
    if some_exact:
        rest = [e for e in rest if e.exact_outputs or e.exact_inputs]
        if not rest:
            lines.append("No other hypothesis reproduces a window exactly.")
    rest = rest[:top]
    if rest:
        lines.append("Runners-up:")
        width = max(len(e.hypothesis) for e in rest)
        for e in rest:
            lines.append(f"  {e.rank:>4}. {e.hypothesis:<{width}}  score {e.score:8.4f}  {e.evidence}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# fit: which network arithmetic reproduces board input/output pairs (`n6emu fit --pairs DIR`)
# ---------------------------------------------------------------------------------------------------

@dataclass
class FitEntry:
    """One arithmetic against the board's pairs: exact windows and values, residuals (emulator - board)."""
    profile: object            # emu.graph.profiles.ArithmeticProfile
    rank: int
    exact_windows: int
    n_windows: int
    exact_values: int
    n_values: int
    mean_lsb: float
    max_lsb: int
    histogram: dict            # residual (emulator - board, LSB) -> count

    @property
    def name(self):
        p = self.profile
        return f"{p.name} (rounding {p.rounding}" + ("" if p.fixed_point else f", elementwise {p.elementwise}") + ")"

    @property
    def config(self):
        """The device TOML's [model] lines that select this arithmetic."""
        p = self.profile
        return f'profile = "{p.name}", rounding = "{p.rounding}"' + (
            "" if p.fixed_point else f', elementwise = "{p.elementwise}"')

    def to_json(self):
        return dict(profile=self.profile.to_dict(), label=self.name, config=self.config, rank=self.rank, exact_windows=self.exact_windows,
                    n_windows=self.n_windows, exact_values=self.exact_values, n_values=self.n_values,
                    mean_abs_lsb=round(self.mean_lsb, 6), max_abs_lsb=self.max_lsb,
                    histogram={str(k): v for k, v in sorted(self.histogram.items())})


def arithmetic_candidates():
    """The arithmetics fit tries: every registered profile with each of its roundings (and each elementwise mode of
    the mlas formulation); cmsis-nn's double and single rounding with each multiplier derivation of
    emu.fixedpoint.DERIVATIONS (ratio in float32, M truncated, an int16 M); its single-rounding shift with each tie
    rule of emu.fixedpoint.SINGLE_TIES (incl. TOSA's double_round). Each is a [model] profile + rounding."""
    from emu import fixedpoint as fx
    from emu.graph.profiles import CMSIS_NN, ELEMENTWISE_MODES, PROFILES, resolve
    out = []
    for name, prof in PROFILES.items():
        for r in prof.roundings:
            for ew in ELEMENTWISE_MODES[prof.formulation]:
                p = resolve(name, r, ew)
                if p not in out:
                    out.append(p)
    specs = [f"{base}/{d}" for d in fx.DERIVATIONS if d != "tflite" for base in ("double", "single")]
    specs += [f"single-{tie}" for tie in fx.SINGLE_TIES if tie != "half-up"]
    return out + [CMSIS_NN.choose(spec) for spec in specs]


def fit(model, inputs, outputs, backend="numba", candidates=None):
    """Rank arithmetics by how exactly they reproduce board pairs: `model` an emu.models.ImportedModel (or a path),
    inputs [N, *input shape] in the model's I/O type, outputs [N, n_out] as the board holds them. Ranked by
    (exact windows, exact values, -mean |LSB|); equal keys share a rank (ties)."""
    from emu.models import ImportedModel, ModelSession, import_model
    m = model if isinstance(model, ImportedModel) else import_model(model)
    size = int(np.prod(m.input_shape))
    x = np.asarray(inputs)
    if x.size == 0 or x.size % size:
        raise N6Error(f"the board inputs hold {x.size} values, not a whole number of input buffers of {size} "
                      f"({'x'.join(map(str, m.input_shape))})")
    x = x.reshape((-1,) + m.input_shape).astype(m.io_dtype)
    y = np.asarray(outputs).reshape(x.shape[0], -1) if np.asarray(outputs).size % x.shape[0] == 0 else None
    if y is None:
        raise N6Error(f"{np.asarray(outputs).size} board output values for {x.shape[0]} inputs: give one output "
                      f"window per input buffer")
    y = y.astype(np.int64)
    scored = []
    for prof in (arithmetic_candidates() if candidates is None else candidates):
        try:
            session = ModelSession(m, prof, backend)
        except N6Error:      # an arithmetic this model cannot be prepared under (e.g. an elementwise mode)
            continue
        q, _ = session.run(x)
        q = np.asarray(q).reshape(x.shape[0], -1).astype(np.int64)
        if q.shape != y.shape:
            raise N6Error(f"the board outputs hold {y.shape[1]} values per window, the model {q.shape[1]}")
        d = q - y
        vals, counts = np.unique(d, return_counts=True)
        scored.append(dict(profile=prof, exact_windows=int(np.all(d == 0, axis=1).sum()), n_windows=y.shape[0],
                           exact_values=int((d == 0).sum()), n_values=int(d.size),
                           mean_lsb=float(np.abs(d).mean()), max_lsb=int(np.abs(d).max()),
                           histogram={int(v): int(c) for v, c in zip(vals, counts)}))

    def key(s):
        return (s["exact_windows"], s["exact_values"], -s["mean_lsb"])

    scored.sort(key=key, reverse=True)
    return [FitEntry(rank=1 + sum(key(o) > key(s) for o in scored), **s) for s in scored]


def read_pairs(folder, model):
    """(inputs [N, size], outputs [N, n_out]) from a folder of board captures: a stedgeai validation .npz
    (c_inputs_1 / c_outputs_1: the C model on the target), or files named *input* with their *output* counterpart
    (the same name with input -> output), in any emu.boarddata format, in the model's I/O type."""
    import os

    from emu.boarddata import read_board_data
    if not os.path.isdir(folder):
        raise N6Error(f"--pairs {folder}: no such folder; give the folder of the board's input/output captures")
    dtype = np.dtype(model.io_dtype).name
    ins, outs = [], []
    names = sorted(os.listdir(folder))
    for n in names:
        path = os.path.join(folder, n)
        if n.endswith(".npz"):
            data = read_board_data(path)
            if "c_inputs_1" in data.arrays and "c_outputs_1" in data.arrays:
                ins.append(np.asarray(data.arrays["c_inputs_1"]))
                outs.append(np.asarray(data.arrays["c_outputs_1"]))
    for n in names:
        if "input" in n and not n.endswith(".npz"):
            other = n.replace("input", "output")
            if other not in names:
                raise N6Error(f"{os.path.join(folder, n)}: no output capture {other} beside it")
            ins.append(read_board_data(os.path.join(folder, n), dtype=dtype).single())
            outs.append(read_board_data(os.path.join(folder, other), dtype=dtype).single())
    if not ins:
        raise N6Error(f"--pairs {folder}: no pairs found; give a stedgeai *_val_io.npz (c_inputs_1, c_outputs_1) or "
                      f"files named *input*.npy/.bin/.txt with their *output* counterparts")
    size = int(np.prod(model.input_shape))
    x = np.concatenate([np.asarray(a).reshape(-1, size) for a in ins])
    y = np.concatenate([np.asarray(b).reshape(np.asarray(a).size // size, -1) for a, b in zip(ins, outs)])
    return x, y


def fit_text(entries):
    """fit's report for people: which arithmetic reproduces the pairs (ties: all of them), else the closest with its
    residual histogram, then the table."""
    best = entries[0]
    ties = [e for e in entries if e.rank == 1]
    lines = []
    if best.exact_windows == best.n_windows:
        lines.append("Reproduces every pair exactly: " + "; ".join(e.name for e in ties)
                     + (" (tied: these pairs cannot separate them)" if len(ties) > 1 else ""))
        if len(ties) == 1:
            lines.append(f"  in the device TOML: [model] {best.config}")
    else:
        lines.append("No arithmetic reproduces every pair; closest: " + "; ".join(e.name for e in ties)
                     + f": {best.exact_windows}/{best.n_windows} windows, {best.exact_values}/{best.n_values} values "
                     f"exact, mean |LSB| {best.mean_lsb:.3f}, max {best.max_lsb}")
        hist = ", ".join(f"{k:+d}: {v}" for k, v in sorted(best.histogram.items()))
        lines.append(f"  residual histogram (emulator - board, LSB): {hist}")
    width = max(len(e.name) for e in entries)
    lines.append(f"{'rank':>4}  {'arithmetic':<{width}}  {'windows':>9}  {'values':>11}  {'mean|LSB|':>9}  max")
    for e in entries:
        lines.append(f"{e.rank:>4}  {e.name:<{width}}  {e.exact_windows:>4}/{e.n_windows:<4}  "
                     f"{e.exact_values:>5}/{e.n_values:<5}  {e.mean_lsb:>9.3f}  {e.max_lsb}")
    return "\n".join(lines)
