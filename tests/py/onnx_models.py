#!/usr/bin/env python3
"""tests/py/onnx_models.py DIR DATA NAME... — PyTorch networks exported to ONNX for `valley import`.

For each NAME (resnet20, resnet8noshort, preresnet20, vgg16, convnet, mlp) the network of
tests/py/torch_ref.py (written independently of valley) is built with random weights and
random batch-norm statistics (seed 0), put in eval mode and exported with
torch.onnx.export(training=TrainingMode.PRESERVE) -- batch norm stays a layer -- and a
symbolic batch size, as a user exports a trained model: DIR/NAME.onnx. Its logits on the first
64 test images of DATA (valley's NetCDF dataset, normalised as valley normalises them) go to
DIR/NAME.logits.npy.
"""
import os
import sys
import warnings

import numpy as np
import torch
from netCDF4 import Dataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref as R  # noqa: E402

NETS = {
    "resnet20": lambda c, h, k: R.ResNet(20, c, k, wf=0.5),
    "resnet8noshort": lambda c, h, k: R.ResNet(8, c, k, wf=0.5, shortcuts=False),
    "resnet56": lambda c, h, k: R.ResNet(56, c, k, wf=0.25),  # > 600 ONNX values: the importer's tables grow
    "preresnet20": lambda c, h, k: R.PreResNet(20, c, k, wf=0.5),
    "vgg16": lambda c, h, k: R.VGG(16, c, h, k, wf=0.25),
    "convnet": lambda c, h, k: R.ConvNet(c, h, h, k),
    "mlp": lambda c, h, k: R.MLP(c * h * h, [64, 32], k),
}


def images(path, n=64):
    with Dataset(path) as d:
        x = np.asarray(d["test_x"][:n], dtype=np.float64)
        c = int(d.getncattr("channels")) if "channels" in d.ncattrs() else 1
        if x.ndim == 2:
            s = int(round((x.shape[1] / c) ** 0.5))
            x = x.reshape(n, c, s, s)
        scale = float(d.pixel_scale)
        mean = np.asarray(d.pixel_mean, dtype=np.float64).reshape(-1, 1, 1)
        std = np.asarray(d.pixel_std, dtype=np.float64).reshape(-1, 1, 1)
    return ((x * scale - mean) / std).astype(np.float32)


def main():
    out, data, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    x = torch.tensor(images(data))
    _, c, h, _ = x.shape
    for name in names:
        torch.manual_seed(0)
        m = NETS[name](c, h, 10)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.running_mean.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
                    mod.running_var.copy_(0.5 + torch.rand(mod.num_features, generator=g))
                    mod.weight.copy_(0.5 + torch.rand(mod.num_features, generator=g))
                    mod.bias.copy_(0.4 * torch.rand(mod.num_features, generator=g) - 0.2)
        m.eval()
        with torch.no_grad():
            ref = m(x).numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(m, x[:2], os.path.join(out, name + ".onnx"), opset_version=13,
                              training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                              input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "batch"}})
        np.save(os.path.join(out, name + ".logits.npy"), ref)
        print(f"{name}: exported, logits max |{np.abs(ref).max():.3g}|")


if __name__ == "__main__":
    main()
