//! Replies awaited from other shards, kept in a slab so a mesh hop allocates nothing.
//!
//! `PendingTable::wait` reserves a slot and returns its key (sent along with the request) and a
//! future. `complete` stores the reply and wakes the waiter. A waiter that goes away (its
//! connection closed) marks its slot abandoned; the late reply then just frees the slot.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use slab::Slab;

enum Slot<T> {
    Waiting(Option<Waker>),
    Done(T),
    Abandoned,
}

pub struct PendingTable<T> {
    slots: RefCell<Slab<Slot<T>>>,
}

impl<T> Default for PendingTable<T> {
    fn default() -> Self {
        PendingTable {
            slots: RefCell::new(Slab::new()),
        }
    }
}

impl<T> PendingTable<T> {
    pub fn wait(self: &Rc<Self>) -> (u32, Pending<T>) {
        let key = self.slots.borrow_mut().insert(Slot::Waiting(None));
        (
            key as u32,
            Pending {
                table: self.clone(),
                key,
                done: false,
            },
        )
    }

    /// Delivers the reply for `key`. Unknown keys are ignored.
    pub fn complete(&self, key: u32, value: T) {
        let mut slots = self.slots.borrow_mut();
        let key = key as usize;
        match slots.get_mut(key) {
            Some(Slot::Waiting(waker)) => {
                let waker = waker.take();
                slots[key] = Slot::Done(value);
                drop(slots);
                if let Some(w) = waker {
                    w.wake();
                }
            }
            Some(Slot::Abandoned) => {
                slots.remove(key);
            }
            _ => {}
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Pending<T> {
    table: Rc<PendingTable<T>>,
    key: usize,
    done: bool,
}

impl<T> Future for Pending<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let key = self.key;
        let mut slots = self.table.slots.borrow_mut();
        match &mut slots[key] {
            Slot::Waiting(w) => {
                *w = Some(cx.waker().clone());
                Poll::Pending
            }
            Slot::Done(_) => {
                let Slot::Done(v) = slots.remove(key) else {
                    unreachable!()
                };
                drop(slots);
                self.done = true;
                Poll::Ready(v)
            }
            Slot::Abandoned => unreachable!("only this future abandons its slot"),
        }
    }
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut slots = self.table.slots.borrow_mut();
        if matches!(slots.get(self.key), Some(Slot::Done(_))) {
            slots.remove(self.key);
        } else if let Some(slot) = slots.get_mut(self.key) {
            *slot = Slot::Abandoned;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_reach_waiters_and_abandoned_slots_are_freed() {
        futures_lite::future::block_on(async {
            let table = Rc::new(PendingTable::<u32>::default());
            let (k1, p1) = table.wait();
            let (k2, p2) = table.wait();
            table.complete(k2, 20);
            table.complete(k1, 10);
            assert_eq!(p1.await, 10);
            assert_eq!(p2.await, 20);
            assert!(table.is_empty());
            let (k3, p3) = table.wait();
            drop(p3);
            assert_eq!(table.len(), 1);
            table.complete(k3, 30);
            assert!(table.is_empty());
        });
    }
}
