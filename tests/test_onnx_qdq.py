"""ONNX QDQ importer + "onnxruntime" profile acceptance: randomized float graphs quantized by onnxruntime's
quantize_static (QDQ) and run by onnxruntime (default optimizations = fused QLinear kernels) are the oracle.
The emulator's dequantized float output must equal onnxruntime's bit for bit (which also pins the int8/uint8
output buffer, as DequantizeLinear is injective)."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from emu.errors import N6Error
from emu.graph.onnx_qdq import (ModelRunner, dequantize_output, load_onnx_qdq, quantize_input,
                                run_model, to_internal)
from onnx_builder import build_float_model, ort_session, out_hw, quantize_qdq


def random_spec(rng, act_type):
    """A random chain (and, for uint8, optionally a residual/multiplicative/concat branch) with a valid shape."""
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(7, 15)), int(rng.integers(7, 15))
    shape = (1, c, h, w)
    spec = []
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.choice(["conv", "depthwise", "grouped"]) if c > 1 else "conv"
        kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        if rng.random() < 0.5:
            kw = kh
        s, d = int(rng.integers(1, 3)), int(rng.choice([1, 1, 2]))
        p = int(rng.integers(0, max(1, min(kh, kw) // 2 + 1)))
        oh, ow = out_hw(h, kh, s, p, p, d), out_hw(w, kw, s, p, p, d)
        if oh < 1 or ow < 1:
            continue
        layer = dict(op="conv", k=(kh, kw) if kh != kw else kh, stride=s, pad=p, dilation=d,
                     act=str(rng.choice(["relu", "relu6", "none"])), bias=bool(rng.random() < 0.8))
        if kind == "conv":
            layer["cout"] = int(rng.integers(1, 9))
        elif kind == "depthwise":
            layer.update(group=c, mult=int(rng.integers(1, 3)))
        else:
            g = 2 if c % 2 == 0 else c
            layer.update(group=g, cout=g * int(rng.integers(1, 4)))
            if g == c:
                layer.update(mult=layer["cout"] // c)
        spec.append(layer)
        cout = layer.get("cout", c * layer.get("mult", 1)) if layer.get("group", 1) != c else c * layer.get("mult", 1)
        c, h, w = cout, oh, ow
    if act_type == "uint8" and rng.random() < 0.5:
        spec.append(dict(op=str(rng.choice(["add_branch", "mul_branch", "concat_branch"])), cout=int(rng.integers(1, 4))))
        if spec[-1]["op"] == "concat_branch":
            c += spec[-1]["cout"]
    if h >= 2 and w >= 2 and rng.random() < 0.6:
        k = int(rng.integers(2, min(h, w, 3) + 1))
        p = int(rng.integers(0, k // 2 + 1))
        spec.append(dict(op=str(rng.choice(["maxpool", "avgpool"])), k=k, stride=int(rng.integers(1, 3)), pad=p))
        h, w = out_hw(h, k, spec[-1]["stride"], p, p), out_hw(w, k, spec[-1]["stride"], p, p)
    tail = rng.choice(["gap_gemm", "gemm", "none"])
    if tail == "gap_gemm":
        spec += [dict(op="gap"), dict(op="flatten"), dict(op="gemm", out=int(rng.integers(2, 8)))]
    elif tail == "gemm":
        spec += [dict(op="flatten"), dict(op="gemm", out=int(rng.integers(2, 8)), act=str(rng.choice(["relu", "none"])))]
    return spec, shape


def make_case(seed, act_type, per_channel, n_inputs):
    rng = np.random.default_rng(seed)
    spec, shape = random_spec(rng, act_type)
    fm = build_float_model(spec, shape, seed=seed, softmax=False)
    cal = [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)]
    q = quantize_qdq(fm, cal, per_channel=per_channel, activation_type=act_type)
    xs = rng.normal(0, 1.2, (n_inputs,) + shape).astype(np.float32)
    xs[0] = 0.0                                  # silence
    xs[1] = 50.0                                 # full scale: input saturates
    return spec, q, xs


def assert_ort_equal(q, xs, elementwise=None):
    model = load_onnx_qdq(q)
    sess = ort_session(q)
    for i, x in enumerate(xs):
        (ref,) = sess.run(None, {q.graph.input[0].name: x})
        got = run_model(model, x, "onnxruntime", "float32", elementwise=elementwise)
        assert got["float"].shape == ref.shape, (got["float"].shape, ref.shape)
        diff = got["float"].view(np.int32) != ref.view(np.int32)
        assert not diff.any(), f"input {i}: {int(diff.sum())}/{diff.size} outputs differ, first at {np.argwhere(diff)[0]}"
    return model


CASES = [(seed, at, pc) for seed in range(4) for at in ("int8", "uint8") for pc in (True, False)]


@pytest.mark.parametrize("seed,act_type,per_channel", CASES[:8])
def test_random_qdq_graphs_equal_onnxruntime(seed, act_type, per_channel):
    spec, q, xs = make_case(seed, act_type, per_channel, 6)
    assert_ort_equal(q, xs)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 400))
def test_random_qdq_graphs_equal_onnxruntime_sweep(seed):
    at = "uint8" if seed % 2 else "int8"
    spec, q, xs = make_case(seed, at, bool(seed % 3), 25)
    assert_ort_equal(q, xs)


KWS_LIKE = [dict(op="conv", cout=8, k=(3, 3), stride=2, pad=1, act="relu"),
            dict(op="conv", group=8, mult=1, k=3, pad=1, act="relu"), dict(op="conv", cout=8, k=1, act="relu"),
            dict(op="conv", group=8, mult=1, k=3, pad=1, act="relu"), dict(op="conv", cout=8, k=1, act="relu"),
            dict(op="gap"), dict(op="flatten"), dict(op="gemm", out=6)]


@pytest.mark.parametrize("act_type", ["int8", "uint8"])
def test_ds_cnn_like_chain_equal_onnxruntime(act_type):
    shape = (1, 1, 40, 49)
    rng = np.random.default_rng(7)
    fm = build_float_model(KWS_LIKE, shape, seed=7, softmax=False)
    q = quantize_qdq(fm, [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)], activation_type=act_type)
    model = assert_ort_equal(q, rng.normal(0, 1.5, (8,) + shape).astype(np.float32))
    g = model.graph
    # ST layout: NCHW input buffer, one runtime transpose to NHWC, weights transposed once
    assert g.tensors[g.inputs[0]].shape == shape
    assert g.nodes[0].op in ("transpose", "reshape") and g.tensors[g.nodes[0].outputs[0]].shape == (1, 40, 49, 1)
    assert g.nodes[1].op == "conv2d" and g.tensors[g.nodes[1].inputs[1]].shape == (8, 3, 3, 1)
    assert g.nodes[2].op == "depthwise_conv2d" and g.tensors[g.nodes[2].inputs[1]].shape == (1, 3, 3, 8)


@pytest.mark.parametrize("act_type", ["int8", "uint8"])
def test_branches_equal_onnxruntime(act_type):
    """Add / Mul / Concat: fused QLinear kernels for uint8; for int8 ORT (x86) runs them unfused in float."""
    shape = (1, 2, 9, 8)
    rng = np.random.default_rng(3)
    base = [dict(op="conv", cout=4, k=3, pad=1, act="relu")]
    for tail in ([dict(op="add_branch")], [dict(op="mul_branch")], [dict(op="concat_branch", cout=3)]):
        fm = build_float_model(base + tail, shape, seed=3, softmax=False)
        q = quantize_qdq(fm, [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)], activation_type=act_type)
        assert_ort_equal(q, rng.normal(0, 1.5, (6,) + shape).astype(np.float32))


def test_flatten_keeps_nchw_order_and_transpose_op():
    """A Flatten after NHWC convs must see NCHW element order (the runtime transposes back first); a model-level
    Transpose of H and W is mapped onto the internal layout."""
    shape = (1, 2, 7, 5)
    rng = np.random.default_rng(11)
    spec = [dict(op="conv", cout=3, k=3, pad=1), dict(op="transpose_hw"), dict(op="conv", cout=2, k=(3, 1)),
            dict(op="flatten"), dict(op="gemm", out=4)]
    fm = build_float_model(spec, shape, seed=11, softmax=False)
    q = quantize_qdq(fm, [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)])
    model = assert_ort_equal(q, rng.normal(0, 1.5, (6,) + shape).astype(np.float32))
    ops = [n.op for n in model.graph.nodes]
    i = ops.index("fully_connected")
    assert ops[i - 1] == "reshape" and ops[i - 2] == "transpose"
    assert model.graph.nodes[i - 2].attrs["perm"] == [0, 3, 1, 2]


def test_softmax_tail_float_output():
    """DequantizeLinear + float Softmax tail: float32 output of the model's shape; the softmax is numpy float32
    (MLAS uses its own exp polynomial in FMA kernels), so it is compared within 8 ulp, with identical argmax."""
    shape = (1, 1, 12, 10)
    rng = np.random.default_rng(5)
    fm = build_float_model(KWS_LIKE[:3] + KWS_LIKE[5:], shape, seed=5, softmax=True)
    q = quantize_qdq(fm, [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)])
    model = load_onnx_qdq(q)
    assert model.output_tail == "dequantize+softmax"
    sess = ort_session(q)
    for x in rng.normal(0, 1.5, (10,) + shape).astype(np.float32):
        (ref,) = sess.run(None, {"input": x})
        got = run_model(model, x, "onnxruntime", "float32")["float"]
        assert got.dtype == np.float32 and got.shape == ref.shape
        np.testing.assert_array_max_ulp(got, ref, maxulp=8)
        assert np.argmax(got) == np.argmax(ref)


def _quantize_linear_session(scale, zp, dtype, n):
    tt = TensorProto.INT8 if dtype == np.int8 else TensorProto.UINT8
    inits = [numpy_helper.from_array(np.array(scale, np.float32), "s"), numpy_helper.from_array(np.array(zp, dtype), "z")]
    g = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])], "q",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
                          [helper.make_tensor_value_info("y", tt, [n])], inits)
    return ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("dtype,zp", [(np.int8, 0), (np.int8, -128), (np.int8, 127), (np.uint8, 0), (np.uint8, 255),
                                      (np.uint8, 128)])
def test_input_quantization_matches_quantizelinear(dtype, zp):
    """Float boundary, onnxruntime rule == onnxruntime QuantizeLinear (ties to even, saturation); the cmsis-nn
    rule rounds ties away from zero."""
    from types import SimpleNamespace
    scale = np.float32(0.125)
    k = np.arange(-300, 301, dtype=np.float32)
    x = np.concatenate([k * scale, (k + np.float32(0.5)) * scale, np.array([1e9, -1e9, 0.0], np.float32)])
    from emu.graph.ir import Graph, Tensor
    shift = -128 if dtype == np.uint8 else 0
    t = Tensor("x", (x.size,), np.dtype(np.int8), np.array([scale], np.float32), np.array([zp + shift], np.int64))
    model = SimpleNamespace(graph=Graph({"x": t}, [], ["x"], ["x"]), io_dtype=dtype, input_shape=(x.size,))
    (ref,) = _quantize_linear_session(scale, zp, dtype, x.size).run(None, {"x": x})
    assert np.array_equal(quantize_input(model, x, "onnxruntime"), ref)
    tflite = quantize_input(model, x, "cmsis-nn")
    v = (x / scale).astype(np.float64)
    away = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + zp, np.iinfo(dtype).min, np.iinfo(dtype).max)
    assert np.array_equal(tflite.astype(np.int64), away.astype(np.int64))
    ties = np.abs(v - np.trunc(v)) == 0.5
    assert (tflite[ties] != ref[ties]).any()


def test_int8_and_float_boundaries_agree():
    shape = (1, 1, 10, 9)
    rng = np.random.default_rng(2)
    for at in ("int8", "uint8"):
        fm = build_float_model(KWS_LIKE[:3], shape, seed=2, softmax=False)
        q = quantize_qdq(fm, [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)], activation_type=at)
        model = load_onnx_qdq(q)
        x = rng.normal(0, 1, shape).astype(np.float32)
        buf = quantize_input(model, x)
        assert buf.dtype == np.dtype(at) and buf.shape == shape
        a = run_model(model, x, input_boundary="float32")
        b = run_model(model, buf, input_boundary="int8")
        assert np.array_equal(a["output"], b["output"]) and a["output"].dtype == np.dtype(at)
        assert np.array_equal(dequantize_output(model, b["output"]), b["float"])


def test_cmsis_nn_profile_runs_on_onnx_graph():
    """The same imported graph under cmsis-nn (TFLite multipliers from the same scales) stays within a few LSB
    of onnxruntime (the profiles differ on ties and by the fixed-point multiplier)."""
    shape = (1, 1, 20, 15)
    rng = np.random.default_rng(9)
    fm = build_float_model(KWS_LIKE, shape, seed=9, softmax=False)
    q = quantize_qdq(fm, [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)])
    model = load_onnx_qdq(q)
    from emu.graph.prepare import prepare
    gap = [n for n in model.graph.nodes if n.op == "avg_pool"][0]
    assert prepare(model.graph, "cmsis-nn").params[gap.name].kernel == "depthwise_conv2d"   # the requantized mean
    for x in rng.normal(0, 1.2, (5,) + shape).astype(np.float32):
        a = run_model(model, x, "onnxruntime", "float32")["output"].astype(int)
        b = run_model(model, x, "cmsis-nn", "float32")["output"].astype(int)
        assert np.abs(a - b).max() <= 3


# ---- errors -------------------------------------------------------------------------------------------------

def test_float_model_is_rejected_with_how_to_quantize():
    fm = build_float_model(KWS_LIKE[:2], (1, 1, 8, 8), softmax=False)
    with pytest.raises(N6Error, match="quantize_static.*QuantFormat.QDQ.*per_channel=True"):
        load_onnx_qdq(fm)


def test_unsupported_ops_are_listed_at_once():
    """Every unsupported op and its layers in one line (not only the first)."""
    shape = (1, 2, 6, 6)
    fm = build_float_model([dict(op="conv", cout=2, k=1)], shape, softmax=False)
    g = fm.graph
    g.node[-1].output[0] = "pre"
    g.node.extend([helper.make_node("Elu", ["pre"], ["e1"], name="my_elu"),
                   helper.make_node("Softsign", ["e1"], ["e2"], name="my_softsign"),
                   helper.make_node("Elu", ["e2"], ["output"], name="my_elu2")])
    rng = np.random.default_rng(0)
    q = quantize_qdq(fm, [rng.normal(0, 1, shape).astype(np.float32) for _ in range(4)])
    with pytest.raises(N6Error, match=r"unsupported ops: Elu \(2 layers: 'my_elu', 'my_elu2'\), Softsign \(1 layer: "
                       r"'my_softsign'\)") as e:
        load_onnx_qdq(q)
    assert "\n" not in str(e.value)


def test_wrong_input_shape_and_dtype():
    shape = (1, 1, 8, 8)
    rng = np.random.default_rng(0)
    q = quantize_qdq(build_float_model(KWS_LIKE[:2], shape, softmax=False),
                     [rng.normal(0, 1, shape).astype(np.float32) for _ in range(4)])
    model = load_onnx_qdq(q)
    with pytest.raises(N6Error, match=r"must be int8.*got float32"):
        to_internal(model, np.zeros(shape, np.float32))
    with pytest.raises(N6Error, match=r"shape \(1, 1, 8, 8\)"):
        run_model(model, np.zeros((1, 8, 8, 1), np.int8))
    with pytest.raises(N6Error, match="float32"):
        run_model(model, np.zeros(shape, np.float64), input_boundary="float32")
    with pytest.raises(N6Error, match="unknown arithmetic profile"):
        run_model(model, np.zeros(shape, np.int8), profile="npu")


@pytest.mark.parametrize("act_type", ["int8", "uint8"])
def test_matmul_add_with_constant_operand(act_type):
    """PyTorch-style Linear (MatMul + Add of a quantized constant): QLinearMatMul, then QLinearAdd (uint8) or a
    float Add (int8) with the constant broadcast."""
    from onnx_builder import matmul_add_model
    rng = np.random.default_rng(1)
    q = quantize_qdq(matmul_add_model(1), [rng.normal(0, 1, (1, 2, 6, 6)).astype(np.float32) for _ in range(6)],
                     activation_type=act_type)
    model = assert_ort_equal(q, rng.normal(0, 1.5, (10, 1, 2, 6, 6)).astype(np.float32))
    assert [n.op for n in model.graph.nodes][-2:] == ["fully_connected", "add"]


@pytest.mark.parametrize("act_type", ["int8", "uint8"])
def test_pytorch_exported_ds_cnn(act_type):
    """A DS-CNN exported from PyTorch (BatchNorm folded by the exporter, Softmax tail kept float) imports and
    equals onnxruntime on the dequantized logits."""
    torch = pytest.importorskip("torch",
                                reason='torch (exports this model) is not installed; pip install -e ".[train]"')
    import io
    from torch import nn
    from onnx_builder import strip_softmax

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = nn.Sequential(nn.Conv2d(1, 8, (5, 3), stride=2, padding=(2, 1)), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 12, 1), nn.BatchNorm2d(12), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(12, 6), nn.Softmax(dim=1)).eval()
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    buf = io.BytesIO()
    torch.onnx.export(net, torch.zeros(1, 1, 40, 49), buf, input_names=["input"], output_names=["output"],
                      opset_version=17, dynamo=False)
    fm = onnx.load_from_string(buf.getvalue())
    assert "BatchNormalization" not in [n.op_type for n in fm.graph.node]
    rng = np.random.default_rng(0)
    shape = (1, 1, 40, 49)
    q = quantize_qdq(fm, [rng.normal(0, 1, shape).astype(np.float32) for _ in range(8)], activation_type=act_type)
    model = load_onnx_qdq(q)
    assert model.output_tail == "dequantize+softmax"
    logits = strip_softmax(q)
    model_logits = assert_ort_equal(logits, rng.normal(0, 1.5, (6,) + shape).astype(np.float32))
    assert [n.op for n in model_logits.graph.nodes] == [n.op for n in model.graph.nodes]


@pytest.mark.parametrize("per_channel", [True, False])
def test_uint8_weights_with_zero_points(per_channel):
    """uint8 activations and asymmetric uint8 weights (filter_offset = -zp_w after the -128 shift)."""
    shape = (1, 2, 9, 8)
    rng = np.random.default_rng(3)
    spec = [dict(op="conv", cout=4, k=3, pad=1, act="relu"), dict(op="conv", group=4, mult=1, k=3),
            dict(op="flatten"), dict(op="gemm", out=3)]
    fm = build_float_model(spec, shape, seed=3, softmax=False)
    q = quantize_qdq(fm, [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)], activation_type="uint8",
                     weight_type="uint8", per_channel=per_channel, extra_options={"WeightSymmetric": False})
    model = assert_ort_equal(q, rng.normal(0, 1.5, (8,) + shape).astype(np.float32))
    # quantize_static keeps per-channel weights symmetric (zp 128); per-tensor ones get a real zero-point
    asym = any(np.any(t.zero_point != 0) for t in model.graph.tensors.values() if t.is_constant and t.scale is not None)
    assert asym == (not per_channel)


def test_channel_last_io_option():
    """ST's channel-last I/O option: NHWC buffers, no boundary transposes, same numbers as the original layout."""
    shape = (1, 3, 9, 7)
    rng = np.random.default_rng(4)
    spec = [dict(op="conv", cout=4, k=3, pad=1, act="relu"), dict(op="conv", group=4, mult=1, k=3)]
    q = quantize_qdq(build_float_model(spec, shape, seed=4, softmax=False),
                     [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)])
    orig, last = load_onnx_qdq(q), load_onnx_qdq(q, io_layout="channel-last")
    assert last.input_shape == (1, 9, 7, 3) and last.output_shape == (1, 7, 5, 4)
    assert "transpose" not in [n.op for n in last.graph.nodes]
    assert [n.op for n in orig.graph.nodes].count("transpose") == 2
    for x in rng.normal(0, 1.5, (4,) + shape).astype(np.float32):
        a = run_model(orig, x, input_boundary="float32")["output"]
        b = run_model(last, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), input_boundary="float32")["output"]
        assert np.array_equal(a.transpose(0, 2, 3, 1), b)
    with pytest.raises(N6Error, match="unknown I/O layout"):
        load_onnx_qdq(q, io_layout="nhwc")


def test_channel_last_io_in_the_cli_and_the_device(tmp_path):
    """`n6emu run --io-layout channel-last` takes NHWC inputs and gives what the original layout gives transposed;
    `[input] io_layout` reaches the device chain (bundled model: 1 channel, the same bytes, NHWC shape); the imported
    model cache keeps the two layouts apart."""
    import io

    from emu.cli import main
    from emu.device import Device
    shape = (1, 3, 9, 7)
    rng = np.random.default_rng(5)
    spec = [dict(op="conv", cout=4, k=3, pad=1, act="relu"), dict(op="conv", group=4, mult=1, k=3)]
    q = quantize_qdq(build_float_model(spec, shape, seed=5, softmax=False),
                     [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)])
    path = tmp_path / "m.onnx"
    path.write_bytes(q.SerializeToString())
    x = rng.integers(-128, 128, (5,) + shape, dtype=np.int8)
    np.save(tmp_path / "nchw.npy", x)
    np.save(tmp_path / "nhwc.npy", np.ascontiguousarray(x.transpose(0, 1, 3, 4, 2)))
    for layout, name in (("original", "nchw"), ("channel-last", "nhwc"), ("original", "nchw")):
        err = io.StringIO()
        code = main(["run", str(path), "--input", str(tmp_path / f"{name}.npy"), "--output",
                     str(tmp_path / f"y_{name}.npy"), "--io-layout", layout], out=io.StringIO(), err=err)
        assert code == 0, err.getvalue()
    a, b = np.load(tmp_path / "y_nchw.npy"), np.load(tmp_path / "y_nhwc.npy")
    assert a.shape == (5, 1, 4, 7, 5) and np.array_equal(a.transpose(0, 1, 3, 4, 2), b)
    dev = Device()
    last = dev.with_(**{"input.io_layout": "channel-last"})
    assert last.input_shape == (1, 40, 49, 1) and dev.input_shape == (1, 1, 40, 49)
    assert last.settings["input"]["io_layout"] == "channel-last"
    pcm = (np.sin(np.arange(16000) / 7.0) * 8000).astype(np.int16)
    assert [r["output"].tolist() for r in last.replay_pcm([pcm])] == [r["output"].tolist() for r in dev.replay_pcm([pcm])]
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[input]\nio_layout = "nhwc"\n')
    err = io.StringIO()
    assert main(["replay", str(cfg), "--config", str(cfg)], out=io.StringIO(), err=err) == 2
    assert "io_layout" in err.getvalue() and err.getvalue().count("\n") == 1


@pytest.mark.parametrize("seed", [286, 288])
def test_average_pool_covering_input_is_global(seed):
    """ORT runs an AveragePool whose kernel covers the whole unpadded input as QLinearGlobalAveragePool (integer
    sum, one requantization), not the float tap average; the emulator follows. Seeds of the slow sweep that
    caught it (a 2x2 average pool on a 2x2 map)."""
    spec, q, xs = make_case(seed, "uint8" if seed % 2 else "int8", bool(seed % 3), 25)
    assert any(layer["op"] == "avgpool" for layer in spec)
    assert_ort_equal(q, xs)


def test_runtime_onnxruntime_profile_and_float_boundary():
    """The onnxruntime profile is a Runtime profile: float32 input boundary (the model's QuantizeLinear), batch,
    metadata; the C backend and unknown elementwise modes are refused in one line."""
    from emu.graph.runtime import Runtime
    shape = (1, 1, 10, 9)
    rng = np.random.default_rng(12)
    q = quantize_qdq(build_float_model(KWS_LIKE, shape, seed=12, softmax=False),
                     [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)])
    model = load_onnx_qdq(q)
    xs = rng.normal(0, 1.5, (5,) + shape).astype(np.float32)
    rt = Runtime(model.graph, "onnxruntime", input_boundary="float32")
    batched = rt.run(xs)
    assert batched.shape == (5, 1, 6)
    for x, got in zip(xs, batched):
        assert np.array_equal(got, run_model(model, x, input_boundary="float32")["output"])
    assert rt.metadata["profile"] == "onnxruntime" and rt.metadata["elementwise"] == "dq-float"
    with pytest.raises(N6Error, match="fixed-point profiles only"):
        Runtime(model.graph, "onnxruntime", backend="c")
    with pytest.raises(N6Error, match="has no elementwise mode .fma."):
        Runtime(model.graph, "onnxruntime", elementwise="fma")
    with pytest.raises(N6Error, match="cmsis-nn. has no elementwise mode .qlinear."):
        Runtime(model.graph, "cmsis-nn", elementwise="qlinear")


@pytest.mark.parametrize("act_type", ["int8", "uint8"])
def test_quantized_softmax_equals_qlinearsoftmax(act_type):
    """quantize_static's default quantizes the Softmax too (DQ -> Softmax -> Q -> DQ): ORT runs QLinearSoftmax
    (uint32 exp table, integer division); the emulator's int8 softmax and the dequantized output are exact.
    cmsis-nn refuses it in one line (TFLM needs output scale 1/256; ORT's is 1/255)."""
    shape = (1, 1, 12, 10)
    rng = np.random.default_rng(5)
    fm = build_float_model(KWS_LIKE[:3] + KWS_LIKE[5:], shape, seed=5, softmax=True)
    q = quantize_qdq(fm, [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)], activation_type=act_type,
                     float_softmax=False)
    model = assert_ort_equal(q, rng.normal(0, 2.5, (60,) + shape).astype(np.float32))
    assert model.graph.nodes[-1].op == "softmax" and model.output_tail == "dequantize"
    with pytest.raises(N6Error, match="scale 1/256"):
        ModelRunner(model, "cmsis-nn")


def test_batches_along_the_leading_one():
    """A batch may stack buffers (N x [1,C,H,W]) or replace the leading 1 ([N,C,H,W]), as Runtime accepts."""
    shape = (1, 1, 10, 9)
    rng = np.random.default_rng(13)
    q = quantize_qdq(build_float_model(KWS_LIKE, shape, seed=13, softmax=False),
                     [rng.normal(0, 1, shape).astype(np.float32) for _ in range(6)])
    runner = ModelRunner(load_onnx_qdq(q))
    xs = rng.normal(0, 1.5, (4, 1, 10, 9)).astype(np.float32)
    flat = runner.run(xs, "float32")["output"]
    stacked = runner.run(xs[:, None], "float32")["output"]
    single = np.stack([runner.run(x[None], "float32")["output"] for x in xs])
    assert np.array_equal(flat.reshape(single.shape), single) and np.array_equal(stacked.reshape(single.shape), single)
    with pytest.raises(N6Error, match=r"must have shape \(1, 1, 10, 9\)"):
        runner.run(xs[:, :, :5], "float32")
