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
