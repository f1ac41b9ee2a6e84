# Development tasks for Conflux (run with `just <recipe>`).

# The full test suite.
test:
    cargo test --workspace

# Install the official npm clients the integration tests drive, exactly as locked.
npm-install:
    npm ci --ignore-scripts --no-audit --no-fund --prefix tests/npm

# Lints, warnings as errors.
clippy:
    cargo clippy --workspace --all-targets -- -D warnings

# Format every crate.
fmt:
    cargo fmt --all

# Run the fuzz targets (all, or the ones named) for `seconds` each; fails on a crash.
# See fuzz/README.md. Example: `just fuzz 600 jwt_token`.
fuzz seconds="60" *targets:
    fuzz/run.sh {{seconds}} {{targets}}

# The history checker: seeded runs of official clients under faults (see crates/checker).
# Example: `just checker 1 20`.
checker seed="1" runs="10":
    cargo run -p conflux-checker --bin checker -- --seed {{seed}} --runs {{runs}}

# The soak: live-query connections under a write load; memory and latency over time.
soak connections="1000" secs="600" writes="50":
    cargo run --release -p conflux-checker --bin soak -- --connections {{connections}} --duration-secs {{secs}} --writes-per-sec {{writes}}
