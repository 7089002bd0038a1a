//! What the targets share: a config with one source of every provider, each at `/hooks/<provider>`.

#![allow(dead_code)] // each target uses a part

use hookgate::Config;

/// `(provider, secrets, extra keys)`: secrets in the form each provider requires.
pub const PROVIDERS: &[(&str, &str, &str)] = &[
    ("github", r#"["fuzz-github-secret"]"#, ""),
    ("stripe", r#"["whsec_fuzz_stripe_secret"]"#, ""),
    ("standard_webhooks", r#"["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]"#, ""),
    ("svix", r#"["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]"#, ""),
    (
        "hmac",
        r#"["fuzz-hmac-secret"]"#,
        "[sources.hmac]\nheader = \"X-Signature\"\nprefix = \"sha256=\"\n\
         signed = \"{header:X-Timestamp}.{body}\"\ntimestamp_header = \"X-Timestamp\"\nid_header = \"X-Id\"\n",
    ),
    ("typeform", r#"["fuzz-typeform-secret"]"#, ""),
    ("intercom", r#"["fuzz-intercom-secret"]"#, ""),
    ("bitbucket", r#"["fuzz-bitbucket-secret"]"#, ""),
    ("vercel", r#"["fuzz-vercel-secret"]"#, ""),
    ("gitlab", r#"["fuzz-gitlab-token"]"#, ""),
    ("paddle", r#"["pdl_ntfset_fuzz_secret"]"#, ""),
    ("linear", r#"["lin_wh_fuzz_secret"]"#, ""),
    ("zoom", r#"["fuzz-zoom-secret-token"]"#, ""),
    ("twitch", r#"["fuzz-twitch-eventsub-secret"]"#, ""),
    ("slack", r#"["fuzz-slack-signing-secret"]"#, ""),
    ("shopify", r#"["fuzz-shopify-secret"]"#, ""),
    ("twilio", r#"["fuzz-twilio-token"]"#, "public_url = \"https://example.com/hooks/twilio\"\n"),
    ("square", r#"["fuzz-square-key"]"#, "public_url = \"https://example.com/hooks/square\"\n"),
    ("hubspot", r#"["fuzz-hubspot-secret"]"#, "public_url = \"https://example.com/hooks/hubspot\"\n"),
    (
        "discord",
        r#"["d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"]"#,
        "",
    ),
    (
        "sendgrid",
        r#"["MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="]"#,
        "",
    ),
    ("mailgun", r#"["fuzz-mailgun-key"]"#, ""),
    ("pagerduty", r#"["fuzz-pagerduty-secret"]"#, ""),
];

/// The `[[sources]]` of every provider, delivering to `upstream` + `/<provider>`.
pub fn sources_toml(upstream: &str) -> String {
    let mut toml = String::new();
    for (provider, secrets, extra) in PROVIDERS {
        // Keys first, then the sub-table (`[sources.hmac]`) that ends the entry's keys.
        let (keys, table) = match extra.find("[sources.") {
            Some(at) => extra.split_at(at),
            None => (*extra, ""),
        };
        toml.push_str(&format!(
            "[[sources]]\nname = \"{provider}\"\npath = \"/hooks/{provider}\"\nprovider = \"{provider}\"\n\
             secrets = {secrets}\nupstream = \"{upstream}/{provider}\"\n{keys}{table}\n"
        ));
    }
    toml
}

/// The config of every provider, with the store in `store` (not opened here).
pub fn all_providers(store: &str, server: &str) -> Config {
    let toml = format!(
        "{server}\n[store]\npath = {store:?}\n{}",
        sources_toml("http://127.0.0.1:9")
    );
    Config::from_toml(&toml, |_| None).unwrap_or_else(|e| panic!("the fuzz config is invalid: {e}"))
}
