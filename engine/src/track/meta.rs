//! A tracking request's inputs, as the tracking path sees them.

use std::time::Instant;

use crate::model::Route;

/// A tracking request's inputs, borrowed from the HTTP request or a forwarded copy.
#[derive(Clone, Copy, Debug)]
pub struct Meta<'a> {
    pub route: Route,
    pub id: &'a str,
    pub user_agent: &'a str,
    pub client_ip: &'a str,
    pub trace_id: &'a str,
    /// `/pixel` from a client whose `Accept` lists only images: answer with a GIF.
    pub image_only: bool,
    /// When the request arrived: the one clock reading its L1 lookup and event time come from.
    pub at: Instant,
    /// Whether an accepted request becomes an event (`false` for `HEAD`).
    pub record: bool,
}
