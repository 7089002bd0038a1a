//! What runs beside the store: the LISTEN connection that wakes this replica's forwarders when
//! another replica queues an event, and the recount of the queued events.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{error_chain, get, pg_error, timed, Connector, QueuedCount, CHANNEL};
use crate::store::{StoreError, Wakers};

/// The pause before the listener connects again.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// How often the queued count is recounted.
const RECOUNT_EVERY: Duration = Duration::from_secs(1);

/// Listens on [`CHANNEL`] until `stop`, connecting again whenever the connection ends; wakes the
/// forwarder of the source each notification names (not this replica's own), and every forwarder
/// once connected (wake-ups may have been missed meanwhile; `listening` is told the first time) and after each attempt that fails.
pub(super) async fn listen(
    connector: Connector,
    replica: Arc<str>,
    wakers: Wakers,
    stop: CancellationToken,
    mut listening: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let mut down_since_logged = false;
    loop {
        let (tx, mut notifications) = mpsc::unbounded_channel();
        let connected = async {
            let client = connector.connect_listening(tx).await?;
            client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
            Ok::<_, tokio_postgres::Error>(client)
        };
        let connected = tokio::select! {
            () = stop.cancelled() => return,
            c = tokio::time::timeout(super::OP_TIMEOUT, connected) => c,
        };
        match connected {
            Ok(Ok(client)) => {
                if down_since_logged {
                    tracing::info!("the store's listener is connected again");
                }
                wakers.wake_all();
                if let Some(listening) = listening.take() {
                    let _ = listening.send(());
                }
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        n = notifications.recv() => match n {
                            Some(n) => {
                                if let Some((from, source)) = n.payload().split_once(' ') {
                                    if from != &*replica {
                                        wakers.wake(source);
                                    }
                                }
                            }
                            None => break,
                        },
                    }
                }
                drop(client);
                tracing::warn!("the store's listener lost its connection; forwarders poll until it is back");
                down_since_logged = true;
            }
            Ok(Err(e)) => {
                if !down_since_logged {
                    tracing::warn!(error = %error_chain(&e), "the store's listener cannot connect; forwarders poll until it can");
                    down_since_logged = true;
                }
            }
            Err(_) => {
                if !down_since_logged {
                    tracing::warn!(
                        "the store's listener cannot connect (timed out); forwarders poll until it can"
                    );
                    down_since_logged = true;
                }
            }
        }
        // Each failed attempt wakes every forwarder: while the listener is down they poll.
        wakers.wake_all();
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RECONNECT_PAUSE) => {}
        }
    }
}

/// Sets the queued count from a real count.
pub(super) async fn refresh_queued(pool: &Pool, queued: &QueuedCount) -> Result<(), StoreError> {
    let generation = queued.generation();
    let count: i64 = timed(async {
        let client = get(pool).await?;
        let row = client
            .query_one("SELECT count(*) FROM hookgate.events WHERE state = 0", &[])
            .await
            .map_err(pg_error)?;
        Ok(row.get(0))
    })
    .await?;
    queued.set(generation, count);
    Ok(())
}

/// Recounts the queued events every second until `stop` (the other replicas move them too).
pub(super) async fn count_loop(pool: Pool, queued: Arc<QueuedCount>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RECOUNT_EVERY) => {}
        }
        if let Err(e) = refresh_queued(&pool, &queued).await {
            tracing::debug!(error = %e, "recounting the queued events failed");
        }
    }
}
