use std::{collections::HashMap, io::Write, time::Duration};

use super::*;

const GOOD_SOURCE: &str = r#"
[[sources]]
name = "github"
path = "/hooks/github"
provider = "github"
secrets = ["s3cret"]
upstream = "http://127.0.0.1:3000/github"
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

/// The issues of a bad config, one `key: message` string each.
fn issues(text: &str) -> Vec<String> {
    match Config::from_toml(text, no_env) {
        Ok(_) => panic!("config unexpectedly valid:\n{text}"),
        Err(e) => e.issues.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn example_gateway_toml_parses() {
    let text = include_str!("../../gateway.toml");
    let config = Config::from_toml(text, no_env).expect("gateway.toml is valid");
    let names: Vec<&str> = config.sources.iter().map(|s| &*s.name).collect();
    assert_eq!(names, ["github", "stripe", "billing", "acme", "whatsapp", "ci"]);
    assert_eq!(config.store.dedup_window, Duration::from_secs(72 * 3600));
    assert_eq!(config.server.max_body_size, 1024 * 1024);
    let stripe = &config.sources[1];
    assert_eq!(stripe.forward.retry.max_age, Duration::from_secs(96 * 3600));
    assert_eq!(stripe.forward.retry.max_attempts, None);
    assert_eq!(stripe.forward.concurrency, 8);
    assert_eq!(
        stripe.forward.timeout,
        Duration::from_secs(10),
        "not overridden: the [forward] default"
    );
}

/// The comment under the first source's `provider` key lists every code provider's name, so a reader
/// of the example finds them all; a code provider added to `ProviderKind` must be added there too.
/// The catalogue's senders are listed by `hookgate providers` and the README, not there.
#[test]
fn example_gateway_toml_lists_every_provider() {
    let text = include_str!("../../gateway.toml");
    let lines = text.lines().skip_while(|l| !l.contains("one of:")).skip(1);
    let mut listed: Vec<&str> = Vec::new();
    for line in lines {
        match line.strip_prefix("#   ") {
            Some(rest) if !rest.starts_with('(') => listed.extend(rest.split_whitespace()),
            _ => break,
        }
    }
    listed.sort_unstable();
    let mut names: Vec<&str> = crate::providers::ProviderKind::all()
        .filter(|kind| !matches!(kind, crate::providers::ProviderKind::Catalogue(_)))
        .map(|kind| kind.name())
        .collect();
    names.sort_unstable();
    assert_eq!(listed, names, "gateway.toml's provider list");
}

#[test]
fn defaults_apply() {
    let config = Config::from_toml(GOOD_SOURCE, no_env).expect("valid");
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9090");
    assert!(config.server.trusted_proxies.is_empty());
    let s = &config.sources[0];
    assert_eq!(s.forward.retry.max_age, Duration::from_secs(72 * 3600));
    assert_eq!(s.forward.retry.max_attempts, None, "no attempt cap by default");
    assert_eq!(s.forward.concurrency, 32);
    assert_eq!(s.forward.retry.backoff.max(), Duration::from_secs(10 * 60));
    assert_eq!(s.forward.retry.backoff.ceiling(1), Duration::from_secs(1));
    assert!(s.allow_ips.is_none());
    assert!(!s.forward.is_signed());
}

#[test]
fn proxy_protocol_needs_trusted_proxies() {
    assert!(
        !Config::from_toml(GOOD_SOURCE, no_env)
            .expect("valid")
            .server
            .proxy_protocol
    );
    let on = format!("[server]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\"]\n{GOOD_SOURCE}");
    let config = Config::from_toml(&on, no_env).expect("valid");
    assert!(config.server.proxy_protocol);
    assert_eq!(
        config.server.trusted_proxies,
        ["10.0.0.0/8".parse::<IpNet>().expect("cidr")]
    );
    assert_eq!(
        issues(&format!("[server]\nproxy_protocol = true\n{GOOD_SOURCE}")),
        [
            "server.trusted_proxies: is empty, but server.proxy_protocol = true believes a PROXY header \
          only from these proxies (expected a list of CIDRs such as [\"10.0.0.0/8\"])"
        ]
    );
    assert_eq!(
        issues(&format!(
            "[server]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.300/8\"]\n{GOOD_SOURCE}"
        )),
        [
            "server.trusted_proxies[0]: \"10.0.0.300/8\" is not valid: invalid IP address syntax \
          (expected a CIDR such as \"10.0.0.0/8\")"
        ]
    );
}

#[test]
fn secrets_from_env_and_file() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    writeln!(file, "from-file").expect("write");
    let text = format!(
        r#"
[[sources]]
name = "github"
path = "/hooks/github"
provider = "github"
secrets = ["literal", {{ env = "GH_NEXT" }}, {{ file = {:?} }}]
upstream = "http://127.0.0.1:3000/github"
"#,
        file.path().display().to_string()
    );
    let env: HashMap<&str, &str> = [("GH_NEXT", "from-env")].into();
    let config = Config::from_toml(&text, |k| env.get(k).map(|v| v.to_string())).expect("valid");
    // The provider holds the secrets; Debug never shows them.
    let debug = format!("{:?}", config.sources[0]);
    assert!(
        !debug.contains("literal") && !debug.contains("from-env") && !debug.contains("from-file"),
        "{debug}"
    );
}

#[test]
fn a_secret_file_is_read_up_to_64_kib() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(&vec![b'k'; 64 * 1024 + 1]).expect("write");
    let path = file.path().display().to_string();
    let text = format!(
        "[[sources]]\nname = \"g\"\npath = \"/g\"\nprovider = \"github\"\nsecrets = [{{ file = {path:?} }}]\n\
         upstream = \"http://127.0.0.1:3000/g\"\n"
    );
    assert_eq!(
        issues(&text),
        [format!(
            "sources.g.secrets[0]: file {path:?} is larger than 65536 bytes (expected a file holding only \
             the secret)"
        )]
    );
    // Exactly 64 KiB is a secret.
    file.as_file().set_len(64 * 1024).expect("truncate");
    Config::from_toml(&text, no_env).expect("64 KiB is accepted");
}

#[test]
fn bad_inputs_give_exact_messages_all_at_once() {
    let text = r#"
[server]
lisen = "127.0.0.1:8080"
listen = "nope"

[store]
dedup_window = "1h"

[forward]
initial_backoff = "-5s"

[[sources]]
name = "stripe"
path = "hooks/stripe"
provider = "stripe"
secrets = [{ env = "STRIPE_SECRET" }]
tolerance = "-5s"
upstream = "ftp://example.com/x"
allow_ips = []
"#;
    assert_eq!(
        issues(text),
        [
            "server.lisen: unknown key (expected one of `listen`, `trusted_proxies`, `proxy_protocol`, `max_body_size`, \
             `header_read_timeout`, `request_timeout`, `shutdown_timeout`, `max_connections`, `max_buffered_bytes`, `tls`)",
            "server.listen: \"nope\" is not valid: invalid socket address syntax \
             (expected an address and port such as \"127.0.0.1:8080\")",
            "forward.initial_backoff: \"-5s\" is not a duration (expected e.g. \"30s\", \"5m\" or \"72h\")",
            "sources.stripe.tolerance: \"-5s\" is not a duration (expected e.g. \"30s\", \"5m\" or \"72h\")",
            "store.dedup_window: \"1h\" is too short \
             (expected at least \"72h\": senders such as Stripe retry for up to 3 days)",
            "sources.stripe.path: \"hooks/stripe\" is not valid \
             (expected an absolute path such as \"/hooks/github\", without query)",
            "sources.stripe.upstream: \"ftp://example.com/x\" is not valid \
             (expected an http:// or https:// URL such as \"http://127.0.0.1:3000/hooks\", \
             or a broker: nats://, amqp:// or amqps://, redis:// or rediss://)",
            "sources.stripe.allow_ips: [] allows no address \
             (expected at least one CIDR, or no allow_ips key to allow any address)",
            "sources.stripe.secrets[0]: environment variable \"STRIPE_SECRET\" is not set",
        ]
    );
}

#[test]
fn a_source_without_provider_or_secret_never_loads() {
    let no_provider = r#"
[[sources]]
name = "x"
path = "/x"
secrets = ["s"]
upstream = "http://127.0.0.1:3000/x"
"#;
    // Serde lists the variants in declaration order, which `ProviderKind::NAMES` follows.
    let names: Vec<String> = crate::providers::ProviderKind::NAMES
        .iter()
        .map(|n| format!("`{n}`"))
        .collect();
    assert_eq!(
        issues(no_provider),
        [format!(
            "sources.x.provider: is missing (expected one of {})",
            names.join(", ")
        )]
    );

    let unknown_provider = no_provider.replace("secrets", "provider = \"acme\"\nsecrets");
    assert_eq!(
        issues(&unknown_provider),
        [format!(
            "sources.x.provider: \"acme\" is not valid (expected one of {})",
            names.join(", ")
        )]
    );

    let no_secrets = no_provider.replace("secrets = [\"s\"]", "provider = \"github\"");
    assert_eq!(
        issues(&no_secrets),
        ["sources.x.secrets: is missing (expected a list of secrets such as [{ env = \"GITHUB_SECRET\" }])"]
    );

    let empty_secrets = no_provider.replace("secrets = [\"s\"]", "provider = \"github\"\nsecrets = []");
    assert_eq!(
        issues(&empty_secrets),
        ["sources.x.secrets: [] is empty (expected at least one secret)"]
    );

    let empty_secret = no_provider.replace(
        "secrets = [\"s\"]",
        "provider = \"github\"\nsecrets = [\"ok\", \"\"]",
    );
    assert_eq!(
        issues(&empty_secret),
        ["sources.x.secrets[1]: the secret is empty (expected a non-empty secret)"]
    );

    let bad_whsec = no_provider.replace(
        "secrets = [\"s\"]",
        "provider = \"standard_webhooks\"\nsecrets = [\"whsec_!!\"]",
    );
    let got = issues(&bad_whsec);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("sources.x.secrets[0]: the secret is invalid ("),
        "{got:?}"
    );
    assert!(
        !got[0].contains("!!"),
        "a secret never appears in a message: {got:?}"
    );
}

#[test]
fn secret_values_never_appear_in_messages() {
    let text = r#"
[forward]
signing_secret = "not-a-whsec-hunter2"

[[sources]]
name = "x"
path = "/x"
provider = "github"
secrets = [42]
upstream = "http://127.0.0.1:3000/x"
"#;
    let got = issues(text).join("\n");
    assert!(!got.contains("hunter2"), "{got}");
    assert!(
        got.contains("forward.signing_secret: the secret is invalid"),
        "{got}"
    );
    assert!(
        got.contains(r#"sources.x.secrets[0]: invalid type: integer `42`, expected a string, { env = "NAME" } or { file = "PATH" }"#),
        "{got}"
    );
}

#[test]
fn names_and_paths_are_unique_and_sections_known() {
    let text = format!(
        "{GOOD_SOURCE}{}\n[metrics]\nx = 1\n",
        GOOD_SOURCE.replace("/hooks/github", "/other")
    );
    assert_eq!(
        issues(&text),
        [
            "metrics: unknown section (expected one of server, store, admin, forward, sources)",
            "sources.github: name \"github\" is used by more than one source (expected unique names)",
        ]
    );
    let same_path = format!(
        "{GOOD_SOURCE}{}",
        GOOD_SOURCE.replace("name = \"github\"", "name = \"gh2\"")
    );
    assert_eq!(
        issues(&same_path),
        ["sources.gh2.path: \"/hooks/github\" is also the path of source \"github\" (expected unique paths)"]
    );
    assert_eq!(
        issues(""),
        ["sources: no [[sources]] defined (expected at least one)"]
    );
}

#[test]
fn admin_must_not_share_the_webhook_listener_and_overrides_are_checked() {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:7000\"\n[admin]\nlisten = \"127.0.0.1:7000\"\n{GOOD_SOURCE}\n\
         [sources.forward]\nconcurrency = 0\ninitial_backoff = \"10m\"\nmax_backoff = \"1m\"\n"
    );
    assert_eq!(
        issues(&text),
        [
            "admin.listen: \"127.0.0.1:7000\" is also server.listen (expected an address of its own)",
            "sources.github.forward.concurrency: 0 is not valid (expected at least 1)",
            "sources.github.forward.initial_backoff: initial_backoff \"10m\" is greater than max_backoff \"1m\" \
             (expected initial_backoff <= max_backoff)",
        ]
    );
}

#[test]
fn the_retry_horizon_and_attempt_cap_are_checked_in_forward_and_in_overrides() {
    let text = format!(
        "[forward]\nmax_age = \"0s\"\nmax_attempts = 0\n{GOOD_SOURCE}\n\
         [sources.forward]\nmax_age = \"0s\"\nmax_attempts = 0\n"
    );
    let zero_age = "\"0s\" is not valid (expected a retry horizon greater than zero, e.g. \"72h\"; \
                    to give up after one attempt, set max_attempts = 1)";
    assert_eq!(
        issues(&text),
        [
            format!("forward.max_age: {zero_age}"),
            "forward.max_attempts: 0 is not valid (expected at least 1)".to_owned(),
            format!("sources.github.forward.max_age: {zero_age}"),
            "sources.github.forward.max_attempts: 0 is not valid (expected at least 1)".to_owned(),
        ]
    );
    assert_eq!(
        issues(&format!("[forward]\nmax_age = \"forever\"\n{GOOD_SOURCE}")),
        ["forward.max_age: \"forever\" is not a duration (expected e.g. \"30s\", \"5m\" or \"72h\")"]
    );

    // A source's override wins over [forward]; an absent key keeps the default.
    let text = format!(
        "[forward]\nmax_age = \"1h\"\nmax_attempts = 7\n{GOOD_SOURCE}\n[sources.forward]\nmax_age = \"96h\"\n"
    );
    let config = Config::from_toml(&text, no_env).expect("valid");
    let retry = config.sources[0].forward.retry;
    assert_eq!(retry.max_age, Duration::from_secs(96 * 3600));
    assert_eq!(retry.max_attempts, Some(7));
}

#[test]
fn hmac_table_only_with_the_hmac_provider() {
    let text = format!("{GOOD_SOURCE}[sources.hmac]\nheader = \"X-Sig\"\n");
    assert_eq!(
        issues(&text),
        ["sources.github.hmac: is only allowed with provider = \"hmac\", not \"github\""]
    );
    let missing = GOOD_SOURCE.replace("provider = \"github\"", "provider = \"hmac\"");
    let got = issues(&missing);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("sources.github.hmac: "), "{got:?}");
}

/// A source of `provider` with `secrets`, then `extra` (keys, then tables).
fn token_source(provider: &str, secrets: &str, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"ci\"\npath = \"/hooks/ci\"\nprovider = \"{provider}\"\n\
         secrets = {secrets}\nupstream = \"http://127.0.0.1:3000/ci\"\n{extra}"
    )
}

#[test]
fn token_schemes_load_with_their_settings() {
    for text in [
        token_source("bearer", r#"["t0k3n"]"#, "id_header = \"X-Request-Id\"\n"),
        token_source("basic", r#"["hooks:pa55", "hooks:next"]"#, ""),
        token_source(
            "token",
            r#"["t0k3n"]"#,
            "[sources.token]\nheader = \"X-Webhook-Token\"\n",
        ),
        token_source("token", r#"["t0k3n"]"#, "[sources.token]\nquery = \"token\"\n"),
    ] {
        let config = Config::from_toml(&text, no_env).unwrap_or_else(|e| panic!("{text}\n{e}"));
        let debug = format!("{:?}", config.sources[0]);
        assert!(!debug.contains("t0k3n") && !debug.contains("pa55"), "{debug}");
    }
}

#[test]
fn token_scheme_errors_name_the_key() {
    assert_eq!(
        issues(&token_source("basic", r#"["hooks:pa55", "no-colon"]"#, "")),
        ["sources.ci.secrets[1]: the secret is invalid (expected \"user:password\")"]
    );
    let expected_one = "expected exactly one of header = \"X-Webhook-Token\" or query = \"token\"";
    assert_eq!(
        issues(&token_source("token", r#"["t"]"#, "")),
        [format!(
            "sources.ci.token: is required with provider = \"token\" ([sources.token] {expected_one})"
        )]
    );
    assert_eq!(
        issues(&token_source(
            "token",
            r#"["t"]"#,
            "[sources.token]\nheader = \"X-T\"\nquery = \"t\"\n"
        )),
        [format!(
            "sources.ci.token: has both header and query ({expected_one})"
        )]
    );
    assert_eq!(
        issues(&token_source("token", r#"["t"]"#, "[sources.token]\n")),
        [format!(
            "sources.ci.token: has neither header nor query ({expected_one})"
        )]
    );
    assert_eq!(
        issues(&token_source(
            "token",
            r#"["t"]"#,
            "[sources.token]\nheader = \"X T\"\n"
        )),
        ["sources.ci.token.header: \"X T\" is not a valid header name (expected e.g. \"X-Webhook-Token\")"]
    );
    assert_eq!(
        issues(&token_source(
            "token",
            r#"["t"]"#,
            "[sources.token]\nparam = \"t\"\n"
        )),
        [
            "sources.ci.token.param: unknown key (expected `header` or `query`)".to_owned(),
            format!("sources.ci.token: has neither header nor query ({expected_one})"),
        ]
    );
    assert_eq!(
        issues(&token_source(
            "bearer",
            r#"["t"]"#,
            "[sources.token]\nquery = \"t\"\n"
        )),
        ["sources.ci.token: is only allowed with provider = \"token\", not \"bearer\""]
    );
    assert_eq!(
        issues(&token_source("bearer", r#"["t"]"#, "id_header = \"X Id\"\n")),
        ["sources.ci.id_header: \"X Id\" is not a valid header name (expected e.g. \"X-Request-Id\")"]
    );
    assert_eq!(
        issues(&format!("{GOOD_SOURCE}id_header = \"X-Request-Id\"\n")),
        ["sources.github.id_header: is only allowed with provider = \"bearer\", \"basic\" or \"token\", not \"github\""]
    );
    let got = issues(&token_source("bearer", r#"["padded "]"#, ""));
    assert_eq!(
        got,
        [
            "sources.ci.secrets[0]: the secret is invalid (expected no control characters and no leading \
          or trailing whitespace: the secret travels in a header)"
        ]
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let got = issues("[server\nlisten = 1\n");
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("(file): not valid TOML: TOML parse error at line 1, column 8"),
        "{got:?}"
    );
}

#[test]
fn max_buffered_bytes_defaults_to_64_mib_or_four_bodies_and_holds_one_body_at_least() {
    let load = |server: &str| {
        Config::from_toml(&format!("[server]\n{server}\n{GOOD_SOURCE}"), no_env)
            .map(|c| c.server.max_buffered_bytes)
            .map_err(|e| e.to_string())
    };
    assert_eq!(load(""), Ok(64 << 20));
    assert_eq!(load("max_body_size = 33554432"), Ok(128 << 20), "4 x 32 MiB");
    assert_eq!(
        load("max_buffered_bytes = 1048576"),
        Ok(1 << 20),
        "one default body"
    );
    assert_eq!(
        load("max_buffered_bytes = 1048575"),
        Err(
            "server.max_buffered_bytes: 1048575 is not valid (expected a size in bytes from \
             server.max_body_size (1048576) to 1099511627776)"
                .to_owned()
        )
    );
    assert_eq!(
        load("max_buffered_bytes = 1099511627777"),
        Err(
            "server.max_buffered_bytes: 1099511627777 is not valid (expected a size in bytes from \
             server.max_body_size (1048576) to 1099511627776)"
                .to_owned()
        )
    );
    assert_eq!(
        load("max_buffered_bytes = -1"),
        Err("server.max_buffered_bytes: invalid value: integer `-1`, expected u64".to_owned())
    );
}

#[test]
fn admin_allowed_hosts_are_names_or_addresses_and_bad_ones_are_named() {
    let good = format!(
        "[admin]\nallowed_hosts = [\"HookGate.Internal\", \"192.0.2.10\", \"[2001:db8::1]\", \"a-b.c\"]\n{GOOD_SOURCE}"
    );
    let config = Config::from_toml(&good, |_| None).expect("valid");
    assert_eq!(
        config.admin.allowed_hosts,
        ["hookgate.internal", "192.0.2.10", "2001:db8::1", "a-b.c"]
    );
    assert!(
        Config::from_toml(GOOD_SOURCE, |_| None)
            .expect("valid")
            .admin
            .allowed_hosts
            .is_empty(),
        "none by default"
    );
    let bad = format!(
        "[admin]\nallowed_hosts = [\"ok.example\", \"http://x.example\", \"x.example:9090\", \"*.example\", \"\", \"-x.example\", \"1.2.3\"]\n{GOOD_SOURCE}"
    );
    let expected = "(expected a DNS name such as \"hookgate.internal\" or an IP address, without a \
                    scheme, port, path or wildcard)";
    assert_eq!(
        issues(&bad),
        [
            format!("admin.allowed_hosts[1]: \"http://x.example\" is not a host name {expected}"),
            format!("admin.allowed_hosts[2]: \"x.example:9090\" is not a host name {expected}"),
            format!("admin.allowed_hosts[3]: \"*.example\" is not a host name {expected}"),
            format!("admin.allowed_hosts[4]: \"\" is not a host name {expected}"),
            format!("admin.allowed_hosts[5]: \"-x.example\" is not a host name {expected}"),
            format!("admin.allowed_hosts[6]: \"1.2.3\" is not an IP address or a host name {expected}"),
        ]
    );
}

#[test]
fn admin_token_is_required_off_loopback_and_never_printed() {
    let open = format!("[admin]\nlisten = \"0.0.0.0:9090\"\n{GOOD_SOURCE}");
    assert_eq!(
        issues(&open),
        [
            "admin.token: is required when admin.listen (\"0.0.0.0:9090\") is not a loopback address \
          (expected token = { env = \"NAME\" }, or a loopback admin.listen)"
        ]
    );
    let short = format!("[admin]\ntoken = \"hunter2\"\n{GOOD_SOURCE}");
    assert_eq!(
        issues(&short),
        ["admin.token: the token is too short (expected at least 16 characters)"]
    );
    let spaces = format!("[admin]\ntoken = \"{}\"\n{GOOD_SOURCE}", " ".repeat(20));
    assert_eq!(
        issues(&spaces),
        ["admin.token: the token is empty or only whitespace (expected at least 16 characters)"]
    );
    // Long enough only with its padding: what a client can present is the trimmed token.
    let padded = format!("[admin]\ntoken = \"   short-token   \"\n{GOOD_SOURCE}");
    assert_eq!(
        issues(&padded),
        ["admin.token: the token is too short (expected at least 16 characters)"]
    );
    let empty_env = format!("[admin]\ntoken = {{ env = \"ADMIN_TOKEN\" }}\n{GOOD_SOURCE}");
    let err = Config::from_toml(&empty_env, |_| Some(" \t ".into())).expect_err("blank token");
    assert_eq!(
        err.to_string(),
        "admin.token: the token is empty or only whitespace (expected at least 16 characters)"
    );
    let with_token =
        format!("[admin]\nlisten = \"0.0.0.0:9090\"\ntoken = {{ env = \"ADMIN_TOKEN\" }}\n{GOOD_SOURCE}");
    let config = Config::from_toml(&with_token, |k| {
        (k == "ADMIN_TOKEN").then(|| " 0123456789abcdef-token\n".into())
    })
    .expect("valid");
    assert_eq!(
        config.admin.token.as_ref().map(Secret::expose),
        Some(&b"0123456789abcdef-token"[..]),
        "kept without its surrounding whitespace"
    );
    assert!(
        !format!("{config:?}").contains("0123456789abcdef"),
        "the token never appears in Debug"
    );
}

#[test]
fn store_cache_size() {
    let config = Config::from_toml(GOOD_SOURCE, no_env).expect("valid");
    assert_eq!(config.store.cache_size, 4 * 1024 * 1024);
    let text = format!("[store]\ncache_size = 67108864\n{GOOD_SOURCE}");
    let config = Config::from_toml(&text, no_env).expect("valid");
    assert_eq!(config.store.cache_size, 64 * 1024 * 1024);
    let text = format!("[store]\ncache_size = 4096\n{GOOD_SOURCE}");
    assert_eq!(
        issues(&text),
        ["store.cache_size: 4096 is too small (expected at least 1048576 bytes, 1 MiB)"]
    );
}

#[test]
fn retention_and_silence_settings() {
    let config = Config::from_toml(GOOD_SOURCE, no_env).expect("valid");
    assert_eq!(config.store.retention, Duration::from_secs(24 * 3600));
    assert_eq!(config.sources[0].expect_within, None);
    let text = format!("[store]\nretention = \"1h\"\n{GOOD_SOURCE}expect_within = \"30m\"\n");
    let config = Config::from_toml(&text, no_env).expect("valid");
    assert_eq!(config.store.retention, Duration::from_secs(3600));
    assert_eq!(config.sources[0].expect_within, Some(Duration::from_secs(1800)));
    let zero = format!("{GOOD_SOURCE}expect_within = \"0s\"\n");
    assert_eq!(
        issues(&zero),
        ["sources.github.expect_within: \"0s\" is not valid (expected a duration greater than zero, e.g. \"10s\")"]
    );
}

#[test]
fn the_upstream_scheme_picks_the_output_and_its_keys_are_checked() {
    let source = |upstream: &str, output: &str| {
        format!(
            "[[sources]]\nname = \"q\"\npath = \"/q\"\nprovider = \"github\"\nsecrets = [\"s3cret\"]\n\
             upstream = \"{upstream}\"\n{output}"
        )
    };
    let ok = Config::from_toml(
        &source(
            "nats://u:hunter2@127.0.0.1:4222",
            "[sources.output]\nsubject = \"webhooks.q\"\ncreate_stream = true\n",
        ),
        no_env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let target = &ok.sources[0].forward;
    assert_eq!(target.endpoint.kind(), "nats");
    assert_eq!(
        target.endpoint.to_string(),
        "nats://127.0.0.1:4222 subject webhooks.q"
    );
    assert!(!format!("{target:?}").contains("hunter2"));
    assert!(!ok.summary().contains("hunter2"), "{}", ok.summary());

    assert_eq!(
        issues(&source("nats://127.0.0.1:4222", "")),
        [
            "sources.q.output.subject: is missing (expected the subject to publish to, such as \
          \"webhooks.stripe\", with a nats:// upstream)"
        ]
    );
    assert_eq!(
        issues(&source(
            "nats://127.0.0.1:4222",
            "[sources.output]\nsubject = \"webhooks.*\"\n"
        )),
        [
            "sources.q.output.subject: \"webhooks.*\" is not valid (expected dot-separated tokens \
          without spaces or wildcards, such as \"webhooks.stripe\")"
        ]
    );
    assert_eq!(
        issues(&source(
            "http://127.0.0.1:3000/q",
            "[sources.output]\nsubject = \"webhooks.q\"\n"
        )),
        [
            "sources.q.output: is only for a broker upstream (expected no [sources.output] with an \
             http:// or https:// upstream)"
        ]
    );
    assert_eq!(
        issues(&source("amqp://guest:hunter2@127.0.0.1:5672/", "")),
        [
            "sources.q.output.exchange: is missing (expected the exchange to publish to, such as \
             \"webhooks\", with an amqp:// upstream)"
        ]
    );
    assert_eq!(
        issues(&source("kafka://u:hunter2@127.0.0.1:9092/", "")),
        [
            "sources.q.upstream: \"kafka://127.0.0.1:9092/\" is not valid (expected an http:// or \
             https:// URL such as \"http://127.0.0.1:3000/hooks\", or a broker: nats://, amqp:// or \
             amqps://, redis:// or rediss://)"
        ]
    );

    // RabbitMQ: the routing key defaults to the source's name.
    let ok = Config::from_toml(
        &source(
            "amqp://guest:hunter2@127.0.0.1:5672/%2f",
            "[sources.output]\nexchange = \"webhooks\"\ndeclare = true\n",
        ),
        no_env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let target = &ok.sources[0].forward;
    assert_eq!(target.endpoint.kind(), "rabbitmq");
    assert_eq!(
        target.endpoint.to_string(),
        "amqp://127.0.0.1:5672/%2f exchange webhooks routing key q"
    );
    assert!(!format!("{target:?}").contains("hunter2"));
    assert!(!ok.summary().contains("hunter2"), "{}", ok.summary());

    // Redis.
    let ok = Config::from_toml(
        &source(
            "redis://:hunter2@127.0.0.1:6379/0",
            "[sources.output]\nstream = \"webhooks:q\"\nmaxlen = 1000\n",
        ),
        no_env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let target = &ok.sources[0].forward;
    assert_eq!(target.endpoint.kind(), "redis");
    assert_eq!(
        target.endpoint.to_string(),
        "redis://127.0.0.1:6379/0 stream webhooks:q (maxlen ~1000)"
    );
    assert!(!format!("{target:?}").contains("hunter2"));
    assert_eq!(
        issues(&source("redis://127.0.0.1:6379/0", "")),
        [
            "sources.q.output.stream: is missing (expected the stream to add entries to, such as \
             \"webhooks:stripe\", with a redis:// upstream)"
        ]
    );
    // A key of another output is refused, naming whose it is.
    assert_eq!(
        issues(&source(
            "redis://127.0.0.1:6379/0",
            "[sources.output]\nstream = \"s\"\nexchange = \"webhooks\"\n"
        )),
        [
            "sources.q.output.exchange: is a key of the amqp output, not for a redis:// upstream (expected stream, maxlen)"
        ]
    );
    assert_eq!(
        issues(&source(
            "amqp://127.0.0.1:5672/%2f",
            "[sources.output]\nexchange = \"bad name!\"\n"
        )),
        [
            "sources.q.output.exchange: \"bad name!\" is not valid (expected 1 to 255 of a-z, A-Z, \
             0-9, '-', '_', '.' and ':', such as \"webhooks\")"
        ]
    );
    assert_eq!(
        issues(&source(
            "redis://127.0.0.1:notaport/0",
            "[sources.output]\nstream = \"s\"\n"
        )),
        [
            "sources.q.upstream: \"redis://127.0.0.1:notaport/0\" is not a valid Redis URL: the client \
             cannot parse it (expected e.g. \"redis://127.0.0.1:6379/0\")"
        ]
    );
}

#[test]
fn a_broker_upstream_can_come_from_the_environment_or_a_file() {
    let source = |upstream: &str| {
        format!(
            "[[sources]]\nname = \"q\"\npath = \"/q\"\nprovider = \"github\"\nsecrets = [\"s3cret\"]\n\
             upstream = {upstream}\n[sources.output]\nexchange = \"webhooks\"\n"
        )
    };
    let env = |name: &str| (name == "AMQP_URL").then(|| "amqp://guest:hunter2@127.0.0.1:5672/%2f".to_owned());
    let ok = Config::from_toml(&source("{ env = \"AMQP_URL\" }"), env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok.sources[0].forward.endpoint.to_string(),
        "amqp://127.0.0.1:5672/%2f exchange webhooks routing key q"
    );
    assert!(!ok.summary().contains("hunter2"), "{}", ok.summary());
    assert!(!format!("{:?}", ok.sources[0]).contains("hunter2"));

    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(b"amqp://guest:hunter2@127.0.0.1:5672/%2f\n")
        .expect("write");
    let path = file.path().display().to_string();
    let ok = Config::from_toml(&source(&format!("{{ file = {path:?} }}")), no_env)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.sources[0].forward.endpoint.kind(), "rabbitmq");

    assert_eq!(
        issues(&source("{ env = \"AMQP_URL\" }")),
        ["sources.q.upstream: environment variable \"AMQP_URL\" is not set"]
    );
    let bad = |name: &str| (name == "AMQP_URL").then(|| "amqp://u:hunter2@[::1".to_owned());
    let err = Config::from_toml(&source("{ env = \"AMQP_URL\" }"), bad).expect_err("bad URL");
    let text = err.to_string();
    assert!(
        text.contains("sources.q.upstream: the URL in environment variable \"AMQP_URL\""),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn an_upstream_password_never_appears_in_messages() {
    let source = |upstream: &str, extra: &str| {
        format!(
            "[[sources]]\nname = \"q\"\npath = \"/q\"\nprovider = \"github\"\nsecrets = [\"s3cret\"]\n\
             upstream = \"{upstream}\"\n{extra}"
        )
    };
    // A TLS key beside an upstream that is not https://.
    let tls = issues(&source(
        "nats://u:hunter2@127.0.0.1:4222",
        "[sources.output]\nsubject = \"webhooks.q\"\n[sources.forward]\nca_file = \"/etc/ca.pem\"\n",
    ));
    assert!(!tls.is_empty());
    assert!(tls.iter().all(|i| !i.contains("hunter2")), "{tls:?}");
    assert!(tls.iter().any(|i| i.contains("nats://127.0.0.1:4222")), "{tls:?}");
    // An http upstream with credentials: refused, and not shown.
    let http = issues(&source("http://u:hunter2@127.0.0.1:3000/q", ""));
    assert_eq!(
        http,
        [
            "sources.q.upstream: \"http://127.0.0.1:3000/q\" holds a user and password, which are never \
          sent to the app (expected an http:// or https:// URL without them; use signing_secret to let \
          the app check that a request comes from hookgate)"
        ]
    );
    // A URL that does not parse at all.
    let bad = issues(&source("http://u:hunter2@exa mple/q", ""));
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(!bad[0].contains("hunter2"), "{bad:?}");
    assert!(bad[0].contains("http://[redacted]@exa mple/q"), "{bad:?}");
}

#[test]
fn every_table_reports_every_problem_in_one_run() {
    // Several problems in each table, some of which used to hide the rest: the store table stopped
    // at its first, a [forward] that did not parse skipped every source, and a duplicate path went
    // unreported next to a source's other problems.
    let text = r#"
[server]
max_connections = 0
request_timeout = "0s"

[store]
dedup_window = "1h"
path = ""
retention = "0s"
cache_size = 1

[admin]
listen = "0.0.0.0:9090"

[forward]
max_attempts = "many"
concurrency = 0

[[sources]]
name = "a"
path = "/same"
provider = "github"
secrets = ["s"]
upstream = "ftp://example.com/a"

[[sources]]
name = "b"
path = "/same"
secrets = ["s"]
upstream = "http://127.0.0.1:3000/b"
"#;
    let got = issues(text);
    let expected = [
        "forward.max_attempts: \"many\" is not valid (expected a positive integer)",
        "sources.b.provider: is missing (expected one of ",
        "admin.token: is required when admin.listen (\"0.0.0.0:9090\") is not a loopback address",
        "server.request_timeout: \"0s\" is not valid (expected a duration greater than zero, e.g. \"10s\")",
        "server.max_connections: 0 is not valid (expected at least 1)",
        "store.dedup_window: \"1h\" is too short (expected at least \"72h\"",
        "store.path: \"\" is not valid (expected a directory path)",
        "store.retention: \"0s\" is not valid (expected a duration such as \"24h\")",
        "store.cache_size: 1 is too small (expected at least 1048576 bytes, 1 MiB)",
        "forward.concurrency: 0 is not valid (expected at least 1)",
        "sources.b.path: \"/same\" is also the path of source \"a\" (expected unique paths)",
        "sources.a.upstream: \"ftp://example.com/a\" is not valid (expected an http:// or https:// URL",
    ];
    for want in expected {
        assert!(got.iter().any(|g| g.starts_with(want)), "no {want:?} in {got:#?}");
    }
    assert_eq!(got.len(), expected.len(), "{got:#?}");
}

#[test]
fn challenge_settings_are_checked() {
    // meta needs its verify token, resolved like any secret.
    assert_eq!(
        issues(&token_source("meta", r#"["app-secret"]"#, "")),
        [
            "sources.ci.challenge.verify_token: is required with provider = \"meta\" (expected the verify \
          token set with the callback URL, e.g. verify_token = { env = \"META_VERIFY_TOKEN\" })"
        ]
    );
    assert_eq!(
        issues(&token_source(
            "meta",
            r#"["app-secret"]"#,
            "[sources.challenge]\nverify_token = { env = \"META_VERIFY_TOKEN\" }\n"
        )),
        ["sources.ci.challenge.verify_token: environment variable \"META_VERIFY_TOKEN\" is not set"]
    );
    let env = |name: &str| (name == "META_VERIFY_TOKEN").then(|| "from-env".to_owned());
    let text = token_source(
        "meta",
        r#"["app-secret"]"#,
        "[sources.challenge]\nverify_token = { env = \"META_VERIFY_TOKEN\" }\n",
    );
    let config = Config::from_toml(&text, env).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !format!("{config:?}").contains("from-env"),
        "the token is never shown"
    );
    // Elsewhere the table has no meaning: refused rather than ignored.
    assert_eq!(
        issues(&token_source(
            "dropbox",
            r#"["app-secret"]"#,
            "[sources.challenge]\nverify_token = \"t\"\n"
        )),
        ["sources.ci.challenge: is only allowed with provider = \"meta\", not \"dropbox\""]
    );
    assert_eq!(
        issues(&token_source(
            "meta",
            r#"["app-secret"]"#,
            "[sources.challenge]\ntoken = \"t\"\n"
        )),
        [
            "sources.ci.challenge.token: unknown key (expected `verify_token`)",
            "sources.ci.challenge.verify_token: is required with provider = \"meta\" (expected the verify \
             token set with the callback URL, e.g. verify_token = { env = \"META_VERIFY_TOKEN\" })",
        ]
    );
}

#[test]
fn a_rate_limit_loads_and_each_bad_value_is_named() {
    let limited = |rate: &str| format!("{GOOD_SOURCE}rate_limit = {rate}\n");
    let config = Config::from_toml(&limited("{ per_second = 100, burst = 200 }"), no_env).expect("valid");
    let rate = config.sources[0].rate_limit.expect("a rate limit");
    assert_eq!((rate.per_second(), rate.burst()), (100.0, 200));
    let config = Config::from_toml(&limited("{ per_second = 0.5, burst = 1 }"), no_env).expect("valid");
    assert_eq!(config.sources[0].rate_limit.map(|r| r.per_second()), Some(0.5));
    assert!(Config::from_toml(GOOD_SOURCE, no_env).expect("valid").sources[0]
        .rate_limit
        .is_none());

    // Both bad values at once, each under its own key.
    assert_eq!(
        issues(&limited("{ per_second = 0, burst = 0 }")),
        [
            "sources.github.rate_limit.per_second: 0 is not valid (expected a number of requests per \
             second greater than 0, e.g. 100)",
            "sources.github.rate_limit.burst: 0 is not valid (expected a whole number of requests of at \
             least 1, e.g. 200)",
        ]
    );
    assert_eq!(
        issues(&limited("{ per_second = -2.5, burst = 10 }")),
        [
            "sources.github.rate_limit.per_second: -2.5 is not valid (expected a number of requests per \
          second greater than 0, e.g. 100)"
        ]
    );
    assert_eq!(
        issues(&limited("{ per_second = 10, burst = -1 }")),
        [
            "sources.github.rate_limit.burst: -1 is not valid (expected a whole number of requests of at \
          least 1, e.g. 200)"
        ]
    );
    // Collected with the source's other problems, not first-only.
    let both = issues(&format!(
        "{}rate_limit = {{ per_second = 0, burst = 1 }}\n",
        GOOD_SOURCE.replace("/hooks/github", "hooks")
    ));
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both[0].starts_with("sources.github.path"), "{both:?}");
    assert!(
        both[1].starts_with("sources.github.rate_limit.per_second"),
        "{both:?}"
    );
    let unknown = issues(&limited("{ per_second = 1, burst = 1, per_minute = 3 }"));
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert!(
        unknown[0].starts_with("sources.github.rate_limit.per_minute: unknown key"),
        "{unknown:?}"
    );
    let missing = issues(&limited("{ per_second = 1 }"));
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].starts_with("sources.github.rate_limit.burst: is missing"),
        "{missing:?}"
    );
}

#[test]
fn store_max_queued_defaults_to_a_million_and_takes_no_zero() {
    let config = Config::from_toml(GOOD_SOURCE, no_env).expect("valid");
    assert_eq!(config.store.max_queued, 1_000_000);
    let config =
        Config::from_toml(&format!("[store]\nmax_queued = 5\n{GOOD_SOURCE}"), no_env).expect("valid");
    assert_eq!(config.store.max_queued, 5);
    assert_eq!(
        issues(&format!("[store]\nmax_queued = 0\n{GOOD_SOURCE}")),
        ["store.max_queued: 0 is not valid (expected a number of events of at least 1, e.g. 1000000)"]
    );
    let negative = issues(&format!("[store]\nmax_queued = -1\n{GOOD_SOURCE}"));
    assert_eq!(negative.len(), 1, "{negative:?}");
    assert!(
        negative[0].starts_with("store.max_queued: ") && negative[0].contains("-1"),
        "{negative:?}"
    );
}
