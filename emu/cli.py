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


def _load_npy(path, what, mmap=False):
    if os.path.isdir(path):
        raise N6Error(f"{path}: is a folder; give the {what} .npy file")
    if not os.path.isfile(path):
        raise N6Error(f"{path}: no such {what} file")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except Exception as exc:  # numpy raises ValueError/OSError/EOFError... for a corrupt file
        raise N6Error(f"{path}: not a readable .npy file ({exc.__class__.__name__}); save it with numpy.save") from None


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (tuple, set, frozenset)):
        return list(v)
    return str(v)


def _print_json(obj, out):
    """One JSON document on stdout (non-finite floats as null, so that any JSON parser reads it)."""
    def clean(v):
        if isinstance(v, float) and not np.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, np.ndarray):
            return clean(v.tolist())
        if isinstance(v, np.generic):
            return clean(v.item())
        return v
    print(json.dumps(clean(obj), indent=1, default=_json_default, allow_nan=False), file=out)


def _fmt_shape(shape):
    return "x".join(str(int(d)) for d in shape) if len(shape) else "scalar"


def _fmt_quant(t):
    if t is None or t["scale"] is None:
        return ""
    if len(t["scale"]) == 1:
        return f"s={t['scale'][0]:.6g} zp={t['zero_point'][0]}"
    return f"per-ch({len(t['scale'])}) ax={t['quant_axis']}"


def _printable(name, limit=4096):
    """A name from a file or the file system (paths: no cut below `limit`), safe to print in one line."""
    from emu.errors import printable
    return printable(name, limit)


def _one_line(text):
    """A message safe to print as one line: unprintable characters escaped (idempotent on escaped names)."""
    s = str(text)
    return s if s.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def _is_tty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


# one-time compile of every Numba kernel of the bundled device chain: 18 s wall measured on a shared 2-core machine
# (the network's kernels compiled by a second process meanwhile; benchmarks/bench_speed.py --first-run)
COMPILE_SECONDS = 20


def _kernels_cold(network=True, frontend=True):
    """True when the Numba cache holds no compiled code for the key kernels (a conv kernel of the network, the
    st-f16 front end's patch kernel), i.e. the first run will compile; asks Numba's own cache locator (it follows
    numba.config.CACHE_DIR, wherever it is set). None when it cannot tell."""
    try:
        kernels = []
        if network:
            from emu.kernels.conv import _conv_tiles
            kernels.append(_conv_tiles)
        if frontend:
            from emu.frontend.st import _f16_helium_blocks
            kernels.append(_f16_helium_blocks)
        return any(not d._cache._cache_file._load_index() for d in kernels)
    except Exception:
        return None


def _job_backend(requested, n_items, profile, rounding=None, frontend_profile=None, faults=()):
    """The kernel backend of a job of n_items patches/inputs: `requested` ("numba" | "c"), or for "auto" the one
    emu.kernels.backends.choose_backend picks: Numba for what the C twins do not implement (a float profile, a
    requantizer other than TFLite's double/single rounding) and for a device with faults."""
    from emu.graph.profiles import PROFILES, ArithmeticProfile
    from emu.kernels.backends import choose_backend
    arithmetic = profile if isinstance(profile, ArithmeticProfile) else PROFILES.get(profile)
    try:
        arithmetic = arithmetic.choose(rounding) if arithmetic is not None else None
    except N6Error:
        arithmetic = None                    # the session names the error
    in_c = arithmetic is not None and arithmetic.fixed_point and arithmetic.requantizer.standard and not faults
    return choose_backend(requested, n_items, in_c, frontend_profile)


def _first_run(args, err, what="device"):
    """Before anything is compiled, on a cold kernel cache: one line on a terminal (silence otherwise) and, for a
    device command (`what` "device": args.config is the device) run as the `n6emu` command, the network's kernels
    compiled by a second process meanwhile (emu._install.compile_network_in_background). `what`: "device",
    "frontend" or "network" (the kernels the command runs)."""
    if getattr(args, "backend", None) == "c":
        return                              # nothing to compile (and Numba is not even imported)
    helper = (what == "device" and getattr(args, "command_process", False)
              and getattr(args, "backend", None) in (None, "numba"))
    if not (helper or _is_tty(err)) or not _kernels_cold(network=what != "frontend", frontend=what != "network"):
        return
    if _is_tty(err):
        print(f"n6emu: compiling kernels (first run only, about {COMPILE_SECONDS} s)", file=err, flush=True)
    if helper:
        from emu._install import compile_network_in_background
        compile_network_in_background(args.config)


# ---------------------------------------------------------------------------------------------------
# subcommands
# ---------------------------------------------------------------------------------------------------

def cmd_inspect(args, out):
    from emu.graph.ir import inspect_graph
    from emu.models import load_model

    if args.align is not None and not args.memory:
        raise N6Error("--align sets the arena alignment of the memory plan: give --memory too")
    graph = load_model(args.model)
    P = _printable
    if args.memory:
        from emu.graph.memory import DEFAULT_ALIGNMENT, plan_memory
        plan = plan_memory(graph, alignment=DEFAULT_ALIGNMENT if args.align is None else args.align)
        if args.json:
            _print_json(dict(model=args.model, source=graph.source, memory=plan.to_dict()), out)
            return EXIT_OK
        print(f"model {P(args.model)} ({graph.source})", file=out)
        print(f"memory plan: {len(plan)} activations in one arena, {plan.alignment}-byte alignment, largest first "
              f"(first fit over live ranges); reshape outputs share their input's buffer", file=out)
        print(f"{'offset':>8} {'size':>8}  {'nodes':<9} tensor", file=out)
        for p in plan:
            alias = f"  (= {P(p.alias_of, 80)})" if p.alias_of is not None else ""
            print(f"{p.offset:>8} {p.size:>8}  {f'{p.first}-{p.last}':<9} {P(p.name, 80)}{alias}", file=out)
        dtypes = " + ".join(f"{k} {v}" for k, v in plan.weights_by_dtype.items())
        print(f"peak arena {plan.peak_bytes} bytes (all activations without reuse: {plan.activation_bytes} bytes)",
              file=out)
        print(f"weights {plan.weight_bytes} bytes (constants as stored: {dtypes or 'none'})", file=out)
        print(f"requantization arrays {plan.requant_bytes} bytes (int32 multiplier + shift per output channel; not "
              f"in weights)", file=out)
        if plan.state_bytes:
            print(f"recurrent state {plan.state_bytes} bytes (variable tensors, kept for the whole run; not in the "
                  f"arena)", file=out)
        return EXIT_OK
    layers = inspect_graph(graph)
    if args.json:
        io = {kind: [dict(name=n, shape=[int(d) for d in graph.tensors[n].shape],
                          dtype=np.dtype(graph.tensors[n].dtype).name,
                          scale=None if graph.tensors[n].scale is None else [float(v) for v in graph.tensors[n].scale],
                          zero_point=None if graph.tensors[n].zero_point is None
                          else [int(v) for v in graph.tensors[n].zero_point]) for n in names]
              for kind, names in (("inputs", graph.inputs), ("outputs", graph.outputs))}
        _print_json(dict(model=args.model, source=graph.source, **io, layers=layers,
                         macs=sum(layer["macs"] for layer in layers)), out)
        return EXIT_OK
    print(f"model {P(args.model)} ({graph.source})", file=out)
    for kind, names in (("input ", graph.inputs), ("output", graph.outputs)):
        for name in names:
            t = graph.tensors[name]
            quant = dict(scale=None if t.scale is None else list(t.scale),
                         zero_point=None if t.zero_point is None else list(t.zero_point), quant_axis=t.quant_axis)
            print(f"  {kind} {P(name, 80)}: {_fmt_shape(t.shape)} {np.dtype(t.dtype).name} {_fmt_quant(quant)}", file=out)
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
        print(f"{i:>3} {P(layer['op'], 17):<17} {_fmt_shape(first['shape']) if first else '':<11} "
              f"{_fmt_shape(o['shape']):<11} {o['dtype']:<5} {_fmt_quant(o):<24} {wdesc:<26} {layer['macs']:>9,}  "
              f"{P(layer['name'], 80)}", file=out)
    print(f"{len(layers)} layers, {total:,} MACs per inference", file=out)
    return EXIT_OK


RUN_CHUNK = 256   # inputs per network call when `run` streams a batch (memory: one chunk in, one chunk out)


def cmd_run(args, out, err=None):
    from emu.models import ModelSession, import_model
    from emu.outputs import check_file_target, npy_stream, save_npy

    err = sys.stderr if err is None else err
    check_file_target(args.output, "--output")
    if args.dump is not None:
        check_file_target(args.dump, "--dump")
    x = _load_npy(args.input, "input", mmap=True)    # a memory map: a batch larger than memory streams
    boundary = args.input_boundary or "int8"
    model = import_model(args.model, args.io_layout)
    shape = tuple(model.input_shape)
    batched = x.ndim == len(shape) + 1 and tuple(x.shape[1:]) == shape
    n_inputs = max(1, x.size // max(1, int(np.prod(shape))))     # a leading batch axis, or N in the model's own
    args.backend = _job_backend(args.backend, n_inputs, args.profile, args.rounding)
    session = ModelSession(model, profile=args.profile, backend=args.backend, rounding=args.rounding)
    if x.size == 0:
        raise N6Error(f"{args.input}: an empty array {_fmt_shape(x.shape)} (no input); give at least one input of "
                      f"shape {_fmt_shape(shape)}")
    meta = dict(session.metadata, input_boundary=boundary, float_output=bool(args.float_output),
                model=os.path.abspath(args.model), input=os.path.abspath(args.input), n6emu=__version__)
    _first_run(args, err, "network")

    def result(chunk):
        q, f = session.run(np.ascontiguousarray(chunk), boundary)
        if args.float_output and f is None:
            raise N6Error(f"{args.model}: the model has no float output (no DequantizeLinear tail); drop "
                          f"--float-output")
        if isinstance(q, tuple):
            raise N6Error("--output with a multi-output model is not supported; use --dump to get every tensor")
        return np.asarray(f if args.float_output else q)

    trace = session.trace(np.asarray(x), boundary, settings=meta) if args.dump else None
    if trace is not None:
        trace.save(args.dump)
    try:
        if batched:
            n = x.shape[0]
            first = result(x[:RUN_CHUNK])
            if first.shape[0] != min(n, RUN_CHUNK):
                raise RuntimeError(f"batch of {min(n, RUN_CHUNK)} gave {first.shape[0]} outputs")
            y_shape, y_dtype = (n,) + first.shape[1:], first.dtype
            with npy_stream(args.output, y_shape, y_dtype) as y:
                y[:first.shape[0]] = first
                for start in range(RUN_CHUNK, n, RUN_CHUNK):
                    y[start:start + RUN_CHUNK] = result(x[start:start + RUN_CHUNK])
        else:
            y = result(x)
            y_shape, y_dtype = y.shape, y.dtype
            save_npy(args.output, y)
    except BaseException:
        if trace is not None and os.path.isfile(args.dump):
            os.remove(args.dump)
        raise
    print(f"wrote {_printable(args.output)}: {_fmt_shape(y_shape)} {np.dtype(y_dtype)} (profile {meta['profile']}, "
          f"rounding {meta['rounding']}, backend {meta['backend']})" +
          (f"; {len(trace)} stages and tensors in {_printable(args.dump)}" if trace else ""), file=out)
    return EXIT_OK


def _no_window(info, new_samples, rate):
    """The line for a recording shorter than one patch."""
    return (f"no window: {_printable(info.path)} is {info.n_samples / info.sample_rate:.2f} s, shorter than one "
            f"{new_samples / rate:.2f} s patch")


def _leftover_text(samples, rate, files=None):
    where = "the last patch" if files is None else f"the last patch of {files} file(s)"
    return (f"{samples} sample(s) ({samples / rate:.2f} s) after {where} not computed (the device would still be "
            f"waiting for the next patch)")


def _check_folder_is_not_one_file(path, command):
    """`features` and other one-recording commands given a folder: one line saying so."""
    if os.path.isdir(path):
        from emu import audio
        found = audio.find_audio([path])
        raise N6Error(f"{_printable(path)}: is a folder of {len(found)} recording(s); `n6emu {command}` takes one "
                      f"recording: give one of its files (e.g. {_printable(found[0])}), or replay the folder with "
                      f"`n6emu replay {_printable(path)}`")


def cmd_features(args, out, err=None):
    import contextlib

    from emu import audio
    from emu.config import load_config
    from emu.outputs import check_file_target, check_new_folder, npy_bytes, save_npy, staged_folder, write_into

    err = sys.stderr if err is None else err
    check_file_target(args.output, "--output")
    if args.stages is not None:
        check_new_folder(args.stages, "--stages")
    _check_folder_is_not_one_file(args.audio, "features")
    cfg = load_config(args.config)
    rate, new = cfg.frontend.sample_rate, cfg.frontend.new_samples
    info = audio.open_checked(args.audio, args.rate, rate)
    if info.n_samples < new:
        raise N6Error(_no_window(info, new, rate))

    from emu.device import FrontEnd, frontend_params
    from emu.trace import frontend_trace
    params = frontend_params(cfg)
    args.backend = _job_backend(cfg.model.backend, info.n_samples // new, cfg.model.profile, cfg.model.rounding,
                                params.profile, cfg.faults)
    _first_run(args, err, "frontend")
    fe = FrontEnd(params, args.backend)
    feats = []
    written = False
    try:
        with contextlib.ExitStack() as stack:
            tmp = None if args.stages is None else stack.enter_context(staged_folder(args.stages, ".n6emu-stages-"))
            for k, patch in audio.patches(audio.iter_blocks(info, 1 << 16), params.keep_samples, params.new_samples):
                trace = frontend_trace(fe, patch)
                feats.append(trace["frontend/features"])
                if tmp is not None:
                    folder = os.path.join(tmp, f"patch_{k:05d}")
                    os.makedirs(folder)
                    for name in trace.names("frontend/"):
                        write_into(os.path.join(folder, f"{name[len('frontend/'):]}.npy"), npy_bytes(trace[name]))
            arr = np.stack(feats)
            save_npy(args.output, arr)
            written = True
    except BaseException:
        if written and os.path.isfile(args.output):
            os.remove(args.output)
        raise
    leftover = info.n_samples - len(feats) * params.new_samples
    if args.json:
        _print_json(dict(output=args.output, shape=list(arr.shape), dtype="int8",
                         layout=f"[patch, {'mfcc' if fe.frame_major else 'mel'}, frame]", front_end=params.build,
                         scale=params.quant_scale, zero_point=params.quant_zero_point, patches=len(feats),
                         samples=info.n_samples, leftover_samples=leftover, stages=args.stages), out)
        return EXIT_OK
    print(f"wrote {_printable(args.output)}: {_fmt_shape(arr.shape)} int8 [patch, {'mfcc' if fe.frame_major else 'mel'}, "
          f"frame] ({params.build}, scale {params.quant_scale:.6g}, zero-point {params.quant_zero_point})"
          + (f"; every stage of every patch in {_printable(args.stages)}" if args.stages else "")
          + (f"; {_leftover_text(leftover, params.sample_rate)}" if leftover else ""), file=out)
    return EXIT_OK


def cmd_vectors(args, out, err=None):
    from emu import audio
    from emu.config import load_config
    from emu.outputs import check_new_folder
    from emu.vectors import write_vectors

    err = sys.stderr if err is None else err
    check_new_folder(args.out, "--out")
    rate = load_config(args.config).frontend.sample_rate
    for clip in args.audio:                  # every clip checked before anything is built or compiled
        _check_folder_is_not_one_file(clip, "vectors --audio")
        audio.open_checked(clip, None, rate)
    from emu.device import Device
    _first_run(args, err)
    dev = Device(args.config)
    _print_warnings(dev, err)
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


def cmd_conformance(args, out, err=None):
    from emu.conformance import run_all

    err = sys.stderr if err is None else err
    if not os.path.isdir(args.dir):
        raise N6Error(f"{_printable(args.dir)}: no such folder; give a folder of CMSIS-NN test-data cases")
    _first_run(args, err, "network")
    results = run_all(args.dir, backend=args.backend, rounding=args.rounding)
    if not results:
        raise N6Error(f"{_printable(args.dir)}: no CMSIS-NN test-data case found (folders with config_data.h)")
    if args.json:
        cases = [dict(name=r.name, op=r.op, status=r.status, n_mismatch=r.n_mismatch, n_total=r.n_total,
                      first_mismatch=None if r.first_mismatch is None else [int(v) for v in r.first_mismatch],
                      detail=r.detail or None) for r in results]
        counts = {k: sum(r.status == k.upper() for r in results) for k in ("pass", "fail", "unknown")}
        _print_json(dict(dir=args.dir, passed=counts["pass"], failed=counts["fail"], unknown=counts["unknown"],
                         cases=cases), out)
        return EXIT_FAIL if counts["fail"] else EXIT_OK
    passed = failed = unknown = 0
    for r in results:
        if r.status == "PASS":
            passed += 1
            line = f"PASS {_printable(r.name)} ({r.op}, {r.n_total} values)"
        elif r.status == "FAIL":
            failed += 1
            pos = "" if r.first_mismatch is None else f", first at NHWC {tuple(int(v) for v in r.first_mismatch)}"
            line = f"FAIL {_printable(r.name)} ({r.op}): {r.n_mismatch}/{r.n_total} values differ{pos}" + (f"; {r.detail}" if r.detail else "")
        else:
            unknown += 1
            line = f"UNKNOWN {_printable(r.name)}: {_one_line(r.detail)}"
        print(line, file=out)
    print(f"{passed} passed, {failed} failed" + (f", {unknown} unknown" if unknown else ""), file=out)
    return EXIT_FAIL if failed else EXIT_OK


class _Windows:
    """--windows as index ranges (membership by range: `0-99999999999` allocates nothing)."""

    def __init__(self, spec, ranges):
        self.spec, self.ranges = spec, ranges

    def __contains__(self, k):
        return any(lo <= k <= hi for lo, hi in self.ranges)

    def lowest(self):
        return min(lo for lo, _ in self.ranges)

    def unmatched(self, seen):
        """The parts of the spec that matched none of the windows `seen`."""
        return [f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges
                if not any(lo <= k <= hi for k in seen)]


def _parse_windows(spec):
    """--windows SPEC: "all" or comma-separated indices/ranges ("0,3-5") of patches to dump in every file."""
    if spec is None or spec == "all":
        return None
    ranges = []
    try:
        for part in spec.split(","):
            a, _, b = part.strip().partition("-")
            lo, hi = int(a), int(b) if b else int(a)
            if lo < 0 or hi < lo:
                raise ValueError
            ranges.append((lo, hi))
    except ValueError:
        raise N6Error(f"--windows {_one_line(spec)!r}: give 'all' or indices/ranges like 0,3-5") from None
    return _Windows(spec, ranges)


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal (CI logs stay clean) or with --progress.

    The clock counts from the command's start (compilation and set-up included); the ETA extrapolates the work
    done since the first update. clear() empties the line before a result line is printed and redraw() puts the
    bar back under it, so result lines are never overwritten; close() leaves the line empty."""

    def __init__(self, err, enabled, t0=None):
        import time
        self.err, self.enabled, self.time = err, enabled, time.monotonic
        self.t0 = self.time() if t0 is None else t0
        self.first = None          # (time, done) of the first update: the ETA's origin
        self.last = -1.0
        self.text = None           # the bar as last drawn (None: nothing on the line)
        self.state = None

    def __call__(self, done, total):
        if not self.enabled or total == 0:
            return
        now = self.time()
        if self.first is None:
            self.first = (now, done)
        self.state = (done, total)
        if now - self.last < 0.2 and done < total:
            return
        self.last = now
        self._draw(now)

    def _draw(self, now):
        done, total = self.state
        frac = done / total
        t1, d1 = self.first
        if done >= total:
            eta = "ETA  0.0 s"
        elif done > d1 and now > t1:
            eta = f"ETA {(now - t1) / (done - d1) * (total - done):4.1f} s"
        else:
            eta = "ETA    ? s"
        self.text = f"[{'#' * int(30 * frac):<30}] {100 * frac:5.1f}%  {now - self.t0:6.1f} s  {eta}"
        self.err.write("\r\x1b[K" + self.text)
        self.err.flush()

    def clear(self):
        if self.text is not None:
            self.err.write("\r\x1b[K")
            self.err.flush()

    def redraw(self):
        if self.text is not None:
            self._draw(self.time())

    def close(self):
        self.clear()
        self.text = None


_CSV_FIELDS = ("file", "window", "start_s", "end_s", "label", "index", "score", "gated", "below_threshold",
               "silence_sum", "output", "probabilities")


def _record_json(rec):
    return {k: (rec[k].tolist() if isinstance(rec[k], np.ndarray) else
                (None if isinstance(rec[k], float) and not np.isfinite(rec[k]) else rec[k]))
            for k in _CSV_FIELDS}


def _below_threshold(rec, threshold):
    """Mark a replay record whose best probability does not exceed [app].threshold (not gated); returns it."""
    rec["below_threshold"] = not rec["gated"] and not rec["score"] > threshold
    return rec["below_threshold"]


def _csv_row(j, fields):
    """A record's JSON values as one CSV row (lists as JSON text)."""
    return [json.dumps(j[k]) if isinstance(j[k], list) else j[k] for k in fields]


BELOW = " (below threshold)"


def _no_window_error(short, new, rate):
    """No file gives a window: one line (the first files named, the count of the rest)."""
    if len(short) == 1:
        return _no_window(short[0], new, rate)
    names = ", ".join(f"{_printable(i.path)} is {i.n_samples / i.sample_rate:.2f} s" for i in short[:3])
    more = f" and {len(short) - 3} more" if len(short) > 3 else ""
    return f"no window: every file is shorter than one {new / rate:.2f} s patch ({names}{more})"


def cmd_replay(args, out, err):
    if _dataset_mode(args):
        return _replay_dataset(args, out, err)
    import contextlib
    import csv

    from emu import audio
    from emu.config import load_config
    from emu.outputs import Staged, check_file_target, check_new_folder, staged_folder

    # everything the user gave is checked before anything is built or compiled
    if args.out is not None and not args.out.endswith((".jsonl", ".csv")):
        raise N6Error(f"--out {_printable(args.out)}: give a .jsonl or .csv file name")
    if args.out is not None:
        check_file_target(args.out, "--out")
        check_file_target(args.out + ".settings.json", "--out")
    if args.windows is not None and args.dump is None:
        raise N6Error("--windows selects the patches to dump: give --dump DIR too")
    if args.dump is not None:
        check_new_folder(args.dump, "--dump")
    windows = _parse_windows(args.windows)
    cfg = load_config(args.config)
    rate, new = cfg.frontend.sample_rate, cfg.frontend.new_samples
    infos = [audio.open_checked(f, args.rate, rate) for f in audio.find_audio(args.audio)]
    short = [i for i in infos if i.n_samples < new]
    if len(short) == len(infos):
        raise N6Error(_no_window_error(short, new, rate))
    if windows is not None:
        most = max(i.n_samples // new for i in infos)
        if windows.lowest() >= most:
            raise N6Error(f"--windows {_one_line(args.windows)}: no such window; the longest file has {most} "
                          f"window(s) (0-{most - 1}); nothing was written")

    args.backend = _job_backend(args.backend or cfg.model.backend, sum(i.n_samples // new for i in infos),
                                cfg.model.profile, cfg.model.rounding, cfg.frontend.profile, cfg.faults)
    cfg = cfg.replace("model", backend=args.backend)
    from emu.device import Device
    _first_run(args, err)
    dev = Device(cfg)
    _print_warnings(dev, err)
    threshold = dev.config.app.threshold
    progress = _Progress(err, args.progress or _is_tty(err), t0=getattr(args, "t0", None))
    results = side = None
    committed = False
    try:
        dump_tmp = None
        with contextlib.ExitStack() as stack:
            stack.callback(progress.close)
            if args.dump is not None:
                dump_tmp = stack.enter_context(staged_folder(args.dump, ".n6emu-dump-"))
            sink = writer = None
            if args.out is not None:
                results = Staged(args.out, text=True, newline="")
                sink = results.file
                writer = csv.writer(sink) if args.out.endswith(".csv") else None
                if writer is not None:
                    writer.writerow(_CSV_FIELDS)
            dumped, records = [], []

            def dump_trace(info, k):
                if windows is not None and k not in windows:
                    return None
                stem = os.path.splitext(os.path.basename(info.path))[0]

                def save(trace):
                    trace.settings.update(n6emu=__version__, file=info.path, window=k)
                    trace.save(os.path.join(dump_tmp, f"{stem}_w{k:05d}.npz"))
                    dumped.append(k)
                return save

            n = 0
            counts, per_file = {}, {}
            for rec in dev.replay([i.path for i in infos], rate=args.rate, progress=progress,
                                  trace=dump_trace if dump_tmp is not None else None):
                n += 1
                per_file[rec["file"]] = per_file.get(rec["file"], 0) + 1
                below = _below_threshold(rec, threshold)
                label = "(silence gate)" if rec["gated"] else rec["label"] + (BELOW if below else "")
                counts[label] = counts.get(label, 0) + 1
                if sink is None and args.json:
                    records.append(_record_json(rec))
                elif sink is None:
                    span = f"{rec['start_s']:.2f}-{rec['end_s']:.2f} s"
                    progress.clear()
                    print(f"{span:>18}  {label:<14} p={rec['score']:.3f}  "
                          f"top={dev.classes[rec['index']]:<12} {_printable(rec['file'])}", file=out, flush=True)
                    progress.redraw()
                elif writer is not None:
                    j = _record_json(rec)
                    writer.writerow(_csv_row(j, _CSV_FIELDS))
                else:
                    sink.write(json.dumps(_record_json(rec)) + "\n")
            files = [dict(file=i.path, samples=i.n_samples, seconds=i.n_samples / i.sample_rate,
                          windows=per_file.get(i.path, 0), leftover_samples=dev.leftover_samples(i.n_samples))
                     for i in infos]
            no_window = [i for i, f in zip(infos, files) if f["windows"] == 0]
            if n == 0:
                raise N6Error(_no_window_error(no_window, new, rate))
            if windows is not None and not dumped:
                raise N6Error(f"--windows {_one_line(args.windows)}: no such window (the input gave {n} window(s), "
                              f"numbered from 0 in each file); nothing was written")
            settings = dict(dev.settings, n6emu=__version__, inputs=files,
                            no_window=[_no_window(i, new, rate) for i in no_window])
            if args.out is not None:
                side = Staged(args.out + ".settings.json", text=True, newline="\n")
                side.file.write(json.dumps(settings, indent=2) + "\n")
                results.commit()
                committed = True
                side.commit()
    except BaseException:
        for st in (results, side):        # a failed write leaves neither the results nor their settings
            if st is not None:
                st.discard()
        if committed and os.path.isfile(args.out):
            os.remove(args.out)           # the results were moved into place, their settings were not
        raise
    leftover = sum(f["leftover_samples"] for f in files if f["windows"])   # files without a window: reported apart
    unmatched = windows.unmatched(dumped) if windows is not None else []
    if args.json:
        _print_json(dict(windows=n, files=files, counts=counts, front_end=dev.config.frontend.build,
                         backend=dev.config.model.backend, threshold=threshold, out=args.out, dump=args.dump,
                         traces=len(dumped),
                         windows_unmatched=unmatched, leftover_samples=leftover,
                         no_window=settings["no_window"], records=None if args.out else records), out)
        return EXIT_OK
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    print(f"{n} windows from {len(infos) - len(no_window)} file(s), front end {dev.config.frontend.build}, "
          f"{dev.config.model.backend} kernels" +
          (f" -> {_printable(args.out)}" if args.out else "") +
          (f"; {len(dumped)} trace(s) in {_printable(args.dump)}" if args.dump else "") +
          (f"  ({summary})" if summary else ""), file=out)
    for line in settings["no_window"][:5]:
        print(line, file=out)
    if len(no_window) > 5:
        print(f"no window: {len(no_window) - 5} more file(s) shorter than one patch"
              + (" (all in the settings)" if args.out else ""), file=out)
    if leftover:
        with_left = sum(f["leftover_samples"] > 0 for f in files if f["windows"])
        print(_leftover_text(leftover, rate, with_left) + ("; per file in the settings" if args.out else ""),
              file=out)
    if unmatched:
        print(f"--windows: {', '.join(unmatched)} matched no window of any file", file=out)
    if any(BELOW in k for k in counts):
        print(f"{dev.config.app.unknown_label}{BELOW}: no class's probability exceeded [app].threshold = "
              f"{threshold:g}; top= is the model's most probable class (a class of its own, like _unknown_, "
              f"is a decision)", file=out)
    return EXIT_OK


_DATASET_FLAGS = ("labels", "pad", "report", "compare_config", "compare_to", "workers", "scheduler", "resume")


def _dataset_mode(args):
    return any(getattr(args, k, None) is not None and getattr(args, k) is not False for k in _DATASET_FLAGS)


def _replay_dataset(args, out, err):
    """`n6emu replay DATASET --labels folders|CSV [--pad] [--report DIR] [--compare-config T | --compare pc]
    [--workers N | --scheduler ADDR] [--out F [--resume]]`: whole files in input order (emu.dataset)."""
    import csv
    import io
    import signal

    from emu import audio
    from emu import dataset as D
    from emu.config import load_config
    from emu.outputs import check_file_target, check_new_folder, staged_folder, write_text

    compare_pc = args.compare_to == "pc"

    if args.dump is not None or args.windows is not None:
        raise N6Error("--dump/--windows trace single windows; drop them for a dataset replay (--labels, --pad, "
                      "--report, --compare*, --workers, --scheduler, --resume)")
    if args.compare_config is not None and compare_pc:
        raise N6Error("give --compare-config OTHER.toml or --compare pc, not both")
    if args.resume and args.out is None:
        raise N6Error("--resume continues an interrupted --out file: give --out too")
    if args.out is not None:
        if not args.out.endswith((".jsonl", ".csv")):
            raise N6Error(f"--out {_printable(args.out)}: give a .jsonl or .csv file name")
        check_file_target(args.out, "--out")
    if args.report is not None:
        check_new_folder(args.report, "--report")
        if args.labels is None:
            raise N6Error("--report measures accuracy against labels: give --labels folders or --labels FILE.csv")
        from emu import plots
        try:
            plots.require()
        except N6Error:
            raise N6Error('matplotlib is not installed, which --report needs for its confusion-matrix PNG; pip '
                          'install "n6emu[plot]"') from None
    if args.workers is not None and args.workers < 1:
        raise N6Error(f"--workers {args.workers}: give a number of worker processes >= 1")
    if args.workers is not None and args.scheduler is not None:
        raise N6Error("give --workers N (a local cluster) or --scheduler ADDRESS (an existing one), not both")
    if args.workers is not None or args.scheduler is not None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise N6Error("--workers/--scheduler need Dask: pip install \"n6emu[dask]\"") from None
    cfg = load_config(args.config)
    other_cfg = load_config(args.compare_config) if args.compare_config is not None else None
    clips = D.list_clips(args.audio, labels=args.labels)
    for c in clips:       # every file readable at the device's rate before anything is built
        audio.open_checked(c.path, args.rate, cfg.frontend.sample_rate)

    args.backend = _job_backend(args.backend or cfg.model.backend, len(clips), cfg.model.profile,
                                cfg.model.rounding, cfg.frontend.profile, cfg.faults)   # a clip: a patch or more
    cfg = cfg.replace("model", backend=args.backend)
    from emu.device import Device
    _first_run(args, err)
    dev = Device(cfg)
    _print_warnings(dev, err)
    other = None
    if other_cfg is not None:
        other = Device(other_cfg, _shared=dev._shared)
    elif compare_pc:
        other = dev.pc()
    threshold = dev.config.app.threshold
    fields = _CSV_FIELDS + (("truth",) if args.labels is not None else ())
    settings = dict(dev.settings, n6emu=__version__, dataset=dict(
        inputs=[_one_line(a) for a in args.audio], labels=args.labels, pad=bool(args.pad), files=len(clips),
        compare=None if other is None else ("pc" if compare_pc else other.settings)))
    fingerprint = D._fingerprint(settings, [(c.path, c.label, os.path.getsize(c.path)) for c in clips], args.rate)
    sink = None
    if args.out is not None:
        header = "" if args.out.endswith(".jsonl") else ",".join(fields) + "\r\n"
        sink = D.ResumableOutput(args.out, fingerprint, header=header, resume=args.resume)
    start = 0 if sink is None else sink.files_done
    progress = _Progress(err, args.progress or _is_tty(err), t0=getattr(args, "t0", None))
    results_kept = []          # FileResult summaries (records dropped): the report and the summary
    summaries = [] if sink is None else list(sink.summaries)

    def lines_of(res):
        rows = []
        for rec in res.records:
            _below_threshold(rec, threshold)
            j = _record_json(rec)
            if args.labels is not None:
                j["truth"] = res.label
            if args.out is not None and args.out.endswith(".csv"):
                buf = io.StringIO()
                csv.writer(buf).writerow(_csv_row(j, fields))
                rows.append(buf.getvalue())
            else:
                rows.append(json.dumps({k: j[k] for k in fields}) + "\n")
        return rows

    try:
        for res in D.iter_results(dev, clips, rate=args.rate, pad=args.pad, other=other, workers=args.workers,
                                  scheduler=args.scheduler, start=start,
                                  progress=lambda done, total: progress(done, total)):
            summary = res.summary()
            if sink is not None:
                sink.write_file(lines_of(res), summary)
            summaries.append(summary)
            results_kept.append(res.index)
    except (_Terminated, KeyboardInterrupt) as exc:
        progress.close()
        if sink is not None:
            sink.close()
            print(f"n6emu: interrupted after {sink.files_done}/{len(clips)} file(s); the same command with --resume "
                  f"continues {_printable(args.out)}", file=err)
        else:
            print("n6emu: interrupted; nothing written", file=err)
        return 128 + signal.SIGTERM if isinstance(exc, _Terminated) else 130
    progress.close()
    report = D.Report()
    other_report = D.Report() if other is not None else None
    for s_ in summaries:
        report.add(s_["label"], s_["predicted"])
        if other_report is not None:
            other_report.add(s_["label"], s_["other_predicted"])
    no_window = [s_ for s_ in summaries if s_["windows"] == 0]
    differ = [s_ for s_ in summaries if other is not None and s_["predicted"] != s_["other_predicted"]]
    settings["dataset"].update(windows=sum(s_["windows"] for s_ in summaries), no_window=[s_["file"] for s_ in no_window],
                               leftover_samples=sum(s_["leftover"] for s_ in summaries if s_["windows"]),
                               padded=sum(1 for s_ in summaries if s_["padded"]))
    if args.report is not None:
        with staged_folder(args.report, ".n6emu-report-") as tmp:
            D.write_report(tmp, report, other_report, summaries if other is not None else None,
                           names=("device", "pc" if compare_pc else "compared"))
    if sink is not None:
        write_text(args.out + ".settings.json", json.dumps(dict(settings, files=summaries), indent=2) + "\n")
        sink.finish()
    rate = cfg.frontend.sample_rate
    rep = report.to_dict()
    if args.json:
        _print_json(dict(files=len(summaries), windows=settings["dataset"]["windows"], report=rep if args.labels
                         else None, compared=None if other_report is None else other_report.to_dict(),
                         differing=[s_["file"] for s_ in differ], no_window=settings["dataset"]["no_window"],
                         leftover_samples=settings["dataset"]["leftover_samples"], out=args.out,
                         report_dir=args.report), out)
        return EXIT_OK
    print(f"{settings['dataset']['windows']} windows from {len(summaries) - len(no_window)} of {len(summaries)} "
          f"file(s), front end {dev.config.frontend.build}" + (f" -> {_printable(args.out)}" if args.out else "")
          + (f"; {settings['dataset']['padded']} padded" if args.pad else ""), file=out)
    if args.labels is not None and rep["files"]:
        line = f"accuracy {rep['accuracy']:.4f} ({rep['correct']}/{rep['files']} clips)"
        if other_report is not None:
            o = other_report.to_dict()
            line += (f"; {'pc' if compare_pc else 'compared'} {o['accuracy']:.4f} ({o['correct']}/{o['files']}); "
                     f"{len(differ)} clip(s) decided differently")
        print(line, file=out)
    for s_ in no_window[:5]:
        print(f"no window: {_printable(s_['file'])} is {s_['samples'] / rate:.2f} s, shorter than one "
              f"{cfg.frontend.new_samples / rate:.2f} s patch" + ("" if args.pad else " (--pad zero-pads it)"), file=out)
    if len(no_window) > 5:
        print(f"no window: {len(no_window) - 5} more file(s)" + (" (all in the settings)" if args.out else ""),
              file=out)
    if settings["dataset"]["leftover_samples"]:
        print(_leftover_text(settings["dataset"]["leftover_samples"], rate,
                             sum(1 for s_ in summaries if s_["windows"] and s_["leftover"])), file=out)
    if args.report is not None:
        print(f"report in {_printable(args.report)}", file=out)
    return EXIT_OK


_COMPARE_SOURCES = ("emu, emu:<profile>, onnxruntime, onnxruntime:MODEL.onnx, tflm, tflm:MODEL.tflite, trace:PATH, "
                    "board:PATH or a board-data file (.npy, .npz, .csv, .bin/.raw dump, text list)")


def _compare_arena(args, out):
    """`n6emu compare DUMP.bin arena:MAP.json --after-layer N [--offset B]`: the board's arena, tensor by tensor."""
    from emu.arena import compare_dump

    if not args.b.startswith("arena:") or args.after_layer is None:
        raise N6Error("an arena comparison is `n6emu compare DUMP.bin arena:MAP.json --after-layer N`: give both")
    if args.plot is not None:
        raise N6Error("--plot draws stage-by-stage comparisons; the arena comparison has no figures: drop --plot")
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


def cmd_compare(args, out, err=None):
    from emu import audio, plots
    from emu.boarddata import read_board_data
    from emu.compare import (board_input, board_source, compare, emulator_source, from_trace, onnxruntime_source,
                             tflm_source)
    from emu.graph.profiles import PROFILES

    err = sys.stderr if err is None else err
    if args.b.startswith("arena:") or args.after_layer is not None:
        return _compare_arena(args, out)
    if args.plot is not None:
        plots.require()
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
            _print_warnings(devices[None], err)
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
    context = devices[None].fault_context if devices else None       # reads an input buffer as the model does
    figures = [] if args.plot is None else plots.compare_plots(report, sources[0], sources[1], args.plot, context)
    if args.json:
        d = report.to_dict()
        d["input"] = buf_from
        if args.plot is not None:
            d["plots"] = [p.path for p in figures]
        print(json.dumps(d, indent=2), file=out)
    else:
        if buf_from is not None:
            print(f"input: {buf_from}", file=out)
        print(report.table(), file=out)
    _print_plots(figures, err if args.json else out)
    return EXIT_FAIL if report.diverging() or report.incomparable else EXIT_OK


def _move_into(src, dest):
    """Move the finished dump folder's files into an existing empty folder."""
    for name in os.listdir(src):
        os.replace(os.path.join(src, name), os.path.join(dest, name))
    os.rmdir(src)


def _print_plots(figures, stream):
    """One line per figure written by --plot (on stderr under --json: stdout stays one JSON document)."""
    for p in figures:
        print(f"wrote {_printable(p.path)}: {_one_line(p.what)}", file=stream)


def _print_warnings(dev, err):
    """Device.warnings (a [faults] table explaining a contradiction, a fault that changes nothing), one per line."""
    for w in dev.warnings:
        print(f"n6emu: warning: {w}", file=err)


def cmd_diagnose(args, out, err=None):
    import time

    from emu import plots
    from emu.device import Device
    from emu.diagnose import Diagnoser, read_board, read_recordings, report_text

    err = sys.stderr if err is None else err
    if args.plot is not None:
        plots.require()
    t0 = time.monotonic()
    dev = Device(args.config)
    _print_warnings(dev, err)
    recordings = read_recordings(dev, args.audio, rate=args.rate)
    board_out = read_board(args.board_output, dev, "output")
    board_in = None if args.board_input is None else read_board(args.board_input, dev, "input")
    diagnoser = Diagnoser(dev, [pcm for _, pcm in recordings], pairs=not args.no_pairs)
    result = diagnoser.diagnose(board_out, board_in)
    figures = [] if args.plot is None else plots.diagnose_plots(result, args.plot, diagnoser, board_in,
                                                                top=12 if args.top is None else max(1, args.top))
    if args.json:
        entries = result.entries if args.top is None else result.entries[:args.top]
        print(json.dumps([e.to_json() for e in entries], indent=1), file=out)
        _print_plots(figures, err)
        return EXIT_OK
    print(report_text(result, dev, top=8 if args.top is None else args.top), file=out)
    print(f"({result.n_hypotheses} hypotheses in {time.monotonic() - t0:.1f} s)", file=out)
    _print_plots(figures, out)
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
    from emu.kernels.backends import AUTO, AUTO_C_MAX_ITEMS, BACKENDS
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
    s.add_argument("--backend", default=AUTO, choices=BACKENDS + (AUTO,),
                   help=f"kernel implementation (default auto: the C twins for up to {AUTO_C_MAX_ITEMS} inputs, Numba "
                        f"for more; the same values)")
    s.add_argument("--io-layout", default="original", choices=("original", "channel-last"),
                   help="ST Edge AI's I/O layout: an ONNX model's buffers in its own layout (original, NCHW) or "
                        "NHWC (channel-last); TFLite models are channel-last either way")
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
    s.add_argument("--backend", default=None, choices=BACKENDS + (AUTO,),
                   help=f"override [model].backend (auto: the C twins for up to {AUTO_C_MAX_ITEMS} patches, Numba "
                        f"for more; the same values)")
    s.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    s.add_argument("--json", action="store_true", help="print one JSON document instead of the result lines and "
                   "summary: windows, per-file samples/windows/leftover samples, counts, and the records (without "
                   "--out)")
    g = s.add_argument_group("datasets", "whole labelled clips: a report, a second configuration, Dask workers, "
                             "resumable output")
    g.add_argument("--labels", default=None, help="'folders' (word/clip.wav: the folder is the label) or a CSV of "
                   "file,label rows (paths relative to the CSV)")
    g.add_argument("--pad", action="store_true", help="zero-pad clips shorter than one window to one window, "
                   "centred (as if cut from a stream of digital silence)")
    g.add_argument("--report", default=None, metavar="DIR", help="accuracy, per-class precision/recall and the "
                   "confusion matrix (JSON, CSV, PNG; needs --labels and matplotlib)")
    g.add_argument("--compare-config", default=None, metavar="OTHER.toml", help="replay every clip on a second "
                   "device too and report it side by side, with the clips decided differently")
    g.add_argument("--compare", dest="compare_to", choices=("pc",), default=None, help="'pc': replay every clip "
                   "through the PC's pipeline too (float64 log-mel, the same int8 quantization, onnxruntime's "
                   "arithmetic) and report it side by side")
    g.add_argument("--workers", type=int, default=None, help="replay on a local Dask cluster of N processes "
                   "(the dask extra)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS", help="replay on an existing dask.distributed "
                   "cluster")
    g.add_argument("--resume", action="store_true", help="continue the interrupted --out file of the same command")
    s.set_defaults(func=cmd_replay)

    s = sub.add_parser("features", help="the device front end's int8 feature patches of a recording (and every stage)")
    s.add_argument("audio", help="one recording: WAV (16-bit PCM mono), raw int16 LE (.raw/.pcm, needs --rate) or "
                   ".npy int16")
    s.add_argument("--config", default=None, help="device TOML; its [frontend] table (default: the bundled device)")
    s.add_argument("--output", required=True, help="FEATS.npy: int8 [patches, mels (or MFCCs), frames]")
    s.add_argument("--stages", default=None, help="DIR: every stage of every patch as .npy (patch_00000/<stage>.npy)")
    s.add_argument("--rate", type=int, default=None, help="sample rate of raw/.npy inputs")
    s.add_argument("--json", action="store_true", help="print what was written as JSON (shape, scale, zero-point, "
                   "patches, leftover samples)")
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
    s.add_argument("--json", action="store_true", help="print the layers (or the --memory plan) as JSON")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("conformance", help="run CMSIS-NN test-data folders through the emulator's kernels")
    s.add_argument("dir", help="folder holding CMSIS-NN-format cases (config_data.h + array headers + output_ref_data.h)")
    s.add_argument("--backend", default="numba", choices=BACKENDS, help="kernel implementation (default numba)")
    s.add_argument("--rounding", default="double", choices=CMSIS_NN.roundings,
                   help="requantization rounding of conv/depthwise/FC/mul (the reference data is double)")
    s.add_argument("--json", action="store_true", help="print every case as JSON (name, op, status, mismatches, first "
                   "NHWC position) with the counts")
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
    s.add_argument("--plot", default=None, metavar="DIR", help="also write PNG figures into DIR (created if missing; "
                   "needs matplotlib: pip install \"n6emu[plot]\"): compare_logmel.png (A and B log-mel side by side "
                   "with A - B) and compare_layers.png (RMSE, MAE, max |LSB| per stage, first divergent in red)")
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
    s.add_argument("--plot", default=None, metavar="DIR", help="also write PNG figures into DIR (created if missing; "
                   "needs matplotlib: pip install \"n6emu[plot]\"): diagnose_ranking.png (the top 12 or --top "
                   "hypotheses' scores, ties hatched) and, with --board-input, diagnose_logmel.png (emulator vs "
                   "board input buffer and their difference)")
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


class _Terminated(KeyboardInterrupt):
    """SIGTERM raised as an exception, so that every `finally` removes its temporary files and folders."""


def _on_sigterm(signum, frame):
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)      # a second SIGTERM must not interrupt the clean-up
    raise _Terminated()


def _install_signals():
    """SIGINT -> KeyboardInterrupt, SIGTERM -> _Terminated while a command runs (main thread only); returns the
    previous handlers."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return {}
    old = {}
    for sig, handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, _on_sigterm)):
        try:
            old[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):
            pass
    return old


def main(argv=None, out=None, err=None):
    """Entry point of the `n6emu` console script; returns the exit status (also when called in-process)."""
    import signal
    import time
    t0 = time.monotonic()
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if argv is None:                        # the console script: this process is n6emu's alone
        from emu._install import skip_numba_blas_probe
        skip_numba_blas_probe()
    old_handlers = _install_signals()
    try:
        args = build_parser().parse_args(argv)
        args.t0 = t0
        args.command_process = argv is None
        if args.func in (cmd_replay, cmd_diagnose, cmd_compare, cmd_run, cmd_features, cmd_vectors,
                         cmd_conformance):
            return args.func(args, out, err)
        return args.func(args, out)
    except N6Error as exc:
        print(f"n6emu: error: {_one_line(exc)}", file=err)
        return EXIT_USAGE
    except _Terminated:
        print("n6emu: terminated (SIGTERM); temporary files removed, nothing written", file=err)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("n6emu: interrupted; temporary files removed", file=err)
        return 130
    except BrokenPipeError:   # e.g. `n6emu inspect M | head`: stop quietly, like other Unix tools
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAIL
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
