/* C twin of emu/frontend/cmsis_q15.py (see frontend_q15.h). Arithmetic is done in int64_t and narrowed
 * with explicit two's-complement wraps (w16, w32) or saturations (sat16, sat32), exactly where the
 * CMSIS-DSP C code stores to q15_t / q31_t; right shifts of negative values are arithmetic (gcc). */
#include "frontend_q15.h"

#define MICRO_Q15 0x219
#define SHIFT_MEL_Q15 10
#define LOG2TOLOG_Q15 0x02C5C860

static inline int64_t w16(int64_t x) { return ((x + 32768) & 0xFFFF) - 32768; }
static inline int64_t w32(int64_t x) { return ((x + 2147483648LL) & 0xFFFFFFFFLL) - 2147483648LL; }
static inline int64_t sat16(int64_t x) { return x > 32767 ? 32767 : (x < -32768 ? -32768 : x); }
static inline int64_t sat32(int64_t x) { return x > 2147483647LL ? 2147483647LL : (x < -2147483648LL ? -2147483648LL : x); }
static inline int64_t clz32(int64_t x)
{
    uint32_t v = (uint32_t)(x & 0xFFFFFFFFLL);
    return v == 0 ? 32 : __builtin_clz(v);
}
static inline int64_t mul16(int64_t a, int64_t b) { return w16((a * b) >> 16); }

void n6q15_mult(const int16_t *a, const int16_t *b, int16_t *out, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        out[i] = (int16_t)sat16(((int64_t)a[i] * b[i]) >> 15);
}

/* arm_radix4_butterfly_q15 on x[off .. off + 2*len) */
static void radix4(int16_t *x, int64_t off, int64_t len, const int16_t *coef, int64_t tw, int32_t dsp)
{
    int64_t n2 = len >> 2, ic = 0;
    for (int64_t i0 = 0; i0 < n2; i0++) {
        int64_t p0 = off + 2 * i0, p1 = p0 + 2 * n2, p2 = p1 + 2 * n2, p3 = p2 + 2 * n2;
        int64_t t0 = x[p0] >> 2, t1 = x[p0 + 1] >> 2, s0 = x[p2] >> 2, s1 = x[p2 + 1] >> 2;
        int64_t r0 = sat16(t0 + s0), r1 = sat16(t1 + s1);
        s0 = sat16(t0 - s0); s1 = sat16(t1 - s1);
        t0 = x[p1] >> 2; t1 = x[p1 + 1] >> 2;
        int64_t u0 = x[p3] >> 2, u1 = x[p3 + 1] >> 2;
        t0 = sat16(t0 + u0); t1 = sat16(t1 + u1);
        if (dsp) { x[p0] = (int16_t)w16((r0 + t0) >> 1); x[p0 + 1] = (int16_t)w16((r1 + t1) >> 1); }
        else { x[p0] = (int16_t)w16((r0 >> 1) + (t0 >> 1)); x[p0 + 1] = (int16_t)w16((r1 >> 1) + (t1 >> 1)); }
        r0 = sat16(r0 - t0); r1 = sat16(r1 - t1);
        int64_t co2 = coef[4 * ic], si2 = coef[4 * ic + 1];
        int64_t out1 = w16(w32(co2 * r0 + si2 * r1) >> 16), out2 = w16(w32(-si2 * r0 + co2 * r1) >> 16);
        t0 = x[p1] >> 2; t1 = x[p1 + 1] >> 2;
        x[p1] = (int16_t)out1; x[p1 + 1] = (int16_t)out2;
        u0 = x[p3] >> 2; u1 = x[p3 + 1] >> 2;
        t0 = sat16(t0 - u0); t1 = sat16(t1 - u1);
        r0 = sat16(s0 - t1); r1 = sat16(s1 + t0);
        s0 = sat16(s0 + t1); s1 = sat16(s1 - t0);
        int64_t co1 = coef[2 * ic], si1 = coef[2 * ic + 1];
        x[p2] = (int16_t)w16(w32(si1 * s1 + co1 * s0) >> 16);
        x[p2 + 1] = (int16_t)w16(w32(-si1 * s0 + co1 * s1) >> 16);
        int64_t co3 = coef[6 * ic], si3 = coef[6 * ic + 1];
        x[p3] = (int16_t)w16(w32(si3 * r1 + co3 * r0) >> 16);
        x[p3 + 1] = (int16_t)w16(w32(-si3 * r0 + co3 * r1) >> 16);
        ic += tw;
    }
    tw <<= 2;
    for (int64_t k = len >> 2; k > 4; k >>= 2) {
        int64_t n1 = n2;
        n2 >>= 2;
        ic = 0;
        for (int64_t j = 0; j < n2; j++) {
            int64_t co1 = coef[2 * ic], si1 = coef[2 * ic + 1];
            int64_t co2 = coef[4 * ic], si2 = coef[4 * ic + 1];
            int64_t co3 = coef[6 * ic], si3 = coef[6 * ic + 1];
            ic += tw;
            for (int64_t i0 = j; i0 < len; i0 += n1) {
                int64_t p0 = off + 2 * i0, p1 = p0 + 2 * n2, p2 = p1 + 2 * n2, p3 = p2 + 2 * n2;
                int64_t t0 = x[p0], t1 = x[p0 + 1], s0 = x[p2], s1 = x[p2 + 1];
                int64_t r0 = sat16(t0 + s0), r1 = sat16(t1 + s1);
                s0 = sat16(t0 - s0); s1 = sat16(t1 - s1);
                t0 = x[p1]; t1 = x[p1 + 1];
                int64_t u0 = x[p3], u1 = x[p3 + 1];
                t0 = sat16(t0 + u0); t1 = sat16(t1 + u1);
                if (dsp) {
                    x[p0] = (int16_t)w16(((r0 + t0) >> 1) >> 1); x[p0 + 1] = (int16_t)w16(((r1 + t1) >> 1) >> 1);
                    r0 = (r0 - t0) >> 1; r1 = (r1 - t1) >> 1;
                } else {
                    x[p0] = (int16_t)w16(((r0 >> 1) + (t0 >> 1)) >> 1); x[p0 + 1] = (int16_t)w16(((r1 >> 1) + (t1 >> 1)) >> 1);
                    r0 = w16((r0 >> 1) - (t0 >> 1)); r1 = w16((r1 >> 1) - (t1 >> 1));
                }
                int64_t out1 = w16(w32(co2 * r0 + si2 * r1) >> 16), out2 = w16(w32(-si2 * r0 + co2 * r1) >> 16);
                t0 = x[p1]; t1 = x[p1 + 1];
                x[p1] = (int16_t)out1; x[p1 + 1] = (int16_t)out2;
                u0 = x[p3]; u1 = x[p3 + 1];
                t0 = sat16(t0 - u0); t1 = sat16(t1 - u1);
                int64_t s0n, s1n;
                if (dsp) {
                    r0 = (s0 - t1) >> 1; r1 = (s1 + t0) >> 1; s0n = (s0 + t1) >> 1; s1n = (s1 - t0) >> 1;
                } else {
                    r0 = w16((s0 >> 1) - (t1 >> 1)); r1 = w16((s1 >> 1) + (t0 >> 1));
                    s0n = w16((s0 >> 1) + (t1 >> 1)); s1n = w16((s1 >> 1) - (t0 >> 1));
                }
                x[p2] = (int16_t)w16(w32(co1 * s0n + si1 * s1n) >> 16);
                x[p2 + 1] = (int16_t)w16(w32(-si1 * s0n + co1 * s1n) >> 16);
                x[p3] = (int16_t)w16(w32(si3 * r1 + co3 * r0) >> 16);
                x[p3 + 1] = (int16_t)w16(w32(-si3 * r0 + co3 * r1) >> 16);
            }
        }
        tw <<= 2;
    }
    int64_t n1 = n2;
    n2 >>= 2;
    for (int64_t i0 = 0; i0 <= len - n1; i0 += n1) {
        int64_t p0 = off + 2 * i0, p1 = p0 + 2 * n2, p2 = p1 + 2 * n2, p3 = p2 + 2 * n2;
        int64_t a0 = x[p0], a1 = x[p0 + 1], b0 = x[p1], b1 = x[p1 + 1];
        int64_t c0 = x[p2], c1 = x[p2 + 1], d0 = x[p3], d1 = x[p3 + 1];
        int64_t r0 = sat16(a0 + c0), r1 = sat16(a1 + c1), s0 = sat16(a0 - c0), s1 = sat16(a1 - c1);
        int64_t t0 = sat16(b0 + d0), t1 = sat16(b1 + d1), u0 = sat16(b0 - d0), u1 = sat16(b1 - d1);
        if (dsp) {
            x[p0] = (int16_t)w16((r0 + t0) >> 1); x[p0 + 1] = (int16_t)w16((r1 + t1) >> 1);
            x[p1] = (int16_t)w16((r0 - t0) >> 1); x[p1 + 1] = (int16_t)w16((r1 - t1) >> 1);
            x[p2] = (int16_t)w16((s0 + u1) >> 1); x[p2 + 1] = (int16_t)w16((s1 - u0) >> 1);
            x[p3] = (int16_t)w16((s0 - u1) >> 1); x[p3 + 1] = (int16_t)w16((s1 + u0) >> 1);
        } else {
            x[p0] = (int16_t)w16((r0 >> 1) + (t0 >> 1)); x[p0 + 1] = (int16_t)w16((r1 >> 1) + (t1 >> 1));
            x[p1] = (int16_t)w16((r0 >> 1) - (t0 >> 1)); x[p1 + 1] = (int16_t)w16((r1 >> 1) - (t1 >> 1));
            x[p2] = (int16_t)w16((s0 >> 1) + (u1 >> 1)); x[p2 + 1] = (int16_t)w16((s1 >> 1) - (u0 >> 1));
            x[p3] = (int16_t)w16((s0 >> 1) - (u1 >> 1)); x[p3 + 1] = (int16_t)w16((s1 >> 1) + (u0 >> 1));
        }
    }
}

static void radix4by2(int16_t *x, int64_t len, const int16_t *coef, int32_t dsp)
{
    int64_t n2 = len >> 1;
    for (int64_t i = 0; i < n2; i++) {
        int64_t c = coef[2 * i], s = coef[2 * i + 1], l = i + n2;
        int64_t a0 = x[2 * i] >> 1, a1 = x[2 * i + 1] >> 1, b0 = x[2 * l] >> 1, b1 = x[2 * l + 1] >> 1;
        int64_t xt = w16(a0 - b0), yt = w16(a1 - b1);
        x[2 * i] = (int16_t)w16((a0 + b0) >> 1);
        x[2 * i + 1] = (int16_t)w16((b1 + a1) >> 1);
        if (dsp) {
            x[2 * l] = (int16_t)w16(w32(c * xt + s * yt) >> 16);
            x[2 * l + 1] = (int16_t)w16(w32(c * yt - s * xt) >> 16);
        } else {
            x[2 * l] = (int16_t)w16(mul16(xt, c) + mul16(yt, s));
            x[2 * l + 1] = (int16_t)w16(mul16(yt, c) - mul16(xt, s));
        }
    }
    radix4(x, 0, n2, coef, 2, dsp);
    radix4(x, len, n2, coef, 2, dsp);
    for (int64_t i = 0; i < 2 * len; i++)
        x[i] = (int16_t)w16((int64_t)x[i] * 2);
}

static void cfft(int16_t *x, int64_t len, const int16_t *coef, const int32_t *bitrev, int32_t dsp)
{
    if (len == 16 || len == 64 || len == 256 || len == 1024 || len == 4096)
        radix4(x, 0, len, coef, 1, dsp);
    else
        radix4by2(x, len, coef, dsp);
    for (int64_t i = 0; i < len; i++) {
        int64_t j = bitrev[i];
        if (i < j) {
            int16_t re = x[2 * i], im = x[2 * i + 1];
            x[2 * i] = x[2 * j]; x[2 * i + 1] = x[2 * j + 1];
            x[2 * j] = re; x[2 * j + 1] = im;
        }
    }
}

static void split_rfft(const int16_t *src, int64_t half, const int16_t *ca, const int16_t *cb, int16_t *dst, int64_t mod)
{
    for (int64_t i = 1; i < half; i++) {
        int64_t s1r = src[2 * i], s1i = src[2 * i + 1];
        int64_t s2r = src[2 * half - 2 * i], s2i = src[2 * half - 2 * i + 1];
        int64_t ar = ca[2 * i * mod], ai = ca[2 * i * mod + 1], br = cb[2 * i * mod], bi = cb[2 * i * mod + 1];
        int64_t outr = w32(s1r * ar);
        outr = w32(outr - s1i * ai);
        outr = w32(outr + s2r * br);
        outr = w32(outr + s2i * bi) >> 16;
        int64_t outi = w32(s2r * bi);
        outi = w32(outi - s2i * br);
        outi = w32(outi + s1i * ar);
        outi = w32(outi + s1r * ai);
        dst[2 * i] = (int16_t)w16(outr);
        dst[2 * i + 1] = (int16_t)w16(outi >> 16);
        dst[4 * half - 2 * i] = (int16_t)w16(outr);
        dst[4 * half - 2 * i + 1] = (int16_t)w16(-(outi >> 16));
    }
    int64_t s0 = src[0], s1 = src[1];
    dst[2 * half] = (int16_t)w16((s0 - s1) >> 1);
    dst[2 * half + 1] = 0;
    dst[0] = (int16_t)w16((s0 + s1) >> 1);
    dst[1] = 0;
}

void n6q15_rfft(int16_t *src, int32_t n_fft, const int16_t *twiddle, const int32_t *bitrev,
                const int16_t *coef_a, const int16_t *coef_b, int32_t modifier, int32_t dsp, int16_t *dst)
{
    int64_t half = n_fft >> 1;
    cfft(src, half, twiddle, bitrev, dsp);
    split_rfft(src, half, coef_a, coef_b, dst, modifier);
}

static int64_t sqrt_q31(int64_t number, const int32_t *lut)
{
    if (number <= 0)
        return 0;
    int64_t sb = clz32(number) - 1;
    number = (sb % 2 == 0) ? w32(number << sb) : w32(number << (sb - 1));
    int64_t var1 = lut[(number >> 26) - 8];
    for (int it = 0; it < 3; it++) {
        int64_t temp = w32((var1 * var1) >> 28);
        temp = w32((number * temp) >> 31);
        temp = w32(0x30000000 - temp);
        var1 = w32((var1 * temp) >> 29);
    }
    var1 = w32((number * var1) >> 28);
    return (sb % 2 == 0) ? (var1 >> (sb / 2)) : (var1 >> ((sb - 1) / 2));
}

void n6q15_cmplx_mag(const int16_t *src, int16_t *dst, int32_t n, const int32_t *lut)
{
    for (int32_t i = 0; i < n; i++) {
        int64_t re = src[2 * i], im = src[2 * i + 1];
        int64_t acc = (re * re + im * im) & 0xFFFFFFFFLL;
        dst[i] = (int16_t)w16(sqrt_q31(acc >> 1, lut) >> 16);
    }
}

void n6q15_cmplx_mag_squared(const int16_t *src, int16_t *dst, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        int64_t re = src[2 * i], im = src[2 * i + 1];
        dst[i] = (int16_t)w16((re * re + im * im) >> 17);
    }
}

static int64_t log_q31(int64_t value)
{
    int64_t src = value & 0xFFFFFFFFLL, c = clz32(src), x;
    x = (c - 1 < 0) ? (src >> (1 - c)) : ((src << (c - 1)) & 0xFFFFFFFFLL);
    int64_t y = 0, inc = (int64_t)1 << 25;
    for (int i = 0; i < 31; i++) {
        x = ((x * x) >> 30) & 0xFFFFFFFFLL;
        if (x >= 0x80000000LL) { y += inc; x >>= 1; }
        inc >>= 1;
    }
    int64_t tmp = w32(w32(y) - w32(c << 26));
    return w32((tmp * 0x58B90BFBLL) >> 31);
}

static int64_t log_q15(int64_t value)
{
    int64_t src = value & 0xFFFF, c = clz32(src) - 16, x;
    x = (c - 1 < 0) ? (src >> (1 - c)) : ((src << (c - 1)) & 0xFFFF);
    int64_t y = 0, inc = 1024;
    for (int i = 0; i < 15; i++) {
        x = ((x * x) >> 14) & 0xFFFF;
        if (x >= 0x8000) { y += inc; x >>= 1; }
        inc >>= 1;
    }
    int64_t tmp = w16(w16(y) - (c << 11));
    return w16((tmp * 0x58B9) >> 15);
}

void n6q15_vlog_q31(const int32_t *src, int32_t *dst, int32_t n)
{
    for (int32_t i = 0; i < n; i++) dst[i] = (int32_t)log_q31(src[i]);
}

void n6q15_vlog_q15(const int16_t *src, int16_t *dst, int32_t n)
{
    for (int32_t i = 0; i < n; i++) dst[i] = (int16_t)log_q15(src[i]);
}

static void mel_q31(const int16_t *spec, const int32_t *start, const int32_t *len, const int16_t *coefs,
                    int32_t n_mels, int64_t bias, int32_t shift, int32_t *out)
{
    int64_t pos = 0;
    for (int32_t m = 0; m < n_mels; m++) {
        int64_t acc = 0;
        for (int32_t k = 0; k < len[m]; k++)
            acc += (int64_t)spec[start[m] + k] * coefs[pos + k];
        pos += len[m];
        out[m] = (int32_t)sat32((acc + bias) >> shift);
    }
}

/* emu.fixedpoint requantize: double rounding (SRDHM then RDBP) or single rounding */
static int64_t srdhm(int64_t a, int64_t b)
{
    if (a == -2147483648LL && b == -2147483648LL) return 2147483647LL;
    return (a * b + 1073741824LL) >> 31;
}
static int64_t rdbp(int64_t x, int64_t e)
{
    int64_t mask = ((int64_t)1 << e) - 1, rem = x & mask, th = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > th ? 1 : 0);
}
static int64_t requant(int64_t acc, int64_t mult, int64_t shift, int32_t rounding)
{
    if (rounding == 1) {
        int64_t total = 31 - shift;
        return w32((acc * mult + ((int64_t)1 << (total - 1))) >> total);
    }
    int64_t left = shift > 0 ? shift : 0, right = shift < 0 ? -shift : 0;
    return w32(rdbp(w32(srdhm(w32(acc << left), mult)), right));
}
static int8_t quant_s8(int64_t v, int32_t mult, int32_t shift, int32_t zp, int32_t rounding)
{
    int64_t q = requant(v, mult, shift, rounding) + zp;
    return (int8_t)(q > 127 ? 127 : (q < -128 ? -128 : q));
}

void n6q15_mfcc(int16_t *src, const int16_t *window, int32_t n_fft, const int16_t *twiddle,
                const int32_t *bitrev, const int16_t *coef_a, const int16_t *coef_b, int32_t modifier,
                int32_t dsp, const int32_t *lut, const int32_t *mel_start, const int32_t *mel_len,
                const int16_t *mel_coefs, int32_t n_mels, const int16_t *dct, int32_t n_dct,
                int16_t *tmp_spec, int32_t *tmp_mel, int16_t *rec_frame, int16_t *rec_bins,
                int32_t *rec_log, int16_t *out)
{
    int64_t m = 0;
    for (int32_t i = 0; i < n_fft; i++) {
        int64_t v = src[i], a = v > 0 ? v : (v == -32768 ? 32767 : -v);
        if (a > m) m = a;
    }
    int normalised = (m != 0 && m != 32767);
    if (normalised) {
        int64_t temp = ((int64_t)32767 << 15) / m, shift = 17 - clz32(temp);
        if (shift > 0) temp >>= shift; else shift = 0;
        int64_t k_shift = 15 - shift;
        for (int32_t i = 0; i < n_fft; i++) src[i] = (int16_t)sat16(((int64_t)src[i] * temp) >> k_shift);
    }
    n6q15_mult(src, window, src, n_fft);
    for (int32_t i = 0; i < n_fft; i++) rec_frame[i] = src[i];
    n6q15_rfft(src, n_fft, twiddle, bitrev, coef_a, coef_b, modifier, dsp, tmp_spec);
    int32_t n_bins = 1 + (n_fft >> 1);
    n6q15_cmplx_mag(tmp_spec, src, n_bins, lut);
    for (int32_t i = 0; i < n_bins; i++) rec_bins[i] = src[i];
    mel_q31(src, mel_start, mel_len, mel_coefs, n_mels, MICRO_Q15, SHIFT_MEL_Q15, tmp_mel);
    if (normalised) {
        int64_t scale = m << 16;
        for (int32_t i = 0; i < n_mels; i++) {
            int64_t v = ((int64_t)tmp_mel[i] * scale) >> 32, o = w32(v << 1);
            if (v != (o >> 1)) o = 0x7FFFFFFF ^ (v >> 31);
            tmp_mel[i] = (int32_t)w32(o);
        }
    }
    int64_t fft_shift = 31 - clz32(n_fft);
    int64_t log_exp = w32((fft_shift + 2 + SHIFT_MEL_Q15) * LOG2TOLOG_Q15);
    for (int32_t i = 0; i < n_mels; i++) {
        int64_t v = sat32(log_q31(tmp_mel[i]) + log_exp);
        rec_log[i] = (int32_t)v;
        src[i] = (int16_t)w16(v >> 19);
    }
    for (int32_t r = 0; r < n_dct; r++) {
        int64_t acc = 0;
        for (int32_t c = 0; c < n_mels; c++) acc += (int64_t)dct[r * n_mels + c] * src[c];
        out[r] = (int16_t)sat16(acc >> 15);
    }
}

static void frame_into(int16_t *buf, const int16_t *pcm, int32_t n_fft, int32_t base, int32_t win_len, int32_t pad_left)
{
    for (int32_t i = 0; i < n_fft; i++) buf[i] = 0;
    for (int32_t i = 0; i < win_len; i++) buf[pad_left + i] = pcm[base + i];
}

void n6q15_logmel_patch(const int16_t *pcm, int32_t n_frames, int32_t hop, int32_t win_len, int32_t pad_left,
                        const int16_t *window, int32_t n_fft, const int16_t *twiddle, const int32_t *bitrev,
                        const int16_t *coef_a, const int16_t *coef_b, int32_t modifier, int32_t dsp,
                        const int32_t *lut, int32_t power, const int32_t *mel_start, const int32_t *mel_len,
                        const int16_t *mel_coefs, int32_t n_mels, int64_t mel_bias, int32_t mel_shift,
                        int32_t use_log_q15, int32_t log_offset, int32_t q_mult, int32_t q_shift, int32_t q_zp, int32_t q_rounding,
                        int16_t *buf, int16_t *rec_frames, int16_t *rec_spec, int16_t *rec_bins,
                        int32_t *rec_mel, int32_t *rec_log, int8_t *features)
{
    int32_t n_bins = 1 + (n_fft >> 1);
    for (int32_t t = 0; t < n_frames; t++) {
        int16_t *spec = rec_spec + (int64_t)t * 2 * n_fft, *bins = rec_bins + (int64_t)t * n_bins;
        int32_t *mel = rec_mel + (int64_t)t * n_mels, *lg = rec_log + (int64_t)t * n_mels;
        frame_into(buf, pcm, n_fft, hop * t, win_len, pad_left);
        n6q15_mult(buf, window, buf, n_fft);
        for (int32_t i = 0; i < n_fft; i++) rec_frames[(int64_t)t * n_fft + i] = buf[i];
        n6q15_rfft(buf, n_fft, twiddle, bitrev, coef_a, coef_b, modifier, dsp, spec);
        if (power) n6q15_cmplx_mag_squared(spec, bins, n_bins);
        else n6q15_cmplx_mag(spec, bins, n_bins, lut);
        mel_q31(bins, mel_start, mel_len, mel_coefs, n_mels, mel_bias, mel_shift, mel);
        for (int32_t m = 0; m < n_mels; m++) {
            int64_t v;
            if (use_log_q15) {
                mel[m] = (int32_t)sat16(mel[m]);
                v = sat16(log_q15(mel[m]) + log_offset);
            } else {
                v = sat32(log_q31(mel[m]) + log_offset);
            }
            lg[m] = (int32_t)v;
            features[(int64_t)m * n_frames + t] = quant_s8(v, q_mult, q_shift, q_zp, q_rounding);
        }
    }
}

void n6q15_mfcc_patch(const int16_t *pcm, int32_t n_frames, int32_t hop, int32_t win_len, int32_t pad_left,
                      const int16_t *window, int32_t n_fft, const int16_t *twiddle, const int32_t *bitrev,
                      const int16_t *coef_a, const int16_t *coef_b, int32_t modifier, int32_t dsp,
                      const int32_t *lut, const int32_t *mel_start, const int32_t *mel_len,
                      const int16_t *mel_coefs, int32_t n_mels, const int16_t *dct, int32_t n_dct,
                      int32_t q_mult, int32_t q_shift, int32_t q_zp, int32_t q_rounding,
                      int16_t *buf, int32_t *tmp_mel, int16_t *rec_frames, int16_t *rec_spec,
                      int16_t *rec_bins, int32_t *rec_log, int16_t *rec_mfcc, int8_t *features)
{
    int32_t n_bins = 1 + (n_fft >> 1);
    for (int32_t t = 0; t < n_frames; t++) {
        frame_into(buf, pcm, n_fft, hop * t, win_len, pad_left);
        int16_t *mf = rec_mfcc + (int64_t)t * n_dct;
        n6q15_mfcc(buf, window, n_fft, twiddle, bitrev, coef_a, coef_b, modifier, dsp, lut, mel_start,
                   mel_len, mel_coefs, n_mels, dct, n_dct, rec_spec + (int64_t)t * 2 * n_fft, tmp_mel,
                   rec_frames + (int64_t)t * n_fft, rec_bins + (int64_t)t * n_bins,
                   rec_log + (int64_t)t * n_mels, mf);
        for (int32_t k = 0; k < n_dct; k++)
            features[(int64_t)t * n_dct + k] = quant_s8(mf[k], q_mult, q_shift, q_zp, q_rounding);
    }
}
