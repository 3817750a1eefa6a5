"""CMSIS-DSP on the Cortex-M55 (QEMU): the library built from the cmsisdsp sdist with the application's
flags (Helium paths), and `primitive(op, n, inputs)` running one CMSIS-DSP function on many input sets
(csrc/m55/dsp_primitives.c documents the ops)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import cmsis_sources
import m55
from conftest import _SHARED_HINT, SHARED

# The CMSIS-DSP sources the front ends use (f16 and f32 FFT, complex magnitude, dot product, multiply,
# q15 conversion) with their tables; everything else of the library is left out (build time).
DSP_SOURCES = [
    "TransformFunctions/arm_cfft_f16.c", "TransformFunctions/arm_cfft_init_f16.c",
    "TransformFunctions/arm_rfft_fast_f16.c", "TransformFunctions/arm_rfft_fast_init_f16.c",
    "TransformFunctions/arm_cfft_radix4_f16.c", "TransformFunctions/arm_bitreversal_f16.c",
    "TransformFunctions/arm_cfft_f32.c", "TransformFunctions/arm_cfft_init_f32.c",
    "TransformFunctions/arm_rfft_fast_f32.c", "TransformFunctions/arm_rfft_fast_init_f32.c",
    "TransformFunctions/arm_cfft_radix8_f32.c", "TransformFunctions/arm_bitreversal2.c",
    "CommonTables/arm_common_tables.c", "CommonTables/arm_common_tables_f16.c",
    "CommonTables/arm_const_structs.c", "CommonTables/arm_const_structs_f16.c",
    "CommonTables/arm_mve_tables.c", "CommonTables/arm_mve_tables_f16.c",
    "ComplexMathFunctions/arm_cmplx_mag_squared_f16.c", "ComplexMathFunctions/arm_cmplx_mag_f16.c",
    "ComplexMathFunctions/arm_cmplx_mag_squared_f32.c", "ComplexMathFunctions/arm_cmplx_mag_f32.c",
    "BasicMathFunctions/arm_dot_prod_f16.c", "BasicMathFunctions/arm_mult_f16.c",
    "BasicMathFunctions/arm_dot_prod_f32.c", "BasicMathFunctions/arm_mult_f32.c",
    "SupportFunctions/arm_q15_to_f16.c", "SupportFunctions/arm_q15_to_float.c",
    "FastMathFunctions/arm_vlog_f32.c", "FastMathFunctions/arm_vlog_f16.c",
]

OPS = {"rfft_f16": 1, "rfft_f32": 2, "mag_squared_f16": 3, "mag_f16": 4, "dot_f16": 5, "mult_f16": 6,
       "q15_to_f16": 7, "mag_squared_f32": 8, "mag_f32": 9, "dot_f32": 10, "mult_f32": 11,
       "q15_to_float": 12, "cfft_f16": 13, "cfft_f32": 14}
# (output element count as a function of n, output dtype)
_OUT = {1: (lambda n: n, np.float16), 2: (lambda n: n, np.float32), 3: (lambda n: n, np.float16),
        4: (lambda n: n, np.float16), 5: (lambda n: 1, np.float16), 6: (lambda n: n, np.float16),
        7: (lambda n: n, np.float16), 8: (lambda n: n, np.float32), 9: (lambda n: n, np.float32),
        10: (lambda n: 1, np.float32), 11: (lambda n: n, np.float32), 12: (lambda n: n, np.float32),
        13: (lambda n: 2 * n, np.float16), 14: (lambda n: 2 * n, np.float32)}


def skip_if_missing():
    reason = m55.missing()
    if reason:
        pytest.skip(reason)


def cmsis_core_include():
    """CMSIS Core headers (cmsis_compiler.h) from ../shared/arm/cmsis-core; skip when ../shared is absent."""
    d = SHARED / "arm" / "cmsis-core" / "Include"
    if not d.is_dir():
        pytest.skip(f"oracle unavailable: {d} (CMSIS Core headers for the Cortex-M55 build) is absent; {_SHARED_HINT}")
    return str(d)


def dsp_includes(src):
    return [os.path.join(src, "Include"), os.path.join(src, "PrivateInclude"), cmsis_core_include()]


def dsp_lib(tmp, opt="Os"):
    """libcmsisdsp for the Cortex-M55 at -Os or -Ofast (cached by content)."""
    src = cmsis_sources.source_dir(tmp)
    return m55.static_lib("cmsisdsp", [os.path.join(src, "Source", s) for s in DSP_SOURCES],
                          includes=dsp_includes(src), opt=opt)


def primitives_elf(tmp, opt="Os"):
    src = cmsis_sources.source_dir(tmp)
    return m55.build("dsp_primitives", [m55.M55_DIR / "dsp_primitives.c"], includes=dsp_includes(src),
                     libs=[dsp_lib(tmp, opt)], opt=opt)


def primitive(elf, op, n, input_sets):
    """Run op (a name of OPS) with size n on each input set (a tuple of arrays, written in order as their
    own dtype's bytes); returns an array [len(input_sets), out_len] of the output dtype."""
    code = OPS[op]
    body = [np.array([code, n, len(input_sets)], "<i4").tobytes()]
    for arrays in input_sets:
        body.extend(np.ascontiguousarray(a).tobytes() for a in arrays)
    out = m55.run(elf, {"job.bin": b"".join(body)}, ["out.bin"])["out.bin"]
    size, dtype = _OUT[code]
    return np.frombuffer(out, dtype).reshape(len(input_sets), size(n))


def app_elf(tmp, opt="Os", profile="st-f16"):
    """csrc/m55/frontend_app.c (the application's column: the float16 one, or the float32 one for st-f32)
    against CMSIS-DSP, both at -Os or -Ofast."""
    src = cmsis_sources.source_dir(tmp)
    return m55.build(f"frontend_app_{profile}", [m55.M55_DIR / "frontend_app.c"], includes=dsp_includes(src),
                     defines=["APP_F32"] if profile == "st-f32" else [], libs=[dsp_lib(tmp, opt)], opt=opt)


def app_stages(elf, state, patches, inplace_power=True):
    """Every stage of the application's column on the M55 for each int16 PCM patch, in the layout of
    emu.frontend.st.compute_stages (float32 values; mel/log/features mel-major), one dict per patch. The tables
    (window, sparse mel) are the emulator's prepared device tables; the scale and the FFT are the device's."""
    p = state.params
    vt = "<f4" if p.profile == "st-f32" else "<f2"          # the column's sample type
    as_vt = lambda a: np.asarray(a, np.float32).astype(vt).tobytes()  # noqa: E731
    top_db = np.float32(p.top_db)
    head = np.array([0x4E36464A, p.n_fft, p.win_length, p.hop_length, p.n_frames, p.n_mels,
                     int(p.spectrum == "magnitude"), int(p.log == "db"), int(bool(inplace_power)), len(patches),
                     state.mel_coefs.size, int(p.quant_zero_point),
                     int(np.float32(p.quant_scale).view(np.int32)), int(top_db.view(np.int32)), 0, 0], "<i4")
    body = [head.tobytes(), as_vt(state.window), state.mel_start.astype("<i4").tobytes(),
            state.mel_stop.astype("<i4").tobytes(), state.mel_offset.astype("<i4").tobytes(), as_vt(state.mel_coefs)]
    body += [np.ascontiguousarray(x, "<i2").tobytes() for x in patches]
    raw = m55.run(elf, {"job.bin": b"".join(body)}, ["stages.bin"])["stages.bin"]
    n_fft, n_bins, n_mels, n_frames = p.n_fft, p.n_bins, p.n_mels, p.n_frames
    frame = np.dtype([("framed", vt, n_fft), ("windowed", vt, n_fft), ("fft", vt, n_fft),
                      ("power", vt, n_bins), ("spectrum", vt, n_bins), ("mel", vt, n_mels),
                      ("log", vt, n_mels), ("int8", "i1", n_mels)])
    patch = np.dtype([("frames", frame, n_frames), ("silence_sum", vt)])
    recs = np.frombuffer(raw, patch)
    if recs.size != len(patches):
        raise RuntimeError(f"frontend_app wrote {len(raw)} bytes, expected {len(patches)} patches")
    out = []
    for r in recs:
        fr = r["frames"]
        d = {k: fr[k].astype(np.float32) for k in ("framed", "windowed", "fft", "power", "spectrum")}
        d.update({k: np.ascontiguousarray(fr[k].T.astype(np.float32)) for k in ("mel", "log")})
        d["features"] = np.ascontiguousarray(fr["int8"].T)
        d["silence_sum"] = np.float32(r["silence_sum"])
        out.append(d)
    return out
