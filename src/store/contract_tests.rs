//! The store contract's tests: one set, run against every backend.
//!
//! Each test is an `async fn(&Store)` that knows nothing of the backend; `contract_tests!` at the
//! bottom instantiates every one of them once per backend, in a module named after it
//! (`store::contract_tests::sled::...`). What only one backend promises (sled's event log and
//! settling, PostgreSQL's leases across replicas) is tested in that backend's folder.
//!
//! [`Store::due`] claims: a backend may withhold an event that it returned until it is released,
//! recorded or its lease ends (PostgreSQL does, sled does not, since its forwarder passes what it
//! claimed in `skip`). The tests therefore release what they claimed before claiming again.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::*;

const WINDOW: Duration = Duration::from_secs(72 * 3600);
/// The lease the tests claim with: longer than any test.
const LEASE: Duration = Duration::from_secs(600);

/// A store under test and what must outlive it (its directory, its database).
pub(super) struct Subject {
    pub(super) store: Store,
    // Dropped after the store (fields drop in order).
    _keep: Box<dyn std::any::Any + Send>,
}

/// A sled store in a directory of its own.
async fn sled() -> Subject {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open store");
    Subject {
        store,
        _keep: Box::new(dir),
    }
}

/// A PostgreSQL store in a database of its own, dropped after the test.
async fn postgres() -> Subject {
    let db = crate::store::postgres::testdb::TestDatabase::create().await;
    let store = Store::open_postgres(db.url(), 4).await.expect("open store");
    Subject {
        store,
        _keep: Box::new(db),
    }
}

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

/// Accepts event `id` of source `gh`, with an empty body, at `ms` with dedup window `window`.
async fn accept_at(store: &Store, id: &str, ms: u64, window: Duration) -> Accepted {
    store
        .accept(&event("gh", id, b""), at(ms), window)
        .await
        .expect("accept")
}

/// Accepts event `id` of `source` at `ms`; returns its sequence number.
async fn put(store: &Store, source: &str, id: &str, ms: u64) -> u64 {
    match store
        .accept(&event(source, id, id.as_bytes()), at(ms), WINDOW)
        .await
        .expect("accept")
    {
        Accepted::New(seq) => seq,
        Accepted::Duplicate => panic!("{source}/{id} is new"),
    }
}

/// Claims what is due and gives it back at once: what a forwarder would see now.
async fn due_now(store: &Store, source: &str, until_ms: u64, limit: usize, skip: &[u64]) -> DueBatch {
    let batch = store
        .due(source, until_ms, limit, skip.iter().copied().collect(), LEASE)
        .await
        .expect("due");
    store
        .release(batch.due.iter().map(|d| d.seq).collect())
        .await
        .expect("release");
    batch
}

fn due_seqs(batch: &DueBatch) -> Vec<u64> {
    batch.due.iter().map(|d| d.seq).collect()
}

fn attempt_at(ms: u64, status: u16, outcome: &str) -> AttemptRecord {
    AttemptRecord {
        at_ms: ms,
        status: Some(status),
        outcome: outcome.parse().expect("an attempt result"),
    }
}

async fn deliver(store: &Store, seq: u64, ms: u64) {
    store
        .record_attempt(seq, attempt_at(ms, 200, "delivered"), NextStep::Delivered)
        .await
        .expect("delivered");
}

async fn kill(store: &Store, seq: u64, ms: u64) {
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
        ..EventQuery::default()
    }
}

/// gh: q1 (queued), d1 (delivered), x1 (dead); stripe: q2 (queued), x2 (dead); received 1 s apart.
async fn populate(store: &Store) -> [u64; 5] {
    let q1 = put(store, "gh", "q1", 1_000).await;
    let d1 = put(store, "gh", "d1", 2_000).await;
    let x1 = put(store, "gh", "x1", 3_000).await;
    let q2 = put(store, "stripe", "q2", 4_000).await;
    let x2 = put(store, "stripe", "x2", 5_000).await;
    deliver(store, d1, 6_000).await;
    kill(store, x1, 6_000).await;
    kill(store, x2, 6_000).await;
    [q1, d1, x1, q2, x2]
}

// === dedup ===

async fn dedup_is_per_source_and_within_the_window(store: &Store) {
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
    assert_eq!(store.counts().await.expect("counts").queued, 3);
}

async fn purge_removes_only_expired_marks(store: &Store) {
    let window = Duration::from_secs(10);
    accept_at(store, "old", 1_000, window).await;
    accept_at(store, "new", 50_000, window).await;
    assert_eq!(store.purge_expired(at(20_000)).await.expect("purge"), 1);
    assert_eq!(store.purge_expired(at(20_000)).await.expect("purge"), 0);
    // "new" is still remembered, "old" is not.
    assert_eq!(accept_at(store, "new", 20_000, window).await, Accepted::Duplicate);
    assert!(matches!(
        accept_at(store, "old", 20_000, window).await,
        Accepted::New(_)
    ));
}

async fn a_renewed_mark_survives_the_purge_of_its_expired_predecessor(store: &Store) {
    let window = Duration::from_secs(10);
    accept_at(store, "a", 0, window).await;
    // Expired at 10 s, accepted again at 15 s: the new mark expires at 25 s.
    assert!(matches!(
        accept_at(store, "a", 15_000, window).await,
        Accepted::New(_)
    ));
    store.purge_expired(at(16_000)).await.expect("purge");
    assert_eq!(accept_at(store, "a", 16_000, window).await, Accepted::Duplicate);
}

async fn concurrent_copies_of_one_event_are_stored_once(store: &Store) {
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        let store = store.clone();
        // Eight copies of each of four ids, most of them in the same groups.
        let id = format!("id-{}", i % 4);
        tasks.push(tokio::spawn(async move {
            store.accept(&event("gh", &id, b"{}"), at(1), WINDOW).await
        }));
    }
    let mut new = 0;
    for t in tasks {
        if let Accepted::New(_) = t.await.expect("task").expect("durable") {
            new += 1;
        }
    }
    assert_eq!(new, 4, "one new copy per id");
    assert_eq!(store.counts().await.expect("counts").queued, 4);
}

async fn sequence_numbers_follow_acceptance_and_a_duplicate_takes_none(store: &Store) {
    let a = put(store, "gh", "a", 1).await;
    assert_eq!(accept_at(store, "a", 2, WINDOW).await, Accepted::Duplicate);
    let b = put(store, "gh", "b", 3).await;
    assert_eq!(b, a + 1);
    let (record, body) = store.load(b).await.expect("load").expect("stored");
    assert_eq!((record.event_id.as_str(), &body[..]), ("b", &b"b"[..]));
}

// === the queue ===

async fn queue_lifecycle_retry_deliver_dead_letter(store: &Store) {
    let t0 = 1_000_000;
    let a = put(store, "gh", "a", t0).await;
    let b = put(store, "gh", "b", t0 + 1).await;
    put(store, "other", "c", t0).await;

    let batch = due_now(store, "gh", t0 + 10, 10, &[]).await;
    assert_eq!(due_seqs(&batch), [a, b]);
    assert_eq!(batch.next_due_ms, None);
    assert_eq!(due_seqs(&due_now(store, "gh", t0 + 10, 10, &[a]).await), [b]);
    assert_eq!(due_now(store, "gh", t0 + 10, 1, &[]).await.due.len(), 1);

    let (record, body) = store.load(a).await.expect("load").expect("present");
    assert_eq!(body, &b"a"[..]);
    assert_eq!(record.source, "gh");
    assert_eq!(record.event_id, "a");
    assert_eq!(record.method, "POST");
    assert_eq!(record.received_at_ms, t0);
    assert!(record.verified);
    assert_eq!(record.query.as_deref(), Some("a=1"));
    assert_eq!(
        record.headers,
        vec![("x-github-delivery".to_string(), b"a".to_vec())]
    );
    assert_eq!(record.state, EventState::Queued { due_ms: t0 });

    let retry = attempt_at(t0 + 20, 503, "retry in 5s: status 503");
    store
        .record_attempt(a, retry.clone(), NextStep::RetryAt(t0 + 5_000))
        .await
        .expect("retry");
    let batch = due_now(store, "gh", t0 + 20, 10, &[]).await;
    assert_eq!(due_seqs(&batch), [b]);
    assert_eq!(batch.next_due_ms, Some(t0 + 5_000));

    store
        .record_attempt(
            b,
            attempt_at(t0 + 20, 400, "dead letter: status 400"),
            NextStep::DeadLetter("status 400".into()),
        )
        .await
        .expect("dead");
    store
        .record_attempt(a, attempt_at(t0 + 30, 200, "delivered"), NextStep::Delivered)
        .await
        .expect("delivered");
    let (kept, body) = store
        .load(a)
        .await
        .expect("load")
        .expect("a delivered event is kept");
    assert_eq!(kept.state, EventState::Delivered { at_ms: t0 + 30 });
    assert_eq!(
        kept.attempts,
        [retry, attempt_at(t0 + 30, 200, "delivered")],
        "with its history, oldest first"
    );
    assert_eq!(body, &b"a"[..], "and its body");
    assert!(due_now(store, "gh", u64::MAX, 10, &[]).await.due.is_empty());

    let dead = store
        .list(&query(None, Some(StateFilter::Dead), None, 10))
        .await
        .expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, b);
    assert_eq!(
        dead[0].1.state,
        EventState::Dead {
            reason: "status 400".into()
        }
    );
    assert_eq!(dead[0].1.attempts.len(), 1);
    assert_eq!(
        store.counts().await.expect("counts"),
        Counts {
            queued: 1,
            dead: 1,
            delivered: 1
        }
    );
    assert_eq!(
        store.counts_now().await.expect("counts"),
        store.counts().await.expect("counts")
    );
}

async fn a_claimed_event_is_claimed_again_once_released_or_retried(store: &Store) {
    let a = put(store, "gh", "a", 1_000).await;
    let b = put(store, "gh", "b", 2_000).await;
    let claimed = store
        .due("gh", 10_000, 10, HashSet::new(), LEASE)
        .await
        .expect("due");
    assert_eq!(due_seqs(&claimed), [a, b]);
    // What the forwarder has claimed it passes in `skip`: never claimed twice.
    let again = store
        .due("gh", 10_000, 10, [a, b].into_iter().collect(), LEASE)
        .await
        .expect("due");
    assert!(again.due.is_empty(), "{again:?}");
    store.release(vec![a]).await.expect("release");
    store
        .record_attempt(
            b,
            attempt_at(3_000, 503, "retry in 1s: status 503"),
            NextStep::RetryAt(4_000),
        )
        .await
        .expect("retry");
    let batch = due_now(store, "gh", 10_000, 10, &[]).await;
    assert_eq!(due_seqs(&batch), [a, b], "due again, oldest due first");
    assert_eq!(batch.due[1].due_ms, 4_000);
}

async fn accepting_a_new_event_wakes_its_sources_forwarder_and_a_duplicate_does_not(store: &Store) {
    use futures_util::FutureExt as _;

    let (gh, stripe) = (store.waker("gh"), store.waker("stripe"));
    assert!(matches!(
        accept_at(store, "a", 1_000, WINDOW).await,
        Accepted::New(_)
    ));
    assert!(eventually_notified(&gh).await, "the accept woke gh's forwarder");
    assert!(
        stripe.notified().now_or_never().is_none(),
        "and no other source's"
    );
    assert_eq!(accept_at(store, "a", 2_000, WINDOW).await, Accepted::Duplicate);
    assert!(
        gh.notified().now_or_never().is_none(),
        "a duplicate queues nothing, so it wakes nothing"
    );
    // A source's first event wakes a forwarder that asked for its waker only afterwards, too: the
    // permit waits in the store's `Notify`.
    assert!(matches!(
        store.accept(&event("new", "b", b""), at(3_000), WINDOW).await,
        Ok(Accepted::New(_))
    ));
    assert!(eventually_notified(&store.waker("new")).await);
}

/// Whether `waker` is notified within 10 s (a network backend's wake-up may come back through
/// the database).
async fn eventually_notified(waker: &tokio::sync::Notify) -> bool {
    tokio::time::timeout(Duration::from_secs(10), waker.notified())
        .await
        .is_ok()
}

// === the admin API's operations ===

async fn until_bounds_a_time_window_and_before_pages_newest_first(store: &Store) {
    let [q1, d1, x1, q2, x2] = populate(store).await;
    let list = |q: EventQuery| async move { seqs(store.list(&q).await.expect("list")) };
    let window = |since_ms, until_ms, state| EventQuery {
        since_ms,
        until_ms,
        state,
        ..EventQuery::default()
    };
    assert_eq!(
        list(window(None, Some(3_000), None)).await,
        [d1, q1],
        "until is exclusive"
    );
    assert_eq!(list(window(Some(2_000), Some(5_000), None)).await, [q2, x1, d1]);
    assert_eq!(
        list(window(Some(2_000), Some(5_000), Some(StateFilter::Dead))).await,
        [x1]
    );
    assert_eq!(
        list(window(Some(5_000), Some(5_000), None)).await,
        Vec::<u64>::new()
    );
    // Paging: each page starts below the last id of the one before.
    let page = |before_seq, state| EventQuery {
        before_seq,
        state,
        limit: 2,
        ..EventQuery::default()
    };
    assert_eq!(list(page(None, None)).await, [x2, q2]);
    assert_eq!(list(page(Some(q2), None)).await, [x1, d1]);
    assert_eq!(list(page(Some(d1), None)).await, [q1]);
    assert_eq!(list(page(Some(q1), None)).await, Vec::<u64>::new());
    assert_eq!(list(page(Some(x2), Some(StateFilter::Dead))).await, [x1]);
    // A bulk replay and a purge take the window too.
    let replayed = store
        .replay_where(
            &window(Some(4_000), Some(6_000), Some(StateFilter::Dead)),
            at(7_000),
        )
        .await
        .expect("replay");
    assert_eq!(replayed, 1, "x2 only");
    let purged = store
        .purge_dead(&window(None, Some(4_000), None))
        .await
        .expect("purge");
    assert_eq!(purged, 1, "x1 only");
    assert_eq!(
        list(window(None, None, Some(StateFilter::Dead))).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        list(window(None, None, Some(StateFilter::Queued))).await,
        [x2, q2, q1]
    );
}

async fn list_filters_by_source_state_and_since_newest_first(store: &Store) {
    let [q1, d1, x1, q2, x2] = populate(store).await;
    let all = store.list(&EventQuery::default()).await.expect("list");
    assert_eq!(seqs(all), [x2, q2, x1, d1, q1]);
    let list = |q: EventQuery| async move { seqs(store.list(&q).await.expect("list")) };
    assert_eq!(list(query(Some("gh"), None, None, 100)).await, [x1, d1, q1]);
    assert_eq!(
        list(query(None, Some(StateFilter::Queued), None, 100)).await,
        [q2, q1]
    );
    assert_eq!(
        list(query(None, Some(StateFilter::Dead), None, 100)).await,
        [x2, x1]
    );
    assert_eq!(
        list(query(None, Some(StateFilter::Delivered), None, 100)).await,
        [d1]
    );
    assert_eq!(
        list(query(Some("stripe"), Some(StateFilter::Dead), None, 100)).await,
        [x2]
    );
    assert_eq!(
        list(query(Some("gh"), Some(StateFilter::Queued), None, 100)).await,
        [q1]
    );
    assert_eq!(
        list(query(None, None, Some(3_000), 100)).await,
        [x2, q2, x1],
        "since is inclusive"
    );
    assert_eq!(
        list(query(None, Some(StateFilter::Dead), Some(4_000), 100)).await,
        [x2]
    );
    assert_eq!(
        list(query(None, None, None, 2)).await,
        [x2, q2],
        "limit keeps the newest"
    );
    assert_eq!(list(query(None, None, None, 0)).await, Vec::<u64>::new());
    assert_eq!(
        list(query(Some("nope"), None, None, 100)).await,
        Vec::<u64>::new()
    );
}

async fn replay_requeues_due_now_keeps_history_and_wakes_the_forwarder(store: &Store) {
    let [q1, d1, x1, _q2, _x2] = populate(store).await;
    let waker = store.waker("gh");
    assert!(Arc::ptr_eq(&waker, &store.waker("gh")), "one waker per source");
    let now = 10_000;
    assert!(store.replay(x1, at(now)).await.expect("replay dead"));
    assert!(eventually_notified(&waker).await, "the replay woke the forwarder");
    let (record, body) = store.load(x1).await.expect("load").expect("present");
    assert_eq!(record.state, EventState::Queued { due_ms: now });
    assert_eq!(
        record.attempts.len(),
        1,
        "the history is kept: the attempt counter continues"
    );
    assert_eq!(body, &b"x1"[..]);

    assert!(store.replay(d1, at(now)).await.expect("replay delivered"));
    store
        .record_attempt(
            q1,
            attempt_at(7_000, 503, "retry in 1s: status 503"),
            NextStep::RetryAt(99_000),
        )
        .await
        .expect("retry later");
    assert!(store.replay(q1, at(now)).await.expect("replay queued"));
    let mut due = due_seqs(&due_now(store, "gh", now, 10, &[]).await);
    due.sort_unstable();
    assert_eq!(due, [q1, d1, x1], "all due now, the retry at 99 s is gone");
    assert_eq!(
        store.counts_by_source().await.expect("counts")["gh"],
        Counts {
            queued: 3,
            dead: 0,
            delivered: 0
        }
    );
    assert!(!store.replay(999_999, at(now)).await.expect("unknown"));
}

async fn replay_where_selects_by_source_state_and_since(store: &Store) {
    let [_q1, d1, x1, _q2, x2] = populate(store).await;
    let dead = |source: Option<&str>, since_ms| query(source, Some(StateFilter::Dead), since_ms, usize::MAX);
    let state = |seq| async move { store.load(seq).await.expect("load").expect("stored").0.state };
    assert_eq!(
        store
            .replay_where(&dead(Some("gh"), None), at(10_000))
            .await
            .expect("replay"),
        1
    );
    assert!(matches!(state(x1).await, EventState::Queued { .. }));
    assert!(matches!(state(x2).await, EventState::Dead { .. }));
    assert_eq!(
        store
            .replay_where(&dead(None, Some(5_001)), at(10_000))
            .await
            .expect("replay"),
        0,
        "x2 is older"
    );
    assert_eq!(
        store
            .replay_where(&dead(None, Some(5_000)), at(10_000))
            .await
            .expect("replay"),
        1
    );
    let delivered = query(None, Some(StateFilter::Delivered), None, usize::MAX);
    assert_eq!(
        store.replay_where(&delivered, at(10_000)).await.expect("replay"),
        1
    );
    assert!(matches!(state(d1).await, EventState::Queued { .. }));
    assert_eq!(
        store.counts().await.expect("counts"),
        Counts {
            queued: 5,
            dead: 0,
            delivered: 0
        }
    );
}

async fn delete_removes_any_event_and_keeps_its_dedup_mark(store: &Store) {
    let [q1, d1, x1, _q2, _x2] = populate(store).await;
    for seq in [q1, d1, x1] {
        assert!(store.delete(seq).await.expect("delete"));
        assert!(store.load(seq).await.expect("load").is_none());
        assert!(!store.delete(seq).await.expect("delete again"), "already gone");
    }
    assert_eq!(store.counts_by_source().await.expect("counts").get("gh"), None);
    assert!(due_now(store, "gh", u64::MAX, 10, &[]).await.due.is_empty());
    let again = store
        .accept(&event("gh", "q1", b""), at(20_000), WINDOW)
        .await
        .expect("accept");
    assert_eq!(again, Accepted::Duplicate, "the dedup mark stays");
}

async fn purge_dead_removes_only_matching_dead_letters(store: &Store) {
    let [q1, d1, x1, q2, x2] = populate(store).await;
    let only_dead = |source: Option<&str>, since_ms| query(source, None, since_ms, usize::MAX);
    assert_eq!(
        store
            .purge_dead(&only_dead(Some("stripe"), None))
            .await
            .expect("purge"),
        1
    );
    assert!(store.load(x2).await.expect("load").is_none());
    assert_eq!(
        store
            .purge_dead(&only_dead(None, Some(3_001)))
            .await
            .expect("purge"),
        0
    );
    // A state in the query is ignored: only dead letters are purged.
    let everything = query(None, Some(StateFilter::Queued), None, usize::MAX);
    assert_eq!(store.purge_dead(&everything).await.expect("purge"), 1);
    assert!(store.load(x1).await.expect("load").is_none());
    for seq in [q1, d1, q2] {
        assert!(
            store.load(seq).await.expect("load").is_some(),
            "{seq} is not a dead letter"
        );
    }
}

async fn retention_purges_delivered_events_only_once_old_enough(store: &Store) {
    let old = put(store, "gh", "old", 1_000).await;
    let recent = put(store, "gh", "recent", 1_000).await;
    let queued = put(store, "gh", "queued", 1_000).await;
    let dead = put(store, "gh", "dead", 1_000).await;
    let replayed = put(store, "gh", "replayed", 1_000).await;
    deliver(store, old, 10_000).await;
    deliver(store, recent, 20_000).await;
    kill(store, dead, 10_000).await;
    deliver(store, replayed, 10_000).await;
    assert!(store.replay(replayed, at(11_000)).await.expect("replay"));

    assert_eq!(
        store.purge_delivered(10_000).await.expect("purge"),
        0,
        "delivered at 10 s is not older than 10 s"
    );
    assert_eq!(store.purge_delivered(15_000).await.expect("purge"), 1);
    assert!(store.load(old).await.expect("load").is_none());
    assert!(store.load(recent).await.expect("load").is_some());
    assert_eq!(store.purge_delivered(u64::MAX).await.expect("purge"), 1);
    assert!(store.load(recent).await.expect("load").is_none());
    for seq in [queued, dead, replayed] {
        assert!(
            store.load(seq).await.expect("load").is_some(),
            "{seq} is not delivered: never purged"
        );
    }
    assert_eq!(
        store.counts().await.expect("counts"),
        Counts {
            queued: 2,
            dead: 1,
            delivered: 0
        }
    );
}

async fn counts_by_source(store: &Store) {
    populate(store).await;
    let counts = store.counts_by_source().await.expect("counts");
    assert_eq!(counts.len(), 2);
    assert_eq!(
        counts["gh"],
        Counts {
            queued: 1,
            dead: 1,
            delivered: 1
        }
    );
    assert_eq!(
        counts["stripe"],
        Counts {
            queued: 1,
            dead: 1,
            delivered: 0
        }
    );
}

/// The count `queued()` keeps, checked against a real count after every move.
async fn assert_queued(store: &Store, expected: u64, after: &str) {
    assert_eq!(store.queued(), expected, "queued() after {after}");
    assert_eq!(
        store.counts().await.expect("counts").queued,
        expected,
        "counts() after {after}"
    );
}

async fn the_queued_count_follows_every_move_in_and_out_of_the_queue(store: &Store) {
    assert_queued(store, 0, "opening").await;
    let [q1, d1, x1, q2, x2] = populate(store).await;
    assert_queued(store, 2, "five accepted, one delivered, two dead").await;
    assert_eq!(accept_at(store, "q1", 7_000, WINDOW).await, Accepted::Duplicate);
    assert_queued(store, 2, "a duplicate").await;
    store
        .record_attempt(
            q1,
            attempt_at(7_000, 503, "retry in 1s: status 503"),
            NextStep::RetryAt(8_000),
        )
        .await
        .expect("retry");
    assert_queued(store, 2, "a retry").await;
    assert!(store.replay(x1, at(9_000)).await.expect("replay"));
    assert_queued(store, 3, "a dead letter replayed").await;
    assert!(store.replay(q1, at(9_000)).await.expect("replay"));
    assert_queued(store, 3, "a queued event replayed").await;
    assert!(store.replay(d1, at(9_000)).await.expect("replay"));
    assert_queued(store, 4, "a delivered event replayed").await;
    assert!(store.delete(q2).await.expect("delete"));
    assert_queued(store, 3, "a queued event deleted").await;
    assert_eq!(store.purge_dead(&EventQuery::default()).await.expect("purge"), 1);
    assert!(!store.delete(x2).await.expect("delete"), "purged already");
    assert_queued(store, 3, "a dead letter purged").await;
    for seq in [q1, d1, x1] {
        deliver(store, seq, 10_000).await;
    }
    assert_queued(store, 0, "every queued event delivered").await;
    assert!(
        store
            .replay_where(&EventQuery::default(), at(11_000))
            .await
            .expect("replay")
            >= 3
    );
    assert_queued(store, 3, "every stored event replayed").await;
    assert_eq!(store.purge_delivered(u64::MAX).await.expect("purge"), 0);
    assert_queued(store, 3, "a retention purge (nothing delivered)").await;
}

async fn a_duplicate_only_accept_answers_a_seen_id_and_stores_nothing(store: &Store) {
    put(store, "gh", "seen", 1_000).await;
    assert!(store
        .accept_duplicate(&event("gh", "seen", b"seen"), at(2_000))
        .await
        .expect("answered"));
    // A new id is answered "not a duplicate", and nothing of it is stored: not even its mark.
    assert!(!store
        .accept_duplicate(&event("gh", "new", b"new"), at(2_000))
        .await
        .expect("answered"));
    assert_queued(store, 1, "duplicate-only accepts").await;
    assert_eq!(store.list(&EventQuery::default()).await.expect("list").len(), 1);
    assert!(matches!(
        accept_at(store, "new", 3_000, WINDOW).await,
        Accepted::New(_)
    ));
    // Past its window, the seen id is no duplicate any more.
    assert!(!store
        .accept_duplicate(
            &event("gh", "seen", b"seen"),
            at(1_000 + WINDOW.as_millis() as u64 + 1)
        )
        .await
        .expect("answered"));
}

async fn a_ready_store_answers_readiness(store: &Store) {
    assert_eq!(store.readiness().await, Ok(()));
    store.flush().await.expect("flush");
}

#[test]
fn the_retention_loop_looks_often_enough() {
    assert_eq!(
        retention_period(Duration::from_secs(24 * 3600)),
        Duration::from_secs(60)
    );
    assert_eq!(
        retention_period(Duration::from_secs(1)),
        Duration::from_millis(250)
    );
    assert_eq!(
        retention_period(Duration::from_millis(10)),
        Duration::from_millis(50)
    );
}

/// Instantiates each named contract test in a module named after the backend, with the store that
/// `$open().await` gives.
macro_rules! instantiate {
    ($backend:ident => $open:path; $($test:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let subject = $open().await;
                    super::$test(&subject.store).await;
                }
            )+
        }
    };
}

/// The contract suite for one backend: every contract test, instantiated by [`instantiate`].
macro_rules! contract_suite {
    ($backend:ident => $open:path) => {
        instantiate! {
            $backend => $open;
            dedup_is_per_source_and_within_the_window,
            purge_removes_only_expired_marks,
            a_renewed_mark_survives_the_purge_of_its_expired_predecessor,
            concurrent_copies_of_one_event_are_stored_once,
            sequence_numbers_follow_acceptance_and_a_duplicate_takes_none,
            queue_lifecycle_retry_deliver_dead_letter,
            a_claimed_event_is_claimed_again_once_released_or_retried,
            accepting_a_new_event_wakes_its_sources_forwarder_and_a_duplicate_does_not,
            list_filters_by_source_state_and_since_newest_first,
            until_bounds_a_time_window_and_before_pages_newest_first,
            replay_requeues_due_now_keeps_history_and_wakes_the_forwarder,
            replay_where_selects_by_source_state_and_since,
            delete_removes_any_event_and_keeps_its_dedup_mark,
            purge_dead_removes_only_matching_dead_letters,
            retention_purges_delivered_events_only_once_old_enough,
            counts_by_source,
            the_queued_count_follows_every_move_in_and_out_of_the_queue,
            a_duplicate_only_accept_answers_a_seen_id_and_stores_nothing,
            a_ready_store_answers_readiness,
        }
    };
}

contract_suite!(sled => super::sled);
contract_suite!(postgres => super::postgres);
