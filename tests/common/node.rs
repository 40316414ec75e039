//! The `ferry` binary as a separate process: for crash (SIGKILL) tests and the CLI.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

pub struct Node {
    pub url: String,
    pub config: PathBuf,
    child: Child,
}

impl Node {
    /// Writes `config` (a full TOML file) to `dir/ferry.toml` and starts `ferry serve` on it.
    pub async fn start(dir: &Path, config: &str) -> Self {
        let path = dir.join("ferry.toml");
        std::fs::write(&path, config).unwrap();
        let listen = config
            .lines()
            .find_map(|l| l.strip_prefix("listen = "))
            .map(|v| v.trim_matches('"').to_owned())
            .expect("config sets listen");
        let log = std::fs::File::create(dir.join("ferry.log")).unwrap();
        let child = Command::new(FERRY)
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let node = Self {
            url: format!("http://{listen}"),
            config: path,
            child,
        };
        let client = super::client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", node.url)).send().await {
                if r.status().is_success() {
                    return node;
                }
            }
            let log = std::fs::read_to_string(dir.join("ferry.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "ferry did not become ready:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "ferry exited with {status}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ferry index <args> --config <config>`.
pub fn index_cmd(config: &Path, args: &[&str]) -> Output {
    Command::new(FERRY)
        .arg("index")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}
