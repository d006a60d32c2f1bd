//! The handlers as Lambda functions behind a Kinesis event source mapping: records in, and out
//! the records to retry as `batchItemFailures` (which the mapping honours only with
//! `FunctionResponseTypes: [ReportBatchItemFailures]`; Kinesis resumes from the lowest
//! sequence number reported). Undecodable records are reported too: the mapping's
//! `MaximumRetryAttempts` and `BisectBatchOnFunctionError` then isolate them and its on-failure
//! destination receives them, so a poison record neither blocks its shard nor disappears.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;

use crate::batch::InRecord;
use crate::Handler;

/// The records of a Kinesis event, in order. Lambda names the shard in each record's event id
/// (`shardId-000000000000:<sequence number>`).
pub fn records(event: KinesisEvent) -> Vec<InRecord> {
    event
        .records
        .into_iter()
        .map(|r| InRecord {
            shard_id: r
                .event_id
                .as_deref()
                .and_then(|id| id.split_once(':'))
                .map(|(shard, _)| shard.to_string())
                .unwrap_or_default(),
            sequence_number: r.kinesis.sequence_number,
            data: r.kinesis.data.0,
        })
        .collect()
}

/// Handles one invocation's event and answers with the records to retry.
pub async fn handle(handler: &impl Handler, event: KinesisEvent) -> KinesisEventResponse {
    let records = records(event);
    let outcome = handler.handle(&records).await;
    let mut response = KinesisEventResponse::default();
    for i in outcome.reported() {
        response.add_failure(records[i].sequence_number.clone());
    }
    tracing::info!(
        records = records.len(),
        reported = response.batch_item_failures.len(),
        totals = %handler.counters(),
        "batch handled"
    );
    response
}
