#!/usr/bin/env bash
# Issue 7: `valley pca` on the output of a SWAG run at 1, 2 and 4 ranks (each rank reads
# only its slab of the deviations and writes its slab of subspace.nc in parallel),
# against numpy's SVD of the whole deviation matrix: singular values 1e-10 relative,
# directions |cos| >= 1 - 1e-8, basis rows scaled to sigma_i/sqrt(K-1), shift = SWA mean;
# and the trajectory route (checkpoints minus their mean) against numpy.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup pca_cmd
C=(--set data.train_subset=1024 --set data.test_subset=200 --set model.kind=mlp --set model.widths=32)
"$VALLEY" train "${C[@]}" --set train.epochs=4 --set train.swag=true --set train.swa_start=2 --set train.swa_freq=3 \
    --set train.swag_rank=8 --set train.checkpoint_every=1 --out "$dir/t" > "$dir/t.log" 2>&1 || fail "train"
for np in 1 2 4; do
    $MPIRUN -np $np "$VALLEY" pca "$dir/t/swag.nc" --set pca.rank=4 --set pca.route=gram2 --out "$dir/p$np" > "$dir/p$np.log" 2>&1 \
        || { tail "$dir/p$np.log"; fail "pca on $np ranks"; }
done
$MPIRUN -np 2 "$VALLEY" pca "$dir/t/swag.nc" --set pca.rank=4 --set pca.route=qr --out "$dir/pqr" > "$dir/pqr.log" 2>&1 || fail "pca qr"
$MPIRUN -np 2 "$VALLEY" pca "$dir"/t/checkpoints/epoch_000{1,2,3}.nc "$dir/t/model.nc" --set pca.rank=2 --set pca.scale=unit \
    --out "$dir/traj" > "$dir/traj.log" 2>&1 || { tail "$dir/traj.log"; fail "pca of a trajectory"; }
status=0
"$VALLEY" pca "$dir/t/swag.nc" --set pca.rank=9 --out "$dir/bad" > "$dir/bad.log" 2>&1 || status=$?
[[ $status -eq 2 ]] && grep -q "pca.rank" "$dir/bad.log" || fail "more directions than columns: status $status, want 2 and a message"
"$PYTHON" - "$dir" <<'PY' || fail "subspace.nc against numpy"
import sys, numpy as np
from netCDF4 import Dataset
d = sys.argv[1]
w = Dataset(f"{d}/t/swag.nc")
D = w["deviations"][:].astype(np.float64); K = D.shape[0]
U, S, _ = np.linalg.svd(D.T, full_matrices=False)
for run in ("p1", "p2", "p4", "pqr"):
    s = Dataset(f"{d}/{run}/subspace.nc")
    sv = s["singular_values"][:]
    assert np.allclose(sv, S[:4], rtol=1e-10, atol=0), (run, sv, S[:4])
    B = s["basis"][:].astype(np.float64)
    for i in range(4):
        nrm = np.linalg.norm(B[i]); cos = abs(B[i] @ U[:, i]) / nrm
        assert abs(nrm - S[i] / np.sqrt(K - 1)) <= 1e-6 * nrm, (run, i, nrm)
        assert cos >= 1 - 1e-8, (run, i, cos)
    assert (s["shift"][:] == w["mean"][:].astype(np.float32)).all(), run
    assert abs(s["explained_variance_ratio"][:] - S[:4]**2 / (S**2).sum()).max() < 1e-12
    if run != "p1":
        assert np.abs(s["basis"][:] - Dataset(f"{d}/p1/subspace.nc")["basis"][:]).max() < 1e-6, run
# trajectory: 4 iterates minus their mean, unit directions
names = w.getncattr("valley.params").split(",")
its = [Dataset(f"{d}/t/checkpoints/epoch_000{e}.nc") for e in (1, 2, 3)] + [Dataset(f"{d}/t/model.nc")]
X = np.array([np.concatenate([f[n][:].ravel() for n in names]) for f in its], dtype=np.float64)
M = X.mean(0); U2, S2, _ = np.linalg.svd((X - M).T, full_matrices=False)
s = Dataset(f"{d}/traj/subspace.nc")
assert np.allclose(s["singular_values"][:], S2[:2], rtol=1e-8), (s["singular_values"][:], S2[:2])
B = s["basis"][:].astype(np.float64)
for i in range(2):
    assert abs(np.linalg.norm(B[i]) - 1) < 1e-6 and abs(B[i] @ U2[:, i]) >= 1 - 1e-7
assert np.abs(s["shift"][:] - M).max() < 1e-6
print("pca: singular values", S[:4], "trajectory", S2[:2])
PY
echo "pca_cmd: ok"
