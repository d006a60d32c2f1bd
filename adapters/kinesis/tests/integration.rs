//! The Kinesis adapter against kinesalite (a local implementation of the Kinesis API, started
//! on a free port by the fixture): the engine's sink port as a shard sees it, with no engine
//! around it.

use std::collections::HashSet;

use beacon_engine::config::RecordFormat;
use beacon_engine::ports::{RecordMeta, SealedBatch, Sink};
use beacon_kinesis::{KinesisConfig, KinesisSink, PartitionKey, BATCH_LIMITS};
use beacon_test_support::kinesis::{Kinesalite, AWS_ENV};
use beacon_test_support::Sidecar;

/// A batch of `n` records `record-<i>` for campaign `212313`.
fn batch(seq: u64, n: usize) -> SealedBatch {
    let (mut data, mut records, mut keys) = (Vec::new(), Vec::new(), String::new());
    for i in 0..n {
        let record = format!("record-{seq}-{i}").into_bytes();
        records.push(RecordMeta {
            offset: data.len() as u32,
            len: record.len() as u32,
            message_id: uuid::Uuid::new_v4(),
            key_offset: keys.len() as u32,
            key_len: 6,
        });
        data.extend_from_slice(&record);
        keys.push_str("212313");
    }
    SealedBatch {
        shard: 0,
        seq,
        format: RecordFormat::Rkyv,
        data,
        records,
        keys,
    }
}

/// Writes `batches` through one shard's handle of a sink on `stream`, then closes it.
fn write_all(k: &Kinesalite, stream: &str, key: PartitionKey, batches: &[SealedBatch]) {
    for (var, value) in AWS_ENV {
        std::env::set_var(var, value);
    }
    let sidecar = Sidecar::start();
    let spool = tempfile::tempdir().unwrap();
    let cfg = KinesisConfig {
        endpoint: Some(k.endpoint()),
        partition_key: key,
        ..KinesisConfig::default()
    };
    let registry = prometheus::Registry::new();
    let sink = KinesisSink::start(
        cfg,
        stream.into(),
        spool.path().to_path_buf(),
        1,
        &sidecar.handle,
        &registry,
    )
    .unwrap();
    assert_eq!(sink.batch_limits(), BATCH_LIMITS);
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(64 << 10)
        .make()
        .unwrap()
        .run(async {
            let mut shard = sink.open(0).await.unwrap();
            for b in batches {
                shard.write(b).await.unwrap();
            }
            shard.close().await.unwrap();
        });
    drop(sidecar);
    let spooled = std::fs::read_dir(spool.path().join("shard-0"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(spooled, 0, "nothing was left in the spool");
}

#[test]
fn every_record_of_every_batch_arrives_once() {
    let k = Kinesalite::start();
    k.create_stream("events", 2);
    let batches = [batch(1, 300), batch(2, 200)];
    write_all(&k, "events", PartitionKey::MessageId, &batches);
    let sent: HashSet<Vec<u8>> = batches
        .iter()
        .flat_map(|b| b.iter().map(|(_, r)| r.to_vec()).collect::<Vec<_>>())
        .collect();
    let arrived = k.read_all("events");
    assert_eq!(arrived.len(), 500, "once each");
    assert_eq!(arrived.into_iter().collect::<HashSet<_>>(), sent);
}

#[test]
fn campaign_keys_keep_a_campaign_on_one_shard_in_order() {
    let k = Kinesalite::start();
    k.create_stream("by-campaign", 4);
    write_all(&k, "by-campaign", PartitionKey::CampaignId, &[batch(1, 50)]);
    let shards = k.read_shards("by-campaign");
    let holding: Vec<_> = shards.iter().filter(|s| !s.records.is_empty()).collect();
    assert_eq!(holding.len(), 1, "one campaign, one shard");
    let records = &holding[0].records;
    assert!(records.iter().all(|r| r.partition_key == "212313"));
    let order: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.data.clone()).unwrap())
        .collect();
    let want: Vec<String> = (0..50).map(|i| format!("record-1-{i}")).collect();
    assert_eq!(order, want);
}
