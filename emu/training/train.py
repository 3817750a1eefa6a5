"""The reproducible pipeline: synthesize -> float64 reference features -> train DS-CNN (CPU, 1 thread)
-> export ONNX (BN folded, Softmax) -> quantize_static QDQ -> held-out accuracy -> artifacts.

Artifacts (out_dir, default emu/data/kws): model_float.onnx, model_qdq.onnx, frontend.toml, labels.txt,
accuracy.json; held-out example clips in clips_dir (default emu/data/clips). Every random choice is
seeded (SynthConfig.seed for data, TrainConfig.seed for torch).
"""
from __future__ import annotations

import json
import time
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from emu.errors import N6Error
from emu.training import synth
from emu.training.features import BUNDLED_FRONTEND, device_features, float_features
from emu.training.quantize import export_onnx, quantize_qdq, run_onnx

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 7
    channels: int = 64
    epochs: int = 16
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    gain_jitter: float = 1.0        # uniform +-ln-units added to a whole example (= +-4.3 dB power)
    calibration_count: int = 400    # training examples used for quantize_static calibration
    example_speaker: str = "en-029+m3"   # held-out speaker whose clips are bundled


def train_model(x, y, n_classes, cfg: TrainConfig, log):
    """Train DSCNN on float32 [N,1,M,F] features / int64 labels; returns the eval-mode model."""
    import torch
    from torch import nn
    from emu.training.model import DSCNN, count_parameters
    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = DSCNN(n_classes, channels=cfg.channels)
    log(f"DS-CNN channels={cfg.channels}: {count_parameters(model)} parameters, {len(x)} training examples")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * ((len(x) + cfg.batch - 1) // cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        t0, total, correct = time.time(), 0.0, 0
        for i in range(0, len(x), cfg.batch):
            idx = perm[i:i + cfg.batch]
            xb = xt[idx] + (torch.rand(len(idx), 1, 1, 1, generator=gen) * 2 - 1) * cfg.gain_jitter
            logits = model(xb)
            loss = loss_fn(logits, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yt[idx]).sum())
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {total / len(x):.4f} train acc {correct / len(x):.4f} "
            f"({time.time() - t0:.0f} s)")
    return model.eval()


def confusion(labels, pred, n):
    """[n, n] counts, rows = true label, columns = predicted."""
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (labels, pred), 1)
    return m


def write_wav(path: Path, pcm: np.ndarray, rate: int):
    """16-bit PCM mono WAV."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def _summary(name, labels, probs, n):
    pred = probs.argmax(1)
    return {f"{name}_accuracy": float((pred == labels).mean()),
            f"{name}_confusion": confusion(labels, pred, n).tolist()}, pred


def choose_input_quantization(float_feats):
    """Model input grid from the training features: scale = float32((max - min) / 255), zero_point so
    that min maps to -128 (clamped to int8). Fixed before training so the device features can be used."""
    lo, hi = float(np.min(float_feats)), float(np.max(float_feats))
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = float(np.float32((hi - lo) / 255.0))
    zp = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return scale, zp


def dequantize(q, scale, zp):
    """int8 features -> float32 (q - zp) * scale (what the QDQ model's input QuantizeLinear maps back to q)."""
    return (q.astype(np.float32) - np.float32(zp)) * np.float32(scale)


def _cached(path: Path, make):
    if path.is_file():
        return np.load(path)
    arr = make()
    np.save(path, arr)
    return arr


def run_pipeline(cache_dir: Path, out_dir: Path, clips_dir: Path, synth_cfg=synth.SynthConfig(),
                 cfg: TrainConfig = TrainConfig(), train_on="st-f16", log=lambda s: None):
    """The whole pipeline; returns the accuracy report dict (also written to out_dir/accuracy.json).

    train_on: "st-f16" trains on the emulator's device int8 features dequantized with the chosen input
    grid (the bundled default, holes included); "float" on the float64 reference (PC) features."""
    import onnxruntime
    import torch
    from emu.frontend.params import to_toml
    from emu.training.model import count_parameters, deploy_model
    if train_on not in ("st-f16", "float"):
        raise N6Error(f"train_on = {train_on!r} is not supported; use 'st-f16' or 'float'")
    t_start = time.time()
    cache_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    clips_dir.mkdir(parents=True, exist_ok=True)
    n_classes = len(synth.LABELS)
    data = {}
    for split in ("train", "test"):
        pcm, labels, spk, words = synth.load_or_synthesize(cache_dir, split, synth_cfg, log=log)
        feats = _cached(cache_dir / f"{split}_float_{synth_cfg.seed}.npy",
                        lambda: float_features(pcm, BUNDLED_FRONTEND))
        data[split] = {"pcm": pcm, "labels": labels, "speakers": spk, "words": words, "pc": feats}
        log(f"{split}: {len(pcm)} clips, {len(set(spk.tolist())) - 1} speakers, float features "
            f"[{feats.min():.2f}, {feats.max():.2f}]")
    scale, zp = choose_input_quantization(data["train"]["pc"])
    device_params = BUNDLED_FRONTEND.replace(quant_scale=scale, quant_zero_point=zp)
    log(f"input quantization: scale {scale!r} zero_point {zp}")
    for split in ("train", "test"):
        t0 = time.time()
        d = data[split]
        build = device_params.build.replace(" ", "_")
        d["device_int8"] = _cached(cache_dir / f"{split}_{build}_{synth_cfg.seed}_{scale!r}_{zp}.npy",
                                   lambda: device_features(d["pcm"], device_params))
        d["device"] = dequantize(d["device_int8"], scale, zp)
        holes = float(np.mean(d["device_int8"] == 0) - np.mean(_pc_int8(d["pc"], scale, zp) == 0))
        log(f"{split}: {device_params.build} int8 features ({time.time() - t0:.0f} s), excess zeros (f16 holes) "
            f"{holes:.4f}")
    previous = _previous_model_report(out_dir, data["test"], n_classes, device_params, log)
    x_train, y_train = data["train"]["device" if train_on == "st-f16" else "pc"], data["train"]["labels"]
    model = train_model(x_train, y_train, n_classes, cfg, log)
    deploy = deploy_model(model)
    float_path, qdq_path = out_dir / "model_float.onnx", out_dir / "model_qdq.onnx"
    export_onnx(deploy, float_path, BUNDLED_FRONTEND.n_mels, BUNDLED_FRONTEND.n_frames)
    calib_idx = np.sort(np.random.default_rng(cfg.seed).choice(len(x_train), size=cfg.calibration_count,
                                                                replace=False))
    got = quantize_qdq(float_path, qdq_path, x_train[calib_idx], scale, zp)
    if got != (scale, zp):
        raise N6Error(f"QDQ input quantization {got} differs from the requested {(scale, zp)}")

    test = data["test"]
    y_t = test["labels"]
    report = {"labels": list(synth.LABELS), "n_train": int(len(y_train)), "n_test": int(len(y_t)),
              "test_class_counts": np.bincount(y_t, minlength=n_classes).tolist(),
              "train_speakers": [f"{v}+{a}" for v, a in synth.speakers("train")],
              "test_speakers": [f"{v}+{a}" for v, a in synth.speakers("test")],
              "parameters": count_parameters(model), "input_scale": scale, "input_zero_point": zp,
              "trained_on": train_on,
              "device_frontend": device_params.to_dict(),
              "feature_sets": {"device": f"emulator {device_params.build} int8 features (emu.frontend.st) "
                                         "dequantized",
                               "pc": "float64 reference log-mel (emu.frontend.float_ref), ln, no epsilon"},
              "st_f16_excess_zero_fraction": float(np.mean(test["device_int8"] == 0)
                                                   - np.mean(_pc_int8(test["pc"], scale, zp) == 0)),
              "synth_config": asdict(synth_cfg), "train_config": asdict(cfg),
              "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}}
    with torch.no_grad():
        torch_probs = deploy(torch.from_numpy(test["device"])).numpy()
    float_dev = run_onnx(float_path, test["device"])
    report["float_onnx_vs_torch_max_abs_diff"] = float(np.abs(float_dev - torch_probs).max())
    preds = {}
    for model_name, path in (("float", float_path), ("qdq", qdq_path)):
        for feat in ("device", "pc"):
            probs = float_dev if (model_name, feat) == ("float", "device") else run_onnx(path, test[feat])
            s, preds[model_name, feat] = _summary(f"{model_name}_{feat}", y_t, probs, n_classes)
            report.update(s)
            log(f"held-out accuracy {model_name} model on {feat} features: {report[f'{model_name}_{feat}_accuracy']:.4f}")
    (out_dir / "labels.txt").write_text("\n".join(synth.LABELS) + "\n")
    (out_dir / "frontend.toml").write_text(
        "# Bundled KWS device front end (st-f16) with the QDQ model's input quantization.\n"
        + to_toml(device_params))
    report["example_clips"] = _write_examples(clips_dir, test, preds["qdq", "device"], cfg.example_speaker, log)
    report.update(replay_accuracy(qdq_path, test["pcm"], y_t, n_classes, log))
    if previous is not None:
        report["previous_model"] = previous
    report["pipeline_seconds"] = round(time.time() - t_start, 1)
    (out_dir / "accuracy.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _previous_model_report(out_dir, test, n_classes, device_params, log):
    """The model being replaced (out_dir/model_qdq.onnx with its accuracy.json, if any) on the held-out clips
    through the new device front end and through the front end it was trained on, each quantized with the
    previous model's own input grid: what the change of front end costs a model trained on the old one."""
    path, report_path = out_dir / "model_qdq.onnx", out_dir / "accuracy.json"
    if not path.is_file() or not report_path.is_file():
        return None
    old = json.loads(report_path.read_text())
    scale, zp = old["input_scale"], old["input_zero_point"]
    old_frontend = old.get("device_frontend")
    if old_frontend is None:   # reports written before isa/inplace_power existed: the portable-C build
        old_params = device_params.replace(isa="scalar", inplace_power=False, top_db=80.0)
    else:
        old_params = type(device_params).from_dict(old_frontend)
    old_params = old_params.replace(quant_scale=scale, quant_zero_point=zp)
    out = {"trained_on_frontend": old_params.to_dict(), "input_scale": scale, "input_zero_point": zp,
           "own_qdq_device_accuracy": old.get("qdq_device_accuracy"),
           "own_replay_cmsis_nn_accuracy": old.get("replay_cmsis_nn_accuracy")}
    for name, params in (("old_frontend", old_params), ("new_frontend", device_params)):
        feats = dequantize(device_features(test["pcm"], params.replace(quant_scale=scale, quant_zero_point=zp)),
                           scale, zp)
        s, _ = _summary(f"qdq_device_{name}", test["labels"], run_onnx(path, feats), n_classes)
        out.update(s)
        log(f"previous model on these held-out clips, {params.build} features: "
            f"{s[f'qdq_device_{name}_accuracy']:.4f}")
    return out


def replay_accuracy(qdq_path, pcm, labels, n_classes, log):
    """The held-out clips replayed through the bundled device description with this model, under each
    network profile (ST app framing: the first patch is win-hop zeros + the clip's first samples)."""
    from emu.config import load_config
    from emu.device import Device
    out = {}
    for profile in ("cmsis-nn", "onnxruntime"):
        cfg = load_config(None).replace("model", path=str(qdq_path), profile=profile, rounding=None)
        dev = Device(cfg)
        pred = np.array([list(dev.replay_pcm([x]))[0]["index"] for x in pcm])
        key = f"replay_{profile.replace('-', '_')}"
        out[f"{key}_accuracy"] = float((pred == labels).mean())
        out[f"{key}_confusion"] = confusion(labels, pred, n_classes).tolist()
        log(f"held-out replay through the bundled device, {profile}: {out[f'{key}_accuracy']:.4f}")
    out["replay_note"] = ("replay_*: the held-out clips replayed through the bundled default device "
                          "(emu.device.Device, ST app framing: the first patch is 320 zeros + the clip's first "
                          "15680 samples) under each network profile. qdq_device_accuracy feeds each "
                          "16000-sample clip as the patch buffer (the training framing); the 20 ms framing "
                          "offset explains the difference.")
    return out


def _pc_int8(x, scale, zp):
    """PC-side int8 of float features: ONNX QuantizeLinear (round half to even, saturate)."""
    return np.clip(np.round(x / np.float32(scale)) + zp, -128, 127).astype(np.int8)


def _write_examples(clips_dir, test, qdq_pred, speaker, log):
    """One clip per keyword + one unknown word from `speaker`, + the first silence clip; returns metadata."""
    pcm, labels, spk, words = test["pcm"], test["labels"], test["speakers"], test["words"]
    chosen = []
    for k, name in enumerate(synth.LABELS):
        sel = np.nonzero((labels == k) & ((spk == speaker) if name != synth.SILENCE else True))[0]
        if len(sel) == 0:
            continue
        i = int(sel[0])
        fname = f"{name.strip('_')}_{words[i] if name == synth.UNKNOWN else ''}".rstrip("_") + ".wav"
        write_wav(clips_dir / fname, pcm[i], synth.SAMPLE_RATE)
        chosen.append({"file": fname, "label": name, "word": str(words[i]), "speaker": str(spk[i]),
                       "qdq_prediction": synth.LABELS[int(qdq_pred[i])]})
    log(f"wrote {len(chosen)} example clips to {clips_dir}")
    return chosen
