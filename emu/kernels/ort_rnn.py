"""onnxruntime's float LSTM and GRU (DeepCPU kernels, one thread, x86-64 with AVX2/FMA or AVX-512F), float32 exact.

What onnxruntime runs between the DequantizeLinear nodes and the QuantizeLinear nodes of a QDQ LSTM/GRU (the node
itself is never fused; ORT 1.32 DeepCpuLstmOp / DeepCpuGruOp, rnn_helpers.cc, MLAS), reproduced operation by
operation in float32 (numpy float32 arithmetic is IEEE single precision; fused multiply-adds are emulated exactly by
emu.f32math.fma_f32):

Projections (ComputeGemm -> MlasGemm, C[M, N] = A[M, K] B^T with B the [N, K] weights):
  * the input projection X W^T of all steps at once (M = steps * batch, beta 0) and, with prepacked weights (W and R
    float initializers: onnxruntime packs them once), every recurrent projection: the regular SGEMM kernel (FMA3 or
    AVX-512F): per output, acc = fma(a[k], b[k], acc) over k from acc = 0, in K blocks of StrideK (MlasSgemmOperation:
    StrideN = StrideK = 128, traded while N >= K and StrideK / 2 >= K, or N < K and StrideN / 2 >= N; packed B:
    StrideK = 256); a block result is stored (beta 0, first block) or added to C (round(acc + C)).
  * a product with M = 1 and weights computed at run time (a DequantizeLinear of int8 weights: nothing to prepack):
    every recurrent projection at batch 1, and the input projection of a 1-step sequence: MLAS's M = 1 kernel
    MlasSgemmKernelM1TransposeBAvx (no FMA): eight lanes
    l[j] = sum_i round(a[8i + j] * b[8i + j]) (a masked remainder adds zeros), reduced per group of outputs
    (columns taken 4 at a time, then 2, then 1): 4: ((l0 + l1) + l2) + l3 + (((l4 + l5) + l6) + l7);
    2: ((l0 + l2) + (l4 + l6)) + ((l1 + l3) + (l5 + l7)); 1: ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7));
    then + C (beta 1) or + 0 (beta 0).
LSTM (gate order i, o, f, c; UniDirectionalLstm): G = X W^T; per step G_t += h R^T; bias Wb + Rb added once
  (float32) per gate after the projections (clip_add_bias: x = g + b, clamped to +-clip, FLT_MAX by default);
  i, o, f = MlasComputeLogistic, c~ = MlasComputeTanh (FMA3 kernels, emu.graph.ops.unary); C = C * f + i * c~;
  h = MlasComputeTanh(C) * o. Products and sums are separate roundings (plain C++, no contraction).
GRU (gate order z, r, h; UniDirectionalGru): G = X W^T; G_zr += h R_zr^T; r = f(G_r + (Wbr + Rbr)) with ORT's own
  sigmoid (clip to +-20, x/2, the tanh rational polynomial in plain float32: 0.5 * (1 + p / q)); linear_before_reset 0:
  G_h += (r * h) R_h^T; 1: lin = Rbh + h R_h^T (beta 1; 0 without bias), G_h += r * lin; z = MlasComputeLogistic(G_z
  + (Wbz + Rbz)); h~ = ORT's tanh polynomial (clip to +-10) of G_h + (Wbh [+ Rbh]); H = (1 - z) * h~ + z * H_prev.
Reverse direction: the same on the time-reversed sequence, Y reversed back. Batch 1 only (batch > 1 changes the
kernels: the importer refuses it).
Two implementations, checked against each other and onnxruntime (tests/test_onnx_recurrent.py): numpy reference
functions (sgemm_fma, sgemm_m1_transb, lstm_forward, gru_forward) and the Numba kernels the runtime runs (_lstm, _gru
on RnnScratch buffers allocated once per layer); rnn_ort_s8 is the int8 entry point (DQ -> layer -> Q).
"""
from dataclasses import dataclass

import numpy as np

from emu.f32math import fma_f32
from emu.graph.ops.unary import LOGISTIC as _LG, TANH as _TH, mlas_logistic_fma3, mlas_tanh_fma3
from emu.jit import njit

F32 = np.float32

# rnn_helpers.cc deepcpu:: constants (float32)
_ALPHA = [F32(v) for v in (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
                           -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)]       # alpha_1 .. 13
_BETA = [F32(v) for v in (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)]
SIGMOID_BOUND, TANH_BOUND = F32(20.0), F32(10.0)


def stride_k(n, k, packed=False):
    """MLAS SGEMM K-block length for an [*, K] x [K, N] product (MlasSgemmOperation / MlasSgemmPackedOperation)."""
    if packed:
        return 256
    sn, sk = 128, 128
    if n >= k:
        while sk // 2 >= k:
            sn, sk = sn * 2, sk // 2
    else:
        while sn > 16 and sn // 2 >= n:
            sn, sk = sn // 2, sk * 2
    return sk


def sgemm_fma(a, bt, c=None, packed=False):
    """MLAS regular SGEMM kernel: C = A[M, K] x Bt[N, K]^T (+ C when c is given, beta 1), float32 (see module doc)."""
    a = np.asarray(a, F32)
    bt = np.asarray(bt, F32)
    m, k = a.shape
    n = bt.shape[0]
    sk = stride_k(n, k, packed)
    out = None if c is None else np.array(c, F32)
    for k0 in range(0, k, sk):
        acc = np.zeros((m, n), F32)
        for kk in range(k0, min(k0 + sk, k)):
            acc = fma_f32(a[:, kk, None], bt[None, :, kk], acc)
        out = acc if out is None else (acc + out).astype(F32)
    if out is None:
        out = np.zeros((m, n), F32)
    return out


def sgemm_m1_transb(a, bt, c=None):
    """MlasSgemmKernelM1TransposeBAvx: c[N] = a[K] . Bt[N, K] rows (+ c when given, beta 1), float32."""
    a = np.asarray(a, F32).reshape(-1)
    bt = np.asarray(bt, F32)
    n, k = bt.shape
    kp = -(-k // 8) * 8
    ap = np.zeros(kp, F32)
    ap[:k] = a
    bp = np.zeros((n, kp), F32)
    bp[:, :k] = bt
    lanes = np.zeros((n, 8), F32)
    for i in range(0, kp, 8):
        lanes = (lanes + (ap[None, i:i + 8] * bp[:, i:i + 8]).astype(F32)).astype(F32)
    l_ = [lanes[:, j] for j in range(8)]

    def add(x, y):
        return (x + y).astype(F32)
    r4 = add(add(add(add(l_[0], l_[1]), l_[2]), l_[3]), add(add(add(l_[4], l_[5]), l_[6]), l_[7]))
    r2 = add(add(add(l_[0], l_[2]), add(l_[4], l_[6])), add(add(l_[1], l_[3]), add(l_[5], l_[7])))
    r1 = add(add(add(l_[0], l_[1]), add(l_[2], l_[3])), add(add(l_[4], l_[5]), add(l_[6], l_[7])))
    n4 = n // 4 * 4
    res = r4.copy()
    if n - n4 >= 2:
        res[n4:n4 + 2] = r2[n4:n4 + 2]
    if (n - n4) % 2:
        res[n - 1] = r1[n - 1]
    base = np.zeros(n, F32) if c is None else np.asarray(c, F32).reshape(-1)
    return add(res, base)


def project_input(x, wt, packed_w):
    """X[T, I] x Wt[N, I]^T (beta 0): the regular kernel, or MLAS's M = 1 kernel for one step without prepacking."""
    if x.shape[0] == 1 and not packed_w:
        return sgemm_m1_transb(x[0], wt, None).reshape(1, -1)
    return sgemm_fma(x, wt, packed=packed_w)


def project_recurrent(h, rt, c, packed_r):
    """c[N] + h[K] x Rt[N, K]^T (c None: beta 0) by the kernel onnxruntime picks (prepacked R: the regular FMA
    kernel, else the M = 1 kernel)."""
    if packed_r:
        return sgemm_fma(h.reshape(1, -1), rt, None if c is None else c.reshape(1, -1), packed=True).reshape(-1)
    return sgemm_m1_transb(h, rt, c)


def _tanh_poly(x):
    """deepcpu tanh rational polynomial x * p(x^2) / q(x^2), plain float32 (no fused multiply-adds)."""
    x2 = (x * x).astype(F32)
    p = (x2 * _ALPHA[6] + _ALPHA[5]).astype(F32)
    for a in (_ALPHA[4], _ALPHA[3], _ALPHA[2], _ALPHA[1], _ALPHA[0]):
        p = ((x2 * p).astype(F32) + a).astype(F32)
    p = (x * p).astype(F32)
    q = (x2 * _BETA[3] + _BETA[2]).astype(F32)
    for b in (_BETA[1], _BETA[0]):
        q = ((x2 * q).astype(F32) + b).astype(F32)
    return p, q


def gru_reset_gate_sigmoid(ps1, ps2):
    """deepcpu::gru_reset_gate_sigmoid: ps1 * 0.5 * (1 + p / q) of x = 0.5 * clip(ps2, +-20)."""
    p, q = _tanh_poly((F32(0.5) * np.clip(ps2, -SIGMOID_BOUND, SIGMOID_BOUND)).astype(F32))
    return ((ps1 * F32(0.5)).astype(F32) * (F32(1) + (p / q).astype(F32)).astype(F32)).astype(F32)


def gru_output_gate_tanh(ph, pz, ps):
    """deepcpu::gru_output_gate_tanh: (1 - z) * (p / q) + z * h_prev with x = clip(ph, +-10)."""
    p, q = _tanh_poly(np.clip(ph, -TANH_BOUND, TANH_BOUND).astype(F32))
    a = ((F32(1) - pz).astype(F32) * (p / q).astype(F32)).astype(F32)
    return (a + (pz * ps).astype(F32)).astype(F32)


def _clip_add_bias(g, b, clip):
    x = g if b is None else (g + b).astype(F32)
    return np.maximum(np.minimum(x, clip), -clip).astype(F32)


def lstm_forward(x, w, r, b, h0, c0, packed_w, packed_r, clip=np.finfo(np.float32).max):
    """One direction of onnxruntime's LSTM, batch 1. x [T, I], w [4H, I], r [4H, H] (gate order i, o, f, c), b [8H]
    or None, h0/c0 [H] or None -> (Y [T, H], Y_h [H], Y_c [H]) float32. packed_w / packed_r: W / R are float
    initializers, which onnxruntime prepacks (regular SGEMM kernel for every projection with them)."""
    x, w, r = (np.asarray(v, F32) for v in (x, w, r))
    hsz = r.shape[1]
    clip = F32(clip)
    g_all = project_input(x, w, packed_w)
    bias = None
    if b is not None:
        b = np.asarray(b, F32).reshape(-1)
        bias = (b[:4 * hsz] + b[4 * hsz:]).astype(F32)
    h = np.zeros(hsz, F32) if h0 is None else np.asarray(h0, F32).reshape(-1)
    c = np.zeros(hsz, F32) if c0 is None else np.asarray(c0, F32).reshape(-1).copy()
    ys = np.empty((x.shape[0], hsz), F32)
    for t in range(x.shape[0]):
        g = project_recurrent(h, r, g_all[t], packed_r)
        gi, go, gf, gc = (g[k * hsz:(k + 1) * hsz] for k in range(4))
        bi, bo, bf, bc = (None,) * 4 if bias is None else (bias[k * hsz:(k + 1) * hsz] for k in range(4))
        i = mlas_logistic_fma3(_clip_add_bias(gi, bi, clip))
        f = mlas_logistic_fma3(_clip_add_bias(gf, bf, clip))
        cc = mlas_tanh_fma3(_clip_add_bias(gc, bc, clip))
        c = ((c * f).astype(F32) + (i * cc).astype(F32)).astype(F32)
        o = mlas_logistic_fma3(_clip_add_bias(go, bo, clip))
        h = (mlas_tanh_fma3(c) * o).astype(F32)
        ys[t] = h
    return ys, h, c


def gru_forward(x, w, r, b, h0, linear_before_reset, packed_w, packed_r, clip=np.finfo(np.float32).max):
    """One direction of onnxruntime's GRU, batch 1. x [T, I], w [3H, I], r [3H, H] (gate order z, r, h), b [6H] or
    None, h0 [H] or None -> (Y [T, H], Y_h [H]) float32."""
    x, w, r = (np.asarray(v, F32) for v in (x, w, r))
    hsz = r.shape[1]
    clip = F32(clip)
    g_all = project_input(x, w, packed_w)
    if b is not None:
        b = np.asarray(b, F32).reshape(-1)
        bz = (b[0:hsz] + b[3 * hsz:4 * hsz]).astype(F32)
        br = (b[hsz:2 * hsz] + b[4 * hsz:5 * hsz]).astype(F32)
        bh = b[2 * hsz:3 * hsz] if linear_before_reset else (b[2 * hsz:3 * hsz] + b[5 * hsz:]).astype(F32)
        rbh = b[5 * hsz:]
    else:
        bz = br = bh = rbh = None
    h = np.zeros(hsz, F32) if h0 is None else np.asarray(h0, F32).reshape(-1)
    ys = np.empty((x.shape[0], hsz), F32)
    for t in range(x.shape[0]):
        g = g_all[t].copy()
        g[:2 * hsz] = project_recurrent(h, r[:2 * hsz], g[:2 * hsz], packed_r)
        pr = _clip_add_bias(g[hsz:2 * hsz], br, clip)
        if linear_before_reset:             # lin = Rbh + h Rh^T (beta 1), or h Rh^T (beta 0) without a bias
            lin = project_recurrent(h, r[2 * hsz:], rbh, packed_r)
            cur = gru_reset_gate_sigmoid(lin, pr)
            gh = (g[2 * hsz:] + cur).astype(F32)
        else:
            cur = gru_reset_gate_sigmoid(h, pr)
            gh = project_recurrent(cur, r[2 * hsz:], g[2 * hsz:], packed_r)
        z = mlas_logistic_fma3(_clip_add_bias(g[:hsz], bz, clip))
        ph = _clip_add_bias(gh, bh, clip)
        h = gru_output_gate_tanh(ph, z, h)
        ys[t] = h
    return ys, h


@dataclass
class RnnLayer:
    """One ONNX LSTM / GRU as onnxruntime sees it: kind 'lstm' | 'gru'; float32 w [D, G*H, I], r [D, G*H, H],
    b [D, 2*G*H], h0 / c0 [D, 1, H] (None when absent); direction 'forward' | 'reverse' | 'bidirectional';
    linear_before_reset (GRU); packed_w / packed_r: W / R are float initializers, which onnxruntime prepacks."""
    kind: str
    w: np.ndarray
    r: np.ndarray
    b: np.ndarray = None
    h0: np.ndarray = None
    c0: np.ndarray = None
    direction: str = "forward"
    linear_before_reset: int = 0
    packed_w: bool = False
    packed_r: bool = False


def rnn_directions(layer, x, scratch=None):
    """All directions of one sample: x [T, I] float32 -> dict(Y=[T, D, 1, H], Y_h=[D, 1, H], Y_c=[D, 1, H] (LSTM))
    float32. The reverse direction runs on the time-reversed input and its Y is reversed back (ORT's
    ReverseSequence, all lengths = T). scratch None: the numpy reference functions; an RnnScratch: the Numba
    kernels (the runtime's path)."""
    kind, w, r, b, h0, c0 = layer.kind, layer.w, layer.r, layer.b, layer.h0, layer.c0
    direction, linear_before_reset = layer.direction, layer.linear_before_reset
    packed_w, packed_r = layer.packed_w, layer.packed_r
    steps = x.shape[0]
    n_dir = w.shape[0]
    hsz = r.shape[2]
    ys = np.zeros((steps, n_dir, 1, hsz), F32)
    yh = np.zeros((n_dir, 1, hsz), F32)
    yc = np.zeros((n_dir, 1, hsz), F32)
    for d in range(n_dir):
        rev = direction == "reverse" or (direction == "bidirectional" and d == 1)
        xd = x[::-1] if rev else x
        bd = None if b is None else b[d]
        hd = None if h0 is None else h0[d].reshape(-1)
        cd = None if c0 is None else c0[d].reshape(-1)
        if scratch is not None:
            np.copyto(scratch.x, xd)
            y, h, c = rnn_direction_nb(kind, scratch.x, w[d], r[d], bd, hd, cd, linear_before_reset, packed_w,
                                       packed_r, scratch)
            if c is not None:
                yc[d, 0] = c
        elif kind == "lstm":
            y, h, c = lstm_forward(xd, w[d], r[d], bd, hd, cd, packed_w, packed_r)
            yc[d, 0] = c
        else:
            y, h = gru_forward(xd, w[d], r[d], bd, hd, linear_before_reset, packed_w, packed_r)
        ys[:, d, 0] = y[::-1] if rev else y
        yh[d, 0] = h
    return dict(Y=ys, Y_h=yh, Y_c=yc)


def rnn_ort_s8(layer, output, inp, s_in, zp_in, s_out, zp_out, act_min, act_max, out, scratch=None):
    """DequantizeLinear -> onnxruntime LSTM/GRU (an RnnLayer) -> QuantizeLinear of its output `output` ('Y', 'Y_h'
    or 'Y_c'). inp int8 [N, T, I] (N independent samples, batch 1 each); out int8 [N, size of the output]. The
    dequantized input is float32(x - zp_in) * s_in; the quantized output clamp(round_half_even(float32(v / s_out)) +
    zp_out, act_min, act_max). scratch: the layer's RnnScratch (Numba kernels), None: the numpy reference."""
    kind, w, r = layer.kind, layer.w, layer.r
    if kind not in ("lstm", "gru") or output not in ("Y", "Y_h", "Y_c") or (kind == "gru" and output == "Y_c"):
        raise ValueError(f"{kind}: unknown output {output!r}")
    if not (isinstance(inp, np.ndarray) and inp.dtype == np.int8 and inp.ndim == 3):
        raise ValueError("inp must be an int8 [N, T, I] array")
    if not (isinstance(out, np.ndarray) and out.dtype == np.int8 and out.ndim == 2 and out.shape[0] == inp.shape[0]):
        raise ValueError("out must be an int8 [N, size] array with one row per sample")
    for name, a in (("w", w), ("r", r)):
        if not (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.ndim == 3):
            raise ValueError(f"{name} must be a float32 [D, G*H, K] array")
    s_in, s_out = F32(s_in), F32(s_out)
    for n in range(inp.shape[0]):
        x = ((inp[n].astype(np.int32) - int(zp_in)).astype(F32) * s_in).astype(F32)
        v = rnn_directions(layer, x, scratch)[output]
        v = v.reshape(-1)
        if v.size != out.shape[1]:
            raise ValueError(f"{kind}: output {output} has {v.size} values, out rows {out.shape[1]}")
        with np.errstate(over="ignore", invalid="ignore"):
            q = np.rint((v / s_out).astype(F32)).astype(np.float64) + int(zp_out)
        out[n] = np.clip(q, act_min, act_max).astype(np.int8)


# ---- Numba kernels (the runtime's path; the numpy functions above are their reference) ---------------------------

_LG32 = np.array([_LG[k] for k in ("lower", "upper", "alpha_9", "alpha_7", "alpha_5", "alpha_3", "alpha_1", "beta_10",
                                   "beta_8", "beta_6", "beta_4", "beta_2", "beta_0")], F32)
_TH32 = np.array([_TH[k] for k in ("lower", "upper", "alpha_13", "alpha_11", "alpha_9", "alpha_7", "alpha_5",
                                   "alpha_3", "alpha_1", "beta_6", "beta_4", "beta_2", "beta_0")], F32)
_GRU32 = np.array(_ALPHA + _BETA, F32)          # alpha_1 .. alpha_13, beta_0 .. beta_6


@njit(cache=True)
def _fma(a, b, c):
    """round32(a * b + c), one rounding (see emu.f32math.fma_f32: exact product and TwoSum in float64)."""
    p = np.float64(a) * np.float64(b)
    c64 = np.float64(c)
    s = p + c64
    bb = s - p
    e = (p - (s - bb)) + (c64 - bb)
    r = np.float32(s)
    r64 = np.float64(r)
    if e == 0.0 or r64 == s:
        return r
    if s > r64:
        other = np.nextafter(r, np.float32(np.inf))
    else:
        other = np.nextafter(r, np.float32(-np.inf))
    o64 = np.float64(other)
    if s - r64 == o64 - s and (e > 0.0) == (o64 > s):      # a float32 midpoint: the TwoSum error decides
        return np.float32(other)
    return r


@njit(cache=True)
def _logistic(x, k):
    """MlasLogisticKernelFma3 on one value (k: _LG32)."""
    v = min(max(x, k[0]), k[1])
    v2 = np.float32(v * v)
    p = _fma(v2, k[2], k[3])
    p = _fma(v2, p, k[4])
    p = _fma(v2, p, k[5])
    p = _fma(v2, p, k[6])
    q = _fma(v2, k[7], k[8])
    q = _fma(v2, q, k[9])
    q = _fma(v2, q, k[10])
    q = _fma(v2, q, k[11])
    q = _fma(v2, q, k[12])
    p = np.float32(v * p)
    r = np.float32(np.float32(p / q) + np.float32(0.5))
    return max(r, np.float32(0))


@njit(cache=True)
def _tanh(x, k):
    """MlasTanhKernelFma3 on one value (k: _TH32)."""
    v = min(max(x, k[0]), k[1])
    v2 = np.float32(v * v)
    p = _fma(v2, k[2], k[3])
    for j in range(4, 9):
        p = _fma(v2, p, k[j])
    q = _fma(v2, k[9], k[10])
    q = _fma(v2, q, k[11])
    q = _fma(v2, q, k[12])
    return np.float32(np.float32(v * p) / q)


@njit(cache=True)
def _gru_poly(x, k):
    """deepcpu's tanh rational polynomial (p, q) in plain float32 (k: _GRU32)."""
    x2 = np.float32(x * x)
    p = np.float32(np.float32(x2 * k[6]) + k[5])
    for j in range(4, -1, -1):
        p = np.float32(np.float32(x2 * p) + k[j])
    p = np.float32(x * p)
    q = np.float32(np.float32(x2 * k[10]) + k[9])
    q = np.float32(np.float32(x2 * q) + k[8])
    q = np.float32(np.float32(x2 * q) + k[7])
    return p, q


@njit(cache=True)
def _gemm_fma(a, bt, out, accumulate, sk):
    """Regular MLAS SGEMM: out[m, n] (+)= sum_k a[m, k] * bt[n, k] by sequential fmas per K block of sk."""
    m_rows, k_len = a.shape
    n_cols = bt.shape[0]
    for m in range(m_rows):
        for n in range(n_cols):
            c = out[m, n]
            first = not accumulate
            k0 = 0
            while k0 < k_len:
                acc = np.float32(0)
                for kk in range(k0, min(k0 + sk, k_len)):
                    acc = _fma(a[m, kk], bt[n, kk], acc)
                c = acc if first else np.float32(acc + c)
                first = False
                k0 += sk
            out[m, n] = c


@njit(cache=True)
def _gemm_m1(a, bt, out, accumulate, lanes):
    """MlasSgemmKernelM1TransposeBAvx: out[n] (+)= a . bt[n] with 8 lanes and the 4/2/1-column reductions."""
    n_cols, k_len = bt.shape
    n4 = n_cols // 4 * 4
    for n in range(n_cols):
        for j in range(8):
            lanes[j] = np.float32(0)
        for k in range(k_len):
            j = k % 8
            lanes[j] = np.float32(lanes[j] + np.float32(a[k] * bt[n, k]))
        l0, l1, l2, l3, l4, l5, l6, l7 = lanes[0], lanes[1], lanes[2], lanes[3], lanes[4], lanes[5], lanes[6], lanes[7]
        if n < n4:
            s = np.float32(np.float32(np.float32(np.float32(l0 + l1) + l2) + l3) +
                           np.float32(np.float32(np.float32(l4 + l5) + l6) + l7))
        elif n_cols - n4 >= 2 and n < n4 + 2:
            s = np.float32(np.float32(np.float32(l0 + l2) + np.float32(l4 + l6)) +
                           np.float32(np.float32(l1 + l3) + np.float32(l5 + l7)))
        else:
            s = np.float32(np.float32(np.float32(l0 + l1) + np.float32(l2 + l3)) +
                           np.float32(np.float32(l4 + l5) + np.float32(l6 + l7)))
        out[n] = np.float32(s + out[n]) if accumulate else np.float32(s + np.float32(0))


@njit(cache=True)
def _project(h, rt, out, accumulate, packed, sk, lanes, row):
    """out[N] (+)= h[K] . rt[N, K] rows by the kernel onnxruntime picks (row: a [1, N] scratch)."""
    if packed:
        for n in range(out.shape[0]):
            row[0, n] = out[n]
        _gemm_fma(h.reshape(1, -1), rt, row[:, :out.shape[0]], accumulate, sk)
        for n in range(out.shape[0]):
            out[n] = row[0, n]
    else:
        _gemm_m1(h, rt, out, accumulate, lanes)


@njit(cache=True)
def _project_inputs(x, w, g_all, packed_w, sk_w, lanes):
    """g_all [T, G] = x [T, I] . w^T: a one-step sequence with unpacked weights is one row for MLAS (the one-row
    kernel); otherwise the regular SGEMM (fma per K block)."""
    if x.shape[0] == 1 and not packed_w:
        _gemm_m1(x[0], w, g_all[0], False, lanes)
    else:
        _gemm_fma(x, w, g_all, False, sk_w)


@njit(cache=True)
def _lstm(x, w, r, bias, has_bias, h0, c0, packed_w, packed_r, sk_w, sk_r, g_all, g, h, c, lanes, row, ys):
    """One direction, batch 1 (see the module doc). ys [T, H] receives every h; h / c end as Y_h / Y_c."""
    steps = x.shape[0]
    hsz = r.shape[1]
    _project_inputs(x, w, g_all, packed_w, sk_w, lanes)
    lg = _LG32
    th = _TH32
    big = np.float32(np.finfo(np.float32).max)
    for i in range(hsz):
        h[i] = h0[i]
        c[i] = c0[i]
    for t in range(steps):
        for n in range(4 * hsz):
            g[n] = g_all[t, n]
        _project(h, r, g, True, packed_r, sk_r, lanes, row)
        for i in range(hsz):
            gi, go, gf, gc = g[i], g[hsz + i], g[2 * hsz + i], g[3 * hsz + i]
            if has_bias:
                gi = np.float32(gi + bias[i])
                go = np.float32(go + bias[hsz + i])
                gf = np.float32(gf + bias[2 * hsz + i])
                gc = np.float32(gc + bias[3 * hsz + i])
            gi = max(min(gi, big), -big)
            go = max(min(go, big), -big)
            gf = max(min(gf, big), -big)
            gc = max(min(gc, big), -big)
            ig = _logistic(gi, lg)
            fg = _logistic(gf, lg)
            cg = _tanh(gc, th)
            c[i] = np.float32(np.float32(c[i] * fg) + np.float32(ig * cg))
            og = _logistic(go, lg)
            h[i] = np.float32(_tanh(c[i], th) * og)
            ys[t, i] = h[i]


@njit(cache=True)
def _gru(x, w, r, bz, br, bh, rbh, has_bias, lbr, h0, packed_w, packed_r, sk_w, sk_r, g_all, g, h, cur, lin, lanes,
         row, ys):
    """One direction, batch 1 (see the module doc). ys [T, H] receives every h; h ends as Y_h."""
    steps = x.shape[0]
    hsz = r.shape[1]
    _project_inputs(x, w, g_all, packed_w, sk_w, lanes)
    lg = _LG32
    k = _GRU32
    big = np.float32(np.finfo(np.float32).max)
    half, one = np.float32(0.5), np.float32(1)
    sb, tb = np.float32(20.0), np.float32(10.0)
    r_zr = r[:2 * hsz]
    r_h = r[2 * hsz:]
    for i in range(hsz):
        h[i] = h0[i]
    for t in range(steps):
        for n in range(3 * hsz):
            g[n] = g_all[t, n]
        _project(h, r_zr, g[:2 * hsz], True, packed_r, sk_r, lanes, row)
        if lbr:
            for i in range(hsz):
                lin[i] = rbh[i] if has_bias else np.float32(0)
            _project(h, r_h, lin, has_bias, packed_r, sk_r, lanes, row)
        for i in range(hsz):                         # reset gate: cur = r * (h or lin)
            pr = g[hsz + i]
            if has_bias:
                pr = np.float32(pr + br[i])
            pr = max(min(pr, big), -big)
            xr = np.float32(half * max(min(pr, sb), -sb))
            p, q = _gru_poly(xr, k)
            src = lin[i] if lbr else h[i]
            cur[i] = np.float32(np.float32(src * half) * np.float32(one + np.float32(p / q)))
        if lbr:
            for i in range(hsz):
                g[2 * hsz + i] = np.float32(g[2 * hsz + i] + cur[i])
        else:
            _project(cur, r_h, g[2 * hsz:], True, packed_r, sk_r, lanes, row)
        for i in range(hsz):
            pz = g[i]
            ph = g[2 * hsz + i]
            if has_bias:
                pz = np.float32(pz + bz[i])
                ph = np.float32(ph + bh[i])
            z = _logistic(max(min(pz, big), -big), lg)
            ph = max(min(max(min(ph, big), -big), tb), -tb)
            p, q = _gru_poly(ph, k)
            ys[t, i] = np.float32(np.float32(np.float32(one - z) * np.float32(p / q)) + np.float32(z * h[i]))
        for i in range(hsz):
            h[i] = ys[t, i]


class RnnScratch:
    """Buffers of one LSTM/GRU layer (allocated once by bind, reused by every run)."""

    def __init__(self, kind, steps, isz, hsz):
        gates = 4 if kind == "lstm" else 3
        self.g_all = np.zeros((steps, gates * hsz), F32)
        self.g = np.zeros(gates * hsz, F32)
        self.h = np.zeros(hsz, F32)
        self.c = np.zeros(hsz, F32)
        self.cur = np.zeros(hsz, F32)
        self.lin = np.zeros(hsz, F32)
        self.lanes = np.zeros(8, F32)
        self.row = np.zeros((1, gates * hsz), F32)
        self.x = np.zeros((steps, isz), F32)
        self.ys = np.zeros((steps, hsz), F32)


def rnn_direction_nb(kind, x, w, r, b, h0, c0, linear_before_reset, packed_w, packed_r, scratch):
    """One direction with the Numba kernels: x [T, I] float32 -> (Y [T, H], Y_h [H], Y_c [H] or None), views of
    the scratch buffers (copy them before the next call)."""
    steps, isz = x.shape
    hsz = r.shape[1]
    gates = 4 if kind == "lstm" else 3
    sk_w = stride_k(gates * hsz, isz, packed_w)
    sk_r = stride_k(0, hsz, True)        # only prepacked recurrent weights take the regular kernel
    zeros = np.zeros(hsz, F32)
    h0 = zeros if h0 is None else np.ascontiguousarray(h0, F32).reshape(-1)
    s = scratch
    if kind == "lstm":
        c0 = zeros if c0 is None else np.ascontiguousarray(c0, F32).reshape(-1)
        bias = zeros if b is None else (b[:4 * hsz] + b[4 * hsz:]).astype(F32)
        _lstm(x, w, r, bias, b is not None, h0, c0, packed_w, packed_r, sk_w, sk_r, s.g_all, s.g, s.h, s.c, s.lanes,
              s.row, s.ys)
        return s.ys, s.h, s.c
    if b is None:
        bz = br = bh = rbh = zeros
    else:
        bz = (b[:hsz] + b[3 * hsz:4 * hsz]).astype(F32)
        br = (b[hsz:2 * hsz] + b[4 * hsz:5 * hsz]).astype(F32)
        rbh = np.ascontiguousarray(b[5 * hsz:], F32)
        bh = np.ascontiguousarray(b[2 * hsz:3 * hsz], F32) if linear_before_reset else \
            (b[2 * hsz:3 * hsz] + b[5 * hsz:]).astype(F32)
    _gru(x, w, r, bz, br, bh, rbh, b is not None, bool(linear_before_reset), h0, packed_w, packed_r, sk_w, sk_r,
         s.g_all, s.g, s.h, s.cur, s.lin, s.lanes, s.row, s.ys)
    return s.ys, s.h, None
