#!/usr/bin/env bash
# Reliability: the bounded kill -9 campaign of `make check` (issue 11): 3 trials of
# tests/reliability/kill_campaign.sh on 2 ranks (jobs of random kinds among train, curve,
# fge, bma, surface and `valley run`; one random rank killed at a random moment or inside a
# file write). Each trial must end non-zero within 60 s, leave only complete, readable files
# under final names, and resume / rerun in the same directory to results bit-identical to
# an uninterrupted run's. The seed changes with every run (printed;
# KILL_SEED=S reproduces one). The long campaign: tests/reliability/kill_campaign.sh 200.
set -u
source "$(dirname "$0")/lib.bash"
test_setup rel_kill
KILL_NP=${KILL_NP:-2} VALLEY_TEST_TMP=$dir tests/reliability/kill_campaign.sh 3 || fail "the kill campaign failed"
echo "$name: ok"
