//! Named pause points in the commit path, for deterministic tests of races.
//!
//! A race test must hold one commit at an exact step while another transaction does
//! something, then let it go on. Sleeping and hoping is flaky; instead the committer calls
//! `PausePoints::reach` at each named [`PausePoint`], which costs one atomic load when no
//! test is holding anything. A test arms a point with [`PausePoints::hold`], waits with
//! [`PauseHandle::wait_reached`] until the committer is parked there, acts, and releases.
//!
//! ```no_run
//! # async fn story(db: conflux_db::Database) {
//! use conflux_db::PausePoint;
//! let held = db.pause_points().hold(PausePoint::AfterWrite);
//! // ... start a commit; it parks after its durable write, before it is published ...
//! held.wait_reached().await;
//! // ... begin another transaction: it does not see the held commit yet ...
//! held.release();
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

/// A step of the committer where a test can hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PausePoint {
    /// The committer received a commit and is about to gather the rest of the group and
    /// validate it. Commits sent while it is held join the same group.
    BeforeValidate,
    /// The group is validated and is about to be written and flushed.
    BeforeWrite,
    /// The group is durable but not yet published: readers do not see it, and
    /// `commit` has not returned.
    AfterWrite,
}

impl PausePoint {
    /// The point's name, as used in logs.
    pub fn name(self) -> &'static str {
        match self {
            PausePoint::BeforeValidate => "before_validate",
            PausePoint::BeforeWrite => "before_write",
            PausePoint::AfterWrite => "after_write",
        }
    }
}

impl fmt::Display for PausePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug)]
struct Hold {
    released: Mutex<bool>,
    wake: Condvar,
    reached: watch::Sender<bool>,
}

impl Hold {
    fn release(&self) {
        *self.released.lock() = true;
        self.wake.notify_all();
    }
}

/// The armed pause points of one database.
#[derive(Debug, Default)]
pub struct PausePoints {
    armed: AtomicUsize,
    holds: Mutex<HashMap<PausePoint, Arc<Hold>>>,
}

impl PausePoints {
    /// Arm `point`: the next time the committer reaches it, it stops there until the
    /// returned handle is released or dropped. Arming an armed point replaces the hold.
    pub fn hold(&self, point: PausePoint) -> PauseHandle {
        let (reached, _) = watch::channel(false);
        let hold = Arc::new(Hold {
            released: Mutex::new(false),
            wake: Condvar::new(),
            reached,
        });
        let previous = self.holds.lock().insert(point, hold.clone());
        match previous {
            Some(previous) => previous.release(),
            None => {
                self.armed.fetch_add(1, Ordering::SeqCst);
            }
        }
        PauseHandle { point, hold }
    }

    /// Called by the committer at `point`: blocks the calling thread while a test holds it.
    pub(crate) fn reach(&self, point: PausePoint) {
        if self.armed.load(Ordering::SeqCst) == 0 {
            return;
        }
        let hold = self.holds.lock().remove(&point);
        let Some(hold) = hold else {
            return;
        };
        self.armed.fetch_sub(1, Ordering::SeqCst);
        tracing::debug!(point = point.name(), "committer paused");
        hold.reached.send_replace(true);
        let mut released = hold.released.lock();
        while !*released {
            hold.wake.wait(&mut released);
        }
        tracing::debug!(point = point.name(), "committer resumed");
    }
}

/// A held pause point. Dropping it releases the committer too.
#[derive(Debug)]
pub struct PauseHandle {
    point: PausePoint,
    hold: Arc<Hold>,
}

impl PauseHandle {
    /// Wait until the committer is parked at the point.
    pub async fn wait_reached(&self) {
        let mut reached = self.hold.reached.subscribe();
        // The sender lives in `self.hold`, so the channel cannot close while we wait.
        let _ = reached.wait_for(|reached| *reached).await;
    }

    /// Whether the committer is parked (or was parked) at the point.
    pub fn is_reached(&self) -> bool {
        *self.hold.reached.borrow()
    }

    /// The point held.
    pub fn point(&self) -> PausePoint {
        self.point
    }

    /// Let the committer go on.
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for PauseHandle {
    fn drop(&mut self) {
        self.hold.release();
    }
}
