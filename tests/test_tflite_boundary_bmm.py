"""Issue 12 item 2 leftovers, against tflite-micro on every tensor:
- float32-input TFLite models (a leading QUANTIZE float32 -> int8; input_boundary "float32");
- BATCH_MATMUL int8 (two activations or a constant RHS, adj_x / adj_y, broadcast batch dimensions, ranks 2-4);
- buffers stored by offset after the flatbuffer (TFLite's large-model layout)."""
import numpy as np
import pytest

from emu.errors import N6Error
from emu.graph import Runtime, load_tflite
from tflite_builder import ModelBuilder

pytest.importorskip("tflite_micro",
                    reason='oracle unavailable: tflite-micro is not installed; pip install -e ".[test]"')
from emu.reference import TflmReference  # noqa: E402


def _zp(rng):
    return int(rng.choice([-128, 127, rng.integers(-128, 128), rng.integers(-128, 128)]))


def compare_all(model, inputs, input_boundary=None, graph=None):
    """emu (one batched run_all) vs tflite-micro (sample by sample) on every activation tensor emu computes.
    `inputs`: one array per model input, each with a leading batch axis. Returns emu's tensors."""
    graph = load_tflite(model) if graph is None else graph
    mine = Runtime(graph, input_boundary=input_boundary).run_all(list(inputs))
    ref = TflmReference(model)
    for k in range(len(inputs[0])):
        one = ref.run_all_one([x[k] for x in inputs])
        for name, a in mine.items():
            b = one[name].reshape(a[k].shape)
            assert a[k].dtype == b.dtype, f"tensor {name!r}: emu {a[k].dtype} vs tflite-micro {b.dtype}"
            bad = np.argwhere(a[k] != b)
            assert not len(bad), f"sample {k} tensor {name!r}: {len(bad)} of {b.size} differ; first at " \
                                 f"{tuple(bad[0])}: emu {a[k][tuple(bad[0])]} vs tflite-micro {b[tuple(bad[0])]}"
    return mine


def int8_samples(rng, shape, n_random=4):
    x = rng.integers(-128, 128, size=(n_random + 3,) + tuple(shape)).astype(np.int8)
    x[n_random] = -128
    x[n_random + 1] = 127
    x[n_random + 2] = np.where(np.arange(x[0].size) % 2 == 0, -128, 127).astype(np.int8).reshape(shape)
    return x


# ---- BATCH_MATMUL ----------------------------------------------------------------------------------------

def _bmm_shapes(rng):
    """(lhs stored shape, rhs stored shape, output shape, adj_x, adj_y) with random ranks 2-4 and broadcasting."""
    ra, rb = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    nbatch = max(ra, rb) - 2
    batch = [int(rng.integers(1, 4)) for _ in range(nbatch)]

    def own(r):
        dims = batch[len(batch) - (r - 2):] if r > 2 else []
        return [1 if rng.random() < 0.35 else d for d in dims]

    ba, bb = own(ra), own(rb)
    out_batch = list(np.broadcast_shapes(tuple(ba), tuple(bb)))
    m, k, n = (int(rng.integers(1, 7)) for _ in range(3))
    if rng.random() < 0.3:
        k = int(rng.integers(16, 64))       # longer sums: larger accumulators
    adj_x, adj_y = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))
    a = ba + ([k, m] if adj_x else [m, k])
    b = bb + ([n, k] if adj_y else [k, n])
    return a, b, out_batch + [m, n], adj_x, adj_y, k


def bmm_model(rng, constant_rhs):
    a_shape, b_shape, o_shape, adj_x, adj_y, k = _bmm_shapes(rng)
    mb = ModelBuilder()
    s_a, s_b = np.float32(10 ** rng.uniform(-2.5, -0.5)), np.float32(10 ** rng.uniform(-2.5, -0.5))
    a = mb.tensor("lhs", a_shape, np.int8, s_a, _zp(rng))
    if constant_rhs:
        w = rng.integers(-128, 128, size=b_shape).astype(np.int8)
        b = mb.tensor("rhs", b_shape, np.int8, s_b, _zp(rng), data=w)
    else:
        b = mb.tensor("rhs", b_shape, np.int8, s_b, _zp(rng))
    s_o = np.float32(s_a * s_b * np.sqrt(k) * 10 ** rng.uniform(0.7, 2.0))
    o = mb.tensor("out", o_shape, np.int8, s_o, _zp(rng))
    mb.op("BATCH_MATMUL", [a, b], [o], adj_x=adj_x, adj_y=adj_y)
    inputs = [a] if constant_rhs else [a, b]
    return mb.build(inputs, [o]), [a_shape] if constant_rhs else [a_shape, b_shape]


@pytest.mark.parametrize("seed", range(30))
def test_batch_matmul_two_activations_equals_tflm(seed):
    rng = np.random.default_rng(1000 + seed)
    model, shapes = bmm_model(rng, constant_rhs=False)
    compare_all(model, [int8_samples(rng, s) for s in shapes])


@pytest.mark.parametrize("seed", range(20))
def test_batch_matmul_constant_rhs_equals_tflm(seed):
    rng = np.random.default_rng(2000 + seed)
    model, shapes = bmm_model(rng, constant_rhs=True)
    compare_all(model, [int8_samples(rng, s) for s in shapes])


def test_batch_matmul_same_tensor_both_sides_equals_tflm():
    """x @ x^T (adj_y) with a [1, 5, 7] input: one activation read as both operands."""
    rng = np.random.default_rng(5)
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 5, 7), np.int8, np.float32(0.05), -3)
    o = mb.tensor("gram", (1, 5, 5), np.int8, np.float32(0.2), 10)
    mb.op("BATCH_MATMUL", [x, x], [o], adj_x=False, adj_y=True)
    compare_all(mb.build([x], [o]), [int8_samples(rng, (1, 5, 7), 8)])


def _row_for(acc, k):
    """int8 lhs row a [k] with a . [127]*(k-1)+[1] == acc (zero-points 0): the lhs of a crafted accumulator."""
    q, r = divmod(acc, 127)
    a = np.zeros(k, np.int64)
    a[-1] = r
    sign, q = (1, q) if q >= 0 else (-1, -q)
    full, rest = divmod(q, 127)
    a[:full] = sign * 127
    a[full] = sign * rest
    return a.astype(np.int8)


def test_batch_matmul_multiplier_uses_the_double_product():
    """tflite-micro's BATCH_MATMUL multiplier is QuantizeMultiplier(double(s_lhs) * double(s_rhs) / double(s_out)),
    not the older TFLite rule (the product rounded to float32 first). Scales for which the two products give different
    multipliers, and accumulators (+-306691) on which they round differently: emu must give tflite-micro's value."""
    from emu import fixedpoint as fx
    s_a, s_b, s_o = np.float32(0.03013362), np.float32(0.014445711), np.float32(5.933486)
    m32 = fx.quantize_multiplier(float(np.float32(s_a * s_b)) / float(s_o))
    m64 = fx.quantize_multiplier(float(s_a) * float(s_b) / float(s_o))
    accs = [306691, -306691]
    for acc in accs:      # the case is a real discriminator
        assert fx.requantize_double(np.int32(acc), np.int32(m32[0]), np.int32(m32[1])) != \
            fx.requantize_double(np.int32(acc), np.int32(m64[0]), np.int32(m64[1]))
    k = 64
    mb = ModelBuilder()
    a = mb.tensor("a", (1, 2, k), np.int8, s_a, 0)
    w = np.full((k, 1), 127, np.int8)
    w[-1] = 1
    b = mb.tensor("b", (k, 1), np.int8, s_b, 0, data=w)
    o = mb.tensor("o", (1, 2, 1), np.int8, s_o, 0)
    mb.op("BATCH_MATMUL", [a, b], [o])
    model = mb.build([a], [o])
    node = load_tflite(model).nodes[0]
    assert node.op == "matmul"
    x = np.stack([_row_for(acc, k) for acc in accs])[None, None]
    assert (x[0, 0].astype(np.int64) @ w.astype(np.int64))[:, 0].tolist() == accs
    out = compare_all(model, [x])["o"]
    want = [fx.requantize_double(np.int32(acc), np.int32(m64[0]), np.int32(m64[1])) for acc in accs]
    assert out[0, 0, :, 0].tolist() == want


def test_batch_matmul_bad_shapes_and_per_channel_are_one_line_errors():
    mb = ModelBuilder()
    a = mb.tensor("a", (2, 3, 4), np.int8, np.float32(0.1), 0)
    b = mb.tensor("b", (3, 4, 5), np.int8, np.float32(0.1), 0)
    o = mb.tensor("o", (2, 3, 5), np.int8, np.float32(0.1), 0)
    mb.op("BATCH_MATMUL", [a, b], [o])
    with pytest.raises(N6Error, match=r"layer 'o' \(BATCH_MATMUL\): lhs \[2, 3, 4\] x rhs \[3, 4, 5\].*does not give"):
        load_tflite(mb.build([a, b], [o]))
    mb = ModelBuilder()
    a = mb.tensor("a", (3, 4), np.int8, np.float32(0.1), 0)
    b = mb.tensor("b", (4, 2), np.int8, np.float32([0.1, 0.2]), [0, 0], quant_axis=1,
                  data=np.ones((4, 2), np.int8))
    o = mb.tensor("o", (3, 2), np.int8, np.float32(0.1), 0)
    mb.op("BATCH_MATMUL", [a, b], [o])
    with pytest.raises(N6Error, match=r"tensor 'b' is per-channel quantized") as e:
        load_tflite(mb.build([a], [o]))
    assert "\n" not in str(e.value)


# ---- float32 input: the model's own QUANTIZE float32 -> int8 ------------------------------------------------------

def float_samples(rng, shape, scale, zp, n_random=3):
    """float32 inputs for a QUANTIZE of (scale, zp): random values over (and past) the int8 range, exact ties
    (k + 0.5) * scale, near-ties float32((k + 0.5) * scale) +- 1 ulp, saturation, |x / scale| up to 2e9, +-0 and
    denormals. Values with |x / scale| >= 2^31 are left out: tflite-micro's float -> int32 cast is undefined there
    (x86 gives INT32_MIN + zero-point; emu saturates)."""
    size = int(np.prod(shape))
    s = np.float64(scale)
    k = np.arange(-130, 130, dtype=np.float64) - zp
    ties = ((k + 0.5) * s).astype(np.float32)
    special = np.array([0.0, -0.0, 1e-40, -1e-40, 127.5 * s, -128.5 * s, 300 * s, -300 * s, 2e9 * s, -2e9 * s,
                        1e6 * s, -1e6 * s, np.finfo(np.float32).tiny, -np.finfo(np.float32).tiny], np.float64)
    values = np.concatenate([ties, np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, np.float32(-np.inf)),
                             special.astype(np.float32)])
    values = np.concatenate([values, np.zeros(-len(values) % size, np.float32)])     # every value in some sample
    random = (rng.normal(0, 80 * s, (n_random, size)) - zp * s).astype(np.float32)
    rows = np.concatenate([random, values.reshape(-1, size)])
    return rows.reshape((len(rows),) + tuple(shape))


def float_input_model(rng, seed):
    """float32 x -> QUANTIZE -> an int8 op (AVERAGE_POOL_2D / CONV_2D / FULLY_CONNECTED / SOFTMAX) -> DEQUANTIZE
    (float32 output) or int8 output. Power-of-two scales (exact ties) on every third seed."""
    from tflite_builder import conv_weights
    mb = ModelBuilder()
    h, w, c = int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 4))
    scale = np.float32(2.0 ** int(rng.integers(-9, 0))) if seed % 3 == 0 else np.float32(10 ** rng.uniform(-3, 0))
    zp = int(rng.choice([-128, 127, 0, rng.integers(-128, 128)]))
    x = mb.tensor("x", (1, h, w, c), np.float32)
    q = mb.tensor("x_q", (1, h, w, c), np.int8, scale, zp)
    mb.op("QUANTIZE", [x], [q])
    kind = seed % 4
    s_o, z_o = np.float32(10 ** rng.uniform(-2.5, -0.5)), _zp(rng)
    if kind == 0:
        y = mb.tensor("y", (1, h, w, c), np.int8, scale, zp)
        mb.op("AVERAGE_POOL_2D", [q], [y], padding=0, stride_w=1, stride_h=1, filter_width=min(2, w),
              filter_height=min(2, h), fused_activation_function=0)
    elif kind == 1:
        wt, bt = conv_weights(mb, rng, "w", (3, 1, 1, c), 3, True, 0, scale)
        y = mb.tensor("y", (1, h, w, 3), np.int8, s_o, z_o)
        mb.op("CONV_2D", [q, wt, bt], [y], padding=1, stride_w=1, stride_h=1, dilation_w_factor=1,
              dilation_h_factor=1, fused_activation_function=0)
    elif kind == 2:
        r = mb.tensor("r", (1, h * w * c), np.int8, scale, zp)
        mb.op("RESHAPE", [q], [r])
        wdata = rng.integers(-127, 128, size=(4, h * w * c)).astype(np.int8)
        wt = mb.tensor("w", (4, h * w * c), np.int8, np.float32(0.01), 0, data=wdata)
        y = mb.tensor("y", (1, 4), np.int8, s_o, z_o)
        mb.op("FULLY_CONNECTED", [r, wt, -1], [y], fused_activation_function=0)
    else:
        y = mb.tensor("y", (1, h, w, c), np.int8, np.float32(1 / 256), -128)
        mb.op("SOFTMAX", [q], [y], beta=1.0)
    outs = [y]
    if seed % 2 == 0:
        shape = {0: (1, h, w, c), 1: (1, h, w, 3), 2: (1, 4), 3: (1, h, w, c)}[kind]
        f = mb.tensor("y_float", shape, np.float32)
        mb.op("DEQUANTIZE", [y], [f])
        outs = [f]
    return mb.build([x], outs), (1, h, w, c), scale, zp


@pytest.mark.parametrize("seed", range(32))
def test_float_input_models_equal_tflm(seed):
    """input_boundary float32: the int8 input buffer (the QUANTIZE's output) and every tensor after it equal
    tflite-micro's, ties and saturation included; the dequantized float32 output is bit-identical too."""
    rng = np.random.default_rng(3000 + seed)
    model, shape, scale, zp = float_input_model(rng, seed)
    graph = load_tflite(model)
    assert graph.inputs == ["x_q"] and graph.float_inputs == ("x_q",)
    assert all(n.op != "requantize" for n in graph.nodes)       # the QUANTIZE is absorbed, not a node
    x = float_samples(rng, shape, scale, zp)
    mine = compare_all(model, [x], input_boundary="float32", graph=graph)
    assert mine["x_q"].dtype == np.int8 and {-128, 127} <= set(mine["x_q"].reshape(-1).tolist())
    # input_boundary int8 (the default): the application's int8 buffer gives the same tensors
    rt = Runtime(graph, input_boundary="float32")
    buf = rt.quantize_inputs(x)
    again = Runtime(graph).run_all(buf)
    for name in mine:
        assert np.array_equal(mine[name], again[name]), name


def test_float_input_ties_round_half_away_like_tflm():
    """Exact ties x / scale = k + 0.5 (scale 2^-4): std::round (half away from zero), not half to even."""
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 64), np.float32)
    q = mb.tensor("q", (1, 64), np.int8, np.float32(0.0625), 3)
    mb.op("QUANTIZE", [x], [q])
    model = mb.build([x], [q])
    xs = ((np.arange(-32, 32) + 0.5) * 0.0625).astype(np.float32).reshape(1, 1, 64)
    out = compare_all(model, [xs], input_boundary="float32")["q"]
    k = np.arange(-32, 32)
    assert out.reshape(-1).tolist() == np.clip(np.where(k >= 0, k + 1, k) + 3, -128, 127).tolist()


def test_float_and_int8_inputs_together_equal_tflm():
    """Two inputs: float32 a (quantized by the model) and int8 b; ADD of both. input_boundary float32 quantizes a
    only; b is passed as its int8 buffer."""
    rng = np.random.default_rng(9)
    mb = ModelBuilder()
    a = mb.tensor("a", (1, 4, 6), np.float32)
    aq = mb.tensor("a_q", (1, 4, 6), np.int8, np.float32(0.02), -7)
    b = mb.tensor("b", (1, 4, 6), np.int8, np.float32(0.05), 12)
    mb.op("QUANTIZE", [a], [aq])
    y = mb.tensor("y", (1, 4, 6), np.int8, np.float32(0.08), -3)
    mb.op("ADD", [aq, b], [y], fused_activation_function=0)
    model = mb.build([a, b], [y])
    graph = load_tflite(model)
    assert graph.inputs == ["a_q", "b"] and graph.float_inputs == ("a_q",)
    xa = float_samples(rng, (1, 4, 6), np.float32(0.02), -7)
    xb = int8_samples(rng, (1, 4, 6), len(xa) - 3)
    compare_all(model, [xa, xb], input_boundary="float32", graph=graph)


def test_float_input_errors_are_one_line():
    def model(second_reader=None, q_dtype=np.int8, per_channel=False):
        mb = ModelBuilder()
        x = mb.tensor("x", (1, 2, 3), np.float32)
        q = mb.tensor("x_q", (1, 2, 3), q_dtype, np.float32([0.1, 0.2, 0.3]) if per_channel else np.float32(0.1),
                      [0, 0, 0] if per_channel else 0, quant_axis=2)
        mb.op("QUANTIZE", [x], [q])
        outs = [q]
        if second_reader:
            r = mb.tensor("r", (1, 2, 3), np.float32)
            mb.op(second_reader, [x], [r])
            outs.append(r)
        return mb.build([x], outs)

    for m, pattern in ((model("QUANTIZE"), r"model input 'x' is float32 and is read by 2 ops \(QUANTIZE, "
                                           r"QUANTIZE\).*fully int8-quantized"),
                       (model(q_dtype=np.int16), r"layer 'x_q' \(QUANTIZE\) quantizes the float32 input 'x' into "
                                                 r"int16"),
                       (model(per_channel=True), r"\(per-channel\); only per-tensor int8")):
        with pytest.raises(N6Error, match=pattern) as e:
            load_tflite(m)
        assert "\n" not in str(e.value)
    # an int8 model refuses the float32 boundary; a float-input model refuses float64 and NaN features
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 4), np.int8, np.float32(0.1), 0)
    y = mb.tensor("y", (1, 4), np.int8, np.float32(0.1), 0)
    mb.op("QUANTIZE", [x], [y])
    with pytest.raises(N6Error, match="inputs are int8 buffers; pass int8 input"):
        Runtime(load_tflite(mb.build([x], [y])), input_boundary="float32")
    rt = Runtime(load_tflite(model()), input_boundary="float32")
    with pytest.raises(N6Error, match="must be float32, got float64"):
        rt.run(np.zeros((1, 2, 3)))
    with pytest.raises(N6Error, match="NaN"):
        rt.run(np.full((1, 2, 3), np.nan, np.float32))


def test_cli_run_float_input_tflite(tmp_path):
    """`n6emu run --input-boundary float32` on a float-input TFLite model: the output equals the Runtime's (and so
    tflite-micro's); int8 (the default) takes the application's int8 buffer; --dump records the int8 input buffer."""
    import io

    from emu.cli import main
    rng = np.random.default_rng(4)
    model, shape, scale, zp = float_input_model(rng, 2)     # FULLY_CONNECTED, float32 output
    path = tmp_path / "f.tflite"
    path.write_bytes(model)
    x = float_samples(rng, shape, scale, zp)
    np.save(tmp_path / "x.npy", x)
    out, err = io.StringIO(), io.StringIO()
    code = main(["run", str(path), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "o.npy"),
                 "--input-boundary", "float32", "--dump", str(tmp_path / "t.npz")], out=out, err=err)
    assert code == 0, err.getvalue()
    graph = load_tflite(model)
    want = Runtime(graph, input_boundary="float32").run_all(x)
    assert graph.outputs == ["y_float"] and want["y_float"].dtype == np.float32
    assert np.array_equal(np.load(tmp_path / "o.npy"), want["y_float"])
    ref = TflmReference(model)
    for k in range(len(x)):
        assert np.array_equal(ref.run_all_one([x[k]])["y_float"].reshape(want["y_float"][k].shape), want["y_float"][k])
    from emu.trace import Trace
    t = Trace.load(tmp_path / "t.npz")
    assert np.array_equal(np.asarray(t["input_buffer"]).reshape(want["x_q"].shape), want["x_q"])
    np.save(tmp_path / "q.npy", want["x_q"])
    code = main(["run", str(path), "--input", str(tmp_path / "q.npy"), "--output", str(tmp_path / "o8.npy")],
                out=io.StringIO(), err=err)
    assert code == 0, err.getvalue()
    assert np.array_equal(np.load(tmp_path / "o8.npy"), want["y_float"])


# ---- buffers stored by offset (TFLite's large-model layout) -----------------------------------------------------

def constant_rich_model(rng):
    """int8 x -> CONV_2D (per-channel) -> RESHAPE -> FULLY_CONNECTED (bias) -> BATCH_MATMUL with a constant rhs."""
    from tflite_builder import conv_weights
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 5, 4, 3), np.int8, np.float32(0.05), -4)
    wt, bt = conv_weights(mb, rng, "cw", (6, 3, 3, 3), 6, True, 0, np.float32(0.05))
    c = mb.tensor("c", (1, 5, 4, 6), np.int8, np.float32(0.1), 7)
    mb.op("CONV_2D", [x, wt, bt], [c], padding=0, stride_w=1, stride_h=1, dilation_w_factor=1, dilation_h_factor=1,
          fused_activation_function=1)
    r = mb.tensor("r", (5, 24), np.int8, np.float32(0.1), 7)
    mb.op("RESHAPE", [c], [r], new_shape=[5, 24])
    fw = rng.integers(-127, 128, size=(8, 24)).astype(np.int8)
    fwt = mb.tensor("fw", (8, 24), np.int8, np.float32(0.01), 0, data=fw)
    fb_ = mb.tensor("fb", (8,), np.int32, np.float32(0.001), 0, data=rng.integers(-3000, 3000, 8).astype(np.int32))
    f = mb.tensor("f", (5, 8), np.int8, np.float32(0.2), -2)
    mb.op("FULLY_CONNECTED", [r, fwt, fb_], [f], fused_activation_function=0)
    bw = rng.integers(-128, 128, size=(8, 3)).astype(np.int8)
    bwt = mb.tensor("bw", (8, 3), np.int8, np.float32(0.03), 5, data=bw)
    y = mb.tensor("y", (5, 3), np.int8, np.float32(0.4), 1)
    mb.op("BATCH_MATMUL", [f, bwt], [y])
    return mb


@pytest.mark.parametrize("seed", range(3))
def test_buffers_by_offset_read_like_the_normal_layout(seed):
    rng = np.random.default_rng(4000 + seed)
    mb = constant_rich_model(rng)
    out = len(mb.tensors) - 1
    normal, by_offset = mb.build([0], [out]), mb.build([0], [out], buffers_by_offset=True)
    from emu.graph import tflite_fb as fb
    bufs = fb.root_table(by_offset).tables(fb.MODEL["buffers"])
    assert sum(b.scalar(fb.BUFFER["offset"], "Q", 0) > 1 for b in bufs) == 5      # every constant is outside
    assert all(b.vector(fb.BUFFER["data"], np.uint8) is None for b in bufs)
    g1, g2 = load_tflite(normal), load_tflite(by_offset)
    for name, t in g1.tensors.items():
        assert (t.data is None) == (g2.tensors[name].data is None), name
        if t.data is not None:
            assert t.data.dtype == g2.tensors[name].data.dtype and np.array_equal(t.data, g2.tensors[name].data)
    x = int8_samples(rng, (1, 5, 4, 3), 5)
    # the by-offset graph vs tflite-micro running the normal layout (tflite-micro reads buffers' data only)
    mine = compare_all(normal, [x], graph=g2)
    assert np.array_equal(Runtime(g1).run_all(x)["y"], mine["y"])


def test_buffers_by_offset_litert_reads_them_alike():
    """LiteRT (ai_edge_litert) reads the large-model layout: its outputs on the by-offset file equal its outputs on
    the normal one. (tflite-micro does not: it reads Buffer.data only and silently runs with wrong constants, so
    emu's bit-exactness is checked against tflite-micro on the normal layout, above; LiteRT is no bit-exact oracle.)"""
    litert = pytest.importorskip("ai_edge_litert.interpreter",
                                 reason="oracle unavailable: ai_edge_litert (LiteRT) is not installed")
    rng = np.random.default_rng(7)
    mb = constant_rich_model(rng)
    out = len(mb.tensors) - 1
    x = int8_samples(rng, (1, 5, 4, 3), 4)
    results = []
    for model in (mb.build([0], [out]), mb.build([0], [out], buffers_by_offset=True)):
        it = litert.Interpreter(model_content=model,   # the reference kernels (XNNPACK refuses this graph)
                                experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
        it.allocate_tensors()
        ys = []
        for k in range(len(x)):
            it.set_tensor(it.get_input_details()[0]["index"], x[k])
            it.invoke()
            ys.append(np.array(it.get_tensor(it.get_output_details()[0]["index"]), copy=True))
        results.append(np.stack(ys))
    assert np.array_equal(results[0], results[1])


def test_buffer_offset_outside_the_file_is_one_line():
    import struct
    mb = constant_rich_model(np.random.default_rng(0))
    model = mb.build([0], [len(mb.tensors) - 1], buffers_by_offset=True)
    for bad in (model[:-5],                                            # truncated: the last buffer runs past the end
                model.replace(struct.pack("<Q", len(model) - 24), struct.pack("<Q", 1 << 62), 1)):
        assert bad != model and len(bad) >= len(model) - 5     # the last buffer (24 bytes) moved 2^62 bytes away
        with pytest.raises(N6Error, match=r"buffer \d+ is stored at offset \d+ with size \d+, past the end of the "
                                          r"\d+-byte file") as e:
            load_tflite(bad)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("bias", [759, -759])
def test_fully_connected_multiplier_uses_the_double_product(bias):
    """A per-tensor FULLY_CONNECTED: the installed tflite-micro forms s_in * s_w in double (GetQuantizedConvolution-
    Multipler since 2023); with the product rounded to float32 first, acc = 759 would give 90 instead of 89."""
    from emu import fixedpoint as fx
    sx, sw, so = np.float32(0.12504163), np.float32(0.028697228), np.float32(0.030452063)
    old = fx.quantize_multiplier(float(np.float32(sx * sw)) / float(so))
    assert fx.per_tensor_fc_multiplier(sx, sw, so) != old          # the scales discriminate the two rules
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 4), np.int8, sx, 0)
    w = mb.tensor("w", (1, 4), np.int8, sw, 0, data=np.zeros((1, 4), np.int8))
    b = mb.tensor("b", (1,), np.int32, float(np.float32(sx * sw)), 0, data=np.array([bias], np.int32))
    y = mb.tensor("y", (1, 1), np.int8, so, 0)
    mb.op("FULLY_CONNECTED", [x, w, b], [y])
    model = mb.build([x], [y])
    ref = TflmReference(model).run(np.zeros((1, 4), np.int8))
    got = Runtime(load_tflite(model)).run(np.zeros((1, 1, 4), np.int8))
    assert ref.ravel()[0] == (89 if bias > 0 else -89) and np.array_equal(got.ravel(), ref.ravel())


@pytest.mark.parametrize("first_offset", [(1 << 31) + 4096, (1 << 32) + 12345])
def test_buffers_stored_past_2_and_4_gb(tmp_path, first_offset):
    """A model file of more than 2 (4) GB, its constants stored past 2^31 (2^32) bytes (a sparse file: the hole costs
    no disk): emu memory-maps it and reads the same constants as the normal layout; LiteRT runs it alike."""
    rng = np.random.default_rng(9)
    mb = constant_rich_model(rng)
    out = len(mb.tensors) - 1
    path = mb.write_sparse(tmp_path / "large.tflite", [0], [out], first_offset)
    assert path.stat().st_size > first_offset
    g1, g2 = load_tflite(mb.build([0], [out])), load_tflite(str(path))
    for name, t in g1.tensors.items():
        if t.data is not None:
            assert np.array_equal(t.data, g2.tensors[name].data), name
    x = int8_samples(rng, (1, 5, 4, 3), 3)
    ours = Runtime(g2).run(x)
    assert np.array_equal(ours, Runtime(g1).run(x))
    litert = pytest.importorskip("ai_edge_litert.interpreter",
                                 reason="oracle unavailable: ai_edge_litert (LiteRT) is not installed")
    it = litert.Interpreter(model_path=str(path), experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    for k in range(len(x)):
        it.set_tensor(it.get_input_details()[0]["index"], x[k])
        it.invoke()
        assert np.array_equal(it.get_tensor(it.get_output_details()[0]["index"]), ours[k])
