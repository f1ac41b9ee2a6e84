//! Shared fixtures of the integration tests: a chat schema and small helpers.

#![allow(dead_code)]

use std::path::Path;

use conflux_db::{Database, Document, Schema, TableDef};
use conflux_values::validator::v;
use conflux_values::{object, Object, Value};

/// The schema of a small chat app: channels of messages, and users.
pub fn chat_schema() -> Schema {
    Schema::new()
        .table(
            TableDef::new("messages")
                .validator(v::object([
                    ("channel", v::string().into()),
                    ("body", v::string().into()),
                    ("author", v::optional(v::id("users"))),
                    ("likes", v::optional(v::int64())),
                ]))
                .index("by_channel", &["channel"]),
        )
        .table(TableDef::new("users").index("by_name", &["name"]))
}

/// A chat database on sled in `dir`.
pub fn open_chat(dir: &Path) -> Database {
    Database::open_sled(dir, chat_schema()).expect("the chat database opens")
}

/// A message object.
pub fn message(channel: &str, body: &str) -> Object {
    object! {"channel" => channel, "body" => body}
}

/// The bodies of `docs`, in order.
pub fn bodies(docs: &[Document]) -> Vec<String> {
    docs.iter()
        .map(|doc| match doc.value.get("body") {
            Some(Value::String(body)) => body.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Insert messages into `channel` in one committed transaction each, returning nothing.
pub async fn post(db: &Database, channel: &str, bodies: &[&str]) {
    for body in bodies {
        let mut tx = db.begin();
        tx.insert("messages", message(channel, body))
            .expect("a valid message");
        db.commit(tx).await.expect("the commit succeeds");
    }
}
