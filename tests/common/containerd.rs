//! A private containerd (root, state and socket in a temp dir) driven with `ctr`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Containerd {
    pub sock: PathBuf,
    dir: tempfile::TempDir,
    child: Child,
}

impl Containerd {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sock = d.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = {:?}\n[ttrpc]\n  address = {:?}\n",
            d.join("root").display().to_string(),
            d.join("state").display().to_string(),
            sock.display().to_string(),
            d.join("ttrpc.sock").display().to_string(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("containerd is installed (scripts/test.sh installs it)");
        let c = Self { sock, dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.ctr(&["version"]).is_err() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                c.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Runs `ctr` against this containerd; the error carries its output.
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.sock)
            .args(["--namespace", "ferrytest"])
            .args(args)
            .output()
            .map_err(|e| format!("ctr: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("ctr {args:?}: {text}"))
        }
    }

    /// Writes `<dir>/<registry_host>/hosts.toml` sending pulls of `registry_host` to `mirror_url` first.
    pub fn hosts_dir(dir: &Path, registry_host: &str, mirror_url: &str) {
        let host_dir = dir.join(registry_host);
        std::fs::create_dir_all(&host_dir).unwrap();
        std::fs::write(
            host_dir.join("hosts.toml"),
            format!(
                "server = \"http://{registry_host}\"\n\n[host.\"{mirror_url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )
        .unwrap();
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
