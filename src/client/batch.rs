//! The client's half of `POST /sha256/batch` (docs: issue 16's wire format): frames out,
//! the signed answer's per-block outcomes in. Pure: no I/O, so the parsing of every
//! answer shape (a refused frame, a batch the node stopped reading) is tested here.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use hyper::StatusCode;

use super::{ClientError, Sent};
use crate::id::BlockId;

/// The route of a batch upload.
pub const PATH: &str = "/sha256/batch";

/// The body's media type (the node does not require it).
pub const CONTENT_TYPE: &str = "application/vnd.libernet.blocks";

/// Most frames the node reads from one batch.
pub const MAX_BLOCKS: usize = 1024;

/// Most frame bytes (ids, lengths and blocks) the node reads from one batch.
pub const MAX_BYTES: usize = 32 * 1024 * 1024;

/// Bytes of a frame before its block: the id (32) and the length (u32, big-endian).
pub const FRAME_HEAD: usize = 32 + 4;

/// The answer to a batch: `results[i]` is what a single PUT of frame `i` would have
/// answered; `errors` explains every result that is not 200 or 201, keyed by the
/// frame's index; `stopped` says where and why the node stopped reading, if it did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Answer {
    /// Statuses, one per frame read.
    pub results: Vec<u16>,
    /// Frames stored now (201).
    #[serde(default)]
    pub stored: u64,
    /// Frames already held (200).
    #[serde(default)]
    pub held: u64,
    /// Frames refused.
    #[serde(default)]
    pub failed: u64,
    /// Why each refused frame was refused.
    #[serde(default)]
    pub errors: BTreeMap<String, ErrorBody>,
    /// Where reading stopped before the body's end.
    #[serde(default)]
    pub stopped: Option<Stop>,
}

/// A refusal, as in any error answer's JSON body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ErrorBody {
    /// Stable code (`hash_mismatch`, `store_full`, ...).
    pub error: String,
    /// The node's words.
    #[serde(default)]
    pub message: String,
}

/// Why the node stopped reading a batch at frame `at` (none from `at` on was stored).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Stop {
    /// The first frame not read.
    pub at: usize,
    /// `truncated`, `too_large` or `too_many`.
    pub error: String,
    /// The node's words.
    #[serde(default)]
    pub message: String,
}

/// Bytes `blocks` take as frames.
pub fn frame_bytes(blocks: &[(BlockId, Bytes)]) -> usize {
    blocks.iter().map(|(_, b)| FRAME_HEAD + b.len()).sum()
}

/// The body of a batch: each block as `id | length (u32 BE) | bytes`. Refuses a block
/// whose length does not fit the frame's length field.
pub fn encode(blocks: &[(BlockId, Bytes)]) -> Result<Bytes, ClientError> {
    let mut body = BytesMut::with_capacity(frame_bytes(blocks));
    for (id, block) in blocks {
        let len = u32::try_from(block.len())
            .map_err(|_| ClientError::Request(format!("block {id} is too large for a frame")))?;
        body.put_slice(id.as_bytes());
        body.put_u32(len);
        body.put_slice(block);
    }
    Ok(body.freeze())
}

/// One outcome per block of `blocks` from `answer`: 201 stored, 200 already there, any
/// other status the `ClientError::Status` of a single PUT (with the node's message),
/// and frames the node did not read (after `stopped.at`) an error naming the stop.
/// `Err` when the answer does not fit the batch (more results than frames, or fewer
/// without a stop).
pub fn outcomes(
    answer: &Answer,
    blocks: &[(BlockId, Bytes)],
) -> Result<Vec<Result<Sent, ClientError>>, String> {
    let read = answer.results.len();
    if read > blocks.len() {
        return Err(format!("{read} results for {} frames", blocks.len()));
    }
    match &answer.stopped {
        None if read != blocks.len() => {
            return Err(format!("{read} results for {} frames", blocks.len()));
        }
        Some(stop) if stop.at != read => {
            return Err(format!("stopped at frame {} after {read} results", stop.at));
        }
        _ => {}
    }
    let mut out = Vec::with_capacity(blocks.len());
    for (i, (&code, (id, _))) in answer.results.iter().zip(blocks).enumerate() {
        let status = StatusCode::from_u16(code).map_err(|_| format!("bad status {code}"))?;
        out.push(match status {
            StatusCode::CREATED => Ok(Sent::Stored),
            StatusCode::OK => Ok(Sent::AlreadyThere),
            _ => {
                let why = answer.errors.get(&i.to_string());
                Err(ClientError::Status {
                    method: "PUT",
                    path: format!("/sha256/{id}"),
                    status,
                    message: why.map_or_else(
                        || "(no reason given)".to_owned(),
                        |e| format!("{} ({})", e.message, e.error),
                    ),
                })
            }
        });
    }
    if let Some(stop) = &answer.stopped {
        let status = match stop.error.as_str() {
            "too_large" | "too_many" => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        for (id, _) in &blocks[read..] {
            out.push(Err(ClientError::Status {
                method: "POST",
                path: format!("{PATH} (block {id})"),
                status,
                message: format!(
                    "the node stopped reading the batch at frame {}: {} ({})",
                    stop.at, stop.message, stop.error
                ),
            }));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(n: usize) -> Vec<(BlockId, Bytes)> {
        (0..n)
            .map(|i| {
                let bytes = Bytes::from(vec![i as u8; i + 1]);
                (BlockId::of(&bytes), bytes)
            })
            .collect()
    }

    #[test]
    fn frames_are_id_length_bytes_back_to_back() {
        let blocks = blocks(2);
        let body = encode(&blocks).unwrap();
        assert_eq!(body.len(), frame_bytes(&blocks));
        assert_eq!(&body[..32], blocks[0].0.as_bytes());
        assert_eq!(&body[32..36], &[0, 0, 0, 1]);
        assert_eq!(&body[36..37], &[0]);
        assert_eq!(&body[37..69], blocks[1].0.as_bytes());
        assert_eq!(&body[69..73], &[0, 0, 0, 2]);
        assert_eq!(&body[73..], &[1, 1]);
        assert!(encode(&[]).unwrap().is_empty());
    }

    #[test]
    fn a_refused_frame_fails_alone_with_the_nodes_words() {
        let json = r#"{"results": [201, 422, 200], "stored": 1, "held": 1, "failed": 1,
            "errors": {"1": {"error": "hash_mismatch", "message": "bytes do not hash to the id"}},
            "stopped": null}"#;
        let answer: Answer = serde_json::from_str(json).unwrap();
        let blocks = blocks(3);
        let out = outcomes(&answer, &blocks).unwrap();
        assert_eq!(out.len(), 3);
        assert!(matches!(out[0], Ok(Sent::Stored)));
        assert!(matches!(out[2], Ok(Sent::AlreadyThere)));
        match &out[1] {
            Err(ClientError::Status {
                method,
                path,
                status,
                message,
            }) => {
                assert_eq!(*method, "PUT");
                assert_eq!(path, &format!("/sha256/{}", blocks[1].0));
                assert_eq!(*status, StatusCode::UNPROCESSABLE_ENTITY);
                assert!(message.contains("bytes do not hash to the id"), "{message}");
                assert!(message.contains("hash_mismatch"), "{message}");
            }
            other => panic!("expected a status error, got {other:?}"),
        }
    }

    #[test]
    fn frames_after_a_stop_fail_with_the_stop() {
        let json = r#"{"results": [201, 200], "stored": 1, "held": 1, "failed": 0,
            "errors": {}, "stopped": {"at": 2, "error": "too_large",
            "message": "frame of 2000000 bytes"}}"#;
        let answer: Answer = serde_json::from_str(json).unwrap();
        let out = outcomes(&answer, &blocks(4)).unwrap();
        assert_eq!(out.len(), 4);
        assert!(out[0].is_ok() && out[1].is_ok());
        for unread in &out[2..] {
            match unread {
                Err(ClientError::Status {
                    status, message, ..
                }) => {
                    assert_eq!(*status, StatusCode::PAYLOAD_TOO_LARGE);
                    assert!(message.contains("frame 2"), "{message}");
                    assert!(message.contains("frame of 2000000 bytes"), "{message}");
                }
                other => panic!("expected a stop error, got {other:?}"),
            }
        }
    }

    #[test]
    fn answers_that_do_not_fit_the_batch_are_refused() {
        let parse = |json: &str| serde_json::from_str::<Answer>(json).unwrap();
        let short = parse(r#"{"results": [201], "stopped": null}"#);
        assert!(outcomes(&short, &blocks(2)).is_err());
        let long = parse(r#"{"results": [201, 201, 201]}"#);
        assert!(outcomes(&long, &blocks(2)).is_err());
        let misplaced = parse(r#"{"results": [201], "stopped": {"at": 0, "error": "truncated"}}"#);
        assert!(outcomes(&misplaced, &blocks(2)).is_err());
        let no_reason = parse(r#"{"results": [507, 201]}"#);
        let out = outcomes(&no_reason, &blocks(2)).unwrap();
        assert!(matches!(
            &out[0],
            Err(ClientError::Status { status, .. }) if *status == StatusCode::INSUFFICIENT_STORAGE
        ));
        assert!(serde_json::from_str::<Answer>(r#"{"stored": 1}"#).is_err());
    }
}
