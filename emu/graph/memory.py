"""Memory plan of an int8 graph: every activation at an offset in one arena, as a device would hold it.

    plan = plan_memory(graph, alignment=16, alias_reshapes=True)
    plan.peak_bytes, plan.weight_bytes, plan.requant_bytes, plan.state_bytes
    plan["input"].offset, plan.live_at(i)          # Placement records; the tensors live while node i runs
    plan.to_dict()                                 # JSON-ready

Lifetimes (node indices into graph.nodes, both ends inclusive, TFLite Micro's convention):
    first  the node producing the tensor; 0 for graph inputs (the application writes them before node 0 runs)
    last   the last node reading it; the last node for graph outputs (the application reads them after the run);
           `first` for a tensor nobody reads
A node's inputs and outputs are live together (no in-place kernels), so they never share bytes. Graph inputs and
outputs sit in the arena like every other activation (ST Edge AI places the I/O buffers at an offset in
the activation pool).

Reshape aliasing (alias_reshapes=True, the default): a reshape's output keeps its input's bytes (the IR's reshape
copies a C-order array unchanged, so the bytes are identical) and shares its buffer; the shared buffer lives from
the first member's `first` to the last member's `last`. This models a code generator that folds Reshape/Flatten
into a view of the same bytes (an assumption, not checked against ST's generated code); alias_reshapes=False gives
every reshape output its own buffer (a reshape kernel that copies, as TFLite Micro's does when the two buffers
differ).

Placement (deterministic; TFLite Micro's GreedyMemoryPlanner rule): each buffer takes a slot of its byte size
rounded up to `alignment`. Buffers are placed largest slot first (ties: the earlier tensor in
graph.activations() order first); each goes to the lowest offset where it fits: walking the already placed
buffers whose lifetimes overlap its own in order of offset, it takes the first gap between the end of the
previous ones and the next one that is at least its slot, else the end of the last one. Every offset is a
multiple of `alignment`; peak_bytes is the highest slot end. The builder then checks that no two simultaneously
live tensors (other than a reshape and the tensor it aliases) share a byte, and raises MemoryPlanError naming
both otherwise.

Constants: weight_bytes is the sum of the bytes of every constant a node reads, as stored (int8 weights, int32
biases, ...; weights_by_dtype splits it). requant_bytes counts, separately and NOT in weight_bytes, the prepared
per-output-channel requantization arrays of the fixed-point profiles: an int32 multiplier and an int32 shift per
output channel of every conv2d / depthwise_conv2d / fully_connected (the mult/shift arrays of emu's prepared
WeightedParams, as CMSIS-NN's per-channel kernels take them; a per-tensor fully connected layer is counted with one
pair per output as emu prepares it, where TFLite Micro keeps a single pair).

Recurrent state: state_bytes counts the variable tensors of the recurrent layers (SVDF, LSTM: node.attrs["state"]),
which live for the whole run outside the reused arena (TFLite Micro allocates them persistently).
"""
from dataclasses import dataclass, field

import numpy as np

from ..errors import N6Error

DEFAULT_ALIGNMENT = 16
REQUANT_OPS = ("conv2d", "depthwise_conv2d", "fully_connected")


class MemoryPlanError(N6Error):
    """A memory plan that would let two live tensors share bytes (a planner bug or a hand-made plan)."""


@dataclass(frozen=True)
class Placement:
    """One activation tensor in the arena: bytes [offset, offset + size), live from node `first` to node `last`
    (inclusive); `alias_of` names the tensor whose buffer a reshape output shares (None: its own buffer)."""
    name: str
    offset: int
    size: int
    first: int
    last: int
    dtype: str
    shape: tuple
    alias_of: str = None

    @property
    def end(self):
        return self.offset + self.size

    def live(self, i):
        return self.first <= i <= self.last

    def to_dict(self):
        return dict(name=self.name, offset=self.offset, size=self.size, first=self.first, last=self.last,
                    dtype=self.dtype, shape=list(self.shape), alias_of=self.alias_of)


@dataclass
class MemoryPlan:
    """The arena of one graph (see module doc). tensors: Placement records in graph.activations() order;
    nodes: (name, op) of every node in execution order (the lifetime indices); inputs/outputs: the graph's I/O
    tensor names."""
    tensors: list
    nodes: list
    inputs: list
    outputs: list
    peak_bytes: int
    alignment: int
    alias_reshapes: bool
    weight_bytes: int
    weights_by_dtype: dict = field(default_factory=dict)
    requant_bytes: int = 0
    state_bytes: int = 0

    def __post_init__(self):
        self._by_name = {p.name: p for p in self.tensors}

    def __getitem__(self, name):
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no activation {name!r} in this memory plan") from None

    def __contains__(self, name):
        return name in self._by_name

    def __iter__(self):
        return iter(self.tensors)

    def __len__(self):
        return len(self.tensors)

    @property
    def activation_bytes(self):
        """Sum of every activation's bytes (what an arena without reuse would need, before alignment)."""
        return sum(p.size for p in self.tensors)

    def buffer_of(self, name):
        """The tensor whose buffer `name` uses (itself unless it is an aliased reshape output)."""
        p = self[name]
        return p.name if p.alias_of is None else p.alias_of

    def produced_by(self, i):
        """Placements node i writes (its outputs), in activation order."""
        return [p for p in self.tensors if p.first == i and p.name not in self.inputs]

    def live_at(self, i):
        """Placements live while node i runs (and still intact right after it ran), by offset then name."""
        return sorted((p for p in self.tensors if p.live(i)), key=lambda p: (p.offset, p.name))

    def verify(self):
        """Raise MemoryPlanError unless every offset is aligned and no two tensors with overlapping lifetimes share
        a byte (a reshape output and the tensor it aliases excepted)."""
        for p in self.tensors:
            if p.offset % self.alignment:
                raise MemoryPlanError(f"tensor {p.name!r} is at offset {p.offset}, not a multiple of the "
                                      f"{self.alignment}-byte alignment")
            if p.end > self.peak_bytes:
                raise MemoryPlanError(f"tensor {p.name!r} ends at byte {p.end}, past the arena's "
                                      f"{self.peak_bytes} bytes")
        ps = sorted(self.tensors, key=lambda p: p.offset)
        for k, a in enumerate(ps):
            for b in ps[k + 1:]:
                if b.offset >= a.end:
                    break
                if b.size == 0 or a.size == 0 or self.buffer_of(a.name) == self.buffer_of(b.name):
                    continue
                if a.first <= b.last and b.first <= a.last:
                    raise MemoryPlanError(
                        f"tensors {a.name!r} (bytes {a.offset}-{a.end - 1}, nodes {a.first}-{a.last}) and "
                        f"{b.name!r} (bytes {b.offset}-{b.end - 1}, nodes {b.first}-{b.last}) are live together "
                        f"and overlap in the arena")
        return self

    def to_dict(self):
        return dict(alignment=self.alignment, alias_reshapes=self.alias_reshapes, peak_bytes=self.peak_bytes,
                    activation_bytes=self.activation_bytes, weight_bytes=self.weight_bytes,
                    weights_by_dtype=dict(self.weights_by_dtype), requant_bytes=self.requant_bytes,
                    state_bytes=self.state_bytes, nodes=[dict(index=i, name=n, op=op) for i, (n, op) in enumerate(self.nodes)],
                    inputs=list(self.inputs), outputs=list(self.outputs),
                    tensors=[p.to_dict() for p in self.tensors])


def _align_up(n, alignment):
    return -(-n // alignment) * alignment


def lifetimes(graph):
    """name -> (first, last) node indices of every activation (see module doc)."""
    names = [n for n in graph.activations() if not graph.tensors[n].is_constant]
    last_node = max(len(graph.nodes) - 1, 0)
    first = {n: 0 for n in graph.inputs}
    last = {}
    for i, node in enumerate(graph.nodes):
        for n in node.inputs:
            if n is None or graph.tensors[n].is_constant:
                continue
            if n not in first:
                raise N6Error(f"node {i} ({node.name!r}) reads {n!r} before any node produces it; the graph is "
                              f"not in execution order")
            last[n] = i
        for n in node.outputs:
            if n in first and n not in graph.inputs:
                raise N6Error(f"tensor {n!r} is produced twice (node {i}, {node.name!r}); the graph is not valid")
            first.setdefault(n, i)
    for n in names:
        if n not in first:
            raise N6Error(f"activation {n!r} is neither a graph input nor produced by a node")
        if n in graph.outputs:
            last[n] = last_node
        last.setdefault(n, first[n])
    return {n: (first[n], last[n]) for n in names}


def constant_bytes(graph):
    """(weight_bytes, bytes by dtype name, requant_bytes) of the constants the nodes read (see module doc)."""
    seen, by_dtype, requant = set(), {}, 0
    for node in graph.nodes:
        for n in node.inputs:
            if n is None or n in seen or not graph.tensors[n].is_constant:
                continue
            seen.add(n)
            t = graph.tensors[n]
            name = np.dtype(t.dtype).name
            by_dtype[name] = by_dtype.get(name, 0) + t.size * np.dtype(t.dtype).itemsize
        if node.op in REQUANT_OPS and len(node.inputs) > 1 and node.inputs[1] is not None:
            w = graph.tensors[node.inputs[1]]
            n_out = w.shape[3] if node.op == "depthwise_conv2d" else w.shape[0]
            requant += 8 * int(n_out)          # int32 multiplier + int32 shift per output channel
    by_dtype = dict(sorted(by_dtype.items()))
    return sum(by_dtype.values()), by_dtype, requant


def plan_memory(graph, alignment=DEFAULT_ALIGNMENT, alias_reshapes=True):
    """The verified MemoryPlan of `graph` (an emu.graph.ir.Graph in execution order); see the module doc for the
    lifetimes, the reshape aliasing and the placement rule."""
    if isinstance(alignment, bool) or not isinstance(alignment, (int, np.integer)) or alignment < 1:
        raise N6Error(f"alignment {alignment!r}: give a positive number of bytes (e.g. 16)")
    alignment = int(alignment)
    live = lifetimes(graph)
    order = list(live)
    size = {n: graph.tensors[n].size * np.dtype(graph.tensors[n].dtype).itemsize for n in order}

    root = {n: n for n in order}        # buffer owner of each tensor
    if alias_reshapes:
        for node in graph.nodes:
            if node.op != "reshape":
                continue
            src, dst = node.inputs[0], node.outputs[0]
            if src in root and dst in root and size[src] == size[dst] and \
                    np.dtype(graph.tensors[src].dtype) == np.dtype(graph.tensors[dst].dtype):
                root[dst] = root[src]

    # one buffer per root: slot, lifetime span, rank (activation order of the root, the tie-break)
    buffers = {}
    for rank, n in enumerate(order):
        r = root[n]
        f, l = live[n]
        if r not in buffers:
            buffers[r] = dict(rank=rank, slot=_align_up(size[n], alignment), first=f, last=l)
        else:
            b = buffers[r]
            b["first"], b["last"] = min(b["first"], f), max(b["last"], l)

    placed = []                           # (offset, slot, first, last)
    offset = {}
    for r in sorted(buffers, key=lambda r: (-buffers[r]["slot"], buffers[r]["rank"])):
        b = buffers[r]
        cand = 0
        for off, slot, f, l in sorted((p for p in placed if p[2] <= b["last"] and b["first"] <= p[3]),
                                      key=lambda p: p[0]):
            if off - cand >= b["slot"]:
                break
            cand = max(cand, off + slot)
        offset[r] = cand
        placed.append((cand, b["slot"], b["first"], b["last"]))

    peak = max((off + slot for off, slot, _, _ in placed), default=0)
    tensors = []
    for n in order:
        t = graph.tensors[n]
        tensors.append(Placement(name=n, offset=offset[root[n]], size=size[n], first=live[n][0], last=live[n][1],
                                 dtype=np.dtype(t.dtype).name, shape=tuple(int(d) for d in t.shape),
                                 alias_of=None if root[n] == n else root[n]))
    weight_bytes, by_dtype, requant = constant_bytes(graph)
    plan = MemoryPlan(tensors=tensors, nodes=[(node.name, node.op) for node in graph.nodes],
                      inputs=list(graph.inputs), outputs=list(graph.outputs), peak_bytes=peak,
                      alignment=alignment, alias_reshapes=bool(alias_reshapes), weight_bytes=weight_bytes,
                      weights_by_dtype=by_dtype, requant_bytes=requant, state_bytes=state_bytes(graph))
    return plan.verify()


def state_bytes(graph):
    """Bytes of the recurrent layers' variable tensors (see module doc)."""
    names = {n for node in graph.nodes for n in (node.attrs.get("state") or ())}
    return sum(graph.tensors[n].size * np.dtype(graph.tensors[n].dtype).itemsize for n in names)
