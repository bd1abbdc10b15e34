"""What a model is, as the runtime sees it: XNNPACK delegation, activation and weight memory.

XNNPACK: a delegate replaces the ops it takes with one ``DELEGATE`` node in the interpreter's op list; without
an explicit delegate the only one the CPU runtime applies is XNNPACK. The ops it took are found by walking
back from each delegate node's outputs to its inputs. (LiteRT also logs "Created TensorFlow Lite XNNPACK
delegate for CPU", but only once per process, so the log is kept as evidence, not used as the test.)

Memory: the runtime does not expose its arena size, so it is computed from the op graph: ``activation_peak``
is the most bytes of intermediate tensors alive at once when the ops run in order, what any arena must hold
(TFLite's planner shares memory the same way, then adds per-op scratch buffers; XNNPACK keeps the tensors of
its partition in a workspace of its own). ``weights`` are the constant tensors, mapped from the file.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

DELEGATE = "DELEGATE"


def ops_of(interpreter: Any) -> list[dict[str, Any]] | None:
    """The interpreter's ops (name, input and output tensor indices) in model order; None if not exposed."""
    details = getattr(interpreter, "_get_ops_details", None)
    return list(details()) if details is not None else None


def delegation(ops: list[dict[str, Any]] | None, log: list[str]) -> dict[str, Any]:
    """Whether XNNPACK runs the model, how many partitions, and which ops stay on the builtin kernels."""
    logged = any("XNNPACK delegate" in line for line in log)
    if ops is None:
        return {"in_use": logged, "how": "runtime log", "log": log}
    nodes = [op for op in ops if op["op_name"] == DELEGATE]
    model_ops = [op for op in ops if op["op_name"] != DELEGATE]
    taken = delegated_ops(model_ops, nodes)
    left = Counter(op["op_name"] for i, op in enumerate(model_ops) if i not in taken)
    return {"in_use": bool(taken), "how": "DELEGATE nodes in the op list", "partitions": len(nodes),
            "ops": len(model_ops), "delegated_ops": len(taken), "not_delegated": dict(sorted(left.items())),
            "log": log}


def delegated_ops(model_ops: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> set[int]:
    """Indices of the model ops that the delegate nodes replaced."""
    producer = {int(t): i for i, op in enumerate(model_ops) for t in op["outputs"]}
    taken: set[int] = set()
    for node in nodes:
        boundary = {int(t) for t in node["inputs"]}
        pending = [int(t) for t in node["outputs"]]
        while pending:
            tensor = pending.pop()
            op = producer.get(tensor)
            if tensor in boundary or op is None or op in taken:
                continue
            taken.add(op)
            pending.extend(int(t) for t in model_ops[op]["inputs"] if t >= 0)
    return taken


def memory(interpreter: Any, ops: list[dict[str, Any]] | None) -> dict[str, int | None]:
    """Bytes of the activation peak, of all activations, and of the weights (see the module docstring)."""
    sizes = {d["index"]: int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize
             for d in interpreter.get_tensor_details()}
    if ops is None:
        return {"activation_peak_bytes": None, "activation_total_bytes": None, "weight_bytes": None}
    model_ops = [op for op in ops if op["op_name"] != DELEGATE]
    inputs = [d["index"] for d in interpreter.get_input_details()]
    outputs = {d["index"] for d in interpreter.get_output_details()}
    born = {t: -1 for t in inputs} | {int(t): i for i, op in enumerate(model_ops) for t in op["outputs"]}
    last = {t: len(model_ops) if t in outputs else born[t] for t in born}
    for i, op in enumerate(model_ops):
        for t in (int(t) for t in op["inputs"] if int(t) in born):
            last[t] = max(last[t], i)
    live = [sum(sizes.get(t, 0) for t in born if born[t] <= step <= last[t]) for step in range(len(model_ops))]
    weights = {int(t) for op in model_ops for t in op["inputs"] if t >= 0} - set(born)
    return {"activation_peak_bytes": max(live, default=0),
            "activation_total_bytes": sum(sizes.get(t, 0) for t in born),
            "weight_bytes": sum(sizes.get(t, 0) for t in weights)}
