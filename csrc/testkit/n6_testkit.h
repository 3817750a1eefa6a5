/* n6emu firmware test kit: replays the golden vectors of `n6emu vectors` through the C twins (csrc/) or your own
 * firmware functions and compares every stage bit for bit.
 *
 * What it runs, for every case (a clip window) of the vectors folder:
 *   front end   the front end on the case's frontend_pcm with the tables of frontend.h, then every front-end stage
 *               (framed, windowed, fft, power, spectrum, mel, log: float32 bit patterns; features; silence_sum)
 *               and the network input buffer the app writes from them ([input].layout, model I/O type)
 *   network     every layer on the case's expected input tensor(s) with model.h's parameters, output compared
 *               with the case's expected output tensor (layers are independent: one wrong layer fails alone)
 * Not replayed: output / float_output / probabilities (the model's I/O-type copy of the last layer's output and the
 * app's float dequantize + softmax tail, which have no C twin).
 * One line per vector on stdout:
 *   PASS <case> <stage or layer>
 *   FAIL <case> <name>: first mismatch at index i (position) expected X got Y, N/M values differ
 *   SKIP <case> <name>: <why it is not covered>     (e.g. a layer of the onnxruntime profile: no C twin)
 * then "<N> passed, <M> failed"; main() returns 0 when nothing failed, else 1.
 *
 * Build (host; VECTORS is the folder written by `n6emu vectors`, which holds n6_vectors.c and the headers):
 *   gcc -std=c99 -O2 -Wall -Wextra -Werror -fno-fast-math -ffp-contract=off -I csrc/testkit -I csrc -I VECTORS \
 *       csrc/testkit/n6_testkit.c VECTORS/n6_vectors.c csrc/kernels_s8.c csrc/frontend_st.c \
 *       csrc/helium_f16.c csrc/helium_f32.c -lm -o n6_testkit && ./n6_testkit
 * -ffp-contract=off matters: the front end's C twin must not have a*b+c fused where the device does not fuse.
 * emu/testkit.py builds and runs this on the host or on QEMU's Cortex-M55 (build_and_run).
 *
 * Your own firmware functions: define any of these macros (same arguments as the C twin it replaces, see
 * csrc/kernels_s8.h) when compiling n6_testkit.c, with N6K_USER_HEADER naming the header that declares them,
 * e.g. -DN6K_CONV_S8=my_conv_s8 '-DN6K_USER_HEADER="my_kernels.h"':
 *   N6K_CONV_S8 N6K_DEPTHWISE_CONV_S8 N6K_FULLY_CONNECTED_S8 N6K_AVGPOOL_S8 N6K_MAXPOOL_S8 N6K_SOFTMAX_S8
 *   N6K_ADD_S8 N6K_MUL_S8 N6K_PAD_S8 N6K_TRANSPOSE_S8
 *   N6K_FRONTEND_PATCH   float f(const n6k_frontend *fe, const int16_t *pcm, const n6k_work *w): one patch into
 *                        w's front-end buffers (layouts of csrc/frontend_st.h), returns the silence sum
 *   N6K_PRINTF           printf-like output (default printf)
 *   N6K_NO_MAIN          leave main() out and call n6k_run(&n6_vectors) yourself
 * Nothing is allocated: the work buffers are static arrays of the generated n6_vectors.c, sized from the SIZE
 * defines of the vectors; the kit checks every size against their capacities before a call.
 */
#ifndef N6_TESTKIT_H
#define N6_TESTKIT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {    /* the C twins' headers have no C++ guards of their own */
#endif

#include "frontend_st.h"
#include "helium_f32.h"

/* layer op codes (n6k_layer.op): the C twin kernel each runs */
enum {
    N6K_NONE = 0,       /* not covered: n6k_layer.note says why */
    N6K_CONV,           /* n6_conv_s8 */
    N6K_DEPTHWISE,      /* n6_depthwise_conv_s8 (also the rescaling mean of a global average pool) */
    N6K_FC,             /* n6_fully_connected_s8 */
    N6K_AVGPOOL,        /* n6_avgpool_s8 */
    N6K_MAXPOOL,        /* n6_maxpool_s8 */
    N6K_SOFTMAX,        /* n6_softmax_s8 over the last axis */
    N6K_ADD,            /* n6_add_s8 (inputs broadcast to the output shape first) */
    N6K_MUL,            /* n6_mul_s8 (likewise) */
    N6K_PAD,            /* n6_pad_s8 */
    N6K_TRANSPOSE,      /* n6_transpose_s8 */
    N6K_RESHAPE         /* a copy */
};

/* the network input buffer's element type (n6k_frontend.input_kind): the model's I/O type */
enum { N6K_INPUT_INT8 = 0, N6K_INPUT_UINT8 = 1 };

/* One layer: op, shapes and model.h's parameters, shared by every case. */
typedef struct {
    const char *name;             /* the model.h prefix, e.g. "l01_conv2d" */
    int32_t op;                   /* N6K_* */
    const char *note;             /* N6K_NONE: why the layer is not covered */
    int32_t n_inputs;             /* activation inputs: 1, or 2 for add/mul */
    int32_t in_dims[2][4];        /* each input, 4-D with leading 1s (NHWC for conv, depthwise and pools) */
    int32_t out_dims[4];
    const int8_t *const_input[2]; /* add/mul: a constant operand (else NULL: the case's tensor) */
    const int8_t *filt;           /* conv OHWI, depthwise [1,KH,KW,C*M], fully connected [1,1,Out,K] */
    int32_t filt_dims[4];
    const int32_t *bias, *mult, *shift;
    int32_t input_offset, filter_offset, output_offset;
    int32_t stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, ch_mult;
    int32_t kernel_h, kernel_w, act_min, act_max, rounding;
    int32_t softmax_mult, softmax_shift, diff_min;
    int32_t in1_offset, in1_mult, in1_shift, in2_offset, in2_mult, in2_shift, left_shift;
    int32_t out_mult, out_shift, out_offset;
    int32_t pad_value, pad_before[4], perm[4];
} n6k_layer;

/* One layer's tensors in one case. */
typedef struct {
    const int8_t *input[2];       /* the case's input tensor(s) (NULL: n6k_layer.const_input) */
    const int8_t *expected;       /* the case's output tensor (NULL: not in the vectors) */
} n6k_layer_io;

/* One case: pointers into <case>.h (NULL: the stage is not in the vectors). Floats as IEEE-754 bit patterns. */
typedef struct {
    const char *name;
    const int16_t *pcm;
    const uint32_t *framed, *windowed, *fft, *power, *spectrum, *mel, *log;
    const int8_t *features;
    const uint32_t *silence_sum;
    const void *input_buffer;
    const n6k_layer_io *layers;   /* [n_layers], NULL without network vectors */
} n6k_case;

/* The front end as the C twin consumes it (frontend.h): config, tables and how the app writes the input buffer. */
typedef struct {
    int32_t helium;               /* 1: st_patch_helium (isa "helium"), 0: st_patch (isa "scalar") */
    st_config cfg;
    const float *window;
    const float *twiddle, *rtwiddle;          /* isa "scalar" */
    const int32_t *order;
    const st_helium_f16 *h16;                 /* isa "helium": st-f16 tables, or */
    const helium_f32_fft *h32;                /* st-f32 tables */
    int32_t ofast32;
    const int32_t *mel_start, *mel_stop, *mel_offset;
    const float *mel_coefs;
    int32_t input_frame_major;    /* 1: the input buffer is [n_frames][n_mels] ([input].layout "frame-major") */
    int32_t input_kind;           /* N6K_INPUT_INT8, or N6K_INPUT_UINT8 (board byte = int8 value + 128) */
    int32_t input_from_log;       /* 0: the app's int8 features; 1 ([input].boundary "float32"): the model's own
                                     QuantizeLinear of the log stage, clamp(round(log / input_scale) + zero point) */
    float input_scale;
    int32_t input_zero_point;
    int32_t input_half_even;      /* that round: 1 half even (MLAS rint), 0 half away (std::round) */
} n6k_frontend;

/* Work buffers (static arrays of n6_vectors.c) and their capacities in elements. */
typedef struct {
    float *framed, *windowed, *fft;           /* [n_frames * n_fft] */
    float *power, *spectrum;                  /* [n_frames * n_bins] */
    float *mel, *log;                         /* [n_mels * n_frames] */
    int8_t *features;
    float *scratch, *tmp;                     /* [n_fft] */
    int32_t frames_cap, bins_cap, mels_cap, fft_cap;
    void *input_buffer;                       /* input_buffer_cap elements of the input type */
    int32_t input_buffer_cap;
    int8_t *act[3];                           /* two broadcast inputs and the layer output */
    int32_t act_cap;
} n6k_work;

typedef struct {
    int32_t n_cases;
    const n6k_case *cases;
    int32_t n_layers;
    const n6k_layer *layers;
    const n6k_frontend *frontend; /* NULL: the front end is not covered (frontend_note says why) */
    const char *frontend_note;
    n6k_work work;
} n6k_vectors;

/* the generated index (n6_vectors.c) */
extern const n6k_vectors n6_vectors;

/* Runs every vector, prints one line each and the totals; returns the number of failures. */
int32_t n6k_run(const n6k_vectors *v);

/* The C twin front end on one patch (the default N6K_FRONTEND_PATCH). */
float n6k_twin_frontend_patch(const n6k_frontend *fe, const int16_t *pcm, const n6k_work *w);

#ifdef __cplusplus
}
#endif

#endif /* N6_TESTKIT_H */
