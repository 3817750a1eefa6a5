"""Benchmark: cmsis-q15 front end on one second of 16 kHz audio (one 49-frame patch) — n6emu (Numba and
C twin, whole patch per call) vs calling the cmsisdsp Python package frame by frame (the same primitives).

Usage: python benchmarks/bench_frontend_q15.py [--repeats 100] [--batch 64] [--baseline HEAD]
       [--out benchmarks/results/frontend_q15.json]
Reports the median wall time per second of audio over the repeats; the cases of one mode are timed in
interleaved rounds (one call of each per round) so load drift on the shared machine hits all of them alike;
describes the machine and records the load average (os.getloadavg, as `uptime`) at start and end.
Two n6emu Numba figures: one patch per call (compute_patch) and --batch patches per call (compute_patches, what
replay runs through FrontEnd.patches; time per call divided by the patch count), both on one thread.
--baseline REV also times emu/frontend/cmsis_q15.py as committed at git revision REV (imported from a temporary
copy: old vs new in the same run; "" to skip).
Both sides compute the same integers: the script checks equality before timing.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe, interleaved_median_times  # noqa: E402  (benchmarks/machine.py: the shared helpers)

from emu.frontend import cmsis_q15 as q15  # noqa: E402
from emu.frontend.params import FrontendParams  # noqa: E402


def machine():
    info = describe()
    info["loadavg_at_start"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    info["note"] = "shared machine (several engineers on 2 cores); single-threaded, median of repeats"
    return info


def baseline_module(rev):
    """emu/frontend/cmsis_q15.py at git revision rev, imported under another name (None when git has no such file)."""
    root = Path(__file__).resolve().parent.parent
    try:
        src = subprocess.run(["git", "show", f"{rev}:emu/frontend/cmsis_q15.py"], cwd=root, check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    folder = Path(tempfile.gettempdir()) / "n6emu_bench_q15_baseline"
    folder.mkdir(exist_ok=True)
    path = folder / "cmsis_q15_baseline.py"
    if not path.exists() or path.read_text() != src:     # rewrite only on change: Numba's cache stays valid
        path.write_text(src)
    spec = importlib.util.spec_from_file_location("cmsis_q15_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod                          # importable by name: Numba's cache reloads its globals
    spec.loader.exec_module(mod)
    return mod


def cmsisdsp_logmel(dsp, state, pcm):
    """Frame by frame with cmsisdsp: mult, rfft, cmplx_mag, 40 dot products, vlog_q31; int8 in numpy."""
    p = state.params
    inst = dsp.arm_rfft_instance_q15()
    dsp.arm_rfft_init_q15(inst, p.n_fft, 0, 1)
    runs = np.split(state.mel_coefs, np.cumsum(state.mel_len)[:-1])
    starts = state.mel_start.tolist()
    lens = state.mel_len.tolist()
    bias, shift = int(state.q15.mel_bias), int(state.q15.mel_shift)
    logs = np.empty((p.n_frames, p.n_mels), np.int32)
    buf = np.zeros(p.n_fft, np.int16)
    for t in range(p.n_frames):
        buf[state.pad_left:state.pad_left + p.win_length] = pcm[t * p.hop_length: t * p.hop_length + p.win_length]
        w = dsp.arm_mult_q15(buf, state.window)
        spec = dsp.arm_rfft_q15(inst, w)
        mag = dsp.arm_cmplx_mag_q15(spec[: p.n_fft + 2])
        mel = np.array([min((int(dsp.arm_dot_prod_q15(mag[s:s + n], r)) + bias) >> shift, 2**31 - 1)
                        for s, n, r in zip(starts, lens, runs)], np.int32)
        logs[t] = dsp.arm_vlog_q31(mel)
    return logs


def cmsisdsp_mfcc(dsp, state, pcm):
    """Frame by frame arm_mfcc_q15 (one call per frame)."""
    p = state.params
    inst = dsp.arm_mfcc_instance_q15()
    dsp.arm_mfcc_init_q15(inst, p.n_fft, p.n_mels, state.q15.n_mfcc, state.dct, state.mel_start, state.mel_len,
                          state.mel_coefs, state.window)
    tmp = np.zeros(2 * p.n_fft + 2, np.int32)
    out = np.empty((p.n_frames, state.q15.n_mfcc), np.int16)
    buf = np.zeros(p.n_fft, np.int16)
    for t in range(p.n_frames):
        buf[state.pad_left:state.pad_left + p.win_length] = pcm[t * p.hop_length: t * p.hop_length + p.win_length]
        out[t] = dsp.arm_mfcc_q15(inst, buf.copy(), tmp)[1]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64, help="patches per call of the batch entry (compute_patches)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "frontend_q15.json"))
    ap.add_argument("--baseline", default="HEAD", help="git revision of cmsis_q15.py to time as well ('' to skip)")
    args = ap.parse_args(argv)
    base_mod = baseline_module(args.baseline) if args.baseline else None
    import cmsisdsp as dsp
    import numba
    numba.set_num_threads(1)                              # per core: the batch entry runs on one thread too
    from emu.frontend import ctwin_q15

    rng = np.random.default_rng(0)
    results = {"machine": machine(), "loadavg_at_start": os.getloadavg(), "audio": "1 s of 16 kHz int16 PCM = one patch (49 frames x hop 320, "
               "win 640, n_fft 1024, 40 mels)", "threads": 1, "batch_patches": args.batch, "cases": {}}
    for mode in ("logmel", "mfcc"):
        extra = dict(fmin=20.0, fmax=4000.0, mel_scale="htk", mel_norm="none") if mode == "mfcc" else {}
        p = FrontendParams(profile="cmsis-q15", spectrum="magnitude", quant_scale=0.0305305, quant_zero_point=42,
                           q15={"mode": mode}, **extra)
        state = q15.prepare(p)
        t = np.arange(p.patch_length)
        pcm = np.clip(9000 * np.sin(2 * np.pi * 440 * t / 16000) + rng.normal(0, 500, t.size),
                      -32768, 32767).astype(np.int16)
        stages = q15.compute_stages(pcm, state)
        if mode == "logmel":
            ref = cmsisdsp_logmel(dsp, state, pcm)
            assert np.array_equal(ref + 0, stages["log"].T - state.log_offset), "cmsisdsp and n6emu disagree"
            base = lambda: cmsisdsp_logmel(dsp, state, pcm)  # noqa: E731
        else:
            assert np.array_equal(cmsisdsp_mfcc(dsp, state, pcm), stages["mfcc"].T), "cmsisdsp and n6emu disagree"
            base = lambda: cmsisdsp_mfcc(dsp, state, pcm)  # noqa: E731
        # the batch: args.batch different patches (the signal shifted, fresh noise; its own generator), one call
        brng = np.random.default_rng(1)
        batch = np.stack([np.clip(np.roll(pcm, 997 * k).astype(np.float64) + brng.normal(0, 300, pcm.size),
                                  -32768, 32767).astype(np.int16) for k in range(args.batch)])
        assert np.array_equal(q15.compute_patches(batch, state), np.stack([q15.compute_patch(x, state) for x in batch]))
        per_call = {f"n6emu_numba_batch{args.batch}": args.batch}
        fns = {"n6emu_numba": lambda: q15.compute_patch(pcm, state), "cmsisdsp_python_frame_by_frame": base,
               f"n6emu_numba_batch{args.batch}": lambda: q15.compute_patches(batch, state),
               # the frame-by-frame kernels (the dsp-ext path; compute_patch before the lane kernels), same run
               "n6emu_numba_per_frame_fft": lambda: q15._run_patch(q15._patch_pcm(state, pcm), state, lanes=False)}
        if base_mod is not None:
            base_state = base_mod.prepare(p)
            assert np.array_equal(base_mod.compute_patch(pcm, base_state), q15.compute_patch(pcm, state))
            fns[f"n6emu_numba_baseline_{args.baseline}"] = lambda: base_mod.compute_patch(pcm, base_state)
        if ctwin_q15.available():
            assert all(np.array_equal(v, ctwin_q15.compute_stages(pcm, state)[k]) for k, v in stages.items())
            fns["n6emu_c_twin"] = lambda: ctwin_q15.compute_patch(pcm, state)
        case = {name: {"median_s": t / per_call.get(name, 1), "repeats": args.repeats,
                       "patches_per_call": per_call.get(name, 1)}
                for name, t in interleaved_median_times(fns, args.repeats).items()}
        base_med = case["cmsisdsp_python_frame_by_frame"]["median_s"]
        for k, v in case.items():
            v["speedup_vs_cmsisdsp"] = base_med / v["median_s"]
            v["realtime_factor"] = 1.0 / v["median_s"]
        results["cases"][mode] = case
    results["loadavg_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    for mode, case in results["cases"].items():
        for k, v in case.items():
            print(f"{mode:7s} {k:40s} median {v['median_s'] * 1e3:8.3f} ms/s-audio  x{v['speedup_vs_cmsisdsp']:.1f}"
                  f"  {v['realtime_factor']:8.0f}x real time")
    print(f"load average at start {results['loadavg_at_start']}, at end {results['loadavg_at_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
