//! The owner shard's write side of its L1 map: inserts, eviction, pushed updates, and
//! single-flight loads from core data.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_channel::oneshot;

use super::map::Cached;
use super::{L1Map, LoadResult};
use crate::model::Campaign;
use crate::ports::{CoreDataError, CoreDataLookup, CoreDataUpdate};
use crate::sys::now_ms;

/// What `L1Owner::apply` did with a pushed update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// The cache holds a newer version.
    Ignored,
}

/// A load in flight: who waits for it, and whether a pushed update overtook it.
struct Inflight {
    waiters: Vec<oneshot::Sender<LoadResult>>,
    superseded: bool,
}

/// The owner shard's write side of its `L1Map`. `!Send`: lives on its shard.
pub struct L1Owner {
    map: Arc<L1Map>,
    capacity: usize,
    len: Cell<usize>,
    /// CLOCK ring of keys in insertion order; keys of removed entries are skipped lazily.
    ring: RefCell<VecDeque<Box<str>>>,
    inflight: RefCell<HashMap<Box<str>, Inflight>>,
    lookup: Box<dyn CoreDataLookup>,
    evictions: Cell<u64>,
}

impl L1Owner {
    pub fn new(map: Arc<L1Map>, capacity: usize, lookup: Box<dyn CoreDataLookup>) -> Rc<Self> {
        assert!(capacity > 0);
        Rc::new(L1Owner {
            map,
            capacity,
            len: Cell::new(0),
            ring: RefCell::new(VecDeque::with_capacity(capacity)),
            inflight: RefCell::new(HashMap::new()),
            lookup,
            evictions: Cell::new(0),
        })
    }

    pub fn map(&self) -> &Arc<L1Map> {
        &self.map
    }

    pub fn len(&self) -> usize {
        self.len.get()
    }

    pub fn is_empty(&self) -> bool {
        self.len.get() == 0
    }

    pub fn evictions(&self) -> u64 {
        self.evictions.get()
    }

    /// Stores an answer for `id` (a campaign, or `None` for unknown), evicting if full.
    pub fn insert(&self, id: &str, campaign: Option<Arc<Campaign>>) {
        let version = campaign.as_ref().and_then(|c| c.version);
        self.insert_versioned(id, campaign, version);
    }

    fn insert_versioned(&self, id: &str, campaign: Option<Arc<Campaign>>, version: Option<u64>) {
        let entry = Cached {
            campaign,
            version,
            written_at_ms: now_ms(),
            generation: self.map.generation.load(Ordering::Acquire),
            visited: AtomicBool::new(false),
            refreshing: AtomicBool::new(false),
        };
        let guard = self.map.map.guard();
        let is_new = !self.map.map.contains_key(id, &guard);
        if is_new && self.len.get() >= self.capacity {
            self.evict_one(&guard);
        }
        self.map.map.insert(id.into(), entry, &guard);
        if is_new {
            self.len.set(self.len.get() + 1);
            self.ring.borrow_mut().push_back(id.into());
        }
    }

    /// Applies a change pushed by the core data store.
    pub fn apply(&self, update: CoreDataUpdate) -> Applied {
        let (id, campaign, version) = match update {
            CoreDataUpdate::Resync => {
                self.map.invalidate_all();
                return Applied::Applied;
            }
            CoreDataUpdate::Upsert(c) => (c.program_id.clone(), Some(c), None),
            CoreDataUpdate::Delete { id, version } => (id, None, version),
        };
        let version = campaign.as_ref().map_or(version, |c| c.version);
        {
            let guard = self.map.map.guard();
            if let Some(held) = self.map.map.get(id.as_str(), &guard) {
                if let (Some(held), Some(new)) = (held.version, version) {
                    if new < held {
                        return Applied::Ignored;
                    }
                }
            }
        }
        if let Some(inflight) = self.inflight.borrow_mut().get_mut(id.as_str()) {
            inflight.superseded = true;
        }
        self.insert_versioned(&id, campaign.map(Arc::new), version);
        Applied::Applied
    }

    /// Drops `id` from the cache.
    pub fn remove(&self, id: &str) {
        let guard = self.map.map.guard();
        if self.map.map.remove(id, &guard).is_some() {
            self.len.set(self.len.get() - 1);
        }
    }

    fn evict_one(&self, guard: &impl papaya::Guard) {
        let mut ring = self.ring.borrow_mut();
        // Two full turns always find a victim: the first clears every visited bit.
        for _ in 0..ring.len() * 2 + 1 {
            let Some(key) = ring.pop_front() else { return };
            match self.map.map.get(&*key, guard) {
                None => continue,
                Some(e) if e.visited.swap(false, Ordering::Relaxed) => ring.push_back(key),
                Some(_) => {
                    self.map.map.remove(&*key, guard);
                    self.len.set(self.len.get() - 1);
                    self.evictions.set(self.evictions.get() + 1);
                    return;
                }
            }
        }
    }

    /// Loads `id` from core data, one lookup in flight per id however many ask. The lookup runs
    /// in its own task, so a caller that goes away (a closed connection) does not strand the
    /// others. Errors are not cached.
    pub async fn load(self: &Rc<Self>, id: &str) -> LoadResult {
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut inflight = self.inflight.borrow_mut();
            match inflight.get_mut(id) {
                Some(load) => {
                    load.waiters.push(tx);
                    false
                }
                None => {
                    let load = Inflight {
                        waiters: vec![tx],
                        superseded: false,
                    };
                    inflight.insert(id.into(), load);
                    true
                }
            }
        };
        if first {
            let owner = self.clone();
            let id: Box<str> = id.into();
            glommio::spawn_local(async move {
                let mut result = owner
                    .lookup
                    .lookup(&id)
                    .await
                    .map(|found| found.map(Arc::new));
                let load = owner.inflight.borrow_mut().remove(&id);
                if load.as_ref().is_some_and(|l| l.superseded) {
                    // A pushed update arrived while this lookup was on its way: the cache
                    // holds the newer answer; hand that out instead of what was read.
                    let guard = owner.map.map.guard();
                    if let Some(e) = owner.map.map.get(&*id, &guard) {
                        result = Ok(e.campaign.clone());
                    }
                } else if let Ok(found) = &result {
                    owner.insert(&id, found.clone());
                }
                for waiter in load.map(|l| l.waiters).unwrap_or_default() {
                    let _ = waiter.send(result.clone());
                }
            })
            .detach();
        }
        rx.await
            .unwrap_or(Err(CoreDataError::Unavailable("lookup task ended")))
    }

    /// Starts a background refresh of `id` (after a `Stale` serve); joins one already running.
    pub fn refresh(self: &Rc<Self>, id: &str) {
        let owner = self.clone();
        let id: Box<str> = id.into();
        glommio::spawn_local(async move {
            if owner.load(&id).await.is_err() {
                // Keep serving the stale entry, and let the next stale read try again.
                let guard = owner.map.map.guard();
                if let Some(e) = owner.map.map.get(&*id, &guard) {
                    e.refreshing.store(false, Ordering::Relaxed);
                }
            }
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{L1Outcome, Probe};
    use crate::embedded::EmbeddedCoreData;
    use crate::ports::LookupFuture;
    use std::cell::Cell;

    fn campaign(id: &str) -> Option<Arc<Campaign>> {
        Some(Arc::new(Campaign::unvalidated(id)))
    }

    fn owner(capacity: usize, ttl: u64, neg_ttl: u64) -> Rc<L1Owner> {
        let map = Arc::new(L1Map::new(capacity, ttl, neg_ttl));
        L1Owner::new(map, capacity, Box::new(EmbeddedCoreData::samples()))
    }

    #[test]
    fn bound_holds_under_churn_and_hot_keys_survive() {
        let l1 = owner(100, 600, 30);
        let hot: Vec<String> = (0..10).map(|i| format!("hot{i}")).collect();
        for h in &hot {
            l1.insert(h, campaign(h));
        }
        for i in 0..10_000 {
            let key = format!("cold{i}");
            l1.insert(&key, campaign(&key));
            assert!(l1.len() <= 100, "len {} at step {i}", l1.len());
            assert!(l1.map().len() <= 100);
            for h in &hot {
                let _ = l1.map().probe(h, now_ms());
            }
        }
        assert_eq!(l1.len(), 100);
        assert!(l1.evictions() >= 9_900);
        for h in &hot {
            assert!(
                matches!(
                    l1.map().probe(h, now_ms()),
                    Probe::Ready(Some(_), L1Outcome::Hit)
                ),
                "{h} evicted"
            );
        }
    }

    #[test]
    fn ttl_negative_stale_and_generation() {
        let l1 = owner(10, 1, 1);
        l1.insert("a", campaign("a"));
        l1.insert("gone", None);
        let now = now_ms();
        assert!(matches!(
            l1.map().probe("a", now),
            Probe::Ready(Some(_), L1Outcome::Hit)
        ));
        assert!(matches!(
            l1.map().probe("gone", now),
            Probe::Ready(None, L1Outcome::Negative)
        ));
        assert!(matches!(
            l1.map().probe("nope", now),
            Probe::Load {
                outcome: L1Outcome::Miss,
                ..
            }
        ));
        // 2 s later: "a" was read (hot) so it is served stale; the negative entry expired.
        let later = now + 2_000;
        assert!(matches!(
            l1.map().probe("a", later),
            Probe::Ready(Some(_), L1Outcome::Stale)
        ));
        assert!(matches!(
            l1.map().probe("gone", later),
            Probe::Load {
                outcome: L1Outcome::Expired,
                stale: None
            }
        ));
        // After an invalidation every entry must be reloaded.
        l1.insert("b", campaign("b"));
        l1.map().invalidate_all();
        assert!(matches!(
            l1.map().probe("b", now_ms()),
            Probe::Load {
                outcome: L1Outcome::Expired,
                stale: Some(_)
            }
        ));
        l1.remove("b");
        assert!(matches!(
            l1.map().probe("b", now_ms()),
            Probe::Load {
                outcome: L1Outcome::Miss,
                ..
            }
        ));
    }

    fn versioned(id: &str, name: &str, version: Option<u64>) -> Campaign {
        let mut c = campaign(id).unwrap().as_ref().clone();
        c.program_name = name.into();
        c.version = version;
        c
    }

    fn name_of(l1: &L1Owner, id: &str) -> Option<String> {
        match l1.map().probe(id, now_ms()) {
            Probe::Ready(c, _) => c.map(|c| c.program_name.clone()),
            Probe::Load { .. } => panic!("{id} not cached"),
        }
    }

    #[test]
    fn older_versions_never_overwrite_newer_ones() {
        let l1 = owner(10, 600, 30);
        assert_eq!(
            l1.apply(CoreDataUpdate::Upsert(versioned("a", "v2", Some(2)))),
            Applied::Applied
        );
        assert_eq!(
            l1.apply(CoreDataUpdate::Upsert(versioned("a", "v1", Some(1)))),
            Applied::Ignored
        );
        assert_eq!(name_of(&l1, "a").as_deref(), Some("v2"));
        assert_eq!(
            l1.apply(CoreDataUpdate::Delete {
                id: "a".into(),
                version: Some(3)
            }),
            Applied::Applied
        );
        assert_eq!(name_of(&l1, "a"), None, "a delete leaves a tombstone");
        assert_eq!(
            l1.apply(CoreDataUpdate::Upsert(versioned("a", "v2", Some(2)))),
            Applied::Ignored
        );
        assert_eq!(
            l1.apply(CoreDataUpdate::Upsert(versioned("a", "v4", Some(4)))),
            Applied::Applied
        );
        assert_eq!(name_of(&l1, "a").as_deref(), Some("v4"));
        // Unversioned updates: last write wins.
        assert_eq!(
            l1.apply(CoreDataUpdate::Upsert(versioned("b", "x", None))),
            Applied::Applied
        );
        assert_eq!(
            l1.apply(CoreDataUpdate::Upsert(versioned("b", "y", None))),
            Applied::Applied
        );
        assert_eq!(name_of(&l1, "b").as_deref(), Some("y"));
        l1.apply(CoreDataUpdate::Resync);
        assert!(matches!(
            l1.map().probe("b", now_ms()),
            Probe::Load {
                outcome: L1Outcome::Expired,
                ..
            }
        ));
    }

    struct Counting(Rc<Cell<usize>>);
    impl CoreDataLookup for Counting {
        fn lookup(&self, id: &str) -> LookupFuture {
            self.0.set(self.0.get() + 1);
            let found = (id == "212313").then(|| campaign(id).unwrap().as_ref().clone());
            Box::pin(async move {
                glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
                Ok(found)
            })
        }
    }

    #[test]
    fn single_flight_coalesces_concurrent_misses() {
        crate::test_executor().run(async {
            let calls = Rc::new(Cell::new(0));
            let map = Arc::new(L1Map::new(10, 600, 30));
            let l1 = L1Owner::new(map, 10, Box::new(Counting(calls.clone())));
            let tasks: Vec<_> = (0..50)
                .map(|i| {
                    let l1 = l1.clone();
                    let id = if i % 2 == 0 { "212313" } else { "unknown" };
                    glommio::spawn_local(async move { l1.load(id).await })
                })
                .collect();
            let mut found = 0;
            for t in tasks {
                if t.await.unwrap().is_some() {
                    found += 1;
                }
            }
            assert_eq!(found, 25);
            assert_eq!(calls.get(), 2, "one lookup per id");
            assert!(matches!(
                l1.map().probe("unknown", now_ms()),
                Probe::Ready(None, L1Outcome::Negative)
            ));
        });
    }
}
