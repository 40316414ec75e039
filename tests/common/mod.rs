//! Shared test harness: a real ferry on 127.0.0.1:0, a real upstream (Debian's
//! `docker-registry`), an OCI image builder, skopeo helpers and a fake upstream
//! for faults a real registry cannot produce on demand.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod containerd;
pub mod fake;
pub mod image;
pub mod node;
pub mod pki;
pub mod registry;
pub mod s3;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ferry::config::Config;
use tokio::sync::oneshot;

/// A ferry node running in this process on a loopback port.
pub struct TestFerry {
    pub addr: SocketAddr,
    pub url: String,
    pub data: PathBuf,
    pub app_metrics: std::sync::Arc<ferry::metrics::Metrics>,
    pub config: Config,
    _dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestFerry {
    /// Starts ferry with the given `[[upstream]]` tables (and any other keys) and a fresh store.
    pub async fn start(config_body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut f = Self::start_at(config_body, &data).await;
        f._dir = Some(dir);
        f
    }

    /// Starts ferry listening on `ip` (e.g. 127.0.0.10) with a fresh store.
    pub async fn start_on(ip: &str, config_body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut f = Self::start_bound(config_body, &data, &format!("{ip}:0")).await;
        f._dir = Some(dir);
        f
    }

    /// Starts ferry on an existing data directory (for restart tests).
    pub async fn start_at(config_body: &str, data: &Path) -> Self {
        Self::start_bound(config_body, data, "127.0.0.1:0").await
    }

    async fn start_bound(config_body: &str, data: &Path, bind: &str) -> Self {
        // Top-level keys in `config_body` come before any table; a body with its own
        // [storage] table gets the path added to it.
        let path_line = format!("path = {:?}\n", data.display().to_string());
        let text = if config_body.contains("[storage]\n") {
            config_body.replacen("[storage]\n", &format!("[storage]\n{path_line}"), 1)
        } else {
            format!("{config_body}\n[storage]\n{path_line}")
        };
        let config = Config::from_toml(&text, "test.toml", None).unwrap();
        let app = ferry::build_app(&config).await.unwrap();
        let metrics = app.metrics.clone();
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            ferry::run_app(listener, app, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            url: format!("http://{addr}"),
            data: data.to_path_buf(),
            app_metrics: metrics,
            config,
            _dir: None,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        blob_path_in(&self.data, digest)
    }

    /// Bytes of content under `blobs/` (what the size limit governs).
    pub fn stored_bytes(&self) -> u64 {
        dir_bytes(&self.data.join("blobs"))
    }

    /// Files left in the store's temp directory.
    pub fn temp_files(&self) -> usize {
        std::fs::read_dir(self.data.join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn metrics(&self) -> String {
        self.app_metrics.render()
    }

    /// Sum of a metric's samples whose label set contains every `labels` pair.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    /// Shuts the server down gracefully; returns the temp dir so the data can outlive it.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self._dir.take()
    }
}

impl Drop for TestFerry {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Where the fs store rooted at `data` keeps `digest`.
pub fn blob_path_in(data: &Path, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    data.join("blobs/sha256").join(&hex[..2]).join(hex)
}

pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The OCI error code of an error response (`errors[0].code`).
pub async fn error_code(r: reqwest::Response) -> String {
    let body: serde_json::Value = r.json().await.unwrap();
    body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// A free loopback port (bound then released).
pub use ferry_storage::s3_testing::unused_port as free_port;

pub fn have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
