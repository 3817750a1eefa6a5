"""ONNX export and onnxruntime static quantization (QDQ, per-channel int8 weights, int8 activations).

The final Softmax stays float (excluded from quantization), so the QDQ graph ends with
DequantizeLinear -> Softmax as ST deploys it. Calibration: MinMax over training features.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from emu.errors import N6Error

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


def export_onnx(deploy_model, path: Path, n_mels: int, n_frames: int, opset: int = 13):
    """Export the BN-folded model (ends in Softmax) with a fixed input [1, 1, n_mels, n_frames]."""
    import torch
    x = torch.zeros(1, 1, n_mels, n_frames)
    torch.onnx.export(deploy_model, (x,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      opset_version=opset, dynamo=False, do_constant_folding=True)
    import onnx
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    ops = [n.op_type for n in m.graph.node]
    if "BatchNormalization" in ops or ops[-1] != "Softmax":
        raise N6Error(f"exported graph has ops {ops}; expected folded BN and a final Softmax")
    return m


class _FeatureReader:
    """onnxruntime CalibrationDataReader over float32 [N, 1, n_mels, n_frames] features, one at a time."""

    def __init__(self, features):
        self._features = features
        self._i = 0

    def get_next(self):
        if self._i >= len(self._features):
            return None
        x = self._features[self._i:self._i + 1]
        self._i += 1
        return {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)}

    def rewind(self):
        self._i = 0


def quantize_qdq(float_path: Path, qdq_path: Path, calibration_features, input_scale=None, input_zero_point=None):
    """quantize_static: QDQ format, per-channel QInt8 weights, QInt8 activations, MinMax calibration,
    Softmax excluded. input_scale/input_zero_point (both or neither) pin the input QuantizeLinear to the
    device front end's int8 grid (TensorQuantOverrides). Returns (input_scale, input_zero_point) of the model."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    model = onnx.load(str(float_path))
    softmax = [n.name for n in model.graph.node if n.op_type == "Softmax"]
    extra = {}
    if (input_scale is None) != (input_zero_point is None):
        raise N6Error("give both input_scale and input_zero_point, or neither (calibrated)")
    if input_scale is not None:
        extra["TensorQuantOverrides"] = {INPUT_NAME: [{"scale": np.array(input_scale, np.float32),
                                                       "zero_point": np.array(input_zero_point, np.int8)}]}
    quantize_static(str(float_path), str(qdq_path), _FeatureReader(calibration_features),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    nodes_to_exclude=softmax, extra_options=extra)
    return input_quantization(qdq_path)


def input_quantization(qdq_path: Path):
    """(scale: float, zero_point: int) of the QuantizeLinear fed by the graph input."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(str(qdq_path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] == m.graph.input[0].name:
            return float(inits[n.input[1]].reshape(())), int(inits[n.input[2]].reshape(()))
    raise N6Error(f"{qdq_path}: no QuantizeLinear on the graph input; quantize the model with QDQ format")


def run_onnx(path: Path, features, batch_one=True):
    """Probabilities [N, n_classes] from onnxruntime (CPU, default optimizations), one sample per run."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = [sess.run(None, {name: np.ascontiguousarray(features[i:i + 1], dtype=np.float32)})[0]
           for i in range(len(features))]
    return np.concatenate(out, axis=0)
