"""`--plot DIR` of `n6emu compare` and `n6emu diagnose`: PNG figures of results already computed.

    from emu import plots
    plots.require()                                   # N6Error naming the fix when matplotlib is missing
    plots.compare_plots(report, a, b, "figs", context=dev.fault_context)   # compare_logmel.png, compare_layers.png
    plots.diagnose_plots(result, "figs", diagnoser=d, board_input=bi)      # diagnose_ranking.png, diagnose_logmel.png

Figures (each function takes results, never recomputes them, and returns a Plot: the file, a one-line description
and the data it drew, read back from the figure's artists):
  logmel   A (PC / emulator) and B (device / reference) side by side with their difference A - B, as
           [coefficients, frames] (mel-domain stages are coefficient-major); one shared colour scale for A and B,
           a diverging one centred on 0 for the difference. compare: the first of frontend/log, frontend/features,
           input_buffer that differs (else the first both sides have); diagnose: the emulator's input buffer (the
           device as described) against the board's (--board-input), the first window that differs. An input
           buffer is shown in the order the model reads it (Context.natural_layout, else [input].layout); without
           a device description it is squeezed to its two non-unit axes (first sample of a batch).
  layers   per compared stage in execution order: RMSE, MAE (the stage's domain: dequantized units or raw values;
           symlog axis) and max |LSB| (integer stages) as bars; the first divergent stage in red.
  ranking  the top hypotheses of diagnose as horizontal bars of their score, labelled with their exact matches;
           entries that share a rank (ties: the evidence cannot separate them) hatched, rank 1 in orange.

matplotlib is an optional extra (`pip install "n6emu[plot]"`), imported only here and only when drawing, with the
Agg canvas (never a display, never pyplot's global state). Files are written atomically (emu.outputs.atomic_path:
a temporary name in DIR, then os.replace); DIR is created when missing.
"""
import os
from dataclasses import dataclass, field

import numpy as np

from emu.errors import N6Error

MISSING = 'matplotlib is not installed, which --plot needs; pip install "n6emu[plot]" (or pip install matplotlib)'
LOGMEL_STAGES = ("frontend/log", "frontend/features", "input_buffer")
UNITS = {"frontend/log": "ln(mel energy)", "frontend/features": "int8 feature codes (LSB)"}
FIRST, DIFFER, SAME = "tab:red", "tab:blue", "0.6"


@dataclass
class Plot:
    """One PNG written: its path, a one-line description, and the data drawn (read back from the figure)."""
    path: str
    what: str
    data: dict = field(default_factory=dict)


def require():
    """matplotlib's (Figure, FigureCanvasAgg), or N6Error naming the fix: call it before any work."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise N6Error(MISSING) from None
    return Figure, FigureCanvasAgg


def _figure(width, height):
    Figure, FigureCanvasAgg = require()
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, folder, name):
    """Write the figure as folder/name atomically; its path."""
    from emu.outputs import atomic_path
    path = os.path.join(os.fspath(folder), name)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


# ---- log-mel side by side ----------------------------------------------------------------------------------

def reading_layout(context):
    """The order the model reads its input buffer in ("mel-major" | "frame-major") of an emu.faults.Context."""
    return context.layout if context.natural_layout is None else context.natural_layout


def mel_view(x, stage, context=None):
    """(2-D [coefficients, frames] view of a mel-domain stage, layout text), or (None, reason). Front-end stages
    are coefficient-major already; an input buffer is read as the model reads it (see the module doc)."""
    x = np.asarray(x)
    if stage != "input_buffer":
        return (x, "[coefficient, frame]") if x.ndim == 2 else (None, f"{stage} is not 2-D")
    if context is not None and context.model_frames is not None and x.size % context.size == 0:
        first = x.reshape(-1, context.size)[0]
        n, frames = context.n_coefs, context.model_frames
        layout = reading_layout(context)
        view = first.reshape(n, frames) if layout == "mel-major" else first.reshape(frames, n).T
        return view, f"[{context.coef}, frame] as the model reads it ({layout})"
    squeezed = x.reshape([d for d in x.shape if d != 1])
    while squeezed.ndim > 2:
        squeezed = squeezed[0]
    if squeezed.ndim != 2:
        return None, f"input_buffer {list(x.shape)} has no two non-unit axes"
    return squeezed, f"squeezed buffer {list(squeezed.shape)} as stored (no device layout known)"


def logmel_stage(report):
    """The stage compare_logmel draws: the first of LOGMEL_STAGES that differs, else the first compared, or None."""
    present = [s for s in LOGMEL_STAGES if s in report.names()]
    return next((s for s in present if report[s].differs), present[0] if present else None)


def side_by_side(a, b, folder, name, labels, title, units):
    """A | B | A - B as images (rows: coefficients, from the bottom); Plot with the drawn arrays a, b, diff."""
    a64 = np.ma.masked_invalid(np.asarray(a, np.float64))
    b64 = np.ma.masked_invalid(np.asarray(b, np.float64))
    with np.errstate(invalid="ignore"):                  # -inf - -inf (log holes): masked, drawn blank
        diff = np.ma.masked_invalid(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    both = np.ma.concatenate([a64.ravel(), b64.ravel()]).compressed()
    lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    largest = float(np.abs(diff).max()) if diff.count() else 0.0
    lim = largest if largest > 0 else 1.0
    diff_label = f"{labels[0]} - {labels[1]}: " + (f"max |diff| {largest:.4g}" if largest > 0 else "identical")
    fig = _figure(15, 4.6)
    axes = fig.subplots(1, 3, sharey=True)
    images = []
    for ax, v, label, cmap, (vmin, vmax) in zip(axes, (a64, b64, diff), (*labels, diff_label),
                                                 ("viridis", "viridis", "RdBu_r"), ((lo, hi), (lo, hi), (-lim, lim))):
        im = ax.imshow(v, origin="lower", aspect="auto", interpolation="nearest", cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("frame")
        images.append(im)
    axes[0].set_ylabel("coefficient (mel or MFCC)")
    fig.colorbar(images[1], ax=axes[:2], label=units, shrink=0.9)
    fig.colorbar(images[2], ax=axes[2], label=f"difference ({units})", shrink=0.9)
    holes = int(np.ma.count_masked(a64) + np.ma.count_masked(b64))
    fig.suptitle(title + (f" (blank: {holes} non-finite values, e.g. log holes)" if holes else ""), fontsize=11)
    drawn = [np.ma.getdata(im.get_array()).copy() for im in images]
    masks = [np.ma.getmaskarray(im.get_array()).copy() for im in images]
    clims = [im.get_clim() for im in images]
    cmaps = [im.get_cmap().name for im in images]
    path = _save(fig, folder, name)
    return Plot(path, "", dict(a=drawn[0], b=drawn[1], diff=drawn[2], masks=masks, clims=clims, cmaps=cmaps,
                               title=title, units=units))


def compare_logmel(report, a, b, folder, context=None, name="compare_logmel.png"):
    """PC (A) vs device (B) log-mel and A - B of compare's Sources (see logmel_stage), or None when they share no
    mel-domain stage. context: the device's emu.faults.Context, to read an input buffer as the model does."""
    stage = logmel_stage(report)
    if stage is None:
        return None
    ra, rb = np.asarray(a[stage]), np.asarray(b[stage])
    if ra.shape != rb.shape and ra.size == rb.size:    # a flat capture takes the other side's shape, as in compare
        ra, rb = (ra.reshape(rb.shape), rb) if ra.ndim <= rb.ndim else (ra, rb.reshape(ra.shape))
    va, layout = mel_view(ra, stage, context)
    vb, _ = mel_view(rb, stage, context)
    if va is None or vb is None or va.shape != vb.shape:
        return None
    units = UNITS.get(stage, f"input buffer values ({rb.dtype.name})")
    title = f"{stage} {layout}: A = {report.a} vs B = {report.b}"
    p = side_by_side(va, vb, folder, name, (f"A: {report.a}", f"B: {report.b}"), title, units)
    p.what = f"{stage} of A and B side by side with A - B ({layout}, {units})"
    p.data["stage"] = stage
    return p


def diagnose_logmel(result, diagnoser, board_input, folder, name="diagnose_logmel.png"):
    """The emulator's input buffers (the device as described: diagnoser.predict(()), computed by diagnose) against
    the board's, the first window that differs (else window 0), or None without board input buffers."""
    if board_input is None:
        return None
    pred = diagnoser.predict(())
    emu = pred[1]
    board = np.asarray(board_input).reshape(-1, emu.shape[1])
    n = min(len(emu), len(board))
    if n == 0:
        return None
    differs = [k for k in range(n) if not np.array_equal(emu[k], board[k])]
    k = differs[0] if differs else 0
    va, layout = mel_view(emu[k], "input_buffer", result.context)
    vb, _ = mel_view(board[k], "input_buffer", result.context)
    units = f"input buffer values ({emu.dtype.name})"
    title = (f"input_buffer {layout}, window {k} of {n} ({len(differs)} differ): emulator (device as described) "
             f"vs board")
    p = side_by_side(va, vb, folder, name, ("emulator (as described)", "board (--board-input)"), title, units)
    p.what = f"input buffer of window {k}: emulator vs board side by side with the difference ({layout})"
    p.data.update(stage="input_buffer", window=k)
    return p


# ---- per-layer errors --------------------------------------------------------------------------------------

def _short(name, n=34):
    name = name[len("network/"):] if name.startswith("network/") else name
    name = name.replace("_QuantizeLinear_Output", "").replace("_output_0", "")
    return name if len(name) <= n else "..." + name[-(n - 3):]


def compare_layers(report, folder, name="compare_layers.png"):
    """RMSE, MAE and max |LSB| of every compared stage as bars (compare's StageComparison values, None as NaN),
    the first divergent stage highlighted; Plot with the drawn names and heights per metric."""
    stages = report.stages
    names = [s.name for s in stages]
    metrics = (("rmse", "RMSE"), ("mae", "MAE"), ("max_lsb", "max |LSB|"))
    fig = _figure(max(8.0, 0.38 * len(stages) + 3), 8.5)
    axes = fig.subplots(3, 1, sharex=True)
    x = np.arange(len(stages))
    colours = [FIRST if s.name == report.first_divergent else DIFFER if s.differs else SAME for s in stages]
    drawn = {}
    for ax, (attr, label) in zip(axes, metrics):
        v = np.array([np.nan if getattr(s, attr) is None else float(getattr(s, attr)) for s in stages])
        bars = ax.bar(x, v, color=colours, edgecolor=["black" if c == FIRST else "none" for c in colours])
        positive = v[np.isfinite(v) & (v > 0)]
        if attr != "max_lsb" and positive.size:
            ax.set_yscale("symlog", linthresh=float(positive.min()))
        ax.set_ylabel(label if attr == "max_lsb" else f"{label} (stage units)")
        ax.grid(axis="y", alpha=0.3)
        drawn[attr] = np.array([p.get_height() for p in bars.patches])
    axes[-1].set_xticks(x, [_short(n) for n in names], rotation=70, ha="right", fontsize=7)
    for tick, c in zip(axes[-1].get_xticklabels(), colours):
        if c == FIRST:
            tick.set_color(FIRST)
            tick.set_fontweight("bold")
    from matplotlib.patches import Patch
    axes[0].legend(handles=[Patch(color=FIRST, label=f"first divergent: {_short(report.first_divergent or 'none')}"),
                            Patch(color=DIFFER, label="differs"), Patch(color=SAME, label="identical")],
                   fontsize=8, loc="upper left")
    title = (f"per-stage errors, A = {report.a} vs B (reference) = {report.b}: {len(report.diverging())} of "
             f"{len(stages)} differ (dequantized units where scale/zero-point are known, raw values otherwise)")
    fig.suptitle(title, fontsize=10)
    highlighted = [n for n, c in zip(names, colours) if c == FIRST]
    path = _save(fig, folder, name)
    return Plot(path, f"RMSE, MAE and max |LSB| of {len(stages)} stages, first divergent: "
                      f"{report.first_divergent or 'none'}", dict(names=names, highlighted=highlighted, **drawn))


def compare_plots(report, a, b, folder, context=None):
    """Every compare figure that applies: [logmel (when both sides have a mel-domain stage), layers]."""
    p = compare_logmel(report, a, b, folder, context)
    return ([] if p is None else [p]) + [compare_layers(report, folder)]


# ---- hypothesis ranking ------------------------------------------------------------------------------------

def diagnose_ranking(result, folder, top=12, name="diagnose_ranking.png"):
    """The top `top` entries of a Diagnosis as horizontal bars of their score (best on top), exact matches at the
    bar's end; entries sharing a rank are hatched (ties), rank 1 orange. Plot with labels, scores, ranks, tied."""
    entries = result.entries[:top]
    ranks = [e.rank for e in result.entries]
    tied = [ranks.count(e.rank) > 1 for e in entries]
    labels = [f"#{e.rank}{'=' if t else ''} {e.hypothesis if len(e.hypothesis) <= 60 else e.hypothesis[:57] + '...'}"
              for e, t in zip(entries, tied)]
    fig = _figure(11, 1.2 + 0.42 * max(1, len(entries)))
    ax = fig.subplots()
    y = np.arange(len(entries))
    bars = ax.barh(y, [e.score for e in entries], color=["tab:orange" if e.rank == 1 else "tab:blue" for e in entries],
                   edgecolor="black")
    for patch, t in zip(bars.patches, tied):
        patch.set_hatch("//" if t else "")
    for e, patch in zip(entries, bars.patches):
        text = f" {e.exact_outputs}/{e.n_outputs} outputs" + (f", {e.exact_inputs}/{e.n_inputs} inputs"
                                                              if e.n_inputs else "") + " exact"
        ax.text(patch.get_width(), patch.get_y() + patch.get_height() / 2, text, va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("score = exact outputs x (n inputs + 1) + exact inputs + 1 / (1 + mean |LSB|)")
    ax.set_xlim(0, max([e.score for e in entries] + [1.0]) * 1.25)
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(facecolor="tab:orange", edgecolor="black", label="rank 1"),
                       Patch(facecolor="white", edgecolor="black", hatch="//",
                             label="tied: shares its rank (the evidence cannot separate them)")],
                   fontsize=8, loc="lower right")
    n_best = sum(e.rank == 1 for e in result.entries)
    ax.set_title(f"top {len(entries)} of {len(result.entries)} ranked hypotheses ({result.n_windows} window(s) of "
                 f"{result.n_clips} clip(s))" + (f"; {n_best} tied at rank 1" if n_best > 1 else ""), fontsize=10)
    drawn = dict(labels=[t.get_text() for t in ax.get_yticklabels()],
                 scores=np.array([p.get_width() for p in bars.patches]),
                 tied=[bool(p.get_hatch()) for p in bars.patches], ranks=[e.rank for e in entries],
                 colours=[p.get_facecolor() for p in bars.patches])
    path = _save(fig, folder, name)
    return Plot(path, f"top {len(entries)} hypotheses by score" + (f" ({n_best} tied at rank 1)" if n_best > 1 else ""),
                drawn)


def diagnose_plots(result, folder, diagnoser=None, board_input=None, top=12):
    """Every diagnose figure that applies: [ranking, logmel (with the board's input buffers)]."""
    out = [diagnose_ranking(result, folder, top)]
    p = None if diagnoser is None else diagnose_logmel(result, diagnoser, board_input, folder)
    return out + ([] if p is None else [p])


# ---- dataset report: confusion matrices ---------------------------------------------------------------------

def confusion_matrices(sides, folder, name="confusion.png"):
    """`replay --report`: one confusion matrix per side [(name, emu.dataset.Report.to_dict())] next to each other,
    rows the true labels, columns the decisions, counts written in the cells, the accuracy in each title."""
    fig = _figure(6.5 * len(sides), 6.0)
    axes = fig.subplots(1, len(sides), squeeze=False)[0]
    drawn = {}
    for ax, (side, d) in zip(axes, sides):
        m = np.asarray(d["confusion"], np.int64).reshape(len(d["labels"]), len(d["labels"]))
        im = ax.imshow(m, cmap="Blues", vmin=0, vmax=max(1, int(m.max())))
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if m[i, j]:
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] > m.max() / 2 else "black")
        ax.set_xticks(range(len(d["labels"])), d["labels"], rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(d["labels"])), d["labels"], fontsize=8)
        ax.set_xlabel("decision")
        ax.set_ylabel("label")
        acc = "n/a" if d["accuracy"] is None else f"{d['accuracy']:.4f}"
        ax.set_title(f"{side}: accuracy {acc} ({d['correct']}/{d['files']} clips)", fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.7)
        drawn[side] = np.asarray(im.get_array())
    path = _save(fig, folder, name)
    return Plot(path, "confusion matrix" + ("es of " + " and ".join(s for s, _ in sides) if len(sides) > 1 else ""),
                drawn)
