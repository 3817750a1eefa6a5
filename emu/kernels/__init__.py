"""Int8 network kernels (CMSIS-NN / TFLite Micro reference semantics), Numba, integer-only.

Contract shared by the Numba kernels (emu/kernels/*.py), their C twins (csrc/kernels_s8.c, module
emu._c_kernels, wrapped by emu/kernels/ctwin.py) and the obvious references (tests/naive.py):

- Activations are NHWC int8 (C-contiguous). Conv weights OHWI `[Cout, KH, KW, Cin/groups]`,
  depthwise `[1, KH, KW, Cin*ch_mult]`, fully connected `[Out, K]`. Bias int32 (zeros when absent).
- Argument order for every kernel: data inputs, weights/bias, quantization (mult/shift arrays,
  offsets), geometry (strides, paddings, dilations), activation range, rounding code, output.
  `input_offset = -zp_in`, `output_offset = +zp_out`, `filter_offset = -zp_w`; shift > 0 means left.
  `rounding` is emu.fixedpoint.DOUBLE_ROUNDING (0, default) or SINGLE_ROUNDING (1).
- Weighted kernels (conv, depthwise, fully connected; Numba only) also take rounding FLOAT32_RNE (2), the
  onnxruntime profile's epilogue emu.fixedpoint.requantize_float32 with a float32 per-channel keyword `scale`
  (mult/shift may be None), and conv/depthwise a keyword `filter_offset` (default 0; fully connected has it
  positional). One set of loops serves both profiles; the epilogue is emu.fixedpoint.requantize_channel
  (scale None for the fixed-point roundings: Numba compiles each mode separately). The fixed-point epilogue's
  per-channel pieces are derived once per checked call / bind (emu.fixedpoint.prepare_requantize -> int64
  qp [5, Cout]); the private njit kernels take (qp, scale) where the public ones take (mult, shift, scale=).
- Kernels never allocate and return nothing: the caller owns and passes `out`. Work buffers are int32 `scratch`
  arrays the caller owns too (conv: conv.conv_scratch_size(filt.shape) values, depthwise: Cout, avgpool: C sums;
  the wrappers and binders allocate them when none is given). Scratch contents are dirty between calls.
- conv, depthwise, fully connected, pooling and softmax also have `bind_<name>(same arguments)`, which checks
  once and returns a no-argument callable running the unchecked @njit kernel on those very arrays (what the
  runtime's plans use: fixed buffers, per-inference cost = the kernel alone). backends.bind falls back to the
  checked kernel for backends without binders (the C twins, tests/naive.py).
- Accumulators are int32 and wrap like the MCU (explicit casts; never a silent int64).
"""
