//! The Kinesis sink's metrics, registered in the engine's registry.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct KinesisMetrics {
    pub records_sent: IntCounter,
    pub aggregates: IntCounter,
    pub bytes_sent: IntCounter,
    pub calls: IntCounterVec,
    pub failed_calls: IntCounterVec,
    pub failed_records: IntCounterVec,
    pub retries: IntCounter,
    pub call_seconds: Histogram,
    pub records_per_call: Histogram,
    pub bytes_in_flight: IntGaugeVec,
    pub spooled_bytes: IntGaugeVec,
    pub spooled_records: IntCounterVec,
    pub dead_lettered: IntCounterVec,
}

impl KinesisMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = KinesisMetrics {
            records_sent: IntCounter::new(
                "beacon_kinesis_records_sent_total",
                "Events Kinesis accepted (with aggregation: user records inside accepted aggregates)",
            )?,
            aggregates: IntCounter::new("beacon_kinesis_aggregates_total", "KPL aggregates built (aggregation on)")?,
            bytes_sent: IntCounter::new(
                "beacon_kinesis_bytes_sent_total",
                "Record data bytes Kinesis accepted",
            )?,
            calls: IntCounterVec::new(
                Opts::new("beacon_kinesis_calls_total", "PutRecords calls by result"),
                &["result"],
            )?,
            failed_calls: IntCounterVec::new(
                Opts::new(
                    "beacon_kinesis_failed_calls_total",
                    "PutRecords calls that failed whole, by error code",
                ),
                &["code"],
            )?,
            failed_records: IntCounterVec::new(
                Opts::new(
                    "beacon_kinesis_failed_records_total",
                    "Records failed inside a PutRecords call, by error code",
                ),
                &["code"],
            )?,
            retries: IntCounter::new(
                "beacon_kinesis_retries_total",
                "Calls resent after a whole or partial failure",
            )?,
            call_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "beacon_kinesis_put_records_duration_seconds",
                    "PutRecords latency",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            )?,
            records_per_call: Histogram::with_opts(
                HistogramOpts::new(
                    "beacon_kinesis_records_per_call",
                    "Records per successful PutRecords call",
                )
                .buckets(vec![1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0]),
            )?,
            bytes_in_flight: IntGaugeVec::new(
                Opts::new(
                    "beacon_kinesis_bytes_in_flight",
                    "Record bytes handed to the sidecar, not yet delivered",
                ),
                &["shard"],
            )?,
            spooled_bytes: IntGaugeVec::new(
                Opts::new(
                    "beacon_kinesis_spooled_bytes",
                    "Bytes in the shard's on-disk spool",
                ),
                &["shard"],
            )?,
            spooled_records: IntCounterVec::new(
                Opts::new(
                    "beacon_kinesis_spooled_records_total",
                    "Records written to the spool",
                ),
                &["shard"],
            )?,
            dead_lettered: IntCounterVec::new(
                Opts::new(
                    "beacon_kinesis_dead_lettered_total",
                    "Records that can never be sent, written to the dead-letter file",
                ),
                &["shard"],
            )?,
        };
        r.register(Box::new(m.records_sent.clone()))?;
        r.register(Box::new(m.aggregates.clone()))?;
        r.register(Box::new(m.bytes_sent.clone()))?;
        r.register(Box::new(m.calls.clone()))?;
        r.register(Box::new(m.failed_calls.clone()))?;
        r.register(Box::new(m.failed_records.clone()))?;
        r.register(Box::new(m.retries.clone()))?;
        r.register(Box::new(m.call_seconds.clone()))?;
        r.register(Box::new(m.records_per_call.clone()))?;
        r.register(Box::new(m.bytes_in_flight.clone()))?;
        r.register(Box::new(m.spooled_bytes.clone()))?;
        r.register(Box::new(m.spooled_records.clone()))?;
        r.register(Box::new(m.dead_lettered.clone()))?;
        Ok(m)
    }
}
