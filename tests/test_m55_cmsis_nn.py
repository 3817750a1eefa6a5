"""The emulator's cmsis-nn int8 kernels == CMSIS-NN's Helium (MVE) kernels on a Cortex-M55 (QEMU mps3-an547).

CMSIS-NN (../shared/arm/cmsis-nn) is compiled for the Cortex-M55 (-mcpu=cortex-m55, so __ARM_FEATURE_MVE=3 and
CMSIS-NN defines ARM_MATH_MVEI: its Helium kernels) and driven by csrc/m55/nn_harness.c. Every kernel call the
emulator makes is recorded (tests/m55_nn.py Recorder) and replayed on the M55 with the very same integer arguments,
through the wrapper TFLM calls and through the individual kernels it dispatches between; outputs must be equal,
no tolerance:
  - every CMSIS-NN conformance case (../shared/conformance/cmsis-nn): M55 == reference == emulator; ds_cnn_s layer
    by layer (each layer fed the emulator's input) and chained on the M55 alone;
  - every layer of the MLPerf Tiny DS-CNN and of the bundled QDQ model (cmsis-nn profile) on random and extreme
    inputs: each layer fed the emulator's input tensor, and the whole network chained on the M55;
  - randomized calls of every kernel (shapes, groups, dilations, channel multipliers, batches, offsets, per-channel
    shifts, activation ranges) and hand-picked extremes (int32 accumulator wrap-around, shifts -31..30);
  - the single-rounding profile against CMSIS-NN built with CMSIS_NN_USE_SINGLE_ROUNDING.
Where CMSIS-NN's Helium kernels depart from the TFLite reference semantics the emulator implements (bugs found
here, outside the cases above), a test pins the departure exactly (test_cmsis_nn_*): if one fails, CMSIS-NN changed.
Skips (naming what is missing) only without the toolchain/QEMU or ../shared.
"""
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

import m55
import m55_nn
from emu import conformance
from emu import fixedpoint as fx
from emu.graph.runtime import Runtime
from emu.models import load_model

REPO = m55.REPO
BUNDLED_MODEL = REPO / "emu" / "data" / "kws" / "model_qdq.onnx"


@pytest.fixture(scope="session")
def arm_dir(shared_dir):
    d = shared_dir / "arm"
    reason = m55_nn.missing(d)
    if reason:
        pytest.skip(reason)
    return d


@pytest.fixture(scope="session")
def harness(arm_dir):
    """nn_harness.c on CMSIS-NN as shipped (double rounding)."""
    return m55_nn.harness_elf(arm_dir)


@pytest.fixture(scope="session")
def harness_single(arm_dir):
    """nn_harness.c on CMSIS-NN built with CMSIS_NN_USE_SINGLE_ROUNDING."""
    return m55_nn.harness_elf(arm_dir, defines=("CMSIS_NN_USE_SINGLE_ROUNDING",))


def check_ops(job, results, reference=None):
    """Every op's status is ARM_CMSIS_NN_SUCCESS and its output equals the emulator's; `reference` maps op index ->
    the case's reference output that op must equal too. Returns the number of ops checked."""
    problems = []
    for op, (status, got) in zip(job.ops, results):
        if status != 0:
            problems.append(f"op {op.index} {op.kind} via {op.variant}: status {status}")
            continue
        if not np.array_equal(got, op.expected):
            problems.append(m55_nn.describe_mismatch(op, got, op.expected))
        ref = (reference or {}).get(op.index)
        if ref is not None and not np.array_equal(got.reshape(-1), ref.reshape(-1)):
            problems.append(m55_nn.describe_mismatch(op, got, ref, against="the case's reference output"))
    assert not problems, f"{len(problems)} M55 op(s) differ:\n" + "\n".join(problems[:20])
    return len(job.ops)


# ---- the build really is the Helium one -------------------------------------------------------------------

def helium_instructions(elf):
    """{function: number of instructions on Helium Q registers (fpv5-d16 has none: every one is MVE)}, from the
    disassembly of the ELF as Armv8.1-M (objdump's default shows MVE loads as coprocessor ops)."""
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", "-m", "armv8.1-m.main", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    counts, current = {}, None
    q_reg = re.compile(r"\bq[0-7]\b")
    for line in dis.splitlines():
        if line.endswith(">:"):
            current = line.split("<", 1)[1][:-2]
            counts[current] = 0
        elif current is not None:
            parts = line.split("\t")
            if len(parts) >= 3 and q_reg.search(" ".join(parts[2:])):
                counts[current] += 1
    return counts


def test_cmsis_nn_build_takes_the_helium_paths(arm_dir, harness):
    flags = subprocess.run([m55.GCC, *m55.CPU_FLAGS, "-dM", "-E", "-"], input="", capture_output=True, text=True,
                           check=True).stdout
    assert "#define __ARM_FEATURE_MVE 3" in flags
    counts = helium_instructions(harness)
    # the kernels the harness reaches (conv, depthwise, FC, pools, add, mul, pad, transpose, softmax's Helium build)
    for fn in ("arm_nn_mat_mult_nt_t_s8", "arm_nn_vec_mat_mult_t_s8", "arm_nn_vec_mat_mult_t_per_ch_s8",
               "arm_nn_depthwise_conv_nt_t_s8", "arm_depthwise_conv_s8_opt", "arm_vector_sum_s8", "arm_avgpool_s8",
               "arm_max_pool_s8", "arm_elementwise_add_s8", "arm_elementwise_mul_s8", "arm_pad_s8"):
        assert counts.get(fn, 0) > 0, f"{fn} has no Helium (MVE) instruction: the library was not built for MVE"
    softmax_mve = "arm_softmax_s8_mve" if "arm_softmax_s8_mve" in counts else "arm_softmax_s8"
    assert counts.get(softmax_mve, 0) > 0


# ---- CMSIS-NN's own conformance vectors ---------------------------------------------------------------------

def _case_job(folders, rounding="double"):
    """One job for all cases: (job, {op index: the case's reference output}, {case name: op count}). With rounding
    'single' the emulator runs its single-rounding switch and no reference is checked (the vectors are double
    rounding)."""
    job, refs, per_case = m55_nn.Job(fx.rounding_code(rounding)), {}, {}
    rec = m55_nn.Recorder()
    for folder in folders:
        rec.reset()
        res = conformance.run_case(folder, backend=rec, rounding=rounding)
        if rounding == "double":
            assert res.status == conformance.PASS, f"{folder.name}: the emulator itself fails the case: {res}"
        first = len(job.ops)
        if res.op == "network":
            _, arrays = conformance._read_headers(conformance._case_headers(folder))
            ref = next(a for n, a in arrays.items() if n.endswith("_output_ref") and "_layer_" not in n)
            for call in rec.calls:                       # layer by layer, each fed the emulator's input
                ops = job.add_call(call)
            if rounding == "double":
                for op in ops:
                    refs[op.index] = ref
            chain = {}
            for k, call in enumerate(rec.calls):         # the whole network on the M55 alone
                ops = job.add_call(call, chain=chain, variants="primary")
                chain[k] = ops[0].index
                assert k == 0 or ops[0].inputs_from[0] is not None
            if rounding == "double":
                refs[ops[0].index] = ref
        else:
            assert len(rec.calls) == 1, f"{folder.name}: {len(rec.calls)} kernel calls"
            case = conformance._load_case(folder)
            hints = {"fc_per_channel": res.op.endswith("(per-channel)")}
            if res.op == "transpose_s8":
                hints["transpose_rank"] = case.int("PERM_SIZE")
            ref = case.array("output_ref", "output", dtype=np.int8)
            for op in job.add_call(rec.calls[0], hints=hints):
                if rounding == "double":
                    refs[op.index] = ref
        per_case[folder.name] = len(job.ops) - first
    return job, refs, per_case


def test_every_conformance_case_on_the_m55(conformance_dir, harness):
    folders = conformance.discover(conformance_dir)
    assert len(folders) == 61
    job, refs, per_case = _case_job(folders)
    results = job.run(harness)
    n = check_ops(job, results, refs)
    assert n >= 61 + 13 and all(per_case.values())
    # every CMSIS-NN entry point the harness offers was exercised
    assert {op.variant for op in job.ops} >= {
        "arm_convolve_wrapper_s8", "arm_convolve_s8", "arm_depthwise_conv_wrapper_s8", "arm_depthwise_conv_s8",
        "arm_depthwise_conv_s8_opt", "arm_fully_connected_s8", "arm_fully_connected_per_channel_s8",
        "arm_avgpool_s8", "arm_max_pool_s8", "arm_softmax_s8", "arm_elementwise_add_s8", "arm_elementwise_mul_s8",
        "arm_pad_s8", "arm_transpose_s8"}


# ---- whole models, layer by layer ---------------------------------------------------------------------------

def model_inputs(shape, n_random, seed):
    """n_random uniform int8 inputs, then all -128, all 127 and alternating extremes."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    alt = np.where(np.arange(size) % 2 == 0, -128, 127).astype(np.int8).reshape(shape)
    xs = [rng.integers(-128, 128, size=shape).astype(np.int8) for _ in range(n_random)]
    return xs + [np.full(shape, -128, np.int8), np.full(shape, 127, np.int8), alt]


def _model_job(graph, inputs, rounding="double", chain=True):
    """Per-layer ops (every CMSIS-NN variant) for each input, fed the emulator's input tensor of the layer, plus the
    whole network chained on the M55 (primary variants) per input. The emulator's tensors come from
    Runtime(profile="cmsis-nn", backend="numba").run_all; the kernel arguments from the same runtime with a recording
    backend (the prepared per-layer parameters as the kernels receive them). Returns (job, [(input #, node, op)])."""
    emu_rt = Runtime(graph, profile="cmsis-nn", backend="numba", rounding=rounding)
    rec = m55_nn.Recorder()
    rec_rt = Runtime(graph, profile="cmsis-nn", backend=rec, rounding=rounding)
    nodes = [n for n in emu_rt.graph.nodes if n.op != "reshape"]
    job, where = m55_nn.Job(fx.rounding_code(rounding)), []
    for i, x in enumerate(inputs):
        tensors = emu_rt.run_all(x)
        rec.reset()
        rec_rt.run(x)
        assert len(rec.calls) == len(nodes), f"{len(rec.calls)} kernel calls for {len(nodes)} layers"
        chain_map = {}
        for k, (node, call) in enumerate(zip(nodes, rec.calls)):
            want_in = tensors[node.inputs[0]].reshape(-1)
            assert np.array_equal(call.args[0].reshape(-1), want_in), f"layer {node.name}: recorded input differs"
            want_out = tensors[node.outputs[0]].reshape(call.out.shape)
            assert np.array_equal(call.out, want_out), f"layer {node.name}: recorded output differs"
            hints = {"transpose_rank": len(node.attrs["perm"])} if node.op == "transpose" else {}
            for op in job.add_call(call, hints=hints):
                where.append((i, node, op))
        if chain:
            for k, (node, call) in enumerate(zip(nodes, rec.calls)):
                hints = {"transpose_rank": len(node.attrs["perm"])} if node.op == "transpose" else {}
                ops = job.add_call(call, chain=chain_map, variants="primary", hints=hints)
                chain_map[k] = ops[0].index
                where.append((i, node, ops[0]))
                assert k == 0 or ops[0].inputs_from[0] is not None, f"layer {node.name} is not chained"
            last = job.ops[-1]
            assert np.array_equal(last.expected.reshape(-1), tensors[emu_rt.graph.outputs[0]].reshape(-1))
    return job, where


def _model(which, request):
    """The MLPerf Tiny DS-CNN (../shared/models, skips when absent) or the bundled QDQ model."""
    return load_model(request.getfixturevalue("mlperf_model") if which == "mlperf" else BUNDLED_MODEL)


@pytest.mark.parametrize("which", ["mlperf", "bundled"])
def test_every_model_layer_on_the_m55(which, request, harness):
    graph = _model(which, request)
    shape = tuple(graph.tensors[graph.inputs[0]].shape)
    inputs = model_inputs(shape, n_random=2, seed=11)
    job, where = _model_job(graph, inputs)
    results = job.run(harness)
    n = check_ops(job, results)
    layers = {node.name for _, node, _ in where}
    assert n == len(where) and len(layers) == len([nd for nd in graph.nodes if nd.op != "reshape"])


@pytest.mark.slow
@pytest.mark.parametrize("which", ["mlperf", "bundled"])
def test_every_model_layer_on_the_m55_50_inputs(which, request, harness):
    graph = _model(which, request)
    shape = tuple(graph.tensors[graph.inputs[0]].shape)
    for chunk in range(5):
        job, _ = _model_job(graph, model_inputs(shape, n_random=10, seed=500 + chunk)[:10])
        check_ops(job, job.run(harness))


# ---- randomized kernel calls (every op kind, shapes and parameters beyond the fixed cases) -------------------

def _same_or_valid(rng, size, k, stride, dilation):
    """TFLite SAME or VALID geometry along one axis: (out, pad_before) (VALID only when the kernel fits)."""
    eff = (k - 1) * dilation + 1
    if eff <= size and rng.random() < 0.5:
        return (size - eff) // stride + 1, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return out, total // 2


def _requant(rng, n, per_channel=True, single=False):
    """Per-channel (or repeated per-tensor) multipliers/shifts of real scales 1e-4..0.1, a few above 1/2 (positive
    shifts, saturating outputs; not for single rounding: see test_single_rounding_build_departures)."""
    scales = 10.0 ** rng.uniform(-4, -1, size=n if per_channel else 1)
    if rng.random() < 0.05 and not single:
        scales = scales * 1000.0
    ms = [fx.quantize_multiplier(float(v), single_rounding=single) for v in scales]
    mult = np.array([m for m, _ in ms], np.int32)
    shift = np.array([e for _, e in ms], np.int32)
    if not per_channel:
        mult, shift = np.repeat(mult, n), np.repeat(shift, n)
    return mult, shift


def _act(rng, out_off):
    r = rng.random()
    if r < 0.6:
        return -128, 127
    if r < 0.8:
        return max(-128, min(127, out_off)), 127             # ReLU
    lo = int(rng.integers(-128, 100))
    return lo, int(rng.integers(lo, 128))


def _bias(rng, n):
    """Random int32 bias; all zeros (no bias: CMSIS-NN gets NULL) one time in six."""
    return np.zeros(n, np.int32) if rng.random() < 1 / 6 else rng.integers(-20000, 20000, size=n).astype(np.int32)


def _i8(rng, shape, lo=-128):
    return rng.integers(lo, 128, size=shape).astype(np.int8)


def random_calls(rng, count, rounding=0):
    """`count` random emulator kernel calls, recorded: (Recorder, hints per call). rounding 1 (single) makes the
    multipliers as TFLite does for it and leaves add out (the emulator's add has no single-rounding mode: see
    test_single_rounding_build_departures)."""
    rec, hints = m55_nn.Recorder(), []
    kinds = ["conv", "conv_1x1", "conv_1xn", "depthwise", "fc", "avgpool", "maxpool", "softmax", "add", "mul", "pad",
             "transpose"]
    for i in range(count):
        kind = kinds[i % len(kinds)]
        if kind == "add" and rounding == 1:
            kind = "mul"
        hint = {}
        in_off, out_off = int(rng.integers(-127, 129)), int(rng.integers(-128, 128))
        amin, amax = _act(rng, out_off)
        if kind.startswith("conv"):
            n = 1 if rng.random() < 0.8 else 2
            h, w = int(rng.integers(1, 11)), int(rng.integers(1, 11))
            cin, cout = int(rng.integers(1, 21)), int(rng.integers(1, 25))
            kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
            sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
            dh, dw = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if rng.random() < 0.2 else (1, 1)
            groups = 1
            if kind == "conv_1x1":
                kh = kw = dh = dw = 1
            elif kind == "conv_1xn":
                h, kh, dw = 1, 1, 1
                cin = 4 * int(rng.integers(1, 6))
            elif rng.random() < 0.25 and cin > 1:
                groups = int(rng.choice([g for g in range(2, cin + 1) if cin % g == 0]))
                cout = groups * int(rng.integers(1, 5))
            oh, pt = _same_or_valid(rng, h, kh, sh, dh)
            ow, pl = _same_or_valid(rng, w, kw, sw, dw)
            if kind == "conv_1x1":
                pt = pl = 0
                oh, ow = (h - 1) // sh + 1, (w - 1) // sw + 1
            if h == 1 and kh == 1 and (ow - 1) * sw + (kw - 1) * dw + 1 < w:
                w, pl = (ow - 1) * sw + (kw - 1) * dw + 1, 0    # no unused input columns for 1xN: see below
            inp = _i8(rng, (n, h, w, cin))
            filt = _i8(rng, (cout, kh, kw, cin // groups), -127)
            bias = _bias(rng, cout)
            mult, shift = _requant(rng, cout, single=rounding == 1)
            out = np.zeros((n, oh, ow, cout), np.int8)
            rec.conv_s8(inp, filt, bias, mult, shift, in_off, out_off, sh, sw, pt, pl, dh, dw, amin, amax, rounding,
                        out)
        elif kind == "depthwise":
            n = 1 if rng.random() < 0.85 else 2
            h, w = int(rng.integers(1, 11)), int(rng.integers(1, 11))
            cin = int(rng.integers(1, 24)) if rng.random() < 0.8 else 1
            ch_mult = int(rng.choice([1, 1, 1, 2, 3, 4, 8]))
            kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
            sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
            dh, dw = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if rng.random() < 0.2 else (1, 1)
            oh, pt = _same_or_valid(rng, h, kh, sh, dh)
            ow, pl = _same_or_valid(rng, w, kw, sw, dw)
            cout = cin * ch_mult
            inp = _i8(rng, (n, h, w, cin))
            filt = _i8(rng, (1, kh, kw, cout), -127)
            bias = _bias(rng, cout)
            mult, shift = _requant(rng, cout, single=rounding == 1)
            out = np.zeros((n, oh, ow, cout), np.int8)
            rec.depthwise_conv_s8(inp, filt, bias, mult, shift, ch_mult, in_off, out_off, sh, sw, pt, pl, dh, dw,
                                  amin, amax, rounding, out)
        elif kind == "fc":
            n, depth, cout = int(rng.integers(1, 4)), int(rng.integers(1, 300)), int(rng.integers(1, 40))
            per_channel = rng.random() < 0.5
            f_off = 0 if per_channel or rng.random() < 0.7 else int(rng.integers(-127, 129))   # see below
            mult, shift = _requant(rng, cout, per_channel, single=rounding == 1)
            out = np.zeros((n, cout), np.int8)
            rec.fully_connected_s8(_i8(rng, (n, depth)), _i8(rng, (cout, depth), -127),
                                   _bias(rng, cout), mult, shift, in_off,
                                   f_off, out_off, amin, amax, rounding, out)
            hint["fc_per_channel"] = per_channel
        elif kind in ("avgpool", "maxpool"):
            n = 1 if rng.random() < 0.8 else 2
            h, w, c = int(rng.integers(1, 15)), int(rng.integers(1, 15)), int(rng.integers(1, 40))
            kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
            sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
            oh, pt = _same_or_valid(rng, h, kh, sh, 1)
            ow, pl = _same_or_valid(rng, w, kw, sw, 1)
            out = np.zeros((n, oh, ow, c), np.int8)
            fn = rec.avgpool_s8 if kind == "avgpool" else rec.maxpool_s8
            fn(_i8(rng, (n, h, w, c)), kh, kw, sh, sw, pt, pl, amin, amax, out)
        elif kind == "softmax":
            rows, size = int(rng.integers(1, 5)), int(rng.integers(1, 40))
            real = min(10.0 ** rng.uniform(-2.5, 0) * float(1 << 26), float((1 << 31) - 1))
            mult, shift = fx.quantize_multiplier_greater_than_one(real)
            diff_min = -int(np.floor(31 * float(1 << 26) / float(1 << shift)))
            out = np.zeros((rows, size), np.int8)
            rec.softmax_s8(_i8(rng, (rows, size)), mult, shift, diff_min, out)
        elif kind == "add":
            size = int(rng.integers(1, 100))
            s1, s2, so = 10.0 ** rng.uniform(-2, 0, size=3)
            twice = 2.0 * max(s1, s2)
            m1, e1 = fx.quantize_multiplier_smaller_than_one(s1 / twice)
            m2, e2 = fx.quantize_multiplier_smaller_than_one(s2 / twice)
            mo, eo = fx.quantize_multiplier_smaller_than_one(twice / ((1 << 20) * so))
            out = np.zeros(size, np.int8)
            rec.add_s8(_i8(rng, size), _i8(rng, size), in_off, m1, e1, int(rng.integers(-127, 129)), m2, e2, 20,
                       mo, eo, out_off, amin, amax, out)
        elif kind == "mul":
            size = int(rng.integers(1, 100))
            m, e = fx.quantize_multiplier(float(10.0 ** rng.uniform(-4, -1)), single_rounding=rounding == 1)
            out = np.zeros(size, np.int8)
            rec.mul_s8(_i8(rng, size), _i8(rng, size), in_off, int(rng.integers(-127, 129)), m, e, out_off, amin,
                       amax, rounding, out)
        elif kind == "pad":
            shape = tuple(int(v) for v in rng.integers(1, 6, size=4))
            before = rng.integers(0, 3, size=4).astype(np.int32)
            after = rng.integers(0, 3, size=4)
            out = np.zeros(tuple(s + int(b) + int(a) for s, b, a in zip(shape, before, after)), np.int8)
            rec.pad_s8(_i8(rng, shape), before, int(rng.integers(-128, 128)), out)
        else:
            rank = int(rng.integers(2, 5))
            dims = [int(v) for v in rng.integers(1, 8, size=rank)]
            perm = [int(v) for v in rng.permutation(rank)]
            while rank != 3 and perm == sorted(perm):                  # identities: see below
                perm = [int(v) for v in rng.permutation(rank)]
            lead = 4 - rank
            perm4 = np.array(list(range(lead)) + [p + lead for p in perm], np.int32)
            shape4 = (1,) * lead + tuple(dims)
            out = np.zeros(tuple(shape4[p] for p in perm4), np.int8)
            rec.transpose_s8(_i8(rng, shape4), perm4, out)
            hint["transpose_rank"] = rank
        hints.append(hint)
    return rec, hints


def _random_job(seed, count, rounding=0):
    rec, hints = random_calls(np.random.default_rng(seed), count, rounding)
    job = m55_nn.Job(rounding)
    for call, hint in zip(rec.calls, hints):
        job.add_call(call, hints=hint)
    return job


def test_random_kernel_calls_on_the_m55(harness):
    job = _random_job(seed=2024, count=240)
    check_ops(job, job.run(harness))


def test_extreme_parameters_on_the_m55(harness):
    """Edge values the random calls rarely reach: int32 accumulator wrap-around, the extreme multiplier/shift range
    CMSIS-NN documents ({-31..30}), saturating requantization, act_min == act_max, extreme offsets, large pools,
    softmax rows of one value or of equal values."""
    rng = np.random.default_rng(77)
    rec = m55_nn.Recorder()
    full = np.full
    # FC accumulating 70000 products of 255*127: the int32 accumulator wraps (the emulator wraps like the MCU)
    depth = 70000
    for mult, shift in ((2**31 - 1, -31), (2**30, -20), (1518500250, 0)):
        out = np.zeros((1, 4), np.int8)
        rec.fully_connected_s8(full((1, depth), 127, np.int8), full((4, depth), 127, np.int8),
                               np.array([0, 2**31 - 1, -2**31, 12345], np.int32), full(4, mult, np.int32),
                               full(4, shift, np.int32), 128, 0, -128, -128, 127, 0, out)
    # conv: per-channel shifts across the documented range, positive shifts saturating, act_min == act_max
    cout = 16
    mult = rng.integers(1 << 30, 2**31 - 1, cout).astype(np.int32)
    shift = np.array([-31, -25, -20, -15, -12, -10, -8, -4, -1, 0, 1, 2, 5, 10, 20, 30], np.int32)
    x = _i8(rng, (1, 6, 6, 8))
    for in_off, out_off, amin, amax in ((128, -128, -128, 127), (-127, 127, -128, 127), (0, 0, 3, 3)):
        out = np.zeros((1, 6, 6, cout), np.int8)
        rec.conv_s8(x, _i8(rng, (cout, 3, 3, 8)), rng.integers(-2**20, 2**20, cout).astype(np.int32), mult, shift,
                    in_off, out_off, 1, 1, 1, 1, 1, 1, amin, amax, 0, out)
        out = np.zeros((1, 6, 6, cout), np.int8)
        rec.depthwise_conv_s8(_i8(rng, (1, 6, 6, 8)), _i8(rng, (1, 3, 3, cout)), np.zeros(cout, np.int32), mult,
                              shift, 2, in_off, out_off, 1, 1, 1, 1, 1, 1, amin, amax, 0, out)
    # pools over all -128 / all 127 / alternating, one window covering the whole input
    for fill in (-128, 127, None):
        x = _i8(rng, (1, 25, 20, 33)) if fill is None else full((1, 25, 20, 33), fill, np.int8)
        for fn in (rec.avgpool_s8, rec.maxpool_s8):
            out = np.zeros((1, 1, 1, 33), np.int8)
            fn(x, 25, 20, 25, 20, 0, 0, -128, 127, out)
    # softmax: one-value rows, equal rows, the largest input scale
    for rows, size, real in ((3, 1, 2.0**26 * 0.1), (2, 37, 2.0**26 * 0.05), (2, 30, float(2**31 - 1))):
        mult_s, shift_s = fx.quantize_multiplier_greater_than_one(real)
        diff_min = -int(np.floor(31 * float(1 << 26) / float(1 << shift_s)))
        out = np.zeros((rows, size), np.int8)
        x = full((rows, size), 7, np.int8) if size == 37 else _i8(rng, (rows, size))
        rec.softmax_s8(x, mult_s, shift_s, diff_min, out)
    # add / mul: extreme offsets and scales
    a, b = _i8(rng, 64), _i8(rng, 64)
    for (s1, s2, so) in ((1.0, 1e-3, 1e-3), (1e-3, 1.0, 10.0), (0.5, 0.5, 0.5)):
        twice = 2.0 * max(s1, s2)
        m1, e1 = fx.quantize_multiplier_smaller_than_one(s1 / twice)
        m2, e2 = fx.quantize_multiplier_smaller_than_one(s2 / twice)
        mo, eo = fx.quantize_multiplier_smaller_than_one(twice / ((1 << 20) * so))
        out = np.zeros(64, np.int8)
        rec.add_s8(a, b, 128, m1, e1, -127, m2, e2, 20, mo, eo, 127, -128, 127, out)
        m, e = fx.quantize_multiplier(s1 * s2 / so)
        out = np.zeros(64, np.int8)
        rec.mul_s8(a, b, 128, -127, m, e, -128, -128, 127, 0, out)
    job = m55_nn.Job()
    for call in rec.calls:
        job.add_call(call)
    assert len(job.ops) == 36
    check_ops(job, job.run(harness))


@pytest.mark.slow
def test_random_kernel_calls_on_the_m55_sweep(harness):
    for chunk in range(10):
        job = _random_job(seed=9000 + chunk, count=480)
        check_ops(job, job.run(harness))


# ---- the single-rounding switch -----------------------------------------------------------------------------

def test_single_rounding_profile_equals_cmsis_nn_single_rounding_build(conformance_dir, request, harness_single):
    """rounding='single' (conv, depthwise, FC, mul) == CMSIS-NN built with CMSIS_NN_USE_SINGLE_ROUNDING: every
    conformance case's kernel calls (compared with the emulator only: the vectors are double rounding), both models
    layer by layer and chained, randomized calls (add left out: see test_single_rounding_build_departures)."""
    job, _, _ = _case_job(conformance.discover(conformance_dir), rounding="single")
    check_ops(job, job.run(harness_single))
    for which in ("mlperf", "bundled"):
        graph = _model(which, request)
        shape = tuple(graph.tensors[graph.inputs[0]].shape)
        job, _ = _model_job(graph, model_inputs(shape, n_random=1, seed=21)[:2], rounding="single")
        check_ops(job, job.run(harness_single))
    job = _random_job(seed=4242, count=240, rounding=1)
    check_ops(job, job.run(harness_single))


def test_single_rounding_build_departures(harness_single):
    """Where CMSIS-NN's single-rounding build departs from the emulator's single-rounding switch (the double-rounding
    default is unaffected):
      1. Add: CMSIS_NN_USE_SINGLE_ROUNDING also makes arm_elementwise_add_s8 requantize with single rounding (ties
         toward +inf, as TFLite's TFLITE_SINGLE_ROUNDING Add does); the emulator's add_s8 has no rounding argument
         and always rounds ties of negative values away from zero: -0.5 gives 0 on the M55, -1 in the emulator.
      2. Positive shifts: the Helium requantization of the single-rounding build shifts the accumulator left by
         shift + 1 in int32 before vqdmulh, so |acc| >= 2^(30 - shift) wraps, where the emulator (and CMSIS-NN's own
         scalar tail) form the 64-bit product (TFLite DCHECKs that range away: the output saturates either way in
         a valid model)."""
    rec = m55_nn.Recorder()
    a = np.arange(-128, 128, dtype=np.int8)
    out = np.zeros(256, np.int8)
    # inputs scaled by 1/2 and 2^-21 after the 2^20 left shift, output scale 1: x/4 exactly (ties at x = 4k + 2)
    rec.add_s8(a, np.zeros(256, np.int8), 0, 1 << 30, -1, 0, 1 << 30, -1, 20, 1 << 30, -19, 0, -128, 127, out)
    x = np.full((1, 64), 100, np.int8)
    w = np.array([[1] * 64, [-1] * 64, [2] * 64, [-3] * 64, [1] * 64], np.int8)
    bias = np.array([2**27, -2**27, 2**26, 0, 2**27], np.int32)
    out_fc = np.zeros((1, 5), np.int8)
    rec.fully_connected_s8(x, w, bias, np.full(5, 1 << 30, np.int32), np.full(5, 4, np.int32), 0, 0, 0, -128, 127,
                           1, out_fc)
    job = m55_nn.Job(rounding=1)
    add_op = job.add_call(rec.calls[0])[0]
    fc_op = job.add_call(rec.calls[1], variants="primary")[0]
    (s_add, got_add), (s_fc, got_fc) = job.run(harness_single)
    assert s_add == 0 and s_fc == 0
    ties = (a.astype(int) % 4 == 2) & (a < 0)
    assert np.array_equal(np.flatnonzero(got_add != add_op.expected), np.flatnonzero(ties))
    assert np.all(got_add[ties].astype(int) == add_op.expected[ties].astype(int) + 1)
    # channel 2: acc = 2^26 + 12800, << 5 wraps negative in the Helium block of 4; channel 4 (scalar tail) agrees
    assert got_fc.tolist() == [[127, -128, -128, -128, 127]]
    assert fc_op.expected.tolist() == [[127, -128, 127, -128, 127]]


# ---- where CMSIS-NN's Helium build departs from the TFLite reference (the emulator follows the reference) ------

def test_cmsis_nn_1xn_conv_departs_from_the_reference_when_input_columns_go_unused(harness):
    """Characterises a CMSIS-NN bug (this is where the M55 and the emulator differ; the emulator follows the TFLite
    reference, as CMSIS-NN's own generic arm_convolve_s8 does). arm_convolve_wrapper_s8 sends a conv with H == 1,
    KH == 1, dilation_w 1, stride_w * C_in % 4 == 0 to arm_convolve_1_x_n_s8, whose Helium path derives its
    padding from total = (OW - 1) * SW + KW - W, assuming TFLite SAME-style padding (total >= 0). When the windows
    leave input columns unused (total < 0: VALID with a remainder, or SAME with KW < SW), C's total % 2 == -1 and
      total == -1: status success, but the last window's last kernel tap is taken as padding (the last output
      column is wrong);
      total <= -2: ARM_CMSIS_NN_FAILURE (-3).
    The DS-CNNs here have no such layer (no H == 1 conv). If this test fails, CMSIS-NN changed: revisit."""
    rng = np.random.default_rng(5)
    rec = m55_nn.Recorder()
    geometries = [  # (W, KW, SW, pad_left, OW): total
        (8, 3, 2, 0, 3),     # VALID, one column left over: -1
        (10, 1, 2, 0, 5),    # SAME (KW 1 < SW 2) with dilation_h 2 (not the 1x1 path): -1
        (10, 2, 3, 0, 3),    # VALID, two columns left over: -2
        (9, 3, 2, 0, 4),     # VALID, exact: 0 (control)
    ]
    for w, kw, sw, pl, ow in geometries:
        out = np.zeros((1, 1, ow, 4), np.int8)
        rec.conv_s8(_i8(rng, (1, 1, w, 4)), _i8(rng, (4, 1, kw, 4), -127), np.zeros(4, np.int32),
                    np.full(4, 1 << 30, np.int32), np.full(4, -8, np.int32), 0, 0, 1, sw, 0, pl,
                    2 if kw == 1 else 1, 1, -128, 127, 0, out)
    job = m55_nn.Job()
    pairs = [job.add_call(call) for call in rec.calls]
    results = job.run(harness)
    outcome = []
    for (w, kw, sw, pl, ow), (wrapper, generic) in zip(geometries, pairs):
        assert wrapper.variant == "arm_convolve_wrapper_s8" and generic.variant == "arm_convolve_s8"
        g_status, g_out = results[generic.index]
        assert g_status == 0 and np.array_equal(g_out, generic.expected)
        status, got = results[wrapper.index]
        cols = sorted(set(np.argwhere(got != wrapper.expected)[:, 2].tolist())) if status == 0 else None
        outcome.append((status, cols))
    assert outcome[0] == (0, [2]) and outcome[1] == (0, [4])     # wrong last column
    assert outcome[2][0] == -3                                   # ARM_CMSIS_NN_FAILURE
    assert outcome[3] == (0, [])


def test_cmsis_nn_transpose_moves_data_for_identity_permutations(harness):
    """Characterises CMSIS-NN: arm_transpose_s8 swaps the last two axes for the identity permutation at rank 2
    (num_dims == 2 ignores `permutations`: always (1, 0)) and at rank 4 on Helium (its shortcut to the NHCW kernel
    tests perm[0] == 0 && perm[1] == 1 only, so (0, 1, 2, 3) is run as (0, 1, 3, 2)). The emulator copies, as
    TFLite does; rank 3 is right. Job.add_call refuses identities at rank 2 and 4 and the randomized calls avoid
    them. If this test fails, CMSIS-NN changed: revisit."""
    x2 = np.arange(20, dtype=np.int8).reshape(5, 4)
    x4 = np.arange(2 * 3 * 4 * 5, dtype=np.int8).reshape(2, 3, 4, 5)
    job = m55_nn.Job()
    job.add("transpose", [2, 5, 4, 1, 1, 0, 1, 2, 3], [x2], x2.T.copy(), "arm_transpose_s8 rank 2 identity")
    job.add("transpose", [4, 2, 3, 4, 5, 0, 1, 2, 3], [x4], x4.transpose(0, 1, 3, 2).copy(),
            "arm_transpose_s8 rank 4 identity")
    job.add("transpose", [3, 3, 4, 5, 1, 0, 1, 2, 3], [x4[0]], x4[0].copy(), "arm_transpose_s8 rank 3 identity")
    check_ops(job, job.run(harness))


def test_cmsis_nn_per_channel_fc_with_filter_offset_uses_one_multiplier_per_4_channels(harness):
    """Characterises a CMSIS-NN bug outside its documented contract (fc_params->filter_offset: 0): the Helium path of
    arm_nn_vec_mat_mult_t_per_ch_s8 for filter_offset != 0 requantizes each block of 4 output channels with a single
    (multiplier, shift), block b taking channel b's and advancing one channel per block, and the remaining
    Cout % 4 channels take channel Cout // 4 + i's. Per-tensor FC (arm_fully_connected_s8) and per-channel with
    filter_offset 0 are right. It would matter for a QDQ model with non-zero weight zero points (the emulator
    supports them; TFLite int8 weights have none). If this test fails, CMSIS-NN changed: revisit."""
    from emu.kernels.backends import get_backend
    rng = np.random.default_rng(1)
    n, depth, cout, f_off = 2, 50, 27, 33
    inp, filt = _i8(rng, (n, depth)), _i8(rng, (cout, depth), -127)
    bias = rng.integers(-2000, 2000, cout).astype(np.int32)
    mult = rng.integers(1 << 30, (1 << 31) - 1, cout).astype(np.int32)
    shift = rng.integers(-10, -7, cout).astype(np.int32)
    rec = m55_nn.Recorder()
    out = np.zeros((n, cout), np.int8)
    rec.fully_connected_s8(inp, filt, bias, mult, shift, 128, f_off, 5, -128, 127, 0, out)
    with pytest.raises(ValueError, match="filter_offset 0 only"):
        m55_nn.Job().add_call(rec.calls[0])
    # the M55 result equals the emulator run with the multipliers the Helium path actually uses
    used = np.array([b // 4 for b in range(cout // 4 * 4)] + [cout // 4 + i for i in range(cout % 4)])
    as_m55 = np.zeros((n, cout), np.int8)
    get_backend("numba").fully_connected_s8(inp, filt, bias, np.ascontiguousarray(mult[used]),
                                            np.ascontiguousarray(shift[used]), 128, f_off, 5, -128, 127, 0, as_m55)
    job = m55_nn.Job()
    job.add("fc", (n, depth, cout, 128, f_off, 5, -128, 127, 1), [inp, filt, bias, mult, shift], as_m55,
            "arm_fully_connected_per_channel_s8 with filter_offset 33")
    job.add("fc", (n, depth, cout, 128, f_off, 5, -128, 127, 0), [inp, filt, bias, np.repeat(mult[:1], cout),
            np.repeat(shift[:1], cout)], _fc(inp, filt, bias, mult[:1], shift[:1], f_off, cout),
            "arm_fully_connected_s8 with filter_offset 33")
    check_ops(job, job.run(harness))
    assert not np.array_equal(as_m55, out)


def _fc(inp, filt, bias, mult, shift, f_off, cout):
    from emu.kernels.backends import get_backend
    out = np.zeros((inp.shape[0], cout), np.int8)
    get_backend("numba").fully_connected_s8(inp, filt, bias, np.repeat(mult, cout).astype(np.int32),
                                            np.repeat(shift, cout).astype(np.int32), 128, f_off, 5, -128, 127, 0,
                                            out)
    return out


def test_cmsis_nn_grouped_conv_without_bias_reads_a_bias_from_low_memory(harness):
    """Characterises a CMSIS-NN bug: arm_convolve_s8 with groups > 1 and a NULL bias (what TFLM passes for a conv
    without bias) advances the bias pointer per group (`bias_data_ptr += output_ch_per_group`), so group g >= 1
    reads its bias from address 4 * (g * Cout_per_group + i): on this image the vector table at 0x0 (on a board,
    whatever is mapped there, or a fault). Job.add_call passes zeros instead of NULL for grouped convs. If this test
    fails, CMSIS-NN changed: revisit."""
    from emu.kernels.backends import get_backend
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", "--only-section=.text", str(harness), d + "/t.bin"],
                       check=True)
        low_words = np.frombuffer(Path(d, "t.bin").read_bytes()[:1024], np.int32)
    rng = np.random.default_rng(3)
    groups, per_group, cin_g = 3, 4, 2
    cout, cin = groups * per_group, groups * cin_g
    x, w = _i8(rng, (1, 5, 5, cin)), _i8(rng, (cout, 3, 3, cin_g), -127)
    mult, shift = np.full(cout, 1 << 30, np.int32), np.full(cout, -9, np.int32)
    want = np.zeros((1, 5, 5, cout), np.int8)
    get_backend("numba").conv_s8(x, w, np.zeros(cout, np.int32), mult, shift, 0, 0, 1, 1, 1, 1, 1, 1, -128, 127, 0,
                                 want)
    read = np.array([0] * per_group + [low_words[g * per_group + i] for g in range(1, groups)
                                       for i in range(per_group)], np.int32)
    as_m55 = np.zeros_like(want)
    get_backend("numba").conv_s8(x, w, read, mult, shift, 0, 0, 1, 1, 1, 1, 1, 1, -128, 127, 0, as_m55)
    job = m55_nn.Job()
    params = (1, 5, 5, cin, cout, 3, 3, cin_g, 5, 5, 0, 0, 1, 1, 1, 1, 1, 1, -128, 127)
    for fn in (0, 1):
        job.add("conv", params + (fn,), [x, w, None, mult, shift], as_m55, f"conv fn {fn} with NULL bias")
    job.add("conv", params + (1,), [x, w, np.zeros(cout, np.int32), mult, shift], want, "conv with zero bias")
    check_ops(job, job.run(harness))
    assert not np.array_equal(as_m55, want) and np.array_equal(as_m55[..., :per_group], want[..., :per_group])

