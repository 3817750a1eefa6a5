/* C twin of emu/frontend/helium_f32.py (see that module's docstring for the device facts): CMSIS-DSP's MVE
   float32 paths, operation by operation. Compiled with -ffp-contract=off: every fused multiply-add the device
   performs is an explicit fmaf(). Vector (MVE) operations use the standard FPSCR value (flush to zero on
   inputs and on exact results below 2^-126, default NaN); scalar VFP code keeps IEEE subnormals. */
#include "helium_f32.h"

#include <math.h>
#include <string.h>

#define TINY 0x1p-126f
#define TINY64 0x1p-126

static float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* a vector instruction reading x: subnormal -> signed zero */
static inline float ftz(float x) { return fabsf(x) < TINY ? x * 0.0f : x; }

/* VADD/VSUB lane on normal-or-zero inputs: a result below 2^-126 is exact, flush it */
static inline float vadd(float a, float b) { float r = a + b; return fabsf(r) < TINY ? r * 0.0f : r; }
static inline float vsub(float a, float b) { float r = a - b; return fabsf(r) < TINY ? r * 0.0f : r; }

/* VMUL/VCMUL lane: flush when the exact product is below 2^-126 */
static inline float vmul(float a, float b)
{
    float r = a * b;
    if (fabsf(r) <= TINY && fabs((double)a * (double)b) < TINY64) r *= 0.0f;
    return r;
}

/* VFMA/VCMLA lane a*b + c: one rounding, flush decided on the exact value (TwoSum in double) */
static inline float vfma(float a, float b, float c)
{
    float r = fmaf(a, b, c);
    if (fabsf(r) <= TINY) {
        double p = (double)a * (double)b, cc = c;
        double s = p + cc, bb = s - p;
        double err = (p - (s - bb)) + (cc - bb);
        if (fabs(s) < TINY64 || (fabs(s) == TINY64 && err != 0.0 && (err > 0.0) != (s > 0.0))) r *= 0.0f;
    }
    return r;
}

/* the Arm default NaN for any NaN */
static inline float canon(float x) { return x != x ? bits_to_f32(0x7FC00000u) : x; }

/* b[k] = MVE_CMPLX_MULT_FLT_Conj_AxB(W, x): vcmul #0 then vcmla #270 */
static inline void conj_mul_store(float *b, int32_t k, float wr, float wi, float xr, float xi)
{
    float re = vmul(wr, xr), im = vmul(wr, xi);
    b[2 * k] = vfma(wi, xi, re);
    b[2 * k + 1] = vfma(wi, -xr, im);
}

/* _arm_radix4_butterfly_f32_mve on the n (a power of 4) complex values at b[2*off] */
static void radix4_mve(const helium_f32_fft *t, float *b, int32_t off, int32_t n)
{
    int32_t n1 = n, n2 = n >> 2, groups = 1, stage = 0;
    for (int32_t k = n >> 2; k > 1; k >>= 2) {
        int32_t o = t->stage_off[stage];
        for (int32_t g = 0; g < groups; g++) {
            int32_t base = off + g * n1;
            for (int32_t j = 0; j < n2; j++) {
                int32_t ia = base + j, ib = ia + n2, ic = ib + n2, id = ic + n2, w = o + 2 * j;
                float ar = b[2 * ia], ai = b[2 * ia + 1], br = b[2 * ib], bi = b[2 * ib + 1];
                float cr = b[2 * ic], ci = b[2 * ic + 1], dr = b[2 * id], di = b[2 * id + 1];
                float s0r = vadd(ar, cr), s0i = vadd(ai, ci), d0r = vsub(ar, cr), d0i = vsub(ai, ci);
                float s1r = vadd(br, dr), s1i = vadd(bi, di), d1r = vsub(br, dr), d1i = vsub(bi, di);
                b[2 * ia] = vadd(s0r, s1r);
                b[2 * ia + 1] = vadd(s0i, s1i);
                conj_mul_store(b, ib, t->tw2[w], t->tw2[w + 1], vsub(s0r, s1r), vsub(s0i, s1i));
                conj_mul_store(b, ic, t->tw1[w], t->tw1[w + 1], vadd(d0r, d1i), vsub(d0i, d1r));  /* d0 - i d1 */
                conj_mul_store(b, id, t->tw3[w], t->tw3[w + 1], vsub(d0r, d1i), vadd(d0i, d1r));  /* d0 + i d1 */
            }
        }
        n1 = n2;
        n2 >>= 2;
        groups <<= 2;
        stage++;
    }
    for (int32_t g = 0; g < (n >> 2); g++) {    /* last stage: groups of 4 consecutive values, no twiddles */
        float *q = b + 2 * (off + 4 * g);
        float ar = q[0], ai = q[1], br = q[2], bi = q[3], cr = q[4], ci = q[5], dr = q[6], di = q[7];
        float s0r = vadd(ar, cr), s0i = vadd(ai, ci), d0r = vsub(ar, cr), d0i = vsub(ai, ci);
        float s1r = vadd(br, dr), s1i = vadd(bi, di), d1r = vsub(br, dr), d1i = vsub(bi, di);
        q[0] = vadd(s0r, s1r);
        q[1] = vadd(s0i, s1i);
        q[2] = vsub(s0r, s1r);
        q[3] = vsub(s0i, s1i);
        q[4] = vadd(d0r, d1i);
        q[5] = vsub(d0i, d1r);
        q[6] = vsub(d0r, d1i);
        q[7] = vadd(d0i, d1r);
    }
}

static void cfft_mve(const helium_f32_fft *t, float *b)
{
    int32_t L = t->fft_len;
    for (int32_t i = 0; i < 2 * L; i++) b[i] = ftz(b[i]);
    if (L & 0x55555555) {
        radix4_mve(t, b, 0, L);
    } else {                                  /* arm_cfft_radix4by2_f32_mve */
        int32_t n2 = L >> 1;
        for (int32_t j = 0; j < n2; j++) {
            int32_t l = j + n2;
            float ar = b[2 * j], ai = b[2 * j + 1], cr = b[2 * l], ci = b[2 * l + 1];
            b[2 * j] = vadd(ar, cr);
            b[2 * j + 1] = vadd(ai, ci);
            conj_mul_store(b, l, t->coef[2 * j], t->coef[2 * j + 1], vsub(ar, cr), vsub(ai, ci));
        }
        radix4_mve(t, b, 0, n2);
        radix4_mve(t, b, n2, n2);
    }
    for (int32_t i = 0; i + 1 < t->bitrev_len; i += 2) {
        int32_t p = t->bitrev[i] >> 2, q = t->bitrev[i + 1] >> 2;
        float t0 = b[p], t1 = b[p + 1];
        b[p] = b[q];
        b[p + 1] = b[q + 1];
        b[q] = t0;
        b[q + 1] = t1;
    }
    for (int32_t i = 0; i < 2 * L; i++) b[i] = canon(b[i]);
}

void helium_cfft_f32(const helium_f32_fft *t, float *buf)
{
    cfft_mve(t, buf);
}

void helium_rfft_fast_f32(const helium_f32_fft *t, float *buf, float *out, int32_t ofast)
{
    cfft_mve(t, buf);
    const float *p = buf, *rtw = t->rtw;
    int32_t n = t->fft_len, k = n - 1, nvec = 4 * (k >> 2);
    float p0 = p[0], t1b0 = p[1] + p[1];
    out[0] = 0.5f * fmaf(p0, 2.0f, t1b0);     /* scalar; gcc fused t1a = p0 + p0 into the add */
    out[1] = 0.5f * fmaf(p0, 2.0f, -t1b0);
    for (int32_t i = 1; i <= nvec; i++) {     /* vector blocks, lane by lane */
        int32_t jb = n - i;
        float xar = p[2 * i], xai = p[2 * i + 1], xbr = p[2 * jb], xbi = -p[2 * jb + 1];
        float twr = rtw[2 * i], twi = rtw[2 * i + 1];
        float t2r = vsub(xbr, xar), t2i = vsub(xbi, xai);
        float rr = vfma(-twi, t2i, vmul(t2r, twr));
        float ri = vfma(twi, t2r, vmul(t2i, twr));
        if (ofast) {                          /* -Ofast: (xB + res) + xA */
            out[2 * i] = vmul(vadd(vadd(xbr, rr), xar), 0.5f);
            out[2 * i + 1] = vmul(vadd(vadd(xbi, ri), xai), 0.5f);
        } else {
            out[2 * i] = vmul(vadd(vadd(xbr, xar), rr), 0.5f);
            out[2 * i + 1] = vmul(vadd(vadd(xbi, xai), ri), 0.5f);
        }
    }
    for (int32_t i = nvec + 1; i < n; i++) {  /* scalar tail, contracted by gcc */
        int32_t jb = n - i;
        float xar = p[2 * i], xai = p[2 * i + 1], xbr = p[2 * jb], xbi = p[2 * jb + 1];
        float twr = rtw[2 * i], twi = rtw[2 * i + 1];
        float t1a = xbr - xar, t1b = xbi + xai;
        float re = fmaf(twi, t1b, fmaf(twr, t1a, xbr + xar));
        float im = fmaf(-twr, t1b, fmaf(twi, t1a, xai - xbi));
        out[2 * i] = re * 0.5f;
        out[2 * i + 1] = im * 0.5f;
    }
    for (int32_t i = 0; i < 2 * n; i++) out[i] = canon(out[i]);
    if (t1b0 != t1b0) out[1] = bits_to_f32(0xFFC00000u);   /* VFNMS negates its NaN addend */
}

void helium_cmplx_mag_squared_f32(const float *src, float *dst, int32_t n)
{
    int32_t nb = n >> 2;
    for (int32_t blk = 0; blk < nb; blk++) {
        float v[8], r[4];
        for (int j = 0; j < 8; j++) v[j] = ftz(src[8 * blk + j]);      /* read the block, then write */
        for (int j = 0; j < 4; j++) r[j] = canon(vfma(v[2 * j + 1], v[2 * j + 1], vmul(v[2 * j], v[2 * j])));
        for (int j = 0; j < 4; j++) dst[4 * blk + j] = r[j];
    }
    for (int32_t k = 4 * nb; k < n; k++) {
        float re = src[2 * k], im = src[2 * k + 1];
        dst[k] = canon(fmaf(re, re, im * im));
    }
}

static float mag_lane(float re, float im)
{
    float s = vfma(im, im, vmul(re, re));
    uint32_t start = 0x5F3759DFu - (uint32_t)((int32_t)f32_to_bits(s) >> 1);   /* int32 arithmetic, wraps */
    float y = ftz(bits_to_f32(start)), half = vmul(s, 0.5f);
    for (int it = 0; it < 3; it++) y = vmul(vsub(1.5f, vmul(vmul(y, y), half)), y);
    if (!(y >= 0.0f)) y = 0.0f;              /* vcmpltq: less than, or unordered */
    return canon(vmul(s, y));
}

void helium_cmplx_mag_f32(const float *src, float *dst, int32_t n)
{
    int32_t nb = n >> 2;
    for (int32_t blk = 0; blk < nb; blk++) {
        float v[8], r[4];
        for (int j = 0; j < 8; j++) v[j] = ftz(src[8 * blk + j]);
        for (int j = 0; j < 4; j++) r[j] = mag_lane(v[2 * j], v[2 * j + 1]);
        for (int j = 0; j < 4; j++) dst[4 * blk + j] = r[j];
    }
    for (int32_t k = 4 * nb; k < n; k++) {
        float re = src[2 * k], im = src[2 * k + 1];
        float s = fmaf(re, re, im * im);
        dst[k] = s >= 0.0f ? canon(sqrtf(s)) : 0.0f;
    }
}

float helium_dot_prod_f32(const float *a, const float *b, int32_t n)
{
    float l[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int32_t nb = n >> 2;
    for (int32_t blk = 0; blk < nb; blk++)
        for (int j = 0; j < 4; j++) l[j] = vfma(ftz(a[4 * blk + j]), ftz(b[4 * blk + j]), l[j]);
    for (int32_t k = 4 * nb; k < n; k++) l[k - 4 * nb] = vfma(ftz(a[k]), ftz(b[k]), l[k - 4 * nb]);
    return canon(((l[0] + l[1]) + l[2]) + l[3]);
}

void helium_mult_f32(const float *a, const float *b, float *dst, int32_t n)
{
    for (int32_t k = 0; k < n; k++) dst[k] = canon(vmul(ftz(a[k]), ftz(b[k])));
}

void helium_q15_to_float(const int16_t *src, float *dst, int32_t n)
{
    for (int32_t k = 0; k < n; k++) dst[k] = (float)src[k] * 0x1p-15f;
}
