"""Flatbuffer reader/writer, TFLite importer (structure, errors), prepare (cmsis-nn params), inspect."""
import types

import numpy as np
import pytest

from emu.errors import N6Error
from emu.graph import Runtime, inspect_graph, load_tflite, prepare
from emu.graph import tflite_fb as fb
from emu.graph.ops.common import activation_range
from emu.graph.ir import Tensor
from tflite_builder import ACT, PAD, ModelBuilder, conv_weights

NO_KERNELS = types.SimpleNamespace()   # runtime validation happens before any kernel call


# ---- flatbuffer writer -> reader ------------------------------------------------------------------------

def test_flatbuffer_roundtrip_scalars_vectors_strings_tables():
    inner = fb.TableW().scalar(0, "i", -7).scalar(2, "f", 0.5)
    root = (fb.TableW().scalar(0, "I", 3).scalar(1, "b", -2).scalar(5, "q", -(1 << 40))
            .ref(2, fb.StringW("héllo")).ref(3, fb.VectorW([1, -2, 3], np.int32))
            .ref(4, fb.TablesW([inner, fb.TableW()])).ref(6, fb.VectorW(np.arange(5, dtype=np.uint8), np.uint8, 16)))
    buf = fb.serialize(root)
    t = fb.root_table(buf)
    assert t.scalar(0, "I", 0) == 3 and t.scalar(1, "b", 0) == -2 and t.scalar(5, "q", 0) == -(1 << 40)
    assert t.string(2) == "héllo"
    assert t.vector(3, np.int32).tolist() == [1, -2, 3]
    data_pos = t._deref(6) + 4
    assert data_pos % 16 == 0 and t.vector(6, np.uint8).tolist() == [0, 1, 2, 3, 4]
    kids = t.tables(4)
    assert len(kids) == 2
    assert kids[0].scalar(0, "i", 0) == -7 and kids[0].scalar(1, "i", 99) == 99 and kids[0].scalar(2, "f", 0) == 0.5
    assert kids[1].scalar(0, "i", 42) == 42          # absent field -> default
    assert t.string(9) is None and t.tables(9) == [] and t.vector(9, np.int32) is None


def test_reader_rejects_non_tflite_bytes():
    with pytest.raises(fb.FlatBufferError):
        fb.root_table(b"\x08\x00\x00\x00NOPE\x00\x00\x00\x00")
    with pytest.raises(N6Error, match="not a valid TFLite flatbuffer"):
        load_tflite(b"0123456789abcdef")


def test_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(N6Error, match="does not exist"):
        load_tflite(tmp_path / "nope.tflite")


# ---- importer errors ------------------------------------------------------------------------------------

def _fc_model(dtype_in=np.int8, weights_dtype=np.int8, op="FULLY_CONNECTED"):
    b = ModelBuilder()
    q = (np.float32(0.1), 3) if dtype_in == np.int8 else (None, None)
    x = b.tensor("x", (1, 4), dtype_in, *q)
    if weights_dtype == np.int8:
        w = b.tensor("w", (2, 4), np.int8, np.float32(0.01), 0, data=np.ones((2, 4), np.int8))
    else:
        w = b.tensor("w", (2, 4), weights_dtype, data=np.ones((2, 4), weights_dtype))
    y = b.tensor("y", (1, 2), dtype_in, *q)
    if op == "FULLY_CONNECTED":
        b.op(op, [x, w, -1], [y], fused_activation_function=0)
    else:
        b.op(op, [x], [y])
    return b.build([x], [y])


def test_float_model_says_it_must_be_int8_and_how():
    with pytest.raises(N6Error, match=r"model input 'x' is float32.*fully int8-quantized.*representative dataset"):
        load_tflite(_fc_model(dtype_in=np.float32, weights_dtype=np.float32))


def test_partially_quantized_model_names_the_layer():
    with pytest.raises(N6Error, match=r"layer 'y' \(FULLY_CONNECTED\) has float32 tensor 'w'.*int8"):
        load_tflite(_fc_model(weights_dtype=np.float32))


def test_unsupported_op_names_op_and_layer():
    b = ModelBuilder()
    x = b.tensor("x", (1, 4), np.int8, np.float32(0.1), 0)
    y = b.tensor("gather_out", (1, 4), np.int8, np.float32(1 / 256), -128)
    b.op("GATHER", [x, x], [y])
    with pytest.raises(N6Error, match=r"unsupported ops: GATHER \(1 layer: 'gather_out'\)") as e:
        load_tflite(b.build([x], [y]))
    assert "\n" not in str(e.value)


def test_wrong_input_dtype_and_shape_are_one_line_errors():
    rt = Runtime(load_tflite(_fc_model()), backend=NO_KERNELS)
    with pytest.raises(N6Error, match=r"input 'x' must be int8 \(quantized with scale 0.1, zero-point 3\), "
                                      r"got float32"):
        rt.run(np.zeros((1, 4), np.float32))
    with pytest.raises(N6Error, match=r"input 'x' must have shape \(1, 4\).*got \(1, 5\)"):
        rt.run(np.zeros((1, 5), np.int8))
    with pytest.raises(N6Error, match="unknown kernel backend"):
        Runtime(load_tflite(_fc_model()), backend="gpu")
    with pytest.raises(N6Error, match="unknown arithmetic profile"):
        Runtime(load_tflite(_fc_model()), profile="npu", backend=NO_KERNELS)


# ---- importer structure: paddings from SAME/VALID --------------------------------------------------------

@pytest.mark.parametrize("h,k,s,d,padding,top,bottom", [
    (49, 10, 2, 1, "SAME", 4, 5),     # MLPerf first conv: total pad 9 -> 4 before, 5 after
    (10, 3, 1, 1, "SAME", 1, 1),
    (10, 3, 1, 2, "SAME", 2, 2),      # dilation 2: effective kernel 5
    (7, 2, 2, 1, "SAME", 0, 1),
    (10, 3, 2, 1, "VALID", 0, 0),
])
def test_conv_paddings_follow_tflite_rule(h, k, s, d, padding, top, bottom):
    rng = np.random.default_rng(0)
    b = ModelBuilder()
    x = b.tensor("x", (1, h, 4, 2), np.int8, np.float32(0.1), 0)
    wt, bt = conv_weights(b, rng, "w", (3, k, 1, 2), 3, True, 0, np.float32(0.1))
    eff = (k - 1) * d + 1
    oh = (h + s - 1) // s if padding == "SAME" else (h - eff + s) // s
    y = b.tensor("y", (1, oh, 4, 3), np.int8, np.float32(0.2), 0)
    b.op("CONV_2D", [x, wt, bt], [y], padding=PAD[padding], stride_w=1, stride_h=s, dilation_h_factor=d,
         dilation_w_factor=1, fused_activation_function=ACT["RELU6"])
    node = load_tflite(b.build([x], [y])).nodes[0]
    assert (node.attrs["pad_top"], node.attrs["pad_bottom"]) == (top, bottom)
    assert node.attrs["activation"] == "RELU6" and node.attrs["dilation_h"] == d


def test_inconsistent_output_shape_is_reported():
    b = ModelBuilder()
    x = b.tensor("x", (1, 8, 8, 1), np.int8, np.float32(0.1), 0)
    y = b.tensor("y", (1, 5, 5, 1), np.int8, np.float32(0.1), 0)
    b.op("MAX_POOL_2D", [x], [y], padding=PAD["VALID"], stride_w=2, stride_h=2, filter_width=2, filter_height=2)
    with pytest.raises(N6Error, match=r"output is 5x5 but VALID padding gives 4x4"):
        load_tflite(b.build([x], [y]))


# ---- prepare: TFLM rules, hand-computed ------------------------------------------------------------------

def _t(scale, zp):
    return Tensor("t", (1,), np.dtype(np.int8), np.array([scale], np.float32), np.array([zp]))


def test_activation_ranges():
    assert activation_range("NONE", _t(0.05, -10)) == (-128, 127)
    assert activation_range("RELU", _t(0.05, -10)) == (-10, 127)
    assert activation_range("RELU6", _t(0.05, -10)) == (-10, 110)        # -10 + round(6 / 0.05)
    assert activation_range("RELU6", _t(0.01, 0)) == (0, 127)            # 600 saturates
    assert activation_range("RELU_N1_TO_1", _t(0.0625, 5)) == (-11, 21)  # 5 -/+ 16


def _two_input_model(op, s1, s2, so, z1=0, z2=0, zo=0):
    b = ModelBuilder()
    x = b.tensor("x", (1, 4), np.int8, np.float32(s1), z1)
    k = b.tensor("k", (1, 4), np.int8, np.float32(s2), z2, data=np.zeros((1, 4), np.int8))
    y = b.tensor("y", (1, 4), np.int8, np.float32(so), zo)
    b.op(op, [x, k], [y], fused_activation_function=0)
    return load_tflite(b.build([x], [y]))


def test_add_params_use_left_shift_20_scheme():
    g = _two_input_model("ADD", 0.5, 0.25, 1.0, 3, -4, 7)
    p = prepare(g).params["y"]
    # twice_max = 1.0: in1 0.5 -> (2^30, 0); in2 0.25 -> (2^30, -1); out 1/2^20 -> (2^30, -19)
    assert (p["in1_mult"], p["in1_shift"], p["in2_mult"], p["in2_shift"]) == (1 << 30, 0, 1 << 30, -1)
    assert (p["out_mult"], p["out_shift"], p["left_shift"]) == (1 << 30, -19, 20)
    assert (p["in1_offset"], p["in2_offset"], p["out_offset"]) == (-3, 4, 7)


def test_mul_params():
    p = prepare(_two_input_model("MUL", 0.5, 0.25, 0.5)).params["y"]
    assert (p["out_mult"], p["out_shift"]) == (1 << 30, -1)    # 0.5*0.25/0.5 = 0.25 = 2^30 * 2^(-1-31)


def test_softmax_params_from_float32_scale():
    b = ModelBuilder()
    x = b.tensor("x", (1, 12), np.int8, np.float32(0.14469251), 10)
    y = b.tensor("y", (1, 12), np.int8, np.float32(1 / 256), -128)
    b.op("SOFTMAX", [x], [y], beta=1.0)
    p = prepare(load_tflite(b.build([x], [y]))).params["y"]
    # TFLM widens the float32 scale: 0.14469251036643982 * 2^26 = 9709919.9... -> M * 2^(24-31)
    real = float(np.float32(0.14469251)) * 2.0 ** 26
    assert p["shift"] == 24 and p["diff_min"] == -124
    assert abs(p["mult"] * 2.0 ** (24 - 31) - real) <= 2.0 ** (24 - 31) / 2 + 1e-9
    y_bad = ModelBuilder()
    x2 = y_bad.tensor("x", (1, 12), np.int8, np.float32(0.1), 0)
    o2 = y_bad.tensor("y", (1, 12), np.int8, np.float32(0.1), 0)
    y_bad.op("SOFTMAX", [x2], [o2], beta=1.0)
    with pytest.raises(N6Error, match="scale 1/256 and zero-point -128"):
        prepare(load_tflite(y_bad.build([x2], [o2])))


def test_rounding_is_a_named_choice():
    g = _two_input_model("MUL", 0.5, 0.25, 0.5)
    assert prepare(g).rounding == "double" and prepare(g, rounding="single").rounding == "single"
    assert prepare(g, rounding="single").params["y"]["rounding"] == 1
    with pytest.raises(N6Error, match="no rounding 'floor'"):
        prepare(g, rounding="floor")


# ---- MLPerf model structure and inspect -------------------------------------------------------------------

def test_mlperf_import_structure(mlperf_model):
    g = load_tflite(mlperf_model)
    assert [n.op for n in g.nodes] == (["conv2d"] + ["depthwise_conv2d", "conv2d"] * 4
                                       + ["avg_pool", "reshape", "fully_connected", "softmax"])
    x = g.tensors[g.inputs[0]]
    assert x.shape == (1, 49, 10, 1) and x.dtype == np.int8 and int(x.zero_point[0]) == 83
    first = g.nodes[0].attrs
    assert (first["stride_h"], first["pad_top"], first["pad_bottom"], first["pad_left"]) == (2, 4, 5, 1)
    assert g.tensors[g.nodes[0].inputs[1]].per_channel
    assert g.source.startswith("tflite:")


def test_inspect_records_and_macs(mlperf_model):
    g = load_tflite(mlperf_model)
    layers = inspect_graph(g)
    assert len(layers) == 13
    for rec, node in zip(layers, g.nodes):
        assert rec["name"] == node.name and rec["op"] == node.op
        out = rec["outputs"][0]
        t = g.tensors[node.outputs[0]]
        assert out["shape"] == t.shape and out["dtype"] == "int8"
        assert out["scale"] == [float(s) for s in t.scale] and out["zero_point"] == [int(z) for z in t.zero_point]
    # conv 25x5x64 outputs x (10x4x1) taps; depthwise x9; pointwise x64; pool 25x5 taps per output; FC 12x64
    assert layers[0]["macs"] == 25 * 5 * 64 * 40
    assert layers[1]["macs"] == 25 * 5 * 64 * 9 and layers[2]["macs"] == 25 * 5 * 64 * 64
    assert layers[9]["macs"] == 64 * 125 and layers[11]["macs"] == 12 * 64 and layers[10]["macs"] == 0
    w = layers[0]["inputs"][1]
    assert w["constant"] and w["quant_axis"] == 0 and len(w["scale"]) == 64


def test_out_of_range_scales_name_the_layer():
    # add: twice_max / (2^20 * s_out) must be < 1 (TFLite's QuantizeMultiplierSmallerThanOneExp)
    g = _two_input_model("ADD", 0.5, 0.25, 1e-7)
    with pytest.raises(N6Error, match=r"layer 'y' \(add\): multiplier must be in \(0, 1\).*re-quantize"):
        prepare(g)
