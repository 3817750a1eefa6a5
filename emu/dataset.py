"""Dataset replay: many labelled clips through the device chain, in input order, on one process or a Dask cluster.

    clips = list_clips(["data/speech_commands"], labels="folders")     # word/clip.wav -> label "word"
    for res in iter_results(Device(), clips, pad=True, workers=2):     # FileResult per clip, in input order
        report.add(res)

Labels: "folders" (the Speech Commands layout: a clip's label is the name of its folder below the dataset
folder), a CSV file of `file,label` rows (paths relative to the CSV's folder; a header row `file,label` is
allowed), or None (no labels: records only).

Padding (`pad=True`): a clip shorter than the `new_samples` one window needs is zero-padded to exactly that many
samples, centred (floor((new - n) / 2) zeros before it, the rest after), as if it were cut from a continuous stream
of digital silence; longer clips are never padded or cut. Without padding such a clip yields no window; every file
without a window is counted and named in the summary (FileResult.windows == 0), and the samples after a file's
last window (`leftover`: they fill no window) are reported per file.

Clip decision (the report): the label of the file's window with the highest probability among the windows the
silence gate passed (the device's own label: a class, or [app].unknown_label when below the threshold);
"(silence gate)" when every window was gated; "(no window)" when the file made none.

Parallel replay (`workers=N`: a dask.distributed LocalCluster of N single-threaded processes; `scheduler=ADDRESS`:
an existing cluster): each worker process builds the Device from its DeviceConfig once and
keeps it; files go in chunks (one task each), at most `in_flight` chunks are pending, and results are yielded in
input order, so memory stays bounded and the records equal a single process's byte for byte. Tasks are pure
functions of (config, files, options): a worker lost mid-run makes Dask run its tasks again elsewhere, and each
index is yielded exactly once.

Resumable output (ResumableOutput): records go to OUT.partial with a state file OUT.partial.json updated (fsync)
after every whole file; an interrupted run leaves both, and resume=True truncates the partial output to the last
whole file and continues, giving the same final file as an uninterrupted run.
"""
import csv
import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np

from emu import audio
from emu.errors import N6Error

NO_WINDOW = "(no window)"
GATED = "(silence gate)"


@dataclass(frozen=True)
class Clip:
    path: str
    label: str = None


@dataclass
class FileResult:
    """One clip replayed: its records (Device.replay_pcm's dicts, one per window) and, when a second device is
    compared, that device's records of the same windows."""
    index: int
    path: str
    label: str
    n_samples: int
    padded: int                  # zeros added by pad (0: not padded)
    leftover: int                # samples after the last window, in no window
    records: list
    other: list = None

    @property
    def windows(self):
        return len(self.records)

    @property
    def predicted(self):
        return clip_decision(self.records)

    @property
    def other_predicted(self):
        return None if self.other is None else clip_decision(self.other)

    def summary(self):
        """The per-file line of the dataset summary (JSON-ready)."""
        d = dict(file=self.path, label=self.label, samples=self.n_samples, windows=self.windows,
                 padded=self.padded, leftover=self.leftover, predicted=self.predicted)
        if self.other is not None:
            d["other_predicted"] = self.other_predicted
        return d


def clip_decision(records):
    """The clip's label (see module doc): best non-gated window's label, GATED, or NO_WINDOW."""
    if not records:
        return NO_WINDOW
    passed = [r for r in records if not r["gated"]]
    if not passed:
        return GATED
    best = max(range(len(passed)), key=lambda i: (passed[i]["score"], -i))     # the first of equal scores
    return passed[best]["label"]


# ---- clips and labels ------------------------------------------------------------------------------------------

def list_clips(inputs, labels=None):
    """The dataset's clips in a fixed order (sorted paths per input, inputs in the order given), with labels."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [os.fspath(i) for i in inputs]
    if labels is None:
        return [Clip(p) for p in audio.find_audio(inputs)]
    if labels == "folders":
        clips = []
        for root in inputs:
            if not os.path.isdir(root):
                raise N6Error(f"--labels folders: {root} is not a folder; give the dataset folder (word/clip.wav)")
            for p in audio.find_audio([root]):
                rel = os.path.relpath(p, root)
                parts = rel.split(os.sep)
                if len(parts) < 2:
                    raise N6Error(f"--labels folders: {p} lies directly in {root}; put each clip in a folder named "
                                  f"after its label (word/clip.wav)")
                clips.append(Clip(p, parts[-2]))
        return clips
    return _clips_from_csv(labels, inputs)


def _clips_from_csv(path, inputs):
    """Clips of a `file,label` CSV (paths relative to the CSV's folder), restricted to the inputs given when they
    are not just the CSV's folder."""
    if not os.path.isfile(path):
        raise N6Error(f"--labels {path}: no such file; give \"folders\" or a CSV of file,label rows")
    base = os.path.dirname(os.path.abspath(path))
    clips = []
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or (n == 1 and [c.strip().lower() for c in row[:2]] == ["file", "label"]):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise N6Error(f"--labels {path}: line {n} is not `file,label`; write one clip per line")
            p = row[0].strip()
            p = p if os.path.isabs(p) else os.path.join(base, p)
            if not os.path.isfile(p):
                raise N6Error(f"--labels {path}: line {n} names {row[0].strip()!r}, which does not exist (paths are "
                              f"relative to the CSV's folder)")
            clips.append(Clip(os.path.normpath(p), row[1].strip()))
    if not clips:
        raise N6Error(f"--labels {path}: no clip listed; write one `file,label` row per clip")
    wanted = {os.path.normpath(os.path.abspath(p)) for p in audio.find_audio(inputs)} if inputs else None
    if wanted is not None:
        clips = [c for c in clips if os.path.abspath(c.path) in wanted]
        if not clips:
            raise N6Error(f"--labels {path}: none of its clips is among the inputs given")
    return clips


# ---- one file --------------------------------------------------------------------------------------------------

def replay_file(device, clip, index=0, rate=None, pad=False, other=None):
    """FileResult of one clip on `device` (and `other`, a second Device, on the same samples)."""
    p = device.frontend.params
    info = audio.probe(clip.path, raw_rate=rate)
    audio.check_rate(info, p.sample_rate)
    pcm = audio.read_all(info)
    padded = 0
    if pad and pcm.size < p.new_samples:
        padded = p.new_samples - pcm.size
        before = padded // 2
        pcm = np.concatenate([np.zeros(before, np.int16), pcm, np.zeros(padded - before, np.int16)])
    records = list(device.replay_pcm([pcm], name=clip.path))
    others = None if other is None else list(other.replay_pcm([pcm], name=clip.path))
    leftover = int(pcm.size - len(records) * p.new_samples)
    return FileResult(index=index, path=clip.path, label=clip.label, n_samples=int(info.n_samples), padded=padded,
                      leftover=leftover, records=records, other=others)


# ---- many files, in order --------------------------------------------------------------------------------------

def iter_results(device, clips, rate=None, pad=False, other=None, workers=None, scheduler=None, start=0,
                 in_flight=None, chunk=None, progress=None):
    """FileResult of clips[start:], in input order. workers / scheduler: run on Dask (module doc), `chunk` files
    per task (default: up to 32, so that every worker gets at least 8 tasks) and at most `in_flight` tasks
    pending (default 2 per worker)."""
    total = len(clips)
    if workers is None and scheduler is None:
        for i in range(start, total):
            yield replay_file(device, clips[i], i, rate, pad, other)
            if progress is not None:
                progress(i + 1, total)
        return
    yield from _iter_dask(device, clips, rate, pad, other, workers, scheduler, start, in_flight, chunk, progress)


def dask_client(workers=None, scheduler=None):
    """A dask.distributed Client: a LocalCluster of `workers` single-threaded processes, or the scheduler at
    `scheduler` (an address, or a Client of the caller's, used as it is). One-line N6Error when Dask is not
    installed or the scheduler is unreachable."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise N6Error("--workers/--scheduler need Dask: pip install \"n6emu[dask]\"") from None
    if isinstance(scheduler, Client):
        return scheduler
    if scheduler is not None:
        try:
            return Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:     # unreachable, or not an address (ValueError)
            raise N6Error(f"--scheduler {scheduler}: cannot connect ({exc.__class__.__name__}); start one with "
                          f"`dask scheduler` or use --workers N") from None
    if not isinstance(workers, int) or workers < 1:
        raise N6Error(f"--workers {workers}: give a number of worker processes >= 1")
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster)


def _iter_dask(device, clips, rate, pad, other, workers, scheduler, start, in_flight, chunk, progress):
    client = dask_client(workers, scheduler)
    try:
        from distributed import as_completed
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or (workers or 1))
        total = len(clips)
        size = chunk or max(1, min(32, (total - start) // (8 * n_workers)))
        limit = in_flight or 2 * n_workers          # chunks pending at once
        cfg = device.config
        other_cfg = None if other is None else other.config
        key_base = _fingerprint(cfg, other_cfg, rate, pad)[:16]
        pending = as_completed()
        results = {}
        next_submit = nxt = start

        def submit():
            nonlocal next_submit
            stop = min(total, next_submit + size)
            part = [(i, clips[i]) for i in range(next_submit, stop)]
            pending.add(client.submit(_remote_replay, cfg, other_cfg, part, rate, pad,
                                      key=f"n6emu-{key_base}-{next_submit}-{stop}", retries=3, pure=False))
            next_submit = stop

        while next_submit < total and len(pending.futures) < limit:
            submit()
        while nxt < total:
            fut = next(pending)
            for res in fut.result():
                results[res.index] = res
            fut.release()
            while nxt in results:
                yield results.pop(nxt)
                nxt += 1
                if progress is not None:
                    progress(nxt, total)
            while next_submit < total and len(pending.futures) < limit:
                submit()
    finally:
        if client is not scheduler:            # a Client the caller gave stays open
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None and scheduler is None:
                cluster.close()


_WORKER_DEVICES = {}      # per worker process: DeviceConfig fingerprint -> Device (built once)


def _remote_replay(cfg, other_cfg, part, rate, pad):
    """The task a Dask worker runs for a chunk of files [(index, Clip)] (pure: the same arguments give the same
    FileResults)."""
    from emu.device import Device
    key = _fingerprint(cfg, other_cfg)
    devs = _WORKER_DEVICES.get(key)
    if devs is None:
        import numba
        numba.set_num_threads(1)       # one worker = one core: the parallelism is across workers, not inside
        dev = Device(cfg)
        devs = _WORKER_DEVICES[key] = (dev, None if other_cfg is None else Device(other_cfg, _shared=dev._shared))
    return [replay_file(devs[0], clip, i, rate, pad, devs[1]) for i, clip in part]


def _fingerprint(*parts):
    """SHA-256 of the JSON of configs (their to_dict) and options: what makes two runs' records the same."""
    def norm(p):
        return p.to_dict() if hasattr(p, "to_dict") else p
    text = json.dumps([norm(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# ---- the report ------------------------------------------------------------------------------------------------

@dataclass
class Report:
    """Accuracy, per-class precision/recall and the confusion matrix of clip decisions against labels."""
    pairs: list = field(default_factory=list)       # (truth, predicted) per labelled file

    def add(self, truth, predicted):
        if truth is not None:
            self.pairs.append((truth, predicted))

    @property
    def labels(self):
        """Rows/columns of the confusion matrix: the true labels (sorted), then predicted-only labels (sorted)."""
        truths = sorted({t for t, _ in self.pairs})
        return truths + sorted({p for _, p in self.pairs} - set(truths))

    def confusion(self):
        labels = self.labels
        at = {l: i for i, l in enumerate(labels)}
        m = np.zeros((len(labels), len(labels)), np.int64)
        for t, p in self.pairs:
            m[at[t], at[p]] += 1
        return labels, m

    def to_dict(self):
        labels, m = self.confusion()
        n = int(m.sum())
        per_class = {}
        for i, l in enumerate(labels):
            tp, col, row = int(m[i, i]), int(m[:, i].sum()), int(m[i].sum())
            per_class[l] = dict(support=row, predicted=col, precision=(tp / col) if col else None,
                                recall=(tp / row) if row else None)
        return dict(files=n, correct=int(np.trace(m)), accuracy=(float(np.trace(m)) / n) if n else None,
                    labels=labels, confusion=m.tolist(), per_class=per_class)


def write_report(folder, report, other=None, summaries=None, names=("device", "compared")):
    """The report's files in `folder`: report.json (both reports, the clips decided differently), for each side
    <name>_confusion.csv (rows: truth, columns: predicted) and <name>_per_class.csv, differing.csv (with a
    compared device), and confusion.png (emu.plots.confusion_matrices: both sides next to each other)."""
    from emu import plots
    from emu.outputs import write_text
    sides = [(names[0], report.to_dict())] + ([] if other is None else [(names[1], other.to_dict())])
    differing = [] if other is None or summaries is None else [
        dict(file=s["file"], label=s["label"], **{names[0]: s["predicted"], names[1]: s["other_predicted"]})
        for s in summaries if s["predicted"] != s["other_predicted"]]
    doc = {name: d for name, d in sides}
    if other is not None:
        doc["differing"] = differing
    write_text(os.path.join(folder, "report.json"), json.dumps(doc, indent=1) + "\n")
    for name, d in sides:
        write_text(os.path.join(folder, f"{name}_confusion.csv"), _csv_text(
            [["truth \\ predicted"] + d["labels"]] + [[l] + row for l, row in zip(d["labels"], d["confusion"])]))
        write_text(os.path.join(folder, f"{name}_per_class.csv"), _csv_text(
            [["label", "support", "predicted", "precision", "recall"]] +
            [[l, c["support"], c["predicted"], "" if c["precision"] is None else f"{c['precision']:.6f}",
              "" if c["recall"] is None else f"{c['recall']:.6f}"] for l, c in d["per_class"].items()]))
    if other is not None:
        write_text(os.path.join(folder, "differing.csv"), _csv_text(
            [["file", "label", names[0], names[1]]] + [[r["file"], r["label"], r[names[0]], r[names[1]]]
                                                       for r in differing]))
    return plots.confusion_matrices(sides, folder)


def _csv_text(rows):
    import io
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def report_of(results, other=False):
    """Report of FileResults (other=True: the compared device's decisions)."""
    rep = Report()
    for r in results:
        rep.add(r.label, r.other_predicted if other else r.predicted)
    return rep


# ---- resumable output ------------------------------------------------------------------------------------------

class ResumableOutput:
    """Records of whole files appended to OUT.partial; OUT.partial.json (fsynced after every file) holds the files
    done, the byte offset of their end and the run's fingerprint; per-file summaries go to OUT.partial.files
    (JSON lines) the same way. finish() moves OUT.partial to OUT (the settings and summaries are the caller's)."""

    def __init__(self, path, fingerprint, header="", resume=False):
        self.path = path
        self.partial = path + ".partial"
        self.state_path = self.partial + ".json"
        self.files_path = self.partial + ".files"
        self.fingerprint = fingerprint
        self.summaries = []
        if resume:
            if not os.path.isfile(self.state_path) or not os.path.isfile(self.partial):
                raise N6Error(f"--resume: no interrupted run of {path} ({self.partial} is missing); run without "
                              f"--resume")
            with open(self.state_path, encoding="utf-8") as f:
                state = json.load(f)
            if state.get("fingerprint") != fingerprint:
                raise N6Error(f"--resume: {self.partial} was written with other settings or inputs; delete "
                              f"{self.partial}* or rerun with the same command")
            self.files_done = int(state["files"])
            self._out = open(self.partial, "r+b")
            self._out.truncate(int(state["bytes"]))
            self._out.seek(0, os.SEEK_END)
            self._files = open(self.files_path, "r+b")
            self._files.truncate(int(state["files_bytes"]))
            self._files.seek(0)
            self.summaries = [json.loads(line) for line in self._files.read().decode("utf-8").splitlines()]
            self._files.seek(0, os.SEEK_END)
        else:
            if os.path.exists(self.partial):
                raise N6Error(f"{self.partial} exists: an interrupted run; continue it with --resume or delete "
                              f"{self.partial}*")
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
            self.files_done = 0
            self._out = open(self.partial, "wb")
            self._files = open(self.files_path, "wb")
            if header:
                self._out.write(header.encode("utf-8"))
            self._save_state()

    def write_file(self, lines, summary):
        """Append one whole file's record lines and its summary, then record them as done (fsync)."""
        self._out.write("".join(lines).encode("utf-8"))
        self._files.write((json.dumps(summary) + "\n").encode("utf-8"))
        self.summaries.append(summary)
        self.files_done += 1
        self._save_state()

    def _save_state(self):
        for f in (self._out, self._files):
            f.flush()
            os.fsync(f.fileno())
        state = dict(fingerprint=self.fingerprint, files=self.files_done, bytes=self._out.tell(),
                     files_bytes=self._files.tell())
        tmp = self.state_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def close(self):
        self._out.close()
        self._files.close()

    def finish(self):
        """Move the complete output into place and remove the partial state."""
        self.close()
        os.replace(self.partial, self.path)
        for p in (self.state_path, self.files_path):
            if os.path.exists(p):
                os.remove(p)
