//! Keys shared by `ferry serve` and `ferry redirect`: `[tls]`, `[limits]` and `[log]`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Ctx};

/// How the HTTP server runs, whichever mode it serves.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub tls: Option<TlsConfig>,
    pub limits: Limits,
    pub log: LogConfig,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs.
    pub client_ca: Option<PathBuf>,
    /// How often the files are checked for changes (they are also re-read on SIGHUP).
    pub reload_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Requests per second per client address; `None` is unlimited.
    pub requests_per_second: Option<u32>,
    /// Requests a client may make at once above the steady rate.
    pub burst: u32,
    /// Open connections per client address; `None` is unlimited.
    pub connections_per_client: Option<u32>,
    /// Largest request head (request line and headers); larger gets 431.
    pub max_header_size: usize,
    /// Largest request body accepted.
    pub max_body_size: u64,
    /// Time allowed to send a request's head.
    pub header_read_timeout: Duration,
    /// A connection that moves no bytes and answers no request for this long is
    /// closed (before its first request, between requests, or a stalled reader).
    pub idle_timeout: Duration,
    /// Time allowed to produce a response's status and headers (a body may stream
    /// for longer).
    pub request_timeout: Duration,
    /// After SIGTERM, how long open requests may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            requests_per_second: None,
            burst: 0,
            connections_per_client: None,
            max_header_size: 64 << 10,
            max_body_size: 1 << 20,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `"info"` or `"ferry=debug,info"`; `RUST_LOG` wins.
    pub level: String,
    /// One line per request at `info` (target `ferry::access`).
    pub access_log: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
            access_log: true,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    reload_interval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    requests_per_second: Option<u32>,
    burst: Option<u32>,
    connections_per_client: Option<u32>,
    max_header_size: Option<toml::Value>,
    max_body_size: Option<toml::Value>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    request_timeout: Option<String>,
    shutdown_grace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    format: Option<String>,
    level: Option<String>,
    access_log: Option<bool>,
}

pub(super) fn validate(
    cx: &Ctx<'_>,
    tls: Option<RawTls>,
    limits: Option<RawLimits>,
    log: Option<RawLog>,
) -> Result<ServerOptions, ConfigError> {
    let tls = tls.map(|t| tls_config(cx, t)).transpose()?;
    let limits = limits_config(cx, limits.unwrap_or_default())?;
    let log = log.unwrap_or_default();
    let format = match log.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(cx.err(
                "log.format",
                format!("{other:?} is not \"text\" or \"json\""),
            ))
        }
    };
    let level = log.level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(cx.err(
            "log.level",
            format!("{level:?} is not a filter like \"info\" or \"ferry=debug,warn\""),
        ));
    }
    Ok(ServerOptions {
        tls,
        limits,
        log: LogConfig {
            format,
            level,
            access_log: log.access_log.unwrap_or(true),
        },
    })
}

fn tls_config(cx: &Ctx<'_>, t: RawTls) -> Result<TlsConfig, ConfigError> {
    let file = |key: &str, p: Option<PathBuf>| -> Result<PathBuf, ConfigError> {
        let p = cx.path(p.ok_or_else(|| cx.err(key, "is required with [tls]"))?);
        if !p.is_file() {
            return Err(cx.err(key, format!("{} is not a readable file", p.display())));
        }
        Ok(p)
    };
    let cert = file("tls.cert", t.cert)?;
    let key = file("tls.key", t.key)?;
    let client_ca = match t.client_ca {
        Some(p) => Some(file("tls.client_ca", Some(p))?),
        None => None,
    };
    let reload_interval = cx.duration(
        "tls.reload_interval",
        t.reload_interval.as_deref(),
        Duration::from_secs(10),
    )?;
    if reload_interval < Duration::from_secs(1) {
        return Err(cx.err("tls.reload_interval", "must be at least 1s"));
    }
    // Parse now, so a bad certificate is a config error that names the key.
    if let Err(e) = crate::http::tls::load(&cert, &key, client_ca.as_deref()) {
        return Err(cx.err(e.key(), e.to_string()));
    }
    Ok(TlsConfig {
        cert,
        key,
        client_ca,
        reload_interval,
    })
}

fn limits_config(cx: &Ctx<'_>, l: RawLimits) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let nonzero = |key: &str, v: Option<u32>| match v {
        Some(0) => Err(cx.err(key, "must be at least 1 (leave it out for no limit)")),
        v => Ok(v),
    };
    let requests_per_second = nonzero("limits.requests_per_second", l.requests_per_second)?;
    let connections_per_client =
        nonzero("limits.connections_per_client", l.connections_per_client)?;
    let burst = l.burst.unwrap_or_else(|| requests_per_second.unwrap_or(0));
    let max_header_size = cx.size(
        "limits.max_header_size",
        l.max_header_size.as_ref(),
        d.max_header_size as u64,
    )?;
    if !(8 << 10..=1 << 20).contains(&max_header_size) {
        return Err(cx.err("limits.max_header_size", "must be 8KiB to 1MiB"));
    }
    let max_body_size = cx.size(
        "limits.max_body_size",
        l.max_body_size.as_ref(),
        d.max_body_size,
    )?;
    let dur = |key: &str, v: Option<String>, default: Duration| {
        let v = cx.duration(key, v.as_deref(), default)?;
        if v.is_zero() {
            return Err(cx.err(key, "must be longer than 0s"));
        }
        Ok(v)
    };
    Ok(Limits {
        requests_per_second,
        burst,
        connections_per_client,
        max_header_size: max_header_size as usize,
        max_body_size,
        header_read_timeout: dur(
            "limits.header_read_timeout",
            l.header_read_timeout,
            d.header_read_timeout,
        )?,
        idle_timeout: dur("limits.idle_timeout", l.idle_timeout, d.idle_timeout)?,
        request_timeout: dur(
            "limits.request_timeout",
            l.request_timeout,
            d.request_timeout,
        )?,
        shutdown_grace: dur("limits.shutdown_grace", l.shutdown_grace, d.shutdown_grace)?,
    })
}
