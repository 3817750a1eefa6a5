"""The activation arena's bytes at every layer boundary, simulated from a memory plan and a network trace.

    plan = emu.graph.memory.plan_memory(graph)          # offsets, sizes, lifetimes (emu.graph.memory)
    images, boundaries = arena_images(plan, trace)       # images[i]: np.uint8[plan.peak_bytes] after node i ran
    files = arena_files(plan, trace, "yes_w0")           # {"arena/yes_w0_after_l00.bin": bytes, ...,
                                                         #  "arena/yes_w0_map.json": bytes}
    paths = write_arena(out_dir, plan, trace, "yes_w0")  # those files under out_dir; their relative paths

`trace` is an emu.trace.Trace of one run of the planned graph (emu.device.Device.trace,
emu.models.ModelSession.trace): every activation is its stage `network/<tensor name>`.

Simulation: the arena starts as plan.peak_bytes zero bytes (a static buffer in .bss). The graph inputs are written
at their offsets before node 0 (the application fills the input buffer); node i then writes its output tensor(s)
at their offsets and image i is a copy of the arena after that. Nothing is ever cleared: a region no live tensor
occupies keeps whatever was written there last (or zero), as on the device. A reshape output that aliases its
input (emu.graph.memory) rewrites the same bytes; they are checked to be identical.

Bytes: the trace's network/<tensor> arrays as the graph holds them internally (int8 NHWC in C order; for uint8
QDQ models the board value - 128, see emu.trace), each element little-endian.

boundaries[i] (JSON-ready) describes image i: index, node, op and `live`, the tensors live while node i runs
(MemoryPlan.live_at: the node's inputs and outputs and every tensor still needed later) with name, offset, size,
dtype, shape and alias_of. In image i the bytes [offset, offset + size) of each of them are exactly that tensor.

Files: `arena/<prefix>_after_l<ii>.bin` (image after node ii; the index zero-padded to two digits, more for graphs
of over 100 nodes so that names sort in execution order) and `arena/<prefix>_map.json` (format FORMAT: the arena
size, alignment, every placement and, per boundary, its file and live tensors). They are a pure function of the
plan and the trace: rerunning gives byte-identical files.
"""
import json
import os
import re

import numpy as np

from emu.errors import N6Error

FORMAT = "n6emu-arena-1"
INITIAL_FILL = 0


def _tensor_bytes(trace, p):
    stage = f"network/{p.name}"
    if stage not in trace:
        raise N6Error(f"the trace has no stage {stage!r}; give the trace of a run of the planned model "
                      f"(emu.device.Device.trace or emu.models.ModelSession.trace)")
    v = np.asarray(trace[stage])
    if v.dtype.name != p.dtype or v.size * v.dtype.itemsize != p.size:
        raise N6Error(f"trace stage {stage!r} holds {v.dtype.name} {list(v.shape)} but the memory plan expects "
                      f"{p.dtype} {list(p.shape)} ({p.size} bytes); the plan and the trace come from different models")
    return np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<")).reshape(-1).view(np.uint8)


def arena_images(plan, trace):
    """(images, boundaries): images[i] is the arena (np.uint8[plan.peak_bytes]) right after node i ran and
    boundaries[i] the JSON-ready record of its live tensors (see module doc)."""
    arena = np.full(plan.peak_bytes, INITIAL_FILL, np.uint8)
    for name in plan.inputs:        # the application fills the input buffer(s) before node 0
        p = plan[name]
        arena[p.offset:p.end] = _tensor_bytes(trace, p)
    images, boundaries = [], []
    for i, (node, op) in enumerate(plan.nodes):
        for p in plan.produced_by(i):
            data = _tensor_bytes(trace, p)
            if p.alias_of is not None and not np.array_equal(arena[p.offset:p.end], data):
                raise N6Error(f"tensor {p.name!r} shares the buffer of {p.alias_of!r} but the trace holds other "
                              f"bytes for it; plan the graph with alias_reshapes=False")
            arena[p.offset:p.end] = data
        images.append(arena.copy())
        boundaries.append(dict(index=i, node=node, op=op,
                               live=[dict(name=p.name, offset=p.offset, size=p.size, dtype=p.dtype,
                                          shape=list(p.shape), alias_of=p.alias_of) for p in plan.live_at(i)]))
    return images, boundaries


def image_name(plan, prefix, i):
    """The relative path of image i: arena/<prefix>_after_l<ii>.bin."""
    width = max(2, len(str(max(len(plan.nodes) - 1, 0))))
    return f"arena/{prefix}_after_l{i:0{width}d}.bin"


def arena_files(plan, trace, prefix):
    """Relative path -> bytes of every arena file of one trace (images in node order, then the map)."""
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", prefix):
        raise N6Error(f"arena prefix {prefix!r}: use letters, digits, '_', '-' and '.' (e.g. the case name yes_w0)")
    images, boundaries = arena_images(plan, trace)
    files = {}
    for i, (img, b) in enumerate(zip(images, boundaries)):
        b["file"] = os.path.basename(image_name(plan, prefix, i))
        files[image_name(plan, prefix, i)] = img.tobytes()
    amap = dict(format=FORMAT, prefix=prefix, arena_bytes=plan.peak_bytes, alignment=plan.alignment,
                alias_reshapes=plan.alias_reshapes, initial_fill=INITIAL_FILL,
                values="the graph's internal int8 NHWC values (trace stages network/<tensor>), C order, "
                       "little-endian; an image is the arena right after its node ran, unwritten bytes keep "
                       "their last value",
                inputs=list(plan.inputs), outputs=list(plan.outputs),
                tensors=[p.to_dict() for p in plan.tensors], boundaries=boundaries)
    files[f"arena/{prefix}_map.json"] = (json.dumps(amap, indent=1) + "\n").encode("utf-8")
    return files


def write_arena(out_dir, plan, trace, prefix):
    """Write arena_files(plan, trace, prefix) under out_dir (each file atomically); returns their relative paths
    ('/'-separated, in write order: the images by node, then the map)."""
    from emu.outputs import atomic_path
    files = arena_files(plan, trace, prefix)
    for rel, data in files.items():
        with atomic_path(os.path.join(out_dir, *rel.split("/"))) as tmp, open(tmp, "wb") as f:
            f.write(data)
    return list(files)


def compare_dump(dump, map_path, after_layer, offset=0):
    """A board's arena memory dump (bytes, e.g. a debugger's `dump binary memory` of the arena taken after layer
    `after_layer` ran) against the expected image of a map written by write_arena / `n6emu vectors --arena`:
    one record per tensor live at that boundary with name, offset, size, n_differ and the first mismatch (flat
    index in the tensor, NHWC position, expected and board value as int8), plus the differing bytes outside every
    live tensor (stale regions: informative, the device need not match them). `offset`: where the arena starts in
    the dump."""
    try:
        with open(map_path, encoding="utf-8") as f:
            amap = json.load(f)
    except (OSError, ValueError) as exc:
        raise N6Error(f"{map_path}: not a readable arena map ({exc.__class__.__name__}); give the "
                      f"arena/<case>_map.json written by `n6emu vectors --arena`") from None
    if amap.get("format") != FORMAT:
        raise N6Error(f"{map_path}: not an arena map of format {FORMAT}; regenerate it with `n6emu vectors --arena`")
    bounds = amap["boundaries"]
    if not 0 <= after_layer < len(bounds):
        raise N6Error(f"--after-layer {after_layer}: the graph has layers 0..{len(bounds) - 1}")
    size = amap["arena_bytes"]
    board = np.frombuffer(bytes(dump), np.int8)
    if offset < 0 or board.size < offset + size:
        raise N6Error(f"the dump holds {board.size} bytes but the arena needs {size} bytes at offset {offset}; dump "
                      f"the whole arena (its start address to start + {size})")
    board = board[offset:offset + size]
    b = bounds[after_layer]
    with open(os.path.join(os.path.dirname(map_path), b["file"]), "rb") as f:
        want = np.frombuffer(f.read(), np.int8)
    covered = np.zeros(size, bool)
    out = []
    for t in b["live"]:
        lo, hi = t["offset"], t["offset"] + t["size"]
        covered[lo:hi] = True
        diff = np.flatnonzero(board[lo:hi] != want[lo:hi])
        rec = dict(name=t["name"], offset=lo, size=t["size"], shape=t["shape"], n_differ=int(diff.size), first=None)
        if diff.size:
            i = int(diff[0])
            itemsize = np.dtype(t["dtype"]).itemsize
            rec["first"] = dict(index=i // itemsize, position=[int(v) for v in np.unravel_index(i // itemsize,
                                                                                              t["shape"])],
                                expected=int(want[lo + i]), board=int(board[lo + i]))
        out.append(rec)
    stale = int(np.count_nonzero((board != want) & ~covered))
    return dict(after_layer=after_layer, node=b["node"], op=b["op"], tensors=out, stale_bytes_differ=stale)
