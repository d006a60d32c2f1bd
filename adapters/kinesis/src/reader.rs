//! Reading a stream back: every record of every shard, KPL aggregates opened, from the oldest
//! record kept (`TRIM_HORIZON`) or from now on (`LATEST`). For `beacon tail --kinesis-stream`,
//! so that a user can see what the engine sent.

use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;

use crate::aggregate::{deaggregate, MAGIC};
use crate::sender::error_code_and_message;

/// Where each shard's reading starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record the stream still holds.
    TrimHorizon,
    /// Records put after the reader started.
    Latest,
}

/// One user record as it was put: a record of the stream, or one of the records inside a KPL
/// aggregate (`sub_index` is then its place in the aggregate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub shard_id: String,
    pub sequence_number: String,
    pub sub_index: Option<usize>,
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// A client for `endpoint` (default: the region's) in `region` (default: the standard chain).
/// The SDK's own retries stay on: a reader may simply wait out a throttle. Fails, naming what
/// is missing, without a region or credentials (`sdk_config`).
pub async fn client(endpoint: Option<&str>, region: Option<&str>) -> Result<Client, String> {
    let sdk = sdk_config(region).await?;
    let mut conf = aws_sdk_kinesis::config::Builder::from(&sdk);
    if let Some(endpoint) = endpoint {
        conf = conf.endpoint_url(endpoint);
    }
    Ok(Client::from_conf(conf.build()))
}

/// What to set when the standard chain finds no credentials; a local emulator checks that
/// requests are signed, not by whom.
pub const NO_CREDENTIALS_FIX: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a \
     profile, or run with an IAM role); for kinesalite or dynalite any pair works: `export \
     AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
     AWS_EC2_METADATA_DISABLED=true`";

/// The AWS SDK settings from the standard chain, in `region` if given (for any service's
/// client), checked (`check_sdk_config`).
pub async fn sdk_config(region: Option<&str>) -> Result<aws_config::SdkConfig, String> {
    let sdk = load_sdk_config(region).await;
    check_sdk_config(&sdk).await?;
    Ok(sdk)
}

/// The AWS SDK settings from the standard chain, in `region` if given, unchecked.
pub async fn load_sdk_config(region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    loader.load().await
}

/// Without a region, or when the chain finds no credentials, an error that says which is
/// missing and how to set it, instead of the SDK's `could not send: other` at the first call.
pub async fn check_sdk_config(sdk: &aws_config::SdkConfig) -> Result<(), String> {
    use aws_sdk_kinesis::config::ProvideCredentials;
    if sdk.region().is_none() {
        return Err(
            "no AWS region: set AWS_REGION (or pass --region, or kinesis.region for \
                    serve; the reference's REGION works too)"
                .into(),
        );
    }
    let Some(credentials) = sdk.credentials_provider() else {
        return Err(format!("no AWS credentials: {NO_CREDENTIALS_FIX}"));
    };
    if let Err(e) = credentials.provide_credentials().await {
        return Err(format!(
            "no AWS credentials found ({e}): {NO_CREDENTIALS_FIX}"
        ));
    }
    Ok(())
}

/// Errors of a read, with the service's code and message rather than the SDK's debug dump.
#[derive(Debug, thiserror::Error)]
#[error("{call} on stream {stream}: {detail}")]
pub struct ReadError {
    call: &'static str,
    stream: String,
    detail: String,
}

/// A record whose bytes start like a KPL aggregate but fail its checksum or protobuf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadAggregate {
    pub shard_id: String,
    pub sequence_number: String,
}

struct ShardCursor {
    shard_id: String,
    iterator: Option<String>,
    caught_up: bool,
}

/// Reads `stream` shard by shard, round robin, handing each user record to `each` (and each
/// aggregate that does not open to `bad`). Without `follow` it returns once every shard is
/// read to its end (no records left and zero milliseconds behind the tip, or closed); with
/// `follow` it keeps polling, once a second when nothing is new, until `each` returns false.
pub async fn read(
    client: &Client,
    stream: &str,
    start: StartAt,
    follow: bool,
    mut each: impl FnMut(UserRecord) -> bool,
    mut bad: impl FnMut(BadAggregate),
) -> Result<(), ReadError> {
    let fail = |call: &'static str, detail: String| ReadError {
        call,
        stream: stream.to_string(),
        detail,
    };
    let mut cursors = Vec::new();
    for shard_id in list_shards(client, stream)
        .await
        .map_err(|e| fail("ListShards", e))?
    {
        let kind = match start {
            StartAt::TrimHorizon => ShardIteratorType::TrimHorizon,
            StartAt::Latest => ShardIteratorType::Latest,
        };
        let out = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(&shard_id)
            .shard_iterator_type(kind)
            .send()
            .await
            .map_err(|e| fail("GetShardIterator", describe(&e)))?;
        cursors.push(ShardCursor {
            shard_id,
            iterator: out.shard_iterator,
            caught_up: false,
        });
    }
    loop {
        let mut new_records = 0;
        for cursor in cursors.iter_mut() {
            let Some(iterator) = cursor.iterator.take() else {
                cursor.caught_up = true;
                continue;
            };
            let page = client
                .get_records()
                .shard_iterator(iterator)
                .limit(10_000)
                .send()
                .await
                .map_err(|e| fail("GetRecords", describe(&e)))?;
            let records = page.records();
            new_records += records.len();
            cursor.caught_up = records.is_empty() && page.millis_behind_latest().unwrap_or(0) == 0;
            for r in records {
                let data = r.data().as_ref();
                let sequence_number = r.sequence_number().to_string();
                let shard_id = cursor.shard_id.clone();
                let users = match data.starts_with(&MAGIC) {
                    true => match deaggregate(data) {
                        Some(entries) => entries
                            .into_iter()
                            .enumerate()
                            .map(|(i, e)| UserRecord {
                                shard_id: shard_id.clone(),
                                sequence_number: sequence_number.clone(),
                                sub_index: Some(i),
                                partition_key: e.partition_key,
                                data: e.data,
                            })
                            .collect(),
                        None => {
                            bad(BadAggregate {
                                shard_id,
                                sequence_number,
                            });
                            Vec::new()
                        }
                    },
                    false => vec![UserRecord {
                        shard_id,
                        sequence_number,
                        sub_index: None,
                        partition_key: r.partition_key().unwrap_or_default().to_string(),
                        data: data.to_vec(),
                    }],
                };
                for user in users {
                    if !each(user) {
                        return Ok(());
                    }
                }
            }
            cursor.iterator = page.next_shard_iterator;
            if cursor.iterator.is_none() {
                cursor.caught_up = true;
            }
        }
        let all_caught_up = cursors.iter().all(|c| c.caught_up);
        if all_caught_up && (!follow || cursors.iter().all(|c| c.iterator.is_none())) {
            return Ok(());
        }
        if new_records == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// An AWS SDK error as `Code: message` (any service's SDK: the error types are shared).
pub fn describe<E, R>(e: &aws_sdk_kinesis::error::SdkError<E, R>) -> String
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (code, message) = error_code_and_message(e);
    format!("{code}: {message}")
}

/// The stream's shards that can still hold records, oldest first.
/// The ids of every shard of `stream`, following ListShards' pages.
pub async fn list_shards(client: &Client, stream: &str) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let call = match &token {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let out = call.send().await.map_err(|e| describe(&e))?;
        ids.extend(out.shards().iter().map(|s| s.shard_id().to_string()));
        token = out.next_token;
        if token.is_none() {
            return Ok(ids);
        }
    }
}
