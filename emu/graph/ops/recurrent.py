"""Recurrent ops with state: svdf (TFLite SVDF) and lstm (TFLite UNIDIRECTIONAL_SEQUENCE_LSTM, int8 x int8 -> int16
cell), as tflite-micro's reference kernels compute them (kernels: emu.kernels.recurrent).

State. The ops' variable tensors (node.attrs["state"]: the TFLite tensor names) are not graph activations: the
runtime owns one RecurrentState per layer (new_state), shared by all its plans, and passes it to bind. Like a
tflite-micro interpreter, which keeps variable tensors in its arena between Invoke() calls (a firmware calling
ai_run / Invoke once per window), the runtime keeps the state across samples and across run() calls by default
(Runtime(state="keep")); Runtime(state="reset") starts every sample from the initial state (tflite-micro's
ResetVariableTensors before each Invoke: int8 tensors hold their zero-point, int16 ones 0), which is what a
stateless Keras model computes for each window. Runtime.reset_state() resets by hand.

prepare (all float math, as tflite-micro's Prepare does it):
svdf: m1, s1 = QuantizeMultiplier(double(s_in) * double(s_wf) / double(s_state)); m2, s2 = QuantizeMultiplier(
      double(s_state) * double(s_wt) / double(s_out)) (double throughout in the installed tflite-micro: a float32
      ratio, as older sources have it, differs in the last bits of the multiplier and changes state values).
lstm: gate FCs output Q3.12 int16: QuantizeMultiplier(double(s_x) * double(s_w) / 2^-12) (input FCs, with the gate
      bias; the product is double in the installed tflite-micro, not float32) and the same with s_h (recurrent FCs,
      no bias); the three elementwise products use the gates' output scale q = 2^-15 (exactly, in the installed
      tflite-micro; older sources have the literal 0.00003051757, which changes cell states by one LSB):
      QuantizeMultiplier(double(a) * double(b) / double(c)) of (q, s_cell, s_cell), (q, q, s_cell), (q, q, s_hidden);
      the cell scale's power of two p = round(logf(s_cell) / logf(2)) (tflite-micro accepts any scale, not only
      powers of two; the importer keeps p within -40..2) sets tanh's input scaling (3 << (12 + p), or 3 and a right
      shift by -(12 + p)); the cell clip is
      int16(clamp(double(clip) / double(s_cell))), truncated. The output tensor receives a raw copy of each step's
      hidden state (its own scale and zero-point are not used, as in tflite-micro). No intermediate tensors are read.
"""
from dataclasses import dataclass, field

import numpy as np

from ... import fixedpoint as fx
from ...errors import N6Error
from .common import Params, scale, zp

OPS = ("svdf", "lstm")
STATEFUL = True
# the gates' nonlinear output scale (Q0.15) as the installed tflite-micro uses it (2^-15 exactly; checked by
# tests/test_tflite_recurrent.py: the older literal float32(0.00003051757) mismatches)
LSTM_NONLINEAR_OUTPUT_SCALE = np.float32(2.0 ** -15)
LSTM_GATE_SCALE = np.float32(2.0 ** -12)


class RecurrentState:
    """A recurrent layer's variable tensors: arrays (TFLite tensor name -> array of the tensor's shape and dtype,
    updated in place by the kernel) and each one's initial value (int8: its zero-point, int16: 0)."""

    def __init__(self, specs):
        self.arrays = {name: np.full(shape, init, dtype) for name, (shape, dtype, init) in specs.items()}
        self.initial = {name: init for name, (_, _, init) in specs.items()}

    def reset(self):
        for name, a in self.arrays.items():
            a.fill(self.initial[name])


@dataclass
class SvdfParams(Params):
    wf: np.ndarray               # int8 [F, I]
    wt: np.ndarray               # int16 or int8 [F, M]
    bias: np.ndarray             # int32 [F / rank]
    rank: int
    input_offset: int            # -zp_in
    m1: int
    s1: int
    state_zp: int
    m2: int
    s2: int
    output_offset: int           # +zp_out
    rounding: int                # fx.DOUBLE_ROUNDING | fx.SINGLE_ROUNDING
    state: dict = field(default_factory=dict)    # state tensor name -> (shape, dtype, initial value)


@dataclass
class LstmParams(Params):
    w_in: np.ndarray             # int8 [4, S, I], gates input, forget, cell, output
    w_rec: np.ndarray            # int8 [4, S, S]
    bias: np.ndarray             # int32 [4, S]
    fc_mult: np.ndarray          # int32 [8]: input FCs then recurrent FCs
    fc_shift: np.ndarray
    mul_mult: np.ndarray         # int32 [3]: forget x cell, input x cell gate, tanh(cell) x output
    mul_shift: np.ndarray
    input_offset: int
    hidden_zp: int
    cell_clip: int               # -1: no clipping
    tanh_mult: int
    tanh_shift: int
    steps: int
    batch: int
    time_major: bool
    rounding: int
    hidden: str = ""             # state tensor names
    cell: str = ""
    state: dict = field(default_factory=dict)


def _rounding(node, profile):
    rq = profile.requantizer
    if not profile.fixed_point or not rq.standard or rq.derivation != "tflite":
        raise N6Error(f"layer {node.name!r} ({node.op}) runs under TFLite fixed-point arithmetic only (double or "
                      f"single rounding), not profile {profile.name!r} with requantizer {rq.name!r}; use profile "
                      f"'cmsis-nn'")
    return rq.mode


def _quantize(real, rounding):
    return fx.quantize_multiplier(real, single_rounding=rounding == fx.SINGLE_ROUNDING)


def _state_spec(graph, name):
    t = graph.tensors[name]
    dtype = np.dtype(t.dtype)
    return tuple(t.shape), dtype, (zp(t) if dtype == np.int8 else 0)


def prepare(graph, node, profile):
    rounding = _rounding(node, profile)
    T = graph.tensors
    x, o = T[node.inputs[0]], T[node.outputs[0]]
    if node.op == "svdf":
        wf, wt, b = (T[n] for n in node.inputs[1:4])
        st = T[node.attrs["state"][0]]
        m1, s1 = _quantize(fx.TFLITE_DERIVATION.ratio_of(scale(x), scale(wf), scale(st)), rounding)
        m2, s2 = _quantize(fx.TFLITE_DERIVATION.ratio_of(scale(st), scale(wt), scale(o)), rounding)
        return SvdfParams(wf=np.ascontiguousarray(wf.data, np.int8),
                          wt=np.ascontiguousarray(wt.data, np.dtype(st.dtype)),
                          bias=np.ascontiguousarray(b.data.reshape(-1), np.int32), rank=node.attrs["rank"],
                          input_offset=-zp(x), m1=m1, s1=s1, state_zp=zp(st), m2=m2, s2=s2, output_offset=zp(o),
                          rounding=rounding, state={st.name: _state_spec(graph, st.name)})
    a = node.attrs
    hidden, cell = (T[n] for n in a["state"])
    w = [T[n] for n in node.inputs[1:9]]
    biases = [T[n] for n in node.inputs[9:13]]
    fc = [_quantize(fx.TFLITE_DERIVATION.ratio_of(scale(src), scale(wt), LSTM_GATE_SCALE), rounding)
          for src, wt in [(x, t) for t in w[:4]] + [(hidden, t) for t in w[4:]]]
    q, s_c = LSTM_NONLINEAR_OUTPUT_SCALE, scale(cell)
    mul = [_quantize(fx.TFLITE_DERIVATION.ratio_of(p, r, s), rounding)
           for p, r, s in ((q, s_c, s_c), (q, q, s_c), (q, q, scale(hidden)))]
    power = fx.round_half_away(float(np.float32(np.log(s_c) * (np.float32(1.0) / np.log(np.float32(2.0))))))
    left = 15 + power - 3
    tanh_mult, tanh_shift = (3, -left) if left < 0 else (3 << left, 0)
    clip = float(np.float32(a["cell_clip"]))
    cell_clip = int(np.trunc(min(max(clip / float(s_c), -32768.0), 32767.0))) if clip > 0 else -1
    return LstmParams(w_in=np.ascontiguousarray(np.stack([t.data for t in w[:4]]), np.int8),
                      w_rec=np.ascontiguousarray(np.stack([t.data for t in w[4:]]), np.int8),
                      bias=np.ascontiguousarray(np.stack([t.data.reshape(-1) for t in biases]), np.int32),
                      fc_mult=np.array([m for m, _ in fc], np.int32), fc_shift=np.array([s for _, s in fc], np.int32),
                      mul_mult=np.array([m for m, _ in mul], np.int32),
                      mul_shift=np.array([s for _, s in mul], np.int32), input_offset=-zp(x), hidden_zp=zp(hidden),
                      cell_clip=cell_clip, tanh_mult=tanh_mult, tanh_shift=tanh_shift, steps=a["steps"],
                      batch=a["batch"], time_major=a["time_major"], rounding=rounding, hidden=hidden.name,
                      cell=cell.name, state={n: _state_spec(graph, n) for n in a["state"]})


def new_state(p):
    """The layer's variable tensors at their initial values (one per runtime, shared by its plans)."""
    return RecurrentState(p.state)


def bind(p, node, ins, out, kernels, state=None, reset=False):
    """kernels: unused (the recurrent kernels exist in Numba only). state: the runtime's RecurrentState of this layer
    (a fresh one when None); reset: every sample starts from the initial state."""
    from ...kernels.recurrent import bind_lstm_s8, bind_svdf_s8
    state = new_state(p) if state is None else state
    x = ins[0]
    if node.op == "svdf":
        st = next(iter(state.arrays.values()))
        scratch = np.zeros(p.wf.shape[0], np.int32)
        return bind_svdf_s8(x.reshape(-1, p.wf.shape[1]), p.wf, p.wt, p.bias, st, scratch, p.input_offset, p.m1, p.s1,
                            p.state_zp, p.m2, p.s2, p.output_offset, p.rank, reset, p.rounding,
                            out.reshape(-1, p.bias.size))
    n_state, n_input = p.w_in.shape[1], p.w_in.shape[2]
    per_sample = p.steps * p.batch
    hidden = state.arrays[p.hidden].reshape(p.batch, n_state)
    cell = state.arrays[p.cell].reshape(p.batch, n_state)
    gates = np.zeros((4, n_state), np.int16)
    return bind_lstm_s8(x.reshape(-1, per_sample * n_input), p.w_in, p.w_rec, p.bias, p.fc_mult, p.fc_shift,
                        p.mul_mult, p.mul_shift, p.input_offset, p.hidden_zp, p.cell_clip, p.tanh_mult, p.tanh_shift,
                        p.steps, p.time_major, hidden, cell, gates, reset, p.rounding,
                        out.reshape(-1, per_sample * n_state))
