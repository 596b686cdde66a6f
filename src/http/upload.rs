//! `POST /upload` (admin): files sent as `multipart/form-data`, as a browser's
//! `FormData` sends them, stored by the node as one bundle (`node::BundleUpload`).
//! Each `file` part's file name is its path in the bundle, percent-encoded (a browser
//! escapes quotes and line breaks in file names its own way; an encoded name has
//! neither). An optional `modified` part (milliseconds since the Unix epoch, as
//! `File.lastModified` gives) applies to the file part after it. The body streams
//! through: one chunk of one file is in memory at a time, plus what the parser holds,
//! which `Paced` keeps to about one read from the socket.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_core::Stream;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header;
use hyper::http::request::Parts;
use multer::{Constraints, Field, Multipart, SizeLimit};
use percent_encoding::percent_decode_str;

use super::error::ApiError;
use super::handler::{BODY_READ_TIMEOUT, Handler, Reply};
use super::peer::json_reply;

/// Most bytes one upload may send: more is a job for the CLI, which resumes.
pub const MAX_UPLOAD_BYTES: u64 = 16 << 30;

/// Most bytes of a `modified` part (a number).
const MAX_MODIFIED_BYTES: u64 = 32;

/// Longest wait for the next piece of an upload's body.
const UPLOAD_IDLE_TIMEOUT: Duration = BODY_READ_TIMEOUT;

/// Most bytes the parser may be fed while it hands nothing over (a part's headers, the
/// preamble before the first boundary). multer buffers those whole until it finds their
/// end, so a part whose headers never end grew its buffer with all that was sent
/// (measured: 16 to 221 MB for 200 MB sent). A browser's part headers are a few hundred
/// bytes; the parser holds at most this plus one piece of the body.
const MAX_PART_HEAD_BYTES: u64 = 16 * 1024;

/// Longest multipart boundary (RFC 2046 section 5.1.1): the parser holds back up to a
/// boundary's length of a part's data, so a longer one is refused up front.
const MAX_BOUNDARY_LEN: usize = 70;

impl Handler {
    /// Stores the files of a `multipart/form-data` body as a bundle; `201` with its URL.
    pub(super) async fn upload(&self, parts: &Parts, body: Incoming) -> Result<Reply, ApiError> {
        self.require_admin(parts)?;
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let boundary = multer::parse_boundary(content_type).map_err(|_| {
            bad_upload("send the files as Content-Type: multipart/form-data; boundary=...")
        })?;
        if boundary.len() > MAX_BOUNDARY_LEN {
            return Err(bad_upload(&format!(
                "a multipart boundary is at most {MAX_BOUNDARY_LEN} characters"
            )));
        }
        let constraints = Constraints::new()
            .allowed_fields(vec!["file", "modified"])
            .size_limit(
                SizeLimit::new()
                    .whole_stream(MAX_UPLOAD_BYTES)
                    .for_field("modified", MAX_MODIFIED_BYTES),
            );
        let mut parts = PacedParts::new(body.into_data_stream(), boundary, constraints);
        let mut upload = self.node.begin_upload();
        let mut modified = None;
        while let Some(mut field) = idle(parts.next_field()).await? {
            if field.name() == Some("modified") {
                let mut text = Vec::new();
                while let Some(chunk) = idle(parts.chunk(&mut field)).await? {
                    text.extend_from_slice(&chunk);
                }
                modified = Some(modified_of(&text)?);
                continue;
            }
            let name = field
                .file_name()
                .ok_or_else(|| bad_upload("a file part without a file name"))?;
            let path = percent_decode_str(name)
                .decode_utf8()
                .map_err(|_| bad_upload("a file name that is not percent-encoded UTF-8"))?;
            upload.begin_file(&path, modified.take()).await?;
            while let Some(chunk) = idle(parts.chunk(&mut field)).await? {
                upload.write(&chunk).await?;
            }
        }
        let uploaded = upload.finish().await?;
        tracing::info!(
            url = %super::handler::redact_key(&uploaded.url),
            files = uploaded.files,
            bytes = uploaded.bytes,
            "upload stored"
        );
        json_reply(StatusCode::CREATED, &uploaded)
    }
}

/// A multipart body read through `Paced`. Fields and chunks are taken only through
/// these methods, which count each as progress (multer's `text()` and friends would
/// take pieces uncounted, and `Paced` would read ahead again).
struct PacedParts<'r> {
    multipart: Multipart<'r>,
    progress: Arc<AtomicU64>,
}

impl<'r> PacedParts<'r> {
    fn new<S, E>(body: S, boundary: String, constraints: Constraints) -> PacedParts<'r>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'r,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'r,
    {
        let progress = Arc::new(AtomicU64::new(0));
        let body = Paced::new(body, progress.clone());
        PacedParts {
            multipart: Multipart::with_constraints(body, boundary, constraints),
            progress,
        }
    }

    /// The next part, if any.
    async fn next_field(&mut self) -> Result<Option<Field<'r>>, multer::Error> {
        let field = self.multipart.next_field().await?;
        self.progress.fetch_add(1, Ordering::Relaxed);
        Ok(field)
    }

    /// The next piece of `field`'s content, if any.
    async fn chunk(&self, field: &mut Field<'r>) -> Result<Option<Bytes>, multer::Error> {
        let chunk = field.chunk().await?;
        self.progress.fetch_add(1, Ordering::Relaxed);
        Ok(chunk)
    }
}

/// The request body as the multipart parser reads it, one piece at a time and only when
/// the parser cannot go on with what it holds.
///
/// multer's buffer takes everything its stream has ready each time it is polled. Read
/// straight from the socket, that is whatever arrived meanwhile: a client sending many
/// small files faster than the node stores them (a block and an fsync each) filled it
/// without bound (measured: 114 MiB over the start for 98 MiB of small files). Paced
/// hands over one piece, then answers `Pending` (and wakes the task at once) so the
/// parser works from its buffer; it hands over the next piece only when the parser
/// has handed nothing to the handler since (`progress` unchanged): it is starved. Until
/// then the socket is not read, and TCP slows the client.
///
/// It also counts the bytes handed over since the parser last handed anything on: past
/// `MAX_PART_HEAD_BYTES` the parser is buffering something that never ends (a part's
/// headers, a preamble), and the body fails with `PacedError::PartHeadTooLong`.
struct Paced<S> {
    inner: S,
    /// Items (fields, chunks) the handler has taken from the parser.
    progress: Arc<AtomicU64>,
    /// `progress` when this last refused.
    seen: u64,
    /// A piece was handed over by the last poll.
    just_gave: bool,
    /// `progress` when `fed` was last reset.
    fed_since: u64,
    /// Bytes handed over while `progress` stayed at `fed_since`.
    fed: u64,
}

/// Why `Paced` ended the body.
#[derive(Debug, thiserror::Error)]
enum PacedError {
    /// The request body failed (the client went away, bad framing).
    #[error("the body could not be read: {0}")]
    Body(Box<dyn std::error::Error + Send + Sync>),
    /// More than `MAX_PART_HEAD_BYTES` went to the parser with nothing handed on.
    #[error("part headers over {MAX_PART_HEAD_BYTES} bytes")]
    PartHeadTooLong,
}

impl<S> Paced<S> {
    fn new(inner: S, progress: Arc<AtomicU64>) -> Paced<S> {
        Paced {
            inner,
            progress,
            seen: 0,
            just_gave: false,
            fed_since: 0,
            fed: 0,
        }
    }
}

impl<S, E> Stream for Paced<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = Result<Bytes, PacedError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let progress = this.progress.load(Ordering::Relaxed);
        if this.just_gave || progress != this.seen {
            // Let the parser try what it holds. If that is not enough it polls again
            // after this wake, with `progress` unchanged, and gets the next piece.
            this.just_gave = false;
            this.seen = progress;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if progress != this.fed_since {
            this.fed_since = progress;
            this.fed = 0;
        }
        if this.fed > MAX_PART_HEAD_BYTES {
            return Poll::Ready(Some(Err(PacedError::PartHeadTooLong)));
        }
        let next = Pin::new(&mut this.inner).poll_next(cx);
        this.just_gave = matches!(next, Poll::Ready(Some(_)));
        if let Poll::Ready(Some(Ok(piece))) = &next {
            this.fed += piece.len() as u64;
        }
        next.map(|item| item.map(|r| r.map_err(|e| PacedError::Body(e.into()))))
    }
}

/// Awaits the next piece of the body, within `UPLOAD_IDLE_TIMEOUT`.
async fn idle<T>(next: impl Future<Output = Result<T, multer::Error>>) -> Result<T, ApiError> {
    match tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, next).await {
        Ok(result) => result.map_err(multipart_error),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the upload sent nothing for {} s",
                UPLOAD_IDLE_TIMEOUT.as_secs()
            ),
        )),
    }
}

fn multipart_error(e: multer::Error) -> ApiError {
    match e {
        multer::Error::StreamSizeExceeded { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("an upload is at most {MAX_UPLOAD_BYTES} bytes; use the CLI for more"),
        ),
        multer::Error::UnknownField { field_name } => bad_upload(&format!(
            "unknown part {:?}: the parts are `file` and `modified`",
            field_name.unwrap_or_default()
        )),
        multer::Error::StreamReadFailed(e)
            if matches!(e.downcast_ref(), Some(PacedError::PartHeadTooLong)) =>
        {
            bad_upload(&format!(
                "a part's headers are at most {MAX_PART_HEAD_BYTES} bytes"
            ))
        }
        other => bad_upload(&format!("not a readable multipart body: {other}")),
    }
}

/// `File.lastModified`: milliseconds since the Unix epoch.
fn modified_of(text: &[u8]) -> Result<SystemTime, ApiError> {
    let ms: u64 = std::str::from_utf8(text)
        .unwrap_or("")
        .trim()
        .parse()
        .map_err(|_| bad_upload("modified is milliseconds since 1970, a whole number"))?;
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .ok_or_else(|| bad_upload("modified is out of range"))
}

fn bad_upload(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_upload", message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A body whose pieces are all ready at once, as a fast client's on loopback; it
    /// counts the bytes taken from it.
    struct Ready {
        pieces: VecDeque<Bytes>,
        taken: Arc<AtomicU64>,
    }

    impl Stream for Ready {
        type Item = Result<Bytes, std::convert::Infallible>;

        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let this = self.get_mut();
            let piece = this.pieces.pop_front();
            if let Some(p) = &piece {
                this.taken.fetch_add(p.len() as u64, Ordering::Relaxed);
            }
            Poll::Ready(piece.map(Ok))
        }
    }

    #[tokio::test]
    async fn the_parser_reads_about_one_piece_ahead_of_the_handler() {
        const FILES: usize = 400;
        const PIECE: usize = 8 * 1024;
        let boundary = "b0undary";
        let mut body = Vec::new();
        let mut starts = Vec::new();
        for i in 0..FILES {
            starts.push(body.len() as u64);
            let part =
                |headers: &str| format!("--{boundary}\r\nContent-Disposition: {headers}\r\n\r\n");
            body.extend_from_slice(part("form-data; name=\"modified\"").as_bytes());
            body.extend_from_slice(b"1700000000000\r\n");
            body.extend_from_slice(
                part(&format!("form-data; name=\"file\"; filename=\"f{i}\"")).as_bytes(),
            );
            body.extend_from_slice(&[b'x'; 1000]);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let taken = Arc::new(AtomicU64::new(0));
        let ready = Ready {
            pieces: body.chunks(PIECE).map(Bytes::copy_from_slice).collect(),
            taken: taken.clone(),
        };
        let mut parts = PacedParts::new(ready, boundary.to_owned(), Constraints::new());
        let mut ahead = Vec::new();
        let mut files = 0;
        while let Some(mut field) = parts.next_field().await.unwrap() {
            let modified = field.name() == Some("modified");
            if !modified {
                // The parser has read at least to this file's part: how much more?
                ahead.push(taken.load(Ordering::Relaxed) - starts[files]);
            }
            let mut size = 0;
            while let Some(chunk) = parts.chunk(&mut field).await.unwrap() {
                size += chunk.len();
            }
            if !modified {
                assert_eq!(size, 1000);
                files += 1;
            }
        }
        assert_eq!(files, FILES);
        let most = ahead.iter().copied().max().unwrap_or(0);
        assert!(
            most <= 2 * PIECE as u64,
            "the parser read {most} bytes past the part it handed over"
        );
    }

    /// Feeds `body` in `piece`-byte pieces to the first `next_field`; the error and the
    /// bytes the parser took.
    async fn first_field_error(body: Vec<u8>, piece: usize) -> (ApiError, u64) {
        let taken = Arc::new(AtomicU64::new(0));
        let ready = Ready {
            pieces: body.chunks(piece).map(Bytes::copy_from_slice).collect(),
            taken: taken.clone(),
        };
        let mut parts = PacedParts::new(ready, "b0undary".to_owned(), Constraints::new());
        let error = match parts.next_field().await {
            Ok(_) => panic!("a part whose headers never end was handed over"),
            Err(e) => multipart_error(e),
        };
        (error, taken.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn part_headers_that_never_end_are_refused_early() {
        const PIECE: usize = 8 * 1024;
        let mut endless_headers = b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nX-Pad: ".to_vec();
        endless_headers.resize(4 << 20, b'a');
        // No boundary at all: the preamble never ends either.
        let endless_preamble = vec![b'a'; 4 << 20];
        for (what, body) in [("headers", endless_headers), ("preamble", endless_preamble)] {
            let (error, taken) = first_field_error(body, PIECE).await;
            assert_eq!(
                (error.status, error.code),
                (StatusCode::BAD_REQUEST, "bad_upload"),
                "{what}: {}",
                error.message
            );
            assert!(
                taken <= MAX_PART_HEAD_BYTES + 2 * PIECE as u64,
                "{what}: the parser took {taken} bytes"
            );
        }
    }
}
