#!/usr/bin/env bash
# Temperature scaling and the entropy histogram over 2, 3 and 4 ranks (issue 18): the same logits
# spread unevenly over the ranks give the 1-rank temperature to 1e-12 relative (one allreduce of
# the sums per evaluation: only the summation order changes) and a bit-identical entropy mean and
# histogram (test_calib --mpi; the 1-rank references against SciPy are test_calib itself).
set -u
source "$(dirname "$0")/lib.bash"
test_setup calib_ranks
BUILD=${BUILD:-build/opt}
for np in 2 3 4; do
    $MPIRUN -np $np "$BUILD/tests/test_calib" --mpi >"$dir/np$np.log" 2>&1 || { cat "$dir/np$np.log"; err "$np ranks"; }
    head -1 "$dir/np$np.log"
done
[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "$name: ok"
