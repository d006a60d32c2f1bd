//! The handlers, called the way Lambda calls them (a Kinesis event in, `batchItemFailures`
//! out), with records the engine's own encoder made, against dynalite and a real redis-server
//! started by the test.

use std::time::Duration;

use aws_lambda_events::event::kinesis::KinesisEvent;
use beacon_consumers::persist::Retry;
use beacon_consumers::{lambda, Counters, Handler, Persister, Updater};
use beacon_engine::config::RecordFormat;
use beacon_engine::model::{Campaign, Event};
use beacon_kinesis::aggregate::{aggregate, ShardMap};
use beacon_kinesis::Entry;
use beacon_redis::RedisConfig;
use beacon_test_support::dynamodb::{string, Dynalite};
use beacon_test_support::redis_server::RedisServer;
use uuid::Uuid;

const TABLE: &str = "TrackingEvents";

fn campaign(id: &str, version: Option<u64>) -> Campaign {
    Campaign {
        program_id: id.into(),
        program_name: format!("program-{id}"),
        checksum: "124".into(),
        customer_id: 9124,
        customer_name: "Customer2".into(),
        valid: true,
        version,
        landing_url: None,
    }
}

/// `n` events as the engine encodes them, with their message ids.
fn events(n: usize, format: RecordFormat) -> Vec<(Uuid, Vec<u8>)> {
    let c = campaign("212313", None);
    (0..n)
        .map(|i| {
            let id = Uuid::new_v4();
            let e = Event {
                message_id: id,
                campaign: &c,
                user_agent: "curl/8",
                received_at_ms: 1_764_700_000_000 + i as u64,
                client_ip: "203.0.113.7",
                trace_id: "Root=1-abc",
                validated: true,
                route: beacon_engine::model::EventRoute::Pixel,
                bot: false,
                extras: beacon_engine::model::EventExtras::NONE,
            };
            let mut out = Vec::new();
            e.encode_into(format, &mut out);
            (id, out)
        })
        .collect()
}

/// A Kinesis event as Lambda delivers it, one record per `data`, sequence numbers 1, 2, …
fn kinesis_event(data: &[Vec<u8>]) -> KinesisEvent {
    use base64::Engine;
    let records: Vec<serde_json::Value> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let seq = format!("4959{:020}", i + 1);
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "k",
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(d),
                    "approximateArrivalTimestamp": 1764700000.5
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{seq}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/x",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/EventStream"
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

fn failures(r: &aws_lambda_events::event::streams::KinesisEventResponse) -> Vec<String> {
    r.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn persister(db: &Dynalite, table: &str) -> Persister {
    Persister::new(db.client.clone(), table)
}

#[test]
fn every_format_becomes_one_item_per_event_and_a_retry_adds_none() {
    let db = Dynalite::start(&[TABLE]);
    let rt = runtime();
    let p = persister(&db, TABLE);
    let rkyv = events(30, RecordFormat::Rkyv);
    let protobuf = events(30, RecordFormat::Protobuf);
    let inside = events(60, RecordFormat::Rkyv);
    let map = ShardMap::new(vec![(0, u128::MAX, "shardId-000000000000".into())]);
    let entries = inside
        .iter()
        .map(|(id, d)| Entry {
            partition_key: id.to_string(),
            data: d.clone(),
        })
        .collect();
    let aggregates: Vec<Vec<u8>> = aggregate(entries, &map, 4096)
        .into_iter()
        .map(|a| a.data)
        .collect();
    assert!(aggregates.len() > 1, "several aggregates");
    let mut data: Vec<Vec<u8>> = rkyv
        .iter()
        .chain(&protobuf)
        .map(|(_, d)| d.clone())
        .collect();
    data.extend(aggregates);
    let event = kinesis_event(&data);
    let answer = rt.block_on(lambda::handle(&p, event.clone()));
    assert_eq!(failures(&answer), Vec::<String>::new());
    let items = db.items_by_id(TABLE);
    assert_eq!(items.len(), 120);
    for (id, _) in rkyv.iter().chain(&protobuf).chain(&inside) {
        let it = &items[&id.to_string()];
        assert_eq!(string(it, "message_id"), id.to_string());
        assert_eq!(string(it, "customer_id"), "9124");
        assert_eq!(string(it, "program_id"), "212313");
        assert_eq!(string(it, "program_name"), "program-212313");
        assert_eq!(string(it, "customer_name"), "Customer2");
        assert_eq!(string(it, "checksum"), "124");
        assert_eq!(string(it, "user_agent"), "curl/8");
        assert!(!string(it, "updated_at").is_empty());
    }
    let beacon_own = &items[&rkyv[0].0.to_string()];
    assert_eq!(string(beacon_own, "client_ip"), "203.0.113.7");
    assert_eq!(string(beacon_own, "trace_id"), "Root=1-abc");
    assert_eq!(string(beacon_own, "received_at"), "2025-12-02T18:26:40Z");
    // Lambda retries a batch: the same items are written again, none added.
    let again = rt.block_on(lambda::handle(&p, event));
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(db.items(TABLE).len(), 120);
    assert_eq!(Counters::get(&p.counters().written), 240);
}

#[test]
fn a_corrupt_record_in_the_middle_is_reported_and_every_good_one_stored() {
    let db = Dynalite::start(&[TABLE]);
    let rt = runtime();
    let p = persister(&db, TABLE);
    let good = events(9, RecordFormat::Rkyv);
    let mut data: Vec<Vec<u8>> = good.iter().map(|(_, d)| d.clone()).collect();
    let mut torn = data[4].clone();
    torn.truncate(torn.len() / 2);
    data.insert(5, torn);
    let answer = rt.block_on(lambda::handle(&p, kinesis_event(&data)));
    assert_eq!(failures(&answer), vec![format!("4959{:020}", 6)]);
    assert_eq!(Counters::get(&p.counters().undecodable), 1);
    let items = db.items_by_id(TABLE);
    assert_eq!(items.len(), 9);
    for (id, _) in &good {
        assert!(items.contains_key(&id.to_string()));
    }
    // A record that decodes as neither format, and a damaged aggregate, count the same way.
    let mut bad_aggregate = beacon_kinesis::aggregate::MAGIC.to_vec();
    bad_aggregate.extend_from_slice(&[7u8; 40]);
    let answer = rt.block_on(lambda::handle(
        &p,
        kinesis_event(&[b"\xff\xfe not an event".to_vec(), bad_aggregate]),
    ));
    assert_eq!(failures(&answer).len(), 2);
    assert_eq!(Counters::get(&p.counters().undecodable), 3);
}

#[test]
fn a_store_that_fails_gives_the_batch_back_from_the_first_record_not_written() {
    let db = Dynalite::start(&[TABLE]);
    let rt = runtime();
    // No such table: every write fails; the handler retries briefly, then reports record 1.
    let p = persister(&db, "NoSuchTable").with_retry(Retry {
        min: Duration::from_millis(5),
        max: Duration::from_millis(20),
        attempts: 2,
    });
    let data: Vec<Vec<u8>> = events(3, RecordFormat::Protobuf)
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    let answer = rt.block_on(lambda::handle(&p, kinesis_event(&data)));
    assert_eq!(failures(&answer), vec![format!("4959{:020}", 1)]);
    assert_eq!(Counters::get(&p.counters().write_failures), 1);
    // Creating the table makes the same batch go through.
    let p = persister(&db, "Created");
    assert!(rt.block_on(p.create_table_if_missing()).unwrap());
    assert!(!rt.block_on(p.create_table_if_missing()).unwrap());
    let answer = rt.block_on(lambda::handle(&p, kinesis_event(&data)));
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(db.items("Created").len(), 3);
}

fn update_json(c: &Campaign) -> Vec<u8> {
    beacon_redis::schema::upsert_payload(c).into_bytes()
}

#[test]
fn the_updater_writes_the_engines_schema_publishes_and_keeps_newer_versions() {
    let redis = RedisServer::start();
    let rt = runtime();
    let cfg = RedisConfig {
        url: Some(redis.url()),
        ..RedisConfig::default()
    };
    let mut sub = redis.conn();
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe("channel1").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let updater = rt.block_on(Updater::connect(cfg)).unwrap();
    let v2 = campaign("500", Some(2));
    let mut v1 = campaign("500", Some(1));
    v1.program_name = "older".into();
    let delete_v3 = beacon_redis::schema::delete_payload("501", Some(3));
    let mut resurrect_v2 = campaign("501", Some(2));
    resurrect_v2.program_name = "must stay deleted".into();
    let data = vec![
        update_json(&campaign("501", Some(1))),
        update_json(&v2),
        b"{not json".to_vec(),
        update_json(&v1),
        delete_v3.into_bytes(),
        update_json(&resurrect_v2),
        update_json(&campaign("502", None)),
    ];
    let answer = rt.block_on(lambda::handle(&updater, kinesis_event(&data)));
    assert_eq!(failures(&answer), vec![format!("4959{:020}", 3)]);
    let counters = updater.counters();
    assert_eq!(Counters::get(&counters.undecodable), 1);
    assert_eq!(Counters::get(&counters.written), 4);
    assert_eq!(Counters::get(&counters.stale), 2);
    let mut conn = redis.conn();
    let hash: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg("500").query(&mut conn).unwrap();
    assert_eq!(
        hash["programName"], "program-500",
        "the older version did not win"
    );
    assert_eq!(hash["version"], "2");
    assert_eq!(hash["customerId"], "9124");
    assert_eq!(hash["valid"], "true");
    let gone: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg("501").query(&mut conn).unwrap();
    assert!(gone.is_empty(), "an older upsert after a delete: {gone:?}");
    let unversioned: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg("502").query(&mut conn).unwrap();
    assert_eq!(unversioned["programName"], "program-502");
    // One announcement per change written, in order, in the payload the engine parses.
    let mut announced = Vec::new();
    while let Ok(msg) = pubsub.get_message() {
        announced.push(msg.get_payload::<String>().unwrap());
    }
    assert_eq!(announced.len(), 4, "{announced:?}");
    assert_eq!(announced[1], String::from_utf8(update_json(&v2)).unwrap());
    assert!(announced[2].contains("\"deleted\":true"));
}

#[test]
fn the_updater_gives_the_batch_back_while_redis_is_down_and_reconnects() {
    let mut redis = RedisServer::start();
    let rt = runtime();
    let cfg = RedisConfig {
        url: Some(redis.url()),
        ..RedisConfig::default()
    };
    let updater = rt
        .block_on(Updater::connect(cfg))
        .unwrap()
        .with_retry(Retry {
            min: Duration::from_millis(5),
            max: Duration::from_millis(20),
            attempts: 2,
        });
    redis.kill();
    let data = vec![update_json(&campaign("600", Some(1)))];
    let answer = rt.block_on(lambda::handle(&updater, kinesis_event(&data)));
    assert_eq!(failures(&answer), vec![format!("4959{:020}", 1)]);
    redis.restart();
    let mut answer = None;
    for _ in 0..50 {
        let a = rt.block_on(lambda::handle(&updater, kinesis_event(&data)));
        if a.batch_item_failures.is_empty() {
            answer = Some(a);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answer.is_some(), "the updater did not reconnect within 5 s");
    let hash: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg("600")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(hash["version"], "1");
}
