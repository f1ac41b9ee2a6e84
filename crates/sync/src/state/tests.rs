//! The version rules of spec §4, each as a client would live through it.

use std::sync::Arc;

use conflux_common::{ErrorCode, Identity, UserIdentity};
use serde_json::{json, Value as Json};

use super::*;
use crate::protocol::{parse_client_message, ClientMessage, FunctionFailure};

fn change(json: Json) -> ModifyQuerySet {
    match parse_client_message(&json.to_string()) {
        Ok(ClientMessage::ModifyQuerySet(change)) => change,
        other => panic!("{json} should be a ModifyQuerySet, got {other:?}"),
    }
}

fn add(base: u32, ids: &[u32]) -> ModifyQuerySet {
    let modifications: Vec<Json> = ids
        .iter()
        .map(|id| json!({"type": "Add", "queryId": id, "udfPath": "messages:list", "args": [{"q": id}]}))
        .collect();
    change(
        json!({"type": "ModifyQuerySet", "baseVersion": base, "newVersion": base + 1,
                  "modifications": modifications}),
    )
}

fn remove(base: u32, ids: &[u32]) -> ModifyQuerySet {
    let modifications: Vec<Json> = ids
        .iter()
        .map(|id| json!({"type": "Remove", "queryId": id}))
        .collect();
    change(
        json!({"type": "ModifyQuerySet", "baseVersion": base, "newVersion": base + 1,
                  "modifications": modifications}),
    )
}

fn ts(value: u64) -> Ts {
    Ts::new(value).expect("valid timestamp")
}

fn result(value: Json) -> Arc<QueryResult> {
    Arc::new(QueryResult::success(value, vec![], None).expect("hashes"))
}

/// Run a full transition at `at`, answering every planned query with `answer(query)`.
fn transition(
    state: &mut SocketState,
    at: u64,
    answer: impl Fn(&PlannedQuery) -> Arc<QueryResult>,
) -> Transition {
    let plan = state.plan_transition(ts(at)).expect("plan");
    let results = plan.queries().iter().map(answer).collect();
    state.commit_transition(plan, results).expect("commit")
}

/// Answers each query with its own arguments, like a query that echoes them.
fn echo(query: &PlannedQuery) -> Arc<QueryResult> {
    result(Json::Object(query.spec.args.as_object().clone()))
}

fn ids_of(transition: &Transition) -> Vec<(String, u32)> {
    transition
        .modifications
        .iter()
        .map(|modification| {
            let kind = match modification {
                StateModification::QueryUpdated { .. } => "updated",
                StateModification::QueryFailed { .. } => "failed",
                StateModification::QueryRemoved { .. } => "removed",
            };
            (kind.to_string(), modification.query_id().0)
        })
        .collect()
}

fn version(query_set: u32, identity: u32, at: u64) -> StateVersion {
    StateVersion {
        query_set: QuerySetVersion(query_set),
        identity: IdentityVersion(identity),
        ts: ts(at),
    }
}

fn user(subject: &str) -> Identity {
    Identity::User(Arc::new(UserIdentity {
        token_identifier: format!("https://idp|{subject}"),
        subject: subject.into(),
        issuer: "https://idp".into(),
        attributes: Default::default(),
        expires_at_secs: None,
        session_id: None,
    }))
}

#[test]
fn a_fresh_connection_starts_at_version_zero_and_anonymous() {
    let state = SocketState::new();
    assert_eq!(state.current_version(), StateVersion::INITIAL);
    assert_eq!(state.identity(), &Identity::Anonymous);
    assert_eq!(state.query_count(), 0);
    assert!(!state.transition_needed());
}

#[test]
fn the_first_subscription_is_answered_by_a_transition_from_zero() {
    let mut state = SocketState::new();
    assert_eq!(
        state.modify_query_set(add(0, &[0])).expect("applies"),
        QuerySetVersion(1)
    );
    assert!(
        state.transition_needed(),
        "the new query set must be acknowledged"
    );

    let first = transition(&mut state, 5, echo);
    assert_eq!(first.start_version, StateVersion::INITIAL);
    assert_eq!(first.end_version, version(1, 0, 5));
    assert_eq!(
        first.modifications,
        vec![StateModification::QueryUpdated {
            query_id: QueryId(0),
            value: json!({"q": 0}),
            log_lines: vec![],
            journal: None,
        }]
    );
    assert_eq!(state.current_version(), version(1, 0, 5));
    assert!(!state.transition_needed());

    // The next transition starts exactly where the client now is.
    let second = transition(&mut state, 9, echo);
    assert_eq!(second.start_version, version(1, 0, 5));
    assert_eq!(second.end_version, version(1, 0, 9));
}

#[test]
fn a_change_built_on_another_version_is_refused_with_the_reference_text() {
    let mut state = SocketState::new();
    state.modify_query_set(add(0, &[0])).expect("applies");
    let err = state
        .modify_query_set(add(0, &[1]))
        .expect_err("stale base");
    assert_eq!(err.code(), ErrorCode::BaseVersionMismatch);
    assert_eq!(
        err.message(),
        "Base version 0 passed up doesn't match the current version 1"
    );
    let err = state
        .modify_query_set(add(5, &[1]))
        .expect_err("future base");
    assert_eq!(
        err.message(),
        "Base version 5 passed up doesn't match the current version 1"
    );
    assert_eq!(
        state.query_count(),
        1,
        "refused changes leave the set alone"
    );
    assert_eq!(state.received_query_set_version(), QuerySetVersion(1));
}

#[test]
fn a_change_must_move_the_version_forward() {
    let mut state = SocketState::new();
    let err = state
        .modify_query_set(change(json!({"type": "ModifyQuerySet", "baseVersion": 0,
            "newVersion": 0, "modifications": []})))
        .expect_err("no progress");
    assert_eq!(err.code(), ErrorCode::BadRequest);
    assert_eq!(
        err.message(),
        "ModifyQuerySet.newVersion: 0 must be greater than baseVersion 0"
    );
    // Jumps are allowed; the next change builds on the announced version.
    state
        .modify_query_set(change(json!({"type": "ModifyQuerySet", "baseVersion": 0,
            "newVersion": 7, "modifications": []})))
        .expect("jump");
    state.modify_query_set(add(7, &[1])).expect("builds on 7");
}

#[test]
fn duplicate_and_unknown_query_ids_are_errors_and_nothing_is_applied() {
    let mut state = SocketState::new();
    state.modify_query_set(add(0, &[0])).expect("applies");

    let err = state
        .modify_query_set(add(1, &[1, 0]))
        .expect_err("0 exists");
    assert_eq!(err.code(), ErrorCode::BadRequest);
    assert_eq!(
        err.message(),
        "ModifyQuerySet.modifications[1]: query id 0 is already in the query set; remove it \
         before adding it again"
    );
    let err = state
        .modify_query_set(add(1, &[2, 2]))
        .expect_err("2 twice");
    assert!(
        err.message()
            .starts_with("ModifyQuerySet.modifications[1]: query id 2"),
        "{}",
        err.message()
    );
    let err = state
        .modify_query_set(remove(1, &[0, 9]))
        .expect_err("9 unknown");
    assert_eq!(
        err.message(),
        "ModifyQuerySet.modifications[1]: query id 9 is not in the query set"
    );

    assert_eq!(
        state.queries().map(|(id, _)| id.0).collect::<Vec<_>>(),
        vec![0]
    );
    assert_eq!(state.received_query_set_version(), QuerySetVersion(1));
}

#[test]
fn modifications_apply_in_order_so_an_id_can_be_replaced_in_one_message() {
    let mut state = SocketState::new();
    state.modify_query_set(add(0, &[0])).expect("applies");
    state
        .modify_query_set(change(
            json!({"type": "ModifyQuerySet", "baseVersion": 1, "newVersion": 2,
            "modifications": [
                {"type": "Remove", "queryId": 0},
                {"type": "Add", "queryId": 0, "udfPath": "messages:count", "args": [{}]}]}),
        ))
        .expect("remove then add");
    let (_, spec) = state.queries().next().expect("one query");
    assert_eq!(spec.udf_path.as_str(), "messages:count");
}

#[test]
fn the_query_set_is_capped() {
    let mut state = SocketState::with_max_queries(3);
    state
        .modify_query_set(add(0, &[0, 1, 2]))
        .expect("at the cap");
    let err = state
        .modify_query_set(add(1, &[3]))
        .expect_err("over the cap");
    assert_eq!(err.code(), ErrorCode::LimitExceeded);
    assert_eq!(
        err.message(),
        "the query set would hold more than 3 queries, the limit per connection \
         (CONFLUX_SYNC_MAX_QUERIES_COUNT); unsubscribe from queries that are no longer needed"
    );
    // Swapping within the cap is fine.
    state
        .modify_query_set(change(
            json!({"type": "ModifyQuerySet", "baseVersion": 1, "newVersion": 2,
            "modifications": [{"type": "Remove", "queryId": 2},
                              {"type": "Add", "queryId": 3, "udfPath": "m:f", "args": [{}]}]}),
        ))
        .expect("swap");
}

#[test]
fn ten_thousand_subscriptions_in_one_message_are_refused_by_the_default_limit() {
    let mut state = SocketState::new();
    let ids: Vec<u32> = (0..10_000).collect();
    let err = state.modify_query_set(add(0, &ids)).expect_err("too many");
    assert_eq!(err.code(), ErrorCode::LimitExceeded);
    assert_eq!(state.query_count(), 0);
}

#[test]
fn a_new_identity_is_confirmed_by_a_transition_that_bumps_its_version() {
    let mut state = SocketState::new();
    state
        .check_identity_base(IdentityVersion(0))
        .expect("matches");
    assert_eq!(
        state
            .set_identity(IdentityVersion(0), user("ada"))
            .expect("accepted"),
        IdentityVersion(1)
    );
    assert!(
        state.transition_needed(),
        "npm waits for the identity version to move"
    );

    let plan = state.plan_transition(ts(1)).expect("plan");
    assert_eq!(
        plan.identity(),
        &user("ada"),
        "queries of this transition run as the new user"
    );
    let confirmation = state.commit_transition(plan, vec![]).expect("commit");
    // npm confirms auth on any transition whose end identity exceeds its start identity,
    // even with no query result in it.
    assert_eq!(confirmation.start_version.identity, IdentityVersion(0));
    assert_eq!(confirmation.end_version.identity, IdentityVersion(1));
    assert!(confirmation.modifications.is_empty());

    // Signing out is the same kind of change.
    state
        .set_identity(IdentityVersion(1), Identity::Anonymous)
        .expect("sign out");
    assert_eq!(
        transition(&mut state, 2, echo).end_version.identity,
        IdentityVersion(2)
    );
}

#[test]
fn an_authenticate_on_a_stale_identity_version_is_refused() {
    let mut state = SocketState::new();
    state
        .set_identity(IdentityVersion(0), user("ada"))
        .expect("accepted");
    let err = state
        .check_identity_base(IdentityVersion(0))
        .expect_err("stale");
    assert_eq!(err.code(), ErrorCode::BaseVersionMismatch);
    assert_eq!(
        err.message(),
        "Base identity version 0 passed up doesn't match the current identity version 1"
    );
    assert!(state
        .set_identity(IdentityVersion(0), Identity::Anonymous)
        .is_err());
    assert_eq!(
        state.identity(),
        &user("ada"),
        "a refused change keeps the identity"
    );
}

#[test]
fn a_subscription_made_after_authenticate_runs_as_the_new_user() {
    // npm sends Connect, Authenticate, ModifyQuerySet in that order on every socket.
    let mut state = SocketState::new();
    state
        .set_identity(IdentityVersion(0), user("ada"))
        .expect("accepted");
    state.modify_query_set(add(0, &[0])).expect("applies");
    let plan = state.plan_transition(ts(3)).expect("plan");
    assert_eq!(plan.identity(), &user("ada"));
    assert_eq!(plan.end(), version(1, 1, 3));
}

#[test]
fn a_result_the_client_already_has_is_not_sent_again() {
    let mut state = SocketState::new();
    state.modify_query_set(add(0, &[0, 1])).expect("applies");
    assert_eq!(
        ids_of(&transition(&mut state, 1, echo)),
        [("updated".into(), 0), ("updated".into(), 1)]
    );

    let unchanged = transition(&mut state, 2, echo);
    assert!(unchanged.modifications.is_empty(), "{unchanged:?}");
    assert_eq!(
        unchanged.end_version.ts,
        ts(2),
        "the timestamp still moves forward"
    );

    let changed = transition(&mut state, 3, |query| {
        if query.query_id == QueryId(1) {
            result(json!("new"))
        } else {
            echo(query)
        }
    });
    assert_eq!(ids_of(&changed), [("updated".into(), 1)]);
}

#[test]
fn new_log_lines_count_as_a_new_result() {
    let mut state = SocketState::new();
    state.modify_query_set(add(0, &[0])).expect("applies");
    transition(&mut state, 1, |_| result(json!(1)));
    let logged = transition(&mut state, 2, |_| {
        Arc::new(
            QueryResult::success(json!(1), vec!["[LOG] 'again'".into()], None).expect("hashes"),
        )
    });
    assert_eq!(ids_of(&logged), [("updated".into(), 0)]);
}

#[test]
fn failures_are_sent_as_query_failed_with_their_error_data() {
    let mut state = SocketState::new();
    state.modify_query_set(add(0, &[0])).expect("applies");
    let failed = transition(&mut state, 1, |_| {
        Arc::new(
            QueryResult::failure(
                FunctionFailure {
                    message: "Uncaught ConvexError: nope".into(),
                    error_data: Some(json!({"code": 7})),
                },
                vec![],
                None,
            )
            .expect("hashes"),
        )
    });
    assert_eq!(
        failed.modifications,
        vec![StateModification::QueryFailed {
            query_id: QueryId(0),
            error_message: "Uncaught ConvexError: nope".into(),
            error_data: Some(json!({"code": 7})),
            log_lines: vec![],
            journal: None,
        }]
    );
    // A success with the same text is a different result.
    assert_eq!(
        ids_of(&transition(&mut state, 2, |_| result(json!(
            "Uncaught ConvexError: nope"
        ))))
        .len(),
        1
    );
}

#[test]
fn removals_are_announced_before_the_results_of_a_re_added_id() {
    let mut state = SocketState::new();
    state.modify_query_set(add(0, &[0])).expect("applies");
    transition(&mut state, 1, |_| result(json!("same")));

    state.modify_query_set(remove(1, &[0])).expect("remove");
    state.modify_query_set(add(2, &[0])).expect("add again");
    assert_eq!(state.received_query_set_version(), QuerySetVersion(3));

    let next = transition(&mut state, 2, |_| result(json!("same")));
    assert_eq!(
        ids_of(&next),
        [("removed".into(), 0), ("updated".into(), 0)],
        "the client dropped the old result, so an identical new one must still be sent"
    );
    assert_eq!(next.end_version.query_set, QuerySetVersion(3));
    assert!(!state.transition_needed());
}

#[test]
fn a_query_added_and_removed_before_any_transition_leaves_no_trace() {
    let mut state = SocketState::new();
    state.modify_query_set(add(0, &[0])).expect("add");
    state.modify_query_set(remove(1, &[0])).expect("remove");
    let next = transition(&mut state, 1, echo);
    assert!(next.modifications.is_empty(), "{next:?}");
    assert_eq!(next.end_version.query_set, QuerySetVersion(2));
}

#[test]
fn a_result_for_a_query_removed_while_it_ran_is_dropped_and_the_removal_follows() {
    let mut state = SocketState::new();
    state.modify_query_set(add(0, &[0])).expect("applies");
    let plan = state.plan_transition(ts(1)).expect("plan");
    // The client unsubscribes while the query runs.
    state.modify_query_set(remove(1, &[0])).expect("remove");
    let results = plan.queries().iter().map(echo).collect();
    let first = state.commit_transition(plan, results).expect("commit");
    assert!(first.modifications.is_empty(), "{first:?}");
    assert_eq!(
        first.end_version.query_set,
        QuerySetVersion(1),
        "ends at the version it ran for"
    );

    assert!(state.transition_needed());
    let second = transition(&mut state, 2, echo);
    assert_eq!(ids_of(&second), [("removed".into(), 0)]);
    assert_eq!(second.end_version.query_set, QuerySetVersion(2));
    assert!(!state.transition_needed());
}

#[test]
fn a_result_for_a_replaced_query_is_never_sent_under_the_new_incarnation() {
    let mut state = SocketState::new();
    state.modify_query_set(add(0, &[0])).expect("applies");
    let plan = state.plan_transition(ts(1)).expect("plan");
    state
        .modify_query_set(change(
            json!({"type": "ModifyQuerySet", "baseVersion": 1, "newVersion": 2,
            "modifications": [{"type": "Remove", "queryId": 0},
                              {"type": "Add", "queryId": 0, "udfPath": "other:q", "args": [{}]}]}),
        ))
        .expect("replace");
    let results = plan
        .queries()
        .iter()
        .map(|_| result(json!("old")))
        .collect();
    let stale = state.commit_transition(plan, results).expect("commit");
    assert!(stale.modifications.is_empty(), "{stale:?}");

    let plan = state.plan_transition(ts(2)).expect("plan");
    assert_eq!(plan.queries()[0].spec.udf_path.as_str(), "other:q");
    let results = plan
        .queries()
        .iter()
        .map(|_| result(json!("new")))
        .collect();
    let fresh = state.commit_transition(plan, results).expect("commit");
    assert_eq!(
        ids_of(&fresh),
        [("removed".into(), 0), ("updated".into(), 0)]
    );
}

#[test]
fn changes_arriving_while_queries_run_are_acknowledged_by_the_next_transition() {
    let mut state = SocketState::new();
    state.modify_query_set(add(0, &[0])).expect("applies");
    let plan = state.plan_transition(ts(1)).expect("plan");
    state
        .modify_query_set(add(1, &[1]))
        .expect("arrives meanwhile");
    state
        .set_identity(IdentityVersion(0), user("ada"))
        .expect("arrives meanwhile");
    let results = plan.queries().iter().map(echo).collect();
    let first = state.commit_transition(plan, results).expect("commit");
    assert_eq!(first.end_version, version(1, 0, 1));
    assert!(state.transition_needed());
    let second = transition(&mut state, 2, echo);
    assert_eq!(second.start_version, version(1, 0, 1));
    assert_eq!(second.end_version, version(2, 1, 2));
    assert_eq!(ids_of(&second), [("updated".into(), 1)]);
}

#[test]
fn timestamps_never_go_backwards_and_reach_every_reported_mutation() {
    let mut state = SocketState::new();
    transition(&mut state, 10, echo);
    let err = state.plan_transition(ts(9)).expect_err("backwards");
    assert_eq!(err.code(), ErrorCode::Internal);

    // A mutation committed at 15 was reported: the client's promise resolves only once a
    // transition reaches 15, so one is owed even though nothing else changed.
    state.record_mutation_ts(ts(15));
    assert!(state.transition_needed());
    assert_eq!(state.min_transition_ts(), ts(15));
    assert!(
        state.plan_transition(ts(12)).is_err(),
        "would not cover the mutation"
    );
    let covering = transition(&mut state, 15, echo);
    assert_eq!(covering.end_version.ts, ts(15));
    assert!(!state.transition_needed());
    // An older mutation timestamp never lowers the floor.
    state.record_mutation_ts(ts(3));
    assert_eq!(state.min_transition_ts(), ts(15));
    assert!(!state.transition_needed());
}

#[test]
fn a_plan_overtaken_by_another_transition_cannot_be_committed() {
    let mut state = SocketState::new();
    state.modify_query_set(add(0, &[0])).expect("applies");
    let first = state.plan_transition(ts(1)).expect("plan");
    let second = state.plan_transition(ts(2)).expect("plan");
    let results = second.queries().iter().map(echo).collect();
    state.commit_transition(second, results).expect("commit");
    let results = first.queries().iter().map(echo).collect();
    let err = state
        .commit_transition(first, results)
        .expect_err("overtaken");
    assert_eq!(err.code(), ErrorCode::Internal);
    assert_eq!(state.current_version(), version(1, 0, 2));
}

#[test]
fn every_planned_query_needs_a_result() {
    let mut state = SocketState::new();
    state.modify_query_set(add(0, &[0, 1])).expect("applies");
    let plan = state.plan_transition(ts(1)).expect("plan");
    let err = state
        .commit_transition(plan, vec![result(json!(1))])
        .expect_err("one missing");
    assert_eq!(err.code(), ErrorCode::Internal);
    assert_eq!(state.current_version(), StateVersion::INITIAL);
}
