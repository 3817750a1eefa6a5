/* C twin of emu/frontend/helium_f32.py: CMSIS-DSP's Helium (MVE) f32 paths as the Cortex-M55 computes them. */
#ifndef N6EMU_HELIUM_F32_H
#define N6EMU_HELIUM_F32_H
#include <stdint.h>

/* The tables of emu.frontend.helium_f32.prepare_cfft / prepare_rfft (same names, same contents). */
typedef struct {
    int32_t fft_len;             /* complex length L (16..4096) */
    const float *coef;           /* [2L]   twiddleCoef_L */
    const float *tw1;            /* [tw_len] rearranged_twiddle_stride1 of the radix-4 length */
    const float *tw2;            /* [tw_len] stride 2 */
    const float *tw3;            /* [tw_len] stride 3 */
    const int32_t *stage_off;    /* per radix-4 stage: offset into tw1/tw2/tw3 */
    const int32_t *bitrev;       /* [bitrev_len] swap pairs as byte offsets */
    int32_t bitrev_len;
    const float *rtw;            /* [2L] twiddleCoef_rfft_{2L} (rfft only; may be NULL for the cfft) */
} helium_f32_fft;

/* arm_cfft_f32 forward + bit reversal, in place on buf[2L] interleaved complex. */
void helium_cfft_f32(const helium_f32_fft *t, float *buf);
/* arm_rfft_fast_f32 forward: buf[2L] real samples (overwritten), out[2L] packed; ofast: the -Ofast build's
   split sum order ((xB + res) + xA) instead of -Os's ((xB + xA) + res). */
void helium_rfft_fast_f32(const helium_f32_fft *t, float *buf, float *out, int32_t ofast);
/* arm_cmplx_mag_squared_f32: dst[k] = |src[2k] + i src[2k+1]|^2, k < n (MVE block order; overlap allowed). */
void helium_cmplx_mag_squared_f32(const float *src, float *dst, int32_t n);
/* arm_cmplx_mag_f32 (Newton rsqrt in blocks of 4, VSQRT in the tail; overlap allowed). */
void helium_cmplx_mag_f32(const float *src, float *dst, int32_t n);
/* arm_dot_prod_f32: 4 fused lanes, then ((l0 + l1) + l2) + l3. */
float helium_dot_prod_f32(const float *a, const float *b, int32_t n);
/* arm_mult_f32: dst[k] = a[k] * b[k] with flush to zero. */
void helium_mult_f32(const float *a, const float *b, float *dst, int32_t n);
/* arm_q15_to_float: dst[k] = src[k] / 32768. */
void helium_q15_to_float(const int16_t *src, float *dst, int32_t n);

#endif
