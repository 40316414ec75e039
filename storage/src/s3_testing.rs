//! A real S3-compatible server for tests: `s3s-fs` (from crates.io) on loopback.
//!
//! `scripts/test.sh` installs the binary; tests find it through `FERRY_S3S_FS`, then
//! `~/.cache/ferry-tools/bin/s3s-fs`, then `PATH`. Test-only: panics on failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::s3::{S3Config, StaticCredentials};

pub const ACCESS_KEY: &str = "ferry-test-access";
pub const SECRET_KEY: &str = "ferry-test-secret-key";

pub struct S3Server {
    pub port: u16,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub bucket: String,
    root: tempfile::TempDir,
    child: Option<Child>,
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_S3S_FS") {
        return PathBuf::from(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".cache/ferry-tools/bin/s3s-fs");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("s3s-fs")
}

/// A loopback port with nothing listening on it.
pub fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl S3Server {
    /// Starts a server with one empty bucket, `ferry`.
    pub async fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let bucket = "ferry".to_owned();
        std::fs::create_dir(root.path().join(&bucket)).unwrap();
        let port = unused_port();
        let mut s = Self {
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket,
            root,
            child: None,
        };
        s.restart().await;
        s
    }

    /// (Re)starts the server process on the same port and data.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs is installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (an outage).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Where the server keeps an object's bytes.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.path().join(&self.bucket).join(key)
    }

    /// Parts of multipart uploads that are neither completed nor aborted.
    pub fn open_upload_parts(&self) -> usize {
        std::fs::read_dir(self.root.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(".upload_id-"))
            })
            .count()
    }

    /// Every object key in the bucket (recursively), sorted.
    pub fn keys(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    let name = e.file_name().to_string_lossy().into_owned();
                    // s3s-fs keeps its own metadata beside objects in dot files.
                    if !name.starts_with('.') {
                        out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
                    }
                }
            }
        }
        let base = self.root.path().join(&self.bucket);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out.sort();
        out
    }

    /// A store config for this server: `prefix` in the bucket, spool under `spool`.
    pub fn config(&self, prefix: &str, spool: &Path) -> S3Config {
        S3Config {
            bucket: self.bucket.clone(),
            prefix: prefix.to_owned(),
            region: "us-east-1".into(),
            endpoint: Some(self.endpoint.clone()),
            path_style: true,
            credentials: Some(StaticCredentials {
                access_key_id: ACCESS_KEY.into(),
                secret_access_key: SECRET_KEY.into(),
                session_token: None,
            }),
            part_size: crate::s3::MIN_PART_SIZE,
            spool_dir: spool.to_path_buf(),
            max_attempts: 3,
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(10),
            abandoned_upload_age: Duration::from_secs(24 * 3600),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a [`FaultProxy`] does to a connection it does not pass through.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Answers the request with this status and S3 error code, then closes.
    Status(u16, &'static str),
    /// Reads the request and never answers.
    Stall,
}

/// A TCP proxy in front of an [`S3Server`] that spoils the first `n` connections
/// with a [`Fault`] and pipes the rest through unchanged (so signatures stay valid).
pub struct FaultProxy {
    pub endpoint: String,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(server: &S3Server, fault: Fault, n: usize) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = ("127.0.0.1", server.port);
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let spoil = counter.fetch_add(1, Ordering::SeqCst) < n;
                tokio::spawn(async move {
                    if !spoil {
                        if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
                        }
                        return;
                    }
                    // Read the request head (and whatever body came with it).
                    let mut buf = vec![0u8; 64 * 1024];
                    let _ = conn.read(&mut buf).await;
                    match fault {
                        Fault::Status(status, code) => {
                            let body = format!(
                                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
                            );
                            let head = format!(
                                "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            );
                            let _ = conn.write_all(head.as_bytes()).await;
                            let _ = conn.write_all(body.as_bytes()).await;
                            let _ = conn.shutdown().await;
                        }
                        Fault::Stall => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                    }
                });
            }
        });
        Self {
            endpoint,
            accepted,
            task,
        }
    }

    /// Connections accepted so far (spoiled or passed through).
    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
