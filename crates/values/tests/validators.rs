//! Validators: what a function's `args` or a table's schema accept, and what a developer is
//! told when a value does not fit.

use conflux_common::{Error, ErrorCode};
use conflux_values::validator::{ValidationProblem, Validator};
use conflux_values::{object, v, DocumentId, Object, TableNumber, Value};
use serde_json::json;

const USERS: TableNumber = TableNumber(1);
const MESSAGES: TableNumber = TableNumber(2);

/// The tables of a small chat app: 1 is `users`, 2 is `messages`, nothing else exists.
fn chat_tables(id: &DocumentId) -> Option<String> {
    match id.table_number() {
        USERS => Some("users".to_owned()),
        MESSAGES => Some("messages".to_owned()),
        _ => None,
    }
}

fn check(validator: &Validator, value: &Value) -> Result<(), Error> {
    validator.validate(value, &chat_tables)
}

fn failure(validator: &Validator, value: impl Into<Value>) -> String {
    match check(validator, &value.into()) {
        Ok(()) => panic!("{validator} accepted the value"),
        Err(err) => {
            assert_eq!(err.code(), ErrorCode::ArgumentValidation);
            err.message().to_owned()
        }
    }
}

fn user_id() -> Value {
    Value::from(DocumentId::new(USERS))
}

#[test]
fn each_kind_accepts_its_values_and_refuses_others() {
    let bytes = Value::Bytes(vec![1]);
    let cases: Vec<(Validator, Vec<Value>, Vec<Value>)> = vec![
        (
            v::any(),
            vec![Value::Null, Value::from(1i64), bytes.clone()],
            vec![],
        ),
        (
            v::null(),
            vec![Value::Null],
            vec![Value::from(false), Value::from(0.0)],
        ),
        (
            v::boolean(),
            vec![Value::from(true), Value::from(false)],
            vec![Value::Null, Value::from("true")],
        ),
        (
            v::string(),
            vec![Value::from(""), Value::from("hi")],
            vec![Value::from(1.0), bytes.clone()],
        ),
        (
            v::number(),
            vec![Value::from(1.5), Value::from(f64::NAN)],
            vec![Value::from(1i64), Value::from("1")],
        ),
        (
            v::int64(),
            vec![Value::from(i64::MIN)],
            vec![Value::from(1.0)],
        ),
        (
            v::bytes(),
            vec![bytes.clone()],
            vec![Value::from("AQID"), Value::Array(vec![])],
        ),
        (
            v::id("users"),
            vec![user_id()],
            vec![
                Value::from("not an id"),
                Value::from(DocumentId::new(MESSAGES)),
                Value::from(1.0),
            ],
        ),
        (
            v::literal("draft"),
            vec![Value::from("draft")],
            vec![Value::from("sent")],
        ),
        (
            v::literal(5i64),
            vec![Value::from(5i64)],
            vec![Value::from(5.0)],
        ),
        (
            v::array(v::string()),
            vec![Value::Array(vec![]), Value::from(vec![Value::from("a")])],
            vec![Value::from(vec![Value::from(1.0)]), Value::from("a")],
        ),
        (
            v::object([("name", v::string())]),
            vec![object! {"name" => "ada"}.into()],
            vec![
                Object::new().into(),
                object! {"name" => "ada", "age" => 36.0}.into(),
                Value::from(vec![Value::from("ada")]),
            ],
        ),
        (
            v::record(v::string(), v::number()),
            vec![
                Object::new().into(),
                object! {"a" => 1.0, "b c" => 2.0}.into(),
            ],
            vec![object! {"a" => "one"}.into(), Value::Null],
        ),
        (
            v::record(v::union([v::literal("x"), v::literal("y")]), v::any()),
            vec![object! {"x" => 1.0}.into()],
            vec![object! {"z" => 1.0}.into()],
        ),
        (
            v::union([v::string(), v::null()]),
            vec![Value::from("a"), Value::Null],
            vec![Value::from(1.0)],
        ),
        (v::union([]), vec![], vec![Value::Null]),
    ];
    for (validator, good, bad) in cases {
        for value in good {
            assert!(
                check(&validator, &value).is_ok(),
                "{validator} should accept {value}"
            );
        }
        for value in bad {
            assert!(
                check(&validator, &value).is_err(),
                "{validator} should refuse {value}"
            );
        }
    }
}

#[test]
fn optional_fields_may_be_missing_but_not_wrong() {
    let args = v::object([
        ("body", v::string().into()),
        ("tag", v::optional(v::string())),
    ]);
    assert!(check(&args, &object! {"body" => "hi"}.into()).is_ok());
    assert!(check(&args, &object! {"body" => "hi", "tag" => "news"}.into()).is_ok());
    assert_eq!(
        failure(&args, object! {"body" => "hi", "tag" => 3.0}),
        "Value does not match validator.\nPath: .tag\nValue: 3\nValidator: v.string()"
    );
}

#[test]
fn a_missing_required_field_is_named_with_a_hint() {
    let args = v::object([("body", v::string())]);
    assert_eq!(
        failure(&args, Object::new()),
        "Object is missing the required field `body`. Consider wrapping the field validator in \
         `v.optional(...)` if this is expected.\n\nObject: {}\nValidator: v.object({body: v.string()})"
    );
}

#[test]
fn an_extra_field_is_named() {
    let args = v::object([("body", v::string())]);
    let text = failure(&args, object! {"body" => "hi", "author" => "ada"});
    assert!(
        text.starts_with("Object contains extra field `author` that is not in the validator."),
        "{text}"
    );
}

#[test]
fn the_path_leads_to_the_mismatch() {
    let thread = v::object([(
        "messages",
        v::array(v::object([
            ("body", v::string()),
            ("author", v::id("users")),
        ])),
    )]);
    let message = |body: Value| Value::from(object! {"body" => body, "author" => user_id()});
    let value = object! {"messages" => vec![
        message(Value::from("a")),
        message(Value::from("b")),
        message(Value::from("c")),
        message(Value::from(42.0)),
    ]};
    let err = thread.check(&value.into(), &chat_tables).err();
    assert_eq!(
        err.as_ref().map(|e| e.path.as_str()),
        Some(".messages[3].body")
    );
    assert_eq!(err.as_ref().map(|e| e.found.as_str()), Some("42"));
    assert_eq!(
        err.as_ref().map(|e| e.expected.as_str()),
        Some("v.string()")
    );
}

#[test]
fn ids_from_another_table_say_which_table() {
    let message_id = DocumentId::new(MESSAGES);
    let args = v::object([("user", v::id("users"))]);
    let err = args
        .check(&object! {"user" => message_id}.into(), &chat_tables)
        .err();
    assert_eq!(
        err.as_ref().map(|e| &e.problem),
        Some(&ValidationProblem::IdFromOtherTable {
            id: message_id.to_string(),
            table: "messages".to_owned()
        })
    );
    assert_eq!(
        err.map(|e| e.message()),
        Some(format!(
            "Found ID \"{message_id}\" from table `messages`, which does not match the table \
             name in validator `v.id(\"users\")`.\nPath: .user"
        ))
    );

    let unknown_table = DocumentId::new(TableNumber(99));
    let text = failure(&v::id("users"), unknown_table);
    assert!(text.contains("from a table that does not exist"), "{text}");
    let text = failure(&v::id("users"), "users:1");
    assert!(
        text.starts_with("Value does not match validator."),
        "{text}"
    );
}

#[test]
fn record_values_are_checked_at_their_key() {
    let scores = v::record(v::string(), v::number());
    assert_eq!(
        failure(&scores, object! {"ada" => 1.0, "grace hopper" => "many"}),
        "Value does not match validator.\nPath: [\"grace hopper\"]\nValue: \"many\"\nValidator: v.number()"
    );
    let text = failure(&v::record(v::literal("a"), v::any()), object! {"b" => 1.0});
    assert!(text.starts_with("Record key `b` does not match"), "{text}");
}

#[test]
fn unions_report_at_the_union() {
    let status = v::object([(
        "status",
        v::union([v::literal("draft"), v::literal("sent")]),
    )]);
    assert_eq!(
        failure(&status, object! {"status" => "lost"}),
        "Value does not match validator.\nPath: .status\nValue: \"lost\"\nValidator: \
         v.union(v.literal(\"draft\"), v.literal(\"sent\"))"
    );
}

#[test]
fn schema_checks_choose_their_own_code() {
    let err = v::string().check(&Value::Null, &chat_tables).err();
    assert_eq!(
        err.map(|e| e.into_error(ErrorCode::SchemaValidation).code()),
        Some(ErrorCode::SchemaValidation)
    );
}

#[test]
fn validators_describe_themselves_as_convex_json_and_read_it_back() -> Result<(), Error> {
    let args = v::object([
        ("author", v::id("users").into()),
        ("body", v::string().into()),
        ("count", v::optional(v::int64())),
        (
            "kind",
            v::union([v::literal("a"), v::literal(5i64), v::null()]).into(),
        ),
        ("meta", v::record(v::string(), v::array(v::any())).into()),
        ("blob", v::optional(v::bytes())),
        ("flag", v::boolean().into()),
        ("n", v::number().into()),
    ]);
    let json = args.to_json();
    assert_eq!(json["type"], "object");
    assert_eq!(
        json["value"]["author"],
        json!({"fieldType": {"type": "id", "tableName": "users"}, "optional": false})
    );
    assert_eq!(
        json["value"]["count"],
        json!({"fieldType": {"type": "bigint"}, "optional": true})
    );
    assert_eq!(
        json["value"]["kind"]["fieldType"]["value"][1],
        json!({"type": "literal", "value": {"$integer": "BQAAAAAAAAA="}})
    );
    assert_eq!(
        json["value"]["meta"]["fieldType"],
        json!({"type": "record", "keys": {"type": "string"}, "values": {"fieldType": {"type": "array", "value": {"type": "any"}}, "optional": false}})
    );
    assert_eq!(Validator::from_json(&json)?, args);
    assert_eq!(
        args.to_string(),
        "v.object({author: v.id(\"users\"), blob: v.optional(v.bytes()), body: v.string(), \
         count: v.optional(v.int64()), flag: v.boolean(), kind: v.union(v.literal(\"a\"), \
         v.literal(5n), v.null()), meta: v.record(v.string(), v.array(v.any())), n: v.number()})"
    );
    Ok(())
}

#[test]
fn bad_validator_json_is_refused_with_its_path() {
    let bad = json!({"type": "object", "value": {"a": {"fieldType": {"type": "strnig"}}}});
    let err = Validator::from_json(&bad).err();
    assert_eq!(err.as_ref().map(Error::code), Some(ErrorCode::InvalidValue));
    assert_eq!(
        err.as_ref().map(Error::message),
        Some("Invalid validator at .a.fieldType: unknown type \"strnig\"")
    );

    let mut deep = json!({"type": "string"});
    for _ in 0..100_000 {
        // Built by hand: `json!` would copy `deep` recursively.
        let mut map = serde_json::Map::new();
        map.insert("type".to_owned(), json!("array"));
        map.insert("value".to_owned(), deep);
        deep = serde_json::Value::Object(map);
    }
    let err = Validator::from_json(&deep).err();
    assert_eq!(err.map(|e| e.code()), Some(ErrorCode::LimitExceeded));
    // Take it apart level by level; the default drop would recurse 100,000 times.
    let mut json = deep;
    while let serde_json::Value::Object(mut map) = json {
        json = map.remove("value").unwrap_or_default();
    }
}
