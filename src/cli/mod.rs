//! `hookgate events|replay|dlq|stats`: a command-line client of the admin API.
//!
//! Each command is one HTTP request to the admin listener (see the README's "Admin API" section for
//! the routes). The answer is printed as an aligned table, or with `--json` exactly as the API sent it
//! (one JSON document on stdout), for scripts.
//!
//! - The API's base URL is `--admin URL`, else `$HOOKGATE_ADMIN_URL`, else `http://127.0.0.1:9090`.
//! - The bearer token comes from `$HOOKGATE_ADMIN_TOKEN` only: a flag would leak into shell history
//!   and `ps`. It is sent in the `Authorization` header and never printed.
//!
//! Exit codes: 0 ok; 1 the API answered with an error (printed to stderr); 2 usage (clap's code too);
//! 3 the API could not be reached (connection refused, timeout, broken answer).
//!
//! This module belongs to the binary (`main.rs` declares it; the library exports no CLI). The clap
//! definitions live here rather than in `main.rs` (which only flattens [`Command`] into its
//! own subcommands), so that the arguments, the request each command sends and the rendering of its
//! answer sit together and are unit-tested together.

use std::io::Write;

use clap::{
    builder::{PossibleValuesParser, TypedValueParser as _},
    ArgGroup, Args, Subcommand,
};
use hookgate::{
    admin::wire::{self, param, Since},
    commands::{print, Exit},
    store::StateFilter,
};
use http::Method;

mod client;
pub(crate) mod logging;
mod render;

use client::{AdminClient, ClientError};

/// The environment variable that holds the admin API's bearer token.
const TOKEN_ENV: &str = "HOOKGATE_ADMIN_TOKEN";
/// The environment variable that holds the admin API's URL (when `--admin` is not given).
const URL_ENV: &str = "HOOKGATE_ADMIN_URL";
/// The admin API's URL when neither `--admin` nor [`URL_ENV`] is given: `[admin] listen`'s default.
const DEFAULT_URL: &str = "http://127.0.0.1:9090";

/// The admin API commands, flattened into the binary's subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List or show stored events (admin API).
    Events {
        /// Where the API is, and the output format.
        #[command(flatten)]
        api: ApiArgs,
        /// What to do.
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Put events back in the delivery queue: one by id, or a source's dead (or delivered) events.
    ///
    /// A replayed event is delivered even though its event id was seen before; its attempt history is
    /// kept and its attempt counter continues.
    Replay {
        /// Where the API is, and the output format.
        #[command(flatten)]
        api: ApiArgs,
        /// Which events.
        #[command(flatten)]
        what: ReplayArgs,
    },
    /// List or purge dead letters (admin API).
    Dlq {
        /// Where the API is, and the output format.
        #[command(flatten)]
        api: ApiArgs,
        /// What to do.
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Per-source counts: accepted, duplicates, rejected by reason, queued, dead, delivered.
    Stats {
        /// Where the API is, and the output format.
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Where the admin API is and how to print its answers.
#[derive(Debug, Args)]
pub(crate) struct ApiArgs {
    /// The admin API's URL [default: $HOOKGATE_ADMIN_URL, else http://127.0.0.1:9090]. The bearer
    /// token, if the API needs one, is read from $HOOKGATE_ADMIN_TOKEN.
    #[arg(long, global = true, value_name = "URL")]
    admin: Option<String>,
    /// Print the API's JSON answer unchanged (one document) instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

/// `hookgate events ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
    /// Recent events, newest first.
    List(ListArgs),
    /// One event with its headers (signatures redacted) and attempt history.
    Show {
        /// The event's id (the first column of `events list`).
        id: u64,
        /// Also print the body.
        #[arg(long)]
        body: bool,
    },
}

/// `hookgate dlq ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// Dead letters, newest first (`events list --state dead`).
    List {
        /// Which dead letters.
        #[command(flatten)]
        filter: Filter,
        /// Also print each event's body.
        #[arg(long)]
        body: bool,
    },
    /// Delete dead letters for good: all of them, or a source's, or those received since a time.
    Purge {
        /// Only this source's dead letters.
        #[arg(long)]
        source: Option<String>,
        /// Only those received since this age ("2h") or RFC 3339 time.
        #[arg(long)]
        since: Option<Since>,
        /// Only those received before this age ("1h") or RFC 3339 time.
        #[arg(long)]
        until: Option<Since>,
        /// Confirm the deletion (required).
        #[arg(long)]
        yes: bool,
    },
}

/// `events list` arguments.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    filter: Filter,
    /// Only events in this state.
    #[arg(long, value_parser = state_parser())]
    state: Option<StateFilter>,
    /// Only events whose id is below this one: the next page after an event list's last id.
    #[arg(long)]
    before: Option<u64>,
    /// Also print each event's body.
    #[arg(long)]
    body: bool,
}

/// Which events a listing covers.
#[derive(Debug, Args)]
pub(crate) struct Filter {
    /// Only this source's events.
    #[arg(long)]
    source: Option<String>,
    /// Only events received since this age ("2h", "30m") or RFC 3339 time ("2026-11-23T21:30:00Z").
    #[arg(long)]
    since: Option<Since>,
    /// Only events received before this age ("1h") or RFC 3339 time: with --since, a time window.
    #[arg(long)]
    until: Option<Since>,
    /// At most this many events (the API's default is 100).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: Option<u16>,
}

/// `replay` arguments: `--id ID`, or `--source S [--since ..] [--dead | --delivered]`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["id", "source"])))]
pub(crate) struct ReplayArgs {
    /// Replay this event (dead, delivered or queued: it becomes due now).
    #[arg(long, conflicts_with_all = ["since", "until", "dead", "delivered"])]
    id: Option<u64>,
    /// Replay this source's dead letters (or, with --delivered, its delivered events).
    #[arg(long)]
    source: Option<String>,
    /// Only events received since this age ("2h") or RFC 3339 time.
    #[arg(long, requires = "source")]
    since: Option<Since>,
    /// Only events received before this age ("1h") or RFC 3339 time.
    #[arg(long, requires = "source")]
    until: Option<Since>,
    /// Replay dead letters (the default).
    #[arg(long, requires = "source")]
    dead: bool,
    /// Replay delivered events (kept for `[store] retention`) instead of dead letters.
    #[arg(long, requires = "source", conflicts_with = "dead")]
    delivered: bool,
}

/// `--state`: one of the API's state names, listed in `--help` and in clap's error.
fn state_parser() -> impl clap::builder::TypedValueParser<Value = StateFilter> {
    PossibleValuesParser::new(StateFilter::ALL.map(StateFilter::as_str)).try_map(|s| s.parse::<StateFilter>())
}

/// Runs an admin command to completion: the answer on `out`, problems on `err`. `env` looks up
/// environment variables (`main.rs` passes the process's).
pub(crate) fn run(
    command: Command,
    env: impl Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    execute(command, &env, out, err)
}

// === the request of each command ===

/// One API request and how to present its answer.
#[derive(Debug, PartialEq, Eq)]
struct Call {
    method: Method,
    /// The route, e.g. `/events/12/replay`.
    path: String,
    /// Query parameters, unencoded.
    query: Vec<(&'static str, String)>,
    show: render::Show,
}

impl Call {
    fn new(method: Method, path: impl Into<String>, show: render::Show) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            show,
        }
    }

    fn param(mut self, name: &'static str, value: Option<impl Into<String>>) -> Self {
        if let Some(value) = value {
            self.query.push((name, value.into()));
        }
        self
    }

    fn filter(mut self, filter: &wire::Filter) -> Self {
        self.query.extend(filter.pairs());
        self
    }

    /// The path and encoded query.
    fn target(&self) -> String {
        if self.query.is_empty() {
            return self.path.clone();
        }
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.query {
            query.append_pair(k, v);
        }
        format!("{}?{}", self.path, query.finish())
    }
}

impl Command {
    /// The request this command sends, or a usage error.
    fn into_call(self) -> Result<(ApiArgs, Call), String> {
        use render::Show;
        let include = |body: bool| body.then_some(param::INCLUDE_BODY);
        let events = |filter: Filter, state: Option<StateFilter>, before: Option<u64>, body: bool| {
            let wire = wire::Filter {
                source: filter.source,
                state,
                since: filter.since,
                until: filter.until,
            };
            Call::new(Method::GET, "/events", Show::Events { body })
                .filter(&wire)
                .param(param::BEFORE, before.map(|id| id.to_string()))
                .param(param::LIMIT, filter.limit.map(|n| n.to_string()))
                .param(param::INCLUDE, include(body))
        };
        Ok(match self {
            Command::Events { api, command } => match command {
                EventsCommand::List(ListArgs {
                    filter,
                    state,
                    before,
                    body,
                }) => (api, events(filter, state, before, body)),
                EventsCommand::Show { id, body } => (
                    api,
                    Call::new(Method::GET, format!("/events/{id}"), Show::Event { id, body })
                        .param(param::INCLUDE, include(body)),
                ),
            },
            Command::Replay { api, what } => {
                let call = match (what.id, what.source) {
                    (Some(id), _) => Call::new(
                        Method::POST,
                        format!("/events/{id}/replay"),
                        Show::Replayed { id: Some(id) },
                    ),
                    (None, Some(source)) => {
                        let state = if what.delivered {
                            StateFilter::Delivered
                        } else {
                            StateFilter::Dead
                        };
                        Call::new(Method::POST, "/replay", Show::Replayed { id: None }).filter(
                            &wire::Filter {
                                source: Some(source),
                                state: Some(state),
                                since: what.since,
                                until: what.until,
                            },
                        )
                    }
                    // clap's "target" group requires one of them.
                    (None, None) => return Err("replay needs --id ID or --source NAME".into()),
                };
                (api, call)
            }
            Command::Dlq { api, command } => match command {
                DlqCommand::List { filter, body } => {
                    (api, events(filter, Some(StateFilter::Dead), None, body))
                }
                DlqCommand::Purge {
                    source,
                    since,
                    until,
                    yes,
                } => {
                    if !yes {
                        return Err("dlq purge deletes dead letters for good; add --yes to confirm".into());
                    }
                    (
                        api,
                        Call::new(Method::DELETE, "/dlq", Show::Purged).filter(&wire::Filter {
                            source,
                            state: None,
                            since,
                            until,
                        }),
                    )
                }
            },
            Command::Stats { api } => (api, Call::new(Method::GET, "/stats", Show::Stats)),
        })
    }
}

// === running a call ===

/// An admin command's exit codes: 1 for an error answer (or an answer that is not the API's), 2
/// for a usage error (nothing is sent), 3 when no whole answer came.
fn execute(
    command: Command,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let (api, call) = match command.into_call() {
        Ok(c) => c,
        Err(usage) => {
            let _ = writeln!(err, "error: {usage}");
            return Exit::Usage;
        }
    };
    let url = api
        .admin
        .or_else(|| env(URL_ENV).filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let token = env(TOKEN_ENV).filter(|t| !t.is_empty());
    let token_set = token.is_some();
    let client = match AdminClient::new(&url, token) {
        Ok(client) => client,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return Exit::Usage;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(err, "error: cannot start the runtime: {e}");
            return Exit::Failure;
        }
    };
    let answer = match runtime.block_on(client.send(&call.method, &call.target())) {
        Ok(answer) => answer,
        Err(e @ ClientError::Unreachable { .. }) => {
            let _ = writeln!(err, "error: cannot reach the admin API at {}: {e}", client.base());
            return Exit::Unreachable;
        }
    };
    if !answer.status.is_success() {
        let message = render::api_error(answer.status, &answer.body, &call.show, token_set);
        let _ = writeln!(err, "error: {message}");
        return Exit::Failure;
    }
    let text = if api.json {
        let mut text = String::from_utf8_lossy(&answer.body).into_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text
    } else {
        match render::answer(&call.show, &answer.body) {
            Ok(text) => text,
            Err(e) => {
                let _ = writeln!(
                    err,
                    "error: unexpected answer from the admin API at {}: {e}",
                    client.base()
                );
                return Exit::Failure;
            }
        }
    };
    print(out, err, text.as_bytes(), Exit::Success)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: Command,
    }

    fn call(args: &[&str]) -> Result<(bool, Option<String>, Method, String), String> {
        let cli = TestCli::try_parse_from(std::iter::once("hookgate").chain(args.iter().copied()))
            .map_err(|e| format!("clap: {}", e.kind()))?;
        let (api, call) = cli.command.into_call()?;
        Ok((api.json, api.admin, call.method.clone(), call.target()))
    }

    fn target(args: &[&str]) -> (Method, String) {
        let (_, _, method, target) = call(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        (method, target)
    }

    #[test]
    fn each_command_sends_its_request() {
        let get = Method::GET;
        let cases: &[(&[&str], Method, &str)] = &[
            (&["events", "list"], get.clone(), "/events"),
            (
                &[
                    "events", "list", "--source", "github", "--state", "dead", "--limit", "5", "--body",
                ],
                get.clone(),
                "/events?source=github&state=dead&limit=5&include=body",
            ),
            (
                &["events", "list", "--since", "2h"],
                get.clone(),
                "/events?since=2h",
            ),
            (
                &["events", "list", "--since", "2026-11-23T21:30:00Z"],
                get.clone(),
                "/events?since=2026-11-23T21%3A30%3A00.000Z",
            ),
            (
                &[
                    "events", "list", "--since", "2h", "--until", "1h", "--before", "40",
                ],
                get.clone(),
                "/events?since=2h&until=1h&before=40",
            ),
            (&["events", "show", "12"], get.clone(), "/events/12"),
            (
                &["events", "show", "12", "--body"],
                get.clone(),
                "/events/12?include=body",
            ),
            (&["replay", "--id", "7"], Method::POST, "/events/7/replay"),
            (
                &["replay", "--source", "gh"],
                Method::POST,
                "/replay?source=gh&state=dead",
            ),
            (
                &["replay", "--source", "gh", "--since", "2h", "--dead"],
                Method::POST,
                "/replay?source=gh&state=dead&since=2h",
            ),
            (
                &["replay", "--source", "gh", "--since", "2h", "--until", "30m"],
                Method::POST,
                "/replay?source=gh&state=dead&since=2h&until=30m",
            ),
            (
                &["replay", "--source", "a b&c", "--delivered"],
                Method::POST,
                "/replay?source=a+b%26c&state=delivered",
            ),
            (&["dlq", "list"], get.clone(), "/events?state=dead"),
            (
                &["dlq", "list", "--source", "gh", "--limit", "1000"],
                get.clone(),
                "/events?source=gh&state=dead&limit=1000",
            ),
            (&["dlq", "purge", "--yes"], Method::DELETE, "/dlq"),
            (
                &["dlq", "purge", "--source", "gh", "--since", "30m", "--yes"],
                Method::DELETE,
                "/dlq?source=gh&since=30m",
            ),
            (
                &["dlq", "purge", "--until", "1h", "--yes"],
                Method::DELETE,
                "/dlq?until=1h",
            ),
            (&["stats"], get.clone(), "/stats"),
        ];
        for (args, method, want) in cases {
            assert_eq!(target(args), (method.clone(), (*want).to_owned()), "{args:?}");
        }
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        for args in [
            &["events", "--json", "--admin", "http://h:1", "list"][..],
            &["events", "list", "--json", "--admin", "http://h:1"][..],
        ] {
            let (json, admin, _, _) = call(args).expect("parses");
            assert!(json, "{args:?}");
            assert_eq!(admin.as_deref(), Some("http://h:1"), "{args:?}");
        }
    }

    #[test]
    fn usage_errors() {
        let bad: &[&[&str]] = &[
            &["replay"],
            &["replay", "--id", "1", "--source", "gh"],
            &["replay", "--id", "1", "--since", "2h"],
            &["replay", "--since", "2h"],
            &["replay", "--id", "1", "--until", "2h"],
            &["events", "list", "--before", "x"],
            &["replay", "--source", "gh", "--dead", "--delivered"],
            &["replay", "--id", "x"],
            &["events", "list", "--state", "lost"],
            &["events", "list", "--limit", "0"],
            &["events", "list", "--limit", "1001"],
            &["events", "list", "--since", "yesterday"],
            &["events", "show"],
            &["dlq", "purge"],
            &["stats", "--token", "t"],
        ];
        for args in bad {
            assert!(call(args).is_err(), "{args:?} should be a usage error");
        }
        assert_eq!(
            call(&["dlq", "purge", "--source", "gh"]).expect_err("needs --yes"),
            "dlq purge deletes dead letters for good; add --yes to confirm"
        );
    }

    #[test]
    fn since_is_sent_as_the_api_reads_it() {
        for (given, sent) in [
            ("2h", "2h"),
            ("90m", "1h+30m"),
            ("2026-11-23T21:30:00.5Z", "2026-11-23T21%3A30%3A00.500Z"),
        ] {
            let (_, target) = target(&["events", "list", "--since", given]);
            assert_eq!(target, format!("/events?since={sent}"), "{given}");
        }
        assert!(call(&["events", "list", "--since", "2026-11-23T21:30:00+02:00"]).is_err());
    }

    #[test]
    fn state_names_are_the_apis() {
        for state in StateFilter::ALL {
            let (_, target) = target(&["events", "list", "--state", state.as_str()]);
            assert_eq!(target, format!("/events?state={}", state.as_str()));
        }
    }

    #[test]
    fn the_url_comes_from_the_flag_or_the_environment_and_is_checked_with_the_token() {
        // Each resolution ends in a connection attempt: point them at a closed port and compare the
        // error, which names the URL. The port is bound and released, so nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let env_url = format!("http://127.0.0.1:{port}");
        let env = |name: &str| (name == URL_ENV).then(|| env_url.clone());
        let stats = |admin: Option<&str>| Command::Stats {
            api: ApiArgs {
                admin: admin.map(str::to_owned),
                json: false,
            },
        };
        let run = |command, env: &dyn Fn(&str) -> Option<String>| {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let exit = execute(command, env, &mut out, &mut err);
            assert!(out.is_empty());
            (exit, String::from_utf8(err).expect("utf-8"))
        };
        let unreachable = format!("error: cannot reach the admin API at {env_url}: ");
        let (exit, err) = run(stats(None), &env);
        assert!(
            exit == Exit::Unreachable && err.starts_with(&unreachable),
            "{exit:?} {err}"
        );
        let (exit, err) = run(stats(Some(&env_url)), &|_| None);
        assert!(
            exit == Exit::Unreachable && err.starts_with(&unreachable),
            "{exit:?} {err}"
        );
        let (exit, err) = run(stats(Some("https://127.0.0.1:1")), &|_| None);
        assert!(
            exit == Exit::Usage && err.contains("only http:// is supported"),
            "{exit:?} {err}"
        );
        let bad_token = |name: &str| (name == TOKEN_ENV).then(|| "a\nb".to_owned());
        let (exit, err) = run(stats(Some(&env_url)), &bad_token);
        assert!(exit == Exit::Usage && err.contains(TOKEN_ENV), "{exit:?} {err}");
    }
}
