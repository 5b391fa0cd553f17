#!/usr/bin/env bash
# Metrics on 1, 2 and 4 ranks (uneven, rank-reversed shards, ranks with no rows)
# must be bit-identical: compares the %.17g lines that rank 0 prints. Each run
# also checks itself against a 1-rank computation and the collective error paths.
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/opt}
MPIRUN=${MPIRUN:-mpirun --oversubscribe}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
dir=$(mktemp -d "${VALLEY_TEST_TMP:-/tmp}/metrics_ranks.XXXXXX")
trap 'rm -rf "$dir"' EXIT
for np in 1 2 4; do
    if ! timeout 120 $MPIRUN -np $np "$BUILD/tests/test_metrics" --mpi >"$dir/out$np" 2>"$dir/err$np"; then
        echo "metrics_ranks: run on $np ranks failed"; cat "$dir/out$np" "$dir/err$np"; exit 1
    fi
    grep '^M ' "$dir/out$np" >"$dir/m$np" || true
    lines=$(wc -l <"$dir/m$np")
    # per data set: n, 7 scalars, 15 width bins, 20 count bins, 1 regression line
    if [[ $lines -ne 88 ]]; then
        echo "metrics_ranks: $np ranks printed $lines metric lines, want 88"; cat "$dir/out$np"; exit 1
    fi
done
status=0
for np in 2 4; do
    if ! diff "$dir/m1" "$dir/m$np"; then
        echo "metrics_ranks: $np ranks differ from 1 rank"; status=1
    fi
done
[[ $status -eq 0 ]] && echo "metrics identical on 1, 2, 4 ranks ($(wc -l <"$dir/m1") lines)"
exit $status
