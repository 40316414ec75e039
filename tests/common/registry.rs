//! Real peers: Debian's `docker-registry` (distribution) as the upstream, and skopeo
//! as the client.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::image::Image;

pub struct Registry {
    pub port: u16,
    pub host: String,
    pub url: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a plain-HTTP distribution registry on a loopback port.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts distribution as a pull-through proxy of `remote` (for benchmarks).
    pub async fn start_with(proxy_remote: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let proxy = proxy_remote
            .map(|r| format!("proxy:\n  remoteurl: {r}\n"))
            .unwrap_or_default();
        let cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{proxy}",
            dir.path().join("data").display()
        );
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let mut r = Self {
            port,
            host: format!("127.0.0.1:{port}"),
            url: format!("http://127.0.0.1:{port}"),
            child: None,
            dir,
        };
        r.spawn(&cfg_path).await;
        r
    }

    async fn spawn(&mut self, cfg: &Path) {
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let client = super::client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(format!("{}/v2/", self.url)).send().await {
                // 401 once it requires credentials.
                if r.status().is_success() || r.status() == 401 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not come up on {}",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the registry (to simulate an upstream outage).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.stop();
        let cfg = self.dir.path().join("config.yml");
        self.spawn(&cfg).await;
    }

    /// Restarts the registry requiring HTTP Basic credentials (htpasswd, bcrypt).
    pub async fn require_basic(&mut self, user: &str, password: &str) {
        let htpasswd = self.dir.path().join("htpasswd");
        let hash = bcrypt::hash(password, 4).unwrap();
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
        let cfg = self.dir.path().join("config.yml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        let text = format!(
            "{text}auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
            htpasswd.display()
        );
        std::fs::write(&cfg, text).unwrap();
        self.restart().await;
    }

    /// Where distribution keeps a blob's bytes (to corrupt it behind its back).
    pub fn blob_data_path(&self, digest: &str) -> std::path::PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Pushes `image` as `repo:tag` with skopeo.
    pub fn push(&self, image: &Image, repo: &str, tag: &str) {
        let layout = tempfile::tempdir().unwrap();
        image.write_layout(layout.path(), tag);
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", layout.path().display()),
            &format!("docker://{}/{repo}:{tag}", self.host),
        ])
        .unwrap();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs skopeo with a permissive signature policy; the error carries its stderr.
pub fn skopeo(args: &[&str]) -> Result<(), String> {
    skopeo_conf(args, None)
}

/// Runs skopeo; `registries_conf`, when given, replaces /etc/containers/registries.conf
/// (skopeo 1.9 only honours the global flag, not CONTAINERS_REGISTRIES_CONF).
pub fn skopeo_conf(args: &[&str], registries_conf: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy");
    if let Some(conf) = registries_conf {
        cmd.args(["--registries-conf", conf]);
    }
    let out = cmd
        .args(args)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .output()
        .map_err(|e| format!("skopeo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "skopeo {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Pulls `reference` (docker://...) into a fresh OCI layout and returns its directory.
pub fn skopeo_pull(
    reference: &str,
    registries_conf: Option<&str>,
) -> Result<tempfile::TempDir, String> {
    let out = tempfile::tempdir().unwrap();
    skopeo_conf(
        &[
            "copy",
            "--src-tls-verify=false",
            reference,
            &format!("oci:{}:pulled", out.path().display()),
        ],
        registries_conf,
    )?;
    Ok(out)
}
