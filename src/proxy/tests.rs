use std::sync::Arc;

use super::*;
use crate::oci::ErrorCode;

async fn mirror(dir: &std::path::Path) -> Mirror {
    let cfg = Config::from_toml(
        r#"
[[upstream]]
name = "docker.io"
url = "https://registry-1.docker.io"
aliases = ["index.docker.io"]
default = true
[[upstream]]
name = "ghcr.io"
url = "https://ghcr.io"
[[upstream]]
name = "local"
url = "http://127.0.0.1:5001"
"#,
        "t.toml",
        None,
    )
    .unwrap();
    let store = Arc::new(ferry_storage::FsStore::open(dir).await.unwrap());
    let meta = Arc::new(ferry_storage::Index::open(&dir.join("index")).unwrap());
    Mirror::new(&cfg, store, meta, Arc::new(Metrics::new().unwrap())).unwrap()
}

#[tokio::test]
async fn routing_table() {
    let dir = tempfile::tempdir().unwrap();
    let m = mirror(dir.path()).await;
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Result<(&'a str, &'a str), ErrorCode>,
    );
    let cases: &[Case] = &[
        // Path prefix wins, then ns, then the default.
        ("ghcr.io/org/app", None, Ok(("ghcr.io", "org/app"))),
        (
            "ghcr.io/org/app",
            Some("docker.io"),
            Ok(("ghcr.io", "org/app")),
        ),
        (
            "docker.io/alpine",
            None,
            Ok(("docker.io", "library/alpine")),
        ),
        ("org/app", Some("ghcr.io"), Ok(("ghcr.io", "org/app"))),
        ("app", Some("127.0.0.1:5001"), Ok(("local", "app"))),
        (
            "alpine",
            Some("index.docker.io"),
            Ok(("docker.io", "library/alpine")),
        ),
        ("alpine", None, Ok(("docker.io", "library/alpine"))),
        ("user/app", None, Ok(("docker.io", "user/app"))),
        // A bare upstream name is a repository on the default upstream.
        ("ghcr.io", None, Ok(("docker.io", "library/ghcr.io"))),
        ("app", Some("evil.example.com"), Err(ErrorCode::NameUnknown)),
        ("app", Some("127.0.0.1:5002"), Err(ErrorCode::NameUnknown)),
        ("ghcr.io/Bad", None, Err(ErrorCode::NameInvalid)),
        ("a//b", None, Err(ErrorCode::NameInvalid)),
    ];
    for (name, ns, want) in cases {
        let got = m
            .route(name, *ns)
            .map(|r| (r.upstream.name().to_owned(), r.repo.to_string()))
            .map_err(|e| crate::oci::OciError::from(e).code);
        let want = want.map(|(u, r)| (u.to_owned(), r.to_owned()));
        assert_eq!(got, want, "{name} ns={ns:?}");
    }
}
