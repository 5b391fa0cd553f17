#!/usr/bin/env bash
# End-to-end: bad input ends with exit status 2 and a message naming the file (and
# file:line: key for decks), and leaves no output under a final name and no *.tmp.*.
#   decks (1 and 2 ranks; under mpirun the job status must be 2 as well and the
#   message printed once): unknown key, bad value, unknown section, missing deck
#   file, --set with a bad value, --set with an unknown key;
#   missing dataset (data.path pointing nowhere; 1 and 2 ranks);
#   truncated IDX source for `valley prepare fashion-mnist --set data.source=DIR`
#   (images and labels): the existing input/data/fashion-mnist.nc must not be
#   replaced or damaged (checksum before/after; restored from a copy if it was);
#   corrupt NetCDF given to `valley evaluate` (truncated model.nc, random bytes,
#   missing file); a truncated dataset .nc given to `valley train` via data.path.
set -u
source "$(dirname "$0")/lib.bash"
test_setup app_bad_input
DATA=input/data/fashion-mnist.nc
ncases=0
small=(--set model.kind=mlp --set model.widths=16 --set data.train_subset=256 --set data.test_subset=100
       --set train.epochs=1)

# expect_bad LABEL NP PATTERN... -- valley ARGS: runs valley (NP=0: without mpirun) with
# --out $dir/LABEL; wants status 2, every PATTERN (fixed strings) in the output, and no
# file under $dir/LABEL. With NP>0 and ONCE=1, the message must appear exactly once.
expect_bad() {
    local label=$1 np=$2 out=$dir/$1 log=$dir/$1.log st
    shift 2
    local pats=()
    while [[ $1 != -- ]]; do pats+=("$1"); shift; done
    shift
    ncases=$((ncases + 1))
    if [[ $np -eq 0 ]]; then
        timeout 60 "$VALLEY" "$@" --out "$out" >"$log" 2>&1
    else
        timeout 60 $MPIRUN -np "$np" "$VALLEY" "$@" --out "$out" >"$log" 2>&1
    fi
    st=$?
    local first
    first=$(grep -m1 '^valley' "$log")
    echo "$label: status $st: ${first:-<no valley message>}"
    if [[ $st -ne 2 ]]; then err "$label: exit status $st, want 2"; sed 's/^/    | /' "$log" | head -20; fi
    local p
    for p in "${pats[@]}"; do
        grep -qF -- "$p" "$log" || { err "$label: message lacks '$p'"; sed 's/^/    | /' "$log" | head -10; }
    done
    if [[ ${ONCE:-0} -eq 1 ]]; then
        local n
        n=$(grep -cF -- "${pats[0]}" "$log")
        [[ $n -eq 1 ]] || err "$label: the message is printed $n times, want once"
    fi
    if [[ -d $out ]]; then
        local files
        files=$(find "$out" -type f)
        [[ -z $files ]] || err "$label: files written: $files"
    fi
}

# ---- decks
printf '[train]\nepochs = 1\nepochz = 3\n' >"$dir/unknown_key.ini"
printf '[train]\n# a comment\nepochs = many\n' >"$dir/bad_value.ini"
printf '[run]\nseed = 3\n[trian]\nepochs = 1\n' >"$dir/unknown_section.ini"
for np in 0 2; do
    ONCE=1 expect_bad deck_unknown_key_np$np $np "$dir/unknown_key.ini:3:" "train.epochz" -- train "$dir/unknown_key.ini"
    ONCE=1 expect_bad deck_bad_value_np$np $np "$dir/bad_value.ini:3:" "train.epochs" "many" -- train "$dir/bad_value.ini"
    ONCE=1 expect_bad deck_unknown_section_np$np $np "$dir/unknown_section.ini:3:" "trian" -- train "$dir/unknown_section.ini"
    ONCE=1 expect_bad deck_missing_np$np $np "$dir/no_such_deck.ini" -- train "$dir/no_such_deck.ini"
    ONCE=1 expect_bad set_bad_value_np$np $np "train.lr" "abc" -- train "${small[@]}" --set train.lr=abc
    ONCE=1 expect_bad set_unknown_key_np$np $np "train.lrr" -- train "${small[@]}" --set train.lrr=0.1
done

# ---- missing dataset
for np in 0 2; do
    expect_bad missing_dataset_np$np $np "$dir/nowhere/fashion-mnist.nc" -- \
        train "${small[@]}" --set data.path="$dir/nowhere/fashion-mnist.nc"
done

# ---- truncated IDX sources: the good dataset file must survive
sum_before=$(md5sum <"$DATA")
cp "$DATA" "$dir/dataset-backup.nc"
src=/usr/share/datasets/fashion-mnist
if [[ -f $src/train-images-idx3-ubyte.gz ]]; then
    mkdir -p "$dir/idx1" "$dir/idx2"
    cp "$src"/*.gz "$dir/idx1/"
    cp "$src"/*.gz "$dir/idx2/"
    truncate -s 1000000 "$dir/idx1/train-images-idx3-ubyte.gz"       # cut inside the gzip stream
    gzip -dc "$src/t10k-labels-idx1-ubyte.gz" | head -c 5000 | gzip >"$dir/idx2/t10k-labels-idx1-ubyte.gz" # short IDX
    expect_bad idx_truncated_images 0 "$dir/idx1/train-images-idx3-ubyte.gz" -- \
        prepare fashion-mnist --set data.source="$dir/idx1"
    expect_bad idx_truncated_labels 0 "$dir/idx2/t10k-labels-idx1-ubyte.gz" -- \
        prepare fashion-mnist --set data.source="$dir/idx2"
else
    err "Debian's dataset-fashion-mnist is not installed ($src)"
fi
sum_after=$(md5sum <"$DATA")
if [[ $sum_before != "$sum_after" ]]; then
    err "a failed prepare replaced or damaged $DATA (restoring it)"
    cp "$dir/dataset-backup.nc" "$DATA.restore" && mv "$DATA.restore" "$DATA"
fi
left=$(find input/data -name '*.tmp.*')
[[ -z $left ]] || err "temporary files left in input/data: $left"

# ---- corrupt NetCDF to evaluate
timeout 60 "$VALLEY" train "${small[@]}" --out "$dir/model" >"$dir/model.log" 2>&1 || { cat "$dir/model.log"; fail "training the small model failed"; }
head -c 20000 "$dir/model/model.nc" >"$dir/truncated_model.nc"
head -c 50000 /dev/urandom >"$dir/random.nc"
expect_bad eval_truncated 0 "$dir/truncated_model.nc" -- evaluate "$dir/truncated_model.nc"
expect_bad eval_random 0 "$dir/random.nc" -- evaluate "$dir/random.nc"
expect_bad eval_missing 0 "$dir/no_such_model.nc" -- evaluate "$dir/no_such_model.nc"
expect_bad eval_truncated_np2 2 "$dir/truncated_model.nc" -- evaluate "$dir/truncated_model.nc"

# ---- truncated dataset file to train
head -c 20000000 "$DATA" >"$dir/truncated_data.nc"
expect_bad train_truncated_dataset 0 "$dir/truncated_data.nc" -- train "${small[@]}" --set data.path="$dir/truncated_data.nc"

left=$(find "$dir" -name '*.tmp.*')
[[ -z $left ]] || err "temporary files left: $left"
[[ $errors -eq 0 ]] || fail "$errors check(s) failed in $ncases cases"
echo "$name: ok ($ncases cases)"
