/* C twin of emu/frontend/helium_f16.py: CMSIS-DSP's Helium (MVE) f16 paths as the Cortex-M55 computes them.
   f16 values are carried as float (exact binary16 values); tables come from helium_f16.prepare_rfft /
   prepare_cfft (split = 1 for radix-4-by-2 lengths 2*4^k, then tw_split holds fft_len floats; ofast = 1 for
   the -Ofast build of CMSIS-DSP, 0 for -Os). */
#ifndef N6EMU_HELIUM_F16_H
#define N6EMU_HELIUM_F16_H
#include <stdint.h>

void helium_cfft_f16(float *buf, int32_t fft_len, int32_t split, const float *tw_split, const float *tw1,
                     const float *tw2, const float *tw3, const int32_t *stage_off, const int32_t *bitrev);
void helium_rfft_fast_f16(float *buf, float *out, int32_t n_fft, int32_t split, const float *tw_split,
                          const float *tw1, const float *tw2, const float *tw3, const int32_t *stage_off,
                          const int32_t *bitrev, const float *tw_rfft, int32_t ofast);
void helium_cmplx_mag_squared_f16(const float *src, float *dst, int32_t n);
void helium_cmplx_mag_f16(const float *src, float *dst, int32_t n);
float helium_dot_prod_f16(const float *a, const float *b, int32_t n);
void helium_mult_f16(const float *a, const float *b, float *dst, int32_t n);
void helium_q15_to_f16(const int16_t *src, float *dst, int32_t n);
#endif
