//! `local-oidc`: run a local OpenID Connect provider and print its issuer, so that sign-in
//! can be tried offline.
//!
//! ```text
//! local-oidc [--port N] [--client-id ID] [--client-secret SECRET]
//!            [--redirect-uri URI]... [--email EMAIL] [--name NAME]
//! ```
//! It runs until interrupted (Ctrl-C).

use std::process::ExitCode;

use conflux_local_oidc::{LocalOidcConfig, LocalOidcProvider, TestClient};

const USAGE: &str = "usage: local-oidc [--port N] [--client-id ID] [--client-secret SECRET] \
[--redirect-uri URI]... [--email EMAIL] [--name NAME]";

fn parse_args(args: impl Iterator<Item = String>) -> Result<(LocalOidcConfig, TestClient), String> {
    let mut config = LocalOidcConfig::default();
    let mut client = TestClient::default();
    let mut redirect_uris = Vec::new();
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_owned());
        }
        let Some(value) = args.next() else {
            return Err(format!("{flag} needs a value\n{USAGE}"));
        };
        match flag.as_str() {
            "--port" => {
                config.port = value
                    .parse()
                    .map_err(|_| format!("--port: `{value}` is not a port number"))?;
            }
            "--client-id" => client.client_id = value,
            "--client-secret" => client.client_secret = value,
            "--redirect-uri" => redirect_uris.push(value),
            "--email" => config.user.email = value,
            "--name" => config.user.name = value,
            other => return Err(format!("unknown option `{other}`\n{USAGE}")),
        }
    }
    if !redirect_uris.is_empty() {
        client.redirect_uris = redirect_uris;
    }
    config.clients = vec![client.clone()];
    Ok((config, client))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (config, client) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let user = config.user.clone();
    let provider = match LocalOidcProvider::start(config).await {
        Ok(provider) => provider,
        Err(err) => {
            eprintln!("local-oidc: {}", err.client_message(true));
            return ExitCode::FAILURE;
        }
    };
    println!("issuer:         {}", provider.issuer());
    println!(
        "discovery:      {}/.well-known/openid-configuration",
        provider.issuer()
    );
    println!("client id:      {}", client.client_id);
    println!("client secret:  {}", client.client_secret);
    println!("redirect URIs:  {}", client.redirect_uris.join(", "));
    println!(
        "signs in:       {} <{}> (sub {})",
        user.name, user.email, user.sub
    );
    println!("press Ctrl-C to stop");
    if let Err(err) = tokio::signal::ctrl_c().await {
        eprintln!("local-oidc: cannot wait for Ctrl-C: {err}");
    }
    provider.shutdown().await;
    ExitCode::SUCCESS
}
