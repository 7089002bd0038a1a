//! The deployment kit stays true to the binary: the config embedded in the Kubernetes example passes
//! `hookgate check` (with the example Secret's files), and the probes ask the admin listener for
//! `/livez` and `/readyz`.

use std::process::Command;

const MANIFEST: &str = include_str!("../../deploy/kubernetes/hookgate.yaml");

/// The lines of the block scalar under `key: |` (at `indent` spaces), dedented.
fn block(text: &str, key: &str) -> String {
    let mut lines = text.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let header = lines.next().unwrap_or_else(|| panic!("no {key} block"));
    let indent = header.len() - header.trim_start().len() + 2;
    let mut out = String::new();
    for line in lines {
        if !line.trim().is_empty() && line.len() - line.trim_start().len() < indent {
            break;
        }
        out.push_str(line.get(indent..).unwrap_or(""));
        out.push('\n');
    }
    out
}

/// The `stringData` entries of the Secret: `name: "value"`.
fn secret_files() -> Vec<(String, String)> {
    let mut lines = MANIFEST.lines().skip_while(|l| l.trim() != "stringData:").skip(1);
    let mut out = Vec::new();
    for line in lines.by_ref() {
        let Some((name, value)) = line.strip_prefix("  ").and_then(|l| l.split_once(": ")) else {
            break;
        };
        out.push((name.trim().to_owned(), value.trim().trim_matches('"').to_owned()));
    }
    assert!(!out.is_empty(), "no Secret stringData");
    out
}

/// `path` and `port` of the `httpGet` under `probe:`.
fn probe(probe: &str) -> (String, u16) {
    let lines: Vec<&str> = MANIFEST
        .lines()
        .skip_while(|l| l.trim() != format!("{probe}:"))
        .take(5)
        .collect();
    let value = |key: &str| {
        lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("{probe} has no {key}: {lines:?}"))
            .to_owned()
    };
    (value("path"), value("port").parse().expect("a numeric port"))
}

#[test]
fn the_kubernetes_example_config_checks_and_its_probes_hit_the_admin_listener() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).expect("mkdir");
    for (name, value) in secret_files() {
        std::fs::write(secrets.join(name), value).expect("write secret");
    }
    let toml = block(MANIFEST, "gateway.toml");
    let table: toml::Table = toml.parse().expect("the embedded gateway.toml is TOML");
    let admin: std::net::SocketAddr = table["admin"]["listen"]
        .as_str()
        .expect("admin.listen")
        .parse()
        .expect("an address");
    // The same file, with the mounts where this test put them.
    let local = toml
        .replace("/etc/hookgate/secrets", &secrets.display().to_string())
        .replace("/var/lib/hookgate", &dir.path().display().to_string());
    assert_ne!(local, toml, "the config reads the mounted Secret");
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, local).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("run hookgate check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("admin {admin}")), "{stdout}");

    assert_eq!(probe("livenessProbe"), ("/livez".to_owned(), admin.port()));
    assert_eq!(probe("readinessProbe"), ("/readyz".to_owned(), admin.port()));
    assert!(
        MANIFEST.contains(&format!("containerPort: {}", admin.port())),
        "the admin port is declared"
    );
}
