"""One hour of 16 kHz audio replayed with the bundled default device: wall time and peak memory.

    python benchmarks/bench_replay.py [--minutes 60] [--repeats 3]

Builds a WAV of `minutes` of audio (the bundled keyword clips at random places over a low noise floor),
then runs `n6emu replay BIG.wav --out results.jsonl` as a subprocess `repeats` times (after one warm-up run
that fills Numba's cache) and reports the median wall time and the peak resident memory of the replay
process (ru_maxrss). The peer, measured in the same run on the same audio: the PC's way of computing the
same thing, float64 log-mel (emu.frontend.float_ref) + onnxruntime on the QDQ model, in-process.
Target (issue 5): <= 60 s for one hour on a 2-core machine, peak memory < 500 MB.
Results go to benchmarks/results/replay.json.
"""
import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import wave

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RATE = 16000


def make_audio(path, minutes, seed=0):
    """Write `minutes` of int16 mono audio block by block (bounded memory): noise floor + keyword clips."""
    rng = np.random.default_rng(seed)
    clips = []
    for p in sorted(glob.glob(os.path.join(ROOT, "emu", "data", "clips", "*.wav"))):
        with wave.open(p) as w:
            clips.append(np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int32))
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        for _ in range(minutes):
            block = rng.normal(0, 20, 60 * RATE)
            for _ in range(20):
                c = clips[rng.integers(len(clips))]
                at = int(rng.integers(0, block.size - c.size))
                block[at:at + c.size] += c
            w.writeframes(np.clip(block, -32768, 32767).astype("<i2").tobytes())


def run_replay(wav, out, tree=None):
    """One `n6emu replay` subprocess; tree: another source tree to import emu from (PYTHONPATH), e.g. an export of
    the previous commit (`git archive HEAD | tar -x -C DIR`) to time the old code in the same run."""
    env = None
    if tree is not None:
        env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    r = subprocess.run([sys.executable, "-m", "emu.cli", "replay", wav, "--out", out], capture_output=True, text=True,
                       env=env, cwd=tempfile.gettempdir() if tree is not None else None)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"replay failed: {r.stderr.strip()}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, peak_kb, before, r.stdout.strip().splitlines()[-1]


def run_peer(wav):
    """float64 log-mel (the PC features) + onnxruntime on the bundled QDQ model, patch by patch, in-process."""
    import onnxruntime as ort

    from emu import audio
    from emu.config import load_config
    from emu.frontend.float_ref import FloatLogMel

    cfg = load_config()
    p = cfg.frontend
    sess = ort.InferenceSession(cfg.model_path(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    ref = FloatLogMel(p)
    info = audio.probe(wav)
    t0 = time.perf_counter()
    n = 0
    keep, new = p.win_length - p.hop_length, p.n_frames * p.hop_length
    for _, patch in audio.patches(audio.iter_blocks(info, 32 * new), keep, new):
        x = np.maximum(ref.patch(patch), np.log(np.finfo(np.float32).tiny)).astype(np.float32)
        sess.run(None, {name: x.reshape(1, 1, p.n_mels, p.n_frames)})
        n += 1
    return time.perf_counter() - t0, n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "replay.json"))
    ap.add_argument("--compare-tree", default=None, metavar="DIR",
                    help="also time `n6emu replay` with emu imported from DIR (e.g. the previous commit exported)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "long.wav")
        make_audio(wav, args.minutes)
        res = os.path.join(tmp, "r.jsonl")
        run_replay(wav, res)                       # warm-up: Numba cache, page cache
        other = []
        if args.compare_tree:
            run_replay(wav, os.path.join(tmp, "other.jsonl"), args.compare_tree)
        runs = []
        for _ in range(args.repeats):              # interleaved with the other tree's runs: the same load
            runs.append(run_replay(wav, res))
            if args.compare_tree:
                other.append(run_replay(wav, os.path.join(tmp, "other.jsonl"), args.compare_tree)[0])
        with open(res) as f:
            n_windows = sum(1 for _ in f)
        peer_s, peer_n = run_peer(wav)
    walls = [r[0] for r in runs]
    peak_mb = max(r[1] for r in runs) / 1024
    audio_s = args.minutes * 60
    med = statistics.median(walls)
    result = dict(benchmark="replay of recorded PCM with the bundled default device", audio_seconds=audio_s,
                  windows=n_windows, repeats=args.repeats, wall_seconds=walls, median_wall_seconds=med,
                  realtime_factor=audio_s / med, peak_rss_mb=peak_mb,
                  peer=dict(name="float64 log-mel + onnxruntime (QDQ model), in-process", seconds=peer_s,
                            windows=peer_n, ratio_peer_over_n6emu=peer_s / med),
                  target="<= 60 s per hour of audio, peak memory < 500 MB", machine=describe(),
                  load_average=os.getloadavg(), summary=runs[-1][3])
    if other:
        result["compare_tree"] = dict(tree=os.path.abspath(args.compare_tree), wall_seconds=other,
                                      median_wall_seconds=statistics.median(other))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"machine: {result['machine']['cpu']} ({result['machine']['cores']} cores), load {os.getloadavg()[0]:.1f}")
    print(f"n6emu replay: {audio_s / 60:.0f} min of audio, {n_windows} windows: median {med:.1f} s "
          f"({audio_s / med:.0f}x real time), peak RSS {peak_mb:.0f} MB  (runs: {', '.join(f'{w:.1f}' for w in walls)} s)")
    if other:
        print(f"{args.compare_tree}: median {statistics.median(other):.1f} s (runs: {', '.join(f'{w:.1f}' for w in other)} s)")
    print(f"peer (float64 log-mel + onnxruntime): {peer_s:.1f} s for {peer_n} windows ({peer_s / med:.2f}x n6emu's time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
