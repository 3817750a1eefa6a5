/* CMSIS-DSP primitives on the Cortex-M55 (QEMU oracle): each record of job.bin runs one CMSIS-DSP function
   `count` times and appends the results to out.bin. Compiled with the application's flags, CMSIS-DSP takes
   its Helium (MVE) paths (__ARM_FEATURE_MVE=3, native FP16).

   job.bin: records of int32 little-endian header {op, n, count} followed by `count` input sets.
     op  function                          n                  one input set          one output
      1  arm_rfft_fast_f16 (forward)       n_fft              f16[n]                 f16[n] packed
      2  arm_rfft_fast_f32 (forward)       n_fft              f32[n]                 f32[n] packed
      3  arm_cmplx_mag_squared_f16         complex count      f16[2n]                f16[n]
      4  arm_cmplx_mag_f16                 complex count      f16[2n]                f16[n]
      5  arm_dot_prod_f16                  length             f16[n], f16[n]         f16[1]
      6  arm_mult_f16                      length             f16[n], f16[n]         f16[n]
      7  arm_q15_to_f16                    length             int16[n]               f16[n]
      8  arm_cmplx_mag_squared_f32         complex count      f32[2n]                f32[n]
      9  arm_cmplx_mag_f32                 complex count      f32[2n]                f32[n]
     10  arm_dot_prod_f32                  length             f32[n], f32[n]         f32[1]
     11  arm_mult_f32                      length             f32[n], f32[n]         f32[n]
     12  arm_q15_to_float                  length             int16[n]               f32[n]
     13  arm_cfft_f16 forward, bit reversal complex count    f16[2n]                f16[2n]
     14  arm_cfft_f32 forward, bit reversal complex count    f32[2n]                f32[2n]
   Input sets are read into 16-byte aligned heap buffers. Prints "m55: ok" at the end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>

#include "arm_math.h"
#include "arm_math_f16.h"

static FILE *in_file, *out_file;

static void fail(const char *what)
{
    printf("m55: error: %s\n", what);
    exit(1);
}

static void *read_block(size_t bytes)
{
    void *p = memalign(16, bytes + 16);
    if (p == NULL) fail("out of memory");
    if (fread(p, 1, bytes, in_file) != bytes) fail("job.bin is truncated");
    return p;
}

static void *scratch(size_t bytes)
{
    void *p = memalign(16, bytes + 16);
    if (p == NULL) fail("out of memory");
    return p;
}

static void write_block(const void *p, size_t bytes)
{
    if (fwrite(p, 1, bytes, out_file) != bytes) fail("cannot write out.bin");
}

static void run_one(int32_t op, uint32_t n)
{
    switch (op) {
    case 1: {
        arm_rfft_fast_instance_f16 s;
        if (arm_rfft_fast_init_f16(&s, (uint16_t)n) != ARM_MATH_SUCCESS) fail("arm_rfft_fast_init_f16");
        float16_t *x = read_block(n * 2), *y = scratch(n * 2);
        arm_rfft_fast_f16(&s, x, y, 0);
        write_block(y, n * 2); free(x); free(y); break;
    }
    case 2: {
        arm_rfft_fast_instance_f32 s;
        if (arm_rfft_fast_init_f32(&s, (uint16_t)n) != ARM_MATH_SUCCESS) fail("arm_rfft_fast_init_f32");
        float32_t *x = read_block(n * 4), *y = scratch(n * 4);
        arm_rfft_fast_f32(&s, x, y, 0);
        write_block(y, n * 4); free(x); free(y); break;
    }
    case 3: case 4: {
        float16_t *x = read_block(n * 4), *y = scratch(n * 2);
        if (op == 3) arm_cmplx_mag_squared_f16(x, y, n); else arm_cmplx_mag_f16(x, y, n);
        write_block(y, n * 2); free(x); free(y); break;
    }
    case 5: case 6: {
        float16_t *a = read_block(n * 2), *b = read_block(n * 2), *y = scratch(n * 2 + 2);
        if (op == 5) { arm_dot_prod_f16(a, b, n, y); write_block(y, 2); }
        else { arm_mult_f16(a, b, y, n); write_block(y, n * 2); }
        free(a); free(b); free(y); break;
    }
    case 7: {
        q15_t *x = read_block(n * 2); float16_t *y = scratch(n * 2);
        arm_q15_to_f16(x, y, n);
        write_block(y, n * 2); free(x); free(y); break;
    }
    case 8: case 9: {
        float32_t *x = read_block(n * 8), *y = scratch(n * 4);
        if (op == 8) arm_cmplx_mag_squared_f32(x, y, n); else arm_cmplx_mag_f32(x, y, n);
        write_block(y, n * 4); free(x); free(y); break;
    }
    case 10: case 11: {
        float32_t *a = read_block(n * 4), *b = read_block(n * 4), *y = scratch(n * 4 + 4);
        if (op == 10) { arm_dot_prod_f32(a, b, n, y); write_block(y, 4); }
        else { arm_mult_f32(a, b, y, n); write_block(y, n * 4); }
        free(a); free(b); free(y); break;
    }
    case 12: {
        q15_t *x = read_block(n * 2); float32_t *y = scratch(n * 4);
        arm_q15_to_float(x, y, n);
        write_block(y, n * 4); free(x); free(y); break;
    }
    case 13: {
        arm_cfft_instance_f16 s;
        if (arm_cfft_init_f16(&s, (uint16_t)n) != ARM_MATH_SUCCESS) fail("arm_cfft_init_f16");
        float16_t *x = read_block(n * 4);
        arm_cfft_f16(&s, x, 0, 1);
        write_block(x, n * 4); free(x); break;
    }
    case 14: {
        arm_cfft_instance_f32 s;
        if (arm_cfft_init_f32(&s, (uint16_t)n) != ARM_MATH_SUCCESS) fail("arm_cfft_init_f32");
        float32_t *x = read_block(n * 8);
        arm_cfft_f32(&s, x, 0, 1);
        write_block(x, n * 8); free(x); break;
    }
    default:
        fail("unknown op in job.bin");
    }
}

int main(void)
{
    in_file = fopen("job.bin", "rb");
    out_file = fopen("out.bin", "wb");
    if (in_file == NULL || out_file == NULL) fail("cannot open job.bin / out.bin");
    int32_t head[3];
    while (fread(head, sizeof head, 1, in_file) == 1) {
        for (int32_t i = 0; i < head[2]; i++) run_one(head[0], (uint32_t)head[1]);
    }
    fclose(in_file);
    fclose(out_file);
    printf("m55: ok\n");
    return 0;
}
