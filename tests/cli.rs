//! The command line every app gets, exercised on the real chat example binary
//! (`target/<profile>/examples/chat`): `serve` with its stdout lines and graceful stop,
//! `functions`, `routes`, `auth keys`, `auth check`, `export` and `import`, and the logs.

#[allow(dead_code)] // the app is only used by the in-process backup test
#[path = "../examples/chat/app.rs"]
mod chat;
mod chat_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_support::{
    call, chat_command_without_flags, free_port, http, local_google, run_chat, sign_in_with_google,
    stdout_of_success, test_keys, ChatProcess, GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET,
};
use serde_json::{json, Value as Json};

const FREE_PORTS: [&str; 4] = ["--port", "0", "--site-port", "0"];

/// Run blocking process handling from an async test without stalling its runtime.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

/// The documents of an export file, keyed by id.
fn exported_documents(path: &Path) -> BTreeMap<String, Json> {
    let text = std::fs::read_to_string(path).expect("the export file is readable");
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let doc: Json = serde_json::from_str(line).expect("each line is a JSON document");
            let id = doc["_id"]
                .as_str()
                .expect("each document has an _id")
                .to_owned();
            (id, doc)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_its_addresses_and_sigterm_keeps_every_acknowledged_write() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let folder = data.path().join("chat");
    let mut server = blocking(|| ChatProcess::start(&folder, &FREE_PORTS, &[]));
    assert!(
        server.client.starts_with("http://127.0.0.1:"),
        "{}",
        server.client
    );
    assert!(
        server.site.starts_with("http://127.0.0.1:"),
        "{}",
        server.site
    );
    assert_ne!(server.client, server.site);

    // Four webhooks post as fast as they can; SIGTERM lands while they do.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let url = format!("{}/messages", server.site);
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            let http = http();
            for n in 0.. {
                let body = json!({"body": format!("writer {writer} message {n}"), "channel": format!("w{writer}")});
                let Ok(response) = http.post(&url).json(&body).send().await else {
                    return; // the server stopped accepting
                };
                if response.status().as_u16() != 201 {
                    return;
                }
                let Ok(answer) = response.json::<Json>().await else { return };
                if let Some(id) = answer["id"].as_str() {
                    acknowledged.lock().expect("the list is not poisoned").push(id.to_owned());
                }
            }
        }));
    }
    while acknowledged.lock().expect("the list is not poisoned").len() < 40 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = blocking(|| server.terminate());
    for writer in writers {
        writer.await.expect("the writer task ends");
    }
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM ends the server with 0\n{}",
        server.stderr()
    );
    assert_eq!(
        server.stdout_lines(),
        vec![
            format!("conflux: client api listening on {}", server.client),
            format!("conflux: http actions listening on {}", server.site),
        ],
        "stdout holds exactly the two listening lines"
    );
    let stderr = server.stderr();
    assert!(stderr.contains("conflux: shutting down"), "{stderr}");
    assert!(stderr.contains("conflux: stopped"), "{stderr}");
    assert!(
        stderr.contains("no sign-in provider is configured")
            && stderr.contains("conflux-local-oidc"),
        "without a provider the example says how to enable one: {stderr}"
    );
    // Text logs: one line per request and per function run, with durations.
    assert!(
        stderr.lines().any(|line| line.contains("request")
            && line.contains("path=/messages")
            && line.contains("status=201")
            && line.contains("duration_ms=")),
        "{stderr}"
    );
    assert!(
        stderr.lines().any(|line| line.contains("function run")
            && line.contains("path=\"messages:insertAs\"")
            && line.contains("kind=\"mutation\"")
            && line.contains("outcome=\"success\"")
            && line.contains("duration_ms=")),
        "{stderr}"
    );

    // Restarted (configured through the environment this time), every acknowledged
    // message is there.
    let acknowledged = acknowledged
        .lock()
        .expect("the list is not poisoned")
        .clone();
    let mut command = chat_command_without_flags();
    command
        .env("CONFLUX_PORT", "0")
        .env("CONFLUX_SITE_PORT", "0")
        .env("CONFLUX_DATA", &folder);
    let mut restarted = blocking(|| ChatProcess::spawn(command));
    let mut stored = BTreeSet::new();
    for writer in 0..4 {
        let listed = call(
            &restarted.client,
            "query",
            "messages:list",
            json!({"channel": format!("w{writer}")}),
            None,
        )
        .await;
        for message in listed["value"].as_array().expect("a list of messages") {
            stored.insert(message["_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(blocking(|| restarted.terminate()).code(), Some(0));
    // Each channel lists its newest 100; the export has them all.
    let backup = data.path().join("backup.jsonl");
    let backup_arg = backup.to_string_lossy().into_owned();
    let output = blocking(|| run_chat(&folder, &["export", &backup_arg], &[]));
    stdout_of_success(&output, "export");
    let exported = exported_documents(&backup);
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !exported.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes are missing after the restart: {missing:?}",
        missing.len(),
        acknowledged.len()
    );
    assert!(
        acknowledged
            .iter()
            .rev()
            .take(100)
            .any(|id| stored.contains(id)),
        "the restarted server lists the newest messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_requests_and_function_runs() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let folder = data.path().join("chat");
    let mut server = blocking(|| {
        ChatProcess::start(
            &folder,
            &["--port", "0", "--site-port", "0", "--log-format", "json"],
            &[],
        )
    });
    let response = http()
        .post(format!("{}/messages", server.site))
        .json(&json!({"body": "structured"}))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(blocking(|| server.terminate()).code(), Some(0));

    let stderr = server.stderr();
    let events: Vec<Json> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("a log line that is not JSON ({err}): {line}"))
        })
        .collect();
    let request = events
        .iter()
        .find(|event| event["message"] == "request" && event["path"] == "/messages")
        .unwrap_or_else(|| panic!("no request event for POST /messages in {stderr}"));
    assert_eq!(request["method"], "POST");
    assert_eq!(request["status"], 201);
    assert!(request["duration_ms"].is_number(), "{request}");
    assert_eq!(request["level"], "INFO");
    let run = events
        .iter()
        .find(|event| event["message"] == "function run" && event["path"] == "messages:insertAs")
        .unwrap_or_else(|| panic!("no function run event for messages:insertAs in {stderr}"));
    assert_eq!(run["kind"], "mutation");
    assert_eq!(run["outcome"], "success");
    assert!(run["duration_ms"].is_number(), "{run}");
    assert!(
        events.iter().any(|event| event["message"]
            .as_str()
            .is_some_and(|text| text.starts_with("no sign-in provider is configured"))),
        "the sign-in hint is a log event too: {stderr}"
    );
}

#[test]
fn functions_lists_every_function_with_its_kind_and_visibility() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let output = run_chat(&data.path().join("chat"), &["functions"], &[]);
    let listing = stdout_of_success(&output, "functions");
    let rows: BTreeSet<Vec<&str>> = listing
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect())
        .collect();
    let expected: BTreeSet<Vec<&str>> = [
        ["auth:isAuthenticated", "query", "public"],
        ["auth:signIn", "action", "public"],
        ["auth:signOut", "action", "public"],
        ["auth:store", "mutation", "internal"],
        ["messages:insertAs", "mutation", "internal"],
        ["messages:list", "query", "public"],
        ["messages:send", "mutation", "public"],
        ["users:viewer", "query", "public"],
    ]
    .into_iter()
    .map(|row| row.to_vec())
    .collect();
    assert_eq!(rows, expected, "{listing}");
    assert_eq!(
        listing
            .lines()
            .next()
            .map(|header| header.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["NAME", "KIND", "VISIBILITY"])
    );
}

#[test]
fn routes_lists_the_http_action_and_the_sign_in_routes_with_their_urls() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let output = run_chat(
        &data.path().join("chat"),
        &["--port", "4810", "--site-port", "4811", "routes"],
        &[
            ("AUTH_GOOGLE_ID", "client"),
            ("AUTH_GOOGLE_SECRET", "secret"),
            // Never contacted by `routes`; loopback so a mistake would stay local.
            ("AUTH_GOOGLE_ISSUER", "http://127.0.0.1:9"),
        ],
    );
    let listing = stdout_of_success(&output, "routes");
    let rows: Vec<Vec<&str>> = listing
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    for expected in [
        vec!["POST", "/messages", "http://127.0.0.1:4811/messages", "app"],
        vec![
            "GET",
            "/api/auth/signin/google",
            "http://127.0.0.1:4811/api/auth/signin/google",
            "auth",
        ],
        vec![
            "GET",
            "/api/auth/callback/google",
            "http://127.0.0.1:4811/api/auth/callback/google",
            "auth",
        ],
        vec![
            "POST",
            "/api/auth/signout",
            "http://127.0.0.1:4811/api/auth/signout",
            "auth",
        ],
        vec![
            "GET",
            "/.well-known/openid-configuration",
            "http://127.0.0.1:4811/.well-known/openid-configuration",
            "auth",
        ],
        vec![
            "GET",
            "/.well-known/jwks.json",
            "http://127.0.0.1:4811/.well-known/jwks.json",
            "auth",
        ],
    ] {
        assert!(
            rows.contains(&expected),
            "missing {expected:?} in\n{listing}"
        );
    }
    assert!(
        listing.contains("client API origin: http://127.0.0.1:4810 (the same routes under http://127.0.0.1:4810/http/...)"),
        "{listing}"
    );
}

/// `JWT_PRIVATE_KEY="…"` and `JWKS='…'` as `auth keys` prints them.
fn parse_keys(printed: &str) -> (String, String) {
    let mut private_key = None;
    let mut jwks = None;
    for line in printed.lines() {
        if let Some(value) = line.strip_prefix("JWT_PRIVATE_KEY=") {
            private_key = Some(value.trim_matches('"').to_owned());
        } else if let Some(value) = line.strip_prefix("JWKS=") {
            jwks = Some(value.trim_matches('\'').to_owned());
        }
    }
    (
        private_key.unwrap_or_else(|| panic!("no JWT_PRIVATE_KEY in {printed}")),
        jwks.unwrap_or_else(|| panic!("no JWKS in {printed}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_keys_sign_real_sign_ins_and_auth_check_explains_good_and_bad_tokens() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let folder = data.path().join("chat");
    let printed =
        blocking(|| stdout_of_success(&run_chat(&folder, &["auth", "keys"], &[]), "auth keys"));
    let (private_key, jwks) = parse_keys(&printed);
    assert!(
        private_key.starts_with("-----BEGIN PRIVATE KEY-----"),
        "{private_key}"
    );
    assert!(!private_key.contains('\n'), "one line, shell friendly");
    let jwks_json: Json = serde_json::from_str(&jwks).expect("JWKS is JSON");
    assert_eq!(jwks_json["keys"][0]["kty"], "RSA");

    let site_port = free_port();
    let site = format!("http://127.0.0.1:{site_port}");
    let google = local_google(&site).await;
    let site_port_arg = site_port.to_string();
    let env = [
        ("JWT_PRIVATE_KEY", private_key.as_str()),
        ("JWKS", jwks.as_str()),
        ("AUTH_GOOGLE_ID", GOOGLE_CLIENT_ID),
        ("AUTH_GOOGLE_SECRET", GOOGLE_CLIENT_SECRET),
        ("AUTH_GOOGLE_ISSUER", &google.issuer()),
        ("SITE_URL", &site),
    ];
    let args = ["--port", "0", "--site-port", site_port_arg.as_str()];
    let mut server = blocking(|| ChatProcess::start(&folder, &args, &env));
    assert!(
        server
            .stderr()
            .contains("sign-in tokens are signed with JWT_PRIVATE_KEY"),
        "{}",
        server.stderr()
    );
    let served: Json = http()
        .get(format!("{site}/.well-known/jwks.json"))
        .send()
        .await
        .expect("the JWKS is served")
        .json()
        .await
        .expect("the JWKS is JSON");
    assert_eq!(
        served["keys"][0]["n"], jwks_json["keys"][0]["n"],
        "the served key is the printed one"
    );

    let signed_in = sign_in_with_google(&server.client).await;
    let viewer = call(
        &server.client,
        "query",
        "users:viewer",
        json!({}),
        Some(&signed_in.token),
    )
    .await;
    assert_eq!(viewer["value"]["name"], "Ada Lovelace", "{viewer}");

    // `auth check` with the deployment's configuration (same keys, same site origin).
    let mut check_args: Vec<&str> = args.to_vec();
    check_args.extend(["auth", "check", signed_in.token.as_str()]);
    let good = blocking(|| run_chat(&folder, &check_args, &env));
    let report = stdout_of_success(&good, "auth check of a good token");
    assert!(report.contains("PASS"), "{report}");
    assert!(!report.contains("FAIL"), "{report}");
    assert!(
        report.contains("Ada Lovelace") || report.contains(&site),
        "{report}"
    );

    // Change the signature's first character: every base64url character there carries
    // six full bits, so the result still decodes and only the signature check can fail.
    // (The last character of an RSA-2048 signature carries padding bits; changing it could
    // make the token malformed instead.)
    let signature_start = signed_in.token.rfind('.').expect("a three-part token") + 1;
    let mut tampered = signed_in.token.clone();
    let first = tampered.as_bytes()[signature_start];
    let replacement = if first == b'A' { "B" } else { "A" };
    tampered.replace_range(signature_start..signature_start + 1, replacement);
    let mut bad_args: Vec<&str> = args.to_vec();
    bad_args.extend(["auth", "check", tampered.as_str()]);
    let bad = blocking(|| run_chat(&folder, &bad_args, &env));
    assert!(!bad.status.success(), "a tampered token is rejected");
    let report = String::from_utf8_lossy(&bad.stdout);
    assert!(
        report.contains("PASS"),
        "the steps before the failure pass: {report}"
    );
    let failed: Vec<&str> = report
        .lines()
        .filter(|line| line.contains("FAIL"))
        .collect();
    assert_eq!(failed.len(), 1, "exactly one failed step: {report}");
    assert!(failed[0].to_lowercase().contains("signature"), "{report}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("the token was rejected"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    assert_eq!(blocking(|| server.terminate()).code(), Some(0));
    google.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_into_an_empty_folder_reproduces_every_document() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let original = data.path().join("original");
    let restored = data.path().join("restored");
    let site_port = free_port();
    let site = format!("http://127.0.0.1:{site_port}");
    let google = local_google(&site).await;
    let (private_key, jwks) = test_keys();
    let issuer = google.issuer();
    let env = [
        ("JWT_PRIVATE_KEY", private_key.as_str()),
        ("JWKS", jwks.as_str()),
        ("AUTH_GOOGLE_ID", GOOGLE_CLIENT_ID),
        ("AUTH_GOOGLE_SECRET", GOOGLE_CLIENT_SECRET),
        ("AUTH_GOOGLE_ISSUER", issuer.as_str()),
        ("SITE_URL", site.as_str()),
    ];
    let site_port_arg = site_port.to_string();
    let args = ["--port", "0", "--site-port", site_port_arg.as_str()];

    // Some history: a signed-in user (users, accounts, sessions, refresh tokens), messages
    // from them, anonymous ones and webhook ones in two channels.
    let mut server = blocking(|| ChatProcess::start(&original, &args, &env));
    let signed_in = sign_in_with_google(&server.client).await;
    for n in 0..5 {
        let sent = call(
            &server.client,
            "mutation",
            "messages:send",
            json!({"body": format!("signed in {n}")}),
            Some(&signed_in.token),
        )
        .await;
        assert_eq!(sent["status"], "success", "{sent}");
        let sent = call(
            &server.client,
            "mutation",
            "messages:send",
            json!({"body": format!("anonymous {n}"), "channel": "random"}),
            None,
        )
        .await;
        assert_eq!(sent["status"], "success", "{sent}");
        let hook = http()
            .post(format!("{site}/messages"))
            .json(&json!({"body": format!("webhook {n}"), "channel": "hooks", "extra": n}))
            .send()
            .await
            .expect("the webhook answers");
        assert_eq!(hook.status().as_u16(), 201);
    }
    assert_eq!(blocking(|| server.terminate()).code(), Some(0));

    let backup = data.path().join("backup.jsonl");
    let backup_arg = backup.to_string_lossy().into_owned();
    let exported = blocking(|| run_chat(&original, &["export", &backup_arg], &[]));
    stdout_of_success(&exported, "export");
    let progress = String::from_utf8_lossy(&exported.stderr);
    let before = exported_documents(&backup);
    let count = before.len();
    assert!(
        progress.contains(&format!("conflux: exported {count} documents")),
        "{progress}"
    );
    assert!(
        progress.contains(&format!("conflux: export finished: {count} documents")),
        "{progress}"
    );
    let tables: BTreeSet<&str> = before
        .values()
        .filter_map(|doc| doc["_table"].as_str())
        .collect();
    for table in [
        "messages",
        "users",
        "authAccounts",
        "authSessions",
        "authRefreshTokens",
    ] {
        assert!(
            tables.contains(table),
            "the export has `{table}`: {tables:?}"
        );
    }
    assert!(
        !tables.iter().any(|table| table.starts_with('_')),
        "no system tables: {tables:?}"
    );

    let imported = blocking(|| run_chat(&restored, &["import", &backup_arg], &[]));
    stdout_of_success(&imported, "import");
    let progress = String::from_utf8_lossy(&imported.stderr);
    assert!(
        progress.contains(&format!("conflux: imported {count} documents")),
        "{progress}"
    );
    assert!(
        progress.contains(&format!("conflux: import finished: {count} documents")),
        "{progress}"
    );

    // Same ids, creation times and fields.
    let again = data.path().join("again.jsonl");
    let again_arg = again.to_string_lossy().into_owned();
    stdout_of_success(
        &blocking(|| run_chat(&restored, &["export", &again_arg], &[])),
        "export",
    );
    let after = exported_documents(&again);
    assert_eq!(after.len(), count);
    for (id, doc) in &before {
        assert_eq!(
            after.get(id),
            Some(doc),
            "document {id} differs after the round trip"
        );
    }

    // Importing the same backup again does not duplicate anything: it is refused.
    let twice = blocking(|| run_chat(&restored, &["import", &backup_arg], &[]));
    assert!(
        !twice.status.success(),
        "a second import into a non-empty folder is refused"
    );
    let refusal = String::from_utf8_lossy(&twice.stderr);
    assert!(
        refusal.contains("the data folder is not empty (table `"),
        "{refusal}"
    );

    // The restored deployment serves the same data, and the signed-in user is still
    // signed in (their session came along).
    let mut server = blocking(|| ChatProcess::start(&restored, &args, &env));
    let viewer = call(
        &server.client,
        "query",
        "users:viewer",
        json!({}),
        Some(&signed_in.token),
    )
    .await;
    assert_eq!(viewer["value"]["name"], "Ada Lovelace", "{viewer}");
    let listed = call(&server.client, "query", "messages:list", json!({}), None).await;
    let bodies: Vec<&str> = listed["value"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(
        bodies,
        (0..5).map(|n| format!("signed in {n}")).collect::<Vec<_>>()
    );
    assert_eq!(blocking(|| server.terminate()).code(), Some(0));
    google.shutdown().await;
}

/// Export and import report progress every 10,000 documents and at the end, and keep
/// ids and creation times, through the library API the commands use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_exports_and_imports_report_progress() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let app = chat::chat_app().mutation(
        "bulk:insert",
        conflux::v::object([("count", conflux::v::required(conflux::v::float64()))]),
        |ctx, args| {
            let count = args.get("count").and_then(conflux::Value::as_f64).unwrap_or(0.0) as usize;
            for n in 0..count {
                ctx.db().insert(
                    "messages",
                    conflux::object! {"channel" => "bulk", "author" => "loader", "body" => format!("{n}")},
                )?;
            }
            Ok(conflux::Value::Null)
        },
    );
    let source = app
        .embed(data.path().join("source"))
        .await
        .expect("the app opens");
    for _ in 0..42 {
        let mut args = conflux::Object::new();
        args.insert("count".into(), conflux::Value::Float64(500.0))
            .expect("a valid field");
        source
            .mutation("bulk:insert", args, conflux::Identity::Anonymous)
            .await
            .expect("a batch of messages is inserted");
    }
    let mut file = Vec::new();
    let mut exported_progress = Vec::new();
    let written = conflux::transfer::export(source.runner().database(), &mut file, &mut |n| {
        exported_progress.push(n)
    })
    .expect("the export succeeds");
    assert_eq!(written, 21_000);
    assert_eq!(exported_progress, vec![10_000, 20_000, 21_000]);

    let target = chat::chat_app()
        .embed(data.path().join("target"))
        .await
        .expect("the empty app opens");
    let mut imported_progress = Vec::new();
    let imported = conflux::transfer::import(
        target.runner().database(),
        &mut std::io::BufReader::new(file.as_slice()),
        &mut |n| imported_progress.push(n),
    )
    .await
    .expect("the import succeeds");
    assert_eq!(imported, 21_000);
    assert_eq!(imported_progress, vec![10_000, 20_000, 21_000]);

    let mut again = Vec::new();
    conflux::transfer::export(target.runner().database(), &mut again, &mut |_| {})
        .expect("the second export succeeds");
    let lines = |bytes: &[u8]| -> BTreeSet<String> {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        lines(&again),
        lines(&file),
        "the same documents, ids and creation times"
    );
}
