//! Path patterns of `backup run --exclude` and `backup find`, and the exclusion rules
//! of a run (patterns, pattern files, cache directories).
//!
//! Patterns are globs (the `globset` crate) matched against absolute paths:
//! `*` and `?` never match `/`, `**` matches any number of directories, `[abc]` and
//! `{a,b}` work as in a shell, `\` escapes. A pattern without `/` is matched against the
//! name of each file or directory (`*.tmp`, `node_modules`), at any depth; a pattern
//! starting with `/` against the whole path (`/home/me/data/tmp`); any other pattern
//! against the end of the path (`build/*.o` is `**/build/*.o`). A trailing `/` is
//! ignored. Matching is case-sensitive. A directory excluded is not walked.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// The Cache Directory Tagging specification's file name.
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";

/// The first bytes of a valid `CACHEDIR.TAG` (the specification's signature).
pub const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// A compiled list of patterns.
#[derive(Debug, Clone)]
pub struct Patterns {
    names: GlobSet,
    paths: GlobSet,
    count: usize,
}

impl Patterns {
    /// Compiles `patterns`; `what` names the option in error messages.
    pub fn new(patterns: &[String], what: &str) -> anyhow::Result<Patterns> {
        let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for raw in patterns {
            let pattern = match raw.trim_end_matches('/') {
                "" if raw.starts_with('/') => "/",
                p => p,
            };
            if pattern.is_empty() {
                bail!("{what} {raw:?}: the pattern is empty");
            }
            let (set, text) = if !pattern.contains('/') {
                (&mut names, pattern.to_owned())
            } else if pattern.starts_with('/') {
                (&mut paths, pattern.to_owned())
            } else {
                (&mut paths, format!("**/{pattern}"))
            };
            let glob = GlobBuilder::new(&text)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| anyhow::anyhow!("{what} {raw:?}: {}", e.kind()))?;
            set.add(glob);
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| anyhow::anyhow!("{what}: {e}"));
        Ok(Patterns {
            names: build(names)?,
            paths: build(paths)?,
            count: patterns.len(),
        })
    }

    /// True when no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// True when a pattern matches `path` (absolute, `/`-separated).
    pub fn matches(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        self.names.is_match(name) || self.paths.is_match(path)
    }
}

/// Patterns of an `--exclude-file`: one a line; blank lines and lines starting with `#`
/// are skipped, surrounding white space is not part of a pattern.
pub fn read_pattern_file(file: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the exclude file {}", file.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// What a run leaves out.
#[derive(Debug, Clone)]
pub struct Exclude {
    patterns: Patterns,
    caches: bool,
}

impl Exclude {
    /// Nothing left out.
    pub fn none() -> Exclude {
        Exclude {
            patterns: Patterns::new(&[], "--exclude").unwrap_or_else(|_| unreachable!()),
            caches: false,
        }
    }

    /// `--exclude` patterns, those of `--exclude-file`s, and `--exclude-caches`.
    pub fn new(patterns: &[String], files: &[PathBuf], caches: bool) -> anyhow::Result<Exclude> {
        let mut all = patterns.to_vec();
        for file in files {
            all.extend(read_pattern_file(file)?);
        }
        Ok(Exclude {
            patterns: Patterns::new(&all, "--exclude")?,
            caches,
        })
    }

    /// A filter for one scan: true to keep `path`. Remembers the tagged cache
    /// directories it has seen (a directory is checked before its entries) and the
    /// paths it left out.
    pub fn filter(&self) -> Filter<'_> {
        Filter {
            exclude: self,
            tagged: RefCell::new(BTreeSet::new()),
            excluded: RefCell::new(BTreeSet::new()),
        }
    }
}

/// One scan's exclusion state (see `Exclude::filter`).
pub struct Filter<'a> {
    exclude: &'a Exclude,
    tagged: RefCell<BTreeSet<PathBuf>>,
    excluded: RefCell<BTreeSet<PathBuf>>,
}

impl Filter<'_> {
    /// True to keep `path` (a directory when `is_dir`).
    pub fn keep(&self, path: &Path, is_dir: bool) -> bool {
        let text = path.to_str().unwrap_or_default();
        let mut out = !self.exclude.patterns.matches(text);
        if out && self.exclude.caches {
            let in_tagged = path
                .parent()
                .is_some_and(|p| self.tagged.borrow().contains(p));
            if in_tagged && path.file_name().is_some_and(|n| n != CACHEDIR_TAG) {
                out = false;
            }
            if out && is_dir && is_cache_dir(path) {
                self.tagged.borrow_mut().insert(path.to_owned());
            }
        }
        if !out {
            self.excluded.borrow_mut().insert(path.to_owned());
        }
        out
    }

    /// Paths left out (a directory counts once, its entries not at all).
    pub fn excluded(&self) -> usize {
        self.excluded.borrow().len()
    }
}

/// True when `dir` holds a `CACHEDIR.TAG` starting with the specification's signature.
pub fn is_cache_dir(dir: &Path) -> bool {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(dir.join(CACHEDIR_TAG)) else {
        return false;
    };
    let mut head = Vec::with_capacity(CACHEDIR_SIGNATURE.len());
    file.take(CACHEDIR_SIGNATURE.len() as u64)
        .read_to_end(&mut head)
        .is_ok_and(|_| head == CACHEDIR_SIGNATURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[&str]) -> Patterns {
        let owned: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        Patterns::new(&owned, "--exclude").unwrap()
    }

    #[test]
    fn names_paths_and_suffixes() {
        let names = p(&["*.tmp", "node_modules"]);
        assert!(names.matches("/home/a/x.tmp"));
        assert!(names.matches("/home/a/b/node_modules"));
        assert!(!names.matches("/home/a/x.tmpl"));
        assert!(!names.matches("/home/node_modules_old"));
        let anchored = p(&["/home/a/cache/"]);
        assert!(anchored.matches("/home/a/cache"));
        assert!(!anchored.matches("/x/home/a/cache"));
        let suffix = p(&["build/*.o"]);
        assert!(suffix.matches("/src/build/main.o"));
        assert!(!suffix.matches("/src/build/sub/main.o"));
        let deep = p(&["/data/**/*.log"]);
        assert!(deep.matches("/data/a/b/c.log"));
        assert!(deep.matches("/data/c.log"));
        assert!(!p(&[]).matches("/anything"));
        assert!(p(&[]).is_empty());
    }

    #[test]
    fn bad_patterns_are_refused_by_name() {
        let err = Patterns::new(&["a[".into()], "--exclude").unwrap_err();
        assert!(format!("{err}").contains("--exclude \"a[\""), "{err}");
        assert!(Patterns::new(&["".into()], "--exclude").is_err());
    }

    #[test]
    fn cache_directories_keep_only_their_tag() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        std::fs::write(
            cache.join(CACHEDIR_TAG),
            b"Signature: 8a477f597d28d172789f06886806bc55\n# x",
        )
        .unwrap();
        let fake = dir.path().join("fake");
        std::fs::create_dir(&fake).unwrap();
        std::fs::write(fake.join(CACHEDIR_TAG), b"Signature: nope").unwrap();
        let exclude = Exclude::new(&[], &[], true).unwrap();
        let filter = exclude.filter();
        assert!(filter.keep(&cache, true));
        assert!(filter.keep(&cache.join(CACHEDIR_TAG), false));
        assert!(!filter.keep(&cache.join("blob"), false));
        assert!(filter.keep(&fake, true));
        assert!(filter.keep(&fake.join("blob"), false));
        assert_eq!(filter.excluded(), 1);
    }
}
