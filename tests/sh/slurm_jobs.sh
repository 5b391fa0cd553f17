#!/usr/bin/env bash
# Issue 10: every jobs/*.sbatch on a real single-node Slurm (Debian's slurm-wlm and munge,
# daemons started and stopped by the test itself), including SIGUSR1 pre-emption, requeue
# and a bit-identical resume. The same as `make check-slurm`; fails when any check fails.
set -eu
cd "$(dirname "$0")/../.."
exec tests/slurm/run.sh
