#!/usr/bin/env bash
# jobs/skip_connections.sh — the loss-landscape paper's skip-connection figure at this machine's
# scale: a ResNet and its no-shortcut twin (model.shortcuts=false), the same recipe, each with a
# filter-normalised random plane around its solution (surface.basis=random), then the numbers
# and the side-by-side contours (jobs/skip_connections.py). Environment (defaults in brackets):
# OUT [output/skip], NP ranks [2], DEPTH [56], WF model.width_factor [0.5], SUBSET training
# images [10000], EPOCHS [10], GRID points per axis [13], SPAN plane half-width [1], EVAL
# images per grid point [1000]. Under Slurm: sbatch --wrap "jobs/skip_connections.sh".
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-output/skip} NP=${NP:-2} DEPTH=${DEPTH:-56} WF=${WF:-0.5} SUBSET=${SUBSET:-10000}
EPOCHS=${EPOCHS:-10} GRID=${GRID:-13} SPAN=${SPAN:-1} EVAL=${EVAL:-1000}
MPIRUN=${MPIRUN:-mpirun --oversubscribe}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
for sc in true false; do
    name=short; [[ $sc == true ]] || name=noshort
    $MPIRUN -np "$NP" bin/valley train --set model.kind=resnet --set model.depth="$DEPTH" --set model.width_factor="$WF" \
        --set model.shortcuts=$sc --set data.train_subset="$SUBSET" --set data.test_subset=2000 \
        --set train.epochs="$EPOCHS" --set run.seed=1 --out "$OUT/$name"
    $MPIRUN -np "$NP" bin/valley surface "$OUT/$name/model.nc" --set surface.basis=random \
        --set surface.xmin=-"$SPAN" --set surface.xmax="$SPAN" --set surface.nx="$GRID" \
        --set surface.ymin=-"$SPAN" --set surface.ymax="$SPAN" --set surface.ny="$GRID" \
        --set data.train_subset="$EVAL" --set data.test_subset="$EVAL" --set parallel.group_size=1 \
        --set run.seed=7 --out "$OUT/$name/plane"
done
/usr/bin/python3 jobs/skip_connections.py "$OUT"
