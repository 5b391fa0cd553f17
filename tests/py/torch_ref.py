#!/usr/bin/env python3
"""PyTorch reference for valley's networks, used by tests/unit/test_torch.c.

Usage: torch_ref.py DIR FAMILY --input CxHxW --out K [--widths 32,16] [--depth 8]
                    --batch N --steps S [--candidates C --margin M]
                    --lr LR --momentum MOM --wd WD [--loss ce|gauss]

FAMILY is mlp, convnet, preresnet, resnet, vgg or wideresnet (options --width-factor F, --widen K,
--shortcuts 0|1, --bn 0|1 as model.width_factor, model.widen, model.shortcuts, model.bn). The network is written out below as
ordinary PyTorch modules, independently of valley's layers (src/graph.c, layers.c, passes.c); its tensor names are
the module paths with '.' replaced by '_' (layer1.0.bn1.weight ->
layer1_0_bn1_weight), which is valley's naming.

Inputs in DIR (written by the C test; raw little-endian):
    manifest.txt   one line per tensor: name kind(param|state) ndim shape... offset
    params.f32     the flat parameter vector w0
    state.f32      the flat BN state (running mean/var) at the start
    evalstate.f32  a BN state used only for the eval-mode forward
    x.f32          S*C minibatches (S, C, N, channels, H, W): C candidates per step
    y.i32          labels (S, C, N)                 [--loss ce]
    t.f32          regression targets (S, C, N, D)  [--loss gauss; out K = 2D]

Smooth pieces. ReLU and max-pool make the gradient jump where a decision
changes. fp32 rounding (different summation orders here and in valley) moves
pre-activations by up to a few 1e-6, so a decision closer than that to its
kink may go either way, changing the gradient by one activation's share and
sending the two trajectories apart. So at each step the first candidate
minibatch whose decisions are all at least M from their kink (in a float64
copy of the network at the current weights) is used; margins: |x| for a ReLU
input, the gap between the two largest of {0, x1..x4} for relu+max-pool.

Outputs in DIR (float32 unless said):
    eval_logits.f32   model.eval() forward of candidate 0 of step 0, w0 and evalstate
    logits.f32        train-mode forward of step 0's minibatch with w0 and state
    grads.f32         gradient of its mean loss, flat in the manifest's order
    state1.f32        BN running statistics after that forward, manifest order
    losses.f64        the loss of each of the S steps (step 0 = the one above)
    traj.f32          parameters after each step (S, nparams), manifest order
    final_state.f32   BN state after the S steps
    chosen.i32        the minibatch used at each step (index into the S*C)
    margins.f64       its kink margin (< M when no candidate reached M)
and on stdout "key value" lines: order_ok (1 when the manifest lists the
parameters and buffers in PyTorch's registration order), nparams, nstate,
rejected (candidates passed over), min_margin.

Training: torch.optim.SGD(lr, momentum, weight_decay), loss F.cross_entropy
(mean) or the heteroscedastic Gaussian NLL (mean over samples of the sum over
D; variance softplus(s) + 1e-6, via F.gaussian_nll_loss with full=True).
float32 throughout, one thread. Exits 3 when torch cannot be imported, 2 on a
manifest that does not match the network.
"""
import argparse
import copy
import os
import sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # the C test turns this into a failure
    print(f"torch_ref.py: {e}; install Debian's python3-torch (and python3-numpy)", file=sys.stderr)
    sys.exit(3)

BN_EPS, BN_MOMENTUM = 1e-5, 0.1


class Kinks:
    """Smallest distance of any ReLU / max-pool decision of a forward from its
    kink, recorded while `active` (used on a float64 copy of the network)."""
    active = False
    margin = float("inf")

    @classmethod
    def start(cls):
        cls.active, cls.margin = True, float("inf")

    @classmethod
    def stop(cls):
        cls.active = False
        return cls.margin


def relu(x):
    if Kinks.active and x.numel():
        Kinks.margin = min(Kinks.margin, x.detach().abs().min().item())
    return F.relu(x)


def relu_maxpool2(x):
    """max_pool2d(relu(x), 2): each output picks the largest of {0, x1..x4};
    its margin is the gap between the two largest of that set."""
    if Kinks.active and x.numel():
        n, c, h, w = x.shape
        win = x.detach()[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
        win = win.permute(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
        cand = torch.cat([win, torch.zeros_like(win[..., :1])], dim=-1)
        top = cand.topk(2, dim=-1).values
        Kinks.margin = min(Kinks.margin, (top[..., 0] - top[..., 1]).min().item())
    return F.max_pool2d(F.relu(x), 2)


def bn(c):
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class MLP(nn.Module):
    def __init__(self, in_dim, widths, out):
        super().__init__()
        dims = [in_dim] + list(widths) + [out]
        self.nlayers = len(dims) - 1
        for i in range(self.nlayers):
            setattr(self, f"fc{i + 1}", nn.Linear(dims[i], dims[i + 1]))

    def forward(self, x):
        x = x.flatten(1)
        for i in range(self.nlayers):
            x = getattr(self, f"fc{i + 1}")(x)
            if i + 1 < self.nlayers:
                x = relu(x)
        return x


class ConvNet(nn.Module):
    """conv3x3(32,pad1)-BN-ReLU-maxpool2, conv3x3(64,pad1)-BN-ReLU-maxpool2, fc(->128)-ReLU, fc."""

    def __init__(self, c, h, w, out):
        super().__init__()
        self.conv1 = nn.Conv2d(c, 32, 3, padding=1, bias=True)
        self.bn1 = bn(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=True)
        self.bn2 = bn(64)
        self.fc1 = nn.Linear(64 * (h // 2 // 2) * (w // 2 // 2), 128)
        self.fc2 = nn.Linear(128, out)

    def forward(self, x):
        x = relu_maxpool2(self.bn1(self.conv1(x)))
        x = relu_maxpool2(self.bn2(self.conv2(x)))
        x = relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class PreActBlock(nn.Module):
    """PreResNet basic block of the SWAG / curve reference code (models/preresnet.py):
    bn1-relu-conv1-bn2-relu-conv2, plus x or the 1x1 strided conv of x (downsample.0)."""

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.bn1 = bn(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False))

    def forward(self, x):
        out = self.conv1(relu(self.bn1(x)))
        out = self.conv2(relu(self.bn2(out)))
        return out + (self.downsample(x) if self.downsample is not None else x)


class PreActBottleneck(nn.Module):
    """Its bottleneck block (expansion 4): three BN-ReLU-conv units 1x1, 3x3 (stride), 1x1."""

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.bn1 = bn(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn2 = bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False))

    def forward(self, x):
        out = self.conv1(relu(self.bn1(x)))
        out = self.conv2(relu(self.bn2(out)))
        out = self.conv3(relu(self.bn3(out)))
        return out + (self.downsample(x) if self.downsample is not None else x)


def scaled(n, wf):
    return max(1, int(round(n * wf)))


class PreResNet(nn.Module):
    def __init__(self, depth, c, out, wf=1.0):
        super().__init__()
        bottleneck = depth >= 44
        n = (depth - 2) // (9 if bottleneck else 6)
        block, exp = (PreActBottleneck, 4) if bottleneck else (PreActBlock, 1)
        self.conv1 = nn.Conv2d(c, scaled(16, wf), 3, padding=1, bias=False)
        inplanes = scaled(16, wf)
        for s, p in enumerate((16, 32, 64)):
            planes = scaled(p, wf)
            blocks = []
            for b in range(n):
                blocks.append(block(inplanes, planes, 2 if (s > 0 and b == 0) else 1))
                inplanes = planes * exp
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.bn = bn(inplanes)
        self.fc = nn.Linear(inplanes, out)

    def forward(self, x):
        x = self.conv1(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = relu(self.bn(x))
        return self.fc(x.mean(dim=(2, 3)))


class BasicBlock(nn.Module):
    """CIFAR ResNet block of the loss-landscape code (cifar10/models/resnet.py): conv-bn-relu-conv-bn,
    plus x or the projection shortcut (1x1 conv, BN), then ReLU; BasicBlock_noshortcut without the add."""

    def __init__(self, inplanes, planes, stride, shortcuts):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = bn(planes)
        self.shortcuts = shortcuts
        if shortcuts:
            self.shortcut = nn.Sequential()
            if stride != 1 or inplanes != planes:
                self.shortcut = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), bn(planes))

    def forward(self, x):
        out = relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcuts:
            out = out + self.shortcut(x)
        return relu(out)


class ResNet(nn.Module):
    def __init__(self, depth, c, out, wf=1.0, shortcuts=True):
        super().__init__()
        n = (depth - 2) // 6
        inplanes = scaled(16, wf)
        self.conv1 = nn.Conv2d(c, inplanes, 3, padding=1, bias=False)
        self.bn1 = bn(inplanes)
        for s, p in enumerate((16, 32, 64)):
            planes = scaled(p, wf)
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(inplanes, planes, 2 if (s > 0 and b == 0) else 1, shortcuts))
                inplanes = planes
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(inplanes, out)

    def forward(self, x):
        x = relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(x.mean(dim=(2, 3)))


VGG_CFG = {11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
           13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
           16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
           19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512, "M"]}


class VGG(nn.Module):
    """VGG of the SWAG code (models/vgg.py) with torchvision's configurations, with or without BN,
    classifier Linear(512,512)-ReLU-Linear(512,512)-ReLU-Linear (its two Dropouts as Identity here:
    valley has no dropout layer; indices kept so the names match). A max-pool on a plane smaller
    than 2x2 is left out (valley's rule for 28x28 inputs)."""

    def __init__(self, depth, c, h, out, wf=1.0, batch_norm=True):
        super().__init__()
        layers, self.plan = [], []
        cin = c
        for v in VGG_CFG[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                self.plan.append("M")
            else:
                cout = scaled(v, wf)
                layers.append(nn.Conv2d(cin, cout, 3, padding=1))
                if batch_norm:
                    layers.append(bn(cout))
                layers.append(nn.ReLU())
                self.plan.append("C")
                cin = cout
        self.batch_norm = batch_norm
        self.features = nn.Sequential(*layers)
        hidden = scaled(512, wf)
        s = h
        for p in self.plan:
            if p == "M" and s >= 2:
                s //= 2
        self.classifier = nn.Sequential(nn.Identity(), nn.Linear(cin * s * s, hidden), nn.ReLU(), nn.Identity(),
                                        nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out))

    def forward(self, x):
        i, k = 0, 0
        while k < len(self.plan):
            if self.plan[k] == "M":
                if x.shape[2] >= 2:
                    x = F.max_pool2d(x, 2)
                i, k = i + 1, k + 1
                continue
            x = self.features[i](x)
            i += 1
            if self.batch_norm:
                x = self.features[i](x)
                i += 1
            i += 1  # ReLU
            k += 1
            if k < len(self.plan) and self.plan[k] == "M" and x.shape[2] >= 2:
                x = relu_maxpool2(x)
                i, k = i + 1, k + 1
            else:
                x = relu(x)
        x = x.flatten(1)
        x = relu(self.classifier[1](x))
        x = relu(self.classifier[4](x))
        return self.classifier[6](x)


class WideBasic(nn.Module):
    """WideResNet block of the SWAG code (models/wide_resnet.py, dropout 0): bn1-relu-conv1 (bias),
    bn2-relu-conv2 (bias, stride), plus x or the 1x1 strided conv of x (with bias)."""

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.bn1 = bn(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, padding=1, bias=True)
        self.bn2 = bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or inplanes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=True))

    def forward(self, x):
        out = self.conv1(relu(self.bn1(x)))
        out = self.conv2(relu(self.bn2(out)))
        return out + self.shortcut(x)


class WideResNet(nn.Module):
    def __init__(self, depth, widen, c, out, wf=1.0):
        super().__init__()
        n = (depth - 4) // 6
        inplanes = scaled(16, wf)
        self.conv1 = nn.Conv2d(c, inplanes, 3, padding=1, bias=True)
        for s, p in enumerate((16, 32, 64)):
            planes = scaled(p * widen, wf)
            blocks = []
            for b in range(n):
                blocks.append(WideBasic(inplanes, planes, 2 if (s > 0 and b == 0) else 1))
                inplanes = planes
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.bn1 = bn(inplanes)
        self.linear = nn.Linear(inplanes, out)

    def forward(self, x):
        x = self.conv1(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = relu(self.bn1(x))
        return self.linear(x.mean(dim=(2, 3)))


def read_manifest(path):
    tensors = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p:
                continue
            name, kind, ndim = p[0], p[1], int(p[2])
            shape = tuple(int(v) for v in p[3:3 + ndim])
            offset = int(p[3 + ndim])
            tensors.append((name, kind, shape, offset))
    return tensors


def fail(msg):
    print(f"torch_ref.py: {msg}", file=sys.stderr)
    sys.exit(2)


def case_args(ap, families):
    """The options tests/unit/torch_io.h's run_reference passes: DIR FAMILY and the network's shape."""
    ap.add_argument("dir")
    ap.add_argument("family", choices=families)
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--candidates", type=int, default=1)
    ap.add_argument("--widths", default="")
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--width-factor", type=float, default=1.0)


def case_model(a):
    """The network of a case (case_args) and its input shape (c, h, w)."""
    c, h, w = (int(v) for v in a.input.split("x"))
    if a.family == "mlp":
        return MLP(c * h * w, [int(v) for v in a.widths.split(",") if v], a.out), (c, h, w)
    if a.family == "convnet":
        return ConvNet(c, h, w, a.out), (c, h, w)
    if a.family == "preresnet":
        return PreResNet(a.depth, c, a.out, a.width_factor), (c, h, w)
    if a.family == "vgg":
        return VGG(a.depth, c, h, a.out, a.width_factor, True), (c, h, w)
    return ResNet(a.depth, c, a.out, a.width_factor, True), (c, h, w)


def case_tables(d, model):
    """The model's parameters and buffers by valley's tensor names, and the manifest's parameter
    and state entries of case directory d; fails when the names differ."""
    manifest = read_manifest(os.path.join(d, "manifest.txt"))
    params = dict((k.replace(".", "_"), v) for k, v in model.named_parameters())
    buffers = dict((k.replace(".", "_"), v) for k, v in model.named_buffers() if not k.endswith("num_batches_tracked"))
    mp = [t for t in manifest if t[1] == "param"]
    ms = [t for t in manifest if t[1] == "state"]
    if sorted(t[0] for t in mp) != sorted(params) or sorted(t[0] for t in ms) != sorted(buffers):
        fail("tensor names differ:\n  valley params %s\n  torch  params %s\n  valley state %s\n  torch  state %s"
             % ([t[0] for t in mp], list(params), [t[0] for t in ms], list(buffers)))
    return params, buffers, mp, ms


def case_load(d, model, M, N, shape, dtype=np.float32):
    """Loads a case directory (torch_io.h's write_case) into `model` (its parameters and running
    statistics, in the model's dtype): returns the manifest's parameter entries (valley's order),
    the parameter count, the candidate inputs X (M, N, c, h, w) in `dtype` and labels Y (M, N)."""
    params, buffers, mp, ms = case_tables(d, model)

    def load(name, dt, count):
        arr = np.fromfile(os.path.join(d, name), dtype=dt)
        if arr.size != count:
            fail(f"{name}: {arr.size} values, expected {count}")
        return arr

    nparams = sum(int(np.prod(t[2])) for t in mp)
    nstate = sum(int(np.prod(t[2])) for t in ms)
    w0, s0 = load("params.f32", "<f4", nparams), load("state.f32", "<f4", nstate)
    c, h, w = shape
    X = torch.from_numpy(load("x.f32", "<f4", M * N * c * h * w).reshape(M, N, c, h, w).astype(dtype))
    Y = torch.from_numpy(load("y.i32", "<i4", M * N).astype(np.int64).reshape(M, N))
    with torch.no_grad():
        for table, entries, flat in ((params, mp, w0), (buffers, ms, s0)):
            for name, _, shp, off in entries:
                n = int(np.prod(shp))
                table[name].copy_(torch.from_numpy(flat[off:off + n].reshape(shp).astype(np.float64)))
    return mp, params, nparams, X, Y


def pick_batch(M, margin):
    """The first of M candidate batches whose decisions are all >= 1e-5 from their kink, else the
    one with the largest margin: (index, margin)."""
    best, best_m = 0, -1.0
    for b in range(M):
        mb = margin(b)
        if mb > best_m:
            best, best_m = b, mb
        if mb >= 1e-5:
            return b, mb
    return best, best_m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("family", choices=["mlp", "convnet", "preresnet", "resnet", "vgg", "wideresnet"])
    ap.add_argument("--width-factor", type=float, default=1.0)
    ap.add_argument("--widen", type=int, default=1)
    ap.add_argument("--shortcuts", type=int, default=1)
    ap.add_argument("--bn", type=int, default=1)
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", type=int, required=True)
    ap.add_argument("--widths", default="")
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--candidates", type=int, default=1)
    ap.add_argument("--margin", type=float, default=0.0)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--momentum", type=float, required=True)
    ap.add_argument("--wd", type=float, required=True)
    ap.add_argument("--loss", choices=["ce", "gauss"], default="ce")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    c, h, w = (int(v) for v in a.input.split("x"))
    if a.family == "mlp":
        model = MLP(c * h * w, [int(v) for v in a.widths.split(",") if v], a.out)
    elif a.family == "convnet":
        model = ConvNet(c, h, w, a.out)
    elif a.family == "preresnet":
        model = PreResNet(a.depth, c, a.out, a.width_factor)
    elif a.family == "resnet":
        model = ResNet(a.depth, c, a.out, a.width_factor, bool(a.shortcuts))
    elif a.family == "vgg":
        model = VGG(a.depth, c, h, a.out, a.width_factor, bool(a.bn))
    else:
        model = WideResNet(a.depth, a.widen, c, a.out, a.width_factor)

    d = a.dir
    params, buffers, mp, ms = case_tables(d, model)
    order_ok = [t[0] for t in mp] == list(params) and [t[0] for t in ms] == list(buffers)
    for name, kind, shape, _ in mp + ms:
        have = tuple((params if kind == "param" else buffers)[name].shape)
        if have != shape:
            fail(f"{name}: valley shape {shape}, torch shape {have}")
    nparams = sum(int(np.prod(t[2])) for t in mp)
    nstate = sum(int(np.prod(t[2])) for t in ms)

    def load(path, dtype, count):
        arr = np.fromfile(os.path.join(d, path), dtype=dtype)
        if arr.size != count:
            fail(f"{path}: {arr.size} values, expected {count}")
        return arr

    w0 = load("params.f32", "<f4", nparams)
    s0 = load("state.f32", "<f4", nstate)
    se = load("evalstate.f32", "<f4", nstate)
    S, K, N = a.steps, a.candidates, a.batch
    X = torch.from_numpy(load("x.f32", "<f4", S * K * N * c * h * w).reshape(S * K, N, c, h, w).copy())
    if a.loss == "ce":
        Y = torch.from_numpy(load("y.i32", "<i4", S * K * N).astype(np.int64).reshape(S * K, N))
    else:
        D = a.out // 2
        Y = torch.from_numpy(load("t.f32", "<f4", S * K * N * D).reshape(S * K, N, D).copy())

    def set_flat(table, entries, flat):
        with torch.no_grad():
            for name, _, shape, off in entries:
                n = int(np.prod(shape))
                table[name].copy_(torch.from_numpy(flat[off:off + n].reshape(shape).copy()))

    def get_flat(entries, total, getter):
        out = np.zeros(total, dtype=np.float32)
        for name, _, shape, off in entries:
            n = int(np.prod(shape))
            out[off:off + n] = getter(name).detach().numpy().reshape(-1)
        return out

    def loss_fn(out, b):
        if a.loss == "ce":
            return F.cross_entropy(out, Y[b])
        D = a.out // 2
        var = F.softplus(out[:, D:]) + 1e-6
        return F.gaussian_nll_loss(out[:, :D], Y[b], var, full=True, eps=1e-6, reduction="sum") / N

    def margin_of(b):
        """Kink margin of minibatch b at the current weights, in float64."""
        m64 = copy.deepcopy(model).double().train()
        Kinks.start()
        with torch.no_grad():
            m64(X[b].double())
        return Kinks.stop()

    def choose(k):
        """First candidate minibatch of step k whose decisions are all >= margin
        from their kink, else the one with the largest margin."""
        best, best_m = k * K, -1.0
        for j in range(K):
            mj = margin_of(k * K + j)
            if mj >= a.margin:
                return k * K + j, mj
            if mj > best_m:
                best, best_m = k * K + j, mj
        return best, best_m

    set_flat(params, mp, w0)
    # Eval mode: running statistics from evalstate, on candidate 0 of step 0.
    set_flat(buffers, ms, se)
    model.eval()
    with torch.no_grad():
        model(X[0]).numpy().astype("<f4").tofile(os.path.join(d, "eval_logits.f32"))

    set_flat(buffers, ms, s0)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.wd)
    losses = np.zeros(S, dtype=np.float64)
    chosen = np.zeros(S, dtype=np.int32)
    margins = np.zeros(S, dtype=np.float64)
    with open(os.path.join(d, "traj.f32"), "wb") as traj:
        for k in range(S):
            b, margins[k] = choose(k)
            chosen[k] = b
            opt.zero_grad()
            out = model(X[b])
            loss = loss_fn(out, b)
            loss.backward()
            losses[k] = loss.item()
            if k == 0:
                out.detach().numpy().astype("<f4").tofile(os.path.join(d, "logits.f32"))
                get_flat(mp, nparams, lambda n: params[n].grad).astype("<f4").tofile(os.path.join(d, "grads.f32"))
                get_flat(ms, nstate, lambda n: buffers[n]).astype("<f4").tofile(os.path.join(d, "state1.f32"))
            opt.step()
            get_flat(mp, nparams, lambda n: params[n]).astype("<f4").tofile(traj)
    losses.astype("<f8").tofile(os.path.join(d, "losses.f64"))
    chosen.astype("<i4").tofile(os.path.join(d, "chosen.i32"))
    margins.astype("<f8").tofile(os.path.join(d, "margins.f64"))
    get_flat(ms, nstate, lambda n: buffers[n]).astype("<f4").tofile(os.path.join(d, "final_state.f32"))
    print(f"order_ok {int(order_ok)}")
    print(f"nparams {nparams}")
    print(f"nstate {nstate}")
    print(f"rejected {int(sum(int(b) - k * K for k, b in enumerate(chosen)))}")
    print(f"min_margin {margins.min():.3e}")
    print(f"torch_version {torch.__version__}")


if __name__ == "__main__":
    main()
