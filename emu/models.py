"""Model loading by file type: .tflite (TFLite int8) and .onnx (QDQ int8) into the integer graph IR."""
import os

from emu.errors import N6Error

MODEL_TYPES = (".tflite", ".onnx")


def load_model(path):
    """Import a model file into an emu.graph.ir.Graph; one-line N6Error for missing/unknown files."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise N6Error(f"{path}: no such model file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".tflite":
        from emu.graph.tflite import load_tflite
        return load_tflite(path)
    if ext == ".onnx":
        try:
            from emu.graph.onnx_qdq import load_onnx
        except ImportError:
            raise N6Error(f"{path}: ONNX import is not available in this build; use a .tflite model") from None
        return load_onnx(path)
    raise N6Error(f"{path}: unknown model type {ext or '(no extension)'}; give a {' or '.join(MODEL_TYPES)} file")
