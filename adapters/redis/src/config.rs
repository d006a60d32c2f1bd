//! The Redis adapter's configuration (`[redis]` in the config file, `BEACON_REDIS_*`).

use beacon_engine::{FieldError, RangeCheck};
use serde::{Deserialize, Serialize};

/// Redis core data settings. Field docs give unit and default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` for TLS. No default: without
    /// it (and without `REDIS_HOST`) beacon uses its embedded core data.
    pub url: Option<String>,
    /// AUTH password for `url`'s server (an ElastiCache AUTH token), replacing any password in
    /// `url`: meant for a secret the orchestrator hands over as `BEACON_REDIS_PASSWORD`, so that
    /// the URL itself holds none. Never printed (`config check` shows `"***"`). Default none.
    pub password: Option<String>,
    /// Prefix of every program hash's key. Default empty: the reference's layout (key = id).
    pub key_prefix: String,
    /// Channel the core data updater publishes on. Default `channel1`, the reference's.
    pub channel: String,
    /// Milliseconds a lookup may take, queueing included; then the request gets the
    /// `on_core_data_unavailable` answer. Default 50.
    pub timeout_ms: u64,
    /// Milliseconds a connection attempt may take. Default 1,000.
    pub connect_timeout_ms: u64,
    /// Lookups queued for the sidecar across all shards; when full a lookup fails at once.
    /// Default 4,096.
    pub lookup_queue_max: usize,
    /// Pushed changes queued per shard; when full the subscriber waits. Default 4,096.
    pub update_queue_max: usize,
    /// Milliseconds between PINGs on the subscription; an unanswered PING (within
    /// `connect_timeout_ms`) means the subscription is dead and is rebuilt. Default 1,000.
    pub ping_interval_ms: u64,
    /// First reconnect delay in milliseconds; doubles (with full jitter) up to
    /// `reconnect_max_ms`. Default 100.
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay in milliseconds. Default 5,000.
    pub reconnect_max_ms: u64,
    /// Largest channel message accepted, in bytes; larger ones are counted and skipped.
    /// Default 65,536.
    pub message_bytes_max: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            password: None,
            key_prefix: String::new(),
            channel: "channel1".into(),
            timeout_ms: 50,
            connect_timeout_ms: 1_000,
            lookup_queue_max: 4_096,
            update_queue_max: 4_096,
            ping_interval_ms: 1_000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 5_000,
            message_bytes_max: 65_536,
        }
    }
}

/// `url` with the password it holds (`scheme://user:password@host`) replaced by `***`, for
/// messages and `config check`.
pub fn url_shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

impl RedisConfig {
    /// Every out-of-range field, named, with what is allowed.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut check = RangeCheck::new("redis");
        check.check("timeout_ms", self.timeout_ms, 1, 60_000);
        check.check("connect_timeout_ms", self.connect_timeout_ms, 1, 60_000);
        check.check("lookup_queue_max", self.lookup_queue_max as u64, 1, 1 << 20);
        check.check("update_queue_max", self.update_queue_max as u64, 1, 1 << 20);
        check.check("ping_interval_ms", self.ping_interval_ms, 10, 600_000);
        check.check("reconnect_min_ms", self.reconnect_min_ms, 1, 60_000);
        check.check(
            "reconnect_max_ms",
            self.reconnect_max_ms,
            self.reconnect_min_ms,
            600_000,
        );
        check.check(
            "message_bytes_max",
            self.message_bytes_max as u64,
            256,
            512 << 20,
        );
        if self.channel.is_empty() {
            check.fail(
                "channel",
                "\"\"",
                "name the channel the updater publishes on",
            );
        }
        #[cfg(feature = "client")]
        if let Some(url) = &self.url {
            if let Err(e) = self.client() {
                check.fail(
                    "url",
                    format_args!("{:?}", url_shown(url)),
                    format_args!(
                        "{e} (expected redis://[user:password@]host:port[/db] or rediss://…)"
                    ),
                );
            }
        }
        check.finish()
    }

    /// A client for `url`, with `password` when set; an error when `url` is not set.
    #[cfg(feature = "client")]
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        use redis::IntoConnectionInfo;
        let url = self.url.as_deref().ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no Redis URL"))
        })?;
        let mut info = url.into_connection_info()?;
        if let Some(password) = &self.password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        redis::Client::open(info)
    }

    /// These settings as they may be shown: the password and any password in `url` as `***`.
    pub fn shown(&self) -> RedisConfig {
        RedisConfig {
            url: self.url.as_deref().map(url_shown),
            password: self.password.as_ref().map(|_| "***".to_string()),
            ..self.clone()
        }
    }

    /// How long a lookup may take, on either side of the channel.
    #[cfg(feature = "client")]
    pub(crate) fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms)
    }

    /// The key of program `id`'s hash.
    pub fn key(&self, id: &str) -> String {
        format!("{}{}", self.key_prefix, id)
    }

    #[cfg(feature = "client")]
    pub(crate) fn backoff(&self) -> backon::ExponentialBackoff {
        use backon::BackoffBuilder;
        backon::ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(self.reconnect_min_ms))
            .with_max_delay(std::time::Duration::from_millis(self.reconnect_max_ms))
            .with_jitter()
            .without_max_times()
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(url_shown("rediss://:s3cret@h:6379"), "rediss://:***@h:6379");
        assert_eq!(url_shown("redis://u:p@ss@h"), "redis://u:***@h");
        assert_eq!(url_shown("redis://h:6379/1"), "redis://h:6379/1");
        let cfg = RedisConfig {
            url: Some("redis://u:inurl@h:6379".into()),
            password: Some("token".into()),
            ..RedisConfig::default()
        };
        let shown = serde_json::to_string(&cfg.shown()).unwrap();
        assert!(
            !shown.contains("inurl") && !shown.contains("token"),
            "{shown}"
        );
        assert!(shown.contains("***"), "{shown}");
    }

    #[cfg(feature = "client")]
    #[test]
    fn the_password_field_replaces_the_urls() {
        let cfg = RedisConfig {
            url: Some("rediss://:old@h:6379".into()),
            password: Some("token".into()),
            ..RedisConfig::default()
        };
        let info = cfg.client().unwrap().get_connection_info().clone();
        assert_eq!(info.redis_settings().password(), Some("token"));
    }

    #[test]
    fn defaults_are_the_references() {
        let cfg = RedisConfig::default();
        assert_eq!(cfg.channel, "channel1");
        assert_eq!(cfg.key("212313"), "212313");
        cfg.validate().unwrap();
    }

    #[test]
    fn bad_fields_are_named() {
        let cfg = RedisConfig {
            url: Some("http://nope".into()),
            timeout_ms: 0,
            ..RedisConfig::default()
        };
        let errors: Vec<String> = cfg
            .validate()
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        let errors = errors.join("\n");
        assert!(errors.contains("redis.url"), "{errors}");
        assert!(errors.contains("redis.timeout_ms"), "{errors}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cfg = RedisConfig {
            reconnect_min_ms: 10,
            reconnect_max_ms: 100,
            ..RedisConfig::default()
        };
        let delays: Vec<_> = cfg.backoff().take(20).collect();
        assert_eq!(delays.len(), 20, "never gives up");
        assert!(delays.iter().all(|d| d.as_millis() <= 200), "{delays:?}");
    }
}
