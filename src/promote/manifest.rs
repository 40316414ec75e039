//! The promotion manifest (DESIGN §6, a contract for the file format): source and
//! destination registries, and images as `name → digest → [tags]`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use super::PromoteError;
use crate::oci::{Digest, RepoName, Tag};

/// A validated promotion manifest.
#[derive(Debug, Clone)]
pub struct Promotion {
    /// The file it came from, for messages.
    pub source_file: String,
    /// Where images come from (exactly one registry has `src: true`).
    pub src: RegistryRef,
    /// Registries to push to (every registry without `src: true`).
    pub destinations: Vec<RegistryRef>,
    pub images: Vec<ImageSpec>,
}

/// A registry and a path inside it, such as `http://127.0.0.1:5000/staging`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// As written, without the scheme: `127.0.0.1:5000/staging`.
    pub name: String,
    /// `scheme://host[:port]/`.
    pub base: Url,
    /// The path inside the registry every image name is put under (may be empty).
    pub prefix: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl RegistryRef {
    /// Parses `[http://|https://]host[:port][/path]` (https when no scheme is given).
    pub fn parse(name: &str) -> Result<Self, String> {
        let (scheme, rest) = match name.split_once("://") {
            Some((s @ ("http" | "https"), rest)) => (s, rest),
            Some((other, _)) => return Err(format!("scheme {other:?} is not http or https")),
            None => ("https", name),
        };
        let rest = rest.trim_end_matches('/');
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err("has no host".into());
        }
        let base = Url::parse(&format!("{scheme}://{host}/")).map_err(|e| e.to_string())?;
        if base.host_str().is_none() || base.path() != "/" || base.query().is_some() {
            return Err(format!("{host:?} is not a registry host[:port]"));
        }
        if !prefix.is_empty() {
            RepoName::validate(prefix).map_err(|e| format!("path {prefix:?}: {e}"))?;
        }
        Ok(Self {
            name: rest.to_owned(),
            base,
            prefix: prefix.to_owned(),
            username: None,
            password: None,
        })
    }

    /// `host[:port]`, as containerd names a registry in `?ns=`.
    pub fn host_port(&self) -> String {
        let host = self.base.host_str().unwrap_or_default();
        match self.base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        }
    }

    /// The repository an image name has in this registry: `<prefix>/<name>`.
    pub fn repo(&self, name: &RepoName) -> Result<RepoName, PromoteError> {
        let full = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{}", self.prefix, name)
        };
        RepoName::parse(&full).map_err(|e| PromoteError::Usage(format!("repository {full:?}: {e}")))
    }
}

/// One image: a repository name and the digests (with their tags) to promote.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub name: RepoName,
    /// Digest → tags; a digest with no tags is promoted by digest only.
    pub dmap: BTreeMap<Digest, BTreeSet<Tag>>,
    /// Also copy referrers (signatures, attestations, SBOMs), from the referrers
    /// API and from the legacy `sha256-<hex>.sig|.att|.sbom` tags.
    pub referrers: bool,
}

// ---- the file's shape -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPromotion {
    #[serde(default)]
    registries: Vec<RawRegistry>,
    #[serde(default)]
    images: Vec<RawImage>,
    /// Default for every image's `referrers`.
    #[serde(default)]
    referrers: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    name: String,
    #[serde(default)]
    src: bool,
    username: Option<String>,
    /// A file whose first line is the password (never the password itself here).
    password_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    name: String,
    #[serde(default)]
    dmap: BTreeMap<String, Vec<String>>,
    referrers: Option<bool>,
}

impl Promotion {
    pub fn load(path: &Path) -> Result<Self, PromoteError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PromoteError::Manifest {
            file: file.clone(),
            key: String::new(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &file, path.parent())
    }

    pub fn parse(text: &str, file: &str, base_dir: Option<&Path>) -> Result<Self, PromoteError> {
        let err = |key: String, message: String| PromoteError::Manifest {
            file: file.to_owned(),
            key,
            message,
        };
        let raw: RawPromotion =
            serde_yaml_ng::from_str(text).map_err(|e| err(String::new(), e.to_string()))?;
        let mut src = None;
        let mut destinations = Vec::new();
        for (i, r) in raw.registries.into_iter().enumerate() {
            let key = format!("registries[{i}]");
            let mut reg = RegistryRef::parse(&r.name).map_err(|m| err(format!("{key}.name"), m))?;
            if let Some(pf) = &r.password_file {
                if r.username.is_none() {
                    return Err(err(
                        format!("{key}.password_file"),
                        "needs a username".into(),
                    ));
                }
                let pf = match base_dir {
                    Some(dir) if pf.is_relative() => dir.join(pf),
                    _ => pf.clone(),
                };
                let text = std::fs::read_to_string(&pf).map_err(|e| {
                    err(
                        format!("{key}.password_file"),
                        format!("{}: {e}", pf.display()),
                    )
                })?;
                reg.password = Some(text.lines().next().unwrap_or_default().to_owned());
            }
            reg.username = r.username;
            if r.src {
                if src.is_some() {
                    return Err(err(
                        format!("{key}.src"),
                        "only one registry may be the source".into(),
                    ));
                }
                src = Some(reg);
            } else {
                destinations.push(reg);
            }
        }
        let src = src.ok_or_else(|| {
            err(
                "registries".into(),
                "no registry has `src: true`: say where images come from".into(),
            )
        })?;
        let mut images: Vec<ImageSpec> = Vec::new();
        for (i, img) in raw.images.into_iter().enumerate() {
            let key = format!("images[{i}]");
            let name = RepoName::parse(&img.name)
                .map_err(|e| err(format!("{key}.name"), e.to_string()))?;
            src.repo(&name)
                .map_err(|e| err(format!("{key}.name"), e.to_string()))?;
            if images.iter().any(|other| other.name == name) {
                return Err(err(
                    format!("{key}.name"),
                    format!("{name} is listed twice; merge its dmap entries"),
                ));
            }
            let mut dmap = BTreeMap::new();
            let mut owner: BTreeMap<Tag, Digest> = BTreeMap::new();
            for (d, tags) in img.dmap {
                let dkey = format!("{key}.dmap[{d:?}]");
                let digest = Digest::parse(&d).map_err(|e| err(dkey.clone(), e.to_string()))?;
                let mut set = BTreeSet::new();
                for t in tags {
                    let tag = Tag::parse(&t)
                        .ok_or_else(|| err(dkey.clone(), format!("{t:?} is not a valid tag")))?;
                    if let Some(other) = owner.insert(tag.clone(), digest.clone()) {
                        if other != digest {
                            return Err(err(
                                dkey.clone(),
                                format!("tag {t:?} is also given to {other}"),
                            ));
                        }
                    }
                    set.insert(tag);
                }
                dmap.insert(digest, set);
            }
            images.push(ImageSpec {
                name,
                dmap,
                referrers: img.referrers.unwrap_or(raw.referrers),
            });
        }
        Ok(Self {
            source_file: file.to_owned(),
            src,
            destinations,
            images,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn parse(text: &str) -> Result<Promotion, String> {
        Promotion::parse(text, "p.yaml", None).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_the_promoter_shape() {
        let p = parse(&format!(
            r#"
registries:
  - name: http://127.0.0.1:5000/staging
    src: true
  - name: mirror.example/prod
images:
  - name: team/app
    referrers: true
    dmap:
      "{D1}": ["v1.0.0", "v1"]
      "{D2}": []
"#
        ))
        .unwrap();
        assert_eq!(p.src.name, "127.0.0.1:5000/staging");
        assert_eq!(p.src.base.as_str(), "http://127.0.0.1:5000/");
        assert_eq!(p.src.prefix, "staging");
        assert_eq!(p.src.host_port(), "127.0.0.1:5000");
        assert_eq!(p.destinations.len(), 1);
        assert_eq!(p.destinations[0].base.scheme(), "https");
        let img = &p.images[0];
        assert!(img.referrers);
        assert_eq!(p.src.repo(&img.name).unwrap().as_str(), "staging/team/app");
        let tags: Vec<String> = img.dmap[&Digest::parse(D1).unwrap()]
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(tags, ["v1", "v1.0.0"]);
        assert!(img.dmap[&Digest::parse(D2).unwrap()].is_empty());
    }

    #[test]
    fn bad_input_names_the_key() {
        let src = "registries: [{name: 'http://r:5000', src: true}]\n";
        for (text, key, msg) in [
            ("images: []\n", "registries", "src: true"),
            (
                "registries: [{name: 'ftp://x', src: true}]\n",
                "registries[0].name",
                "scheme",
            ),
            (
                "registries: [{name: 'a', src: true}, {name: 'b', src: true}]\n",
                "registries[1].src",
                "only one",
            ),
            (
                &format!("{src}images: [{{name: 'Bad/Name', dmap: {{}}}}]\n"),
                "images[0].name",
                "",
            ),
            (
                &format!("{src}images: [{{name: 'a', dmap: {{'sha256:zz': []}}}}]\n"),
                "images[0].dmap[\"sha256:zz\"]",
                "",
            ),
            (
                &format!("{src}images: [{{name: 'a', dmap: {{'{D1}': ['-bad']}}}}]\n"),
                "images[0].dmap",
                "not a valid tag",
            ),
            (
                &format!("{src}images: [{{name: 'a', dmap: {{'{D1}': [v1], '{D2}': [v1]}}}}]\n"),
                "images[0].dmap",
                "also given",
            ),
            (
                &format!("{src}images: [{{name: a}}, {{name: a}}]\n"),
                "images[1].name",
                "twice",
            ),
            (&format!("{src}imagez: []\n"), "", "unknown field"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with("p.yaml"), "{e}");
            assert!(e.contains(key), "{text}: {e}");
            assert!(e.contains(msg), "{text}: {e}");
        }
    }

    #[test]
    fn the_example_manifest_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/promotion.yaml");
        let p = Promotion::load(&path).unwrap();
        assert_eq!(p.src.prefix, "staging");
        assert!(p.destinations.is_empty());
        assert!(p.images[0].referrers);
        assert_eq!(p.images[0].dmap.len(), 2);
    }
}
