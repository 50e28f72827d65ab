"""ONNX graph rewrites that make ONNX Runtime's CPU kernels faster, with identical results.

``PRelu`` is not an activation ONNX Runtime can fuse into its blocked-layout (NCHWc) convolutions,
so every PRelu forces a layout conversion out of and back into the blocked format around it;
on MobileFaceNet and SFace that conversion costs more than the convolutions. Rewritten as

    PRelu(x, a) = a * x + (1 - a) * Relu(x)

each per-channel ``Mul`` becomes a 1x1 depthwise convolution and the ``Add`` a fused sum, all in
the blocked layout: 2-3x less CPU time per face, outputs equal to float rounding (~1e-6).
"""

from __future__ import annotations

import numpy as np


def rewrite_prelu(model) -> int:
    """Rewrite every PRelu with a constant slope in place; returns how many were rewritten."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: node for node in graph.node for o in node.output}

    def constant(name: str) -> np.ndarray | None:
        """The value of ``name`` if it is an initializer, a Constant, or an Identity of one."""
        for _ in range(8):
            if name in inits:
                return numpy_helper.to_array(inits[name])
            node = producers.get(name)
            if node is None:
                return None
            if node.op_type == "Constant":
                attr = next((a for a in node.attribute if a.name == "value"), None)
                return None if attr is None else numpy_helper.to_array(attr.t)
            if node.op_type != "Identity":
                return None
            name = node.input[0]
        return None

    nodes, n = [], 0
    for node in graph.node:
        a = constant(node.input[1]) if node.op_type == "PRelu" and len(node.input) == 2 else None
        if a is None:
            nodes.append(node)
            continue
        x, s = node.input
        y = node.output[0]
        a = a.astype(np.float32)
        one_minus = numpy_helper.from_array((1.0 - a).astype(np.float32), f"{y}__prelu_one_minus")
        graph.initializer.append(one_minus)
        p = f"{y}__prelu"
        nodes += [
            helper.make_node("Relu", [x], [p + "_relu"], name=p + "_relu"),
            helper.make_node("Mul", [x, s], [p + "_ax"], name=p + "_ax"),
            helper.make_node("Mul", [p + "_relu", one_minus.name], [p + "_bx"], name=p + "_bx"),
            helper.make_node("Add", [p + "_ax", p + "_bx"], [y], name=p + "_sum"),
        ]
        n += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return n


def optimized_model_bytes(path) -> bytes | None:
    """The model at ``path`` with the CPU rewrites applied, or None when nothing changes."""
    import onnx

    model = onnx.load(str(path))
    if rewrite_prelu(model) == 0:
        return None
    return model.SerializeToString()
