//! ferry's `[storage]` table for a real S3-compatible server (s3s-fs).

use ferry_storage::s3_testing::{S3Server, ACCESS_KEY, SECRET_KEY};

/// A `[storage]` table pointing at `server` under `prefix`, with 5 MiB parts so
/// that test-sized blobs go up as multipart uploads. `extra` adds keys.
pub fn storage_table(server: &S3Server, prefix: &str, extra: &str) -> String {
    format!(
        "[storage]\nbackend = \"s3\"\nbucket = {:?}\nprefix = {prefix:?}\nendpoint = {:?}\n\
         path_style = true\naccess_key_id = {ACCESS_KEY:?}\nsecret_access_key = {SECRET_KEY:?}\n\
         part_size = \"5MiB\"\nmax_attempts = 2\nconnect_timeout = \"2s\"\n{extra}",
        server.bucket, server.endpoint
    )
}

/// The bucket key of a blob under `prefix`.
pub fn blob_key(prefix: &str, digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    format!("{prefix}/blobs/sha256/{}/{hex}", &hex[..2])
}
