/* C twins of the n6emu int8 network kernels (CMSIS-NN / TFLite Micro reference semantics).
 *
 * Contract (same as emu/kernels/__init__.py): NHWC int8 activations, C-contiguous; conv weights OHWI
 * [Cout,KH,KW,Cin_g], depthwise [1,KH,KW,Cin*ch_mult], fully connected [Out,K]; bias/mult/shift int32
 * per output channel; input_offset = -zp_in, output_offset = +zp_out; shift > 0 means left.
 * rounding: 0 = double (SRDHM then RDBP, default), 1 = single ((acc*M + 2^(30-s)) >> (31-s)).
 * Accumulators are int32 and wrap modulo 2^32 (computed in uint32, no C undefined behaviour).
 * Kernels never allocate; the caller validates shapes (emu/kernels/ctwin.py) and owns `out`.
 */
#ifndef N6_KERNELS_S8_H
#define N6_KERNELS_S8_H

#include <stdint.h>

/* ---- fixed-point primitives (gemmlowp semantics, int64 intermediates) ---- */
int32_t n6_srdhm(int32_t a, int32_t b);                 /* (a*b + 2^30) >> 31, ties to +inf; MIN*MIN -> MAX */
int32_t n6_rdbp(int32_t x, int32_t exponent);           /* x / 2^exponent (0..62), ties away from zero */
int32_t n6_requantize_double(int32_t acc, int32_t mult, int32_t shift);  /* shift in [-62, 62] */
int32_t n6_requantize_single(int32_t acc, int32_t mult, int32_t shift);  /* shift in [-32, 30] */
int32_t n6_requantize(int32_t acc, int32_t mult, int32_t shift, int32_t rounding);
int32_t n6_exp_on_negative_values(int32_t a);           /* Q5.26 (a <= 0) -> Q0.31 */
int32_t n6_one_over_one_plus_x_for_x_in_0_1(int32_t a); /* Q0.31 x in [0,1) -> Q0.31 1/(1+x) (Newton in Q2.29) */

/* ---- network kernels ---- */
void n6_conv_s8(const int8_t *inp, int32_t n, int32_t h, int32_t w, int32_t cin,
                const int8_t *filt, int32_t cout, int32_t kh, int32_t kw, int32_t cin_g,
                const int32_t *bias, const int32_t *mult, const int32_t *shift,
                int32_t input_offset, int32_t output_offset, int32_t stride_h, int32_t stride_w,
                int32_t pad_top, int32_t pad_left, int32_t dilation_h, int32_t dilation_w,
                int32_t act_min, int32_t act_max, int32_t rounding,
                int8_t *out, int32_t oh, int32_t ow);

void n6_depthwise_conv_s8(const int8_t *inp, int32_t n, int32_t h, int32_t w, int32_t cin,
                          const int8_t *filt, int32_t kh, int32_t kw,
                          const int32_t *bias, const int32_t *mult, const int32_t *shift,
                          int32_t ch_mult, int32_t input_offset, int32_t output_offset,
                          int32_t stride_h, int32_t stride_w, int32_t pad_top, int32_t pad_left,
                          int32_t dilation_h, int32_t dilation_w,
                          int32_t act_min, int32_t act_max, int32_t rounding,
                          int8_t *out, int32_t oh, int32_t ow);

void n6_fully_connected_s8(const int8_t *inp, int32_t n, int32_t k,
                           const int8_t *filt, int32_t out_ch,
                           const int32_t *bias, const int32_t *mult, const int32_t *shift,
                           int32_t input_offset, int32_t filter_offset, int32_t output_offset,
                           int32_t act_min, int32_t act_max, int32_t rounding, int8_t *out);

/* Returns 0, or -1 when a window has no valid tap (division by zero avoided; out left partial). */
int32_t n6_avgpool_s8(const int8_t *inp, int32_t n, int32_t h, int32_t w, int32_t c,
                      int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                      int32_t pad_top, int32_t pad_left, int32_t act_min, int32_t act_max,
                      int8_t *out, int32_t oh, int32_t ow);

void n6_maxpool_s8(const int8_t *inp, int32_t n, int32_t h, int32_t w, int32_t c,
                   int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                   int32_t pad_top, int32_t pad_left, int32_t act_min, int32_t act_max,
                   int8_t *out, int32_t oh, int32_t ow);

void n6_softmax_s8(const int8_t *inp, int32_t rows, int32_t row_size,
                   int32_t mult, int32_t shift, int32_t diff_min, int8_t *out);

void n6_add_s8(const int8_t *in1, const int8_t *in2, int32_t size,
               int32_t in1_offset, int32_t in1_mult, int32_t in1_shift,
               int32_t in2_offset, int32_t in2_mult, int32_t in2_shift, int32_t left_shift,
               int32_t out_mult, int32_t out_shift, int32_t out_offset,
               int32_t act_min, int32_t act_max, int8_t *out);

void n6_mul_s8(const int8_t *in1, const int8_t *in2, int32_t size,
               int32_t in1_offset, int32_t in2_offset, int32_t out_mult, int32_t out_shift,
               int32_t out_offset, int32_t act_min, int32_t act_max, int32_t rounding, int8_t *out);

/* in_dims/out_dims: 4 dims each; pad_before: 4 non-negative int32 (pad_after = out - in - before). */
void n6_pad_s8(const int8_t *inp, const int32_t *in_dims, const int32_t *pad_before, int32_t pad_value,
               int8_t *out, const int32_t *out_dims);

/* out_dims[k] == in_dims[perm[k]]; out[i0,i1,i2,i3] = inp[j] with j[perm[k]] = i[k]. */
void n6_transpose_s8(const int8_t *inp, const int32_t *in_dims, const int32_t *perm,
                     int8_t *out, const int32_t *out_dims);

#endif /* N6_KERNELS_S8_H */
