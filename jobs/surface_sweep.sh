#!/bin/bash
# One surface sweep as a Slurm job array over blocks of grid rows, then a merge.
#   jobs/surface_sweep.sh BLOCKS DECK.ini|- RUN_DIR INPUT.nc [...] [valley options]
# Prints the array job id and the merge job id. Extra sbatch options for both jobs:
# SWEEP_SBATCH="--ntasks=2 --time=..." (default: the scripts' #SBATCH lines).
#
# Design (no two tasks ever write the same file): array task k computes the rows
# [floor(k*ny/B), floor((k+1)*ny/B) - 1] of the deck's grid as a grid of its own
# (surface.ymin/ymax/ny set to those rows) into RUN_DIR/blocks/block_K/surface.nc; each
# block is restartable by itself (a requeued task computes only its missing points).
# The merge job (--dependency=afterany on the whole array) stitches the blocks, and any
# existing RUN_DIR/surface.nc of the same grid, into RUN_DIR/surface.nc, then runs
# `valley surface` on the full grid once: it finds every merged point done (a rerun
# computes only missing points), computes whatever a failed task left out, and writes
# the final surface.nc with the named points and the basis description. Every block
# needs at least two rows (ny >= 2 * BLOCKS): a one-row grid has no y range.
set -euo pipefail
usage="usage: jobs/surface_sweep.sh BLOCKS DECK.ini|- RUN_DIR INPUT.nc [...] [valley options]"
blocks=${1:?$usage}; deck=${2:?$usage}; run=${3:?$usage}
shift 3
[[ $blocks =~ ^[1-9][0-9]*$ ]] || { echo "$usage" >&2; exit 2; }
cd "$(dirname "$0")/.."
read -r -a extra <<<"${SWEEP_SBATCH:-}"
arr=$(sbatch --parsable "${extra[@]}" --array=0-$((blocks - 1)) jobs/surface_block.sbatch "$blocks" "$deck" "$run" "$@")
arr=${arr%%;*}
merge=$(sbatch --parsable "${extra[@]}" --dependency=afterany:"$arr" jobs/surface_merge.sbatch "$blocks" "$deck" "$run" "$@")
merge=${merge%%;*}
echo "array job $arr ($blocks tasks), merge job $merge"
