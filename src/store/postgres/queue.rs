//! The forwarders' side: claims with `FOR UPDATE SKIP LOCKED` and a lease, loads, attempts.

use std::{
    collections::HashSet,
    time::{Duration, SystemTime},
};

use tokio_postgres::Row;

use super::{ms, pg_error, timed, PgStore};
use crate::store::{unix_ms, AttemptRecord, Due, DueBatch, EventRecord, EventState, NextStep, StoreError};

/// The state column's values.
pub(super) const QUEUED: i16 = 0;
pub(super) const DEAD: i16 = 1;
pub(super) const DELIVERED: i16 = 2;

/// When a forwarder looks again if due events were passed over because another claim held them
/// locked at that moment.
const LOCKED_RETRY: Duration = Duration::from_millis(500);

/// The columns [`record`] decodes, in its order.
pub(super) const RECORD_COLUMNS: &str = "seq, source, event_id, received_at_ms, method, query, headers, \
     verified, state, due_ms, dead_reason, delivered_at_ms, attempts::text";

/// An event row (selected as [`RECORD_COLUMNS`]) as its sequence number and record.
pub(super) fn record(row: &Row) -> Result<(u64, EventRecord), StoreError> {
    let corrupt = |what| StoreError::Corrupt { what };
    let seq: i64 = row.get(0);
    let headers: Vec<u8> = row.get(6);
    let headers = postcard::from_bytes(&headers).map_err(|_| corrupt("event headers"))?;
    let state = match row.get::<_, i16>(8) {
        QUEUED => EventState::Queued {
            due_ms: row.get::<_, Option<i64>>(9).ok_or(corrupt("event state"))? as u64,
        },
        DEAD => EventState::Dead {
            reason: row.get::<_, Option<String>>(10).unwrap_or_default(),
        },
        DELIVERED => EventState::Delivered {
            at_ms: row.get::<_, Option<i64>>(11).ok_or(corrupt("event state"))? as u64,
        },
        _ => return Err(corrupt("event state")),
    };
    let attempts: String = row.get(12);
    let attempts = serde_json::from_str(&attempts).map_err(|_| corrupt("attempt history"))?;
    Ok((
        seq as u64,
        EventRecord {
            source: row.get(1),
            event_id: row.get(2),
            received_at_ms: row.get::<_, i64>(3) as u64,
            method: row.get(4),
            query: row.get(5),
            headers,
            verified: row.get(7),
            state,
            attempts,
        },
    ))
}

/// Sequence numbers as PostgreSQL's `bigint[]`.
pub(super) fn seq_array(seqs: impl IntoIterator<Item = u64>) -> Vec<i64> {
    seqs.into_iter().map(|s| s as i64).collect()
}

impl PgStore {
    /// Claims `source`'s events due at `until_ms`, at most `limit`, not in `skip`, not leased by any
    /// replica; each claimed one is leased for `lease`.
    pub(crate) async fn due(
        &self,
        source: &str,
        until_ms: u64,
        limit: usize,
        skip: HashSet<u64>,
        lease: Duration,
    ) -> Result<DueBatch, StoreError> {
        let now_ms = unix_ms(SystemTime::now());
        let lease_end = ms(now_ms.saturating_add(lease.as_millis() as u64));
        let (until, now) = (ms(until_ms), ms(now_ms));
        let limit_sql = limit.min(i64::MAX as usize) as i64;
        timed(async {
            let client = self.client().await?;
            let claim = client
                .prepare_cached(
                    "WITH c AS (SELECT seq FROM hookgate.events \
                       WHERE source = $1 AND state = 0 AND due_ms <= $2 AND leased_until_ms <= $3 \
                         AND NOT (seq = ANY($4)) \
                       ORDER BY due_ms, seq LIMIT $5 FOR UPDATE SKIP LOCKED) \
                     UPDATE hookgate.events e SET leased_until_ms = $6 FROM c WHERE e.seq = c.seq \
                     RETURNING e.seq, e.due_ms",
                )
                .await
                .map_err(pg_error)?;
            let mut passed = seq_array(skip.iter().copied());
            let rows = client
                .query(&claim, &[&source, &until, &now, &passed, &limit_sql, &lease_end])
                .await
                .map_err(pg_error)?;
            let mut due: Vec<Due> = rows
                .iter()
                .map(|r| Due {
                    seq: r.get::<_, i64>(0) as u64,
                    due_ms: r.get::<_, i64>(1) as u64,
                })
                .collect();
            due.sort_unstable_by_key(|d| (d.due_ms, d.seq));
            passed.extend(due.iter().map(|d| d.seq as i64));
            // When to look next: the next event that falls due, the end of another replica's lease,
            // and soon if due events were passed over because a claim held them locked.
            let next = client
                .prepare_cached(
                    "SELECT \
                       (SELECT due_ms FROM hookgate.events WHERE source = $1 AND state = 0 AND due_ms > $2 \
                          AND NOT (seq = ANY($3)) ORDER BY due_ms LIMIT 1), \
                       (SELECT min(leased_until_ms) FROM hookgate.events WHERE source = $1 AND state = 0 \
                          AND leased_until_ms > $4 AND NOT (seq = ANY($3))), \
                       EXISTS (SELECT 1 FROM hookgate.events WHERE source = $1 AND state = 0 AND due_ms <= $2 \
                          AND leased_until_ms <= $4 AND NOT (seq = ANY($3)))",
                )
                .await
                .map_err(pg_error)?;
            let row = client
                .query_one(&next, &[&source, &until, &passed, &now])
                .await
                .map_err(pg_error)?;
            let mut next_due_ms = [row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1)]
                .into_iter()
                .flatten()
                .map(|v| v as u64)
                .min();
            if due.len() < limit && row.get::<_, bool>(2) {
                let soon = now_ms + LOCKED_RETRY.as_millis() as u64;
                next_due_ms = Some(next_due_ms.map_or(soon, |n| n.min(soon)));
            }
            Ok(DueBatch { due, next_due_ms })
        })
        .await
    }

    /// Ends the leases of `seqs`.
    pub(crate) async fn release(&self, seqs: Vec<u64>) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let seqs = seq_array(seqs);
        timed(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "UPDATE hookgate.events SET leased_until_ms = 0 WHERE seq = ANY($1) AND state = 0",
                )
                .await
                .map_err(pg_error)?;
            client.execute(&statement, &[&seqs]).await.map_err(pg_error)?;
            Ok(())
        })
        .await
    }

    /// Event `seq` and its body.
    pub(crate) async fn load(&self, seq: u64) -> Result<Option<(EventRecord, bytes::Bytes)>, StoreError> {
        timed(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {RECORD_COLUMNS}, body FROM hookgate.events WHERE seq = $1"
                ))
                .await
                .map_err(pg_error)?;
            let Some(row) = client
                .query_opt(&statement, &[&(seq as i64)])
                .await
                .map_err(pg_error)?
            else {
                return Ok(None);
            };
            let (_, record) = record(&row)?;
            let body: Vec<u8> = row.get(13);
            Ok(Some((record, bytes::Bytes::from(body))))
        })
        .await
    }

    /// Appends `attempt` to event `seq`'s history, moves it as `next` says and ends its lease.
    pub(crate) async fn record_attempt(
        &self,
        seq: u64,
        attempt: AttemptRecord,
        next: NextStep,
    ) -> Result<(), StoreError> {
        let at_ms = ms(attempt.at_ms);
        let history = serde_json::to_string(&[attempt]).map_err(|e| StoreError::Backend(Box::new(e)))?;
        let (state, due_ms, reason, delivered_at): (i16, Option<i64>, Option<String>, Option<i64>) =
            match next {
                NextStep::Delivered => (DELIVERED, None, None, Some(at_ms)),
                NextStep::RetryAt(due) => (QUEUED, Some(ms(due)), None, None),
                NextStep::DeadLetter(reason) => (DEAD, None, Some(reason), None),
            };
        let old = timed(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "UPDATE hookgate.events e SET attempts = e.attempts || $2::text::jsonb, state = $3, \
                       due_ms = $4, dead_reason = $5, delivered_at_ms = $6, leased_until_ms = 0 \
                     FROM (SELECT seq, state FROM hookgate.events WHERE seq = $1 FOR UPDATE) old \
                     WHERE e.seq = old.seq RETURNING old.state",
                )
                .await
                .map_err(pg_error)?;
            let row = client
                .query_opt(
                    &statement,
                    &[&(seq as i64), &history, &state, &due_ms, &reason, &delivered_at],
                )
                .await
                .map_err(pg_error)?;
            Ok(row.map(|r| r.get::<_, i16>(0)))
        })
        .await?;
        if let Some(old) = old {
            self.inner
                .queued
                .add(i64::from(state == QUEUED) - i64::from(old == QUEUED));
        }
        Ok(())
    }
}
