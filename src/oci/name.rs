//! Repository names and manifest references, per the distribution spec's grammar
//! (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests>).

use std::fmt;

use super::{Digest, DigestError};

/// A repository name: `/`-separated components of `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("repository name is empty")]
    Empty,
    #[error("repository name is longer than 255 characters")]
    TooLong,
    #[error("repository name component {0:?} is invalid")]
    BadComponent(String),
}

impl RepoName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        Self::validate(s)?;
        Ok(Self(s.to_owned()))
    }

    /// Checks `s` the way [`RepoName::parse`] does, without keeping it.
    pub fn validate(s: &str) -> Result<(), NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > 255 {
            return Err(NameError::TooLong);
        }
        for comp in s.split('/') {
            if !valid_component(comp) {
                return Err(NameError::BadComponent(comp.chars().take(64).collect()));
            }
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Docker Hub keeps official images under `library/`; `alpine` means `library/alpine`.
    pub fn with_library_prefix(self) -> Self {
        if self.0.contains('/') {
            self
        } else {
            Self(format!("library/{}", self.0))
        }
    }
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    // Separators: a single '.', one or two '_', or any run of '-'.
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b.iter()
                .all(|x| x.is_ascii_alphanumeric() || b"._-".contains(x));
        ok.then(|| Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// What a manifest request names: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid tag {0:?}")]
    BadTag(String),
    #[error(transparent)]
    BadDigest(#[from] DigestError),
}

impl Reference {
    /// A reference with a `:` can only be a digest; anything else must be a tag.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.contains(':') {
            Ok(Self::Digest(Digest::parse(s)?))
        } else {
            Tag::parse(s)
                .map(Self::Tag)
                .ok_or_else(|| ReferenceError::BadTag(s.chars().take(64).collect()))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(t) => t.fmt(f),
            Self::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names() {
        for ok in [
            "a",
            "library/alpine",
            "a/b/c/d/e",
            "my-app",
            "a__b",
            "a.b",
            "a---b",
            "x0/y_1",
        ] {
            assert!(RepoName::parse(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(256);
        for bad in [
            "", "A", "a/", "/a", "a//b", "-a", "a-", "a..b", "a___b", "a/../b", "..", "a b",
            "a%2fb", &long,
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn references() {
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        assert!(matches!(
            Reference::parse("v1.2_3-rc"),
            Ok(Reference::Tag(_))
        ));
        assert!(Reference::parse(&"a".repeat(129)).is_err());
        assert!(Reference::parse(".hidden").is_err());
        assert!(Reference::parse("a/b").is_err());
        assert!(matches!(
            Reference::parse("sha256:abc"),
            Err(ReferenceError::BadDigest(_))
        ));
        let d = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(Reference::parse(&d), Ok(Reference::Digest(_))));
    }

    #[test]
    fn library_prefix() {
        let n = RepoName::parse("alpine").unwrap().with_library_prefix();
        assert_eq!(n.as_str(), "library/alpine");
        let n = RepoName::parse("user/app").unwrap().with_library_prefix();
        assert_eq!(n.as_str(), "user/app");
    }
}
