//! The crate's layering, checked on its source text: what a module may import (see the `lib.rs` docs).
//!
//! It reads the `use crate::…` trees and inline `crate::…` paths of each file's non-test code (the
//! `#[cfg(test)]` tail and `tests.rs` files are skipped: tests may build from a `Config`).

use std::{fs, path::Path};

/// Modules below `config`: none of them may name `crate::config` or `crate::Config`.
const BELOW_CONFIG: &[&str] = &[
    "forward",
    "providers",
    "store",
    "layers",
    "telemetry",
    "tls",
    "secret.rs",
    "stats.rs",
];

/// The first path segments a file's non-test code imports from `crate::`, and, for the layers, from
/// `super::`.
fn imports(text: &str, prefix: &str) -> Vec<String> {
    let code: String = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or(text)
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let needle = format!("{prefix}::");
    let mut rest = code.as_str();
    while let Some(at) = rest.find(&needle) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + needle.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(tree) = rest.strip_prefix('{') {
            // A use tree: its top-level items, each up to its first `::`.
            let mut depth = 0;
            let mut item = String::new();
            for c in tree.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.push(first_segment(&item));
        } else {
            out.push(first_segment(rest));
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn first_segment(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
            out.push(path);
        }
    }
}

#[test]
fn nothing_below_config_names_a_config_type() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for module in BELOW_CONFIG {
        let path = src.join(module);
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else if path.is_file() {
            files.push(path);
        }
    }
    assert!(files.len() > 20, "the modules were found: {files:?}");
    let mut offenders = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("read a source file");
        for import in imports(&text, "crate") {
            if import == "config" || import == "Config" || import == "ConfigError" {
                offenders.push(format!("{}: crate::{import}", file.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "below config, yet naming config: {offenders:#?}"
    );
}

#[test]
fn layers_share_their_facts_and_do_not_import_each_other_for_them() {
    let layers = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/layers");
    // Which sibling each layer may import from `super::`: `facts` always; the rejections `rescue`
    // classifies; the body limit's error, which verify turns a too-long body into; the buffer
    // budget (not a layer: a shared resource), which verify charges.
    let allowed = |file: &str, sibling: &str| {
        sibling == "facts"
            || (file == "rescue"
                && [
                    "accept",
                    "body_limit",
                    "buffer_budget",
                    "ip_allow",
                    "rate_limit",
                    "verify",
                ]
                .contains(&sibling))
            || (file == "verify" && ["body_limit", "buffer_budget"].contains(&sibling))
    };
    let siblings: Vec<String> = fs::read_dir(&layers)
        .expect("src/layers")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".rs")?.to_owned())
        })
        .filter(|n| n != "mod")
        .collect();
    assert!(siblings.len() >= 6, "the layers were found: {siblings:?}");
    let mut offenders = Vec::new();
    for file in &siblings {
        let text = fs::read_to_string(layers.join(format!("{file}.rs"))).expect("read a layer");
        let mut named = imports(&text, "super");
        named.extend(
            imports(&text, "crate::layers")
                .into_iter()
                .filter(|s| siblings.contains(s)),
        );
        for sibling in named.iter().filter(|s| siblings.contains(s)) {
            if !allowed(file, sibling) {
                offenders.push(format!("layers/{file}.rs imports layers::{sibling}"));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

#[test]
fn the_library_exports_no_cli() {
    // The binary's own modules: `main.rs` and `cli/`, the admin API's client.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.retain(|f| !f.ends_with("main.rs") && !f.starts_with(src.join("cli")));
    assert!(
        files.iter().any(|f| f.ends_with("commands.rs")),
        "the library was found: {files:?}"
    );
    let mut offenders = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("read a source file");
        if !imports(&text, "clap").is_empty() {
            offenders.push(format!("{} names clap", file.display()));
        }
        let declares_cli = text.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words
                .windows(2)
                .any(|w| w[0] == "mod" && ["cli", "cli;"].contains(&w[1]))
        });
        if declares_cli {
            offenders.push(format!("{} declares the binary's cli", file.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "the CLI belongs to the binary: {offenders:#?}"
    );
}

#[test]
fn imports_are_read_from_use_trees_and_paths() {
    let text = "use crate::{\n    config::Source,\n    store::{A, B},\n};\nfn f() { crate::telemetry::x(); }\n\
                // crate::ignored::in_comments\n#[cfg(test)]\nmod tests {\n    use crate::config::Config;\n}\n";
    assert_eq!(imports(text, "crate"), ["config", "store", "telemetry"]);
}
