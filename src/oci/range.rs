//! Single-range `Range: bytes=...` headers (RFC 9110 §14.1.2), as containerd sends
//! for resumed and parallel blob fetches.

use ferry_storage::ByteSpan;

/// A parsed range, not yet checked against a blob size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=N-` or `bytes=N-M`.
    From { start: u64, end: Option<u64> },
    /// `bytes=-N`: the last N bytes.
    Suffix(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("malformed Range header")]
    Malformed,
    #[error("multiple ranges are not supported")]
    Multiple,
    #[error("range is not satisfiable for a blob of {0} bytes")]
    Unsatisfiable(u64),
}

impl ByteRange {
    pub fn parse(header: &str) -> Result<Self, RangeError> {
        let spec = header
            .trim()
            .strip_prefix("bytes=")
            .ok_or(RangeError::Malformed)?;
        if spec.contains(',') {
            return Err(RangeError::Multiple);
        }
        let (a, b) = spec.trim().split_once('-').ok_or(RangeError::Malformed)?;
        let num = |s: &str| -> Result<u64, RangeError> {
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err(RangeError::Malformed);
            }
            s.parse().map_err(|_| RangeError::Malformed)
        };
        match (a.trim(), b.trim()) {
            ("", n) => Ok(Self::Suffix(num(n)?)),
            (s, "") => Ok(Self::From {
                start: num(s)?,
                end: None,
            }),
            (s, e) => {
                let (start, end) = (num(s)?, num(e)?);
                if end < start {
                    return Err(RangeError::Malformed);
                }
                Ok(Self::From {
                    start,
                    end: Some(end),
                })
            }
        }
    }

    /// Resolves against a blob of `size` bytes; an end past the blob is clamped.
    pub fn resolve(self, size: u64) -> Result<ByteSpan, RangeError> {
        match self {
            Self::From { start, end } if start < size => Ok(ByteSpan {
                start,
                end: end.map_or(size - 1, |e| e.min(size - 1)),
            }),
            Self::Suffix(n) if n > 0 && size > 0 => Ok(ByteSpan {
                start: size.saturating_sub(n),
                end: size - 1,
            }),
            _ => Err(RangeError::Unsatisfiable(size)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_resolve() {
        let span = |h: &str, size| ByteRange::parse(h).and_then(|r| r.resolve(size));
        assert_eq!(span("bytes=0-9", 100), Ok(ByteSpan { start: 0, end: 9 }));
        assert_eq!(span("bytes=90-", 100), Ok(ByteSpan { start: 90, end: 99 }));
        assert_eq!(
            span("bytes=90-1000", 100),
            Ok(ByteSpan { start: 90, end: 99 })
        );
        assert_eq!(span("bytes=-10", 100), Ok(ByteSpan { start: 90, end: 99 }));
        assert_eq!(span("bytes=-1000", 100), Ok(ByteSpan { start: 0, end: 99 }));
        assert_eq!(span("bytes=100-", 100), Err(RangeError::Unsatisfiable(100)));
        assert_eq!(span("bytes=-0", 100), Err(RangeError::Unsatisfiable(100)));
        assert_eq!(span("bytes=0-", 0), Err(RangeError::Unsatisfiable(0)));
        for bad in [
            "",
            "bytes=",
            "bytes=a-b",
            "items=0-1",
            "bytes=5-1",
            "bytes=-",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(ByteRange::parse(bad), Err(RangeError::Malformed), "{bad}");
        }
        assert_eq!(ByteRange::parse("bytes=0-1,5-6"), Err(RangeError::Multiple));
    }
}
