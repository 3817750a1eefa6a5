"""Speed of the ST column front end: one patch = one second of audio (49 frames, n_fft 1024, 40 mels).

    python benchmarks/bench_frontend_st.py [--repeats 31] [--number 5]

Engines: Numba (emu.frontend.st) and the C twin (emu.frontend.ctwin_st), profiles st-f16 and st-f32,
each for both device builds (isa "helium", the Cortex-M55's MVE CMSIS-DSP, and "scalar", the portable C),
plus a float64 numpy log-mel of the same patch for context. Outputs are checked equal (Numba == C) before
timing. Reported: median wall time per patch over `repeats` rounds of `number` patches after warm-up (single
thread), the real-time factor (1 s of audio / time) and the helium/scalar cost ratio measured in the same
run. st-f16 Helium is also timed as a batch of BATCH patches per call (st.features_batch, per patch, one thread)
and through the one-frame kernels compute_stages keeps ("numba-per-frame", the previous compute_patch path).
Targets: st-f16 Numba >= 1,000x real time on one core (issue 13); helium <= 1.5x the scalar build's time.
Results go to benchmarks/results/frontend_st.json.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe, interleaved_median_times  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH = 64          # patches per call of the batched engine


def _speech(n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = sum(np.sin(2 * np.pi * 140 * h * t + 6 * rng.random()) / h for h in range(1, 25))
    x *= 0.55 + 0.45 * np.sin(2 * np.pi * 3 * t)
    return np.clip(x / np.abs(x).max() * 8000 + rng.standard_normal(n) * 80, -32768, 32767).astype(np.int16)


def _float64_logmel(pcm, state):
    """numpy float64 log-mel of the same patch (context only: what a PC pipeline costs)."""
    p = state.params
    frames = np.lib.stride_tricks.sliding_window_view(pcm.astype(np.float64) / 32768, p.win_length)[::p.hop_length]
    pad = (p.n_fft - p.win_length) // 2
    buf = np.zeros((frames.shape[0], p.n_fft))
    buf[:, pad:pad + p.win_length] = frames * np.hanning(p.win_length + 1)[:-1]
    power = np.abs(np.fft.rfft(buf, axis=1)) ** 2
    return np.log(np.maximum(power @ state_dense_mel(state).T, 1e-30))


def state_dense_mel(state):
    from emu.frontend.tables import dense_mel
    return dense_mel(state.mel_start, state.mel_stop, state.mel_coefs, state.params.n_bins)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=31)
    ap.add_argument("--number", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "frontend_st.json"))
    args = ap.parse_args(argv)

    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    from emu.frontend import ctwin_st, st
    from emu.frontend.params import FrontendParams

    audio_seconds = 1.0
    engines = {}
    for profile, isa in (("st-f16", "helium"), ("st-f16", "scalar"), ("st-f32", "helium"), ("st-f32", "scalar")):
        params = FrontendParams(profile=profile, isa=isa, quant_scale=30 / 255, quant_zero_point=42)
        state = st.prepare(params)
        tag = f"{profile}-{isa}"
        pcm = _speech(params.patch_length)
        engines[f"{tag}/numba"] = lambda pcm=pcm, state=state: st.compute_patch(pcm, state)
        if st.fast_path(state):
            # the same build two more ways, timed in the same rounds: a batch of patches in one call (per patch,
            # still one thread: what replay runs per core) and the one-frame kernels that compute_stages keeps
            # (the path compute_patch took before the lane-batched kernels)
            batch = np.stack([_speech(params.patch_length, seed=s) for s in range(BATCH)])
            ref = np.stack([st.compute_stages(x, state)["features"] for x in batch])
            if not np.array_equal(st.features_batch(batch, state)[0], ref):
                raise SystemExit(f"features_batch and compute_stages disagree ({tag}); fix before benchmarking")
            engines[f"{tag}/numba-batch{BATCH}"] = lambda b=batch, state=state: st.features_batch(b, state)
            engines[f"{tag}/numba-per-frame"] = lambda pcm=pcm, state=state: st.compute_stages(pcm, state)["features"]
        if ctwin_st.available():
            engines[f"{tag}/c"] = lambda pcm=pcm, state=state: ctwin_st.compute_patch_c(pcm, state)
            a, b = st.compute_stages(pcm, state), ctwin_st.compute_stages_c(pcm, state)
            for k in a:
                if not np.array_equal(np.atleast_1d(a[k]).view(np.uint8), np.atleast_1d(b[k]).view(np.uint8)):
                    raise SystemExit(f"Numba and C twin disagree on stage {k} ({tag}); fix before benchmarking")
        if profile == "st-f32" and isa == "scalar":
            engines["st-f32-scalar/numpy-float64"] = lambda pcm=pcm, state=state: _float64_logmel(pcm, state)
    medians = interleaved_median_times(engines, args.repeats, args.number)
    results = {}
    for name, t in medians.items():
        if "-batch" in name:
            t /= BATCH                                         # one call = BATCH patches
        results[name] = dict(seconds_per_patch=t, realtime_factor=audio_seconds / t)
        tag, engine = name.split("/")
        print(f"{tag:14s} {engine:16s} {t * 1e3:8.3f} ms/patch  {audio_seconds / t:8.1f}x real time")

    target = results["st-f16-helium/numba"]["realtime_factor"]
    verdict = "meets" if target >= 1000 else "misses"
    print(f"st-f16 helium Numba, one patch per call: {target:.1f}x real time, {verdict} the 1,000x target (issue 13)")
    ratios = {}
    for profile in ("st-f16", "st-f32"):
        for engine in ("numba", "c"):
            h, sc = results.get(f"{profile}-helium/{engine}"), results.get(f"{profile}-scalar/{engine}")
            if h and sc:
                ratios[f"{profile}/{engine}"] = h["seconds_per_patch"] / sc["seconds_per_patch"]
                print(f"{profile} {engine}: helium / scalar = {ratios[f'{profile}/{engine}']:.2f}x (target <= 1.5x)")
    machine = describe()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['system']}")
    out = dict(benchmark="frontend_st", patch=dict(seconds=audio_seconds, n_frames=49, n_fft=1024, n_mels=40),
               repeats=args.repeats, number=args.number, results=results, target_realtime_factor=1000,
               target_met=bool(target >= 1000), batch_patches=BATCH, loadavg=os.getloadavg(), helium_over_scalar=ratios, target_helium_over_scalar=1.5,
               helium_target_met=bool(ratios and ratios["st-f16/numba"] <= 1.5), machine=machine)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=2)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
