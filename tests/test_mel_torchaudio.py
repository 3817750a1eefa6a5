"""mel_source = "torchaudio-*": equal bit for bit to torchaudio.functional.melscale_fbanks as torch computes it
with each CPU capability, and the float32 pieces it is built from (SLEEF powf, MKL expf) equal to torch's own.

Oracle: torch + torchaudio, run in a subprocess per capability (ATEN_CPU_CAPABILITY), so that torch's threads and
libraries never share this process. Skips only when torchaudio is not installed, or when this CPU cannot run a
capability (AVX-512)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from emu.f32math import libm_powf, mkl_expf, sleef_powf_u10
from emu.frontend import tables
from emu.frontend.params import FrontendError

CONFIGS = [   # (sample_rate, n_fft, n_mels, fmin, fmax): 10 configurations, each with both scales and both norms
    (16000, 1024, 40, 50.0, 7500.0), (16000, 512, 64, 0.0, 8000.0), (22050, 2048, 128, 0.0, 11025.0),
    (16000, 1024, 40, 20.0, 4000.0), (8000, 256, 20, 100.0, 3800.0), (16000, 640, 40, 20.0, 8000.0),
    (16000, 400, 80, 0.0, 8000.0), (44100, 2048, 128, 30.0, 16000.0), (48000, 1024, 64, 0.0, 24000.0),
    (16000, 320, 10, 300.0, 3400.0)]
CASES = [c + (scale, norm) for c in CONFIGS for scale in ("slaney", "htk") for norm in ("slaney", None)]
CAPABILITIES = {"torchaudio-avx512": "avx512", "torchaudio-avx2": "avx2", "torchaudio-default": "default"}

ORACLE = r"""
import json, sys
import numpy as np, torch, torchaudio.functional as F
torch.set_num_threads(1)
cases, out, want = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
got = torch.backends.cpu.get_cpu_capability().lower()
res = {"capability": np.array(got)}
for i, (sr, n_fft, n_mels, fmin, fmax, scale, norm) in enumerate(cases):
    res[f"fb{i}"] = F.melscale_fbanks(n_fft // 2 + 1, fmin, fmax, n_mels, sr, norm=norm, mel_scale=scale).numpy()
rng = np.random.default_rng(7)
y = rng.uniform(-0.5, 3.0, 20000).astype(np.float32)
x = np.concatenate([rng.uniform(-8, 8, 20000), rng.uniform(-80, 80, 2000), [0, -0.0, 1e-30, 88.0, -87.0]]).astype(np.float32)
res["y"], res["pow"], res["x"], res["exp"] = y, torch.pow(10.0, torch.from_numpy(y)).numpy(), x, torch.exp(torch.from_numpy(x)).numpy()
for n in (1, 7, 15, 16, 17, 31, 32, 33, 42, 63, 64, 65, 130):
    res[f"pow{n}"] = torch.pow(10.0, torch.from_numpy(y[:n].copy())).numpy()
np.savez(out, **res)
"""


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """Per capability: torchaudio's 40 filter banks and torch's pow/exp on random values (or None)."""
    try:
        import importlib.util
        found = importlib.util.find_spec("torchaudio") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        pytest.skip('oracle unavailable: torchaudio is not installed; pip install -e ".[test]"')
    tmp = tmp_path_factory.mktemp("torchaudio")
    results = {}
    for flavor, cap in CAPABILITIES.items():
        out = tmp / f"{cap}.npz"
        env = dict(os.environ, ATEN_CPU_CAPABILITY=cap, OMP_NUM_THREADS="1")
        subprocess.run([sys.executable, "-c", ORACLE, json.dumps(CASES), str(out), cap], check=True, env=env,
                       timeout=600)
        r = dict(np.load(out))
        results[flavor] = r if str(r["capability"]) == cap else None     # the CPU cannot run this capability
    return results


def _ref(oracle, flavor):
    r = oracle[flavor]
    if r is None:
        pytest.skip(f"oracle unavailable: this CPU cannot run torch's {CAPABILITIES[flavor]} kernels")
    return r


@pytest.mark.parametrize("flavor", list(CAPABILITIES))
@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[3]:g}-{c[4]:g}-{c[5]}-{c[6]}"
                                                          for c in CASES])
def test_filter_bank_equals_torchaudio(oracle, flavor, case):
    r = _ref(oracle, flavor)
    sr, n_fft, n_mels, fmin, fmax, scale, norm = CASES[case]
    got = tables.mel_filterbank(sr, n_fft, n_mels, fmin, fmax, scale=scale, norm=norm, flavor=flavor)
    ref = r[f"fb{case}"].T
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))


def test_torchaudio_names_the_avx2_flavor():
    args = (16000, 640, 40, 20.0, 8000.0)
    for scale in ("slaney", "htk"):
        a = tables.mel_filterbank(*args, scale=scale, norm=None, flavor="torchaudio")
        b = tables.mel_filterbank(*args, scale=scale, norm=None, flavor="torchaudio-avx2")
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_flavors_differ_where_torch_does(oracle):
    """The capability matters: on these configurations the three torch builds give different filter banks, and each
    flavor reproduces its own (so a wrong flavor is detected, not hidden)."""
    avail = {f: oracle[f] for f in CAPABILITIES if oracle[f] is not None}
    if len(avail) < 2:
        pytest.skip("oracle unavailable: fewer than two torch capabilities run on this CPU")
    differing = 0
    for i, (sr, n_fft, n_mels, fmin, fmax, scale, norm) in enumerate(CASES):
        refs = [avail[f][f"fb{i}"] for f in avail]
        differing += any(not np.array_equal(refs[0], other) for other in refs[1:])
    assert differing >= 3


def test_sleef_powf_equals_torch_pow(oracle):
    r = _ref(oracle, "torchaudio-avx512") if oracle["torchaudio-avx512"] is not None else _ref(oracle, "torchaudio-avx2")
    y = r["y"]
    got = sleef_powf_u10(np.float32(10), y[:len(y) // 32 * 32])
    ref = r["pow"][:len(y) // 32 * 32]
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
    # SLEEF and the C library disagree on a few percent of these values: the emulation is not a plain pow
    assert np.count_nonzero(got != libm_powf(np.float32(10), y[:len(got)])) > 50


@pytest.mark.parametrize("flavor", list(CAPABILITIES))
def test_pow_blocks_and_tail(oracle, flavor):
    """Whole blocks of two vectors go to SLEEF, the rest to the C library's powf (tails of every length)."""
    r = _ref(oracle, flavor)
    for n in (1, 7, 15, 16, 17, 31, 32, 33, 42, 63, 64, 65, 130):
        got = tables._torch_pow10(r["y"][:n], tables.TORCHAUDIO_FLAVORS[flavor])
        assert np.array_equal(got.view(np.uint32), r[f"pow{n}"].view(np.uint32)), n


def test_mkl_expf_equals_torch_exp(oracle):
    r = _ref(oracle, "torchaudio-avx2")
    got = mkl_expf(r["x"])
    assert np.array_equal(got.view(np.uint32), r["exp"].view(np.uint32))
    correctly_rounded = np.exp(r["x"].astype(np.float64)).astype(np.float32)
    assert np.count_nonzero(got != correctly_rounded) > 20, "MKL's HA exp is not the correctly rounded exp"


def test_unknown_flavor_is_one_line():
    with pytest.raises(FrontendError, match="torchaudio-avx2") as e:
        tables.mel_filterbank(16000, 512, 40, 0, 8000, flavor="torchaudio-neon")
    assert "\n" not in str(e.value)
