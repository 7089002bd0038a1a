#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for a bounded time and prints, per target, the minutes run, the
# inputs executed and any crash (its input is kept in fuzz/artifacts/<target>/).
#
#     bench/fuzz.sh                 # every target, 60 s each
#     bench/fuzz.sh 30 config       # one target, 30 s
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). The toolchain is stable: RUSTC_BOOTSTRAP=1 lets
# cargo-fuzz pass its nightly flags. No sanitizer (`-s none`): the crate forbids unsafe code, so
# AddressSanitizer would find little and cost several times the executions; panics, hangs (-timeout)
# and the targets' own assertions are what is checked. The corpus grows in fuzz/corpus/<target>/
# (not committed); fuzz/seeds/<target>/ holds the committed starting inputs.
set -euo pipefail

secs=${1:-60}
shift || true
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=(request_head verify capture config); fi
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ] || [ "$secs" -gt 3600 ]; then
    echo "seconds per target must be 1-3600, not $secs" >&2
    exit 2
fi

cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none

status=0
printf '%-14s %8s %14s %10s  %s\n' target minutes executions exec/s result
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    dirs=("corpus/$t")
    [ -d "seeds/$t" ] && dirs+=("seeds/$t")
    log=$(mktemp)
    start=$(date +%s.%N)
    if cargo fuzz run -s none "$t" "${dirs[@]}" -- \
        -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result="CRASH: $(ls -t "artifacts/$t" 2>/dev/null | head -1) (see $log)"
        status=1
    fi
    end=$(date +%s.%N)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    minutes=$(echo "($end - $start) / 60" | bc -l)
    printf '%-14s %8.1f %14s %10s  %s\n' "$t" "$minutes" "${execs:-0}" "${rate:-0}" "$result"
    [ "$result" = ok ] && rm -f "$log"
done
exit $status
