"""emu.frontend.tables: window, mel banks (librosa oracle, 10 configurations; torchaudio: test_mel_torchaudio.py), sparse
form, C-compiler-exact constants (gcc is the oracle) and GenHeaders-style C import/export."""
import ctypes
import shutil
import subprocess
from fractions import Fraction

import numpy as np
import pytest

from emu.frontend import tables
from emu.frontend.params import FrontendError

GCC = shutil.which("gcc")
NO_GCC = "oracle unavailable: gcc is not installed (apt-get install gcc)"


def _skip_unless_gcc_has(ctype, tmp_path):
    """Skip (naming the fix) when gcc is absent or does not know `ctype` (_Float16 needs gcc >= 12 on x86-64): a
    compiler limit, not a fault of the text compiled next, which must then compile."""
    if GCC is None:
        pytest.skip(NO_GCC)
    probe = tmp_path / "probe.c"
    probe.write_text(f"const {ctype} probe = 1;\n")
    r = subprocess.run([GCC, "-c", "-std=c11", "-o", str(tmp_path / "probe.o"), str(probe)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"oracle unavailable: this gcc does not compile {ctype} ({r.stderr.splitlines()[:1]}); "
                    "install gcc >= 12")


def test_hann_periodic_formula_and_symmetry():
    w = tables.hann_periodic(640)
    assert w.dtype == np.float64 and w.shape == (640,)
    assert w[0] == 0.0 and w[320] == 1.0
    np.testing.assert_allclose(w[1:320], w[639:320:-1], rtol=0, atol=1e-15)
    from scipy.signal import get_window
    np.testing.assert_allclose(w, get_window("hann", 640, fftbins=True), rtol=0, atol=1e-12)


MEL_CASES = [
    (16000, 1024, 40, 50.0, 7500.0, "slaney", "slaney"),
    (16000, 512, 64, 0.0, 8000.0, "htk", None),
    (22050, 2048, 128, 0.0, None, "slaney", "slaney"),
    (16000, 1024, 40, 20.0, 4000.0, "htk", "slaney"),
    (8000, 256, 20, 100.0, 3800.0, "slaney", None),
    (16000, 640, 40, 20.0, 8000.0, "htk", "slaney"),
    (16000, 400, 80, 0.0, 8000.0, "slaney", "slaney"),
    (44100, 2048, 128, 30.0, 16000.0, "htk", None),
    (48000, 1024, 64, 0.0, 24000.0, "slaney", None),
    (16000, 320, 10, 300.0, 3400.0, "htk", "slaney"),
]


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax,scale,norm", MEL_CASES)
def test_mel_matches_librosa_exactly(sr, n_fft, n_mels, fmin, fmax, scale, norm):
    librosa = pytest.importorskip("librosa",
                                  reason='oracle unavailable: librosa is not installed; pip install -e ".[test]"')
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=scale == "htk", norm=norm)
    got = tables.mel_filterbank(sr, n_fft, n_mels, fmin, fmax, scale=scale, norm=norm)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("flavor", ["librosa", "torchaudio"])
@pytest.mark.parametrize("scale", ["slaney", "htk"])
def test_mel_structure(flavor, scale):
    sr, n_fft, n_mels, fmin, fmax = 16000, 1024, 40, 50.0, 7500.0
    m = tables.mel_filterbank(sr, n_fft, n_mels, fmin, fmax, scale=scale, norm=None, flavor=flavor)
    assert m.shape == (n_mels, n_fft // 2 + 1) and m.dtype == np.float32
    assert np.all(m >= 0) and m.max() <= 1.0
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    peaks = m.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0)
    for row in m:
        nz = np.flatnonzero(row)
        assert nz.size and np.all(np.diff(nz) == 1), "each triangle is one contiguous run"
        assert freqs[nz[0]] > fmin - 1e-9 and freqs[nz[-1]] < fmax + 1e-9
    # unnormalised triangles of neighbouring filters sum to ~1 between the first and last centre
    inner = (freqs > freqs[peaks[1]]) & (freqs < freqs[peaks[-2]])
    np.testing.assert_allclose(m.sum(axis=0)[inner], 1.0, atol=2e-5)
    slaney = tables.mel_filterbank(sr, n_fft, n_mels, fmin, fmax, scale=scale, norm="slaney", flavor=flavor)
    ratio = slaney.max(axis=1) / m.max(axis=1)
    assert np.all(np.diff(ratio) <= ratio[0] * 1e-6), "slaney area norm shrinks the wider (higher) filters"
    assert ratio[-1] < 0.5 * ratio[0]


def test_torchaudio_flavor_close_to_librosa_htk():
    a = tables.mel_filterbank(16000, 1024, 40, 50.0, 7500.0, scale="htk", norm=None, flavor="librosa")
    b = tables.mel_filterbank(16000, 1024, 40, 50.0, 7500.0, scale="htk", norm=None, flavor="torchaudio")
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_mel_argument_errors():
    with pytest.raises(FrontendError, match="sample_rate/2"):
        tables.mel_filterbank(16000, 1024, 40, 0, 9000)
    with pytest.raises(FrontendError, match="scale"):
        tables.mel_filterbank(16000, 1024, 40, 0, 8000, scale="mel")


def test_sparse_roundtrip_and_empty_row():
    m = tables.mel_filterbank(16000, 1024, 40, 50.0, 7500.0)
    start, stop, coefs = tables.sparse_mel(m)
    assert start.dtype == np.int32 and stop.dtype == np.int32 and coefs.dtype == np.float32
    assert np.all(m[np.arange(40), start] != 0) and np.all(m[np.arange(40), stop] != 0)
    assert coefs.size == int(np.sum(stop - start + 1))
    np.testing.assert_array_equal(tables.dense_mel(start, stop, coefs, 513), m)
    bad = m.copy()
    bad[7] = 0
    with pytest.raises(FrontendError, match="mel filter 7 has no non-zero bin"):
        tables.sparse_mel(bad)
    with pytest.raises(FrontendError, match="coefficients"):
        tables.dense_mel(start, stop, coefs[:-1], 513)


def test_load_mel_npy_shape_checks(tmp_path):
    m = tables.mel_filterbank(16000, 512, 32, 0.0, 8000.0)
    p = tmp_path / "mel.npy"
    np.save(p, m.astype(np.float64))
    got = tables.load_mel_npy(p, 32, 257)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, m)
    np.save(p, m.T)
    with pytest.raises(FrontendError, match="transposed"):
        tables.load_mel_npy(p, 32, 257)


# ---------------------------------------------------------------------------------------------------
# C-exact constants: gcc is the oracle
# ---------------------------------------------------------------------------------------------------

def _literals():
    rng = np.random.default_rng(5)
    lits = ["0.1", "0.1f", "1e-8", "1e-8f", "65504", "65519.99", "65520", "65520.0f", "-0.0", "0.0f",
            "3.4028235e38", "3.40282357e38f", "1.4e-45f", "5.96046448e-8", "2.98023224e-8", "2.98023225e-8f",
            "1.000000059604644775390625f", "1.0000000596046448f", "1.00048828125", "1.000488281250001",
            "0.70710678118f", "0.999981175f", "0.006135885f", "1.0009765625f", "0x1.8p-3", "0x1.000002p0f"]
    # exact float32 midpoints written in full decimal (ties) and f16 midpoints (double rounding via float)
    for v in rng.uniform(-4, 4, 40):
        f = np.float32(v)
        mid = (Fraction(float(f)) + Fraction(float(np.nextafter(f, np.float32(np.inf))))) / 2
        lits.append(_dec(mid) + "f")
        lits.append(_dec(mid))
    for h in rng.integers(1, 0x7BFF, 40).astype(np.uint16):
        a = Fraction(float(np.uint16(h).view(np.float16)))
        b = Fraction(float(np.uint16(h + 1).view(np.float16)))
        mid = (a + b) / 2
        lits += [_dec(mid), _dec(mid) + "f", _dec(mid + Fraction(1, 10**12)) + "f", _dec(mid - Fraction(1, 10**12))]
    for v in rng.standard_normal(60) * np.exp2(rng.integers(-30, 30, 60)):
        lits += ["%.9g" % v, "%.17ef" % v, "%.5g" % v]
    return lits


def _dec(fr):
    """Exact decimal text of a dyadic rational."""
    sign = "-" if fr < 0 else ""
    fr = abs(fr)
    k = 0
    while (fr * 10**k).denominator != 1:
        k += 1
    digits = str((fr * 10**k).numerator).rjust(k + 1, "0")
    return sign + (digits[:-k] + "." + digits[-k:] if k else digits + ".0")


@pytest.mark.parametrize("ctype,dtype", [("float", np.float32), ("_Float16", np.float16), ("double", np.float64)])
def test_round_like_c_matches_gcc(tmp_path, ctype, dtype):
    _skip_unless_gcc_has(ctype, tmp_path)
    lits = _literals()
    src = tmp_path / "consts.c"
    src.write_text(f"const {ctype} consts[{len(lits)}] = {{\n" + ",\n".join(lits) + "\n};\n")
    so = tmp_path / "consts.so"
    r = subprocess.run([GCC, "-shared", "-fPIC", "-std=c11", "-o", str(so), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, f"gcc rejects the {ctype} constants: {r.stderr[:2000]}"
    lib = ctypes.CDLL(str(so))
    n = len(lits) * np.dtype(dtype).itemsize
    raw = ctypes.string_at(ctypes.addressof(ctypes.c_char.in_dll(lib, "consts")), n)
    ref = np.frombuffer(raw, dtype=dtype)
    got = tables.round_like_c(lits, dtype)
    bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]
    mism = np.flatnonzero(got.view(bits) != ref.view(bits))
    assert mism.size == 0, f"{mism.size} mismatches, first: {[lits[i] for i in mism[:5]]}"


def test_printed_constants_roundtrip():
    rng = np.random.default_rng(11)
    x32 = rng.integers(0, 2**32, 3000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x32 = x32[np.isfinite(x32)]
    texts = [tables.format_c_constant(v, np.float32) for v in x32]          # %.9g + f
    np.testing.assert_array_equal(tables.round_like_c(texts, np.float32).view(np.uint32),
                                  x32.view(np.uint32))
    all16 = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    all16 = all16[np.isfinite(all16)]
    texts16 = [tables.format_c_constant(v, np.float16) for v in all16]
    np.testing.assert_array_equal(tables.round_like_c(texts16, np.float16).view(np.uint16), all16.view(np.uint16))


def test_round_like_c_rejects_garbage():
    with pytest.raises(FrontendError, match="not a C floating constant"):
        tables.round_like_c(["1.0q"], np.float32)
    with pytest.raises(FrontendError, match="not a C floating constant"):
        tables.round_like_c(["12f"], np.float32)          # C: invalid suffix on an integer constant


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_write_and_load_c_tables(tmp_path, dtype):
    m = tables.mel_filterbank(16000, 1024, 40, 50.0, 7500.0)
    start, stop, coefs = tables.sparse_mel(m)
    win = tables.hann_periodic(640)
    path = tables.write_c_tables(tmp_path / "user_mel_tables.c", start, stop, coefs, window=win, dtype=dtype)
    dense = tables.load_mel_c(path, 513)
    np.testing.assert_array_equal(dense, m.astype(dtype).astype(np.float32))
    w = tables.load_window_c(path)
    np.testing.assert_array_equal(w, win.astype(np.float32).astype(dtype))
    # the compiler stores exactly what load_mel_c reads (the checks above have passed when this skips)
    _skip_unless_gcc_has("_Float16", tmp_path)
    hdr = tmp_path / "arm_math_types.h"
    hdr.write_text("typedef float float32_t;\ntypedef _Float16 float16_t;\n")
    so = tmp_path / "tables.so"
    r = subprocess.run([GCC, "-shared", "-fPIC", "-std=c11", "-I", str(tmp_path), "-o", str(so), str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"gcc rejects the table write_c_tables wrote: {r.stderr[:2000]}"
    lib = ctypes.CDLL(str(so))
    raw = ctypes.string_at(ctypes.addressof(ctypes.c_char.in_dll(lib, "user_melFilterLut")),
                           coefs.size * np.dtype(dtype).itemsize)
    np.testing.assert_array_equal(np.frombuffer(raw, dtype=dtype), coefs.astype(dtype))
