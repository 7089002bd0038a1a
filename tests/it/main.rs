//! Integration tests: one module per promise, all against real parts on 127.0.0.1 (a real gateway,
//! sled in a temp dir, a real loopback app, and the real binary for crash and signal tests).

mod support;

mod accept_durable;
mod admin_api;
mod broker_crash;
mod challenges;
mod cli;
mod cli_admin;
mod config_errors;
mod crash_recovery;
mod dedup;
mod deploy;
mod forward_retry;
mod handshakes;
mod hostile_clients;
mod logs;
mod metrics;
mod nats_output;
mod providers_roundtrip;
mod proxy_protocol;
mod queue_full;
mod rabbitmq_output;
mod rate_limit;
mod redis_output;
mod reload;
mod shadow;
mod shutdown;
mod silence;
mod store_faults;
mod tls;
mod tokens;
mod verify_rejects;
mod web_ui;
