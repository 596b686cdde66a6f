//! The client's half of `POST /sha256/batch` (the wire format is `proto`'s): the body
//! out, the signed answer's per-block outcomes in. Pure: no I/O, so the reading of every
//! answer shape (a refused frame, a batch the node stopped reading) is tested here.

use bytes::Bytes;
use hyper::StatusCode;

use super::{ClientError, Sent};
use crate::id::BlockId;
use crate::proto::{BATCH_PATH, BatchAnswer, BatchStop, FRAME_HEADER, encode_frame};

/// Bytes `blocks` take as frames.
pub fn frame_bytes(blocks: &[(BlockId, Bytes)]) -> usize {
    blocks.iter().map(|(_, b)| FRAME_HEADER + b.len()).sum()
}

/// The body of a batch: each block as one frame. Refuses a block over the largest
/// block (the node would stop reading there).
pub fn encode(blocks: &[(BlockId, Bytes)]) -> Result<Bytes, ClientError> {
    let mut body = Vec::with_capacity(frame_bytes(blocks));
    for (id, block) in blocks {
        if block.len() > crate::id::MAX_BLOCK_SIZE {
            return Err(ClientError::Request(format!(
                "block {id} is over the largest block"
            )));
        }
        encode_frame(&mut body, id, block);
    }
    Ok(body.into())
}

/// One outcome per block of `blocks` from `answer`: 201 stored, 200 already there, any
/// other status the `ClientError::Status` a single PUT would have given (with the
/// node's message), and frames the node did not read (from `stopped.at` on) an error
/// naming the stop. `Err` when the answer does not fit the batch (more results than
/// frames, or fewer without a stop).
pub fn outcomes(
    answer: &BatchAnswer,
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
        let status = match stop.error {
            BatchStop::TooLarge | BatchStop::TooMany => StatusCode::PAYLOAD_TOO_LARGE,
            BatchStop::Truncated => StatusCode::BAD_REQUEST,
        };
        for (id, _) in &blocks[read..] {
            out.push(Err(ClientError::Status {
                method: "POST",
                path: format!("{BATCH_PATH} (block {id})"),
                status,
                message: format!(
                    "the node stopped reading the batch at frame {}: {} ({})",
                    stop.at,
                    stop.message,
                    stop.error.code()
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

    fn answer(json: &str) -> BatchAnswer {
        serde_json::from_str(json).unwrap()
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
        let huge = Bytes::from(vec![0; crate::id::MAX_BLOCK_SIZE + 1]);
        assert!(encode(&[(BlockId::of(&huge), huge)]).is_err());
    }

    #[test]
    fn a_refused_frame_fails_alone_with_the_nodes_words() {
        let answer = answer(
            r#"{"results": [201, 422, 200], "stored": 1, "held": 1, "failed": 1,
            "errors": {"1": {"error": "hash_mismatch", "message": "bytes do not hash to the id"}},
            "stopped": null}"#,
        );
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
        let answer = answer(
            r#"{"results": [201, 200], "stored": 1, "held": 1, "failed": 0,
            "errors": {}, "stopped": {"at": 2, "error": "too_large",
            "message": "frame of 2000000 bytes"}}"#,
        );
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
                    assert!(message.contains("too_large"), "{message}");
                }
                other => panic!("expected a stop error, got {other:?}"),
            }
        }
        let truncated = answer_at(0, "truncated");
        let out = outcomes(&truncated, &blocks(1)).unwrap();
        assert!(matches!(
            &out[0],
            Err(ClientError::Status { status, .. }) if *status == StatusCode::BAD_REQUEST
        ));
    }

    fn answer_at(at: usize, error: &str) -> BatchAnswer {
        let results = vec!["201"; at].join(",");
        answer(&format!(
            r#"{{"results": [{results}], "stored": {at}, "held": 0, "failed": 0,
            "stopped": {{"at": {at}, "error": "{error}", "message": "cut"}}}}"#
        ))
    }

    #[test]
    fn answers_that_do_not_fit_the_batch_are_refused() {
        let counts = r#""stored": 0, "held": 0, "failed": 0"#;
        let short = answer(&format!(
            r#"{{"results": [201], {counts}, "stopped": null}}"#
        ));
        assert!(outcomes(&short, &blocks(2)).is_err());
        let long = answer(&format!(r#"{{"results": [201, 201, 201], {counts}}}"#));
        assert!(outcomes(&long, &blocks(2)).is_err());
        assert!(outcomes(&answer_at(1, "truncated"), &blocks(3)).is_ok());
        let mut misplaced = answer_at(1, "too_many");
        misplaced.stopped.as_mut().unwrap().at = 0;
        assert!(outcomes(&misplaced, &blocks(2)).is_err());
        let no_reason = answer(&format!(r#"{{"results": [507, 201], {counts}}}"#));
        let out = outcomes(&no_reason, &blocks(2)).unwrap();
        assert!(matches!(
            &out[0],
            Err(ClientError::Status { status, message, .. })
                if *status == StatusCode::INSUFFICIENT_STORAGE && message.contains("no reason")
        ));
    }
}
