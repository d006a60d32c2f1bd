//! The kinds of request the engine serves, named once for routing and for metric labels.

/// What a request asks for, by route: the tracking routes and the engine's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Event,
    Pixel,
    /// `GET /click/{id}`: a 302 to the click's target.
    Click,
    /// `POST /events` (and its CORS preflight, `OPTIONS /events`).
    Events,
    /// `GET /robots.txt`: crawlers are asked to follow no tracking link.
    Robots,
    HealthCheck,
    HealthReady,
    Metrics,
    Other,
}

impl Route {
    pub const ALL: [Route; 9] = [
        Route::Event,
        Route::Pixel,
        Route::Click,
        Route::Events,
        Route::Robots,
        Route::HealthCheck,
        Route::HealthReady,
        Route::Metrics,
        Route::Other,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Event => "event",
            Route::Pixel => "pixel",
            Route::Click => "click",
            Route::Events => "events",
            Route::Robots => "robots",
            Route::HealthCheck => "health_check",
            Route::HealthReady => "health_ready",
            Route::Metrics => "metrics",
            Route::Other => "other",
        }
    }
}

impl Route {
    /// The route of `path` and, for the tracking routes, the campaign id in it (unchecked; a
    /// trailing `/` is not part of it: `/event/212313/` is campaign `212313`).
    pub fn of_path(path: &str) -> (Route, Option<&str>) {
        let tracking = if let Some(id) = path.strip_prefix("/event/") {
            Some((Route::Event, id))
        } else if let Some(id) = path.strip_prefix("/pixel/") {
            Some((Route::Pixel, id))
        } else {
            path.strip_prefix("/click/").map(|id| (Route::Click, id))
        };
        if let Some((route, id)) = tracking {
            return (route, Some(id.strip_suffix('/').unwrap_or(id)));
        }
        let route = match path {
            "/events" | "/events/" => Route::Events,
            "/robots.txt" => Route::Robots,
            "/health/check" => Route::HealthCheck,
            "/health/ready" => Route::HealthReady,
            "/metrics" => Route::Metrics,
            _ => Route::Other,
        };
        (route, None)
    }
}

/// The client's address: the entry `hops` places from the right of `X-Forwarded-For` (each
/// trusted proxy appends the address it got the request from), else the peer's.
pub fn client_ip<'a>(forwarded: Option<&'a str>, hops: usize, peer: &'a str) -> &'a str {
    if hops == 0 {
        return peer;
    }
    forwarded
        .and_then(|list| list.rsplit(',').nth(hops - 1))
        .map(str::trim)
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_routes_and_ids() {
        assert_eq!(
            Route::of_path("/pixel/212313"),
            (Route::Pixel, Some("212313"))
        );
        assert_eq!(
            Route::of_path("/event/212313/"),
            (Route::Event, Some("212313"))
        );
        assert_eq!(Route::of_path("/event/"), (Route::Event, Some("")));
        assert_eq!(Route::of_path("/health/check"), (Route::HealthCheck, None));
        assert_eq!(Route::of_path("/health/ready"), (Route::HealthReady, None));
        assert_eq!(Route::of_path("/metrics"), (Route::Metrics, None));
        assert_eq!(Route::of_path("/pixel"), (Route::Other, None));
        assert_eq!(Route::of_path("/metrics/"), (Route::Other, None));
    }

    #[test]
    fn the_client_is_what_the_first_trusted_proxy_saw() {
        let peer = "10.0.0.9";
        // An ALB appends the address it got the request from; what came before is the
        // client's own word.
        let h = Some("6.6.6.6, 203.0.113.7");
        assert_eq!(client_ip(h, 1, peer), "203.0.113.7");
        assert_eq!(client_ip(h, 2, peer), "6.6.6.6");
        assert_eq!(client_ip(h, 3, peer), peer, "fewer entries than proxies");
        assert_eq!(client_ip(h, 0, peer), peer, "no trusted proxy");
        assert_eq!(client_ip(None, 1, peer), peer);
        assert_eq!(client_ip(Some("not-an-ip"), 1, peer), peer);
        assert_eq!(client_ip(Some(" 2001:db8::1 "), 1, peer), "2001:db8::1");
    }
}
