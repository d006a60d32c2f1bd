//! Micro-benchmarks of each step of the request path, each against a baseline in the same
//! group, so a report reads as a ratio.
//!
//! `cargo bench -p beacon-benches` measures; `cargo test --release --benches` (in
//! `scripts/test`) runs every benchmark once, so they never rot.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::hint::black_box;
use std::sync::Arc;

use beacon_engine::bench_api::OpenBatch;
use beacon_engine::bench_api::{now_ms, L1Map, L1Owner, Probe};
use beacon_engine::config::RecordFormat;
use beacon_engine::embedded::EmbeddedCoreData;
use beacon_engine::model::Campaign;
use beacon_engine::model::Event;
use criterion::{criterion_group, criterion_main, Criterion};

fn campaign(id: u64) -> Campaign {
    Campaign {
        program_id: id.to_string(),
        program_name: format!("program{id}"),
        checksum: "124".into(),
        customer_id: 9124,
        customer_name: "Customer2".into(),
        valid: true,
        version: None,
        landing_url: None,
    }
}

fn event(c: &Campaign) -> Event<'_> {
    Event {
        message_id: uuid::Uuid::new_v4(),
        campaign: c,
        user_agent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        received_at_ms: 1_795_256_540_615,
        client_ip: "203.0.113.7",
        trace_id: "Root=1-6b0170dc-953ec6f7a7c349da9c4851c4",
        validated: true,
        route: beacon_engine::model::EventRoute::Pixel,
        bot: false,
        extras: beacon_engine::model::EventExtras::NONE,
    }
}

/// Campaign -> shard: beacon's XXH3 against std's SipHash (keyed per process, so unusable for
/// stable placement, but the hash most maps use).
fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("routing");
    let id = "1004242";
    g.bench_function("siphash (std, baseline)", |b| {
        let state = RandomState::new();
        b.iter(|| state.hash_one(black_box(id)) % 2)
    });
    g.bench_function("xxh3 (beacon routing::owner)", |b| {
        b.iter(|| beacon_engine::model::owner(black_box(id), 2))
    });
    g.finish();
}

/// An L1 hit: papaya (readable from every shard) against a shard-private `HashMap` in a
/// `RefCell` (the cheapest map, which only its own shard could read).
fn l1_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("l1_lookup");
    let ids: Vec<String> = (0..10_000u64)
        .map(|i| (1_000_000 + i).to_string())
        .collect();
    let private: RefCell<HashMap<Box<str>, Arc<Campaign>>> = RefCell::new(
        ids.iter()
            .map(|id| (id.as_str().into(), Arc::new(campaign(id.parse().unwrap()))))
            .collect(),
    );
    let map = Arc::new(L1Map::new(20_000, 600, 30));
    let owner = L1Owner::new(map.clone(), 20_000, Box::new(EmbeddedCoreData::samples()));
    for id in &ids {
        owner.insert(id, Some(Arc::new(campaign(id.parse().unwrap()))));
    }
    let mut i = 0;
    g.bench_function("RefCell<HashMap> (baseline)", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            private.borrow().get(ids[i].as_str()).cloned()
        })
    });
    g.bench_function("papaya L1Map::probe (beacon)", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            match map.probe(black_box(&ids[i]), now_ms()) {
                Probe::Ready(c, _) => c,
                Probe::Load { .. } => unreachable!("all cached"),
            }
        })
    });
    g.finish();
}

/// One event into bytes: rkyv (beacon's record) and protobuf (the reference's) against
/// serde_json (the reference's response body).
fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let camp = campaign(1_004_242);
    let e = event(&camp);
    let mut out = Vec::with_capacity(1024);
    g.bench_function("serde_json (baseline)", |b| {
        b.iter(|| black_box(e.response_json()))
    });
    g.bench_function("rkyv (beacon record)", |b| {
        b.iter(|| {
            out.clear();
            e.encode_into(RecordFormat::Rkyv, &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("protobuf (reference record)", |b| {
        b.iter(|| {
            out.clear();
            e.encode_into(RecordFormat::Protobuf, &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

/// Appending a 200-byte record, sealing every 500: beacon's open batch (one buffer) against a
/// `Vec<Vec<u8>>` (one allocation per record).
fn batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch_append_seal");
    let record = vec![7u8; 200];
    let id = uuid::Uuid::new_v4();
    g.bench_function("Vec<Vec<u8>> (baseline)", |b| {
        let mut batch: Vec<Vec<u8>> = Vec::new();
        b.iter(|| {
            batch.push(record.clone());
            if batch.len() == 500 {
                black_box(std::mem::take(&mut batch));
            }
        })
    });
    g.bench_function("OpenBatch (beacon)", |b| {
        let mut open = OpenBatch::new(500, 4 << 20);
        b.iter(|| {
            if !open.fits(record.len()) {
                black_box(open.seal(0, RecordFormat::Rkyv));
            }
            open.push(&record, id, "1004242");
        })
    });
    g.finish();
}

/// A tracking request's head: httparse (hyper's parser) against finding the request line only,
/// the least any server must do.
fn http_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("http_parse");
    let request: &[u8] = b"GET /pixel/1004242 HTTP/1.1\r\nHost: track.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\nAccept: image/webp,image/*\r\nX-Forwarded-For: 203.0.113.7\r\nX-Amzn-Trace-Id: Root=1-6b0170dc-953ec6f7a7c349da9c4851c4\r\nConnection: keep-alive\r\n\r\n";
    g.bench_function("request line only (baseline)", |b| {
        b.iter(|| {
            let r = black_box(request);
            let end = r.windows(2).position(|w| w == b"\r\n").unwrap();
            r[..end].split(|&c| c == b' ').nth(1).map(|p| p.len())
        })
    });
    g.bench_function("httparse, all headers (hyper's parser)", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            let status = req.parse(black_box(request)).unwrap();
            (status.is_complete(), req.path.map(str::len))
        })
    });
    g.finish();
}

criterion_group!(hot_path, routing, l1_lookup, encode, batch, http_parse);
criterion_main!(hot_path);
