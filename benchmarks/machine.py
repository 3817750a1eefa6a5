"""Machine description recorded with every benchmark result, and the shared timing helper."""
import os
import platform
import statistics
import time


def describe():
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for mod in ("numpy", "numba", "onnxruntime", "cmsisdsp"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # optional peers may be absent or lack __version__
            versions[mod] = None
    return dict(cpu=cpu, cores=os.cpu_count(), machine=platform.machine(), system=platform.platform(),
                python=platform.python_version(), versions=versions)


def median_time(fn, repeats, number=1, warmup=3):
    """Median over `repeats` of the per-call wall time of `number` consecutive calls of fn(), after warm-up."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times)


def interleaved_median_times(fns, repeats, number=1, warmup=3):
    """{name: median per-call time} for a dict of callables timed round by round (each round runs every
    callable `number` times), so load drift on a shared machine hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            times[name].append((time.perf_counter() - t0) / number)
    return {name: statistics.median(t) for name, t in times.items()}
