//! The redirector's routing decision: client address → region → healthy node, as a
//! pure function of the config, the request and the nodes' health. [`server`] puts
//! it behind HTTP with health probes, `/status`, metrics and reload.
//!
//! Rules (DESIGN.md §5):
//! - blob `GET`/`HEAD` → a healthy, undrained node of the client's region, then of
//!   each `fallback` region in order, then of `default_region`, else the upstream.
//!   Among several healthy nodes the choice is a weighted rendezvous hash of the
//!   digest, so each blob keeps going to the same node and its cache stays hot;
//! - other `/v2/<name>/...` requests → the upstream (with `manifests_to_nodes`, the
//!   node chosen the same way, keyed by the repository name);
//! - `/v2/` → 200; `/` → `info_url` (404 without one); artifact prefixes → that
//!   region's mirror (else the default); anything else 404; non-GET/HEAD 405.
//!
//! Every Location is a configured base URL plus a path rebuilt from validated parts
//! (repository name, digest, reference, artifact path segments), never request text
//! copied through, so there is no open redirect and no header injection.

pub mod lpm;
pub mod server;

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::config::redirect::RedirectConfig;
use crate::config::ConfigError;
use crate::http::endpoint::{Endpoint, EndpointError};
use crate::oci::{OciError, RepoName};
use lpm::PrefixTable;

/// Where a redirect sends the client (for metrics and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `config.nodes[i]`.
    Node(usize),
    Upstream,
    Info,
    Artifacts,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send the client to the location (with the configured status).
    Redirect(Target, String),
    /// `GET /v2/`: 200.
    ApiVersion,
    NotFound,
    MethodNotAllowed,
    Bad(OciError),
}

pub struct Routing {
    pub config: RedirectConfig,
    regions: PrefixTable<usize>,
    trusted: PrefixTable<()>,
    /// Node indexes by region.
    by_region: Vec<Vec<usize>>,
    /// Per region: itself, its fallbacks, then the default region, each once.
    candidates: Vec<Vec<usize>>,
    /// For clients in no region: the default region, if any.
    default_candidates: Vec<usize>,
}

/// 64-bit FNV-1a, then a finaliser: stable across runs and platforms (the choice of
/// node must not change when the redirector restarts).
fn hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// A query string is passed on only when every character is harmless in a URL.
fn safe_query(q: &str) -> bool {
    q.len() <= 512
        && q.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~=&:".contains(&b))
}

impl Routing {
    pub fn new(config: RedirectConfig) -> Result<Self, ConfigError> {
        let mut regions = PrefixTable::new();
        for (i, r) in config.regions.iter().enumerate() {
            for net in &r.cidrs {
                if regions.insert(*net, i).is_err() {
                    // The same prefix in two regions: the operator must choose. (Within
                    // one region, e.g. a provider listing a prefix per service, it is
                    // harmless.)
                    if let Some(&o) = regions.get(*net).filter(|o| **o != i) {
                        return Err(ConfigError {
                            file: config.source.clone(),
                            key: format!("region[{i}].cidrs"),
                            message: format!(
                                "{net} is also a prefix of region {:?}",
                                config.regions[o].name
                            ),
                        });
                    }
                }
            }
        }
        let mut trusted = PrefixTable::new();
        for net in &config.trusted_proxies {
            let _ = trusted.insert(*net, ());
        }
        let mut by_region = vec![Vec::new(); config.regions.len()];
        for (i, n) in config.nodes.iter().enumerate() {
            by_region[n.region].push(i);
        }
        let default_candidates: Vec<usize> = config.default_region.into_iter().collect();
        let candidates = (0..config.regions.len())
            .map(|r| {
                let mut order = vec![r];
                for &c in config.regions[r].fallback.iter().chain(&default_candidates) {
                    if !order.contains(&c) {
                        order.push(c);
                    }
                }
                order
            })
            .collect();
        Ok(Self {
            config,
            regions,
            trusted,
            by_region,
            candidates,
            default_candidates,
        })
    }

    /// The client's address: the socket peer, unless the peer is a trusted proxy; then
    /// the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy (each
    /// proxy appends the address it saw, so entries left of that one are whatever
    /// the client claimed). Unparseable entries end the walk at the last good address.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if self.trusted.lookup(peer).is_none() {
            return peer;
        }
        let Some(xff) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for entry in xff.rsplit(',') {
            match entry.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if self.trusted.lookup(ip).is_none() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }

    /// The region whose CIDRs best match `ip`, or the default region.
    pub fn region_of(&self, ip: IpAddr) -> Option<usize> {
        self.regions
            .lookup(ip)
            .copied()
            .or(self.config.default_region)
    }

    /// The node for `key` (a digest or repository name) in the first candidate region
    /// with a healthy, undrained node: the highest weighted rendezvous score wins.
    pub fn pick_node(
        &self,
        region: Option<usize>,
        key: &str,
        healthy: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let order = match region {
            Some(r) => &self.candidates[r],
            None => &self.default_candidates,
        };
        for &r in order {
            let best = self.by_region[r]
                .iter()
                .copied()
                .filter(|&i| healthy(i) && !self.config.nodes[i].drain)
                .map(|i| {
                    let node = &self.config.nodes[i];
                    let h = hash(&[key.as_bytes(), node.url.as_str().as_bytes()]);
                    // Weighted rendezvous: score = -w / ln(u), u uniform in (0, 1).
                    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                    (i, -f64::from(node.weight) / u.ln())
                })
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((i, _)) = best {
                return Some(i);
            }
        }
        None
    }

    /// Decides what to answer. `path` is the request path, `query` its query string.
    pub fn decide(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        client: IpAddr,
        healthy: &dyn Fn(usize) -> bool,
    ) -> Decision {
        if method != "GET" && method != "HEAD" {
            return Decision::MethodNotAllowed;
        }
        if path == "/" {
            return match &self.config.info_url {
                Some(u) => Decision::Redirect(Target::Info, u.as_str().to_owned()),
                None => Decision::NotFound,
            };
        }
        if let Some(rest) = path.strip_prefix("/v2/") {
            return self.decide_v2(rest, query, client, healthy);
        }
        if path == "/v2" {
            return Decision::ApiVersion;
        }
        for a in &self.config.artifacts {
            if let Some(rest) = path.strip_prefix(a.prefix.as_str()) {
                let ok = !rest.is_empty()
                    && rest.len() <= 1024
                    && rest.split('/').all(|seg| {
                        !seg.is_empty()
                            && seg != "."
                            && seg != ".."
                            && seg
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"-._~+".contains(&b))
                    });
                if !ok {
                    return Decision::NotFound;
                }
                let base = self
                    .region_of(client)
                    .and_then(|r| a.regions.get(&r))
                    .unwrap_or(&a.default);
                return Decision::Redirect(
                    Target::Artifacts,
                    format!("{}/{rest}", base.as_str().trim_end_matches('/')),
                );
            }
        }
        Decision::NotFound
    }

    fn decide_v2(
        &self,
        rest: &str,
        query: Option<&str>,
        client: IpAddr,
        healthy: &dyn Fn(usize) -> bool,
    ) -> Decision {
        let endpoint = match Endpoint::parse(rest) {
            Ok(e) => e,
            Err(EndpointError::NotFound) => return Decision::NotFound,
            Err(EndpointError::Bad(e)) => return Decision::Bad(e),
        };
        // The rendezvous key: the digest for blobs (each blob keeps its node), the
        // repository otherwise.
        let (name, key) = match &endpoint {
            Endpoint::Base => return Decision::ApiVersion,
            Endpoint::Upload => return Decision::MethodNotAllowed,
            Endpoint::Blob { name, digest } => (name, digest.hex()),
            Endpoint::Manifest { name, .. }
            | Endpoint::Tags { name }
            | Endpoint::Referrers { name, .. } => (name, name.as_str()),
        };
        if let Err(e) = RepoName::validate(name) {
            return Decision::Bad(e.into());
        }
        let to_node = matches!(endpoint, Endpoint::Blob { .. }) || self.config.manifests_to_nodes;
        let node = to_node
            .then(|| self.pick_node(self.region_of(client), key, healthy))
            .flatten();
        let (target, base) = match node {
            Some(i) => (Target::Node(i), &self.config.nodes[i].url),
            None => (Target::Upstream, &self.config.upstream),
        };
        // One allocation: base, then the path rebuilt from the validated parts.
        let base = base.as_str().trim_end_matches('/');
        let query = query.filter(|q| safe_query(q));
        let mut location =
            String::with_capacity(base.len() + name.len() + 96 + query.map_or(0, str::len));
        location.push_str(base);
        location.push_str("/v2/");
        location.push_str(name);
        let _ = match &endpoint {
            Endpoint::Blob { digest, .. } => write!(location, "/blobs/{digest}"),
            Endpoint::Manifest { reference, .. } => write!(location, "/manifests/{reference}"),
            Endpoint::Referrers { digest, .. } => write!(location, "/referrers/{digest}"),
            _ => write!(location, "/tags/list"),
        };
        if let Some(q) = query {
            location.push('?');
            location.push_str(q);
        }
        Decision::Redirect(target, location)
    }

    /// The configured prefixes, for `/status`.
    pub fn prefix_count(&self) -> usize {
        self.regions.len()
    }
}

#[cfg(test)]
mod tests;
