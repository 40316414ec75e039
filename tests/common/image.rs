//! Builds OCI image layouts on disk with real tar+gzip layers of random content.

use std::io::Write;
use std::path::Path;

use rand::RngCore;
use serde_json::json;

use super::sha256_hex;

pub struct Blob {
    pub digest: String,
    pub bytes: Vec<u8>,
    pub media_type: &'static str,
}

impl Blob {
    fn new(bytes: Vec<u8>, media_type: &'static str) -> Self {
        Self {
            digest: format!("sha256:{}", sha256_hex(&bytes)),
            bytes,
            media_type,
        }
    }
    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

pub struct Image {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl Image {
    /// An image whose layers each hold one file of `size` random bytes.
    pub fn random(layer_sizes: &[usize]) -> Self {
        let mut rng = rand::thread_rng();
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, size) in layer_sizes.iter().enumerate() {
            let mut content = vec![0u8; *size];
            rng.fill_bytes(&mut content);
            let mut tar = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, format!("layer{i}.bin"), content.as_slice())
                .unwrap();
            let tar = tar.into_inner().unwrap();
            diff_ids.push(format!("sha256:{}", sha256_hex(&tar)));
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).unwrap();
            layers.push(Blob::new(
                gz.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            ));
        }
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = Blob::new(
            serde_json::to_vec(&config).unwrap(),
            "application/vnd.oci.image.config.v1+json",
        );
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        let manifest = Blob::new(
            serde_json::to_vec(&manifest).unwrap(),
            "application/vnd.oci.image.manifest.v1+json",
        );
        Self {
            manifest,
            config,
            layers,
        }
    }

    /// Writes an OCI image layout with the image under `tag`.
    pub fn write_layout(&self, dir: &Path, tag: &str) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        for b in self.blobs() {
            std::fs::write(blobs.join(b.digest.trim_start_matches("sha256:")), &b.bytes).unwrap();
        }
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let mut desc = self.manifest.descriptor();
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        let index = json!({"schemaVersion": 2, "manifests": [desc]});
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    }

    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.manifest)
            .chain(std::iter::once(&self.config))
            .chain(self.layers.iter())
    }
}

/// Checks that an OCI layout written by a client holds `image` with every blob intact.
pub fn verify_layout(dir: &Path, image: &Image) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let got = index["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(got, image.manifest.digest, "pulled manifest digest");
    for b in image.blobs() {
        let path = dir
            .join("blobs/sha256")
            .join(b.digest.trim_start_matches("sha256:"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            format!("sha256:{}", sha256_hex(&bytes)),
            b.digest,
            "blob content of {}",
            b.digest
        );
    }
}
