//! `POST /sha256/batch`: many blocks in one request body, framed as `proto` fixes
//! (`id | length | bytes`), stored with group commits and answered once, with one
//! result per frame. A client's body is stored as it arrives, a group of at most
//! `GROUP_BYTES` at a time, so a batch holds a few MiB whatever its size; a peer's push
//! is read whole first, because its signature covers the whole body's digest.
//!
//! Translation only: frames to blocks, `node::put_batch` results to statuses and codes
//! (through the one error mapping in `error.rs`).

use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header;
use hyper::http::request::Parts;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::handler::Handler;
use super::handler::Reply;
use super::peer::{Caller, holder_of, json_reply};
use crate::id::{BlockId, MAX_BLOCK_SIZE};
use crate::node::{BatchSender, NodeError};
use crate::proto::{
    BatchAnswer, BatchError, BatchStop, BatchStopped, Frame, FrameReader, KEEP_HEADER,
    MAX_BATCH_BLOCKS, MAX_BATCH_BODY, MAX_BATCH_BYTES, PIN_HEADER, PUSH_HEADER,
};
use crate::store::PutOutcome;

/// Block bytes a client's batch buffers before it stores them as one group: enough for
/// a group commit to cover hundreds of small blocks, little enough that a thousand
/// connections sending batches cannot hold gigabytes.
pub const GROUP_BYTES: usize = 4 * 1024 * 1024;

/// Longest a batch body may take, whatever its pace: a whole batch at `MIN_BODY_RATE`
/// takes about 35 minutes, so a slow link sends smaller batches.
pub const BATCH_READ_TIMEOUT: Duration = Duration::from_secs(120);

impl Handler {
    /// `POST /sha256/batch`.
    pub(super) async fn batch(
        &self,
        caller: &Caller,
        parts: &Parts,
        body: Incoming,
    ) -> Result<Reply, ApiError> {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BATCH_BODY) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "a batch is at most {MAX_BATCH_BLOCKS} blocks and {MAX_BATCH_BYTES} bytes of them"
                ),
            ));
        }
        let sender = self.batch_sender(caller, parts)?;
        let mut answer = Answer::default();
        let mut frames = FrameReader::new();
        let mut paced = self.paced(body, MAX_BATCH_BODY as usize, BATCH_READ_TIMEOUT);
        let mut group = Vec::new();
        let mut group_bytes = 0;
        let mut digest = Sha256::new();
        let whole = matches!(sender, BatchSender::Peer { .. });
        let stop = loop {
            let piece = match paced.next().await {
                Ok(Some(piece)) => piece,
                Ok(None) => break frames.finish(),
                Err(e) if answer.read() == 0 && group.is_empty() => return Err(e),
                Err(e) => {
                    // The body broke off: what came whole from a client is stored (a
                    // push is not: its digest cannot be checked), but nobody may be
                    // left to read the answer.
                    if !whole {
                        self.store_group(&mut answer, std::mem::take(&mut group), &sender)
                            .await;
                    }
                    return Err(e);
                }
            };
            if whole {
                digest.update(&piece);
            }
            frames.push(&piece);
            let stopped = loop {
                match frames.next_frame() {
                    Frame::Block(id, bytes) => {
                        group_bytes += bytes.len();
                        group.push((id, bytes));
                    }
                    Frame::NeedMore => break None,
                    Frame::Stop(stop) => break Some(stop),
                }
            };
            if stopped.is_some() {
                break stopped;
            }
            if !whole && group_bytes >= GROUP_BYTES {
                group_bytes = 0;
                self.store_group(&mut answer, std::mem::take(&mut group), &sender)
                    .await;
            }
        };
        if whole {
            let named = parts
                .headers
                .get("content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(crate::identity::parse_digest_header);
            if stop.is_some() || named != Some(<[u8; 32]>::from(digest.finalize())) {
                return Err(NodeError::PeerAuth(
                    "a pushed batch must be whole and match its Content-Digest".into(),
                )
                .into());
            }
        }
        self.store_group(&mut answer, group, &sender).await;
        answer.stopped = stop.map(|error| BatchStopped {
            at: answer.read(),
            error,
            message: stop_message(error),
        });
        json_reply(StatusCode::OK, &answer.finish())
    }

    /// How the batch's blocks are admitted: a signed peer's push (`Libernet-Push`), or a
    /// client's upload, pinned for `Libernet-Pin`'s holder (admin only).
    fn batch_sender(&self, caller: &Caller, parts: &Parts) -> Result<BatchSender, ApiError> {
        let text = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let push = text(PUSH_HEADER).and_then(|v| v.trim().parse::<f32>().ok());
        let keep_until = text(KEEP_HEADER).and_then(|v| v.trim().parse::<u64>().ok());
        let pin = match parts.headers.get(PIN_HEADER) {
            Some(value) => {
                self.require_admin(parts)?;
                Some(holder_of(value.to_str().unwrap_or(""))?)
            }
            None => None,
        };
        Ok(match (caller.peer(), push, pin) {
            (Some(from), Some(hint), None) => BatchSender::Peer {
                from,
                hint,
                keep_until,
            },
            (_, _, pin) => BatchSender::Client { pin },
        })
    }

    /// Stores one group of frames and adds their results to `answer`.
    async fn store_group(
        &self,
        answer: &mut Answer,
        group: Vec<(BlockId, Bytes)>,
        sender: &BatchSender,
    ) {
        if group.is_empty() {
            return;
        }
        for result in self.node.put_batch(group, sender.clone()).await {
            answer.add(result);
        }
    }
}

/// A batch's answer as its groups are stored.
#[derive(Default)]
struct Answer {
    inner: BatchAnswer,
    stopped: Option<BatchStopped>,
}

impl Answer {
    /// Frames answered so far.
    fn read(&self) -> usize {
        self.inner.results.len()
    }

    /// Adds the next frame's result.
    fn add(&mut self, result: Result<PutOutcome, NodeError>) {
        let status = match result {
            Ok(PutOutcome::Stored) => {
                self.inner.stored += 1;
                StatusCode::CREATED
            }
            Ok(PutOutcome::AlreadyHeld) => {
                self.inner.held += 1;
                StatusCode::OK
            }
            Err(e) => {
                let e = ApiError::from(e);
                self.inner.failed += 1;
                self.inner.errors.insert(
                    self.read().to_string(),
                    BatchError {
                        error: e.code.to_owned(),
                        message: e.message,
                    },
                );
                e.status
            }
        };
        self.inner.results.push(status.as_u16());
    }

    fn finish(mut self) -> BatchAnswer {
        self.inner.stopped = self.stopped;
        self.inner
    }
}

/// What a stop means, for people.
fn stop_message(stop: BatchStop) -> String {
    match stop {
        BatchStop::Truncated => "the body ended inside a frame; that frame was not stored".into(),
        BatchStop::TooLarge => {
            format!("a frame is over {MAX_BLOCK_SIZE} bytes; reading stopped there")
        }
        BatchStop::TooMany => format!(
            "a batch is at most {MAX_BATCH_BLOCKS} frames and {MAX_BATCH_BYTES} bytes of blocks; reading stopped there"
        ),
    }
}
