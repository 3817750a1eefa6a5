"""Front-end tables: periodic Hann window, mel filter banks (librosa / torchaudio numerics), the
GenHeaders-style sparse form and C source import/export, and C-compiler-exact rounding of constants.

Contracts:
- `hann_periodic(win)` is float64 `0.5 - 0.5*cos(2*pi*n/win)`, n = 0..win-1.
- `mel_filterbank(...)` returns float32 `[n_mels, n_fft//2 + 1]` (mel-major), computed like
  librosa.filters.mel (float64 math, float32 rows, slaney area norm applied in float64 then stored
  float32) or like torchaudio.functional.melscale_fbanks on torch's CPU kernels (float32 tensor math with
  FMA-contracted linspace, SLEEF/libm powf and MKL expf, per torch CPU capability: TORCHAUDIO_FLAVORS), transposed.
- Sparse form (as the ST app stores its mel filter bank): per mel row `start` = first and `stop` = last non-zero bin (inclusive) and
  the row-major concatenation of the coefficients start..stop of every row (zeros inside a run kept).
- `round_like_c(texts, dtype)` gives the value a C compiler stores for each printed decimal constant:
  the literal is parsed exactly and rounded (RNE) to its literal type (no suffix: double, `f`: float,
  `f16`: _Float16), then converted (RNE) to the destination type `dtype`.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from emu import cheader
from emu.cheader import CHeaderError
from emu.f32math import fma_f32, libm_powf, mkl_expf, sleef_powf_u10
from emu.frontend.params import FrontendError

# ----------------------------------------------------------------------------------------------------
# window
# ----------------------------------------------------------------------------------------------------


def hann_periodic(win_length):
    """Periodic Hann window, float64: 0.5 - 0.5*cos(2*pi*n/win_length)."""
    if win_length <= 0:
        raise FrontendError(f"window length {win_length} must be positive")
    n = np.arange(win_length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)


# ----------------------------------------------------------------------------------------------------
# mel filter banks
# ----------------------------------------------------------------------------------------------------

_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP


def _hz_to_mel(f, scale):
    """librosa.hz_to_mel on float64 (scalars or arrays)."""
    f = np.asanyarray(f, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    logstep = np.log(6.4) / 27.0
    mels = f / _F_SP
    return np.where(f >= _MIN_LOG_HZ, _MIN_LOG_MEL + np.log(np.maximum(f, 1e-300) / _MIN_LOG_HZ) / logstep, mels)


def _mel_to_hz(m, scale):
    """librosa.mel_to_hz on float64 arrays."""
    m = np.asanyarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    logstep = np.log(6.4) / 27.0
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(logstep * (m - _MIN_LOG_MEL)), _F_SP * m)


def _check_bank_args(sample_rate, n_fft, n_mels, fmin, fmax, scale, norm, flavor):
    if scale not in ("slaney", "htk"):
        raise FrontendError(f"mel scale {scale!r} is not supported; use 'slaney' or 'htk'")
    if norm not in ("slaney", None):
        raise FrontendError(f"mel norm {norm!r} is not supported; use 'slaney' or None")
    if flavor != "librosa" and flavor not in TORCHAUDIO_FLAVORS:
        raise FrontendError(f"mel flavor {flavor!r} is not supported; use 'librosa' or one of "
                            f"{', '.join(TORCHAUDIO_FLAVORS)} (torch's CPU capability on the training machine)")
    if n_fft <= 0 or n_mels <= 0:
        raise FrontendError(f"n_fft = {n_fft} and n_mels = {n_mels} must be positive")
    if fmax > sample_rate / 2:
        raise FrontendError(f"fmax = {fmax} exceeds sample_rate/2 = {sample_rate / 2}; lower fmax")
    if not 0 <= fmin < fmax:
        raise FrontendError(f"fmin = {fmin} must be >= 0 and below fmax = {fmax}")


def mel_filterbank(sample_rate, n_fft, n_mels, fmin=0.0, fmax=None, scale="slaney", norm="slaney",
                   flavor="librosa"):
    """Mel filter bank float32 [n_mels, n_fft//2+1] with librosa (default) or torchaudio numerics (flavor
    "torchaudio" | "torchaudio-sleef": which torch build computed it, see TORCHAUDIO_FLAVORS)."""
    fmax = float(sample_rate) / 2 if fmax is None else float(fmax)
    _check_bank_args(sample_rate, n_fft, n_mels, fmin, fmax, scale, norm, flavor)
    if flavor in TORCHAUDIO_FLAVORS:
        return _mel_torchaudio(sample_rate, n_fft, n_mels, float(fmin), fmax, scale, norm, flavor)
    n_bins = 1 + n_fft // 2
    weights = np.zeros((n_mels, n_bins), dtype=np.float32)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_pts = np.linspace(_hz_to_mel(float(fmin), scale), _hz_to_mel(fmax, scale), n_mels + 2)
    mel_f = _mel_to_hz(mel_pts, scale)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    if norm == "slaney":
        enorm = 2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels])
        weights *= enorm[:, np.newaxis]          # float32 * float64 -> float64 product stored float32
    return weights


# torchaudio.functional.melscale_fbanks as the x86-64 torch 2.x wheels (built with MKL) compute it on the CPU,
# one thread, float32 tensors. The result depends on torch's CPU capability (torch.backends.cpu.get_cpu_capability()
# on the machine that made the filter bank), hence one flavor per capability:
#  - torch.linspace: start + step*i (first half) / end - step*(steps-1-i) (second half); the AVX2 and AVX-512
#    kernels are compiled with FMA contraction (one rounding), the default kernel is not;
#  - 10.0 ** t (htk scale): a vectorised loop over blocks of two vectors (32 floats for AVX-512, 16 for AVX2, none
#    for default) with SLEEF's powf_u10, the remaining elements with the C library's powf;
#  - torch.exp (slaney scale above 1 kHz): Intel MKL's vsExp (VML_HA) on every element, whatever the capability;
#  - t / 2595.0 and the triangle slopes: IEEE division; 2.0 / t: reciprocal then * 2.0 (the same value).
# "torchaudio" names the AVX2 flavor (every x86-64 CPU since 2013; torch's choice on CPUs without AVX-512).
TORCHAUDIO_FLAVORS = {"torchaudio-avx512": 32, "torchaudio-avx2": 16, "torchaudio-default": 0,
                      "torchaudio": 16}      # flavor -> floats per vectorised block of torch's elementwise loop


def _torch_linspace_f32(start, end, steps, fused):
    """torch.linspace(start, end, steps) in float32 (the scalar loop; FMA-contracted when `fused`)."""
    start32, end32 = np.float32(start), np.float32(end)
    if steps == 1:
        return np.array([start32], dtype=np.float32)
    step = np.float32((end32 - start32) / np.float32(steps - 1))
    i = np.arange(steps)
    if fused:
        lo = fma_f32(step, i.astype(np.float32), start32)
        hi = fma_f32(-step, (steps - 1 - i).astype(np.float32), end32)
    else:
        lo = start32 + step * i.astype(np.float32)
        hi = end32 - step * (steps - 1 - i).astype(np.float32)
    return np.where(i < steps // 2, lo, hi).astype(np.float32)


def _torch_pow10(t, block):
    """torch.pow(10.0, t) on a 1-D float32 tensor: SLEEF on whole blocks, the C library on the rest."""
    n_vec = len(t) // block * block if block else 0
    return np.concatenate([sleef_powf_u10(np.float32(10.0), t[:n_vec]),
                           libm_powf(np.float32(10.0), t[n_vec:])]).astype(np.float32)


def _torchaudio_hz_to_mel(freq, scale):
    """torchaudio's _hz_to_mel: Python float (binary64) math on a scalar."""
    if scale == "htk":
        return 2595.0 * math.log10(1.0 + (freq / 700.0))
    mels = freq / _F_SP
    if freq >= _MIN_LOG_HZ:
        mels = _MIN_LOG_HZ / _F_SP + math.log(freq / _MIN_LOG_HZ) / (math.log(6.4) / 27.0)
    return mels


def _torchaudio_mel_to_hz(mels, scale, block):
    """torchaudio's _mel_to_hz on a float32 tensor, with torch's elementwise kernels."""
    if scale == "htk":
        return np.float32(700.0) * (_torch_pow10(mels / np.float32(2595.0), block) - np.float32(1.0))
    freqs = np.float32(_F_SP) * mels
    log_t = mels >= np.float32(_MIN_LOG_MEL)
    arg = np.float32(math.log(6.4) / 27.0) * (mels[log_t] - np.float32(_MIN_LOG_MEL))
    freqs[log_t] = np.float32(_MIN_LOG_HZ) * mkl_expf(arg)
    return freqs


def _mel_torchaudio(sample_rate, n_fft, n_mels, fmin, fmax, scale, norm, flavor="torchaudio"):
    """torchaudio.functional.melscale_fbanks(n_fft//2+1, fmin, fmax, n_mels, sample_rate, norm, scale), bit for bit
    (see the notes above), returned transposed [n_mels, n_bins]."""
    n_bins = 1 + n_fft // 2
    block = TORCHAUDIO_FLAVORS[flavor]
    all_freqs = _torch_linspace_f32(0, sample_rate // 2, n_bins, fused=block > 0)
    m_pts = _torch_linspace_f32(_torchaudio_hz_to_mel(fmin, scale), _torchaudio_hz_to_mel(fmax, scale), n_mels + 2,
                                fused=block > 0)
    f_pts = _torchaudio_mel_to_hz(m_pts, scale, block).astype(np.float32)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[np.newaxis, :] - all_freqs[:, np.newaxis]
    down = (np.float32(-1.0) * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = np.maximum(np.float32(0.0), np.minimum(down, up)).astype(np.float32)
    if norm == "slaney":
        enorm = (np.float32(1.0) / (f_pts[2:n_mels + 2] - f_pts[:n_mels])) * np.float32(2.0)
        fb = (fb * enorm[np.newaxis, :]).astype(np.float32)
    return np.ascontiguousarray(fb.T)


MAX_TABLE_BYTES = 64 << 20      # a mel table file larger than this is not a filter bank


def _table_file(path, kinds):
    """Checks that a mel_source table file exists, is a regular readable file of a sane size (one-line errors)."""
    from ..errors import quoted
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FrontendError(f"frontend.mel_source {quoted(p, 4096)}: no such file; give the path of a {kinds} table "
                            f"(relative paths are resolved from the current folder) or use \"librosa\"")
    if not os.path.isfile(p):
        raise FrontendError(f"frontend.mel_source {quoted(p, 4096)} is not a regular file (a folder?); give the path "
                            f"of a {kinds} table")
    if os.path.getsize(p) > MAX_TABLE_BYTES:
        raise FrontendError(f"frontend.mel_source {quoted(p, 4096)} is {os.path.getsize(p)} bytes, too large for a mel "
                            f"table (at most {MAX_TABLE_BYTES >> 20} MB); give the [n_mels, n_fft/2+1] table")
    return p


def load_mel_npy(path, n_mels, n_bins):
    """A [n_mels, n_bins] filter bank from .npy (e.g. the training filter bank) as float32."""
    from ..errors import printable
    path = _table_file(path, ".npy")
    try:
        m = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise FrontendError(f"mel table {printable(path, 4096)} holds Python objects (a pickled array), which are not "
                                f"loaded for safety; save a float array with numpy.save(path, matrix.astype("
                                f"np.float32))") from None
        raise FrontendError(f"mel table {printable(path, 4096)} is not a readable .npy file ({printable(e)}); save it with "
                            f"numpy.save") from None
    except (OSError, EOFError) as e:
        raise FrontendError(f"mel table {printable(path, 4096)} is not a readable .npy file ({type(e).__name__}); save it "
                            f"with numpy.save") from None
    if not isinstance(m, np.ndarray):
        raise FrontendError(f"mel table {printable(path, 4096)} is an .npz archive, not one array; save the matrix with "
                            f"numpy.save")
    if m.dtype.kind not in "fiu":
        raise FrontendError(f"mel table {printable(path, 4096)} holds {m.dtype} values; save a float32 matrix")
    if m.ndim != 2 or m.shape != (n_mels, n_bins):
        hint = "; it looks transposed, save matrix.T" if m.shape == (n_bins, n_mels) else ""
        raise FrontendError(f"mel table {path} has shape {m.shape}, expected ({n_mels}, {n_bins}){hint}")
    if not np.all(np.isfinite(m)):
        raise FrontendError(f"mel table {path} holds non-finite values; regenerate it")
    return np.ascontiguousarray(m, dtype=np.float32)


# ----------------------------------------------------------------------------------------------------
# sparse form
# ----------------------------------------------------------------------------------------------------


def sparse_mel(matrix):
    """(start int32[n_mels], stop int32[n_mels] inclusive, coefs 1-D, same dtype as matrix)."""
    m = np.asarray(matrix)
    if m.ndim != 2:
        raise FrontendError(f"mel matrix must be 2-D [n_mels, n_bins], got shape {m.shape}")
    starts, stops, runs = [], [], []
    for i, row in enumerate(m):
        nz = np.flatnonzero(row)
        if nz.size == 0:
            raise FrontendError(f"mel filter {i} has no non-zero bin; lower n_mels, raise n_fft or widen fmin..fmax")
        starts.append(nz[0])
        stops.append(nz[-1])
        runs.append(row[nz[0]:nz[-1] + 1])
    return (np.array(starts, dtype=np.int32), np.array(stops, dtype=np.int32),
            np.ascontiguousarray(np.concatenate(runs)))


def dense_mel(start, stop, coefs, n_bins):
    """Inverse of sparse_mel: float matrix [n_mels, n_bins] (coefs dtype)."""
    start, stop = np.asarray(start, dtype=np.int64), np.asarray(stop, dtype=np.int64)
    if start.shape != stop.shape or np.any(stop < start) or np.any(start < 0) or (stop.size and stop.max() >= n_bins):
        raise FrontendError(f"sparse mel indices are inconsistent with {n_bins} bins; check start/stop tables")
    total = int(np.sum(stop - start + 1))
    if total != len(coefs):
        raise FrontendError(f"sparse mel table has {len(coefs)} coefficients but start/stop need {total}")
    out = np.zeros((start.size, n_bins), dtype=np.asarray(coefs).dtype)
    pos = 0
    for i, (a, b) in enumerate(zip(start, stop)):
        out[i, a:b + 1] = coefs[pos:pos + b - a + 1]
        pos += b - a + 1
    return out


# ----------------------------------------------------------------------------------------------------
# C-exact constant rounding
# ----------------------------------------------------------------------------------------------------

# The literal parsing and exact rounding are emu.cheader's (one home for C text); errors keep this module's type.

def round_like_c(values, dtype):
    """Printed C constants (strings, or Python floats = double literals) -> numpy array of `dtype`
    (float16/float32/float64) holding exactly what a C compiler stores for `dtype x = <literal>;`."""
    try:
        return cheader.round_like_c(values, dtype)
    except CHeaderError as e:
        raise FrontendError(str(e)) from None


def format_c_constant(value, dtype):
    """Shortest-safe C text of a float16/float32 value: %.5g for f16 (no suffix), %.9g + 'f' for f32."""
    dt = np.dtype(dtype)
    if dt == np.float16:
        return "%.5g" % float(value)
    if dt == np.float32:
        text = "%.9g" % float(value)
        return text + ("f" if any(c in text for c in ".e") else ".0f")
    raise FrontendError(f"C constants are written as float16 or float32, not {dt}")


# ----------------------------------------------------------------------------------------------------
# GenHeaders-style C tables
# ----------------------------------------------------------------------------------------------------

_FLOAT_TYPES = ("float32_t", "float", "float16_t", "_Float16", "double", "float64_t")
_INT_TYPES = ("uint32_t", "int32_t", "uint16_t", "int16_t", "int", "unsigned", "unsigned int", "uint8_t", "size_t")


def read_c_arrays(path):
    """All `[const] type name[n] = {...};` arrays of a C file -> {name: numpy array}, floats rounded
    exactly as the compiler would for the declared element type, integers as int64 (emu.cheader parses)."""
    from ..errors import printable
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FrontendError(f"{printable(path, 4096)}: cannot read the C table ({type(e).__name__}); give a UTF-8 .h/.c "
                            f"file") from None
    try:
        arrays = cheader.parse_arrays(text, source=printable(path, 4096), types=_FLOAT_TYPES + _INT_TYPES)
    except CHeaderError as e:
        raise FrontendError(f"{printable(e, 4096)}; fix the table") from None
    return {name: (a.astype(np.int64) if a.dtype.kind in "iu" else a) for name, a in arrays.items()
            if a is not None}


def _pick(arrays, path, *keys, exclude=()):
    hits = [n for n in arrays if any(k in n.lower() for k in keys) and not any(x in n.lower() for x in exclude)]
    if len(hits) != 1:
        raise FrontendError(f"{path}: expected one array whose name contains {'/'.join(keys)}, found {hits or 'none'}")
    return arrays[hits[0]]


def load_mel_c(path, n_bins=None):
    """GenHeaders-style C mel table (start/stop index arrays + coefficient LUT) -> dense float32 matrix
    [n_mels, n_bins] (n_bins defaults to max(stop)+1); coefficients rounded as the compiler stores them."""
    path = _table_file(path, ".h/.c")
    arrays = read_c_arrays(path)
    start = _pick(arrays, path, "start")
    stop = _pick(arrays, path, "stop")
    coefs = _pick(arrays, path, "lut", "coef", exclude=("start", "stop", "win"))
    if start.ndim != 1 or stop.ndim != 1 or coefs.ndim != 1 or not start.size:
        raise FrontendError(f"{path}: the start/stop/coefficient tables must be non-empty 1-D arrays; fix the table")
    if n_bins is None:
        n_bins = int(np.max(stop)) + 1
    return dense_mel(start, stop, coefs, n_bins).astype(np.float32)


def load_window_c(path):
    """The window array (name containing 'win') of a GenHeaders-style C table file, as stored."""
    return _pick(read_c_arrays(path), path, "win")


def write_c_tables(path, start, stop, coefs, window=None, dtype=np.float32, prefix="user"):
    """Write a GenHeaders-style C source: `<prefix>_melFiltersStartIndices`, `..StopIndices` (uint32,
    stop inclusive), `<prefix>_melFilterLut` and optionally `<prefix>_win` in float32_t or float16_t."""
    dt = np.dtype(dtype)
    ctype = {np.dtype(np.float32): "float32_t", np.dtype(np.float16): "float16_t"}.get(dt)
    if ctype is None:
        raise FrontendError(f"C tables are float32 or float16, not {dt}")

    def floats(name, vals):
        vals = np.asarray(vals).astype(dt)
        body = ",\n  ".join(", ".join(format_c_constant(v, dt) for v in vals[i:i + 8]) for i in range(0, len(vals), 8))
        return f"const {ctype} {prefix}_{name}[{len(vals)}] = {{\n  {body}\n}};\n"

    def ints(name, vals):
        body = ", ".join(str(int(v)) for v in vals)
        return f"const uint32_t {prefix}_{name}[{len(vals)}] = {{{body}}};\n"

    parts = ["/* Mel filter bank and window tables (GenHeaders style), written by n6emu. */\n",
             "#include <stdint.h>\n#include \"arm_math_types.h\"\n",
             ints("melFiltersStartIndices", start), ints("melFiltersStopIndices", stop),
             floats("melFilterLut", coefs)]
    if window is not None:
        parts.append(floats("win", window))
    Path(path).write_text("\n".join(parts))
    return Path(path)


def mel_matrix(params):
    """The float32 [n_mels, n_fft//2+1] filter bank named by params.mel_source (FrontendParams): generated
    ("librosa" | "torchaudio", with params' scale/norm/fmin/fmax) or loaded from a .npy / C table file."""
    src = str(params.mel_source)
    if src == "librosa" or src in TORCHAUDIO_FLAVORS:
        norm = None if params.mel_norm == "none" else params.mel_norm
        return mel_filterbank(params.sample_rate, params.n_fft, params.n_mels, params.fmin, params.fmax_hz,
                              scale=params.mel_scale, norm=norm, flavor=src)
    if src.endswith(".npy"):
        return load_mel_npy(src, params.n_mels, params.n_bins)
    if not src.endswith((".h", ".c")):
        raise FrontendError(f"mel_source {src!r} is neither librosa, {', '.join(TORCHAUDIO_FLAVORS)} nor a "
                            f".npy/.h/.c table file")
    matrix = load_mel_c(src, n_bins=params.n_bins)
    if matrix.shape != (params.n_mels, params.n_bins):
        raise FrontendError(f"{src}: mel table is {matrix.shape}, expected ({params.n_mels}, {params.n_bins}); "
                            f"regenerate it for n_mels={params.n_mels}, n_fft={params.n_fft}")
    return matrix
