//! Structured logs (`[log]`, `--log-format`, `--log-level`, `BEACON_LOG`): readable lines by
//! default, or one JSON object per line (timestamp, level, target, message and fields) for
//! CloudWatch, Loki and friends. Nothing is logged per request.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Log settings. Field docs give the default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
    /// Which lines to print, in RUST_LOG syntax (`info`, `warn,beacon::redis=debug`). Default
    /// `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl LogConfig {
    /// The level filter, or an error naming the field.
    pub fn filter(&self) -> Result<EnvFilter> {
        EnvFilter::try_new(&self.level).with_context(|| {
            format!(
                "config field `log.level` = {:?}: not a RUST_LOG filter (e.g. `info` or `warn,beacon::redis=debug`)",
                self.level
            )
        })
    }
}

/// Installs the process's log subscriber, writing to standard error.
pub fn init(cfg: &LogConfig) -> Result<()> {
    let filter = cfg.filter()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match cfg.format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}
