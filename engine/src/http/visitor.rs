//! The first-party visitor cookie (`[tracking] cookie_name`): a UUIDv7 that the browser sends
//! back with every tracking request, so events of one visitor share an id. The cookie's value
//! is `<id>.<day>`: the id, and the day (since the Unix epoch) it was last set, so that it is
//! renewed at most once a day without any state on the server.

use hyper::header::{HeaderMap, HeaderValue, COOKIE, SET_COOKIE};
use uuid::Uuid;

use super::Resp;
use crate::config::TrackingConfig;
use crate::metrics::ShardMetrics;

const DAY_MS: u64 = 86_400_000;

/// A request's visitor: its id (hyphenated; empty when cookies are off or the request carries
/// a privacy signal) and the cookie to set, if any.
pub(super) struct Visitor {
    pub id: String,
    set_cookie: Option<HeaderValue>,
}

impl Visitor {
    pub const NONE: Visitor = Visitor {
        id: String::new(),
        set_cookie: None,
    };

    /// The visitor of a request with `headers`, received at `now_ms` (read only when cookies
    /// are on); `private`: the request carries a privacy signal that is honoured (no cookie,
    /// no id).
    pub fn of(
        cfg: &TrackingConfig,
        headers: &HeaderMap,
        private: bool,
        now_ms: impl FnOnce() -> u64,
        metrics: &ShardMetrics,
    ) -> Visitor {
        if cfg.cookie_name.is_empty() || private {
            return Visitor::NONE;
        }
        let today = now_ms() / DAY_MS;
        let (id, renew) = match cookie(headers, &cfg.cookie_name).and_then(parse) {
            Some((id, day)) if day >= today => (id, false),
            Some((id, _)) => {
                metrics.cookies_renewed.inc();
                (id, true)
            }
            None => {
                metrics.cookies_new.inc();
                (Uuid::now_v7(), true)
            }
        };
        let id = id.hyphenated().to_string();
        let set_cookie = renew.then(|| {
            let mut c = format!(
                "{}={id}.{today}; Max-Age={}; Path=/; SameSite=None; Secure; HttpOnly",
                cfg.cookie_name,
                cfg.cookie_max_age_days * 86_400
            );
            if !cfg.cookie_domain.is_empty() {
                c.push_str("; Domain=");
                c.push_str(&cfg.cookie_domain);
            }
            HeaderValue::from_str(&c).expect("name and domain are checked tokens")
        });
        Visitor { id, set_cookie }
    }

    /// Puts the cookie on the response, when there is one to set.
    pub fn set_on(&self, resp: &mut Resp) {
        if let Some(c) = &self.set_cookie {
            resp.headers_mut().append(SET_COOKIE, c.clone());
        }
    }
}

/// The value of cookie `name` among the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// `<id>.<day>` as beacon sets it; anything else is no cookie of beacon's.
fn parse(value: &str) -> Option<(Uuid, u64)> {
    let (id, day) = value.split_once('.')?;
    Some((Uuid::try_parse(id).ok()?, day.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TrackingConfig {
        TrackingConfig {
            cookie_name: "bid".into(),
            cookie_domain: "example.com".into(),
            ..TrackingConfig::default()
        }
    }

    fn metrics() -> ShardMetrics {
        crate::metrics::Metrics::new().for_shard(0)
    }

    fn set_cookie(v: &Visitor) -> Option<String> {
        v.set_cookie
            .as_ref()
            .map(|c| c.to_str().unwrap().to_string())
    }

    #[test]
    fn a_new_visitor_gets_an_id_and_a_returning_one_keeps_it() {
        let m = metrics();
        let now = 20_000 * DAY_MS + 5;
        let first = Visitor::of(&cfg(), &HeaderMap::new(), false, || now, &m);
        let c = set_cookie(&first).unwrap();
        assert!(
            c.starts_with(&format!(
                "bid={}.20000; Max-Age=31536000; Path=/;",
                first.id
            )),
            "{c}"
        );
        assert!(
            c.ends_with("SameSite=None; Secure; HttpOnly; Domain=example.com"),
            "{c}"
        );
        assert_eq!(Uuid::try_parse(&first.id).unwrap().get_version_num(), 7);

        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("a=1; bid={}.20000", first.id)).unwrap(),
        );
        let again = Visitor::of(&cfg(), &h, false, || now + 1000, &m);
        assert_eq!(again.id, first.id);
        assert_eq!(set_cookie(&again), None, "set today already");
        let tomorrow = Visitor::of(&cfg(), &h, false, || now + DAY_MS, &m);
        assert_eq!(tomorrow.id, first.id);
        assert!(
            set_cookie(&tomorrow).unwrap().contains(".20001;"),
            "renewed once a day"
        );
    }

    #[test]
    fn off_private_or_forged_cookies() {
        let m = metrics();
        let off = TrackingConfig::default();
        assert!(Visitor::of(&off, &HeaderMap::new(), false, || 1, &m)
            .id
            .is_empty());
        assert!(Visitor::of(&cfg(), &HeaderMap::new(), true, || 1, &m)
            .id
            .is_empty());
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("bid=not-a-uuid.1"));
        let v = Visitor::of(&cfg(), &h, false, || 1, &m);
        assert!(Uuid::try_parse(&v.id).is_ok());
        assert!(set_cookie(&v).is_some(), "a new id replaces a forged one");
    }
}
