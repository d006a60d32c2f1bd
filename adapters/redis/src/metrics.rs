//! The Redis adapter's metrics, registered in the engine's registry.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::schema::Rejected;

#[derive(Clone)]
pub struct RedisMetrics {
    pub lookups: IntCounter,
    pub lookup_errors: IntCounter,
    pub lookup_seconds: Histogram,
    pub subscriber_up: IntGauge,
    pub resyncs: IntCounter,
    pub messages_routed: IntCounter,
    rejected: IntCounterVec,
}

impl RedisMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = RedisMetrics {
            lookups: IntCounter::new(
                "beacon_redis_lookups_total",
                "HGETALL lookups sent to Redis (L2 reads)",
            )?,
            lookup_errors: IntCounter::new(
                "beacon_redis_lookup_errors_total",
                "Lookups that failed: not connected, Redis error, or over timeout_ms",
            )?,
            lookup_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "beacon_redis_lookup_duration_seconds",
                    "HGETALL round trip, on the sidecar",
                )
                .buckets(vec![
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                ]),
            )?,
            subscriber_up: IntGauge::new(
                "beacon_redis_subscriber_up",
                "1 while subscribed to the core data channel",
            )?,
            resyncs: IntCounter::new(
                "beacon_redis_resyncs_total",
                "(Re)subscriptions, each marking every L1 entry for revalidation",
            )?,
            messages_routed: IntCounter::new(
                "beacon_redis_messages_total",
                "Channel messages parsed and sent to their owner shard",
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "beacon_redis_messages_rejected_total",
                    "Channel messages skipped, by reason",
                ),
                &["reason"],
            )?,
        };
        r.register(Box::new(m.lookups.clone()))?;
        r.register(Box::new(m.lookup_errors.clone()))?;
        r.register(Box::new(m.lookup_seconds.clone()))?;
        r.register(Box::new(m.subscriber_up.clone()))?;
        r.register(Box::new(m.resyncs.clone()))?;
        r.register(Box::new(m.messages_routed.clone()))?;
        r.register(Box::new(m.rejected.clone()))?;
        for reason in Rejected::ALL {
            m.rejected.with_label_values(&[reason.as_str()]);
        }
        Ok(m)
    }

    pub fn rejected(&self, why: Rejected) {
        self.rejected.with_label_values(&[why.as_str()]).inc();
    }
}
