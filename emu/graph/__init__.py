"""Integer graph: IR (ir.py), importers (tflite.py), profile prepare (prepare.py), runtime (runtime.py)."""
from .ir import OPS, Graph, Node, Tensor, inspect_graph, node_macs
from .prepare import PROFILES, Prepared, prepare
from .runtime import Runtime
from .tflite import load_tflite

__all__ = ["OPS", "Graph", "Node", "Tensor", "inspect_graph", "node_macs", "PROFILES", "Prepared", "prepare",
           "Runtime", "load_tflite"]
