"""The chain seam and diagnosis: Device.with_ against a fresh Device, and `n6emu diagnose` on three clips.

    python benchmarks/bench_chain.py [--repeats 5] [--out benchmarks/results/chain.json]

1. Device().with_(**{"model.profile": "onnxruntime"}) against a fresh Device of that config (the peer: what the
   CLI did before with_, building the Device again), interleaved in one process, warm (imports and Numba caches
   loaded); median of `repeats`. Target (issue 9): with_ under 10% of a fresh Device.
2. `n6emu diagnose` of a board that writes its features frame-major into the mel-major input (three bundled
   clips, the whole catalogue and its pairs) as a subprocess, median wall time of `repeats` runs after one warm-up.
   Target (issue 10): under 30 s.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe, interleaved_median_times  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CLIPS = [os.path.join(HERE, "..", "emu", "data", "clips", n) for n in ("yes.wav", "go.wav", "left.wav")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "chain.json"))
    args = ap.parse_args()
    from emu.device import Device
    from emu.faults import FAULTS  # noqa: F401  (import cost outside the timings)

    base = Device()
    cfg = base.config.replace("model", profile="onnxruntime")
    times = interleaved_median_times({"fresh_device": lambda: Device(cfg),
                                      "with_profile": lambda: base.with_(**{"model.profile": "onnxruntime"})},
                                     args.repeats)
    ratio = times["with_profile"] / times["fresh_device"]
    print(f"fresh Device {times['fresh_device'] * 1e3:.1f} ms, with_ {times['with_profile'] * 1e3:.2f} ms "
          f"({100 * ratio:.1f}% of fresh; target < 10%)")

    board = base.with_(faults={"input-transposed": {}})
    outs = [board.replay_pcm([_pcm(c)]).__next__()["output"] for c in CLIPS]
    with tempfile.TemporaryDirectory() as d:
        uart = os.path.join(d, "uart.txt")
        with open(uart, "w") as f:
            f.writelines("[" + ", ".join(str(int(v)) for v in o) + "]\n" for o in outs)
        cmd = [sys.executable, "-m", "emu.cli", "diagnose", "--audio", *CLIPS, "--board-output", uart]
        walls, last = [], None
        for k in range(args.repeats + 1):
            t0 = time.perf_counter()
            last = subprocess.run(cmd, capture_output=True, text=True, check=True)
            if k:
                walls.append(time.perf_counter() - t0)
    diag = statistics.median(walls)
    best = next(line for line in last.stdout.splitlines() if line.startswith("Best explanation"))
    print(f"n6emu diagnose, 3 clips x the catalogue: {diag:.1f} s median of {len(walls)} (target < 30 s); {best}")
    result = dict(machine=describe(), repeats=args.repeats, fresh_device_s=times["fresh_device"],
                  with_profile_s=times["with_profile"], with_ratio=ratio, diagnose_s=diag, diagnose_runs_s=walls,
                  diagnose_best=best)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


def _pcm(path):
    import numpy as np
    from emu import audio
    return np.concatenate(list(audio.iter_blocks(audio.probe(path), 1 << 16)))


if __name__ == "__main__":
    main()
