//! Response bodies: a whole buffer, or the decrypted pieces of a bundle file as a reader
//! task produces them. A streamed body knows its exact length up front (it is sent as
//! `Content-Length`); a reader failure mid-way ends the body with an error, which makes
//! hyper close the connection so the client sees a short, unusable answer, never a
//! silently wrong one.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::node::{NodeError, StreamGuard};

/// Response body type of the server.
pub type Body = Either<Full<Bytes>, FileBody>;

/// A bundle file (or a range of it), streamed.
pub struct FileBody {
    rx: mpsc::Receiver<Result<Bytes, NodeError>>,
    _reader: StreamGuard,
    remaining: u64,
}

impl FileBody {
    /// A body of exactly `len` bytes read from `rx`.
    pub fn new(
        rx: mpsc::Receiver<Result<Bytes, NodeError>>,
        reader: StreamGuard,
        len: u64,
    ) -> FileBody {
        FileBody {
            rx,
            _reader: reader,
            remaining: len,
        }
    }
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = NodeError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, NodeError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(piece))) => {
                self.remaining = self.remaining.saturating_sub(piece.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(piece))))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(error = %e, "file stream failed after the headers were sent");
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                let missing = self.remaining;
                tracing::warn!(missing, "file stream ended early");
                Poll::Ready(Some(Err(NodeError::Task(format!(
                    "file stream ended {missing} bytes early"
                )))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
