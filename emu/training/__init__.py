"""Reproducible training of the bundled KWS model (emu/data/kws): espeak-ng + sox synthesis (synth.py),
device front-end features (features.py), DS-CNN (model.py), training and artifacts (train.py), ONNX export
and onnxruntime QDQ quantization (quantize.py). Run `python -m emu.training` (needs the `train` extra,
espeak-ng and sox); nothing here is imported by the emulator at run time."""
