/* CMSIS-NN int8 kernels on the Cortex-M55 (QEMU mps3-an547, Helium/MVE build): runs a job of layer calls
   read from job.bin and writes every output to out.bin (tests/m55_nn.py writes and reads both files).

   job.bin, little-endian, every field an int32 word:
     "NNJ1" (4 bytes), n_ops
     n_ops times:
       kind, n_params, params[n_params], n_arrays,
       n_arrays times: src, nbytes, then for src == -1 the nbytes data bytes zero-padded to a multiple of 4
         src == -1  inline data (nbytes == 0: a NULL pointer, e.g. no bias)
         src >=  0  the output of op number src of this job (chaining: the M55 feeds its own result on)
         src <= -2  the inline array number -2 - src (inline arrays numbered from 0 in file order: weights
                    shared by several ops are stored once)
   out.bin: for every op in job order: status (the CMSIS-NN function's arm_cmsis_nn_status; 0 for void
   functions), nbytes, the output bytes zero-padded to a multiple of 4.

   kinds, their params and arrays (offsets: input_offset = -zp_in, output_offset = +zp_out; shift > 0 = left):
     1 CONV       n h w cin cout kh kw cin_per_group oh ow in_off out_off stride_h stride_w pad_top pad_left
                  dil_h dil_w act_min act_max fn                      arrays: input filter(OHWI) bias mult shift
                  fn 0: arm_convolve_wrapper_s8 (picks 1x1 fast / 1x1 / 1xN / generic), 1: arm_convolve_s8
     2 DEPTHWISE  n h w cin cout kh kw oh ow ch_mult in_off out_off stride_h stride_w pad_top pad_left dil_h dil_w
                  act_min act_max fn                              arrays: input filter([1,KH,KW,Cout]) bias mult shift
                  fn 0: arm_depthwise_conv_wrapper_s8, 1: arm_depthwise_conv_s8, 2: arm_depthwise_conv_s8_opt
     3 FC         batches depth cout in_off filter_off out_off act_min act_max per_channel
                                                                      arrays: input filter([Cout,depth]) bias mult shift
                  arm_fully_connected_wrapper_s8 (per_channel 0: arm_fully_connected_s8 with mult[0]/shift[0],
                  1: arm_fully_connected_per_channel_s8), kernel sums from arm_vector_sum_s8 as TFLM prepares them
     4 AVGPOOL    n h w c oh ow kh kw stride_h stride_w pad_top pad_left act_min act_max          arrays: input
     5 MAXPOOL    (same params as AVGPOOL)                                                       arrays: input
     6 SOFTMAX    rows row_size mult shift diff_min fn                                           arrays: input
                  fn 0: arm_softmax_s8 as the library was built, 1: arm_softmax_s8's Helium path (see below)
     7 ADD        size in1_off in1_mult in1_shift in2_off in2_mult in2_shift left_shift out_mult out_shift
                  out_off act_min act_max                                                        arrays: in1 in2
     8 MUL        size in1_off in2_off out_mult out_shift out_off act_min act_max                arrays: in1 in2
     9 PAD        in_n in_h in_w in_c pre_n pre_h pre_w pre_c post_n post_h post_w post_c pad_value arrays: input
    10 TRANSPOSE  rank d0 d1 d2 d3 p0 p1 p2 p3 (dims in memory order, left-aligned, unused = 1)   arrays: input

   arm_softmax_s8 and GCC 12.2: CMSIS-NN compiles arm_softmax_s8 without its Helium path for GCC <= 12.2
   (ARM_GCC_12_2_ICE in Internal/arm_nn_compiler.h: that compiler crashes on it at -O1 and above), so with this
   toolchain fn 0 is the scalar C path. fn 1 compiles the same source file (from ../shared, -I cmsis-nn/Source)
   here with the workaround switched off, at -O0 (where GCC 12.2 does not crash), as arm_softmax_s8_mve: the
   Helium path a newer compiler builds. With a compiler that has no workaround, fn 1 is the library function.

   Scratch buffers come from the functions' *_get_buffer_size (malloc, filled with 0xA5 so a kernel that read them
   before writing would show). Any malformed job prints "m55: error ..." and exits 1; success prints "m55: ok". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arm_nnfunctions.h"
#include "arm_nnsupportfunctions.h"

#if defined(ARM_MATH_MVEI) && defined(ARM_GCC_12_2_ICE)
    #undef ARM_GCC_12_2_ICE
    #pragma GCC push_options
    #pragma GCC optimize("O0")
    #define arm_softmax_s8 arm_softmax_s8_mve
    #include "SoftmaxFunctions/arm_softmax_s8.c"
    #undef arm_softmax_s8
    #pragma GCC pop_options
    #define ARM_GCC_12_2_ICE
void arm_softmax_s8_mve(const int8_t *, int32_t, int32_t, int32_t, int32_t, int32_t, int8_t *);
    #define SOFTMAX_MVE arm_softmax_s8_mve
#else
    #define SOFTMAX_MVE arm_softmax_s8
#endif

enum { K_CONV = 1, K_DEPTHWISE, K_FC, K_AVGPOOL, K_MAXPOOL, K_SOFTMAX, K_ADD, K_MUL, K_PAD, K_TRANSPOSE };
#define MAX_PARAMS 32
#define MAX_ARRAYS 8

static void fail(const char *what, long op)
{
    printf("m55: error: %s (op %ld)\n", what, op);
    exit(1);
}

static uint8_t *read_file(const char *name, size_t *size)
{
    FILE *f = fopen(name, "rb");
    if (!f) fail("cannot open job.bin", -1);
    size_t cap = 1 << 20, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        if (!buf) fail("out of memory reading the job", -1);
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0) break;
        n += got;
    }
    fclose(f);
    *size = n;
    return buf;
}

/* cursor over the job file */
static const uint8_t *cur, *end;

static int32_t word(long op)
{
    if (end - cur < 4) fail("job truncated", op);
    int32_t v;
    memcpy(&v, cur, 4);
    cur += 4;
    return v;
}

static void *scratch(int32_t size)
{
    if (size <= 0) return NULL;
    void *p = malloc((size_t)size);
    if (!p) fail("out of memory for a scratch buffer", -1);
    memset(p, 0xA5, (size_t)size);
    return p;
}

int main(void)
{
    size_t size;
    uint8_t *job = read_file("job.bin", &size);
    cur = job;
    end = job + size;
    if (size < 8 || memcmp(job, "NNJ1", 4) != 0) fail("job.bin is not an NNJ1 job", -1);
    cur += 4;
    const long n_ops = word(-1);
    if (n_ops < 0) fail("negative op count", -1);

    int8_t **outputs = calloc((size_t)n_ops + 1, sizeof(int8_t *));
    int32_t *out_sizes = calloc((size_t)n_ops + 1, sizeof(int32_t));
    size_t n_inline = 0, cap_inline = 64;
    const void **inline_ptr = malloc(cap_inline * sizeof(void *));
    int32_t *inline_len = malloc(cap_inline * sizeof(int32_t));
    FILE *out = fopen("out.bin", "wb");
    if (!outputs || !out_sizes || !inline_ptr || !inline_len || !out) fail("cannot set up outputs", -1);

    for (long op = 0; op < n_ops; op++) {
        const int32_t kind = word(op);
        const int32_t n_params = word(op);
        if (n_params < 0 || n_params > MAX_PARAMS) fail("bad parameter count", op);
        int32_t p[MAX_PARAMS] = {0};
        for (int i = 0; i < n_params; i++) p[i] = word(op);
        const int32_t n_arrays = word(op);
        if (n_arrays < 0 || n_arrays > MAX_ARRAYS) fail("bad array count", op);
        const void *a[MAX_ARRAYS] = {0};
        for (int i = 0; i < n_arrays; i++) {
            const int32_t src = word(op);
            const int32_t nbytes = word(op);
            if (nbytes < 0) fail("negative array size", op);
            if (src == -1) {
                const size_t padded = ((size_t)nbytes + 3u) & ~(size_t)3u;
                if ((size_t)(end - cur) < padded) fail("array data truncated", op);
                a[i] = nbytes ? cur : NULL;
                cur += padded;
                if (n_inline == cap_inline) {
                    cap_inline *= 2;
                    inline_ptr = realloc(inline_ptr, cap_inline * sizeof(void *));
                    inline_len = realloc(inline_len, cap_inline * sizeof(int32_t));
                    if (!inline_ptr || !inline_len) fail("out of memory", op);
                }
                inline_ptr[n_inline] = a[i];
                inline_len[n_inline++] = nbytes;
            } else if (src >= 0) {
                if (src >= op || out_sizes[src] != nbytes) fail("bad reference to an earlier output", op);
                a[i] = outputs[src];
            } else {
                const size_t k = (size_t)(-2 - src);
                if (k >= n_inline || inline_len[k] != nbytes) fail("bad reference to an earlier array", op);
                a[i] = inline_ptr[k];
            }
        }

        int32_t out_size = 0;
        int32_t status = 0;
        int8_t *dst = NULL;
        cmsis_nn_context ctx = {NULL, 0};
#define NEED(np, na)                                                                                                   \
    do {                                                                                                               \
        if (n_params != (np) || n_arrays != (na)) fail("wrong parameter/array count for the op kind", op);            \
    } while (0)
#define OUTPUT(count)                                                                                                  \
    do {                                                                                                               \
        out_size = (count);                                                                                            \
        dst = malloc((size_t)out_size + 16);                                                                           \
        if (!dst) fail("out of memory for an output", op);                                                             \
        memset(dst, 0x5A, (size_t)out_size + 16);                                                                      \
    } while (0)

        switch (kind) {
        case K_CONV: {
            NEED(21, 5);
            const cmsis_nn_dims in_d = {p[0], p[1], p[2], p[3]};
            const cmsis_nn_dims f_d = {p[4], p[5], p[6], p[7]};
            const cmsis_nn_dims b_d = {1, 1, 1, p[4]};
            const cmsis_nn_dims o_d = {p[0], p[8], p[9], p[4]};
            const cmsis_nn_conv_params cp = {p[10], p[11], {p[13], p[12]}, {p[15], p[14]}, {p[17], p[16]},
                                             {p[18], p[19]}};
            const cmsis_nn_per_channel_quant_params qp = {(int32_t *)a[3], (int32_t *)a[4]};
            OUTPUT(p[0] * p[8] * p[9] * p[4]);
            if (p[20] == 0) {
                ctx.size = arm_convolve_wrapper_s8_get_buffer_size(&cp, &in_d, &f_d, &o_d);
                ctx.buf = scratch(ctx.size);
                status = arm_convolve_wrapper_s8(&ctx, &cp, &qp, &in_d, a[0], &f_d, a[1], &b_d, a[2], &o_d, dst);
            } else if (p[20] == 1) {
                ctx.size = arm_convolve_s8_get_buffer_size(&in_d, &f_d);
                ctx.buf = scratch(ctx.size);
                status = arm_convolve_s8(&ctx, &cp, &qp, &in_d, a[0], &f_d, a[1], &b_d, a[2], NULL, &o_d, dst);
            } else {
                fail("unknown conv function", op);
            }
            break;
        }
        case K_DEPTHWISE: {
            NEED(21, 5);
            const cmsis_nn_dims in_d = {p[0], p[1], p[2], p[3]};
            const cmsis_nn_dims f_d = {1, p[5], p[6], p[4]};
            const cmsis_nn_dims b_d = {1, 1, 1, p[4]};
            const cmsis_nn_dims o_d = {p[0], p[7], p[8], p[4]};
            const cmsis_nn_dw_conv_params dp = {p[10], p[11], p[9], {p[13], p[12]}, {p[15], p[14]}, {p[17], p[16]},
                                                {p[18], p[19]}};
            const cmsis_nn_per_channel_quant_params qp = {(int32_t *)a[3], (int32_t *)a[4]};
            OUTPUT(p[0] * p[7] * p[8] * p[4]);
            if (p[20] == 0) {
                ctx.size = arm_depthwise_conv_wrapper_s8_get_buffer_size(&dp, &in_d, &f_d, &o_d);
                ctx.buf = scratch(ctx.size);
                status = arm_depthwise_conv_wrapper_s8(&ctx, &dp, &qp, &in_d, a[0], &f_d, a[1], &b_d, a[2], &o_d, dst);
            } else if (p[20] == 1) {
                status = arm_depthwise_conv_s8(&ctx, &dp, &qp, &in_d, a[0], &f_d, a[1], &b_d, a[2], &o_d, dst);
            } else if (p[20] == 2) {
                ctx.size = arm_depthwise_conv_s8_opt_get_buffer_size(&in_d, &f_d);
                ctx.buf = scratch(ctx.size);
                status = arm_depthwise_conv_s8_opt(&ctx, &dp, &qp, &in_d, a[0], &f_d, a[1], &b_d, a[2], &o_d, dst);
            } else {
                fail("unknown depthwise function", op);
            }
            break;
        }
        case K_FC: {
            NEED(9, 5);
            const cmsis_nn_dims in_d = {p[0], 1, 1, p[1]};
            const cmsis_nn_dims f_d = {p[1], 1, 1, p[2]};
            const cmsis_nn_dims b_d = {1, 1, 1, p[2]};
            const cmsis_nn_dims o_d = {p[0], 1, 1, p[2]};
            const cmsis_nn_fc_params fp = {p[3], p[4], p[5], {p[6], p[7]}};
            const cmsis_nn_quant_params qp = {(int32_t *)a[3], (int32_t *)a[4], p[8]};
            OUTPUT(p[0] * p[2]);
            ctx.size = arm_fully_connected_s8_get_buffer_size(&f_d);
            ctx.buf = scratch(ctx.size);
            if (ctx.buf) /* TFLM's prepare: bias + input_offset * (row sums + depth * filter_offset) */
                status = arm_vector_sum_s8(ctx.buf, p[1], p[2], a[1], p[3], p[4], a[2]);
            if (status == 0)
                status = arm_fully_connected_wrapper_s8(&ctx, &fp, &qp, &in_d, a[0], &f_d, a[1], &b_d, a[2], &o_d, dst);
            break;
        }
        case K_AVGPOOL:
        case K_MAXPOOL: {
            NEED(14, 1);
            const cmsis_nn_dims in_d = {p[0], p[1], p[2], p[3]};
            const cmsis_nn_dims f_d = {1, p[6], p[7], 1};
            const cmsis_nn_dims o_d = {p[0], p[4], p[5], p[3]};
            const cmsis_nn_pool_params pp = {{p[9], p[8]}, {p[11], p[10]}, {p[12], p[13]}};
            OUTPUT(p[0] * p[4] * p[5] * p[3]);
            if (kind == K_AVGPOOL) {
                ctx.size = arm_avgpool_s8_get_buffer_size(p[5], p[3]);
                ctx.buf = scratch(ctx.size);
                status = arm_avgpool_s8(&ctx, &pp, &in_d, a[0], &f_d, &o_d, dst);
            } else {
                status = arm_max_pool_s8(&ctx, &pp, &in_d, a[0], &f_d, &o_d, dst);
            }
            break;
        }
        case K_SOFTMAX:
            NEED(6, 1);
            OUTPUT(p[0] * p[1]);
            if (p[5] == 0)
                arm_softmax_s8(a[0], p[0], p[1], p[2], p[3], p[4], dst);
            else if (p[5] == 1)
                SOFTMAX_MVE(a[0], p[0], p[1], p[2], p[3], p[4], dst);
            else
                fail("unknown softmax function", op);
            break;
        case K_ADD:
            NEED(13, 2);
            OUTPUT(p[0]);
            status = arm_elementwise_add_s8(a[0], a[1], p[1], p[2], p[3], p[4], p[5], p[6], p[7], dst, p[10], p[8],
                                            p[9], p[11], p[12], p[0]);
            break;
        case K_MUL:
            NEED(8, 2);
            OUTPUT(p[0]);
            status = arm_elementwise_mul_s8(a[0], a[1], p[1], p[2], dst, p[5], p[3], p[4], p[6], p[7], p[0]);
            break;
        case K_PAD: {
            NEED(13, 1);
            const cmsis_nn_dims in_d = {p[0], p[1], p[2], p[3]};
            const cmsis_nn_dims pre = {p[4], p[5], p[6], p[7]};
            const cmsis_nn_dims post = {p[8], p[9], p[10], p[11]};
            OUTPUT((p[0] + p[4] + p[8]) * (p[1] + p[5] + p[9]) * (p[2] + p[6] + p[10]) * (p[3] + p[7] + p[11]));
            status = arm_pad_s8(a[0], dst, (int8_t)p[12], &in_d, &pre, &post);
            break;
        }
        case K_TRANSPOSE: {
            NEED(9, 1);
            const int32_t rank = p[0];
            if (rank < 1 || rank > 4) fail("transpose rank must be 1..4", op);
            uint32_t perm[4] = {0, 1, 2, 3};
            int32_t od[4] = {1, 1, 1, 1};
            int32_t count = 1;
            for (int k = 0; k < rank; k++) {
                if (p[5 + k] < 0 || p[5 + k] >= rank) fail("bad permutation", op);
                perm[k] = (uint32_t)p[5 + k];
                od[k] = p[1 + p[5 + k]];
                count *= p[1 + k];
            }
            const cmsis_nn_dims in_d = {p[1], p[2], p[3], p[4]};
            const cmsis_nn_dims o_d = {od[0], od[1], od[2], od[3]};
            const cmsis_nn_transpose_params tp = {rank, perm};
            OUTPUT(count);
            status = arm_transpose_s8(a[0], dst, &in_d, &o_d, &tp);
            break;
        }
        default:
            fail("unknown op kind", op);
        }
        free(ctx.buf);
        outputs[op] = dst;
        out_sizes[op] = out_size;
        const int32_t head[2] = {status, out_size};
        static const uint8_t zeros[4] = {0};
        if (fwrite(head, 4, 2, out) != 2 || fwrite(dst, 1, (size_t)out_size, out) != (size_t)out_size ||
            fwrite(zeros, 1, (size_t)((4 - (out_size & 3)) & 3), out) != (size_t)((4 - (out_size & 3)) & 3))
            fail("cannot write out.bin", op);
    }
    if (cur != end) fail("trailing bytes after the last op", n_ops);
    fclose(out);
    printf("m55: ok\n");
    return 0;
}
