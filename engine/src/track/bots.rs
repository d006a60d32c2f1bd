//! A shard's bot verdicts: a user agent is matched against the `isbot` list (one large regex)
//! once, and the verdict kept in a bounded map, so a request pays a hash lookup, not a regex.

use std::cell::RefCell;
use std::collections::HashMap;

use xxhash_rust::xxh3::Xxh3DefaultBuilder;

/// Distinct user agents a shard remembers; at the limit the map starts over (a real mix has a
/// few hundred distinct agents; a flood of random ones costs a regex each, as without a cache).
pub const VERDICTS_MAX: usize = 4096;
/// Longest user agent whose verdict is kept; longer ones are matched every time (rare, and a
/// key that size would let a flood fill memory faster).
const KEY_BYTES_MAX: usize = 512;

pub struct BotVerdicts {
    bots: isbot::Bots,
    seen: RefCell<HashMap<Box<str>, bool, Xxh3DefaultBuilder>>,
}

impl BotVerdicts {
    pub fn new() -> Self {
        BotVerdicts {
            bots: isbot::Bots::default(),
            seen: RefCell::new(HashMap::with_capacity_and_hasher(256, Xxh3DefaultBuilder)),
        }
    }

    /// Whether `user_agent` is a known crawler or bot. An empty user agent is not judged one
    /// (many real clients send none).
    pub fn is_bot(&self, user_agent: &str) -> bool {
        if user_agent.is_empty() {
            return false;
        }
        if let Some(&verdict) = self.seen.borrow().get(user_agent) {
            return verdict;
        }
        let verdict = self.bots.is_bot(user_agent);
        if user_agent.len() <= KEY_BYTES_MAX {
            let mut seen = self.seen.borrow_mut();
            if seen.len() >= VERDICTS_MAX {
                seen.clear();
            }
            seen.insert(user_agent.into(), verdict);
        }
        verdict
    }

    /// Verdicts held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.borrow().len()
    }
}

impl Default for BotVerdicts {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crawlers_are_bots_browsers_are_not_and_the_map_stays_bounded() {
        let v = BotVerdicts::new();
        let google = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        assert!(v.is_bot(google));
        assert!(v.is_bot(google), "from the cache");
        assert!(!v.is_bot(chrome));
        assert!(v.is_bot("curl/8.5.0"));
        assert!(!v.is_bot(""));
        assert_eq!(v.len(), 3);
        for i in 0..VERDICTS_MAX + 10 {
            v.is_bot(&format!("Agent/{i}"));
        }
        assert!(v.len() <= VERDICTS_MAX);
    }
}
