/* C twin of emu/frontend/cmsis_q15.py: CMSIS-DSP q15 front-end primitives (pure-C build semantics,
 * plus the "dsp-ext" butterfly variant when dsp != 0), arm_mfcc_q15 and the log-mel / MFCC patch loops.
 * Complex data interleaved [re, im]; every C integer width reproduced with explicit wraps/saturations.
 * Tables (twiddles, bit reversal, split coefficients, sqrt LUT) are prepared by the Python side. */
#ifndef N6_FRONTEND_Q15_H
#define N6_FRONTEND_Q15_H
#include <stdint.h>

void n6q15_mult(const int16_t *a, const int16_t *b, int16_t *out, int32_t n);
void n6q15_rfft(int16_t *src, int32_t n_fft, const int16_t *twiddle, const int32_t *bitrev,
                const int16_t *coef_a, const int16_t *coef_b, int32_t modifier, int32_t dsp, int16_t *dst);
void n6q15_cmplx_mag(const int16_t *src, int16_t *dst, int32_t n, const int32_t *lut);
void n6q15_cmplx_mag_squared(const int16_t *src, int16_t *dst, int32_t n);
void n6q15_vlog_q31(const int32_t *src, int32_t *dst, int32_t n);
void n6q15_vlog_q15(const int16_t *src, int16_t *dst, int32_t n);
void n6q15_mfcc(int16_t *src, const int16_t *window, int32_t n_fft, const int16_t *twiddle,
                const int32_t *bitrev, const int16_t *coef_a, const int16_t *coef_b, int32_t modifier,
                int32_t dsp, const int32_t *lut, const int32_t *mel_start, const int32_t *mel_len,
                const int16_t *mel_coefs, int32_t n_mels, const int16_t *dct, int32_t n_dct,
                int16_t *tmp_spec, int32_t *tmp_mel, int16_t *rec_frame, int16_t *rec_bins,
                int32_t *rec_log, int16_t *out);
void n6q15_logmel_patch(const int16_t *pcm, int32_t n_frames, int32_t hop, int32_t win_len, int32_t pad_left,
                        const int16_t *window, int32_t n_fft, const int16_t *twiddle, const int32_t *bitrev,
                        const int16_t *coef_a, const int16_t *coef_b, int32_t modifier, int32_t dsp,
                        const int32_t *lut, int32_t power, const int32_t *mel_start, const int32_t *mel_len,
                        const int16_t *mel_coefs, int32_t n_mels, int64_t mel_bias, int32_t mel_shift,
                        int32_t use_log_q15, int32_t log_offset, int32_t q_mult, int32_t q_shift, int32_t q_zp, int32_t q_rounding,
                        int16_t *buf, int16_t *rec_frames, int16_t *rec_spec, int16_t *rec_bins,
                        int32_t *rec_mel, int32_t *rec_log, int8_t *features);
void n6q15_mfcc_patch(const int16_t *pcm, int32_t n_frames, int32_t hop, int32_t win_len, int32_t pad_left,
                      const int16_t *window, int32_t n_fft, const int16_t *twiddle, const int32_t *bitrev,
                      const int16_t *coef_a, const int16_t *coef_b, int32_t modifier, int32_t dsp,
                      const int32_t *lut, const int32_t *mel_start, const int32_t *mel_len,
                      const int16_t *mel_coefs, int32_t n_mels, const int16_t *dct, int32_t n_dct,
                      int32_t q_mult, int32_t q_shift, int32_t q_zp, int32_t q_rounding,
                      int16_t *buf, int32_t *tmp_mel, int16_t *rec_frames, int16_t *rec_spec,
                      int16_t *rec_bins, int32_t *rec_log, int16_t *rec_mfcc, int8_t *features);
#endif
