//! Pure OCI distribution protocol: names, references, digests, ranges, media types
//! and error codes. No I/O and nothing of ours beyond the storage crate's `Digest`
//! (the content address both sides share).

mod error;
mod manifest;
mod name;
mod range;

pub use error::{ErrorCode, OciError};
pub use ferry_storage::{Digest, DigestError};
pub use manifest::{
    children, media_type_of, Children, Descriptor, MediaTypes, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES,
};
pub use name::{Reference, RepoName, Tag};
pub use range::{ByteRange, RangeError};
