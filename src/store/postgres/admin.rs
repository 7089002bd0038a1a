//! The admin API's side, and the purges: every replica's events, in the shared tables.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use tokio_postgres::types::ToSql;

use super::{
    ms, pg_error,
    queue::{record, DEAD, DELIVERED, QUEUED, RECORD_COLUMNS},
    timed, PgStore, CHANNEL,
};
use crate::store::{unix_ms, Counts, EventQuery, EventRecord, Job, StateFilter, StoreError};

/// The filters of an [`EventQuery`] as SQL over parameters `$1`..`$5` ([`Filter::params`]).
const FILTER: &str = "($1::text IS NULL OR source = $1) AND ($2::int2 IS NULL OR state = $2) \
     AND ($3::int8 IS NULL OR received_at_ms >= $3) AND ($4::int8 IS NULL OR received_at_ms < $4) \
     AND ($5::int8 IS NULL OR seq < $5)";

/// An [`EventQuery`]'s values as [`FILTER`]'s parameters, and its limit.
struct Filter {
    source: Option<String>,
    state: Option<i16>,
    since: Option<i64>,
    until: Option<i64>,
    before: Option<i64>,
    limit: i64,
}

impl Filter {
    fn new(query: &EventQuery, state: Option<StateFilter>) -> Self {
        Self {
            source: query.source.clone(),
            state: state.map(state_value),
            since: query.since_ms.map(ms),
            until: query.until_ms.map(ms),
            before: query.before_seq.map(ms),
            limit: query.limit.min(i64::MAX as usize) as i64,
        }
    }

    /// `$1`..`$6`: the filters, then the limit.
    fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.source,
            &self.state,
            &self.since,
            &self.until,
            &self.before,
            &self.limit,
        ]
    }
}

fn state_value(state: StateFilter) -> i16 {
    match state {
        StateFilter::Queued => QUEUED,
        StateFilter::Dead => DEAD,
        StateFilter::Delivered => DELIVERED,
    }
}

fn add(counts: &mut Counts, state: i16, n: i64) {
    let n = n.max(0) as u64;
    match state {
        QUEUED => counts.queued += n,
        DEAD => counts.dead += n,
        _ => counts.delivered += n,
    }
}

impl PgStore {
    /// Every replica's events, counted by state.
    pub(crate) async fn counts(&self) -> Result<Counts, StoreError> {
        timed(async {
            let client = self.client().await?;
            let rows = client
                .query("SELECT state, count(*) FROM hookgate.events GROUP BY state", &[])
                .await
                .map_err(pg_error)?;
            let mut counts = Counts::default();
            for row in rows {
                add(&mut counts, row.get(0), row.get(1));
            }
            Ok(counts)
        })
        .await
    }

    /// [`PgStore::counts`] per source.
    pub(crate) async fn counts_by_source(&self) -> Result<HashMap<String, Counts>, StoreError> {
        timed(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT source, state, count(*) FROM hookgate.events GROUP BY source, state",
                    &[],
                )
                .await
                .map_err(pg_error)?;
            let mut out: HashMap<String, Counts> = HashMap::new();
            for row in rows {
                add(out.entry(row.get(0)).or_default(), row.get(1), row.get(2));
            }
            Ok(out)
        })
        .await
    }

    /// The events that match `query`, newest first.
    pub(crate) async fn list(&self, query: &EventQuery) -> Result<Vec<(u64, EventRecord)>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let filter = Filter::new(query, query.state);
        timed(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {RECORD_COLUMNS} FROM hookgate.events WHERE {FILTER} ORDER BY seq DESC LIMIT $6"
                ))
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(&statement, &filter.params())
                .await
                .map_err(pg_error)?;
            rows.iter().map(record).collect()
        })
        .await
    }

    /// Puts event `seq` back in the queue, due at `now`.
    pub(crate) async fn replay(&self, seq: u64, now: SystemTime) -> Result<bool, StoreError> {
        let query = EventQuery {
            before_seq: Some(seq.saturating_add(1)),
            limit: 1,
            ..EventQuery::default()
        };
        Ok(self.replay_selected(&query, Some(seq), now).await? == 1)
    }

    /// Puts every event that matches `query` back in the queue, due at `now`.
    pub(crate) async fn replay_where(
        &self,
        query: &EventQuery,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        self.replay_selected(query, None, now).await
    }

    /// Replays what `query` (and `only`, one sequence number) selects, in one transaction that also
    /// notifies every replica of the sources it queued events of.
    async fn replay_selected(
        &self,
        query: &EventQuery,
        only: Option<u64>,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        if query.limit == 0 {
            return Ok(0);
        }
        let filter = Filter::new(query, query.state);
        let only = only.map(ms);
        let now_ms = ms(unix_ms(now));
        let (replayed, sources) = timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            let statement = tx
                .prepare_cached(&format!(
                    "WITH old AS (SELECT seq, state, source FROM hookgate.events \
                       WHERE {FILTER} AND ($7::int8 IS NULL OR seq = $7) ORDER BY seq DESC LIMIT $6 FOR UPDATE) \
                     UPDATE hookgate.events e SET state = 0, due_ms = $8, dead_reason = NULL, \
                       delivered_at_ms = NULL \
                     FROM old WHERE e.seq = old.seq RETURNING old.state, old.source"
                ))
                .await
                .map_err(pg_error)?;
            let [p1, p2, p3, p4, p5, p6] = filter.params();
            let rows = tx
                .query(&statement, &[p1, p2, p3, p4, p5, p6, &only, &now_ms])
                .await
                .map_err(pg_error)?;
            let requeued = rows.iter().filter(|r| r.get::<_, i16>(0) != QUEUED).count();
            let mut sources: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
            sources.sort_unstable();
            sources.dedup();
            for source in &sources {
                let payload = format!("{} {source}", self.inner.replica);
                tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                    .await
                    .map_err(pg_error)?;
            }
            tx.commit().await.map_err(pg_error)?;
            self.inner.queued.add(requeued as i64);
            Ok((rows.len(), sources))
        })
        .await?;
        for source in &sources {
            self.inner.wakers.wake(source);
        }
        Ok(replayed)
    }

    /// Removes event `seq`, whatever its state.
    pub(crate) async fn delete(&self, seq: u64) -> Result<bool, StoreError> {
        let old = timed(async {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "DELETE FROM hookgate.events WHERE seq = $1 RETURNING state",
                    &[&(seq as i64)],
                )
                .await
                .map_err(pg_error)?;
            Ok(row.map(|r| r.get::<_, i16>(0)))
        })
        .await?;
        if old == Some(QUEUED) {
            self.inner.queued.add(-1);
        }
        Ok(old.is_some())
    }

    /// Removes the dead letters that match `query`.
    pub(crate) async fn purge_dead(&self, query: &EventQuery) -> Result<usize, StoreError> {
        if query.limit == 0 {
            return Ok(0);
        }
        let filter = Filter::new(query, Some(StateFilter::Dead));
        timed(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "DELETE FROM hookgate.events WHERE seq IN \
                       (SELECT seq FROM hookgate.events WHERE {FILTER} ORDER BY seq DESC LIMIT $6)"
                ))
                .await
                .map_err(pg_error)?;
            let n = client
                .execute(&statement, &filter.params())
                .await
                .map_err(pg_error)?;
            Ok(n as usize)
        })
        .await
    }

    /// Removes the dedup marks expired at `now`.
    pub(crate) async fn purge_expired(&self, now: SystemTime) -> Result<usize, StoreError> {
        let now_ms = ms(unix_ms(now));
        timed(async {
            let client = self.client().await?;
            let n = client
                .execute("DELETE FROM hookgate.marks WHERE expires_ms <= $1", &[&now_ms])
                .await
                .map_err(pg_error)?;
            Ok(n as usize)
        })
        .await
    }

    /// Removes the events delivered before `older_than_ms`.
    pub(crate) async fn purge_delivered(&self, older_than_ms: u64) -> Result<usize, StoreError> {
        let older = ms(older_than_ms);
        timed(async {
            let client = self.client().await?;
            let n = client
                .execute(
                    "DELETE FROM hookgate.events WHERE state = 2 AND delivered_at_ms < $1",
                    &[&older],
                )
                .await
                .map_err(pg_error)?;
            Ok(n as usize)
        })
        .await
    }

    /// Whether this replica runs `job` now: the first replica to ask in a period claims it; the
    /// others, asking within half a period of that claim, do not.
    pub(crate) async fn claim_job(&self, job: Job, every: Duration) -> Result<bool, StoreError> {
        let name = match job {
            Job::PurgeMarks => "purge_marks",
            Job::PurgeDelivered => "purge_delivered",
        };
        let now_ms = ms(unix_ms(SystemTime::now()));
        let before = now_ms.saturating_sub(ms((every / 2).as_millis() as u64));
        timed(async {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "INSERT INTO hookgate.jobs (name, last_run_ms) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET last_run_ms = EXCLUDED.last_run_ms \
                     WHERE hookgate.jobs.last_run_ms <= $3 RETURNING 1",
                    &[&name, &now_ms, &before],
                )
                .await
                .map_err(pg_error)?;
            Ok(row.is_some())
        })
        .await
    }
}
