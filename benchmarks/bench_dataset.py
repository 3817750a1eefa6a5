"""Dataset replay: throughput of one process against Dask with 1 and 2 workers, and the scheduler's cost per file.

    python benchmarks/bench_dataset.py [--files 504] [--repeats 3] [--out benchmarks/results/dataset.json]

A dataset of `files` one-second clips (made from the bundled clips as tests/test_dataset.py makes them, every 7th
shorter than a window, replayed with pad) goes through emu.dataset.iter_results: in this process (the peer), and
on a LocalCluster of 1 and of 2 worker processes started once before timing (workers warm: Device built,
Numba caches loaded; cluster start-up is reported separately). Median of `repeats` runs each, interleaved.
Scheduler overhead per file = (1-worker time - in-process time) / files.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from machine import describe  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=504)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "dataset.json"))
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    from emu import dataset as D
    from emu.device import Device
    from test_dataset import make_dataset

    root = make_dataset(tempfile.mkdtemp(prefix="n6emu-bench-ds-"), args.files, seed=2)
    dev = Device()
    clips = D.list_clips([root], labels="folders")
    runs = {"in_process": lambda: list(D.iter_results(dev, clips, pad=True))}
    startup, clusters = {}, []
    for n in (1, 2):
        t0 = time.perf_counter()
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        list(D.iter_results(dev, clips[:2 * n], pad=True, scheduler=client))   # warm workers
        startup[n] = time.perf_counter() - t0
        clusters.append((cluster, client))
        runs[f"workers_{n}"] = (lambda c=client: list(D.iter_results(dev, clips, pad=True, scheduler=c)))
    times = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    for cluster, client in clusters:
        client.close()
        cluster.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:>11}: {v:6.2f} s for {len(clips)} files ({len(clips) / v:7.1f} files/s)")
    overhead = (med["workers_1"] - med["in_process"]) / len(clips)
    print(f"scheduler overhead per file (1 worker - in process): {overhead * 1e3:.2f} ms; cluster start-up + warm "
          f"workers: 1 worker {startup[1]:.1f} s, 2 workers {startup[2]:.1f} s; speed-up of 2 workers over in-process "
          f"{med['in_process'] / med['workers_2']:.2f}x")
    result = dict(machine=describe(), files=len(clips), repeats=args.repeats, median_s=med, runs_s=times,
                  overhead_per_file_s=overhead, startup_s=startup)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
