//! A config file on disk: [`Config::load`] reads and validates it, for `hookgate serve` (at start and
//! on every reload) and the offline commands, and [`Config::summary`] is what `hookgate check` prints.

use std::{
    fmt::{self, Write as _},
    path::{Path, PathBuf},
};

use super::{Config, ConfigError, ConfigIssue};

/// Why a config file could not be used; both cases name the file.
#[derive(Debug)]
pub enum ConfigFileError {
    /// The file could not be read (missing, a directory, no permission).
    Read {
        /// The path as given.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// The file was read and has problems.
    Invalid {
        /// The path as given.
        path: PathBuf,
        /// Every problem found.
        error: ConfigError,
    },
}

impl fmt::Display for ConfigFileError {
    /// `PATH has N problems:` and one indented line per problem, for the `Invalid` case.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, error } => {
                write!(f, "cannot read config file {}: {error}", path.display())
            }
            Self::Invalid { path, error } => {
                let n = error.issues.len();
                write!(f, "{} has {n} problem{}:", path.display(), plural(n))?;
                for issue in &error.issues {
                    write!(f, "\n  {issue}")?;
                }
                Ok(())
            }
        }
    }
}

/// No `source()`: the message already holds the cause, and each problem of an invalid file.
impl std::error::Error for ConfigFileError {}

impl From<ConfigFileError> for ConfigError {
    /// The problems as a reload reports them: an unreadable file is one problem keyed by its path.
    fn from(e: ConfigFileError) -> Self {
        match e {
            ConfigFileError::Read { path, error } => ConfigError {
                issues: vec![ConfigIssue {
                    key: path.display().to_string(),
                    message: format!("cannot read the config file: {error}"),
                }],
            },
            ConfigFileError::Invalid { error, .. } => error,
        }
    }
}

/// How a listener's TLS shows in the summary: nothing for plain HTTP.
fn tls_note(tls: Option<&crate::tls::ServerTls>) -> String {
    match tls {
        None => String::new(),
        Some(tls) => format!(
            " (TLS{}, certificate valid until {})",
            if tls.requires_client_cert() {
                ", client certificates required"
            } else {
                ""
            },
            httpdate::fmt_http_date(tls.not_after())
        ),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

impl Config {
    /// Reads the file at `path` and validates it as [`Config::from_toml`] does, with `env` for
    /// `{ env = "NAME" }` secrets (`main.rs` passes `std::env::var`).
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigFileError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::from_toml(&text, env).map_err(|error| ConfigFileError::Invalid {
            path: path.to_owned(),
            error,
        })
    }

    /// What `hookgate check` prints after `PATH: ok`: the listeners, the store, and one line per
    /// source, each line indented by two spaces and ending in a newline. Secrets are never shown.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "  listen {}{}  admin {}{}  store {}",
            self.server.listen,
            tls_note(self.server.tls.as_ref()),
            self.admin.listen,
            tls_note(self.admin.tls.as_ref()),
            self.store.backend.describe()
        );
        let _ = writeln!(
            out,
            "  dedup window {}  max body {} bytes",
            humantime::format_duration(self.store.dedup_window),
            self.server.max_body_size
        );
        for s in &self.sources {
            let allow = match &s.allow_ips {
                Some(nets) => nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
                None => "any address".into(),
            };
            let _ = writeln!(
                out,
                "  source {}: {} -> {} (provider {}, allow {}, retries for {}{}, concurrency {}{}{})",
                s.name,
                s.path,
                s.forward.endpoint,
                s.kind.name(),
                allow,
                humantime::format_duration(s.forward.retry.max_age),
                match s.forward.retry.max_attempts {
                    Some(n) => format!(" or {n} attempts"),
                    None => String::new(),
                },
                s.forward.concurrency,
                if s.forward.is_signed() { ", signed" } else { "" },
                match &s.rate_limit {
                    Some(r) => format!(", rate limit {}/s burst {}", r.per_second(), r.burst()),
                    None => String::new(),
                },
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = r#"
[[sources]]
name = "gh"
path = "/hooks/gh"
provider = "github"
secrets = [{ env = "GH_SECRET" }]
upstream = "http://127.0.0.1:3000/gh"
allow_ips = ["192.0.2.0/24"]
"#;

    fn env(name: &str) -> Option<String> {
        (name == "GH_SECRET").then(|| "gh-secret-value".to_owned())
    }

    #[test]
    fn load_reads_the_file_with_the_environment() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, SOURCE).expect("write");
        let config = Config::load(&path, env).expect("valid");
        assert_eq!(&*config.sources[0].name, "gh");
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let missing = dir.path().join("missing.toml");
        let err = Config::load(&missing, env).expect_err("missing");
        assert!(matches!(err, ConfigFileError::Read { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read config file {}: ", missing.display())),
            "{err}"
        );
        let reload = ConfigError::from(err);
        assert_eq!(reload.issues.len(), 1);
        assert_eq!(reload.issues[0].key, missing.display().to_string());

        let broken = dir.path().join("broken.toml");
        std::fs::write(&broken, format!("[server]\nlisen = 1\n{SOURCE}")).expect("write");
        let err = Config::load(&broken, |_| None).expect_err("invalid");
        let text = err.to_string();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(format!("{} has 2 problems:", broken.display()).as_str())
        );
        let rest: Vec<&str> = lines.collect();
        assert_eq!(rest.len(), 2, "{text}");
        assert!(rest.iter().all(|l| l.starts_with("  ")), "{text}");
        assert!(text.contains("server.lisen") || text.contains("lisen"), "{text}");
        assert!(text.contains("GH_SECRET"), "{text}");
        assert_eq!(ConfigError::from(err).issues.len(), 2);
    }

    #[test]
    fn the_summary_lists_listeners_and_sources_without_secrets() {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\nmax_body_size = 1048576\n\
             [store]\npath = \"/var/lib/hookgate\"\ndedup_window = \"96h\"\n{SOURCE}\
             [[sources]]\nname = \"open\"\npath = \"/hooks/open\"\nprovider = \"github\"\n\
             secrets = [\"open-secret-value\"]\nupstream = \"http://127.0.0.1:3000/open\"\n\
             [sources.forward]\nmax_attempts = 3\nconcurrency = 2\n"
        );
        let config = Config::from_toml(&text, env).expect("valid");
        let summary = config.summary();
        assert_eq!(
            summary,
            "  listen 127.0.0.1:8080  admin 127.0.0.1:9090  store /var/lib/hookgate
  dedup window 4days  max body 1048576 bytes
  source gh: /hooks/gh -> http://127.0.0.1:3000/gh (provider github, allow 192.0.2.0/24, retries for 3days, concurrency 32)
  source open: /hooks/open -> http://127.0.0.1:3000/open (provider github, allow any address, retries for 3days or 3 attempts, concurrency 2)
"
        );
        assert!(!summary.contains("secret-value"));
    }
}
