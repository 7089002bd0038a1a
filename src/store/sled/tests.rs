//! The sled backend's own tests: its event log, settling, recovery and sled internals. What every
//! backend promises is in `store/contract_tests.rs`.

use std::{
    path::Path,
    time::{Duration, UNIX_EPOCH},
};

use super::*;
use crate::store::{Due, EventState};

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
        body: bytes::Bytes::copy_from_slice(body),
        verified: true,
    }
}

fn open() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(dir.path()).expect("open store");
    (dir, store)
}

fn no_skip(_: u64) -> bool {
    false
}

/// Accepts event `id` of source `gh`, with an empty body, at `ms` with dedup window `window`.
async fn accept_at(store: &SledStore, id: &str, ms: u64, window: Duration) -> Accepted {
    store
        .accept(&event("gh", id, b""), at(ms), window)
        .await
        .expect("accept")
}

#[tokio::test]
async fn marks_settled_together_are_purged_by_the_second_they_expire_in() {
    let (_dir, store) = open_unsettled();
    // Settled in one batch: two marks expire in the same second, one later.
    accept_at(&store, "a", 1_000, Duration::from_secs(10)).await;
    accept_at(&store, "b", 1_500, Duration::from_secs(10)).await;
    accept_at(&store, "c", 1_000, Duration::from_secs(100)).await;
    assert_eq!(store.counts().expect("counts").queued, 3, "settled");
    assert_eq!(store.backend.expiry_lists(), 2, "one list per second of expiry");
    // "a" expired at 11 s, but its list waits for "b" (11.5 s).
    assert_eq!(store.purge_expired(at(11_200)).expect("purge"), 0);
    assert_eq!(store.purge_expired(at(11_500)).expect("purge"), 2);
    assert_eq!(store.backend.expiry_lists(), 1);
    assert_eq!(
        accept_at(&store, "c", 50_000, Duration::from_secs(100)).await,
        Accepted::Duplicate
    );
    assert_eq!(store.purge_expired(at(101_000)).expect("purge"), 1);
    assert_eq!(store.backend.expiry_lists(), 0);
    assert!(matches!(
        accept_at(&store, "c", 102_000, Duration::from_secs(100)).await,
        Accepted::New(_)
    ));
}

#[tokio::test]
async fn marks_indexed_in_the_older_form_are_still_purged() {
    let (_dir, store) = open();
    store.backend.insert_mark_in_older_form("gh", "old", 10_000);
    assert_eq!(accept_at(&store, "old", 5_000, WINDOW).await, Accepted::Duplicate);
    assert_eq!(store.purge_expired(at(9_000)).expect("purge"), 0);
    assert_eq!(store.purge_expired(at(10_000)).expect("purge"), 1);
    assert_eq!(store.purge_expired(at(10_000)).expect("purge"), 0);
    // Gone, so "old" is new again (its mark had expired anyway).
    assert!(matches!(
        accept_at(&store, "old", 10_000, WINDOW).await,
        Accepted::New(_)
    ));
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seq = {
        let store = SledStore::open(dir.path()).expect("open");
        match store
            .accept(&event("gh", "a", b"kept"), at(1), WINDOW)
            .await
            .expect("accept")
        {
            Accepted::New(seq) => seq,
            Accepted::Duplicate => panic!("new"),
        }
    };
    let store = SledStore::open(dir.path()).expect("reopen");
    assert_eq!(store.load(seq).expect("load").expect("present").1, &b"kept"[..]);
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

#[tokio::test]
async fn after_a_failed_sync_nothing_is_acknowledged_until_the_store_reopens() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = SledStore::open(dir.path()).expect("open");
        put(&store, "gh", "a", 1).await;
        store.backend.fail_next_log_sync();
        let failed = store.accept(&event("gh", "b", b"lost?"), at(2), WINDOW).await;
        assert!(failed.is_err(), "its sync failed: {failed:?}");
        // The kernel may have dropped b's record: its retry must not pass for a durable duplicate,
        // and no new event may be acknowledged on a log in that state.
        for id in ["b", "c"] {
            let retry = store.accept(&event("gh", id, b"again"), at(3), WINDOW).await;
            assert!(
                retry.is_err(),
                "{id} was acknowledged after a failed sync: {retry:?}"
            );
        }
        assert_eq!(
            store.readiness(),
            Err(NotReady::SyncFailed),
            "readiness must say so"
        );
        // Reading still works, and shows what is durable; a full flush cannot promise that.
        assert_eq!(store.counts_now().expect("counts").queued, 1);
        assert_eq!(store.counts().expect("counts").queued, 1);
        assert!(store.flush().await.is_err());
    }
    // Reopened, the store takes what the disk holds (here b's record survived: its retry is a
    // duplicate) and accepts again.
    let store = SledStore::open(dir.path()).expect("reopen");
    assert_eq!(store.readiness(), Ok(()));
    assert_eq!(accept_at(&store, "b", 4, WINDOW).await, Accepted::Duplicate);
    put(&store, "gh", "c", 5).await;
}

// === admin API operations ===

/// Accepts event `id` of `source` at `ms`; returns its sequence number.
async fn put(store: &SledStore, source: &str, id: &str, ms: u64) -> u64 {
    match store
        .accept(&event(source, id, id.as_bytes()), at(ms), WINDOW)
        .await
        .expect("accept")
    {
        Accepted::New(seq) => seq,
        Accepted::Duplicate => panic!("{source}/{id} is new"),
    }
}

fn attempt_at(ms: u64, status: u16, outcome: &str) -> AttemptRecord {
    AttemptRecord {
        at_ms: ms,
        status: Some(status),
        outcome: outcome.parse().expect("an attempt result"),
    }
}

async fn deliver(store: &SledStore, seq: u64, ms: u64) {
    store
        .record_attempt(seq, attempt_at(ms, 200, "delivered"), NextStep::Delivered)
        .await
        .expect("delivered");
}

async fn kill(store: &SledStore, seq: u64, ms: u64) {
    store
        .record_attempt(
            seq,
            attempt_at(ms, 400, "dead letter: status 400"),
            NextStep::DeadLetter("status 400".into()),
        )
        .await
        .expect("dead");
}

fn seqs(list: Vec<(u64, EventRecord)>) -> Vec<u64> {
    list.into_iter().map(|(seq, _)| seq).collect()
}

fn query(
    source: Option<&str>,
    state: Option<StateFilter>,
    since_ms: Option<u64>,
    limit: usize,
) -> EventQuery {
    EventQuery {
        source: source.map(str::to_owned),
        state,
        since_ms,
        limit,
    }
}

#[tokio::test]
async fn delivered_events_settle_into_retention_and_record_lists_that_stay_exact() {
    let (dir, store) = open_unsettled();
    let [a, b, c] = [
        put(&store, "gh", "a", 1).await,
        put(&store, "gh", "b", 2).await,
        put(&store, "gh", "c", 3).await,
    ];
    let d = put(&store, "stripe", "d", 4).await;
    let e = put(&store, "gh", "e", 5).await;
    // Delivered while fresh: a-d within the second from 10 s, e in the next one.
    for (seq, ms) in [(a, 10_100), (b, 10_200), (c, 10_300), (d, 10_400), (e, 11_500)] {
        deliver(&store, seq, ms).await;
    }
    assert_eq!(store.counts().expect("counts").delivered, 5, "settled");
    assert_eq!(
        store.backend.retention_index(),
        (2, 0),
        "a list per second, no entry of their own"
    );
    assert_eq!(
        store.backend.record_index(),
        (1, 5, 0),
        "their records in one list, none under a key of its own"
    );
    drop(store);
    let store = SledStore::open(dir.path()).expect("reopen");
    let delivered = |source: Option<&str>| {
        seqs(
            store
                .list(&query(source, Some(StateFilter::Delivered), None, 100))
                .expect("list"),
        )
    };
    assert_eq!(delivered(None), [e, d, c, b, a]);
    assert_eq!(delivered(Some("stripe")), [d]);
    let by_source = store.counts_by_source().expect("counts");
    assert_eq!((by_source["gh"].delivered, by_source["stripe"].delivered), (4, 1));

    // Replayed, deleted, delivered again: each leaves its list at once.
    assert!(store.replay(b, at(12_000)).expect("replay"));
    assert!(store.delete(c).expect("delete"));
    assert_eq!(delivered(None), [e, d, a]);
    assert_eq!(
        store.backend.record_index(),
        (1, 3, 1),
        "b's record has its own key now"
    );
    let counts = store.counts().expect("counts");
    assert_eq!((counts.queued, counts.delivered), (1, 3));
    deliver(&store, b, 12_000).await;
    deliver(&store, a, 13_000).await;
    assert_eq!(
        store.backend.retention_index(),
        (2, 2),
        "b and a have entries of their own now"
    );
    assert_eq!(delivered(None), [e, d, b, a]);
    assert_eq!(store.counts().expect("counts").delivered, 4);
    assert_eq!(store.backend.record_index(), (1, 2, 2));
    assert_eq!(store.load(a).expect("load").expect("a").0.attempts.len(), 2);

    // A list goes once its whole second has passed, with what it still holds (d).
    assert_eq!(store.purge_delivered(10_999).expect("purge"), 0);
    assert_eq!(store.purge_delivered(11_000).expect("purge"), 1);
    assert!(store.load(d).expect("load").is_none());
    assert_eq!(
        store.purge_delivered(12_000).expect("purge"),
        1,
        "e; b was delivered at 12 s"
    );
    assert_eq!(
        store.backend.record_index(),
        (0, 0, 2),
        "d and e were the last in their list"
    );
    assert_eq!(store.purge_delivered(u64::MAX).expect("purge"), 2);
    assert_eq!(store.backend.retention_index(), (0, 0));
    assert_eq!(store.backend.record_index(), (0, 0, 0));
    assert_eq!(
        store.counts().expect("counts"),
        Counts {
            queued: 0,
            dead: 0,
            delivered: 0
        }
    );
}

#[tokio::test]
async fn an_event_delivered_after_a_newer_one_was_listed_keeps_a_record_of_its_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hour = Duration::from_secs(3600);
    let open =
        || SledStore::open_holding_queued(dir.path(), Duration::ZERO, hour, 100, 1 << 20).expect("open");
    let store = open();
    let a = put(&store, "gh", "a", 1).await;
    let b = put(&store, "gh", "b", 2).await;
    let c = put(&store, "gh", "c", 3).await;
    deliver(&store, b, 4).await;
    // b settles into a list while a and c, queued, are held.
    assert_eq!(settle_on_schedule(&store), vec![a, c]);
    assert_eq!(store.backend.record_index(), (1, 1, 0));
    // Lists never overlap: a, older than b, gets a key of its own; c a list of its own.
    deliver(&store, a, 5).await;
    deliver(&store, c, 6).await;
    assert_eq!(settle_on_schedule(&store), Vec::<u64>::new());
    assert_eq!(store.backend.record_index(), (2, 2, 1));
    let queued = put(&store, "gh", "queued", 7).await;
    let newest_first = |store: &SledStore| seqs(store.list(&query(None, None, None, 10)).expect("list"));
    assert_eq!(newest_first(&store), [queued, c, b, a]);
    drop(store);

    // Reopened: the lists' events are found, their log segment kept, and new lists start above them.
    let store = open();
    assert_eq!(newest_first(&store), [queued, c, b, a]);
    assert_eq!(store.collect_segments().expect("collect"), 0);
    for (seq, body, at_ms) in [(a, "a", 5), (b, "b", 4), (c, "c", 6)] {
        let (record, loaded) = store.load(seq).expect("load").expect("stored");
        assert_eq!(record.state, EventState::Delivered { at_ms });
        assert_eq!(loaded, body.as_bytes());
    }
    let d = put(&store, "gh", "d", 8).await;
    deliver(&store, d, 9).await;
    deliver(&store, queued, 9).await;
    store.flush().await.expect("flush");
    assert_eq!(
        store.backend.record_index(),
        (3, 3, 2),
        "queued had settled: its key stays"
    );
    assert_eq!(newest_first(&store), [d, queued, c, b, a]);
    assert_eq!(store.counts().expect("counts").delivered, 5);
}

// === the event log ===

/// Copies directory `from` to `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Forgets the log checkpoint, so that the next open reads the whole log again.
fn forget_checkpoint(store_dir: &Path) {
    // sled may keep a dropped store's file lock for a moment (its background threads end after the
    // last handle): the first open failed with "could not acquire lock" in about one run of the store
    // tests in ten.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let db = loop {
        match ::sled::open(store_dir.join("index")) {
            Ok(db) => break db,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("open the index: {e}"),
        }
    };
    db.remove(b"c").expect("remove the checkpoint");
    db.flush().expect("flush");
}

#[tokio::test]
async fn accepted_events_that_the_index_lost_are_recovered_from_the_log() {
    let (dir, store) = open();
    let a = put(&store, "gh", "a", 1).await;
    let b = put(&store, "gh", "b", 2).await;
    drop(store);
    // An index that lost everything (as if sled had not flushed before a crash), beside the log.
    let crashed = tempfile::tempdir().expect("temp dir");
    copy_dir(&dir.path().join("log"), &crashed.path().join("log"));

    let store = SledStore::open(crashed.path()).expect("reopen");
    let due = store.due("gh", 10, 10, &no_skip).expect("due");
    assert_eq!(due.due.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![a, b]);
    let (record, body) = store.load(b).expect("load").expect("stored");
    assert_eq!((record.event_id.as_str(), &body[..]), ("b", &b"b"[..]));
    // Their dedup marks are back too, and new events get new sequence numbers.
    assert_eq!(
        store
            .accept(&event("gh", "a", b"a"), at(3), WINDOW)
            .await
            .expect("durable"),
        Accepted::Duplicate
    );
    assert!(put(&store, "gh", "c", 4).await > b);
    // And so is their place in the purge index: both go once their window ends.
    let window_end = WINDOW.as_millis() as u64 + 2;
    assert_eq!(store.purge_expired(at(window_end)).expect("purge"), 2);
}

#[tokio::test]
async fn a_corrupt_record_amid_intact_ones_stops_the_open_with_where_and_what_to_do() {
    let (dir, store) = open();
    for (id, body) in [("a", "first body"), ("b", "second body"), ("c", "third body")] {
        store
            .accept(&event("gh", id, body.as_bytes()), at(1), WINDOW)
            .await
            .expect("accept");
    }
    drop(store);
    // The log is read from its start again, as after a crash before the events settled.
    forget_checkpoint(dir.path());
    let segment = dir.path().join("log").join(format!("{:016x}.log", 0));
    let mut bytes = std::fs::read(&segment).expect("read segment");
    let at = bytes
        .windows(11)
        .position(|w| w == b"second body")
        .expect("b's body is in the log");
    bytes[at] ^= 0x20;
    std::fs::write(&segment, &bytes).expect("corrupt b's record");

    let error = SledStore::open(dir.path()).expect_err("a corrupt log does not open");
    let StoreError::CorruptLog {
        segment: named,
        offset,
    } = &error
    else {
        panic!("not a corrupt log: {error:?}");
    };
    assert_eq!(named, &segment.display().to_string());
    assert!(*offset < at as u64, "the record's header comes before its body");
    let message = error.to_string();
    assert!(
        message.contains(&format!("{} is corrupt at byte {offset}", segment.display())),
        "{message}"
    );
    assert!(
        message.contains(&format!("truncate -s {offset} {}", segment.display())),
        "{message}"
    );
    // The records after it are still on disk.
    assert_eq!(std::fs::read(&segment).expect("read segment"), bytes);
}

#[tokio::test]
async fn the_log_never_brings_back_what_the_index_kept_or_deleted() {
    let (dir, store) = open();
    let a = put(&store, "gh", "a", 1).await;
    let b = put(&store, "gh", "b", 2).await;
    deliver(&store, b, 3).await;
    assert!(store.delete(a).expect("delete"));
    drop(store);
    forget_checkpoint(dir.path());

    let store = SledStore::open(dir.path()).expect("reopen");
    assert!(
        store.load(a).expect("load").is_none(),
        "a deleted event stays deleted"
    );
    let (record, _) = store.load(b).expect("load").expect("stored");
    assert_eq!(
        record.state.name(),
        "delivered",
        "a delivered event stays delivered"
    );
    assert_eq!(store.counts().expect("counts").queued, 0);
}

/// Accepts `n` events of `gh` (`e0`, `e1`, ...) with `body`; returns their sequence numbers.
async fn put_bodies(store: &SledStore, n: usize, body: &[u8]) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        let id = format!("e{i}");
        match store.accept(&event("gh", &id, body), at(1), WINDOW).await {
            Ok(Accepted::New(seq)) => seqs.push(seq),
            other => panic!("{other:?}"),
        }
    }
    seqs
}

#[tokio::test]
async fn log_segments_go_once_nothing_refers_to_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 4 KiB segments: a few 1 KiB events fill one.
    let store = SledStore::open_with(dir.path(), 4096).expect("open");
    let body = vec![b'x'; 1024];
    let seqs = put_bodies(&store, 12, &body).await;
    let log_dir = dir.path().join("log");
    let before = log::segments(&log_dir).expect("segments").len();
    assert!(before >= 3, "{before} segments");
    // Nothing is deleted while events refer to every segment.
    store.flush().await.expect("flush");
    assert_eq!(store.collect_segments().expect("collect"), 0);
    // Deliver and purge the first half: their segments go, the rest stay readable.
    for &seq in &seqs[..6] {
        deliver(&store, seq, 2).await;
    }
    assert_eq!(store.purge_delivered(3).expect("purge"), 6);
    // The checkpoint moves on with the next accept (it is what the log is replayed from).
    std::thread::sleep(Duration::from_millis(300));
    put(&store, "gh", "later", 4).await;
    let existing = log::segments(&log_dir).expect("segments").len();
    let removed = store.collect_segments().expect("collect");
    assert!(removed >= 1, "no segment removed");
    assert_eq!(
        log::segments(&log_dir).expect("segments").len(),
        existing - removed
    );
    for &seq in &seqs[6..] {
        let (_, loaded) = store.load(seq).expect("load").expect("stored");
        assert_eq!(loaded, body);
    }
    drop(store);
    // And the store still opens and reads them.
    let store = SledStore::open_with(dir.path(), 4096).expect("reopen");
    assert_eq!(store.counts().expect("counts").queued, 7);
}

#[tokio::test]
async fn log_segments_that_only_listed_records_refer_to_stay_across_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 4 KiB segments, and fresh events settle only when a read or a flush needs them.
    let open = || {
        let backend = SledBackend::open(dir.path(), 4096, DEFAULT_CACHE_BYTES).expect("open");
        SledStore::start(backend.settling_after(Duration::from_secs(3600))).expect("start")
    };
    let store = open();
    let body = vec![b'x'; 1024];
    let seqs = put_bodies(&store, 8, &body).await;
    for &seq in &seqs {
        deliver(&store, seq, 2).await;
    }
    store.flush().await.expect("flush");
    assert_eq!(
        store.backend.record_index(),
        (1, 8, 0),
        "their records are listed"
    );
    // A later event takes the checkpoint past their segments.
    put(&store, "gh", "later", 3).await;
    store.flush().await.expect("flush");
    drop(store);
    let store = open();
    assert_eq!(
        store.collect_segments().expect("collect"),
        0,
        "the listed events still need their segments"
    );
    for &seq in &seqs {
        let (_, loaded) = store.load(seq).expect("load").expect("stored");
        assert_eq!(loaded, body);
    }
    // Purged, they let go of their segments.
    assert_eq!(store.purge_delivered(u64::MAX).expect("purge"), 8);
    assert_eq!(store.backend.record_index(), (0, 0, 1));
    assert!(
        store.collect_segments().expect("collect") >= 1,
        "no segment removed"
    );
}

#[test]
fn opening_waits_for_a_lock_that_a_closing_store_still_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    // What sled's I/O threads do for a moment after a store in this process is closed: hold the lock.
    let held = ::sled::open(dir.path().join("index")).expect("take the lock");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
    });
    SledStore::open(dir.path()).expect("opened once the lock was let go");
    release.join().expect("released");
}

#[test]
fn a_store_in_the_old_layout_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("db"), b"sled 0.34 data").expect("write");
    let err = SledStore::open(dir.path()).expect_err("the old layout");
    let text = err.to_string();
    assert!(matches!(err, StoreError::OldFormat { .. }), "{err:?}");
    assert!(
        text.contains("older hookgate") && text.contains("move it aside"),
        "{text}"
    );
}

// === fresh events: accepted, durable in the log, not yet in the tree ===

/// A store whose fresh events settle only when a read (or a flush) needs them, whatever the timing.
fn open_unsettled() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open_settling_after(dir.path(), Duration::from_secs(3600)).expect("open store");
    (dir, store)
}

#[tokio::test]
async fn an_event_delivered_before_it_settles_reaches_the_tree_delivered() {
    let (dir, store) = open_unsettled();
    let a = put(&store, "gh", "a", 1).await;
    let b = put(&store, "gh", "b", 2).await;
    assert_eq!(store.backend.fresh_events(), 2, "both wait in memory");
    // The forwarder finds and loads them there.
    let due = store.due("gh", 10, 10, &no_skip).expect("due");
    assert_eq!(due.due.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![a, b]);
    assert!(store.due("stripe", 10, 10, &no_skip).expect("due").due.is_empty());
    let (record, body) = store.load(a).expect("load").expect("fresh");
    assert_eq!((record.event_id.as_str(), &body[..]), ("a", &b"a"[..]));
    // a is delivered and b retried later while both are still fresh.
    deliver(&store, a, 5).await;
    store
        .record_attempt(
            b,
            attempt_at(6, 503, "retry in 1s: status 503"),
            NextStep::RetryAt(60),
        )
        .await
        .expect("retry");
    let due = store.due("gh", 10, 10, &no_skip).expect("due");
    assert!(due.due.is_empty(), "{due:?}");
    assert_eq!(due.next_due_ms, Some(60), "the retry's time");
    // A read settles them first: the tree has each in its latest state.
    let counts = store.counts().expect("counts");
    assert_eq!((counts.queued, counts.delivered), (1, 1));
    assert_eq!(store.backend.fresh_events(), 0);
    let due = store.due("gh", 100, 10, &no_skip).expect("due");
    assert_eq!(due.due, vec![Due { seq: b, due_ms: 60 }]);
    drop(store);
    let store = SledStore::open(dir.path()).expect("reopen");
    let (record, _) = store.load(a).expect("load").expect("stored");
    assert_eq!((record.state.name(), record.attempts.len()), ("delivered", 1));
    let (record, _) = store.load(b).expect("load").expect("stored");
    assert_eq!(record.state, EventState::Queued { due_ms: 60 });
}

#[tokio::test]
async fn settling_makes_the_log_durable_before_the_tree_gets_a_mark() {
    let (_dir, store) = open_unsettled();
    // What the commit thread does with an accept before its flush: the record is in the log file,
    // not yet synced. The admin API (or a full flush) may settle at that point.
    let write = store
        .backend
        .prepare_accept(&event("gh", "a", b"1"), 1_000, 2_000)
        .expect("prepare");
    let applied = store
        .backend
        .apply(vec![GroupWrite::Accept(Box::new(write))])
        .expect("apply");
    assert!(matches!(applied[..], [Applied::Accept(Accepted::New(_))]));
    assert!(store.backend.log_is_dirty());
    store.backend.settle(true).expect("settle");
    assert!(
        !store.backend.log_is_dirty(),
        "the tree has the mark: its log record must be durable"
    );
    assert_eq!(store.counts().expect("counts").queued, 1);
}

#[tokio::test]
async fn an_event_settles_on_schedule_only_once_its_sync_has_ended() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open_settling_after(dir.path(), Duration::ZERO).expect("open store");
    // What the commit thread does with an accept: apply it, write it out, hand its sync over.
    let write = store
        .backend
        .prepare_accept(&event("gh", "a", b"1"), 1_000, 2_000)
        .expect("prepare");
    store
        .backend
        .apply(vec![GroupWrite::Accept(Box::new(write))])
        .expect("apply");
    let sync = store
        .backend
        .sync_later()
        .expect("write out")
        .expect("a sync is due");
    // While that sync runs, the scheduled settle passes the event by, however old it is. (Settles
    // run at most every `SETTLE_EVERY`, counted from the first call.)
    store.backend.settle(false).expect("settle");
    std::thread::sleep(super::backend::SETTLE_EVERY + Duration::from_millis(5));
    store.backend.settle(false).expect("settle");
    assert_eq!(
        store.backend.fresh_events(),
        1,
        "settled before its record was durable"
    );
    assert!(store.backend.log_is_dirty());
    sync().expect("sync");
    assert!(!store.backend.log_is_dirty());
    std::thread::sleep(super::backend::SETTLE_EVERY + Duration::from_millis(5));
    store.backend.settle(false).expect("settle");
    assert_eq!(store.backend.fresh_events(), 0);
    assert_eq!(store.counts().expect("counts").queued, 1);
}

#[tokio::test]
async fn a_fresh_event_releases_its_body_once_delivered_or_dead_and_loads_it_from_the_log() {
    let (_dir, store) = open_unsettled();
    let a = put(&store, "gh", "a", 1).await;
    let bb = put(&store, "gh", "bb", 2).await;
    let ccc = put(&store, "gh", "ccc", 3).await;
    assert_eq!(store.backend.fresh_bytes(), 6);
    deliver(&store, a, 5).await;
    kill(&store, bb, 6).await;
    store
        .record_attempt(
            ccc,
            attempt_at(7, 503, "retry in 1s: status 503"),
            NextStep::RetryAt(60),
        )
        .await
        .expect("retry");
    // Only the event still queued keeps its body in memory; all three are still fresh.
    assert_eq!(store.backend.fresh_bytes(), 3);
    assert_eq!(store.backend.fresh_events(), 3);
    for (seq, id, state) in [(a, "a", "delivered"), (bb, "bb", "dead"), (ccc, "ccc", "queued")] {
        let (record, body) = store.load(seq).expect("load").expect("fresh");
        assert_eq!((record.state.name(), &body[..]), (state, id.as_bytes()));
    }
    assert_eq!(store.backend.fresh_events(), 3, "loading settles nothing");
}

#[tokio::test]
async fn fresh_events_settle_by_themselves() {
    let (_dir, store) = open();
    put(&store, "gh", "a", 1).await;
    assert_eq!(store.backend.fresh_events(), 1);
    let waited = std::time::Instant::now();
    while store.backend.fresh_events() > 0 {
        assert!(waited.elapsed() < Duration::from_secs(10), "never settled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_crash_before_fresh_events_settle_loses_none_of_them() {
    let (dir, store) = open_unsettled();
    // `a` settles (at once: a read), `b` and `c` are still fresh when the process "dies".
    let a = put(&store, "gh", "a", 1).await;
    assert_eq!(store.counts().expect("counts").queued, 1);
    let b = put(&store, "gh", "b", 2).await;
    let c = put(&store, "gh", "c", 3).await;
    deliver(&store, c, 4).await;
    assert_eq!(store.backend.fresh_events(), 2);
    let crashed = tempfile::tempdir().expect("temp dir");
    store.backend.persist_unsettled().expect("persist");
    copy_dir(dir.path(), crashed.path());
    drop(store);
    drop(dir);

    let store = SledStore::open(crashed.path()).expect("reopen");
    let due = store.due("gh", 10, 10, &no_skip).expect("due");
    // c's delivery was never settled: it is delivered again (at least once), never lost.
    assert_eq!(due.due.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![a, b, c]);
    assert_eq!(
        store
            .accept(&event("gh", "b", b"b"), at(5), WINDOW)
            .await
            .expect("durable"),
        Accepted::Duplicate,
        "b's dedup mark is back"
    );
}

#[tokio::test]
async fn a_duplicate_of_a_fresh_event_is_a_duplicate_until_its_window_ends() {
    let (_dir, store) = open_unsettled();
    let window = Duration::from_secs(10);
    accept_at(&store, "a", 0, window).await;
    let again = accept_at(&store, "a", 9_999, window).await;
    assert_eq!(again, Accepted::Duplicate);
    let later = accept_at(&store, "a", 10_001, window).await;
    assert!(matches!(later, Accepted::New(_)));
    // Both copies settle; the later one's mark is the one kept.
    assert_eq!(store.counts().expect("counts").queued, 2);
    let dup = accept_at(&store, "a", 15_000, window).await;
    assert_eq!(dup, Accepted::Duplicate);
}

#[tokio::test]
async fn the_checkpoint_stays_before_the_events_still_fresh() {
    let (dir, store) = open();
    let a = put(&store, "gh", "a", 1).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    // Accepting `b` settles `a`, old enough by now, and (unless this thread stalls for 10 ms) keeps `b`
    // fresh: the checkpoint recorded with `a` must not pass `b`'s record.
    let b = put(&store, "gh", "b", 2).await;
    store.backend.persist_unsettled().expect("persist");
    let crashed = tempfile::tempdir().expect("temp dir");
    copy_dir(dir.path(), crashed.path());
    drop(store);

    let store = SledStore::open(crashed.path()).expect("reopen");
    let due = store.due("gh", 10, 10, &no_skip).expect("due");
    assert_eq!(due.due.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![a, b]);
}

#[tokio::test]
async fn due_finds_what_is_scheduled_after_it_found_the_schedule_empty() {
    let (_dir, store) = open();
    let a = put(&store, "gh", "a", 1).await;
    deliver(&store, a, 2).await;
    let b = put(&store, "gh", "b", 3).await;
    // Both settle (a delivered, b queued); b is then delivered from the tree: the schedule is empty.
    store.counts().expect("settle");
    store
        .record_attempt(
            b,
            attempt_at(4, 503, "retry in 1s: status 503"),
            NextStep::Delivered,
        )
        .await
        .expect("delivered");
    assert!(store.due("gh", 10, 10, &no_skip).expect("due").due.is_empty());
    // A replay schedules a settled event again.
    assert!(store.replay(a, at(20)).expect("replay"));
    let due = store.due("gh", 30, 10, &no_skip).expect("due");
    assert_eq!(due.due.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![a]);
    // So does a retry of a settled event, and the settling of a fresh event still queued.
    store
        .record_attempt(
            a,
            attempt_at(31, 503, "retry in 1s: status 503"),
            NextStep::RetryAt(40),
        )
        .await
        .expect("retry");
    let c = put(&store, "gh", "c", 32).await;
    store.counts().expect("settle");
    let due = store.due("gh", 50, 10, &no_skip).expect("due");
    assert_eq!(due.due.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![c, a]);
}

/// Runs a settle on the commit thread's schedule (they run at most every `SETTLE_EVERY`) and returns
/// the events still fresh.
fn settle_on_schedule(store: &SledStore) -> Vec<u64> {
    std::thread::sleep(super::backend::SETTLE_EVERY + Duration::from_millis(5));
    store.backend.settle(false).expect("settle");
    store.backend.fresh_seqs()
}

#[tokio::test]
async fn queued_events_wait_longer_to_settle_and_past_the_bound_only_the_oldest_settle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hour = Duration::from_secs(3600);
    let store =
        SledStore::open_holding_queued(dir.path(), Duration::ZERO, hour, 3, 1 << 20).expect("open store");
    let a = put(&store, "gh", "a", 1).await;
    let b = put(&store, "gh", "b", 2).await;
    let c = put(&store, "gh", "c", 3).await;
    deliver(&store, a, 4).await;
    // The delivered event settles; the queued ones stay, for the forwarder to take from memory.
    assert_eq!(settle_on_schedule(&store), vec![b, c]);
    // Two more make four queued events, one past the bound: only the oldest settles.
    let d = put(&store, "gh", "d", 5).await;
    let e = put(&store, "gh", "e", 6).await;
    assert_eq!(settle_on_schedule(&store), vec![c, d, e]);
    assert_eq!(settle_on_schedule(&store), vec![c, d, e], "within the bound");
    let counts = store.counts().expect("counts");
    assert_eq!((counts.queued, counts.delivered), (4, 1));
}

#[tokio::test]
async fn past_the_bound_on_held_bodies_the_oldest_queued_events_settle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hour = Duration::from_secs(3600);
    let store =
        SledStore::open_holding_queued(dir.path(), Duration::ZERO, hour, 100, 10).expect("open store");
    let a = put(&store, "gh", "aaaa", 1).await;
    let b = put(&store, "gh", "bbbb", 2).await;
    let c = put(&store, "gh", "cccc", 3).await;
    let d = put(&store, "gh", "dddd", 4).await;
    // 16 bytes held, 10 allowed: the two oldest settle (on this schedule or the commit thread's
    // meanwhile), and the two left hold 8.
    assert_eq!(settle_on_schedule(&store), vec![c, d]);
    assert_eq!(store.backend.fresh_bytes(), 8);
    // The settled ones are in the tree, queued, and the forwarder finds all four.
    let due = store.due("gh", 10, 10, &no_skip).expect("due");
    assert_eq!(
        due.due.iter().map(|d| d.seq).collect::<Vec<_>>(),
        vec![a, b, c, d]
    );
}

#[tokio::test]
async fn a_queued_event_settles_once_it_has_waited_the_hold() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        SledStore::open_holding_queued(dir.path(), Duration::ZERO, Duration::from_secs(1), 100, 1 << 20)
            .expect("open store");
    let a = put(&store, "gh", "a", 1).await;
    assert_eq!(settle_on_schedule(&store), vec![a]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(settle_on_schedule(&store), Vec::<u64>::new());
    assert_eq!(store.backend.fresh_events(), 0);
}

#[tokio::test]
async fn settling_everything_takes_as_many_batches_as_it_needs() {
    let (_dir, store) = open_unsettled();
    let n = super::backend::SETTLE_BATCH + 4;
    for i in 0..n {
        put(&store, "gh", &format!("e{i}"), 1).await;
    }
    assert_eq!(store.backend.fresh_events(), n);
    store.backend.settle(true).expect("settle");
    assert_eq!(store.backend.fresh_events(), 0);
    assert_eq!(store.counts().expect("counts").queued, n as u64);
}

#[tokio::test]
async fn sequence_numbers_follow_acceptance_and_a_duplicate_takes_none() {
    let (_dir, store) = open_unsettled();
    let a = put(&store, "gh", "a", 1).await;
    assert_eq!(accept_at(&store, "a", 2, WINDOW).await, Accepted::Duplicate);
    let b = put(&store, "gh", "b", 3).await;
    assert_eq!(b, a + 1);
    let (record, body) = store.load(b).expect("load").expect("stored");
    assert_eq!((record.event_id.as_str(), &body[..]), ("b", &b"b"[..]));
}

#[tokio::test]
async fn counts_now_counts_the_events_in_memory_and_in_the_tree_once_without_settling() {
    let (_dir, store) = open_unsettled();
    // Three events settled into the tree: one queued, one dead, one delivered.
    let a = put(&store, "gh", "a", 1).await;
    let b = put(&store, "gh", "b", 2).await;
    put(&store, "gh", "c", 3).await;
    deliver(&store, a, 4).await;
    kill(&store, b, 5).await;
    store.backend.settle(true).expect("settle");
    // Four more in memory: two queued, one dead, one delivered.
    let d = put(&store, "gh", "d", 6).await;
    let e = put(&store, "gh", "e", 7).await;
    put(&store, "gh", "f", 8).await;
    put(&store, "gh", "g", 9).await;
    deliver(&store, d, 10).await;
    kill(&store, e, 11).await;
    let expected = Counts {
        queued: 3,
        dead: 2,
        delivered: 2,
    };
    assert_eq!(store.counts_now().expect("counts"), expected);
    assert_eq!(store.backend.fresh_events(), 4, "counting settled nothing");
    // Midway through a settle, the events are in the tree and still in memory: counted once.
    store.backend.settle_halfway();
    assert_eq!(store.backend.fresh_events(), 4);
    assert_eq!(store.counts_now().expect("counts"), expected);
    // Settling changes nothing in the count, and `counts` (which settles first) agrees.
    assert_eq!(store.counts().expect("counts"), expected);
    assert_eq!(store.backend.fresh_events(), 0);
    assert_eq!(store.counts_now().expect("counts"), expected);
}

#[tokio::test]
async fn an_event_is_due_for_delivery_only_once_its_log_record_is_durable() {
    let (_dir, store) = open_unsettled();
    // What the commit thread does with an accept before its group's sync has ended.
    let write = store
        .backend
        .prepare_accept(&event("gh", "a", b"1"), 1_000, 2_000)
        .expect("prepare");
    let applied = store
        .backend
        .apply(vec![GroupWrite::Accept(Box::new(write))])
        .expect("apply");
    let [Applied::Accept(Accepted::New(seq))] = applied[..] else {
        panic!("a new event")
    };
    let sync = store
        .backend
        .sync_later()
        .expect("write out")
        .expect("a sync is due");
    let due = store.due("gh", 5_000, 10, &no_skip).expect("due");
    assert!(due.due.is_empty(), "due before its sync ended: {due:?}");
    assert_eq!(due.next_due_ms, None);
    sync().expect("sync");
    let due = store.due("gh", 5_000, 10, &no_skip).expect("due");
    assert_eq!(due.due, vec![Due { seq, due_ms: 1_000 }]);
}

#[tokio::test]
async fn sequence_numbers_are_dense_across_restarts_and_crashes() {
    let (dir, store) = open();
    assert_eq!(accept_at(&store, "a", 1, WINDOW).await, Accepted::New(1));
    assert_eq!(accept_at(&store, "b", 2, WINDOW).await, Accepted::New(2));
    // A duplicate takes no number.
    assert_eq!(accept_at(&store, "b", 3, WINDOW).await, Accepted::Duplicate);
    assert_eq!(accept_at(&store, "c", 4, WINDOW).await, Accepted::New(3));
    // A deleted event's number is not given again.
    let deleting = store.clone();
    assert!(tokio::task::spawn_blocking(move || deleting.delete(3))
        .await
        .expect("join")
        .expect("delete"));
    drop(store);
    let store = SledStore::open(dir.path()).expect("reopen");
    assert_eq!(accept_at(&store, "d", 5, WINDOW).await, Accepted::New(4));
    drop(store);

    // A crash before the events settle: the log has numbers past the tree's.
    let store = SledStore::open_settling_after(dir.path(), Duration::from_secs(3600)).expect("reopen");
    assert_eq!(accept_at(&store, "e", 6, WINDOW).await, Accepted::New(5));
    assert_eq!(accept_at(&store, "f", 7, WINDOW).await, Accepted::New(6));
    store.backend.persist_unsettled().expect("persist");
    let crashed = tempfile::tempdir().expect("temp dir");
    copy_dir(dir.path(), crashed.path());
    drop(store);
    let store = SledStore::open(crashed.path()).expect("reopen after the crash");
    assert_eq!(accept_at(&store, "g", 8, WINDOW).await, Accepted::New(7));
}

#[tokio::test]
async fn the_forwarders_reads_answer_from_memory_and_from_disk_alike() {
    let (_dir, store) = open_unsettled();
    let a = put(&store, "gh", "a", 1).await;
    // Fresh: answered from memory.
    let due = store.due_async("gh", 10, 10, no_skip).await.expect("due");
    assert_eq!(due.due, vec![Due { seq: a, due_ms: 1 }]);
    let (record, body) = store.load_async(a).await.expect("load").expect("fresh");
    assert_eq!((record.event_id.as_str(), &body[..]), ("a", &b"a"[..]));
    // Settled (a read settles first): the tree and the log, on a blocking thread.
    let counting = store.clone();
    tokio::task::spawn_blocking(move || counting.counts())
        .await
        .expect("join")
        .expect("counts");
    assert_eq!(store.backend.fresh_events(), 0);
    let due = store
        .due_async("gh", 10, 10, move |seq| seq == a)
        .await
        .expect("due");
    assert!(due.due.is_empty(), "skipped: {due:?}");
    let due = store.due_async("gh", 10, 10, no_skip).await.expect("due");
    assert_eq!(due.due, vec![Due { seq: a, due_ms: 1 }]);
    let (record, body) = store.load_async(a).await.expect("load").expect("stored");
    assert_eq!((record.event_id.as_str(), &body[..]), ("a", &b"a"[..]));
    assert!(store.load_async(a + 1).await.expect("load").is_none());
}

#[tokio::test]
async fn the_queued_count_is_counted_again_at_open_and_kept_for_settled_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Everything settles at once: attempts then take the tree's path, not the fresh events'.
    let store = SledStore::open_settling_after(dir.path(), Duration::ZERO).expect("open store");
    let mut seqs = Vec::new();
    for id in ["a", "b", "c", "d"] {
        match accept_at(&store, id, 1_000, WINDOW).await {
            Accepted::New(seq) => seqs.push(seq),
            Accepted::Duplicate => panic!("{id} is new"),
        }
    }
    assert_eq!(store.counts().expect("counts").queued, 4, "settled");
    assert_eq!(store.queued(), 4);
    let attempt = |outcome: &str| AttemptRecord {
        at_ms: 2_000,
        status: Some(200),
        outcome: outcome.parse().expect("an attempt result"),
    };
    store
        .record_attempt(seqs[0], attempt("delivered"), NextStep::Delivered)
        .await
        .expect("delivered");
    store
        .record_attempt(
            seqs[1],
            attempt("dead letter: status 400"),
            NextStep::DeadLetter("status 400".into()),
        )
        .await
        .expect("dead");
    assert_eq!(store.queued(), 2);
    // Delivered again, then retried (an earlier forwarder finishing late): queued once more.
    store
        .record_attempt(
            seqs[0],
            attempt("retry in 1s: status 503"),
            NextStep::RetryAt(3_000),
        )
        .await
        .expect("retried");
    assert_eq!(store.queued(), 3);
    assert_eq!(store.counts().expect("counts").queued, 3);
    store.flush().await.expect("flush");
    drop(store);
    let store = SledStore::open(dir.path()).expect("reopen");
    assert_eq!(store.queued(), 3, "counted from the schedule at open");
}
