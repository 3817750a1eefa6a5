"""cffi builder for emu._c_frontend_st, the C twin of the ST column front end (emu/frontend/st.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cffi_common import make_builder  # noqa: E402

CDEF = """
typedef struct {
    int32_t n_fft, win, hop, n_frames, n_mels, pad_left;
    int32_t algo, prec, spectrum_mode, log_mode, acc_mode, fma, rounding, cast_mode;
    float inv_scale, zp, neg_top_db;
} st_config;
float st_patch(const st_config *cfg, const int16_t *pcm, const float *window, const float *twiddle,
               const float *rtwiddle, const int32_t *order, const int32_t *start, const int32_t *stop,
               const int32_t *offs, const float *coefs, float *framed, float *windowed, float *fft,
               float *power, float *spec, float *mel, float *logmel, int8_t *q, float *scratch, float *tmp);
void st_rfft(const st_config *cfg, float *buf, float *out, const float *twiddle, const float *rtwiddle,
             const int32_t *order, float *tmp);
float st_dot(const st_config *cfg, const float *spec, const float *coefs, int32_t len);
int8_t st_quantize(const st_config *cfg, float v);
"""

ffibuilder = make_builder("frontend_st", CDEF, "frontend_st.h", ["frontend_st.c"])

if __name__ == "__main__":
    from cffi_common import build_inplace
    print(build_inplace(ffibuilder))
