//! The schema, created and migrated at open: numbered migrations, applied in order under an advisory
//! lock, so that replicas that start at the same moment apply each migration once (the others wait for
//! the lock, then find it applied).

use tokio_postgres::Client;

use super::pg_error;
use crate::store::StoreError;

/// The advisory lock key of migrations (`pg_advisory_xact_lock`): "hookgate" in ASCII, one key for the
/// whole database, since the schema `hookgate` is one per database.
const MIGRATION_LOCK: i64 = 0x686f_6f6b_6761_7465;

/// The migrations, in order: migration `i` brings the schema to version `i + 1`. Only ever appended.
const MIGRATIONS: &[&str] = &[
    // 1: marks, events and jobs.
    r#"
    CREATE TABLE hookgate.marks (
        source      text   NOT NULL,
        event_id    text   NOT NULL,
        expires_ms  bigint NOT NULL,
        PRIMARY KEY (source, event_id)
    );
    CREATE INDEX marks_expiry ON hookgate.marks (expires_ms);
    CREATE TABLE hookgate.events (
        seq             bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        source          text     NOT NULL,
        event_id        text     NOT NULL,
        received_at_ms  bigint   NOT NULL,
        method          text     NOT NULL,
        query           text,
        headers         bytea    NOT NULL,
        body            bytea    NOT NULL,
        verified        boolean  NOT NULL,
        -- 0 queued (due_ms set), 1 dead (dead_reason set), 2 delivered (delivered_at_ms set)
        state           smallint NOT NULL,
        due_ms          bigint,
        dead_reason     text,
        delivered_at_ms bigint,
        -- A forwarder's claim: no other replica takes the event before this Unix millisecond.
        leased_until_ms bigint   NOT NULL DEFAULT 0,
        -- The attempt history, oldest first: [{"at_ms":..,"status":..,"outcome":".."}, ..]
        attempts        jsonb    NOT NULL DEFAULT '[]'
    );
    CREATE INDEX events_due ON hookgate.events (source, due_ms, seq) WHERE state = 0;
    CREATE INDEX events_delivered ON hookgate.events (delivered_at_ms) WHERE state = 2;
    CREATE INDEX events_state_seq ON hookgate.events (state, seq);
    CREATE INDEX events_source_seq ON hookgate.events (source, seq);
    CREATE TABLE hookgate.jobs (
        name        text   PRIMARY KEY,
        last_run_ms bigint NOT NULL
    );
    "#,
];

/// The schema version this hookgate writes.
pub(super) const VERSION: i32 = MIGRATIONS.len() as i32;

/// Creates the schema or brings it to [`VERSION`]. Refuses a schema newer than this hookgate knows.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS hookgate;
         CREATE TABLE IF NOT EXISTS hookgate.schema_version (version integer NOT NULL);",
    )
    .await
    .map_err(pg_error)?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM hookgate.schema_version",
            &[],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    if current > VERSION {
        return Err(StoreError::NewerSchema {
            found: current as u32,
            known: VERSION as u32,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(sql).await.map_err(pg_error)?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    if current < VERSION {
        tx.execute("DELETE FROM hookgate.schema_version", &[])
            .await
            .map_err(pg_error)?;
        tx.execute("INSERT INTO hookgate.schema_version VALUES ($1)", &[&VERSION])
            .await
            .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)
}
