/* The ST audio application's LogMel column (float16 build) on the Cortex-M55: our own C transcription of
   the application's column statements (DESIGN §5.1, facts only), calling CMSIS-DSP built with the
   application's flags, so that every CMSIS-DSP call takes its Helium (MVE) path and every application
   statement has the target's `float16_t` = `__fp16` semantics: each expression is evaluated in float32
   (gcc contracts a*b+c to one vfma.f32) and rounded to binary16 on store.

   Per frame t of a patch (frame start t*hop in the patch), one column:
     arm_q15_to_f16(pcm + t*hop, buf + pad_left, win)        buf: n_fft zeros around the frame
     arm_mult_f16(buf + pad_left, window, buf + pad_left, win)
     arm_rfft_fast_f16(&S, buf, fft, 0)                       packed [X0.re, X(N/2).re, X1.re, X1.im, ...]
     power, in place (inplace_power = 1): fft[0] = X0.re^2; fft[N/2] = X(N/2).re^2;
        arm_cmplx_mag_squared_f16(fft + 2, fft + 1, N/2 - 1)   (reads fft[N/2] as Re X(N/4) after the store)
       separate buffer (inplace_power = 0): pw[0] = X0.re^2; arm_cmplx_mag_squared_f16(fft + 2, pw + 1, N/2 - 1);
        pw[N/2] = X(N/2).re^2
     magnitude mode: spec[k] = sqrtf(power[k])                 power mode: spec = power
     silence += spec[k] for k = 0..N/2                         (float16_t running sum over the patch)
     mel[m] = arm_dot_prod_f16(spec + start[m], coefs + offs[m], stop[m] - start[m] + 1); mel <= 0 -> (float16_t)FLT_MIN
     log[m] = logf(mel[m]) (ln) or 10.0f * log10f(mel[m]) clamped below at -top_db (db; the app's top_db is HUGE_VALF)
     q[m]   = sat8((int16_t)roundf(log[m] * inv_scale + zp)),  inv_scale = (float16_t)(1.0f / scale)

   job.bin (little endian): int32 header[16] = {0x4E36464A, n_fft, win, hop, n_frames, n_mels, spectrum
   (0 power, 1 magnitude), log (0 ln, 1 db), inplace_power, n_patches, coefs_len, zero_point, scale (float
   bits), top_db (float bits), 0, 0}; f16 window[win]; int32 start[n_mels], stop[n_mels], offs[n_mels];
   f16 coefs[coefs_len]; int16 pcm[n_patches][patch_len], patch_len = win - hop + n_frames*hop.
   stages.bin: per patch, per frame: f16 framed[n_fft], windowed[n_fft], fft[n_fft], power[N/2+1],
   spec[N/2+1], mel[n_mels], log[n_mels]; int8 q[n_mels]; then per patch f16 silence.

   Built with -DAPP_F32: the float32 column (ST's st-f32 application on a Helium core), every f16 above
   float32: arm_q15_to_float, arm_mult_f32, arm_rfft_fast_f32, arm_cmplx_mag_squared_f32 (power) or
   arm_cmplx_mag_f32 (magnitude: DC and Nyquist as sqrtf of their squares, stored first, same in-place
   structure), arm_dot_prod_f32, mel < FLT_MIN -> FLT_MIN, q = sat8((int32_t)roundf(...)); the window and
   coefficients in job.bin are float32. The "power" stage of the magnitude mode is computed on a copy of
   the FFT (the app does not compute it; it is the emulator's dump). */
#include <float.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arm_math.h"
#include "arm_math_f16.h"

#ifdef APP_F32
typedef float32_t sample_t;
typedef int32_t cast_t;
#define FLOOR_VALUE FLT_MIN
#define rfft_instance arm_rfft_fast_instance_f32
#define rfft_init arm_rfft_fast_init_f32
#define rfft arm_rfft_fast_f32
#define q15_convert arm_q15_to_float
#define mult arm_mult_f32
#define mag_squared arm_cmplx_mag_squared_f32
#define dot_prod arm_dot_prod_f32
#define BELOW_FLOOR(v) ((v) < FLT_MIN)
#else
typedef float16_t sample_t;
typedef int16_t cast_t;
#define FLOOR_VALUE ((float16_t)FLT_MIN)
#define rfft_instance arm_rfft_fast_instance_f16
#define rfft_init arm_rfft_fast_init_f16
#define rfft arm_rfft_fast_f16
#define q15_convert arm_q15_to_f16
#define mult arm_mult_f16
#define mag_squared arm_cmplx_mag_squared_f16
#define dot_prod arm_dot_prod_f16
#define BELOW_FLOOR(v) ((v) <= 0.0f)
#endif
#define S sizeof(sample_t)

static FILE *out_file;

static void fail(const char *what)
{
    printf("m55: error: %s\n", what);
    exit(1);
}

static void *alloc(size_t bytes)
{
    void *p = memalign(16, bytes + 16);
    if (p == NULL) fail("out of memory");
    memset(p, 0, bytes + 16);
    return p;
}

static void read_exact(FILE *f, void *p, size_t bytes)
{
    if (fread(p, 1, bytes, f) != bytes) fail("job.bin is truncated");
}

static void put(const void *p, size_t bytes)
{
    if (fwrite(p, 1, bytes, out_file) != bytes) fail("cannot write stages.bin");
}

static int8_t quantize(sample_t v, sample_t inv_scale, float zp)
{
    cast_t i = (cast_t)roundf(v * inv_scale + zp);
    return (int8_t)(i > 127 ? 127 : i < -128 ? -128 : i);
}

int main(void)
{
    FILE *in = fopen("job.bin", "rb");
    out_file = fopen("stages.bin", "wb");
    if (in == NULL || out_file == NULL) fail("cannot open job.bin / stages.bin");
    int32_t h[16];
    read_exact(in, h, sizeof h);
    if (h[0] != 0x4E36464A) fail("job.bin: bad magic");
    const int n_fft = h[1], win = h[2], hop = h[3], n_frames = h[4], n_mels = h[5];
    const int magnitude = h[6], db = h[7], inplace = h[8], n_patches = h[9], coefs_len = h[10];
    const float zp = (float)h[11];
    float scale, top_db;
    memcpy(&scale, &h[12], 4);
    memcpy(&top_db, &h[13], 4);
    const int n_bins = n_fft / 2 + 1, pad_left = (n_fft - win) / 2, patch_len = win - hop + n_frames * hop;

    sample_t *window = alloc(win * S), *coefs = alloc(coefs_len * S);
    int32_t *start = alloc(n_mels * 4), *stop = alloc(n_mels * 4), *offs = alloc(n_mels * 4);
    read_exact(in, window, win * S);
    read_exact(in, start, n_mels * 4);
    read_exact(in, stop, n_mels * 4);
    read_exact(in, offs, n_mels * 4);
    read_exact(in, coefs, coefs_len * S);
    int16_t *pcm = alloc(patch_len * 2);
    sample_t *buf = alloc(n_fft * S), *fft = alloc(n_fft * S), *pw = alloc(n_bins * S), *spec = alloc(n_bins * S);
    sample_t *copy = alloc(n_fft * S), *mel = alloc(n_mels * S), *logmel = alloc(n_mels * S);
    int8_t *q = alloc(n_mels);

    rfft_instance inst;
    if (rfft_init(&inst, (uint16_t)n_fft) != ARM_MATH_SUCCESS) fail("rfft_fast_init");
    const sample_t inv_scale = 1.0f / scale;

    for (int p = 0; p < n_patches; p++) {
        read_exact(in, pcm, patch_len * 2);
        sample_t silence = 0.0f;
        for (int t = 0; t < n_frames; t++) {
            memset(buf, 0, n_fft * S);
            q15_convert(pcm + t * hop, buf + pad_left, win);
            put(buf, n_fft * S);
            mult(buf + pad_left, window, buf + pad_left, win);
            put(buf, n_fft * S);
            rfft(&inst, buf, fft, 0);
            put(fft, n_fft * S);
            memcpy(copy, fft, n_fft * S);
            sample_t *power;
            if (inplace) {
                copy[0] = fft[0] * fft[0];
                copy[n_fft / 2] = fft[1] * fft[1];
                mag_squared(copy + 2, copy + 1, n_fft / 2 - 1);
                power = copy;
            } else {
                pw[0] = fft[0] * fft[0];
                mag_squared(fft + 2, pw + 1, n_fft / 2 - 1);
                pw[n_fft / 2] = fft[1] * fft[1];
                power = pw;
            }
            put(power, n_bins * S);
#ifdef APP_F32
            if (magnitude) {
                sample_t *dst = inplace ? fft : spec;
                float dc = fft[0] * fft[0], nyq = fft[1] * fft[1];
                dst[0] = sqrtf(dc);
                dst[n_fft / 2] = sqrtf(nyq);
                arm_cmplx_mag_f32(fft + 2, dst + 1, n_fft / 2 - 1);
                if (inplace) memcpy(spec, fft, n_bins * S);
            } else {
                memcpy(spec, power, n_bins * S);
            }
#else
            for (int k = 0; k < n_bins; k++) spec[k] = magnitude ? sqrtf(power[k]) : power[k];
#endif
            put(spec, n_bins * S);
            for (int k = 0; k < n_bins; k++) silence += spec[k];
            for (int m = 0; m < n_mels; m++) {
                dot_prod(spec + start[m], coefs + offs[m], (uint32_t)(stop[m] - start[m] + 1), &mel[m]);
                if (BELOW_FLOOR(mel[m])) mel[m] = FLOOR_VALUE;
                if (db) {
                    logmel[m] = 10.0f * log10f(mel[m]);
                    if (logmel[m] < -top_db) logmel[m] = -top_db;
                } else {
                    logmel[m] = logf(mel[m]);
                }
                q[m] = quantize(logmel[m], inv_scale, zp);
            }
            put(mel, n_mels * S);
            put(logmel, n_mels * S);
            put(q, n_mels);
        }
        put(&silence, S);
    }
    fclose(in);
    fclose(out_file);
    printf("m55: ok\n");
    return 0;
}
