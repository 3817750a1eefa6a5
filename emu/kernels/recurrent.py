"""Recurrent kernels with state: svdf_s8 (TFLite SVDF, int8) and lstm_s8 (TFLite UNIDIRECTIONAL_SEQUENCE_LSTM,
int8 x int8 -> int16 cell), bit-exact with tflite-micro's reference kernels (svdf_common.cc EvalIntegerSvdfReference,
lstm_eval.h/.cc EvalLstm<int8_t, int8_t, int16_t, int32_t>) as the installed tflite-micro computes them.

State: the layer's variable tensors (TFLite is_variable) are arrays the caller owns and passes in; the kernels update
them in place, one invocation (one "sample") after another, exactly as a tflite-micro interpreter keeps them between
Invoke() calls. `x` holds n samples back to back (a runtime batch folded into axis 0): sample k continues from the
state sample k-1 left, unless `reset` is set, in which case every sample starts from the initial state
(tflite-micro's ResetVariableTensors: int8 tensors filled with their zero-point, int16 tensors with 0).

svdf_s8 (per sample, batch rows b, filters f = unit * rank + r, memory slots m; state [B, F * M] of int16 or int8):
    state <- state shifted left by one value (the whole buffer, as TFLM does; each filter's last slot is then
             rewritten below)
    state[b, f*M + M-1] = wrapT(clamp_T(MBQM(sum_c wf[f, c] * (x[b, c] + input_offset), m1, s1)) + state_zp)
             (clamp to T's range first, then the zero-point, then the narrowing store wraps: what the installed
             tflite-micro does; a newer one adds the zero-point before the clamp)
    acc[b, f] = sum_m wt[f, m] * (state[b, f*M + m] - state_zp)             (int32, wrapping)
    out[b, u] = clamp_int8(MBQM(bias[u] + sum_r acc[b, u*rank + r], m2, s2) + out_zp)
    The fused activation is not applied (tflite-micro's int8 SVDF ignores it).

lstm_s8 (per sample, per batch row b, per step t; gates 0..3 = input, forget, cell, output; S state units):
    gate[g, s] = clamp16(clamp16(MBQM(bias[g, s] + sum_i w_in[g, s, i] * (x_t[i] + input_offset), M_in[g]))
                         + clamp16(MBQM(sum_j w_rec[g, s, j] * (h[b, j] + hidden_offset), M_rec[g])))    Q3.12
    gate = sigmoid16(gate) (g = input, forget, output) or tanh16 with shift 0 (g = cell)                   Q0.15
    c = clamp16(clamp16(MBQM(forget * c, M_f)) + clamp16(MBQM(input * cell_gate, M_i)))
    c = clamp(c, -clip, clip) when the layer clips (cell_clip >= 0; -1: no clipping)
    h[b, s] = clamp_int8(MBQM(tanh16(c) * output, M_o) + hidden_zp);  out[t, b or b, t, s] = h[b, s]
    MBQM = TFLite MultiplyByQuantizedMultiplier (emu.fixedpoint.requantize: double or single rounding);
    sigmoid16 / tanh16 = TFLite reference_integer_ops Logistic / Tanh on int16 (the 256-entry sigmoid table with
    linear interpolation), input multiplier 3 << shift (or 3 and a rounding right shift).
All accumulators are int32 with two's-complement wrap-around; no allocation (the caller owns state and scratch).
"""
import numpy as np

from emu.fixedpoint import requantize
from emu.jit import njit
from emu.kernels.backends import check_array, check_int, check_no_alias, check_rounding

# sigmoid(i / 24) in unsigned Q0.16, i = 0..255 (TFLite / CMSIS-NN sigmoid_table_uint16; tanh(x) = 2 sigmoid(2x) - 1)
SIGMOID_TABLE_U16 = np.array([
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149, 40794, 41432, 42064, 42688,
    43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369, 47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409,
    51865, 52311, 52745, 53169, 53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
    57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110,
    61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186,
    63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
    64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786, 64816, 64845, 64873, 64900,
    64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079, 65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208,
    65221, 65234, 65246, 65258, 65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
    65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433, 65438, 65442, 65445, 65449,
    65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474, 65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491,
    65493, 65495, 65497, 65498, 65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
    65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524,
    65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530,
    65530, 65530, 65531, 65531, 65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
    65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65535],
    dtype=np.int32)
SIGMOID_TABLE_U16.setflags(write=False)

INT16_MIN, INT16_MAX = -32768, 32767


# ---- int16 nonlinearities (TFLite reference_integer_ops Logistic / Tanh, int16 in and out) ------------------------

@njit(cache=True)
def _scaled_input(v, multiplier, right_shift):
    """(v * multiplier + round) >> right_shift in int32 (round = 2^(right_shift-1), or 0)."""
    rnd = np.int32(1 << (right_shift - 1)) if right_shift > 0 else np.int32(0)
    return np.int32(np.int32(np.int32(v) * np.int32(multiplier)) + rnd) >> np.int32(right_shift)


@njit(cache=True)
def sigmoid_s16(v, multiplier, right_shift):
    """Logistic on an int16 (Q3.12 for multiplier 3, shift 0) -> int16 Q0.15."""
    d = _scaled_input(v, multiplier, right_shift)
    a = np.int64(-d) if d < 0 else np.int64(d)
    uh = a >> np.int64(9)
    if uh >= 255:
        r = np.int64(0x7FFF << 10)
    else:
        ua = np.int64(SIGMOID_TABLE_U16[uh])
        ub = np.int64(SIGMOID_TABLE_U16[uh + 1])
        r = (ua << np.int64(9)) + (a & np.int64(0x1FF)) * (ub - ua)
    if d >= 0:
        r = r + np.int64(1 << 9)
    else:
        r = np.int64(1 << 25) - r + np.int64(1 << 9) - np.int64(1)
    return np.int16(r >> np.int64(10))


@njit(cache=True)
def tanh_s16(v, multiplier, right_shift):
    """Tanh on an int16 with the input scaling (multiplier, right_shift) -> int16 Q0.15."""
    d = _scaled_input(v, multiplier, right_shift)
    a = np.int64(-d) if d < 0 else np.int64(d)
    uh = a >> np.int64(8)
    if uh >= 255:
        r = np.int64(0xFFFF << 8)
    else:
        ua = np.int64(SIGMOID_TABLE_U16[uh])
        ub = np.int64(SIGMOID_TABLE_U16[uh + 1])
        r = (ua << np.int64(8)) + (a & np.int64(0xFF)) * (ub - ua)
    if d >= 0:
        r = r - np.int64(1 << 23) + np.int64(1 << 7)
    else:
        r = -r + np.int64(1 << 23) + np.int64(1 << 7) - np.int64(1)
    return np.int16(r >> np.int64(8))         # arithmetic shift of the int32 result (floor)


@njit(cache=True)
def _clamp(v, lo, hi):
    return lo if v < lo else (hi if v > hi else v)


# ---- SVDF ------------------------------------------------------------------------------------------------------

@njit(cache=True)
def _svdf_s8(x, wf, wt, bias, state, scratch, input_offset, m1, s1, state_zp, state_min, state_max, m2, s2,
             output_offset, rank, batch, reset, rounding, out):
    n_filter, n_input = wf.shape
    n_memory = wt.shape[1]
    n_unit = n_filter // rank
    n_samples = x.shape[0] // batch
    flat = state.reshape(state.size)
    total = flat.size
    span = np.int32(state_max - state_min + 1)
    init = np.int32(state_zp) if state_min == -128 else np.int32(0)
    in_off = np.int32(input_offset)
    for smp in range(n_samples):
        if reset:
            for i in range(total):
                flat[i] = init
        for i in range(total - 1):           # left shift of the whole state buffer by one value
            flat[i] = flat[i + 1]
        for b in range(batch):
            row = smp * batch + b
            base = b * n_filter * n_memory
            for f in range(n_filter):        # feature matmul into each filter's newest memory slot
                acc = np.int32(0)
                for c in range(n_input):
                    acc = np.int32(acc + np.int32(wf[f, c]) * (np.int32(x[row, c]) + in_off))
                v = _clamp(np.int32(requantize(acc, m1, s1, rounding)), np.int32(state_min), np.int32(state_max))
                v = np.int32(v + np.int32(state_zp))
                v = np.int32((v - np.int32(state_min)) & (span - np.int32(1))) + np.int32(state_min)   # the store
                flat[base + f * n_memory + n_memory - 1] = v
            for f in range(n_filter):        # time weights
                acc = np.int32(0)
                for m in range(n_memory):
                    acc = np.int32(acc + np.int32(wt[f, m]) * (np.int32(flat[base + f * n_memory + m])
                                                               - np.int32(state_zp)))
                scratch[f] = acc
            for u in range(n_unit):          # rank reduction, bias, rescale
                acc = np.int32(bias[u])
                for r in range(rank):
                    acc = np.int32(acc + scratch[u * rank + r])
                v = np.int32(requantize(acc, m2, s2, rounding)) + np.int32(output_offset)
                out[row, u] = np.int8(_clamp(v, np.int32(-128), np.int32(127)))


def bind_svdf_s8(x, wf, wt, bias, state, scratch, input_offset, m1, s1, state_zp, m2, s2, output_offset, rank,
                 reset, rounding, out):
    """Checks once; returns a no-argument callable running the SVDF on these arrays. x [n * B, I] int8 (n samples of
    B rows), wf [F, I] int8, wt [F, M] and state [B, F * M] both int16 or both int8, bias [F / rank] int32, scratch
    int32 [F], out [n * B, F / rank] int8."""
    x = check_array("x", x, np.int8, 2)
    wf = check_array("wf", wf, np.int8, 2)
    state = check_array("state", state, state.dtype if isinstance(state, np.ndarray) else np.int16, 2,
                        writable=True)
    if state.dtype not in (np.int16, np.int8):
        raise ValueError(f"svdf_s8: state must be int16 or int8, got {state.dtype}")
    wt = check_array("wt", wt, state.dtype, 2)
    bias = check_array("bias", bias, np.int32, 1)
    scratch = check_array("scratch", scratch, np.int32, 1, writable=True)
    out = check_array("out", out, np.int8, 2, writable=True)
    n_filter, n_input = wf.shape
    rank = check_int("rank", rank, 1, max(n_filter, 1))
    batch = state.shape[0]
    if n_filter % rank or wt.shape[0] != n_filter or state.shape[1] != n_filter * wt.shape[1] or \
            x.shape[1] != n_input or x.shape[0] % batch or out.shape != (x.shape[0], n_filter // rank) or \
            bias.shape != (n_filter // rank,) or scratch.shape != (n_filter,):
        raise ValueError(f"svdf_s8: shapes x {x.shape}, wf {wf.shape}, wt {wt.shape}, bias {bias.shape}, state "
                         f"{state.shape}, scratch {scratch.shape}, out {out.shape} (rank {rank}) do not agree")
    check_no_alias(out, x)
    lo, hi = (-128, 127) if state.dtype == np.int8 else (INT16_MIN, INT16_MAX)
    args = (x, wf, wt, bias, state, scratch, np.int32(check_int("input_offset", input_offset, -255, 255)),
            np.int32(m1), np.int32(s1), np.int32(check_int("state_zp", state_zp, lo, hi)), np.int32(lo), np.int32(hi),
            np.int32(m2), np.int32(s2), np.int32(check_int("output_offset", output_offset, -128, 127)),
            np.int32(rank), np.int32(batch), bool(reset), check_rounding(rounding), out)
    return lambda: _svdf_s8(*args)


# ---- LSTM ------------------------------------------------------------------------------------------------------

@njit(cache=True)
def _lstm_s8(x, w_in, w_rec, bias, fc_mult, fc_shift, mul_mult, mul_shift, input_offset, hidden_zp, cell_clip,
             tanh_mult, tanh_shift, batch, steps, time_major, hidden, cell, gates, reset, rounding, out):
    n_samples = x.shape[0]
    n_state = w_in.shape[1]
    n_input = w_in.shape[2]
    in_off = np.int32(input_offset)
    h_off = -np.int32(hidden_zp)
    lo16, hi16 = np.int32(INT16_MIN), np.int32(INT16_MAX)
    for smp in range(n_samples):
        if reset:
            for b in range(batch):
                for s in range(n_state):
                    hidden[b, s] = np.int8(hidden_zp)
                    cell[b, s] = np.int16(0)
        for b in range(batch):
            for t in range(steps):
                pos = t * batch + b if time_major else b * steps + t
                x_base = pos * n_input
                o_base = pos * n_state
                for g in range(4):
                    for s in range(n_state):
                        acc = np.int32(bias[g, s])
                        for i in range(n_input):
                            acc = np.int32(acc + np.int32(w_in[g, s, i]) * (np.int32(x[smp, x_base + i]) + in_off))
                        v1 = _clamp(np.int32(requantize(acc, fc_mult[g], fc_shift[g], rounding)), lo16, hi16)
                        acc = np.int32(0)
                        for j in range(n_state):
                            acc = np.int32(acc + np.int32(w_rec[g, s, j]) * (np.int32(hidden[b, j]) + h_off))
                        v2 = _clamp(np.int32(requantize(acc, fc_mult[4 + g], fc_shift[4 + g], rounding)), lo16, hi16)
                        z = _clamp(np.int32(v1 + v2), lo16, hi16)
                        if g == 2:
                            gates[g, s] = tanh_s16(z, 3, 0)
                        else:
                            gates[g, s] = sigmoid_s16(z, 3, 0)
                for s in range(n_state):
                    c1 = _clamp(np.int32(requantize(np.int32(gates[1, s]) * np.int32(cell[b, s]), mul_mult[0],
                                                    mul_shift[0], rounding)), lo16, hi16)
                    c2 = _clamp(np.int32(requantize(np.int32(gates[0, s]) * np.int32(gates[2, s]), mul_mult[1],
                                                    mul_shift[1], rounding)), lo16, hi16)
                    c = _clamp(np.int32(c1 + c2), lo16, hi16)
                    if cell_clip >= 0:
                        c = _clamp(c, -np.int32(cell_clip), np.int32(cell_clip))
                    cell[b, s] = np.int16(c)
                    th = np.int32(tanh_s16(c, tanh_mult, tanh_shift))
                    h = np.int32(requantize(th * np.int32(gates[3, s]), mul_mult[2], mul_shift[2], rounding))
                    h = _clamp(np.int32(h + np.int32(hidden_zp)), np.int32(-128), np.int32(127))
                    hidden[b, s] = np.int8(h)
                    out[smp, o_base + s] = np.int8(h)


def bind_lstm_s8(x, w_in, w_rec, bias, fc_mult, fc_shift, mul_mult, mul_shift, input_offset, hidden_zp, cell_clip,
                 tanh_mult, tanh_shift, steps, time_major, hidden, cell, gates, reset, rounding, out):
    """Checks once; returns a no-argument callable running the LSTM on these arrays. x [n, T*B*I] int8 (n samples),
    w_in [4, S, I], w_rec [4, S, S] int8 (gates input, forget, cell, output), bias [4, S] int32, fc_mult/fc_shift
    int32 [8] (input FCs then recurrent FCs), mul_mult/mul_shift int32 [3] (forget x cell, input x cell gate,
    tanh(cell) x output), hidden [B, S] int8, cell [B, S] int16, gates int16 [4, S] scratch, out [n, T*B*S] int8."""
    x = check_array("x", x, np.int8, 2)
    w_in = check_array("w_in", w_in, np.int8, 3)
    w_rec = check_array("w_rec", w_rec, np.int8, 3)
    bias = check_array("bias", bias, np.int32, 2)
    fc_mult = check_array("fc_mult", fc_mult, np.int32, 1)
    fc_shift = check_array("fc_shift", fc_shift, np.int32, 1)
    mul_mult = check_array("mul_mult", mul_mult, np.int32, 1)
    mul_shift = check_array("mul_shift", mul_shift, np.int32, 1)
    hidden = check_array("hidden", hidden, np.int8, 2, writable=True)
    cell = check_array("cell", cell, np.int16, 2, writable=True)
    gates = check_array("gates", gates, np.int16, 2, writable=True)
    out = check_array("out", out, np.int8, 2, writable=True)
    _, n_state, n_input = w_in.shape
    batch = hidden.shape[0]
    steps = check_int("steps", steps, 1)
    if w_in.shape[0] != 4 or w_rec.shape != (4, n_state, n_state) or bias.shape != (4, n_state) or \
            fc_mult.shape != (8,) or fc_shift.shape != (8,) or mul_mult.shape != (3,) or mul_shift.shape != (3,) or \
            hidden.shape != (batch, n_state) or cell.shape != (batch, n_state) or gates.shape != (4, n_state) or \
            x.shape[1] != steps * batch * n_input or out.shape != (x.shape[0], steps * batch * n_state):
        raise ValueError(f"lstm_s8: shapes x {x.shape}, w_in {w_in.shape}, w_rec {w_rec.shape}, bias {bias.shape}, "
                         f"hidden {hidden.shape}, cell {cell.shape}, out {out.shape} ({steps} steps) do not agree")
    check_no_alias(out, x)
    args = (x, w_in, w_rec, bias, fc_mult, fc_shift, mul_mult, mul_shift,
            np.int32(check_int("input_offset", input_offset, -255, 255)),
            np.int32(check_int("hidden_zp", hidden_zp, -128, 127)),
            np.int32(check_int("cell_clip", cell_clip, -1, INT16_MAX)),
            np.int32(check_int("tanh_mult", tanh_mult, 0, 3 << 15)),
            np.int32(check_int("tanh_shift", tanh_shift, 0, 31)),
            np.int32(batch), np.int32(steps), bool(time_major), hidden, cell, gates, bool(reset),
            check_rounding(rounding), out)
    return lambda: _lstm_s8(*args)
