//! `[auth]`: who may pull from a node. Anonymous reads are allowed unless the config
//! says otherwise; credentials come from an htpasswd file (bcrypt entries only) and
//! a file of static bearer tokens, both read when the config is loaded.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{ConfigError, Ctx};

#[derive(Clone)]
pub struct AuthConfig {
    /// The realm in `WWW-Authenticate: Basic realm="..."`.
    pub realm: String,
    /// User name → bcrypt hash.
    pub users: HashMap<String, String>,
    /// sha256 of a token → the token's name (for logs).
    pub tokens: HashMap<[u8; 32], String>,
    /// Anonymous clients may pull what is not protected.
    pub anonymous: bool,
    /// Upstream names whose content needs credentials.
    pub protected_upstreams: Vec<String>,
    /// Repository name prefixes (as the client names them, whole components) that
    /// need credentials.
    pub protected_repositories: Vec<String>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("realm", &self.realm)
            .field("users", &self.users.len())
            .field("tokens", &self.tokens.len())
            .field("anonymous", &self.anonymous)
            .field("protected_upstreams", &self.protected_upstreams)
            .field("protected_repositories", &self.protected_repositories)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    realm: Option<String>,
    htpasswd: Option<PathBuf>,
    tokens: Option<PathBuf>,
    anonymous: Option<bool>,
    #[serde(default)]
    protected_upstreams: Vec<String>,
    #[serde(default)]
    protected_repositories: Vec<String>,
}

/// sha256 of a bearer token: tokens are looked up by hash, never kept in clear.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub(super) fn validate(
    cx: &Ctx<'_>,
    raw: RawAuth,
    upstream_names: &[&str],
) -> Result<AuthConfig, ConfigError> {
    let realm = raw.realm.unwrap_or_else(|| "ferry".into());
    if realm.is_empty() || !realm.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
        return Err(cx.err(
            "auth.realm",
            "must be printable ASCII without spaces or quotes",
        ));
    }
    let mut users = HashMap::new();
    for (at, user, hash) in colon_file(cx, "auth.htpasswd", raw.htpasswd, "user:hash")? {
        if !["$2a$", "$2b$", "$2y$"].iter().any(|v| hash.starts_with(v)) {
            return Err(cx.err(
                "auth.htpasswd",
                format!("{at}: only bcrypt hashes are accepted (htpasswd -B)"),
            ));
        }
        if users.insert(user.clone(), hash).is_some() {
            return Err(cx.err("auth.htpasswd", format!("{at}: {user:?} twice")));
        }
    }
    let mut tokens = HashMap::new();
    for (at, name, token) in colon_file(cx, "auth.tokens", raw.tokens, "name:token")? {
        if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(cx.err(
                "auth.tokens",
                format!("{at}: a token must be at least 16 printable characters"),
            ));
        }
        tokens.insert(token_hash(&token), name);
    }
    if users.is_empty() && tokens.is_empty() {
        return Err(cx.err(
            "auth",
            "needs an htpasswd or a tokens file with at least one entry",
        ));
    }
    for (i, u) in raw.protected_upstreams.iter().enumerate() {
        if !upstream_names.contains(&u.as_str()) {
            return Err(cx.err(
                format!("auth.protected_upstreams[{i}]"),
                format!("{u:?} is not the name of an [[upstream]]"),
            ));
        }
    }
    let protected_repositories = raw
        .protected_repositories
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let r = r.trim_matches('/');
            if r.is_empty() || crate::oci::RepoName::validate(r).is_err() {
                return Err(cx.err(
                    format!("auth.protected_repositories[{i}]"),
                    format!("{r:?} is not a repository name prefix like \"team/\""),
                ));
            }
            Ok(r.to_owned())
        })
        .collect::<Result<_, _>>()?;
    Ok(AuthConfig {
        realm,
        users,
        tokens,
        anonymous: raw.anonymous.unwrap_or(true),
        protected_upstreams: raw.protected_upstreams,
        protected_repositories,
    })
}

/// The `left:right` lines of the file `key` names (none without one), each with
/// "FILE line N" for messages; blank lines and `#` comments are skipped.
fn colon_file(
    cx: &Ctx<'_>,
    key: &str,
    path: Option<PathBuf>,
    shape: &str,
) -> Result<Vec<(String, String, String)>, ConfigError> {
    let Some(p) = path else {
        return Ok(Vec::new());
    };
    let p = cx.path(p);
    let text = std::fs::read_to_string(&p)
        .map_err(|e| cx.err(key, format!("cannot read {}: {e}", p.display())))?;
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{} line {}", p.display(), n + 1);
        let (left, right) = line
            .split_once(':')
            .ok_or_else(|| cx.err(key, format!("{at}: not {shape}")))?;
        entries.push((at, left.to_owned(), right.to_owned()));
    }
    Ok(entries)
}
