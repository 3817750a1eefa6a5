"""`n6emu` command line: the only module that prints or exits.

Every user mistake is an N6Error: one line on stderr naming the problem and the fix, exit status 2,
no traceback, and no partial output (all files are written atomically by emu.outputs).
"""
import argparse
import json
import os
import sys

import numpy as np

from emu import __version__
from emu.errors import N6Error

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line + exit 2, like every other user mistake."""

    def error(self, message):
        raise N6Error(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _load_npy(path, what):
    if not os.path.isfile(path):
        raise N6Error(f"{path}: no such {what} file")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/OSError/EOFError... for a corrupt file
        raise N6Error(f"{path}: not a readable .npy file ({exc.__class__.__name__}); save it with numpy.save") from None


def _fmt_shape(shape):
    return "x".join(str(int(d)) for d in shape) if len(shape) else "scalar"


def _fmt_quant(t):
    if t is None or t["scale"] is None:
        return ""
    if len(t["scale"]) == 1:
        return f"s={t['scale'][0]:.6g} zp={t['zero_point'][0]}"
    return f"per-ch({len(t['scale'])}) ax={t['quant_axis']}"


# ---------------------------------------------------------------------------------------------------
# subcommands
# ---------------------------------------------------------------------------------------------------

def cmd_inspect(args, out):
    from emu.graph.ir import inspect_graph
    from emu.models import load_model

    if args.align is not None and not args.memory:
        raise N6Error("--align sets the arena alignment of the memory plan: give --memory too")
    graph = load_model(args.model)
    if args.memory:
        from emu.graph.memory import DEFAULT_ALIGNMENT, plan_memory
        plan = plan_memory(graph, alignment=DEFAULT_ALIGNMENT if args.align is None else args.align)
        print(f"model {args.model} ({graph.source})", file=out)
        print(f"memory plan: {len(plan)} activations in one arena, {plan.alignment}-byte alignment, largest first "
              f"(first fit over live ranges); reshape outputs share their input's buffer", file=out)
        print(f"{'offset':>8} {'size':>8}  {'nodes':<9} tensor", file=out)
        for p in plan:
            alias = f"  (= {p.alias_of})" if p.alias_of is not None else ""
            print(f"{p.offset:>8} {p.size:>8}  {f'{p.first}-{p.last}':<9} {p.name}{alias}", file=out)
        dtypes = " + ".join(f"{k} {v}" for k, v in plan.weights_by_dtype.items())
        print(f"peak arena {plan.peak_bytes} bytes (all activations without reuse: {plan.activation_bytes} bytes)",
              file=out)
        print(f"weights {plan.weight_bytes} bytes (constants as stored: {dtypes or 'none'})", file=out)
        print(f"requantization arrays {plan.requant_bytes} bytes (int32 multiplier + shift per output channel; not "
              f"in weights)", file=out)
        return EXIT_OK
    print(f"model {args.model} ({graph.source})", file=out)
    layers = inspect_graph(graph)
    for kind, names in (("input ", graph.inputs), ("output", graph.outputs)):
        for name in names:
            t = graph.tensors[name]
            quant = dict(scale=None if t.scale is None else list(t.scale),
                         zero_point=None if t.zero_point is None else list(t.zero_point), quant_axis=t.quant_axis)
            print(f"  {kind} {name}: {_fmt_shape(t.shape)} {np.dtype(t.dtype).name} {_fmt_quant(quant)}", file=out)
    header = (f"{'#':>3} {'op':<17} {'input':<11} {'output':<11} {'dtype':<5} {'output quant':<24} "
              f"{'weights':<26} {'MACs':>9}  layer")
    print(header, file=out)
    total = 0
    for i, layer in enumerate(layers):
        first = next((t for t in layer["inputs"] if t is not None and not t["constant"]), None)
        weights = next((t for t in layer["inputs"][1:] if t is not None and t["constant"]), None)
        o = layer["outputs"][0]
        wdesc = f"{_fmt_shape(weights['shape'])} {_fmt_quant(weights)}" if weights else ""
        total += layer["macs"]
        print(f"{i:>3} {layer['op']:<17} {_fmt_shape(first['shape']) if first else '':<11} "
              f"{_fmt_shape(o['shape']):<11} {o['dtype']:<5} {_fmt_quant(o):<24} {wdesc:<26} {layer['macs']:>9,}  "
              f"{layer['name']}", file=out)
    print(f"{len(layers)} layers, {total:,} MACs per inference", file=out)
    return EXIT_OK


def cmd_run(args, out):
    from emu.models import ModelSession
    from emu.outputs import save_npy

    x = _load_npy(args.input, "input")
    boundary = args.input_boundary or "int8"
    session = ModelSession(args.model, profile=args.profile, backend=args.backend, rounding=args.rounding)
    q, f = session.run(x, boundary)
    if args.float_output and f is None:
        raise N6Error(f"{args.model}: the model has no float output (no DequantizeLinear tail); drop --float-output")
    if isinstance(q, tuple):
        raise N6Error("--output with a multi-output model is not supported; use --dump to get every tensor")
    y = f if args.float_output else q
    meta = dict(session.metadata, input_boundary=boundary, float_output=bool(args.float_output),
                model=os.path.abspath(args.model), input=os.path.abspath(args.input), n6emu=__version__)
    trace = session.trace(x, boundary, settings=meta) if args.dump else None
    save_npy(args.output, y)
    if trace is not None:
        trace.save(args.dump)
    print(f"wrote {args.output}: {_fmt_shape(y.shape)} {y.dtype} (profile {meta['profile']}, rounding "
          f"{meta['rounding']}, backend {meta['backend']})" +
          (f"; {len(trace)} stages and tensors in {args.dump}" if trace else ""), file=out)
    return EXIT_OK


def cmd_features(args, out):
    import shutil
    import tempfile

    from emu import audio
    from emu.config import load_config
    from emu.device import FrontEnd, frontend_params
    from emu.outputs import save_npy
    from emu.trace import frontend_trace

    cfg = load_config(args.config)
    params = frontend_params(cfg)
    fe = FrontEnd(params)
    info = audio.probe(args.audio, raw_rate=args.rate)
    audio.check_rate(info, params.sample_rate)
    if args.stages is not None and os.path.exists(args.stages) and os.listdir(args.stages):
        raise N6Error(f"--stages {args.stages}: the folder exists and is not empty; give a new folder")
    feats = []
    tmp = None
    if args.stages is not None:
        parent = os.path.dirname(os.path.abspath(args.stages))
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".n6emu-stages-", dir=parent)
    try:
        for k, patch in audio.patches(audio.iter_blocks(info, 1 << 16), params.keep_samples, params.new_samples):
            trace = frontend_trace(fe, patch)
            feats.append(trace["frontend/features"])
            if tmp is not None:
                folder = os.path.join(tmp, f"patch_{k:05d}")
                os.makedirs(folder)
                for name in trace.names("frontend/"):
                    np.save(os.path.join(folder, f"{name[len('frontend/'):]}.npy"), trace[name])
        if not feats:
            raise N6Error(f"{args.audio}: shorter than one patch ({params.new_samples} new samples at {params.sample_rate} Hz); "
                          f"nothing to compute")
        arr = np.stack(feats)
        save_npy(args.output, arr)
        if tmp is not None:
            if os.path.exists(args.stages):
                os.rmdir(args.stages)
            os.replace(tmp, args.stages)
            tmp = None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {args.output}: {_fmt_shape(arr.shape)} int8 [patch, {'mfcc' if fe.frame_major else 'mel'}, frame] "
          f"({params.build}, scale {params.quant_scale:.6g}, zero-point {params.quant_zero_point})"
          + (f"; every stage of every patch in {args.stages}" if args.stages else ""), file=out)
    return EXIT_OK


def cmd_vectors(args, out):
    from emu.device import Device
    from emu.vectors import write_vectors

    dev = Device(args.config)
    _print_warnings(dev, sys.stderr)
    m = write_vectors(dev, args.audio, args.out, stages=args.stages, arena=args.arena, alignment=args.align)
    per_case = sum(a["case"] != "model" for a in m["arrays"]) // len(m["cases"])
    print(f"wrote {args.out}: {len(m['cases'])} case(s) x {per_case} stage arrays, "
          f"{sum(a['case'] == 'model' for a in m['arrays'])} layer parameter arrays, {len(m['files'])} files + "
          f"manifest.json ({dev.config.frontend.build}, profile {dev.session.arithmetic.name})"
          + ("; arena images in arena/" if args.arena else ""), file=out)
    return EXIT_OK


def cmd_testkit(args, out):
    from emu.testkit import build_and_run

    code, lines = build_and_run(args.vectors, target=args.target, work_dir=args.work, timeout=args.timeout)
    for line in lines:
        print(line, file=out)
    return EXIT_OK if code == 0 else EXIT_FAIL


def cmd_conformance(args, out):
    from emu.conformance import run_all

    if not os.path.isdir(args.dir):
        raise N6Error(f"{args.dir}: no such folder; give a folder of CMSIS-NN test-data cases")
    results = run_all(args.dir, backend=args.backend, rounding=args.rounding)
    if not results:
        raise N6Error(f"{args.dir}: no CMSIS-NN test-data case found (folders with config_data.h)")
    passed = failed = unknown = 0
    for r in results:
        if r.status == "PASS":
            passed += 1
            line = f"PASS {r.name} ({r.op}, {r.n_total} values)"
        elif r.status == "FAIL":
            failed += 1
            pos = "" if r.first_mismatch is None else f", first at NHWC {tuple(int(v) for v in r.first_mismatch)}"
            line = f"FAIL {r.name} ({r.op}): {r.n_mismatch}/{r.n_total} values differ{pos}" + (f"; {r.detail}" if r.detail else "")
        else:
            unknown += 1
            line = f"UNKNOWN {r.name}: {r.detail}"
        print(line, file=out)
    print(f"{passed} passed, {failed} failed" + (f", {unknown} unknown" if unknown else ""), file=out)
    return EXIT_FAIL if failed else EXIT_OK


def _parse_windows(spec):
    """--windows SPEC: "all" or comma-separated indices/ranges ("0,3-5") of patches to dump in every file."""
    if spec is None or spec == "all":
        return None
    chosen = set()
    try:
        for part in spec.split(","):
            a, _, b = part.strip().partition("-")
            lo, hi = int(a), int(b) if b else int(a)
            if lo < 0 or hi < lo:
                raise ValueError
            chosen.update(range(lo, hi + 1))
    except ValueError:
        raise N6Error(f"--windows {spec!r}: give 'all' or indices/ranges like 0,3-5") from None
    return chosen


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal (CI logs stay clean)."""

    def __init__(self, err, enabled):
        import time
        self.err, self.enabled, self.t0, self.time, self.last = err, enabled, time.monotonic(), time.monotonic, -1.0

    def __call__(self, done, total):
        now = self.time()
        if not self.enabled or total == 0 or (now - self.last < 0.2 and done < total):
            return
        self.last = now
        frac = done / total
        bar = "#" * int(30 * frac)
        self.err.write(f"\r[{bar:<30}] {100 * frac:5.1f}%  {now - self.t0:6.1f} s")
        if done >= total:
            self.err.write("\n")
        self.err.flush()


_CSV_FIELDS = ("file", "window", "start_s", "end_s", "label", "index", "score", "gated", "silence_sum",
               "output", "probabilities")


def _record_json(rec):
    return {k: (rec[k].tolist() if isinstance(rec[k], np.ndarray) else
                (None if isinstance(rec[k], float) and not np.isfinite(rec[k]) else rec[k]))
            for k in _CSV_FIELDS}


def cmd_replay(args, out, err):
    import contextlib
    import csv
    import shutil
    import tempfile

    from emu.device import Device
    from emu.outputs import atomic_path, write_text

    if args.out is not None and not args.out.endswith((".jsonl", ".csv")):
        raise N6Error(f"--out {args.out}: give a .jsonl or .csv file name")
    if args.windows is not None and args.dump is None:
        raise N6Error("--windows selects the patches to dump: give --dump DIR too")
    if args.dump is not None and os.path.exists(args.dump) and os.listdir(args.dump):
        raise N6Error(f"--dump {args.dump}: the folder exists and is not empty; give a new folder")
    windows = _parse_windows(args.windows)
    dev = Device(args.config)
    _print_warnings(dev, err)
    if args.backend is not None:
        dev = dev.with_(**{"model.backend": args.backend})
    settings = dict(dev.settings, n6emu=__version__)

    with contextlib.ExitStack() as stack:
        dump_tmp = None
        if args.dump is not None:
            parent = os.path.dirname(os.path.abspath(args.dump))
            os.makedirs(parent, exist_ok=True)
            dump_tmp = tempfile.mkdtemp(prefix=".n6emu-dump-", dir=parent)
            stack.callback(lambda: os.path.isdir(dump_tmp) and shutil.rmtree(dump_tmp))
        sink = None
        if args.out is not None:
            tmp = stack.enter_context(atomic_path(args.out))
            sink = stack.enter_context(open(tmp, "w", encoding="utf-8", newline=""))
            writer = csv.writer(sink) if args.out.endswith(".csv") else None
            if writer is not None:
                writer.writerow(_CSV_FIELDS)

        def dump_trace(info, k):
            if windows is not None and k not in windows:
                return None
            stem = os.path.splitext(os.path.basename(info.path))[0]

            def save(trace):
                trace.settings.update(n6emu=__version__, file=info.path, window=k)
                trace.save(os.path.join(dump_tmp, f"{stem}_w{k:05d}.npz"))
                dumped.append(k)
            return save

        progress = _Progress(err, args.progress or (hasattr(err, "isatty") and err.isatty()))
        dumped = []
        n = n_files = 0
        last_file = None
        counts = {}
        for rec in dev.replay(args.audio, rate=args.rate, progress=progress,
                              trace=dump_trace if dump_tmp is not None else None):
            n += 1
            n_files += rec["file"] != last_file
            last_file = rec["file"]
            label = "(silence gate)" if rec["gated"] else rec["label"]
            counts[label] = counts.get(label, 0) + 1
            if sink is None:
                span = f"{rec['start_s']:.2f}-{rec['end_s']:.2f} s"
                print(f"{span:>18}  {label:<14} p={rec['score']:.3f}  "
                      f"top={dev.classes[rec['index']]:<12} {rec['file']}", file=out)
            elif writer is not None:
                j = _record_json(rec)
                writer.writerow([json.dumps(j[k]) if isinstance(j[k], list) else j[k] for k in _CSV_FIELDS])
            else:
                sink.write(json.dumps(_record_json(rec)) + "\n")
        if args.out is not None:
            write_text(args.out + ".settings.json", json.dumps(settings, indent=2) + "\n")
        if dump_tmp is not None:
            if not dumped:
                raise N6Error(f"--windows {args.windows}: no such window (the input gave {n} window(s), numbered "
                              f"from 0 in each file); nothing was written")
            if os.path.exists(args.dump):
                _move_into(dump_tmp, args.dump)
            else:
                os.replace(dump_tmp, args.dump)
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    print(f"{n} windows from {n_files} file(s), front end {dev.config.frontend.build}" +
          (f" -> {args.out}" if args.out else "") +
          (f"; {len(dumped)} trace(s) in {args.dump}" if args.dump else "") + (f"  ({summary})" if summary else ""), file=out)
    return EXIT_OK


_COMPARE_SOURCES = ("emu, emu:<profile>, onnxruntime, onnxruntime:MODEL.onnx, tflm, tflm:MODEL.tflite, trace:PATH, "
                    "board:PATH or a board-data file (.npy, .npz, .csv, .bin/.raw dump, text list)")


def _compare_arena(args, out):
    """`n6emu compare DUMP.bin arena:MAP.json --after-layer N [--offset B]`: the board's arena, tensor by tensor."""
    from emu.arena import compare_dump

    if not args.b.startswith("arena:") or args.after_layer is None:
        raise N6Error("an arena comparison is `n6emu compare DUMP.bin arena:MAP.json --after-layer N`: give both")
    if not os.path.isfile(args.a):
        raise N6Error(f"{args.a}: no such dump file")
    with open(args.a, "rb") as f:
        r = compare_dump(f.read(), args.b[len("arena:"):], args.after_layer, args.offset)
    if args.json:
        print(json.dumps(r, indent=1), file=out)
    else:
        print(f"arena after layer {r['after_layer']} ({r['op']} {r['node']})", file=out)
        for t in r["tensors"]:
            where = "" if t["first"] is None else (f"; first at {tuple(t['first']['position'])}: expected "
                                                    f"{t['first']['expected']}, board {t['first']['board']}")
            print(f"  {'ok  ' if not t['n_differ'] else 'DIFF'} [{t['offset']:>7}, {t['offset'] + t['size']:>7}) "
                  f"{t['n_differ']:>6}/{t['size']} bytes differ  {t['name']}{where}", file=out)
        print(f"  {r['stale_bytes_differ']} differing bytes outside the live tensors (stale regions, informative)",
              file=out)
    return EXIT_FAIL if any(t["n_differ"] for t in r["tensors"]) else EXIT_OK


def cmd_compare(args, out):
    from emu import audio
    from emu.boarddata import read_board_data
    from emu.compare import (board_input, board_source, compare, emulator_source, from_trace, onnxruntime_source,
                             tflm_source)
    from emu.graph.profiles import PROFILES

    if args.b.startswith("arena:") or args.after_layer is not None:
        return _compare_arena(args, out)
    if args.audio is not None and args.input is not None:
        raise N6Error("give the input once: --audio CLIP (with --window K) or --input IN.npy, not both")
    if args.window is not None and args.audio is None:
        raise N6Error("--window picks a patch of --audio CLIP; give --audio too")
    if args.rate is not None and args.audio is None:
        raise N6Error("--rate is the sample rate of a raw/.npy --audio clip; give --audio too")

    def parse(spec):
        kind, sep, rest = spec.partition(":")
        if spec == "emu" or (kind == "emu" and sep):
            if sep and rest not in PROFILES:
                raise N6Error(f"{spec!r}: unknown arithmetic profile {rest!r}; give emu:" + " or emu:".join(PROFILES))
            return "emu", rest if sep else None
        if kind in ("onnxruntime", "tflm"):
            if sep and not rest:
                raise N6Error(f"{spec!r}: give the model after the colon ({kind}:MODEL) or drop the colon")
            return kind, rest if sep else None
        if kind in ("trace", "board") and sep:
            if not os.path.isfile(rest):
                raise N6Error(f"{spec!r}: no such file {rest!r}")
            return kind, rest
        if os.path.isfile(spec):
            return "board", spec
        raise N6Error(f"{spec!r} is not a source (nor an existing file); give one of: {_COMPARE_SOURCES}")

    specs = [parse(args.a), parse(args.b)]
    has_board = any(kind == "board" for kind, _ in specs)
    if not has_board and (args.dtype is not None or args.shape is not None or args.offset):
        raise N6Error("--dtype, --shape and --offset describe a board-data file; neither A nor B is one")
    if not has_board and args.stage is not None:
        raise N6Error("--stage names the stage of a board-data array; neither A nor B is a board-data file")
    devices = {}

    def device(profile=None):
        from emu.device import Device
        if None not in devices:
            devices[None] = Device(args.config)
        if profile is not None and profile not in devices:
            devices[profile] = devices[None].with_(**{"model.profile": profile})
        return devices[profile]

    pcm = window = None
    if args.audio is not None:
        info = audio.probe(args.audio, raw_rate=args.rate)
        audio.check_rate(info, device().frontend.params.sample_rate)
        pcm = audio.read_all(info)
        window = 0 if args.window is None else args.window

    # files first: a trace or board capture may hold the input buffer the other side runs on
    loaded = []
    for kind, arg in specs:
        if kind == "trace":
            loaded.append(from_trace(arg))
        elif kind == "board":
            loaded.append(read_board_data(arg, dtype=args.dtype, shape=args.shape, offset=args.offset))
        else:
            loaded.append(None)

    buf, buf_from = None, None
    if args.input is not None:
        data = read_board_data(args.input)
        buf = data.single() if len(data.arrays) == 1 else board_input(data)
        if buf is None:
            raise N6Error(f"--input {args.input}: holds {len(data.arrays)} arrays ({', '.join(data.arrays)}) and none "
                          f"is the input buffer (input_buffer or c_inputs_1); give a file with one array")
        buf_from = args.input
    elif pcm is not None:
        buf, buf_from = device().trace(pcm, window=window)["input_buffer"], f"{args.audio} window {window}"
    else:
        for (kind, arg), x in zip(specs, loaded):
            found = None
            if kind == "trace":
                found = x["input_buffer"] if "input_buffer" in x else None
            elif kind == "board":
                found = board_input(x)
            if found is not None:
                buf, buf_from = found, f"the input buffer of {arg}"
                break

    def needs_input(kind):
        if buf is None and pcm is None:
            raise N6Error(f"`{kind}` runs the model: give --audio CLIP (--window K) or --input IN.npy, or compare with "
                          f"a trace/board file that holds the input buffer")

    sources = list(loaded)
    for i, (kind, arg) in enumerate(specs):
        if kind == "emu":
            needs_input(kind)
            dev = device(arg)
            sources[i] = (emulator_source(dev, pcm=pcm, window=window) if pcm is not None
                          else emulator_source(dev, input_buffer=buf))
        elif kind == "onnxruntime":
            needs_input(kind)
            dev = device()
            path = dev.model_path if arg is None else arg
            if not path.lower().endswith(".onnx"):
                raise N6Error(f"`onnxruntime` runs an .onnx model; the config's model is {path}: give "
                              f"onnxruntime:MODEL.onnx")
            reference = dev.session.model if dev.model_path.lower().endswith(".onnx") else None
            label = "onnxruntime" if arg is None else f"onnxruntime:{os.path.basename(arg)}"
            sources[i] = onnxruntime_source(path, buf, reference=reference, label=label)
        elif kind == "tflm":
            needs_input(kind)
            path = device().model_path if arg is None else arg
            sources[i] = tflm_source(path, buf, label="tflm" if arg is None else f"tflm:{os.path.basename(arg)}")
    for i, (kind, _) in enumerate(specs):
        if kind == "board":
            other = sources[1 - i]
            like = other if specs[1 - i][0] != "board" else None
            sources[i] = board_source(sources[i], like=like, stage=args.stage)

    report = compare(sources[0], sources[1])
    if args.json:
        d = report.to_dict()
        d["input"] = buf_from
        print(json.dumps(d, indent=2), file=out)
    else:
        if buf_from is not None:
            print(f"input: {buf_from}", file=out)
        print(report.table(), file=out)
    return EXIT_FAIL if report.diverging() or report.incomparable else EXIT_OK


def _move_into(src, dest):
    """Move the finished dump folder's files into an existing empty folder."""
    for name in os.listdir(src):
        os.replace(os.path.join(src, name), os.path.join(dest, name))
    os.rmdir(src)


def _print_warnings(dev, err):
    """Device.warnings (a [faults] table explaining a contradiction, a fault that changes nothing), one per line."""
    for w in dev.warnings:
        print(f"n6emu: warning: {w}", file=err)


def cmd_diagnose(args, out, err=None):
    import time

    from emu.device import Device
    from emu.diagnose import Diagnoser, read_board, read_recordings, report_text

    err = sys.stderr if err is None else err
    t0 = time.monotonic()
    dev = Device(args.config)
    _print_warnings(dev, err)
    recordings = read_recordings(dev, args.audio, rate=args.rate)
    board_out = read_board(args.board_output, dev, "output")
    board_in = None if args.board_input is None else read_board(args.board_input, dev, "input")
    result = Diagnoser(dev, [pcm for _, pcm in recordings], pairs=not args.no_pairs).diagnose(board_out, board_in)
    if args.json:
        entries = result.entries if args.top is None else result.entries[:args.top]
        print(json.dumps([e.to_json() for e in entries], indent=1), file=out)
        return EXIT_OK
    print(report_text(result, dev, top=8 if args.top is None else args.top), file=out)
    print(f"({result.n_hypotheses} hypotheses in {time.monotonic() - t0:.1f} s)", file=out)
    return EXIT_OK


def cmd_fit(args, out):
    from emu.diagnose import fit, fit_text, read_pairs
    from emu.models import import_model

    if args.model is not None and args.config is not None:
        raise N6Error("give --model or --config (whose [model] is used), not both")
    if args.model is not None:
        model = import_model(args.model)
    else:
        from emu.device import Device
        model = Device(args.config).session.model
    x, y = read_pairs(args.pairs, model)
    entries = fit(model, x, y, backend=args.backend)
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=1), file=out)
    else:
        print(f"{x.shape[0]} input/output pair(s) of {model.path} against {len(entries)} arithmetics", file=out)
        print(fit_text(entries), file=out)
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------

def build_parser():
    from emu.graph.profiles import CMSIS_NN, PROFILES, rounding_names
    from emu.graph.runtime import BACKENDS
    p = _Parser(prog="n6emu", description="Bit-exact host emulator of an STM32N6 keyword-spotting device chain.")
    p.add_argument("--version", action="version", version=f"n6emu {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("run", help="run an int8 model on int8 inputs (.npy), optionally dumping every tensor")
    s.add_argument("model", help=".tflite (int8) or .onnx (QDQ int8) model")
    s.add_argument("--input", required=True, help="IN.npy: int8 inputs in the model's input layout, optional leading batch axis")
    s.add_argument("--output", required=True, help="OUT.npy: the model output (N outputs for N inputs)")
    s.add_argument("--profile", default="cmsis-nn", choices=tuple(PROFILES),
                   help="arithmetic profile (default cmsis-nn; onnxruntime for what the PC's ORT computes)")
    s.add_argument("--rounding", default=None, metavar="ROUNDING",
                   help=f"requantization rounding, one of the profile's ({', '.join(rounding_names())}); a "
                        f"fixed-point profile also takes any requantizer `n6emu fit` names (e.g. single-floor/m16)")
    s.add_argument("--backend", default="numba", choices=BACKENDS, help="kernel implementation (default numba)")
    s.add_argument("--input-boundary", default=None, choices=("int8", "float32"),
                   help="int8 input buffer (ST default) or float32 input quantized by the model's QuantizeLinear")
    s.add_argument("--float-output", action="store_true",
                   help="the float output: ONNX DequantizeLinear(+Softmax) tail, TFLite dequantized output")
    s.add_argument("--dump", default=None, help="TRACE.npz: input_buffer, network/<tensor> for every tensor, output "
                   "(+ __meta__ JSON: settings and layouts; emu.trace.Trace.load reads it)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("replay", help="replay recorded PCM through the whole device chain, one result per patch")
    s.add_argument("audio", nargs="+", help="WAV (16-bit PCM mono), raw int16 LE (.raw/.pcm, needs --rate) or .npy int16; files, folders, globs")
    s.add_argument("--config", default=None, help="device TOML (default: the bundled device)")
    s.add_argument("--out", default=None, help="results.jsonl or results.csv (+ .settings.json beside it); default: print")
    s.add_argument("--rate", type=int, default=None, help="sample rate of raw/.npy inputs")
    s.add_argument("--dump", default=None, help="DIR: a trace per chosen window (<file>_w<k>.npz): every front-end stage, "
                   "the input buffer, every network tensor, output, probabilities, decision")
    s.add_argument("--windows", default=None, help="patches to dump: 'all' (default) or indices/ranges like 0,3-5")
    s.add_argument("--backend", default=None, choices=BACKENDS, help="override [model].backend")
    s.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    s.set_defaults(func=cmd_replay)

    s = sub.add_parser("features", help="the device front end's int8 feature patches of a recording (and every stage)")
    s.add_argument("audio", help="WAV (16-bit PCM mono), raw int16 LE (.raw/.pcm, needs --rate) or .npy int16")
    s.add_argument("--config", default=None, help="device TOML; its [frontend] table (default: the bundled device)")
    s.add_argument("--output", required=True, help="FEATS.npy: int8 [patches, mels (or MFCCs), frames]")
    s.add_argument("--stages", default=None, help="DIR: every stage of every patch as .npy (patch_00000/<stage>.npy)")
    s.add_argument("--rate", type=int, default=None, help="sample rate of raw/.npy inputs")
    s.set_defaults(func=cmd_features)

    s = sub.add_parser("vectors", help="golden vectors for firmware unit tests: every stage and layer as C headers, "
                       ".npy and a manifest")
    s.add_argument("--config", default=None, help="device TOML (default: the bundled device)")
    s.add_argument("--audio", nargs="+", required=True, help="clips (WAV 16-bit mono, raw int16 with --rate, .npy)")
    s.add_argument("--out", required=True, help="DIR: a new or empty folder")
    s.add_argument("--stages", default="all", choices=("all", "frontend", "network"),
                   help="which arrays: every front-end stage and network tensor (all), or one half")
    s.add_argument("--arena", action="store_true", help="also the activation arena's image after every layer "
                   "(arena/<case>_after_lNN.bin) and its map (arena/<case>_map.json)")
    s.add_argument("--align", type=int, default=16, help="arena alignment in bytes for --arena (default 16)")
    s.set_defaults(func=cmd_vectors)

    s = sub.add_parser("testkit", help="build the firmware C test kit on a vectors folder and run it (host or "
                       "Cortex-M55 under QEMU): one PASS/FAIL line per vector")
    s.add_argument("vectors", help="DIR written by `n6emu vectors`")
    s.add_argument("--target", default="host", choices=("host", "m55"), help="host gcc (default) or m55 (QEMU)")
    s.add_argument("--work", default=None, help="build folder (default: a temporary one)")
    s.add_argument("--timeout", type=float, default=600.0, help="seconds before the run is stopped")
    s.set_defaults(func=cmd_testkit)

    s = sub.add_parser("inspect", help="layers, shapes, dtypes, scales/zero-points and MACs of a model")
    s.add_argument("model")
    s.add_argument("--memory", action="store_true", help="the activation arena plan instead: offset, size and live "
                   "node range of every activation, peak arena and weight bytes")
    s.add_argument("--align", type=int, default=None, help="arena alignment in bytes for --memory (default 16)")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("conformance", help="run CMSIS-NN test-data folders through the emulator's kernels")
    s.add_argument("dir", help="folder holding CMSIS-NN-format cases (config_data.h + array headers + output_ref_data.h)")
    s.add_argument("--backend", default="numba", choices=BACKENDS, help="kernel implementation (default numba)")
    s.add_argument("--rounding", default="double", choices=CMSIS_NN.roundings,
                   help="requantization rounding of conv/depthwise/FC/mul (the reference data is double)")
    s.set_defaults(func=cmd_conformance)

    s = sub.add_parser("compare", help="compare two runs stage by stage and layer by layer (emulator profiles, "
                       "onnxruntime, tflite-micro, traces, board captures): ST's metrics, LSB histograms, first "
                       "divergent layer; exit 0 when identical, 1 when they differ")
    s.add_argument("a", metavar="A", help=f"the source compared: {_COMPARE_SOURCES}")
    s.add_argument("b", metavar="B", help="the reference, same choices (L2r and COS are relative to it)")
    s.add_argument("--config", default=None, help="device TOML for emu/onnxruntime/tflm (default: the bundled device)")
    s.add_argument("--audio", default=None, help="CLIP: run the whole chain on one patch of it (WAV 16-bit mono; "
                   "raw int16 or .npy with --rate)")
    s.add_argument("--window", type=int, default=None,
                   help="which patch of --audio (default 0, numbered as replay numbers them)")
    s.add_argument("--rate", type=int, default=None, help="sample rate of a raw/.npy --audio clip")
    s.add_argument("--input", default=None, help="IN.npy: the network input buffer (model input shape, or N x it) "
                   "instead of --audio")
    s.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")
    s.add_argument("--dtype", default=None, help="dtype of a board-data file's values (needed for raw dumps): int8, "
                   "uint8, int16, float32, ...")
    s.add_argument("--shape", default=None, help="shape of a board-data array, e.g. 1x12")
    s.add_argument("--offset", type=int, default=0, help="byte offset of the first value in a raw dump (default 0)")
    s.add_argument("--stage", default=None, help="the stage a single board array stands for (output, input_buffer, "
                   "float_output or a tensor name); default: matched by size")
    s.add_argument("--after-layer", type=int, default=None, help="with B = arena:MAP.json (from `vectors --arena`): "
                   "A is a memory dump of the arena taken after this layer; compared tensor by tensor")
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("diagnose", help="which firmware fault explains a board's outputs: the device chain under every "
                       "fault of the catalogue (emu/faults.py) and pairs of them, ranked by how exactly each "
                       "reproduces the board")
    s.add_argument("--config", default=None, help="device TOML: the device as it should be (default: the bundled "
                   "device); its [faults], if any, are taken as known")
    s.add_argument("--audio", nargs="+", required=True, help="the clips the board was played, in the board's order "
                   "(WAV 16-bit mono; raw int16 or .npy with --rate; files, folders, globs)")
    s.add_argument("--board-output", required=True, help="OUT: the board's int8 outputs, every window of every clip "
                   "in order: .npy/.npz, stedgeai .csv, a raw dump, or text as printed (`-63 -25 ...` or "
                   "`[-63, -25, ...]`, one window per line)")
    s.add_argument("--board-input", default=None, help="DUMP: the board's input buffers (same formats), one per "
                   "window: separates hypotheses the outputs cannot")
    s.add_argument("--rate", type=int, default=None, help="sample rate of raw/.npy clips")
    s.add_argument("--json", action="store_true", help="print every ranked hypothesis as JSON: hypothesis, params, "
                   "score, exact_matches, evidence (and rank, counts, mean |LSB|)")
    s.add_argument("--top", type=int, default=None, help="how many runners-up to print (text, default 8) or entries "
                   "(--json, default all)")
    s.add_argument("--no-pairs", action="store_true", help="single faults only (no combinations of two)")
    s.set_defaults(func=cmd_diagnose)

    s = sub.add_parser("fit", help="which network arithmetic (profile, rounding, tie rule) reproduces board "
                       "input/output pairs of the network; else the closest with its residual histogram")
    s.add_argument("--pairs", required=True, help="DIR: a stedgeai *_val_io.npz (c_inputs_1 / c_outputs_1), or files "
                   "named *input* with their *output* counterparts (.npy, raw dumps in the model's I/O type, text)")
    s.add_argument("--model", default=None, help=".onnx (QDQ) or .tflite model (default: the --config device's)")
    s.add_argument("--config", default=None, help="device TOML whose [model] is fitted (default: the bundled device)")
    s.add_argument("--backend", default="numba", choices=BACKENDS, help="kernel implementation (default numba)")
    s.add_argument("--json", action="store_true", help="every arithmetic as JSON: profile, exact windows/values, "
                   "mean and max |LSB|, residual histogram")
    s.set_defaults(func=cmd_fit)
    return p


def main(argv=None, out=None, err=None):
    """Entry point of the `n6emu` console script; returns the exit status (also when called in-process)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        args = build_parser().parse_args(argv)
        if args.func in (cmd_replay, cmd_diagnose):
            return args.func(args, out, err)
        return args.func(args, out)
    except N6Error as exc:
        print(f"n6emu: error: {exc}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("n6emu: interrupted", file=err)
        return 130
    except BrokenPipeError:   # e.g. `n6emu inspect M | head`: stop quietly, like other Unix tools
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
