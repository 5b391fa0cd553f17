#!/usr/bin/env python3
"""onnx_numpy.py -- a small numpy evaluation of an ONNX graph (float64), written for the tests
independently of valley: the ops `valley export` writes (Conv, BatchNormalization, Relu, MaxPool,
GlobalAveragePool, Flatten, Gemm, Add).

    run(path, x) -> the graph's output for the input x (N, C, H, W)
"""
import numpy as np
import onnx
from onnx import numpy_helper


def conv(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    co, ci, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    cols = np.empty((n, ci, k, k, ho, wo))
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]
    y = np.einsum("ncijhw,ocij->nohw", cols, w, optimize=True)
    return y + (b.reshape(1, -1, 1, 1) if b is not None else 0)


def run(path, x):
    m = onnx.load(path)
    g = m.graph
    v = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in g.initializer}
    v[g.input[0].name] = np.asarray(x, dtype=np.float64)
    for n in g.node:
        a = {at.name: onnx.helper.get_attribute_value(at) for at in n.attribute}
        i = [v[s] for s in n.input]
        if n.op_type == "Conv":
            assert a.get("group", 1) == 1 and list(a.get("dilations", [1, 1])) == [1, 1]
            p = a.get("pads", [0, 0, 0, 0])
            assert len(set(p)) == 1 and len(set(a["strides"])) == 1
            y = conv(i[0], i[1], i[2] if len(i) > 2 else None, a["strides"][0], p[0])
        elif n.op_type == "BatchNormalization":
            xx, s, b, mu, var = i
            sh = (1, -1, 1, 1)
            y = (xx - mu.reshape(sh)) / np.sqrt(var.reshape(sh) + a.get("epsilon", 1e-5)) * s.reshape(sh) + b.reshape(sh)
        elif n.op_type == "Relu":
            y = np.maximum(i[0], 0)
        elif n.op_type == "MaxPool":
            assert list(a["kernel_shape"]) == [2, 2] and list(a["strides"]) == [2, 2]
            xx = i[0]
            nn_, c, h, w = xx.shape
            xx = xx[:, :, :h // 2 * 2, :w // 2 * 2].reshape(nn_, c, h // 2, 2, w // 2, 2)
            y = xx.max(axis=(3, 5))
        elif n.op_type == "GlobalAveragePool":
            y = i[0].mean(axis=(2, 3), keepdims=True)
        elif n.op_type == "Flatten":
            assert a.get("axis", 1) == 1
            y = i[0].reshape(i[0].shape[0], -1)
        elif n.op_type == "Gemm":
            assert a.get("transB", 0) == 1 and a.get("transA", 0) == 0
            y = i[0] @ i[1].T + (i[2] if len(i) > 2 else 0)
        elif n.op_type == "Dropout":  # inference
            y = i[0]
        elif n.op_type == "Add":
            y = i[0] + i[1]
        else:
            raise ValueError(f"onnx_numpy: op {n.op_type} not implemented")
        v[n.output[0]] = y
    return v[g.output[0].name]
