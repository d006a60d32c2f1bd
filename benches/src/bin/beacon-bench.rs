//! `beacon-bench`: load tools for latency benchmarks and capacity planning (see the crate docs).

use anyhow::{Context, Result};
use beacon_benches::{capacity, load};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "beacon-bench",
    version,
    about = "Load tools for beacon: latency benchmarks and capacity planning"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open-loop, constant-rate load against a running engine; reports latency percentiles.
    Load(load::LoadArgs),
    /// Steps the rate up against a running engine to the highest within --slo-p99-ms, then
    /// plans cores, instances, Kinesis shards and monthly cost for --peak-rps; plots latency.
    Capacity(capacity::CapacityArgs),
}

fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Load(args) => {
            let bar = load::progress_bar(args.quiet);
            let report = load::run(&args.workload, args.rate, args.seconds, &bar)?;
            print!("{}", load::markdown(&report));
            if let Some(path) = &args.json {
                write_json(path, &report)?;
            }
            let allowed = args.workload.allowed_non_2xx_share();
            if let (false, Some(why)) = (args.allow_errors, report.error_verdict(allowed)) {
                anyhow::bail!(
                    "{why}: this run measured errors, not the engine (does the engine hold \
                     campaigns {}..? start it with --synthetic-campaigns; pass --allow-errors \
                     to accept such a run)",
                    args.workload.first_id
                );
            }
        }
        Command::Capacity(args) => {
            let outcome = capacity::run(&args)?;
            print!("{}", capacity::markdown(&outcome));
            println!("\nPlot: {}", args.svg.display());
            if let Some(path) = &args.json {
                write_json(path, &outcome)?;
            }
        }
    }
    Ok(())
}
