//! A shard's tracking path: from a validated request to a `Reply`, on whichever shard it belongs.
//!
//! `owner = routing::owner(id)`. On the owner, the L1 answers (or single-flight loads) and the
//! event goes into the owner's batch. Elsewhere, with `routing = "owner"` the whole request is
//! forwarded to the owner and its reply sent back; with `routing = "local"` the accepting shard
//! reads the owner's map itself and batches locally, and only a miss is sent to the owner.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use glommio::channels::channel_mesh::Senders;

use super::decide::{accepted, after_load, serve_where, verdict, AfterLoad, Serve};
use super::mesh::{FwdRequest, MeshMsg};
use super::meta::Meta;
use super::pending::PendingTable;
use super::reply::Reply;
use crate::batch::Batcher;
use crate::cache::{L1Outcome, L1Owner, LoadResult, Probe};
use crate::config::{Ack, OnUnavailable};
use crate::metrics::{ClickOutcome, Refusal, ShardMetrics};
use crate::model::{click, owner, Campaign, Event, EventExtras, Route};
use crate::ports::CoreDataError;
use crate::state::Shared;
use crate::sys::{mono_ms, wall_ms};

/// A reply, and the batch its event went into (to wait for with `ack = "durable"`).
pub struct Answer {
    pub reply: Reply,
    batch: Option<u64>,
}

impl From<Reply> for Answer {
    fn from(reply: Reply) -> Answer {
        Answer { reply, batch: None }
    }
}

impl Answer {
    /// Whether the reply must wait for the event's batch to be written.
    pub fn must_wait(&self) -> bool {
        self.batch.is_some()
    }
}

/// Everything a shard needs to serve; one per shard, `!Send`.
pub struct ShardCtx {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub l1: Rc<L1Owner>,
    pub batcher: Rc<Batcher>,
    pub metrics: Rc<ShardMetrics>,
    pub senders: Senders<MeshMsg>,
    pub handled: Rc<PendingTable<Reply>>,
    pub resolved: Rc<PendingTable<LoadResult>>,
    pub connections: Cell<usize>,
    /// Connections taken over the cap, for health checks and scrapes only.
    pub admin_connections: Cell<usize>,
    /// Connections on the admin listener (at most `ADMIN_CONNECTIONS_PER_SHARD`).
    pub admin_door_connections: Cell<usize>,
    /// The bot check (`[tracking] bots` other than `keep`).
    pub bots: Option<super::BotVerdicts>,
}

impl ShardCtx {
    pub async fn track(self: &Rc<Self>, m: &Meta<'_>) -> Reply {
        let owner = owner(m.id, self.shared.shards());
        let answer = match serve_where(owner, self.id, self.shared.cfg().routing) {
            Serve::Here => match self.try_owned_now(m) {
                Some(answer) => answer,
                None => self.load_owned(m).await,
            },
            Serve::Forward => {
                self.metrics.forwarded_requests.inc();
                let (key, pending) = self.handled.wait();
                let msg = MeshMsg::Handle {
                    key,
                    req: FwdRequest::new(m),
                };
                if self.senders.send_to(owner, msg).await.is_err() {
                    self.unavailable(m)
                } else {
                    // The owner batched the event and answers once it may.
                    return pending.await;
                }
            }
            Serve::ReadOwnersMap => match self.shared.map(owner).probe(m.id, mono_ms(m.at)) {
                Probe::Ready(campaign, outcome) => {
                    self.metrics.l1(outcome);
                    if outcome == L1Outcome::Stale {
                        // Best effort: if the owner's queue is full, the next stale read asks again.
                        let _ = self
                            .senders
                            .try_send_to(owner, MeshMsg::Refresh { id: m.id.into() });
                    }
                    self.accept(campaign.as_deref(), m, true)
                }
                Probe::Load { outcome, stale } => {
                    self.metrics.l1(outcome);
                    self.metrics.forwarded_misses.inc();
                    let (key, pending) = self.resolved.wait();
                    let msg = MeshMsg::Resolve {
                        key,
                        id: m.id.into(),
                    };
                    let result = match self.senders.send_to(owner, msg).await {
                        Ok(()) => pending.await,
                        Err(_) => Err(CoreDataError::Unavailable("owner shard gone")),
                    };
                    self.answer_loaded(result, stale, m)
                }
            },
        };
        self.settle(answer).await
    }

    /// The reply, once it may go out: with durable acks, after the event's batch is written
    /// (503 if that takes over `ack_timeout_ms`).
    pub async fn settle(&self, answer: Answer) -> Reply {
        let Some(seq) = answer.batch else {
            return answer.reply;
        };
        let limit = std::time::Duration::from_millis(self.shared.cfg().ack_timeout_ms);
        match crate::sys::timeout(limit, self.batcher.written(seq)).await {
            Some(()) => answer.reply,
            None => {
                self.metrics.refused(Refusal::AckTimeout);
                Reply::Busy
            }
        }
    }

    /// Answers from this shard's own L1 if it can without loading.
    pub fn try_owned_now(&self, m: &Meta<'_>) -> Option<Answer> {
        match self.l1.map().probe(m.id, mono_ms(m.at)) {
            Probe::Ready(campaign, outcome) => {
                self.metrics.l1(outcome);
                if outcome == L1Outcome::Stale {
                    self.l1.refresh(m.id);
                }
                Some(self.accept(campaign.as_deref(), m, true))
            }
            Probe::Load { .. } => None,
        }
    }

    /// Answers from this shard's own L1, loading from core data if needed.
    pub async fn load_owned(self: &Rc<Self>, m: &Meta<'_>) -> Answer {
        match self.l1.map().probe(m.id, mono_ms(m.at)) {
            Probe::Ready(campaign, outcome) => {
                self.metrics.l1(outcome);
                self.accept(campaign.as_deref(), m, true)
            }
            Probe::Load { outcome, stale } => {
                self.metrics.l1(outcome);
                let result = self.l1.load(m.id).await;
                self.answer_loaded(result, stale, m)
            }
        }
    }

    /// Answers after a load: the loaded campaign; if the load failed, the expired entry (a
    /// stale serve); failing that, `on_core_data_unavailable`.
    fn answer_loaded(
        &self,
        result: LoadResult,
        stale: Option<Arc<Campaign>>,
        m: &Meta<'_>,
    ) -> Answer {
        match after_load(result, stale) {
            AfterLoad::Found(campaign) => self.accept(campaign.as_deref(), m, true),
            AfterLoad::Stale(stale) => {
                self.metrics.l1(L1Outcome::Stale);
                self.accept(Some(&stale), m, true)
            }
            AfterLoad::Unavailable => self.unavailable(m),
        }
    }

    fn unavailable(&self, m: &Meta<'_>) -> Answer {
        match self.shared.cfg().on_core_data_unavailable {
            OnUnavailable::Reject => {
                self.metrics.refused(Refusal::Unavailable);
                Reply::Unavailable.into()
            }
            OnUnavailable::Accept => {
                self.metrics.unvalidated.inc();
                self.accept(Some(&Campaign::unvalidated(m.id)), m, false)
            }
        }
    }

    /// Turns a lookup answer into an event in this shard's batch, and the reply.
    fn accept(&self, campaign: Option<&Campaign>, m: &Meta<'_>, validated: bool) -> Answer {
        let campaign = match verdict(campaign) {
            Ok(campaign) => campaign,
            Err((reply, refusal)) => {
                if let Some(why) = refusal {
                    self.metrics.refused(why);
                }
                return reply.into();
            }
        };
        // A click goes somewhere only when the target is allowed, and goes there even when its
        // event cannot be taken: the visitor must reach the page.
        let click = (m.route == Route::Click).then(|| {
            let allowed = &self.shared.cfg().tracking.redirect_domains;
            click::target(m.posted.url, campaign.landing_url.as_deref(), allowed)
        });
        let url = match &click {
            None => "",
            Some(Ok(target)) => target.as_str(),
            Some(Err(bad)) => {
                self.metrics.click(ClickOutcome::Refused);
                return Reply::BadTarget(bad.reason()).into();
            }
        };
        let event = Event {
            message_id: m.posted.event_id.unwrap_or_else(uuid::Uuid::new_v4),
            campaign,
            user_agent: m.user_agent,
            received_at_ms: wall_ms(m.at),
            client_ip: m.client_ip,
            trace_id: m.trace_id,
            validated,
            route: m.event_route(),
            bot: m.bot,
            extras: EventExtras {
                event_type: m.posted.event_type,
                client_ts_ms: m.posted.client_ts_ms,
                props: m.posted.props,
                visitor_id: m.visitor_id,
                url,
            },
        };
        let reply = || match click {
            Some(Ok(ref target)) => Reply::Redirect(target.clone()),
            _ => accepted(m.route, m.image_only, || event.response_json()),
        };
        if !m.record {
            return reply().into();
        }
        let Ok(seq) = self.batcher.append(&event) else {
            self.metrics.refused(Refusal::Backpressure);
            if click.is_some() {
                self.metrics.click(ClickOutcome::Unrecorded);
                return reply().into();
            }
            return Reply::Busy.into();
        };
        self.metrics.events_accepted.inc();
        if click.is_some() {
            self.metrics.click(ClickOutcome::Redirected);
        }
        Answer {
            reply: reply(),
            batch: (self.shared.cfg().ack == Ack::Durable).then_some(seq),
        }
    }
}
