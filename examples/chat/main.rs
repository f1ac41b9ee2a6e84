//! The example chat app: the project's front door.
//!
//! `cargo run --release --example chat` serves the client API on 127.0.0.1:3210 and the HTTP
//! actions (and sign-in routes) on 127.0.0.1:3211, on the embedded store in
//! `./.conflux/chat`. When the web front-end has been built
//! (`npm --prefix examples/chat/web ci && npm --prefix examples/chat/web run build`), the
//! site origin serves it too, so one command shows a working app; sign-in then returns to
//! that origin unless `SITE_URL` says otherwise.
//!
//! Its surface (function names, arguments, HTTP action, flags) is a contract described in
//! `docs/example-chat.md`: tests, benchmarks and users all drive it.

mod app;

use std::process::ExitCode;

use conflux::auth::AuthSetup;

fn main() -> ExitCode {
    let mut auth = match AuthSetup::from_env() {
        Ok(auth) => auth,
        Err(err) => {
            eprintln!("chat: {}", err.client_message(true));
            return ExitCode::FAILURE;
        }
    };
    // The default SITE_URL is the Vite dev server (`npm run dev`). When this server serves
    // the built front-end itself, the page a user signs in from is the site origin, so
    // sign-in must come back there.
    if app::web_app_built() && !auth.has_site_url() {
        auth = auth.site_url_defaults_to_site_origin();
    }
    app::chat_app().auth(auth).run()
}
