//! The chat app itself: tables, functions and the HTTP action of `examples/chat`.
//!
//! Kept apart from `main.rs` so the test suite and the benchmarks build the very same app
//! (`#[path = "../examples/chat/app.rs"] mod chat;`) and add their own sign-in
//! configuration.

use std::path::PathBuf;

use conflux::{
    handler, object, v, App, Error, HttpActionRequest, IndexRange, Order, QueryCtx, RouteMethod,
    TableDef, Value,
};

/// Longest message body, in characters.
const BODY_MAX_CHARS: usize = 2000;

/// Where `npm run build` puts the web front-end (`examples/chat/web/dist`).
pub fn web_dist() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/chat/web/dist")
}

/// Whether the web front-end has been built, so the site origin serves it.
pub fn web_app_built() -> bool {
    web_dist().join("index.html").is_file()
}

/// The chat app without sign-in configuration (tests add their own).
pub fn chat_app() -> App {
    let web = web_dist();
    App::new("chat")
        .dev_by_default()
        .table(
            TableDef::new("messages")
                .validator(v::object([
                    ("channel", v::required(v::string())),
                    ("author", v::required(v::string())),
                    ("body", v::required(v::string())),
                ]))
                .index("by_channel", &["channel"]),
        )
        .query(
            "messages:list",
            v::object([("channel", v::optional(v::string()))]),
            |ctx, args| {
                let channel = channel_of(&args);
                let newest = ctx
                    .db()
                    .query("messages")?
                    .with_index("by_channel", IndexRange::new().eq("channel", channel))?
                    .order(Order::Desc)
                    .take(100)?;
                Ok(Value::Array(
                    newest.iter().rev().map(|doc| doc.to_value()).collect(),
                ))
            },
        )
        .mutation(
            "messages:send",
            v::object([
                ("body", v::required(v::string())),
                ("channel", v::optional(v::string())),
            ]),
            |ctx, args| {
                let body = args.get("body").and_then(Value::as_str).unwrap_or_default();
                let length = body.chars().count();
                if length == 0 || length > BODY_MAX_CHARS {
                    return Err(Error::user(
                        format!("a message must be 1 to {BODY_MAX_CHARS} characters, not {length}"),
                        serde_json::json!({"code": "BadBody"}),
                    ));
                }
                let author = match conflux::auth_user_id(ctx.auth()) {
                    Some(user_id) => ctx
                        .db()
                        .get(&user_id)?
                        .and_then(|user| {
                            user.value
                                .get("name")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        })
                        .unwrap_or_else(|| "anonymous".to_owned()),
                    None => "anonymous".to_owned(),
                };
                let channel = channel_of(&args);
                let id = ctx.db().insert(
                    "messages",
                    object! {"channel" => channel, "author" => author, "body" => body},
                )?;
                Ok(Value::from(id.to_string()))
            },
        )
        .internal_mutation(
            "messages:insertAs",
            v::object([
                ("body", v::required(v::string())),
                ("channel", v::required(v::string())),
                ("author", v::required(v::string())),
            ]),
            |ctx, args| {
                let body = args.get("body").and_then(Value::as_str).unwrap_or_default();
                if body.is_empty() || body.chars().count() > BODY_MAX_CHARS {
                    return Err(Error::user(
                        format!("a message must be 1 to {BODY_MAX_CHARS} characters"),
                        serde_json::json!({"code": "BadBody"}),
                    ));
                }
                let id = ctx.db().insert("messages", args)?;
                Ok(Value::from(id.to_string()))
            },
        )
        .query("users:viewer", v::no_args(), |ctx, _args| viewer(ctx))
        .route(RouteMethod::Post, "/messages", handler(post_message))
        .static_files(web)
}

fn channel_of(args: &conflux::Object) -> String {
    args.get("channel")
        .and_then(Value::as_str)
        .unwrap_or("general")
        .to_owned()
}

fn viewer(ctx: &mut QueryCtx<'_>) -> conflux::Result<Value> {
    let Some(user_id) = conflux::auth_user_id(ctx.auth()) else {
        return Ok(Value::Null);
    };
    let Some(user) = ctx.db().get(&user_id)? else {
        return Ok(Value::Null);
    };
    let field = |name: &str| user.value.get(name).cloned().unwrap_or(Value::Null);
    Ok(Value::from(object! {
        "_id" => user_id.to_string(),
        "name" => field("name"),
        "email" => field("email"),
        "image" => field("image"),
    }))
}

/// `POST /messages` with `{body, channel?}`: a webhook posting as "webhook"; 201 `{id}`.
async fn post_message(
    req: HttpActionRequest,
    ctx: conflux::HttpActionCtx,
) -> conflux::Result<http::Response<bytes::Bytes>> {
    let json: serde_json::Value = serde_json::from_slice(&req.body).map_err(|err| {
        Error::bad_request(format!(
            "the body must be JSON `{{\"body\": \"...\"}}`: {err}"
        ))
    })?;
    let body = json
        .get("body")
        .and_then(|b| b.as_str())
        .ok_or_else(|| Error::bad_request("the body must have a string field `body`"))?;
    let channel = json
        .get("channel")
        .and_then(|c| c.as_str())
        .unwrap_or("general");
    let id = ctx
        .run_mutation(
            "messages:insertAs",
            serde_json::json!({"body": body, "channel": channel, "author": "webhook"}),
        )
        .await?;
    http::Response::builder()
        .status(201)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(bytes::Bytes::from(
            serde_json::json!({ "id": id }).to_string(),
        ))
        .map_err(Error::internal)
}
