//! The whole configuration: `[engine]`, `[tracking]`, `[segments]`, `[campaigns]`, `[redis]`,
//! `[kinesis]`, `[sidecar]` and `[log]`, layered.
//!
//! Later sources win: defaults, the TOML file (`--config`), environment variables, flags.
//! `BEACON_<FIELD>` sets an `[engine]` field and `BEACON_<SECTION>_<FIELD>` a field of another
//! section (`BEACON_REDIS_TIMEOUT_MS`, `BEACON_SEGMENTS_FSYNC`); `BEACON_LOG` is the log filter.
//! The reference's `REDIS_HOST`/`REDIS_PORT` give `redis.url`, `EVENT_STREAM` gives
//! `kinesis.stream` and `REGION` gives `kinesis.region`, when nothing else does. Unknown fields
//! and variables are errors.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use beacon_engine::config::{field_name, Ack, CampaignsConfig, SegmentsConfig, TrackingConfig};
use beacon_engine::embedded::SegmentSink;
use beacon_engine::{EngineConfig, FieldError};
use beacon_kinesis::KinesisConfig;
use beacon_redis::RedisConfig;
use serde::{Deserialize, Serialize};

use crate::log::LogConfig;

/// The sidecar thread's settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SidecarConfig {
    /// CPU to pin the sidecar to. Default: the first allowed CPU no shard uses, if any; else
    /// unpinned.
    pub cpu: Option<usize>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub engine: EngineConfig,
    pub tracking: TrackingConfig,
    pub segments: SegmentsConfig,
    pub campaigns: CampaignsConfig,
    pub redis: RedisConfig,
    pub kinesis: KinesisConfig,
    pub sidecar: SidecarConfig,
    pub log: LogConfig,
}

/// Values given on the command line, by section and field.
#[derive(Default)]
pub struct Overrides(pub Vec<(&'static str, &'static str, toml::Value)>);

impl Overrides {
    pub fn set(
        &mut self,
        section: &'static str,
        field: &'static str,
        v: Option<impl Into<toml::Value>>,
    ) {
        if let Some(v) = v {
            self.0.push((section, field, v.into()));
        }
    }
}

const SECTIONS: [&str; 8] = [
    "engine",
    "tracking",
    "segments",
    "campaigns",
    "redis",
    "kinesis",
    "sidecar",
    "log",
];

fn fields_of<T: Serialize + Default>() -> Vec<String> {
    toml::Table::try_from(T::default())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

/// Fields of each section, including optional ones a default leaves out.
fn known_fields(section: &str) -> Vec<String> {
    let (mut fields, optional): (Vec<String>, &[&str]) = match section {
        "engine" => (
            fields_of::<EngineConfig>(),
            &[
                "shards",
                "io_memory_bytes",
                "connections_per_shard_max",
                "admin_listen",
            ],
        ),
        "tracking" => (fields_of::<TrackingConfig>(), &[]),
        "segments" => (fields_of::<SegmentsConfig>(), &[]),
        "campaigns" => (fields_of::<CampaignsConfig>(), &["file"]),
        "redis" => (fields_of::<RedisConfig>(), &["url", "password"]),
        "kinesis" => (
            fields_of::<KinesisConfig>(),
            &["stream", "endpoint", "region"],
        ),
        "log" => (fields_of::<LogConfig>(), &[]),
        _ => (fields_of::<SidecarConfig>(), &["cpu"]),
    };
    fields.extend(optional.iter().map(|s| s.to_string()));
    fields
}

/// An environment value as TOML: numbers and booleans as such, anything else as a string.
fn env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| raw.into()),
        Err(_) => raw.into(),
    }
}

/// Maps `BEACON_X` to its section and field; `BEACON_LOG` alone is the log filter, as
/// `RUST_LOG` is.
fn env_target(var: &str) -> Option<(&'static str, String)> {
    let rest = var.strip_prefix("BEACON_")?.to_ascii_lowercase();
    if rest == "log" {
        return Some(("log", "level".into()));
    }
    for section in SECTIONS.into_iter().filter(|s| *s != "engine") {
        if let Some(field) = rest.strip_prefix(&format!("{section}_")) {
            return Some((section, field.to_string()));
        }
    }
    Some(("engine", rest))
}

/// The configuration as TOML tables, one per section, before it is typed.
struct Layers(Vec<(&'static str, toml::Table)>);

impl Layers {
    /// The sections of `file`, or empty ones.
    fn from_file(file: Option<&PathBuf>) -> Result<Layers> {
        let mut root: toml::Table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("config file {} is not valid TOML", path.display()))?
            }
            None => toml::Table::new(),
        };
        if let Some(key) = root.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            let known: Vec<String> = SECTIONS.iter().map(|s| format!("[{s}]")).collect();
            bail!(
                "config file: unknown section [{key}]; known: {}",
                known.join(", ")
            );
        }
        let mut layers = Vec::new();
        for name in SECTIONS {
            let table = match root.remove(name) {
                Some(toml::Value::Table(t)) => t,
                Some(_) => bail!("config file: `{name}` must be a table ([{name}])"),
                None => toml::Table::new(),
            };
            layers.push((name, table));
        }
        Ok(Layers(layers))
    }

    fn section(&mut self, name: &str) -> &mut toml::Table {
        &mut self
            .0
            .iter_mut()
            .find(|(n, _)| *n == name)
            .expect("known section")
            .1
    }

    /// `BEACON_*` variables; an unknown field is an error that lists the known ones.
    fn apply_env(&mut self) -> Result<()> {
        let mut vars: Vec<(String, String)> = std::env::vars().collect();
        vars.sort();
        for (var, value) in vars {
            let Some((sec, field)) = env_target(&var) else {
                continue;
            };
            let known = known_fields(sec);
            if !known.contains(&field) {
                bail!(
                    "environment variable {var}: [{sec}] has no field `{field}` (known: {})",
                    known.join(", ")
                );
            }
            self.section(sec).insert(field, env_value(&value));
        }
        Ok(())
    }

    /// The reference's variables, where nothing else set the field.
    fn apply_reference_env(&mut self) {
        let redis = self.section("redis");
        if !redis.contains_key("url") {
            if let Ok(host) = std::env::var("REDIS_HOST") {
                let port = std::env::var("REDIS_PORT").unwrap_or_else(|_| "6379".into());
                redis.insert("url".into(), format!("redis://{host}:{port}").into());
            }
        }
        let kinesis = self.section("kinesis");
        for (var, field) in [("EVENT_STREAM", "stream"), ("REGION", "region")] {
            if let (false, Ok(value)) = (kinesis.contains_key(field), std::env::var(var)) {
                kinesis.insert(field.into(), value.into());
            }
        }
    }

    /// Takes out every field whose value its section's type refuses (a wrong type, an
    /// unknown name, a value not among the choices) and says why, so that one run names them
    /// all.
    fn take_type_errors(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for (section, table) in self.0.iter_mut() {
            let refused: Vec<(String, String)> = table
                .iter()
                .filter_map(|(field, value)| {
                    type_error(section, field, value).map(|why| (field.clone(), why))
                })
                .collect();
            for (field, why) in refused {
                table.remove(&field);
                // An unknown name is reported with the section it was written in: `[engine]`'s
                // own fields are named bare elsewhere, but a misspelt one is found by its place.
                let name = match why.starts_with("unknown field") {
                    true => format!("{field}` in `[{section}]"),
                    false => field_name(section, &field),
                };
                errors.push(format!("config field `{name}`: {why}"));
            }
        }
        errors
    }

    fn into_config(self) -> Result<Config> {
        let whole: toml::Table = self
            .0
            .into_iter()
            .map(|(n, t)| (n.to_string(), toml::Value::Table(t)))
            .collect();
        serde_path_to_error::deserialize(toml::Value::Table(whole)).map_err(|e| {
            anyhow::anyhow!(
                "invalid configuration: field `{}`: {}",
                e.path(),
                e.inner().to_string().lines().next().unwrap_or_default(),
            )
        })
    }
}

/// Why `[section]` refuses `field = value` on its own, if it does.
fn type_error(section: &str, field: &str, value: &toml::Value) -> Option<String> {
    fn check<T: serde::de::DeserializeOwned>(field: &str, value: &toml::Value) -> Option<String> {
        let one: toml::Table = [(field.to_string(), value.clone())].into_iter().collect();
        T::deserialize(toml::Value::Table(one))
            .err()
            .map(|e| e.to_string().lines().next().unwrap_or_default().to_string())
    }
    match section {
        "engine" => check::<EngineConfig>(field, value),
        "tracking" => check::<TrackingConfig>(field, value),
        "segments" => check::<SegmentsConfig>(field, value),
        "campaigns" => check::<CampaignsConfig>(field, value),
        "redis" => check::<RedisConfig>(field, value),
        "kinesis" => check::<KinesisConfig>(field, value),
        "log" => check::<LogConfig>(field, value),
        _ => check::<SidecarConfig>(field, value),
    }
}

/// Defaults, then `file`, then `BEACON_*` and the reference's variables, then `overrides`;
/// every out-of-range field of every section reported at once.
pub fn load(file: Option<&PathBuf>, overrides: Overrides) -> Result<Config> {
    let mut layers = Layers::from_file(file)?;
    layers.apply_env()?;
    for (sec, field, value) in overrides.0 {
        layers.section(sec).insert(field.to_string(), value);
    }
    layers.apply_reference_env();
    // Fields of the wrong type are reported with the out-of-range ones of the rest.
    let mut lines = layers.take_type_errors();
    let mut cfg = layers.into_config()?;
    // The engine reads `[tracking]` from its own config (which `validate` checks below).
    cfg.engine.tracking = cfg.tracking.clone();
    lines.extend(validate(&cfg).iter().map(|e| e.to_string()));
    if !lines.is_empty() {
        bail!("invalid configuration:\n  {}", lines.join("\n  "));
    }
    cfg.log.filter()?;
    Ok(cfg)
}

fn validate(cfg: &Config) -> Vec<FieldError> {
    let sink_limits = match cfg.kinesis.stream {
        Some(_) => beacon_kinesis::BATCH_LIMITS,
        None => SegmentSink::BATCH_LIMITS,
    };
    [
        cfg.engine.validate_for_sink(sink_limits),
        cfg.segments.validate(),
        cfg.campaigns.validate(),
        cfg.redis.validate(),
        cfg.kinesis.validate(),
    ]
    .into_iter()
    .filter_map(Result::err)
    .flatten()
    .chain(durable_needs(cfg))
    .collect()
}

/// `ack = "durable"` needs a sink whose finished writes survive a crash.
fn durable_needs(cfg: &Config) -> Option<FieldError> {
    if cfg.engine.ack != Ack::Durable {
        return None;
    }
    // Kinesis: a durable write returns once the records are in Kinesis or in the synced spool.
    if cfg.kinesis.stream.is_some() {
        return None;
    }
    let why = cfg.segments.durable_writes().err()?;
    Some(FieldError {
        field: "ack".into(),
        value: "\"durable\"".into(),
        allowed: why.into(),
    })
}

/// The effective configuration as TOML, with secrets (the Redis password, a password in the
/// Redis URL) shown as `***`, the shard count as it will be, and no empty section.
pub fn render(cfg: &Config) -> Result<String> {
    let mut shown = Config {
        redis: cfg.redis.shown(),
        ..cfg.clone()
    };
    shown.engine.shards = Some(cfg.engine.shard_count());
    let text = toml::to_string_pretty(&shown)?;
    // A section with no field set (`[sidecar]` without a CPU) says nothing: leave it out.
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let header = line.starts_with('[');
        let empty = lines
            .peek()
            .is_none_or(|next| next.is_empty() || next.starts_with('['));
        if !(header && empty) {
            out.push_str(line);
            out.push('\n');
        }
    }
    let sized_at_start: Vec<&str> = [
        (
            "connections_per_shard_max",
            cfg.engine.connections_per_shard_max.is_none(),
        ),
        ("io_memory_bytes", cfg.engine.io_memory_bytes.is_none()),
    ]
    .into_iter()
    .filter_map(|(field, unset)| unset.then_some(field))
    .collect();
    if !sized_at_start.is_empty() {
        out.push_str(&format!(
            "# unset, sized by `serve` at start from `ulimit -n` and `ulimit -l` (its log says the \
             values): {}\n",
            sized_at_start.join(", ")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_map_to_sections() {
        assert_eq!(
            env_target("BEACON_SHARDS"),
            Some(("engine", "shards".into()))
        );
        assert_eq!(
            env_target("BEACON_REDIS_TIMEOUT_MS"),
            Some(("redis", "timeout_ms".into()))
        );
        assert_eq!(
            env_target("BEACON_SIDECAR_CPU"),
            Some(("sidecar", "cpu".into()))
        );
        assert_eq!(env_target("BEACON_LOG"), Some(("log", "level".into())));
        assert_eq!(
            env_target("BEACON_LOG_FORMAT"),
            Some(("log", "format".into()))
        );
        assert_eq!(
            env_target("BEACON_SEGMENTS_FSYNC"),
            Some(("segments", "fsync".into()))
        );
        assert_eq!(env_target("PATH"), None);
        assert!(known_fields("redis").contains(&"url".to_string()));
        assert!(known_fields("engine").contains(&"batch_linger_ms".to_string()));
    }

    fn load_text(text: &str) -> Result<Config> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        load(Some(&file.path().to_path_buf()), Overrides::default())
    }

    #[test]
    fn every_bad_field_is_reported_in_one_run() {
        let err = load_text(
            "[engine]\nshardz = 2\nlisten = \"nope\"\nbatch_linger_ms = 0\n\
             [redis]\ntimeout_ms = \"soon\"\n",
        )
        .unwrap_err()
        .to_string();
        for field in [
            "`shardz`",
            "`listen`",
            "`batch_linger_ms`",
            "`redis.timeout_ms`",
        ] {
            assert!(err.contains(field), "{field} missing from: {err}");
        }
    }

    #[test]
    fn only_the_fields_the_user_set_are_blamed() {
        let err = load_text("[engine]\nheader_bytes_max = 100\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`header_bytes_max` = 100"), "{err}");
        assert!(!err.contains("path_bytes_max"), "{err}");
        // A batch bound over both the engine's ceiling and the sink's is named once.
        let err = load_text("[engine]\nbatch_records_max = 100000000\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err.matches("batch_records_max").count(), 1, "{err}");
    }
}
