"""Single-inference latency of the MLPerf Tiny DS-CNN: Numba kernels, C twins and tflite-micro, one run.

    python benchmarks/bench_engine.py [--model ../shared/models/kws_ref_model.tflite] [--repeats 31]

Each engine runs the same random int8 input; outputs are checked equal before timing. Reported: median
per-inference wall time over `repeats` rounds of `number` inferences (after warm-up; the engines take turns
round by round, so a change in machine load affects all of them alike), ratios against tflite-micro measured
in the same run, the Numba engine's median time per layer (its plan's bound steps), the load average before
and after, and the machine. Results go to benchmarks/results/engine.json.
Target (issue 2): Numba at least 10x faster than tflite-micro.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe, interleaved_median_times, median_time  # noqa: E402


HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(HERE, "..", "..", "shared", "models", "kws_ref_model.tflite")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--repeats", type=int, default=31)
    ap.add_argument("--number", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "engine.json"))
    args = ap.parse_args(argv)

    from emu.graph.runtime import Runtime
    from emu.models import load_model
    from emu.reference import TflmReference

    graph = load_model(args.model)
    shape = graph.tensors[graph.inputs[0]].shape
    x = np.random.default_rng(0).integers(-128, 128, shape).astype(np.int8)
    engines = {"numba": Runtime(graph, backend="numba"), "c": Runtime(graph, backend="c")}
    tflm = TflmReference(args.model)
    want = tflm.run(x)
    for name, rt in engines.items():
        got = rt.run(x)
        assert np.array_equal(got.reshape(want.shape), want), f"{name} disagrees with tflite-micro"

    load_before = os.getloadavg()
    fns = {"tflite-micro": lambda: tflm.run(x)}
    fns.update({name: (lambda rt=rt: rt.run(x)) for name, rt in engines.items()})
    timings = interleaved_median_times(fns, args.repeats, args.number)
    # per layer: the Numba plan's bound steps (the plan of the run above; buffers hold that inference)
    _, steps = engines["numba"]._plan(1)
    layers = [dict(op=node.op, seconds=median_time(step, args.repeats, args.number))
              for node, step in zip(graph.nodes, steps)]
    load_after = os.getloadavg()
    ref = timings["tflite-micro"]
    speedup = {k: ref / v for k, v in timings.items()}
    result = dict(benchmark="mlperf-tiny ds-cnn single inference", model=os.path.basename(args.model),
                  repeats=args.repeats, number=args.number, machine=describe(),
                  load_average_1_5_15=dict(before=load_before, after=load_after),
                  median_seconds=timings, speedup_vs_tflite_micro=speedup,
                  numba_layer_median_seconds=layers,
                  target="numba >= 10x faster than tflite-micro", target_met=speedup["numba"] >= 10.0)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"machine: {result['machine']['cpu']} ({result['machine']['cores']} cores), python {result['machine']['python']}")
    print(f"load average before {load_before}, after {load_after}")
    for name, t in timings.items():
        print(f"{name:>13}: {t * 1e6:9.1f} us/inference   {ref / t:6.2f}x vs tflite-micro")
    print("numba per layer: " + ", ".join(f"{d['op']} {d['seconds'] * 1e6:.1f}" for d in layers) + " us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
