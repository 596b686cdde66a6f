//! Node configuration: command-line flags over an optional TOML file over defaults,
//! validated once into a `Config`. The only module that reads the environment (for the
//! default store location); every other module receives values from here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::arrivals::WAITER_COST;

/// Default listen address (DESIGN 3).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8042";
/// Default quota: room for ten thousand 1 MiB blocks.
pub const DEFAULT_QUOTA: u64 = 10 << 30;
/// Default time a GET waits for an absent block (DESIGN 3).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(3);
/// Longest wait a request may ask for with `?wait=`; larger values are capped.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Default cap on open connections: well under a default 1024-descriptor limit's worth
/// of sockets plus block files.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default bytes that requests waiting for absent blocks may hold: each holds its
/// connection, about 21 KiB (`WAITER_COST`), so a burst of waiters costs at most this
/// much more than an idle node. It binds only when `max_connections` is raised well
/// above its default (every waiter holds a connection).
pub const DEFAULT_WAITER_MEMORY: u64 = 16 << 20;
/// Default cap on the number of requests waiting for absent blocks: what
/// `DEFAULT_WAITER_MEMORY` pays for at `WAITER_COST` each (780).
pub const DEFAULT_MAX_WAITERS: usize = DEFAULT_WAITER_MEMORY as usize / WAITER_COST;
/// Default background scrub rate: re-hashing at 8 MiB/s costs under 1% of a core.
pub const DEFAULT_SCRUB_RATE: u64 = 8 << 20;
/// Default pause between gossip rounds (announcing to a few peers, pinging quiet ones).
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_secs(30);
/// Default pause between push rounds (offering blocks to the peers that should hold them).
pub const DEFAULT_PUSH_INTERVAL: Duration = Duration::from_secs(10);
/// Default pause between repair rounds (custody checks of kept blocks on their homes).
pub const DEFAULT_REPAIR_INTERVAL: Duration = Duration::from_secs(60);
/// Longest `domain`: a bundle's origin puts two 52-character labels and their dots
/// before it (106 characters), and a host name is at most 253.
pub const MAX_DOMAIN_LEN: usize = 253 - 2 * (52 + 1);
/// Most seed peers accepted on the command line or in the file.
pub const MAX_SEEDS: usize = 64;
/// Default pause between the log's summary lines: often enough to see a node's load
/// change, rare enough that a quiet node's log stays short (1,440 lines a day).
pub const DEFAULT_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Flags of `libernet serve`; each overrides the config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of: store, listen, quota, wait, url, domain, max_connections,
    /// max_waiters, waiter_memory, scrub_rate, hot_cache, content_cache, peers, gossip_interval,
    /// push_interval,
    /// repair_interval, half_life, custody_share, max_upload_rate, max_download_rate,
    /// summary_interval (see libernet.toml in the source).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Store directory [default: $XDG_DATA_HOME/libernet, else ~/.libernet].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8042; port 0 picks a free port].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Most bytes of blocks to keep, e.g. 10GiB, 500MB, 1048576 [default: 10GiB].
    #[arg(long, value_name = "SIZE")]
    pub quota: Option<String>,
    /// Percent of the quota that blocks kept in custody for the mesh (as one of their
    /// homes) may take, 0 to 100 [default: 50].
    #[arg(long, value_name = "PERCENT")]
    pub custody_share: Option<u64>,
    /// Seconds a GET waits for an absent block [default: 3].
    #[arg(long, value_name = "SECS")]
    pub wait: Option<f64>,
    /// Public URL of this node, as peers and `/node` give it [default: http://<listen>].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Domain under which each website gets its own origin, <id>.<key>.DOMAIN (wildcard
    /// DNS for it to this node); `*.localhost` always works [default: none].
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Most connections open at once [default: 512].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// A node to join the mesh through (repeatable), e.g. http://10.0.0.2:8042.
    #[arg(long = "peer", value_name = "URL")]
    pub peers: Vec<String>,
    /// Seconds between gossip rounds; 0 talks to the seed peers only [default: 30].
    #[arg(long, value_name = "SECS")]
    pub gossip_interval: Option<f64>,
    /// Seconds between push rounds; 0 turns pushing off [default: 10].
    #[arg(long, value_name = "SECS")]
    pub push_interval: Option<f64>,
    /// Seconds between repair rounds (kept blocks checked and copied to their homes); 0
    /// turns repair off [default: 60].
    #[arg(long, value_name = "SECS")]
    pub repair_interval: Option<f64>,
    /// Half-life in seconds of a request's weight in a block's value [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub half_life: Option<f64>,
    /// Most bytes a second of mesh traffic sent to peers (pushes, blocks answered to
    /// them), e.g. 10M, 512KiB [default: unlimited].
    #[arg(long, value_name = "RATE")]
    pub max_upload_rate: Option<String>,
    /// Most bytes a second of mesh traffic received from peers (blocks fetched, pushes
    /// taken), e.g. 10M [default: unlimited].
    #[arg(long, value_name = "RATE")]
    pub max_download_rate: Option<String>,
    /// Seconds between the log's summary lines (at info); 0 turns them off [default: 60].
    #[arg(long, value_name = "SECS")]
    pub summary_interval: Option<f64>,
}

/// The config file's shape: every key optional, unknown keys refused.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    store: Option<PathBuf>,
    listen: Option<String>,
    quota: Option<toml::Value>,
    custody_share: Option<i64>,
    wait: Option<f64>,
    url: Option<String>,
    domain: Option<String>,
    max_connections: Option<usize>,
    max_waiters: Option<usize>,
    waiter_memory: Option<toml::Value>,
    scrub_rate: Option<toml::Value>,
    hot_cache: Option<toml::Value>,
    content_cache: Option<toml::Value>,
    peers: Option<Vec<String>>,
    gossip_interval: Option<f64>,
    push_interval: Option<f64>,
    repair_interval: Option<f64>,
    half_life: Option<f64>,
    max_upload_rate: Option<toml::Value>,
    max_download_rate: Option<toml::Value>,
    summary_interval: Option<f64>,
}

/// A bad flag, file or value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The config file is not valid TOML of the expected shape.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("{0}")]
    Invalid(String),
}

/// Validated settings of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Store directory.
    pub store: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Quota in bytes.
    pub quota: u64,
    /// Percent of the quota that custody copies may take (0 to 100).
    pub custody_share: u8,
    /// Default wait for absent blocks.
    pub wait: Duration,
    /// Public URL, if set; else derived from the bound address.
    pub url: Option<String>,
    /// The domain bundles get their own origins under (`<id>.<key>.<domain>`), if any:
    /// lowercase DNS labels, no trailing dot.
    pub domain: Option<String>,
    /// Connection cap.
    pub max_connections: usize,
    /// Waiter cap.
    pub max_waiters: usize,
    /// Bytes waiters may hold (at `WAITER_COST` each); binds before `max_waiters` when
    /// it pays for fewer.
    pub waiter_memory: u64,
    /// Scrub rate in bytes per second; 0 turns the scrub off.
    pub scrub_rate: u64,
    /// Bytes of small blocks kept in memory; 0 turns the hot cache off.
    pub hot_cache: u64,
    /// Bytes of decrypted file blocks kept for hot bundle files; 0 keeps none.
    pub content_cache: u64,
    /// Seed peers' base URLs.
    pub peers: Vec<String>,
    /// Pause between gossip rounds; zero: no gossip (seed links only).
    pub gossip_interval: Duration,
    /// Pause between push rounds; zero: no pushing.
    pub push_interval: Duration,
    /// Pause between repair rounds; zero: no repair.
    pub repair_interval: Duration,
    /// Half-life of a request's weight in a block's value.
    pub half_life: Duration,
    /// Bytes a second of mesh traffic sent to peers; 0: unlimited.
    pub max_upload_rate: u64,
    /// Bytes a second of mesh traffic received from peers; 0: unlimited.
    pub max_download_rate: u64,
    /// Pause between the log's summary lines; zero: none.
    pub summary_interval: Duration,
}

impl Config {
    /// Defaults for a store directory: what tests and embedders start from.
    pub fn for_store(store: &Path) -> Config {
        Config {
            store: store.to_owned(),
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8042))),
            quota: DEFAULT_QUOTA,
            custody_share: crate::store::DEFAULT_CUSTODY_PERCENT,
            wait: DEFAULT_WAIT,
            url: None,
            domain: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_waiters: DEFAULT_MAX_WAITERS,
            waiter_memory: DEFAULT_WAITER_MEMORY,
            scrub_rate: DEFAULT_SCRUB_RATE,
            hot_cache: crate::store::DEFAULT_HOT_CACHE,
            content_cache: crate::node::DEFAULT_CONTENT_CACHE,
            peers: Vec::new(),
            gossip_interval: DEFAULT_GOSSIP_INTERVAL,
            push_interval: DEFAULT_PUSH_INTERVAL,
            repair_interval: DEFAULT_REPAIR_INTERVAL,
            half_life: crate::store::DEFAULT_HALF_LIFE,
            max_upload_rate: 0,
            max_download_rate: 0,
            summary_interval: DEFAULT_SUMMARY_INTERVAL,
        }
    }

    /// Flags over the file named by `--config` over defaults.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(&expand_home(path))?,
            None => FileConfig::default(),
        };
        let store = args
            .store
            .clone()
            .or(file.store)
            .map(|p| expand_home(&p))
            .unwrap_or_else(default_store);
        let mut config = Config::for_store(&store);
        if let Some(listen) = args.listen.as_ref().or(file.listen.as_ref()) {
            config.listen = listen.parse().map_err(|_| {
                ConfigError::Invalid(format!("listen address {listen:?} is not IP:PORT"))
            })?;
        }
        if let Some(quota) = &args.quota {
            config.quota = parse_size(quota)?;
        } else if let Some(quota) = &file.quota {
            config.quota = size_value(quota, "quota")?;
        }
        let share = args.custody_share.map(i128::from);
        if let Some(percent) = share.or(file.custody_share.map(i128::from)) {
            config.custody_share = u8::try_from(percent)
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "custody_share {percent} must be a percent of the quota from 0 to 100"
                    ))
                })?;
        }
        if let Some(secs) = args.wait.or(file.wait) {
            config.wait = parse_wait(secs)?;
        }
        config.url = args.url.clone().or(file.url);
        if let Some(domain) = args.domain.as_ref().or(file.domain.as_ref()) {
            config.domain = Some(parse_domain(domain)?);
        }
        if let Some(n) = args.max_connections.or(file.max_connections) {
            config.max_connections = n;
        }
        if let Some(n) = file.max_waiters {
            config.max_waiters = n;
        }
        if let Some(size) = &file.waiter_memory {
            config.waiter_memory = size_value(size, "waiter_memory")?;
        }
        if let Some(rate) = &file.scrub_rate {
            config.scrub_rate = size_value(rate, "scrub_rate")?;
        }
        if let Some(size) = &file.hot_cache {
            config.hot_cache = size_value(size, "hot_cache")?;
        }
        if let Some(size) = &file.content_cache {
            config.content_cache = size_value(size, "content_cache")?;
        }
        config.peers = if args.peers.is_empty() {
            file.peers.unwrap_or_default()
        } else {
            args.peers.clone()
        };
        for peer in &mut config.peers {
            *peer = peer.trim_end_matches('/').to_owned();
        }
        if let Some(secs) = args.gossip_interval.or(file.gossip_interval) {
            config.gossip_interval = seconds(secs, "gossip_interval", false)?;
        }
        if let Some(secs) = args.push_interval.or(file.push_interval) {
            config.push_interval = seconds(secs, "push_interval", false)?;
        }
        if let Some(secs) = args.repair_interval.or(file.repair_interval) {
            config.repair_interval = seconds(secs, "repair_interval", false)?;
        }
        if let Some(secs) = args.half_life.or(file.half_life) {
            config.half_life = seconds(secs, "half_life", true)?;
        }
        if let Some(rate) = &args.max_upload_rate {
            config.max_upload_rate = parse_rate(rate)?;
        } else if let Some(rate) = &file.max_upload_rate {
            config.max_upload_rate = size_value(rate, "max_upload_rate")?;
        }
        if let Some(rate) = &args.max_download_rate {
            config.max_download_rate = parse_rate(rate)?;
        } else if let Some(rate) = &file.max_download_rate {
            config.max_download_rate = size_value(rate, "max_download_rate")?;
        }
        if let Some(secs) = args.summary_interval.or(file.summary_interval) {
            config.summary_interval = seconds(secs, "summary_interval", false)?;
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.quota < crate::id::MAX_BLOCK_SIZE as u64 {
            return Err(ConfigError::Invalid(format!(
                "quota {} is below one block ({} bytes)",
                self.quota,
                crate::id::MAX_BLOCK_SIZE
            )));
        }
        if self.max_connections == 0 || self.max_waiters == 0 {
            return Err(ConfigError::Invalid(
                "max_connections and max_waiters must be at least 1".into(),
            ));
        }
        if self.waiter_memory < WAITER_COST as u64 {
            return Err(ConfigError::Invalid(format!(
                "waiter_memory {} is below one waiter ({WAITER_COST} bytes)",
                self.waiter_memory
            )));
        }
        if let Some(url) = &self.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "url {url:?} must start with http:// or https://"
            )));
        }
        if self.peers.len() > MAX_SEEDS {
            return Err(ConfigError::Invalid(format!(
                "at most {MAX_SEEDS} --peer seeds, got {}",
                self.peers.len()
            )));
        }
        for peer in &self.peers {
            if !peer.starts_with("http://") || peer.len() <= "http://".len() {
                return Err(ConfigError::Invalid(format!(
                    "peer {peer:?} must be a URL like http://HOST:PORT"
                )));
            }
        }
        Ok(())
    }
}

/// A domain for bundle origins: DNS labels of letters, digits and inner hyphens
/// (lowercased; one trailing dot dropped), at most `MAX_DOMAIN_LEN` characters, not an
/// IP address (its last label has a letter) and not `localhost`, which is always one.
pub fn parse_domain(text: &str) -> Result<String, ConfigError> {
    let domain = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    let bad = |why: &str| ConfigError::Invalid(format!("domain {text:?} {why}"));
    if domain.is_empty() || domain.len() > MAX_DOMAIN_LEN {
        return Err(bad(&format!(
            "must have 1 to {MAX_DOMAIN_LEN} characters (a website's origin adds 106)"
        )));
    }
    for label in domain.split('.') {
        let ldh = label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if label.is_empty()
            || label.len() > 63
            || !ldh
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(bad(
                "must be a host name: labels of letters, digits and hyphens, e.g. example.org",
            ));
        }
    }
    let last = domain.rsplit('.').next().unwrap_or("");
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("must be a name, not an IP address"));
    }
    if domain == "localhost" || domain.ends_with(".localhost") {
        return Err(bad(
            "must not be under localhost, which always has bundle origins",
        ));
    }
    Ok(domain)
}

/// A wait in seconds: finite, not negative, capped at `MAX_WAIT`.
pub fn parse_wait(secs: f64) -> Result<Duration, ConfigError> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(ConfigError::Invalid(format!(
            "wait {secs} must be a number of seconds >= 0"
        )));
    }
    Ok(Duration::from_secs_f64(secs).min(MAX_WAIT))
}

/// A duration in seconds: finite, not negative, at most a year; zero allowed unless
/// `positive`.
fn seconds(secs: f64, key: &str, positive: bool) -> Result<Duration, ConfigError> {
    const YEAR: f64 = 365.0 * 86_400.0;
    if !(0.0..=YEAR).contains(&secs) || (positive && secs == 0.0) {
        return Err(ConfigError::Invalid(format!(
            "{key} {secs} must be a number of seconds{} up to a year",
            if positive { " above 0" } else { " >= 0" }
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a size: a number of bytes with an optional unit (B, KB, MB, GB, TB in powers of
/// 1000; KiB, MiB, GiB, TiB in powers of 1024; case-insensitive; spaces allowed).
pub fn parse_size(text: &str) -> Result<u64, ConfigError> {
    let bad = || ConfigError::Invalid(format!("size {text:?} is not like 10GiB, 500MB or 1048576"));
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// A rate in bytes a second: a size (`parse_size`), optionally followed by `/s`.
pub fn parse_rate(text: &str) -> Result<u64, ConfigError> {
    let t = text.trim();
    parse_size(t.strip_suffix("/s").unwrap_or(t))
}

fn size_value(value: &toml::Value, key: &str) -> Result<u64, ConfigError> {
    match value {
        toml::Value::String(s) => parse_rate(s),
        toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        _ => Err(ConfigError::Invalid(format!(
            "{key} must be a size like \"10GiB\" or a number of bytes"
        ))),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// `$XDG_DATA_HOME/libernet`, else `~/.libernet`, else `./.libernet`.
/// What `libernet backup` takes from the environment: never passphrases or tokens on
/// the command line, where `ps` would show them.
#[derive(Debug, Clone, Default)]
pub struct BackupEnv {
    /// `LIBERNET_USER`.
    pub user: Option<String>,
    /// `LIBERNET_PASSPHRASE`.
    pub passphrase: Option<String>,
    /// `LIBERNET_NEW_PASSPHRASE`: `backup passwd`'s new passphrase.
    pub new_passphrase: Option<String>,
    /// `LIBERNET_TOKEN`: the node's admin token, to pin what a backup sends.
    pub token: Option<String>,
    /// The admin token file of the default store, used for a node on this machine when
    /// `LIBERNET_TOKEN` is not set.
    pub default_token_file: PathBuf,
    /// The host name: the default machine name.
    pub hostname: Option<String>,
}

impl BackupEnv {
    /// Reads the environment (empty values count as unset).
    pub fn load() -> BackupEnv {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .or_else(|| var("HOSTNAME"));
        BackupEnv {
            user: var("LIBERNET_USER"),
            passphrase: var("LIBERNET_PASSPHRASE"),
            new_passphrase: var("LIBERNET_NEW_PASSPHRASE"),
            token: var("LIBERNET_TOKEN"),
            default_token_file: default_store().join(crate::store::ADMIN_TOKEN_FILE),
            hostname,
        }
    }
}

/// `path` with a leading `~` or `$HOME` (also `${HOME}`) replaced by the home
/// directory, as a shell would: a path in a config file, or a flag given as
/// `--store=~/x`, is not expanded by the shell. Other paths are returned as they are,
/// and so is every path when `HOME` is unset.
pub fn expand_home(path: &Path) -> PathBuf {
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => expand_home_with(path, Path::new(&home)),
        None => path.to_owned(),
    }
}

fn expand_home_with(path: &Path, home: &Path) -> PathBuf {
    let Some(text) = path.to_str() else {
        return path.to_owned();
    };
    for prefix in ["~", "$HOME", "${HOME}"] {
        if let Some(rest) = text.strip_prefix(prefix) {
            if rest.is_empty() {
                return home.to_owned();
            }
            if let Some(rest) = rest.strip_prefix('/') {
                return home.join(rest);
            }
        }
    }
    path.to_owned()
}

/// Why the URL a node gives out (`url`, or `http://<listen>` when unset) will not
/// reach it from other machines, when that is likely: it names an unspecified address
/// (`0.0.0.0`, `[::]`), or it is unset while the node listens beyond loopback. None
/// when it looks right.
pub fn url_warning(listen: SocketAddr, url: Option<&str>) -> Option<String> {
    let advertised = url.map_or_else(|| format!("http://{listen}"), str::to_owned);
    let authority = advertised
        .split_once("://")
        .map_or(advertised.as_str(), |(_, rest)| rest);
    let unspecified = ["0.0.0.0", "[::]"].iter().any(|host| {
        authority
            .strip_prefix(host)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
    });
    if unspecified {
        return Some(format!(
            "the node's URL {advertised} names no reachable address: peers and the URLs \
             `put` prints would use it; give --url http://<this machine's name or public \
             address>:{}",
            listen.port()
        ));
    }
    if url.is_none() && !listen.ip().is_loopback() {
        return Some(format!(
            "no --url given: the node calls itself {advertised}; if peers or browsers reach \
             it by another name (a public address, a domain, a TLS proxy), give --url with \
             that name"
        ));
    }
    None
}

fn default_store() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("libernet");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".libernet"),
        None => PathBuf::from(".libernet"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let ok = [
            ("10GiB", 10u64 << 30),
            ("10 gib", 10 << 30),
            ("500MB", 500_000_000),
            ("1048576", 1 << 20),
            ("1.5KiB", 1536),
            ("2t", 2_000_000_000_000),
        ];
        for (text, want) in ok {
            assert_eq!(parse_size(text).unwrap(), want, "{text}");
        }
        for bad in ["", "GiB", "-1", "10 parsecs", "1e400", "1..2MB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_override_file_and_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            "store = \"/tmp/a\"\nquota = \"2GiB\"\ncustody_share = 20\nwait = 5\nmax_waiters = 7\nwaiter_memory = \"1MiB\"\nscrub_rate = 0\nhot_cache = \"1MiB\"\ncontent_cache = \"2MiB\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            quota: Some("3GiB".into()),
            ..ServeArgs::default()
        };
        let c = Config::load(&args).unwrap();
        assert_eq!(c.store, PathBuf::from("/tmp/a"));
        assert_eq!(c.quota, 3 << 30);
        assert_eq!(c.custody_share, 20);
        let flag = ServeArgs {
            custody_share: Some(0),
            ..args.clone()
        };
        assert_eq!(Config::load(&flag).unwrap().custody_share, 0);
        assert_eq!(
            Config::load(&ServeArgs::default()).unwrap().custody_share,
            50
        );
        assert_eq!(c.wait, Duration::from_secs(5));
        assert_eq!((c.max_waiters, c.scrub_rate, c.hot_cache), (7, 0, 1 << 20));
        assert_eq!(c.waiter_memory, 1 << 20);
        assert_eq!(c.content_cache, 2 << 20);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);

        std::fs::write(&file, "stroe = \"/tmp/a\"\n").unwrap();
        let err = Config::load(&args).unwrap_err().to_string();
        assert!(err.contains("stroe"), "{err}");
    }

    /// The sample file with every `# key = value` line uncommented.
    fn sample_uncommented() -> String {
        include_str!("../libernet.toml")
            .lines()
            .map(|line| {
                let bare = line.trim_start_matches("# ");
                let key = bare.split(" = ").next().unwrap_or("");
                let is_key = bare.contains(" = ")
                    && !key.is_empty()
                    && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                if is_key { bare } else { line }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_sample_config_parses_and_names_every_key() {
        let text = sample_uncommented();
        let parsed: FileConfig = toml::from_str(&text).expect("the sample parses");
        assert!(parsed.store.is_some() && parsed.summary_interval.is_some());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("libernet.toml");
        std::fs::write(&file, &text).unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        let config = Config::load(&args).expect("the sample's values are valid");
        assert_eq!(config.max_upload_rate, 10_000_000);
        // Every key the file accepts, as serde lists them for an unknown one.
        let err = toml::from_str::<FileConfig>("not_a_key = 1")
            .unwrap_err()
            .to_string();
        let expected = err.split("expected one of").nth(1).expect(&err);
        let keys: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        assert!(keys.len() >= 19, "{err}");
        let table: toml::Table = toml::from_str(&text).unwrap();
        for key in keys {
            assert!(table.contains_key(key), "libernet.toml lacks `{key}`");
        }
    }

    #[test]
    fn home_is_expanded_at_the_start_of_a_path_only() {
        let home = Path::new("/home/ann");
        let cases = [
            ("~", "/home/ann"),
            ("~/x/y", "/home/ann/x/y"),
            ("$HOME/.libernet", "/home/ann/.libernet"),
            ("${HOME}/s", "/home/ann/s"),
            ("~bob/x", "~bob/x"),
            ("/srv/~/x", "/srv/~/x"),
            ("$HOMEDIR/x", "$HOMEDIR/x"),
            ("rel/path", "rel/path"),
        ];
        for (given, want) in cases {
            assert_eq!(
                expand_home_with(Path::new(given), home),
                PathBuf::from(want),
                "{given}"
            );
        }
    }

    #[test]
    fn rates_take_units_and_an_optional_per_second() {
        assert_eq!(parse_rate("10M").unwrap(), 10_000_000);
        assert_eq!(parse_rate("512KiB/s").unwrap(), 512 << 10);
        assert_eq!(parse_rate("0").unwrap(), 0);
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn the_url_warning_names_unreachable_urls() {
        let any: SocketAddr = "0.0.0.0:8042".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:8042".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8042".parse().unwrap();
        assert!(
            url_warning(any, None)
                .unwrap()
                .contains("http://0.0.0.0:8042")
        );
        assert!(url_warning("[::]:1".parse().unwrap(), None).is_some());
        assert!(url_warning(local, Some("http://0.0.0.0:8042")).is_some());
        assert!(url_warning(lan, None).unwrap().contains("--url"));
        assert_eq!(url_warning(local, None), None);
        assert_eq!(url_warning(any, Some("https://node.example.org")), None);
        assert_eq!(url_warning(lan, Some("http://192.168.1.5:8042")), None);
        assert_eq!(url_warning(any, Some("http://0.0.0.0.example:1")), None);
    }

    #[test]
    fn invalid_values_are_refused() {
        let cases = [
            ServeArgs {
                listen: Some("localhost".into()),
                ..ServeArgs::default()
            },
            ServeArgs {
                quota: Some("1KiB".into()),
                ..ServeArgs::default()
            },
            ServeArgs {
                wait: Some(-1.0),
                ..ServeArgs::default()
            },
            ServeArgs {
                url: Some("ftp://x".into()),
                ..ServeArgs::default()
            },
            ServeArgs {
                max_connections: Some(0),
                ..ServeArgs::default()
            },
            ServeArgs {
                peers: vec!["10.0.0.1:8042".into()],
                ..ServeArgs::default()
            },
            ServeArgs {
                half_life: Some(0.0),
                ..ServeArgs::default()
            },
            ServeArgs {
                custody_share: Some(101),
                ..ServeArgs::default()
            },
            ServeArgs {
                gossip_interval: Some(f64::NAN),
                ..ServeArgs::default()
            },
        ];
        for args in cases {
            assert!(Config::load(&args).is_err(), "{args:?}");
        }
        assert_eq!(parse_wait(1e9).unwrap(), MAX_WAIT);
    }

    #[test]
    fn domains() {
        assert_eq!(parse_domain("Example.ORG.").unwrap(), "example.org");
        assert_eq!(parse_domain("my-node").unwrap(), "my-node");
        assert_eq!(parse_domain(&"a".repeat(63)).unwrap(), "a".repeat(63));
        let long = format!("{}.org", vec!["a".repeat(60); 3].join("."));
        assert_eq!(long.len(), 186);
        for bad in [
            "",
            ".",
            "a..b",
            "-a.org",
            "a-.org",
            "a_b.org",
            "exa mple.org",
            "10.0.0.1",
            "localhost",
            "x.localhost",
            "a.org:8042",
            "http://a.org",
            "é.org",
            &"a".repeat(64),
            &long,
        ] {
            assert!(parse_domain(bad).is_err(), "{bad:?}");
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "domain = \"sites.example.org\"\n").unwrap();
        let args = ServeArgs {
            config: Some(file.path().to_owned()),
            ..ServeArgs::default()
        };
        let c = Config::load(&args).unwrap();
        assert_eq!(c.domain.as_deref(), Some("sites.example.org"));
        let flag = ServeArgs {
            domain: Some("other.example".into()),
            ..args
        };
        assert_eq!(
            Config::load(&flag).unwrap().domain.as_deref(),
            Some("other.example")
        );
    }
}
