"""ONNX LSTM and GRU (DequantizeLinear -> float LSTM/GRU -> QuantizeLinear) under the onnxruntime profile, bit for bit
against onnxruntime (one thread, default optimizations): the float intermediates Y / Y_h / Y_c of
emu.kernels.ort_rnn, the int8 outputs of the imported graphs, and small recurrent KWS models quantized by
quantize_static (both of its forms: LSTM/GRU left float with float weights, which onnxruntime prepacks, and
LSTM/GRU in op_types_to_quantize, whose int8 weights come through DequantizeLinear).

The emulation follows onnxruntime's x86-64 kernels (MLAS SGEMM with FMA, its M = 1 AVX kernel, the FMA3
logistic/tanh): on a CPU without AVX2/FMA onnxruntime takes other kernels, and the float tests skip."""
import numpy as np
import pytest

from emu.errors import N6Error
from emu.graph.onnx_qdq import dequantize_output, load_onnx_qdq, run_model
from onnx_builder import kws_rnn_float_model, ort_session, quantize_qdq, rnn_model, strip_softmax

pytest.importorskip("onnxruntime", reason='oracle unavailable: pip install -e ".[test]"')


def _has_fma3():
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read().replace("\n", " ")
    except OSError:
        return False
    return " fma " in flags and " avx2 " in flags


pytestmark = pytest.mark.skipif(not _has_fma3(), reason="onnxruntime takes its AVX2/FMA kernels only on such CPUs "
                                                        "(the emulated ones)")


def _bits_equal(a, b):
    a, b = np.asarray(a, np.float32).reshape(-1), np.asarray(b, np.float32).reshape(-1)
    return a.shape == b.shape and np.array_equal(a.view(np.int32), b.view(np.int32))


def _dequantized_input(x, x_quant, dtype):
    lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
    q = np.clip(np.rint((x / np.float32(x_quant[0])).astype(np.float32)) + x_quant[1], lo, hi)
    return ((q - x_quant[1]).astype(np.float32) * np.float32(x_quant[0])).astype(np.float32)


# (steps, input_size, hidden): odd hidden sizes take MLAS's 2- and 1-column reductions, input sizes above 128 / 256
# its K blocking, steps = 1 a model whose samples the runtime folds into one batch
SHAPES = [(49, 10, 32), (7, 3, 5), (11, 13, 7), (5, 1, 6), (9, 200, 9), (6, 300, 33), (4, 10, 130), (3, 17, 1),
          (5, 8, 2), (1, 6, 3)]
OPTIONS = [dict(), dict(bias=False), dict(initial_h=True, initial_c=True), dict(weight_scale=3.0),
           dict(direction="reverse"), dict(direction="bidirectional", initial_h=True),
           dict(linear_before_reset=1), dict(linear_before_reset=1, bias=False)]


def _options(op):
    res = []
    for o in OPTIONS:
        if op == "LSTM" and "linear_before_reset" in o:
            continue
        o = dict(o)
        if op == "GRU":
            o.pop("initial_c", None)
        res.append(o)
    return res


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
@pytest.mark.parametrize("quantized_weights", [True, False], ids=["dq-weights", "float-weights"])
def test_float_outputs_bit_exact(op, quantized_weights):
    """Y, Y_h (and Y_c) of emu.kernels.ort_rnn, both its numpy reference and its Numba kernels, equal onnxruntime's
    float outputs bit for bit: 10 shapes x 6 (LSTM) or 8 (GRU) option sets x 2 inputs per op and weight form."""
    from emu.kernels.ort_rnn import RnnLayer, RnnScratch, rnn_directions
    rng = np.random.default_rng(1 if op == "LSTM" else 2)
    cases = exact = 0
    for steps, isz, hid in SHAPES:
        for k, opts in enumerate(_options(op)):
            m, v = rnn_model(op, steps, isz, hid, output=None, quantized_weights=quantized_weights,
                             seed=k * 100 + hid, x_quant=(0.02, 3), **opts)
            sess = ort_session(m)
            for rep in range(2):
                x = rng.normal(0, 1.2, (steps, 1, isz)).astype(np.float32) * np.float32(1 + 20 * rep)
                refs = sess.run(None, {"input": x})
                names = ["Y", "Y_h", "Y_c"][:len(refs)]
                layer = RnnLayer(op.lower(), v["W"], v["R"], v["B"], v["h0"], v["c0"],
                                 opts.get("direction", "forward"), opts.get("linear_before_reset", 0),
                                 not quantized_weights, not quantized_weights)
                for scratch in (None, RnnScratch(op.lower(), steps, isz, hid)):
                    got = rnn_directions(layer, _dequantized_input(x, (0.02, 3), "int8").reshape(steps, isz),
                                         scratch)
                    ok = all(_bits_equal(got[n], r) for n, r in zip(names, refs))
                    cases += 1
                    exact += ok
                    assert ok, f"{op} {steps}x{isz}x{hid} {opts} ({'numba' if scratch else 'numpy'}): " + ", ".join(
                        f"{n} max |diff| {float(np.abs(got[n].reshape(-1) - r.reshape(-1)).max()):.3g}"
                        for n, r in zip(names, refs))
    assert cases == exact and cases >= 240


def _random_int8_case(rng, op, k):
    steps, isz, hid = SHAPES[k % len(SHAPES)]
    if isz > 100:
        steps, isz, hid = 4, 20, 9
    opts = _options(op)[k % len(_options(op))]
    dtype = "int8" if k % 3 else "uint8"
    lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
    xq = (np.float32(10 ** rng.uniform(-2.5, -0.5)), int(rng.integers(lo, hi + 1)))
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    output = outs[k % len(outs)]
    oq = (np.float32(10 ** rng.uniform(-3, -1.3)), int(rng.integers(lo, hi + 1)))
    m, _ = rnn_model(op, steps, isz, hid, output=output, quantized_weights=bool(k % 4), seed=k, x_quant=xq,
                     out_quant=oq, dtype=dtype, **opts)
    return m, (steps, 1, isz)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_int8_outputs_equal_onnxruntime(op):
    """DQ -> LSTM/GRU -> Q -> DQ models imported and run by emu.graph equal onnxruntime bit for bit: 16 random models
    (shapes, options, Y / Y_h / Y_c, int8 and uint8, random scales and zero-points, int8 or float weights) x 4 inputs
    (one saturating the input quantization, one far beyond the gates' range) = 64 cases per op."""
    rng = np.random.default_rng(7 if op == "LSTM" else 8)
    cases = 0
    for k in range(16):
        m, shape = _random_int8_case(rng, op, k)
        model = load_onnx_qdq(m)
        sess = ort_session(m)
        for rep in range(4):
            x = rng.normal(0, 1.5, shape).astype(np.float32)
            if rep == 1:
                x = np.where(rng.random(shape) < 0.5, -1e3, 1e3).astype(np.float32)
            elif rep == 2:
                x *= np.float32(30)
            (ref,) = sess.run(None, {"input": x})
            got = run_model(model, x, "onnxruntime", "float32")["float"]
            assert _bits_equal(got, ref), f"case {k} input {rep}: {int((got != ref).sum())} of {ref.size} differ"
            cases += 1
    assert cases == 64


def test_batched_inputs_run_each_sample_alone():
    """A batch of inputs gives each sample's own result, also for a 1-step model (whose samples the runtime folds
    into one buffer)."""
    from emu.graph.onnx_qdq import ModelRunner
    for steps in (1, 5):
        m, _ = rnn_model("GRU", steps, 4, 3, output="Y", seed=3)
        runner = ModelRunner(load_onnx_qdq(m), "onnxruntime")
        xs = np.random.default_rng(steps).normal(0, 1, (3, steps, 1, 4)).astype(np.float32)
        batch = runner.run(xs, "float32")["output"]
        for i in range(3):
            assert np.array_equal(batch[i], runner.run(xs[i], "float32")["output"])


KWS_FORMS = [("LSTM", False, ["LSTM", "Gemm", "Transpose", "Squeeze"]),
             ("GRU", False, ["GRU", "Gemm", "Transpose", "Squeeze"]),
             ("LSTM", True, None), ("GRU", True, None),
             ("LSTM", True, ["Conv", "Relu", "Transpose", "Reshape", "LSTM", "Squeeze", "Gemm"])]


@pytest.mark.parametrize("op,conv_front,types", KWS_FORMS,
                         ids=["lstm-qdq-weights", "gru-qdq-weights", "conv-lstm-float", "conv-gru-float",
                              "conv-lstm-qdq-weights"])
def test_kws_model_from_quantize_static_equals_onnxruntime(op, conv_front, types):
    """features -> (Conv ->) LSTM/GRU(32) -> last step -> Gemm -> Softmax, quantize_static QDQ per channel with a
    calibration reader: the imported model's int8 output (and its dequantized logits) equal onnxruntime's on 20
    inputs; types None is quantize_static's default (the LSTM/GRU stays float with float weights)."""
    fm = kws_rnn_float_model(op, conv_front=conv_front, seed=4)
    shape = tuple(d.dim_value for d in fm.graph.input[0].type.tensor_type.shape.dim)
    rng = np.random.default_rng(5)
    q = quantize_qdq(fm, [rng.normal(0, 1, shape).astype(np.float32) for _ in range(8)], per_channel=True,
                     op_types_to_quantize=types)
    ops = {n.op_type for n in q.graph.node}
    assert op in ops
    model = load_onnx_qdq(q)
    kinds = [n.op for n in model.graph.nodes]
    assert kinds.count(f"onnx_{op.lower()}") == 1
    sess = ort_session(strip_softmax(q))
    for i in range(20):
        x = rng.normal(0, 1.5, shape).astype(np.float32)
        if i == 0:
            x[...] = 30.0
        (ref,) = sess.run(None, {"input": x})
        got = run_model(model, x, "onnxruntime", "float32")
        assert _bits_equal(dequantize_output(model, got["output"]), ref), f"input {i}"
        assert got["float"].shape == ref.shape and abs(float(got["float"].sum()) - 1) < 1e-5


REFUSED = [("LSTM", dict(attrs=dict(clip=3.0)), "LSTM attribute clip is unsupported"),
           ("GRU", dict(attrs=dict(activations=["Sigmoid", "Relu"])), r"GRU attribute activations = \['sigmoid', "
                                                                      r"'relu'\] is unsupported"),
           ("LSTM", dict(attrs=dict(layout=1)), "LSTM attribute layout = 1 is unsupported"),
           ("LSTM", dict(attrs=dict(input_forget=1)), "LSTM attribute input_forget = 1 is unsupported"),
           ("GRU", dict(attrs=dict(activation_alpha=[0.5])), "GRU attribute activation_alpha is unsupported")]


@pytest.mark.parametrize("op,kw,msg", REFUSED, ids=[m.split(" is")[0] for _, _, m in REFUSED])
def test_unsupported_attributes_are_named(op, kw, msg):
    m, _ = rnn_model(op, 3, 4, 2, **kw)
    with pytest.raises(N6Error, match=msg) as e:
        load_onnx_qdq(m)
    assert "\n" not in str(e.value)


def test_sequence_lens_and_batch_are_named():
    import onnx
    from onnx import helper, numpy_helper
    m, _ = rnn_model("GRU", 3, 4, 2)
    rnn = [n for n in m.graph.node if n.op_type == "GRU"][0]
    assert len(rnn.input) == 4                   # X, W, R, B
    rnn.input.append("lens")
    m.graph.initializer.append(numpy_helper.from_array(np.array([3], np.int32), "lens"))
    with pytest.raises(N6Error, match="GRU input sequence_lens is unsupported"):
        load_onnx_qdq(m)
    m, _ = rnn_model("LSTM", 3, 4, 2)
    m.graph.input[0].CopyFrom(helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [3, 2, 4]))
    with pytest.raises(N6Error, match=r"only \[seq_length, 1, input_size\] \(batch 1\) is supported"):
        load_onnx_qdq(m)


def test_cmsis_nn_profile_refuses_onnx_recurrent_layers():
    m, _ = rnn_model("LSTM", 3, 4, 2)
    with pytest.raises(N6Error, match="does not implement op onnx_lstm"):
        run_model(load_onnx_qdq(m), np.zeros((3, 1, 4), np.float32), "cmsis-nn", "float32")


def test_float_lstm_on_the_model_input_is_named():
    """quantize_static's default leaves an LSTM that reads the model input float (its input unquantized): refused
    in one line that says how to quantize it."""
    fm = kws_rnn_float_model("LSTM")
    q = quantize_qdq(fm, [np.random.default_rng(0).normal(0, 1, (1, 49, 10)).astype(np.float32) for _ in range(4)])
    with pytest.raises(N6Error, match="reaches LSTM 'lstm' before any QuantizeLinear.*unless op_types_to_quantize "
                                      "lists them"):
        load_onnx_qdq(q)
