//! A tracking request's inputs, as the tracking path sees them.

use std::time::Instant;

use crate::model::{EventRoute, Route};

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
    /// What a `POST /events` object adds; `Posted::NONE` for the GET routes.
    pub posted: Posted<'a>,
    /// The visitor cookie's id, hyphenated; empty without one (or with a privacy signal).
    pub visitor_id: &'a str,
    /// The user agent is a known bot (`bots = "flag"`).
    pub bot: bool,
}

/// The fields an event posted to `/events` carries beyond what a GET's has.
#[derive(Clone, Copy, Debug, Default)]
pub struct Posted<'a> {
    /// The client's `eventId`: it becomes the event's message id, so a retried event is the
    /// same row downstream.
    pub event_id: Option<uuid::Uuid>,
    /// `type`; empty for the GET routes.
    pub event_type: &'a str,
    /// `ts`: the client's clock, ms since the Unix epoch.
    pub client_ts_ms: Option<u64>,
    /// `props` as compact JSON object text; empty when none.
    pub props: &'a str,
    /// A click's requested target (`GET /click/{id}?url=`); empty for the campaign's landing URL
    /// and for every other route.
    pub url: &'a str,
}

impl Posted<'_> {
    pub const NONE: Posted<'static> = Posted {
        event_id: None,
        event_type: "",
        client_ts_ms: None,
        props: "",
        url: "",
    };
}

impl Meta<'_> {
    /// The route the event is stored with.
    pub fn event_route(&self) -> EventRoute {
        match self.route {
            Route::Event => EventRoute::Event,
            Route::Events => EventRoute::Post,
            Route::Click => EventRoute::Click,
            _ => EventRoute::Pixel,
        }
    }
}
