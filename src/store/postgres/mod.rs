//! The PostgreSQL backend: several hookgate replicas on one database act as one gateway.
//!
//! [`PgStore`] is what [`Store`](super::Store) runs when `[store] backend = "postgres"`. Every table
//! lives in the schema `hookgate` of the URL's database, created and migrated at open (`schema.rs`).
//! What each part promises, across replicas:
//!
//! - Accepts (`accept.rs`) are group-committed: the accepts that wait while a transaction is under
//!   way go into the next one. The dedup mark and the queued event are written in that one
//!   transaction (`INSERT ... ON CONFLICT (source, event_id) DO NOTHING`), so the same id sent to two
//!   replicas at once is stored once; the second waits on the first's row lock, so its "duplicate"
//!   comes only once the first copy is committed.
//! - Forwarders claim due events with `FOR UPDATE SKIP LOCKED` and a lease (`queue.rs`): a replica
//!   killed mid-delivery loses only its leases, and another replica delivers once they end.
//! - Every commit that queues an event sends a `NOTIFY`; each replica `LISTEN`s (`listen.rs`) and wakes
//!   its forwarder, so a replica that accepted nothing still delivers at once. The forwarders' own
//!   polling is the fallback, and every forwarder is woken when the listener (re)connects.
//! - The admin operations (`admin.rs`) read and write the shared tables, so they see every replica's
//!   events; the periodic purges are claimed once per period across replicas ([`PgStore::claim_job`]).
//! - The database down or unreachable is [`StoreError::Unavailable`] (503 `store_unavailable`,
//!   `/readyz` 503); the pool makes new connections as soon as it is back, without a restart.
//!
//! The URL is a secret: nothing here logs it, only its host, port and database ([`PgStore::describe`]).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod accept;
mod admin;
mod listen;
mod queue;
mod schema;
#[cfg(test)]
pub(crate) mod testdb;
#[cfg(test)]
mod tests;

use super::{NotReady, StoreError, Wakers};

/// The channel of the `NOTIFY` that a commit queuing events sends; the payload is
/// `<replica id> <source>`.
const CHANNEL: &str = "hookgate_queued";

/// The longest any single database operation may take before it counts as the database being
/// unavailable (a hung server or a silently dropped connection).
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection attempt may take when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `/readyz` waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The PostgreSQL backend's store. Cheap to clone.
#[derive(Clone)]
pub(crate) struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    wakers: Wakers,
    queued: Arc<QueuedCount>,
    /// This store's id among the replicas (random), so that the listener ignores its own NOTIFYs.
    replica: Arc<str>,
    accepts: mpsc::Sender<accept::Pending>,
    describe: String,
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.inner.describe)
            .finish_non_exhaustive()
    }
}

/// How to reach PostgreSQL, from a URL, with or without TLS.
#[derive(Clone)]
pub(super) struct Connector {
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl Connector {
    /// Parses `url` (`postgres://...` or `key=value ...`). TLS (rustls, the system's roots) when it
    /// says `sslmode=require`; `prefer` (libpq's default) and `disable` connect in plain text.
    pub(crate) fn new(url: &str) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::BadUrl(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("hookgate");
        }
        let tls = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Require => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in crate::tls::ClientTls::native_roots() {
                    let _ = roots.add(cert);
                }
                let client = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| StoreError::BadUrl(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(tokio_postgres_rustls::MakeRustlsConnect::new(client))
            }
            _ => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                None
            }
        };
        Ok(Self { config, tls })
    }

    /// `host:port/dbname`: where the store is, without user or password.
    pub(crate) fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let db = self
            .config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres");
        format!("{host}:{port}/{db}")
    }

    fn pool(&self, size: usize) -> Result<Pool, StoreError> {
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &self.tls {
            Some(tls) => Manager::from_config(self.config.clone(), tls.clone(), manager_config),
            None => Manager::from_config(self.config.clone(), tokio_postgres::NoTls, manager_config),
        };
        Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(OP_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Backend(Box::new(e)))
    }

    /// One connection of its own (the listener's), its connection task spawned; notifications
    /// go to `notifications`.
    async fn connect_listening(
        &self,
        notifications: mpsc::UnboundedSender<tokio_postgres::Notification>,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        use futures_util::StreamExt as _;
        async fn pump<S, T>(
            mut connection: tokio_postgres::Connection<S, T>,
            out: mpsc::UnboundedSender<tokio_postgres::Notification>,
        ) where
            S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
            T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notification(n) = message {
                    if out.send(n).is_err() {
                        return;
                    }
                }
            }
        }
        match &self.tls {
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                tokio::spawn(pump(connection, notifications));
                Ok(client)
            }
            None => {
                let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(pump(connection, notifications));
                Ok(client)
            }
        }
    }
}

impl PgStore {
    /// Connects to the database at `url` with a pool of `pool_size` connections, creates or migrates
    /// the schema, and starts the listener and the group commit.
    pub(crate) async fn open(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let connector = Connector::new(url)?;
        let pool = connector.pool(pool_size)?;
        {
            let mut client = get(&pool).await?;
            timed(schema::migrate(&mut client)).await?;
        }
        let wakers = Wakers::default();
        let queued = Arc::new(QueuedCount::default());
        let replica: Arc<str> = Arc::from(format!("{:016x}", rand::random::<u64>()));
        let stop = CancellationToken::new();
        let (accepts, pending) = mpsc::channel(accept::QUEUE);
        let in_flight = (pool_size / 2).clamp(1, accept::MAX_IN_FLIGHT);
        tokio::spawn(accept::commit_loop(
            accept::Committer {
                pool: pool.clone(),
                wakers: wakers.clone(),
                queued: queued.clone(),
                replica: replica.clone(),
            },
            pending,
            in_flight,
        ));
        let (listening, listened) = tokio::sync::oneshot::channel();
        tokio::spawn(listen::listen(
            connector.clone(),
            replica.clone(),
            wakers.clone(),
            stop.clone(),
            Some(listening),
        ));
        // Wake-ups from other replicas count from here on (the listener keeps trying if this times out).
        let _ = tokio::time::timeout(OP_TIMEOUT, listened).await;
        listen::refresh_queued(&pool, &queued).await?;
        tokio::spawn(listen::count_loop(pool.clone(), queued.clone(), stop.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                wakers,
                queued,
                replica,
                accepts,
                describe: connector.describe(),
                stop,
            }),
        })
    }

    pub(crate) fn wakers(&self) -> &Wakers {
        &self.inner.wakers
    }

    /// The queued count this replica keeps (moved by its own writes, recounted every second).
    pub(crate) fn queued(&self) -> u64 {
        self.inner.queued.get()
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        get(&self.inner.pool).await
    }

    /// Whether the database answers now.
    pub(crate) async fn readiness(&self) -> Result<(), NotReady> {
        let probe = async {
            let client = self.client().await?;
            client.simple_query("SELECT 1").await.map_err(pg_error)?;
            Ok::<(), StoreError>(())
        };
        match tokio::time::timeout(READY_TIMEOUT, probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(NotReady::Unavailable(error_chain(&e))),
            Err(_) => Err(NotReady::Unavailable(format!(
                "no answer within {}",
                humantime::format_duration(READY_TIMEOUT)
            ))),
        }
    }
}

/// A pooled connection, or [`StoreError::Unavailable`].
async fn get(pool: &Pool) -> Result<deadpool_postgres::Object, StoreError> {
    pool.get().await.map_err(|e| StoreError::Unavailable(Box::new(e)))
}

/// `f` within [`OP_TIMEOUT`]; past it the database counts as unavailable.
async fn timed<T>(f: impl std::future::Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    match tokio::time::timeout(OP_TIMEOUT, f).await {
        Ok(result) => result,
        Err(elapsed) => Err(StoreError::Unavailable(Box::new(elapsed))),
    }
}

/// A database error as the store reports it: the connection's troubles (lost, refused, the server
/// shutting down or out of resources) are [`StoreError::Unavailable`], the rest [`StoreError::Backend`].
pub(super) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    match e.code().map(|c| c.code()) {
        Some(code) if !(code.starts_with("08") || code.starts_with("53") || code.starts_with("57")) => {
            StoreError::Backend(Box::new(e))
        }
        _ => StoreError::Unavailable(Box::new(e)),
    }
}

/// Whether `e` is worth running the transaction again (a deadlock or a serialization failure).
fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code().map(|c| c.code()), Some("40P01" | "40001"))
}

/// `e` and its causes, for a message.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// The count of queued events that [`PgStore::queued`] answers: moved by this replica's own writes
/// at once, and set from a real count every second (which also takes in the other replicas' moves).
/// A recount that a move of this replica overtook is thrown away, so it never undoes that move.
#[derive(Default)]
struct QueuedCount {
    fast: AtomicU64,
    slow: Mutex<(i64, u64)>,
}

impl QueuedCount {
    fn get(&self) -> u64 {
        self.fast.load(Ordering::Relaxed)
    }

    fn add(&self, delta: i64) {
        if delta == 0 {
            return;
        }
        let mut slow = self.slow.lock().unwrap_or_else(|e| e.into_inner());
        slow.0 = (slow.0 + delta).max(0);
        slow.1 += 1;
        self.fast.store(slow.0 as u64, Ordering::Relaxed);
    }

    /// The generation to pass to [`QueuedCount::set`] after counting.
    fn generation(&self) -> u64 {
        self.slow.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    fn set(&self, generation: u64, count: i64) {
        let mut slow = self.slow.lock().unwrap_or_else(|e| e.into_inner());
        if slow.1 == generation {
            slow.0 = count;
            self.fast.store(count.max(0) as u64, Ordering::Relaxed);
        }
    }
}

/// A Unix millisecond as PostgreSQL's `bigint`.
fn ms(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}
