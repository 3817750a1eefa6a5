"""MLPerf Tiny KWS DS-CNN (kws_ref_model.tflite): every tensor equals tflite-micro's, batched runs agree."""
import numpy as np
import pytest

from emu.graph import Runtime, load_tflite
from tflite_builder import BACKEND_NAMES, load_backend

pytest.importorskip("tflite_micro",
                    reason='oracle unavailable: tflite-micro is not installed; pip install -e ".[test]"')
from emu.reference import TflmReference  # noqa: E402


@pytest.fixture(scope="module", params=[b for b in BACKEND_NAMES if b != "naive"])   # naive: too slow here
def kernels(request):
    if request.param == "c":
        request.getfixturevalue("c_kernels")   # skipped only when no C compiler can build emu._c_kernels
    return load_backend(request.param)


@pytest.fixture(scope="module")
def mlperf(mlperf_model):
    return load_tflite(mlperf_model), TflmReference(mlperf_model)


def mlperf_inputs(n_random, seed):
    """n_random uniform int8 inputs, then all -128, all 127, alternating extremes (both phases)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(n_random + 4, 1, 49, 10, 1)).astype(np.int8)
    alt = np.where(np.arange(490) % 2 == 0, -128, 127).astype(np.int8).reshape(1, 49, 10, 1)
    x[n_random], x[n_random + 1], x[n_random + 2], x[n_random + 3] = -128, 127, alt, -1 - alt
    return x


def assert_all_tensors_equal(mine, ref):
    assert len(mine) == 14   # input + 13 layer outputs
    for name, a in mine.items():
        b = ref[name].reshape(a.shape)
        bad = np.argwhere(a != b)
        assert bad.size == 0, (f"tensor {name!r}: {len(bad)} of {a.size} differ; first at (sample, N,H,W,C) "
                               f"{tuple(int(i) for i in bad[0])}: emu {a[tuple(bad[0])]} vs tflite-micro "
                               f"{b[tuple(bad[0])]}")


def test_mlperf_every_tensor_matches_tflm(kernels, mlperf):
    graph, ref = mlperf
    x = mlperf_inputs(100, seed=1)
    mine = Runtime(graph, backend=kernels).run_all(x)
    assert_all_tensors_equal(mine, ref.run_all(x, names=list(mine)))


@pytest.mark.slow
def test_mlperf_every_tensor_matches_tflm_1000(kernels, mlperf):
    graph, ref = mlperf
    rt = Runtime(graph, backend=kernels)
    for chunk in range(4):
        x = mlperf_inputs(250, seed=100 + chunk)
        mine = rt.run_all(x)
        assert_all_tensors_equal(mine, ref.run_all(x, names=list(mine)))


def test_mlperf_batch_gives_n_outputs_equal_to_single_runs(kernels, mlperf):
    graph, ref = mlperf
    rt = Runtime(graph, backend=kernels)
    x = mlperf_inputs(5, seed=7)
    y = rt.run(x)
    assert y.shape == (9, 1, 12) and y.dtype == np.int8
    for i in range(len(x)):
        single = rt.run(x[i])
        assert single.shape == (1, 12)
        assert np.array_equal(single, y[i])
        assert np.array_equal(single, ref.run(x[i]))
    # a batch given along the model's own batch axis ([N,49,10,1]) is the same batch
    assert np.array_equal(rt.run(x[:, 0]), y)
    assert rt.metadata["profile"] == "cmsis-nn" and rt.metadata["rounding"] == "double"


def test_mlperf_single_rounding_profile_is_recorded_and_differs(kernels, mlperf):
    graph, _ = mlperf
    x = mlperf_inputs(20, seed=3)
    double = Runtime(graph, backend=kernels).run_all(x)
    rt = Runtime(graph, backend=kernels, rounding="single")
    single = rt.run_all(x)
    assert rt.metadata["rounding"] == "single"
    first = graph.nodes[0].outputs[0]
    # single rounding changes some first-layer outputs (ties / double-rounding cases), not most of them
    diff = np.mean(double[first] != single[first])
    assert 0 < diff < 0.05


def test_mlperf_float_output_dequantizes_softmax(kernels, mlperf):
    graph, ref = mlperf
    x = mlperf_inputs(3, seed=11)
    rt = Runtime(graph, backend=kernels, float_output=True)
    p = rt.run(x)
    assert p.dtype == np.float32 and p.shape == (7, 1, 12)
    for i in range(len(x)):
        q = ref.run(x[i]).astype(np.int32)
        assert np.array_equal(p[i], ((q + 128) / 256).astype(np.float32))   # output scale 1/256, zp -128
    assert rt.metadata["float_output"] is True


def test_float_input_boundary_is_refused_for_int8_io(mlperf):
    graph, _ = mlperf
    from emu.errors import N6Error
    with pytest.raises(N6Error, match="inputs are int8 buffers; pass int8 input"):
        Runtime(graph, backend=object(), input_boundary="float32")
