"""The ST column as the STM32N6's Cortex-M55 computes it (isa = "helium"), against the real thing: our C
transcription of the application's column (csrc/m55/frontend_app.c) calling CMSIS-DSP built with the
application's flags (Helium paths), run on QEMU's Cortex-M55 (mps3-an547). Every stage, bit for bit."""
import numpy as np
import pytest

import m55_dsp
from emu.frontend import st
from emu.frontend.params import FrontendParams
from signals import KINDS, signal

STAGES = ("framed", "windowed", "fft", "power", "spectrum", "mel", "log", "features")


def geometry(n_fft):
    """A patch geometry per FFT size: the bundled one at 1024, shorter patches elsewhere (test time)."""
    if n_fft == 1024:
        return dict(n_fft=1024, win_length=640, hop_length=320, n_frames=49, n_mels=40, fmin=50.0, fmax=7500.0)
    return dict(n_fft=n_fft, win_length=n_fft // 2 + n_fft // 8, hop_length=n_fft // 4, n_frames=8,
                n_mels=24 if n_fft == 256 else 40, fmin=60.0, fmax=7500.0)


@pytest.fixture(scope="session")
def app_m55(tmp_path_factory):
    """get(opt, profile) -> ELF of the application's column on the Cortex-M55, built on first use."""
    m55_dsp.skip_if_missing()
    tmp = tmp_path_factory.mktemp("m55_app")
    elfs = {}

    def get(opt, profile="st-f16"):
        if (opt, profile) not in elfs:
            elfs[opt, profile] = m55_dsp.app_elf(tmp, opt, profile)
        return elfs[opt, profile]
    return get


def patches_for(p, seed):
    rng = np.random.default_rng(seed)
    return [signal(kind, p.patch_length, rng) for kind in KINDS]


def assert_same_as_m55(p, dev, patches, tag):
    state = st.prepare(p)
    for kind, pcm, ref in zip(KINDS, patches, dev):
        got = st.compute_stages(pcm, state)
        for k in STAGES:
            a, b = got[k], ref[k]
            bad = np.argwhere(a.view(np.uint8 if k == "features" else np.uint32) != b.view(np.uint8 if k == "features" else np.uint32))
            assert bad.size == 0, (f"{tag} {kind}: stage {k} differs from the Cortex-M55 in {len(bad)} of {a.size} "
                                   f"values, first at {tuple(bad[0])}: {a[tuple(bad[0])]} vs M55 {b[tuple(bad[0])]}")
        assert got["silence_sum"].view(np.uint32) == ref["silence_sum"].view(np.uint32), f"{tag} {kind}: silence sum"


@pytest.mark.parametrize("log", ["ln", "db"])
@pytest.mark.parametrize("spectrum", ["power", "magnitude"])
@pytest.mark.parametrize("n_fft", [256, 512, 1024, 2048])
def test_helium_os_column_equals_cortex_m55(app_m55, n_fft, spectrum, log):
    p = FrontendParams(**geometry(n_fft), spectrum=spectrum, log=log, quant_scale=30 / 255, quant_zero_point=42)
    assert p.isa == "helium" and p.optimization == "Os" and p.inplace_power
    patches = patches_for(p, n_fft)
    dev = m55_dsp.app_stages(app_m55("Os"), st.prepare(p), patches, inplace_power=True)
    assert_same_as_m55(p, dev, patches, f"n_fft {n_fft} {spectrum} {log}")


@pytest.mark.parametrize("scale,zp", [(0.110699, 78), (0.5, -128), (0.01, 127), (1 / 255, 0)])
def test_helium_quantization_and_separate_power_buffer(app_m55, scale, zp):
    """Zero-points at the extremes and scales from coarse to fine; the patched app with its own power buffer;
    dB with a finite top_db floor."""
    for inplace, log, top_db in ((False, "ln", float("inf")), (True, "db", 80.0)):
        p = FrontendParams(**geometry(512), quant_scale=scale, quant_zero_point=zp, inplace_power=inplace, log=log,
                           top_db=top_db)
        patches = patches_for(p, 7)
        dev = m55_dsp.app_stages(app_m55("Os"), st.prepare(p), patches, inplace_power=inplace)
        assert_same_as_m55(p, dev, patches, f"scale {scale} zp {zp} inplace {inplace} {log}")


def test_inplace_power_aliases_bin_n_fft_over_4():
    """The in-place power differs from the separate buffer at bin n_fft/4 only, where it is
    f16(P_nyquist^2) + Im(X[n_fft/4])^2 rounded once (vmul then vfma), and it reaches the int8 features."""
    p = FrontendParams(quant_scale=30 / 255, quant_zero_point=42)
    pcm = signal("speech", p.patch_length, np.random.default_rng(2))
    a = st.compute_stages(pcm, st.prepare(p))
    b = st.compute_stages(pcm, st.prepare(p.replace(inplace_power=False)))
    q = p.n_fft // 4
    np.testing.assert_array_equal(np.delete(a["power"], q, axis=1), np.delete(b["power"], q, axis=1))
    assert not np.array_equal(a["power"][:, q], b["power"][:, q])
    nyq, im = b["power"][:, p.n_fft // 2].astype(np.float64), a["fft"][:, 2 * q + 1].astype(np.float64)
    sq = (nyq * nyq).astype(np.float16).astype(np.float64)
    np.testing.assert_array_equal(a["power"][:, q], (sq + im * im).astype(np.float16).astype(np.float32))
    assert not np.array_equal(a["features"], b["features"])


def test_helium_differs_from_scalar_build():
    """The reason the switch exists: the two builds give different FFTs and features."""
    p = FrontendParams(quant_scale=30 / 255, quant_zero_point=42)
    pcm = signal("speech", p.patch_length, np.random.default_rng(5))
    h = st.compute_stages(pcm, st.prepare(p))
    s = st.compute_stages(pcm, st.prepare(p.replace(isa="scalar")))
    assert np.mean(h["fft"] != s["fft"]) > 0.3
    assert np.any(h["features"] != s["features"])


@pytest.mark.parametrize("spectrum,log,inplace", [("power", "ln", False), ("magnitude", "db", False),
                                                  ("power", "ln", True), ("magnitude", "ln", True)])
@pytest.mark.parametrize("n_fft", [512, 1024])
def test_helium_st_f32_column_equals_cortex_m55(app_m55, n_fft, spectrum, log, inplace):
    """st-f32 on a Helium core: the float32 column (MVE rfft_fast_f32, cmplx_mag(_squared)_f32, dot_prod_f32)."""
    p = FrontendParams(profile="st-f32", **geometry(n_fft), spectrum=spectrum, log=log, inplace_power=inplace,
                       quant_scale=30 / 255, quant_zero_point=42)
    patches = patches_for(p, n_fft + 1)
    dev = m55_dsp.app_stages(app_m55("Os", "st-f32"), st.prepare(p), patches, inplace_power=inplace)
    assert_same_as_m55(p, dev, patches, f"st-f32 n_fft {n_fft} {spectrum} {log} inplace {inplace}")


@pytest.mark.parametrize("profile,spectrum,log", [("st-f16", "power", "ln"), ("st-f16", "magnitude", "db"),
                                                  ("st-f32", "power", "ln")])
def test_helium_ofast_column_equals_cortex_m55_ofast_build(app_m55, profile, spectrum, log):
    """The IDE project's -Ofast build (CMSIS-DSP and the app at -Ofast): the rfft split sums in another order."""
    p = FrontendParams(profile=profile, **geometry(1024), spectrum=spectrum, log=log, optimization="Ofast",
                       quant_scale=30 / 255, quant_zero_point=42)
    patches = patches_for(p, 11)
    dev = m55_dsp.app_stages(app_m55("Ofast", profile), st.prepare(p), patches, inplace_power=p.inplace_power)
    assert_same_as_m55(p, dev, patches, f"{profile} -Ofast {spectrum} {log}")
    os_fft = st.compute_stages(patches[0], st.prepare(p.replace(optimization="Os")))["fft"]
    assert not np.array_equal(os_fft, dev[0]["fft"])


@pytest.mark.parametrize("log", ["ln", "db"])
@pytest.mark.parametrize("spectrum", ["power", "magnitude"])
@pytest.mark.parametrize("n_fft", [256, 512, 1024, 2048])
def test_helium_ofast_column_every_size_and_mode(app_m55, n_fft, spectrum, log):
    """The -Ofast build over the same matrix as -Os."""
    p = FrontendParams(**geometry(n_fft), spectrum=spectrum, log=log, optimization="Ofast", quant_scale=30 / 255,
                       quant_zero_point=42)
    patches = patches_for(p, n_fft + 3)
    dev = m55_dsp.app_stages(app_m55("Ofast"), st.prepare(p), patches, inplace_power=True)
    assert_same_as_m55(p, dev, patches, f"-Ofast n_fft {n_fft} {spectrum} {log}")
