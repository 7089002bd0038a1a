//! An in-process gateway on 127.0.0.1 ephemeral ports with sled in a temp dir.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use hookgate::{admin::ReloadReport, admin::Reloader, Config, ConfigSource, Listeners};
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// A running gateway. Stop it with [`TestGateway::stop`], which re-raises its errors.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    dir: Option<TempDir>,
    /// The config text that a reload reads (without its `[store] path`), and the asker.
    reload: Option<(Arc<Mutex<String>>, Reloader)>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), hookgate::RunError>>>,
}

impl TestGateway {
    /// Starts a gateway on `toml` (which must not have a `[store] path`; one is added in a temp dir).
    pub async fn start(toml: &str) -> Self {
        Self::start_in(toml, TempDir::new().expect("temp dir")).await
    }

    /// Starts a gateway on `toml` with its store in `dir` (for restarts on the same data).
    pub async fn start_in(toml: &str, dir: TempDir) -> Self {
        let config = config_in(toml, dir.path());
        Self::launch(config, dir, None).await
    }

    /// Like [`TestGateway::start`], and reloadable: [`TestGateway::reload_with`] swaps in a new text.
    pub async fn start_reloadable(toml: &str) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let config = config_in(toml, dir.path());
        let text = Arc::new(Mutex::new(toml.to_owned()));
        let store = dir.path().to_owned();
        let source = ConfigSource::new({
            let text = text.clone();
            move || Config::from_toml(&with_store(&text.lock().expect("lock"), &store), |_| None)
        });
        let reloader = source.reloader();
        let mut this = Self::launch(config, dir, Some(source)).await;
        this.reload = Some((text, reloader));
        this
    }

    /// Replaces the config text (without `[store] path`, which stays) and reloads; returns the report.
    pub async fn reload_with(&self, toml: &str) -> ReloadReport {
        let (text, _) = self.reload.as_ref().expect("started with start_reloadable");
        *text.lock().expect("lock") = toml.to_owned();
        self.reload().await
    }

    /// Reloads the current config text (as SIGHUP or `POST /reload` would); returns the report.
    pub async fn reload(&self) -> ReloadReport {
        let (_, reloader) = self.reload.as_ref().expect("started with start_reloadable");
        tokio::time::timeout(Duration::from_secs(30), hookgate::request_reload(reloader))
            .await
            .expect("reload answered within 30 s")
            .expect("the gateway is running")
    }

    async fn launch(config: Config, dir: TempDir, reload: Option<ConfigSource>) -> Self {
        let webhook = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind webhook listener");
        let admin = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind admin listener");
        let (addr, admin_addr) = (
            webhook.local_addr().expect("addr"),
            admin.local_addr().expect("addr"),
        );
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(hookgate::run(
            config,
            Listeners { webhook, admin },
            async move {
                let _ = rx.await;
            },
            reload,
        ));
        Self {
            addr,
            admin: admin_addr,
            dir: Some(dir),
            reload: None,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:port{path}` on the webhook listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://127.0.0.1:port{path}` on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        super::send("GET", &self.admin_url("/metrics"), &[], "")
            .await
            .body
    }

    /// Shuts down gracefully and returns the store's directory, for a restart.
    pub async fn stop(mut self) -> TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let task = self.task.take().expect("not stopped yet");
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("gateway failed: {e:?}"),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("gateway task failed: {e}"),
        }
        self.dir.take().expect("not stopped yet")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Parses `toml` with `[store] path` set to `dir`; panics with every config error.
pub fn config_in(toml: &str, dir: &Path) -> Config {
    Config::from_toml(&with_store(toml, dir), |_| None)
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}"))
}

/// `toml` with `[store] path` set to `dir/store`.
fn with_store(toml: &str, dir: &Path) -> String {
    let store: PathBuf = dir.join("store");
    format!("[store]\npath = {:?}\n{toml}", store.display().to_string())
}
