//! The whole configuration: `[engine]`, `[redis]`, `[kinesis]` and `[sidecar]`, layered.
//!
//! Later sources win: defaults, the TOML file (`--config`), environment variables, flags.
//! `BEACON_<FIELD>` sets an `[engine]` field, `BEACON_REDIS_<FIELD>` a `[redis]` one and
//! `BEACON_KINESIS_<FIELD>` a `[kinesis]` one and `BEACON_SIDECAR_<FIELD>` a `[sidecar]` one.
//! The reference's `REDIS_HOST`/`REDIS_PORT` give `redis.url`, `EVENT_STREAM` gives
//! `kinesis.stream` and `REGION` gives `kinesis.region`, when nothing else does. Unknown fields
//! and variables are errors.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use beacon_engine::EngineConfig;
use beacon_kinesis::KinesisConfig;
use beacon_redis::RedisConfig;
use serde::{Deserialize, Serialize};

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
    pub redis: RedisConfig,
    pub kinesis: KinesisConfig,
    pub sidecar: SidecarConfig,
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

const SECTIONS: [&str; 4] = ["engine", "redis", "kinesis", "sidecar"];

fn fields_of<T: Serialize + Default>() -> Vec<String> {
    toml::Table::try_from(T::default())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

/// Fields of each section, including optional ones a default leaves out.
fn known_fields(section: &str) -> Vec<String> {
    let mut fields = match section {
        "engine" => fields_of::<EngineConfig>(),
        "redis" => fields_of::<RedisConfig>(),
        "kinesis" => fields_of::<KinesisConfig>(),
        _ => fields_of::<SidecarConfig>(),
    };
    let optional: &[&str] = match section {
        "engine" => &["shards", "campaigns"],
        "redis" => &["url"],
        "kinesis" => &["stream", "endpoint", "region"],
        _ => &["cpu"],
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

/// Maps `BEACON_X` to its section and field.
fn env_target(var: &str) -> Option<(&'static str, String)> {
    let rest = var.strip_prefix("BEACON_")?.to_ascii_lowercase();
    for section in ["redis", "kinesis", "sidecar"] {
        if let Some(field) = rest.strip_prefix(&format!("{section}_")) {
            return Some((section, field.to_string()));
        }
    }
    Some(("engine", rest))
}

pub fn load(file: Option<&PathBuf>, overrides: Overrides) -> Result<Config> {
    let mut root: toml::Table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("config file {} is not valid TOML", path.display()))?
        }
        None => toml::Table::new(),
    };
    for key in root.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            bail!("config file: unknown section [{key}]; known: [engine], [redis], [kinesis], [sidecar]");
        }
    }
    let section = |root: &mut toml::Table, name: &str| -> Result<toml::Table> {
        match root.remove(name) {
            Some(toml::Value::Table(t)) => Ok(t),
            Some(_) => bail!("config file: `{name}` must be a table ([{name}])"),
            None => Ok(toml::Table::new()),
        }
    };
    let mut tables: Vec<(&str, toml::Table)> = Vec::new();
    for name in SECTIONS {
        tables.push((name, section(&mut root, name)?));
    }
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
        let table = &mut tables
            .iter_mut()
            .find(|(n, _)| *n == sec)
            .expect("known section")
            .1;
        table.insert(field, env_value(&value));
    }
    for (sec, field, value) in overrides.0 {
        let table = &mut tables
            .iter_mut()
            .find(|(n, _)| *n == sec)
            .expect("known section")
            .1;
        table.insert(field.to_string(), value);
    }
    let redis = &mut tables
        .iter_mut()
        .find(|(n, _)| *n == "redis")
        .expect("known section")
        .1;
    if !redis.contains_key("url") {
        if let Ok(host) = std::env::var("REDIS_HOST") {
            let port = std::env::var("REDIS_PORT").unwrap_or_else(|_| "6379".into());
            redis.insert("url".into(), format!("redis://{host}:{port}").into());
        }
    }
    let kinesis = &mut tables
        .iter_mut()
        .find(|(n, _)| *n == "kinesis")
        .expect("known section")
        .1;
    for (var, field) in [("EVENT_STREAM", "stream"), ("REGION", "region")] {
        if let (false, Ok(value)) = (kinesis.contains_key(field), std::env::var(var)) {
            kinesis.insert(field.into(), value.into());
        }
    }
    let whole: toml::Table = tables
        .into_iter()
        .map(|(n, t)| (n.to_string(), toml::Value::Table(t)))
        .collect();
    let cfg: Config = serde_path_to_error::deserialize(toml::Value::Table(whole)).map_err(|e| {
        anyhow::anyhow!(
            "invalid configuration: field `{}`: {}",
            e.path(),
            e.inner().to_string().lines().next().unwrap_or_default(),
        )
    })?;
    let mut errors: Vec<String> = Vec::new();
    if let Err(es) = cfg.engine.validate() {
        errors.extend(es.iter().map(|e| e.to_string()));
    }
    if let Err(es) = cfg.redis.validate() {
        errors.extend(es);
    }
    if let Err(es) = cfg.kinesis.validate() {
        errors.extend(es);
    }
    if !errors.is_empty() {
        bail!("invalid configuration:\n  {}", errors.join("\n  "));
    }
    Ok(cfg)
}

/// The effective configuration as TOML.
pub fn render(cfg: &Config) -> Result<String> {
    Ok(toml::to_string_pretty(cfg)?)
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
        assert_eq!(env_target("PATH"), None);
        assert!(known_fields("redis").contains(&"url".to_string()));
        assert!(known_fields("engine").contains(&"batch_linger_ms".to_string()));
    }
}
