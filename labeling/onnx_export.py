"""A trained Carve network as an ONNX graph: embedding vector in, class scores out.

The graph repeats :meth:`learner.ReLUNetwork.scores` in float64 (the input is cast from
float32), so it matches Carve's own scores to rounding:

    Z = (E - mean) @ components          (when the campaign projects its embeddings)
    H = relu(Z @ W1[:, :-1].T + W1[:, -1])   (the bias feature folded into an offset)
    H = relu(H @ H_k.T)                  (each further hidden layer of a deeper network)
    scores = H @ W2                      (N, 1) binary: > 0 means the second class; (N, K)
    probabilities = [1 - p, p], p = sigmoid(scores / T + b)   binary, (N, 2)
    probabilities = softmax(scores / T)                       multi-class, (N, K)

The second output applies the version's calibration (docs/learner.md, "Calibration", eq. CAL):
the same calibrated probabilities as the API's predict.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import learner

OPSET = 17


def to_onnx(
    net: learner.ReLUNetwork,
    classes: list[str],
    doc: str = "",
    *,
    temperature: float = 1.0,
    bias: float = 0.0,
) -> bytes:
    """Serialized ONNX model with input ``embedding`` (float32, [N, n_raw]) and outputs
    ``scores`` (float64, [N, n_outputs]) and ``probabilities`` (float64, [N, n_classes]:
    eq. CAL with ``temperature`` and ``bias``); class names, T and b are in the metadata."""
    fm = net.feature_map
    W1 = np.asarray(net.W1, dtype=np.float64)
    W2 = np.asarray(net.W2, dtype=np.float64)
    weights = W1[:, :-1] if fm.bias else W1
    offset = W1[:, -1] if fm.bias else np.zeros(W1.shape[0])
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(weights.T), "W1"),
        numpy_helper.from_array(offset, "b1"),
        numpy_helper.from_array(np.ascontiguousarray(W2), "W2"),
    ]
    nodes = [helper.make_node("Cast", ["embedding"], ["E64"], to=TensorProto.DOUBLE)]
    z = "E64"
    if fm.components is not None:
        inits += [
            numpy_helper.from_array(np.asarray(fm.mean, dtype=np.float64), "mean"),
            numpy_helper.from_array(np.asarray(fm.components, dtype=np.float64), "components"),
        ]
        nodes += [
            helper.make_node("Sub", ["E64", "mean"], ["centred"]),
            helper.make_node("MatMul", ["centred", "components"], ["Z"]),
        ]
        z = "Z"
    nodes += [
        helper.make_node("MatMul", [z, "W1"], ["pre"]),
        helper.make_node("Add", ["pre", "b1"], ["pre_b"]),
        helper.make_node("Relu", ["pre_b"], ["H"]),
    ]
    h = "H"
    for i, layer in enumerate(net.hidden, start=2):  # deeper networks: relu(h H_k^T)
        inits.append(
            numpy_helper.from_array(np.ascontiguousarray(np.asarray(layer, np.float64).T), f"W{i}h")
        )
        nodes += [
            helper.make_node("MatMul", [h, f"W{i}h"], [f"pre{i}"]),
            helper.make_node("Relu", [f"pre{i}"], [f"H{i}"]),
        ]
        h = f"H{i}"
    nodes.append(helper.make_node("MatMul", [h, "W2"], ["scores"]))
    # Calibration (docs/learner.md, "Calibration", eq. CAL): divide by T before the link.
    inits += [
        numpy_helper.from_array(np.array(temperature, dtype=np.float64), "T"),
        numpy_helper.from_array(np.array(bias, dtype=np.float64), "b"),
    ]
    nodes += [
        helper.make_node("Div", ["scores", "T"], ["scaled"]),
        helper.make_node("Add", ["scaled", "b"], ["logits"]),
    ]
    if W2.shape[1] == 1:  # binary: [1 - p, p] with p = sigmoid(logits)
        inits.append(numpy_helper.from_array(np.array(1.0), "one"))
        nodes += [
            helper.make_node("Sigmoid", ["logits"], ["p1"]),
            helper.make_node("Sub", ["one", "p1"], ["p0"]),
            helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
        ]
    else:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
    n_probs = 2 if W2.shape[1] == 1 else W2.shape[1]
    graph = helper.make_graph(
        nodes,
        "carve_relu_network",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", fm.n_raw])],
        [
            helper.make_tensor_value_info("scores", TensorProto.DOUBLE, ["N", W2.shape[1]]),
            helper.make_tensor_value_info("probabilities", TensorProto.DOUBLE, ["N", n_probs]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="carve", doc_string=doc
    )
    model.ir_version = 8  # readable by onnxruntime releases from 1.13 on
    props = {"classes": ",".join(classes), "task": net.task.value}
    helper.set_model_props(model, {**props, "temperature": repr(temperature), "bias": repr(bias)})
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
