//! What the shards' side (`source`) and the sidecar's tasks (`lookup`, `subscriber`) share: the
//! lookup message, and the health the tasks report for `/health/ready` and the log.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use beacon_engine::model::Campaign;
use beacon_engine::ports::CoreDataError;
use futures_channel::oneshot;

/// A lookup on its way to the sidecar.
pub struct LookupRequest {
    pub id: Box<str>,
    pub reply: oneshot::Sender<Result<Option<Campaign>, CoreDataError>>,
}

/// One link to Redis (the lookup connection or the subscription): not yet known, up or down.
/// Each change is logged once, with its cause; repeats of the same state are not.
#[derive(Default)]
pub struct Link {
    /// 0 until the first report (`Default`), then `UP` or `DOWN`.
    state: AtomicU8,
}

const UP: u8 = 1;
const DOWN: u8 = 2;

impl Link {
    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Acquire) == UP
    }

    /// Marks the link up; true if it was not.
    fn set_up(&self) -> bool {
        self.state.swap(UP, Ordering::AcqRel) != UP
    }

    /// Marks the link down; true if it was not.
    fn set_down(&self) -> bool {
        self.state.swap(DOWN, Ordering::AcqRel) != DOWN
    }
}

/// What the sidecar's tasks report.
#[derive(Default)]
pub struct Health {
    pub lookups: Link,
    pub subscriber: Link,
    pub last_error: Mutex<String>,
}

impl Health {
    /// Lookups can be answered again.
    pub fn lookups_up(&self) {
        if self.lookups.set_up() {
            tracing::info!(target: "beacon::redis", "Redis lookups connected");
        }
    }

    /// Lookups cannot be answered; `why` is logged once and shown by `/health/ready`.
    pub fn lookups_down(&self, why: impl std::fmt::Display) {
        let why = why.to_string();
        if self.lookups.set_down() {
            tracing::warn!(target: "beacon::redis", error = %why, "Redis lookups lost");
        }
        self.set_error(why);
    }

    /// Subscribed (again) to the core data channel.
    pub fn subscriber_up(&self, channel: &str) {
        if self.subscriber.set_up() {
            tracing::info!(target: "beacon::redis", channel, "Redis subscriber subscribed");
        }
    }

    /// The subscription ended; `why` is logged once and shown by `/health/ready`.
    pub fn subscriber_down(&self, why: impl std::fmt::Display) {
        let why = why.to_string();
        if self.subscriber.set_down() {
            tracing::warn!(target: "beacon::redis", error = %why, "Redis subscription lost");
        }
        self.set_error(format_args!("subscriber: {why}"));
    }

    fn set_error(&self, e: impl std::fmt::Display) {
        *self.last_error.lock().expect("not poisoned") = e.to_string();
    }
}
