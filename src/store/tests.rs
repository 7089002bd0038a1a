use std::{
    sync::atomic::{AtomicUsize, Ordering as AtomicOrdering},
    time::{Duration, UNIX_EPOCH},
};

use super::*;

const WINDOW: Duration = Duration::from_secs(72 * 3600);

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn event<'a>(source: &'a str, id: &'a str, body: &'a [u8]) -> NewEvent<'a> {
    NewEvent {
        source,
        event_id: id,
        method: "POST",
        query: Some("a=1"),
        headers: vec![("x-github-delivery".into(), id.as_bytes().to_vec())],
        body,
        verified: true,
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

fn no_skip(_: u64) -> bool {
    false
}

#[tokio::test]
async fn dedup_is_per_source_and_within_the_window() {
    let (_dir, store) = open();
    let t0 = 1_700_000_000_000;
    let first = store
        .accept(&event("gh", "a", b"1"), at(t0), WINDOW)
        .await
        .expect("accept");
    assert!(matches!(first, Accepted::New(_)));
    let again = store
        .accept(&event("gh", "a", b"1"), at(t0 + 1000), WINDOW)
        .await
        .expect("accept");
    assert_eq!(again, Accepted::Duplicate);
    let other_source = store
        .accept(&event("stripe", "a", b"1"), at(t0), WINDOW)
        .await
        .expect("accept");
    assert!(matches!(other_source, Accepted::New(_)));
    // Past the window, the id is new again even before the purge ran.
    let window_ms = WINDOW.as_millis() as u64;
    let later = store
        .accept(&event("gh", "a", b"1"), at(t0 + window_ms + 1), WINDOW)
        .await
        .expect("accept");
    assert!(matches!(later, Accepted::New(_)));
    assert_eq!(store.counts().expect("counts").queued, 3);
}

#[tokio::test]
async fn purge_removes_only_expired_marks() {
    let (_dir, store) = open();
    let window = Duration::from_secs(10);
    store
        .accept(&event("gh", "old", b""), at(1_000), window)
        .await
        .expect("accept");
    store
        .accept(&event("gh", "new", b""), at(50_000), window)
        .await
        .expect("accept");
    assert_eq!(store.purge_expired(at(20_000)).expect("purge"), 1);
    assert_eq!(store.purge_expired(at(20_000)).expect("purge"), 0);
    // "new" is still remembered, "old" is not.
    let dup = store
        .accept(&event("gh", "new", b""), at(20_000), window)
        .await
        .expect("accept");
    assert_eq!(dup, Accepted::Duplicate);
    let fresh = store
        .accept(&event("gh", "old", b""), at(20_000), window)
        .await
        .expect("accept");
    assert!(matches!(fresh, Accepted::New(_)));
}

#[tokio::test]
async fn a_renewed_mark_survives_the_purge_of_its_expired_predecessor() {
    let (_dir, store) = open();
    let window = Duration::from_secs(10);
    store
        .accept(&event("gh", "a", b""), at(0), window)
        .await
        .expect("accept");
    // Expired at 10 s, accepted again at 15 s: the new mark expires at 25 s.
    store
        .accept(&event("gh", "a", b""), at(15_000), window)
        .await
        .expect("accept");
    store.purge_expired(at(16_000)).expect("purge");
    let dup = store
        .accept(&event("gh", "a", b""), at(16_000), window)
        .await
        .expect("accept");
    assert_eq!(dup, Accepted::Duplicate);
}

#[tokio::test]
async fn queue_lifecycle_retry_deliver_dead_letter() {
    let (_dir, store) = open();
    let t0 = 1_000_000;
    let Accepted::New(a) = store
        .accept(&event("gh", "a", b"body-a"), at(t0), WINDOW)
        .await
        .expect("a")
    else {
        panic!("new")
    };
    let Accepted::New(b) = store
        .accept(&event("gh", "b", b"body-b"), at(t0 + 1), WINDOW)
        .await
        .expect("b")
    else {
        panic!("new")
    };
    store
        .accept(&event("other", "c", b""), at(t0), WINDOW)
        .await
        .expect("c");

    let batch = store.due("gh", t0 + 10, 10, &no_skip).expect("due");
    assert_eq!(batch.due.iter().map(|d| d.seq).collect::<Vec<_>>(), [a, b]);
    assert_eq!(batch.next_due_ms, None);
    let skipping_a = store.due("gh", t0 + 10, 10, &|s| s == a).expect("due");
    assert_eq!(skipping_a.due.iter().map(|d| d.seq).collect::<Vec<_>>(), [b]);
    assert_eq!(store.due("gh", t0 + 10, 1, &no_skip).expect("due").due.len(), 1);

    let (record, body) = store.load(a).expect("load").expect("present");
    assert_eq!(body, b"body-a");
    assert_eq!(record.event_id, "a");
    assert_eq!(record.query.as_deref(), Some("a=1"));
    assert_eq!(
        record.headers,
        vec![("x-github-delivery".to_string(), b"a".to_vec())]
    );

    let attempt = |status| AttemptRecord {
        at_ms: t0 + 20,
        status: Some(status),
        outcome: "x".into(),
    };
    store
        .record_attempt(a, attempt(503), NextStep::RetryAt(t0 + 5_000))
        .expect("retry");
    let batch = store.due("gh", t0 + 20, 10, &no_skip).expect("due");
    assert_eq!(batch.due.iter().map(|d| d.seq).collect::<Vec<_>>(), [b]);
    assert_eq!(batch.next_due_ms, Some(t0 + 5_000));

    store
        .record_attempt(b, attempt(400), NextStep::DeadLetter("status 400".into()))
        .expect("dead");
    store
        .record_attempt(a, attempt(200), NextStep::Delivered)
        .expect("delivered");
    assert!(
        store.load(a).expect("load").is_none(),
        "a delivered event leaves the store"
    );
    assert!(store
        .due("gh", u64::MAX, 10, &no_skip)
        .expect("due")
        .due
        .is_empty());

    let dead = store.dead_letters(10).expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, b);
    assert_eq!(
        dead[0].1.state,
        EventState::Dead {
            reason: "status 400".into()
        }
    );
    assert_eq!(dead[0].1.attempts.len(), 1);
    assert_eq!(store.counts().expect("counts"), Counts { queued: 1, dead: 1 });
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seq = {
        let store = Store::open(dir.path()).expect("open");
        match store
            .accept(&event("gh", "a", b"kept"), at(1), WINDOW)
            .await
            .expect("accept")
        {
            Accepted::New(seq) => seq,
            Accepted::Duplicate => panic!("new"),
        }
    };
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.load(seq).expect("load").expect("present").1, b"kept");
    assert_eq!(store.due("gh", 2, 10, &no_skip).expect("due").due.len(), 1);
    assert_eq!(
        store
            .accept(&event("gh", "a", b"kept"), at(2), WINDOW)
            .await
            .expect("dup"),
        Accepted::Duplicate
    );
    let Accepted::New(next) = store
        .accept(&event("gh", "b", b""), at(2), WINDOW)
        .await
        .expect("new")
    else {
        panic!("new")
    };
    assert!(next > seq, "sequence numbers keep growing across restarts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_batches_concurrent_writers() {
    let commit = Arc::new(GroupCommit::new());
    let flushes = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (commit, flushes) = (commit.clone(), flushes.clone());
        tasks.push(tokio::spawn(async move {
            let ticket = commit.ticket();
            commit
                .durable(ticket, move || {
                    flushes.fetch_add(1, AtomicOrdering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    Ok(())
                })
                .await
                .expect("durable");
            ticket
        }));
    }
    for t in tasks {
        let ticket = t.await.expect("task");
        assert!(commit.state.borrow().durable >= ticket);
    }
    let n = flushes.load(AtomicOrdering::SeqCst);
    assert!((1..64).contains(&n), "64 writers took {n} flushes");
}

#[tokio::test]
async fn a_failed_flush_fails_its_writers_and_the_next_one_recovers() {
    let commit = Arc::new(GroupCommit::new());
    let ticket = commit.ticket();
    let failing = || Err(StoreError::Corrupt { what: "test" });
    let err = commit
        .durable(ticket, failing)
        .await
        .expect_err("the flush failed");
    assert!(matches!(err, StoreError::Flush(_)));
    let ticket = commit.ticket();
    commit
        .durable(ticket, || Ok(()))
        .await
        .expect("a later flush succeeds");
}

#[tokio::test]
async fn a_writer_never_rides_on_a_flush_that_started_before_its_write() {
    let commit = Arc::new(GroupCommit::new());
    let first = commit.ticket();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
    let flushes = Arc::new(AtomicUsize::new(0));
    let slow = {
        let flushes = flushes.clone();
        move || {
            if flushes.fetch_add(1, AtomicOrdering::SeqCst) == 0 {
                let _ = started_tx.send(());
                let _ = release_rx.lock().expect("lock").recv();
            }
            Ok(())
        }
    };
    let c = commit.clone();
    let slow2 = slow.clone();
    let a = tokio::spawn(async move { c.durable(first, slow2).await });
    tokio::task::spawn_blocking(move || started_rx.recv())
        .await
        .expect("join")
        .expect("flush started");
    // Written while the first flush runs: it must wait for a second flush.
    let second = commit.ticket();
    let c = commit.clone();
    let b = tokio::spawn(async move { c.durable(second, slow).await });
    release_tx.send(()).expect("release");
    a.await.expect("join").expect("first durable");
    b.await.expect("join").expect("second durable");
    assert_eq!(flushes.load(AtomicOrdering::SeqCst), 2);
}
