//! The accept path's group commit: the accepts that wait while transactions are under way go into
//! the next transaction together, each writing its dedup mark and, if the id is new, its queued event.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{get, ms, pg_error, retryable, timed, PgStore, QueuedCount, CHANNEL};
use crate::store::{unix_ms, Accepted, NewEvent, StoreError, Wakers};

/// How many accepts may wait for the committer.
pub(super) const QUEUE: usize = 4096;
/// The most accepts in one transaction.
const MAX_BATCH: usize = 512;
/// The most group transactions under way at once (bounded by half the pool too).
pub(super) const MAX_IN_FLIGHT: usize = 4;
/// How often a transaction that hit a deadlock or a serialization failure is run again.
const ATTEMPTS: usize = 3;

/// One accept waiting for its transaction.
pub(super) struct Pending {
    source: String,
    event_id: String,
    method: String,
    query: Option<String>,
    headers: Vec<u8>,
    body: bytes::Bytes,
    verified: bool,
    now_ms: i64,
    expires_ms: i64,
    reply: oneshot::Sender<Result<Accepted, Arc<StoreError>>>,
}

/// What the group transactions need.
#[derive(Clone)]
pub(super) struct Committer {
    pub(super) pool: Pool,
    pub(super) wakers: Wakers,
    pub(super) queued: Arc<QueuedCount>,
    pub(super) replica: Arc<str>,
}

impl PgStore {
    /// Accepts `event` at `now` within dedup window `window` (see [`crate::store::Store::accept`]).
    pub(crate) async fn accept(
        &self,
        event: &NewEvent<'_>,
        now: SystemTime,
        window: Duration,
    ) -> Result<Accepted, StoreError> {
        let now_ms = unix_ms(now);
        let headers = postcard::to_stdvec(&event.headers).map_err(|e| StoreError::Backend(Box::new(e)))?;
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            source: event.source.to_owned(),
            event_id: event.event_id.to_owned(),
            method: event.method.to_owned(),
            query: event.query.map(str::to_owned),
            headers,
            body: event.body.clone(),
            verified: event.verified,
            now_ms: ms(now_ms),
            expires_ms: ms(now_ms.saturating_add(window.as_millis() as u64)),
            reply,
        };
        self.inner
            .accepts
            .send(pending)
            .await
            .map_err(|_| StoreError::Stopped)?;
        match answer.await {
            Ok(Ok(accepted)) => Ok(accepted),
            Ok(Err(e)) => Err(StoreError::Commit(e)),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    /// Whether `event`'s id has a live mark at `now` (see [`crate::store::Store::accept_duplicate`]).
    pub(crate) async fn accept_duplicate(
        &self,
        event: &NewEvent<'_>,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let now_ms = ms(unix_ms(now));
        timed(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT 1 FROM hookgate.marks WHERE source = $1 AND event_id = $2 AND expires_ms > $3",
                )
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(&statement, &[&event.source, &event.event_id, &now_ms])
                .await
                .map_err(pg_error)?;
            Ok(!rows.is_empty())
        })
        .await
    }
}

/// Takes the waiting accepts in batches, at most `in_flight` transactions at once, until every
/// sender is gone.
pub(super) async fn commit_loop(
    committer: Committer,
    mut pending: mpsc::Receiver<Pending>,
    in_flight: usize,
) {
    let permits = Arc::new(Semaphore::new(in_flight));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = pending.recv().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match pending.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let committer = committer.clone();
        tokio::spawn(async move {
            committer.commit(batch).await;
            drop(permit);
        });
    }
}

impl Committer {
    /// Commits one batch and answers each of its accepts.
    async fn commit(&self, batch: Vec<Pending>) {
        // The first copy of each (source, event id) in the batch is written; later copies are
        // duplicates of it, answered once it is committed.
        let mut first: HashMap<(&str, &str), usize> = HashMap::new();
        let mut unique = Vec::new();
        for (i, p) in batch.iter().enumerate() {
            first
                .entry((p.source.as_str(), p.event_id.as_str()))
                .or_insert_with(|| {
                    unique.push(i);
                    i
                });
        }
        let mut result = Err(StoreError::Stopped);
        for attempt in 1..=ATTEMPTS {
            result = timed(self.transaction(&batch, &unique)).await;
            match &result {
                Err(StoreError::Backend(e)) if attempt < ATTEMPTS => {
                    if e.downcast_ref::<tokio_postgres::Error>().is_some_and(retryable) {
                        continue;
                    }
                    break;
                }
                _ => break,
            }
        }
        match result {
            Ok(seqs) => {
                let new = seqs.iter().filter(|s| s.is_some()).count();
                self.queued.add(new as i64);
                let mut answers = vec![Accepted::Duplicate; batch.len()];
                for (&i, seq) in unique.iter().zip(&seqs) {
                    if let Some(seq) = seq {
                        answers[i] = Accepted::New(*seq);
                    }
                }
                for (p, answer) in batch.into_iter().zip(answers) {
                    if let Accepted::New(_) = answer {
                        self.wakers.wake(&p.source);
                    }
                    let _ = p.reply.send(Ok(answer));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for p in batch {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// The batch's transaction: for each of `unique` (indexes into `batch`), its sequence number if
    /// it was new, `None` if its id has a live mark.
    async fn transaction(&self, batch: &[Pending], unique: &[usize]) -> Result<Vec<Option<u64>>, StoreError> {
        let mut client = get(&self.pool).await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let sources: Vec<&str> = unique.iter().map(|&i| batch[i].source.as_str()).collect();
        let ids: Vec<&str> = unique.iter().map(|&i| batch[i].event_id.as_str()).collect();
        let nows: Vec<i64> = unique.iter().map(|&i| batch[i].now_ms).collect();
        let expiries: Vec<i64> = unique.iter().map(|&i| batch[i].expires_ms).collect();
        // An expired mark no longer counts: it goes, so that the insert below takes the id as new.
        let unmark = tx
            .prepare_cached(
                "DELETE FROM hookgate.marks m \
                 USING unnest($1::text[], $2::text[], $3::int8[]) AS k(source, event_id, now_ms) \
                 WHERE m.source = k.source AND m.event_id = k.event_id AND m.expires_ms <= k.now_ms",
            )
            .await
            .map_err(pg_error)?;
        tx.execute(&unmark, &[&sources, &ids, &nows])
            .await
            .map_err(pg_error)?;
        // In one order across every transaction (of every replica), so that two batches holding the
        // same ids in another order wait for each other instead of deadlocking.
        let mark = tx
            .prepare_cached(
                "INSERT INTO hookgate.marks (source, event_id, expires_ms) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) AS k(source, event_id, expires_ms) \
                 ORDER BY k.source COLLATE \"C\", k.event_id COLLATE \"C\" \
                 ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id",
            )
            .await
            .map_err(pg_error)?;
        let marked = tx
            .query(&mark, &[&sources, &ids, &expiries])
            .await
            .map_err(pg_error)?;
        let mut seqs = vec![None; unique.len()];
        if marked.is_empty() {
            tx.commit().await.map_err(pg_error)?;
            return Ok(seqs);
        }
        let marked: std::collections::HashSet<(String, String)> =
            marked.iter().map(|r| (r.get(0), r.get(1))).collect();
        // The new events in the order they came, so that sequence numbers follow acceptance.
        let new: Vec<usize> = (0..unique.len())
            .filter(|&k| marked.contains(&(sources[k].to_owned(), ids[k].to_owned())))
            .collect();
        let n_sources: Vec<&str> = new.iter().map(|&k| sources[k]).collect();
        let n_ids: Vec<&str> = new.iter().map(|&k| ids[k]).collect();
        let n_received: Vec<i64> = new.iter().map(|&k| nows[k]).collect();
        let n_methods: Vec<&str> = new.iter().map(|&k| batch[unique[k]].method.as_str()).collect();
        let n_queries: Vec<Option<&str>> = new.iter().map(|&k| batch[unique[k]].query.as_deref()).collect();
        let n_headers: Vec<&[u8]> = new.iter().map(|&k| &batch[unique[k]].headers[..]).collect();
        let n_bodies: Vec<&[u8]> = new.iter().map(|&k| &batch[unique[k]].body[..]).collect();
        let n_verified: Vec<bool> = new.iter().map(|&k| batch[unique[k]].verified).collect();
        let insert = tx
            .prepare_cached(
                "INSERT INTO hookgate.events \
                 (source, event_id, received_at_ms, method, query, headers, body, verified, state, due_ms) \
                 SELECT s, e, r, m, q, h, b, v, 0, r FROM unnest($1::text[], $2::text[], $3::int8[], \
                 $4::text[], $5::text[], $6::bytea[], $7::bytea[], $8::bool[]) WITH ORDINALITY \
                 AS u(s, e, r, m, q, h, b, v, n) ORDER BY n RETURNING seq",
            )
            .await
            .map_err(pg_error)?;
        let inserted = tx
            .query(
                &insert,
                &[
                    &n_sources,
                    &n_ids,
                    &n_received,
                    &n_methods,
                    &n_queries,
                    &n_headers,
                    &n_bodies,
                    &n_verified,
                ],
            )
            .await
            .map_err(pg_error)?;
        if inserted.len() != new.len() {
            return Err(StoreError::Corrupt { what: "batch insert" });
        }
        // RETURNING gives the rows in insertion order, which is `new`'s order; sequence numbers grow
        // with it, so sorting them restores the pairing even if the server reordered the output.
        let mut got: Vec<i64> = inserted.iter().map(|r| r.get(0)).collect();
        got.sort_unstable();
        for (&k, seq) in new.iter().zip(got) {
            seqs[k] = Some(seq as u64);
        }
        let mut woken: Vec<&str> = n_sources.clone();
        woken.sort_unstable();
        woken.dedup();
        let payloads: Vec<String> = woken.iter().map(|s| format!("{} {s}", self.replica)).collect();
        let notify = tx
            .prepare_cached("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
            .await
            .map_err(pg_error)?;
        tx.execute(&notify, &[&CHANNEL, &payloads])
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(seqs)
    }
}
