//! The config loader: any text, with every environment variable set to one secret. It may reject,
//! never panic, and never show that secret in an error.
#![no_main]

use hookgate::Config;
use libfuzzer_sys::fuzz_target;

const ENV_SECRET: &str = "fuzz-env-secret-0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text, |_| Some(ENV_SECRET.to_owned())) {
        Ok(config) => {
            let shown = format!("{config:?}");
            assert!(!shown.contains(ENV_SECRET), "a secret in Debug: {shown}");
        }
        Err(e) => {
            let shown = e.to_string();
            // The text itself may hold the string (as a name, say), and errors quote names.
            if !text.contains(ENV_SECRET) {
                assert!(!shown.contains(ENV_SECRET), "a secret in an error: {shown}");
            }
        }
    }
});
