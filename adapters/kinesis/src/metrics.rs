//! The Kinesis sink's metrics, registered in the engine's registry.

use prometheus::core::Collector;
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
    /// Creates and registers every family. Over 70 lines, and left so: it is a flat list, one
    /// name and help text per metric, with no control flow to split.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let latency = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ];
        let per_call = vec![1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0];
        Ok(KinesisMetrics {
            records_sent: counter(
                r,
                "beacon_kinesis_records_sent_total",
                "Events Kinesis accepted (with aggregation: user records inside accepted aggregates)",
            )?,
            aggregates: counter(
                r,
                "beacon_kinesis_aggregates_total",
                "KPL aggregates built (aggregation on)",
            )?,
            bytes_sent: counter(
                r,
                "beacon_kinesis_bytes_sent_total",
                "Record data bytes Kinesis accepted",
            )?,
            calls: counter_by(
                r,
                "beacon_kinesis_calls_total",
                "PutRecords calls by result",
                "result",
            )?,
            failed_calls: counter_by(
                r,
                "beacon_kinesis_failed_calls_total",
                "PutRecords calls that failed whole, by error code",
                "code",
            )?,
            failed_records: counter_by(
                r,
                "beacon_kinesis_failed_records_total",
                "Records failed inside a PutRecords call, by error code",
                "code",
            )?,
            retries: counter(
                r,
                "beacon_kinesis_retries_total",
                "Calls resent after a whole or partial failure",
            )?,
            call_seconds: histogram(
                r,
                "beacon_kinesis_put_records_duration_seconds",
                "PutRecords latency",
                latency,
            )?,
            records_per_call: histogram(
                r,
                "beacon_kinesis_records_per_call",
                "Records per successful PutRecords call",
                per_call,
            )?,
            bytes_in_flight: gauge_by(
                r,
                "beacon_kinesis_bytes_in_flight",
                "Record bytes handed to the sidecar, not yet delivered",
                "shard",
            )?,
            spooled_bytes: gauge_by(
                r,
                "beacon_kinesis_spooled_bytes",
                "Bytes in the shard's on-disk spool",
                "shard",
            )?,
            spooled_records: counter_by(
                r,
                "beacon_kinesis_spooled_records_total",
                "Records written to the spool",
                "shard",
            )?,
            dead_lettered: counter_by(
                r,
                "beacon_kinesis_dead_lettered_total",
                "Records that can never be sent, written to the dead-letter file",
                "shard",
            )?,
        })
    }
}

fn registered<T: Collector + Clone + 'static>(r: &Registry, m: T) -> prometheus::Result<T> {
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    registered(r, IntCounter::new(name, help)?)
}

fn counter_by(
    r: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> prometheus::Result<IntCounterVec> {
    registered(r, IntCounterVec::new(Opts::new(name, help), &[label])?)
}

fn gauge_by(r: &Registry, name: &str, help: &str, label: &str) -> prometheus::Result<IntGaugeVec> {
    registered(r, IntGaugeVec::new(Opts::new(name, help), &[label])?)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
) -> prometheus::Result<Histogram> {
    registered(
        r,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?,
    )
}
