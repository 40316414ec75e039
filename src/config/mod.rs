//! Configuration: serde structs for the file, validated into typed runtime values.
//!
//! Everything past [`Config::load`] / [`Config::from_toml`] is trusted: durations are
//! `Duration`s, URLs are parsed, names are checked. Errors name the file, the key and
//! what is wrong, because that is what an operator at 3am needs.

pub mod auth;
pub mod redirect;
pub mod server;
mod size;

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

pub use size::parse_size;

/// The embedded default, also shipped as `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Docker Hub's hosts; an upstream on one of them gets `library/` normalisation.
const DOCKER_HUB_HOSTS: [&str; 3] = ["registry-1.docker.io", "index.docker.io", "docker.io"];

#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from, for messages.
    pub source: String,
    pub listen: SocketAddr,
    pub manifest_ttl: Duration,
    pub manifest_cache_size: u64,
    pub storage: StorageConfig,
    pub upstreams: Vec<UpstreamConfig>,
    /// `[tls]`, `[limits]`, `[log]`.
    pub server: server::ServerOptions,
    /// `[auth]`: `None` lets everyone pull.
    pub auth: Option<auth::AuthConfig>,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Blobs (fs backend), or the spool for in-flight fills (s3 backend).
    pub path: PathBuf,
    /// Where the RocksDB cache index lives (default `<path>/index`).
    pub index_path: PathBuf,
    /// The append-only audit log of every change to the store (default
    /// `<path>/audit.jsonl`; `audit_log = ""` turns it off).
    pub audit_log: Option<PathBuf>,
    pub limits: ferry_storage::Limits,
    pub backend: Backend,
}

#[derive(Debug, Clone)]
pub enum Backend {
    Fs,
    S3 {
        s3: Box<ferry_storage::S3Config>,
        /// Answer blob hits with a presigned URL valid this long, instead of streaming.
        redirect: Option<Duration>,
    },
}

impl StorageConfig {
    /// Where blobs live, for messages: a directory or `s3://bucket/prefix`.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Fs => self.path.display().to_string(),
            Backend::S3 { s3, .. } => format!("s3://{}/{}", s3.bucket, s3.prefix),
        }
    }

    /// Presigned-URL lifetime when blob hits are redirected to the store.
    pub fn redirect(&self) -> Option<Duration> {
        match &self.backend {
            Backend::Fs => None,
            Backend::S3 { redirect, .. } => *redirect,
        }
    }
}

#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub url: Url,
    pub aliases: Vec<String>,
    pub default: bool,
    pub library_prefix: bool,
    pub credentials: Option<Credentials>,
    pub manifest_ttl: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub retries: u32,
    /// Requests this node keeps open to the upstream at once (a body being read
    /// counts); more wait, then get 429.
    pub max_concurrency: u32,
    /// How long a request waits for one of those before the client gets 429.
    pub queue_timeout: Duration,
}

impl UpstreamConfig {
    /// `host[:port]` of the url, as containerd sends it in `?ns=`.
    pub fn host_port(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        }
    }

    /// Whether containerd's `ns` value names this upstream.
    pub fn matches_ns(&self, ns: &str) -> bool {
        ns == self.name || ns == self.host_port() || self.aliases.iter().any(|a| a == ns)
    }
}

// ---- the file's shape -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    manifest_ttl: Option<String>,
    manifest_cache_size: Option<toml::Value>,
    storage: Option<RawStorage>,
    #[serde(default, rename = "upstream")]
    upstreams: Vec<RawUpstream>,
    tls: Option<server::RawTls>,
    limits: Option<server::RawLimits>,
    log: Option<server::RawLog>,
    auth: Option<auth::RawAuth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    backend: Option<String>,
    path: Option<PathBuf>,
    index_path: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    max_size: Option<toml::Value>,
    high_watermark: Option<toml::Value>,
    low_watermark: Option<toml::Value>,
    bucket: Option<String>,
    prefix: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    path_style: Option<bool>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    secret_access_key_file: Option<PathBuf>,
    part_size: Option<toml::Value>,
    redirect: Option<bool>,
    redirect_expiry: Option<String>,
    max_attempts: Option<u32>,
    connect_timeout: Option<String>,
    read_timeout: Option<String>,
    abandoned_upload_age: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: Option<String>,
    url: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    default: bool,
    library_prefix: Option<bool>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    manifest_ttl: Option<String>,
    connect_timeout: Option<String>,
    read_timeout: Option<String>,
    retries: Option<u32>,
    max_concurrency: Option<u32>,
    queue_timeout: Option<String>,
}

// ---- validation ---------------------------------------------------------------------

struct Ctx<'a> {
    file: &'a str,
    base_dir: Option<&'a Path>,
}

impl Ctx<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn duration(
        &self,
        key: &str,
        v: Option<&str>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => humantime::parse_duration(s).map_err(|e| {
                self.err(
                    key,
                    format!("{s:?} is not a duration like \"30s\" or \"5m\": {e}"),
                )
            }),
        }
    }

    fn size(&self, key: &str, v: Option<&toml::Value>, default: u64) -> Result<u64, ConfigError> {
        match v {
            None => Ok(default),
            Some(toml::Value::Integer(n)) if *n >= 0 => Ok(*n as u64),
            Some(toml::Value::String(s)) => {
                parse_size(s).map_err(|e| self.err(key, format!("{s:?}: {e}")))
            }
            Some(other) => Err(self.err(key, format!("{other} is not a size like \"50GiB\""))),
        }
    }

    /// A fraction of the size limit: `0.9` or `"90%"`, strictly between 0 and 1.
    fn fraction(
        &self,
        key: &str,
        v: Option<&toml::Value>,
        default: f64,
    ) -> Result<f64, ConfigError> {
        let f = match v {
            None => return Ok(default),
            Some(toml::Value::Float(f)) => *f,
            Some(toml::Value::String(s)) => s
                .trim()
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<f64>().ok())
                .map(|p| p / 100.0)
                .ok_or_else(|| self.err(key, format!("{s:?} is not a percentage like \"90%\"")))?,
            Some(other) => {
                return Err(self.err(
                    key,
                    format!("{other} is not a fraction like 0.9 or \"90%\""),
                ))
            }
        };
        if !(f > 0.0 && f < 1.0) {
            return Err(self.err(key, format!("{f} must be between 0 and 1 (exclusive)")));
        }
        Ok(f)
    }

    /// A TOML syntax or shape error, located by line.
    fn toml_error(&self, text: &str, e: &toml::de::Error) -> ConfigError {
        let key = e
            .span()
            .and_then(|s| text.get(..s.start))
            .map(|before| format!("line {}", before.lines().count().max(1)))
            .unwrap_or_else(|| "(syntax)".into());
        self.err(key, e.message().to_owned())
    }

    /// A secret given inline (`key`) or read from a file (`key_file`), not both.
    fn secret(
        &self,
        key: &str,
        inline: Option<String>,
        key_file: &str,
        file: Option<PathBuf>,
    ) -> Result<Option<String>, ConfigError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(self.err(
                key_file,
                format!("set {} or {}, not both", leaf(key), leaf(key_file)),
            )),
            (Some(p), None) => Ok(Some(p)),
            (None, Some(f)) => {
                let f = self.path(f);
                let p = std::fs::read_to_string(&f)
                    .map_err(|e| self.err(key_file, format!("cannot read {}: {e}", f.display())))?;
                Ok(Some(p.trim_end_matches(['\r', '\n']).to_owned()))
            }
            (None, None) => Ok(None),
        }
    }

    /// Relative paths in a file are relative to the file, not to the working directory.
    fn path(&self, p: PathBuf) -> PathBuf {
        match self.base_dir {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p,
        }
    }
}

/// A config file's name (for messages) and text.
fn read_file(path: &Path) -> Result<(String, String), ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        key: "(file)".into(),
        message: format!("cannot read: {e}"),
    })?;
    Ok((file, text))
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (file, text) = read_file(path)?;
        Self::from_toml(&text, &file, path.parent())
    }

    /// The embedded default (`config/default.toml`), paths relative to the working directory.
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::from_toml(DEFAULT_TOML, "(embedded default)", None)
    }

    pub fn from_toml(text: &str, file: &str, base_dir: Option<&Path>) -> Result<Self, ConfigError> {
        let cx = Ctx {
            file,
            base_dir: base_dir.filter(|d| !d.as_os_str().is_empty()),
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| cx.toml_error(text, &e))?;

        let server = server::validate(&cx, raw.tls, raw.limits, raw.log)?;
        let listen_s = raw.listen.as_deref().unwrap_or("127.0.0.1:5000");
        let listen = listen_s.parse().map_err(|_| {
            cx.err(
                "listen",
                format!("{listen_s:?} is not an address like \"0.0.0.0:5000\""),
            )
        })?;
        let manifest_ttl = cx.duration(
            "manifest_ttl",
            raw.manifest_ttl.as_deref(),
            Duration::from_secs(60),
        )?;
        let manifest_cache_size = cx.size(
            "manifest_cache_size",
            raw.manifest_cache_size.as_ref(),
            64 << 20,
        )?;

        let storage = validate_storage(&cx, raw.storage)?;

        if raw.upstreams.is_empty() {
            return Err(cx.err("upstream", "at least one [[upstream]] is required"));
        }
        let mut upstreams = Vec::new();
        for (i, u) in raw.upstreams.into_iter().enumerate() {
            upstreams.push(validate_upstream(&cx, i, u, manifest_ttl)?);
        }
        for (i, u) in upstreams.iter().enumerate() {
            if upstreams[..i].iter().any(|o| o.name == u.name) {
                return Err(cx.err(
                    format!("upstream[{i}].name"),
                    format!("{:?} is used twice", u.name),
                ));
            }
        }
        let defaults: Vec<_> = upstreams
            .iter()
            .filter(|u| u.default)
            .map(|u| u.name.as_str())
            .collect();
        if defaults.len() > 1 {
            return Err(cx.err(
                "upstream.default",
                format!("only one upstream may be default, found {defaults:?}"),
            ));
        }

        let names: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
        let auth = raw
            .auth
            .map(|a| auth::validate(&cx, a, &names))
            .transpose()?;

        Ok(Config {
            source: file.to_owned(),
            listen,
            manifest_ttl,
            manifest_cache_size,
            storage,
            upstreams,
            server,
            auth,
        })
    }

    /// The effective settings as TOML, secrets redacted (for `ferry check-config`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# effective config from {}", self.source);
        let _ = writeln!(out, "listen = {:?}", self.listen.to_string());
        let _ = writeln!(
            out,
            "manifest_ttl = {:?}",
            humantime::format_duration(self.manifest_ttl).to_string()
        );
        let _ = writeln!(out, "manifest_cache_size = {}", self.manifest_cache_size);
        let _ = writeln!(
            out,
            "\n[storage]\npath = {:?}\nindex_path = {:?}",
            self.storage.path.display().to_string(),
            self.storage.index_path.display().to_string()
        );
        let _ = writeln!(
            out,
            "audit_log = {:?}",
            self.storage
                .audit_log
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        match &self.storage.backend {
            Backend::Fs => {
                let _ = writeln!(out, "backend = \"fs\"");
            }
            Backend::S3 { s3, redirect } => {
                let _ = writeln!(
                    out,
                    "backend = \"s3\"\nbucket = {:?}\nprefix = {:?}\nregion = {:?}\npath_style = {}\npart_size = {}",
                    s3.bucket, s3.prefix, s3.region, s3.path_style, s3.part_size
                );
                if let Some(e) = &s3.endpoint {
                    let _ = writeln!(out, "endpoint = {e:?}");
                }
                if let Some(c) = &s3.credentials {
                    let _ = writeln!(
                        out,
                        "access_key_id = {:?}\nsecret_access_key = \"<redacted>\"",
                        c.access_key_id
                    );
                }
                let _ = writeln!(out, "redirect = {}", redirect.is_some());
                if let Some(d) = redirect {
                    let _ = writeln!(
                        out,
                        "redirect_expiry = {:?}",
                        humantime::format_duration(*d).to_string()
                    );
                }
            }
        }
        for u in &self.upstreams {
            let _ = writeln!(
                out,
                "\n[[upstream]]\nname = {:?}\nurl = {:?}",
                u.name,
                u.url.as_str().trim_end_matches('/')
            );
            let _ = writeln!(
                out,
                "aliases = {:?}\ndefault = {}\nlibrary_prefix = {}",
                u.aliases, u.default, u.library_prefix
            );
            if let Some(c) = &u.credentials {
                let _ = writeln!(
                    out,
                    "username = {:?}\npassword = \"<redacted>\"",
                    c.username
                );
            }
            let _ = writeln!(
                out,
                "manifest_ttl = {:?}\nconnect_timeout = {:?}\nread_timeout = {:?}\nretries = {}\nmax_concurrency = {}\nqueue_timeout = {:?}",
                humantime::format_duration(u.manifest_ttl).to_string(),
                humantime::format_duration(u.connect_timeout).to_string(),
                humantime::format_duration(u.read_timeout).to_string(),
                u.retries,
                u.max_concurrency,
                humantime::format_duration(u.queue_timeout).to_string()
            );
        }
        out
    }
}

/// The last part of a dotted key, for messages that name sibling keys.
fn leaf(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

fn validate_storage(cx: &Ctx<'_>, raw: Option<RawStorage>) -> Result<StorageConfig, ConfigError> {
    let Some(raw) = raw else {
        let path = cx.path(PathBuf::from("./ferry-data"));
        return Ok(StorageConfig {
            index_path: path.join("index"),
            audit_log: Some(path.join("audit.jsonl")),
            path,
            limits: ferry_storage::Limits::default(),
            backend: Backend::Fs,
        });
    };
    let path = raw
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from("./ferry-data"));
    if path.as_os_str().is_empty() {
        return Err(cx.err("storage.path", "must not be empty"));
    }
    let path = cx.path(path);
    let index_path = raw
        .index_path
        .clone()
        .map_or_else(|| path.join("index"), |p| cx.path(p));
    let audit_log = match raw.audit_log.clone() {
        None => Some(path.join("audit.jsonl")),
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) => Some(cx.path(p)),
    };
    let max_size = match &raw.max_size {
        None => None,
        Some(v) => Some(cx.size("storage.max_size", Some(v), 0)?).filter(|n| *n > 0),
    };
    if raw.max_size.is_some() && max_size.is_none() {
        return Err(cx.err(
            "storage.max_size",
            "must be more than zero (leave it out for no limit)",
        ));
    }
    let high_watermark = cx.fraction("storage.high_watermark", raw.high_watermark.as_ref(), 0.9)?;
    let low_watermark = cx.fraction("storage.low_watermark", raw.low_watermark.as_ref(), 0.8)?;
    if low_watermark >= high_watermark {
        return Err(cx.err(
            "storage.low_watermark",
            format!("{low_watermark} must be below high_watermark ({high_watermark})"),
        ));
    }
    let backend = match raw.backend.as_deref().unwrap_or("fs") {
        "fs" => {
            let s3_keys = [
                ("bucket", raw.bucket.is_some()),
                ("prefix", raw.prefix.is_some()),
                ("region", raw.region.is_some()),
                ("endpoint", raw.endpoint.is_some()),
                ("path_style", raw.path_style.is_some()),
                ("access_key_id", raw.access_key_id.is_some()),
                ("secret_access_key", raw.secret_access_key.is_some()),
                (
                    "secret_access_key_file",
                    raw.secret_access_key_file.is_some(),
                ),
                ("part_size", raw.part_size.is_some()),
                ("redirect", raw.redirect.is_some()),
                ("redirect_expiry", raw.redirect_expiry.is_some()),
                ("max_attempts", raw.max_attempts.is_some()),
                ("connect_timeout", raw.connect_timeout.is_some()),
                ("read_timeout", raw.read_timeout.is_some()),
                ("abandoned_upload_age", raw.abandoned_upload_age.is_some()),
            ];
            if let Some((k, _)) = s3_keys.iter().find(|(_, set)| *set) {
                return Err(cx.err(format!("storage.{k}"), "only applies to backend = \"s3\""));
            }
            Backend::Fs
        }
        "s3" => validate_s3(cx, raw, &path)?,
        other => {
            return Err(cx.err(
                "storage.backend",
                format!("{other:?} is not a backend; use \"fs\" or \"s3\""),
            ))
        }
    };
    Ok(StorageConfig {
        path,
        index_path,
        audit_log,
        limits: ferry_storage::Limits {
            max_size,
            high_watermark,
            low_watermark,
        },
        backend,
    })
}

fn validate_s3(cx: &Ctx<'_>, raw: RawStorage, path: &Path) -> Result<Backend, ConfigError> {
    let bucket = raw
        .bucket
        .ok_or_else(|| cx.err("storage.bucket", "is required with backend = \"s3\""))?;
    // S3's bucket naming rules (lowercase, digits, '.', '-'; 3 to 63 characters).
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !bucket_ok {
        return Err(cx.err(
            "storage.bucket",
            format!("{bucket:?} is not a valid bucket name"),
        ));
    }
    let prefix = raw.prefix.unwrap_or_default().trim_matches('/').to_owned();
    let prefix_ok = prefix.split('/').all(|seg| {
        prefix.is_empty()
            || (!seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.chars().all(|c| !c.is_control() && c != '\\'))
    });
    if !prefix_ok {
        return Err(cx.err(
            "storage.prefix",
            format!("{prefix:?} must be path segments without empty, '.' or '..' parts"),
        ));
    }
    let endpoint = match raw.endpoint {
        None => None,
        Some(e) => {
            let url = Url::parse(&e)
                .map_err(|err| cx.err("storage.endpoint", format!("{e:?} is not a URL: {err}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(cx.err(
                    "storage.endpoint",
                    format!("{e:?} must be an http:// or https:// URL"),
                ));
            }
            Some(e.trim_end_matches('/').to_owned())
        }
    };
    let region = raw.region.unwrap_or_else(|| "us-east-1".into());
    let secret = cx.secret(
        "storage.secret_access_key",
        raw.secret_access_key,
        "storage.secret_access_key_file",
        raw.secret_access_key_file,
    )?;
    let credentials = match (raw.access_key_id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Some(ferry_storage::StaticCredentials {
            access_key_id,
            secret_access_key,
            session_token: None,
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(cx.err(
                "storage.secret_access_key",
                "access_key_id is set but no secret_access_key or secret_access_key_file",
            ))
        }
        (None, Some(_)) => {
            return Err(cx.err(
                "storage.access_key_id",
                "a secret access key is set but no access_key_id",
            ))
        }
    };
    let part_size = cx.size("storage.part_size", raw.part_size.as_ref(), 16 << 20)?;
    if !(ferry_storage::s3::MIN_PART_SIZE..=5 << 30).contains(&part_size) {
        return Err(cx.err(
            "storage.part_size",
            "must be between 5MiB and 5GiB (S3's part size limits)",
        ));
    }
    let max_attempts = raw.max_attempts.unwrap_or(5);
    if !(1..=20).contains(&max_attempts) {
        return Err(cx.err("storage.max_attempts", "must be between 1 and 20"));
    }
    let redirect_expiry = cx.duration(
        "storage.redirect_expiry",
        raw.redirect_expiry.as_deref(),
        Duration::from_secs(600),
    )?;
    // SigV4 presigned URLs are valid for at most seven days.
    if redirect_expiry < Duration::from_secs(1) || redirect_expiry > Duration::from_secs(7 * 86400)
    {
        return Err(cx.err("storage.redirect_expiry", "must be between 1s and 7 days"));
    }
    let s3 = ferry_storage::S3Config {
        bucket,
        prefix,
        region,
        endpoint,
        path_style: raw.path_style.unwrap_or(false),
        credentials,
        part_size,
        spool_dir: path.join("spool"),
        max_attempts,
        connect_timeout: cx.duration(
            "storage.connect_timeout",
            raw.connect_timeout.as_deref(),
            Duration::from_secs(5),
        )?,
        read_timeout: cx.duration(
            "storage.read_timeout",
            raw.read_timeout.as_deref(),
            Duration::from_secs(30),
        )?,
        abandoned_upload_age: cx.duration(
            "storage.abandoned_upload_age",
            raw.abandoned_upload_age.as_deref(),
            Duration::from_secs(24 * 3600),
        )?,
    };
    Ok(Backend::S3 {
        s3: Box::new(s3),
        redirect: raw.redirect.unwrap_or(false).then_some(redirect_expiry),
    })
}

fn valid_upstream_name(n: &str) -> bool {
    // The name is matched as the first path segment of repository names, so it
    // follows the repository component grammar.
    !n.is_empty()
        && n.len() <= 128
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

fn validate_upstream(
    cx: &Ctx<'_>,
    i: usize,
    u: RawUpstream,
    global_ttl: Duration,
) -> Result<UpstreamConfig, ConfigError> {
    let key = |k: &str| format!("upstream[{i}].{k}");
    let name = u.name.ok_or_else(|| cx.err(key("name"), "is required"))?;
    if !valid_upstream_name(&name) {
        return Err(cx.err(
            key("name"),
            format!("{name:?} must be lowercase letters, digits, '.', '_' or '-'"),
        ));
    }
    let url_s = u.url.ok_or_else(|| cx.err(key("url"), "is required"))?;
    let url = Url::parse(&url_s).map_err(|e| cx.err(key("url"), format!("{url_s:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(cx.err(
            key("url"),
            format!("{url_s:?} must be an http:// or https:// URL with a host"),
        ));
    }
    if url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(cx.err(
            key("url"),
            format!("{url_s:?} must be a bare base URL (no path, query or credentials)"),
        ));
    }
    for (j, a) in u.aliases.iter().enumerate() {
        if a.is_empty() || a.contains(['/', ' ', '?', '#']) {
            return Err(cx.err(
                format!("upstream[{i}].aliases[{j}]"),
                format!("{a:?} is not a host[:port]"),
            ));
        }
    }
    let password = cx.secret(
        &key("password"),
        u.password,
        &key("password_file"),
        u.password_file,
    )?;
    let credentials = match (u.username, password) {
        (Some(username), Some(password)) => Some(Credentials { username, password }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(cx.err(
                key("password"),
                "username is set but no password or password_file",
            ))
        }
        (None, Some(_)) => return Err(cx.err(key("username"), "a password is set but no username")),
    };
    let is_hub = url
        .host_str()
        .is_some_and(|h| DOCKER_HUB_HOSTS.contains(&h));
    let retries = u.retries.unwrap_or(3);
    if retries > 10 {
        return Err(cx.err(key("retries"), format!("{retries} is more than 10")));
    }
    let max_concurrency = u.max_concurrency.unwrap_or(64);
    if !(1..=4096).contains(&max_concurrency) {
        return Err(cx.err(key("max_concurrency"), "must be 1 to 4096"));
    }
    Ok(UpstreamConfig {
        name,
        url,
        aliases: u.aliases,
        default: u.default,
        library_prefix: u.library_prefix.unwrap_or(is_hub),
        credentials,
        manifest_ttl: cx.duration(&key("manifest_ttl"), u.manifest_ttl.as_deref(), global_ttl)?,
        connect_timeout: cx.duration(
            &key("connect_timeout"),
            u.connect_timeout.as_deref(),
            Duration::from_secs(10),
        )?,
        read_timeout: cx.duration(
            &key("read_timeout"),
            u.read_timeout.as_deref(),
            Duration::from_secs(60),
        )?,
        retries,
        max_concurrency,
        queue_timeout: cx.duration(
            &key("queue_timeout"),
            u.queue_timeout.as_deref(),
            Duration::from_secs(10),
        )?,
    })
}

#[cfg(test)]
mod tests;
