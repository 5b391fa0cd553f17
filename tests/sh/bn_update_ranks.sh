#!/usr/bin/env bash
# BN refresh with batch statistics summed over 1, 2 and 4 ranks equals the direct
# computation (tests/unit/test_bnupdate.c checks each run against it).
set -eu
for np in 1 2 4; do
    $MPIRUN -np $np "$BUILD/tests/test_bnupdate" || { echo "bn_update on $np ranks failed"; exit 1; }
done
echo "bn_update agrees with the direct computation on 1, 2 and 4 ranks"
