//! Kinesis fixtures: kinesalite (a local implementation of the Kinesis API, from npm) and a
//! fault-injecting proxy, each a node process on 127.0.0.1, and a reader for what a stream holds.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::types::ShardIteratorType;

/// Environment every beacon under test gets: static credentials and no IMDS, so the AWS
/// credential chain never leaves the machine.
pub const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

fn root() -> PathBuf {
    crate::repo_root()
}

/// Starts `node <script> <args>` and waits for its "listening on 127.0.0.1:<port>" line.
pub(crate) fn node(script: PathBuf, args: &[String]) -> (Child, u16) {
    assert!(
        root().join("deploy/local/emulators/node_modules/kinesalite").exists(),
        "the emulators are not installed: run `npm ci --prefix deploy/local/emulators` (scripts/test does)"
    );
    let mut child = Command::new("node")
        .arg(&script)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is installed");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .find(|l| l.as_ref().map_or(true, |l| l.contains("listening on")))
        .and_then(|l| l.ok())
        .unwrap_or_default();
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{} did not start: {line:?}", script.display()));
    (child, port)
}

pub struct StreamRecord {
    pub partition_key: String,
    pub sequence_number: String,
    pub data: Vec<u8>,
}

pub struct ShardRecords {
    pub first_hash_key: u128,
    pub last_hash_key: u128,
    pub records: Vec<StreamRecord>,
}

pub struct Kinesalite {
    child: Child,
    pub port: u16,
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_kinesis::Client,
}

impl Kinesalite {
    pub fn start() -> Kinesalite {
        let (child, port) = node(
            root().join("deploy/local/emulators/kinesalite.js"),
            &["0".into()],
        );
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .build();
        Kinesalite {
            child,
            port,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: aws_sdk_kinesis::Client::from_conf(config),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn create_stream(&self, name: &str, shards: i32) {
        self.runtime.block_on(async {
            self.client
                .create_stream()
                .stream_name(name)
                .shard_count(shards)
                .send()
                .await
                .unwrap();
            loop {
                let d = self
                    .client
                    .describe_stream_summary()
                    .stream_name(name)
                    .send()
                    .await
                    .unwrap();
                if d.stream_description_summary()
                    .unwrap()
                    .stream_status()
                    .as_str()
                    == "ACTIVE"
                {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        });
    }

    /// Deletes stream `name` and waits until it is gone (a stack replaced, a local stack
    /// restarted, from a consumer's side).
    pub fn delete_stream(&self, name: &str) {
        self.runtime.block_on(async {
            self.client
                .delete_stream()
                .stream_name(name)
                .send()
                .await
                .unwrap();
            while self
                .client
                .describe_stream_summary()
                .stream_name(name)
                .send()
                .await
                .is_ok()
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        });
    }

    /// Puts one record on `name`.
    pub fn put_record(&self, name: &str, partition_key: &str, data: &[u8]) {
        self.runtime.block_on(async {
            self.client
                .put_record()
                .stream_name(name)
                .partition_key(partition_key)
                .data(aws_sdk_kinesis::primitives::Blob::new(data))
                .send()
                .await
                .unwrap();
        });
    }

    /// Every record's data in the stream, all shards, oldest first per shard.
    pub fn read_all(&self, name: &str) -> Vec<Vec<u8>> {
        self.read_shards(name)
            .into_iter()
            .flat_map(|s| s.records)
            .map(|r| r.data)
            .collect()
    }

    /// Every record in the stream, by shard.
    pub fn read_shards(&self, name: &str) -> Vec<ShardRecords> {
        self.runtime.block_on(async {
            let shards = self
                .client
                .list_shards()
                .stream_name(name)
                .send()
                .await
                .unwrap();
            let mut out = Vec::new();
            for shard in shards.shards() {
                let range = shard.hash_key_range().unwrap();
                let mut records = Vec::new();
                let mut iterator = self
                    .client
                    .get_shard_iterator()
                    .stream_name(name)
                    .shard_id(shard.shard_id())
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .unwrap()
                    .shard_iterator
                    .unwrap();
                loop {
                    let page = self
                        .client
                        .get_records()
                        .shard_iterator(&iterator)
                        .limit(10_000)
                        .send()
                        .await
                        .unwrap();
                    let got = page.records().len();
                    records.extend(page.records().iter().map(|r| StreamRecord {
                        partition_key: r.partition_key().unwrap_or_default().to_string(),
                        sequence_number: r.sequence_number().to_string(),
                        data: r.data().as_ref().to_vec(),
                    }));
                    match page.next_shard_iterator {
                        Some(next) if got > 0 => iterator = next,
                        _ => break,
                    }
                }
                out.push(ShardRecords {
                    first_hash_key: range.starting_hash_key().parse().unwrap(),
                    last_hash_key: range.ending_hash_key().parse().unwrap(),
                    records,
                });
            }
            out
        })
    }
}

impl Drop for Kinesalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fault-injecting proxy (`tests/support/kinesis-fault-proxy.js`): every `k`-th record and
/// every `m`-th PutRecords call fail; it can be stopped and started again on the same port.
pub struct FaultProxy {
    child: Option<Child>,
    pub port: u16,
    upstream: u16,
    k: u32,
    m: u32,
}

impl FaultProxy {
    pub fn start(upstream: u16, k: u32, m: u32) -> FaultProxy {
        let mut p = FaultProxy {
            child: None,
            port: super::free_port(),
            upstream,
            k,
            m,
        };
        p.restart();
        p
    }

    /// Reserves a port but does not listen on it yet: "Kinesis is down".
    pub fn stopped(upstream: u16) -> FaultProxy {
        FaultProxy {
            child: None,
            port: super::free_port(),
            upstream,
            k: 0,
            m: 0,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let args = [
            self.upstream.to_string(),
            self.port.to_string(),
            self.k.to_string(),
            self.m.to_string(),
        ];
        let (child, port) = node(root().join("tests/support/kinesis-fault-proxy.js"), &args);
        assert_eq!(port, self.port);
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop();
    }
}
