#!/usr/bin/env bash
# Distributed PCA on 1, 2 and 4 ranks (d = 1e5, K = 20, k = 5) and once at d = 1e6 on
# 2 ranks (the LAPACK comparison only): each run checks every route against LAPACKE_dgesvd of the gathered matrix,
# a matrix of known spectrum and the degenerate inputs (tests/unit/test_pca.c), and
# prints its singular values; here the runs must also agree with each other (the hash
# matrix is the same on any number of ranks): every route's sigma within 1e-12
# relative across 1, 2, 4 ranks and across routes.
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/opt}
MPIRUN=${MPIRUN:-mpirun --oversubscribe}
PYTHON=${PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
dir=$(mktemp -d "${VALLEY_TEST_TMP:-/tmp}/pca_ranks.XXXXXX")
trap 'rm -rf "$dir"' EXIT
run() { # tag np args...
    local tag=$1 np=$2; shift 2
    if ! timeout 300 $MPIRUN -np "$np" "$BUILD/tests/test_pca" "$@" >"$dir/out$tag" 2>"$dir/err$tag"; then
        echo "pca_ranks: run $tag ($np ranks: $*) failed"; cat "$dir/out$tag" "$dir/err$tag"; exit 1
    fi
    grep -E '^(R|S) ' "$dir/out$tag"
}
for np in 1 2 4; do run "$np" "$np" 100000 20 5; done
"$PYTHON" - "$dir" <<'EOF'
import sys, collections
d = sys.argv[1]
sig = {}
for np in (1, 2, 4):
    s = collections.defaultdict(dict)
    for line in open(f"{d}/out{np}"):
        f = line.split()
        if f and f[0] == "SIG":
            s[f[1]][int(f[2])] = float(f[3])
    if sorted(s) != ["gram", "gram2", "qr", "svd"] or any(len(v) != 20 for v in s.values()):
        sys.exit(f"pca_ranks: {np} ranks printed sigma for {sorted(s)}")
    sig[np] = s
worst = 0.0
ref = sig[1]["qr"]
for np, s in sig.items():
    for route, v in s.items():
        for i, x in v.items():
            worst = max(worst, abs(x - ref[i]) / ref[i])
print(f"sigma agree across 1/2/4 ranks and 4 routes: max relative difference {worst:.2e}")
if not worst <= 1e-12:
    sys.exit("pca_ranks: sigma differ by more than 1e-12")
EOF
# the issue's largest size, once (rank 0 holds the gathered 1e6 x 20 matrix for LAPACK)
run big 2 1000000 20 5 lapack
echo "pca_ranks: ok"
