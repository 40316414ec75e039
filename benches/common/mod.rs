//! Shared by the benchmarks.

use bytes::Bytes;

/// The blob size the throughput benchmarks move.
pub const SIZE: usize = 64 << 20;

/// `SIZE` deterministic, incompressible bytes (xorshift).
pub fn blob() -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(SIZE);
    while v.len() < SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(v)
}
