//! The application the checks run against: list-append registers, blobs, a flood target,
//! soak rooms and an identity query.
//!
//! Why list-append: every append writes a value that no other append writes, and every
//! read returns the whole list, so the order of a list *is* the order of the writes to it
//! and a read tells exactly which writes it saw. From a history of appends and reads the
//! checker can therefore infer every write-write, write-read and read-write dependency
//! without guessing (the reasoning of Elle, Kingsbury and Alvaro, VLDB 2020).
//!
//! Functions (all public):
//!
//! | function | kind | what it does |
//! |---|---|---|
//! | `lists:init {keys}` | mutation | creates the empty list document of each key that has none |
//! | `lists:read {key}` | query | the list of `key` (`[]` when it has no document) |
//! | `lists:append {key, value, dedupe?}` | mutation | appends `value` to `key`'s list; returns the list as read plus `value` |
//! | `lists:appendAndRead {key, value, read, dedupe?}` | mutation | the same, and reads the lists of the keys in `read`; returns `{<key>: list, ...}` |
//! | `blobs:put {key, body}` | mutation | stores a (large) string under `key` |
//! | `blobs:keys {}` | query | the keys of every stored blob, sorted |
//! | `flood:ping {}` | mutation | answers `"pong"`; a cheap request for the rate-limit test |
//! | `soak:room {room}` | query | the latest post of `room` (`{seq, sentAt}`) or `null` |
//! | `soak:post {room, seq, sentAt}` | mutation | records a new latest post of `room` |
//! | `identity:whoami {}` | query | the subject of the caller's token, or `null` |
//!
//! With `dedupe: true` an append whose value is already in the list appends nothing and
//! says so: `lists:append` returns `{alreadyAppended: <list as read>}` and
//! `lists:appendAndRead` adds `alreadyAppended: true` to its object. The Rust client
//! 0.10.4 starts a new session on every socket, so the server cannot recognise a mutation
//! it resends after a reconnect, and an application using that client makes its writes
//! idempotent this way. The checker needs to know which transaction did the append: the
//! lists such a resend returns were read after other clients' appends.
//!
//! Third-party tokens are trusted when the server starts with
//! `CONFLUX_CHECKER_OIDC_ISSUER` (and `CONFLUX_CHECKER_OIDC_APPLICATION_ID`, default
//! `app`) set: an OpenID Connect provider at that issuer.

use conflux::{
    object, v, App, DocumentId, Error, ErrorCode, IndexRange, Object, Result, TableDef, Value,
};
use conflux_functions::context::DbWriter;

/// The environment variable naming the issuer of a trusted OpenID Connect provider.
pub const OIDC_ISSUER_ENV: &str = "CONFLUX_CHECKER_OIDC_ISSUER";
/// The environment variable naming the application id (`aud`) that provider issues for.
pub const OIDC_APPLICATION_ID_ENV: &str = "CONFLUX_CHECKER_OIDC_APPLICATION_ID";

/// The app, with its tables and functions; see the module docs. Fails when
/// [`OIDC_ISSUER_ENV`] names an issuer that is not a usable provider domain.
pub fn checker_app() -> Result<App> {
    let mut app = App::new("checker")
        .table(TableDef::new("lists").index("by_key", &["key"]))
        .table(TableDef::new("blobs").index("by_key", &["key"]))
        .table(TableDef::new("rooms").index("by_room", &["room"]))
        .mutation(
            "lists:init",
            v::object([("keys", v::array(v::string()))]),
            |ctx, args| {
                let keys = string_list(&args, "keys")?;
                let mut db = ctx.db();
                for key in keys {
                    let existing = db
                        .query("lists")?
                        .with_index("by_key", IndexRange::new().eq("key", key.as_str()))?
                        .first()?;
                    if existing.is_none() {
                        db.insert(
                            "lists",
                            object! {"key" => key.as_str(), "items" => Value::Array(Vec::new())},
                        )?;
                    }
                }
                Ok(Value::Null)
            },
        )
        .query(
            "lists:read",
            v::object([("key", v::string())]),
            |ctx, args| {
                let key = string_arg(&args, "key")?;
                let mut db = ctx.db();
                let doc = db
                    .query("lists")?
                    .with_index("by_key", IndexRange::new().eq("key", key.as_str()))?
                    .first()?;
                Ok(Value::Array(
                    doc.map(|doc| items_of(&doc.value)).unwrap_or_default(),
                ))
            },
        )
        .mutation(
            "lists:append",
            v::object([
                ("key", v::required(v::string())),
                ("value", v::required(v::float64())),
                ("dedupe", v::optional(v::boolean())),
            ]),
            |ctx, args| {
                let key = string_arg(&args, "key")?;
                let value = number_arg(&args, "value")?;
                let dedupe = matches!(args.get("dedupe"), Some(Value::Boolean(true)));
                Ok(match append(&mut ctx.db(), &key, value, dedupe)? {
                    Appended::Now(list) => Value::Array(list),
                    Appended::Before(list) => {
                        Value::Object(object! {"alreadyAppended" => Value::Array(list)})
                    }
                })
            },
        )
        .mutation(
            "lists:appendAndRead",
            v::object([
                ("key", v::required(v::string())),
                ("value", v::required(v::float64())),
                ("read", v::required(v::array(v::string()))),
                ("dedupe", v::optional(v::boolean())),
            ]),
            |ctx, args| {
                let key = string_arg(&args, "key")?;
                let value = number_arg(&args, "value")?;
                let dedupe = matches!(args.get("dedupe"), Some(Value::Boolean(true)));
                let others = string_list(&args, "read")?;
                let mut db = ctx.db();
                let mut out = Object::new();
                // Read the other lists first, then append: both orders are one transaction.
                for other in others.iter().filter(|other| **other != key) {
                    let doc = db
                        .query("lists")?
                        .with_index("by_key", IndexRange::new().eq("key", other.as_str()))?
                        .first()?;
                    let items = doc.map(|doc| items_of(&doc.value)).unwrap_or_default();
                    out.insert(other.clone(), Value::Array(items))?;
                }
                match append(&mut db, &key, value, dedupe)? {
                    Appended::Now(list) => {
                        out.insert(key, Value::Array(list))?;
                    }
                    Appended::Before(list) => {
                        out.insert(key, Value::Array(list))?;
                        out.insert("alreadyAppended".into(), Value::Boolean(true))?;
                    }
                }
                Ok(Value::Object(out))
            },
        )
        .mutation(
            "blobs:put",
            v::object([("key", v::string()), ("body", v::string())]),
            |ctx, args| {
                let key = string_arg(&args, "key")?;
                let body = string_arg(&args, "body")?;
                ctx.db().insert(
                    "blobs",
                    object! {"key" => key.as_str(), "body" => body.as_str()},
                )?;
                Ok(Value::Null)
            },
        )
        .query("blobs:keys", v::no_args(), |ctx, _args| {
            let docs = ctx.db().query("blobs")?.collect()?;
            let mut keys: Vec<String> = docs
                .iter()
                .filter_map(|doc| {
                    doc.value
                        .get("key")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .collect();
            keys.sort();
            Ok(Value::Array(keys.into_iter().map(Value::String).collect()))
        })
        .mutation("flood:ping", v::no_args(), |_ctx, _args| {
            Ok(Value::String("pong".into()))
        })
        .query(
            "soak:room",
            v::object([("room", v::float64())]),
            |ctx, args| {
                let room = number_arg(&args, "room")?;
                let doc = ctx
                    .db()
                    .query("rooms")?
                    .with_index(
                        "by_room",
                        IndexRange::new().eq("room", Value::Float64(room)),
                    )?
                    .first()?;
                Ok(match doc {
                    Some(doc) => {
                        let mut out = Object::new();
                        out.insert(
                            "seq".into(),
                            doc.value.get("seq").cloned().unwrap_or(Value::Null),
                        )?;
                        out.insert(
                            "sentAt".into(),
                            doc.value.get("sentAt").cloned().unwrap_or(Value::Null),
                        )?;
                        Value::Object(out)
                    }
                    None => Value::Null,
                })
            },
        )
        .mutation(
            "soak:post",
            v::object([
                ("room", v::float64()),
                ("seq", v::float64()),
                ("sentAt", v::float64()),
            ]),
            |ctx, args| {
                let room = number_arg(&args, "room")?;
                let seq = number_arg(&args, "seq")?;
                let sent_at = number_arg(&args, "sentAt")?;
                let mut db = ctx.db();
                let doc = db
                    .query("rooms")?
                    .with_index(
                        "by_room",
                        IndexRange::new().eq("room", Value::Float64(room)),
                    )?
                    .first()?;
                let fields =
                    object! {"seq" => Value::Float64(seq), "sentAt" => Value::Float64(sent_at)};
                match doc {
                    Some(doc) => db.patch(&doc.id, fields)?,
                    None => {
                        let mut fields = fields;
                        fields.insert("room".into(), Value::Float64(room))?;
                        let _: DocumentId = db.insert("rooms", fields)?;
                    }
                }
                Ok(Value::Null)
            },
        )
        .query("identity:whoami", v::no_args(), |ctx, _args| {
            Ok(match ctx.auth().user() {
                Some(user) => Value::String(user.subject.clone()),
                None => Value::Null,
            })
        });
    if let Some(issuer) = std::env::var(OIDC_ISSUER_ENV)
        .ok()
        .filter(|s| !s.is_empty())
    {
        let application_id = std::env::var(OIDC_APPLICATION_ID_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "app".to_owned());
        let provider = conflux::auth::OidcProvider::new(&issuer, &application_id)
            .map_err(|err| err.context(format!("{OIDC_ISSUER_ENV}=`{issuer}`")))?;
        app = app.token_providers(conflux::auth::AuthConfig::new().with_provider(provider));
    }
    Ok(app)
}

/// What [`append`] did.
enum Appended {
    /// Appended now: the list as read plus the value.
    Now(Vec<Value>),
    /// Already there (only with `dedupe`): the list as read.
    Before(Vec<Value>),
}

/// Append `value` to `key`'s list (creating the document if needed); with `dedupe`, a value
/// already present is not appended again.
fn append(db: &mut DbWriter<'_>, key: &str, value: f64, dedupe: bool) -> Result<Appended> {
    let doc = db
        .query("lists")?
        .with_index("by_key", IndexRange::new().eq("key", key))?
        .first()?;
    let mut items = doc
        .as_ref()
        .map(|doc| items_of(&doc.value))
        .unwrap_or_default();
    if dedupe && items.contains(&Value::Float64(value)) {
        return Ok(Appended::Before(items));
    }
    items.push(Value::Float64(value));
    match doc {
        Some(doc) => db.patch(&doc.id, object! {"items" => Value::Array(items.clone())})?,
        None => {
            db.insert(
                "lists",
                object! {"key" => key, "items" => Value::Array(items.clone())},
            )?;
        }
    }
    Ok(Appended::Now(items))
}

fn items_of(value: &Object) -> Vec<Value> {
    match value.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

fn string_arg(args: &Object, name: &str) -> Result<String> {
    args.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::new(
                ErrorCode::ArgumentValidation,
                format!("`{name}` must be a string"),
            )
        })
}

fn number_arg(args: &Object, name: &str) -> Result<f64> {
    match args.get(name) {
        Some(Value::Float64(n)) => Ok(*n),
        Some(Value::Int64(n)) => Ok(*n as f64),
        _ => Err(Error::new(
            ErrorCode::ArgumentValidation,
            format!("`{name}` must be a number"),
        )),
    }
}

fn string_list(args: &Object, name: &str) -> Result<Vec<String>> {
    match args.get(name) {
        Some(Value::Array(items)) => Ok(items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect()),
        _ => Err(Error::new(
            ErrorCode::ArgumentValidation,
            format!("`{name}` must be an array of strings"),
        )),
    }
}
