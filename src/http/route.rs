//! `Route::parse`: a request's method and path, turned into what it asks for. Pure and
//! total: every input becomes a route or a `RouteError`, never a panic.

use hyper::Method;

use super::assets::Asset;
use crate::bundle::{MAX_PATH_BYTES, MAX_PATH_COMPONENTS};
use crate::cid::{CidError, RawCid};
use crate::codec::{Key, Locator, Mode};
use crate::id::{BlockId, IdError};

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `GET`/`HEAD /sha256/{id}`.
    GetBlock {
        /// The block.
        id: BlockId,
    },
    /// `PUT /sha256/{id}`.
    PutBlock {
        /// The block.
        id: BlockId,
    },
    /// `GET`/`HEAD /sha256/like/{id}`.
    Like {
        /// The target.
        id: BlockId,
    },
    /// `GET`/`HEAD /sha256/{id}/aes256/{key}[/{path}]` and
    /// `/sha256/{id}/passphrase/{key}`: decrypted content.
    Content {
        /// The block, mode and key.
        locator: Locator,
        /// After the key: `None` when nothing, `Some("")` for a trailing slash,
        /// `Some("a/b%20c")` for a path inside a bundle (still percent-encoded).
        rest: Option<&'a str>,
    },
    /// `GET`/`HEAD` of any path on a bundle's own origin (`<id>.<key>.localhost`,
    /// `<id>.<key>.<domain>`: see `origin.rs`): the path inside that bundle.
    Site {
        /// The bundle (always `aes256`).
        locator: Locator,
        /// The path after its leading `/` (still percent-encoded; `""` for the root).
        rest: &'a str,
    },
    /// `GET`/`HEAD /node`.
    Node,
    /// `GET`/`HEAD /metrics`.
    Metrics,
    /// `GET`/`HEAD /` and `/web/{name}`: the dashboard's files.
    Asset(Asset),
    /// `GET`/`HEAD /mesh`: this node and its peers' public figures (JSON).
    Mesh,
    /// `POST /upload` (admin): files sent as `multipart/form-data`, stored as a bundle.
    Upload,
    /// `GET`/`HEAD /peers`.
    Peers,
    /// `PUT /peers`: a signed announcement.
    Announce,
    /// `GET /stats` (admin).
    Stats,
    /// `GET /history`: the last 15 minutes of activity (JSON).
    History,
    /// `GET /pins[?holder=H]` (admin).
    Pins,
    /// `POST /pins`: pin and unpin many ids for one holder (admin).
    Repin,
    /// `PUT /pins/{id}` (admin).
    Pin {
        /// The block.
        id: BlockId,
    },
    /// `DELETE /pins/{id}` (admin).
    Unpin {
        /// The block.
        id: BlockId,
    },
    /// `POST /sha256/batch`: many blocks in one body, stored with one group commit.
    Batch,
    /// `POST /sha256/holds` (signed by a peer): which of many ids are held here,
    /// renewing custody of those held.
    Holds,
    /// `DELETE /sha256/{id}` (admin): delete the local copy.
    DeleteBlock {
        /// The block.
        id: BlockId,
    },
    /// `GET`/`HEAD /ipfs/{cid}`: a raw block by its CID (the IPFS trustless gateway).
    Ipfs {
        /// The block (or the empty probe).
        cid: RawCid,
    },
    /// `GET`/`HEAD /{sha256}[.ext]`: a block as a Blossom blob (BUD-01).
    Blob {
        /// The block.
        id: BlockId,
    },
    /// `OPTIONS /{sha256}[.ext]`: a browser's CORS preflight for a blob (BUD-01).
    BlobPreflight,
}

/// Why a request has no route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No such resource.
    #[error("no such resource")]
    NotFound,
    /// A path segment that should be an id is not one.
    #[error("bad id: {0}")]
    BadId(IdError),
    /// A path segment that should be a key is not one.
    #[error("bad key: {0}")]
    BadKey(IdError),
    /// A path inside a bundle over `MAX_PATH_BYTES` (decoded; three times that
    /// percent-encoded) or `MAX_PATH_COMPONENTS`.
    #[error(
        "the path inside the bundle is too long (at most {MAX_PATH_BYTES} bytes and {MAX_PATH_COMPONENTS} components)"
    )]
    PathTooLong,
    /// A Host under a name bundle origins sit under that names no bundle (not
    /// `<52 base32>.<52 base32>`).
    #[error(
        "the host names no bundle: a bundle's origin is <id>.<key>.localhost, each label its 32 bytes in 52 base32 characters"
    )]
    BadHost,
    /// `/ipfs/{cid}` with a CID this node cannot answer.
    #[error("bad CID: {0}")]
    BadCid(CidError),
    /// `/ipfs/{cid}/{path}`: a raw block has nothing inside it to name.
    #[error("a raw block has no paths inside it: ask for /ipfs/{{cid}} alone")]
    IpfsPath,
    /// `/{sha256}.{ext}` with an extension that is not 1 to `MAX_EXTENSION` letters,
    /// digits and dots.
    #[error("a blob's extension is 1 to {MAX_EXTENSION} letters, digits or dots after the hash")]
    BadExtension,
    /// The resource exists but not for this method.
    #[error("method not allowed; allowed: {allow}")]
    MethodNotAllowed {
        /// Value for the `Allow` header.
        allow: &'static str,
    },
}

const READ_ONLY: &str = "GET, HEAD";
const READ_WRITE: &str = "GET, HEAD, PUT, DELETE";
const PEERS: &str = "GET, HEAD, PUT";
const PIN: &str = "PUT, DELETE";
const PINS: &str = "GET, HEAD, POST";
const BLOB: &str = "GET, HEAD, OPTIONS";

/// Longest file extension after a blob's hash (`/{sha256}.{ext}`, BUD-01). Blossom
/// clients add the MIME type's usual extension (`.png`, `.webm`, `.tar.gz`); an
/// extension is never used (the blob's type does not depend on it), so a short bound
/// keeps odd paths out without refusing any real one.
pub const MAX_EXTENSION: usize = 16;

impl<'a> Route<'a> {
    /// Parses a request's method and (raw, undecoded) path.
    pub fn parse(method: &Method, path: &'a str) -> Result<Route<'a>, RouteError> {
        let read = method == Method::GET || method == Method::HEAD;
        let only_read = |route: Route<'a>| -> Result<Route<'a>, RouteError> {
            if read {
                Ok(route)
            } else {
                Err(RouteError::MethodNotAllowed { allow: READ_ONLY })
            }
        };
        match path {
            "/" => return only_read(Route::Asset(Asset::Index)),
            "/mesh" => return only_read(Route::Mesh),
            "/upload" => {
                return match *method {
                    Method::POST => Ok(Route::Upload),
                    _ => Err(RouteError::MethodNotAllowed { allow: "POST" }),
                };
            }
            "/node" => return only_read(Route::Node),
            "/metrics" => return only_read(Route::Metrics),
            "/history" => return only_read(Route::History),
            "/stats" => return only_read(Route::Stats),
            "/pins" => {
                return match *method {
                    Method::GET | Method::HEAD => Ok(Route::Pins),
                    Method::POST => Ok(Route::Repin),
                    _ => Err(RouteError::MethodNotAllowed { allow: PINS }),
                };
            }
            "/peers" => {
                return match *method {
                    Method::GET | Method::HEAD => Ok(Route::Peers),
                    Method::PUT => Ok(Route::Announce),
                    _ => Err(RouteError::MethodNotAllowed { allow: PEERS }),
                };
            }
            _ => {}
        }
        if let Some(name) = path.strip_prefix("/web/") {
            let asset = Asset::under_web(name).ok_or(RouteError::NotFound)?;
            return only_read(Route::Asset(asset));
        }
        if let Some(id) = path.strip_prefix("/pins/") {
            let id = id.parse().map_err(RouteError::BadId)?;
            return match *method {
                Method::PUT => Ok(Route::Pin { id }),
                Method::DELETE => Ok(Route::Unpin { id }),
                _ => Err(RouteError::MethodNotAllowed { allow: PIN }),
            };
        }
        if let Some(rest) = path.strip_prefix("/ipfs/") {
            let (cid, inside) = match rest.split_once('/') {
                Some((cid, _)) => (cid, true),
                None => (rest, false),
            };
            let cid = cid.parse().map_err(RouteError::BadCid)?;
            if inside {
                return Err(RouteError::IpfsPath);
            }
            return only_read(Route::Ipfs { cid });
        }
        let Some(rest) = path.strip_prefix("/sha256/") else {
            return blob(method, path);
        };
        if rest == "holds" {
            return match *method {
                Method::POST => Ok(Route::Holds),
                _ => Err(RouteError::MethodNotAllowed { allow: "POST" }),
            };
        }
        if rest == "batch" {
            return match *method {
                Method::POST => Ok(Route::Batch),
                _ => Err(RouteError::MethodNotAllowed { allow: "POST" }),
            };
        }
        if let Some(target) = rest.strip_prefix("like/") {
            let id = target.parse().map_err(RouteError::BadId)?;
            return only_read(Route::Like { id });
        }
        if let Some((id, view)) = rest.split_once('/') {
            let id = id.parse().map_err(RouteError::BadId)?;
            let (locator, rest) = content_view(id, view)?;
            return only_read(Route::Content { locator, rest });
        }
        let id = rest.parse().map_err(RouteError::BadId)?;
        match *method {
            Method::GET | Method::HEAD => Ok(Route::GetBlock { id }),
            Method::PUT => Ok(Route::PutBlock { id }),
            Method::DELETE => Ok(Route::DeleteBlock { id }),
            _ => Err(RouteError::MethodNotAllowed { allow: READ_WRITE }),
        }
    }

    /// The route of a request on the bundle `locator`'s own origin: every path (raw,
    /// undecoded) is a path inside the bundle, read-only.
    pub fn on_origin(
        method: &Method,
        locator: Locator,
        path: &'a str,
    ) -> Result<Route<'a>, RouteError> {
        if method != Method::GET && method != Method::HEAD {
            return Err(RouteError::MethodNotAllowed { allow: READ_ONLY });
        }
        let rest = path.strip_prefix('/').unwrap_or(path);
        check_rest(rest)?;
        Ok(Route::Site { locator, rest })
    }

    /// A short stable name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Route::GetBlock { .. } => "get_block",
            Route::PutBlock { .. } => "put_block",
            Route::Like { .. } => "like",
            Route::Content { .. } => "content",
            Route::Site { .. } => "site",
            Route::Node => "node",
            Route::Metrics => "metrics",
            Route::Asset(_) => "asset",
            Route::Mesh => "mesh",
            Route::Upload => "upload",
            Route::Peers => "peers",
            Route::Announce => "announce",
            Route::Stats => "stats",
            Route::History => "history",
            Route::Pins => "pins",
            Route::Repin => "repin",
            Route::Pin { .. } => "pin",
            Route::Unpin { .. } => "unpin",
            Route::Holds => "holds",
            Route::Batch => "batch",
            Route::DeleteBlock { .. } => "delete_block",
            Route::Ipfs { .. } => "ipfs",
            Route::Blob { .. } => "blob",
            Route::BlobPreflight => "blob_preflight",
        }
    }
}

/// `/{sha256}[.{ext}]` (Blossom BUD-01), read-only; any other path has no route.
fn blob<'a>(method: &Method, path: &str) -> Result<Route<'a>, RouteError> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let Some(hex) = rest.get(..crate::id::ID_HEX_LEN) else {
        return Err(RouteError::NotFound);
    };
    let Ok(id) = hex.parse::<BlockId>() else {
        return Err(RouteError::NotFound);
    };
    let ext = &rest[hex.len()..];
    if !ext.is_empty() {
        let Some(ext) = ext.strip_prefix('.') else {
            return Err(RouteError::NotFound);
        };
        if ext.contains('/') {
            return Err(RouteError::NotFound);
        }
        if ext.is_empty()
            || ext.len() > MAX_EXTENSION
            || !ext.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        {
            return Err(RouteError::BadExtension);
        }
    }
    match *method {
        Method::GET | Method::HEAD => Ok(Route::Blob { id }),
        Method::OPTIONS => Ok(Route::BlobPreflight),
        _ => Err(RouteError::MethodNotAllowed { allow: BLOB }),
    }
}

/// Parses what follows `/sha256/{id}/`: `{mode}/{key}[/{rest}]`.
fn content_view(id: BlockId, view: &str) -> Result<(Locator, Option<&str>), RouteError> {
    let mut parts = view.splitn(3, '/');
    let mode = match parts.next() {
        Some("aes256") => Mode::Aes256,
        Some("passphrase") => Mode::Passphrase,
        _ => return Err(RouteError::NotFound),
    };
    let key: Key = parts
        .next()
        .unwrap_or("")
        .parse()
        .map_err(RouteError::BadKey)?;
    let rest = parts.next();
    if let Some(rest) = rest {
        check_rest(rest)?;
    }
    if mode == Mode::Passphrase && rest.is_some() {
        // Passphrase content is a single record, never a bundle.
        return Err(RouteError::NotFound);
    }
    Ok((Locator { id, mode, key }, rest))
}

/// Refuses a path inside a bundle before any work: resolving is linear, but a path
/// nobody's bundle can hold should not cost a tree load. Percent-encoding triples a
/// byte at most.
fn check_rest(rest: &str) -> Result<(), RouteError> {
    if rest.len() > 3 * MAX_PATH_BYTES
        || rest.bytes().filter(|&b| b == b'/').count() >= MAX_PATH_COMPONENTS
    {
        return Err(RouteError::PathTooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    /// The raw CIDv1 of the block `ID` names (the empty block).
    const CID: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";

    #[test]
    fn table() {
        let id: BlockId = ID.parse().unwrap();
        let cid = RawCid::Block(id);
        let get = Method::GET;
        let put = Method::PUT;
        let del = Method::DELETE;
        let cases: Vec<(&Method, String, Result<Route, RouteError>)> = vec![
            (&get, format!("/sha256/{ID}"), Ok(Route::GetBlock { id })),
            (
                &Method::HEAD,
                format!("/sha256/{}", ID.to_uppercase()),
                Ok(Route::GetBlock { id }),
            ),
            (&put, format!("/sha256/{ID}"), Ok(Route::PutBlock { id })),
            (&get, format!("/sha256/like/{ID}"), Ok(Route::Like { id })),
            (&get, "/node".into(), Ok(Route::Node)),
            (&get, "/metrics".into(), Ok(Route::Metrics)),
            (&get, "/".into(), Ok(Route::Asset(Asset::Index))),
            (&get, "/web/app.js".into(), Ok(Route::Asset(Asset::Script))),
            (&get, "/web/../node".into(), Err(RouteError::NotFound)),
            (&get, "/web/".into(), Err(RouteError::NotFound)),
            (
                &put,
                "/web/style.css".into(),
                Err(RouteError::MethodNotAllowed { allow: READ_ONLY }),
            ),
            (&get, "/mesh".into(), Ok(Route::Mesh)),
            (&Method::POST, "/upload".into(), Ok(Route::Upload)),
            (
                &get,
                "/upload".into(),
                Err(RouteError::MethodNotAllowed { allow: "POST" }),
            ),
            (&del, format!("/sha256/{ID}"), Ok(Route::DeleteBlock { id })),
            (
                &Method::POST,
                format!("/sha256/{ID}"),
                Err(RouteError::MethodNotAllowed { allow: READ_WRITE }),
            ),
            (&get, "/peers".into(), Ok(Route::Peers)),
            (&put, "/peers".into(), Ok(Route::Announce)),
            (
                &del,
                "/peers".into(),
                Err(RouteError::MethodNotAllowed { allow: PEERS }),
            ),
            (&get, "/stats".into(), Ok(Route::Stats)),
            (&get, "/pins".into(), Ok(Route::Pins)),
            (&get, "/history".into(), Ok(Route::History)),
            (&Method::POST, "/pins".into(), Ok(Route::Repin)),
            (&put, format!("/pins/{ID}"), Ok(Route::Pin { id })),
            (&del, format!("/pins/{ID}"), Ok(Route::Unpin { id })),
            (
                &get,
                format!("/pins/{ID}"),
                Err(RouteError::MethodNotAllowed { allow: PIN }),
            ),
            (
                &put,
                "/pins/../x".into(),
                Err(RouteError::BadId(IdError::Length(4))),
            ),
            (
                &put,
                "/node".into(),
                Err(RouteError::MethodNotAllowed { allow: READ_ONLY }),
            ),
            (
                &put,
                format!("/sha256/like/{ID}"),
                Err(RouteError::MethodNotAllowed { allow: READ_ONLY }),
            ),
            (
                &get,
                "/sha256/abc".into(),
                Err(RouteError::BadId(IdError::Length(3))),
            ),
            (
                &get,
                format!("/sha256/{}", "z".repeat(64)),
                Err(RouteError::BadId(IdError::NotHex)),
            ),
            (
                &get,
                "/sha256/like/../../etc/passwd".into(),
                Err(RouteError::BadId(IdError::Length(16))),
            ),
            (
                &get,
                "/sha256/".into(),
                Err(RouteError::BadId(IdError::Length(0))),
            ),
            (&get, format!("/sha256/{ID}/"), Err(RouteError::NotFound)),
            (
                &get,
                format!("/sha256/{ID}/aes256/{ID}"),
                Ok(Route::Content {
                    locator: Locator {
                        id,
                        mode: Mode::Aes256,
                        key: Key(id.0),
                    },
                    rest: None,
                }),
            ),
            (
                &Method::HEAD,
                format!("/sha256/{ID}/aes256/{ID}/a/b%20c"),
                Ok(Route::Content {
                    locator: Locator {
                        id,
                        mode: Mode::Aes256,
                        key: Key(id.0),
                    },
                    rest: Some("a/b%20c"),
                }),
            ),
            (
                &get,
                format!("/sha256/{ID}/passphrase/{ID}"),
                Ok(Route::Content {
                    locator: Locator {
                        id,
                        mode: Mode::Passphrase,
                        key: Key(id.0),
                    },
                    rest: None,
                }),
            ),
            (
                &get,
                format!("/sha256/{ID}/passphrase/{ID}/x"),
                Err(RouteError::NotFound),
            ),
            (
                &get,
                format!("/sha256/{ID}/aes128/{ID}"),
                Err(RouteError::NotFound),
            ),
            (
                &get,
                format!("/sha256/{ID}/aes256/xyz"),
                Err(RouteError::BadKey(IdError::Length(3))),
            ),
            (
                &get,
                format!("/sha256/xyz/aes256/{ID}"),
                Err(RouteError::BadId(IdError::Length(3))),
            ),
            (
                &put,
                format!("/sha256/{ID}/aes256/{ID}/"),
                Err(RouteError::MethodNotAllowed { allow: READ_ONLY }),
            ),
            (
                &get,
                format!(
                    "/sha256/{ID}/aes256/{ID}/{}",
                    "a/".repeat(MAX_PATH_COMPONENTS - 1)
                ),
                Ok(Route::Content {
                    locator: Locator {
                        id,
                        mode: Mode::Aes256,
                        key: Key(id.0),
                    },
                    rest: Some(&*"a/".repeat(MAX_PATH_COMPONENTS - 1).leak()),
                }),
            ),
            (
                &get,
                format!(
                    "/sha256/{ID}/aes256/{ID}/{}",
                    "a/".repeat(MAX_PATH_COMPONENTS)
                ),
                Err(RouteError::PathTooLong),
            ),
            (
                &get,
                format!(
                    "/sha256/{ID}/aes256/{ID}/{}",
                    "a".repeat(3 * MAX_PATH_BYTES + 1)
                ),
                Err(RouteError::PathTooLong),
            ),
            (&get, "/sha512/x".into(), Err(RouteError::NotFound)),
            (&get, format!("/ipfs/{CID}"), Ok(Route::Ipfs { cid })),
            (
                &Method::HEAD,
                format!("/ipfs/{}", CID.to_uppercase()),
                Ok(Route::Ipfs { cid }),
            ),
            (
                &get,
                "/ipfs/bafkqaaa".into(),
                Ok(Route::Ipfs { cid: RawCid::Empty }),
            ),
            (
                &put,
                format!("/ipfs/{CID}"),
                Err(RouteError::MethodNotAllowed { allow: READ_ONLY }),
            ),
            (&get, format!("/ipfs/{CID}/"), Err(RouteError::IpfsPath)),
            (&get, format!("/ipfs/{CID}/a/b"), Err(RouteError::IpfsPath)),
            (
                &get,
                "/ipfs/QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB".into(),
                Err(RouteError::BadCid(CidError::Version0)),
            ),
            (
                &get,
                "/ipfs/..%2F..%2Fnode".into(),
                Err(RouteError::BadCid(CidError::Multibase('.'))),
            ),
            (
                &get,
                "/ipfs/".into(),
                Err(RouteError::BadCid(CidError::Empty)),
            ),
            (&get, "/ipfs".into(), Err(RouteError::NotFound)),
            (&get, "/ipns/example.org".into(), Err(RouteError::NotFound)),
            (&get, format!("/{ID}"), Ok(Route::Blob { id })),
            (&Method::HEAD, format!("/{ID}.png"), Ok(Route::Blob { id })),
            (&get, format!("/{ID}.tar.gz"), Ok(Route::Blob { id })),
            (
                &get,
                format!("/{}.PDF", ID.to_uppercase()),
                Ok(Route::Blob { id }),
            ),
            (&Method::OPTIONS, format!("/{ID}"), Ok(Route::BlobPreflight)),
            (
                &put,
                format!("/{ID}"),
                Err(RouteError::MethodNotAllowed { allow: BLOB }),
            ),
            (
                &del,
                format!("/{ID}.png"),
                Err(RouteError::MethodNotAllowed { allow: BLOB }),
            ),
            (&get, format!("/{ID}."), Err(RouteError::BadExtension)),
            (&get, format!("/{ID}.p%6eg"), Err(RouteError::BadExtension)),
            (
                &get,
                format!("/{ID}.{}", "a".repeat(MAX_EXTENSION + 1)),
                Err(RouteError::BadExtension),
            ),
            (&get, format!("/{ID}/x"), Err(RouteError::NotFound)),
            (&get, format!("/{ID}./x"), Err(RouteError::NotFound)),
            (&get, format!("/{ID}x"), Err(RouteError::NotFound)),
            (&get, format!("/{}", &ID[1..]), Err(RouteError::NotFound)),
            (
                &get,
                format!("/{}", "é".repeat(40)),
                Err(RouteError::NotFound),
            ),
            (&get, "/etc/passwd".into(), Err(RouteError::NotFound)),
            (&get, "*".into(), Err(RouteError::NotFound)),
        ];
        for (method, path, want) in cases {
            assert_eq!(Route::parse(method, &path), want, "{method} {path}");
        }
    }

    #[test]
    fn origin_paths_are_paths_in_the_bundle() {
        let id: BlockId = ID.parse().unwrap();
        let locator = Locator {
            id,
            mode: Mode::Aes256,
            key: Key(id.0),
        };
        let site = |rest| Ok(Route::Site { locator, rest });
        let get = Method::GET;
        assert_eq!(Route::on_origin(&get, locator, "/"), site(""));
        assert_eq!(
            Route::on_origin(&Method::HEAD, locator, "/css/site.css"),
            site("css/site.css")
        );
        // The node's own paths are the bundle's there.
        assert_eq!(Route::on_origin(&get, locator, "/node"), site("node"));
        assert_eq!(
            Route::on_origin(&get, locator, &format!("/sha256/{ID}")),
            site(&*format!("sha256/{ID}").leak())
        );
        assert_eq!(
            Route::on_origin(&Method::PUT, locator, "/x"),
            Err(RouteError::MethodNotAllowed { allow: READ_ONLY })
        );
        assert_eq!(
            Route::on_origin(&get, locator, &"/a".repeat(MAX_PATH_COMPONENTS + 1)),
            Err(RouteError::PathTooLong)
        );
    }
}
