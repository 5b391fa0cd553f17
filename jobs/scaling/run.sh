#!/usr/bin/env bash
# Measured strong and weak scaling of valley on this machine (make scaling).
#   jobs/scaling/run.sh            all studies at 1, 2, 4 ranks (about 5 minutes on 2 cores)
# Environment: SCALING_RANKS ("1 2 4"), SCALING_REPS (2: the fastest repetition is kept),
#   SCALING_OUT (output/scaling), SCALING_STUDIES ("train surface pca").
# Every run is `mpirun -np P bin/valley ...`; the numbers come from the run's own
# timers.txt (valley's phase timers, avg over ranks). Ranks beyond the core count are
# oversubscribed (this machine has 2 cores: 4 ranks share them), which the table says.
# Studies (the problem sizes are in the code below and in doc/scaling.md):
#   train    strong: mlp 784-512-512-10, 16384 samples, global batch 128, 2 epochs
#            weak:   4096*P samples, global batch 64*P (64 per rank, 128 steps per run)
#   surface  strong: 4x4 grid (random basis) over P groups of 1 rank, eval on 4096 + 1000 samples
#            weak:   4 x 2P grid (8 points per group)
#   pca      strong: Gram route (pca.route gram2) of a SWAG with K=32 deviations of the
#            669,706-parameter mlp, rank 10; plus the ScaLAPACK TSQR route (qr) for reference
#            weak:   widths 512, 826, 1287 -> 0.67M, 1.34M, 2.68M parameters at P = 1, 2, 4
# Writes SCALING_OUT/results.tsv, SCALING_OUT/measured.md and doc/scaling_measured.png.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
VALLEY=${VALLEY:-$ROOT/bin/valley}
OUT=${SCALING_OUT:-output/scaling}
RANKS=${SCALING_RANKS:-1 2 4}
REPS=${SCALING_REPS:-2}
STUDIES=${SCALING_STUDIES:-train surface pca}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
MPIRUN=(mpirun --oversubscribe --bind-to none)
mkdir -p "$OUT/runs"
[[ -s input/data/fashion-mnist.nc ]] || "$VALLEY" prepare fashion-mnist
cores=$(getconf _NPROCESSORS_ONLN)
res=$OUT/results.tsv
echo -e "study\tmode\tranks\trep\tcores\twall\tcompute\tallreduce\tio\tevaluate\tbn_update\tmpi\tmpi_max\tload1" >"$res"

# measure STUDY MODE P VALLEY-ARGS...: the fastest of REPS runs -> one results.tsv line
measure() {
    local study=$1 mode=$2 p=$3; shift 3
    local dir=$OUT/runs/${study}_${mode}_$p best="" line load
    for rep in $(seq 1 "$REPS"); do
        rm -rf "$dir"
        load=$(cut -d' ' -f1 /proc/loadavg) # other users of the machine, before the run
        if ! "${MPIRUN[@]}" -np "$p" "$VALLEY" "$@" --out "$dir" >"$dir.log" 2>&1; then
            echo "FAILED: $study $mode P=$p (see $dir.log)"; tail -5 "$dir.log"; return 1
        fi
        line=$(awk -v s="$study" -v m="$mode" -v p="$p" -v r="$rep" -v c="$cores" -v l="$load" '
            $1 !~ /^#/ { avg[$1] = $7; mx[$1] = $5 }
            END { printf "%s\t%s\t%d\t%d\t%d\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%s\n", s, m, p, r, c,
                  avg["wall"], avg["compute"], avg["allreduce"], avg["io"], avg["evaluate"], avg["bn_update"], avg["mpi"], mx["mpi"], l }' \
            "$dir/timers.txt")
        if [[ -z $best ]] || awk -v a="$(cut -f6 <<<"$line")" -v b="$(cut -f6 <<<"$best")" 'BEGIN { exit !(a < b) }'; then best=$line; fi
    done
    echo "$best" >>"$res"
    printf '%-8s %-6s P=%d  wall %6.2fs\n' "$study" "$mode" "$p" "$(cut -f6 <<<"$best")"
}

common=(--set model.kind=mlp --set data.test_subset=1000 --set train.schedule=constant --set parallel.group_size=0)
for study in $STUDIES; do
case $study in
train)
    for p in $RANKS; do
        measure train strong "$p" train "${common[@]}" --set data.train_subset=16384 --set train.batch_size=128 --set train.epochs=2
    done
    for p in $RANKS; do
        measure train weak "$p" train "${common[@]}" --set data.train_subset=$((4096 * p)) --set train.batch_size=$((64 * p)) --set train.epochs=2
    done ;;
surface)
    center=$OUT/runs/center
    [[ -s $center/model.nc ]] || "${MPIRUN[@]}" -np 1 "$VALLEY" train "${common[@]}" --set data.train_subset=4096 \
        --set train.epochs=1 --out "$center" >"$center.log" 2>&1
    sc=(surface "$center/model.nc" "${common[@]}" --set surface.basis=random --set data.train_subset=4096 --set surface.chunk=1
        --set parallel.group_size=1 --set surface.xmin=-1 --set surface.xmax=1 --set surface.ymin=-1 --set surface.ymax=1)
    for p in $RANKS; do measure surface strong "$p" "${sc[@]}" --set surface.nx=4 --set surface.ny=4; done
    for p in $RANKS; do measure surface weak "$p" "${sc[@]}" --set surface.nx=4 --set surface.ny=$((2 * p)); done ;;
pca)
    i=0
    for w in 512 826 1287; do
        i=$((i + 1))
        sw=$OUT/runs/swag_$w
        [[ -s $sw/swag.nc ]] || "${MPIRUN[@]}" -np 2 "$VALLEY" train "${common[@]}" --set model.widths=$w,$w \
            --set data.train_subset=4096 --set train.epochs=2 --set train.swag=true --set train.swa_start=1 \
            --set train.swa_freq=16 --set train.swag_rank=32 --out "$sw" >"$sw.log" 2>&1 || { echo "swag $w failed"; tail -3 "$sw.log"; }
    done
    pc=(pca --set pca.rank=10)
    for p in $RANKS; do measure pca strong "$p" "${pc[@]}" "$OUT/runs/swag_512/swag.nc"; done
    for p in $RANKS; do measure pca qr "$p" "${pc[@]}" --set pca.route=qr "$OUT/runs/swag_512/swag.nc"; done
    ws=(512 826 1287); k=0
    for p in $RANKS; do measure pca weak "$p" "${pc[@]}" "$OUT/runs/swag_${ws[$k]}/swag.nc"; k=$((k + 1)); done ;;
esac
done

/usr/bin/python3 jobs/scaling/report.py "$res" "$OUT/measured.md" "$OUT/measured_plot.txt" && \
    jobs/scaling/plot.sh "$OUT/measured_plot.txt" doc/scaling_measured.png
echo "wrote $res, $OUT/measured.md, doc/scaling_measured.png"
