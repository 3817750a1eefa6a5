"""SVDF and UNIDIRECTIONAL_SEQUENCE_LSTM (int8, issue 12) vs tflite-micro on every tensor, the output and the variable
state tensors after every invocation: random models (sizes, zero-points at the extremes, saturating inputs and
scales), state kept between invocations (tflite-micro's default, Runtime(state="keep")) or reset before each one
(Runtime(state="reset") vs Interpreter.reset()), a batched run (folded batch) equal to sequential invocations, a small
LSTM keyword-spotting model end to end, and the unsupported variants refused in one line."""
import numpy as np
import pytest

from emu.errors import N6Error
from emu.graph import Runtime, load_tflite
from tflite_builder import ModelBuilder

pytest.importorskip("tflite_micro",
                    reason='oracle unavailable: tflite-micro is not installed; pip install -e ".[test]"')
from emu.reference import TflmReference  # noqa: E402

TANH = 4


def _zp(rng):
    return int(rng.choice([-128, 127, rng.integers(-128, 128), rng.integers(-128, 128)]))


def _f32(v):
    return np.float32(v)


def inputs(rng, shape, n_random=6):
    """Random int8 samples plus all -128, all 127 and alternating extremes (saturating inputs), shuffled in."""
    size = int(np.prod(shape))
    x = rng.integers(-128, 128, size=(n_random + 3,) + tuple(shape)).astype(np.int8)
    x[n_random] = -128
    x[n_random + 1] = 127
    x[n_random + 2] = np.where(np.arange(size) % 2 == 0, -128, 127).astype(np.int8).reshape(shape)
    return x[rng.permutation(len(x))]


# ---- model builders ------------------------------------------------------------------------------------------------

def svdf_model(rng, batch=None, n_in=None, units=None, rank=None, memory=None, state_dtype=None, activation=None):
    """A random SVDF layer: returns (model bytes, input shape, state tensor name)."""
    b = ModelBuilder()
    batch = int(rng.integers(1, 4)) if batch is None else batch
    n_in = int(rng.integers(1, 13)) if n_in is None else n_in
    units = int(rng.integers(1, 7)) if units is None else units
    rank = int(rng.integers(1, 4)) if rank is None else rank
    memory = int(rng.integers(1, 9)) if memory is None else memory
    state_dtype = (np.int8 if rng.random() < 0.25 else np.int16) if state_dtype is None else state_dtype
    n_filter = units * rank
    s_in = _f32(rng.uniform(0.005, 0.2))
    x = b.tensor("x", (batch, n_in), np.int8, s_in, _zp(rng))
    s_wf = _f32(rng.uniform(0.001, 0.02))
    wf = rng.integers(-127, 128, (n_filter, n_in)).astype(np.int8)
    wft = b.tensor("weights_feature", (n_filter, n_in), np.int8, s_wf, 0, data=wf)
    if state_dtype == np.int16:
        s_state = _f32(s_in * s_wf * 10 ** rng.uniform(-1, 2.5))        # from saturating to fine
        state_zp = int(rng.choice([0, 0, rng.integers(-2000, 2000)]))
        lim = int(rng.choice([300, 32767]))
    else:
        s_state = _f32(s_in * s_wf * 10 ** rng.uniform(0.5, 3))
        state_zp = _zp(rng)
        lim = 127
    s_wt = _f32(10 ** rng.uniform(-5, -2))
    wt = rng.integers(-lim, lim + 1, (n_filter, memory)).astype(state_dtype)
    wtt = b.tensor("weights_time", (n_filter, memory), state_dtype, s_wt, 0, data=wt)
    bias = rng.integers(-(1 << 20), 1 << 20, units).astype(np.int32)
    bt = b.tensor("bias", (units,), np.int32, _f32(s_state * s_wt), 0, data=bias)
    st = b.tensor("state", (batch, memory * n_filter), state_dtype, s_state, state_zp, is_variable=True)
    o = b.tensor("out", (batch, units), np.int8, _f32(s_state * s_wt * 10 ** rng.uniform(0.5, 4)), _zp(rng))
    act = int(rng.choice([0, 1])) if activation is None else activation
    b.op("SVDF", [x, wft, wtt, bt, st], [o], rank=rank, fused_activation_function=act)
    return b.build([x], [o]), (batch, n_in), "state"


def add_lstm(b, rng, x, x_shape, s_x, n_state, time_major, name="lstm", cell_power=None, cell_clip=None,
             hidden_q=None, variant=None):
    """Add an UNIDIRECTIONAL_SEQUENCE_LSTM reading x; returns (output index, hidden name, cell name). `variant`
    adds an unsupported input (peephole, projection, layer_norm, cifg) for the refusal tests."""
    steps, batch, n_in = (x_shape[0], x_shape[1], x_shape[2]) if time_major else (x_shape[1], x_shape[0], x_shape[2])
    s_h, zh = (_f32(rng.uniform(0.004, 0.03)), _zp(rng)) if hidden_q is None else hidden_q
    ins = [x]
    for kind, depth, s_src in (("input", n_in, s_x), ("recurrent", n_state, s_h)):
        for gate in ("input", "forget", "cell", "output"):
            s_w = _f32(10 ** rng.uniform(-3, -1.2))
            w = rng.integers(-127, 128, (n_state, depth)).astype(np.int8)
            ins.append(b.tensor(f"{name}_{kind}_to_{gate}", (n_state, depth), np.int8, s_w, 0, data=w))
    ins += [-1, -1, -1]
    for gate in ("input", "forget", "cell", "output"):
        bias = rng.integers(-(1 << 14), 1 << 14, n_state).astype(np.int32)
        ins.append(b.tensor(f"{name}_{gate}_bias", (n_state,), np.int32, _f32(s_x * 0.01), 0, data=bias))
    ins += [-1, -1]
    h = b.tensor(f"{name}_h", (batch, n_state), np.int8, s_h, zh, is_variable=True)
    power = int(rng.choice([-15, -12, -11, -11, -10, -8, -5])) if cell_power is None else cell_power
    odd = cell_power is None and rng.random() < 0.2     # tflite-micro rounds a non-power-of-two cell scale's log2
    c = b.tensor(f"{name}_c", (batch, n_state), np.int16, _f32(2.0 ** power * (rng.uniform(0.75, 1.4) if odd else 1)),
                 0, is_variable=True)
    ins += [h, c, -1, -1, -1, -1]
    if variant == "peephole":
        ins[9] = b.tensor(f"{name}_peep", (n_state,), np.int16, _f32(0.01), 0,
                          data=np.ones(n_state, np.int16))
    elif variant == "projection":
        ins[16] = b.tensor(f"{name}_proj", (n_state, n_state), np.int8, _f32(0.01), 0,
                           data=np.ones((n_state, n_state), np.int8))
    elif variant == "layer_norm":
        ins[21] = b.tensor(f"{name}_ln", (n_state,), np.int16, _f32(0.01), 0, data=np.ones(n_state, np.int16))
    elif variant == "cifg":
        ins[1] = ins[5] = ins[12] = -1
    out_shape = (x_shape[0], x_shape[1], n_state)
    o = b.tensor(f"{name}_out", out_shape, np.int8, s_h, zh)
    clip = float(rng.choice([0.0, 0.0, rng.uniform(0.3, 4.0), 1e-6])) if cell_clip is None else cell_clip
    b.op("UNIDIRECTIONAL_SEQUENCE_LSTM", ins, [o], fused_activation_function=TANH if variant != "relu" else 1,
         cell_clip=clip, time_major=time_major)
    return o, f"{name}_h", f"{name}_c"


def lstm_model(rng, time_major=None, variant=None):
    """A random LSTM layer: returns (model bytes, input shape, [hidden, cell] names)."""
    b = ModelBuilder()
    batch, steps = int(rng.integers(1, 4)), int(rng.integers(1, 7))
    n_in, n_state = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    time_major = bool(rng.integers(0, 2)) if time_major is None else time_major
    shape = (steps, batch, n_in) if time_major else (batch, steps, n_in)
    s_x = _f32(rng.uniform(0.005, 0.2))
    x = b.tensor("x", shape, np.int8, s_x, _zp(rng))
    o, h, c = add_lstm(b, rng, x, shape, s_x, n_state, time_major, variant=variant)
    return b.build([x], [o]), shape, [h, c]


# ---- comparison ----------------------------------------------------------------------------------------------------

def _same(name, a, b, step):
    b = np.asarray(b).reshape(np.shape(a))
    bad = np.argwhere(a != b)
    assert not len(bad), f"invocation {step}: tensor {name!r}: {len(bad)} of {a.size} differ; first at " \
                         f"{tuple(bad[0])}: emu {a[tuple(bad[0])]} vs tflite-micro {b[tuple(bad[0])]}"


def check_invocations(model, xs, state_names, state="keep"):
    """emu vs tflite-micro one invocation at a time: every activation tensor and every state tensor after each.
    state "reset": emu Runtime(state="reset") against Interpreter.reset() before each Invoke()."""
    graph = load_tflite(model)
    rt = Runtime(graph, state=state)
    ref = TflmReference(model)
    for k, x in enumerate(xs):
        if state == "reset":
            ref._interp.reset()
        mine = rt.run_all(x)
        theirs = ref.run_all_one(x)
        for name in mine:
            _same(name, mine[name], theirs[name], k)
        live = {n: a for arrays in rt.states.values() for n, a in arrays.items()}
        assert sorted(live) == sorted(state_names)
        for name in state_names:
            _same(name, live[name], theirs[name], k)
    return rt


# ---- random models vs tflite-micro -----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(40))
def test_svdf_equals_tflm_with_state(seed):
    rng = np.random.default_rng(1000 + seed)
    model, shape, state = svdf_model(rng)
    check_invocations(model, inputs(rng, shape), [state])


@pytest.mark.parametrize("seed", range(40))
def test_lstm_equals_tflm_with_state(seed):
    rng = np.random.default_rng(2000 + seed)
    model, shape, states = lstm_model(rng, time_major=bool(seed % 2))
    check_invocations(model, inputs(rng, shape, n_random=4), states)


@pytest.mark.parametrize("op", ["SVDF", "LSTM"])
@pytest.mark.parametrize("seed", range(4))
def test_reset_mode_equals_tflm_reset_before_each_invoke(op, seed):
    rng = np.random.default_rng(3000 + seed)
    model, shape, states = svdf_model(rng) if op == "SVDF" else lstm_model(rng)
    states = [states] if isinstance(states, str) else states
    rt = check_invocations(model, inputs(rng, shape, n_random=3), states, state="reset")
    assert rt.state == "reset"


@pytest.mark.parametrize("op", ["SVDF", "LSTM"])
@pytest.mark.parametrize("seed", range(3))
def test_batched_runs_continue_the_state_like_sequential_invokes(op, seed):
    """A batch of N samples (folded into one kernel call when the batch dimension is 1) and then a second run()
    continue the state exactly like N + M sequential tflite-micro invocations; reset_state() starts over."""
    rng = np.random.default_rng(4000 + seed)
    if op == "SVDF":
        model, shape, _ = svdf_model(rng, batch=1 if seed < 2 else 2)
    else:
        model, shape, _ = lstm_model(rng, time_major=False)
    xs = inputs(rng, shape, n_random=5)
    ref = TflmReference(model)
    want = np.stack([ref.run(x) for x in xs])
    rt = Runtime(load_tflite(model))
    got = np.concatenate([rt.run(xs[:3]), rt.run(xs[3:])])
    _same("output", got, want, "batched")
    rt.reset_state()
    _same("output", rt.run(xs), want, "after reset_state")
    fresh = Runtime(load_tflite(model), state="reset").run(xs)
    _same("output", fresh, np.stack([TflmReference(model).run(x) for x in xs]), "reset mode, fresh interpreters")


def test_lstm_kws_model_end_to_end():
    """49 frames x 10 features -> LSTM(24) -> last step -> FULLY_CONNECTED(12) -> SOFTMAX, bit-exact on every tensor
    over several windows, with the state kept (tflite-micro's default) and reset per window."""
    rng = np.random.default_rng(7)
    b = ModelBuilder()
    shape = (1, 49, 10)
    s_x = _f32(0.1)
    x = b.tensor("features", shape, np.int8, s_x, -20)
    lstm_out, h, c = add_lstm(b, rng, x, shape, s_x, 24, False, cell_power=-11, cell_clip=0.0,
                              hidden_q=(_f32(1 / 128), 0))
    vec = [b.tensor(f"ss{k}", (3,), np.int32, data=np.array(v, np.int32))
           for k, v in enumerate(([0, 48, 0], [1, 49, 24], [1, 1, 1]))]
    last = b.tensor("last", (1, 24), np.int8, _f32(1 / 128), 0)
    b.op("STRIDED_SLICE", [lstm_out] + vec, [last], shrink_axis_mask=2)
    w = rng.integers(-127, 128, (12, 24)).astype(np.int8)
    wt = b.tensor("fc_w", (12, 24), np.int8, _f32(0.01), 0, data=w)
    bt = b.tensor("fc_b", (12,), np.int32, _f32(0.01 / 128), 0, data=rng.integers(-500, 500, 12).astype(np.int32))
    logits = b.tensor("logits", (1, 12), np.int8, _f32(0.05), 3)
    b.op("FULLY_CONNECTED", [last, wt, bt], [logits], fused_activation_function=0)
    probs = b.tensor("probs", (1, 12), np.int8, _f32(1 / 256), -128)
    b.op("SOFTMAX", [logits], [probs], beta=1.0)
    model = b.build([x], [probs])
    xs = np.clip(rng.normal(0, 40, (5,) + shape), -128, 127).astype(np.int8)
    xs[1] = 127
    rt = check_invocations(model, xs, [h, c])
    assert set(rt.run_all(xs[0])) >= {"features", "lstm_out", "last", "logits", "probs"}
    check_invocations(model, xs, [h, c], state="reset")


# ---- refusals ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant, feature", [("peephole", "peephole"), ("projection", "projection"),
                                              ("layer_norm", "layer normalization"), ("cifg", "CIFG"),
                                              ("relu", "cell activation RELU")])
def test_lstm_variants_refused_in_one_line(variant, feature):
    model, _, _ = lstm_model(np.random.default_rng(0), variant=variant)
    with pytest.raises(N6Error, match=rf"layer 'lstm_out' \(UNIDIRECTIONAL_SEQUENCE_LSTM\).*{feature}") as e:
        load_tflite(model)
    assert "\n" not in str(e.value)


def test_svdf_refusals_name_the_feature():
    rng = np.random.default_rng(0)
    model, _, _ = svdf_model(rng, activation=3)
    with pytest.raises(N6Error, match=r"layer 'out' \(SVDF\) uses fused activation RELU6"):
        load_tflite(model)
    b = ModelBuilder()
    x = b.tensor("x", (1, 4), np.int8, 0.1, 0)
    wf = b.tensor("wf", (2, 4), np.int8, 0.01, 0, data=np.ones((2, 4), np.int8))
    wt = b.tensor("wt", (2, 3), np.int16, 0.001, 0, data=np.ones((2, 3), np.int16))
    st = b.tensor("st", (1, 6), np.int16, 0.01, 0, is_variable=True)
    o = b.tensor("out", (1, 1), np.int8, 0.1, 0)
    b.op("SVDF", [x, wf, wt, -1, st], [o], rank=2)
    with pytest.raises(N6Error, match=r"layer 'out' \(SVDF\) has no bias"):
        load_tflite(b.build([x], [o]))


def test_recurrent_ops_refuse_other_profiles_and_state_modes():
    model, _, _ = svdf_model(np.random.default_rng(1))
    graph = load_tflite(model)
    with pytest.raises(N6Error, match="unknown recurrent state mode"):
        Runtime(graph, state="sometimes")
    with pytest.raises(N6Error, match=r"layer 'out' \(svdf\) runs under TFLite fixed-point arithmetic only"):
        Runtime(graph, profile="onnxruntime")


# ---- the multipliers' float arithmetic (random models rarely tell a double ratio from a float32 one) -----------------

def _requantize_double(v, m, s):
    """TFLite MultiplyByQuantizedMultiplier (double rounding) on an int64 array (the formula of emu.fixedpoint)."""
    v = (np.asarray(v, np.int64) << max(s, 0)) & 0xFFFFFFFF
    v = np.where(v >= 1 << 31, v - (1 << 32), v)
    x = (v * m + (1 << 30)) >> 31
    e = max(-s, 0)
    mask = (1 << e) - 1
    return (x >> e) + ((x & mask) > (mask >> 1) + (x < 0))


def _ratio_cases(rng, make_scales, values, limit, n=3):
    """n (scales, value) cases where QuantizeMultiplier of the ratio in double and with a float32 product
    requantize `value` differently (within +-limit): the cases that tell the two derivations apart."""
    from emu import fixedpoint as fx
    cases = []
    while len(cases) < n:
        a, b_, c = make_scales()
        m64 = fx.quantize_multiplier(float(a) * float(b_) / float(c))
        m32 = fx.quantize_multiplier(float(np.float32(a * b_)) / float(c))
        if m64 == m32:
            continue
        v = np.asarray(values(), np.int64)
        r64, r32 = _requantize_double(v, *m64), _requantize_double(v, *m32)
        hit = np.flatnonzero((r64 != r32) & (np.abs(r64) < limit))
        if hit.size:
            cases.append(((a, b_, c), int(v[hit[0]])))
    return cases


def _svdf_one(s_in, s_wf, wf, s_state, s_wt, s_out, bias, x_zp):
    b = ModelBuilder()
    x = b.tensor("x", (1, 1), np.int8, s_in, x_zp)
    wft = b.tensor("wf", (1, 1), np.int8, s_wf, 0, data=np.array([[wf]], np.int8))
    wtt = b.tensor("wt", (1, 1), np.int16, s_wt, 0, data=np.zeros((1, 1), np.int16))
    bt = b.tensor("bias", (1,), np.int32, _f32(s_state * s_wt), 0, data=np.array([bias], np.int32))
    st = b.tensor("state", (1, 1), np.int16, s_state, 0, is_variable=True)
    o = b.tensor("out", (1, 1), np.int8, s_out, 0)
    b.op("SVDF", [x, wft, wtt, bt, st], [o], rank=1)
    return b.build([x], [o])


def test_svdf_multipliers_use_double_ratios_like_tflm():
    """effective_scale_1 (into the state) and _2 (into the output): double(s_a) * double(s_b) / double(s_c)."""
    rng = np.random.default_rng(11)

    def scales1():
        s_in, s_wf = _f32(rng.uniform(0.005, 0.2)), _f32(rng.uniform(0.001, 0.02))
        return s_in, s_wf, _f32(s_in * s_wf * 10 ** rng.uniform(-0.5, 0))

    for (s_in, s_wf, s_state), acc in _ratio_cases(rng, scales1, lambda: 127 * np.arange(-255, 256), 32000):
        d = acc // 127
        model = _svdf_one(s_in, s_wf, 127, s_state, _f32(1e-3), _f32(1.0), 0, -128 if d >= 0 else 127)
        check_invocations(model, np.array([[[d + (-128 if d >= 0 else 127)]]], np.int8), ["state"])

    def scales2():
        s_state, s_wt = _f32(rng.uniform(0.0005, 0.01)), _f32(rng.uniform(1e-5, 1e-3))
        return s_state, s_wt, _f32(s_state * s_wt * 10 ** rng.uniform(0.5, 1))

    for (s_state, s_wt, s_out), bias in _ratio_cases(rng, scales2, lambda: rng.integers(-1200, 1200, 3000), 120):
        model = _svdf_one(_f32(0.1), _f32(0.01), 0, s_state, s_wt, s_out, bias, 0)
        check_invocations(model, np.zeros((1, 1, 1), np.int8), ["state"])


def test_lstm_gate_multipliers_use_double_ratios_like_tflm():
    """The gate FCs' QuantizeMultiplier(double(s_x) * double(s_w) / 2^-12): one cell-gate input weight, a Q0.15
    cell state (so one LSB of the gate shows), the other gates saturated open by their biases."""
    rng = np.random.default_rng(12)

    def scales():
        return _f32(rng.uniform(0.005, 0.2)), _f32(rng.uniform(0.001, 0.06)), _f32(2.0 ** -12)

    for (s_x, s_w, _), acc in _ratio_cases(rng, scales, lambda: 127 * np.arange(-255, 256), 2000):
        d = acc // 127
        zx = -128 if d >= 0 else 127
        b = ModelBuilder()
        x = b.tensor("x", (1, 1, 1), np.int8, s_x, zx)
        ins = [x]
        for kind in ("input", "recurrent"):
            for gate in ("input", "forget", "cell", "output"):
                v = (127 if gate == "cell" else 1) if kind == "input" else 0
                ins.append(b.tensor(f"{kind}_{gate}", (1, 1), np.int8, s_w, 0, data=np.array([[v]], np.int8)))
        ins += [-1, -1, -1]
        for gate in ("input", "forget", "cell", "output"):
            ins.append(b.tensor(f"{gate}_bias", (1,), np.int32, _f32(1e-4), 0,
                                data=np.array([0 if gate == "cell" else 20000], np.int32)))
        h = b.tensor("h", (1, 1), np.int8, _f32(1 / 128), 0, is_variable=True)
        c = b.tensor("c", (1, 1), np.int16, _f32(2.0 ** -15), 0, is_variable=True)
        ins += [-1, -1, h, c, -1, -1, -1, -1]
        o = b.tensor("out", (1, 1, 1), np.int8, _f32(1 / 128), 0)
        b.op("UNIDIRECTIONAL_SEQUENCE_LSTM", ins, [o], fused_activation_function=TANH, time_major=False)
        check_invocations(b.build([x], [o]), np.array([[[[d + zx]]]], np.int8), ["h", "c"])
