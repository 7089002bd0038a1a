//! What only the PostgreSQL backend promises: several stores (replicas) on one database.

use std::{
    collections::HashSet,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::testdb::TestDatabase;
use crate::store::{Accepted, AttemptRecord, Job, NewEvent, NextStep, Store};

const WINDOW: Duration = Duration::from_secs(72 * 3600);

fn event<'a>(source: &'a str, id: &'a str) -> NewEvent<'a> {
    NewEvent {
        source,
        event_id: id,
        method: "POST",
        query: None,
        headers: vec![],
        body: bytes::Bytes::from_static(b"{}"),
        verified: true,
    }
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Two replicas on one fresh database, opened at the same moment (the migration lock).
async fn replicas() -> (TestDatabase, Store, Store) {
    let db = TestDatabase::create().await;
    let (a, b) = tokio::join!(
        Store::open_postgres(db.url(), 4),
        Store::open_postgres(db.url(), 4)
    );
    (db, a.expect("replica a"), b.expect("replica b"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_ids_sent_to_two_replicas_at_once_are_stored_once() {
    let (_db, a, b) = replicas().await;
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let id = format!("id-{}", i % 8);
        tasks.push(tokio::spawn(async move {
            store.accept(&event("gh", &id), at(1), WINDOW).await
        }));
    }
    let mut new = 0;
    for t in tasks {
        if let Accepted::New(_) = t.await.expect("task").expect("committed") {
            new += 1;
        }
    }
    assert_eq!(new, 8, "one new copy per id across both replicas");
    assert_eq!(a.counts().await.expect("counts").queued, 8);
    assert_eq!(b.counts().await.expect("counts").queued, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_event_is_not_claimed_by_another_replica_until_its_lease_ends() {
    let (_db, a, b) = replicas().await;
    let Accepted::New(seq) = a.accept(&event("gh", "x"), at(1), WINDOW).await.expect("accept") else {
        panic!("new");
    };
    let lease = Duration::from_millis(300);
    let claimed = a
        .due("gh", u64::MAX, 10, HashSet::new(), lease)
        .await
        .expect("due");
    assert_eq!(claimed.due.len(), 1);
    let other = b
        .due("gh", u64::MAX, 10, HashSet::new(), lease)
        .await
        .expect("due");
    assert!(other.due.is_empty(), "leased by a: {other:?}");
    let lease_end = other.next_due_ms.expect("b looks again when a's lease ends");
    // a is "killed": it never records the attempt. Once its lease ends, b claims the event.
    let mut taken = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let batch = b
            .due("gh", u64::MAX, 10, HashSet::new(), lease)
            .await
            .expect("due");
        if let Some(d) = batch.due.first() {
            taken = Some(d.seq);
            break;
        }
    }
    assert_eq!(
        taken,
        Some(seq),
        "b claims it after the lease (ends at {lease_end})"
    );
    b.record_attempt(
        seq,
        AttemptRecord {
            at_ms: 2,
            status: Some(200),
            outcome: "delivered".parse().expect("outcome"),
        },
        NextStep::Delivered,
    )
    .await
    .expect("delivered");
    let (record, _) = a.load(seq).await.expect("load").expect("stored");
    assert_eq!(record.attempts.len(), 1, "a sees b's attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replicas_accept_and_replay_wake_this_replicas_forwarder() {
    let (_db, a, b) = replicas().await;
    let waker = b.waker("gh");
    // The listener wakes every forwarder once connected; take that wake-up first.
    let _ = tokio::time::timeout(Duration::from_secs(2), waker.notified()).await;
    let Accepted::New(seq) = a.accept(&event("gh", "n"), at(1), WINDOW).await.expect("accept") else {
        panic!("new");
    };
    tokio::time::timeout(Duration::from_secs(10), waker.notified())
        .await
        .expect("b woken by a's accept");
    assert!(a.replay(seq, at(2)).await.expect("replay"));
    tokio::time::timeout(Duration::from_secs(10), waker.notified())
        .await
        .expect("b woken by a's replay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_periodic_job_runs_once_per_period_across_replicas() {
    let (_db, a, b) = replicas().await;
    let every = Duration::from_secs(600);
    assert!(a.claim_job(Job::PurgeMarks, every).await.expect("claim"));
    assert!(!b.claim_job(Job::PurgeMarks, every).await.expect("claim"));
    assert!(!a.claim_job(Job::PurgeMarks, every).await.expect("claim"));
    assert!(b
        .claim_job(Job::PurgeDelivered, every)
        .await
        .expect("another job"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_unavailable_and_not_ready() {
    // Nothing listens on port 1.
    let err = Store::open_postgres("postgres://postgres@127.0.0.1:1/test?connect_timeout=2", 2)
        .await
        .expect_err("no database");
    assert!(matches!(err, crate::store::StoreError::Unavailable(_)), "{err:?}");
}

#[test]
fn the_url_is_described_without_its_password() {
    let described =
        crate::store::describe_postgres_url("postgres://app:s3cret@db.internal:6432/events").expect("a URL");
    assert_eq!(described, "db.internal:6432/events");
    let err = crate::store::describe_postgres_url("postgres://app:s3cret@db:notaport/x").expect_err("bad");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}
