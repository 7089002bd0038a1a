//! Every provider's header and body parsing, through its `verify` entry point: arbitrary headers,
//! body, method, target and clock. No input may verify (none carries a signature made with the
//! secrets), panic, or put a secret in an error.
#![no_main]

use std::{
    sync::OnceLock,
    time::{Duration, UNIX_EPOCH},
};

use arbitrary::Arbitrary;
use hookgate::{providers::WebhookRequest, Config};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

#[derive(Arbitrary, Debug)]
struct Input {
    provider: u8,
    post: bool,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    now_secs: u32,
}

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| common::all_providers("unused-store", ""))
}

fuzz_target!(|input: Input| {
    let config = config();
    let source = &config.sources[input.provider as usize % config.sources.len()];
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        // Only what hyper would hand the gateway: valid names and values.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    let uri: Uri = input.target.parse().unwrap_or_else(|_| Uri::from_static("/"));
    let method = if input.post { Method::POST } else { Method::PUT };
    let req = WebhookRequest {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &input.body,
    };
    let now = UNIX_EPOCH + Duration::from_secs(u64::from(input.now_secs));
    match source.provider.verify(&req, now) {
        Ok(meta) => panic!("{} verified a request no one signed: {meta:?}", source.name),
        Err(e) => {
            let shown = format!("{e} {e:?}");
            for (provider, secrets, _) in common::PROVIDERS {
                let secret = secrets.trim_matches(|c| c == '[' || c == ']' || c == '"');
                assert!(
                    !shown.contains(secret),
                    "{provider}'s secret in an error: {shown}"
                );
            }
        }
    }
});
