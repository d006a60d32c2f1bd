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

/// The target of the one event that goes to standard output: the ready line scripts wait for.
pub const READY_TARGET: &str = "beacon::ready";

/// Set once a JSON subscriber is installed: the exit error and panics then go through it.
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether `serve`'s JSON log is on (every line it writes must then be JSON).
pub fn json() -> bool {
    JSON.load(std::sync::atomic::Ordering::Acquire)
}

/// One JSON object per event, its fields at the top level, written to `writer`.
fn json_layer<S, W>(
    writer: W,
) -> tracing_subscriber::fmt::Layer<
    S,
    tracing_subscriber::fmt::format::JsonFields,
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json>,
    W,
>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(writer)
}

/// Installs the process's log subscriber, writing to standard error. With `json`, the ready
/// line (`READY_TARGET`) is a JSON object on standard output, in the same format, and a panic is
/// logged as an error event instead of the runtime's plain text.
pub fn init(cfg: &LogConfig) -> Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = cfg.filter()?;
    let installed = match cfg.format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => {
            let ready = |m: &tracing::Metadata<'_>| m.target() == READY_TARGET;
            let stderr = json_layer(std::io::stderr)
                .with_filter(tracing_subscriber::filter::filter_fn(move |m| !ready(m)))
                .with_filter(filter);
            let stdout = json_layer(std::io::stdout)
                .with_filter(tracing_subscriber::filter::filter_fn(ready));
            let done = tracing_subscriber::registry()
                .with(stderr)
                .with(stdout)
                .try_init();
            if done.is_ok() {
                JSON.store(true, std::sync::atomic::Ordering::Release);
                std::panic::set_hook(Box::new(|info| {
                    let location = info.location().map(|l| l.to_string()).unwrap_or_default();
                    let payload = info
                        .payload()
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| info.payload().downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    let thread = std::thread::current()
                        .name()
                        .unwrap_or("unnamed")
                        .to_string();
                    tracing::error!(thread, location, "panic: {payload}");
                }));
            }
            done.map_err(|e| e.to_string().into())
        }
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}
