//! Property test: whatever a sequence of transactions does, index queries (ranges, both
//! orders, take, pagination, inside a transaction with uncommitted writes) return exactly
//! what a simple in-memory model says, with or without the version collector running.

use std::collections::BTreeMap;

use std::sync::Arc;
use std::time::Duration;

use conflux_db::{
    Database, DatabaseOptions, IndexRange, MemoryPersistence, Order, PaginationOpts, Schema,
    TableDef, Transaction,
};
use conflux_values::{object, DocumentId, Value};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Insert { channel: i64, n: i64 },
    Patch { pick: usize, n: i64 },
    Move { pick: usize, channel: i64 },
    Delete { pick: usize },
}

#[derive(Clone, Debug)]
struct Probe {
    channel: i64,
    above: Option<i64>,
    order_desc: bool,
    take: usize,
    page: usize,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0i64..2, 0i64..6).prop_map(|(channel, n)| Op::Insert { channel, n }),
        1 => (any::<usize>(), 0i64..6).prop_map(|(pick, n)| Op::Patch { pick, n }),
        1 => (any::<usize>(), 0i64..2).prop_map(|(pick, channel)| Op::Move { pick, channel }),
        1 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
    ]
}

fn probe() -> impl Strategy<Value = Probe> {
    (
        0i64..2,
        proptest::option::of(0i64..6),
        any::<bool>(),
        0usize..80,
        1usize..7,
    )
        .prop_map(|(channel, above, order_desc, take, page)| Probe {
            channel,
            above,
            order_desc,
            take,
            page,
        })
}

/// The model: id -> (channel, n, creation time).
type Model = BTreeMap<DocumentId, (i64, i64, f64)>;

fn expected(model: &Model, probe: &Probe) -> Vec<DocumentId> {
    let mut rows: Vec<(i64, f64, DocumentId)> = model
        .iter()
        .filter(|(_, (channel, n, _))| {
            *channel == probe.channel && probe.above.is_none_or(|above| *n > above)
        })
        .map(|(id, (_, n, ct))| (*n, *ct, *id))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    if probe.order_desc {
        rows.reverse();
    }
    rows.into_iter().map(|(_, _, id)| id).collect()
}

fn range(probe: &Probe) -> IndexRange {
    let range = IndexRange::new().eq("channel", probe.channel);
    match probe.above {
        Some(above) => range.gt("n", above),
        None => range,
    }
}

fn order(probe: &Probe) -> Order {
    if probe.order_desc {
        Order::Desc
    } else {
        Order::Asc
    }
}

fn check(tx: &mut Transaction, model: &Model, probe: &Probe) -> Result<(), TestCaseError> {
    let want = expected(model, probe);
    let got: Vec<DocumentId> = tx
        .query("items")
        .expect("table")
        .with_index("by_channel_n", range(probe))
        .expect("index")
        .order(order(probe))
        .take(probe.take)
        .expect("query")
        .iter()
        .map(|doc| doc.id)
        .collect();
    let limited: Vec<DocumentId> = want.iter().copied().take(probe.take).collect();
    prop_assert_eq!(got, limited, "take({}) of {:?}", probe.take, probe);

    let mut cursor = None;
    let mut paged = Vec::new();
    for _ in 0..200 {
        let page = tx
            .query("items")
            .expect("table")
            .with_index("by_channel_n", range(probe))
            .expect("index")
            .order(order(probe))
            .paginate(PaginationOpts {
                cursor: cursor.clone(),
                num_items: probe.page,
            })
            .expect("page");
        prop_assert!(page.page.len() <= probe.page);
        paged.extend(page.page.iter().map(|doc| doc.id));
        if page.is_done {
            break;
        }
        cursor = Some(page.continue_cursor);
    }
    prop_assert_eq!(paged, want, "pages of {} for {:?}", probe.page, probe);
    Ok(())
}

fn pick(model: &Model, pick: usize) -> Option<DocumentId> {
    if model.is_empty() {
        return None;
    }
    model.keys().nth(pick % model.len()).copied()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn queries_agree_with_a_model(
        transactions in proptest::collection::vec(
            (proptest::collection::vec(op(), 1..40), probe(), any::<bool>()),
            1..6,
        ),
        final_probes in proptest::collection::vec(probe(), 1..4),
        collect_garbage in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let schema = Schema::new().table(TableDef::new("items").index("by_channel_n", &["channel", "n"]));
        // Half the runs race an eager version collector (no retention, a pass every
        // millisecond) against the transactions: open transactions must not notice it.
        let options = if collect_garbage {
            DatabaseOptions {
                snapshot_retention: Duration::ZERO,
                version_gc_interval: Duration::from_millis(1),
                version_gc_batch: 3,
                ..DatabaseOptions::default()
            }
        } else {
            DatabaseOptions::default()
        };
        let db = Database::open_with_options(Arc::new(MemoryPersistence::new()), schema, options)
            .expect("open");
        let mut committed: Model = BTreeMap::new();
        for (ops, probe, commit) in transactions {
            let mut tx = db.begin();
            let mut model = committed.clone();
            for op in ops {
                match op {
                    Op::Insert { channel, n } => {
                        let id = tx
                            .insert("items", object! {"channel" => channel, "n" => n})
                            .expect("insert");
                        let ct = tx.get(&id).expect("get").expect("own write").creation_time;
                        model.insert(id, (channel, n, ct));
                    }
                    Op::Patch { pick: p, n } => {
                        if let Some(id) = pick(&model, p) {
                            tx.patch(&id, object! {"n" => n}).expect("patch");
                            if let Some(row) = model.get_mut(&id) {
                                row.1 = n;
                            }
                        }
                    }
                    Op::Move { pick: p, channel } => {
                        if let Some(id) = pick(&model, p) {
                            tx.patch(&id, object! {"channel" => Value::from(channel)}).expect("patch");
                            if let Some(row) = model.get_mut(&id) {
                                row.0 = channel;
                            }
                        }
                    }
                    Op::Delete { pick: p } => {
                        if let Some(id) = pick(&model, p) {
                            tx.delete(&id).expect("delete");
                            model.remove(&id);
                        }
                    }
                }
            }
            // Inside the transaction: stored documents merged with its own writes.
            check(&mut tx, &model, &probe)?;
            if commit {
                runtime.block_on(db.commit(tx)).expect("a lone writer never conflicts");
                committed = model;
            }
        }
        for probe in &final_probes {
            check(&mut db.begin(), &committed, probe)?;
        }
    }
}
