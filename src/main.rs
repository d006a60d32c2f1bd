//! `beacon`: the composition root. Parses the command line and configuration, wires the engine
//! to its core data source and sink, and runs it.
//!
//! | module | part |
//! |---|---|
//! | `cli` | commands, arguments and flags |
//! | `config` | the layered configuration: defaults, file, environment, flags |
//! | `cmd` | one module per command: `serve`, `tail`, `config`, `core_data`, `consume`, `health` |
//! | `sidecar` | the thread that runs the vendor SDKs on tokio |
//! | `log` | structured logs, text or JSON lines |

mod cli;
mod cmd;
mod config;
mod log;
mod sidecar;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, ConfigCommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` asked for a JSON log: an error found before the log starts (a bad config) is a
    // JSON line too.
    let json_asked = match &cli.command {
        Command::Serve(args) => {
            args.log_format.as_deref() == Some("json")
                || (args.log_format.is_none()
                    && std::env::var("BEACON_LOG_FORMAT").as_deref() == Ok("json"))
        }
        _ => false,
    };
    let result = match cli.command {
        Command::Serve(args) => args.load().and_then(cmd::serve::run),
        Command::Tail(args) => cmd::tail::run(&args),
        Command::Config {
            command: ConfigCommand::Check(args),
        } => args.load().and_then(cmd::config::check),
        Command::CoreData { command } => cmd::core_data::run(command),
        Command::Consume { command } => cmd::consume::run(command),
        Command::Health { url, timeout_ms } => cmd::health::run(&url, timeout_ms),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Before or instead of the log: the one line a failed command leaves, each cause
            // once (a message that already quotes its source is not followed by it again).
            let mut line = e.to_string();
            for cause in e.chain().skip(1).map(|c| c.to_string()) {
                if !line.contains(&cause) {
                    line = format!("{line}: {cause}");
                }
            }
            if json_asked && !log::json() {
                let _ = log::init(&log::LogConfig {
                    format: log::LogFormat::Json,
                    level: "error".into(),
                });
            }
            match log::json() {
                // `serve` with a JSON log: every line it writes is JSON, this one too.
                true => tracing::error!("beacon: {line}"),
                false => eprintln!("beacon: {line}"),
            }
            // 3: stopped cleanly but with accepted events left on local disk (the line says how
            // many and where); an orchestrator records it apart from a failed start.
            let stranded = matches!(
                e.downcast_ref::<beacon_engine::ServerError>(),
                Some(beacon_engine::ServerError::Stranded { .. })
            );
            ExitCode::from(if stranded { 3 } else { 2 })
        }
    }
}
