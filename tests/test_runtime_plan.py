"""Runtime plan mechanics with a recording test-double backend: buffers allocated once per batch size,
batch folding vs sample-by-sample execution, copies returned, inputs routed by name."""
import types

import numpy as np
import pytest

from emu.errors import N6Error
from emu.graph import Runtime, load_tflite
from tflite_builder import ModelBuilder


def recording_backend():
    """Transpose/pad/maxpool doubles built on numpy, recording the `out` buffer of every call."""
    calls = []

    def transpose_s8(inp, perm, out):
        calls.append(("transpose", out))
        out[...] = np.transpose(inp, [int(p) for p in perm])

    def pad_s8(inp, before, value, out):
        calls.append(("pad", out))
        out[...] = value
        out[tuple(slice(int(b), int(b) + n) for b, n in zip(before, inp.shape))] = inp

    return types.SimpleNamespace(transpose_s8=transpose_s8, pad_s8=pad_s8), calls


def pad_transpose_model(perm):
    b = ModelBuilder()
    s, zp = np.float32(0.1), 5
    x = b.tensor("x", (1, 2, 3, 4), np.int8, s, zp)
    pads = b.tensor("pads", (4, 2), np.int32, data=np.array([[0, 0], [1, 0], [0, 2], [0, 0]], np.int32))
    y = b.tensor("padded", (1, 3, 5, 4), np.int8, s, zp)
    b.op("PAD", [x, pads], [y])
    pt = b.tensor("perm", (4,), np.int32, data=np.array(perm, np.int32))
    z = b.tensor("z", tuple((1, 3, 5, 4)[p] for p in perm), np.int8, s, zp)
    b.op("TRANSPOSE", [y, pt], [z])
    return load_tflite(b.build([x], [z]))


def expected(x, perm):
    p = np.pad(x.astype(np.int16), [(0, 0), (1, 0), (0, 2), (0, 0)], constant_values=5).astype(np.int8)
    return np.transpose(p, perm)


def test_buffers_are_planned_once_per_batch_size():
    k, calls = recording_backend()
    rt = Runtime(pad_transpose_model([0, 2, 1, 3]), backend=k)
    assert rt.batch_folds
    x = np.arange(3 * 24, dtype=np.int64).astype(np.int8).reshape(3, 1, 2, 3, 4)
    y1 = rt.run(x)
    first = [id(o) for _, o in calls]
    calls.clear()
    y2 = rt.run(x[::-1].copy())
    assert [id(o) for _, o in calls] == first        # same preallocated buffers, one call per layer
    assert len(first) == 2                            # batch of 3 folded into one kernel call per layer
    for i in range(3):
        assert np.array_equal(y1[i], expected(x[i], [0, 2, 1, 3]))
        assert np.array_equal(y2[i], expected(x[2 - i], [0, 2, 1, 3]))
    y1[...] = 0                                       # results are copies, not views of the plan
    assert np.array_equal(rt.run(x)[0], expected(x[0], [0, 2, 1, 3]))


def test_graph_moving_the_batch_axis_runs_sample_by_sample():
    k, calls = recording_backend()
    rt = Runtime(pad_transpose_model([1, 0, 2, 3]), backend=k)
    assert not rt.batch_folds
    x = np.random.default_rng(0).integers(-128, 128, size=(4, 1, 2, 3, 4)).astype(np.int8)
    everything = rt.run_all(x)
    assert len(calls) == 8                            # 2 layers x 4 samples
    assert list(everything) == ["x", "padded", "z"]
    for i in range(4):
        assert np.array_equal(everything["z"][i], expected(x[i], [1, 0, 2, 3]))
        assert np.array_equal(everything["x"][i], x[i])
    single = rt.run_all(x[1])
    assert single["z"].shape == (3, 1, 5, 4) and np.array_equal(single["z"], everything["z"][1])


def test_inputs_by_name_and_count_checks():
    k, _ = recording_backend()
    rt = Runtime(pad_transpose_model([0, 2, 1, 3]), backend=k)
    x = np.zeros((1, 2, 3, 4), np.int8)
    assert np.array_equal(rt.run({"x": x}), rt.run([x]))
    with pytest.raises(N6Error, match=r"missing model input\(s\) \['x'\]"):
        rt.run({"y": x})
    with pytest.raises(N6Error, match=r"has 1 input\(s\)"):
        rt.run([x, x])
