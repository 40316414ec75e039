//! Client access control for a node (`[auth]`): HTTP Basic against bcrypt htpasswd
//! entries, or static bearer tokens. A 401 carries `WWW-Authenticate: Basic`, so
//! docker, podman, skopeo and containerd log in the usual way.
//!
//! bcrypt is slow on purpose (tens of milliseconds); a successful check is
//! remembered for five minutes under the sha256 of the user and password, so a
//! client's hundreds of requests per pull cost one bcrypt. Checks run off the
//! runtime's threads.

use std::time::Duration;

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::config::auth::{token_hash, AuthConfig};
use crate::oci::{ErrorCode, OciError};

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Anonymous,
    /// A user from htpasswd, or a token's name.
    Named(String),
}

pub struct Auth {
    cfg: AuthConfig,
    verified: moka::sync::Cache<[u8; 32], String>,
}

impl Auth {
    pub fn new(cfg: AuthConfig) -> Self {
        Self {
            cfg,
            verified: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(300))
                .build(),
        }
    }

    /// A 401 that asks the client to log in.
    pub fn challenge(&self, message: &str) -> OciError {
        let mut e = OciError::new(ErrorCode::Unauthorized, message);
        e.challenge = Some(format!("Basic realm=\"{}\"", self.cfg.realm));
        e
    }

    /// Whether pulling `name` (as the client named it) from `upstream` needs
    /// credentials.
    pub fn protects(&self, upstream: &str, name: &str) -> bool {
        !self.cfg.anonymous
            || self.cfg.protected_upstreams.iter().any(|u| u == upstream)
            || self.cfg.protected_repositories.iter().any(|p| {
                name.strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
    }

    /// Whether anything at all needs credentials (then `GET /v2/` challenges
    /// anonymous clients, which is how docker, podman and skopeo learn to send
    /// theirs; they carry on anonymously where that is allowed).
    pub fn protects_anything(&self) -> bool {
        !self.cfg.anonymous
            || !self.cfg.protected_upstreams.is_empty()
            || !self.cfg.protected_repositories.is_empty()
    }

    /// The caller, from `Authorization`. No header (or Basic with an empty user and
    /// password, which some clients send when they have none) is anonymous; wrong
    /// credentials are a 401 whatever is being asked for.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<Who, OciError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Who::Anonymous);
        };
        let value = value
            .to_str()
            .map_err(|_| self.challenge("malformed Authorization header"))?;
        let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return match self.cfg.tokens.get(&token_hash(credentials)) {
                Some(name) => Ok(Who::Named(name.clone())),
                None => Err(self.challenge("unknown token")),
            };
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(self.challenge("unsupported authorization scheme; use Basic or Bearer"));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| self.challenge("malformed Basic credentials"))?;
        let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        if user.is_empty() && password.is_empty() {
            return Ok(Who::Anonymous);
        }
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        if let Some(user) = self.verified.get(&key) {
            return Ok(Who::Named(user));
        }
        let wrong = || self.challenge("unknown user or wrong password");
        let Some(hash) = self.cfg.users.get(user).cloned() else {
            return Err(wrong());
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if !ok {
            return Err(wrong());
        }
        self.verified.insert(key, user.to_owned());
        Ok(Who::Named(user.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn auth(anonymous: bool) -> Auth {
        let mut users = HashMap::new();
        users.insert("alice".to_owned(), bcrypt::hash("s3cret", 4).unwrap());
        let mut tokens = HashMap::new();
        tokens.insert(token_hash("tok-0123456789abcdef"), "ci".to_owned());
        Auth::new(AuthConfig {
            realm: "ferry".into(),
            users,
            tokens,
            anonymous,
            protected_upstreams: vec!["internal".into()],
            protected_repositories: vec!["team".into()],
        })
    }

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    fn basic(user: &str, pass: &str) -> HeaderMap {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        headers(&format!("Basic {b}"))
    }

    #[tokio::test]
    async fn identifies_users_tokens_and_anonymous() {
        let a = auth(true);
        assert_eq!(a.identify(&HeaderMap::new()).await.unwrap(), Who::Anonymous);
        assert_eq!(a.identify(&basic("", "")).await.unwrap(), Who::Anonymous);
        assert_eq!(
            a.identify(&basic("alice", "s3cret")).await.unwrap(),
            Who::Named("alice".into())
        );
        // The second time comes from the cache; a wrong password never does.
        assert_eq!(
            a.identify(&basic("alice", "s3cret")).await.unwrap(),
            Who::Named("alice".into())
        );
        for bad in [
            basic("alice", "wrong"),
            basic("bob", "s3cret"),
            headers("Bearer nope"),
            headers("Digest x"),
            headers("Basic !!!"),
        ] {
            let e = a.identify(&bad).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::Unauthorized);
            assert_eq!(e.challenge.as_deref(), Some("Basic realm=\"ferry\""));
        }
        assert_eq!(
            a.identify(&headers("Bearer tok-0123456789abcdef"))
                .await
                .unwrap(),
            Who::Named("ci".into())
        );
    }

    #[test]
    fn protection_by_upstream_and_repository_prefix() {
        let a = auth(true);
        assert!(a.protects("internal", "x"));
        assert!(a.protects("hub", "team"));
        assert!(a.protects("hub", "team/app"));
        assert!(!a.protects("hub", "teams/app"));
        assert!(!a.protects("hub", "library/alpine"));
        assert!(a.protects_anything());
        assert!(auth(false).protects("hub", "library/alpine"));
    }
}
