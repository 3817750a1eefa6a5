"""`python -m emu.training [--cache DIR] [--out DIR] [--clips DIR] [--epochs N] [--channels C] [--train-on st-f16|float]`:
rebuild the bundled KWS model and its artifacts (needs espeak-ng, sox, torch, onnxruntime)."""
import argparse
import sys
from dataclasses import replace
from pathlib import Path

from emu.errors import N6Error
from emu.training.synth import SynthConfig
from emu.training.train import DATA_DIR, TrainConfig, run_pipeline


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m emu.training", description=__doc__)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/n6emu-kws"), help="synthesized data cache")
    ap.add_argument("--out", type=Path, default=DATA_DIR / "kws")
    ap.add_argument("--clips", type=Path, default=DATA_DIR / "clips")
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--channels", type=int, default=TrainConfig.channels)
    ap.add_argument("--train-on", choices=("st-f16", "float"), default="st-f16",
                    help="training features: emulator device int8 (dequantized) or float64 reference")
    args = ap.parse_args(argv)
    cfg = replace(TrainConfig(), epochs=args.epochs, channels=args.channels)
    try:
        run_pipeline(args.cache, args.out, args.clips, SynthConfig(), cfg, train_on=args.train_on,
                     log=lambda s: print(s, flush=True))
    except N6Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
