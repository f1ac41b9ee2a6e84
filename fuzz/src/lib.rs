//! Shared pieces of the fuzz targets of Conflux.
//!
//! Why a library: several targets need the same expensive or fiddly setup, made once per
//! fuzzing process and never per input: an async runtime for the parsers that sit behind
//! `async fn`s, fixed signing keys so that committed seed tokens verify on every machine, a
//! token validator with a pinned clock so that those seeds never expire, and small helpers
//! that split a text input into the parts a target feeds to the code under test.
//!
//! Everything here is deterministic: the same input always takes the same path, so a crash
//! found once reproduces with `cargo fuzz run <target> <crash file>`.

pub mod jwt;

use std::sync::LazyLock;

/// One single-threaded runtime per fuzzing process (with the blocking pool, which signature
/// checks use). Targets call [`block_on`] for each input.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => panic!("the fuzzing runtime cannot start: {err}"),
    }
});

/// Run `future` to completion on the process's runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    RUNTIME.block_on(future)
}

static VERBOSE: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("CONFLUX_FUZZ_VERBOSE").is_some_and(|v| v != "0"));

/// Whether `CONFLUX_FUZZ_VERBOSE` is set: targets then print what they decided about each
/// input, which helps when replaying a seed or a crash (`cargo fuzz run <target> <file>`).
pub fn verbose() -> bool {
    *VERBOSE
}

/// The input as text: UTF-8 inputs as they are, anything else through a lossy conversion
/// (every parser under test takes text, and a lossy view still reaches them).
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Split `text` at the first line break: `(first line, the rest)`.
pub fn first_line(text: &str) -> (&str, &str) {
    match text.split_once('\n') {
        Some((line, rest)) => (line.trim_end_matches('\r'), rest),
        None => (text.trim_end_matches('\r'), ""),
    }
}
