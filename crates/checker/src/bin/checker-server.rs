//! The server under test: the checker app with the standard command line (`--data`,
//! `--port`, ...), started as a child process by the checker, the fault tests and the soak.

use std::process::ExitCode;

fn main() -> ExitCode {
    match conflux_checker::app::checker_app() {
        Ok(app) => app.run(),
        Err(err) => {
            eprintln!("checker-server: {}", err.client_message(true));
            ExitCode::FAILURE
        }
    }
}
