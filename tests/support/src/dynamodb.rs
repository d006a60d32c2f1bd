//! The DynamoDB fixture: dynalite (a local implementation of the DynamoDB API, from npm) on
//! 127.0.0.1, with the reference's event table made on request and its items read back.

use std::collections::HashMap;
use std::process::Child;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;

pub type Item = HashMap<String, AttributeValue>;

pub struct Dynalite {
    child: Child,
    pub port: u16,
    runtime: tokio::runtime::Runtime,
    pub client: aws_sdk_dynamodb::Client,
}

impl Dynalite {
    /// Starts dynalite with `tables` made in the reference's layout (hash key `id` S, range
    /// key `customer_id` N).
    pub fn start(tables: &[&str]) -> Dynalite {
        let mut args = vec!["0".to_string()];
        for t in tables {
            args.extend(["--table".to_string(), t.to_string()]);
        }
        let (child, port) = crate::kinesis::node(
            crate::repo_root().join("deploy/local/emulators/dynalite.js"),
            &args,
        );
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .build();
        Dynalite {
            child,
            port,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: aws_sdk_dynamodb::Client::from_conf(config),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every item of `table` (a full scan).
    pub fn items(&self, table: &str) -> Vec<Item> {
        self.runtime.block_on(async {
            let mut out = Vec::new();
            let mut start: Option<Item> = None;
            loop {
                let page = self
                    .client
                    .scan()
                    .table_name(table)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .unwrap();
                out.extend(page.items().iter().cloned());
                match page.last_evaluated_key {
                    Some(k) if !k.is_empty() => start = Some(k),
                    _ => return out,
                }
            }
        })
    }

    /// The items of `table` by their `id`.
    pub fn items_by_id(&self, table: &str) -> HashMap<String, Item> {
        self.items(table)
            .into_iter()
            .map(|it| (string(&it, "id"), it))
            .collect()
    }
}

/// A string attribute of `item`, or "" when absent.
pub fn string(item: &Item, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(s)) => s.clone(),
        Some(AttributeValue::N(n)) => n.clone(),
        Some(AttributeValue::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
