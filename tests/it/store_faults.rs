//! Storage trouble under a running gateway is answered 503, never 2xx, and the gateway recovers by
//! itself once the trouble ends: a full volume (a real tmpfs of a few MB that fills and empties), and a
//! store directory that is removed.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use http::StatusCode;

use crate::support::{
    github_headers, github_source, metric, post, send, GatewayProcess, TestGateway, TestSink,
};

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one, or says why it cannot (not root, no mount permission in this container).
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The bytes available on it.
    fn available(&self) -> u64 {
        let stat = nix::sys::statvfs::statvfs(self.path()).expect("statvfs");
        #[allow(clippy::useless_conversion)]
        let available = u64::from(stat.blocks_available()) * u64::from(stat.fragment_size());
        available
    }

    /// Takes all but about `leave` bytes of its space with a file; returns the file's path. A
    /// gateway may be writing there meanwhile, so the file grows in steps, each as large as the space
    /// then left allows (halved when it no longer fits), until at most `leave` + 8 KiB is left.
    fn fill_leaving(&self, leave: u64) -> PathBuf {
        let path = self.path().join("filler");
        let file = std::fs::File::create(&path).expect("create filler");
        let mut len = 0u64;
        let mut step_cap = u64::MAX;
        for _ in 0..256 {
            let step = self.available().saturating_sub(leave).min(step_cap);
            if step < 8192 {
                return path;
            }
            match nix::fcntl::fallocate(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                nix::fcntl::FallocateFlags::empty(),
                len as i64,
                step as i64,
            ) {
                Ok(()) => len += step,
                Err(nix::errno::Errno::ENOSPC) => step_cap = step / 2,
                Err(e) => panic!("fill the volume: {e}"),
            }
        }
        panic!("could not fill the volume in 256 steps");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a gateway that failed the test may still hold files there.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// The mount, or `None` after printing why the test is skipped.
fn tmpfs_or_skip(size: &str, test: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(size) {
        Ok(mount) => Some(mount),
        Err(why) => {
            eprintln!("skipping {test}: {why}");
            None
        }
    }
}

/// Posts GitHub delivery `id` with `body` to `gateway`'s source `gh`; returns the status.
async fn post_event(gateway: &TestGateway, id: &str, body: &[u8]) -> StatusCode {
    post(
        &gateway.url("/hooks/gh"),
        &github_headers(id, body),
        body.to_vec(),
    )
    .await
    .status
}

#[tokio::test]
async fn a_full_volume_is_503_until_space_is_freed_and_a_small_volume_can_start() {
    let Some(volume) = tmpfs_or_skip("8m", "the full-volume test") else {
        return;
    };
    let mut sink = TestSink::start().await;
    let store_dir = tempfile::tempdir_in(volume.path()).expect("store dir on the tmpfs");
    // An 8 MB volume cannot hold a 64 MiB segment: the log sizes its first one to the volume.
    let gateway = TestGateway::start_in(&github_source("gh", &sink.url("/in")), store_dir).await;
    let body = vec![b'x'; 256 * 1024];
    assert_eq!(post_event(&gateway, "first", &body).await, StatusCode::OK);

    // Leave the index some room, but too little for another segment; then fill the current one.
    let filler = volume.fill_leaving(1536 * 1024);
    let mut refused_at = None;
    for i in 0..64 {
        let status = post_event(&gateway, &format!("fill-{i}"), &body).await;
        if status != StatusCode::OK {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "storage trouble is 503");
            refused_at = Some(i);
            break;
        }
    }
    let refused_at = refused_at.expect("a full volume refuses events within 64 of 256 KiB");
    let errors = metric(&gateway.metrics().await, STORE_ACCEPT_ERRORS);
    assert!(errors >= 1.0, "the refusal is counted: {errors}");
    let ready = send("GET", &gateway.admin_url("/readyz"), &[], "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", ready.body);
    assert!(ready.body.contains("no room"), "{}", ready.body);
    assert_eq!(
        post_event(&gateway, "while-full", &body).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "still full, still 503"
    );

    // Space comes back: the next event starts a segment and is accepted, without a restart.
    std::fs::remove_file(filler).expect("free the space");
    let ready = send("GET", &gateway.admin_url("/readyz"), &[], "").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(post_event(&gateway, "after", &body).await, StatusCode::OK);
    // The refused ones were answered 503; the sender's retry of one is accepted now.
    assert_eq!(
        post_event(&gateway, &format!("fill-{refused_at}"), &body).await,
        StatusCode::OK
    );
    assert!(
        metric(&gateway.metrics().await, STORE_ACCEPT_ERRORS) > errors,
        "the second refusal is counted too"
    );

    // Every accepted event reaches the app once; the refused one only as its retry.
    let accepted = refused_at + 3;
    let mut ids: Vec<String> = sink
        .take(accepted, Duration::from_secs(30))
        .await
        .iter()
        .map(|r| r.header("x-github-delivery").to_owned())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = ["first", "after"].map(String::from).to_vec();
    expected.extend((0..=refused_at).map(|i| format!("fill-{i}")));
    expected.sort();
    assert_eq!(ids, expected);
    sink.assert_quiet(Duration::from_millis(300)).await;
    drop(gateway.stop().await);
}

/// The accepts that the store refused, as `/metrics` counts them.
const STORE_ACCEPT_ERRORS: &str = "hookgate_store_errors_total{operation=\"accept\"}";

#[tokio::test]
async fn a_store_removed_under_the_running_binary_is_503_and_not_ready() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sink = TestSink::start().await;
    let gateway = GatewayProcess::start(dir.path(), &github_source("gh", &sink.url("/in"))).await;
    let url = gateway.url("/hooks/gh");
    let post_to = |id: &str| {
        let body = format!("{{\"id\":\"{id}\"}}").into_bytes();
        let headers = github_headers(id, &body);
        let url = url.clone();
        async move { post(&url, &headers, body).await }
    };
    assert_eq!(post_to("before").await.status, StatusCode::OK);
    assert_eq!(sink.take(1, Duration::from_secs(30)).await.len(), 1);

    std::fs::remove_dir_all(dir.path().join("store")).expect("rm -rf the store");
    for i in 0..3 {
        let reply = post_to(&format!("after-{i}")).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
        assert_eq!(reply.body, r#"{"error":"store_unavailable"}"#);
    }
    let ready = send("GET", &gateway.admin_url("/readyz"), &[], "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", ready.body);
    assert!(ready.body.contains("removed"), "{}", ready.body);
    let metrics = send("GET", &gateway.admin_url("/metrics"), &[], "").await.body;
    assert_eq!(metric(&metrics, STORE_ACCEPT_ERRORS), 3.0, "{metrics}");
    // Nothing refused reaches the app.
    sink.assert_quiet(Duration::from_millis(300)).await;

    // A store directory made again in its place is not the one opened: still refused.
    std::fs::create_dir_all(dir.path().join("store/log")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("store/index")).expect("mkdir");
    assert_eq!(post_to("recreated").await.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_second_gateway_on_the_same_store_says_another_holds_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = TestSink::start().await;
    let first = GatewayProcess::start(dir.path(), &github_source("gh", &sink.url("/in"))).await;
    let store = dir.path().join("store");
    let config = dir.path().join("second.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{}\"\n[admin]\nlisten = \"{}\"\n[store]\npath = {:?}\n{}",
            crate::support::free_addr(),
            crate::support::free_addr(),
            store.display().to_string(),
            github_source("gh", &sink.url("/in"))
        ),
    )
    .expect("write config");
    let mut second = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["serve", "--log-format", "text", "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the second hookgate");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while second.try_wait().expect("wait").is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second hookgate did not give up within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = second.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let said = format!("another hookgate holds the store at {}", store.display());
    assert!(stderr.contains(&said), "{stderr}");
    assert!(!stderr.contains("Os {"), "no Rust debug text: {stderr}");
    drop(first);
}

/// `/stats` of source `gh`: queued, delivered and dead.
async fn stats_of_gh(admin_url: &str) -> (u64, u64, u64) {
    let reply = send("GET", admin_url, &[], "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let stats: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    let gh = stats["sources"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == "gh"))
        .cloned()
        .expect("source gh");
    let n = |k: &str| gh[k].as_u64().expect("a count");
    (n("queued"), n("delivered"), n("dead"))
}

#[tokio::test]
async fn after_the_index_runs_out_of_space_sigterm_exits_cleanly_and_nothing_is_lost_or_counted_twice() {
    let Some(volume) = tmpfs_or_skip("16m", "the index-out-of-space test") else {
        return;
    };
    let mut sink = TestSink::start().await;
    let gateway = GatewayProcess::start(volume.path(), &github_source("gh", &sink.url("/in"))).await;
    let url = gateway.url("/hooks/gh");
    let post_to = |id: String| {
        let body = format!("{{\"id\":\"{id}\",\"pad\":\"{}\"}}", "p".repeat(1000)).into_bytes();
        let headers = github_headers(&id, &body);
        let url = url.clone();
        async move { post(&url, &headers, body).await.status }
    };
    let mut accepted = Vec::new();
    for i in 0..20 {
        let id = format!("before-{i}");
        assert_eq!(post_to(id.clone()).await, StatusCode::OK);
        accepted.push(id);
    }
    sink.take(20, Duration::from_secs(30)).await;

    // No space left: the log's segment is preallocated and still takes records, sled's files are
    // not and cannot grow. Once sled fails, accepts are refused and /readyz says why.
    let filler = volume.fill_leaving(0);
    let mut index_failed = false;
    for i in 0..5_000 {
        let id = format!("full-{i}");
        match post_to(id.clone()).await {
            StatusCode::OK => accepted.push(id),
            StatusCode::SERVICE_UNAVAILABLE => {
                let ready = send("GET", &gateway.admin_url("/readyz"), &[], "").await;
                assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
                assert!(ready.body.contains("index failed"), "{}", ready.body);
                index_failed = true;
                break;
            }
            other => panic!("storage trouble is 503, never {other}"),
        }
    }
    assert!(index_failed, "sled never ran out of space in 5,000 events");

    gateway.sigterm();
    let config = gateway.config.clone();
    let (addr, admin) = (gateway.addr, gateway.admin);
    assert_eq!(
        gateway.wait(Duration::from_secs(60)).await,
        Some(0),
        "a clean exit: every accepted event is in the event log"
    );

    // Space back, restarted: every accepted event is delivered (again, for those whose delivery
    // the index lost), and the counts are exact.
    std::fs::remove_file(filler).expect("free the space");
    let gateway = crate::support::Stopped { config, addr, admin }.restart().await;
    let stats = gateway.admin_url("/stats");
    crate::support::eventually(
        "every accepted event is delivered",
        Duration::from_secs(60),
        || {
            let stats = stats.clone();
            let total = accepted.len() as u64;
            async move { stats_of_gh(&stats).await == (0, total, 0) }
        },
    )
    .await;
    let mut seen = std::collections::HashSet::new();
    while let Some(r) = sink.next(Duration::from_millis(500)).await {
        seen.insert(r.header("x-github-delivery").to_owned());
    }
    // The sink's channel holds every delivery since the first 20, before the shutdown and after.
    let missing: Vec<_> = accepted
        .iter()
        .filter(|id| id.starts_with("full-") && !seen.contains(*id))
        .collect();
    assert!(missing.is_empty(), "accepted, never delivered: {missing:?}");
}
