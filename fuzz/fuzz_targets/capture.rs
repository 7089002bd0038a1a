//! The captured-request reader of `hookgate verify`: raw HTTP/1.1 bytes, checked against one source
//! (chosen by the first byte) of every provider. No capture may panic or verify.
#![no_main]

use std::{
    sync::OnceLock,
    time::{Duration, UNIX_EPOCH},
};

use hookgate::{
    capture::{verify_capture, Verdict},
    Config,
};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| common::all_providers("unused-store", ""))
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, raw)) = data.split_first() else {
        return;
    };
    let config = config();
    let source = &config.sources[pick as usize % config.sources.len()].name;
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    if let Ok(Verdict::Valid { event_id }) = verify_capture(config, source, raw, now) {
        panic!("{source} verified a capture no one signed (event {event_id:?})");
    }
});
