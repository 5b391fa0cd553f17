"""valley's files in Python: numpy + netCDF4 (+ xarray, + PyTorch for load_model), no build step.

    import sys; sys.path.insert(0, "python")      # from the repository root
    import valley
    net = valley.load_model("output/run1/model.nc")  # a torch.nn.Module, eval mode
    x = valley.test_images("input/data/fashion-mnist.nc", 64)  # normalised as valley does
    logits = net(x)
    s = valley.open("output/plane/surface.nc")       # an xarray.Dataset: s.train_loss(y, x)

load_model builds the network from the file's `model_graph` (the layer list every valley
model file carries, graphdesc.h in the C sources), so it works for every family and for
imported (model.kind = graph) networks; its state_dict keys are valley's tensor names with
the layer's last '_' made a '.' (layer1_0_conv1_weight -> layer1_0_conv1.weight).
"""
import numpy as np

__all__ = ["load_model", "graph_layers", "open", "var", "kind", "test_images"]

TITLES = {
    "valley model": "model", "valley checkpoint": "checkpoint", "valley SWA/SWAG posterior": "swag",
    "valley FGE snapshot": "snapshot", "valley mode-connecting curve": "curve", "valley evaluation": "eval",
}


def kind(path):
    """What a valley NetCDF file is, from its title: model, checkpoint, swag, curve, surface, bma, ..."""
    from netCDF4 import Dataset
    with Dataset(path) as f:
        title = f.getncattr("title") if "title" in f.ncattrs() else ""
    for t, k in TITLES.items():
        if title == t:
            return k
    if title.startswith("valley model imported from"):
        return "model"
    return title.replace("valley ", "").split(" ")[0] if title.startswith("valley ") else "unknown"


def open(path):
    """A valley result file (surface.nc, curve_eval.nc, bma.nc, infer.nc, eval.nc, history.nc...) as an
    xarray.Dataset, its variables labelled by their dimensions: the grid axes (surface x, y; curve t)
    are coordinates already; bma.nc and infer.nc get their methods by name (`b.nll.sel({"method": "swag"})`:
    a dict, since sel() has a parameter of its own called method),
    history.nc its epochs counted from 1."""
    import xarray as xr
    with xr.open_dataset(path) as f:  # read whole and closed: the result files are small, and a file
        ds = f.load()                 # HDF5 still holds open must not be opened again beside it
    if "method_name" in ds and "method" in ds.method_name.dims:
        ds = ds.assign_coords(method=[str(v) for v in ds.method_name.values])
    if "epoch" in ds.dims and "epoch" not in ds.coords:
        ds = ds.assign_coords(epoch=np.arange(1, ds.sizes["epoch"] + 1))
    return ds


def var(path, name):
    """One variable of a valley file as a numpy array (the file closed again)."""
    from netCDF4 import Dataset
    with Dataset(path) as f:
        return np.asarray(f[name][:])


def graph_layers(text):
    """The lines of a model_graph: [(op, name or None, [input line indices], {fields})]."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if not f or f[0].startswith("#"):
            continue
        op = f[0]
        if op == "input":
            out.append((op, None, [], {"spatial": f[1] == "spatial"}))
        elif op == "conv":
            out.append((op, f[1], [int(f[2])], dict(cout=int(f[3]), k=int(f[4]), stride=int(f[5]), pad=int(f[6]),
                                                    bias=bool(int(f[7])))))
        elif op == "linear":
            out.append((op, f[1], [int(f[2])], dict(fout=int(f[3]))))
        elif op == "bn":
            out.append((op, f[1], [int(f[2])], {}))
        elif op in ("relu", "maxpool", "avgpool", "flatten"):
            out.append((op, None, [int(f[1])], {}))
        elif op == "add":
            out.append((op, None, [int(f[1]), int(f[2])], {}))
        elif op == "dropout":
            out.append((op, None, [int(f[1])], dict(p=float(f[2]))))
        else:
            raise ValueError(f"model_graph: unknown layer '{op}'")
    return out


def load_model(path):
    """A torch.nn.Module computing the network of a valley model file (model.nc, a checkpoint,
    swag.nc's SWA mean, a snapshot, an imported model), its weights and BN statistics loaded,
    in eval mode. Input: (N, C, H, W) images normalised as valley's dataset file says."""
    import torch
    from netCDF4 import Dataset
    from torch import nn

    with Dataset(path) as f:
        text = f.getncattr("model_graph")
        c, h, w = (int(v) for v in np.atleast_1d(f.getncattr("model_input_shape")))
        tensors = {name: np.asarray(var[:], dtype=np.float32) for name, var in f.variables.items()
                   if name.endswith(("_weight", "_bias", "_running_mean", "_running_var"))}
    layers = graph_layers(text)

    class GraphNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers, self.shape = layers, (c, h, w)
            shapes = []
            for op, name, ins, p in layers:
                if op == "input":
                    shapes.append((c, h, w) if p["spatial"] else (c * h * w,))
                    continue
                s = shapes[ins[0]]
                if op == "conv":
                    self.add_module(name, nn.Conv2d(s[0], p["cout"], p["k"], p["stride"], p["pad"], bias=p["bias"]))
                    ho = (s[1] + 2 * p["pad"] - p["k"]) // p["stride"] + 1
                    wo = (s[2] + 2 * p["pad"] - p["k"]) // p["stride"] + 1
                    s = (p["cout"], ho, wo)
                elif op == "linear":
                    self.add_module(name, nn.Linear(s[0], p["fout"]))
                    s = (p["fout"],)
                elif op == "bn":
                    self.add_module(name, nn.BatchNorm2d(s[0], eps=1e-5, momentum=0.1))
                elif op == "maxpool":
                    s = (s[0], s[1] // 2, s[2] // 2)
                elif op in ("avgpool", "flatten"):
                    s = (s[0],) if op == "avgpool" else (int(np.prod(s)),)
                elif op == "dropout":
                    self.add_module(f"dropout_{len(shapes)}", nn.Dropout(p["p"]))
                shapes.append(s)

        def forward(self, x):
            vals = []
            for op, name, ins, p in self.layers:
                if op == "input":
                    vals.append(x if p["spatial"] else x.flatten(1))
                    continue
                a = vals[ins[0]]
                if op in ("conv", "linear", "bn"):
                    y = getattr(self, name)(a)
                elif op == "relu":
                    y = torch.relu(a)
                elif op == "maxpool":
                    y = torch.nn.functional.max_pool2d(a, 2)
                elif op == "avgpool":
                    y = a.mean(dim=(2, 3))
                elif op == "flatten":
                    y = a.flatten(1)
                elif op == "dropout":
                    y = getattr(self, f"dropout_{len(vals)}")(a)
                else:  # add
                    y = a + vals[ins[1]]
                vals.append(y)
            return vals[-1]

    net = GraphNet()
    state = {}
    for key in net.state_dict():
        layer, _, field = key.rpartition(".")
        if field == "num_batches_tracked":
            continue
        src = f"{layer}_{field}"
        if src not in tensors:
            raise KeyError(f"{path}: no tensor {src} for {key}")
        state[key] = torch.from_numpy(tensors[src])
    missing, unexpected = net.load_state_dict(state, strict=False)
    if [k for k in missing if not k.endswith("num_batches_tracked")] or unexpected:
        raise KeyError(f"{path}: missing {missing}, unexpected {unexpected}")
    return net.eval()


def test_images(dataset, n=None, split="test"):
    """The first n images of a valley dataset file as a float32 torch tensor (N, C, H, W), normalised
    as valley normalises them (x = (pixel * pixel_scale - pixel_mean[c]) / pixel_std[c])."""
    import torch
    from netCDF4 import Dataset
    with Dataset(dataset) as d:
        v = d[f"{split}_x"]
        x = np.asarray(v[:n] if n else v[:], dtype=np.float64)
        scale = float(d.getncattr("pixel_scale"))
        mean = np.atleast_1d(np.asarray(d.getncattr("pixel_mean"), dtype=np.float64))
        std = np.atleast_1d(np.asarray(d.getncattr("pixel_std"), dtype=np.float64))
    if x.ndim == 4:
        mean, std = mean.reshape(1, -1, 1, 1), std.reshape(1, -1, 1, 1)
    return torch.from_numpy(((x * scale - mean) / std).astype(np.float32))
