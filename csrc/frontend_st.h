/* C twin of emu/frontend/st.py: the ST column front end (st-f16, st-f32) with the same switches.
 * f16 values are carried as float holding a binary16 value; r16() rounds through _Float16 (RNE).
 * Layouts: framed/windowed/fft [n_frames][n_fft], power/spec [n_frames][n_fft/2+1],
 * mel/logmel/q [n_mels][n_frames] (mel-major). The caller owns every buffer. */
#ifndef N6EMU_FRONTEND_ST_H
#define N6EMU_FRONTEND_ST_H
#include <stdint.h>
#include "helium_f32.h"

typedef struct {
    int32_t n_fft, win, hop, n_frames, n_mels, pad_left;
    int32_t algo;           /* 0 radix-4, 1 radix-4-by-2 (f16); 2 radix-8, 3 radix-8-by-2, 4 radix-8-by-4 (f32) */
    int32_t prec;           /* 0 float32, 1 f16 per operation, 2 f16 per statement (float32 inside) */
    int32_t spectrum_mode;  /* 0 power, 1 magnitude */
    int32_t log_mode;       /* 0 ln, 1 dB clamped at neg_top_db */
    int32_t acc_mode;       /* 0 scalar, 1 eight lanes */
    int32_t fma;            /* mel dot products: 1 = fused multiply-add */
    int32_t rounding;       /* 0 roundf (half away), 1 rintf (half even) */
    int32_t cast_mode;      /* 0 Arm VCVT to int32 + low 16 bits + sat8 (int16 cast), 1 saturate to int8,
                               2 Arm VCVT to int32 + sat8 (int32 cast) */
    int32_t inplace;        /* 1: power spectrum in the FFT buffer (bin n_fft/4 reads the stored Nyquist power) */
    float inv_scale, zp, neg_top_db;
} st_config;

/* One patch; returns the running device-type sum of every spectrum bin. */
float st_patch(const st_config *cfg, const int16_t *pcm, const float *window, const float *twiddle,
               const float *rtwiddle, const int32_t *order, const int32_t *start, const int32_t *stop,
               const int32_t *offs, const float *coefs, float *framed, float *windowed, float *fft,
               float *power, float *spec, float *mel, float *logmel, int8_t *q, float *scratch, float *tmp);

/* The tables of helium_f16.prepare_rfft(n_fft, optimization) (see helium_f16.h). */
typedef struct {
    int32_t split;
    const float *tw_split, *tw1, *tw2, *tw3;
    const int32_t *stage_off, *bitrev;
    const float *tw_rfft;
    int32_t ofast;
} st_helium_f16;

/* One patch as the Cortex-M55 computes it (isa = "helium"): the MVE CMSIS-DSP paths (helium_f16 with t16 for
   st-f16, helium_f32 with t32 and ofast32 for st-f32; the other is NULL) around the application's statements
   (fused quantization, in-place power when cfg->inplace). work [n_fft]. Returns the silence sum. */
float st_patch_helium(const st_config *cfg, const int16_t *pcm, const float *window, const st_helium_f16 *t16,
                      const helium_f32_fft *t32, int32_t ofast32, const int32_t *start, const int32_t *stop,
                      const int32_t *offs, const float *coefs, float *framed, float *windowed, float *fft,
                      float *power, float *spec, float *mel, float *logmel, int8_t *q, float *scratch, float *work);

/* arm_rfft_fast forward of buf (n_fft floats, overwritten) into out (packed). */
void st_rfft(const st_config *cfg, float *buf, float *out, const float *twiddle, const float *rtwiddle,
             const int32_t *order, float *tmp);

/* Mel dot product of spec[0:len] with coefs[0:len] in the device type. */
float st_dot(const st_config *cfg, const float *spec, const float *coefs, int32_t len);

/* int8 feature of one log value (rounding, cast and saturation of cfg). */
int8_t st_quantize(const st_config *cfg, float v);
#endif
