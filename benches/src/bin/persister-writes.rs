//! The event persister's two ways to write idempotently, side by side against one DynamoDB
//! endpoint: `BatchWriteItem` of 25 puts (what `beacon-consumers` does) and one conditional
//! `PutItem` per event (`attribute_not_exists(id)`, a failed condition counted as stored).
//! Each runs twice over the same events: the first pass stores them, the second is a retry.
//! `benches/persister` runs it against dynalite.

use std::time::{Instant, SystemTime};

use anyhow::{bail, Result};
use beacon_consumers::{persist, Handler, InRecord, Persister};
use beacon_engine::config::RecordFormat;
use beacon_engine::model::{Campaign, Event};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// DynamoDB endpoint (a local implementation, e.g. http://127.0.0.1:4578).
    #[arg(long)]
    endpoint: String,
    /// Table for the BatchWriteItem run (the reference's layout).
    #[arg(long)]
    batch_table: String,
    /// Table for the PutItem run.
    #[arg(long)]
    put_table: String,
    /// Events written.
    #[arg(long, default_value_t = 5000)]
    events: usize,
    /// Records per handler call (a Lambda batch).
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

fn records(n: usize) -> Vec<InRecord> {
    let c = Campaign {
        program_id: "212313".into(),
        program_name: "program2".into(),
        checksum: "124".into(),
        customer_id: 9124,
        customer_name: "Customer2".into(),
        valid: true,
        version: None,
        landing_url: None,
    };
    (0..n)
        .map(|i| {
            let e = Event {
                message_id: uuid::Uuid::new_v4(),
                campaign: &c,
                user_agent: "Mozilla/5.0 (X11; Linux x86_64) benchmark",
                received_at_ms: 1_764_700_000_000 + i as u64,
                client_ip: "203.0.113.7",
                trace_id: "Root=1-6b113b00-7839755702904ff39550a702",
                validated: true,
                route: beacon_engine::model::EventRoute::Pixel,
                bot: false,
                extras: beacon_engine::model::EventExtras::NONE,
            };
            let mut data = Vec::new();
            e.encode_into(RecordFormat::Rkyv, &mut data);
            InRecord {
                shard_id: "shardId-000000000000".into(),
                sequence_number: format!("{i:020}"),
                data,
            }
        })
        .collect()
}

async fn batch_write(p: &Persister, records: &[InRecord], batch: usize) -> Result<(f64, usize)> {
    let start = Instant::now();
    let mut calls = 0;
    for chunk in records.chunks(batch) {
        let outcome = p.handle(chunk).await;
        if outcome.failed_at.is_some() || !outcome.undecodable.is_empty() {
            bail!("BatchWriteItem run failed: {outcome:?}");
        }
        calls += chunk.len().div_ceil(persist::BATCH_ITEMS_MAX);
    }
    Ok((start.elapsed().as_secs_f64(), calls))
}

async fn conditional_puts(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    records: &[InRecord],
) -> Result<(f64, usize, usize)> {
    let start = Instant::now();
    let updated_at = aws_sdk_dynamodb::primitives::DateTime::from(SystemTime::now())
        .fmt(aws_sdk_dynamodb::primitives::DateTimeFormat::DateTime)?;
    let mut existed = 0;
    for r in records {
        let item = persist::item(&r.data, &updated_at).map_err(anyhow::Error::msg)?;
        let out = client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        match out {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                existed += 1
            }
            Err(e) => bail!("PutItem: {}", beacon_kinesis::reader::describe(&e)),
        }
    }
    Ok((start.elapsed().as_secs_f64(), records.len(), existed))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let client = persist::client(Some(&args.endpoint), Some("us-east-1"))
        .await
        .map_err(anyhow::Error::msg)?;
    let records = records(args.events);
    let p = Persister::new(client.clone(), &args.batch_table);
    println!("| way | pass | events | calls | seconds | events/s |");
    println!("|---|---|---|---|---|---|");
    for pass in ["store", "retry"] {
        let (secs, calls) = batch_write(&p, &records, args.batch).await?;
        let n = records.len();
        println!(
            "| BatchWriteItem (25 per call) | {pass} | {n} | {calls} | {secs:.2} | {:.0} |",
            n as f64 / secs
        );
    }
    for pass in ["store", "retry"] {
        let (secs, calls, existed) = conditional_puts(&client, &args.put_table, &records).await?;
        let n = records.len();
        println!(
            "| conditional PutItem | {pass} | {n} | {calls} ({existed} failed the condition) | {secs:.2} | {:.0} |",
            n as f64 / secs
        );
    }
    let stored = |t: &str| {
        let client = client.clone();
        let t = t.to_string();
        async move {
            client
                .scan()
                .table_name(t)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .send()
                .await
                .map(|o| o.count())
        }
    };
    let (a, b) = (
        stored(&args.batch_table).await?,
        stored(&args.put_table).await?,
    );
    println!(
        "\nitems stored: {a} (BatchWriteItem), {b} (PutItem), of {} events",
        records.len()
    );
    Ok(())
}
