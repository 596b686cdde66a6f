//! Reading a bundle by path: resolving a path (links followed) and listing a directory a
//! page at a time, over a whole `Tree` in memory or over an `Outline`, which holds only the
//! root manifest and, for each sub-bundle with entries, the range of paths it holds, and
//! loads a sub-bundle only when a path can lie in it. A node serves anyone's bundles
//! through outlines, so a million-entry bundle costs one pass over its manifests to
//! outline and then a block or two per request, never the whole tree in memory.
//! Knows the manifest model; never where blocks come from (the caller's `Loader`).

use std::collections::VecDeque;
use std::future::Future;
use std::hash::RandomState;
use std::ops::Bound;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::{
    Budget, BundleError, FileEntry, Limits, ListEntry, ListPage, LoadError, MAX_LINK_HOPS,
    MAX_PATH_BYTES, MAX_PATH_COMPONENTS, Manifest, PrefixHash, Tree, path_hash,
};
use crate::codec::Locator;

/// Most sub-bundles whose path ranges may hold any one path (in files or directories
/// alone): `pack` writes disjoint ranges (1). Each one that may hold a path is loaded to
/// answer for it, so this bounds the blocks one lookup reads.
pub const MAX_PART_OVERLAP: usize = 4;

/// What a path in a bundle names.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// A file (links already followed): its resolved path and entry.
    File(String, FileEntry),
    /// A directory (the root is `""`), resolved.
    Directory(String),
    /// Nothing (or a link leading out of the bundle or in circles).
    NotFound,
}

/// What a path of the manifests' maps holds.
enum Leaf {
    File(FileEntry),
    /// An empty directory (`None`) or a link to one.
    Directory(Option<String>),
}

/// Where lookups and listings read entries: each call answers for the whole tree.
trait Entries: Sync {
    type Error;
    /// The file (or file link) at exactly `path`.
    fn file(&self, path: &str) -> impl Future<Output = Result<Option<FileEntry>, Self::Error>>;
    /// The empty directory (`Some(None)`) or directory link at exactly `path`.
    fn directory(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<Option<String>>, Self::Error>>;
    /// The first path (of files and directories alike) at or after `from`, in byte order.
    fn first_key(
        &self,
        from: &Bound<String>,
    ) -> impl Future<Output = Result<Option<String>, Self::Error>>;
    /// The hash key and the sorted hashes (`path_hash`) of every link's path.
    fn links(&self) -> (&RandomState, &[u64]);
    /// Whether this answer has read as many blocks as one page may (`Loader::spent`).
    fn spent(&self) -> bool {
        false
    }
}

/// Whether `key` lies at or after `from`.
fn reaches(key: &str, from: &Bound<String>) -> bool {
    match from {
        Bound::Included(f) => key >= f.as_str(),
        Bound::Excluded(f) => key > f.as_str(),
        Bound::Unbounded => true,
    }
}

/// The lesser of two optional keys (`None` is "none found", not "least").
fn least(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Tree {
    /// The first path at or after `from` in this tree's maps.
    fn first_here(&self, from: &Bound<String>) -> Option<String> {
        let range = (from.as_ref(), Bound::Unbounded);
        let file = self.files.range::<String, _>(range).next().map(|(k, _)| k);
        let dir = self
            .directories
            .range::<String, _>(range)
            .next()
            .map(|(k, _)| k);
        least(file.cloned(), dir.cloned())
    }

    /// What `path` (decoded, without leading or trailing `/`; `""` for the root) names,
    /// following links that stay inside the bundle.
    pub fn lookup(&self, path: &str) -> Lookup {
        let Ok(found) = now(lookup(self, path));
        found
    }

    /// Up to `limit` entries directly inside directory `dir` (`""` for the root), in
    /// path order, starting after the cursor `after` (a previous page's `next`); the
    /// page also ends once its names and link targets reach `max_bytes`.
    pub fn list_page(
        &self,
        dir: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> ListPage {
        let Ok(page) = now(list_page(self, dir, after, limit, max_bytes));
        page
    }
}

impl Entries for Tree {
    type Error = std::convert::Infallible;

    async fn file(&self, path: &str) -> Result<Option<FileEntry>, Self::Error> {
        Ok(self.files.get(path).cloned())
    }

    async fn directory(&self, path: &str) -> Result<Option<Option<String>>, Self::Error> {
        Ok(self.directories.get(path).cloned())
    }

    async fn first_key(&self, from: &Bound<String>) -> Result<Option<String>, Self::Error> {
        Ok(self.first_here(from))
    }

    fn links(&self) -> (&RandomState, &[u64]) {
        let (state, links) = self.links.get_or_init(|| {
            let state = RandomState::new();
            let files = self.files.iter().filter(|(_, f)| f.link.is_some());
            let dirs = self.directories.iter().filter(|(_, t)| t.is_some());
            let links = files
                .map(|(p, _)| p)
                .chain(dirs.map(|(p, _)| p))
                .map(|p| path_hash(&state, p))
                .collect::<Vec<u64>>();
            let mut links = links;
            links.sort_unstable();
            (state, links)
        });
        (state, links)
    }
}

/// Runs a future that never waits (a `Tree`'s entries are all in memory) to its end.
fn now<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        // A tree's entry calls are ready at once, so the first poll finishes.
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// What `path` names (see `Tree::lookup`).
async fn lookup<E: Entries>(entries: &E, path: &str) -> Result<Lookup, E::Error> {
    let Some(resolved) = resolve(entries, path).await? else {
        return Ok(Lookup::NotFound);
    };
    if let Some(file) = entries.file(&resolved).await? {
        return Ok(Lookup::File(resolved, file));
    }
    if is_directory(entries, &resolved).await? {
        return Ok(Lookup::Directory(resolved));
    }
    Ok(Lookup::NotFound)
}

/// Whether `path` is the root, an empty directory, or has entries below it.
async fn is_directory<E: Entries>(entries: &E, path: &str) -> Result<bool, E::Error> {
    if path.is_empty() || entries.directory(path).await? == Some(None) {
        return Ok(true);
    }
    let prefix = format!("{path}/");
    let first = entries.first_key(&Bound::Included(prefix.clone())).await?;
    Ok(first.is_some_and(|k| k.starts_with(&prefix)))
}

/// `path` with every link along it replaced by its target; `None` when a link leaves
/// the bundle, the hops run out, or the path grows past `MAX_PATH_BYTES` or
/// `MAX_PATH_COMPONENTS`. Linear in the path: the resolved path grows in place, and each
/// prefix is tested for a link by a hash folded one component at a time (an entry is
/// read only on a hash match).
async fn resolve<E: Entries>(entries: &E, path: &str) -> Result<Option<String>, E::Error> {
    let (state, links) = entries.links();
    // Components still to walk, the next one last.
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .rev()
        .map(str::to_owned)
        .collect();
    let mut current = String::new();
    // For each component of `current`: the length and hash of the path before it.
    let mut levels: Vec<(usize, PrefixHash)> = Vec::new();
    let mut hash = PrefixHash::new(state);
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                let Some((len, before)) = levels.pop() else {
                    return Ok(None);
                };
                current.truncate(len);
                hash = before;
                continue;
            }
            _ => {}
        }
        levels.push((current.len(), hash.clone()));
        if !current.is_empty() {
            current.push('/');
        }
        current.push_str(&part);
        let at = hash.push(&part);
        if current.len() > MAX_PATH_BYTES || levels.len() > MAX_PATH_COMPONENTS {
            return Ok(None);
        }
        if links.binary_search(&at).is_err() {
            continue;
        }
        let target = match entries.file(&current).await? {
            Some(FileEntry { link: Some(t), .. }) => t,
            _ => match entries.directory(&current).await? {
                Some(Some(t)) => t,
                _ => continue,
            },
        };
        hops += 1;
        if hops > MAX_LINK_HOPS || target.starts_with('/') {
            return Ok(None);
        }
        let Some((len, before)) = levels.pop() else {
            return Ok(None);
        };
        current.truncate(len);
        hash = before;
        pending.extend(
            target
                .split('/')
                .filter(|p| !p.is_empty())
                .rev()
                .map(str::to_owned),
        );
        if pending.len() > MAX_PATH_COMPONENTS {
            return Ok(None);
        }
    }
    Ok(Some(current))
}

/// One page of directory `dir` (see `Tree::list_page`). Each entry costs one
/// `first_key` and, for a leaf, one read of its entry, whatever lies below it: a listing
/// never walks the tree.
async fn list_page<E: Entries>(
    entries: &E,
    dir: &str,
    after: Option<&str>,
    limit: usize,
    max_bytes: usize,
) -> Result<ListPage, E::Error> {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let mut from = match after {
        None => Bound::Included(prefix.clone()),
        Some(cursor) => match cursor.strip_suffix('/') {
            // Past everything under that directory: `0` follows `/` in ASCII.
            Some(name) => Bound::Included(format!("{prefix}{name}0")),
            None => Bound::Excluded(format!("{prefix}{cursor}")),
        },
    };
    let mut page = ListPage::default();
    let mut bytes = 0usize;
    let mut cursor = String::new();
    while let Some(path) = entries.first_key(&from).await? {
        let Some(rest) = path.strip_prefix(&prefix) else {
            break;
        };
        // A page ends at its bounds, never before its first entry.
        let full = page.entries.len() >= limit || bytes >= max_bytes;
        if full || (!page.entries.is_empty() && entries.spent()) {
            page.next = Some(cursor);
            break;
        }
        // A directory with entries below resumes past all of them (`/` form of the
        // cursor); a leaf right after itself (bare form).
        let entry = match rest.split_once('/') {
            Some((name, _)) => {
                cursor = format!("{name}/");
                from = Bound::Included(format!("{prefix}{name}0"));
                ListEntry {
                    name: name.to_owned(),
                    kind: "dir",
                    size: None,
                    modified: None,
                    link: None,
                }
            }
            None => {
                let leaf = match entries.file(&path).await? {
                    Some(file) => Leaf::File(file),
                    None => Leaf::Directory(entries.directory(&path).await?.flatten()),
                };
                rest.clone_into(&mut cursor);
                let entry = list_entry(rest, leaf);
                from = Bound::Excluded(path);
                entry
            }
        };
        bytes += entry.name.len() + entry.link.as_ref().map_or(0, String::len);
        page.entries.push(entry);
    }
    Ok(page)
}

/// The listing entry of a leaf directly inside the listed directory.
fn list_entry(name: &str, leaf: Leaf) -> ListEntry {
    let name = name.to_owned();
    match leaf {
        Leaf::File(f) => ListEntry {
            name,
            kind: if f.link.is_some() { "link" } else { "file" },
            size: f.link.is_none().then_some(f.size),
            modified: Some(f.modified),
            link: f.link,
        },
        Leaf::Directory(Some(target)) => ListEntry {
            name,
            kind: "link",
            size: None,
            modified: None,
            link: Some(target),
        },
        Leaf::Directory(None) => ListEntry {
            name,
            kind: "dir",
            size: None,
            modified: None,
            link: None,
        },
    }
}

/// A sub-bundle that holds entries, and the first and last path of each of its maps.
#[derive(Debug, Clone)]
pub struct Part {
    /// Where its manifest block is.
    pub locator: Locator,
    files: Option<(String, String)>,
    directories: Option<(String, String)>,
}

impl Part {
    /// The part of `manifest` (at `locator`); `None` when it holds no entries.
    fn of(locator: Locator, manifest: &Manifest) -> Option<Part> {
        fn span<V>(map: &std::collections::BTreeMap<String, V>) -> Option<(String, String)> {
            let first = map.keys().next()?;
            let last = map.keys().next_back()?;
            Some((first.clone(), last.clone()))
        }
        let part = Part {
            locator,
            files: span(&manifest.files),
            directories: span(&manifest.directories),
        };
        (part.files.is_some() || part.directories.is_some()).then_some(part)
    }

    fn spans(&self) -> impl Iterator<Item = &(String, String)> {
        self.files.iter().chain(self.directories.iter())
    }

    fn footprint(&self) -> usize {
        std::mem::size_of::<Part>()
            + self
                .spans()
                .map(|(a, b)| a.capacity() + b.capacity())
                .sum::<usize>()
    }
}

/// Reads a sub-bundle of an outline: its manifest, parsed (`Tree::part`). A node reads
/// them through its block cache and keeps the parsed ones in a cache of its own.
pub trait Loader: Sync {
    /// Why a part could not be read.
    type Error;
    /// The entries of `part`'s manifest block.
    fn part(&self, part: &Part) -> impl Future<Output = Result<Arc<Tree>, Self::Error>> + Send;
    /// True once this loader has read as many blocks as one answer should: a listing
    /// page then ends early (its `next` cursor resumes it), so one request's work stays
    /// bounded when each entry lies in another sub-bundle.
    fn spent(&self) -> bool {
        false
    }
}

/// A bundle as a server holds it: the root manifest's entries, and for each sub-bundle
/// holding entries, the ranges of paths it holds (a few strings, not its entries). Built
/// by one pass over all manifests (`build`), which checks the whole tree as `Tree::load`
/// does; then a lookup reads only the sub-bundles whose ranges can hold the path (one,
/// for what `pack` writes).
#[derive(Debug)]
pub struct Outline {
    root: Tree,
    parts: Vec<Part>,
    state: RandomState,
    /// `path_hash` (with `state`) of every link's path, in any block, sorted.
    links: Vec<u64>,
    /// Entries (files and directories) in all manifests.
    pub entries: usize,
    /// Bytes of all manifests (decrypted JSON).
    pub manifest_bytes: usize,
}

impl Outline {
    /// Outlines the bundle whose root manifest is `root`, fetching sub-bundles with
    /// `fetch` one at a time (a sub-bundle's manifest as `Manifest::decode_sub` reads
    /// it, and its size in bytes; a server parses them off its async threads) and
    /// keeping none of their entries. Bounded as `Tree::load`
    /// (sub-bundles counted when listed, entries and bytes before they are kept); also
    /// refuses a tree whose blocks list one path twice or an entry under a file, a link
    /// or an empty directory, and blocks whose path ranges overlap more than
    /// `MAX_PART_OVERLAP` deep. Memory beyond one manifest: 8 bytes per entry and per
    /// directory implied by the paths, briefly. Each sub-bundle holding entries is
    /// handed to `keep` as it is read (a server caches the parts it can).
    pub async fn build<E, F, Fut, K>(
        root: Manifest,
        root_bytes: usize,
        limits: Limits,
        mut fetch: F,
        mut keep: K,
    ) -> Result<Outline, LoadError<E>>
    where
        F: FnMut(Locator) -> Fut,
        Fut: Future<Output = Result<(Manifest, usize), E>>,
        K: FnMut(Locator, Tree),
    {
        let mut budget = Budget::new(limits);
        let mut queue = VecDeque::new();
        let mut check = Consistency::new(limits.entries);
        budget.bytes(root_bytes)?;
        budget.admit(&root, 0, &mut queue)?;
        check.add(&root)?;
        let mut entries = root.files.len() + root.directories.len();
        let mut parts = Vec::new();
        let root = Tree::part(root, root_bytes);
        while let Some((locator, depth)) = queue.pop_front() {
            let (manifest, bytes) = fetch(locator).await.map_err(LoadError::Fetch)?;
            budget.bytes(bytes)?;
            budget.admit(&manifest, depth, &mut queue)?;
            check.add(&manifest)?;
            entries += manifest.files.len() + manifest.directories.len();
            if let Some(part) = Part::of(locator, &manifest) {
                parts.push(part);
                keep(locator, Tree::part(manifest, bytes));
            }
        }
        let (state, links) = check.finish()?;
        check_overlap(parts.iter().filter_map(|p| p.files.as_ref()))?;
        check_overlap(parts.iter().filter_map(|p| p.directories.as_ref()))?;
        Ok(Outline {
            root,
            parts,
            state,
            links,
            entries,
            manifest_bytes: budget.bytes,
        })
    }

    /// The sub-bundles holding entries.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// An estimate of the memory this outline holds, for caches.
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Outline>()
            + self.root.footprint()
            + self.parts.iter().map(Part::footprint).sum::<usize>()
            + self.links.capacity() * std::mem::size_of::<u64>()
    }

    /// What `path` names (as `Tree::lookup`), reading parts through `loader`.
    pub async fn lookup<L: Loader>(&self, path: &str, loader: &L) -> Result<Lookup, L::Error> {
        lookup(
            &View {
                outline: self,
                loader,
            },
            path,
        )
        .await
    }

    /// One page of directory `dir` (as `Tree::list_page`), reading parts through
    /// `loader`: a page reads the parts its entries lie in.
    pub async fn list_page<L: Loader>(
        &self,
        dir: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
        loader: &L,
    ) -> Result<ListPage, L::Error> {
        let view = View {
            outline: self,
            loader,
        };
        list_page(&view, dir, after, limit, max_bytes).await
    }
}

/// Refuses spans (closed ranges of paths) that overlap more than `MAX_PART_OVERLAP` deep.
fn check_overlap<'a>(spans: impl Iterator<Item = &'a (String, String)>) -> Result<(), BundleError> {
    // Starts sort before ends at one key: both contain it.
    let mut edges: Vec<(&str, bool)> = spans
        .flat_map(|(first, last)| [(first.as_str(), false), (last.as_str(), true)])
        .collect();
    edges.sort_unstable();
    let mut depth = 0usize;
    for (_, end) in edges {
        if end {
            depth = depth.saturating_sub(1);
        } else {
            depth += 1;
            if depth > MAX_PART_OVERLAP {
                return Err(BundleError::Inconsistent(
                    "the sub-bundles' path ranges overlap too much",
                ));
            }
        }
    }
    Ok(())
}

/// An outline with a way to read its parts: the `Entries` of the whole tree.
struct View<'a, L> {
    outline: &'a Outline,
    loader: &'a L,
}

impl<L: Loader> View<'_, L> {
    /// The parts whose span of one map (`files` or `directories`) holds `path`.
    fn holding<'a>(
        &'a self,
        path: &'a str,
        span: fn(&Part) -> Option<&(String, String)>,
    ) -> impl Iterator<Item = &'a Part> + 'a {
        self.outline.parts.iter().filter(move |p| {
            span(p).is_some_and(|(first, last)| first.as_str() <= path && path <= last.as_str())
        })
    }
}

impl<L: Loader> Entries for View<'_, L> {
    type Error = L::Error;

    async fn file(&self, path: &str) -> Result<Option<FileEntry>, Self::Error> {
        if let Some(file) = self.outline.root.files.get(path) {
            return Ok(Some(file.clone()));
        }
        for part in self.holding(path, |p| p.files.as_ref()) {
            if let Some(file) = self.loader.part(part).await?.files.get(path) {
                return Ok(Some(file.clone()));
            }
        }
        Ok(None)
    }

    async fn directory(&self, path: &str) -> Result<Option<Option<String>>, Self::Error> {
        if let Some(dir) = self.outline.root.directories.get(path) {
            return Ok(Some(dir.clone()));
        }
        for part in self.holding(path, |p| p.directories.as_ref()) {
            if let Some(dir) = self.loader.part(part).await?.directories.get(path) {
                return Ok(Some(dir.clone()));
            }
        }
        Ok(None)
    }

    async fn first_key(&self, from: &Bound<String>) -> Result<Option<String>, Self::Error> {
        // A span starting at or after `from` starts with its first such key: known
        // without reading it. Only spans that hold `from` itself are read.
        let mut known: Option<&str> = None;
        let mut straddling: Vec<&Part> = Vec::new();
        for part in &self.outline.parts {
            for (first, last) in part.spans() {
                if !reaches(last, from) {
                    continue;
                }
                if reaches(first, from) {
                    known = Some(known.map_or(first.as_str(), |k| k.min(first.as_str())));
                } else if !straddling.iter().any(|p| std::ptr::eq(*p, part)) {
                    straddling.push(part);
                }
            }
        }
        let mut best = least(self.outline.root.first_here(from), known.map(str::to_owned));
        for part in straddling {
            let found = self.loader.part(part).await?.first_here(from);
            best = least(best, found);
        }
        Ok(best)
    }

    fn links(&self) -> (&RandomState, &[u64]) {
        (&self.outline.state, &self.outline.links)
    }

    fn spent(&self) -> bool {
        self.loader.spent()
    }
}

/// The checks of a whole tree made while outlining it, one block at a time, by keyed
/// hashes of paths: no path in two blocks (or as file and directory), nothing under a
/// leaf (every entry is a leaf: a file, a link, an empty directory). A hash collision can
/// only refuse a good tree (about one chance in 10^9 for a million entries, and the key
/// is secret), never accept a bad one.
struct Consistency {
    state: RandomState,
    /// Hashes of every entry's path.
    leaves: Vec<u64>,
    /// Hashes of the directories the paths imply (`a` and `a/b` for `a/b/c`), with
    /// repeats until the next `dedup`.
    ancestors: Vec<u64>,
    /// `ancestors.len()` after the last `dedup`.
    distinct: usize,
    links: Vec<u64>,
    /// Most entries, and most implied directories.
    max: usize,
}

impl Consistency {
    fn new(max: usize) -> Consistency {
        Consistency {
            state: RandomState::new(),
            leaves: Vec::new(),
            ancestors: Vec::new(),
            distinct: 0,
            links: Vec::new(),
            max,
        }
    }

    /// Hashes one block's paths. Linear in their bytes: a path's implied directories are
    /// hashed one component at a time, and those it shares with the path before it (in
    /// the same sorted map) are not recorded again.
    fn add(&mut self, manifest: &Manifest) -> Result<(), BundleError> {
        let files = manifest.files.iter().map(|(p, f)| (p, f.link.is_some()));
        let dirs = manifest.directories.iter().map(|(p, t)| (p, t.is_some()));
        self.add_sorted(files)?;
        self.add_sorted(dirs)
    }

    fn add_sorted<'a>(
        &mut self,
        paths: impl Iterator<Item = (&'a String, bool)>,
    ) -> Result<(), BundleError> {
        let mut previous: Vec<&str> = Vec::new();
        for (path, is_link) in paths {
            // Never served (a request path is at most that long), and an outline keeps
            // some paths whole: refused.
            if path.len() > MAX_PATH_BYTES {
                let start = path.chars().take(64).collect();
                return Err(BundleError::BadPath(start, "longer than 4,096 bytes"));
            }
            let parts: Vec<&str> = path.split('/').collect();
            // `previous`'s own directories were recorded with it.
            let shared = previous
                .iter()
                .zip(&parts)
                .take_while(|(a, b)| a == b)
                .count()
                .min(previous.len().saturating_sub(1));
            let mut hash = PrefixHash::new(&self.state);
            for (i, part) in parts.iter().enumerate() {
                let h = hash.push(part);
                if i + 1 == parts.len() {
                    self.leaves.push(h);
                    if is_link {
                        self.links.push(h);
                    }
                } else if i >= shared {
                    self.ancestors.push(h);
                }
            }
            previous = parts;
            let pending = self.ancestors.len();
            if pending > 2 * self.distinct + 4096 || pending > self.max {
                self.dedup();
            }
            if self.leaves.len() > self.max || self.distinct > self.max {
                return Err(BundleError::TooManyEntries(self.max));
            }
        }
        Ok(())
    }

    fn dedup(&mut self) {
        self.ancestors.sort_unstable();
        self.ancestors.dedup();
        self.distinct = self.ancestors.len();
    }

    /// The verdict, and the link hashes with their key.
    fn finish(mut self) -> Result<(RandomState, Vec<u64>), BundleError> {
        self.dedup();
        self.links.sort_unstable();
        self.links.shrink_to_fit();
        self.leaves.sort_unstable();
        if self.leaves.windows(2).any(|w| w[0] == w[1]) {
            return Err(BundleError::Inconsistent(
                "a path is listed twice in the bundle's manifests",
            ));
        }
        // Both sorted: one merge walk.
        let (mut i, mut j) = (0, 0);
        while i < self.leaves.len() && j < self.ancestors.len() {
            match self.leaves[i].cmp(&self.ancestors[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    return Err(BundleError::Inconsistent(
                        "an entry lies under a file, a link or an empty directory",
                    ));
                }
            }
        }
        Ok((self.state, self.links))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::bundle::{Limits, pack};
    use crate::codec::{self, Mode};

    /// Manifest contents by locator, and a count of the parts read.
    struct Blocks {
        contents: HashMap<Locator, Vec<u8>>,
        reads: AtomicUsize,
        /// `spent` once this many parts were read.
        budget: usize,
    }

    impl Loader for Blocks {
        type Error = &'static str;

        fn part(
            &self,
            part: &Part,
        ) -> impl Future<Output = Result<Arc<Tree>, &'static str>> + Send {
            self.reads.fetch_add(1, Ordering::Relaxed);
            let found = self
                .contents
                .get(&part.locator)
                .ok_or("missing")
                .and_then(|c| {
                    let m = Manifest::decode_sub(&part.locator, c).map_err(|_| "bad")?;
                    Ok(Arc::new(Tree::part(m, c.len())))
                });
            std::future::ready(found)
        }

        fn spent(&self) -> bool {
            self.reads.load(Ordering::Relaxed) >= self.budget
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn entry(size: u64) -> FileEntry {
        let content = vec![b'x'; size as usize];
        FileEntry {
            contents: if size == 0 {
                Vec::new()
            } else {
                vec![crate::bundle::Chunk {
                    size,
                    url: codec::encode(&content).unwrap().locator.to_string(),
                }]
            },
            size,
            ..FileEntry::empty()
        }
    }

    /// Packs `files` and `dirs` into blocks of at most `limit` bytes; the root manifest,
    /// its size, and every manifest's content.
    fn packed(
        files: &BTreeMap<String, FileEntry>,
        dirs: &BTreeMap<String, Option<String>>,
        limit: usize,
    ) -> (Manifest, usize, Blocks) {
        let packed = pack(files.clone(), dirs.clone(), limit).unwrap();
        let open = |e: &codec::Encoded| {
            codec::decode(&e.block, Mode::Aes256, &e.locator.key)
                .unwrap()
                .content
        };
        let root = open(&packed.root);
        let contents = packed.subs.iter().map(|e| (e.locator, open(e))).collect();
        let blocks = Blocks {
            contents,
            reads: AtomicUsize::new(0),
            budget: usize::MAX,
        };
        (Manifest::decode(&root).unwrap(), root.len(), blocks)
    }

    fn outline(root: Manifest, bytes: usize, blocks: &Blocks) -> Result<Outline, BundleError> {
        block_on(Outline::build(
            root,
            bytes,
            Limits::CLIENT,
            |l: Locator| {
                let content = blocks.contents.get(&l).ok_or("missing");
                let decoded = content.and_then(|c| {
                    let m = Manifest::decode_sub(&l, c).map_err(|_| "not a manifest")?;
                    Ok((m, c.len()))
                });
                std::future::ready(decoded)
            },
            |_, _| {},
        ))
        .map_err(|e| match e {
            LoadError::Bundle(e) => e,
            LoadError::Fetch(e) => panic!("fetch failed: {e}"),
        })
    }

    /// A site of 3,000 files in nested directories, with links and empty directories,
    /// packed into blocks of 8 KiB: about a hundred sub-bundles in two levels.
    fn site() -> (
        BTreeMap<String, FileEntry>,
        BTreeMap<String, Option<String>>,
    ) {
        let mut files = BTreeMap::new();
        for i in 0..3_000u64 {
            files.insert(format!("d{}/s{}/f{i}.txt", i % 7, i % 13), entry(i % 3));
        }
        files.insert("index.html".into(), entry(5));
        let mut link = FileEntry::empty();
        link.link = Some("../d1/s1/f1.txt".into());
        files.insert("d0/alias.txt".into(), link);
        let mut dirs = BTreeMap::new();
        dirs.insert("empty".into(), None);
        dirs.insert("d3/s5/empty".into(), None);
        dirs.insert("shortcut".into(), Some("d2/s2".into()));
        (files, dirs)
    }

    /// An outline answers every lookup and listing as the whole tree does, reading at
    /// most three sub-bundles for a lookup (and as many for each link followed),
    /// however many the bundle has.
    #[test]
    fn an_outline_answers_as_the_whole_tree() {
        let (files, dirs) = site();
        let (root, bytes, blocks) = packed(&files, &dirs, 8 << 10);
        assert!(blocks.contents.len() > 50, "{}", blocks.contents.len());
        let outline = outline(root, bytes, &blocks).unwrap();
        let tree = Tree::single(Manifest {
            bundles: Vec::new(),
            files: files.clone(),
            directories: dirs.clone(),
        })
        .unwrap();
        assert_eq!(outline.entries, files.len() + dirs.len());
        let mut paths: Vec<String> = files.keys().chain(dirs.keys()).cloned().collect();
        paths.extend(
            [
                "",
                "d0",
                "d1/s1",
                "d3/s5",
                "shortcut",
                "shortcut/f2.txt",
                "d9",
                "d0/s0/nope",
                "d0/alias.txt",
                "index.html/x",
                "d1/s1/../s2",
                "zzz",
                "a",
            ]
            .map(str::to_owned),
        );
        for path in &paths {
            blocks.reads.store(0, Ordering::Relaxed);
            let got = block_on(outline.lookup(path, &blocks)).unwrap();
            assert_eq!(got, tree.lookup(path), "{path}");
            // A file: the block whose range holds it. A directory: the one holding it
            // and those where its entries begin. Each link followed: as much again.
            let hops = usize::from(path.starts_with("shortcut") || path == "d0/alias.txt");
            let reads = blocks.reads.load(Ordering::Relaxed);
            assert!(reads <= 3 * (1 + hops), "{path}: {reads} reads");
        }
        for dir in ["", "d0", "d3/s5", "d6/s12", "empty", "d2"] {
            for per in [1, 7, 1_000] {
                let mut after: Option<String> = None;
                loop {
                    let want = tree.list_page(dir, after.as_deref(), per, usize::MAX);
                    let got = block_on(outline.list_page(
                        dir,
                        after.as_deref(),
                        per,
                        usize::MAX,
                        &blocks,
                    ))
                    .unwrap();
                    assert_eq!(got, want, "{dir} after {after:?}");
                    match got.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
            }
        }
        // The outline holds the root and a few paths per sub-bundle, not the entries.
        assert!(
            outline.footprint() * 10 < tree.footprint(),
            "{}",
            outline.footprint()
        );
    }

    /// Checks across blocks that `Tree::load` makes after merging them: a path in two
    /// blocks, an entry under another block's file, ranges stacked too deep.
    #[test]
    fn an_outline_refuses_what_the_merged_tree_refuses() {
        let build = |blocks: &[Manifest]| {
            let mut store = Blocks {
                contents: HashMap::new(),
                reads: AtomicUsize::new(0),
                budget: usize::MAX,
            };
            let mut urls = Vec::new();
            for m in blocks {
                let json = m.to_json();
                let e = codec::encode(&json).unwrap();
                urls.push(e.locator.to_string());
                store.contents.insert(e.locator, json);
            }
            let root = Manifest {
                bundles: urls,
                ..Manifest::default()
            };
            let bytes = root.to_json().len();
            outline(root, bytes, &store)
        };
        let with = |files: &[&str], dirs: &[&str]| Manifest {
            bundles: Vec::new(),
            files: files.iter().map(|f| (f.to_string(), entry(1))).collect(),
            directories: dirs.iter().map(|d| (d.to_string(), None)).collect(),
        };
        let inconsistent =
            |r: Result<Outline, BundleError>| matches!(r, Err(BundleError::Inconsistent(_)));
        assert!(build(&[with(&["a", "b"], &[]), with(&["c"], &["d"])]).is_ok());
        assert!(inconsistent(build(&[
            with(&["a", "b"], &[]),
            with(&["b"], &[])
        ])));
        assert!(inconsistent(build(&[with(&["a"], &[]), with(&[], &["a"])])));
        assert!(inconsistent(build(&[
            with(&["a"], &[]),
            with(&["a/b/c"], &[])
        ])));
        assert!(inconsistent(build(&[
            with(&["x/y/z"], &[]),
            with(&[], &["x/y"])
        ])));
        // Siblings sharing a prefix are not nested.
        assert!(build(&[with(&["a"], &[]), with(&["a!/b", "a.b/c", "ab/c"], &[])]).is_ok());
        // Interleaved ranges: fine up to the overlap bound, refused past it.
        let stacked = |n: usize| -> Vec<Manifest> {
            (0..n)
                .map(|i| with(&[&format!("a{i}"), &format!("z{i}")], &[]))
                .collect()
        };
        assert!(build(&stacked(MAX_PART_OVERLAP)).is_ok());
        assert!(inconsistent(build(&stacked(MAX_PART_OVERLAP + 1))));
    }

    /// A path no request can name (over `MAX_PATH_BYTES`) is refused rather than kept
    /// in an outline, and the refusal names only its start.
    #[test]
    fn paths_too_long_to_serve_are_refused() {
        let mut m = Manifest::default();
        m.files.insert("a".repeat(MAX_PATH_BYTES), entry(1));
        let bytes = m.to_json().len();
        let build = |m: Manifest| {
            block_on(Outline::build(
                m,
                bytes,
                Limits::CLIENT,
                |_: Locator| std::future::ready(Err::<(Manifest, usize), _>("no fetch")),
                |_, _| {},
            ))
        };
        assert!(build(m.clone()).is_ok());
        m.files.insert("b".repeat(MAX_PATH_BYTES + 1), entry(1));
        match build(m) {
            Err(LoadError::Bundle(e @ BundleError::BadPath(..))) => {
                assert!(e.to_string().len() < 200, "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// Directories implied by paths count against the entry bound: one path of 2,000
    /// components is 2,000 entries' worth of checking.
    #[test]
    fn implied_directories_count_against_the_entry_bound() {
        let mut m = Manifest::default();
        m.files.insert(format!("{}f", "d/".repeat(2_000)), entry(1));
        let bytes = m.to_json().len();
        let limits = Limits {
            entries: 1_000,
            ..Limits::CLIENT
        };
        let result = block_on(Outline::build(
            m,
            bytes,
            limits,
            |_: Locator| std::future::ready(Err::<(Manifest, usize), _>("no fetch")),
            |_, _| {},
        ));
        assert!(matches!(
            result,
            Err(LoadError::Bundle(BundleError::TooManyEntries(1_000)))
        ));
    }

    /// A listing whose every entry lies in another sub-bundle ends its page once the
    /// loader is spent, and the pages still list everything, each once.
    #[test]
    fn a_spent_loader_ends_pages_early() {
        let mut files = BTreeMap::new();
        for i in 0..40 {
            files.insert(format!("f{i:02}"), entry(1));
            for j in 0..60 {
                files.insert(format!("f{i:02}x/{j:02}"), entry(0));
            }
        }
        let (root, bytes, mut blocks) = packed(&files, &BTreeMap::new(), 4 << 10);
        let outline = outline(root, bytes, &blocks).unwrap();
        assert!(outline.parts().len() > 20, "{}", outline.parts().len());
        let whole: Vec<String> = files
            .keys()
            .filter_map(|k| k.split('/').next())
            .map(str::to_owned)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        blocks.budget = 3;
        loop {
            blocks.reads.store(0, Ordering::Relaxed);
            let page =
                block_on(outline.list_page("", after.as_deref(), 1_000, usize::MAX, &blocks))
                    .unwrap();
            assert!(!page.entries.is_empty());
            // Spent after 3 reads: one more entry at most reads one more block.
            assert!(blocks.reads.load(Ordering::Relaxed) <= 4 + 2);
            pages += 1;
            seen.extend(page.entries.into_iter().map(|e| e.name));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let mut sorted = whole.clone();
        sorted.sort_by_key(|n| n.clone() + if files.contains_key(n) { "" } else { "/" });
        assert_eq!(seen, sorted);
        assert!(pages > 5, "{pages} pages");
    }
}
