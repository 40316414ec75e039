//! Content-addressed storage for ferry.
//!
//! This crate owns where bytes live and how they get there safely. It knows nothing of
//! HTTP, axum or config files: callers hand it a [`Digest`] and bytes, and it promises
//! that nothing becomes visible under a digest unless the bytes hash to that digest.
//!
//! # Layout
//! - [`digest`]: the `Digest` key and an incremental `Verifier`.
//! - [`store`]: the [`BlobStore`] / [`BlobWriter`] traits every backend implements.
//! - [`fs`]: the local-disk backend (temp file → fsync → rename).
//! - [`s3`] (feature `s3`): the S3 backend (multipart fills, presigned URLs).
//! - [`meta`]: the tag and manifest records the proxy keeps (trait).
//! - [`index`]: the RocksDB cache index: sizes, access times, pins, tags; the LRU policy.
//! - [`indexed`]: a `BlobStore` that keeps the index in step with any backend,
//!   evicts, and reconciles index and store after a crash.
//! - [`audit`]: the append-only JSON-lines log of every change to a store.
//! - [`conformance`]: the behaviour suite every backend must pass.

pub mod audit;
pub mod conformance;
pub mod digest;
pub mod fs;
pub mod index;
pub mod indexed;
pub mod meta;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(all(feature = "s3", any(test, feature = "test-util")))]
pub mod s3_testing;
mod spool;
pub mod store;

pub use audit::{AuditAction, AuditEvent, AuditLog};
pub use digest::{Digest, DigestError, Verifier};
pub use fs::FsStore;
pub use index::{select_victims, BlobEntry, Candidate, Index, IndexError, NodeStats, Totals};
pub use indexed::{EvictReport, IndexedStore, Limits, ReconcileReport};
pub use meta::{MetaStore, TagKey, TagRecord};
#[cfg(feature = "s3")]
pub use s3::{CleanupReport, S3Config, S3Store, StaticCredentials};
pub use store::{BlobBody, BlobStore, BlobWriter, ByteSpan, StoreError};
