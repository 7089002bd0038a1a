//! The store's accept path (dedup check + enqueue in one transaction + group-committed fsync) at
//! several concurrencies. Throughput should grow with concurrency: one flush acknowledges every write
//! made before it. Run: `cargo bench --bench accept`.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant, SystemTime},
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hookgate::store::{NewEvent, Store};

const WINDOW: Duration = Duration::from_secs(72 * 3600);

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = runtime
        .block_on(async { Store::open(dir.path()) })
        .expect("open store");
    let body = bytes::Bytes::from(vec![b'x'; 1024]);
    let next_id = AtomicU64::new(0);

    let mut group = c.benchmark_group("accept/1KiB");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for concurrency in [1usize, 16, 64] {
        group.throughput(Throughput::Elements(concurrency as u64));
        group.bench_with_input(BenchmarkId::from_parameter(concurrency), &concurrency, |b, &n| {
            b.to_async(&runtime).iter_custom(|iters| {
                let (store, body) = (store.clone(), body.clone());
                let first = next_id.fetch_add(iters * n as u64, Ordering::Relaxed);
                async move {
                    let start = Instant::now();
                    for i in 0..iters {
                        let mut tasks = Vec::with_capacity(n);
                        for j in 0..n as u64 {
                            let (store, body) = (store.clone(), body.clone());
                            let id = (first + i * n as u64 + j).to_string();
                            tasks.push(tokio::spawn(async move {
                                let event = NewEvent {
                                    source: "bench",
                                    event_id: &id,
                                    method: "POST",
                                    query: None,
                                    headers: vec![("content-type".into(), b"application/json".to_vec())],
                                    body,
                                    verified: true,
                                };
                                store
                                    .accept(&event, SystemTime::now(), WINDOW)
                                    .await
                                    .expect("accepted");
                            }));
                        }
                        for t in tasks {
                            t.await.expect("task");
                        }
                    }
                    start.elapsed()
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
