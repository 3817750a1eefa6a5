"""emu.frontend.f16 against numpy.float16 (the oracle): every binary16 pattern, random float32 incl.
subnormals, overflow and exact ties, and float64 -> f16 single rounding."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from emu.frontend import f16

ALL_BITS = np.arange(65536, dtype=np.uint32).astype(np.uint16)


def _is_nan_bits(b):
    return ((b & 0x7C00) == 0x7C00) & ((b & 0x03FF) != 0)


def test_f16_to_f32_all_patterns_exact():
    got = f16.from_f16_bits(ALL_BITS)
    ref = ALL_BITS.view(np.float16).astype(np.float32)
    nan = _is_nan_bits(ALL_BITS)
    assert nan.sum() == 2 * 1023 * 1
    np.testing.assert_array_equal(got[~nan].view(np.uint32), ref[~nan].view(np.uint32))
    assert np.all(np.isnan(got[nan]))
    assert np.array_equal(np.signbit(got[nan]), (ALL_BITS[nan] & 0x8000) != 0)
    # payload: the 10 f16 payload bits land at the top of the float32 payload
    assert np.array_equal((got[nan].view(np.uint32) >> 13) & 0x3FF, ALL_BITS[nan] & 0x3FF)


def test_f16_f32_f16_roundtrip_all_patterns():
    back = f16.to_f16_bits(f16.from_f16_bits(ALL_BITS))
    nan = _is_nan_bits(ALL_BITS)
    quiet = (ALL_BITS & 0x0200) != 0
    np.testing.assert_array_equal(back[~nan], ALL_BITS[~nan])
    np.testing.assert_array_equal(back[nan & quiet], ALL_BITS[nan & quiet])
    # signalling NaNs come back quiet, sign and payload otherwise kept
    np.testing.assert_array_equal(back[nan & ~quiet], ALL_BITS[nan & ~quiet] | 0x0200)


def test_random_float32_bit_patterns_match_numpy():
    rng = np.random.default_rng(1234)
    x = rng.integers(0, 2**32, 400_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = x[~np.isnan(x)]
    with np.errstate(over="ignore"):
        ref = x.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(f16.to_f16_bits(x), ref)


def test_round_f16_fast_path_matches_numpy():
    rng = np.random.default_rng(99)
    x = rng.integers(0, 2**32, 400_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    mags = np.exp2(rng.uniform(-27, 17, 400_000)).astype(np.float32)
    x = np.concatenate([x, mags, -mags, ALL_BITS.view(np.float16).astype(np.float32)])
    out = np.empty_like(x)
    f16._round_kernel(x, out)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = x.astype(np.float16).astype(np.float32)
    nan = np.isnan(x)
    np.testing.assert_array_equal(out[~nan].view(np.uint32), ref[~nan].view(np.uint32))
    assert np.all(np.isnan(out[nan]))


def test_near_f16_range_values_and_subnormals_match_numpy():
    rng = np.random.default_rng(7)
    mags = np.exp2(rng.uniform(-27, 17, 300_000)).astype(np.float32)
    x = np.concatenate([mags, -mags, np.float32([0.0, -0.0, np.inf, -np.inf, 65504, 65519.996, 65520,
                                                 2.0**-24, 2.0**-25, 2.0**-25 * 1.0000001, 2.0**-14,
                                                 2.0**-14 - 2.0**-25, 6.1e-5, 5.96e-8])]).astype(np.float32)
    with np.errstate(over="ignore"):
        ref = x.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(f16.to_f16_bits(x), ref)


def test_exact_ties_round_to_even():
    finite = ALL_BITS[(ALL_BITS & 0x7C00) != 0x7C00]
    vals = finite.view(np.float16).astype(np.float64)
    vals = np.unique(vals[vals >= 0])
    mids = ((vals[:-1] + vals[1:]) / 2).astype(np.float32)         # exact in float32
    assert np.array_equal(mids.astype(np.float64), (vals[:-1] + vals[1:]) / 2)
    mids = np.concatenate([mids, -mids, np.float32([65520.0, -65520.0])])
    with np.errstate(over="ignore"):
        ref = mids.astype(np.float16).view(np.uint16)
    got = f16.to_f16_bits(mids)
    np.testing.assert_array_equal(got, ref)
    finite_got = got[(got & 0x7C00) != 0x7C00]
    assert np.all((finite_got & 1) == 0), "ties must go to the even significand"


def test_nan_float32_to_f16_keeps_sign_and_is_quiet():
    payloads = np.array([0x7FC00000, 0x7F800001, 0xFFC00000, 0xFF800001, 0x7FFFFFFF, 0x7F802000], np.uint32)
    got = f16.to_f16_bits(payloads.view(np.float32))
    assert np.all(_is_nan_bits(got))
    assert np.all((got & 0x0200) != 0)
    assert np.array_equal((got & 0x8000) != 0, (payloads & 0x80000000) != 0)


def test_round_f16_from_f64_single_rounding():
    rng = np.random.default_rng(3)
    d = rng.standard_normal(20_000) * np.exp2(rng.integers(-30, 17, 20_000))
    # values a hair away from f16 midpoints: double rounding through float32 would go wrong here
    finite = ALL_BITS[(ALL_BITS & 0x7C00) != 0x7C00].view(np.float16).astype(np.float64)
    finite = np.unique(finite[finite >= 0])
    mids = (finite[:-1] + finite[1:]) / 2
    near = np.concatenate([mids * (1 + 2.0**-40), mids * (1 - 2.0**-40), mids])
    d = np.concatenate([d, near, -near])
    got = np.array([f16.round_f16_from_f64(float(v)) for v in d], dtype=np.float32)
    with np.errstate(over="ignore"):
        ref = d.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))


@settings(max_examples=300, deadline=None)
@given(hst.floats(width=32, allow_nan=False))
def test_round_f16_scalar_matches_numpy(x):
    x32 = np.float32(x)
    with np.errstate(over="ignore"):
        ref = np.float32(np.float16(x32))
    got = f16.round_f16(x32)
    assert np.float32(got).view(np.uint32) == ref.view(np.uint32)


def test_bits_helpers_validate_dtype():
    with pytest.raises(ValueError, match="uint16"):
        f16.from_f16_bits(np.zeros(3, np.int16))
    assert f16.round_to_f16(np.float32([0.1])).dtype == np.float32


def test_round_f16_dn_gives_the_default_nan_and_equals_round_f16_otherwise():
    bits = np.arange(0, 2 ** 32, 4093, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    dn = np.array([f16.round_f16_dn(v) for v in x], np.float32)
    plain = np.array([f16.round_f16(v) for v in x], np.float32)
    nan = np.isnan(x)
    assert nan.any() and np.all(dn[nan].view(np.uint32) == 0x7FC00000)
    np.testing.assert_array_equal(dn[~nan].view(np.uint32), plain[~nan].view(np.uint32))
