#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] [TARGET...] — the fuzz campaign, one command.
#   SECONDS  time per target (default 60); TARGETs default: deck idx csv dataset checkpoint subspace
# Builds the targets (build.sh), makes the seeds once (make_seeds.sh -> build/fuzz/seeds),
# runs each target for SECONDS on one core (working corpus build/fuzz/corpus/TARGET, grown
# from the seeds and tests/corpus/TARGET), then curates: the minimised corpus (-merge=1)
# is replayed through bin/valley (replay.py) and the small inputs (<= 32 KiB) that valley
# rejects with exit 2 are added to tests/corpus/TARGET (at most CORPUS_MAX new ones per
# run, default 12), to be replayed by tests/sh/rel_corpus.sh in `make check`.
# Fuzzing runs in fork mode and goes on after a crash; crashes are saved as
# build/fuzz/crashes/TARGET-* and classified by their first non-sanitizer stack frame:
# in valley's code (the script then exits 1) or in a library (HDF5, netCDF: reported in
# build/fuzz/crashes.txt; see doc/reliability.md). Prints per target: runs, executions per second, corpus size, new corpus files.
# Sanitizer options: leaks are not checked (netCDF and HDF5 keep global allocations);
# allocator_may_return_null=1 with max_allocation_size_mb=512 makes any malloc over 512 MiB
# fail (NULL) as under a memory limit; a third-party library then fails as it would
# in production, while a valley reader running out of memory on a small input is
# reported by the target itself (fuzz_common.h).
set -uo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-60}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(deck idx csv dataset checkpoint subspace)
CORPUS_MAX=${CORPUS_MAX:-12}
export VALLEY=${VALLEY:-$PWD/bin/valley} PYTHON=${PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=512 UBSAN_OPTIONS=print_stacktrace=1
tests/fuzz/build.sh >build/fuzz-build.log 2>&1 || { tail -30 build/fuzz-build.log; echo "fuzz: build failed"; exit 1; }
OUT=build/fuzz
[[ -x $VALLEY ]] || { echo "fuzz: $VALLEY not built (make all)"; exit 1; }
if [[ ! -d $OUT/seeds/netcdf ]]; then
    tests/fuzz/make_seeds.sh "$OUT/seeds.new" >/dev/null && mv "$OUT/seeds.new" "$OUT/seeds" || { echo "fuzz: seeds failed"; exit 1; }
fi
seed_of() { case $1 in dataset|checkpoint|subspace) echo "$OUT/seeds/netcdf" ;; *) echo "$OUT/seeds/$1" ;; esac; }
mkdir -p "$OUT/crashes"
export TMPDIR=$(mktemp -d /tmp/valley-fuzz-run.XXXXXX)
trap 'rm -rf "$TMPDIR"' EXIT
summary=$OUT/summary.txt
printf '%-11s %8s %10s %9s %7s %6s  %s\n' target seconds runs "exec/s" corpus added result | tee "$summary"
: >"$OUT/crashes.txt"
status=0
for t in "${targets[@]}"; do
    bin=$OUT/fuzz_$t
    [[ -x $bin ]] || { echo "fuzz: no target $t"; status=1; continue; }
    work=$OUT/corpus/$t
    mkdir -p "$work" "tests/corpus/$t"
    log=$OUT/$t.log
    # fork mode: a crash (even one inside HDF5 or netCDF) is saved and fuzzing goes on
    rm -f "$OUT/crashes/$t-"*
    nice "$bin" -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 -max_total_time="$SECS" -timeout=30 \
        -max_len=65536 -rss_limit_mb=2560 -malloc_limit_mb=1024 -artifact_prefix="$OUT/crashes/$t-" \
        "$work" "$(seed_of "$t")" "tests/corpus/$t" >"$log" 2>&1
    last=$(grep -E '^#[0-9]+: cov' "$log" | tail -1)
    runs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
    eps=$(grep -oE 'exec/s:? [0-9]+' <<<"$last" | grep -oE '[0-9]+$')
    # classify each crash by the first stack frame that is not the sanitizer's: valley's
    # code (a bug to fix: the run fails) or a library's (HDF5, netCDF, zlib: reported)
    result=ok ours=0 theirs=0 alone=0
    for c in "$OUT/crashes/$t-"*; do
        [[ -f $c ]] || continue
        where=$("$bin" -runs=1 -rss_limit_mb=2560 -malloc_limit_mb=1024 "$c" 2>&1 | "$PYTHON" -c '
import re, sys
for line in sys.stdin:
    if "runtime error:" in line and "/src/" in line:
        print("valley " + line.split("runtime error:")[0].strip()); break
    m = re.match(r"\s+#\d+ 0x[0-9a-f]+ in (\S+) (.*)", line)
    if not m:
        continue
    fn, loc = m.groups()
    if re.search(r"/(src|tests/fuzz)/[\w.]+\.[ch]:\d+", loc):
        print("valley " + fn); break
    if re.search(r"lib(hdf5|netcdf|z|mpi)", loc):
        print("library " + fn + " " + re.search(r"lib\w+", loc).group(0)); break
else:
    print("none: does not crash when run alone (state left by earlier inputs in the process)")')
        case $where in
            library*) theirs=$((theirs + 1)) ;;
            none*) alone=$((alone + 1)) ;;
            *) ours=$((ours + 1)) ;;
        esac
        echo "    crash $(basename "$c"): in $where" >>"$OUT/crashes.txt"
    done
    [[ $ours -gt 0 ]] && { result="$ours crash(es) in valley"; status=1; }
    [[ $theirs -gt 0 ]] && result="$result; $theirs in a library"
    [[ $alone -gt 0 ]] && result="$result; $alone not reproducible alone"
    [[ $result == ok ]] || result="$result (see $OUT/crashes.txt)"
    # curate: minimise, replay through valley, keep small rejected inputs
    min=$TMPDIR/min-$t
    rm -rf "$min"; mkdir -p "$min"
    "$bin" -merge=1 -max_len=65536 -timeout=30 "$min" "$work" >/dev/null 2>&1
    added=0
    for f in $(ls -S -r "$min"); do
        [[ $added -lt $CORPUS_MAX ]] || break
        p=$min/$f
        [[ $(stat -c %s "$p") -le 32768 ]] || continue
        [[ -e tests/corpus/$t/$f ]] && continue
        "$PYTHON" tests/fuzz/replay.py "$t" "$p" "$TMPDIR/replay" >/dev/null 2>&1
        if [[ $? -eq 2 ]]; then cp "$p" "tests/corpus/$t/$f"; added=$((added + 1)); fi
    done
    total=$(ls "tests/corpus/$t" | wc -l)
    printf '%-11s %8s %10s %9s %7s %6s  %s\n' "$t" "$SECS" "${runs:-?}" "${eps:-?}" "$total" "$added" "$result" | tee -a "$summary"
done
echo "summary in $summary; crashes (if any) in $OUT/crashes/"
exit $status
