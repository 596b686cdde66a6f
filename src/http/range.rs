//! `Range` request headers (RFC 9110 section 14): one byte range per request. Several
//! ranges, other units and malformed values are ignored (the whole representation is
//! sent, as the RFC allows); a well-formed range outside the content is unsatisfiable.

/// What to send of a representation of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// All of it (no Range, or one to ignore).
    Whole,
    /// Bytes `start..=end`.
    Part {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// A range that selects nothing: answer 416.
    Unsatisfiable,
}

/// Interprets a `Range` header value for content of `len` bytes.
pub fn parse(header: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // "-N": the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
        // "A-" or "A-B".
        (false, Some(start), end) if last.trim().is_empty() || end.is_some() => {
            if end.is_some_and(|e| e < start) {
                return ByteRange::Whole;
            }
            if start >= len {
                return ByteRange::Unsatisfiable;
            }
            ByteRange::Part {
                start,
                end: end.map_or(len - 1, |e| e.min(len - 1)),
            }
        }
        _ => ByteRange::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use ByteRange::*;
        let cases = [
            (None, 100, Whole),
            (Some("bytes=0-9"), 100, Part { start: 0, end: 9 }),
            (Some("bytes=90-"), 100, Part { start: 90, end: 99 }),
            (Some("bytes=90-1000"), 100, Part { start: 90, end: 99 }),
            (Some("bytes=-10"), 100, Part { start: 90, end: 99 }),
            (Some("bytes=-1000"), 100, Part { start: 0, end: 99 }),
            (Some("bytes=100-"), 100, Unsatisfiable),
            (Some("bytes=-0"), 100, Unsatisfiable),
            (Some("bytes=0-0"), 0, Unsatisfiable),
            (Some("bytes=-5"), 0, Unsatisfiable),
            (Some("bytes=5-1"), 100, Whole),
            (Some("bytes=0-1,5-6"), 100, Whole),
            (Some("items=0-1"), 100, Whole),
            (Some("bytes=x-1"), 100, Whole),
            (Some("bytes=-"), 100, Whole),
            (Some("bytes=+1-2"), 100, Whole),
            (Some("bytes=99999999999999999999999-"), 100, Whole),
        ];
        for (header, len, want) in cases {
            assert_eq!(parse(header, len), want, "{header:?} of {len}");
        }
    }
}
