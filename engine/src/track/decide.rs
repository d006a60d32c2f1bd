//! The tracking path's decisions, as pure functions of what is known at that point: where a
//! request is served, what a load leaves to answer with, and whether a campaign is accepted.
//! `ctx` does the I/O around them.

use std::sync::Arc;

use super::reply::Reply;
use crate::cache::LoadResult;
use crate::config::Routing;
use crate::metrics::Refusal;
use crate::model::{Campaign, Route};

/// Where a request is served, seen from the shard it landed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serve {
    /// This shard owns the campaign: its own L1, its own loads.
    Here,
    /// `routing = "owner"`: the whole request goes to the owner, which answers.
    Forward,
    /// `routing = "local"`: read the owner's map here; only a miss goes to the owner.
    ReadOwnersMap,
}

pub fn serve_where(owner: usize, here: usize, routing: Routing) -> Serve {
    match (owner == here, routing) {
        (true, _) => Serve::Here,
        (false, Routing::Owner) => Serve::Forward,
        (false, Routing::Local) => Serve::ReadOwnersMap,
    }
}

/// What a load leaves to answer with.
#[derive(Debug)]
pub enum AfterLoad {
    /// The store answered: the campaign, or `None` for an unknown id.
    Found(Option<Arc<Campaign>>),
    /// The store failed, but an expired entry is there to serve (a stale serve).
    Stale(Arc<Campaign>),
    /// The store failed and nothing is cached: `on_core_data_unavailable` decides.
    Unavailable,
}

pub fn after_load(result: LoadResult, stale: Option<Arc<Campaign>>) -> AfterLoad {
    match (result, stale) {
        (Ok(campaign), _) => AfterLoad::Found(campaign),
        (Err(_), Some(stale)) => AfterLoad::Stale(stale),
        (Err(_), None) => AfterLoad::Unavailable,
    }
}

/// Whether a looked-up campaign gets an event, or the reply that refuses it (and the refusal
/// to count, if it is one: an unknown id is a 404, not a refusal).
pub fn verdict(campaign: Option<&Campaign>) -> Result<&Campaign, (Reply, Option<Refusal>)> {
    match campaign {
        None => Err((Reply::NotFound, None)),
        Some(c) if !c.valid => Err((Reply::Invalid, Some(Refusal::Invalid))),
        Some(c) => Ok(c),
    }
}

/// The reply to an accepted event: `/event` gets the event's JSON (`body`), `/pixel` a GIF for
/// clients that accept only images and a 204 for the rest.
pub fn accepted(route: Route, image_only: bool, body: impl FnOnce() -> Vec<u8>) -> Reply {
    match (route, image_only) {
        (Route::Event, _) => Reply::Event(body()),
        (_, true) => Reply::Gif,
        (_, false) => Reply::NoContent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::CoreDataError;

    fn campaign(valid: bool) -> Arc<Campaign> {
        let mut c = Campaign::unvalidated("212313");
        c.valid = valid;
        Arc::new(c)
    }

    #[test]
    fn the_owner_serves_its_own_and_routing_decides_the_rest() {
        for routing in [Routing::Owner, Routing::Local] {
            assert_eq!(serve_where(1, 1, routing), Serve::Here);
        }
        assert_eq!(serve_where(0, 1, Routing::Owner), Serve::Forward);
        assert_eq!(serve_where(0, 1, Routing::Local), Serve::ReadOwnersMap);
    }

    #[test]
    fn a_failed_load_serves_the_expired_entry_before_giving_up() {
        let down = || Err(CoreDataError::Unavailable("test"));
        assert!(matches!(
            after_load(down(), Some(campaign(true))),
            AfterLoad::Stale(_)
        ));
        assert!(matches!(after_load(down(), None), AfterLoad::Unavailable));
        assert!(matches!(
            after_load(Err(CoreDataError::Timeout), None),
            AfterLoad::Unavailable
        ));
        // A store's answer wins over an expired entry, including "unknown id".
        assert!(matches!(
            after_load(Ok(None), Some(campaign(true))),
            AfterLoad::Found(None)
        ));
        assert!(matches!(
            after_load(Ok(Some(campaign(true))), None),
            AfterLoad::Found(Some(_))
        ));
    }

    #[test]
    fn unknown_ids_are_404s_and_invalid_campaigns_refusals() {
        assert!(matches!(verdict(None), Err((Reply::NotFound, None))));
        let invalid = campaign(false);
        assert!(matches!(
            verdict(Some(&invalid)),
            Err((Reply::Invalid, Some(Refusal::Invalid)))
        ));
        let valid = campaign(true);
        assert!(verdict(Some(&valid)).is_ok());
    }

    #[test]
    fn replies_follow_the_route_and_accept_header() {
        let body = || b"{}".to_vec();
        assert!(matches!(accepted(Route::Event, true, body), Reply::Event(b) if b == b"{}"));
        assert!(matches!(accepted(Route::Pixel, true, body), Reply::Gif));
        assert!(matches!(
            accepted(Route::Pixel, false, body),
            Reply::NoContent
        ));
    }
}
