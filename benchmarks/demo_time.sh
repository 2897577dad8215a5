#!/usr/bin/env bash
# The README's main command timed end to end: twice (the second run reuses the base model's
# baseline and held-out figures from the first), then `--quick` once. Prints each run's wall
# time, its per-trial engine overhead and where its time went. Run it on an idle machine from
# the repository root with the project's environment active:
#
#     bash benchmarks/demo_time.sh [SWEEP_FILE]    # default demo/supersense3.yaml; about 45 min on 2 cores
#
# The runs use a cache folder of their own (so the first run scores the base model as a fresh
# clone would); the converted model is linked in from the usual cache when it is there, so the
# GGUF conversion is not timed (remove the link to time it). Logs go to $OUT (default a new
# temporary folder). Setting TUNE_FUNCTION_THREAD_TIMEOUT_S=2 in the environment times the
# engine as it was before trial workers waited for the last trial's thread (hpo/run/trial.py).
set -euo pipefail

sweep=${1:-demo/supersense3.yaml}
out=${OUT:-$(mktemp -d -t demo-time-XXXX)}
export FORGE_HPO_CACHE="$out/cache"
mkdir -p "$FORGE_HPO_CACHE"
models="${HOME}/.cache/forge-hpo/models"
[ -d "$models" ] && ln -sfn "$models" "$FORGE_HPO_CACHE/models"

timed() {  # timed NAME ARGS...: run `hpo sweep ARGS`, log it, print its figures
    local name=$1 started ended code
    shift
    started=$(date +%s)
    code=0
    python -m hpo sweep "$@" >"$out/$name.log" 2>&1 || code=$?
    ended=$(date +%s)
    printf '%-8s %5.1f min  exit %s  %s\n' "$name" "$(echo "($ended - $started) / 60" | bc -l)" "$code" \
        "$(grep -o '([0-9.]* s per trial)' "$out/$name.log" | tr -d '()' || echo 'no trial time line')"
    sed -n '/^where the time went/,/^  other/p' "$out/$name.log"
}

echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), logs in $out"
timed first "$sweep"
timed second "$sweep"
timed quick "$sweep" --quick
