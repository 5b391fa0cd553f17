#!/usr/bin/env bash
# Issue 8: `valley infer` on a classification model with batch norm (convnet, a small
# Fashion-MNIST subset): the PCA subspace is built inside infer from swag.nc's deviations.
# Chains in 1 group (1 rank) and in 2 groups (2 ranks, group_size 1) give a bit-identical
# infer.nc; one group of 2 ranks (data-parallel likelihood and BN statistics, summed in
# another order) gives the same samples and metrics up to rounding.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup infer_classify
common=(--set data.train_subset=256 --set data.test_subset=100 --set model.kind=convnet --set train.batch_size=64)
"$VALLEY" train "${common[@]}" --set train.epochs=1 --set train.swag=true --set train.swa_start=1 --set train.swa_freq=4 \
    --set train.swag_rank=5 --set train.lr=0.05 --out "$dir/train" > "$dir/train.log" 2>&1 || { tail "$dir/train.log"; fail "train"; }
run=(infer "$dir/train/swag.nc" "${common[@]}" --set infer.rank=3 --set infer.chains=2 --set infer.samples=2 --set infer.burnin=0)
$MPIRUN -np 1 "$VALLEY" "${run[@]}" --out "$dir/g1" > "$dir/g1.log" 2>&1 || { tail "$dir/g1.log"; fail "infer 1 group"; }
$MPIRUN -np 2 "$VALLEY" "${run[@]}" --set parallel.group_size=1 --out "$dir/g2" > "$dir/g2.log" 2>&1 || { tail "$dir/g2.log"; fail "infer 2 groups"; }
"$PYTHON" tests/py/nc_compare.py "$dir/g1/infer.nc" "$dir/g2/infer.nc" --exclude chain_seconds || fail "infer.nc differs between 1 and 2 groups"
$MPIRUN -np 2 "$VALLEY" "${run[@]}" --out "$dir/p2" > "$dir/p2.log" 2>&1 || { tail "$dir/p2.log"; fail "infer 1 group of 2 ranks"; }
"$PYTHON" tests/py/nc_compare.py "$dir/g1/infer.nc" "$dir/p2/infer.nc" --exclude chain_seconds --tol 1e-4 \
    || fail "a group of 2 ranks differs from 1 rank by more than rounding"
"$PYTHON" - "$dir/g1/infer.nc" <<'PY' || fail "infer.nc content"
import sys
import numpy as np
from netCDF4 import Dataset
d = Dataset(sys.argv[1])
assert d.subspace_kind == "pca" and "train mode" in d.likelihood_bn_mode, (d.subspace_kind, d.likelihood_bn_mode)
names = list(d["method_name"][:]); acc = np.asarray(d["accuracy"][:]); nll = np.asarray(d["nll"][:])
assert names == ["pca-ess", "swa"], names
assert list(d["n_samples"][:]) == [4, 1]
assert (acc > 0.2).all() and (acc <= 1).all() and (nll > 0).all(), (acc, nll)
T = float(d.temperature); assert abs(T - 25.6) < 1e-9, T   # auto: N_train / 10
ll = np.asarray(d["sample_loglik"][:]); tr = np.asarray(d["loglik_trace"][:])
assert np.isfinite(ll).all() and tr.shape == (2, 2) and (tr.ravel() == ll).all(), (ll, tr)
assert np.asarray(d["bin_count"][:]).sum(axis=1).tolist() == [100, 100]
print(dict(zip(names, acc.round(4))), dict(zip(names, nll.round(4))))
PY
echo "infer_classify: ok"
