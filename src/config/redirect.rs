//! The redirector's config file (`ferry redirect --config FILE`). The keys of
//! DESIGN.md §5 are a contract; the rest are additions with defaults.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use url::Url;

use super::{read_file, ConfigError, Ctx};

#[derive(Debug, Clone)]
pub struct RedirectConfig {
    pub source: String,
    pub listen: SocketAddr,
    /// Where manifests, and blobs without a healthy node, are sent.
    pub upstream: Url,
    /// Where `GET /` is sent; `None` answers 404.
    pub info_url: Option<Url>,
    /// 302 or 307.
    pub status: u16,
    /// Region for clients that match no CIDR.
    pub default_region: Option<usize>,
    /// Send non-blob `/v2/` requests to the chosen node instead of the upstream.
    pub manifests_to_nodes: bool,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub regions: Vec<Region>,
    pub nodes: Vec<Node>,
    pub health: Health,
    pub artifacts: Vec<Artifacts>,
    /// `[tls]`, `[limits]`, `[log]`.
    pub server: super::server::ServerOptions,
    /// How often to look for changes to the config and range files, which then
    /// reload as SIGHUP does; `None` (the default) watches nothing.
    pub watch: Option<Duration>,
    /// The files this config was read from: the config file itself (when loaded from
    /// one) and every provider range file.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Region {
    pub name: String,
    /// The region's own CIDRs plus those loaded from provider range files.
    pub cidrs: Vec<IpNet>,
    /// Regions (indexes) tried in order when this one has no healthy node.
    pub fallback: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Node {
    /// Base URL, without a trailing `/`.
    pub url: Url,
    pub region: usize,
    pub weight: u32,
    /// Taken out of rotation by the operator.
    pub drain: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Health {
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
}

/// A path prefix (e.g. `/binaries/kops/`) served by per-region mirrors.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub prefix: String,
    /// Base URL by region index.
    pub regions: HashMap<usize, Url>,
    pub default: Url,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<String>,
    upstream: Option<String>,
    info_url: Option<String>,
    status: Option<u16>,
    default_region: Option<String>,
    manifests_to_nodes: Option<bool>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default, rename = "region")]
    regions: Vec<RawRegion>,
    #[serde(default, rename = "node")]
    nodes: Vec<RawNode>,
    health: Option<RawHealth>,
    #[serde(default)]
    artifacts: Vec<RawArtifacts>,
    watch: Option<String>,
    tls: Option<super::server::RawTls>,
    limits: Option<super::server::RawLimits>,
    log: Option<super::server::RawLog>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    name: Option<String>,
    #[serde(default)]
    cidrs: Vec<String>,
    #[serde(default)]
    fallback: Vec<String>,
    #[serde(default)]
    ranges: Vec<RawRanges>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRanges {
    file: Option<PathBuf>,
    format: Option<String>,
    #[serde(default)]
    regions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    url: Option<String>,
    region: Option<String>,
    weight: Option<u32>,
    drain: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    interval: Option<String>,
    timeout: Option<String>,
    unhealthy_threshold: Option<u32>,
    healthy_threshold: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArtifacts {
    prefix: Option<String>,
    default: Option<String>,
    #[serde(default)]
    regions: HashMap<String, String>,
}

/// A base URL: http(s), a host, no query or fragment; trailing `/` removed.
fn base_url(cx: &Ctx<'_>, key: &str, s: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(s).map_err(|e| cx.err(key, format!("{s:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(cx.err(
            key,
            format!("{s:?} must be an http:// or https:// URL with a host and no query"),
        ));
    }
    let trimmed = s.trim_end_matches('/');
    Url::parse(trimmed).map_err(|e| cx.err(key, e.to_string()))
}

fn cidr(cx: &Ctx<'_>, key: &str, s: &str) -> Result<IpNet, ConfigError> {
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| cx.err(key, format!("{s:?} is not a CIDR like \"203.0.113.0/24\"")))
}

/// Prefixes of a provider range file that belong to one of `regions`.
fn load_ranges(
    cx: &Ctx<'_>,
    key: &str,
    path: &Path,
    format: &str,
    regions: &[String],
) -> Result<Vec<IpNet>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| cx.err(key, format!("cannot read {}: {e}", path.display())))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| cx.err(key, format!("{} is not JSON: {e}", path.display())))?;
    // AWS ip-ranges.json: prefixes[].ip_prefix / ipv6_prefixes[].ipv6_prefix, by "region".
    // GCP cloud.json: prefixes[].ipv4Prefix / ipv6Prefix, by "scope".
    let (lists, region_key, addr_keys): (&[&str], &str, &[&str]) = match format {
        "aws" => (
            &["prefixes", "ipv6_prefixes"],
            "region",
            &["ip_prefix", "ipv6_prefix"],
        ),
        "gcp" => (&["prefixes"], "scope", &["ipv4Prefix", "ipv6Prefix"]),
        other => return Err(cx.err(key, format!("format {other:?} is not \"aws\" or \"gcp\""))),
    };
    let mut out = Vec::new();
    for list in lists {
        let Some(entries) = json.get(list).and_then(|v| v.as_array()) else {
            continue;
        };
        for e in entries {
            let region = e.get(region_key).and_then(|v| v.as_str()).unwrap_or("");
            if !regions.iter().any(|r| r == region) {
                continue;
            }
            for k in addr_keys {
                if let Some(s) = e.get(k).and_then(|v| v.as_str()) {
                    out.push(cidr(cx, key, s)?);
                }
            }
        }
    }
    if out.is_empty() {
        return Err(cx.err(
            key,
            format!(
                "{} has no prefixes for regions {regions:?} (format {format:?})",
                path.display()
            ),
        ));
    }
    Ok(out)
}

impl RedirectConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (file, text) = read_file(path)?;
        let mut config = Self::from_toml(&text, &file, path.parent())?;
        config.files.insert(0, path.to_owned());
        Ok(config)
    }

    pub fn from_toml(text: &str, file: &str, base_dir: Option<&Path>) -> Result<Self, ConfigError> {
        let cx = Ctx {
            file,
            base_dir: base_dir.filter(|d| !d.as_os_str().is_empty()),
        };
        let raw: Raw = toml::from_str(text).map_err(|e| cx.toml_error(text, &e))?;
        let server = super::server::validate(&cx, raw.tls, raw.limits, raw.log)?;
        let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:8080");
        let listen: SocketAddr = listen.parse().map_err(|_| {
            cx.err(
                "listen",
                format!("{listen:?} is not an address like \"0.0.0.0:8080\""),
            )
        })?;
        let upstream = base_url(
            &cx,
            "upstream",
            raw.upstream
                .as_deref()
                .ok_or_else(|| cx.err("upstream", "is required"))?,
        )?;
        let info_url = raw
            .info_url
            .as_deref()
            .map(|s| base_url(&cx, "info_url", s))
            .transpose()?;
        let status = raw.status.unwrap_or(307);
        if status != 302 && status != 307 {
            return Err(cx.err("status", format!("{status} is not 302 or 307")));
        }
        let trusted_proxies = raw
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, s)| cidr(&cx, &format!("trusted_proxies[{i}]"), s))
            .collect::<Result<Vec<_>, _>>()?;

        // Regions: names first, so fallbacks can refer to later ones.
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, r) in raw.regions.iter().enumerate() {
            let name = r
                .name
                .clone()
                .ok_or_else(|| cx.err(format!("region[{i}].name"), "is required"))?;
            if names.insert(name.clone(), i).is_some() {
                return Err(cx.err(
                    format!("region[{i}].name"),
                    format!("{name:?} is defined twice"),
                ));
            }
        }
        let region_ref = |key: String, name: &str| {
            names
                .get(name)
                .copied()
                .ok_or_else(|| cx.err(key, format!("{name:?} is not a [[region]] name")))
        };
        let mut regions = Vec::new();
        let mut files = Vec::new();
        for (i, r) in raw.regions.into_iter().enumerate() {
            let mut cidrs = r
                .cidrs
                .iter()
                .enumerate()
                .map(|(j, s)| cidr(&cx, &format!("region[{i}].cidrs[{j}]"), s))
                .collect::<Result<Vec<_>, _>>()?;
            for (j, rr) in r.ranges.into_iter().enumerate() {
                let key = format!("region[{i}].ranges[{j}]");
                let file = rr
                    .file
                    .ok_or_else(|| cx.err(format!("{key}.file"), "is required"))?;
                let format = rr.format.ok_or_else(|| {
                    cx.err(format!("{key}.format"), "is required (\"aws\" or \"gcp\")")
                })?;
                if rr.regions.is_empty() {
                    return Err(cx.err(
                        format!("{key}.regions"),
                        "name at least one provider region",
                    ));
                }
                let file = cx.path(file);
                cidrs.extend(load_ranges(&cx, &key, &file, &format, &rr.regions)?);
                files.push(file);
            }
            let fallback = r
                .fallback
                .iter()
                .enumerate()
                .map(|(j, n)| region_ref(format!("region[{i}].fallback[{j}]"), n))
                .collect::<Result<Vec<_>, _>>()?;
            if fallback.contains(&i) {
                return Err(cx.err(
                    format!("region[{i}].fallback"),
                    "a region cannot fall back to itself",
                ));
            }
            regions.push(Region {
                name: r.name.unwrap_or_default(),
                cidrs,
                fallback,
            });
        }
        let default_region = raw
            .default_region
            .as_deref()
            .map(|n| region_ref("default_region".into(), n))
            .transpose()?;

        let mut nodes = Vec::new();
        for (i, n) in raw.nodes.into_iter().enumerate() {
            let url = base_url(
                &cx,
                &format!("node[{i}].url"),
                n.url
                    .as_deref()
                    .ok_or_else(|| cx.err(format!("node[{i}].url"), "is required"))?,
            )?;
            let region = region_ref(
                format!("node[{i}].region"),
                n.region
                    .as_deref()
                    .ok_or_else(|| cx.err(format!("node[{i}].region"), "is required"))?,
            )?;
            let weight = n.weight.unwrap_or(1);
            if !(1..=1000).contains(&weight) {
                return Err(cx.err(format!("node[{i}].weight"), "must be between 1 and 1000"));
            }
            nodes.push(Node {
                url,
                region,
                weight,
                drain: n.drain.unwrap_or(false),
            });
        }

        let h = raw.health.unwrap_or(RawHealth {
            interval: None,
            timeout: None,
            unhealthy_threshold: None,
            healthy_threshold: None,
        });
        let health = Health {
            interval: cx.duration(
                "health.interval",
                h.interval.as_deref(),
                Duration::from_secs(2),
            )?,
            timeout: cx.duration(
                "health.timeout",
                h.timeout.as_deref(),
                Duration::from_secs(1),
            )?,
            unhealthy_threshold: h.unhealthy_threshold.unwrap_or(2),
            healthy_threshold: h.healthy_threshold.unwrap_or(2),
        };
        if health.interval < Duration::from_millis(100) {
            return Err(cx.err("health.interval", "must be at least 100ms"));
        }
        if health.timeout.is_zero() || health.timeout > health.interval {
            return Err(cx.err(
                "health.timeout",
                "must be more than zero and at most the interval",
            ));
        }
        for (k, v) in [
            ("health.unhealthy_threshold", health.unhealthy_threshold),
            ("health.healthy_threshold", health.healthy_threshold),
        ] {
            if !(1..=100).contains(&v) {
                return Err(cx.err(k, "must be between 1 and 100"));
            }
        }

        let mut artifacts = Vec::new();
        for (i, a) in raw.artifacts.into_iter().enumerate() {
            let key = |k: &str| format!("artifacts[{i}].{k}");
            let prefix = a
                .prefix
                .ok_or_else(|| cx.err(key("prefix"), "is required"))?;
            let ok = prefix.starts_with('/')
                && prefix.ends_with('/')
                && prefix.len() > 2
                && !prefix.starts_with("/v2/")
                && prefix.split('/').all(|seg| {
                    seg != "."
                        && seg != ".."
                        && seg
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
                });
            if !ok {
                return Err(cx.err(
                    key("prefix"),
                    format!("{prefix:?} must look like \"/binaries/kops/\" (not under /v2/)"),
                ));
            }
            let default = base_url(
                &cx,
                &key("default"),
                a.default
                    .as_deref()
                    .ok_or_else(|| cx.err(key("default"), "is required"))?,
            )?;
            let mut by_region = HashMap::new();
            for (name, url) in &a.regions {
                let r = region_ref(key(&format!("regions.{name}")), name)?;
                by_region.insert(r, base_url(&cx, &key(&format!("regions.{name}")), url)?);
            }
            artifacts.push(Artifacts {
                prefix,
                regions: by_region,
                default,
            });
        }

        let watch = Some(cx.duration("watch", raw.watch.as_deref(), Duration::ZERO)?)
            .filter(|d| !d.is_zero());
        if watch.is_some_and(|d| d < Duration::from_millis(100)) {
            return Err(cx.err("watch", "must be \"0s\" (off) or at least 100ms"));
        }

        Ok(Self {
            source: file.to_owned(),
            listen,
            upstream,
            info_url,
            status,
            default_region,
            manifests_to_nodes: raw.manifests_to_nodes.unwrap_or(false),
            trusted_proxies,
            regions,
            nodes,
            health,
            artifacts,
            server,
            watch,
            files,
        })
    }
}
