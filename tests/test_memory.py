"""Activation arena: the memory plan (emu.graph.memory), the arena images (emu.arena) and `n6emu inspect --memory`.

Every plan is checked independently of the planner: lifetimes recomputed from the graph, and at every node index a
byte-ownership map of the live tensors (a reshape and the tensor it aliases may share bytes, nothing else)."""
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest

from emu import audio
from emu.arena import arena_files, arena_images, image_name, write_arena
from emu.cli import main
from emu.errors import N6Error
from emu.graph.ir import Graph, Node, Tensor
from emu.graph.memory import MemoryPlan, MemoryPlanError, plan_memory
from emu.models import ImportedModel, ModelSession, load_model
from tflite_builder import PAD, ModelBuilder, act_tensor, conv_weights

DATA = Path(__file__).resolve().parent.parent / "emu" / "data"
MODEL = DATA / "kws" / "model_qdq.onnx"
CLIP = DATA / "clips" / "yes.wav"


# ---- independent checks -----------------------------------------------------------------------------------

def expected_lifetimes(graph):
    """name -> (first, last): producer (0 for graph inputs), last reader (the last node for graph outputs)."""
    n = len(graph.nodes)
    first = {name: 0 for name in graph.inputs}
    last = {}
    for i, node in enumerate(graph.nodes):
        for name in node.inputs:
            if name is not None and not graph.tensors[name].is_constant:
                last[name] = i
        for name in node.outputs:
            first[name] = i
    return {name: (f, n - 1 if name in graph.outputs else last.get(name, f)) for name, f in first.items()}


def check_plan(graph, plan):
    """Brute force over node indices: alignment, bounds, lifetimes, no two live buffers sharing a byte, peak bounds."""
    names = [a for a in graph.activations() if not graph.tensors[a].is_constant]
    assert [p.name for p in plan] == names
    life = expected_lifetimes(graph)
    slot = lambda p: -(-p.size // plan.alignment) * plan.alignment
    for p in plan:
        t = graph.tensors[p.name]
        assert p.size == t.size * np.dtype(t.dtype).itemsize
        assert (p.first, p.last) == life[p.name], p.name
        assert p.offset % plan.alignment == 0, p.name
        assert p.offset + slot(p) <= plan.peak_bytes
    roots = {p.name: (p.alias_of or p.name) for p in plan}
    largest_live = 0
    for i in range(len(graph.nodes)):
        owner = np.full(plan.peak_bytes, -1, np.int64)
        live = [p for p in plan if p.first <= i <= p.last]
        for p in live:
            r = names.index(roots[p.name])
            region = owner[p.offset:p.offset + p.size]
            clash = region[(region != -1) & (region != r)]
            assert clash.size == 0, f"node {i}: {p.name} overlaps {names[int(clash[0])]}"
            region[:] = r
        buffers = {roots[p.name]: slot(p) for p in live}
        largest_live = max(largest_live, sum(buffers.values()))
    all_slots = {roots[p.name]: slot(p) for p in plan}
    assert largest_live <= plan.peak_bytes <= sum(all_slots.values())
    return largest_live


# ---- synthetic graphs ---------------------------------------------------------------------------------------

def act(name, shape, dtype=np.int8):
    return Tensor(name, tuple(shape), np.dtype(dtype), np.array([0.1], np.float32), np.array([0], np.int64))


def const(name, data):
    data = np.asarray(data)
    return Tensor(name, data.shape, data.dtype, data=data)


def graph_of(tensors, nodes, inputs, outputs):
    return Graph({t.name: t for t in tensors}, nodes, inputs, outputs, source="test")


def chain(n, size=100):
    """x -> a0 -> a1 -> ... -> a{n-1}: every activation `size` int8 bytes."""
    ts = [act("x", (1, size))] + [act(f"a{i}", (1, size)) for i in range(n)]
    nodes = [Node("add", f"n{i}", [ts[i].name], [ts[i + 1].name]) for i in range(n)]
    return graph_of(ts, nodes, ["x"], [ts[-1].name])


def random_graph(seed):
    """A random DAG in execution order: add/concat/conv2d (with weights)/reshape nodes, 1-3 inputs each."""
    rng = np.random.default_rng(seed)
    ts = [act("in0", (1, int(rng.integers(1, 300))))]
    acts, nodes = ["in0"], []
    for i in range(int(rng.integers(1, 25))):
        op = str(rng.choice(["add", "concat", "conv2d", "reshape"], p=[0.4, 0.2, 0.2, 0.2]))
        k = 1 if op in ("reshape", "conv2d") else int(rng.integers(1, 4))
        recent = acts[-4:] if rng.random() < 0.7 else acts
        ins = [str(rng.choice(recent)) for _ in range(k)]
        out = f"t{i}"
        if op == "reshape":
            n = ts[[t.name for t in ts].index(ins[0])].size
            shape = (1, n) if rng.random() < 0.5 else (n, 1)
        else:
            shape = (1, int(rng.integers(1, 300)))
        if op == "conv2d":
            w = const(f"w{i}", rng.integers(-127, 128, size=(shape[1], 1, 1, 1)).astype(np.int8))
            b = const(f"b{i}", np.zeros(shape[1], np.int32))
            ts += [w, b]
            ins += [w.name, b.name]
        ts.append(act(out, shape))
        nodes.append(Node(op, f"node{i}", ins, [out]))
        acts.append(out)
    outputs = [acts[-1]] + ([acts[len(acts) // 2]] if rng.random() < 0.5 and len(acts) > 2 else [])
    return graph_of(ts, nodes, ["in0"], list(dict.fromkeys(outputs)))


def residual_tflite_graph(seed=0):
    """conv -> pointwise conv -> add(residual) -> global avg pool -> reshape -> FC, as a TFLite int8 model."""
    from emu.graph.tflite import load_tflite
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    c = 8
    s_x = np.float32(0.1)
    x = act_tensor(b, rng, "x", (1, 10, 6, 1), scale=s_x)
    w1, b1 = conv_weights(b, rng, "c1", (c, 3, 3, 1), c, True, 0, s_x)
    t1 = act_tensor(b, rng, "t1", (1, 5, 3, c), scale=np.float32(0.2), zp=-128)
    b.op("CONV_2D", [x, w1, b1], [t1], padding=PAD["SAME"], stride_w=2, stride_h=2, fused_activation_function=1)
    w2, b2 = conv_weights(b, rng, "pw", (c, 1, 1, c), c, True, 0, np.float32(0.2))
    t2 = act_tensor(b, rng, "t2", (1, 5, 3, c), scale=np.float32(0.2), zp=-128)
    b.op("CONV_2D", [t1, w2, b2], [t2], padding=PAD["VALID"], stride_w=1, stride_h=1, fused_activation_function=1)
    t3 = act_tensor(b, rng, "t3", (1, 5, 3, c), scale=np.float32(0.3), zp=-128)
    b.op("ADD", [t2, t1], [t3], fused_activation_function=0)
    t4 = b.tensor("pool", (1, 1, 1, c), np.int8, np.float32(0.3), -128)
    b.op("AVERAGE_POOL_2D", [t3], [t4], padding=PAD["VALID"], stride_w=3, stride_h=5, filter_width=3,
         filter_height=5)
    shp = b.tensor("shape", (2,), np.int32, data=np.array([1, c], np.int32))
    t5 = b.tensor("flat", (1, c), np.int8, np.float32(0.3), -128)
    b.op("RESHAPE", [t4, shp], [t5], new_shape=[1, c])
    w6, b6 = conv_weights(b, rng, "fc", (4, c), 4, False, 0, np.float32(0.3))
    t6 = act_tensor(b, rng, "logits", (1, 4), scale=np.float32(0.2))
    b.op("FULLY_CONNECTED", [t5, w6, b6], [t6])
    return load_tflite(b.build([x], [t6]))


# ---- fixtures -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kws_graph():
    return load_model(MODEL)


@pytest.fixture(scope="module")
def kws_trace():
    from emu.device import Device
    info = audio.probe(str(CLIP))
    pcm = np.concatenate(list(audio.iter_blocks(info, 1 << 16)))
    return Device().trace(pcm, window=0)


def call(argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out, err)
    return code, out.getvalue(), err.getvalue()


# ---- plans --------------------------------------------------------------------------------------------------

def test_bundled_model_plan(kws_graph):
    plan = plan_memory(kws_graph)
    largest_live = check_plan(kws_graph, plan)
    # a chain of 30720-byte feature maps: two of them are live at every conv, and the planner reaches that bound
    assert largest_live == 2 * 30720
    assert plan.peak_bytes == 61440
    assert plan.activation_bytes == 280604 > plan.peak_bytes
    assert plan.alignment == 16 and plan["input"].offset == 0
    # Flatten's two reshapes keep the pooled vector's bytes: one buffer for the three tensors
    flat = plan["/Flatten_output_0_QuantizeLinear_Output"]
    assert flat.alias_of == "/pool/GlobalAveragePool_output_0_QuantizeLinear_Output"
    assert flat.offset == plan[flat.alias_of].offset


def test_bundled_model_weights(kws_graph):
    plan = plan_memory(kws_graph)
    consts = {n for node in kws_graph.nodes for n in node.inputs
              if n is not None and kws_graph.tensors[n].is_constant}
    by_dtype = {}
    for n in consts:
        d = kws_graph.tensors[n].data
        by_dtype[d.dtype.name] = by_dtype.get(d.dtype.name, 0) + d.nbytes
    assert plan.weights_by_dtype == by_dtype == {"int8": 22016, "int32": 2352}
    assert plan.weight_bytes == 24368
    # int32 multiplier + shift per output channel: 9 conv/depthwise layers of 64 channels, the FC's 12 outputs
    assert plan.requant_bytes == 8 * (9 * 64 + 12)


def test_plan_is_deterministic_and_json(kws_graph):
    a, b = plan_memory(kws_graph).to_dict(), plan_memory(load_model(MODEL)).to_dict()
    assert json.dumps(a) == json.dumps(b)
    assert a["peak_bytes"] == 61440 and len(a["tensors"]) == len(kws_graph.activations())
    assert a["tensors"][0] == dict(name="input", offset=0, size=1960, first=0, last=0, dtype="int8",
                                   shape=[1, 1, 40, 49], alias_of=None)


@pytest.mark.parametrize("alignment", [1, 4, 16, 64, 100])
def test_bundled_model_alignments(kws_graph, alignment):
    plan = plan_memory(kws_graph, alignment=alignment)
    check_plan(kws_graph, plan)
    assert plan.alignment == alignment


def test_reshape_aliasing_is_a_choice(kws_graph):
    plan = plan_memory(kws_graph, alias_reshapes=False)
    check_plan(kws_graph, plan)
    assert all(p.alias_of is None for p in plan)
    pool = plan["/pool/GlobalAveragePool_output_0_QuantizeLinear_Output"]
    mid = plan["/pool/GlobalAveragePool_output_0_QuantizeLinear_Output#21"]
    assert pool.offset != mid.offset       # live together at the reshape: distinct buffers


def test_chain_reuses_two_buffers():
    g = chain(8, size=100)
    plan = plan_memory(g)
    check_plan(g, plan)
    assert plan.peak_bytes == 2 * 112                      # 100 bytes -> a 112-byte slot
    assert {p.offset for p in plan} == {0, 112}
    assert plan.activation_bytes == 9 * 100


def test_greedy_rule_hand_computed():
    """Largest first, first fit over the placed buffers live at the same time (TFLite Micro's greedy rule)."""
    ts = [act("x", (100,)), act("b", (50,)), act("c", (30,)), act("d", (10,))]
    nodes = [Node("add", "n0", ["x"], ["b"]), Node("add", "n1", ["b"], ["c"]), Node("add", "n2", ["c"], ["d"])]
    g = graph_of(ts, nodes, ["x"], ["d"])
    plan = plan_memory(g, alignment=1)
    # x [0,0] at 0; b [0,1] beside x at 100; c [1,2] only meets b: the gap below b; d [2,2] only meets c: after it
    assert [(p.name, p.offset, p.first, p.last) for p in plan] == [
        ("x", 0, 0, 0), ("b", 100, 0, 1), ("c", 0, 1, 2), ("d", 30, 2, 2)]
    assert plan.peak_bytes == 150
    plan = plan_memory(g, alignment=16)
    assert [p.offset for p in plan] == [0, 112, 0, 32] and plan.peak_bytes == 176
    check_plan(g, plan)


def test_residual_branch_stays_live():
    g = residual_tflite_graph()
    plan = plan_memory(g)
    check_plan(g, plan)
    t1, t2, t3 = plan["t1"], plan["t2"], plan["t3"]
    assert (t1.first, t1.last) == (0, 2)        # read again by the add
    assert len({t1.offset, t2.offset, t3.offset}) == 3
    assert plan["flat"].alias_of == "pool"
    assert plan.weights_by_dtype["int32"] == 4 * (8 + 8 + 4) and plan.requant_bytes == 8 * (8 + 8 + 4)


@pytest.mark.parametrize("seed", range(40))
def test_random_graphs(seed):
    g = random_graph(seed)
    for alignment in (1, 8, 16):
        for alias in (True, False):
            plan = plan_memory(g, alignment=alignment, alias_reshapes=alias)
            check_plan(g, plan)
            assert plan.to_dict() == plan_memory(g, alignment=alignment, alias_reshapes=alias).to_dict()
            if not alias:
                assert all(p.alias_of is None for p in plan)


def test_verify_names_both_overlapping_tensors():
    g = chain(3, size=64)
    plan = plan_memory(g)
    a0, a1 = plan["a0"], plan["a1"]
    assert a0.offset != a1.offset and (a0.first, a0.last, a1.first, a1.last) == (0, 1, 1, 2)
    bad = [dataclasses.replace(p, offset=a0.offset) if p.name == "a1" else p for p in plan]
    clone = dict(nodes=plan.nodes, inputs=plan.inputs, outputs=plan.outputs, peak_bytes=plan.peak_bytes,
                 alignment=plan.alignment, alias_reshapes=plan.alias_reshapes, weight_bytes=0)
    with pytest.raises(MemoryPlanError, match=r"tensors 'a0' .* and 'a1' .* are live together and overlap"):
        MemoryPlan(tensors=bad, **clone).verify()
    skew = [dataclasses.replace(p, offset=8) if p.name == "x" else p for p in plan]
    with pytest.raises(MemoryPlanError, match=r"'x' is at offset 8, not a multiple of the 16-byte alignment"):
        MemoryPlan(tensors=skew, **clone).verify()


def test_plan_errors_are_one_line():
    g = chain(2)
    for bad in (0, -16, 1.5, True):
        with pytest.raises(N6Error, match="alignment .*positive number of bytes"):
            plan_memory(g, alignment=bad)
    g.nodes.reverse()
    with pytest.raises(N6Error, match=r"reads 'a0' before any node produces it.*execution order"):
        plan_memory(g)


# ---- arena images -------------------------------------------------------------------------------------------

def check_images(plan, trace, images, boundaries):
    assert len(images) == len(boundaries) == len(plan.nodes)
    for i, (img, b) in enumerate(zip(images, boundaries)):
        assert img.dtype == np.uint8 and img.shape == (plan.peak_bytes,)
        assert b["index"] == i and (b["node"], b["op"]) == plan.nodes[i]
        live = [p for p in plan if p.first <= i <= p.last]
        assert sorted(r["name"] for r in b["live"]) == sorted(p.name for p in live)
        for p in live:
            want = np.ascontiguousarray(trace[f"network/{p.name}"]).reshape(-1).view(np.uint8)
            got = img[p.offset:p.offset + p.size]
            assert np.array_equal(got, want), f"after node {i}: {p.name} at {p.offset} differs"


def test_bundled_model_arena_images(kws_graph, kws_trace):
    plan = plan_memory(kws_graph)
    images, boundaries = arena_images(plan, kws_trace)
    check_images(plan, kws_trace, images, boundaries)
    t = lambda name: np.ascontiguousarray(kws_trace[f"network/{name}"]).reshape(-1).view(np.uint8)
    # after node 0 only the input buffer and the transposed input were written: the rest is still zero
    img0 = images[0].copy()
    img0[0:1960] = 0
    img0[30720:30720 + 1960] = 0
    assert not img0.any()
    # after the classifier, dead regions keep stale bytes: the last feature maps beyond the 12 outputs / 64 pooled
    last = images[-1]
    assert np.array_equal(last[12:30720], t("/features/features.17/Relu_output_0_QuantizeLinear_Output")[12:])
    assert np.array_equal(last[30720 + 64:], t("/features/features.15/Relu_output_0_QuantizeLinear_Output")[64:])
    assert np.array_equal(last[:12], t("/classifier/Gemm_output_0_QuantizeLinear_Output"))


def test_residual_model_arena_images():
    g = residual_tflite_graph(seed=3)
    session = ModelSession(ImportedModel("residual.tflite", g))
    x = np.random.default_rng(1).integers(-128, 128, size=(1, 10, 6, 1)).astype(np.int8)
    trace = session.trace(x)
    for alias in (True, False):
        plan = plan_memory(g, alignment=8, alias_reshapes=alias)
        check_images(plan, trace, *arena_images(plan, trace))


def test_write_arena_is_byte_identical(kws_graph, kws_trace, tmp_path):
    from emu.device import Device
    plan = plan_memory(kws_graph)
    paths = write_arena(tmp_path / "a", plan, kws_trace, "yes_w0")
    assert paths == [f"arena/yes_w0_after_l{i:02d}.bin" for i in range(14)] + ["arena/yes_w0_map.json"]
    info = audio.probe(str(CLIP))
    trace2 = Device().trace(np.concatenate(list(audio.iter_blocks(info, 1 << 16))), window=0)
    assert write_arena(tmp_path / "b", plan_memory(load_model(MODEL)), trace2, "yes_w0") == paths
    write_arena(tmp_path / "a", plan, kws_trace, "yes_w0")          # rewrite in place
    for rel in paths:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert sorted(str(p.relative_to(tmp_path / "a")) for p in (tmp_path / "a").rglob("*") if p.is_file()) == \
        sorted(paths)
    images, _ = arena_images(plan, kws_trace)
    for i, img in enumerate(images):
        assert (tmp_path / "a" / image_name(plan, "yes_w0", i)).read_bytes() == img.tobytes()
    amap = json.loads((tmp_path / "a" / "arena" / "yes_w0_map.json").read_text())
    assert amap["arena_bytes"] == 61440 and amap["alignment"] == 16 and len(amap["boundaries"]) == 14
    assert amap["tensors"] == plan.to_dict()["tensors"]
    for b in amap["boundaries"]:
        assert (tmp_path / "a" / "arena" / b["file"]).stat().st_size == 61440
        for r in b["live"]:
            p = plan[r["name"]]
            assert (r["offset"], r["size"], r["dtype"], r["shape"]) == (p.offset, p.size, p.dtype, list(p.shape))


def test_arena_errors(kws_graph, kws_trace):
    plan = plan_memory(kws_graph)
    with pytest.raises(N6Error, match=r"arena prefix 'a/b'"):
        arena_files(plan, kws_trace, "a/b")
    other = plan_memory(chain(2))
    with pytest.raises(N6Error, match=r"no stage 'network/x'"):
        arena_images(other, kws_trace)
    g = residual_tflite_graph()
    trace = ModelSession(ImportedModel("r.tflite", g)).trace(np.zeros((1, 10, 6, 1), np.int8))
    wrong = graph_of([act("t1", (1, 7))], [], ["t1"], ["t1"])
    with pytest.raises(N6Error, match=r"'network/t1' holds int8 \[1, 5, 3, 8\] but the memory plan expects int8 "
                                      r"\[1, 7\]"):
        arena_images(plan_memory(wrong), trace)


def test_image_names_sort_for_long_graphs():
    plan = plan_memory(chain(120, size=4))
    assert image_name(plan, "c", 7) == "arena/c_after_l007.bin"
    assert image_name(plan_memory(chain(3)), "c", 2) == "arena/c_after_l02.bin"


# ---- CLI ----------------------------------------------------------------------------------------------------

def test_inspect_memory_lists_every_activation(kws_graph):
    code, out, err = call(["inspect", str(MODEL), "--memory"])
    assert code == 0 and err == ""
    lines = out.splitlines()
    plan = plan_memory(kws_graph)
    rows = {}
    for line in lines[3:3 + len(plan)]:
        offset, size, nodes, name = line.split(None, 3)
        rows[name.split("  (= ")[0]] = (int(offset), int(size), nodes)
    assert rows == {p.name: (p.offset, p.size, f"{p.first}-{p.last}") for p in plan}
    assert "peak arena 61440 bytes" in out and "weights 24368 bytes" in out
    assert "(all activations without reuse: 280604 bytes)" in out


def test_inspect_memory_align_and_errors():
    code, out, _ = call(["inspect", str(MODEL), "--memory", "--align", "64"])
    assert code == 0 and "64-byte alignment" in out
    offsets = [int(line.split()[0]) for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert offsets and all(o % 64 == 0 for o in offsets)
    code, out, err = call(["inspect", str(MODEL), "--align", "8"])
    assert code == 2 and out == "" and "give --memory too" in err and len(err.splitlines()) == 1
    code, out, err = call(["inspect", str(MODEL), "--memory", "--align", "0"])
    assert code == 2 and out == "" and "alignment 0" in err and len(err.splitlines()) == 1
