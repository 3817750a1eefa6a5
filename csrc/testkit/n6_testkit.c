/* n6emu firmware test kit: the runner (see n6_testkit.h for what it checks, how to build it and the hooks). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "n6_testkit.h"
#include "kernels_s8.h"
#ifdef N6K_USER_HEADER
#include N6K_USER_HEADER   /* declarations of the firmware functions the N6K_* macros below name */
#endif

#ifndef N6K_PRINTF
#define N6K_PRINTF printf
#endif
#ifndef N6K_CONV_S8
#define N6K_CONV_S8 n6_conv_s8
#endif
#ifndef N6K_DEPTHWISE_CONV_S8
#define N6K_DEPTHWISE_CONV_S8 n6_depthwise_conv_s8
#endif
#ifndef N6K_FULLY_CONNECTED_S8
#define N6K_FULLY_CONNECTED_S8 n6_fully_connected_s8
#endif
#ifndef N6K_AVGPOOL_S8
#define N6K_AVGPOOL_S8 n6_avgpool_s8
#endif
#ifndef N6K_MAXPOOL_S8
#define N6K_MAXPOOL_S8 n6_maxpool_s8
#endif
#ifndef N6K_SOFTMAX_S8
#define N6K_SOFTMAX_S8 n6_softmax_s8
#endif
#ifndef N6K_ADD_S8
#define N6K_ADD_S8 n6_add_s8
#endif
#ifndef N6K_MUL_S8
#define N6K_MUL_S8 n6_mul_s8
#endif
#ifndef N6K_PAD_S8
#define N6K_PAD_S8 n6_pad_s8
#endif
#ifndef N6K_TRANSPOSE_S8
#define N6K_TRANSPOSE_S8 n6_transpose_s8
#endif
#ifndef N6K_FRONTEND_PATCH
#define N6K_FRONTEND_PATCH n6k_twin_frontend_patch
#endif

#define POISON 0xA5   /* work buffers are filled with it before each call: a value never written cannot pass */

typedef struct {
    int32_t passed, failed;
} tally;

/* how the elements of a compared array are stored and printed */
enum { EL_INT8, EL_UINT8, EL_F32_BITS };

/* how a mismatch position is printed: the flat index only, NHWC coordinates, or (row, column) named by labels */
typedef struct {
    int32_t rank;                 /* 0: flat index only, 2: rows x cols, 4: NHWC */
    int32_t dims[4];
    const char *row, *col;        /* rank 2: what a row and a column are */
} shape;

static uint32_t element(const void *a, int32_t i, int32_t kind)
{
    uint32_t u = 0;
    if (kind == EL_F32_BITS) {
        memcpy(&u, (const unsigned char *)a + 4 * (size_t)i, 4);
        return u;
    }
    return ((const unsigned char *)a)[i];
}

static void print_value(uint32_t u, int32_t kind)
{
    if (kind == EL_F32_BITS) {
        float f;
        memcpy(&f, &u, sizeof f);
        N6K_PRINTF("0x%08lx (%.9g)", (unsigned long)u, (double)f);
    } else if (kind == EL_INT8) {
        N6K_PRINTF("%d", (int)(int8_t)u);
    } else {
        N6K_PRINTF("%u", (unsigned)u);
    }
}

static void print_position(int32_t i, const shape *s)
{
    if (s->rank == 4) {
        int32_t c = i % s->dims[3], w = (i / s->dims[3]) % s->dims[2];
        int32_t h = (i / (s->dims[3] * s->dims[2])) % s->dims[1], n = i / (s->dims[3] * s->dims[2] * s->dims[1]);
        N6K_PRINTF(" (NHWC %ld,%ld,%ld,%ld)", (long)n, (long)h, (long)w, (long)c);
    } else if (s->rank == 2) {
        N6K_PRINTF(" (%s %ld, %s %ld)", s->row, (long)(i / s->dims[1]), s->col, (long)(i % s->dims[1]));
    }
}

/* Compares `count` elements bit for bit; prints PASS or FAIL with the first mismatch and the count. */
static void compare(tally *t, const char *cas, const char *name, const void *got, const void *want, int32_t count,
                    int32_t kind, const shape *s)
{
    int32_t first = -1, bad = 0;
    for (int32_t i = 0; i < count; i++) {
        if (element(got, i, kind) != element(want, i, kind)) {
            if (first < 0) first = i;
            bad++;
        }
    }
    if (bad == 0) {
        N6K_PRINTF("PASS %s %s\n", cas, name);
        t->passed++;
        return;
    }
    N6K_PRINTF("FAIL %s %s: first mismatch at index %ld", cas, name, (long)first);
    print_position(first, s);
    N6K_PRINTF(" expected ");
    print_value(element(want, first, kind), kind);
    N6K_PRINTF(" got ");
    print_value(element(got, first, kind), kind);
    N6K_PRINTF(", %ld/%ld values differ\n", (long)bad, (long)count);
    t->failed++;
}

static void fail(tally *t, const char *cas, const char *name, const char *why)
{
    N6K_PRINTF("FAIL %s %s: %s\n", cas, name, why);
    t->failed++;
}

static int32_t volume(const int32_t d[4])
{
    return d[0] * d[1] * d[2] * d[3];
}

/* ---- front end ---------------------------------------------------------------------------------------------- */

float n6k_twin_frontend_patch(const n6k_frontend *fe, const int16_t *pcm, const n6k_work *w)
{
    if (fe->helium)
        return st_patch_helium(&fe->cfg, pcm, fe->window, fe->h16, fe->h32, fe->ofast32, fe->mel_start,
                               fe->mel_stop, fe->mel_offset, fe->mel_coefs, w->framed, w->windowed, w->fft,
                               w->power, w->spectrum, w->mel, w->log, w->features, w->scratch, w->tmp);
    return st_patch(&fe->cfg, pcm, fe->window, fe->twiddle, fe->rtwiddle, fe->order, fe->mel_start, fe->mel_stop,
                    fe->mel_offset, fe->mel_coefs, w->framed, w->windowed, w->fft, w->power, w->spectrum, w->mel,
                    w->log, w->features, w->scratch, w->tmp);
}

/* The model's QuantizeLinear of one float log value ([input].boundary "float32"), as emu.graph.prepare's
   quantize_float: the float32 quotient rounded (half even, or half away in double like std::round), plus the
   zero point, clamped to int8 (infinities saturate). */
static int8_t quantize_log(const n6k_frontend *fe, float x)
{
    float q = x / fe->input_scale;
    double r = fe->input_half_even ? (double)rintf(q) : round((double)q);
    r += (double)fe->input_zero_point;
    return (int8_t)(r < -128.0 ? -128 : r > 127.0 ? 127 : (int32_t)r);
}

/* The input buffer the app writes from the front end's output: [input].layout, the model's I/O type. */
static void check_input_buffer(tally *t, const n6k_vectors *v, const n6k_case *c)
{
    const n6k_frontend *fe = v->frontend;
    const n6k_work *w = &v->work;
    int32_t nm = fe->cfg.n_mels, nf = fe->cfg.n_frames, n = nm * nf;
    uint8_t *buf = (uint8_t *)w->input_buffer;
    shape s = {2, {0, 0, 0, 0}, "mel", "frame"};
    if (n > w->input_buffer_cap) {
        fail(t, c->name, "input_buffer", "the work buffer is smaller than the input buffer; regenerate n6_vectors.c");
        return;
    }
    for (int32_t m = 0; m < nm; m++) {
        for (int32_t f = 0; f < nf; f++) {
            int32_t src = m * nf + f, dst = fe->input_frame_major ? f * nm + m : src;
            int8_t q = fe->input_from_log ? quantize_log(fe, w->log[src]) : w->features[src];
            buf[dst] = (uint8_t)((uint8_t)q ^ (fe->input_kind == N6K_INPUT_UINT8 ? 0x80u : 0u));
        }
    }
    s.dims[0] = fe->input_frame_major ? nf : nm;
    s.dims[1] = fe->input_frame_major ? nm : nf;
    if (fe->input_frame_major) {
        s.row = "frame";
        s.col = "mel";
    }
    compare(t, c->name, "input_buffer", buf, c->input_buffer, n,
            fe->input_kind == N6K_INPUT_UINT8 ? EL_UINT8 : EL_INT8, &s);
}

static void run_frontend(tally *t, const n6k_vectors *v, const n6k_case *c)
{
    const n6k_frontend *fe = v->frontend;
    const n6k_work *w = &v->work;
    int32_t nf = fe->cfg.n_frames, n_fft = fe->cfg.n_fft, nb = n_fft / 2 + 1, nm = fe->cfg.n_mels;
    shape frames = {2, {nf, n_fft, 0, 0}, "frame", "value"}, bins = {2, {nf, nb, 0, 0}, "frame", "bin"};
    shape mels = {2, {nm, nf, 0, 0}, "mel", "frame"}, scalar = {0, {0, 0, 0, 0}, NULL, NULL};
    uint32_t silence_bits;
    float silence;
    if (nf * n_fft > w->frames_cap || nf * nb > w->bins_cap || nm * nf > w->mels_cap || n_fft > w->fft_cap) {
        fail(t, c->name, "frontend", "the work buffers are smaller than the front end's stages; regenerate "
                                     "n6_vectors.c");
        return;
    }
    memset(w->framed, POISON, sizeof(float) * (size_t)(nf * n_fft));
    memset(w->windowed, POISON, sizeof(float) * (size_t)(nf * n_fft));
    memset(w->fft, POISON, sizeof(float) * (size_t)(nf * n_fft));
    memset(w->power, POISON, sizeof(float) * (size_t)(nf * nb));
    memset(w->spectrum, POISON, sizeof(float) * (size_t)(nf * nb));
    memset(w->mel, POISON, sizeof(float) * (size_t)(nm * nf));
    memset(w->log, POISON, sizeof(float) * (size_t)(nm * nf));
    memset(w->features, POISON, (size_t)(nm * nf));
    silence = N6K_FRONTEND_PATCH(fe, c->pcm, w);
    memcpy(&silence_bits, &silence, sizeof silence_bits);
    if (c->framed) compare(t, c->name, "frontend/framed", w->framed, c->framed, nf * n_fft, EL_F32_BITS, &frames);
    if (c->windowed)
        compare(t, c->name, "frontend/windowed", w->windowed, c->windowed, nf * n_fft, EL_F32_BITS, &frames);
    if (c->fft) compare(t, c->name, "frontend/fft", w->fft, c->fft, nf * n_fft, EL_F32_BITS, &frames);
    if (c->power) compare(t, c->name, "frontend/power", w->power, c->power, nf * nb, EL_F32_BITS, &bins);
    if (c->spectrum) compare(t, c->name, "frontend/spectrum", w->spectrum, c->spectrum, nf * nb, EL_F32_BITS, &bins);
    if (c->mel) compare(t, c->name, "frontend/mel", w->mel, c->mel, nm * nf, EL_F32_BITS, &mels);
    if (c->log) compare(t, c->name, "frontend/log", w->log, c->log, nm * nf, EL_F32_BITS, &mels);
    if (c->features) compare(t, c->name, "frontend/features", w->features, c->features, nm * nf, EL_INT8, &mels);
    if (c->silence_sum)
        compare(t, c->name, "frontend/silence_sum", &silence_bits, c->silence_sum, 1, EL_F32_BITS, &scalar);
    if (c->input_buffer) check_input_buffer(t, v, c);
}

/* ---- network ------------------------------------------------------------------------------------------------ */

/* numpy broadcasting of a 4-D int8 tensor (dims 1 repeat) to the output dims */
static void broadcast(const int8_t *src, const int32_t in[4], const int32_t out[4], int8_t *dst)
{
    int32_t i = 0;
    for (int32_t a = 0; a < out[0]; a++)
        for (int32_t b = 0; b < out[1]; b++)
            for (int32_t c = 0; c < out[2]; c++)
                for (int32_t d = 0; d < out[3]; d++) {
                    int32_t j = (((in[0] == 1 ? 0 : a) * in[1] + (in[1] == 1 ? 0 : b)) * in[2] +
                                 (in[2] == 1 ? 0 : c)) * in[3] + (in[3] == 1 ? 0 : d);
                    dst[i++] = src[j];
                }
}

/* Runs one layer on the case's expected inputs into out; returns NULL or why it could not run. */
static const char *run_kernel(const n6k_layer *L, const int8_t *const in[2], int8_t *out)
{
    const int32_t *d = L->in_dims[0], *o = L->out_dims, *f = L->filt_dims;
    switch (L->op) {
    case N6K_CONV:
        N6K_CONV_S8(in[0], d[0], d[1], d[2], d[3], L->filt, f[0], f[1], f[2], f[3], L->bias, L->mult, L->shift,
                    L->input_offset, L->output_offset, L->stride_h, L->stride_w, L->pad_top, L->pad_left,
                    L->dilation_h, L->dilation_w, L->act_min, L->act_max, L->rounding, out, o[1], o[2]);
        return NULL;
    case N6K_DEPTHWISE:
        N6K_DEPTHWISE_CONV_S8(in[0], d[0], d[1], d[2], d[3], L->filt, f[1], f[2], L->bias, L->mult, L->shift,
                              L->ch_mult, L->input_offset, L->output_offset, L->stride_h, L->stride_w, L->pad_top,
                              L->pad_left, L->dilation_h, L->dilation_w, L->act_min, L->act_max, L->rounding, out,
                              o[1], o[2]);
        return NULL;
    case N6K_FC:
        if (f[3] <= 0 || volume(d) % f[3]) return "the input size is not a multiple of the weights' depth";
        N6K_FULLY_CONNECTED_S8(in[0], volume(d) / f[3], f[3], L->filt, f[2], L->bias, L->mult, L->shift,
                               L->input_offset, L->filter_offset, L->output_offset, L->act_min, L->act_max,
                               L->rounding, out);
        return NULL;
    case N6K_AVGPOOL:
        if (N6K_AVGPOOL_S8(in[0], d[0], d[1], d[2], d[3], L->kernel_h, L->kernel_w, L->stride_h, L->stride_w,
                           L->pad_top, L->pad_left, L->act_min, L->act_max, out, o[1], o[2]) != 0)
            return "the average pool kernel returned an error (a window entirely in the padding)";
        return NULL;
    case N6K_MAXPOOL:
        N6K_MAXPOOL_S8(in[0], d[0], d[1], d[2], d[3], L->kernel_h, L->kernel_w, L->stride_h, L->stride_w,
                       L->pad_top, L->pad_left, L->act_min, L->act_max, out, o[1], o[2]);
        return NULL;
    case N6K_SOFTMAX:
        if (d[3] <= 0) return "empty softmax rows";
        N6K_SOFTMAX_S8(in[0], volume(d) / d[3], d[3], L->softmax_mult, L->softmax_shift, L->diff_min, out);
        return NULL;
    case N6K_ADD:
        N6K_ADD_S8(in[0], in[1], volume(o), L->in1_offset, L->in1_mult, L->in1_shift, L->in2_offset, L->in2_mult,
                   L->in2_shift, L->left_shift, L->out_mult, L->out_shift, L->out_offset, L->act_min, L->act_max,
                   out);
        return NULL;
    case N6K_MUL:
        N6K_MUL_S8(in[0], in[1], volume(o), L->in1_offset, L->in2_offset, L->out_mult, L->out_shift, L->out_offset,
                   L->act_min, L->act_max, L->rounding, out);
        return NULL;
    case N6K_PAD:
        N6K_PAD_S8(in[0], d, L->pad_before, L->pad_value, out, o);
        return NULL;
    case N6K_TRANSPOSE:
        N6K_TRANSPOSE_S8(in[0], d, L->perm, out, o);
        return NULL;
    case N6K_RESHAPE:
        if (volume(d) != volume(o)) return "a reshape that changes the size";
        memcpy(out, in[0], (size_t)volume(o));
        return NULL;
    default:
        return "unknown op code";
    }
}

static void run_layer(tally *t, const n6k_vectors *v, const n6k_case *c, int32_t k)
{
    const n6k_layer *L = &v->layers[k];
    const n6k_layer_io *io = &c->layers[k];
    const n6k_work *w = &v->work;
    const int8_t *in[2] = {NULL, NULL};
    shape s = {4, {L->out_dims[0], L->out_dims[1], L->out_dims[2], L->out_dims[3]}, NULL, NULL};
    int32_t n_out = volume(L->out_dims);
    const char *why;
    if (L->op == N6K_NONE) {
        N6K_PRINTF("SKIP %s %s: %s\n", c->name, L->name, L->note ? L->note : "not covered");
        return;
    }
    if (io->expected == NULL) {
        fail(t, c->name, L->name, "the case has no expected output tensor; regenerate n6_vectors.c");
        return;
    }
    if (n_out > w->act_cap) {
        fail(t, c->name, L->name, "the output is larger than the work buffer; regenerate n6_vectors.c");
        return;
    }
    for (int32_t i = 0; i < L->n_inputs && i < 2; i++) {
        in[i] = io->input[i] ? io->input[i] : L->const_input[i];
        if (in[i] == NULL) {
            fail(t, c->name, L->name, "an input tensor is missing; regenerate n6_vectors.c");
            return;
        }
        if ((L->op == N6K_ADD || L->op == N6K_MUL) && volume(L->in_dims[i]) != n_out) {
            broadcast(in[i], L->in_dims[i], L->out_dims, w->act[i]);
            in[i] = w->act[i];
        }
    }
    memset(w->act[2], POISON, (size_t)n_out);
    why = run_kernel(L, in, w->act[2]);
    if (why) {
        fail(t, c->name, L->name, why);
        return;
    }
    compare(t, c->name, L->name, w->act[2], io->expected, n_out, EL_INT8, &s);
}

/* ---- driver ------------------------------------------------------------------------------------------------- */

int32_t n6k_run(const n6k_vectors *v)
{
    tally t = {0, 0};
    for (int32_t i = 0; i < v->n_cases; i++) {
        const n6k_case *c = &v->cases[i];
        if (c->pcm && v->frontend)
            run_frontend(&t, v, c);
        else if (c->pcm)
            N6K_PRINTF("SKIP %s frontend: %s\n", c->name, v->frontend_note ? v->frontend_note : "not covered");
        if (c->layers)
            for (int32_t k = 0; k < v->n_layers; k++) run_layer(&t, v, c, k);
    }
    N6K_PRINTF("%ld passed, %ld failed\n", (long)t.passed, (long)t.failed);
    return t.failed;
}

#ifndef N6K_NO_MAIN
int main(void)
{
    return n6k_run(&n6_vectors) == 0 ? 0 : 1;
}
#endif
