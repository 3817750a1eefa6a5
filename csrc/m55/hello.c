#include <stdio.h>
#include <arm_mve.h>
int main(void){
  __fp16 a = 1.5f; float16x8_t v = vdupq_n_f16(a); v = vfmaq_f16(v, v, v);
  FILE *f = fopen("out.txt", "w"); fprintf(f, "%f\n", (double)vgetq_lane_f16(v, 3)); fclose(f);
  printf("hello %f\n", (double)vgetq_lane_f16(v, 0)); return 0; }
