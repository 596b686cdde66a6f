//! `POST /upload` (admin): files sent as `multipart/form-data`, as a browser's
//! `FormData` sends them, stored by the node as one bundle (`node::BundleUpload`).
//! Each `file` part's file name is its path in the bundle, percent-encoded (a browser
//! escapes quotes and line breaks in file names its own way; an encoded name has
//! neither). An optional `modified` part (milliseconds since the Unix epoch, as
//! `File.lastModified` gives) applies to the file part after it. The body streams
//! through: one chunk of one file is in memory at a time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header;
use hyper::http::request::Parts;
use multer::{Constraints, Multipart, SizeLimit};
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
        let constraints = Constraints::new()
            .allowed_fields(vec!["file", "modified"])
            .size_limit(
                SizeLimit::new()
                    .whole_stream(MAX_UPLOAD_BYTES)
                    .for_field("modified", MAX_MODIFIED_BYTES),
            );
        let mut multipart =
            Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
        let mut upload = self.node.begin_upload();
        let mut modified = None;
        while let Some(mut field) = idle(multipart.next_field()).await? {
            if field.name() == Some("modified") {
                let text = idle(field.text()).await?;
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
            while let Some(chunk) = idle(field.chunk()).await? {
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
        other => bad_upload(&format!("not a readable multipart body: {other}")),
    }
}

/// `File.lastModified`: milliseconds since the Unix epoch.
fn modified_of(text: &str) -> Result<SystemTime, ApiError> {
    let ms: u64 = text
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
