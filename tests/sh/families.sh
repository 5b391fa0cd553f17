#!/usr/bin/env bash
# Issue 15: the network families end to end, each at a tiny size, every command as a user
# runs it (the model keys given to `train` only: every later command rebuilds the network
# from the file it reads), each output checked against something computed elsewhere.
#   resnet8 (with and without shortcuts), preresnet8, vgg11 with BN, wideresnet10-1:
#     train (2 epochs, SWAG; a second endpoint with another seed), evaluate, bma, fge, curve,
#     surface (3 x 3 plane of the curve), pca, infer (ESS in the PCA subspace), simplex;
#   preresnet47 (bottleneck) and vgg11 without BN: train and evaluate.
# Checks (check.py below):
#   - model.nc records the family (model_kind/depth/width_factor/shortcuts/bn/widen); the
#     network has as many weight layers on its main path as the depth says (shortcut and
#     downsample convolutions apart: resnet/preresnet/vgg = depth, wideresnet = depth - 2),
#     the shortcut convolutions expected, BN running statistics iff BN, and the parameter
#     count in the description is the sum of the tensors named in valley.params;
#   - evaluate (no model keys): its effective deck says kind/depth/width_factor (and the
#     family's own keys) "# from .../model.nc"; accuracy equals the test accuracy train's
#     history.nc holds for the last epoch (same weights, same test subset), NLL to 1e-6;
#   - bma on swag.nc (2 groups): methods swa, swag-diag, swag with 1, 2, 2 samples; accuracy
#     and ECE in [0, 1], NLL > 0; the swa row equals the SWA metrics train printed (4 decimals);
#   - fge: the ensemble of its one snapshot has the snapshot's metrics, and `evaluate` of
#     snapshots/snapshot_01.nc (again without model keys) gives the same accuracy and NLL;
#   - curve: the fixed control points are the two checkpoints bit for bit, curve = line at
#     t = 0 and 1, and t = 0 equals `evaluate --set eval.bn_refresh=true` of endpoint 1 (1e-6);
#   - surface on 2 groups, grid x, y in {-0.5, 0, 0.5}: the endpoints project to (0, 0) and
#     (1, 0); the centre is endpoint 1: its float32 test loss equals evaluate's BN-refreshed
#     NLL to float32 precision (4 ulp; measured 0.24-0.44 ulp), its test error exactly, its
#     training loss the curve's t = 0 training loss (4 ulp);
#   - pca: singular values and directions against numpy's SVD of swag.nc's deviations, shift
#     = SWA mean; infer on that subspace.nc: methods pca-ess, swa; its swa row equals bma's;
#   - simplex: vertex 0 is the input checkpoint bit for bit and its test loss/error equal the
#     BN-refreshed evaluate of it; volume > 0, ensemble accuracy in [0, 1].
# Ranks: resnet8 trained on 1, 2 and 4 ranks (batch norm synchronised across ranks), with the
# tolerances of app_ranks.sh, measured here on seeds 1-12 (relative to each tensor's max |value|):
#   - 1 step (64 images, batch 64, lr 0.05): <= 1.2e-5, no value beyond 1e-4 (the first
#     machine); on a Zen 4 with OpenBLAS's Haswell kernels seed 1 on 4 ranks has one ReLU
#     switching at its kink: 32 of 10 452 values (0.3 %) beyond 1e-4, the largest 1.9e-3;
#     checked with --tol 2e-2 --sharp 1e-4 --max-flipped 1e-2 (below);
#   - 1 epoch of 4 steps at lr 0.01: <= 2e-5 except kinks (seed 2: 2.5e-3, seed 11: 3.4e-2,
#     both in the 1-rank run: 2 and 4 ranks agree to 5e-6); checked with --tol 5e-2.
#   A build whose BN statistics are not reduced across ranks gives 0.47-0.95 after 1 step
#   (> 88 % of the values beyond 1e-4) and 0.34-0.67 after the epoch: it fails both.
# `valley run` of a tiny resnet deck on 2 ranks (two endpoint groups): every stage, report.md
# with its figures, and the endpoints are the standalone resnet8 trainings bit for bit (but
# group 1's SWAG too: its BN refreshes follow its own seed).
# Bad input: resnet depth 9, vgg depth 12, wideresnet depth 12 and preresnet depth 50 end with
# status 2, a message naming where model.depth was given (--set, or file:line of a deck)
# and no model.nc.
set -u
source "$(dirname "$0")/lib.bash"
test_setup families
T0=$SECONDS
DATA=(--set data.train_subset=256 --set data.test_subset=128 --set train.batch_size=64)
SWAG=(--set train.epochs=2 --set train.swag=true --set train.swa_start=1 --set train.swa_freq=2 --set train.swag_rank=3)

# v LABEL NP COMMAND ARGS...: valley COMMAND ARGS --out $dir/LABEL (NP = 0: without mpirun),
# output in $dir/LABEL.log; one progress line; a failure is counted and its log shown.
v() {
    local label=$1 np=$2 t0=$SECONDS st=0
    shift 2
    mkdir -p "$(dirname "$dir/$label")"
    if [[ $np -eq 0 ]]; then
        timeout 300 "$VALLEY" "$@" --out "$dir/$label" > "$dir/$label.log" 2>&1 || st=$?
    else
        timeout 300 $MPIRUN -np "$np" "$VALLEY" "$@" --out "$dir/$label" > "$dir/$label.log" 2>&1 || st=$?
    fi
    printf '[%3d s] %-22s %-9s %d rank(s) %3d s%s\n' $((SECONDS - T0)) "$label" "$1" $((np > 0 ? np : 1)) \
        $((SECONDS - t0)) "$([[ $st -eq 0 ]] || echo "  status $st")"
    if [[ $st -ne 0 ]]; then
        err "$label: valley $1 exited with status $st"
        sed 's/^/    | /' "$dir/$label.log" | tail -8
    fi
    return $st
}

cat > "$dir/check.py" <<'PY'
"""check.py FAMDIR KIND DEPTH FULL ATTRS_JSON MAIN_LAYERS SHORTCUTS: the outputs of one family."""
import json, re, sys
import numpy as np
from netCDF4 import Dataset

fd, kind, depth, full = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
attrs, layers, nshort = json.loads(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
bad = []
def check(cond, msg):
    if not cond: bad.append(msg)
def rel(a, b): return abs(float(a) - float(b)) / max(abs(float(b)), 1e-300)
def val(d, v): return float(np.asarray(d[v][...]).ravel()[0]) if np.asarray(d[v][...]).size == 1 else np.asarray(d[v][:])
F32 = 2.0 ** -23  # one float32 ulp, relative

# ---- model.nc: the family it records and the network it holds
mpath = f"{fd}/e1/model.nc"
m = Dataset(mpath)
check(m.model_kind == kind and int(m.model_depth) == depth, f"model.nc records {m.model_kind} depth {m.model_depth}")
for k, want in attrs.items():
    check(abs(float(m.getncattr(k)) - want) < 1e-12, f"model.nc {k} = {m.getncattr(k)}, want {want}")
names = m.getncattr("valley.params").split(",")
nparam = sum(m[n].size for n in names)
check(f", {nparam} parameters" in m.model_description, f"description '{m.model_description}' vs {nparam} parameters")
w = [n for n in names if m[n].ndim >= 2]
side = [n for n in w if "shortcut" in n or "downsample" in n]
check(len(w) - len(side) == layers, f"{len(w) - len(side)} weight layers on the main path, want {layers}: {w}")
check(len(side) == nshort, f"{len(side)} shortcut/downsample convolutions, want {nshort}: {side}")
nbn = sum(1 for n in m.variables if n.endswith("running_mean"))
check((nbn > 0) == (int(m.model_bn) == 1), f"{nbn} BN layers with model_bn = {m.model_bn}")
flat = lambda d: np.concatenate([np.asarray(d[n][:]).ravel() for n in names]).astype(np.float32)

# ---- evaluate without model keys: the family adopted from model.nc, train's test metrics
ev = Dataset(f"{fd}/ev/eval.nc")
deck, insec = {}, False
for line in ev.deck.splitlines():
    if line.startswith("["):
        insec = line == "[model]"
    elif insec and re.match(r"(\w+) = (\S+)(?:\s+# (.*))?$", line):
        k, v, c = re.match(r"(\w+) = (\S+)(?:\s+# (.*))?$", line).groups()
        deck[k] = (v, c)
want = {"kind": kind, "depth": str(depth), "width_factor": None}
want.update({k.replace("model_", ""): None for k in attrs if k != "model_width_factor"})
for k, v in want.items():
    got = deck.get(k)
    ok = got is not None and got[1] == f"from {mpath}" and (v is None or got[0] == v)
    check(ok, f"eval.nc deck: model.{k} = {got}, want {v or ''} '# from {mpath}'")
h = Dataset(f"{fd}/e1/history.nc")
acc, nll = val(ev, "accuracy"), val(ev, "nll")
check(acc == float(h["test_acc"][-1]), f"evaluate accuracy {acc} vs train's last test_acc {float(h['test_acc'][-1])}")
check(rel(nll, h["test_loss"][-1]) < 1e-6, f"evaluate nll {nll} vs train's last test_loss {float(h['test_loss'][-1])}")
check(0 < acc <= 1 and np.isfinite(nll) and nll > 0, f"evaluate: accuracy {acc}, nll {nll}")
out = [f"acc {acc:.4f} nll {nll:.4f}"]

if full:
    er = Dataset(f"{fd}/evr/eval.nc")  # endpoint 1 after a BN refresh
    racc, rnll = val(er, "accuracy"), val(er, "nll")
    # ---- bma on swag.nc: the SWA row is what train printed at its end
    b = Dataset(f"{fd}/bma/bma.nc")
    meth = list(b["method_name"][:])
    check(meth == ["swa", "swag-diag", "swag"] and list(b["n_samples"][:]) == [1, 2, 2],
          f"bma methods {meth} samples {list(b['n_samples'][:])}")
    ba, bn_ = np.asarray(b["accuracy"][:]), np.asarray(b["nll"][:])
    for v in ("accuracy", "ece", "ece_count"):
        x = np.asarray(b[v][:]); check(((x >= 0) & (x <= 1)).all(), f"bma {v} {x} outside [0, 1]")
    check(np.isfinite(bn_).all() and (bn_ > 0).all(), f"bma nll {bn_}")
    swa = re.search(r"SWA of \d+ iterates .*: test loss (\S+) acc (\S+)", open(f"{fd}/e1.log").read())
    check(swa is not None, "train printed no SWA metrics")
    if swa:
        check(abs(bn_[0] - float(swa.group(1))) <= 5.01e-5 and abs(ba[0] - float(swa.group(2))) <= 5.01e-5,
              f"bma swa nll {bn_[0]} acc {ba[0]} vs train's SWA: {swa.group(0)}")
    out.append(f"bma swa acc {ba[0]:.4f}")
    # ---- fge: one snapshot; evaluate of the snapshot file agrees
    f, es = Dataset(f"{fd}/fge/fge.nc"), Dataset(f"{fd}/evs/eval.nc")
    check(f.dimensions["member"].size == 1, "fge members")
    check(val(f, "accuracy") == val(f, "member_accuracy") == val(es, "accuracy") and rel(val(f, "nll"), val(es, "nll")) < 1e-9,
          f"fge accuracy {val(f, 'accuracy')} nll {val(f, 'nll')} vs evaluate of its snapshot {val(es, 'accuracy')} {val(es, 'nll')}")
    s1 = Dataset(f"{fd}/fge/snapshots/snapshot_01.nc")
    check(s1.model_kind == kind and int(s1.model_depth) == depth, f"snapshot records {s1.model_kind} {s1.model_depth}")
    # ---- curve
    cv, ce = Dataset(f"{fd}/curve/curve.nc"), Dataset(f"{fd}/curve/curve_eval.nc")
    P = np.asarray(cv["control_points"][:])
    check((P[0] == flat(m)).all() and (P[-1] == flat(Dataset(f"{fd}/e2/model.nc"))).all(), "curve endpoints are not the checkpoints")
    check(list(cv["fixed"][:]) == [1, 0, 1], f"curve fixed {list(cv['fixed'][:])}")
    for q in ("train_loss", "train_err", "test_loss", "test_err"):
        c, l = np.asarray(ce[q][:]), np.asarray(ce["line_" + q][:])
        check(c[0] == l[0] and c[-1] == l[-1] and np.isfinite(c).all(), f"curve {q}: {c} vs line {l}")
    check(rel(ce["test_loss"][0], rnll) < 1e-6 and abs(float(ce["test_err"][0]) - (1 - racc)) < 1e-12,
          f"curve t=0 test loss {float(ce['test_loss'][0])} err {float(ce['test_err'][0])} vs evaluate (BN refresh) {rnll} {1 - racc}")
    # ---- surface: centre = endpoint 1
    s = Dataset(f"{fd}/surface/surface.nc")
    check(list(s["x"][:]) == [-0.5, 0, 0.5] and list(s["y"][:]) == [-0.5, 0, 0.5], "surface grid")
    check(np.asarray(s["computed"][:]).all(), "surface: points not computed")
    tl = np.ma.filled(s["test_loss"][:], np.nan)
    check(np.isfinite(tl).all(), f"surface test_loss {tl}")
    px, py = np.asarray(s["point_x"][:]), np.asarray(s["point_y"][:])
    check(max(abs(px[0]), abs(py[0]), abs(px[2] - 1), abs(py[2])) < 1e-6, f"endpoints project to {px} {py}")
    check(rel(tl[1, 1], rnll) <= 4 * F32, f"surface centre test loss {tl[1, 1]!r} vs evaluate (BN refresh) {rnll!r}")
    check(float(s["test_err"][1, 1]) == np.float32(1 - racc), f"surface centre test err {float(s['test_err'][1, 1])} vs {1 - racc}")
    check(rel(s["train_loss"][1, 1], ce["train_loss"][0]) <= 4 * F32,
          f"surface centre train loss {float(s['train_loss'][1, 1])} vs curve t=0 {float(ce['train_loss'][0])}")
    out.append(f"surface centre {tl[1, 1]:.4f} ({rel(tl[1, 1], rnll) / F32:.2f} ulp from evaluate)")
    # ---- pca of swag.nc's deviations
    sw, sp = Dataset(f"{fd}/e1/swag.nc"), Dataset(f"{fd}/pca/subspace.nc")
    D = np.asarray(sw["deviations"][:], dtype=np.float64)
    U, S, _ = np.linalg.svd(D.T, full_matrices=False)
    sv, B = np.asarray(sp["singular_values"][:]), np.asarray(sp["basis"][:], dtype=np.float64)
    check(np.allclose(sv, S[:2], rtol=1e-8, atol=0), f"pca singular values {sv} vs numpy {S[:2]}")
    for i in range(2):
        check(abs(B[i] @ U[:, i]) / np.linalg.norm(B[i]) >= 1 - 1e-7, f"pca direction {i}")
    check((np.asarray(sp["shift"][:]) == np.asarray(sw["mean"][:]).astype(np.float32)).all(), "pca shift is not the SWA mean")
    # ---- infer in that subspace: its swa row is bma's
    inf = Dataset(f"{fd}/infer/infer.nc")
    im, ia, il = list(inf["method_name"][:]), np.asarray(inf["accuracy"][:]), np.asarray(inf["nll"][:])
    check(im == ["pca-ess", "swa"] and list(inf["n_samples"][:]) == [2, 1], f"infer methods {im} {list(inf['n_samples'][:])}")
    check(((ia > 0) & (ia <= 1)).all() and np.isfinite(il).all() and np.isfinite(np.asarray(inf["z"][:])).all(), f"infer {ia} {il}")
    check(ia[1] == ba[0] and rel(il[1], bn_[0]) < 1e-9, f"infer swa {ia[1]} {il[1]} vs bma swa {ba[0]} {bn_[0]}")
    # ---- simplex from model.nc
    sx = Dataset(f"{fd}/simplex/simplex.nc")
    V = np.asarray(sx["vertices"][:])
    check(V.shape == (2, nparam) and (V[0] == flat(m)).all(), f"simplex vertices {V.shape}, vertex 0 is not the input")
    check(rel(sx["vertex_test_loss"][0], rnll) < 1e-6 and abs(float(sx["vertex_test_err"][0]) - (1 - racc)) < 1e-12,
          f"simplex vertex 0 {float(sx['vertex_test_loss'][0])} {float(sx['vertex_test_err'][0])} vs evaluate (BN refresh) {rnll} {1 - racc}")
    vol, sa = float(sx["volume"][0]), val(sx, "accuracy")
    check(np.isfinite(vol) and vol > 0 and 0 <= sa <= 1, f"simplex volume {vol} accuracy {sa}")
    check(sx.model_kind == kind, f"simplex.nc records {sx.model_kind}")

print(f"    {m.model_description}: " + ", ".join(out))
for b_ in bad: print("    FAIL:", b_)
sys.exit(1 if bad else 0)
PY

# family NAME FULL MAIN_LAYERS SHORTCUTS ATTRS_JSON -- MODEL KEYS...
family() {
    local f=$1 full=$2 layers=$3 nshort=$4 attrs=$5 kind depth t0=$SECONDS
    shift 6
    local M=("$@")
    kind=$(printf '%s\n' "${M[@]}" | sed -n 's/^model.kind=//p')
    depth=$(printf '%s\n' "${M[@]}" | sed -n 's/^model.depth=//p')
    echo "[$((SECONDS - T0)) s] $f"
    v $f/e1 0 train "${DATA[@]}" "${M[@]}" "${SWAG[@]}" --set run.seed=1 || return
    local e1=$dir/$f/e1
    v $f/ev 0 evaluate "$e1/model.nc" "${DATA[@]}" || return
    if [[ $full -eq 1 ]]; then
        v $f/e2 0 train "${DATA[@]}" "${M[@]}" "${SWAG[@]}" --set run.seed=2 || return
        v $f/evr 0 evaluate "$e1/model.nc" "${DATA[@]}" --set eval.bn_refresh=true || return
        v $f/bma 2 bma "$e1/swag.nc" "${DATA[@]}" --set bma.samples=2 --set parallel.group_size=1 || return
        v $f/fge 0 fge "$e1/model.nc" "${DATA[@]}" --set fge.cycle=2 --set fge.cycles=1 || return
        v $f/evs 0 evaluate "$dir/$f/fge/snapshots/snapshot_01.nc" "${DATA[@]}" || return
        v $f/curve 0 curve "$e1/model.nc" "$dir/$f/e2/model.nc" "${DATA[@]}" --set curve.epochs=1 --set curve.points=3 || return
        v $f/surface 2 surface "$dir/$f/curve/curve.nc" "${DATA[@]}" --set surface.nx=3 --set surface.ny=3 \
            --set surface.xmin=-0.5 --set surface.xmax=0.5 --set surface.ymin=-0.5 --set surface.ymax=0.5 \
            --set parallel.group_size=1 || return
        v $f/pca 0 pca "$e1/swag.nc" --set pca.rank=2 || return
        v $f/infer 0 infer "$dir/$f/pca/subspace.nc" "${DATA[@]}" --set infer.samples=2 --set infer.burnin=0 || return
        v $f/simplex 0 simplex "$e1/model.nc" "${DATA[@]}" --set simplex.vertices=2 --set simplex.samples=1 \
            --set simplex.epochs=1 --set simplex.eval_samples=2 || return
    fi
    "$PYTHON" "$dir/check.py" "$dir/$f" "$kind" "$depth" "$full" "$attrs" "$layers" "$nshort" || err "$f: outputs"
    echo "[$((SECONDS - T0)) s] $f: $((SECONDS - t0)) s"
}

#      name          full layers shortcuts  recorded attributes
family resnet8        1 8  2 '{"model_width_factor": 0.25, "model_shortcuts": 1}' -- \
    --set model.kind=resnet --set model.depth=8 --set model.width_factor=0.25
family resnet8-noshort 1 8 0 '{"model_width_factor": 0.25, "model_shortcuts": 0}' -- \
    --set model.kind=resnet --set model.depth=8 --set model.width_factor=0.25 --set model.shortcuts=false
family preresnet8     1 8  2 '{"model_width_factor": 0.25}' -- \
    --set model.kind=preresnet --set model.depth=8 --set model.width_factor=0.25
family vgg11bn        1 11 0 '{"model_width_factor": 0.125, "model_bn": 1}' -- \
    --set model.kind=vgg --set model.depth=11 --set model.width_factor=0.125 --set model.bn=true
family wideresnet10-1 1 8  2 '{"model_width_factor": 0.25, "model_widen": 1}' -- \
    --set model.kind=wideresnet --set model.depth=10 --set model.widen=1 --set model.width_factor=0.25
family preresnet47    0 47 3 '{"model_width_factor": 0.125}' -- \
    --set model.kind=preresnet --set model.depth=47 --set model.width_factor=0.125
family vgg11          0 11 0 '{"model_width_factor": 0.125, "model_bn": 0}' -- \
    --set model.kind=vgg --set model.depth=11 --set model.width_factor=0.125 --set model.bn=false

# ---- resnet8 on 1, 2 and 4 ranks
echo "[$((SECONDS - T0)) s] resnet8 on 1, 2, 4 ranks"
R=(train --set model.kind=resnet --set model.depth=8 --set model.width_factor=0.25 --set data.test_subset=128
   --set train.batch_size=64 --set train.epochs=1)
for np in 1 2 4; do
    v ranks/step_np$np $np "${R[@]}" --set data.train_subset=64 --set run.seed=1
    v ranks/epoch_np$np $np "${R[@]}" --set data.train_subset=256 --set run.seed=3 --set train.lr=0.01
done
# One step: every element within 2e-2 relative, and at most 1 % of them beyond 1e-4. A ReLU whose
# pre-activation lies within rounding of its kink may switch between rank counts (their sums
# round differently) and then changes one sample's gradient through that unit: measured on a
# Zen 4 with OpenBLAS's Haswell kernels, one such switch moved 32 of the 10 452 elements
# (3.1e-3; bn biases of its channel and the momentum buffer) by up to 1.9e-3. A rank-count error
# (a missing reduction, a shard read twice) moves most elements, far more than 1 %.
for np in 2 4; do
    "$PYTHON" tests/py/nc_compare.py "$dir/ranks/step_np1/model.nc" "$dir/ranks/step_np$np/model.nc" --exclude train_position \
        --tol 2e-2 --sharp 1e-4 --max-flipped 1e-2 > "$dir/cmp.log" 2>&1 || err "resnet8 1 step: 1 vs $np ranks"
    echo "    1 step, 1 vs $np ranks: $(tail -1 "$dir/cmp.log")"
    "$PYTHON" tests/py/nc_compare.py "$dir/ranks/epoch_np1/model.nc" "$dir/ranks/epoch_np$np/model.nc" --exclude train_position \
        --tol 5e-2 > "$dir/cmp.log" 2>&1 || err "resnet8 1 epoch: 1 vs $np ranks"
    echo "    1 epoch, 1 vs $np ranks: $(tail -1 "$dir/cmp.log")"
done

# ---- valley run: a tiny resnet8 deck, every stage, on 2 ranks
cat > "$dir/resnet.ini" <<'INI'
[run]
stages = endpoints,evaluate,bma,fge,curve,surface,pca,infer,simplex
[data]
train_subset = 256
test_subset = 128
[model]
kind = resnet
depth = 8
width_factor = 0.25
[train]
epochs = 2
batch_size = 64
swag = true
swa_start = 1
swa_freq = 2
swag_rank = 3
[bma]
samples = 2
[fge]
cycle = 2
cycles = 1
[curve]
epochs = 1
points = 3
[surface]
nx = 3
ny = 3
[pca]
rank = 2
[infer]
samples = 2
burnin = 0
[simplex]
vertices = 2
samples = 1
epochs = 1
eval_samples = 2
INI
if v run 2 run "$dir/resnet.ini"; then
    r=$dir/run/report.md
    if [[ -f $r ]]; then
        for section in "## Training" "## Evaluation" "## Posterior approximations" "## Mode connectivity" "## Loss surface" \
            "## PCA of the SWAG deviations" "## Subspace inference" "## Simplex"; do
            grep -q "^$section" "$r" || err "run: report.md has no '$section' section"
        done
        for fig in $(grep -o '(figures/[^)]*\.png)' "$r" | tr -d '()'); do
            [[ -s $dir/run/$fig ]] || err "run: report.md names $fig, which does not exist"
        done
        grep -qF 'Model `resnet`' "$r" || err "run: report.md does not name the model resnet"
    else
        err "run: no report.md"
    fi
    # the endpoints (seeds 1 and 2, one group each) are the standalone trainings above, bit for
    # bit, SWAG included (group 1's BN refreshes take the order of its seed, 2)
    cmp_run() { # GROUP FILE [nc_compare options]
        local g=$1 file=$2; shift 2
        "$PYTHON" tests/py/nc_compare.py "$dir/run/endpoints/group_$g/$file" "$dir/resnet8/e$((g + 1))/$file" "$@" > /dev/null ||
            err "run: endpoints/group_$g/$file differs from the standalone training with seed $((g + 1))"
    }
    cmp_run 0 model.nc; cmp_run 0 swag.nc; cmp_run 1 model.nc; cmp_run 1 swag.nc
fi

# ---- bad depths: status 2, a message naming model.depth, no model.nc
for bad in "resnet 9" "vgg 12" "wideresnet 12" "preresnet 50"; do
    set -- $bad
    st=0
    timeout 60 "$VALLEY" train "${DATA[@]}" --set model.kind=$1 --set model.depth=$2 --set train.epochs=1 \
        --out "$dir/bad_$1" > "$dir/bad_$1.log" 2>&1 || st=$?
    echo "[$((SECONDS - T0)) s] model.kind=$1 model.depth=$2: status $st: $(grep -m1 'model.depth' "$dir/bad_$1.log")"
    [[ $st -eq 2 ]] || err "$1 depth $2: exit status $st, want 2"
    grep -q -- "--set model.depth=$2: model\.depth: a $1's depth is" "$dir/bad_$1.log" ||
        err "$1 depth $2: no message naming where model.depth was set and the family's rule"
    [[ -z $(find "$dir/bad_$1" -name model.nc 2>/dev/null) ]] || err "$1 depth $2: a model.nc was written"
done

# ... and given in a deck file: the message names the file and line
printf '[model]\nkind = vgg\n\ndepth = 15\n' > "$dir/bad_depth.ini"
st=0
timeout 60 "$VALLEY" train "$dir/bad_depth.ini" "${DATA[@]}" --set train.epochs=1 --out "$dir/bad_deck" \
    > "$dir/bad_deck.log" 2>&1 || st=$?
[[ $st -eq 2 ]] || err "a deck's bad depth: exit status $st, want 2"
grep -qF "$dir/bad_depth.ini:4: model.depth: a vgg's depth is 11, 13, 16 or 19, got 15" "$dir/bad_deck.log" ||
    { err "a deck's bad depth: the message does not name the file and line"; cat "$dir/bad_deck.log"; }

echo "[$((SECONDS - T0)) s] done"
[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "$name: ok"
