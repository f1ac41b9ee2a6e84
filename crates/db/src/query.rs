//! Queries: an index, a range of it, an order, filters, and how many documents to take.
//!
//! ```no_run
//! # fn story(tx: &mut conflux_db::Transaction, since: f64) -> conflux_common::Result<()> {
//! use conflux_db::{IndexRange, Order};
//! // The 10 newest messages of #general posted after `since`, like
//! // `q.eq("channel", "general").gt("_creationTime", since)` in Convex.
//! let latest = tx
//!     .query("messages")?
//!     .with_index(
//!         "by_channel",
//!         IndexRange::new().eq("channel", "general").gt("_creationTime", since),
//!     )?
//!     .order(Order::Desc)
//!     .take(10)?;
//! # let _ = latest; Ok(()) }
//! ```
//!
//! A range is equality on a prefix of the index's fields, then optionally a lower and an
//! upper bound on the next field. The read set records exactly the index interval that was
//! scanned: from the start of the range (in the query's order) to the last key looked at,
//! filtered-out documents included, or the whole range when the scan ran to its end.
//!
//! Pagination cursors are opaque strings naming the index key of the last document of a
//! page; a page starts strictly after its cursor, so documents inserted before the cursor
//! never shift later pages.

use std::sync::Arc;

use conflux_common::{Error, ErrorCode, Result};
use conflux_values::{index_key, Value};

use crate::catalog::{IndexInfo, TableInfo};
use crate::document::Document;
use crate::interval::{prefix_successor, successor, Interval, IntervalEnd};
use crate::persistence::Order;
use crate::read_set::IndexId;
use crate::schema::BY_CREATION_TIME;
use crate::transaction::Transaction;

#[derive(Clone, Debug, PartialEq)]
enum RangeOp {
    Eq(String, Option<Value>),
    Gt(String, Value),
    Gte(String, Value),
    Lt(String, Value),
    Lte(String, Value),
}

impl RangeOp {
    fn field(&self) -> &str {
        match self {
            RangeOp::Eq(field, _)
            | RangeOp::Gt(field, _)
            | RangeOp::Gte(field, _)
            | RangeOp::Lt(field, _)
            | RangeOp::Lte(field, _) => field,
        }
    }
}

/// A range of an index: equalities on a prefix of its fields, then optional bounds on the
/// next field. See the module docs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IndexRange {
    ops: Vec<RangeOp>,
}

impl IndexRange {
    /// The whole index.
    pub fn new() -> IndexRange {
        IndexRange::default()
    }

    /// `field == value`.
    pub fn eq(mut self, field: impl Into<String>, value: impl Into<Value>) -> IndexRange {
        self.ops.push(RangeOp::Eq(field.into(), Some(value.into())));
        self
    }

    /// `field` is missing from the document (Convex's `q.eq(field, undefined)`).
    pub fn eq_missing(mut self, field: impl Into<String>) -> IndexRange {
        self.ops.push(RangeOp::Eq(field.into(), None));
        self
    }

    /// `field > value`.
    pub fn gt(mut self, field: impl Into<String>, value: impl Into<Value>) -> IndexRange {
        self.ops.push(RangeOp::Gt(field.into(), value.into()));
        self
    }

    /// `field >= value`.
    pub fn gte(mut self, field: impl Into<String>, value: impl Into<Value>) -> IndexRange {
        self.ops.push(RangeOp::Gte(field.into(), value.into()));
        self
    }

    /// `field < value`.
    pub fn lt(mut self, field: impl Into<String>, value: impl Into<Value>) -> IndexRange {
        self.ops.push(RangeOp::Lt(field.into(), value.into()));
        self
    }

    /// `field <= value`.
    pub fn lte(mut self, field: impl Into<String>, value: impl Into<Value>) -> IndexRange {
        self.ops.push(RangeOp::Lte(field.into(), value.into()));
        self
    }

    /// The interval of encoded keys of `index` this range covers.
    fn to_interval(&self, table: &TableInfo, index: &IndexInfo) -> Result<Interval> {
        let fields = &index.field_names;
        let bad = |why: String| {
            Error::bad_request(format!(
                "index range on `{}.{}`: {why} (the index is on {}); name the fields in the \
                 index's order: equalities first, then at most one lower and one upper bound \
                 on the next field",
                table.name,
                index.name,
                fields
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        let mut prefix = Vec::new();
        let mut position = 0;
        let mut lower: Option<&RangeOp> = None;
        let mut upper: Option<&RangeOp> = None;
        for op in &self.ops {
            let expected = fields.get(position);
            match op {
                RangeOp::Eq(field, value) => {
                    if lower.is_some() || upper.is_some() {
                        return Err(bad(format!("`eq(\"{field}\")` comes after a bound")));
                    }
                    if expected != Some(field) {
                        return Err(bad(match expected {
                            Some(expected) => format!(
                                "`eq(\"{field}\")` at position {} must name `{expected}`",
                                position + 1
                            ),
                            None => format!("`eq(\"{field}\")` is past the index's last field"),
                        }));
                    }
                    index_key::push_component(&mut prefix, value.as_ref());
                    position += 1;
                }
                RangeOp::Gt(field, _) | RangeOp::Gte(field, _) => {
                    if expected != Some(field) {
                        return Err(bad(format!(
                            "the lower bound on `{field}` must be on {}",
                            expected.map_or("no field".to_owned(), |f| format!("`{f}`"))
                        )));
                    }
                    if lower.replace(op).is_some() {
                        return Err(bad(format!("two lower bounds on `{field}`")));
                    }
                }
                RangeOp::Lt(field, _) | RangeOp::Lte(field, _) => {
                    if expected != Some(field) {
                        return Err(bad(format!(
                            "the upper bound on `{field}` must be on {}",
                            expected.map_or("no field".to_owned(), |f| format!("`{f}`"))
                        )));
                    }
                    if upper.replace(op).is_some() {
                        return Err(bad(format!("two upper bounds on `{field}`")));
                    }
                }
            }
        }
        let with = |value: &Value| {
            let mut key = prefix.clone();
            index_key::push_component(&mut key, Some(value));
            key
        };
        let after_all = |key: &[u8]| match prefix_successor(key) {
            Some(end) => IntervalEnd::Excluded(end),
            None => IntervalEnd::Unbounded,
        };
        let start = match lower {
            Some(RangeOp::Gt(_, value)) => match after_all(&with(value)) {
                IntervalEnd::Excluded(start) => start,
                // Nothing sorts after every key with this prefix: the range is empty.
                IntervalEnd::Unbounded => {
                    return Ok(Interval::new(prefix.clone(), IntervalEnd::Excluded(prefix)))
                }
            },
            Some(RangeOp::Gte(_, value)) => with(value),
            _ => prefix.clone(),
        };
        let end = match upper {
            Some(RangeOp::Lt(_, value)) => IntervalEnd::Excluded(with(value)),
            Some(RangeOp::Lte(_, value)) => after_all(&with(value)),
            _ => after_all(&prefix),
        };
        debug_assert!(self.ops.iter().all(|op| !op.field().is_empty()));
        Ok(Interval::new(start, end))
    }
}

/// Options of [`Query::paginate`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaginationOpts {
    /// Where to continue: `None` for the first page, else the `continue_cursor` of the
    /// previous page.
    pub cursor: Option<String>,
    /// How many documents a page holds (at least 1).
    pub num_items: usize,
}

/// One page of a paginated query.
#[derive(Clone, Debug, PartialEq)]
pub struct PaginationResult {
    /// The documents of the page.
    pub page: Vec<Document>,
    /// Whether the range has no documents after this page.
    pub is_done: bool,
    /// The cursor of the next page.
    pub continue_cursor: String,
}

/// Where a page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Position {
    /// After (in the query's order) this index key.
    After(Vec<u8>),
    /// At the end of the range: the next page is empty.
    End,
}

const CURSOR_VERSION: u8 = 1;

fn encode_cursor(index: IndexId, order: Order, position: &Position) -> String {
    let mut bytes = vec![CURSOR_VERSION];
    bytes.extend_from_slice(&index.0.to_be_bytes());
    bytes.push(match order {
        Order::Asc => b'a',
        Order::Desc => b'd',
    });
    match position {
        Position::After(key) => {
            bytes.push(b'k');
            bytes.extend_from_slice(key);
        }
        Position::End => bytes.push(b'e'),
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(text: &str, index: IndexId, order: Order) -> Result<Position> {
    let shown: String = text.chars().take(40).collect();
    let invalid = || {
        Error::bad_request(format!(
            "invalid pagination cursor `{shown}`: it was not produced by paginate(); pass \
             `None` to start from the first page"
        ))
    };
    if text.len() % 2 != 0 || !text.is_ascii() {
        return Err(invalid());
    }
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| invalid())?;
    if bytes.len() < 7 || bytes[0] != CURSOR_VERSION {
        return Err(invalid());
    }
    let cursor_index = IndexId(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]));
    let cursor_order = match bytes[5] {
        b'a' => Order::Asc,
        b'd' => Order::Desc,
        _ => return Err(invalid()),
    };
    if cursor_index != index || cursor_order != order {
        return Err(Error::bad_request(format!(
            "pagination cursor `{shown}` belongs to another query (a different index or \
             order); pass `None` to start from the first page"
        )));
    }
    match (bytes[6], &bytes[7..]) {
        (b'k', key) => Ok(Position::After(key.to_vec())),
        (b'e', []) => Ok(Position::End),
        _ => Err(invalid()),
    }
}

type Filter<'t> = Box<dyn Fn(&Document) -> bool + 't>;

/// What a run of a query found.
struct ScanOutcome {
    /// The matching documents with their index keys, in the query's order.
    matches: Vec<(Vec<u8>, Document)>,
    /// Whether the scan reached the end of the range.
    exhausted: bool,
}

/// A query being built on a transaction; run it with [`Query::take`], [`Query::collect`],
/// [`Query::first`], [`Query::unique`] or [`Query::paginate`].
pub struct Query<'t> {
    tx: &'t mut Transaction,
    table: Arc<TableInfo>,
    index: usize,
    range: Interval,
    order: Order,
    filters: Vec<Filter<'t>>,
}

impl std::fmt::Debug for Query<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query")
            .field("table", &self.table.name)
            .field("index", &self.table.indexes[self.index].name)
            .field("range", &self.range.to_string())
            .field("order", &self.order)
            .field("filters", &self.filters.len())
            .finish()
    }
}

impl<'t> Query<'t> {
    pub(crate) fn new(tx: &'t mut Transaction, table: Arc<TableInfo>) -> Query<'t> {
        let index = table
            .indexes
            .iter()
            .position(|index| index.name == BY_CREATION_TIME)
            .unwrap_or(0);
        Query {
            tx,
            table,
            index,
            range: Interval::all(),
            order: Order::Asc,
            filters: Vec::new(),
        }
    }

    /// Read through index `name`, restricted to `range`. Fails with
    /// [`ErrorCode::UnknownIndex`] naming the table's indexes, or
    /// [`ErrorCode::BadRequest`] if the range does not follow the index's fields.
    pub fn with_index(mut self, name: &str, range: IndexRange) -> Result<Query<'t>> {
        let position = self
            .table
            .indexes
            .iter()
            .position(|index| index.name == name)
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::UnknownIndex,
                    format!(
                        "index `{name}` does not exist on table `{}` (its indexes: {}); declare \
                         it in the schema",
                        self.table.name,
                        self.table.index_names()
                    ),
                )
            })?;
        self.range = range.to_interval(&self.table, &self.table.indexes[position])?;
        self.index = position;
        Ok(self)
    }

    /// Ascending (the default) or descending index order.
    pub fn order(mut self, order: Order) -> Query<'t> {
        self.order = order;
        self
    }

    /// Keep only documents for which `predicate` is true. Documents filtered out still
    /// count as read: a change to them can change the result.
    pub fn filter(mut self, predicate: impl Fn(&Document) -> bool + 't) -> Query<'t> {
        self.filters.push(Box::new(predicate));
        self
    }

    fn keep(&self, doc: &Document) -> bool {
        self.filters.iter().all(|filter| filter(doc))
    }

    /// Run the query over `range`, stopping after `limit` matches, and record the read
    /// interval.
    fn run(&mut self, range: Interval, limit: usize) -> Result<ScanOutcome> {
        let index_id = self.table.indexes[self.index].id;
        let mut scan = self.tx.start_scan(index_id, range, self.order);
        let mut out = Vec::new();
        let mut exhausted = false;
        let result = (|| -> Result<()> {
            while out.len() < limit {
                match self.tx.scan_next(&mut scan)? {
                    Some((key, doc)) => {
                        if self.keep(&doc) {
                            out.push((key, doc));
                        }
                    }
                    None => {
                        exhausted = true;
                        break;
                    }
                }
            }
            Ok(())
        })();
        self.tx.finish_scan(&scan);
        result?;
        debug_assert!(exhausted || scan.last_key().is_some() || limit == 0);
        Ok(ScanOutcome {
            matches: out,
            exhausted,
        })
    }

    /// At most `n` documents.
    pub fn take(mut self, n: usize) -> Result<Vec<Document>> {
        let range = self.range.clone();
        let outcome = self.run(range, n)?;
        Ok(outcome.matches.into_iter().map(|(_, doc)| doc).collect())
    }

    /// Every document in the range (bounded by `TRANSACTION_MAX_SCANNED_DOCUMENTS_COUNT`).
    pub fn collect(self) -> Result<Vec<Document>> {
        self.take(usize::MAX)
    }

    /// The first document, if any.
    pub fn first(self) -> Result<Option<Document>> {
        Ok(self.take(1)?.into_iter().next())
    }

    /// The only document, `None` if there is none, and an error if there are several.
    pub fn unique(self) -> Result<Option<Document>> {
        let table = self.table.name.clone();
        let index = self.table.indexes[self.index].name.clone();
        let mut docs = self.take(2)?;
        if docs.len() > 1 {
            return Err(Error::bad_request(format!(
                "unique() found more than one document in table `{table}` (index `{index}`); \
                 use first() or take() if several documents may match"
            )));
        }
        Ok(docs.pop())
    }

    /// One page of the query, continuing after `opts.cursor`.
    pub fn paginate(mut self, opts: PaginationOpts) -> Result<PaginationResult> {
        if opts.num_items == 0 {
            return Err(Error::bad_request(
                "paginate() needs num_items of at least 1",
            ));
        }
        let index_id = self.table.indexes[self.index].id;
        let position = match &opts.cursor {
            Some(cursor) => Some(decode_cursor(cursor, index_id, self.order)?),
            None => None,
        };
        let end_cursor = encode_cursor(index_id, self.order, &Position::End);
        let mut range = self.range.clone();
        match (position, self.order) {
            (None, _) => {}
            (Some(Position::End), _) => {
                return Ok(PaginationResult {
                    page: Vec::new(),
                    is_done: true,
                    continue_cursor: end_cursor,
                })
            }
            (Some(Position::After(key)), Order::Asc) => {
                range.start = range.start.max(successor(&key));
            }
            (Some(Position::After(key)), Order::Desc) => {
                range.end = range.end.min(IntervalEnd::Excluded(key));
            }
        }
        let ScanOutcome {
            matches: docs,
            exhausted,
        } = self.run(range, opts.num_items)?;
        let continue_cursor = match (exhausted, docs.last()) {
            (false, Some((key, _))) => {
                encode_cursor(index_id, self.order, &Position::After(key.clone()))
            }
            _ => end_cursor,
        };
        Ok(PaginationResult {
            page: docs.into_iter().map(|(_, doc)| doc).collect(),
            is_done: exhausted,
            continue_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_other_queries() {
        let position = Position::After(vec![6, b'g', 0, 0]);
        let cursor = encode_cursor(IndexId(4), Order::Desc, &position);
        assert_eq!(
            decode_cursor(&cursor, IndexId(4), Order::Desc).ok(),
            Some(position)
        );
        let end = encode_cursor(IndexId(4), Order::Asc, &Position::End);
        assert_eq!(
            decode_cursor(&end, IndexId(4), Order::Asc).ok(),
            Some(Position::End)
        );
        for bad in ["", "zz", "0", "01000000046171", "ff"] {
            let err = decode_cursor(bad, IndexId(4), Order::Asc).expect_err("invalid");
            assert_eq!(err.code(), ErrorCode::BadRequest, "{bad}");
        }
        let other = decode_cursor(&cursor, IndexId(5), Order::Desc).expect_err("other index");
        assert!(other.message().contains("another query"));
    }
}
