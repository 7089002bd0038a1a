//! Request heads (and whatever follows them) through the whole stack: one gateway, started once with
//! a source of every provider, gets each input as the bytes of one TCP connection (HTTP/1.1 or
//! HTTP/2, pipelined or not), then a half-close. The gateway must answer or close within the bound,
//! never panic (any panic, in any task, aborts the process), and never answer 2xx: no input carries
//! a valid signature.
#![no_main]

use std::{net::SocketAddr, sync::OnceLock, time::Duration};

use hookgate::Listeners;
use libfuzzer_sys::fuzz_target;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    runtime::Runtime,
};

#[path = "common.rs"]
mod common;

/// Far above any answer's time (the head timeout is 1 s): a hang, not a slow answer.
const BOUND: Duration = Duration::from_secs(20);

struct Gateway {
    runtime: Runtime,
    addr: SocketAddr,
}

fn gateway() -> &'static Gateway {
    static GATEWAY: OnceLock<Gateway> = OnceLock::new();
    GATEWAY.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        // Lives as long as the process: the store is in it.
        let dir = Box::leak(Box::new(tempfile::tempdir().expect("temp dir")));
        let store = dir.path().join("store").display().to_string();
        let config = common::all_providers(
            &store,
            "[server]\nheader_read_timeout = \"1s\"\nrequest_timeout = \"2s\"\nmax_body_size = 65536\n",
        );
        let addr = runtime.block_on(async {
            let webhook = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = webhook.local_addr().expect("addr");
            tokio::spawn(async move {
                let listeners = Listeners { webhook, admin };
                if let Err(e) = hookgate::run(config, listeners, std::future::pending(), None).await {
                    panic!("the gateway stopped: {e}");
                }
            });
            addr
        });
        Gateway { runtime, addr }
    })
}

fuzz_target!(|data: &[u8]| {
    let gw = gateway();
    let answer = gw.runtime.block_on(async {
        let mut conn = TcpStream::connect(gw.addr).await.expect("connect");
        // The gateway may answer and close before it has read everything: not an error.
        let _ = conn.write_all(data).await;
        let _ = conn.shutdown().await;
        let mut answer = Vec::new();
        match tokio::time::timeout(BOUND, conn.read_to_end(&mut answer)).await {
            Ok(_) => answer,
            Err(_) => panic!("no answer and no close within {BOUND:?}"),
        }
    });
    // Every HTTP/1.1 status line of the answer (pipelined requests get one each).
    let text = String::from_utf8_lossy(&answer);
    for line in text.split("\r\n").filter(|l| l.starts_with("HTTP/1.")) {
        let status = line.split(' ').nth(1).unwrap_or("");
        assert!(
            !status.starts_with('2'),
            "an unsigned request got {line:?}:\n{text}"
        );
    }
});
