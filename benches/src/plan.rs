//! From what a capacity run measured to what a peak needs: engine cores and instances, Kinesis
//! shards with and without aggregation, and what they cost a month. Pure arithmetic, so every
//! rule is a unit test below.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The price table built into the tool (`benches/prices.toml`).
pub const DEFAULT_PRICES: &str = include_str!("../prices.toml");

/// Kinesis per-shard write limits (the service's, not configurable).
pub const SHARD_RECORDS_PER_SEC: f64 = 1000.0;
pub const SHARD_BYTES_PER_SEC: f64 = 1024.0 * 1024.0;
/// Provisioned PUT payloads are billed in 25 KiB chunks of each record.
pub const PUT_UNIT_BYTES: f64 = 25.0 * 1024.0;
/// KPL framing per user record in an aggregated record, on top of its data and its partition
/// key in the key table: the record's tag and length, the key index, the hash key index, the
/// data's tag and length, and the key table entry's tag and length. (An aggregate's own key,
/// magic and MD5 are shared by all its user records and left out.)
pub const AGGREGATED_RECORD_OVERHEAD_BYTES: f64 = 12.0;

#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    pub region: String,
    pub currency: String,
    pub hours_per_month: f64,
    pub engine: EnginePrices,
    pub instances: Vec<Instance>,
    pub kinesis: KinesisPrices,
}

#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct EnginePrices {
    pub sidecar_vcpus: u32,
}

#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub name: String,
    pub vcpus: u32,
    pub hourly: f64,
}

#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct KinesisPrices {
    pub shard_hour: f64,
    pub put_units_per_million: f64,
    pub on_demand_stream_hour: f64,
    pub on_demand_per_gib: f64,
}

impl Prices {
    /// The built-in table, or the file at `path`.
    pub fn load(path: Option<&Path>) -> Result<Prices> {
        let (text, name) = match path {
            Some(p) => (
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read the price table {}", p.display()))?,
                p.display().to_string(),
            ),
            None => (
                DEFAULT_PRICES.to_string(),
                "the built-in price table".to_string(),
            ),
        };
        let prices: Prices = toml::from_str(&text).with_context(|| format!("in {name}"))?;
        if prices.instances.is_empty() {
            bail!("{name}: list at least one [[instances]]");
        }
        for i in &prices.instances {
            if i.vcpus == 0 || i.hourly < 0.0 {
                bail!(
                    "{name}: instance {} needs vcpus >= 1 and hourly >= 0",
                    i.name
                );
            }
        }
        if prices.hours_per_month <= 0.0 {
            bail!("{name}: hours_per_month must be positive");
        }
        Ok(prices)
    }
}

/// What the run measured on this machine.
#[derive(Serialize, Clone, Debug)]
pub struct Measured {
    /// Engine shards (one per core) that served the load.
    pub shards: usize,
    /// Highest offered rate whose p99 met the SLO with no errors, requests/s.
    pub slo_rps: f64,
    /// Engine (shard threads) CPU per request at that rate, µs.
    pub cpu_us_per_request: f64,
    /// Events accepted per tracking request (below 1 when some ids are unknown).
    pub events_per_request: f64,
    /// Encoded bytes per event, in the engine's record format.
    pub bytes_per_event: f64,
    /// Sealed batches per event (each batch is one aggregated record per Kinesis shard it hits).
    pub batches_per_event: f64,
    /// Every step passed up to `--max-rps`: the run stopped at the cap, not at the SLO, so
    /// `slo_rps` is a lower bound.
    pub capped_by_max_rps: Option<u64>,
}

/// What the user asked for.
#[derive(Serialize, Clone, Debug)]
pub struct Goal {
    pub peak_rps: f64,
    /// Share of each core's capacity kept free (0.3: plan cores to run at 70%).
    pub headroom: f64,
    /// Fewest instances, whatever the load (2: survive losing one).
    pub min_instances: u32,
    /// Bytes of each record's partition key (36 for a message id, the default).
    pub partition_key_bytes: f64,
}

#[derive(Serialize, Clone, Debug)]
pub struct Plan {
    /// Requests/s one core sustains within the SLO on this machine.
    pub per_core_slo_rps: f64,
    /// Requests/s one core would take at 100% CPU, from CPU per request.
    pub per_core_cpu_rps: f64,
    /// Requests/s planned per core: the lower of the two, less the headroom.
    pub per_core_planned_rps: f64,
    pub engine_cores: u64,
    pub instances: Vec<InstanceOption>,
    pub events_per_sec: f64,
    pub kinesis: Vec<KinesisOption>,
    /// The deployment template's parameters for this plan (deploy/cloudformation/beacon.yaml),
    /// from the cheapest instance option and plain (one event per record) Kinesis records.
    pub stack_parameters: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

#[derive(Serialize, Clone, Debug)]
pub struct InstanceOption {
    pub name: String,
    pub vcpus: u32,
    /// Shards per instance (vCPUs less the sidecar's on larger instances).
    pub shards_per_instance: u32,
    pub count: u64,
    pub monthly: f64,
    pub cheapest: bool,
}

#[derive(Serialize, Clone, Debug)]
pub struct KinesisOption {
    pub mode: String,
    pub records_per_sec: f64,
    pub mib_per_sec: f64,
    /// Shards each limit alone would need; the plan takes the larger. `None`: no shard count
    /// meets the record limit (see the warnings).
    pub shards_for_records: Option<u64>,
    pub shards_for_bytes: u64,
    pub shards: u64,
    pub put_units_per_sec: f64,
    pub provisioned_monthly: f64,
    pub on_demand_monthly: f64,
}

fn ceil_u64(x: f64) -> u64 {
    x.ceil().max(0.0) as u64
}

pub fn plan(m: &Measured, goal: &Goal, prices: &Prices) -> Result<Plan> {
    if m.shards == 0 || m.slo_rps <= 0.0 || m.cpu_us_per_request <= 0.0 {
        bail!(
            "no step met the SLO: nothing to plan from (lower --start-rps or raise --slo-p99-ms)"
        );
    }
    if !(0.0..1.0).contains(&goal.headroom) {
        bail!("--headroom must be at least 0 and below 1");
    }
    let mut warnings = Vec::new();
    let per_core_slo_rps = m.slo_rps / m.shards as f64;
    let per_core_cpu_rps = 1e6 / m.cpu_us_per_request;
    let per_core_planned_rps = per_core_slo_rps.min(per_core_cpu_rps) * (1.0 - goal.headroom);
    let engine_cores = ceil_u64(goal.peak_rps / per_core_planned_rps).max(1);

    let hours = prices.hours_per_month;
    let mut instances: Vec<InstanceOption> = prices
        .instances
        .iter()
        .map(|i| {
            let shards = if i.vcpus > 2 {
                i.vcpus.saturating_sub(prices.engine.sidecar_vcpus).max(1)
            } else {
                i.vcpus
            };
            let count = (engine_cores.div_ceil(shards as u64)).max(goal.min_instances as u64);
            InstanceOption {
                name: i.name.clone(),
                vcpus: i.vcpus,
                shards_per_instance: shards,
                count,
                monthly: count as f64 * i.hourly * hours,
                cheapest: false,
            }
        })
        .collect();
    if let Some(best) = instances
        .iter_mut()
        .min_by(|a, b| a.monthly.total_cmp(&b.monthly))
    {
        best.cheapest = true;
    }

    let events_per_sec = goal.peak_rps * m.events_per_request;
    let k = &prices.kinesis;
    let provisioned = |shards: u64, units: f64| {
        shards as f64 * k.shard_hour * hours
            + units * 3600.0 * hours / 1e6 * k.put_units_per_million
    };
    let on_demand = |records: f64, record_bytes: f64| {
        let kib = (record_bytes / 1024.0).ceil();
        records * kib / (1024.0 * 1024.0) * 3600.0 * hours * k.on_demand_per_gib
            + k.on_demand_stream_hour * hours
    };

    // Plain: one Kinesis record per event; Kinesis counts the partition key in the bytes.
    let plain_bytes = m.bytes_per_event + goal.partition_key_bytes;
    let plain_rate = events_per_sec * plain_bytes;
    let shards_for_records = ceil_u64(events_per_sec / SHARD_RECORDS_PER_SEC);
    let shards_for_bytes = ceil_u64(plain_rate / SHARD_BYTES_PER_SEC);
    let plain_shards = shards_for_records.max(shards_for_bytes).max(1);
    let plain_units = events_per_sec * (plain_bytes / PUT_UNIT_BYTES).ceil();
    let plain = KinesisOption {
        mode: "plain".into(),
        records_per_sec: events_per_sec,
        mib_per_sec: plain_rate / SHARD_BYTES_PER_SEC,
        shards_for_records: Some(shards_for_records),
        shards_for_bytes,
        shards: plain_shards,
        put_units_per_sec: plain_units,
        provisioned_monthly: provisioned(plain_shards, plain_units),
        on_demand_monthly: on_demand(events_per_sec, plain_bytes),
    };

    // Aggregated: each sealed batch becomes one record per destination shard, holding that
    // shard's share of the batch; each user record carries its key in the key table and some
    // framing. More shards never lower the records a shard gets (every batch reaches every
    // shard once it holds more events than there are shards), so the record limit binds on the
    // fleet's batch rate: beyond 1000 batches/s, batches must grow (batch_linger_ms, batch sizes).
    let agg_bytes = m.bytes_per_event + goal.partition_key_bytes + AGGREGATED_RECORD_OVERHEAD_BYTES;
    let agg_rate = events_per_sec * agg_bytes;
    let agg_shards_for_bytes = ceil_u64(agg_rate / SHARD_BYTES_PER_SEC).max(1);
    let batches_per_sec = events_per_sec * m.batches_per_event;
    let events_per_batch = if m.batches_per_event > 0.0 {
        1.0 / m.batches_per_event
    } else {
        f64::INFINITY
    };
    let shards = agg_shards_for_bytes as f64;
    let per_shard_records = batches_per_sec * (events_per_batch / shards).min(1.0);
    let agg_records = per_shard_records * shards;
    let agg_shards_for_records = if per_shard_records > SHARD_RECORDS_PER_SEC {
        warnings.push(format!(
            "aggregated: the fleet seals {batches_per_sec:.0} batches/s, and each Kinesis shard \
             gets one record per batch; above {SHARD_RECORDS_PER_SEC:.0}/s no shard count helps: \
             raise engine.batch_linger_ms or engine.batch_records_max so batches are fewer and larger"
        ));
        None
    } else {
        Some(1)
    };
    let agg_record_bytes = if agg_records > 0.0 {
        agg_rate / agg_records
    } else {
        0.0
    };
    let agg_units = agg_records * (agg_record_bytes / PUT_UNIT_BYTES).ceil();
    let aggregated = KinesisOption {
        mode: "aggregated".into(),
        records_per_sec: agg_records,
        mib_per_sec: agg_rate / SHARD_BYTES_PER_SEC,
        shards_for_records: agg_shards_for_records,
        shards_for_bytes: agg_shards_for_bytes,
        shards: agg_shards_for_bytes,
        put_units_per_sec: agg_units,
        provisioned_monthly: provisioned(agg_shards_for_bytes, agg_units),
        on_demand_monthly: on_demand(agg_records, agg_record_bytes),
    };
    if let Some(cap) = m.capped_by_max_rps {
        warnings.push(format!(
            "every step passed up to --max-rps {cap}: the run stopped at that cap, not at the SLO, \
             so {per_core_slo_rps:.0} req/s per core is a lower bound (raise --max-rps to find \
             the limit)"
        ));
    } else if per_core_slo_rps < per_core_cpu_rps * 0.5 {
        warnings.push(format!(
            "the SLO, not CPU, bounds a core here ({per_core_slo_rps:.0} req/s within the SLO vs \
             {per_core_cpu_rps:.0} at 100% CPU): when the load generator shares the engine's \
             cores, run it from another machine for a truer figure"
        ));
    }
    let stack_parameters = stack_parameters(&instances, &plain, per_core_planned_rps, goal);
    Ok(Plan {
        per_core_slo_rps,
        per_core_cpu_rps,
        per_core_planned_rps,
        engine_cores,
        instances,
        events_per_sec,
        kinesis: vec![plain, aggregated],
        stack_parameters,
        warnings,
    })
}

/// The stack template's parameters for the cheapest instance option: its type, shards per task
/// (one task per instance), instances from the minimum to what the peak needs, the event
/// stream's shards, and the autoscaling target, which is what one instance takes per minute at
/// the planned per-core rate (headroom already taken off), so scaling keeps every instance at
/// its plan.
fn stack_parameters(
    instances: &[InstanceOption],
    plain: &KinesisOption,
    per_core_planned_rps: f64,
    goal: &Goal,
) -> Vec<(String, String)> {
    let Some(i) = instances.iter().find(|i| i.cheapest) else {
        return Vec::new();
    };
    let per_instance_per_minute = per_core_planned_rps * i.shards_per_instance as f64 * 60.0;
    vec![
        ("InstanceType".into(), i.name.clone()),
        ("Shards".into(), i.shards_per_instance.to_string()),
        ("InstancesMin".into(), goal.min_instances.to_string()),
        (
            "InstancesMax".into(),
            i.count.max(goal.min_instances as u64).to_string(),
        ),
        ("EventStreamShards".into(), plain.shards.to_string()),
        (
            "RequestsPerTargetPerMinute".into(),
            format!("{:.0}", per_instance_per_minute.floor()),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured() -> Measured {
        Measured {
            shards: 2,
            slo_rps: 20_000.0,
            cpu_us_per_request: 25.0,
            events_per_request: 1.0,
            bytes_per_event: 164.0,
            batches_per_event: 1.0 / 500.0,
            capped_by_max_rps: None,
        }
    }

    #[test]
    fn a_run_stopped_by_max_rps_says_so_not_that_the_slo_bounds_it() {
        let p = Prices::load(None).unwrap();
        let capped = Measured {
            capped_by_max_rps: Some(20_000),
            ..measured()
        };
        let plan = plan(&capped, &goal(100_000.0), &p).unwrap();
        assert!(
            plan.warnings.iter().any(|w| w.contains("--max-rps 20000")),
            "{:?}",
            plan.warnings
        );
        assert!(!plan.warnings.iter().any(|w| w.contains("SLO, not CPU")));
    }

    fn goal(peak: f64) -> Goal {
        Goal {
            peak_rps: peak,
            headroom: 0.3,
            min_instances: 2,
            partition_key_bytes: 36.0,
        }
    }

    #[test]
    fn the_built_in_price_table_loads() {
        let p = Prices::load(None).unwrap();
        assert!(p.instances.len() >= 2);
        assert_eq!(p.hours_per_month, 730.0);
    }

    #[test]
    fn cores_follow_the_tighter_of_slo_and_cpu_less_headroom() {
        let p = Prices::load(None).unwrap();
        let plan = plan(&measured(), &goal(100_000.0), &p).unwrap();
        // SLO: 10,000/core; CPU: 40,000/core; planned 10,000 x 0.7 = 7,000.
        assert_eq!(plan.per_core_slo_rps, 10_000.0);
        assert_eq!(plan.per_core_cpu_rps, 40_000.0);
        assert!((plan.per_core_planned_rps - 7_000.0).abs() < 1e-6);
        assert_eq!(plan.engine_cores, 15); // 100,000 / 7,000 = 14.3
        let large = plan
            .instances
            .iter()
            .find(|i| i.name == "c7i.large")
            .unwrap();
        assert_eq!((large.shards_per_instance, large.count), (2, 8));
        let xl = plan
            .instances
            .iter()
            .find(|i| i.name == "c7i.xlarge")
            .unwrap();
        assert_eq!(
            (xl.shards_per_instance, xl.count),
            (3, 5),
            "one vCPU left to the sidecar"
        );
        assert!((xl.monthly - 5.0 * 0.1785 * 730.0).abs() < 1e-6);
        assert_eq!(plan.instances.iter().filter(|i| i.cheapest).count(), 1);
        assert!(plan.warnings.iter().any(|w| w.contains("SLO, not CPU")));
    }

    #[test]
    fn the_stack_parameters_follow_the_cheapest_option() {
        let p = Prices::load(None).unwrap();
        let plan = plan(&measured(), &goal(100_000.0), &p).unwrap();
        let cheapest = plan.instances.iter().find(|i| i.cheapest).unwrap();
        let get = |k: &str| {
            plan.stack_parameters
                .iter()
                .find(|(n, _)| n == k)
                .unwrap_or_else(|| panic!("{k} missing"))
                .1
                .clone()
        };
        assert_eq!(get("InstanceType"), cheapest.name);
        assert_eq!(get("Shards"), cheapest.shards_per_instance.to_string());
        assert_eq!(get("InstancesMin"), "2");
        assert_eq!(get("InstancesMax"), cheapest.count.to_string());
        assert_eq!(get("EventStreamShards"), plan.kinesis[0].shards.to_string());
        // 7,000 req/s per core planned, x shards, x 60 s.
        let per_minute = 7_000 * 60 * cheapest.shards_per_instance as u64;
        assert_eq!(get("RequestsPerTargetPerMinute"), per_minute.to_string());
    }

    #[test]
    fn a_small_peak_still_gets_the_minimum_instances() {
        let p = Prices::load(None).unwrap();
        let plan = plan(&measured(), &goal(10.0), &p).unwrap();
        assert_eq!(plan.engine_cores, 1);
        assert!(plan.instances.iter().all(|i| i.count == 2));
    }

    #[test]
    fn kinesis_plain_is_bound_by_records_and_aggregated_by_bytes() {
        let p = Prices::load(None).unwrap();
        let plan = plan(&measured(), &goal(100_000.0), &p).unwrap();
        let plain = &plan.kinesis[0];
        // 100,000 records/s: 100 shards for records; 200 B each = 19.1 MiB/s: 20 for bytes.
        assert_eq!(
            (
                plain.shards_for_records,
                plain.shards_for_bytes,
                plain.shards
            ),
            (Some(100), 20, 100)
        );
        assert_eq!(plain.put_units_per_sec, 100_000.0);
        let agg = &plan.kinesis[1];
        // 164 + 36 + 12 = 212 B/event: 20.2 MiB/s: 21 shards; 200 batches/s, each reaching all
        // 21 shards: 4,200 records/s, 200/s per shard, which one shard would take.
        assert_eq!(
            (agg.shards_for_records, agg.shards_for_bytes, agg.shards),
            (Some(1), 21, 21)
        );
        assert!(
            (agg.records_per_sec - 4_200.0).abs() < 1e-6,
            "{}",
            agg.records_per_sec
        );
        assert!(agg.put_units_per_sec < plain.put_units_per_sec / 10.0);
        assert!(agg.provisioned_monthly < plain.provisioned_monthly);
        // Provisioned plain: 100 shards x 0.015 x 730 + 100,000 units/s over a month.
        let expected = 100.0 * 0.015 * 730.0 + 100_000.0 * 3600.0 * 730.0 / 1e6 * 0.014;
        assert!((plain.provisioned_monthly - expected).abs() < 1e-6);
    }

    #[test]
    fn tiny_batches_at_a_large_fleet_hit_the_record_limit_whatever_the_shards() {
        let p = Prices::load(None).unwrap();
        let mut m = measured();
        m.batches_per_event = 1.0 / 50.0; // 2,000 batches/s at 100,000 events/s
        let plan = plan(&m, &goal(100_000.0), &p).unwrap();
        assert!(
            plan.warnings.iter().any(|w| w.contains("batch_linger_ms")),
            "{:?}",
            plan.warnings
        );
        assert_eq!(plan.kinesis[1].shards_for_records, None);
    }

    #[test]
    fn nothing_within_the_slo_is_an_error_that_says_what_to_change() {
        let p = Prices::load(None).unwrap();
        let mut m = measured();
        m.slo_rps = 0.0;
        let e = plan(&m, &goal(1.0), &p).unwrap_err().to_string();
        assert!(e.contains("--slo-p99-ms"), "{e}");
    }

    #[test]
    fn a_bad_price_table_names_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, DEFAULT_PRICES.replace("vcpus = 2", "vcpus = \"two\"")).unwrap();
        let e = format!("{:#}", Prices::load(Some(&f)).unwrap_err());
        assert!(e.contains("p.toml") && e.contains("vcpus"), "{e}");
    }
}
