//! Bundles (DESIGN 5): a directory tree as a JSON manifest of encrypted blocks. Owns the
//! manifest model and its validation, packing a manifest into blocks (with sub-bundles
//! when it outgrows one block), the merged and checked `Tree` with path lookup, scanning
//! a local directory, and writing a tree back to disk. Knows the codec; knows nothing of
//! HTTP, the store or how blocks travel: callers pass a fetch function.
//!
//! Invariant: a `Tree` only exists once every path in it is relative, `/`-separated,
//! free of `.`/`..`, unique, not nested under a file, link or empty directory, and every
//! file's size is the sum of its chunks. So restoring a tree can only write below its
//! destination, and serving one can only name its own blocks.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io;
use std::marker::PhantomData;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError, Encoded, Locator, Mode};
use crate::id::MAX_BLOCK_SIZE;

mod served;
pub use served::{Loader, Lookup, Outline, Part};

/// `modified` counts seconds from 2001-01-01T00:00:00Z; this is that instant in Unix time.
pub const MODIFIED_EPOCH_UNIX: f64 = 978_307_200.0;

/// Most sub-bundles one bundle may list in all (counted as they are queued, so listing
/// one many times counts many times): enough for tens of millions of files. A client
/// reading its own data uses this; a node serving anyone's uses much smaller `Limits`.
pub const MAX_SUB_BUNDLES: usize = 20_000;

/// Deepest nesting of sub-bundles (each level multiplies capacity by thousands).
pub const MAX_DEPTH: usize = 6;

/// Most entries (files and directories) a client loads in one tree: what
/// `MAX_SUB_BUNDLES` full blocks of short entries can hold, so no real bundle is refused.
pub const MAX_ENTRIES: usize = 400_000_000;

/// Most manifest bytes (decrypted and inflated JSON, root included) a client loads in
/// one tree: `MAX_SUB_BUNDLES` full blocks and the root.
pub const MAX_MANIFEST_BYTES: usize = (MAX_SUB_BUNDLES + 1) * MAX_BLOCK_SIZE;

/// Most `link` hops followed when a served path goes through symlinks.
const MAX_LINK_HOPS: usize = 8;

/// Longest path (bytes, decoded) resolved inside a tree: Linux's `PATH_MAX`. Longer
/// request paths are refused before any work, and resolving a path whose links make it
/// longer stops there (not found), so the work of one lookup is bounded.
pub const MAX_PATH_BYTES: usize = 4096;

/// Most components in a path resolved inside a tree (`a/b/c` has 3): half of
/// `MAX_PATH_BYTES`, what one-letter names can fill it with.
pub const MAX_PATH_COMPONENTS: usize = MAX_PATH_BYTES / 2;

/// Bounds on the work and memory of loading one tree, checked as manifests are read:
/// sub-bundles are counted when queued (before any is fetched), entries and bytes before
/// they are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most sub-bundle URLs listed in the whole tree (each must be distinct).
    pub sub_bundles: usize,
    /// Deepest nesting of sub-bundles (the root's own are at depth 1).
    pub depth: usize,
    /// Most entries (files and directories), all manifests together.
    pub entries: usize,
    /// Most manifest bytes (decrypted, inflated JSON), all manifests together.
    pub manifest_bytes: usize,
}

impl Limits {
    /// A client loading data it asked for (restore, `ls`, `get`): anything `pack`
    /// can write.
    pub const CLIENT: Limits = Limits {
        sub_bundles: MAX_SUB_BUNDLES,
        depth: MAX_DEPTH,
        entries: MAX_ENTRIES,
        manifest_bytes: MAX_MANIFEST_BYTES,
    };
}

/// Bundle failures: malformed manifests, file system errors while scanning or restoring.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The manifest is not the expected JSON.
    #[error("manifest is not valid: {0}")]
    Json(String),
    /// A path in the manifest breaks the rules.
    #[error("bad path {0:?} in manifest: {1}")]
    BadPath(String, &'static str),
    /// The same path appears twice.
    #[error("duplicate entry {0:?} in manifest")]
    Duplicate(String),
    /// A path lies under a file, a link or an empty directory.
    #[error("entry {0:?} lies under {1:?}, which is not a directory")]
    Overlap(String, String),
    /// A file's size is not the sum of its chunks, or a chunk is malformed.
    #[error("file {path:?}: {why}")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A sub-bundle URL is not a content URL.
    #[error("bad sub-bundle url {0:?}")]
    BadUrl(String),
    /// A sub-bundle is not a manifest.
    #[error("sub-bundle {0} is not a manifest")]
    NotAManifest(String),
    /// Too many sub-bundles.
    #[error("too many sub-bundles (at most {0})")]
    TooManyBundles(usize),
    /// Sub-bundles nested too deeply.
    #[error("sub-bundles nested too deeply (at most {0} levels)")]
    TooDeep(usize),
    /// The same sub-bundle is listed twice (in one manifest or across the tree).
    #[error("sub-bundle {0} is listed twice")]
    DuplicateBundle(String),
    /// The tree has more entries than the reader accepts.
    #[error("too many entries (at most {0})")]
    TooManyEntries(usize),
    /// The manifests disagree across blocks (a path twice, an entry under a file), or
    /// their blocks' path ranges overlap more than a server follows.
    #[error("{0}")]
    Inconsistent(&'static str),
    /// The tree's manifests are larger than the reader accepts.
    #[error("manifests too large (at most {0} bytes in all)")]
    TooLarge(usize),
    /// One file has too many chunks for one manifest block.
    #[error("file {0:?} is too large for one manifest entry")]
    EntryTooLarge(String),
    /// A local file name is not UTF-8, which the manifest cannot carry.
    #[error("file name is not UTF-8: {0}")]
    NotUtf8(PathBuf),
    /// The restore destination exists and is not an empty directory.
    #[error("{0} exists and is not an empty directory")]
    DestinationNotEmpty(PathBuf),
    /// Encoding a manifest block failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and where.
        context: String,
        /// The OS error.
        source: io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> BundleError {
    let context = context.into();
    move |source| BundleError::Io { context, source }
}

/// One block of a file's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Plaintext bytes in this block.
    pub size: u64,
    /// `/sha256/<id>/aes256/<key>`.
    pub url: String,
}

/// A file (or a symlink to a file) in a manifest. Fields are in alphabetical order so
/// the JSON has sorted keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its blocks, in order (empty for links and empty files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contents: Vec<Chunk>,
    /// Owner-executable.
    #[serde(default, skip_serializing_if = "is_false")]
    pub executable: bool,
    /// Symlink target, for links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Modification time, seconds since 2001-01-01T00:00:00Z (microsecond precision).
    #[serde(default)]
    pub modified: f64,
    /// Not writable by its owner.
    #[serde(default, skip_serializing_if = "is_false")]
    pub readonly: bool,
    /// Bytes.
    pub size: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A manifest as stored in one block (DESIGN 5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Sub-bundles holding more entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bundles: Vec<String>,
    /// Empty directories (`null`) and symlinks to directories (their target).
    #[serde(default, deserialize_with = "unique_map")]
    pub directories: BTreeMap<String, Option<String>>,
    /// Files and symlinks to files.
    #[serde(default, deserialize_with = "unique_map")]
    pub files: BTreeMap<String, FileEntry>,
}

/// Deserializes a JSON object into a map, refusing duplicate keys (which a plain map
/// would silently overwrite).
fn unique_map<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object with unique keys")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            // Collected, sorted (manifests are written sorted: a linear check) and built
            // in bulk, rather than searched twice and inserted entry by entry.
            let mut entries: Vec<(String, V)> = Vec::new();
            while let Some(entry) = access.next_entry::<String, V>()? {
                entries.push(entry);
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            if let Some(pair) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
                let k = &pair[0].0;
                return Err(serde::de::Error::custom(format!("duplicate entry {k:?}")));
            }
            Ok(entries.into_iter().collect())
        }
    }
    d.deserialize_map(Unique(PhantomData))
}

impl Manifest {
    /// True when `content` is meant as a manifest: a JSON object with a `files` object or
    /// a `bundles` array. Such content is a bundle and must then validate; anything else
    /// is plain data. Cheap for non-JSON content.
    pub fn looks_like(content: &[u8]) -> bool {
        let start = content.iter().position(|b| !b.is_ascii_whitespace());
        if start.is_none_or(|i| content[i] != b'{') {
            return false;
        }
        let find = |needle: &[u8]| content.windows(needle.len()).any(|w| w == needle);
        if !find(b"\"files\"") && !find(b"\"bundles\"") {
            return false;
        }
        // Only the top level is looked at: nested values are skipped, never built (a
        // `serde_json::Value` of a 1 MiB manifest takes many times its size).
        serde_json::from_slice::<Shape>(content).is_ok_and(|s| s.files_object || s.bundles_array)
    }

    /// Parses and validates one manifest block's content (paths, sizes, chunk and
    /// sub-bundle URLs; nesting across blocks is checked by `Tree`).
    pub fn decode(content: &[u8]) -> Result<Manifest, BundleError> {
        let manifest: Manifest =
            serde_json::from_slice(content).map_err(|e| BundleError::Json(e.to_string()))?;
        for (path, file) in &manifest.files {
            check_path(path)?;
            check_file(path, file)?;
        }
        for (path, target) in &manifest.directories {
            check_path(path)?;
            if let Some(t) = target {
                check_link(path, t)?;
            }
        }
        let mut listed = HashSet::with_capacity(manifest.bundles.len());
        for url in &manifest.bundles {
            let locator = parse_chunk_url(url).ok_or_else(|| BundleError::BadUrl(url.clone()))?;
            // Listing one sub-bundle many times multiplies the work of loading it (and
            // `pack` never does): refused outright.
            if !listed.insert(locator) {
                return Err(BundleError::DuplicateBundle(url.clone()));
            }
        }
        Ok(manifest)
    }

    /// `decode` for the content of sub-bundle `locator`: content that is not meant as a
    /// manifest at all is `NotAManifest`.
    pub fn decode_sub(locator: &Locator, content: &[u8]) -> Result<Manifest, BundleError> {
        Manifest::decode(content).map_err(|e| {
            // Parsed once; only a failure asks whether it was meant as a manifest.
            if Manifest::looks_like(content) {
                e
            } else {
                BundleError::NotAManifest(locator.to_string())
            }
        })
    }

    /// Compact JSON with sorted keys.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing maps of strings and plain structs cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The top level of a JSON object as `Manifest::looks_like` sees it: whether `files`
/// is an object and `bundles` an array (the last of a repeated key counts, as in a
/// JSON value). Anything else fails to parse.
struct Shape {
    files_object: bool,
    bundles_array: bool,
}

/// The kind of a JSON value, read without keeping it.
#[derive(PartialEq)]
enum Kind {
    Object,
    Array,
    Other,
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        struct KindVisitor;
        impl<'de> Visitor<'de> for KindVisitor {
            type Value = Kind;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Kind, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Kind::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Kind, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Kind::Array)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
            fn visit_unit<E>(self) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
        }
        d.deserialize_any(KindVisitor)
    }
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Shape, D::Error> {
        struct ShapeVisitor;
        impl<'de> Visitor<'de> for ShapeVisitor {
            type Value = Shape;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Shape, A::Error> {
                let mut shape = Shape {
                    files_object: false,
                    bundles_array: false,
                };
                while let Some(key) = a.next_key::<String>()? {
                    match key.as_str() {
                        "files" => shape.files_object = a.next_value::<Kind>()? == Kind::Object,
                        "bundles" => shape.bundles_array = a.next_value::<Kind>()? == Kind::Array,
                        _ => {
                            a.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(shape)
            }
        }
        d.deserialize_map(ShapeVisitor)
    }
}

/// Parses a chunk or sub-bundle URL: a convergent content URL.
pub fn parse_chunk_url(url: &str) -> Option<Locator> {
    url.parse::<Locator>()
        .ok()
        .filter(|l| l.mode == Mode::Aes256)
}

/// Checks a manifest path: relative, `/`-separated, non-empty components, no `.`/`..`,
/// no NUL.
pub fn check_path(path: &str) -> Result<(), BundleError> {
    let bad = |why| Err(BundleError::BadPath(path.to_owned(), why));
    if path.is_empty() {
        return bad("empty");
    }
    if path.starts_with('/') {
        return bad("absolute");
    }
    if path.contains('\0') {
        return bad("contains NUL");
    }
    for part in path.split('/') {
        match part {
            "" => return bad("empty component"),
            "." | ".." => return bad("contains . or .."),
            _ => {}
        }
    }
    Ok(())
}

fn check_link(path: &str, target: &str) -> Result<(), BundleError> {
    if target.is_empty() || target.contains('\0') {
        return Err(BundleError::BadFile {
            path: path.to_owned(),
            why: "link target is empty or contains NUL".into(),
        });
    }
    Ok(())
}

fn check_file(path: &str, file: &FileEntry) -> Result<(), BundleError> {
    let bad = |why: String| {
        Err(BundleError::BadFile {
            path: path.to_owned(),
            why,
        })
    };
    if !file.modified.is_finite() {
        return bad("modified is not a number".into());
    }
    if let Some(target) = &file.link {
        // Libernet records a link's target's size and contents too; only the target
        // counts (restoring or serving a link never reads them).
        return check_link(path, target);
    }
    let mut sum = 0u64;
    for chunk in &file.contents {
        // Up to a whole block's worth: Libernet cuts files into 1 MiB chunks.
        if chunk.size == 0 || chunk.size > MAX_BLOCK_SIZE as u64 {
            return bad(format!(
                "chunk size {} is outside 1..={MAX_BLOCK_SIZE}",
                chunk.size
            ));
        }
        if parse_chunk_url(&chunk.url).is_none() {
            return bad(format!("bad chunk url {:?}", chunk.url));
        }
        sum += chunk.size;
    }
    if sum != file.size {
        return bad(format!(
            "size {} but its chunks hold {sum} bytes",
            file.size
        ));
    }
    Ok(())
}

/// A whole bundle: the root manifest merged with all its sub-bundles, validated.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// Files and file links, by path.
    pub files: BTreeMap<String, FileEntry>,
    /// Empty directories and directory links, by path.
    pub directories: BTreeMap<String, Option<String>>,
    /// Encoded size of all manifests merged.
    pub manifest_bytes: usize,
    /// Hashes of the paths that are links (`path_hash` with this key), made at the
    /// first lookup.
    links: OnceLock<(RandomState, Vec<u64>)>,
}

/// Failure to load a tree: a bad manifest, or the caller's fetch failing.
#[derive(Debug, thiserror::Error)]
pub enum LoadError<E> {
    /// A manifest is malformed.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Fetching a sub-bundle failed.
    #[error("{0}")]
    Fetch(E),
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListEntry {
    /// Name within the directory.
    pub name: String,
    /// `file`, `dir` or `link`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Bytes (files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Seconds since 2001-01-01 (files and file links).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified: Option<f64>,
    /// Link target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// One page of a directory listing (`Tree::list_page`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListPage {
    /// The entries, in path order (a directory sorts as its name followed by `/`).
    pub entries: Vec<ListEntry>,
    /// Where the next page starts (pass it back as `after`); `None` on the last page.
    pub next: Option<String>,
}

/// What is counted while a tree loads, against its `Limits`.
struct Budget {
    limits: Limits,
    /// Sub-bundles queued so far (each distinct).
    queued: HashSet<Locator>,
    entries: usize,
    bytes: usize,
}

impl Budget {
    fn new(limits: Limits) -> Budget {
        Budget {
            limits,
            queued: HashSet::new(),
            entries: 0,
            bytes: 0,
        }
    }

    /// Counts a manifest's bytes, before it is parsed.
    fn bytes(&mut self, n: usize) -> Result<(), BundleError> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.limits.manifest_bytes {
            return Err(BundleError::TooLarge(self.limits.manifest_bytes));
        }
        Ok(())
    }

    /// Counts a manifest's entries and queues its sub-bundles at `depth`, before any
    /// of them is merged or fetched.
    fn admit(
        &mut self,
        manifest: &Manifest,
        depth: usize,
        queue: &mut VecDeque<(Locator, usize)>,
    ) -> Result<(), BundleError> {
        let limits = self.limits;
        self.entries = self
            .entries
            .saturating_add(manifest.files.len() + manifest.directories.len());
        if self.entries > limits.entries {
            return Err(BundleError::TooManyEntries(limits.entries));
        }
        if manifest.bundles.is_empty() {
            return Ok(());
        }
        if depth + 1 > limits.depth {
            return Err(BundleError::TooDeep(limits.depth));
        }
        if self.queued.len() + manifest.bundles.len() > limits.sub_bundles {
            return Err(BundleError::TooManyBundles(limits.sub_bundles));
        }
        for url in &manifest.bundles {
            let locator = parse_chunk_url(url).ok_or_else(|| BundleError::BadUrl(url.clone()))?;
            if !self.queued.insert(locator) {
                return Err(BundleError::DuplicateBundle(url.clone()));
            }
            queue.push_back((locator, depth + 1));
        }
        Ok(())
    }
}

/// A keyed hash of a path's prefixes, one component at a time (`a`, `a/b`, `a/b/c`),
/// so every prefix of a path is tested in time linear in the path. Keyed (SipHash with
/// a random key), so a manifest cannot be made of colliding paths.
#[derive(Clone)]
struct PrefixHash {
    hasher: std::collections::hash_map::DefaultHasher,
    empty: bool,
}

impl PrefixHash {
    fn new(state: &RandomState) -> PrefixHash {
        PrefixHash {
            hasher: state.build_hasher(),
            empty: true,
        }
    }

    /// Appends a component; the hash of the path so far.
    fn push(&mut self, part: &str) -> u64 {
        if !self.empty {
            self.hasher.write_u8(b'/');
        }
        self.empty = false;
        self.hasher.write(part.as_bytes());
        self.hasher.finish()
    }
}

/// The hash `PrefixHash` gives the whole of `path`.
fn path_hash(state: &RandomState, path: &str) -> u64 {
    let mut h = PrefixHash::new(state);
    path.split('/').fold(0, |_, part| h.push(part))
}

impl PartialEq for Tree {
    fn eq(&self, other: &Tree) -> bool {
        self.files == other.files
            && self.directories == other.directories
            && self.manifest_bytes == other.manifest_bytes
    }
}

impl Tree {
    /// The paths a restore places: every file and file link, and every directory link.
    pub fn placed_paths(&self) -> impl Iterator<Item = &String> {
        let links = self
            .directories
            .iter()
            .filter(|(_, t)| t.is_some())
            .map(|(p, _)| p);
        self.files.keys().chain(links)
    }

    /// A tree of these entries, unchecked (a selection of a checked tree).
    pub fn from_entries(
        files: BTreeMap<String, FileEntry>,
        directories: BTreeMap<String, Option<String>>,
    ) -> Tree {
        Tree {
            files,
            directories,
            ..Tree::default()
        }
    }

    /// Loads the tree whose root manifest is `root`, fetching sub-bundles' content with
    /// `fetch` (breadth first, one at a time), and validates the whole. Stops at the
    /// first bound of `limits` crossed: sub-bundles are counted (and duplicates refused)
    /// when a manifest lists them, before any is fetched; entries and bytes before they
    /// are merged. So `fetch` is called at most `limits.sub_bundles` times.
    pub async fn load<E, F, Fut>(
        root: Manifest,
        root_bytes: usize,
        limits: Limits,
        mut fetch: F,
    ) -> Result<Tree, LoadError<E>>
    where
        F: FnMut(Locator) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>, E>>,
    {
        let mut tree = Tree::default();
        let mut budget = Budget::new(limits);
        let mut queue = VecDeque::new();
        budget.bytes(root_bytes)?;
        budget.admit(&root, 0, &mut queue)?;
        tree.merge(root, root_bytes)?;
        while let Some((locator, depth)) = queue.pop_front() {
            let content = fetch(locator).await.map_err(LoadError::Fetch)?;
            budget.bytes(content.len())?;
            let manifest = Manifest::decode_sub(&locator, &content)?;
            budget.admit(&manifest, depth, &mut queue)?;
            tree.merge(manifest, content.len())?;
        }
        tree.check_nesting()?;
        Ok(tree)
    }

    /// A tree from one manifest with no sub-bundles (checked like `load`).
    pub fn single(manifest: Manifest) -> Result<Tree, BundleError> {
        if !manifest.bundles.is_empty() {
            return Err(BundleError::Json("the manifest has sub-bundles".into()));
        }
        let mut tree = Tree::default();
        let size = manifest.to_json().len();
        tree.merge(manifest, size)?;
        tree.check_nesting()?;
        Ok(tree)
    }

    /// The entries of one manifest block as they are, unchecked against the others
    /// (`Outline` checks a tree's blocks together when it is built).
    pub fn part(manifest: Manifest, bytes: usize) -> Tree {
        Tree {
            files: manifest.files,
            directories: manifest.directories,
            manifest_bytes: bytes,
            links: OnceLock::new(),
        }
    }

    fn merge(&mut self, manifest: Manifest, bytes: usize) -> Result<(), BundleError> {
        self.manifest_bytes += bytes;
        for (path, file) in manifest.files {
            if self.directories.contains_key(&path) || self.files.contains_key(&path) {
                return Err(BundleError::Duplicate(path));
            }
            self.files.insert(path, file);
        }
        for (path, target) in manifest.directories {
            if self.directories.contains_key(&path) || self.files.contains_key(&path) {
                return Err(BundleError::Duplicate(path));
            }
            self.directories.insert(path, target);
        }
        Ok(())
    }

    /// An estimate of the memory this tree holds (heap and map nodes), for caches.
    pub fn footprint(&self) -> usize {
        /// A B-tree map's share per entry beyond key and value (node headers, slack).
        const MAP_OVERHEAD: usize = 32;
        let string = std::mem::size_of::<String>();
        let files: usize = self
            .files
            .iter()
            .map(|(path, f)| {
                let chunks: usize = f
                    .contents
                    .iter()
                    .map(|c| std::mem::size_of::<Chunk>() + c.url.capacity())
                    .sum();
                string
                    + path.capacity()
                    + std::mem::size_of::<FileEntry>()
                    + MAP_OVERHEAD
                    + chunks
                    + f.link.as_ref().map_or(0, String::capacity)
            })
            .sum();
        let dirs: usize = self
            .directories
            .iter()
            .map(|(path, t)| {
                string
                    + path.capacity()
                    + std::mem::size_of::<Option<String>>()
                    + MAP_OVERHEAD
                    + t.as_ref().map_or(0, String::capacity)
            })
            .sum();
        std::mem::size_of::<Tree>() + files + dirs
    }

    /// No entry may lie under a file, a link or a directory listed as empty.
    fn check_nesting(&self) -> Result<(), BundleError> {
        // Linear in the paths' bytes: each prefix is tested by a keyed hash folded one
        // component at a time (hashing or comparing every prefix whole was quadratic in a
        // path's length, and a manifest path may be a megabyte of `a/a/a...`).
        let state = RandomState::new();
        let paths = || self.files.keys().chain(self.directories.keys());
        let leaves: HashSet<u64> = paths()
            .map(|p| {
                let mut h = PrefixHash::new(&state);
                p.split('/').fold(0, |_, part| h.push(part))
            })
            .collect();
        for path in paths() {
            let mut h = PrefixHash::new(&state);
            let mut at = 0;
            let mut parts = path.split('/').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    break;
                }
                at += part.len();
                let ancestor = &path[..at];
                at += 1;
                if leaves.contains(&h.push(part))
                    && (self.files.contains_key(ancestor)
                        || self.directories.contains_key(ancestor))
                {
                    return Err(BundleError::Overlap(path.clone(), ancestor.to_owned()));
                }
            }
        }
        Ok(())
    }

    /// The entries under directory `dir` (`""`: all), with `dir/` taken off their paths.
    pub fn subtree(&self, dir: &str) -> Tree {
        if dir.is_empty() {
            return self.clone();
        }
        let prefix = format!("{dir}/");
        let strip = |k: &String| k.strip_prefix(&prefix).map(str::to_owned);
        Tree {
            files: self
                .files
                .iter()
                .filter_map(|(k, f)| Some((strip(k)?, f.clone())))
                .collect(),
            directories: self
                .directories
                .iter()
                .filter_map(|(k, d)| Some((strip(k)?, d.clone())))
                .collect(),
            manifest_bytes: self.manifest_bytes,
            links: OnceLock::new(),
        }
    }

    /// Total bytes of all files.
    pub fn total_size(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }
}

/// A bundle packed into blocks: the root and any sub-bundles (upload all of them).
#[derive(Debug)]
pub struct Packed {
    /// The root manifest's block; its locator is the bundle's URL.
    pub root: Encoded,
    /// Sub-bundle blocks.
    pub subs: Vec<Encoded>,
}

/// Packs entries into manifest blocks: one when the JSON fits in `limit` bytes
/// (`MAX_CONTENT` in use; tests pass less), else leaf sub-bundles filled in path order,
/// and as many levels of bundle lists above them as needed.
pub fn pack(
    files: BTreeMap<String, FileEntry>,
    directories: BTreeMap<String, Option<String>>,
    limit: usize,
) -> Result<Packed, BundleError> {
    let whole = Manifest {
        bundles: Vec::new(),
        directories,
        files,
    };
    let json = whole.to_json();
    if json.len() <= limit {
        return Ok(Packed {
            root: codec::encode(&json)?,
            subs: Vec::new(),
        });
    }
    let mut subs = Vec::new();
    let mut leaves = Vec::new();
    let mut leaf = Manifest::default();
    let mut size = leaf.to_json().len();
    let empty_size = size;
    // Each entry adds `"key":value` and a comma when its map already has entries.
    let entry_cost = |key: &str, value: Vec<u8>, map_len: usize| -> usize {
        serde_json::to_string(key).map_or(0, |k| k.len())
            + 1
            + value.len()
            + usize::from(map_len > 0)
    };
    let items = whole
        .files
        .into_iter()
        .map(|(k, f)| (k, Some(f), None))
        .chain(
            whole
                .directories
                .into_iter()
                .map(|(k, d)| (k, None, Some(d))),
        );
    for (path, file, dir) in items {
        let value = match (&file, &dir) {
            (Some(f), _) => serde_json::to_vec(f).unwrap_or_default(),
            (_, d) => serde_json::to_vec(d).unwrap_or_default(),
        };
        let in_map = |m: &Manifest| {
            if file.is_some() {
                m.files.len()
            } else {
                m.directories.len()
            }
        };
        let mut cost = entry_cost(&path, value.clone(), in_map(&leaf));
        if size + cost > limit && size > empty_size {
            leaves.push(std::mem::take(&mut leaf));
            size = empty_size;
            cost = entry_cost(&path, value, 0);
        }
        if size + cost > limit {
            return Err(BundleError::EntryTooLarge(path));
        }
        size += cost;
        match (file, dir) {
            (Some(f), _) => leaf.files.insert(path, f),
            (_, Some(d)) => leaf.directories.insert(path, d).map(|_| FileEntry::empty()),
            (None, None) => None,
        };
    }
    leaves.push(leaf);
    if leaves.len() > MAX_SUB_BUNDLES {
        return Err(BundleError::TooManyBundles(MAX_SUB_BUNDLES));
    }
    let mut urls = Vec::new();
    for leaf in leaves {
        let encoded = codec::encode(&leaf.to_json())?;
        urls.push(encoded.locator.to_string());
        subs.push(encoded);
    }
    // Levels of bundle lists until one fits.
    loop {
        let root = Manifest {
            bundles: urls.clone(),
            ..Manifest::default()
        };
        let json = root.to_json();
        if json.len() <= limit {
            return Ok(Packed {
                root: codec::encode(&json)?,
                subs,
            });
        }
        if subs.len() > MAX_SUB_BUNDLES {
            // Readers refuse more; refuse to write what could not be read.
            return Err(BundleError::TooManyBundles(MAX_SUB_BUNDLES));
        }
        let per = (limit / (urls[0].len() + 3)).max(2);
        let mut next = Vec::new();
        for group in urls.chunks(per) {
            let list = Manifest {
                bundles: group.to_vec(),
                ..Manifest::default()
            };
            let encoded = codec::encode(&list.to_json())?;
            next.push(encoded.locator.to_string());
            subs.push(encoded);
        }
        urls = next;
    }
}

impl FileEntry {
    /// An empty regular file's entry (size 0, no blocks, time 0).
    pub fn empty() -> FileEntry {
        FileEntry {
            contents: Vec::new(),
            executable: false,
            link: None,
            modified: 0.0,
            readonly: false,
            size: 0,
        }
    }
}

/// A regular file found by `scan`, to be split into blocks by the caller.
#[derive(Debug, Clone)]
pub struct ScannedFile {
    /// Path in the bundle.
    pub path: String,
    /// Where it is on disk.
    pub source: PathBuf,
    /// Its entry, without contents yet.
    pub entry: FileEntry,
}

/// What `scan` found: regular files to read, and the entries that need no reading.
#[derive(Debug, Default)]
pub struct Scan {
    /// Regular files, in path order.
    pub files: Vec<ScannedFile>,
    /// File links.
    pub links: BTreeMap<String, FileEntry>,
    /// Empty directories and directory links.
    pub directories: BTreeMap<String, Option<String>>,
    /// Paths skipped: sockets, FIFOs, devices.
    pub skipped: Vec<PathBuf>,
    /// Hidden entries left out (`scan_with` without `include_hidden`), relative to the
    /// root; a hidden directory is one entry.
    pub hidden: Vec<String>,
}

/// Seconds since 2001-01-01 of a file time, truncated to the microsecond (counted in
/// integers, so `time_of` gives back exactly that microsecond).
pub fn modified_of(time: SystemTime) -> f64 {
    let micros = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i128,
        Err(e) => -(e.duration().as_micros() as i128),
    };
    (micros - MODIFIED_EPOCH_UNIX as i128 * 1_000_000) as f64 / 1e6
}

/// The file time of a manifest `modified` value.
pub fn time_of(modified: f64) -> SystemTime {
    let micros = ((modified + MODIFIED_EPOCH_UNIX) * 1e6).round();
    let magnitude = Duration::from_micros(micros.abs().min(u64::MAX as f64) as u64);
    if micros >= 0.0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH.checked_sub(magnitude).unwrap_or(UNIX_EPOCH)
    }
}

fn entry_of(meta: &fs::Metadata) -> FileEntry {
    let mode = meta.permissions().mode();
    FileEntry {
        contents: Vec::new(),
        executable: mode & 0o100 != 0,
        link: None,
        modified: meta.modified().map_or(0.0, modified_of),
        readonly: mode & 0o200 == 0,
        size: meta.len(),
    }
}

/// Walks `root` (a directory, or a single file which becomes a one-file bundle named
/// after it) without following symlinks.
pub fn scan(root: &Path) -> Result<Scan, BundleError> {
    scan_with(root, true, &|_, _| true)
}

/// True for a dotfile or dot-directory name (`.git`, `.env`).
fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// `scan`, leaving out entries two ways. Without `include_hidden`, entries under `root`
/// whose name starts with a dot are left out (and listed in `Scan::hidden`; `put`'s
/// default). Every entry for which `keep(path, is_dir)` is false is left out silently
/// (a backup's excludes). A directory left out is not walked; one whose entries are all
/// left out is kept as an empty directory. `root` itself is always taken.
pub fn scan_with(
    root: &Path,
    include_hidden: bool,
    keep: &dyn Fn(&Path, bool) -> bool,
) -> Result<Scan, BundleError> {
    let meta = fs::symlink_metadata(root).map_err(io_error(format!("{}", root.display())))?;
    let mut out = Scan::default();
    if meta.is_file() {
        let name = root
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| BundleError::NotUtf8(root.to_owned()))?;
        out.files.push(ScannedFile {
            path: name.to_owned(),
            source: root.to_owned(),
            entry: entry_of(&meta),
        });
        return Ok(out);
    }
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1);
    let mut walk = walk.into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.map_err(|e| BundleError::Io {
            context: format!("walking {}", root.display()),
            source: e.into(),
        })?;
        let rel = entry
            .path()
            .strip_prefix(root)
            .ok()
            .and_then(|p| p.to_str())
            .ok_or_else(|| BundleError::NotUtf8(entry.path().to_owned()))?
            .to_owned();
        let context = || format!("{}", entry.path().display());
        let kind = entry.file_type();
        if !keep(entry.path(), kind.is_dir()) {
            if kind.is_dir() {
                walk.skip_current_dir();
            }
            continue;
        }
        if !include_hidden && is_hidden(entry.file_name()) {
            if kind.is_dir() {
                walk.skip_current_dir();
            }
            out.hidden.push(rel);
            continue;
        }
        if kind.is_symlink() {
            let target = fs::read_link(entry.path()).map_err(io_error(context()))?;
            let target = target
                .to_str()
                .ok_or_else(|| BundleError::NotUtf8(target.clone()))?
                .to_owned();
            if fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
                out.directories.insert(rel, Some(target));
            } else {
                let meta = entry.metadata().map_err(|e| BundleError::Io {
                    context: context(),
                    source: e.into(),
                })?;
                let mut link = entry_of(&meta);
                (link.size, link.readonly, link.executable) = (0, false, false);
                link.link = Some(target);
                out.links.insert(rel, link);
            }
        } else if kind.is_dir() {
            let children = fs::read_dir(entry.path()).map_err(io_error(context()))?;
            let kept = |c: io::Result<fs::DirEntry>| {
                c.is_err()
                    || c.is_ok_and(|c| {
                        (include_hidden || !is_hidden(&c.file_name()))
                            && keep(&c.path(), c.file_type().is_ok_and(|t| t.is_dir()))
                    })
            };
            if !children.into_iter().any(kept) {
                out.directories.insert(rel, None);
            }
        } else if kind.is_file() {
            let meta = entry.metadata().map_err(|e| BundleError::Io {
                context: context(),
                source: e.into(),
            })?;
            out.files.push(ScannedFile {
                path: rel,
                source: entry.path().to_owned(),
                entry: entry_of(&meta),
            });
        } else {
            out.skipped.push(entry.path().to_owned());
        }
    }
    Ok(out)
}

/// Threads that sync restored files at the end of a restore.
const FINISH_THREADS: usize = 8;

/// Runs `work` on `FINISH_THREADS` shares of `items` at once; the first error wins.
fn on_threads<T: Sync>(
    items: &[T],
    work: impl Fn(&[T]) -> Result<(), BundleError> + Sync,
) -> Result<(), BundleError> {
    let per = items.len().div_ceil(FINISH_THREADS).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(per)
            .map(|part| scope.spawn(|| work(part)))
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(BundleError::Json("a restore thread panicked".into())))
        })
    })
}

/// Writes a tree to disk: files are created in a hidden staging directory (beside a new
/// destination, inside an existing empty one) and moved into place at the end, so the
/// destination holds either the complete tree or nothing. Block contents come from the caller
/// through `write`, in any order.
pub struct Restore {
    dest: PathBuf,
    staging: PathBuf,
    /// The destination existed (empty): entries move into it one by one at the end.
    existed: bool,
    /// The destination may hold other entries: each file and link moves to its own
    /// place at the end (replacing what is there), directories are made as needed.
    merge: bool,
    done: bool,
}

impl Restore {
    /// Checks the destination (absent, or an empty directory), creates the staging
    /// directory, every directory and every regular file (empty, at its final size).
    pub fn begin(tree: &Tree, dest: &Path) -> Result<Restore, BundleError> {
        let existed = match fs::read_dir(dest) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(BundleError::DestinationNotEmpty(dest.to_owned()));
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(_) => return Err(BundleError::DestinationNotEmpty(dest.to_owned())),
        };
        // Staging lives inside an existing (empty) destination, so `.` works and the
        // directory itself is never replaced; beside a new one, so it appears whole.
        let staging = if existed {
            dest.join(format!(".libernet-restore-{}", std::process::id()))
        } else {
            let name = dest
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "restore".into());
            let parent = dest.parent().filter(|p| !p.as_os_str().is_empty());
            let parent = parent.unwrap_or(Path::new("."));
            fs::create_dir_all(parent).map_err(io_error(format!("{}", parent.display())))?;
            parent.join(format!(".{name}.partial-{}", std::process::id()))
        };
        let restore = Restore {
            dest: dest.to_owned(),
            staging,
            existed,
            merge: false,
            done: false,
        };
        restore.stage(tree)?;
        Ok(restore)
    }

    /// A restore into `dest`, an existing directory that may hold other entries: the
    /// tree is staged in a directory made inside `near` (an existing directory on the
    /// same file system), and `finish` moves each file and link to its place under
    /// `dest`, replacing a file or link already there. The caller checks beforehand
    /// what may be replaced.
    pub fn begin_merge(tree: &Tree, dest: &Path, near: &Path) -> Result<Restore, BundleError> {
        let restore = Restore {
            dest: dest.to_owned(),
            staging: near.join(format!(".libernet-restore-{}", std::process::id())),
            existed: true,
            merge: true,
            done: false,
        };
        restore.stage(tree)?;
        Ok(restore)
    }

    /// Creates the staging directory, every directory and every regular file (empty, at
    /// its final size).
    fn stage(&self, tree: &Tree) -> Result<(), BundleError> {
        let restore = self;
        fs::create_dir(&restore.staging).map_err(io_error(restore.named(&restore.staging)))?;
        for (path, target) in &tree.directories {
            if target.is_none() {
                let at = restore.staging.join(path);
                fs::create_dir_all(&at).map_err(io_error(restore.named(&at)))?;
            }
        }
        let mut parents: Vec<PathBuf> = tree
            .files
            .keys()
            .filter_map(|path| restore.staging.join(path).parent().map(Path::to_owned))
            .collect();
        parents.sort_unstable();
        parents.dedup();
        for parent in &parents {
            fs::create_dir_all(parent).map_err(io_error(restore.named(parent)))?;
        }
        // Creating an inode can cost the file system far more than writing it (ext4
        // without a journal scans recently freed inodes on every create): the files
        // are created from `FINISH_THREADS` threads, as they are finished.
        let files: Vec<(&String, &FileEntry)> = tree
            .files
            .iter()
            .filter(|(_, file)| file.link.is_none())
            .collect();
        on_threads(&files, |part| restore.create_files(part))
    }

    /// Creates each of `files` in the staging directory, empty at its final size.
    fn create_files(&self, files: &[(&String, &FileEntry)]) -> Result<(), BundleError> {
        for (path, file) in files {
            let at = self.staging.join(path);
            let f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&at)
                .map_err(io_error(self.named(&at)))?;
            f.set_len(file.size).map_err(io_error(self.named(&at)))?;
        }
        Ok(())
    }

    /// `finish` of a merging restore: files and links one by one to their places,
    /// empty directories made, the staging removed.
    fn finish_merge(&self, tree: &Tree) -> Result<(), BundleError> {
        for path in tree.placed_paths() {
            let to = self.dest.join(path);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(io_error(format!("{}", parent.display())))?;
            }
            fs::rename(self.staging.join(path), &to)
                .map_err(io_error(format!("{}", to.display())))?;
        }
        for (path, target) in &tree.directories {
            if target.is_none() {
                let at = self.dest.join(path);
                fs::create_dir_all(&at).map_err(io_error(format!("{}", at.display())))?;
            }
        }
        fs::remove_dir_all(&self.staging).map_err(io_error(format!("{}", self.staging.display())))
    }

    /// How a path under the staging directory is named in messages: by where it is
    /// going (the staging directory's name is an internal detail).
    fn named(&self, at: &Path) -> String {
        match at.strip_prefix(&self.staging) {
            Ok(rel) if rel.as_os_str().is_empty() => self.dest.display().to_string(),
            Ok(rel) => self.dest.join(rel).display().to_string(),
            Err(_) => at.display().to_string(),
        }
    }

    /// Links, and regular files synced with their times and modes.
    fn finish_files(&self, files: &[(&String, &FileEntry)]) -> Result<(), BundleError> {
        for (path, file) in files {
            let at = self.staging.join(path);
            let context = || self.named(&at);
            if let Some(target) = &file.link {
                std::os::unix::fs::symlink(target, &at).map_err(io_error(context()))?;
                let time = filetime::FileTime::from_system_time(time_of(file.modified));
                filetime::set_symlink_file_times(&at, time, time).map_err(io_error(context()))?;
                continue;
            }
            let f = fs::File::options()
                .write(true)
                .open(&at)
                .map_err(io_error(context()))?;
            f.sync_all().map_err(io_error(context()))?;
            f.set_modified(time_of(file.modified))
                .map_err(io_error(context()))?;
            let mut mode = 0o644;
            if file.executable {
                mode |= 0o111;
            }
            if file.readonly {
                mode &= !0o222;
            }
            fs::set_permissions(&at, fs::Permissions::from_mode(mode))
                .map_err(io_error(context()))?;
        }
        Ok(())
    }

    /// Writes `data` at `offset` of the file at `path` (a path of the tree).
    pub fn write(&self, path: &str, offset: u64, data: &[u8]) -> Result<(), BundleError> {
        let at = self.staging.join(path);
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&at)
            .map_err(io_error(self.named(&at)))?;
        file.write_all_at(data, offset)
            .map_err(io_error(self.named(&at)))
    }

    /// Sets modes and times, creates the links, syncs, and moves the tree into place.
    pub fn finish(mut self, tree: &Tree) -> Result<PathBuf, BundleError> {
        // Syncing thousands of small files one after the other leaves the disk idle
        // between them; a few threads keep several flushes in flight.
        let files: Vec<(&String, &FileEntry)> = tree.files.iter().collect();
        on_threads(&files, |part| self.finish_files(part))?;
        for (path, target) in &tree.directories {
            if let Some(target) = target {
                let at = self.staging.join(path);
                if let Some(parent) = at.parent() {
                    fs::create_dir_all(parent).map_err(io_error(self.named(parent)))?;
                }
                std::os::unix::fs::symlink(target, &at).map_err(io_error(self.named(&at)))?;
            }
        }
        if self.merge {
            self.finish_merge(tree)?;
        } else if self.existed {
            let entries =
                fs::read_dir(&self.staging).map_err(io_error(self.named(&self.staging)))?;
            for entry in entries {
                let entry = entry.map_err(io_error(self.named(&self.staging)))?;
                let to = self.dest.join(entry.file_name());
                fs::rename(entry.path(), &to).map_err(io_error(format!("{}", to.display())))?;
            }
            fs::remove_dir(&self.staging).map_err(io_error(self.named(&self.staging)))?;
        } else {
            fs::rename(&self.staging, &self.dest)
                .map_err(io_error(format!("{}", self.dest.display())))?;
        }
        if let Some(parent) = self.dest.parent() {
            let _ = crate::fsutil::sync_dir(parent);
        }
        self.done = true;
        Ok(self.dest.clone())
    }
}

impl Drop for Restore {
    /// A restore that did not finish leaves nothing behind.
    fn drop(&mut self) {
        if !self.done {
            let _ = make_writable(&self.staging);
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// Gives the owner write access to every directory under `dir` so it can be removed.
fn make_writable(dir: &Path) -> io::Result<()> {
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_dir() {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(content: &[u8]) -> Chunk {
        Chunk {
            size: content.len() as u64,
            url: codec::encode(content).unwrap().locator.to_string(),
        }
    }

    fn file(content: &[u8]) -> FileEntry {
        FileEntry {
            contents: vec![chunk(content)],
            modified: 100.5,
            size: content.len() as u64,
            ..FileEntry::empty()
        }
    }

    fn manifest_json(files: &str) -> Vec<u8> {
        format!(r#"{{"files":{files}}}"#).into_bytes()
    }

    #[test]
    fn encode_decode_round_trip_with_sorted_keys() {
        let mut m = Manifest::default();
        m.files.insert("b/x.txt".into(), file(b"hello"));
        let mut link = FileEntry::empty();
        link.link = Some("../a".into());
        m.files.insert("b/link".into(), link);
        m.directories.insert("empty".into(), None);
        m.directories.insert("dirlink".into(), Some("b".into()));
        let json = m.to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.starts_with(r#"{"directories":{"dirlink":"b","empty":null},"files":{"b/link":{"link":"../a","modified":0.0,"size":0},"b/x.txt":{"contents":[{"size":5,"url":"/sha256/"#), "{text}");
        assert!(Manifest::looks_like(&json));
        assert_eq!(Manifest::decode(&json).unwrap(), m);
        assert!(!Manifest::looks_like(b"hello"));
        assert!(!Manifest::looks_like(br#"{"file": 1}"#));
        assert!(!Manifest::looks_like(br#"{"files": 1}"#));
        assert!(Manifest::looks_like(br#" {"files": {}}"#));
        assert!(Manifest::looks_like(
            br#"{"x": [1, {"y": null}], "bundles": []}"#
        ));
        assert!(!Manifest::looks_like(br#"{"bundles": {}}"#));
        assert!(!Manifest::looks_like(br#"{"files": {}} trailing"#));
        assert!(!Manifest::looks_like(br#"{"files": {}, "files": 1}"#));
        assert!(Manifest::looks_like(
            br#"{"files": 1, "files": {"a": 1.5}}"#
        ));
        assert!(!Manifest::looks_like(br#"["files", "bundles"]"#));
    }

    #[test]
    fn path_validation() {
        for good in ["a", "a/b", "a b/c.d", "..a", "a..", ".hidden"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/a", "a//b", "a/", "./a", "a/./b", "..", "a/../b", "a/..", "a\0b",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
            let m = manifest_json(&format!(
                r#"{{{}:{{"size":0}}}}"#,
                serde_json::to_string(bad).unwrap()
            ));
            assert!(
                matches!(Manifest::decode(&m), Err(BundleError::BadPath(..))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_manifests_are_rejected() {
        let url = chunk(b"abc").url;
        let cases = [
            (r#"{"a":{"size":1},"a":{"size":1}}"#.to_owned(), "duplicate"),
            (
                format!(r#"{{"a":{{"size":4,"contents":[{{"size":3,"url":"{url}"}}]}}}}"#),
                "size 4",
            ),
            (
                format!(r#"{{"a":{{"size":0,"contents":[{{"size":0,"url":"{url}"}}]}}}}"#),
                "chunk size 0",
            ),
            (
                r#"{"a":{"size":3,"contents":[{"size":3,"url":"/sha256/zz"}]}}"#.to_owned(),
                "bad chunk url",
            ),
            (
                format!(
                    r#"{{"a":{{"size":1048577,"contents":[{{"size":1048577,"url":"{url}"}}]}}}}"#
                ),
                "chunk size 1048577",
            ),
            (r#"{"a":{"size":0,"link":""}}"#.to_owned(), "link target"),
            (r#"{"a":{"size":-1}}"#.to_owned(), "invalid value"),
            (r#"[1]"#.to_owned(), "invalid type"),
        ];
        for (files, want) in cases {
            let err = Manifest::decode(&manifest_json(&files))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{files}: {err}");
        }
        // Libernet's shapes: 1 MiB chunks, links that carry their target's contents.
        let libernet = format!(
            r#"{{"big":{{"size":1048576,"contents":[{{"size":1048576,"url":"{url}"}}]}},"l":{{"size":3,"link":"big","contents":[{{"size":3,"url":"{url}"}}]}}}}"#
        );
        assert!(Manifest::decode(&manifest_json(&libernet)).is_ok());
        let bad_sub = br#"{"files":{},"bundles":["/sha256/x"]}"#;
        assert!(matches!(
            Manifest::decode(bad_sub),
            Err(BundleError::BadUrl(_))
        ));
    }

    #[test]
    fn overlapping_entries_are_rejected() {
        let with = |files: &[&str], dirs: &[(&str, Option<&str>)]| {
            let mut m = Manifest::default();
            for f in files {
                m.files.insert((*f).into(), file(b"x"));
            }
            for (d, t) in dirs {
                m.directories.insert((*d).into(), t.map(str::to_owned));
            }
            Tree::single(m)
        };
        assert!(with(&["a/b", "a/c", "d"], &[("e", None), ("f", Some("a"))]).is_ok());
        assert!(matches!(
            with(&["a", "a/b"], &[]),
            Err(BundleError::Overlap(..))
        ));
        assert!(matches!(
            with(&["a/b"], &[("a", None)]),
            Err(BundleError::Overlap(..))
        ));
        assert!(matches!(
            with(&["a/b/c"], &[("a", Some("x"))]),
            Err(BundleError::Overlap(..))
        ));
        assert!(matches!(
            with(&["a"], &[("a", None)]),
            Err(BundleError::Duplicate(_))
        ));
    }

    #[test]
    fn lookup_listing_and_links() {
        let mut m = Manifest::default();
        for f in ["index.html", "css/site.css", "docs/a/b.txt", "docs/c.txt"] {
            m.files.insert(f.into(), file(f.as_bytes()));
        }
        let mut link = FileEntry::empty();
        link.link = Some("../css/site.css".into());
        m.files.insert("docs/style.css".into(), link.clone());
        link.link = Some("../../etc/passwd".into());
        m.files.insert("docs/escape".into(), link);
        m.directories.insert("empty".into(), None);
        m.directories.insert("alias".into(), Some("docs/a".into()));
        let t = Tree::single(m).unwrap();
        assert!(matches!(
            t.lookup("index.html"),
            Lookup::File(ref p, _) if p == "index.html"
        ));
        assert!(matches!(
            t.lookup("docs/style.css"),
            Lookup::File(ref p, _) if p == "css/site.css"
        ));
        assert!(matches!(
            t.lookup("alias/b.txt"),
            Lookup::File(ref p, _) if p == "docs/a/b.txt"
        ));
        assert_eq!(t.lookup(""), Lookup::Directory(String::new()));
        assert_eq!(t.lookup("docs"), Lookup::Directory("docs".into()));
        assert_eq!(t.lookup("alias"), Lookup::Directory("docs/a".into()));
        assert_eq!(t.lookup("empty"), Lookup::Directory("empty".into()));
        assert_eq!(t.lookup("docs/escape"), Lookup::NotFound);
        assert_eq!(t.lookup("nope"), Lookup::NotFound);
        assert_eq!(t.lookup("doc"), Lookup::NotFound);
        let all = |dir: &str| t.list_page(dir, None, usize::MAX, usize::MAX).entries;
        let names: Vec<_> = all("").iter().map(|e| (e.name.clone(), e.kind)).collect();
        assert_eq!(
            names,
            [
                ("alias", "link"),
                ("css", "dir"),
                ("docs", "dir"),
                ("empty", "dir"),
                ("index.html", "file")
            ]
            .map(|(n, k)| (n.to_owned(), k))
        );
        let docs: Vec<_> = all("docs").iter().map(|e| e.name.clone()).collect();
        assert_eq!(docs, ["a", "c.txt", "escape", "style.css"]);
    }

    /// A manifest of exactly `limit` bytes stays one block; one byte over spills.
    #[test]
    fn sub_bundle_spill_at_the_boundary() {
        let mut files = BTreeMap::new();
        for i in 0..40 {
            files.insert(
                format!("dir/file-{i:03}"),
                file(format!("content {i}").as_bytes()),
            );
        }
        let exact = Manifest {
            files: files.clone(),
            ..Manifest::default()
        }
        .to_json()
        .len();
        let packed = pack(files.clone(), BTreeMap::new(), exact).unwrap();
        assert!(packed.subs.is_empty());
        let packed = pack(files.clone(), BTreeMap::new(), exact - 1).unwrap();
        assert!(!packed.subs.is_empty());
        // Small limits force several levels; every block respects the limit and the
        // loaded tree has every entry back.
        for limit in [exact - 1, 2000, 700] {
            let packed = pack(files.clone(), BTreeMap::from([("e".into(), None)]), limit).unwrap();
            let blocks: std::collections::HashMap<_, _> = packed
                .subs
                .iter()
                .map(|e| (e.locator, e.block.clone()))
                .collect();
            for sub in &packed.subs {
                let content = codec::decode(&sub.block, Mode::Aes256, &sub.locator.key).unwrap();
                assert!(content.content.len() <= limit, "{limit}");
            }
            let root = codec::decode(&packed.root.block, Mode::Aes256, &packed.root.locator.key)
                .unwrap()
                .content;
            let manifest = Manifest::decode(&root).unwrap();
            let tree = futures_lite_block_on(Tree::load(
                manifest,
                root.len(),
                Limits::CLIENT,
                |l: Locator| {
                    let found = blocks.get(&l).ok_or("missing").and_then(|block| {
                        codec::decode(block, Mode::Aes256, &l.key)
                            .map(|d| d.content)
                            .map_err(|_| "undecodable")
                    });
                    std::future::ready(found)
                },
            ))
            .unwrap();
            assert_eq!(tree.files, files, "{limit}");
            assert_eq!(tree.directories.len(), 1);
        }
    }

    /// Runs a future that never waits (the fetches above are synchronous).
    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// A manifest block listing `subs` (URLs) and holding `files` empty files.
    fn list_of(subs: &[Locator], files: &[&str]) -> Manifest {
        Manifest {
            bundles: subs.iter().map(Locator::to_string).collect(),
            files: files
                .iter()
                .map(|f| ((*f).to_owned(), FileEntry::empty()))
                .collect(),
            ..Manifest::default()
        }
    }

    /// Loads `root` from `blocks` (manifests by locator) within `limits`, counting the
    /// fetches.
    fn load_counting(
        root: Manifest,
        blocks: &std::collections::HashMap<Locator, Vec<u8>>,
        limits: Limits,
    ) -> (Result<Tree, BundleError>, usize) {
        let fetches = std::cell::Cell::new(0usize);
        let bytes = root.to_json().len();
        let result = futures_lite_block_on(Tree::load(root, bytes, limits, |l: Locator| {
            fetches.set(fetches.get() + 1);
            std::future::ready(blocks.get(&l).cloned().ok_or("missing"))
        }));
        let result = result.map_err(|e| match e {
            LoadError::Bundle(e) => e,
            LoadError::Fetch(e) => panic!("fetch failed: {e}"),
        });
        (result, fetches.get())
    }

    /// The fan-out of issue 13: one sub-bundle listed thousands of times was loaded as
    /// many times (and its own list again), since the bound counted loads. Now a
    /// manifest listing a sub-bundle twice is refused before any fetch.
    #[test]
    fn a_sub_bundle_listed_twice_is_refused_before_any_fetch() {
        let empty = codec::encode(&list_of(&[], &[]).to_json()).unwrap();
        let fan = list_of(&vec![empty.locator; 7_100], &[]);
        let fan_json = fan.to_json();
        assert!(matches!(
            Manifest::decode(&fan_json),
            Err(BundleError::DuplicateBundle(_))
        ));
        let middle = codec::encode(&fan_json).unwrap();
        let mut blocks = std::collections::HashMap::new();
        blocks.insert(empty.locator, list_of(&[], &[]).to_json());
        blocks.insert(middle.locator, fan_json);
        // The root's list is checked as a whole by `load` too (a caller may not have
        // decoded it): refused with no fetch.
        let (result, fetches) =
            load_counting(list_of(&[middle.locator; 2], &[]), &blocks, Limits::CLIENT);
        assert!(
            matches!(result, Err(BundleError::DuplicateBundle(_))),
            "{result:?}"
        );
        assert_eq!(fetches, 0);
        // Listed once by the root: the middle one's duplicates are refused after one
        // fetch.
        let (result, fetches) =
            load_counting(list_of(&[middle.locator], &[]), &blocks, Limits::CLIENT);
        assert!(
            matches!(result, Err(BundleError::DuplicateBundle(_))),
            "{result:?}"
        );
        assert_eq!(fetches, 1);
        // Listed by two different manifests of one tree: refused as well.
        let a = codec::encode(&list_of(&[empty.locator], &["a"]).to_json()).unwrap();
        let b = codec::encode(&list_of(&[empty.locator], &["b"]).to_json()).unwrap();
        blocks.insert(a.locator, list_of(&[empty.locator], &["a"]).to_json());
        blocks.insert(b.locator, list_of(&[empty.locator], &["b"]).to_json());
        let (result, fetches) = load_counting(
            list_of(&[a.locator, b.locator], &[]),
            &blocks,
            Limits::CLIENT,
        );
        assert!(
            matches!(result, Err(BundleError::DuplicateBundle(_))),
            "{result:?}"
        );
        assert_eq!(fetches, 2);
    }

    /// Distinct sub-bundles: the loader counts them as they are listed, so it fetches at
    /// most `limits.sub_bundles` of them, and stops at the entry and byte caps.
    #[test]
    fn the_loader_stops_at_its_caps() {
        let limits = Limits {
            sub_bundles: 10,
            depth: 3,
            entries: 1_000,
            manifest_bytes: 1 << 20,
        };
        let mut blocks = std::collections::HashMap::new();
        let mut leaves = Vec::new();
        for i in 0..40 {
            let names: Vec<String> = (0..20).map(|j| format!("f{i}-{j}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let json = list_of(&[], &names).to_json();
            let e = codec::encode(&json).unwrap();
            blocks.insert(e.locator, json);
            leaves.push(e.locator);
        }
        // 40 listed by the root at once: refused before any fetch.
        let (result, fetches) = load_counting(list_of(&leaves, &[]), &blocks, limits);
        assert!(
            matches!(result, Err(BundleError::TooManyBundles(10))),
            "{result:?}"
        );
        assert_eq!(fetches, 0);
        // 4 lists of 10: the first list fits (4 + 10 = 14 > 10 is refused when the
        // first list is merged), after one fetch.
        let mut lists = Vec::new();
        for group in leaves.chunks(10) {
            let json = list_of(group, &[]).to_json();
            let e = codec::encode(&json).unwrap();
            blocks.insert(e.locator, json);
            lists.push(e.locator);
        }
        let (result, fetches) = load_counting(list_of(&lists, &[]), &blocks, limits);
        assert!(
            matches!(result, Err(BundleError::TooManyBundles(10))),
            "{result:?}"
        );
        assert_eq!(fetches, 1);
        // Within the count, the entry cap: 20 entries a leaf, 1,000 at most.
        let big = Limits {
            sub_bundles: 100,
            entries: 150,
            ..limits
        };
        let (result, fetches) = load_counting(list_of(&leaves, &[]), &blocks, big);
        assert!(
            matches!(result, Err(BundleError::TooManyEntries(150))),
            "{result:?}"
        );
        assert_eq!(fetches, 8);
        // And the byte cap, counted before a manifest is parsed.
        let leaf_bytes = blocks[&leaves[0]].len();
        let small = Limits {
            sub_bundles: 100,
            entries: 100_000,
            manifest_bytes: 3 * leaf_bytes + 10,
            ..limits
        };
        let (result, _) = load_counting(list_of(&leaves[..5], &[]), &blocks, small);
        assert!(
            matches!(result, Err(BundleError::TooLarge(_))),
            "{result:?}"
        );
        // Depth: a chain of lists one deeper than allowed.
        let mut top = leaves[0];
        for _ in 0..3 {
            let json = list_of(&[top], &[]).to_json();
            let e = codec::encode(&json).unwrap();
            blocks.insert(e.locator, json);
            top = e.locator;
        }
        let (result, fetches) = load_counting(list_of(&[top], &[]), &blocks, limits);
        assert!(matches!(result, Err(BundleError::TooDeep(3))), "{result:?}");
        assert_eq!(fetches, 3);
        // Everything within bounds loads.
        let (result, fetches) = load_counting(list_of(&leaves[..5], &[]), &blocks, limits);
        assert_eq!(result.unwrap().files.len(), 100);
        assert_eq!(fetches, 5);
    }

    /// Resolving is linear in the path: a path of 2,000 components resolves (or not)
    /// with one hash step each, and paths past the bounds are not found.
    #[test]
    fn long_paths_resolve_within_bounds() {
        let deep: Vec<&str> = vec!["d"; MAX_PATH_COMPONENTS];
        let deep_path = deep.join("/");
        let mut m = Manifest::default();
        m.files.insert(format!("{deep_path}/f"), file(b"x"));
        m.files.insert("top".into(), file(b"y"));
        let mut link = FileEntry::empty();
        link.link = Some("top".into());
        m.files.insert("alias".into(), link);
        let t = Tree::single(m).unwrap();
        // At the component bound: a directory; one more is past it.
        assert_eq!(t.lookup(&deep_path), Lookup::Directory(deep_path.clone()));
        assert_eq!(t.lookup(&format!("{deep_path}/f")), Lookup::NotFound);
        // `..` climbs back: 1,000 down and 1,000 up, then through the link.
        let wander = format!("{}{}alias", "x/".repeat(1_000), "../".repeat(1_000));
        assert!(matches!(t.lookup(&wander), Lookup::File(ref p, _) if p == "top"));
        assert_eq!(t.lookup(&"../".repeat(3)), Lookup::NotFound);
        assert_eq!(t.lookup(&"a".repeat(MAX_PATH_BYTES + 1)), Lookup::NotFound);
        // Links are still found along a long path (the hash of each prefix).
        let mut m = Manifest::default();
        m.files.insert("real/deep/file".into(), file(b"z"));
        m.directories
            .insert("a/b/c".into(), Some("../../real".into()));
        let t = Tree::single(m).unwrap();
        assert!(matches!(
            t.lookup("a/b/c/deep/file"),
            Lookup::File(ref p, _) if p == "real/deep/file"
        ));
        assert_eq!(
            t.lookup("a/b/c/deep"),
            Lookup::Directory("real/deep".into())
        );
    }

    /// Checking that nothing lies under a file is linear in a path's length: a manifest
    /// path of 100,000 components (200 KB) used to hash each of its prefixes whole
    /// (about 10^10 bytes hashed; minutes in a debug build).
    #[test]
    fn nesting_checks_are_linear_in_path_length() {
        let deep = "a/".repeat(100_000);
        let mut m = Manifest::default();
        m.files.insert(format!("{deep}f"), file(b"x"));
        m.files.insert("b".into(), file(b"y"));
        assert!(Tree::single(m.clone()).is_ok());
        // An overlap at the far end is still found.
        m.files
            .insert(deep.trim_end_matches('/').to_owned(), file(b"z"));
        assert!(matches!(Tree::single(m), Err(BundleError::Overlap(..))));
    }

    /// Pages of a listing follow one another with the cursor, and every entry appears
    /// once; a directory with children is skipped as a whole, a leaf right after itself.
    #[test]
    fn listings_come_in_pages() {
        let mut m = Manifest::default();
        for name in ["a.txt", "a/x", "a/y", "a!b", "b", "c/d/e", "z"] {
            m.files.insert(name.into(), file(name.as_bytes()));
        }
        m.directories.insert("empty".into(), None);
        m.directories.insert("empty!".into(), Some("a".into()));
        let t = Tree::single(m).unwrap();
        let whole: Vec<_> = t
            .list_page("", None, usize::MAX, usize::MAX)
            .entries
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(
            whole,
            ["a!b", "a.txt", "a", "b", "c", "empty", "empty!", "z"]
        );
        for per in 1..=whole.len() {
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = t.list_page("", after.as_deref(), per, usize::MAX);
                assert!(page.entries.len() <= per);
                seen.extend(page.entries.into_iter().map(|e| e.name));
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, whole, "{per} a page");
        }
        // The byte bound ends a page early, never before its first entry.
        let page = t.list_page("", None, usize::MAX, 1);
        assert_eq!(page.entries.len(), 1);
        assert_eq!(page.next.as_deref(), Some("a!b"));
        let page = t.list_page("a", None, usize::MAX, usize::MAX);
        assert_eq!(page.entries.len(), 2);
        assert_eq!(page.next, None);
    }

    #[test]
    fn times_round_trip_to_the_microsecond() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let m = modified_of(t);
        let back = time_of(m);
        let diff = back.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128
            - 1_700_000_000_123_456_000i128;
        assert_eq!(diff, 0);
        assert_eq!(modified_of(time_of(0.0)), 0.0);
        assert_eq!(
            time_of(-MODIFIED_EPOCH_UNIX - 10.0),
            UNIX_EPOCH - Duration::from_secs(10)
        );
    }
}
