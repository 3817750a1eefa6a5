/* C twin of emu/frontend/st.py (ST column front end). C11, no fast-math, no FP contraction.
 * Written from the CMSIS-DSP operation order documented in st.py; f16 rounding through _Float16. */
#include <math.h>
#include <string.h>
#include "frontend_st.h"
#include "helium_f16.h"
#include "helium_f32.h"

#define PREC_F32 0
#define PREC_F16_PER_OP 1

static inline float r16(float x) { return (float)(_Float16)x; }
/* R: rounding after one operation (per-op f16 only); S: rounding when a statement stores (any f16). */
static inline float R(float x, int prec) { return prec == PREC_F16_PER_OP ? r16(x) : x; }
static inline float S(float x, int prec) { return prec != PREC_F32 ? r16(x) : x; }

static void radix4_butterfly(float *b, uint32_t fft_len, const float *coef, uint32_t tw_mod, int prec)
{
    uint32_t n1, n2 = fft_len, k, j, i0, i1, i2, i3, ia1, ia2, ia3;
    for (k = fft_len; k > 1U; k >>= 2U) {
        n1 = n2;
        n2 >>= 2U;
        ia1 = 0U;
        j = 0U;
        do {
            ia2 = ia1 + ia1;
            ia3 = ia2 + ia1;
            float co1 = coef[ia1 * 2U], si1 = coef[ia1 * 2U + 1U];
            float co2 = coef[ia2 * 2U], si2 = coef[ia2 * 2U + 1U];
            float co3 = coef[ia3 * 2U], si3 = coef[ia3 * 2U + 1U];
            ia1 += tw_mod;
            i0 = j;
            do {
                i1 = i0 + n2; i2 = i1 + n2; i3 = i2 + n2;
                float r1 = S(b[2*i0] + b[2*i2], prec);
                float r2 = S(b[2*i0] - b[2*i2], prec);
                float s1 = S(b[2*i0+1] + b[2*i2+1], prec);
                float s2 = S(b[2*i0+1] - b[2*i2+1], prec);
                float t1 = S(b[2*i1] + b[2*i3], prec);
                b[2*i0] = S(r1 + t1, prec);
                r1 = S(r1 - t1, prec);
                float t2 = S(b[2*i1+1] + b[2*i3+1], prec);
                b[2*i0+1] = S(s1 + t2, prec);
                s1 = S(s1 - t2, prec);
                t1 = S(b[2*i1+1] - b[2*i3+1], prec);
                t2 = S(b[2*i1] - b[2*i3], prec);
                b[2*i1] = S(R(r1 * co2, prec) + R(s1 * si2, prec), prec);
                b[2*i1+1] = S(R(s1 * co2, prec) - R(r1 * si2, prec), prec);
                r1 = S(r2 + t1, prec);
                r2 = S(r2 - t1, prec);
                s1 = S(s2 - t2, prec);
                s2 = S(s2 + t2, prec);
                b[2*i2] = S(R(r1 * co1, prec) + R(s1 * si1, prec), prec);
                b[2*i2+1] = S(R(s1 * co1, prec) - R(r1 * si1, prec), prec);
                b[2*i3] = S(R(r2 * co3, prec) + R(s2 * si3, prec), prec);
                b[2*i3+1] = S(R(s2 * co3, prec) - R(r2 * si3, prec), prec);
                i0 += n1;
            } while (i0 < fft_len);
            j++;
        } while (j <= n2 - 1U);
        tw_mod <<= 2U;
    }
}

static void radix4by2(float *b, uint32_t fft_len, const float *coef, int prec)
{
    uint32_t n2 = fft_len >> 1;
    for (uint32_t i = 0; i < n2; i++) {
        float c = coef[2*i], s = coef[2*i+1];
        uint32_t l = i + n2;
        float a0 = S(b[2*i] + b[2*l], prec);
        float xt = S(b[2*i] - b[2*l], prec);
        float yt = S(b[2*i+1] - b[2*l+1], prec);
        float a1 = S(b[2*l+1] + b[2*i+1], prec);
        float p0 = S(xt * c, prec), p1 = S(yt * s, prec), p2 = S(yt * c, prec), p3 = S(xt * s, prec);
        b[2*i] = a0;
        b[2*i+1] = a1;
        b[2*l] = S(p0 + p1, prec);
        b[2*l+1] = S(p2 - p3, prec);
    }
    radix4_butterfly(b, n2, coef, 2U, prec);
    radix4_butterfly(b + fft_len, n2, coef, 2U, prec);
}

static const float C81 = 0.70710678118f;

/* one radix-8 DIF butterfly on the 8 points i1 + m*n2; twiddles co[1..7]/si[1..7] (NULL: first group) */
static void radix8_points(float *b, uint32_t i1, uint32_t n2, const float *co, const float *si)
{
    uint32_t i2 = i1 + n2, i3 = i2 + n2, i4 = i3 + n2, i5 = i4 + n2, i6 = i5 + n2, i7 = i6 + n2, i8 = i7 + n2;
    float r1, r2, r3, r4, r5, r6, r7, r8, t1, t2, s1, s2, s3, s4, s5, s6, s7, s8;
    r1 = b[2*i1] + b[2*i5]; r5 = b[2*i1] - b[2*i5];
    r2 = b[2*i2] + b[2*i6]; r6 = b[2*i2] - b[2*i6];
    r3 = b[2*i3] + b[2*i7]; r7 = b[2*i3] - b[2*i7];
    r4 = b[2*i4] + b[2*i8]; r8 = b[2*i4] - b[2*i8];
    t1 = r1 - r3; r1 = r1 + r3; r3 = r2 - r4; r2 = r2 + r4;
    if (co == NULL) {
        b[2*i1] = r1 + r2;
        b[2*i5] = r1 - r2;
        r1 = b[2*i1+1] + b[2*i5+1]; s5 = b[2*i1+1] - b[2*i5+1];
        r2 = b[2*i2+1] + b[2*i6+1]; s6 = b[2*i2+1] - b[2*i6+1];
        s3 = b[2*i3+1] + b[2*i7+1]; s7 = b[2*i3+1] - b[2*i7+1];
        r4 = b[2*i4+1] + b[2*i8+1]; s8 = b[2*i4+1] - b[2*i8+1];
        t2 = r1 - s3; r1 = r1 + s3; s3 = r2 - r4; r2 = r2 + r4;
        b[2*i1+1] = r1 + r2; b[2*i5+1] = r1 - r2;
        b[2*i3] = t1 + s3; b[2*i7] = t1 - s3;
        b[2*i3+1] = t2 - r3; b[2*i7+1] = t2 + r3;
        r1 = (r6 - r8) * C81; r6 = (r6 + r8) * C81;
        r2 = (s6 - s8) * C81; s6 = (s6 + s8) * C81;
        t1 = r5 - r1; r5 = r5 + r1; r8 = r7 - r6; r7 = r7 + r6;
        t2 = s5 - r2; s5 = s5 + r2; s8 = s7 - s6; s7 = s7 + s6;
        b[2*i2] = r5 + s7; b[2*i8] = r5 - s7;
        b[2*i6] = t1 + s8; b[2*i4] = t1 - s8;
        b[2*i2+1] = s5 - r7; b[2*i8+1] = s5 + r7;
        b[2*i6+1] = t2 - r8; b[2*i4+1] = t2 + r8;
        return;
    }
    b[2*i1] = r1 + r2;
    r2 = r1 - r2;
    s1 = b[2*i1+1] + b[2*i5+1]; s5 = b[2*i1+1] - b[2*i5+1];
    s2 = b[2*i2+1] + b[2*i6+1]; s6 = b[2*i2+1] - b[2*i6+1];
    s3 = b[2*i3+1] + b[2*i7+1]; s7 = b[2*i3+1] - b[2*i7+1];
    s4 = b[2*i4+1] + b[2*i8+1]; s8 = b[2*i4+1] - b[2*i8+1];
    t2 = s1 - s3; s1 = s1 + s3; s3 = s2 - s4; s2 = s2 + s4;
    r1 = t1 + s3; t1 = t1 - s3;
    b[2*i1+1] = s1 + s2;
    s2 = s1 - s2; s1 = t2 - r3; t2 = t2 + r3;
    float p1, p2, p3, p4;
#define TW(idx, xr, xi, cv, sv) p1 = cv * xr; p2 = sv * xi; p3 = cv * xi; p4 = sv * xr; \
    b[2*(idx)] = p1 + p2; b[2*(idx)+1] = p3 - p4;
    TW(i5, r2, s2, co[5], si[5])
    TW(i3, r1, s1, co[3], si[3])
    TW(i7, t1, t2, co[7], si[7])
    r1 = (r6 - r8) * C81; r6 = (r6 + r8) * C81;
    s1 = (s6 - s8) * C81; s6 = (s6 + s8) * C81;
    t1 = r5 - r1; r5 = r5 + r1; r8 = r7 - r6; r7 = r7 + r6;
    t2 = s5 - s1; s5 = s5 + s1; s8 = s7 - s6; s7 = s7 + s6;
    r1 = r5 + s7; r5 = r5 - s7; r6 = t1 + s8; t1 = t1 - s8;
    s1 = s5 - r7; s5 = s5 + r7; s6 = t2 - r8; t2 = t2 + r8;
    TW(i2, r1, s1, co[2], si[2])
    TW(i8, r5, s5, co[8], si[8])
    TW(i6, r6, s6, co[6], si[6])
    TW(i4, t1, t2, co[4], si[4])
#undef TW
}

static void radix8_butterfly(float *b, uint32_t fft_len, const float *coef, uint32_t tw_mod)
{
    uint32_t n1, n2 = fft_len, i1, j, ia, m;
    float co[9], si[9];
    do {
        n1 = n2;
        n2 >>= 3;
        for (i1 = 0; i1 < fft_len; i1 += n1) radix8_points(b, i1, n2, NULL, NULL);
        if (n2 < 8) break;
        ia = 0;
        for (j = 1; j < n2; j++) {
            ia += tw_mod;
            for (m = 2; m <= 8; m++) {
                co[m] = coef[2 * ia * (m - 1)];
                si[m] = coef[2 * ia * (m - 1) + 1];
            }
            for (i1 = j; i1 < fft_len; i1 += n1) radix8_points(b, i1, n2, co, si);
        }
        tw_mod <<= 3;
    } while (n2 > 7);
}

static void radix8by2(float *b, uint32_t fft_len, const float *coef)
{
    float *p1 = b, *p2 = b + fft_len, *m1 = b + (fft_len >> 1), *m2 = p2 + (fft_len >> 1);
    const float *tw = coef;
    for (uint32_t l = fft_len >> 3; l > 0; l--) {
        float t1[4], t2[4], t3[4], t4[4], twr, twi;
        for (int k = 0; k < 4; k++) { t1[k] = p1[k]; t2[k] = p2[k]; t3[k] = m1[k]; t4[k] = m2[k]; }
        for (int k = 0; k < 4; k++) { p1[k] = t1[k] + t2[k]; t2[k] = t1[k] - t2[k]; }
        for (int k = 0; k < 4; k++) { m1[k] = t3[k] + t4[k]; t4[k] = t4[k] - t3[k]; }
        for (int h = 0; h < 4; h += 2) {
            twr = *tw++; twi = *tw++;
            p2[h] = t2[h] * twr + t2[h+1] * twi;
            p2[h+1] = t2[h+1] * twr - t2[h] * twi;
            m2[h] = t4[h] * twi - t4[h+1] * twr;
            m2[h+1] = t4[h+1] * twi + t4[h] * twr;
        }
        p1 += 4; p2 += 4; m1 += 4; m2 += 4;
    }
    radix8_butterfly(b, fft_len >> 1, coef, 2U);
    radix8_butterfly(b + fft_len, fft_len >> 1, coef, 2U);
}

/* arm_cfft_radix8by4_f32: radix-4 split into four quarter columns, top half forward and bottom half
 * backward (twiddle symmetries), then radix-8 per column with twiddle stride 4. */
static void radix8by4(float *b, uint32_t fft_len, const float *coef)
{
    const uint32_t q = fft_len >> 1;
    uint32_t p1 = 0, p2 = q, p3 = 2 * q, p4 = 3 * q;
    uint32_t e1 = q - 1, e2 = 2 * q - 1, e3 = 3 * q - 1, e4 = 4 * q - 1;
    uint32_t tw2 = 2, tw3 = 4, tw4 = 6;
    const uint32_t n_loop = ((fft_len >> 2) - 2) >> 1;
    for (uint32_t step = 0; step < n_loop + 2; step++) {
        float a0 = b[p1] + b[p3], s0 = b[p1] - b[p3], a1 = b[p1+1] + b[p3+1], s1 = b[p1+1] - b[p3+1];
        float t2_0 = s0 + b[p2+1] - b[p4+1], t2_1 = s1 - b[p2] + b[p4];
        float t3_0 = a0 - b[p2] - b[p4], t3_1 = a1 - b[p2+1] - b[p4+1];
        float t4_0 = s0 - b[p2+1] + b[p4+1], t4_1 = s1 + b[p2] - b[p4];
        float t2_2 = 0, t2_3 = 0, t3_2 = 0, t3_3 = 0, t4_2 = 0, t4_3 = 0, twr, twi;
        b[p1] = a0 + b[p2] + b[p4];
        b[p1+1] = a1 + b[p2+1] + b[p4+1];
        p1 += 2;
        if (step == 0) {
            b[p2] = t2_0; b[p2+1] = t2_1; b[p3] = t3_0; b[p3+1] = t3_1; b[p4] = t4_0; b[p4+1] = t4_1;
            p2 += 2; p3 += 2; p4 += 2;
            continue;
        }
        const int bottom = step <= n_loop;
        if (bottom) {
            float a1b = b[e1-1] + b[e3-1], s1b = b[e1-1] - b[e3-1], a0b = b[e1] + b[e3], s0b = b[e1] - b[e3];
            t2_2 = b[e2] - b[e4] + s1b;
            t2_3 = b[e1] - b[e3] - b[e2-1] + b[e4-1];
            t3_2 = a1b - b[e2-1] - b[e4-1];
            t3_3 = a0b - b[e2] - b[e4];
            t4_2 = b[e2] - b[e4] - s1b;
            t4_3 = b[e4-1] - b[e2-1] - s0b;
            b[e1] = a0b + b[e2] + b[e4];
            b[e1-1] = a1b + b[e2-1] + b[e4-1];
            e1 -= 2;
        }
        twr = coef[tw2]; twi = coef[tw2+1];
        b[p2] = t2_0 * twr + t2_1 * twi; b[p2+1] = t2_1 * twr - t2_0 * twi; p2 += 2;
        if (bottom) { tw2 += 2; b[e2] = t2_3 * twi - t2_2 * twr; b[e2-1] = t2_2 * twi + t2_3 * twr; e2 -= 2; }
        twr = coef[tw3]; twi = coef[tw3+1];
        b[p3] = t3_0 * twr + t3_1 * twi; b[p3+1] = t3_1 * twr - t3_0 * twi; p3 += 2;
        if (bottom) { tw3 += 4; b[e3] = -t3_3 * twr - t3_2 * twi; b[e3-1] = t3_3 * twi - t3_2 * twr; e3 -= 2; }
        twr = coef[tw4]; twi = coef[tw4+1];
        b[p4] = t4_0 * twr + t4_1 * twi; b[p4+1] = t4_1 * twr - t4_0 * twi; p4 += 2;
        if (bottom) { tw4 += 6; b[e4] = t4_3 * twi - t4_2 * twr; b[e4-1] = t4_2 * twi + t4_3 * twr; e4 -= 2; }
    }
    for (int c = 0; c < 4; c++) radix8_butterfly(b + c * q, fft_len >> 2, coef, 4U);
}

static void stage_rfft(const float *p, float *out, const float *rtw, uint32_t n, int prec)
{
    float t1a = S(p[0] + p[0], prec), t1b = S(p[1] + p[1], prec);
    out[0] = S(0.5f * R(t1a + t1b, prec), prec);
    out[1] = S(0.5f * R(t1a - t1b, prec), prec);
    for (uint32_t i = 1; i < n; i++) {
        uint32_t jb = 2 * (n - i);
        float xbi = p[jb + 1], xbr = p[jb], xar = p[2*i], xai = p[2*i+1];
        float twr = rtw[2*i], twi = rtw[2*i+1];
        float a = S(xbr - xar, prec), c = S(xbi + xai, prec);
        float p0 = S(twr * a, prec), p1 = S(twi * a, prec), p2 = S(twr * c, prec), p3 = S(twi * c, prec);
        out[2*i] = S(0.5f * R(R(R(xar + xbr, prec) + p0, prec) + p3, prec), prec);
        out[2*i+1] = S(0.5f * R(R(R(xai - xbi, prec) + p1, prec) - p2, prec), prec);
    }
}

void st_rfft(const st_config *cfg, float *buf, float *out, const float *twiddle, const float *rtwiddle,
             const int32_t *order, float *tmp)
{
    uint32_t half = (uint32_t)cfg->n_fft >> 1;
    switch (cfg->algo) {
    case 0: radix4_butterfly(buf, half, twiddle, 1U, cfg->prec); break;
    case 1: radix4by2(buf, half, twiddle, cfg->prec); break;
    case 2: radix8_butterfly(buf, half, twiddle, 1U); break;
    case 3: radix8by2(buf, half, twiddle); break;
    default: radix8by4(buf, half, twiddle); break;
    }
    for (uint32_t k = 0; k < half; k++) { tmp[2*k] = buf[2*order[k]]; tmp[2*k+1] = buf[2*order[k]+1]; }
    memcpy(buf, tmp, sizeof(float) * 2 * half);
    stage_rfft(buf, out, rtwiddle, half, cfg->prec);
}

static inline float mac(const st_config *cfg, float x, float c, float s)
{
    if (cfg->fma) {
        if (cfg->prec == PREC_F32) return fmaf(x, c, s);
        return r16((float)(_Float16)fma((double)x, (double)c, (double)s));
    }
    return S(s + R(x * c, cfg->prec), cfg->prec);
}

float st_dot(const st_config *cfg, const float *spec, const float *coefs, int32_t len)
{
    int prec = cfg->prec;
    if (cfg->acc_mode == 0) {
        float s = 0.0f;
        for (int32_t j = 0; j < len; j++) s = mac(cfg, spec[j], coefs[j], s);
        return s;
    }
    float lane[8] = {0};
    for (int32_t j = 0; j < len; j++) lane[j & 7] = mac(cfg, spec[j], coefs[j], lane[j & 7]);
    float q0 = S(lane[0] + lane[1], prec), q1 = S(lane[2] + lane[3], prec);
    float q2 = S(lane[4] + lane[5], prec), q3 = S(lane[6] + lane[7], prec);
    return S(S(q0 + q1, prec) + S(q2 + q3, prec), prec);
}

/* float32 -> int8: roundf or rintf, then the cast of cfg->cast_mode, then sat8 */
static int8_t round_cast(const st_config *cfg, float y)
{
    float r = cfg->rounding == 0 ? roundf(y) : rintf(y);
    if (cfg->cast_mode == 1) {
        if (isnan(r)) return 0;
        if (r >= 127.0f) return 127;
        if (r <= -128.0f) return -128;
        return (int8_t)(int32_t)r;
    }
    int64_t i32;                            /* Arm VCVT.S32.F32: NaN -> 0, saturating */
    if (isnan(r)) i32 = 0;
    else if (r >= 2147483648.0f) i32 = 2147483647;
    else if (r < -2147483648.0f) i32 = -2147483647 - 1;
    else i32 = (int64_t)r;
    int64_t v16 = i32;
    if (cfg->cast_mode == 0) {              /* (int16): keep the low 16 bits */
        int32_t low = (int32_t)(i32 & 0xFFFF);
        v16 = low >= 0x8000 ? low - 0x10000 : low;
    }
    return (int8_t)(v16 > 127 ? 127 : (v16 < -128 ? -128 : v16));
}

int8_t st_quantize(const st_config *cfg, float v)
{
    return round_cast(cfg, v * cfg->inv_scale + cfg->zp);
}

float st_patch(const st_config *cfg, const int16_t *pcm, const float *window, const float *twiddle,
               const float *rtwiddle, const int32_t *order, const int32_t *start, const int32_t *stop,
               const int32_t *offs, const float *coefs, float *framed, float *windowed, float *fft,
               float *power, float *spec, float *mel, float *logmel, int8_t *q, float *scratch, float *tmp)
{
    const int prec = cfg->prec;
    const int32_t n_fft = cfg->n_fft, n_bins = n_fft / 2 + 1, nf = cfg->n_frames;
    float silence = 0.0f;
    for (int32_t t = 0; t < nf; t++) {
        float *fr = framed + (size_t)t * n_fft, *wi = windowed + (size_t)t * n_fft, *X = fft + (size_t)t * n_fft;
        float *pw = power + (size_t)t * n_bins, *sp = spec + (size_t)t * n_bins;
        memset(fr, 0, sizeof(float) * n_fft);
        memset(wi, 0, sizeof(float) * n_fft);
        memset(scratch, 0, sizeof(float) * n_fft);
        for (int32_t n = 0; n < cfg->win; n++) {
            float x = S((float)pcm[t * cfg->hop + n] * (1.0f / 32768.0f), prec);
            fr[cfg->pad_left + n] = x;
            float xw = S(x * window[n], prec);
            wi[cfg->pad_left + n] = xw;
            scratch[cfg->pad_left + n] = xw;
        }
        st_rfft(cfg, scratch, X, twiddle, rtwiddle, order, tmp);
        pw[0] = S(X[0] * X[0], prec);
        pw[n_bins - 1] = S(X[1] * X[1], prec);
        for (int32_t k = 1; k < n_bins - 1; k++) {
            float re = (cfg->inplace && 2 * k == n_bins - 1) ? pw[n_bins - 1] : X[2*k];
            pw[k] = S(R(re * re, prec) + R(X[2*k+1] * X[2*k+1], prec), prec);
        }
        for (int32_t k = 0; k < n_bins; k++) {
            sp[k] = cfg->spectrum_mode == 0 ? pw[k] : S(sqrtf(pw[k]), prec);
            silence = S(silence + sp[k], prec);
        }
        for (int32_t m = 0; m < cfg->n_mels; m++) {
            float v = st_dot(cfg, sp + start[m], coefs + offs[m], stop[m] - start[m] + 1);
            if (prec == PREC_F32) { if (v < 1.17549435e-38f) v = 1.17549435e-38f; }
            else if (v <= 0.0f) v = 0.0f;
            mel[(size_t)m * nf + t] = v;
            float lv;
            if (cfg->log_mode == 0) lv = S(v > 0.0f ? logf(v) : -INFINITY, prec);
            else {
                lv = S(v > 0.0f ? 10.0f * log10f(v) : -INFINITY, prec);
                if (lv < cfg->neg_top_db) lv = cfg->neg_top_db;
            }
            logmel[(size_t)m * nf + t] = lv;
            q[(size_t)m * nf + t] = st_quantize(cfg, lv);
        }
    }
    return silence;
}

/* ---- the column as the Cortex-M55 computes it (isa = "helium"), twin of st._helium_* ---------------- */

/* One frame's power spectrum (or the f32 magnitude) [n_fft/2 + 1] into out from the packed FFT X: the app's
   DC and Nyquist statements, then arm_cmplx_mag_squared (arm_cmplx_mag_f32) on bins 1..N/2-1, in place in a
   copy of X when inplace (reads element N/2 after the Nyquist store). work [n_fft]. */
static void helium_spectrum(const float *X, int32_t n_fft, int is_f16, int magnitude, int inplace, float *work,
                            float *out)
{
    const int32_t half = n_fft / 2;
    memcpy(work, X, sizeof(float) * n_fft);
    float dc = X[0] * X[0], nyq = X[1] * X[1];
    if (is_f16) { dc = r16(dc); nyq = r16(nyq); }
    if (magnitude) { dc = sqrtf(dc); nyq = sqrtf(nyq); }
    float *dst = inplace ? work : out;
    dst[0] = dc;
    dst[half] = nyq;
    if (is_f16) helium_cmplx_mag_squared_f16(work + 2, dst + 1, half - 1);
    else if (magnitude) helium_cmplx_mag_f32(work + 2, dst + 1, half - 1);
    else helium_cmplx_mag_squared_f32(work + 2, dst + 1, half - 1);
    if (inplace) memcpy(out, work, sizeof(float) * (half + 1));
}

float st_patch_helium(const st_config *cfg, const int16_t *pcm, const float *window, const st_helium_f16 *t16,
                      const helium_f32_fft *t32, int32_t ofast32, const int32_t *start, const int32_t *stop,
                      const int32_t *offs, const float *coefs, float *framed, float *windowed, float *fft,
                      float *power, float *spec, float *mel, float *logmel, int8_t *q, float *scratch, float *work)
{
    const int is_f16 = cfg->prec != PREC_F32;
    const int32_t n_fft = cfg->n_fft, n_bins = n_fft / 2 + 1, nf = cfg->n_frames, win = cfg->win;
    float silence = 0.0f;
    for (int32_t t = 0; t < nf; t++) {
        float *fr = framed + (size_t)t * n_fft, *wi = windowed + (size_t)t * n_fft, *X = fft + (size_t)t * n_fft;
        float *pw = power + (size_t)t * n_bins, *sp = spec + (size_t)t * n_bins, *x = scratch + cfg->pad_left;
        memset(scratch, 0, sizeof(float) * n_fft);
        if (is_f16) helium_q15_to_f16(pcm + t * cfg->hop, x, win);
        else helium_q15_to_float(pcm + t * cfg->hop, x, win);
        memcpy(fr, scratch, sizeof(float) * n_fft);
        if (is_f16) helium_mult_f16(x, window, x, win);
        else helium_mult_f32(x, window, x, win);
        memcpy(wi, scratch, sizeof(float) * n_fft);
        if (is_f16)
            helium_rfft_fast_f16(scratch, X, n_fft, t16->split, t16->tw_split, t16->tw1, t16->tw2, t16->tw3,
                                 t16->stage_off, t16->bitrev, t16->tw_rfft, t16->ofast);
        else
            helium_rfft_fast_f32(t32, scratch, X, ofast32);
        helium_spectrum(X, n_fft, is_f16, 0, cfg->inplace, work, pw);
        if (cfg->spectrum_mode == 0) memcpy(sp, pw, sizeof(float) * n_bins);
        else if (is_f16) for (int32_t k = 0; k < n_bins; k++) sp[k] = r16(sqrtf(pw[k]));
        else helium_spectrum(X, n_fft, 0, 1, cfg->inplace, work, sp);
        for (int32_t k = 0; k < n_bins; k++) silence = is_f16 ? r16(silence + sp[k]) : silence + sp[k];
        for (int32_t m = 0; m < cfg->n_mels; m++) {
            int32_t len = stop[m] - start[m] + 1;
            float v;
            if (is_f16) {
                v = helium_dot_prod_f16(sp + start[m], coefs + offs[m], len);
                if (v <= 0.0f) v = 0.0f;                     /* (float16_t)FLT_MIN is 0 */
            } else {
                v = helium_dot_prod_f32(sp + start[m], coefs + offs[m], len);
                if (v < 1.17549435e-38f) v = 1.17549435e-38f;
            }
            mel[(size_t)m * nf + t] = v;
            float lv = cfg->log_mode == 0 ? (v > 0.0f ? logf(v) : -INFINITY)
                                          : (v > 0.0f ? 10.0f * log10f(v) : -INFINITY);
            if (is_f16) lv = r16(lv);
            if (cfg->log_mode != 0 && lv < cfg->neg_top_db) lv = cfg->neg_top_db;
            logmel[(size_t)m * nf + t] = lv;
            q[(size_t)m * nf + t] = round_cast(cfg, fmaf(lv, cfg->inv_scale, cfg->zp));   /* vfma.f32 */
        }
    }
    return silence;
}
