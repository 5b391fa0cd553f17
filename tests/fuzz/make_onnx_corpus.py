#!/usr/bin/env python3
"""make_onnx_corpus.py OUTDIR [SEEDDIR] -- malformed ONNX models for `valley import` (exit 2 each,
tests/sh/onnx_import.sh checks each message) and, in SEEDDIR, valid ones the fuzzer starts from.

Built with Debian's python3-onnx from a small valid network (conv-bn-relu-maxpool-flatten-gemm on
1x8x8 inputs), each file breaking one thing valley must refuse: see CASES.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def base(**kw):
    rng = np.random.default_rng(0)
    c = kw.get("channels", 4)
    inits = [numpy_helper.from_array(rng.standard_normal((c, 1, 3, 3)).astype(np.float32), "conv1.weight"),
             numpy_helper.from_array(np.ones(c, np.float32), "bn1.weight"),
             numpy_helper.from_array(np.zeros(c, np.float32), "bn1.bias"),
             numpy_helper.from_array(np.zeros(c, np.float32), "bn1.running_mean"),
             numpy_helper.from_array(np.ones(c, np.float32), "bn1.running_var"),
             numpy_helper.from_array(rng.standard_normal((3, c * 16)).astype(np.float32), "fc.weight"),
             numpy_helper.from_array(np.zeros(3, np.float32), "fc.bias")]
    conv_attrs = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    conv_attrs.update(kw.get("conv", {}))
    nodes = [helper.make_node("Conv", ["x", "conv1.weight"], ["c1"], name="/conv1/Conv", **conv_attrs),
             helper.make_node("BatchNormalization", ["c1", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"],
                              ["b1"], name="/bn1/BatchNormalization", epsilon=kw.get("eps", 1e-5)),
             helper.make_node(kw.get("act", "Relu"), ["b1"], ["r1"], name="/act"),
             helper.make_node("MaxPool", ["r1"], ["p1"], name="/pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p1"], ["f1"], name="/flatten", axis=1),
             helper.make_node("Gemm", ["f1", "fc.weight", "fc.bias"], ["y"], name="/fc/Gemm", transB=1)]
    shape = kw.get("shape", ["batch", 1, 8, 8])
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)] + kw.get("more_inputs", [])
    g = helper.make_graph(nodes, "net", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
                          initializer=inits)
    return helper.make_model(g, producer_name="make_onnx_corpus", opset_imports=[helper.make_opsetid("", 13)])


def drop_init(m, name):
    keep = [t for t in m.graph.initializer if t.name != name]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    return m


def huge_claim(m):
    t = m.graph.initializer[0]
    del t.dims[:]
    t.dims.extend([1 << 20, 1 << 20, 3, 3])  # 10^13 floats claimed by a few hundred bytes
    return m


def huge_bias(m):
    t = m.graph.initializer[6]
    del t.dims[:]
    t.dims.extend([1 << 40])  # 10^12 floats claimed by 12 bytes
    return m


def short_data(m):
    t = m.graph.initializer[5]
    t.raw_data = t.raw_data[:-4]
    return m


def nan_weight(m):
    a = numpy_helper.to_array(m.graph.initializer[0]).copy()
    a.flat[3] = np.nan
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(a, "conv1.weight"))
    return m


def double_weight(m):
    a = numpy_helper.to_array(m.graph.initializer[5]).astype(np.float64)
    m.graph.initializer[5].CopyFrom(numpy_helper.from_array(a, "fc.weight"))
    return m


def output_plane(m):
    m.graph.output[0].name = "r1"
    return m


def sequence_input(m):
    m.graph.input[0].CopyFrom(helper.make_tensor_sequence_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8]))
    return m


def cycle(m):
    m.graph.node[0].input[0] = "b1"  # the conv reads the batch norm's output, which is not made yet
    return m


CASES = {
    "not_protobuf.onnx": lambda: b"\xff\xff\xff\xff this is not a protobuf message",
    "empty.onnx": lambda: b"",
    "truncated.onnx": lambda: base().SerializeToString()[:300],
    "unsupported_op.onnx": lambda: base(act="Sigmoid"),
    "grouped_conv.onnx": lambda: base(conv=dict(group=2), channels=4),
    "dilated_conv.onnx": lambda: base(conv=dict(dilations=[2, 2])),
    "dynamic_shape.onnx": lambda: base(shape=["batch", 1, "height", 8]),
    "missing_initializer.onnx": lambda: drop_init(base(), "bn1.running_var"),
    "huge_weight.onnx": lambda: huge_claim(base()),
    "huge_tensor.onnx": lambda: huge_bias(base()),
    "short_data.onnx": lambda: short_data(base()),
    "nan_weight.onnx": lambda: nan_weight(base()),
    "double_weight.onnx": lambda: double_weight(base()),
    "bn_eps.onnx": lambda: base(eps=1e-3),
    "two_inputs.onnx": lambda: base(more_inputs=[helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3])]),
    "output_plane.onnx": lambda: output_plane(base()),
    "forward_reference.onnx": lambda: cycle(base()),
    "sequence_input.onnx": lambda: sequence_input(base()),
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, make in CASES.items():
        m = make()
        data = m if isinstance(m, bytes) else m.SerializeToString()
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    if len(sys.argv) > 2:
        os.makedirs(sys.argv[2], exist_ok=True)
        with open(os.path.join(sys.argv[2], "valid.onnx"), "wb") as f:
            f.write(base().SerializeToString())
    print(f"{len(CASES)} malformed ONNX files in {out}")


if __name__ == "__main__":
    main()
