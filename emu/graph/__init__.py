"""Integer graph: IR (ir.py), importers (tflite.py), profile prepare (prepare.py), runtime (runtime.py)."""
from .ir import Graph, Node, Tensor, inspect_graph, node_macs
from .prepare import Prepared, prepare
from .profiles import PROFILES, ArithmeticProfile, Requantizer, register, resolve
from .runtime import Runtime
from .ops import REGISTRY as OP_FAMILIES
from .tflite import load_tflite

OPS = tuple(OP_FAMILIES)   # every IR op name the runtime executes

__all__ = ["OPS", "Graph", "Node", "Tensor", "inspect_graph", "node_macs", "PROFILES", "ArithmeticProfile",
           "Requantizer", "register", "resolve", "Prepared", "prepare",
           "Runtime", "load_tflite"]
