//! Conflux storage: documents, indexes, MVCC snapshots, serializable transactions with
//! precise read sets, durable group commit, the write log and the subscription index.
//!
//! Why this crate exists: live queries need to know *exactly* what a query read, and
//! mutations need serializable isolation without locks. Both come from the same idea, the
//! read set: the index-key intervals a transaction actually scanned. At commit the read set
//! is checked against the keys written by commits since the transaction's snapshot
//! (optimistic concurrency control); after commit, the written keys are matched against
//! the read sets of live queries (the subscription index).
//!
//! ```no_run
//! # async fn story() -> conflux_common::Result<()> {
//! use conflux_db::{Database, IndexRange, Order, Schema, TableDef};
//! use conflux_values::object;
//!
//! let schema = Schema::new()
//!     .table(TableDef::new("messages").index("by_channel", &["channel"]));
//! let db = Database::open_sled(std::path::Path::new("./data"), schema)?;
//!
//! let mut tx = db.begin();
//! tx.insert("messages", object! {"channel" => "general", "body" => "hello"})?;
//! let ts = db.commit(tx).await?; // durable when this returns
//!
//! let mut tx = db.begin();
//! let latest = tx
//!     .query("messages")?
//!     .with_index("by_channel", IndexRange::new().eq("channel", "general"))?
//!     .order(Order::Desc)
//!     .take(10)?;
//! // Wake up when a later commit changes what this query read.
//! let subscription = db.subscriptions().subscribe(tx.into_read_set(), ts);
//! # let _ = (latest, subscription); Ok(()) }
//! ```
//!
//! See `README.md` of this crate for the commit path and the failure semantics.

mod catalog;
mod committer;
mod database;
mod document;
pub mod interval;
mod interval_tree;
pub mod pause;
pub mod persistence;
mod query;
pub mod read_set;
pub mod retention;
pub mod schema;
pub mod subscription;
pub mod timestamp;
mod transaction;
mod write_log;

#[cfg(feature = "unsafe-test-knobs")]
pub use database::UNSAFE_SKIP_CONFLICT_CHECK_ENV;
pub use database::{Database, DatabaseOptions, DatabaseStats};
pub use document::Document;
pub use interval::{Interval, IntervalEnd};
pub use pause::{PauseHandle, PausePoint, PausePoints};
pub use persistence::{CollectStep, MemoryPersistence, Order, Persistence, SledPersistence};
pub use query::{IndexRange, PaginationOpts, PaginationResult, Query};
pub use read_set::{IndexId, ReadSet, WriteSet};
pub use schema::{IndexDef, Schema, TableDef};
pub use subscription::{Subscription, SubscriptionIndex};
pub use timestamp::Timestamp;
pub use transaction::{Patch, Transaction};

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_can_move_between_threads() {
        // The functions layer runs transactions on blocking threads and shares the database.
        assert_send_sync::<crate::Database>();
        assert_send_sync::<crate::Transaction>();
        assert_send_sync::<crate::Subscription>();
        assert_send_sync::<crate::SubscriptionIndex>();
        assert_send_sync::<crate::ReadSet>();
    }
}
