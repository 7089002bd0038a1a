//! The running dispatchers, one per source, and their restart on config reload.
//!
//! A restart stops each old dispatcher gracefully (it takes no new work and lets its in-flight
//! deliveries end and be recorded) and starts the new one for the same source only once the old one
//! has ended, so that no event is delivered by both at once. A new source starts at once; a removed
//! source's dispatcher just stops. The queue itself is in the store and is not touched: a new
//! dispatcher reads it from the start.
//!
//! Sources with the same TLS settings share one HTTP client and its connection pool, and sources on
//! the same broker URL one connection; a reload keeps what a new source still uses (same TLS files
//! and contents, same broker URL), and drops the rest once the draining dispatchers let go.

use std::{collections::HashMap, sync::Arc};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{dispatch, output::Outputs, Target};
use crate::{store::Store, telemetry};

/// One source's current dispatcher.
#[derive(Debug)]
struct Running {
    /// Cancelled to stop it.
    stop: CancellationToken,
    /// Cancelled once it has ended (or was never started).
    ended: CancellationToken,
}

/// Every source's dispatcher. Dropping it aborts them; [`Dispatchers::join`] waits for them instead.
#[derive(Debug)]
pub(crate) struct Dispatchers {
    store: Store,
    /// What the sources' outputs share (HTTP clients per TLS setting, broker connections), kept
    /// across reloads while a source still uses them.
    outputs: Outputs,
    /// The gateway's shutdown: cancels every dispatcher.
    shutdown: CancellationToken,
    running: HashMap<Arc<str>, Running>,
    /// Every dispatcher task, of every generation.
    tasks: JoinSet<()>,
}

impl Dispatchers {
    /// Starts one dispatcher per source; each stops when `shutdown` is cancelled, after its in-flight
    /// deliveries have ended (each is bounded by the source's forward timeout).
    pub(crate) fn start(sources: &[Arc<Target>], store: &Store, shutdown: &CancellationToken) -> Self {
        let mut this = Self {
            store: store.clone(),
            outputs: Outputs::default(),
            shutdown: shutdown.clone(),
            running: HashMap::new(),
            tasks: JoinSet::new(),
        };
        this.restart(sources);
        this
    }

    /// Replaces every dispatcher with one per source of `sources`, gracefully (see the module docs).
    pub(crate) fn restart(&mut self, sources: &[Arc<Target>]) {
        // Reap the generations that have ended.
        while self.tasks.try_join_next().is_some() {}
        let mut old = std::mem::take(&mut self.running);
        let outputs = self.outputs.for_sources(sources);
        for (source, output) in sources.iter().zip(outputs) {
            telemetry::register_deliveries(&source.name, output.kind());
            let previous = old.remove(&source.name).map(|prev| {
                prev.stop.cancel();
                prev.ended
            });
            let stop = self.shutdown.child_token();
            let ended = CancellationToken::new();
            let (source, store) = (source.clone(), self.store.clone());
            self.running.insert(
                source.name.clone(),
                Running {
                    stop: stop.clone(),
                    ended: ended.clone(),
                },
            );
            self.tasks.spawn(async move {
                // Also fires when the task is aborted, so that a successor never waits forever.
                let _ended = ended.drop_guard();
                if let Some(previous) = previous {
                    previous.cancelled().await;
                }
                if !stop.is_cancelled() {
                    dispatch(source, store, output, stop).await;
                }
            });
        }
        for removed in old.into_values() {
            removed.stop.cancel();
        }
    }

    /// Waits until every dispatcher has ended; cancel the shutdown token first.
    pub(crate) async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}
