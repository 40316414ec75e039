//! The part every backend's writer shares: a local file that receives a blob's bytes
//! as they arrive (readers of an in-flight fill follow it), hashing them on the way,
//! and the digest and size check at commit. Dropping it removes the file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::fs;
use tokio::io::AsyncWriteExt;

use crate::store::StoreError;
use crate::{Digest, Verifier};

pub(crate) struct Spool {
    file: Option<fs::File>,
    path: PathBuf,
    digest: Digest,
    expected_size: Option<u64>,
    verifier: Verifier,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl Spool {
    /// Creates a new file in `dir`, named `<hex>.<pid>.<seq>`: unique among this
    /// process's writes and recognisable as a leftover after a crash.
    pub(crate) async fn create_in(
        dir: &Path,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Self, StoreError> {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}.{}.{seq}", digest.hex(), std::process::id()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(StoreError::from_io)?;
        Ok(Self {
            file: Some(file),
            path,
            digest: digest.clone(),
            expected_size,
            verifier: Verifier::new(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file's name (to key other records of this write by).
    pub(crate) fn name(&self) -> &std::ffi::OsStr {
        self.path.file_name().unwrap_or_default()
    }

    pub(crate) fn written(&self) -> u64 {
        self.verifier.len()
    }

    /// Appends `data`, refusing to grow past the expected size.
    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let new_len = self.verifier.len() + data.len() as u64;
        if let Some(expected) = self.expected_size.filter(|e| new_len > *e) {
            return Err(StoreError::SizeMismatch {
                digest: self.digest.clone(),
                expected,
                actual: new_len,
            });
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| StoreError::Backend("write after commit".into()))?;
        file.write_all(data).await.map_err(StoreError::from_io)?;
        // tokio's File completes writes in the background; flush so that readers
        // following the spool see these bytes once this call returns.
        file.flush().await.map_err(StoreError::from_io)?;
        self.verifier.update(data);
        Ok(())
    }

    /// Checks the digest and size of everything written. On success returns the size
    /// and the (flushed) file, which stays on disk until the spool is dropped.
    pub(crate) async fn verify(&mut self) -> Result<(u64, fs::File), StoreError> {
        let size = self.verifier.len();
        let actual = std::mem::take(&mut self.verifier).finish();
        if actual != self.digest {
            return Err(StoreError::DigestMismatch {
                expected: self.digest.clone(),
                actual,
            });
        }
        if let Some(expected) = self.expected_size.filter(|e| *e != size) {
            return Err(StoreError::SizeMismatch {
                digest: self.digest.clone(),
                expected,
                actual: size,
            });
        }
        let file = self
            .file
            .take()
            .ok_or_else(|| StoreError::Backend("commit twice".into()))?;
        Ok((size, file))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // After a successful fs commit the file was renamed away and this is a no-op.
        let _ = std::fs::remove_file(&self.path);
    }
}
