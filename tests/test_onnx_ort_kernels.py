"""emu.kernels.ort against single onnxruntime QLinear operators (the MLAS kernels the fused QDQ graph runs),
fed random int8/uint8 tensors with extreme zero-points, saturation and padding. Exact equality."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

from emu.graph.ops.weighted import ort_conv_scales
from emu.kernels import ort as K
from onnx_builder import ORT_MISSING

ort = pytest.importorskip("onnxruntime", reason=ORT_MISSING)

TT = {np.int8: TensorProto.INT8, np.uint8: TensorProto.UINT8}


def _session(nodes, inputs, inits, opset_ms=True):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TT[t], list(s)) for n, t, s in inputs],
                          [helper.make_tensor_value_info("y", TT[inputs[0][1]], None)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    ops = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)] if opset_ms else [])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(helper.make_model(g, opset_imports=ops).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def _shift(dtype):
    return -128 if dtype == np.uint8 else 0


def _internal(a, dtype):
    return np.ascontiguousarray((a.astype(np.int16) + _shift(dtype)).astype(np.int8))


def _external(a, dtype):
    return (a.astype(np.int16) - _shift(dtype)).astype(dtype)


def _zp(rng, dtype):
    info = np.iinfo(dtype)
    return dtype(rng.choice([info.min, info.max, (info.min + info.max + 1) // 2, int(rng.integers(info.min, info.max + 1))]))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), dtype=st.sampled_from([np.int8, np.uint8]), kind=st.sampled_from(["conv", "dw", "grouped"]))
def test_conv_equals_qlinearconv(seed, dtype, kind):
    rng = np.random.default_rng(seed)
    cin = {"conv": int(rng.integers(1, 5)), "dw": int(rng.integers(1, 5)), "grouped": 2 * int(rng.integers(1, 3))}[kind]
    group = {"conv": 1, "dw": cin, "grouped": 2}[kind]
    cout = {"conv": int(rng.integers(1, 6)), "dw": cin * int(rng.integers(1, 3)), "grouped": 2 * int(rng.integers(1, 3))}[kind]
    kh, kw, sh, sw = (int(v) for v in rng.integers(1, 4, 4))
    dh, dw = (int(v) for v in rng.integers(1, 3, 2))
    pads = [int(v) for v in rng.integers(0, 3, 4)]
    h, w = int(rng.integers(kh * dh, 10)), int(rng.integers(kw * dw, 10))
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max + 1, (1, cin, h, w)).astype(dtype)
    wt = rng.integers(-128, 128, (cout, cin // group, kh, kw)).astype(np.int8)
    xs, ys = np.float32(rng.uniform(0.001, 0.2)), np.float32(rng.uniform(0.001, 0.5))
    ws = rng.uniform(0.0005, 0.05, cout).astype(np.float32) if rng.random() < 0.7 else np.full(1, 0.01, np.float32)
    bias = rng.integers(-20000, 20000, cout).astype(np.int32)
    xz, yz = _zp(rng, dtype), _zp(rng, dtype)
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], group=group,
                            kernel_shape=[kh, kw], strides=[sh, sw], dilations=[dh, dw], pads=pads)
    sess = _session([node], [("x", dtype, x.shape)], dict(xs=xs, xz=xz, w=wt, ws=ws, wz=np.zeros(ws.size, np.int8),
                                                           ys=ys, yz=yz, b=bias), opset_ms=False)
    (ref,) = sess.run(None, {"x": x})
    out = np.zeros((1, ref.shape[2], ref.shape[3], cout), np.int8)
    scale = ort_conv_scales(xs, ws if ws.size == cout else np.repeat(ws, cout), ys)
    xi = _internal(x.transpose(0, 2, 3, 1), dtype)
    zin, zout = int(xz) + _shift(dtype), int(yz) + _shift(dtype)
    geom = (sh, sw, pads[0], pads[1], dh, dw, -128, 127, out)
    if kind == "dw":
        K.depthwise_conv_ort_s8(xi, np.ascontiguousarray(wt.transpose(1, 2, 3, 0)), bias, scale, cout // cin, -zin, 0,
                                zout, *geom)
    else:
        K.conv_ort_s8(xi, np.ascontiguousarray(wt.transpose(0, 2, 3, 1)), bias, scale, -zin, 0, zout, *geom)
    assert np.array_equal(_external(out, dtype).transpose(0, 3, 1, 2), ref)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), dtype=st.sampled_from([np.int8, np.uint8]))
def test_avgpool_equals_qlinearaveragepool(seed, dtype):
    rng = np.random.default_rng(seed)
    k = [int(v) for v in rng.integers(1, 4, 2)]
    s = [int(v) for v in rng.integers(1, 3, 2)]
    p = [int(rng.integers(0, k[0])), int(rng.integers(0, k[1]))]
    cip = int(rng.integers(0, 2))
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max + 1, (1, 3, int(rng.integers(k[0] + 1, 9)), int(rng.integers(k[1] + 1, 9)))).astype(dtype)
    xs = np.float32(rng.uniform(0.005, 0.1))
    ys = xs if rng.random() < 0.5 else np.float32(xs * rng.uniform(0.3, 3))
    xz, yz = _zp(rng, dtype), _zp(rng, dtype)
    node = helper.make_node("QLinearAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"], domain="com.microsoft",
                            kernel_shape=k, strides=s, pads=p + p, count_include_pad=cip)
    (ref,) = _session([node], [("x", dtype, x.shape)], dict(xs=xs, xz=xz, ys=ys, yz=yz)).run(None, {"x": x})
    out = np.zeros((1, ref.shape[2], ref.shape[3], 3), np.int8)
    sh = _shift(dtype)
    K.avgpool_ort_s8(_internal(x.transpose(0, 2, 3, 1), dtype), xs, int(xz) + sh, ys, int(yz) + sh, int(yz),
                     k[0], k[1], s[0], s[1], p[0], p[1], cip, -128, 127, out)
    assert np.array_equal(_external(out, dtype).transpose(0, 3, 1, 2), ref)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_global_avgpool_equals_qlinearglobalaveragepool(dtype):
    rng = np.random.default_rng(4)
    info = np.iinfo(dtype)
    for trial in range(20):
        x = rng.integers(info.min, info.max + 1, (1, 5, int(rng.integers(1, 12)), int(rng.integers(1, 12)))).astype(dtype)
        if trial == 0:
            x[:] = info.max
        xs, ys = np.float32(rng.uniform(0.01, 0.1)), np.float32(rng.uniform(0.005, 0.1))
        xz, yz = _zp(rng, dtype), _zp(rng, dtype)
        node = helper.make_node("QLinearGlobalAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"],
                                domain="com.microsoft", channels_last=0)
        (ref,) = _session([node], [("x", dtype, x.shape)], dict(xs=xs, xz=xz, ys=ys, yz=yz)).run(None, {"x": x})
        out = np.zeros((1, 1, 1, 5), np.int8)
        sh = _shift(dtype)
        n = x.shape[2] * x.shape[3]
        scale = np.float32(xs / (ys * np.float32(n)))
        K.global_avgpool_ort_s8(_internal(x.transpose(0, 2, 3, 1), dtype), scale, -(int(xz) + sh), int(yz) + sh,
                                -128, 127, out)
        assert np.array_equal(_external(out, dtype).reshape(ref.shape), ref), trial


@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_elementwise_equals_qlinear_ops(op, dtype):
    """Fused QLinearAdd/QLinearMul (domain = the type ORT runs: 0 for int8, 128 for uint8)."""
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    n = 1031
    for trial in range(15):
        sa, sb, sc = (np.float32(v) for v in rng.uniform(0.003, 0.1, 3))
        za, zb, zc = (_zp(rng, dtype) for _ in range(3))
        node = helper.make_node(op, ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["y"], domain="com.microsoft")
        sess = _session([node], [("a", dtype, (n,)), ("b", dtype, (n,))], dict(sa=sa, za=za, sb=sb, zb=zb, sc=sc, zc=zc))
        a = rng.integers(info.min, info.max + 1, n).astype(dtype)
        b = rng.integers(info.min, info.max + 1, n).astype(dtype)
        (ref,) = sess.run(None, {"a": a, "b": b})
        out = np.zeros(n, np.int8)
        sh = _shift(dtype)
        K.qlinear_binary_ort_s8(_internal(a, dtype), _internal(b, dtype), sa, int(za) + sh, sb, int(zb) + sh, sc,
                                int(zc) + sh, op == "QLinearMul", -sh, -128, 127, out)
        assert np.array_equal(_external(out, dtype), ref), trial


def test_requantization_ties_round_half_even():
    """acc * 0.5 for acc = -5..5 rounds half to even (ORT; DESIGN §3.2: odd accs give -2,-2,0,0,2,2)."""
    acc = np.arange(-5, 6, dtype=np.int32)
    x = np.zeros((1, acc.size), np.int8)
    out = np.zeros((1, acc.size), np.int8)
    filt = np.zeros((acc.size, acc.size), np.int8)
    K.fully_connected_ort_s8(x, filt, acc, np.full(acc.size, 0.5, np.float32), 0, 0, 0, -128, 127, out)
    assert out[0].tolist() == [-2, -2, -2, -1, 0, 0, 0, 1, 2, 2, 2]


def test_wrappers_reject_bad_arrays():
    x = np.zeros((1, 4, 4, 2), np.int8)
    with pytest.raises(ValueError, match="C-contiguous int8"):
        K.global_avgpool_ort_s8(x.astype(np.int16), 0.5, 0, 0, -128, 127, np.zeros((1, 1, 1, 2), np.int8))
    with pytest.raises(ValueError, match="whole groups"):
        K.conv_ort_s8(np.zeros((1, 4, 4, 3), np.int8), np.zeros((2, 1, 1, 2), np.int8), np.zeros(2, np.int32),
                      np.ones(2, np.float32), 0, 0, 0, 1, 1, 0, 0, 1, 1, -128, 127, np.zeros((1, 4, 4, 2), np.int8))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_requantize_equals_qlinearconcat(dtype):
    """QLinearConcat re-quantizes each input (DQ -> Q, ties to even) into the output's scale/zero-point."""
    rng = np.random.default_rng(6)
    info = np.iinfo(dtype)
    for trial in range(15):
        n1, n2 = 257, 131
        s1, s2, so = (np.float32(v) for v in rng.uniform(0.005, 0.1, 3))
        if trial == 0:
            s2 = so
        z1, z2, zo = (_zp(rng, dtype) for _ in range(3))
        node = helper.make_node("QLinearConcat", ["so", "zo", "a", "s1", "z1", "b", "s2", "z2"], ["y"],
                                domain="com.microsoft", axis=1)
        sess = _session([node], [("a", dtype, (1, n1)), ("b", dtype, (1, n2))],
                        dict(so=so, zo=zo, s1=s1, z1=z1, s2=s2, z2=z2))
        a = rng.integers(info.min, info.max + 1, (1, n1)).astype(dtype)
        b = rng.integers(info.min, info.max + 1, (1, n2)).astype(dtype)
        (ref,) = sess.run(None, {"a": a, "b": b})
        sh = _shift(dtype)
        parts = []
        for x, s, z in ((a, s1, z1), (b, s2, z2)):
            out = np.zeros(x.size, np.int8)
            K.dq_requantize_ort_s8(_internal(x.reshape(-1), dtype), s, int(z) + sh, so, int(zo) + sh, out)
            parts.append(_external(out, dtype))
        assert np.array_equal(np.concatenate(parts)[None], ref), trial


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_softmax_equals_qlinearsoftmax(dtype):
    """QLinearSoftmax (opset-13 semantics, last axis) with rows incl. a dominant maximum (probability 1 saturates)."""
    rng = np.random.default_rng(9)
    info = np.iinfo(dtype)
    ys = np.float32(1 / 256) if dtype == np.int8 else np.float32(1 / 255)
    yz = dtype(-128 if dtype == np.int8 else 0)
    for trial in range(12):
        d, n = int(rng.integers(2, 40)), 40
        xs = np.float32(rng.uniform(0.01, 0.3))
        xz = dtype(int(rng.integers(info.min, info.max + 1)))
        node = helper.make_node("QLinearSoftmax", ["x", "xs", "xz", "ys", "yz"], ["y"], domain="com.microsoft",
                                opset=13, axis=-1)
        sess = _session([node], [("x", dtype, (n, d))], dict(xs=xs, xz=xz, ys=ys, yz=yz))
        x = rng.integers(info.min, info.max + 1, (n, d)).astype(dtype)
        x[0] = info.max
        x[1] = info.min
        x[1, 0] = info.max
        (ref,) = sess.run(None, {"x": x})
        out = np.zeros((n, d), np.int8)
        sh = _shift(dtype)
        K.softmax_ort_s8(_internal(x, dtype), K.softmax_lookup_table(xs, d), np.uint32(np.float32(1) / ys),
                         int(yz), -sh, out)
        assert np.array_equal(_external(out, dtype), ref), trial
