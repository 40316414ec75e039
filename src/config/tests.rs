use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, "test.toml", None)
}

const ONE: &str = r#"
[[upstream]]
name = "local"
url = "http://127.0.0.1:5001"
default = true
"#;

#[test]
fn embedded_default_and_examples_are_valid() {
    let c = Config::embedded_default().unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
    assert_eq!(c.upstreams.len(), 6);
    let hub = &c.upstreams[0];
    assert!(
        hub.default
            && hub.library_prefix
            && hub.matches_ns("docker.io")
            && hub.matches_ns("index.docker.io")
    );
    assert!(!c.upstreams[1].library_prefix);
    for f in [
        "config/ferry.toml",
        "config/minimal.toml",
        "config/default.toml",
        "config/s3.toml",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
        Config::load(&path).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
}

#[test]
fn defaults_and_ns_matching() {
    let c = parse(ONE).unwrap();
    let u = &c.upstreams[0];
    assert_eq!(u.host_port(), "127.0.0.1:5001");
    assert!(u.matches_ns("127.0.0.1:5001") && u.matches_ns("local") && !u.matches_ns("127.0.0.1"));
    assert_eq!(u.manifest_ttl, Duration::from_secs(60));
    assert_eq!(u.retries, 3);
    assert!(!u.library_prefix);
}

#[test]
fn errors_name_the_key() {
    let cases: &[(&str, &str)] = &[
        ("listen = \"nope\"\n", "listen"),
        ("manifest_ttl = \"soon\"\n", "manifest_ttl"),
        ("manifest_cache_size = \"lots\"\n", "manifest_cache_size"),
        ("[storage]\nbackend = \"ftp\"\n", "storage.backend"),
        ("[storage]\nbackend = \"s3\"\n", "storage.bucket"),
        (
            "[storage]\nbackend = \"s3\"\nbucket = \"Bad_Bucket\"\n",
            "storage.bucket",
        ),
        (
            "[storage]\nbackend = \"s3\"\nbucket = \"b-1\"\nprefix = \"a/../b\"\n",
            "storage.prefix",
        ),
        (
            "[storage]\nbackend = \"s3\"\nbucket = \"b-1\"\nendpoint = \"ftp://x\"\n",
            "storage.endpoint",
        ),
        (
            "[storage]\nbackend = \"s3\"\nbucket = \"b-1\"\npart_size = \"1MiB\"\n",
            "storage.part_size",
        ),
        (
            "[storage]\nbackend = \"s3\"\nbucket = \"b-1\"\naccess_key_id = \"k\"\n",
            "storage.secret_access_key",
        ),
        (
            "[storage]\nbackend = \"s3\"\nbucket = \"b-1\"\nsecret_access_key = \"k\"\n",
            "storage.access_key_id",
        ),
        (
            "[storage]\nbackend = \"s3\"\nbucket = \"b-1\"\nredirect_expiry = \"30d\"\n",
            "storage.redirect_expiry",
        ),
        (
            "[storage]\nbackend = \"s3\"\nbucket = \"b-1\"\nmax_attempts = 0\n",
            "storage.max_attempts",
        ),
        ("[storage]\npart_size = \"16MiB\"\n", "storage.part_size"),
        ("[storage]\nbucket = \"b\"\n", "storage.bucket"),
        ("[storage]\nmax_size = \"1 elephant\"\n", "storage.max_size"),
        ("[storage]\nmax_size = 0\n", "storage.max_size"),
        (
            "[storage]\nhigh_watermark = 1.5\n",
            "storage.high_watermark",
        ),
        (
            "[storage]\nhigh_watermark = \"ninety\"\n",
            "storage.high_watermark",
        ),
        (
            "[storage]\nlow_watermark = \"95%\"\n",
            "storage.low_watermark",
        ),
        ("[tls]\ncert = \"c\"\n", "tls.cert"),
        ("[tls]\nkey = \"k\"\n", "tls.cert"),
        (
            "[limits]\nrequests_per_second = 0\n",
            "limits.requests_per_second",
        ),
        (
            "[limits]\nmax_header_size = \"1KiB\"\n",
            "limits.max_header_size",
        ),
        (
            "[limits]\nshutdown_grace = \"soon\"\n",
            "limits.shutdown_grace",
        ),
        (
            "[limits]\nrequest_timeout = \"0s\"\n",
            "limits.request_timeout",
        ),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        ("[log]\nlevel = \"[[\"\n", "log.level"),
        ("[auth]\nanonymous = false\n", "auth"),
        ("[auth]\nhtpasswd = \"/nonexistent\"\n", "auth.htpasswd"),
        ("[auth]\nrealm = \"a b\"\n", "auth.realm"),
    ];
    for (prefix, key) in cases {
        let e = parse(&format!("{prefix}{ONE}")).unwrap_err();
        assert_eq!(&e.key, key, "{prefix}: {e}");
        assert!(e.to_string().starts_with("test.toml: "), "{e}");
    }
    let ups: &[(&str, &str)] = &[
        (
            "name = \"Bad Name\"\nurl = \"http://x\"",
            "upstream[0].name",
        ),
        ("name = \"a\"\nurl = \"ftp://x\"", "upstream[0].url"),
        ("name = \"a\"\nurl = \"http://x/v2\"", "upstream[0].url"),
        ("name = \"a\"\nurl = \"http://u:p@x\"", "upstream[0].url"),
        (
            "name = \"a\"\nurl = \"http://x\"\nusername = \"u\"",
            "upstream[0].password",
        ),
        (
            "name = \"a\"\nurl = \"http://x\"\nread_timeout = \"x\"",
            "upstream[0].read_timeout",
        ),
        (
            "name = \"a\"\nurl = \"http://x\"\naliases = [\"a/b\"]",
            "upstream[0].aliases[0]",
        ),
        ("url = \"http://x\"", "upstream[0].name"),
    ];
    for (body, key) in ups {
        let e = parse(&format!("[[upstream]]\n{body}\n")).unwrap_err();
        assert_eq!(&e.key, key, "{body}: {e}");
    }
    let e = parse(&format!("{ONE}{ONE}")).unwrap_err();
    assert_eq!(e.key, "upstream[1].name");
    let e = parse(&format!(
        "{ONE}[[upstream]]\nname = \"b\"\nurl = \"http://y\"\ndefault = true\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "upstream.default");
    let e = parse("bogus = 1\n").unwrap_err();
    assert!(e.message.contains("bogus"), "{e}");
    assert_eq!(e.key, "line 1");
    assert_eq!(parse("").unwrap_err().key, "upstream");
}

#[test]
fn storage_limits() {
    let c = parse(&format!("[storage]\npath = \"/d\"\nmax_size = \"2GiB\"\nhigh_watermark = \"95%\"\nlow_watermark = 0.5\n{ONE}")).unwrap();
    let l = c.storage.limits;
    assert_eq!(
        (l.max_size, l.high_watermark, l.low_watermark),
        (Some(2 << 30), 0.95, 0.5)
    );
    assert_eq!(c.storage.index_path, Path::new("/d/index"));
    let c = parse(ONE).unwrap();
    assert_eq!(c.storage.limits, ferry_storage::Limits::default());
    let c = parse(&format!(
        "[storage]\npath = \"/d\"\nindex_path = \"/fast/idx\"\n{ONE}"
    ))
    .unwrap();
    assert_eq!(c.storage.index_path, Path::new("/fast/idx"));
}

#[test]
fn password_file_and_redaction() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
    let text = "[[upstream]]\nname = \"a\"\nurl = \"https://x\"\nusername = \"bot\"\npassword_file = \"pw\"\n";
    let c = Config::from_toml(text, "f.toml", Some(dir.path())).unwrap();
    let creds = c.upstreams[0].credentials.as_ref().unwrap();
    assert_eq!(creds.password, "s3cret");
    assert!(!c.render().contains("s3cret"));
    assert!(!format!("{c:?}").contains("s3cret"));
    let rendered = c.render();
    assert!(rendered.contains("password = \"<redacted>\""));
    // Relative storage paths resolve against the config file's directory.
    let text = format!("[storage]\npath = \"data\"\n{ONE}");
    let c = Config::from_toml(&text, "f.toml", Some(dir.path())).unwrap();
    assert_eq!(c.storage.path, dir.path().join("data"));
}

#[test]
fn s3_backend_settings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "topsecret\n").unwrap();
    let text = format!(
        "[storage]\nbackend = \"s3\"\npath = \"spool-here\"\nbucket = \"ferry-cache\"\nprefix = \"/eu/west/\"\n\
         endpoint = \"http://127.0.0.1:9000/\"\npath_style = true\naccess_key_id = \"AKIA1\"\n\
         secret_access_key_file = \"secret\"\npart_size = \"8MiB\"\nredirect = true\nredirect_expiry = \"5m\"\n{ONE}"
    );
    let c = Config::from_toml(&text, "t.toml", Some(dir.path())).unwrap();
    let Backend::S3 { s3, redirect } = &c.storage.backend else {
        panic!("not s3: {:?}", c.storage.backend)
    };
    assert_eq!(s3.bucket, "ferry-cache");
    assert_eq!(s3.prefix, "eu/west");
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert!(s3.path_style);
    assert_eq!(s3.region, "us-east-1");
    assert_eq!(s3.part_size, 8 << 20);
    assert_eq!(s3.spool_dir, dir.path().join("spool-here").join("spool"));
    assert_eq!(*redirect, Some(Duration::from_secs(300)));
    let creds = s3.credentials.as_ref().unwrap();
    assert_eq!(creds.secret_access_key, "topsecret");
    assert_eq!(c.storage.location(), "s3://ferry-cache/eu/west");
    assert!(!c.render().contains("topsecret"));
    assert!(!format!("{c:?}").contains("topsecret"));
}
