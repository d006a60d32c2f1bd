//! The event persister: every event of a batch becomes one DynamoDB item in the reference's
//! table (hash key `id` S, range key `customer_id` N), keyed by the event's message id, so a
//! batch handled twice (a Lambda retry, a consumer restarted before its checkpoint) rewrites the
//! same items instead of adding new ones.
//!
//! Items go out with `BatchWriteItem`, 25 to a call, in stream order; what the service leaves
//! unprocessed is sent again after a growing, jittered delay. `BatchWriteItem` rather than one
//! conditional `PutItem` per event: a put of the same item is already idempotent, so a
//! condition would buy nothing (and costs the same write units), while one call carries 25
//! events instead of one.
//!
//! Attributes: the reference's (`id`, `customer_id`, `message_id`, `program_id`,
//! `program_name`, `checksum`, `customer_name`, `user_agent`, `updated_at`), so its readers keep
//! working, plus `valid`, and for beacon's own records `validated`, `received_at`, `client_ip`
//! and `trace_id`, and where the event has them `route`, `event_type`, `client_ts` (ms since the
//! epoch, the client's clock), `props` (compact JSON text), `visitor_id`, `url` (a click's
//! target) and `bot` (only when true). Empty strings are left out (the reference's table has no
//! use for them).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use backon::BackoffBuilder;
use beacon_engine::model::{decode_auto, DecodedEvent};
use beacon_kinesis::reader::describe;
use uuid::Uuid;

use crate::batch::{Counters, InRecord, Outcome};
use crate::Handler;

/// Items per `BatchWriteItem` call: the service's limit.
pub const BATCH_ITEMS_MAX: usize = 25;

type Item = HashMap<String, AttributeValue>;

/// How a store failure is retried before the batch is given back.
#[derive(Clone, Debug)]
pub struct Retry {
    pub min: Duration,
    pub max: Duration,
    pub attempts: usize,
}

impl Retry {
    /// The delays between attempts: growing from `min` to `max`, jittered, `attempts` of them.
    pub fn backoff(&self) -> backon::ExponentialBackoff {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.min)
            .with_max_delay(self.max)
            .with_max_times(self.attempts)
            .with_jitter()
            .build()
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            min: Duration::from_millis(50),
            max: Duration::from_secs(2),
            attempts: 8,
        }
    }
}

pub struct Persister {
    client: Client,
    table: String,
    retry: Retry,
    counters: Counters,
}

/// A DynamoDB client for `endpoint` (default: the region's) in `region` (default: the
/// standard chain).
pub async fn client(endpoint: Option<&str>, region: Option<&str>) -> Result<Client, String> {
    let sdk = beacon_kinesis::reader::sdk_config(region).await?;
    let mut conf = aws_sdk_dynamodb::config::Builder::from(&sdk);
    if let Some(endpoint) = endpoint {
        conf = conf.endpoint_url(endpoint);
    }
    Ok(Client::from_conf(conf.build()))
}

impl Persister {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Persister {
            client,
            table: table.into(),
            retry: Retry::default(),
            counters: Counters::default(),
        }
    }

    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Creates the table in the reference's layout (on-demand capacity) unless it exists.
    /// Returns whether it created it.
    pub async fn create_table_if_missing(&self) -> Result<bool, String> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => return Ok(false),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => return Err(format!("DescribeTable {}: {}", self.table, describe(&e))),
        }
        let attribute = |name: &str, kind| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .expect("name and type are set")
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("name and type are set")
        };
        self.client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attribute("id", ScalarAttributeType::S))
            .attribute_definitions(attribute("customer_id", ScalarAttributeType::N))
            .key_schema(key("id", KeyType::Hash))
            .key_schema(key("customer_id", KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(|e| format!("CreateTable {}: {}", self.table, describe(&e)))?;
        for _ in 0..600 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| format!("DescribeTable {}: {}", self.table, describe(&e)))?;
            let active = d
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| s.as_str() == "ACTIVE");
            if active {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "table {} did not become ACTIVE within 60 s",
            self.table
        ))
    }

    /// Writes `items` (each with the index of its record), 25 to a call, resending what the
    /// service leaves unprocessed. On giving up, the index of the first record not written.
    async fn write(&self, items: Vec<(usize, Item)>) -> Result<(), usize> {
        let mut index_of = HashMap::new();
        let mut requests = Vec::with_capacity(items.len());
        for (i, item) in items {
            if let Some(AttributeValue::S(id)) = item.get("id") {
                index_of.insert(id.clone(), i);
            }
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .expect("item is set");
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        let first_index = |pending: &[WriteRequest]| {
            pending
                .iter()
                .filter_map(|w| match w.put_request()?.item().get("id")? {
                    AttributeValue::S(id) => index_of.get(id).copied(),
                    _ => None,
                })
                .min()
                .unwrap_or(0)
        };
        let mut rest = requests.into_iter().peekable();
        while rest.peek().is_some() {
            let mut pending: Vec<WriteRequest> = rest.by_ref().take(BATCH_ITEMS_MAX).collect();
            let mut backoff = self.retry.backoff();
            loop {
                let sent = pending.len() as u64;
                let result = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending.clone())
                    .send()
                    .await;
                match result {
                    Ok(out) => {
                        let left = out
                            .unprocessed_items()
                            .and_then(|m| m.get(&self.table))
                            .cloned()
                            .unwrap_or_default();
                        Counters::add(&self.counters.written, sent - left.len() as u64);
                        pending = left;
                        if pending.is_empty() {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!(
                        table = %self.table,
                        error = %describe(&e),
                        items = sent,
                        "BatchWriteItem failed; retrying"
                    ),
                }
                match backoff.next() {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => {
                        Counters::add(&self.counters.write_failures, 1);
                        return Err(first_index(&pending));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Handler for Persister {
    async fn handle(&self, records: &[InRecord]) -> Outcome {
        Counters::add(&self.counters.records, records.len() as u64);
        let mut outcome = Outcome::default();
        let updated_at = rfc3339(SystemTime::now());
        // One item per message id: a batch may carry an event twice (the engine delivers at
        // least once), and BatchWriteItem refuses two writes of one key in a call.
        let mut items: Vec<(usize, Item)> = Vec::new();
        let mut position: HashMap<String, usize> = HashMap::new();
        for (i, record) in records.iter().enumerate() {
            let decoded: Result<Vec<Item>, String> = match record.user_records() {
                None => Err("a KPL aggregate whose checksum or framing is wrong".into()),
                Some(users) => users.iter().map(|d| item(d, &updated_at)).collect(),
            };
            match decoded {
                Ok(new) => {
                    for it in new {
                        let Some(AttributeValue::S(id)) = it.get("id") else {
                            unreachable!("every item has an id")
                        };
                        match position.get(id) {
                            Some(&p) => items[p] = (i, it),
                            None => {
                                position.insert(id.clone(), items.len());
                                items.push((i, it));
                            }
                        }
                    }
                }
                Err(why) => {
                    Counters::add(&self.counters.undecodable, 1);
                    tracing::error!(
                        shard = %record.shard_id,
                        sequence_number = %record.sequence_number,
                        error = %why,
                        "undecodable event record"
                    );
                    outcome.undecodable.push(i);
                }
            }
        }
        // Written in the order of the records, so that a failure leaves a prefix written.
        items.sort_by_key(|(i, _)| *i);
        if let Err(i) = self.write(items).await {
            outcome.failed_at = Some(i);
        }
        outcome
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

fn rfc3339(t: SystemTime) -> String {
    DateTime::from(t)
        .fmt(DateTimeFormat::DateTime)
        .expect("a time after 1970 formats")
}

fn s(item: &mut Item, name: &str, value: &str) {
    if !value.is_empty() {
        item.insert(name.into(), AttributeValue::S(value.to_string()));
    }
}

/// The item for one user record, or why there is none.
pub fn item(data: &[u8], updated_at: &str) -> Result<Item, String> {
    let event = decode_auto(data).map_err(|e| e.to_string())?;
    let message_id = event.message_id();
    let id = Uuid::parse_str(&message_id)
        .map_err(|_| format!("message id {message_id:?} is not a UUID"))?
        .hyphenated()
        .to_string();
    let mut it = Item::new();
    it.insert("id".into(), AttributeValue::S(id.clone()));
    it.insert("message_id".into(), AttributeValue::S(id));
    s(&mut it, "updated_at", updated_at);
    // Version 1 records read as version 2 ones without the fields `POST /events` added.
    let event = match event {
        DecodedEvent::V1(e) => DecodedEvent::V2(e.into()),
        other => other,
    };
    let (common, customer_id, valid) = match &event {
        DecodedEvent::V2(e) => (
            [
                &e.program_id,
                &e.program_name,
                &e.checksum,
                &e.customer_name,
                &e.user_agent,
            ],
            e.customer_id,
            e.valid,
        ),
        DecodedEvent::Protobuf(e) => (
            [
                &e.program_id,
                &e.program_name,
                &e.checksum,
                &e.customer_name,
                &e.user_agent,
            ],
            e.customer_id,
            e.valid,
        ),
        DecodedEvent::V1(_) => unreachable!("read as version 2 above"),
    };
    if common[0].is_empty() {
        return Err("event without a program id".into());
    }
    let names = [
        "program_id",
        "program_name",
        "checksum",
        "customer_name",
        "user_agent",
    ];
    for (name, value) in names.into_iter().zip(common) {
        s(&mut it, name, value);
    }
    it.insert(
        "customer_id".into(),
        AttributeValue::N(customer_id.to_string()),
    );
    it.insert("valid".into(), AttributeValue::Bool(valid));
    // Beacon's own fields: the protobuf format carries none of these four.
    if let DecodedEvent::V2(e) = &event {
        it.insert("validated".into(), AttributeValue::Bool(e.validated));
        let received = SystemTime::UNIX_EPOCH + Duration::from_millis(e.received_at_ms);
        s(&mut it, "received_at", &rfc3339(received));
        s(&mut it, "client_ip", &e.client_ip);
        s(&mut it, "trace_id", &e.trace_id);
    }
    // What `POST /events` added (version 2 records, and beacon's protobuf fields 9..=12).
    let none = beacon_engine::model::EventMore::default();
    let (route, bot, event_type, client_ts_ms, props, visitor_id, url) = match &event {
        DecodedEvent::V1(_) => unreachable!("read as version 2 above"),
        DecodedEvent::V2(e) => {
            let more = e.more.as_deref().unwrap_or(&none);
            (
                beacon_engine::model::EventRoute::from_byte(e.route).map_or("", |r| r.as_str()),
                e.bot,
                &more.event_type[..],
                more.client_ts_ms,
                &more.props[..],
                &more.visitor_id[..],
                &more.url[..],
            )
        }
        DecodedEvent::Protobuf(e) => (
            &e.route[..],
            e.bot,
            &e.event_type[..],
            e.client_ts_ms,
            &e.props[..],
            &e.visitor_id[..],
            &e.url[..],
        ),
    };
    s(&mut it, "visitor_id", visitor_id);
    s(&mut it, "url", url);
    if bot {
        it.insert("bot".into(), AttributeValue::Bool(true));
    }
    s(&mut it, "route", route);
    s(&mut it, "event_type", event_type);
    if let Some(ts) = client_ts_ms {
        it.insert("client_ts".into(), AttributeValue::N(ts.to_string()));
    }
    s(&mut it, "props", props);
    Ok(it)
}

#[cfg(test)]
mod tests {
    use super::*;
    use beacon_engine::config::RecordFormat;
    use beacon_engine::model::{Campaign, Event, EventExtras, EventRoute};

    /// A posted event's own fields reach the item in both formats; a pixel's item has none
    /// of them but its route.
    #[test]
    fn posted_fields_become_attributes() {
        let c = Campaign::unvalidated("212313");
        let id = Uuid::parse_str("6f1c5b5e-8e53-4c3a-9a55-1f0d0c7c2b11").unwrap();
        let posted = Event {
            message_id: id,
            campaign: &c,
            user_agent: "ua",
            received_at_ms: 1_764_700_000_000,
            client_ip: "203.0.113.7",
            trace_id: "t",
            validated: true,
            route: EventRoute::Post,
            bot: true,
            extras: EventExtras {
                event_type: "conversion",
                client_ts_ms: Some(1_764_699_999_000),
                props: r#"{"value":12.5}"#,
                visitor_id: "0190a0b2-6c1e-7d3f-8a4b-5c6d7e8f9a0b",
                url: "",
            },
        };
        let pixel = Event {
            route: EventRoute::Pixel,
            bot: false,
            extras: EventExtras {
                visitor_id: posted.extras.visitor_id,
                ..EventExtras::NONE
            },
            ..posted
        };
        let attr = |it: &Item, k: &str| it.get(k).cloned();
        for format in [RecordFormat::Rkyv, RecordFormat::Protobuf] {
            let mut data = Vec::new();
            posted.encode_into(format, &mut data);
            let it = item(&data, "2026-01-01T00:00:00Z").unwrap();
            assert_eq!(attr(&it, "id"), Some(AttributeValue::S(id.to_string())));
            assert_eq!(attr(&it, "route"), Some(AttributeValue::S("post".into())));
            assert_eq!(
                attr(&it, "event_type"),
                Some(AttributeValue::S("conversion".into()))
            );
            assert_eq!(
                attr(&it, "client_ts"),
                Some(AttributeValue::N("1764699999000".into()))
            );
            assert_eq!(
                attr(&it, "props"),
                Some(AttributeValue::S(r#"{"value":12.5}"#.into()))
            );
            assert_eq!(
                attr(&it, "visitor_id"),
                Some(AttributeValue::S(
                    "0190a0b2-6c1e-7d3f-8a4b-5c6d7e8f9a0b".into()
                ))
            );
            assert_eq!(attr(&it, "bot"), Some(AttributeValue::Bool(true)));
            let mut data = Vec::new();
            pixel.encode_into(format, &mut data);
            let it = item(&data, "2026-01-01T00:00:00Z").unwrap();
            assert_eq!(attr(&it, "route"), Some(AttributeValue::S("pixel".into())));
            for absent in ["event_type", "client_ts", "props", "bot", "url"] {
                assert!(!it.contains_key(absent), "{format:?}: {absent}");
            }
        }
    }
}
