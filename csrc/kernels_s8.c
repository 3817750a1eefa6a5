/* C twins of the n6emu int8 network kernels; see kernels_s8.h for the contract.
 * Written from the semantics in DESIGN.md §3.1 (gemmlowp / TFLite Micro / CMSIS-NN facts).
 * int32 wrap-around is done explicitly in uint32 (signed overflow is undefined in C); int64 products.
 */
#include "kernels_s8.h"

#include <stddef.h>

#define N6_INT32_MIN (-2147483647 - 1)
#define N6_INT32_MAX 2147483647

/* The int32 whose two's-complement bit pattern is u (no implementation-defined conversion). */
static inline int32_t wrap32(uint32_t u)
{
    return (u <= 0x7FFFFFFFu) ? (int32_t)u : (int32_t)((int64_t)u - 4294967296LL);
}

static inline int32_t wrap64(int64_t x) { return wrap32((uint32_t)(uint64_t)x); }

static inline int32_t add32(int32_t a, int32_t b) { return wrap32((uint32_t)a + (uint32_t)b); }
static inline int32_t sub32(int32_t a, int32_t b) { return wrap32((uint32_t)a - (uint32_t)b); }

/* int64 arithmetic right shift (floor), independent of the compiler's choice for negative >> . */
static inline int64_t asr64(int64_t x, int32_t e)
{
    return (x >= 0) ? (x >> e) : -(int64_t)((((uint64_t)(-(x + 1))) >> e) + 1u);
}

/* int64 left shift modulo 2^64 (no UB on negative values). */
static inline int64_t shl64(int64_t x, int32_t e)
{
    uint64_t u = ((uint64_t)x) << e;
    return (u <= 0x7FFFFFFFFFFFFFFFull) ? (int64_t)u : -(int64_t)(~u) - 1;
}

/* Kernel-internal inline versions; the exported n6_* primitives below are thin wrappers of them. */
static inline int32_t srdhm(int32_t a, int32_t b)
{
    if (a == N6_INT32_MIN && b == N6_INT32_MIN)
        return N6_INT32_MAX;
    /* |a*b| <= 2^62, + 2^30 fits; floor division by 2^31 (ties toward +inf) */
    return (int32_t)asr64((int64_t)a * (int64_t)b + (1LL << 30), 31);
}

static inline int32_t rdbp(int32_t x, int32_t exponent)
{
    const int64_t x64 = x;
    const int64_t mask = (int64_t)((1ull << exponent) - 1u);
    const int64_t remainder = x64 & mask;
    const int64_t threshold = (mask >> 1) + (x64 < 0 ? 1 : 0);
    return (int32_t)(asr64(x64, exponent) + (remainder > threshold ? 1 : 0));
}

static inline int32_t requantize_double(int32_t acc, int32_t mult, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift < 0 ? -shift : 0;
    return rdbp(srdhm(wrap64(shl64(acc, left)), mult), right);
}

static inline int32_t requantize_single(int32_t acc, int32_t mult, int32_t shift)
{
    const int32_t total = 31 - shift;
    const int64_t prod = (int64_t)acc * (int64_t)mult;
    return wrap64(asr64(prod + (1LL << (total - 1)), total));
}

static inline int32_t requantize(int32_t acc, int32_t mult, int32_t shift, int32_t rounding)
{
    return rounding == 1 ? requantize_single(acc, mult, shift) : requantize_double(acc, mult, shift);
}

int32_t n6_srdhm(int32_t a, int32_t b) { return srdhm(a, b); }
int32_t n6_rdbp(int32_t x, int32_t exponent) { return rdbp(x, exponent); }
int32_t n6_requantize_double(int32_t acc, int32_t mult, int32_t shift) { return requantize_double(acc, mult, shift); }
int32_t n6_requantize_single(int32_t acc, int32_t mult, int32_t shift) { return requantize_single(acc, mult, shift); }
int32_t n6_requantize(int32_t acc, int32_t mult, int32_t shift, int32_t rounding)
{
    return requantize(acc, mult, shift, rounding);
}

/* gemmlowp SaturatingRoundingMultiplyByPOT with a positive exponent: saturating left shift. */
static int32_t sat_shl(int32_t x, int32_t exponent)
{
    const int64_t limit = 1LL << (31 - exponent);
    if ((int64_t)x >= limit)
        return N6_INT32_MAX;
    if ((int64_t)x < -limit)
        return N6_INT32_MIN;
    return (int32_t)((int64_t)x * (1LL << exponent));
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor expansion around -1/8. */
static int32_t exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a)
{
    const int32_t constant_term = 1895147668;     /* exp(-1/8) in Q0.31 */
    const int32_t constant_1_over_3 = 715827883;  /* 1/3 in Q0.31 */
    const int32_t x = add32(a, 1 << 28);          /* a + 1/8 */
    const int32_t x2 = srdhm(x, x);
    const int32_t x3 = srdhm(x2, x);
    const int32_t x4 = srdhm(x2, x2);
    const int32_t x4_over_4 = rdbp(x4, 2);
    const int32_t poly = rdbp(add32(srdhm(add32(x4_over_4, x3), constant_1_over_3), x2), 1);
    return add32(constant_term, srdhm(constant_term, add32(x, poly)));
}

int32_t n6_exp_on_negative_values(int32_t a)
{
    /* Q5.26 input: 26 fractional bits; one quarter = 2^24. */
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t one_quarter = 1 << 24;
    const int32_t a_mod_quarter_minus_one_quarter = sub32(a & (one_quarter - 1), one_quarter);
    int32_t result = exp_on_interval_between_negative_one_quarter_and_0_excl(sat_shl(a_mod_quarter_minus_one_quarter, 5));
    const int32_t remainder = sub32(a_mod_quarter_minus_one_quarter, a);
    for (int32_t i = 0; i < 7; ++i) {
        /* bit 24+i of the remainder selects the factor exp(-2^(i-2)) */
        if (((uint32_t)remainder >> (24 + i)) & 1u)
            result = srdhm(result, barrel[i]);
    }
    return a == 0 ? N6_INT32_MAX : result;
}

int32_t n6_one_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    /* half_denominator = RoundingHalfSum(a, 1.0) in Q0.31; Newton-Raphson in Q2.29, 3 iterations. */
    const int64_t sum = (int64_t)a + (int64_t)N6_INT32_MAX;
    const int64_t sign = sum >= 0 ? 1 : -1;
    const int32_t half_denominator = (int32_t)((sum + sign) / 2); /* C division truncates */
    const int32_t constant_48_over_17 = 1515870810;
    const int32_t constant_neg_32_over_17 = -1010580540;
    const int32_t one_q2 = 1 << 29;
    int32_t x = add32(constant_48_over_17, srdhm(half_denominator, constant_neg_32_over_17));
    for (int32_t i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = srdhm(half_denominator, x);
        const int32_t one_minus = sub32(one_q2, half_denominator_times_x);
        x = add32(x, sat_shl(srdhm(x, one_minus), 2));
    }
    return sat_shl(x, 1);
}

/* clamp(requantized + output_offset, act_min, act_max) computed in int64, stored as int8. */
static inline int8_t activate(int32_t requantized, int32_t output_offset, int32_t act_min, int32_t act_max)
{
    int64_t v = (int64_t)requantized + (int64_t)output_offset;
    if (v < act_min)
        v = act_min;
    if (v > act_max)
        v = act_max;
    return (int8_t)v;
}

/* Integer-only loops with unsigned (modular) sums: vectorizing them cannot change a result, but GCC's -O2
   cost model declines these reductions, so such functions ask for it explicitly (no float code inside). */
#if defined(__GNUC__) && !defined(__clang__)
#define N6_VECTORIZE __attribute__((optimize("tree-vectorize")))
#else
#define N6_VECTORIZE
#endif

/* sum of x[i]*w[i] (each int8 x int8 product is exact in int32) and of w[i], both modulo 2^32. */
N6_VECTORIZE static void dot_s8_long(const int8_t *x, const int8_t *w, int64_t len, uint32_t *xw, uint32_t *wsum)
{
    uint32_t acc = 0, ws = 0;
    for (int64_t i = 0; i < len; ++i) {
        acc += (uint32_t)((int32_t)x[i] * (int32_t)w[i]);
        ws += (uint32_t)(int32_t)w[i];
    }
    *xw += acc;
    *wsum += ws;
}

/* Same sums; short runs stay inline and scalar (a call and a vector prologue would dominate). */
static inline void dot_s8(const int8_t *x, const int8_t *w, int64_t len, uint32_t *xw, uint32_t *wsum)
{
    if (len >= 16) {
        dot_s8_long(x, w, len, xw, wsum);
        return;
    }
    uint32_t acc = 0, ws = 0;
    for (int64_t i = 0; i < len; ++i) {
        acc += (uint32_t)((int32_t)x[i] * (int32_t)w[i]);
        ws += (uint32_t)(int32_t)w[i];
    }
    *xw += acc;
    *wsum += ws;
}

/* Valid filter-tap range [*lo, *hi) along one axis: 0 <= origin + t*dilation < size. */
static inline void tap_range(int64_t origin, int64_t taps, int64_t dilation, int64_t size, int64_t *lo, int64_t *hi)
{
    int64_t l = 0, h = taps;
    while (l < h && origin + l * dilation < 0)
        ++l;
    while (h > l && origin + (h - 1) * dilation >= size)
        --h;
    *lo = l;
    *hi = h;
}

void n6_conv_s8(const int8_t *inp, int32_t n, int32_t h, int32_t w, int32_t cin,
                const int8_t *filt, int32_t cout, int32_t kh, int32_t kw, int32_t cin_g,
                const int32_t *bias, const int32_t *mult, const int32_t *shift,
                int32_t input_offset, int32_t output_offset, int32_t stride_h, int32_t stride_w,
                int32_t pad_top, int32_t pad_left, int32_t dilation_h, int32_t dilation_w,
                int32_t act_min, int32_t act_max, int32_t rounding,
                int8_t *out, int32_t oh, int32_t ow)
{
    /* acc = bias + sum (x + off) * w = bias + sum x*w + off * sum w, all modulo 2^32 (exactly the
       wrapped int32 of the direct sum); only taps inside the input contribute. */
    const int32_t groups = cin / cin_g;
    const int32_t cout_per_group = cout / groups;
    /* one filter row of valid taps is one contiguous run in both input and weights */
    const int row_contiguous = dilation_w == 1 && cin_g == cin;
    for (int64_t b = 0; b < n; ++b) {
        for (int64_t y = 0; y < oh; ++y) {
            const int64_t iy0 = y * stride_h - pad_top;
            int64_t fy_lo, fy_hi;
            tap_range(iy0, kh, dilation_h, h, &fy_lo, &fy_hi);
            for (int64_t x = 0; x < ow; ++x) {
                const int64_t ix0 = x * stride_w - pad_left;
                int64_t fx_lo, fx_hi;
                tap_range(ix0, kw, dilation_w, w, &fx_lo, &fx_hi);
                int8_t *dst = out + ((b * oh + y) * ow + x) * cout;
                for (int64_t oc = 0; oc < cout; ++oc) {
                    const int64_t ic0 = (oc / cout_per_group) * cin_g;
                    uint32_t xw = 0, wsum = 0;
                    for (int64_t fy = fy_lo; fy < fy_hi; ++fy) {
                        const int64_t iy = iy0 + fy * dilation_h;
                        const int8_t *wrow = filt + (oc * kh + fy) * kw * (int64_t)cin_g;
                        const int8_t *xrow = inp + (b * h + iy) * w * (int64_t)cin;
                        if (row_contiguous) {
                            dot_s8(xrow + (ix0 + fx_lo) * cin, wrow + fx_lo * cin, (fx_hi - fx_lo) * cin, &xw, &wsum);
                            continue;
                        }
                        for (int64_t fx = fx_lo; fx < fx_hi; ++fx)
                            dot_s8(xrow + (ix0 + fx * dilation_w) * cin + ic0, wrow + fx * cin_g, cin_g, &xw, &wsum);
                    }
                    const uint32_t acc = (uint32_t)bias[oc] + xw + (uint32_t)input_offset * wsum;
                    dst[oc] = activate(requantize(wrap32(acc), mult[oc], shift[oc], rounding),
                                       output_offset, act_min, act_max);
                }
            }
        }
    }
}

#define N6_DW_BLOCK 64 /* output channels accumulated together (stack block, no allocation) */

N6_VECTORIZE void n6_depthwise_conv_s8(const int8_t *inp, int32_t n, int32_t h, int32_t w, int32_t cin,
                          const int8_t *filt, int32_t kh, int32_t kw,
                          const int32_t *bias, const int32_t *mult, const int32_t *shift,
                          int32_t ch_mult, int32_t input_offset, int32_t output_offset,
                          int32_t stride_h, int32_t stride_w, int32_t pad_top, int32_t pad_left,
                          int32_t dilation_h, int32_t dilation_w,
                          int32_t act_min, int32_t act_max, int32_t rounding,
                          int8_t *out, int32_t oh, int32_t ow)
{
    /* acc[oc] = bias[oc] + sum over valid taps of (x[ic] + off) * w[oc], ic = oc / ch_mult, modulo 2^32 */
    const int64_t cout = (int64_t)cin * ch_mult;
    const uint32_t off = (uint32_t)input_offset;
    uint32_t acc[N6_DW_BLOCK];
    for (int64_t b = 0; b < n; ++b) {
        for (int64_t y = 0; y < oh; ++y) {
            const int64_t iy0 = y * stride_h - pad_top;
            int64_t fy_lo, fy_hi;
            tap_range(iy0, kh, dilation_h, h, &fy_lo, &fy_hi);
            for (int64_t x = 0; x < ow; ++x) {
                const int64_t ix0 = x * stride_w - pad_left;
                int64_t fx_lo, fx_hi;
                tap_range(ix0, kw, dilation_w, w, &fx_lo, &fx_hi);
                int8_t *dst = out + ((b * oh + y) * ow + x) * cout;
                for (int64_t c0 = 0; c0 < cout; c0 += N6_DW_BLOCK) {
                    const int64_t len = cout - c0 < N6_DW_BLOCK ? cout - c0 : N6_DW_BLOCK;
                    for (int64_t j = 0; j < len; ++j)
                        acc[j] = (uint32_t)bias[c0 + j];
                    for (int64_t fy = fy_lo; fy < fy_hi; ++fy) {
                        const int64_t iy = iy0 + fy * dilation_h;
                        for (int64_t fx = fx_lo; fx < fx_hi; ++fx) {
                            const int64_t ix = ix0 + fx * dilation_w;
                            const int8_t *xs = inp + ((b * h + iy) * w + ix) * cin;
                            const int8_t *ws = filt + (fy * kw + fx) * cout + c0;
                            if (ch_mult == 1) {
                                for (int64_t j = 0; j < len; ++j)
                                    acc[j] += ((uint32_t)(int32_t)xs[c0 + j] + off) * (uint32_t)(int32_t)ws[j];
                            } else {
                                for (int64_t j = 0; j < len; ++j)
                                    acc[j] += ((uint32_t)(int32_t)xs[(c0 + j) / ch_mult] + off) * (uint32_t)(int32_t)ws[j];
                            }
                        }
                    }
                    for (int64_t j = 0; j < len; ++j)
                        dst[c0 + j] = activate(requantize(wrap32(acc[j]), mult[c0 + j], shift[c0 + j], rounding),
                                               output_offset, act_min, act_max);
                }
            }
        }
    }
}

void n6_fully_connected_s8(const int8_t *inp, int32_t n, int32_t k,
                           const int8_t *filt, int32_t out_ch,
                           const int32_t *bias, const int32_t *mult, const int32_t *shift,
                           int32_t input_offset, int32_t filter_offset, int32_t output_offset,
                           int32_t act_min, int32_t act_max, int32_t rounding, int8_t *out)
{
    /* acc = bias + sum (x + io) * (w + fo) = bias + sum x*w + fo*sum x + io*sum w + k*io*fo, modulo 2^32 */
    const uint32_t io = (uint32_t)input_offset, fo = (uint32_t)filter_offset;
    for (int64_t b = 0; b < n; ++b) {
        const int8_t *src = inp + b * k;
        uint32_t xsum = 0;
        for (int64_t i = 0; i < k; ++i)
            xsum += (uint32_t)(int32_t)src[i];
        for (int64_t o = 0; o < out_ch; ++o) {
            uint32_t xw = 0, wsum = 0;
            dot_s8(src, filt + o * k, k, &xw, &wsum);
            const uint32_t acc = (uint32_t)bias[o] + xw + fo * xsum + io * wsum + (uint32_t)k * io * fo;
            out[b * out_ch + o] = activate(requantize(wrap32(acc), mult[o], shift[o], rounding),
                                           output_offset, act_min, act_max);
        }
    }
}

int32_t n6_avgpool_s8(const int8_t *inp, int32_t n, int32_t h, int32_t w, int32_t c,
                      int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                      int32_t pad_top, int32_t pad_left, int32_t act_min, int32_t act_max,
                      int8_t *out, int32_t oh, int32_t ow)
{
    for (int64_t b = 0; b < n; ++b) {
        for (int64_t y = 0; y < oh; ++y) {
            for (int64_t x = 0; x < ow; ++x) {
                for (int64_t ch = 0; ch < c; ++ch) {
                    uint32_t sum = 0;
                    int32_t cnt = 0;
                    for (int64_t fy = 0; fy < kernel_h; ++fy) {
                        const int64_t iy = y * stride_h - pad_top + fy;
                        if (iy < 0 || iy >= h)
                            continue;
                        for (int64_t fx = 0; fx < kernel_w; ++fx) {
                            const int64_t ix = x * stride_w - pad_left + fx;
                            if (ix < 0 || ix >= w)
                                continue;
                            sum += (uint32_t)(int32_t)inp[((b * h + iy) * w + ix) * c + ch];
                            ++cnt;
                        }
                    }
                    if (cnt == 0)
                        return -1;
                    /* round half away from zero with C truncating division */
                    const int64_t s = wrap32(sum);
                    const int64_t avg = s > 0 ? (s + cnt / 2) / cnt : (s - cnt / 2) / cnt;
                    out[((b * oh + y) * ow + x) * c + ch] = activate((int32_t)avg, 0, act_min, act_max);
                }
            }
        }
    }
    return 0;
}

void n6_maxpool_s8(const int8_t *inp, int32_t n, int32_t h, int32_t w, int32_t c,
                   int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                   int32_t pad_top, int32_t pad_left, int32_t act_min, int32_t act_max,
                   int8_t *out, int32_t oh, int32_t ow)
{
    for (int64_t b = 0; b < n; ++b) {
        for (int64_t y = 0; y < oh; ++y) {
            for (int64_t x = 0; x < ow; ++x) {
                for (int64_t ch = 0; ch < c; ++ch) {
                    int32_t mx = -128; /* empty window (all padding) gives the int8 minimum, as TFLM */
                    for (int64_t fy = 0; fy < kernel_h; ++fy) {
                        const int64_t iy = y * stride_h - pad_top + fy;
                        if (iy < 0 || iy >= h)
                            continue;
                        for (int64_t fx = 0; fx < kernel_w; ++fx) {
                            const int64_t ix = x * stride_w - pad_left + fx;
                            if (ix < 0 || ix >= w)
                                continue;
                            const int32_t v = inp[((b * h + iy) * w + ix) * c + ch];
                            if (v > mx)
                                mx = v;
                        }
                    }
                    out[((b * oh + y) * ow + x) * c + ch] = activate(mx, 0, act_min, act_max);
                }
            }
        }
    }
}

static int32_t clz32(uint32_t v)
{
    int32_t count = 0;
    if (v == 0)
        return 32;
    while (!(v & 0x80000000u)) {
        v <<= 1;
        ++count;
    }
    return count;
}

void n6_softmax_s8(const int8_t *inp, int32_t rows, int32_t row_size,
                   int32_t mult, int32_t shift, int32_t diff_min, int8_t *out)
{
    const int32_t accum_bits = 12; /* sum of exps in Q12.19 */
    for (int64_t r = 0; r < rows; ++r) {
        const int8_t *src = inp + r * row_size;
        int8_t *dst = out + r * row_size;
        int32_t mx = src[0];
        for (int64_t i = 1; i < row_size; ++i)
            if (src[i] > mx)
                mx = src[i];

        uint32_t sum = 0;
        for (int64_t i = 0; i < row_size; ++i) {
            const int32_t diff = (int32_t)src[i] - mx;
            if (diff >= diff_min) {
                const int32_t scaled = srdhm(wrap32((uint32_t)diff << shift), mult); /* Q5.26 */
                sum += (uint32_t)rdbp(n6_exp_on_negative_values(scaled), accum_bits);
            }
        }
        const int32_t headroom = clz32(sum);
        const int32_t shifted_sum_minus_one = wrap32((uint32_t)(((uint64_t)sum << headroom) & 0xFFFFFFFFu) - 0x80000000u);
        const int32_t shifted_scale = n6_one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one);
        const int32_t bits_over_unit = accum_bits - headroom + 23; /* + 31 - 8 output bits */

        for (int64_t i = 0; i < row_size; ++i) {
            const int32_t diff = (int32_t)src[i] - mx;
            if (diff >= diff_min) {
                const int32_t scaled = srdhm(wrap32((uint32_t)diff << shift), mult);
                const int32_t e = n6_exp_on_negative_values(scaled);
                const int32_t res = rdbp(srdhm(shifted_scale, e), bits_over_unit);
                dst[i] = activate(res, -128, -128, 127);
            } else {
                dst[i] = -128;
            }
        }
    }
}

void n6_add_s8(const int8_t *in1, const int8_t *in2, int32_t size,
               int32_t in1_offset, int32_t in1_mult, int32_t in1_shift,
               int32_t in2_offset, int32_t in2_mult, int32_t in2_shift, int32_t left_shift,
               int32_t out_mult, int32_t out_shift, int32_t out_offset,
               int32_t act_min, int32_t act_max, int8_t *out)
{
    for (int64_t i = 0; i < size; ++i) {
        const int32_t a = wrap32(((uint32_t)in1[i] + (uint32_t)in1_offset) << left_shift);
        const int32_t b = wrap32(((uint32_t)in2[i] + (uint32_t)in2_offset) << left_shift);
        const int32_t a1 = requantize_double(a, in1_mult, in1_shift);
        const int32_t b1 = requantize_double(b, in2_mult, in2_shift);
        const int32_t s = add32(a1, b1);
        out[i] = activate(requantize_double(s, out_mult, out_shift), out_offset, act_min, act_max);
    }
}

void n6_mul_s8(const int8_t *in1, const int8_t *in2, int32_t size,
               int32_t in1_offset, int32_t in2_offset, int32_t out_mult, int32_t out_shift,
               int32_t out_offset, int32_t act_min, int32_t act_max, int32_t rounding, int8_t *out)
{
    for (int64_t i = 0; i < size; ++i) {
        const uint32_t prod = ((uint32_t)in1[i] + (uint32_t)in1_offset) * ((uint32_t)in2[i] + (uint32_t)in2_offset);
        out[i] = activate(requantize(wrap32(prod), out_mult, out_shift, rounding), out_offset, act_min, act_max);
    }
}

void n6_pad_s8(const int8_t *inp, const int32_t *in_dims, const int32_t *pad_before, int32_t pad_value,
               int8_t *out, const int32_t *out_dims)
{
    int64_t j[4];
    for (int64_t i0 = 0; i0 < out_dims[0]; ++i0) {
        j[0] = i0 - pad_before[0];
        for (int64_t i1 = 0; i1 < out_dims[1]; ++i1) {
            j[1] = i1 - pad_before[1];
            for (int64_t i2 = 0; i2 < out_dims[2]; ++i2) {
                j[2] = i2 - pad_before[2];
                int8_t *dst = out + ((i0 * out_dims[1] + i1) * out_dims[2] + i2) * out_dims[3];
                for (int64_t i3 = 0; i3 < out_dims[3]; ++i3) {
                    j[3] = i3 - pad_before[3];
                    int inside = 1;
                    for (int k = 0; k < 4; ++k)
                        if (j[k] < 0 || j[k] >= in_dims[k])
                            inside = 0;
                    dst[i3] = inside ? inp[((j[0] * in_dims[1] + j[1]) * in_dims[2] + j[2]) * in_dims[3] + j[3]]
                                     : (int8_t)pad_value;
                }
            }
        }
    }
}

void n6_transpose_s8(const int8_t *inp, const int32_t *in_dims, const int32_t *perm,
                     int8_t *out, const int32_t *out_dims)
{
    int64_t in_strides[4];
    int64_t step[4]; /* input stride walked by each output axis */
    in_strides[3] = 1;
    for (int k = 2; k >= 0; --k)
        in_strides[k] = in_strides[k + 1] * in_dims[k + 1];
    for (int k = 0; k < 4; ++k)
        step[k] = in_strides[perm[k]];
    int64_t o = 0;
    for (int64_t i0 = 0; i0 < out_dims[0]; ++i0)
        for (int64_t i1 = 0; i1 < out_dims[1]; ++i1)
            for (int64_t i2 = 0; i2 < out_dims[2]; ++i2)
                for (int64_t i3 = 0; i3 < out_dims[3]; ++i3)
                    out[o++] = inp[i0 * step[0] + i1 * step[1] + i2 * step[2] + i3 * step[3]];
}
