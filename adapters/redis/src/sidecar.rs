//! What the shards' side (`source`) and the sidecar's tasks (`lookup`, `subscriber`) share: the
//! lookup message, and the health the tasks report for `/health/ready` and the log.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use beacon_engine::model::Campaign;
use beacon_engine::ports::CoreDataError;
use beacon_engine::{Outage, OutageLine, OutageRule};
use futures_channel::oneshot;

/// A lookup on its way to the sidecar.
pub struct LookupRequest {
    pub id: Box<str>,
    pub reply: oneshot::Sender<Result<Option<Campaign>, CoreDataError>>,
}

/// One link to Redis (the lookup connection or the subscription): not yet known, up or down,
/// for `/health/ready`.
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

/// What the sidecar's tasks report. The log follows each link's outage (lost at the first
/// failure, back after 10 s without one, a summary every 10 s between): a Redis that drops
/// connections now and then does not fill the log.
pub struct Health {
    pub lookups: Link,
    pub subscriber: Link,
    pub last_error: Mutex<String>,
    lookups_outage: Outage,
    subscriber_outage: Outage,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            lookups: Link::default(),
            subscriber: Link::default(),
            last_error: Mutex::new(String::new()),
            lookups_outage: Outage::new(OutageRule::CONDITION, "lookup links"),
            subscriber_outage: Outage::new(OutageRule::CONDITION, "subscriptions"),
        }
    }
}

impl Health {
    /// Lookups can be answered (a connection, a PING or a lookup succeeded).
    pub fn lookups_up(&self) {
        self.lookups.set_up();
        Self::log_lookups(self.lookups_outage.ok());
    }

    /// Lookups cannot be answered; `why` is shown by `/health/ready`.
    pub fn lookups_down(&self, why: impl std::fmt::Display) {
        let why = why.to_string();
        self.lookups.set_down();
        Self::log_lookups(self.lookups_outage.failed(&why));
        self.set_error(why);
    }

    fn log_lookups(line: Option<OutageLine>) {
        if let Some(line) = line {
            beacon_engine::log_outage!(
                target: "beacon::redis", line,
                failing: "Redis lookups lost",
                still: "Redis lookups still failing",
                recovered: "Redis lookups connected again"
            );
        }
    }

    /// Subscribed (again) to the core data channel, or a PING on the subscription answered.
    pub fn subscriber_up(&self) {
        self.subscriber.set_up();
        Self::log_subscriber(self.subscriber_outage.ok());
    }

    /// The subscription ended; `why` is shown by `/health/ready`.
    pub fn subscriber_down(&self, why: impl std::fmt::Display) {
        let why = why.to_string();
        self.subscriber.set_down();
        Self::log_subscriber(self.subscriber_outage.failed(&why));
        self.set_error(format_args!("subscriber: {why}"));
    }

    fn log_subscriber(line: Option<OutageLine>) {
        if let Some(line) = line {
            beacon_engine::log_outage!(
                target: "beacon::redis", line,
                failing: "Redis subscription lost",
                still: "Redis subscription still failing",
                recovered: "Redis subscriber subscribed again"
            );
        }
    }

    fn set_error(&self, e: impl std::fmt::Display) {
        *self.last_error.lock().expect("not poisoned") = e.to_string();
    }
}
