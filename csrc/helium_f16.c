/* C twin of emu/frontend/helium_f16.py (see helium_f16.h and the Python module docstring for the device
   semantics): every MVE f16 operation is computed in float and rounded once through _Float16; fused
   multiply-adds are rounded once (exact product, round-to-odd sum); vector ops return the default NaN
   0x7E00, scalar VFP ops propagate their NaN operand (FPSCR.DN = 0). */
#include <math.h>
#include <string.h>

#include "helium_f16.h"

static float default_nan(void)
{
    uint32_t u = 0x7FC00000u;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* float -> nearest binary16 value as a float (RNE), on the float's bits (the (_Float16) conversion is a
   libgcc call on x86-64 without F16C, ten times slower); the Numba == C tests cover it (every f16 pattern
   times several factors, overflow and subnormal results included) */
static inline float round_f16_bits(float x)
{
    uint32_t u, a;
    memcpy(&u, &x, sizeof u);
    a = u & 0x7FFFFFFFu;
    if (a >= 0x38800000u) {                        /* normal f16 range or beyond */
        if (a >= 0x477FF000u) u = (u & 0x80000000u) | 0x7F800000u;   /* >= 65520 -> inf (NaN handled by caller) */
        else u = (u + 0xFFFu + ((u >> 13) & 1u)) & 0xFFFFE000u;
        memcpy(&x, &u, sizeof x);
        return x;
    }
    return rintf(x * 16777216.0f) * 5.9604644775390625e-08f;        /* subnormal quantum 2^-24, exact scalings */
}

/* the f16 result of one operation computed in float (RNE; NaN -> default NaN) */
static inline float r16(float x)
{
    return x != x ? default_nan() : round_f16_bits(x);
}

/* a double rounded once to f16: round to odd into float, then RNE to f16 */
static float r16_from_f64(double d)
{
    float f = (float)d;
    if ((double)f != d && fabsf(f) < INFINITY) {
        uint32_t u;
        memcpy(&u, &f, sizeof u);
        if (fabs((double)f) > fabs(d)) u -= 1u;
        u |= 1u;
        memcpy(&f, &u, sizeof f);
    }
    return r16(f);
}

/* c + a*b rounded once to f16 (VFMA, VCMLA) */
static float fma16(float a, float b, float c)
{
    double p = (double)a * (double)b;
    double cc = (double)c;
    double hi = p + cc;
    if (!(fabs(hi) < INFINITY)) return r16((float)hi);
    double bb = hi - p;
    double err = (p - (hi - bb)) + (cc - bb);
    if (err != 0.0) {
        uint64_t u;
        memcpy(&u, &hi, sizeof u);
        if ((u & 1u) == 0u) {
            if ((err > 0.0) == (hi > 0.0)) u += 1u; else u -= 1u;
            memcpy(&hi, &u, sizeof hi);
        }
    }
    return r16_from_f64(hi);
}

/* scalar VFP binary op (FPSCR.DN = 0) with result x = a op b: a NaN operand propagates, op1 first */
static inline float s2(float x, float a, float b)
{
    if (a != a) return a;
    if (b != b) return b;
    return r16(x);
}

/* scalar VFMA family (DN = 0): c + n*m fused, negations already applied; NaN priority c, n, m, except
   (inf * 0) + qNaN -> default NaN */
static float sfma(float c, float n, float m)
{
    if (c != c) {
        if ((fabsf(n) == INFINITY && m == 0.0f) || (n == 0.0f && fabsf(m) == INFINITY)) return default_nan();
        return c;
    }
    if (n != n) return n;
    if (m != m) return m;
    return fma16(n, m, c);
}

/* conj(w) * x: VCMUL #0 then VCMLA #270 */
static inline void cmul_conj(float wr, float wi, float xr, float xi, float *re, float *im)
{
    *re = fma16(wi, xi, r16(wr * xr));
    *im = fma16(-wi, xr, r16(wr * xi));
}

/* _arm_radix4_butterfly_f16_mve on complex values b[2*off ...], fft_len of them, in place */
static void radix4(float *b, int32_t off, int32_t fft_len, const float *tw1, const float *tw2, const float *tw3,
                   const int32_t *stage_off)
{
    int32_t n1 = fft_len, n2 = fft_len >> 2, groups = 1, stage = 0;
    for (int32_t k = fft_len >> 2; k > 1; k >>= 2) {
        int32_t o = stage_off[stage];
        for (int32_t g = 0; g < groups; g++) {
            int32_t base = off + g * n1;
            for (int32_t t = 0; t < n2; t++) {
                int32_t ia = 2 * (base + t), ib = ia + 2 * n2, ic = ib + 2 * n2, id = ic + 2 * n2;
                float ar = b[ia], ai = b[ia + 1], br = b[ib], bi = b[ib + 1];
                float cr = b[ic], ci = b[ic + 1], dr = b[id], di = b[id + 1];
                float s0r = r16(ar + cr), s0i = r16(ai + ci), d0r = r16(ar - cr), d0i = r16(ai - ci);
                float s1r = r16(br + dr), s1i = r16(bi + di), d1r = r16(br - dr), d1i = r16(bi - di);
                int32_t w = o + 2 * t;
                b[ia] = r16(s0r + s1r);
                b[ia + 1] = r16(s0i + s1i);
                cmul_conj(tw2[w], tw2[w + 1], r16(s0r - s1r), r16(s0i - s1i), &b[ib], &b[ib + 1]);
                cmul_conj(tw1[w], tw1[w + 1], r16(d0r + d1i), r16(d0i - d1r), &b[ic], &b[ic + 1]);
                cmul_conj(tw3[w], tw3[w + 1], r16(d0r - d1i), r16(d0i + d1r), &b[id], &b[id + 1]);
            }
        }
        n1 = n2;
        n2 >>= 2;
        groups <<= 2;
        stage++;
    }
    for (int32_t g = 0; g < (fft_len >> 2); g++) {
        float *q = b + 2 * (off + 4 * g);
        float ar = q[0], ai = q[1], br = q[2], bi = q[3], cr = q[4], ci = q[5], dr = q[6], di = q[7];
        float s0r = r16(ar + cr), s0i = r16(ai + ci), d0r = r16(ar - cr), d0i = r16(ai - ci);
        float s1r = r16(br + dr), s1i = r16(bi + di), d1r = r16(br - dr), d1i = r16(bi - di);
        q[0] = r16(s0r + s1r);
        q[1] = r16(s0i + s1i);
        q[2] = r16(s0r - s1r);
        q[3] = r16(s0i - s1i);
        q[4] = r16(d0r + d1i);
        q[5] = r16(d0i - d1r);
        q[6] = r16(d0r - d1i);
        q[7] = r16(d0i + d1r);
    }
}

void helium_cfft_f16(float *buf, int32_t fft_len, int32_t split, const float *tw_split, const float *tw1,
                     const float *tw2, const float *tw3, const int32_t *stage_off, const int32_t *bitrev)
{
    if (!split) {
        radix4(buf, 0, fft_len, tw1, tw2, tw3, stage_off);
    } else {
        int32_t n2 = fft_len >> 1;
        for (int32_t i = 0; i < n2; i++) {
            int32_t i0 = 2 * i, i1 = 2 * (i + n2);
            float xr = buf[i0], xi = buf[i0 + 1], yr = buf[i1], yi = buf[i1 + 1], re, im;
            cmul_conj(tw_split[i0], tw_split[i0 + 1], r16(xr - yr), r16(xi - yi), &re, &im);
            buf[i0] = r16(xr + yr);
            buf[i0 + 1] = r16(xi + yi);
            buf[i1] = re;
            buf[i1 + 1] = im;
        }
        radix4(buf, 0, n2, tw1, tw2, tw3, stage_off);
        radix4(buf, n2, n2, tw1, tw2, tw3, stage_off);
    }
    for (int32_t i = 0; i < fft_len; i++) {
        int32_t j = bitrev[i];
        if (j > i) {
            float t0 = buf[2 * i], t1 = buf[2 * i + 1];
            buf[2 * i] = buf[2 * j];
            buf[2 * i + 1] = buf[2 * j + 1];
            buf[2 * j] = t0;
            buf[2 * j + 1] = t1;
        }
    }
}

/* stage_rfft_f16 (MVE build): vector body, scalar first bin and tail (DN = 0 NaN propagation);
   ofast: the -Ofast build's vector body adds (xB + res) + xA instead of (xB + xA) + res */
static void stage_rfft(const float *p, float *out, int32_t fft_len, const float *tw, int32_t ofast)
{
    float t1b = s2(p[1] + p[1], p[1], p[1]);
    float s0 = sfma(t1b, p[0], 2.0f);              /* VFMA: t1b + 2*xAR */
    float s1 = sfma(-t1b, p[0], 2.0f);             /* VFNMS: -t1b + 2*xAR */
    out[0] = s2(s0 * 0.5f, s0, 0.5f);
    out[1] = s2(s1 * 0.5f, s1, 0.5f);
    int32_t blocks = (fft_len - 1) >> 3;
    for (int32_t m = 1; m < 1 + 8 * blocks; m++) {
        int32_t a = 2 * m, bb = 2 * (fft_len - m);
        float xar = p[a], xai = p[a + 1], xbr = p[bb], nxbi = -p[bb + 1], twr = tw[a], twi = tw[a + 1];
        float t2r = r16(xbr - xar), t2i = r16(nxbi - xai);
        float rr = fma16(-twi, t2i, r16(t2r * twr));
        float ri = fma16(twi, t2r, r16(t2i * twr));
        if (ofast) {
            out[a] = r16(r16(r16(xbr + rr) + xar) * 0.5f);
            out[a + 1] = r16(r16(r16(nxbi + ri) + xai) * 0.5f);
        } else {
            out[a] = r16(r16(r16(xbr + xar) + rr) * 0.5f);
            out[a + 1] = r16(r16(r16(nxbi + xai) + ri) * 0.5f);
        }
    }
    for (int32_t m = 1 + 8 * blocks; m < fft_len; m++) {
        int32_t a = 2 * m, bb = 2 * (fft_len - m);
        float xar = p[a], xai = p[a + 1], xbr = p[bb], xbi = p[bb + 1], twr = tw[a], twi = tw[a + 1];
        float t1a = s2(xbr - xar, xbr, xar), t1bb = s2(xbi + xai, xbi, xai);
        float re = sfma(s2(xbr + xar, xbr, xar), twr, t1a);
        float im = sfma(s2(xai - xbi, xai, xbi), twi, t1a);
        re = sfma(re, twi, t1bb);
        im = sfma(im, -twr, t1bb);                 /* VFMS negates the multiplicand */
        out[a] = s2(re * 0.5f, re, 0.5f);
        out[a + 1] = s2(im * 0.5f, im, 0.5f);
    }
}

void helium_rfft_fast_f16(float *buf, float *out, int32_t n_fft, int32_t split, const float *tw_split,
                          const float *tw1, const float *tw2, const float *tw3, const int32_t *stage_off,
                          const int32_t *bitrev, const float *tw_rfft, int32_t ofast)
{
    helium_cfft_f16(buf, n_fft / 2, split, tw_split, tw1, tw2, tw3, stage_off, bitrev);
    stage_rfft(buf, out, n_fft / 2, tw_rfft, ofast);
}

void helium_cmplx_mag_squared_f16(const float *src, float *dst, int32_t n)
{
    for (int32_t base = 0; base < n; base += 8) {
        int32_t cnt = n - base < 8 ? n - base : 8;
        float v[8];
        for (int32_t j = 0; j < cnt; j++) {          /* the whole block is read before it is written */
            float re = src[2 * (base + j)], im = src[2 * (base + j) + 1];
            v[j] = fma16(im, im, r16(re * re));
        }
        for (int32_t j = 0; j < cnt; j++) dst[base + j] = v[j];
    }
}

static float f16_from_bits(uint16_t h)
{
    _Float16 v;
    memcpy(&v, &h, sizeof v);
    return (float)v;
}

static uint16_t f16_bits(float x)
{
    _Float16 v = (_Float16)x;
    uint16_t h;
    memcpy(&h, &v, sizeof h);
    return h;
}

static float mag_lane(float re, float im, int iterations)
{
    float s = fma16(im, im, r16(re * re));
    int16_t bits = (int16_t)f16_bits(s);
    float x = f16_from_bits((uint16_t)(0x59BA - (bits >> 1)));   /* VSHR.S16 #1, VSUB.I16 */
    float half = r16(s * 0.5f);
    for (int i = 0; i < iterations; i++) x = r16(r16(1.5f - r16(r16(x * x) * half)) * x);
    if (!(x >= 0.0f)) x = 0.0f;                                   /* VCMP LT: less than or unordered */
    return r16(s * x);
}

void helium_cmplx_mag_f16(const float *src, float *dst, int32_t n)
{
    int32_t full = n >> 3;
    for (int32_t base = 0; base < n; base += 8) {
        int32_t cnt = n - base < 8 ? n - base : 8;
        int it = base < 8 * full ? 3 : 2;
        float v[8];
        for (int32_t j = 0; j < cnt; j++) v[j] = mag_lane(src[2 * (base + j)], src[2 * (base + j) + 1], it);
        for (int32_t j = 0; j < cnt; j++) dst[base + j] = v[j];
    }
}

float helium_dot_prod_f16(const float *a, const float *b, int32_t n)
{
    float l[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    int32_t k;
    for (k = 0; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++) l[j] = fma16(a[k + j], b[k + j], l[j]);
    for (int j = 0; k + j < n; j++) l[j] = fma16(a[k + j], b[k + j], l[j]);
    float lo = r16(r16(l[0] + l[1]) + r16(l[2] + l[3]));
    float hi = r16(r16(l[4] + l[5]) + r16(l[6] + l[7]));
    return s2(lo + hi, lo, hi);                    /* scalar VADD.F16 of lanes 0 and 4 */
}

void helium_mult_f16(const float *a, const float *b, float *dst, int32_t n)
{
    for (int32_t base = 0; base < n; base += 8) {
        int32_t cnt = n - base < 8 ? n - base : 8;
        float v[8];
        for (int32_t j = 0; j < cnt; j++) v[j] = r16(a[base + j] * b[base + j]);
        for (int32_t j = 0; j < cnt; j++) dst[base + j] = v[j];
    }
}

void helium_q15_to_f16(const int16_t *src, float *dst, int32_t n)
{
    for (int32_t k = 0; k < n; k++) dst[k] = r16((float)src[k] * (1.0f / 32768.0f));
}
