//! The browsing routes: `/sha256/{id}/{mode}/{key}[/{path}]` on the node's origin (the
//! path form) and every path of a bundle's own origin (`origin.rs`): decrypted single
//! blocks, files of bundles (streamed, with `Range` across blocks), redirects to the
//! trailing-slash form of directories, `index.html`, `404.html`, and listings in HTML or
//! JSON. Translation only: opening, verifying and reading are `node`'s.
//!
//! In the path form, decrypted pages share the node's origin, so every content answer
//! carries `Content-Security-Policy: sandbox ...` without `allow-same-origin`: a
//! bundle's scripts run, but in an opaque origin that cannot read the node's other
//! pages' storage or act with their credentials. `Access-Control-Allow-Origin: *` (on
//! every answer of the node, errors included) keeps module scripts and `fetch` of the
//! bundle's own files working from that opaque origin (the content is readable by
//! anyone holding its URL anyway). A browser opening a bundle's path URL through a name
//! bundle origins sit under (`localhost`, a loopback address, the node's domain) is
//! sent to the bundle's own origin instead (`307`).
//!
//! On its own origin a bundle is not sandboxed: it has what any site has (scripts,
//! `localStorage`, cookies), and the browser keeps them apart from every other
//! bundle's, since each has its own origin, and from the dashboard's.
//! `Referrer-Policy: same-origin` keeps that origin, which holds the key, out of the
//! `Referer` the site's links and resources would send elsewhere.

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::request::Parts;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};
use std::time::Duration;

use super::error::ApiError;
use super::handler::{
    Handler, IMMUTABLE, REPR_DIGEST, Reply, digest_value, header_value, if_none_match,
    if_range_allows, wait_param,
};
use super::origin::{Gateway, Site, is_navigation, is_proxied};
use super::range::{self, ByteRange};
use super::route::{Route, RouteError};
use crate::bundle::{FileEntry, ListEntry, Lookup, MAX_PATH_BYTES, Outline, time_of};
use crate::codec::{Locator, Mode};
use crate::node::Opened;

/// What may stay unescaped in a path segment of a listing link.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The sandbox every decrypted answer runs in (see the module doc).
const SANDBOX: &str = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

/// The file at a bundle's root answered, with status 404, for paths it does not have.
pub const NOT_FOUND_PAGE: &str = "404.html";

/// Where a bundle is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// `/sha256/<id>/<mode>/<key>/...` on the node's origin: sandboxed.
    Path,
    /// Any path of `<id>.<key>.<gateway>`: the bundle's own origin.
    Origin,
}

/// Files of one block or less are read whole; larger ones are streamed.
const STREAM_ABOVE_CHUNKS: usize = 1;

/// Entries in one page of a listing; a larger directory is listed in pages linked by
/// `?after=` (the JSON's `next`, the HTML's "Next page"). An HTML page of this many
/// ordinary entries is about 200 KB.
pub const LISTING_PAGE: usize = 1000;

/// A page also ends once its names and link targets reach this many bytes, so long
/// names cannot make a page large (HTML escaping multiplies them by 6 at most).
pub const LISTING_PAGE_BYTES: usize = 256 << 10;

impl Handler {
    /// Answers a browsing route in either form.
    pub(super) async fn content(
        &self,
        locator: Locator,
        rest: Option<&str>,
        parts: &Parts,
        form: Form,
    ) -> Result<Reply, ApiError> {
        let wait = wait_param(parts.uri.query(), self.default_wait)?;
        let json = wants_json(&parts.headers);
        let tag = content_tag(&locator.id, json);
        let gateway = self.origin_for(form, &locator, parts);
        if gateway.is_none() && if_none_match(&parts.headers, &tag) {
            let mut reply = Reply::new(StatusCode::NOT_MODIFIED, "", Bytes::new());
            reply.headers.remove(header::CONTENT_TYPE);
            immutable(&mut reply.headers, &tag);
            return Ok(reply);
        }
        if let Some(reply) = self.to_other_origin(form, rest, parts) {
            return Ok(reply);
        }
        let opened = self.node.open_content(&locator, wait).await?;
        let mut reply = match (opened, rest, gateway) {
            (Opened::Bundle(_), _, Some(gateway)) => to_origin(gateway, &locator, rest, parts),
            (Opened::Data(bytes), None, _) => self.data(bytes, parts, &tag)?,
            // A single block's own origin shows it at its root.
            (Opened::Data(bytes), Some(""), _) if form == Form::Origin => {
                self.data(bytes, parts, &tag)?
            }
            (Opened::Data(_), Some(_), _) => {
                return Err(not_in_bundle("this content is not a bundle"));
            }
            (Opened::Bundle(_), None, None) => redirect(parts, "/")?,
            (Opened::Bundle(outline), Some(path), None) => {
                let query = parts.uri.query();
                let view = View {
                    json,
                    listing: asks_listing(query),
                    after: query_param(query, "after"),
                };
                self.in_bundle(&outline, path, parts, view, &tag, wait)
                    .await?
            }
        };
        match form {
            Form::Path => {
                reply.headers.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(SANDBOX),
                );
                // A browser opening the same URL would have been redirected: a cache
                // must not answer its navigation with this.
                if locator.mode == Mode::Aes256 && reply.headers.contains_key(header::VARY) {
                    reply.headers.insert(
                        header::VARY,
                        HeaderValue::from_static("Accept, Sec-Fetch-Mode"),
                    );
                }
            }
            Form::Origin => {
                reply.headers.insert(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("same-origin"),
                );
            }
        }
        Ok(reply)
    }

    /// The gateway to send a path URL's bundle to its own origin under, when the
    /// request allows it: a browser opening a page (`is_navigation`: scripts, `curl` and
    /// the CLI never are) of an `aes256` URL, through a Host that is a gateway itself,
    /// and, for a loopback one, not through a proxy (the browser could be anywhere and
    /// its `localhost` is not this node).
    fn origin_for(&self, form: Form, locator: &Locator, parts: &Parts) -> Option<Gateway<'_>> {
        if form != Form::Path || locator.mode != Mode::Aes256 || !is_navigation(&parts.headers) {
            return None;
        }
        match self.origins.site(parts) {
            Site::Node {
                gateway: Some(gateway),
            } if !(gateway.loopback && is_proxied(&parts.headers)) => Some(gateway),
            _ => None,
        }
    }

    /// On a bundle's origin, a path that is a path URL of the node
    /// (`/sha256/<id>/aes256/<key>/...`, as sites written for the path form link other
    /// bundles) is a redirect to that bundle's own origin under the same gateway.
    fn to_other_origin(&self, form: Form, rest: Option<&str>, parts: &Parts) -> Option<Reply> {
        if form != Form::Origin {
            return None;
        }
        let path = parts.uri.path();
        let (Some(_), Ok(Route::Content { locator, rest })) =
            (rest, Route::parse(&hyper::Method::GET, path))
        else {
            return None;
        };
        if locator.mode != Mode::Aes256 {
            return None;
        }
        let gateway = self.origins.parent(parts)?;
        let mut reply = to_origin(gateway, &locator, rest, parts);
        reply.headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        Some(reply)
    }

    /// A decrypted single block (no name, so no type beyond octet-stream).
    fn data(&self, bytes: Bytes, parts: &Parts, tag: &str) -> Result<Reply, ApiError> {
        let repr: [u8; 32] = Sha256::digest(&bytes).into();
        let len = bytes.len() as u64;
        let range = requested_range(&parts.headers, tag, len);
        let mut reply = match range {
            ByteRange::Whole => {
                let mut r = Reply::new(StatusCode::OK, "application/octet-stream", bytes);
                r.digest = Some(repr);
                r
            }
            ByteRange::Part { start, end } => {
                let part = bytes.slice(start as usize..=end as usize);
                let mut r = Reply::new(
                    StatusCode::PARTIAL_CONTENT,
                    "application/octet-stream",
                    part,
                );
                content_range(&mut r.headers, start, end, len);
                r
            }
            ByteRange::Unsatisfiable => return Ok(Reply::unsatisfiable(len)),
        };
        immutable(&mut reply.headers, tag);
        reply
            .headers
            .insert(REPR_DIGEST.clone(), digest_value(&repr));
        Ok(reply)
    }

    /// A path inside a bundle: a file, a directory (index.html or listing), a redirect.
    async fn in_bundle(
        &self,
        outline: &Outline,
        raw: &str,
        parts: &Parts,
        view: View<'_>,
        tag: &str,
        wait: Duration,
    ) -> Result<Reply, ApiError> {
        let Ok(decoded) = percent_decode_str(raw).decode_utf8() else {
            return self
                .missing(outline, "the path is not UTF-8", parts, tag, wait)
                .await;
        };
        if decoded.len() > MAX_PATH_BYTES {
            return Err(RouteError::PathTooLong.into());
        }
        let dir_form = decoded.is_empty() || decoded.ends_with('/');
        let path = decoded.trim_end_matches('/');
        let loader = self.node.parts(wait);
        match outline.lookup(path, &loader).await? {
            Lookup::File(name, file) if !dir_form => {
                self.file(&name, &file, parts, tag, wait, true).await
            }
            Lookup::File(..) => {
                self.missing(outline, "a file, not a directory", parts, tag, wait)
                    .await
            }
            Lookup::Directory(_) if !dir_form => redirect(parts, "/"),
            Lookup::Directory(dir) if view.listing => {
                listing(outline, &loader, &dir, parts, &view, tag).await
            }
            Lookup::Directory(dir) => {
                let index = if dir.is_empty() {
                    "index.html".to_owned()
                } else {
                    format!("{dir}/index.html")
                };
                match outline.lookup(&index, &loader).await? {
                    Lookup::File(name, file) => {
                        self.file(&name, &file, parts, tag, wait, true).await
                    }
                    _ => listing(outline, &loader, &dir, parts, &view, tag).await,
                }
            }
            Lookup::NotFound => {
                self.missing(outline, "no such file in the bundle", parts, tag, wait)
                    .await
            }
        }
    }

    /// A path the bundle does not have: its root's `404.html`, with status 404 and
    /// without the content's entity tag or ranges, when it has one; else the error
    /// (`why`). Blocks of `404.html` that cannot be found are that error instead (504).
    async fn missing(
        &self,
        outline: &Outline,
        why: &str,
        parts: &Parts,
        tag: &str,
        wait: Duration,
    ) -> Result<Reply, ApiError> {
        let loader = self.node.parts(wait);
        let Lookup::File(name, file) = outline.lookup(NOT_FOUND_PAGE, &loader).await? else {
            return Err(not_in_bundle(why));
        };
        let mut reply = self.file(&name, &file, parts, tag, wait, false).await?;
        reply.status = StatusCode::NOT_FOUND;
        let h = &mut reply.headers;
        h.remove(header::ETAG);
        h.remove(header::ACCEPT_RANGES);
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(reply)
    }

    /// A file of a bundle, whole or (when `ranged`) the range asked for, read whole when
    /// small and streamed when not.
    async fn file(
        &self,
        name: &str,
        file: &FileEntry,
        parts: &Parts,
        tag: &str,
        wait: Duration,
        ranged: bool,
    ) -> Result<Reply, ApiError> {
        let len = file.size;
        let range = if ranged {
            requested_range(&parts.headers, tag, len)
        } else {
            ByteRange::Whole
        };
        let (status, start, end) = match range {
            ByteRange::Whole => (StatusCode::OK, 0, len.saturating_sub(1)),
            ByteRange::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
            ByteRange::Unsatisfiable => return Ok(Reply::unsatisfiable(len)),
        };
        let mut reply = Reply::new(status, "application/octet-stream", Bytes::new());
        let small = file.contents.len() <= STREAM_ABOVE_CHUNKS;
        if len == 0 {
            let empty: [u8; 32] = Sha256::digest([]).into();
            reply.digest = Some(empty);
            reply
                .headers
                .insert(REPR_DIGEST.clone(), digest_value(&empty));
        } else if small {
            let mut whole = Vec::with_capacity(len as usize);
            let mut stream = self.node.read_file(file, 0, len - 1, wait);
            while let Some(piece) = stream.next().await {
                whole.extend_from_slice(&piece?);
            }
            let whole = Bytes::from(whole);
            let repr: [u8; 32] = Sha256::digest(&whole).into();
            reply
                .headers
                .insert(REPR_DIGEST.clone(), digest_value(&repr));
            if status == StatusCode::OK {
                reply.digest = Some(repr);
            }
            reply.body = whole.slice(start as usize..=end as usize);
        } else {
            let repr = self.node.file_digest(file, 0, len - 1, wait).await?;
            reply
                .headers
                .insert(REPR_DIGEST.clone(), digest_value(&repr));
            reply.digest = Some(if status == StatusCode::OK {
                repr
            } else {
                self.node.file_digest(file, start, end, wait).await?
            });
            reply.length = Some(end - start + 1);
            if parts.method != hyper::Method::HEAD {
                reply.stream = Some(self.node.read_file(file, start, end, wait));
            }
        }
        if status == StatusCode::PARTIAL_CONTENT {
            content_range(&mut reply.headers, start, end, len);
        }
        reply
            .headers
            .insert(header::CONTENT_TYPE, content_type(name));
        immutable(&mut reply.headers, tag);
        Ok(reply)
    }
}

/// The `Range` to honour: none when `If-Range` names another tag.
fn requested_range(headers: &HeaderMap, tag: &str, len: u64) -> ByteRange {
    if !if_range_allows(headers, tag) {
        return ByteRange::Whole;
    }
    range::parse(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    )
}

fn content_range(headers: &mut HeaderMap, start: u64, end: u64, len: u64) {
    headers.insert(
        header::CONTENT_RANGE,
        header_value(&format!("bytes {start}-{end}/{len}")),
    );
}

/// Caching headers of immutable content.
fn immutable(headers: &mut HeaderMap, tag: &str) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::ETAG, header_value(tag));
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// How a directory is answered.
#[derive(Debug, Clone)]
struct View<'a> {
    /// A listing is JSON (`Accept: application/json`), else HTML.
    json: bool,
    /// `?listing`: the listing even when the directory has an `index.html` (the
    /// dashboard lists websites too).
    listing: bool,
    /// `?after=`: the page of the listing after this cursor (percent-decoded).
    after: Option<std::borrow::Cow<'a, str>>,
}

/// True when the query has a `listing` parameter.
fn asks_listing(query: Option<&str>) -> bool {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .any(|pair| pair == "listing" || pair.starts_with("listing="))
}

/// The percent-decoded value of parameter `name` in the query (`+` is a space), if it
/// is there and UTF-8.
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    let value = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    if value.contains('+') {
        let spaced = value.replace('+', " ");
        return percent_decode_str(&spaced)
            .decode_utf8()
            .ok()
            .map(|v| std::borrow::Cow::Owned(v.into_owned()));
    }
    percent_decode_str(value).decode_utf8().ok()
}

/// The query of the next page: this one's parameters but `after`, then `after=next`.
fn next_query(query: Option<&str>, next: &str) -> String {
    let mut out = String::from("?");
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() || pair == "after" || pair.starts_with("after=") {
            continue;
        }
        out.push_str(pair);
        out.push('&');
    }
    out.push_str("after=");
    out.extend(utf8_percent_encode(next, SEGMENT));
    out
}

/// The entity tag of decrypted content: `"<id>"` (DESIGN 3), the id in its URL; the URL
/// names immutable content, so the tag never needs to change. A JSON listing shares its
/// URL with the HTML one (`Vary: Accept`), so it gets `"<id>-json"`.
fn content_tag(id: &crate::id::BlockId, json: bool) -> String {
    if json {
        format!("\"{id}-json\"")
    } else {
        format!("\"{id}\"")
    }
}

/// True when `Accept` names `application/json`.
pub(super) fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"))
}

/// `Content-Type` from a file name; text gets `charset=utf-8`.
fn content_type(name: &str) -> HeaderValue {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let text = mime.type_() == mime_guess::mime::TEXT
        || mime.subtype() == mime_guess::mime::JAVASCRIPT
        || mime.subtype() == mime_guess::mime::JSON;
    if text && mime.get_param(mime_guess::mime::CHARSET).is_none() {
        header_value(&format!("{mime}; charset=utf-8"))
    } else {
        header_value(mime.as_ref())
    }
}

/// A 301 to the same path with `suffix` appended (the query kept).
fn redirect(parts: &Parts, suffix: &str) -> Result<Reply, ApiError> {
    let mut location = format!("{}{suffix}", parts.uri.path());
    if let Some(q) = parts.uri.query() {
        location.push('?');
        location.push_str(q);
    }
    let body = serde_json::json!({ "location": location }).to_string();
    let mut reply = Reply::json(StatusCode::MOVED_PERMANENTLY, body);
    reply
        .headers
        .insert(header::LOCATION, header_value(&location));
    reply
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    Ok(reply)
}

/// A temporary redirect (`307`: it depends on the Host and the node's settings, so no
/// cache keeps it) from a path URL to the same path on its bundle's own origin, the
/// query kept; the `Location` is scheme-relative and built only from parsed parts
/// (`Gateway::location`).
fn to_origin(gateway: Gateway<'_>, locator: &Locator, rest: Option<&str>, parts: &Parts) -> Reply {
    let path = format!("/{}", rest.unwrap_or(""));
    let location = gateway.location(locator, &path, parts.uri.query());
    let body = serde_json::json!({ "location": location }).to_string();
    let mut reply = Reply::json(StatusCode::TEMPORARY_REDIRECT, body);
    reply
        .headers
        .insert(header::LOCATION, header_value(&location));
    reply
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

fn not_in_bundle(why: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_in_bundle", why)
}

/// One page of a directory listing (`LISTING_PAGE` entries at most): JSON
/// `{"path", "entries": [...], "next"?}` or an HTML page of links with a "Next page"
/// link. `next` is a relative reference (`?...&after=...`) to the following page.
async fn listing(
    outline: &Outline,
    loader: &crate::node::Parts,
    dir: &str,
    parts: &Parts,
    view: &View<'_>,
    tag: &str,
) -> Result<Reply, ApiError> {
    let after = view.after.as_deref();
    let page = outline
        .list_page(dir, after, LISTING_PAGE, LISTING_PAGE_BYTES, loader)
        .await?;
    let next = page
        .next
        .as_deref()
        .map(|n| next_query(parts.uri.query(), n));
    let shown = if dir.is_empty() {
        "/".to_owned()
    } else {
        format!("/{dir}/")
    };
    let mut reply = if view.json {
        let mut body = serde_json::json!({ "path": shown, "entries": page.entries });
        if let (Some(next), serde_json::Value::Object(map)) = (&next, &mut body) {
            map.insert("next".into(), next.clone().into());
        }
        Reply::new(StatusCode::OK, "application/json", body.to_string())
    } else {
        Reply::new(
            StatusCode::OK,
            "text/html; charset=utf-8",
            listing_html(&shown, &page.entries, next.as_deref()),
        )
    };
    immutable(&mut reply.headers, tag);
    Ok(reply)
}

fn listing_html(shown: &str, entries: &[ListEntry], next: Option<&str>) -> String {
    use std::fmt::Write;
    let title = escape_html(&format!("Index of {shown}"));
    let mut html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2rem}}\
         td{{padding:.2rem 1rem .2rem 0}}td.n{{text-align:right}}</style></head>\
         <body><h1>{title}</h1><table>\
         <thead><tr><th>Name</th><th>Size</th><th>Modified</th></tr></thead><tbody>\n"
    );
    if shown != "/" {
        html.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in entries {
        let slash = if e.kind == "dir" { "/" } else { "" };
        let href = format!("{}{slash}", utf8_percent_encode(&e.name, SEGMENT));
        let label = escape_html(&format!("{}{slash}", e.name));
        let size = e.size.map(|s| s.to_string()).unwrap_or_default();
        let modified = e
            .modified
            .map(|m| httpdate::fmt_http_date(time_of(m)))
            .unwrap_or_default();
        let arrow = e
            .link
            .as_deref()
            .map(|t| format!(" &rarr; {}", escape_html(t)))
            .unwrap_or_default();
        // Writing to a String cannot fail.
        let _ = writeln!(
            html,
            "<tr><td><a href=\"{href}\">{label}</a>{arrow}</td><td class=\"n\">{size}</td><td>{modified}</td></tr>"
        );
    }
    html.push_str("</tbody></table>\n");
    if let Some(next) = next {
        let _ = writeln!(
            html,
            "<p><a rel=\"next\" href=\"{}\">Next page</a></p>",
            escape_html(next)
        );
    }
    html.push_str("</body></html>\n");
    html
}

/// `text` with HTML's special characters escaped, for text and attribute values.
pub(super) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_and_escaping() {
        assert_eq!(content_type("a/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("x.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("x.png"), "image/png");
        assert_eq!(content_type("noext"), "application/octet-stream");
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(
            utf8_percent_encode("a b/c?.html", SEGMENT).to_string(),
            "a%20b%2Fc%3F.html"
        );
    }

    #[test]
    fn listing_queries() {
        assert_eq!(
            query_param(Some("a=1&after=x%2Fy"), "after").as_deref(),
            Some("x/y")
        );
        assert_eq!(
            query_param(Some("after=a+b"), "after").as_deref(),
            Some("a b")
        );
        assert_eq!(query_param(Some("afterx=1"), "after"), None);
        assert_eq!(query_param(Some("after=%ff"), "after"), None);
        assert_eq!(query_param(None, "after"), None);
        assert_eq!(next_query(None, "d/"), "?after=d%2F");
        assert_eq!(
            next_query(Some("listing&after=old&wait=1"), "a b"),
            "?listing&wait=1&after=a%20b"
        );
    }

    #[test]
    fn tags_name_the_id_and_the_format() {
        let id = crate::id::BlockId::of(b"x");
        assert_eq!(content_tag(&id, false), format!("\"{id}\""));
        assert_eq!(content_tag(&id, true), format!("\"{id}-json\""));
    }
}
