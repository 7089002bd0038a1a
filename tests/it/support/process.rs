//! The real `hookgate` binary as a child process, for crash and signal tests.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A gateway process that was stopped, ready to be started again on the same config and store.
pub struct Stopped {
    pub config: PathBuf,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl Stopped {
    /// Starts the binary again and waits until it is ready.
    pub async fn restart(self) -> GatewayProcess {
        GatewayProcess::spawn(self.config, self.addr, self.admin).await
    }
}

/// A running `hookgate serve`.
pub struct GatewayProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config: PathBuf,
}

impl GatewayProcess {
    /// Writes a config into `dir` (listeners on free loopback ports, the store in `dir/store`, then
    /// `sources_toml`), starts the binary and waits until `/readyz` answers 200.
    pub async fn start(dir: &Path, sources_toml: &str) -> Self {
        let (addr, admin) = (super::free_addr(), super::free_addr());
        let config = dir.join("gateway.toml");
        std::fs::write(&config, config_text(addr, admin, dir, sources_toml)).expect("write config");
        Self::spawn(config, addr, admin).await
    }

    /// Starts the binary on a config file written by the caller, with listeners on `addr` and
    /// `admin`, and waits until `/readyz` answers 200.
    pub async fn start_from(config: PathBuf, addr: SocketAddr, admin: SocketAddr) -> Self {
        Self::spawn(config, addr, admin).await
    }

    /// Rewrites the config file: the same listeners and store, then `sources_toml` (for reloads).
    pub fn rewrite(&self, sources_toml: &str) {
        let dir = self.config.parent().expect("the config is in a directory");
        std::fs::write(
            &self.config,
            config_text(self.addr, self.admin, dir, sources_toml),
        )
        .expect("write config");
    }

    /// Sends SIGHUP (reload the config).
    pub fn sighup(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::SIGHUP,
        )
        .expect("send SIGHUP");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// `http://127.0.0.1:port{path}` on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    async fn spawn(config: PathBuf, addr: SocketAddr, admin: SocketAddr) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["serve", "--log-format", "text", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn hookgate");
        let mut this = Self {
            child,
            addr,
            admin,
            config,
        };
        let ready = format!("http://{admin}/readyz");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = this.child.try_wait().expect("wait") {
                panic!("hookgate exited during start-up: {status}");
            }
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(1), probe(&ready)).await {
                if r == 200 {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "hookgate not ready within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        this
    }

    /// `http://127.0.0.1:port{path}` on the webhook listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGKILL, and reap. The returned handle restarts the binary on the same config and store.
    pub fn kill9(mut self) -> Stopped {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
        Stopped {
            config: self.config.clone(),
            addr: self.addr,
            admin: self.admin,
        }
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::SIGTERM,
        )
        .expect("send SIGTERM");
    }

    /// Waits for the process to exit (at most `within`) and returns its exit code.
    pub async fn wait(mut self, within: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("hookgate did not exit within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(addr: SocketAddr, admin: SocketAddr, dir: &Path, sources_toml: &str) -> String {
    format!(
        "[server]\nlisten = \"{addr}\"\nshutdown_timeout = \"10s\"\n[admin]\nlisten = \"{admin}\"\n[store]\npath = {:?}\n{sources_toml}",
        dir.join("store").display().to_string()
    )
}

async fn probe(url: &str) -> Result<u16, ()> {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let uri: http::Uri = url.parse().map_err(|_| ())?;
    client.get(uri).await.map(|r| r.status().as_u16()).map_err(|_| ())
}
