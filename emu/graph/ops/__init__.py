"""Op families, one module each, registered in one table.

Every family module has OPS (the IR op names it implements), a Params dataclass, prepare(graph, node, profile) ->
Params (all float math, once, under an emu.graph.profiles.ArithmeticProfile) and bind(params, node, inputs, out,
kernels) -> a no-argument callable running the layer on fixed arrays (inputs: the input arrays, constants included;
out: the output buffer; kernels: a backend namespace, emu.kernels.backends). A new op is a new module added to
FAMILIES (plus its importer rule and kernel). A family with STATEFUL = True (recurrent) also has new_state(params)
and its bind takes the runtime's state object and a reset flag (keywords state=, reset=).
"""
from ...errors import N6Error
from . import (elementwise, layout, matmul, pooling, prelu, quantize, recurrent, recurrent_onnx, reduce, softmax,
               unary, weighted)

FAMILIES = (weighted, pooling, softmax, elementwise, layout, unary, reduce, prelu, quantize, matmul, recurrent,
            recurrent_onnx)
REGISTRY = {op: fam for fam in FAMILIES for op in fam.OPS}


def family(node):
    """The family module of an IR node; a one-line error naming the op and layer when none implements it."""
    fam = REGISTRY.get(node.op)
    if fam is None:
        raise N6Error(f"op {node.op} (layer {node.name!r}) is not supported; supported ops: {', '.join(REGISTRY)}")
    return fam
