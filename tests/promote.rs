//! Promotion, pre-seeding and air-gap bundles, end to end with the real binary:
//! distribution as the source (and as a push destination), nodes on fs and on a
//! real S3 server, skopeo and containerd as the clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::containerd::Containerd;
use common::image::{verify_layout, Image};
use common::node::{Node, FERRY};
use common::registry::{skopeo, skopeo_pull, Registry};
use common::{client, free_port, sha256_hex};
use ferry_storage::s3_testing::S3Server;
use serde_json::json;

// ---- pushing raw content to distribution ----------------------------------------------

async fn push_blob(reg: &Registry, repo: &str, bytes: &[u8]) -> String {
    let digest = format!("sha256:{}", sha256_hex(bytes));
    let c = client();
    let r = c
        .post(format!("{}/v2/{repo}/blobs/uploads/", reg.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let loc = if loc.starts_with('/') {
        format!("{}{loc}", reg.url)
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{loc}{sep}digest={digest}"))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    digest
}

async fn push_manifest(reg: &Registry, repo: &str, reference: &str, mt: &str, bytes: &[u8]) {
    let r = client()
        .put(format!("{}/v2/{repo}/manifests/{reference}", reg.url))
        .header("content-type", mt)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

async fn push_image(reg: &Registry, repo: &str, image: &Image) {
    for b in [&image.config].into_iter().chain(image.layers.iter()) {
        push_blob(reg, repo, &b.bytes).await;
    }
    push_manifest(
        reg,
        repo,
        &image.manifest.digest,
        image.manifest.media_type,
        &image.manifest.bytes,
    )
    .await;
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A two-platform index (amd64 and arm64) pushed as `repo:tag`; returns its digest.
async fn push_multi_arch(reg: &Registry, repo: &str, tag: &str, images: &[Image]) -> String {
    let mut entries = Vec::new();
    for (image, arch) in images.iter().zip(["amd64", "arm64"]) {
        push_image(reg, repo, image).await;
        entries.push(json!({
            "mediaType": OCI_MANIFEST,
            "digest": image.manifest.digest,
            "size": image.manifest.bytes.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries,
    }))
    .unwrap();
    let digest = format!("sha256:{}", sha256_hex(&index));
    push_manifest(reg, repo, tag, OCI_INDEX, &index).await;
    digest
}

/// A cosign-style signature under the legacy `sha256-<hex>.sig` tag; returns its digest.
async fn push_signature(reg: &Registry, repo: &str, subject: &str) -> String {
    let config = b"{}".to_vec();
    let payload = format!(r#"{{"critical":{{"image":{{"docker-manifest-digest":"{subject}"}}}}}}"#);
    let c = push_blob(reg, repo, &config).await;
    let p = push_blob(reg, repo, payload.as_bytes()).await;
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": p,
                    "size": payload.len(), "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="}}],
    }))
    .unwrap();
    let tag = format!("sha256-{}.sig", subject.trim_start_matches("sha256:"));
    push_manifest(reg, repo, &tag, OCI_MANIFEST, &m).await;
    format!("sha256:{}", sha256_hex(&m))
}

// ---- running the binary -----------------------------------------------------------------

fn ferry(args: &[&str]) -> Output {
    Command::new(FERRY)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(args: &[&str]) -> String {
    let o = ferry(args);
    assert!(o.status.success(), "ferry {args:?} failed:\n{}", text(&o));
    text(&o)
}

fn fails(args: &[&str]) -> String {
    let o = ferry(args);
    assert!(
        !o.status.success(),
        "ferry {args:?} should fail:\n{}",
        text(&o)
    );
    text(&o)
}

/// A node config (not started) with the registry as its default upstream.
fn node_config(dir: &Path, upstream_url: &str, storage: Option<&str>) -> (PathBuf, u16) {
    let port = free_port();
    let storage = storage.map_or_else(
        || {
            format!(
                "[storage]\npath = {:?}\n",
                dir.join("data").display().to_string()
            )
        },
        str::to_owned,
    );
    let cfg = format!(
        "listen = \"127.0.0.1:{port}\"\n{storage}\n[[upstream]]\nname = \"staging\"\nurl = \"{upstream_url}\"\ndefault = true\n"
    );
    let path = dir.join("ferry.toml");
    std::fs::write(&path, cfg).unwrap();
    (path, port)
}

fn write_manifest(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

/// Files under the fs store's blob directory.
fn stored_blobs(data: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let root = data.join("blobs/sha256");
    for d in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            out.push(format!("sha256:{}", f.file_name().to_string_lossy()));
        }
    }
    out
}

fn audit_events(data: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// ---- tests ------------------------------------------------------------------------------

#[tokio::test]
async fn sync_into_an_fs_node_is_verified_pinned_idempotent_and_immutable() {
    let reg = Registry::start().await;
    let app = Image::random(&[300_000, 200_000]);
    push_image(&reg, "team/app", &app).await;
    push_manifest(&reg, "team/app", "v1", OCI_MANIFEST, &app.manifest.bytes).await;
    let platforms = [Image::random(&[100_000]), Image::random(&[120_000])];
    let index = push_multi_arch(&reg, "team/multi", "v2", &platforms).await;
    let sig = push_signature(&reg, "team/multi", &index).await;

    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = node_config(dir.path(), &reg.url, None);
    let cfg_s = cfg.display().to_string();
    let data = dir.path().join("data");
    let manifest = format!(
        "registries:\n  - name: {}\n    src: true\nimages:\n  - name: team/app\n    dmap:\n      \"{}\": [v1, v1.0.0]\n  - name: team/multi\n    referrers: true\n    dmap:\n      \"{index}\": [v2]\n",
        reg.url, app.manifest.digest
    );
    let p = write_manifest(dir.path(), "promotion.yaml", &manifest);

    // A dry run plans and copies nothing.
    let out = ok(&["sync", "--manifest", &p, "--config", &cfg_s, "--dry-run"]);
    assert!(out.contains("plan for node"), "{out}");
    assert!(out.contains("team/app@"), "{out}");
    assert!(out.contains("dry run: nothing copied"), "{out}");
    assert!(stored_blobs(&data).is_empty());
    assert!(
        audit_events(&data).is_empty(),
        "a dry run changed the store"
    );

    let out = ok(&["sync", "--manifest", &p, "--config", &cfg_s]);
    // app: manifest + config + 2 layers; multi: index + 2 × (manifest + config + layer);
    // the signature: manifest + config + payload.
    let mut expected: Vec<String> = app.blobs().map(|b| b.digest.clone()).collect();
    for img in &platforms {
        expected.extend(img.blobs().map(|b| b.digest.clone()));
    }
    expected.push(index.clone());
    expected.push(sig.clone());
    let stored = stored_blobs(&data);
    for d in &expected {
        assert!(stored.contains(d), "{d} was not promoted:\n{out}");
    }
    assert!(
        out.contains("image(s) failed") && out.contains("; 0 image(s) failed"),
        "{out}"
    );
    let events = audit_events(&data);
    for action in ["promote", "pin", "tag"] {
        assert!(
            events
                .iter()
                .any(|e| e["action"] == action && e["actor"].as_str().unwrap().starts_with("cli:")),
            "no {action} event: {events:?}"
        );
    }
    assert!(events
        .iter()
        .any(|e| e["action"] == "tag" && e["tag"] == "v1.0.0" && e["repo"] == "team/app"));
    let audit = ok(&["audit", "--manifest", &p, "--config", &cfg_s]);
    assert!(audit.contains(" 0 problem(s)"), "{audit}");

    // Idempotent: the second run copies nothing and changes nothing.
    let before = audit_events(&data).len();
    let out = ok(&["sync", "--manifest", &p, "--config", &cfg_s]);
    assert!(
        out.contains("copied 0 blob(s) (0 B) and 0 manifest(s); set 0 tag(s); pinned 0 digest(s)"),
        "{out}"
    );
    assert_eq!(
        audit_events(&data).len(),
        before,
        "a no-op run changed the store"
    );

    // Immutable tags: moving v1 to another image is refused, with nothing copied.
    let other = Image::random(&[50_000]);
    push_image(&reg, "team/app", &other).await;
    let moved = manifest.replace(&app.manifest.digest, &other.manifest.digest);
    let p_moved = write_manifest(dir.path(), "moved.yaml", &moved);
    let out = fails(&["sync", "--manifest", &p_moved, "--config", &cfg_s]);
    assert!(out.contains("CONFLICT"), "{out}");
    assert!(
        out.contains(&format!("team/app:v1 is {}", app.manifest.digest)),
        "{out}"
    );
    assert!(out.contains("Nothing was copied"), "{out}");
    assert!(!stored_blobs(&data).contains(&other.layers[0].digest));

    // The node serves the promoted tags with the upstream gone.
    let mut reg = reg;
    reg.stop();
    let node = Node::start(dir.path(), &std::fs::read_to_string(&cfg).unwrap()).await;
    let pulled = skopeo_pull(&format!("docker://127.0.0.1:{port}/team/app:v1.0.0"), None).unwrap();
    verify_layout(pulled.path(), &app);
    let pulled = skopeo_pull(&format!("docker://127.0.0.1:{port}/team/multi:v2"), None).unwrap();
    verify_layout(pulled.path(), &platforms[0]);
    let sig_tag = format!("sha256-{}.sig", index.trim_start_matches("sha256:"));
    let r = client()
        .get(format!(
            "http://127.0.0.1:{port}/v2/team/multi/manifests/{sig_tag}"
        ))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"].to_str().unwrap(), sig);
    // The tag list comes from the node while the upstream is down.
    let r = client()
        .get(format!("http://127.0.0.1:{port}/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: serde_json::Value = r.json().await.unwrap();
    assert_eq!(list, json!({"name": "team/app", "tags": ["v1", "v1.0.0"]}));
    let r = client()
        .get(format!(
            "http://127.0.0.1:{port}/v2/team/app/tags/list?n=1&last=v1"
        ))
        .send()
        .await
        .unwrap();
    let list: serde_json::Value = r.json().await.unwrap();
    assert_eq!(list["tags"], json!(["v1.0.0"]));
    // Syncing into a running node is refused with the reason.
    let out = fails(&["sync", "--manifest", &p, "--config", &cfg_s]);
    assert!(out.contains("stop"), "{out}");
    node.terminate();
    reg.restart().await;

    // Audit: a pinned blob deleted behind ferry's back.
    let victim = &app.layers[1].digest;
    let hex = victim.trim_start_matches("sha256:");
    std::fs::remove_file(data.join("blobs/sha256").join(&hex[..2]).join(hex)).unwrap();
    let out = fails(&["audit", "--manifest", &p, "--config", &cfg_s]);
    assert!(out.contains(&format!("MISSING {victim}")), "{out}");

    // An unexpected tag: another manifest added one; the first one's audit sees it.
    let extra = manifest.replace("[v1, v1.0.0]", "[v1, v1.0.0, extra]");
    let p_extra = write_manifest(dir.path(), "extra.yaml", &extra);
    let out = ok(&["sync", "--manifest", &p_extra, "--config", &cfg_s]);
    assert!(
        out.contains("copied 1 blob(s)"),
        "the deleted blob is copied again:\n{out}"
    );
    let out = fails(&["audit", "--manifest", &p, "--config", &cfg_s]);
    assert!(out.contains("UNEXPECTED tag team/app:extra"), "{out}");
    assert!(!out.contains("MISSING"), "{out}");

    // Only --prune removes it.
    let out = ok(&["sync", "--manifest", &p, "--config", &cfg_s]);
    assert!(!out.contains("untag"), "{out}");
    let out = ok(&["sync", "--manifest", &p, "--config", &cfg_s, "--prune"]);
    assert!(out.contains("untag team/app:extra"), "{out}");
    let audit = ok(&["audit", "--manifest", &p, "--config", &cfg_s]);
    assert!(audit.contains(" 0 problem(s)"), "{audit}");
    assert!(audit_events(&data).iter().any(|e| e["action"] == "untag"));

    // With --allow-tag-move the move goes through, and the audit of the old manifest says so.
    let out = ok(&[
        "sync",
        "--manifest",
        &p_moved,
        "--config",
        &cfg_s,
        "--allow-tag-move",
    ]);
    assert!(out.contains("set 2 tag(s)"), "{out}");
    let out = fails(&["audit", "--manifest", &p, "--config", &cfg_s]);
    assert!(out.contains("MOVED tag team/app:v1"), "{out}");
}

#[tokio::test]
async fn a_corrupt_source_blob_fails_the_sync_and_leaves_nothing() {
    let reg = Registry::start().await;
    let image = Image::random(&[200_000, 100_000, 150_000]);
    push_image(&reg, "team/bad", &image).await;
    // Distribution serves what is on its disk without checking it.
    let path = reg.blob_data_path(&image.layers[1].digest);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = node_config(dir.path(), &reg.url, None);
    let cfg_s = cfg.display().to_string();
    let p = write_manifest(
        dir.path(),
        "p.yaml",
        &format!(
            "registries: [{{name: '{}', src: true}}]\nimages:\n  - name: team/bad\n    dmap: {{'{}': [v1]}}\n",
            reg.url, image.manifest.digest
        ),
    );
    let out = fails(&["sync", "--manifest", &p, "--config", &cfg_s]);
    assert!(out.contains("FAILED"), "{out}");
    assert!(out.contains("digest mismatch"), "{out}");
    let data = dir.path().join("data");
    assert!(
        stored_blobs(&data).is_empty(),
        "left behind: {:?}",
        stored_blobs(&data)
    );
    let temp: Vec<_> = walk(&data.join("blobs")).into_iter().collect();
    assert!(temp.is_empty(), "temp files left: {temp:?}");
    let out = fails(&["audit", "--manifest", &p, "--config", &cfg_s]);
    assert!(out.contains("MISSING"), "{out}");
    assert!(out.contains("MISSING tag team/bad:v1"), "{out}");
    let out = ok(&["index", "check", "--verify", "--config", &cfg_s]);
    assert!(out.contains(" 0 problem(s)"), "{out}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn sync_into_an_s3_node_and_again() {
    let reg = Registry::start().await;
    let image = Image::random(&[6 << 20, 100_000]);
    push_image(&reg, "team/app", &image).await;
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut table = common::s3::storage_table(&s3, "prod", "");
    table = table.replace(
        "[storage]\n",
        &format!(
            "[storage]\npath = {:?}\n",
            dir.path().join("spool").display().to_string()
        ),
    );
    let (cfg, _) = node_config(dir.path(), &reg.url, Some(&table));
    let cfg_s = cfg.display().to_string();
    let p = write_manifest(
        dir.path(),
        "p.yaml",
        &format!(
            "registries: [{{name: '{}', src: true}}]\nimages:\n  - name: team/app\n    dmap: {{'{}': [v1]}}\n",
            reg.url, image.manifest.digest
        ),
    );
    let out = ok(&["sync", "--manifest", &p, "--config", &cfg_s]);
    assert!(
        out.contains("copied 3 blob(s)") && out.contains("1 manifest(s)"),
        "{out}"
    );
    let keys = s3.keys();
    for b in image.blobs() {
        let key = common::s3::blob_key("prod", &b.digest);
        assert!(keys.contains(&key), "{key} not in the bucket: {keys:?}");
        let stored = std::fs::read(s3.object_path(&key)).unwrap();
        assert_eq!(format!("sha256:{}", sha256_hex(&stored)), b.digest);
    }
    let out = ok(&["sync", "--manifest", &p, "--config", &cfg_s]);
    assert!(
        out.contains("copied 0 blob(s) (0 B) and 0 manifest(s); set 0 tag(s)"),
        "{out}"
    );
    let audit = ok(&["audit", "--manifest", &p, "--config", &cfg_s]);
    assert!(audit.contains(" 0 problem(s)"), "{audit}");
}

#[tokio::test]
async fn export_import_serves_offline_to_skopeo_and_containerd() {
    let mut reg = Registry::start().await;
    let app = Image::random(&[400_000, 300_000]);
    push_image(&reg, "team/app", &app).await;
    let platforms = [Image::random(&[100_000]), Image::random(&[110_000])];
    let index = push_multi_arch(&reg, "team/multi", "v2", &platforms).await;
    let sig = push_signature(&reg, "team/multi", &index).await;

    let side_a = tempfile::tempdir().unwrap();
    let p = write_manifest(
        side_a.path(),
        "p.yaml",
        &format!(
            "registries: [{{name: '{}', src: true}}]\nreferrers: true\nimages:\n  - name: team/app\n    dmap: {{'{}': [v1]}}\n  - name: team/multi\n    dmap: {{'{index}': [v2]}}\n",
            reg.url, app.manifest.digest
        ),
    );
    let bundle = side_a.path().join("bundle.tar");
    let bundle_s = bundle.display().to_string();
    let out = ok(&["export", "--manifest", &p, "-o", &bundle_s]);
    assert!(out.contains("wrote"), "{out}");

    // A standard layout: skopeo reads it by ref name.
    let read = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        &format!("oci-archive:{bundle_s}:team/app:v1"),
        &format!("oci:{}:pulled", read.path().display()),
    ])
    .unwrap();
    verify_layout(read.path(), &app);

    // Across the gap: the source is gone; a fresh node imports the bundle.
    reg.stop();
    let side_b = tempfile::tempdir().unwrap();
    let carried = side_b.path().join("bundle.tar");
    std::fs::copy(&bundle, &carried).unwrap();
    let (cfg, port) = node_config(side_b.path(), &reg.url, None);
    let cfg_s = cfg.display().to_string();
    let out = ok(&["import", &carried.display().to_string(), "--config", &cfg_s]);
    assert!(out.contains("; 0 image(s) failed"), "{out}");
    let data = side_b.path().join("data");
    assert!(
        stored_blobs(&data).contains(&sig),
        "the signature came along"
    );
    assert!(audit_events(&data).iter().any(|e| e["action"] == "import"));
    // Importing again changes nothing.
    let out = ok(&["import", &carried.display().to_string(), "--config", &cfg_s]);
    assert!(out.contains("copied 0 blob(s)"), "{out}");

    let node = Node::start(side_b.path(), &std::fs::read_to_string(&cfg).unwrap()).await;
    let node_url = format!("http://127.0.0.1:{port}");
    let pulled = skopeo_pull(&format!("docker://127.0.0.1:{port}/team/app:v1"), None).unwrap();
    verify_layout(pulled.path(), &app);

    // containerd asks for the (dead) source registry by name; hosts.toml sends it to the node.
    let ctd = Containerd::start().await;
    let hosts = tempfile::tempdir().unwrap();
    Containerd::hosts_dir(hosts.path(), &reg.host, &node_url);
    let hosts_s = hosts.path().display().to_string();
    let reference = format!("{}/team/multi:v2", reg.host);
    let (out, ctd) = tokio::task::spawn_blocking(move || {
        let out = ctd.ctr(&["images", "pull", "--hosts-dir", &hosts_s, &reference]);
        (out, ctd)
    })
    .await
    .unwrap();
    out.unwrap_or_else(|e| panic!("{e}\n{}", ctd.log()));
    let content = ctd.ctr(&["content", "ls", "-q"]).unwrap();
    assert!(content.contains(&index), "{content}");
    for b in platforms[0].blobs() {
        assert!(
            content.contains(&b.digest),
            "{} missing:\n{content}",
            b.digest
        );
    }
    node.terminate();
}

#[tokio::test]
async fn import_pushes_to_a_registry_and_refuses_a_tampered_bundle() {
    let src = Registry::start().await;
    let app = Image::random(&[200_000]);
    push_image(&src, "team/app", &app).await;
    let dir = tempfile::tempdir().unwrap();
    let p = write_manifest(
        dir.path(),
        "p.yaml",
        &format!(
            "registries: [{{name: '{}/staging', src: true}}]\nimages:\n  - name: app\n    dmap: {{'{}': [v1]}}\n",
            src.url, app.manifest.digest
        ),
    );
    // The source path is part of the repository: push it there first.
    push_image(&src, "staging/app", &app).await;
    let bundle = dir.path().join("b.tar").display().to_string();
    ok(&["export", "--manifest", &p, "-o", &bundle]);

    let dest = Registry::start().await;
    let to = format!("{}/prod", dest.url);
    let out = ok(&["import", &bundle, "--to", &to]);
    assert!(out.contains("copied 2 blob(s)"), "{out}");
    let pulled = skopeo_pull(&format!("docker://{}/prod/app:v1", dest.host), None).unwrap();
    verify_layout(pulled.path(), &app);
    let out = ok(&["import", &bundle, "--to", &to]);
    assert!(out.contains("copied 0 blob(s)"), "{out}");

    // A bundle whose layer was altered in transit: refused, nothing new tagged.
    let unpacked = tempfile::tempdir().unwrap();
    let mut ar = tar::Archive::new(std::fs::File::open(&bundle).unwrap());
    ar.unpack(unpacked.path()).unwrap();
    let layer = unpacked
        .path()
        .join("blobs/sha256")
        .join(app.layers[0].digest.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&layer).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&layer, bytes).unwrap();
    let tampered = dir.path().join("t.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tampered).unwrap());
    b.append_dir_all(".", unpacked.path()).unwrap();
    b.finish().unwrap();
    drop(b);
    let to2 = format!("{}/other", dest.url);
    let out = fails(&["import", &tampered.display().to_string(), "--to", &to2]);
    assert!(out.contains("digest mismatch"), "{out}");
    let r = client()
        .head(format!("{}/v2/other/app/manifests/v1", dest.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a tampered import must not tag anything");
    // A path that leaves the bundle is refused before anything is written.
    let evil = dir.path().join("evil.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&evil).unwrap());
    let mut h = tar::Header::new_gnu();
    // tar::Builder refuses `..` in paths: write the name into the header by hand.
    let name = b"blobs/../../escape";
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    b.finish().unwrap();
    drop(b);
    let out = fails(&["import", &evil.display().to_string(), "--to", &to2]);
    assert!(out.contains("leaves the bundle"), "{out}");
    assert!(!dir.path().join("escape").exists());
}

#[tokio::test]
async fn bad_manifests_get_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = node_config(dir.path(), "http://127.0.0.1:1", None);
    let cfg_s = cfg.display().to_string();
    let p = write_manifest(
        dir.path(),
        "bad.yaml",
        "registries: [{name: 'http://127.0.0.1:1', src: true}]\nimages:\n  - name: app\n    dmap: {'sha256:nothex': [v1]}\n",
    );
    let out = fails(&["sync", "--manifest", &p, "--config", &cfg_s]);
    assert!(
        out.contains("bad.yaml: images[0].dmap[\"sha256:nothex\"]"),
        "{out}"
    );
    let out = fails(&[
        "sync",
        "--manifest",
        "/nonexistent.yaml",
        "--config",
        &cfg_s,
    ]);
    assert!(out.contains("/nonexistent.yaml"), "{out}");
    // An unreachable source: a clear failure, nothing stored.
    let p = write_manifest(
        dir.path(),
        "p.yaml",
        &format!(
            "registries: [{{name: 'http://127.0.0.1:1', src: true}}]\nimages:\n  - name: app\n    dmap: {{'sha256:{}': [v1]}}\n",
            "a".repeat(64)
        ),
    );
    let out = fails(&["sync", "--manifest", &p, "--config", &cfg_s]);
    assert!(
        out.contains("FAILED app@") && out.contains("unreachable"),
        "{out}"
    );
}

// The fake upstream runs on this runtime while the binary is waited for: two threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_from_the_api_come_along_from_a_token_authenticated_source() {
    let fake = common::fake::FakeUpstream::start().await;
    fake.require_bearer(Some(("robot", "s3cret")));
    let layer = fake.add_blob(vec![7u8; 4096]);
    let config = fake.add_blob(&b"{\"architecture\":\"amd64\",\"os\":\"linux\"}"[..]);
    let desc = |mt: &str, d: &str, size: usize| json!({"mediaType": mt, "digest": d, "size": size});
    let subject_body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", &config, 37),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar", &layer, 4096)],
    }))
    .unwrap();
    let subject = fake.add_manifest("team/app", "v1", &subject_body, OCI_MANIFEST);
    let sbom = fake.add_blob(&b"{\"spdxVersion\":\"SPDX-2.3\"}"[..]);
    let empty = fake.add_blob(&b"{}"[..]);
    let referrer_body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
        "config": desc("application/vnd.oci.empty.v1+json", &empty, 2),
        "layers": [desc("application/spdx+json", &sbom, 26)],
        "subject": desc(OCI_MANIFEST, &subject, subject_body.len()),
    }))
    .unwrap();
    let referrer = fake.add_manifest("team/app", "sbom", &referrer_body, OCI_MANIFEST);
    let mut d = desc(OCI_MANIFEST, &referrer, referrer_body.len());
    d["artifactType"] = json!("application/spdx+json");
    fake.add_referrer(&subject, "application/spdx+json", d);

    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = node_config(dir.path(), &fake.url, None);
    let cfg_s = cfg.display().to_string();
    std::fs::write(dir.path().join("password"), "s3cret\n").unwrap();
    let p = write_manifest(
        dir.path(),
        "p.yaml",
        &format!(
            "registries:\n  - name: {}\n    src: true\n    username: robot\n    password_file: password\nimages:\n  - name: team/app\n    referrers: true\n    dmap: {{'{subject}': [v1]}}\n",
            fake.url
        ),
    );
    let out = ok(&["sync", "--manifest", &p, "--config", &cfg_s]);
    let stored = stored_blobs(&dir.path().join("data"));
    for d in [&subject, &config, &layer, &referrer, &sbom, &empty] {
        assert!(stored.contains(d), "{d} missing:\n{out}");
    }
    // The referrer is pinned content the audit accepts (its subject is promoted).
    let audit = ok(&["audit", "--manifest", &p, "--config", &cfg_s]);
    assert!(audit.contains(" 0 problem(s)"), "{audit}");
    // Without referrers, the same manifest's audit finds the SBOM unexpected.
    let p2 = write_manifest(
        dir.path(),
        "p2.yaml",
        &std::fs::read_to_string(&p)
            .unwrap()
            .replace("    referrers: true\n", ""),
    );
    let audit = fails(&["audit", "--manifest", &p2, "--config", &cfg_s]);
    assert!(
        audit.contains(&format!("UNEXPECTED pinned {referrer}")),
        "{audit}"
    );

    // Offline, the node answers the referrers API from what it holds.
    drop(fake);
    let node = Node::start(dir.path(), &std::fs::read_to_string(&cfg).unwrap()).await;
    let url = format!("{}/v2/team/app/referrers/{subject}", node.url);
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let index: serde_json::Value = r.json().await.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    assert_eq!(index["manifests"][0]["digest"], json!(referrer));
    assert_eq!(
        index["manifests"][0]["artifactType"],
        json!("application/spdx+json")
    );
    let r = client()
        .get(format!("{url}?artifactType=application/vnd.dev.cosign"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let index: serde_json::Value = r.json().await.unwrap();
    assert_eq!(index["manifests"], json!([]), "{index}");
    node.terminate();
}
