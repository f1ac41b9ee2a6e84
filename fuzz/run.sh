#!/usr/bin/env bash
# Run the fuzz targets of Conflux for a time budget each; exit non-zero if any crashes.
#
#   fuzz/run.sh [seconds-per-target] [target...]
#
# With no targets, every target of fuzz/Cargo.toml runs. The default budget is 60 s.
# Works on the stable toolchain: targets are built by `cargo fuzz build -s none` (no
# sanitizer, so no nightly flag is needed), with debug assertions and overflow checks on.
#
# Inputs:   fuzz/corpus/<target>/ (the committed seeds, read only) and
#           fuzz/target/corpus/<target>/ (inputs found by earlier runs on this machine).
# Outputs:  new interesting inputs go to fuzz/target/corpus/<target>/, logs to
#           fuzz/target/logs/<target>.log, crashing inputs to fuzz/artifacts/<target>/.
# See fuzz/README.md for longer campaigns and for turning a crash into a regression test.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2

seconds="${1:-60}"
if [[ $# -gt 0 ]]; then
    shift
fi
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
    echo "usage: fuzz/run.sh [seconds-per-target] [target...]  (seconds must be a positive integer)" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$root/fuzz"
cd "$root"

all_targets=()
while IFS= read -r name; do
    all_targets+=("$name")
done < <(sed -n 's/^name = "\(.*\)"$/\1/p' "$fuzz_dir/Cargo.toml" | grep -v '^conflux-fuzz$')

build_all=1
if [[ $# -gt 0 ]]; then
    build_all=0
    targets=("$@")
    for target in "${targets[@]}"; do
        if [[ ! " ${all_targets[*]} " =~ " $target " ]]; then
            echo "unknown fuzz target \`$target\`; the targets are: ${all_targets[*]}" >&2
            exit 2
        fi
    done
else
    targets=("${all_targets[@]}")
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

echo "== building ${#targets[@]} fuzz target(s) (release, debug assertions, no sanitizer)"
build_start=$SECONDS
if [[ $build_all -eq 1 ]]; then
    cargo fuzz build --fuzz-dir "$fuzz_dir" -O -a -s none
else
    for target in "${targets[@]}"; do
        cargo fuzz build --fuzz-dir "$fuzz_dir" -O -a -s none "$target"
    done
fi
echo "== built in $((SECONDS - build_start)) s"

host="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$fuzz_dir/target/$host/release"
mkdir -p "$fuzz_dir/target/logs"

passed=0
failed=0
failures=()
for target in "${targets[@]}"; do
    work="$fuzz_dir/target/corpus/$target"
    seeds="$fuzz_dir/corpus/$target"
    artifacts="$fuzz_dir/artifacts/$target"
    log="$fuzz_dir/target/logs/$target.log"
    mkdir -p "$work" "$seeds" "$artifacts"
    dict_args=()
    if [[ -f "$fuzz_dir/dicts/$target.dict" ]]; then
        dict_args=("-dict=$fuzz_dir/dicts/$target.dict")
    fi
    echo "== $target: ${seconds} s"
    start=$SECONDS
    status=0
    "$bin_dir/$target" \
        -max_total_time="$seconds" \
        -timeout=20 \
        -rss_limit_mb=2048 \
        -print_final_stats=1 \
        -artifact_prefix="$artifacts/" \
        "${dict_args[@]}" \
        "$work" "$seeds" >"$log" 2>&1 || status=$?
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    if [[ $status -eq 0 ]]; then
        passed=$((passed + 1))
        echo "   clean: ${runs:-?} inputs in $((SECONDS - start)) s"
    else
        failed=$((failed + 1))
        crash="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
        failures+=("$target: ${crash:-no crash file, see $log}")
        echo "   FAILED (exit $status); crash input: ${crash:-none written}; log: $log"
        grep -m 1 -A 12 -E "panicked at|ERROR: libFuzzer|==[0-9]+== ERROR" "$log" | sed 's/^/   | /' || true
        if [[ -n "$crash" ]]; then
            echo "   reproduce: cargo fuzz run --fuzz-dir fuzz -O -a -s none $target $crash"
        fi
    fi
done

echo
if [[ $failed -gt 0 ]]; then
    echo "== crashes:"
    for failure in "${failures[@]}"; do
        echo "   $failure"
    done
fi
echo "fuzz summary: $passed target(s) clean, $failed crashed"
[[ $failed -eq 0 ]]
