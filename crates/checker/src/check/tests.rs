//! The checker on hand-written histories: each anomaly a correct server never produces is
//! written down once and must be found; a correct history must pass.

use std::collections::BTreeMap;

use super::*;
use crate::history::{ClientInfo, Observation, OpResult};

fn client(kind: ClientKind) -> ClientInfo {
    ClientInfo {
        kind,
        alive_at_end: false,
    }
}

fn lists(pairs: &[(&str, &[i64])]) -> BTreeMap<String, Vec<i64>> {
    pairs
        .iter()
        .map(|(k, l)| (k.to_string(), l.to_vec()))
        .collect()
}

fn append(client: usize, key: &str, value: i64, at: (u64, u64), result: &[i64]) -> Op {
    Op {
        client,
        kind: OpKind::Append {
            key: key.into(),
            value,
            dedupe: false,
        },
        invoked_ns: at.0,
        completed_ns: Some(at.1),
        outcome: Outcome::Ok(OpResult {
            lists: lists(&[(key, result)]),
            already_appended: false,
        }),
    }
}

fn history(clients: Vec<ClientInfo>, ops: Vec<Op>, final_lists: &[(&str, &[i64])]) -> History {
    History {
        seed: 1,
        clients,
        keys: final_lists.iter().map(|(k, _)| k.to_string()).collect(),
        ops,
        observations: Vec::new(),
        final_lists: lists(final_lists),
        faults: Vec::new(),
    }
}

#[test]
fn a_serial_history_with_live_updates_is_valid() {
    let mut h = history(
        vec![client(ClientKind::Npm), client(ClientKind::Rust)],
        vec![
            append(0, "a", 1, (0, 10), &[1]),
            append(1, "a", 2, (20, 30), &[1, 2]),
            append(0, "b", 3, (40, 50), &[3]),
        ],
        &[("a", &[1, 2]), ("b", &[3])],
    );
    h.observations = vec![
        Observation {
            client: 0,
            at_ns: 5,
            ts: Some(100),
            lists: lists(&[("a", &[]), ("b", &[])]),
        },
        Observation {
            client: 0,
            at_ns: 9,
            ts: Some(110),
            lists: lists(&[("a", &[1]), ("b", &[])]),
        },
        Observation {
            client: 0,
            at_ns: 60,
            ts: Some(130),
            lists: lists(&[("a", &[1, 2]), ("b", &[3])]),
        },
    ];
    h.clients[0].alive_at_end = true;
    let analysis = check(&h);
    assert!(analysis.is_valid(), "{:#?}", analysis.anomalies);
    assert_eq!(analysis.stats.acknowledged, 3);
    assert!(analysis.stats.edges > 5, "{:?}", analysis.stats);
}

#[test]
fn two_appends_that_read_the_same_list_lose_one_of_them() {
    let h = history(
        vec![client(ClientKind::Rust), client(ClientKind::Rust)],
        vec![
            append(0, "a", 1, (0, 10), &[1]),
            append(1, "a", 2, (0, 10), &[2]),
        ],
        &[("a", &[2])],
    );
    let analysis = check(&h);
    assert!(analysis.has_lost_append(), "{:#?}", analysis.anomalies);
    let text = analysis.anomalies[0].to_string();
    assert!(text.contains("1 is not in the final list of a"), "{text}");
}

#[test]
fn write_skew_is_a_cycle_of_two_anti_dependencies() {
    let skew = |client: usize, key: &str, value: i64, result: &[(&str, &[i64])]| Op {
        client,
        kind: OpKind::AppendAndRead {
            key: key.into(),
            value,
            read: vec!["a".into(), "b".into()],
            dedupe: false,
        },
        invoked_ns: 0,
        completed_ns: Some(10),
        outcome: Outcome::Ok(OpResult {
            lists: lists(result),
            already_appended: false,
        }),
    };
    let h = history(
        vec![client(ClientKind::Rust), client(ClientKind::Rust)],
        vec![
            skew(0, "a", 1, &[("a", &[1]), ("b", &[])]),
            skew(1, "b", 2, &[("a", &[]), ("b", &[2])]),
        ],
        &[("a", &[1]), ("b", &[2])],
    );
    let analysis = check(&h);
    assert_eq!(analysis.anomalies.len(), 1, "{:#?}", analysis.anomalies);
    let Anomaly::Cycle(cycle) = &analysis.anomalies[0] else {
        panic!("{:#?}", analysis.anomalies)
    };
    assert_eq!(cycle.steps.len(), 2);
    assert!(
        cycle.classification().starts_with("G2"),
        "{}",
        cycle.classification()
    );
    let text = cycle.to_string();
    assert!(text.contains("rw on b: read 0 element(s), not 2"), "{text}");
    assert!(text.contains("rw on a: read 0 element(s), not 1"), "{text}");
}

#[test]
fn a_resent_mutation_applied_twice_is_a_duplicate() {
    let h = history(
        vec![client(ClientKind::Npm)],
        vec![append(0, "a", 1, (0, 10), &[1])],
        &[("a", &[1, 1])],
    );
    let analysis = check(&h);
    assert!(
        analysis.anomalies.iter().any(|a| matches!(
            a,
            Anomaly::Duplicate {
                value: 1,
                count: 2,
                ..
            }
        )),
        "{:#?}",
        analysis.anomalies
    );
}

#[test]
fn an_idempotent_resend_that_found_its_value_is_valid() {
    let mut op = append(0, "a", 1, (0, 30), &[1, 2]);
    op.kind = OpKind::Append {
        key: "a".into(),
        value: 1,
        dedupe: true,
    };
    if let Outcome::Ok(result) = &mut op.outcome {
        result.already_appended = true;
    }
    let h = history(
        vec![client(ClientKind::Rust), client(ClientKind::Rust)],
        vec![op, append(1, "a", 2, (5, 20), &[1, 2])],
        &[("a", &[1, 2])],
    );
    let analysis = check(&h);
    assert!(analysis.is_valid(), "{:#?}", analysis.anomalies);
}

#[test]
fn failed_and_unknown_values_and_phantoms_are_told_apart() {
    let mut failed = append(0, "a", 1, (0, 10), &[]);
    failed.outcome = Outcome::Failed("StorageUnavailable: nothing was committed".into());
    let mut unknown = append(0, "a", 2, (20, 30), &[]);
    unknown.outcome = Outcome::Unknown("the run ended".into());
    unknown.completed_ns = None;
    let h = history(
        vec![client(ClientKind::Rust)],
        vec![failed, unknown],
        &[("a", &[1, 2, 3])],
    );
    let analysis = check(&h);
    let texts: Vec<String> = analysis.anomalies.iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(texts[0].starts_with("aborted read"), "{texts:#?}");
    assert!(texts[1].contains("phantom value: 3"), "{texts:#?}");
}

#[test]
fn a_live_query_that_goes_back_in_time_is_reported() {
    let mut h = history(
        vec![client(ClientKind::Npm)],
        vec![
            append(0, "a", 1, (0, 10), &[1]),
            append(0, "a", 2, (20, 30), &[1, 2]),
        ],
        &[("a", &[1, 2])],
    );
    let seen = |at_ns: u64, ts: u64, list: &[i64]| Observation {
        client: 0,
        at_ns,
        ts: Some(ts),
        lists: lists(&[("a", list)]),
    };
    h.observations = vec![seen(35, 200, &[1, 2]), seen(40, 150, &[1])];
    let analysis = check(&h);
    let texts: Vec<String> = analysis.anomalies.iter().map(ToString::to_string).collect();
    assert!(
        texts.iter().any(|t| t.contains("showed [1] after [1, 2]")),
        "{texts:#?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("server timestamp 150 after 200")),
        "{texts:#?}"
    );
    // The stale read after the client's own acknowledged write is also a cycle.
    assert!(analysis.has_cycle(), "{texts:#?}");
}

#[test]
fn an_update_without_the_clients_own_acknowledged_write_is_a_cycle() {
    let mut h = history(
        vec![client(ClientKind::Npm)],
        vec![append(0, "a", 1, (0, 10), &[1])],
        &[("a", &[1])],
    );
    h.observations = vec![Observation {
        client: 0,
        at_ns: 20,
        ts: None,
        lists: lists(&[("a", &[])]),
    }];
    let analysis = check(&h);
    assert!(analysis.has_cycle(), "{:#?}", analysis.anomalies);
    // The Rust client's update stream is not ordered with its results: no edge, no cycle.
    h.clients[0].kind = ClientKind::Rust;
    assert!(check(&h).is_valid());
}

#[test]
fn a_write_that_ignores_one_acknowledged_earlier_is_a_real_time_cycle() {
    let h = history(
        vec![client(ClientKind::Rust), client(ClientKind::Npm)],
        vec![
            append(0, "a", 1, (0, 10), &[2, 1]),
            append(1, "a", 2, (20, 30), &[2]),
        ],
        &[("a", &[2, 1])],
    );
    let analysis = check(&h);
    assert_eq!(analysis.anomalies.len(), 1, "{:#?}", analysis.anomalies);
    let text = analysis.anomalies[0].to_string();
    assert!(text.contains("real time"), "{text}");
}

#[test]
fn reads_that_disagree_on_the_order_and_stale_subscriptions_are_reported() {
    let mut h = history(
        vec![client(ClientKind::Npm)],
        vec![
            append(0, "a", 1, (0, 10), &[1]),
            append(0, "a", 2, (20, 30), &[1, 2]),
        ],
        &[("a", &[1, 2])],
    );
    h.observations = vec![Observation {
        client: 0,
        at_ns: 40,
        ts: None,
        lists: lists(&[("a", &[2])]),
    }];
    h.clients[0].alive_at_end = true;
    let texts: Vec<String> = check(&h)
        .anomalies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("incompatible order of a")),
        "{texts:#?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("stale live query: client 0")),
        "{texts:#?}"
    );
}

#[test]
fn the_lists_of_an_idempotent_resend_were_read_after_the_original_append() {
    // Client 0's first attempt appended 99 to b; the connection dropped; client 1 then
    // appended 45 to a after reading b; client 0's resend found 99 and read a with 45.
    let both = |client: usize, key: &str, value: i64, already_appended: bool| Op {
        client,
        kind: OpKind::AppendAndRead {
            key: key.into(),
            value,
            read: vec!["a".into(), "b".into()],
            dedupe: client == 0,
        },
        invoked_ns: if client == 0 { 100 } else { 0 },
        completed_ns: Some(300),
        outcome: Outcome::Ok(OpResult {
            lists: lists(&[("a", &[45]), ("b", &[99])]),
            already_appended,
        }),
    };
    let h = history(
        vec![client(ClientKind::Rust), client(ClientKind::Npm)],
        vec![both(0, "b", 99, true), both(1, "a", 45, false)],
        &[("a", &[45]), ("b", &[99])],
    );
    let analysis = check(&h);
    assert!(analysis.is_valid(), "{:#?}", analysis.anomalies);
    // Read as one transaction, the same answers would be circular information flow.
    let mut h = h;
    if let Outcome::Ok(result) = &mut h.ops[0].outcome {
        result.already_appended = false;
    }
    let analysis = check(&h);
    assert!(analysis.has_cycle(), "{:#?}", analysis.anomalies);
    assert!(
        analysis.anomalies[0].to_string().contains("G1c"),
        "{}",
        analysis.anomalies[0]
    );
}
