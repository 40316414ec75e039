//! The `ferry` binary itself: the embedded default and config checking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

#[test]
fn check_config_prints_effective_settings_and_redacts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ok.toml");
    std::fs::write(
        &file,
        "[[upstream]]\nname = \"hub\"\nurl = \"https://registry-1.docker.io\"\ndefault = true\nusername = \"u\"\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let out = Command::new(FERRY)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("library_prefix = true"), "{text}");
    assert!(text.contains("manifest_ttl = \"1m\""), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    for example in [
        "config/ferry.toml",
        "config/minimal.toml",
        "config/default.toml",
        "config/s3.toml",
    ] {
        let out = Command::new(FERRY)
            .args(["check-config", example])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_config_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[upstream]]\nname = \"a\"\nurl = \"gopher://x\"\n",
            "upstream[0].url",
        ),
        ("listen = 5\n", "line 1"),
        (
            "[storage]\nbackend = \"s3\"\n[[upstream]]\nname = \"a\"\nurl = \"http://x\"\n",
            "storage.bucket",
        ),
    ];
    for (i, (body, key)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&file, body).unwrap();
        let out = Command::new(FERRY)
            .arg("check-config")
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains(&file.display().to_string()) && err.contains(key),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = Command::new(FERRY)
        .args(["check-config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
}

/// One HTTP/1.1 GET on a fresh connection: the whole response, or None when
/// nothing answers.
fn raw_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    Some(r)
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn serve_without_config_runs_the_embedded_default() {
    // The embedded default listens on 127.0.0.1:5000 and stores under ./ferry-data.
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(FERRY)
        .arg("serve")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ok = loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("ferry serve exited with {status}: {err}");
        }
        let resp = raw_get("127.0.0.1:5000", "/v2/");
        if let Some(r) = resp {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "nothing answered on 127.0.0.1:5000"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Stop it with SIGTERM, as an init system would, and expect a clean exit.
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(
        ok.to_ascii_lowercase()
            .contains("docker-distribution-api-version: registry/2.0"),
        "{ok}"
    );
    assert!(dir.path().join("ferry-data/blobs/sha256").is_dir());
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[test]
fn redirect_refuses_a_bad_config_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redirect.toml");
    std::fs::write(
        &file,
        "upstream = \"https://u.example\"\n[[node]]\nurl = \"http://n\"\nregion = \"atlantis\"\n",
    )
    .unwrap();
    let out = Command::new(FERRY)
        .args(["redirect", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&file.display().to_string())
            && err.contains("node[0].region")
            && err.contains("atlantis"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn redirect_reloads_on_sighup_and_keeps_the_old_config_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redirect.toml");
    let addr = format!("127.0.0.1:{}", ferry_storage::s3_testing::unused_port());
    let config = |info: &str| {
        format!(
            "listen = \"{addr}\"\nupstream = \"http://127.0.0.1:9\"\ninfo_url = \"{info}\"\n\
             [[region]]\nname = \"r\"\ncidrs = [\"10.0.0.0/8\"]\n"
        )
    };
    std::fs::write(&file, config("http://first.example/")).unwrap();
    let log = dir.path().join("log");
    let mut child = Command::new(FERRY)
        .args(["redirect", "--config"])
        .arg(&file)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The Location that `GET /` answers with, waiting up to 20 s for `want`.
    let info_url = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = raw_get(&addr, "/").and_then(|r| {
                r.lines()
                    .find_map(|l| l.strip_prefix("location: ").map(str::to_owned))
            });
            if got.as_deref() == Some(want) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let first = info_url("http://first.example/");
    assert_eq!(first.as_deref(), Some("http://first.example/"));

    std::fs::write(&file, config("http://second.example/")).unwrap();
    signal(&child, "HUP");
    assert_eq!(
        info_url("http://second.example/").as_deref(),
        Some("http://second.example/")
    );

    // A broken file: logged, and the running config stays.
    std::fs::write(&file, "upstream = 5\n").unwrap();
    signal(&child, "HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("reload rejected")
    {
        assert!(
            Instant::now() < deadline,
            "no log line for the rejected reload"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        info_url("http://second.example/").as_deref(),
        Some("http://second.example/")
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(&file.display().to_string()), "{text}");

    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status}\n{text}");
}
