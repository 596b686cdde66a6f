//! Bundle origins, as IPFS subdomain gateways give each site its own: a bundle is served
//! at `http://<id>.<key>.localhost:<port>/` and, on a node with a domain, at
//! `<id>.<key>.<domain>`, with its files at the origin's root. Each label is the 32 bytes
//! in base32 (RFC 4648, lowercase, no padding: 52 characters, under DNS's 63), so one
//! bundle has exactly one origin and the browser keeps its storage and cookies apart
//! from every other bundle's and from the node's dashboard.
//!
//! This module reads a request's Host (or its absolute-form authority) and says what it
//! names (`Site`): the node itself, possibly through a name bundle origins sit under (a
//! `Gateway`: a loopback name or address, or the configured domain), a bundle, or a
//! malformed bundle name under a gateway. It also builds the `Location` of the redirect
//! from a path URL to its bundle's origin, only from parts it parsed and validated
//! (labels it encoded itself, the gateway's own name, a port it parsed), never by
//! copying the Host. No I/O; the routes are `route.rs`'s and the answers `content.rs`'s.

use std::net::IpAddr;
use std::sync::LazyLock;

use data_encoding::{Encoding, Specification};
use hyper::header::{self, HeaderMap};
use hyper::http::request::Parts;
use hyper::http::uri::Authority;

use crate::codec::{Key, Locator, Mode};
use crate::id::BlockId;

/// Characters of a 32-byte value in unpadded base32: 256 bits in 5-bit symbols.
pub const LABEL_LEN: usize = 52;

/// The name every loopback Host is redirected under: browsers resolve `*.localhost`
/// to the loopback address themselves (RFC 6761 section 6.3; Chromium and Firefox do).
pub const LOCALHOST: &str = "localhost";

/// Longest host name DNS allows (RFC 1035: 255 octets on the wire, 253 written).
pub const MAX_HOST_LEN: usize = 253;

/// Headers a reverse proxy adds: a request carrying one may come from anywhere, so a
/// loopback Host says nothing about where the browser runs and it is not redirected
/// to `*.localhost` (the browser could not reach that name).
const PROXY_HEADERS: [&str; 6] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "via",
];

/// RFC 4648 base32 in lowercase, without padding; uppercase decodes too (host names are
/// case-insensitive), and trailing bits must be zero, so each value has one spelling.
static BASE32: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.translate.from.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    spec.translate.to.push_str("abcdefghijklmnopqrstuvwxyz");
    spec.encoding()
        .expect("a constant, valid base32 specification (checked by a unit test)")
});

/// The label of 32 bytes: 52 lowercase base32 characters.
pub fn label(bytes: &[u8; 32]) -> String {
    BASE32.encode(bytes)
}

/// The 32 bytes a label spells, if it is one (52 base32 characters, either case, in
/// their one canonical spelling).
pub fn from_label(label: &str) -> Option<[u8; 32]> {
    if label.len() != LABEL_LEN {
        return None;
    }
    BASE32.decode(label.as_bytes()).ok()?.try_into().ok()
}

/// The host name of a bundle's origin under `gateway` (a name, no port):
/// `<b32 id>.<b32 key>.<gateway>`.
pub fn origin_name(locator: &Locator, gateway: &str) -> String {
    format!(
        "{}.{}.{gateway}",
        label(&locator.id.0),
        label(&locator.key.0)
    )
}

/// A name bundle origins sit under, as a request reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gateway<'a> {
    /// `localhost` or the configured domain (never text from the request).
    pub name: &'a str,
    /// The port the request named, if any.
    pub port: Option<u16>,
    /// True for `localhost` and loopback addresses.
    pub loopback: bool,
}

impl Gateway<'_> {
    /// The scheme-relative URL (`//host[:port]path`) of `locator`'s origin with `path`
    /// (a request path, starting with `/`) and `query`: the scheme stays the
    /// browser's, so a node behind a TLS proxy redirects to https.
    pub fn location(&self, locator: &Locator, path: &str, query: Option<&str>) -> String {
        let mut url = format!("//{}", origin_name(locator, self.name));
        if let Some(port) = self.port {
            url.push(':');
            url.push_str(&port.to_string());
        }
        if !path.starts_with('/') {
            url.push('/');
        }
        url.push_str(path);
        if let Some(query) = query {
            url.push('?');
            url.push_str(query);
        }
        url
    }
}

/// What a request's Host names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site<'a> {
    /// The node's own routes. `gateway` is set when the Host is itself a name bundle
    /// origins sit under (a path URL may redirect there); `None` for any other Host
    /// (an IP address, another name), a missing or malformed one.
    Node {
        /// The gateway the Host names, if any.
        gateway: Option<Gateway<'a>>,
    },
    /// A bundle's origin: every path is a path inside it.
    Bundle(Locator),
    /// A name under a gateway that is not `<52 base32>.<52 base32>`: not a bundle and
    /// not the node either.
    Bad,
}

/// The names this node serves bundle origins under: `localhost` always, and the domain
/// when one is configured.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// The configured domain, lowercase, validated by `config` (DNS labels, no trailing
    /// dot, not an address).
    domain: Option<String>,
}

impl Origins {
    /// Bundle origins under `localhost` and, if given, `domain` (as `config` validated it).
    pub fn new(domain: Option<String>) -> Origins {
        Origins { domain }
    }

    /// What the request's Host (or absolute-form authority) names.
    pub fn site(&self, parts: &Parts) -> Site<'_> {
        let Some(authority) = request_authority(parts) else {
            return Site::Node { gateway: None };
        };
        self.site_of(&authority)
    }

    /// The gateway a bundle origin's Host sits under (`localhost` or the domain, with
    /// the Host's port), for links from one bundle's origin to another's.
    pub fn parent(&self, parts: &Parts) -> Option<Gateway<'_>> {
        let authority = request_authority(parts)?;
        let host = authority.host();
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let port = authority.port_u16();
        if let Some(domain) = self.domain.as_deref()
            && under(&host, domain).is_some()
        {
            return Some(Gateway {
                name: domain,
                port,
                loopback: false,
            });
        }
        under(&host, LOCALHOST).map(|_| Gateway {
            name: LOCALHOST,
            port,
            loopback: true,
        })
    }

    /// What an authority (`host[:port]`) names.
    fn site_of(&self, authority: &Authority) -> Site<'_> {
        let port = authority.port_u16();
        let host = authority.host();
        // `host:` and a port past 65535 read as no port: neither names anything.
        if port.is_none() && authority.as_str().len() > host.len() {
            return Site::Node { gateway: None };
        }
        if host.len() > MAX_HOST_LEN + 1 {
            return Site::Node { gateway: None };
        }
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let unbracketed = host.trim_start_matches('[').trim_end_matches(']');
        let loopback_address = unbracketed
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
        if host == LOCALHOST || loopback_address {
            let gateway = Gateway {
                name: LOCALHOST,
                port,
                loopback: true,
            };
            return Site::Node {
                gateway: Some(gateway),
            };
        }
        if let Some(domain) = self.domain.as_deref() {
            if host == domain {
                let gateway = Gateway {
                    name: domain,
                    port,
                    loopback: false,
                };
                return Site::Node {
                    gateway: Some(gateway),
                };
            }
            if let Some(labels) = under(&host, domain) {
                return bundle_site(labels);
            }
        }
        match under(&host, LOCALHOST) {
            Some(labels) => bundle_site(labels),
            None => Site::Node { gateway: None },
        }
    }
}

/// The labels before `.{parent}` in `host`, if `host` is a name under `parent`.
fn under<'h>(host: &'h str, parent: &str) -> Option<&'h str> {
    host.strip_suffix(parent)?.strip_suffix('.')
}

/// The bundle `<id>.<key>` names, or `Bad`.
fn bundle_site(labels: &str) -> Site<'static> {
    let Some((id, key)) = labels.split_once('.') else {
        return Site::Bad;
    };
    match (from_label(id), from_label(key)) {
        (Some(id), Some(key)) => Site::Bundle(Locator {
            id: BlockId(id),
            mode: Mode::Aes256,
            key: Key(key),
        }),
        _ => Site::Bad,
    }
}

/// The authority a request is for: its absolute-form target's (RFC 9112 section 3.2.2:
/// it overrides Host), else its one `Host` header; `None` when there is none, more than
/// one, or it is not a plain `host[:port]`.
fn request_authority(parts: &Parts) -> Option<Authority> {
    if let Some(authority) = parts.uri.authority() {
        return plain(authority.clone());
    }
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next()?;
    if hosts.next().is_some() {
        return None;
    }
    plain(host.to_str().ok()?.parse().ok()?)
}

/// The authority without user information (a Host never has any).
fn plain(authority: Authority) -> Option<Authority> {
    (!authority.as_str().contains('@')).then_some(authority)
}

/// True when a request is a browser opening a page: `Sec-Fetch-Mode: navigate`, or,
/// from a browser that sends no `Sec-Fetch-Mode` (they send it only to secure origins
/// and `localhost`), an `Accept` naming `text/html`. Scripts, `curl` and the CLI send
/// neither, so they get the path form's own answers, never a redirect.
pub fn is_navigation(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-mode").map(|v| v.as_bytes()) {
        Some(mode) => mode.eq_ignore_ascii_case(b"navigate"),
        None => accepts_html(headers),
    }
}

/// True when `Accept` names `text/html` (browsers' page requests do).
pub fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/html"))
}

/// True when a proxy forwarded the request (see `PROXY_HEADERS`).
pub fn is_proxied(headers: &HeaderMap) -> bool {
    PROXY_HEADERS.iter().any(|name| headers.contains_key(*name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Request;

    fn parts_with(target: &str, hosts: &[&str]) -> Parts {
        let mut builder = Request::get(target);
        for host in hosts {
            builder = builder.header(header::HOST, *host);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn locator() -> Locator {
        Locator {
            id: BlockId::of(b"bundle"),
            mode: Mode::Aes256,
            key: Key([0xa5; 32]),
        }
    }

    #[test]
    fn labels_round_trip_in_one_spelling() {
        let bytes = [0u8; 32];
        assert_eq!(label(&bytes), "a".repeat(LABEL_LEN));
        let id = BlockId::of(b"x");
        let text = label(&id.0);
        assert_eq!(text.len(), LABEL_LEN);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        );
        assert_eq!(from_label(&text), Some(id.0));
        assert_eq!(from_label(&text.to_ascii_uppercase()), Some(id.0));
        for bad in [
            "",
            "a",
            &"a".repeat(LABEL_LEN - 1),
            &"a".repeat(LABEL_LEN + 1),
            &"1".repeat(LABEL_LEN),
            &"=".repeat(LABEL_LEN),
            &format!("{}é", "a".repeat(LABEL_LEN - 2)),
        ] {
            assert_eq!(from_label(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn trailing_bits_must_be_zero() {
        // 52 symbols hold 260 bits: the last symbol's low 4 bits are padding.
        let mut text = "a".repeat(LABEL_LEN - 1);
        text.push('b'); // value 1: a padding bit set
        assert_eq!(from_label(&text), None);
        text.pop();
        text.push('q'); // value 16: the 256th bit, padding clear
        assert!(from_label(&text).is_some());
    }

    #[test]
    fn hosts_name_the_node_a_bundle_or_nothing() {
        let origins = Origins::new(Some("example.org".into()));
        let l = locator();
        let name = origin_name(&l, "localhost");
        let cases: Vec<(String, Site)> = vec![
            (
                "localhost:8042".into(),
                Site::Node {
                    gateway: Some(Gateway {
                        name: "localhost",
                        port: Some(8042),
                        loopback: true,
                    }),
                },
            ),
            (
                "127.0.0.1:9".into(),
                Site::Node {
                    gateway: Some(Gateway {
                        name: "localhost",
                        port: Some(9),
                        loopback: true,
                    }),
                },
            ),
            (
                "[::1]:9".into(),
                Site::Node {
                    gateway: Some(Gateway {
                        name: "localhost",
                        port: Some(9),
                        loopback: true,
                    }),
                },
            ),
            (
                "LocalHost.".into(),
                Site::Node {
                    gateway: Some(Gateway {
                        name: "localhost",
                        port: None,
                        loopback: true,
                    }),
                },
            ),
            (
                "Example.ORG".into(),
                Site::Node {
                    gateway: Some(Gateway {
                        name: "example.org",
                        port: None,
                        loopback: false,
                    }),
                },
            ),
            ("192.0.2.7:8042".into(), Site::Node { gateway: None }),
            ("evilexample.org".into(), Site::Node { gateway: None }),
            ("example.org.evil".into(), Site::Node { gateway: None }),
            ("[2001:db8::1]:80".into(), Site::Node { gateway: None }),
            (format!("{name}:8042"), Site::Bundle(l)),
            (format!("{}:1", name.to_ascii_uppercase()), Site::Bundle(l)),
            (format!("{name}."), Site::Bundle(l)),
            (origin_name(&l, "example.org"), Site::Bundle(l)),
            ("x.localhost".into(), Site::Bad),
            (format!("www.{name}"), Site::Bad),
            (name.replacen('.', "..", 1), Site::Bad),
            (format!("1{}", &name[1..]), Site::Bad),
            ("a.b.example.org".into(), Site::Bad),
        ];
        for (host, want) in cases {
            let parts = parts_with("/", &[&host]);
            assert_eq!(origins.site(&parts), want, "{host}");
        }
        // No Host, two Hosts, a Host with user information or a bad port: the node's.
        for hosts in [
            &[][..],
            &["localhost", "localhost"][..],
            &["user@localhost"][..],
            &["localhost:99999"][..],
            &["local host"][..],
        ] {
            let parts = parts_with("/", hosts);
            assert_eq!(
                origins.site(&parts),
                Site::Node { gateway: None },
                "{hosts:?}"
            );
        }
        // An absolute-form target's authority wins over Host.
        let parts = parts_with(&format!("http://{name}:8042/x"), &["localhost"]);
        assert_eq!(origins.site(&parts), Site::Bundle(l));
        // Without a domain, its names are no one's.
        let parts = parts_with("/", &[&origin_name(&l, "example.org")]);
        assert_eq!(
            Origins::default().site(&parts),
            Site::Node { gateway: None }
        );
        // A Host far over DNS's length is nothing, quickly.
        let long = format!("{}.localhost", "a.".repeat(200));
        let parts = parts_with("/", &[&long]);
        assert_eq!(origins.site(&parts), Site::Node { gateway: None });
    }

    #[test]
    fn a_bundle_origin_names_its_gateway() {
        let origins = Origins::new(Some("example.org".into()));
        let l = locator();
        let parent = |host: &str| origins.parent(&parts_with("/", &[host]));
        let name = origin_name(&l, "example.org");
        assert_eq!(
            parent(&format!("{name}:8443")),
            Some(Gateway {
                name: "example.org",
                port: Some(8443),
                loopback: false,
            })
        );
        assert_eq!(
            parent(&origin_name(&l, "LOCALHOST")).map(|g| (g.name, g.port)),
            Some(("localhost", None))
        );
        assert_eq!(parent("example.org"), None);
        assert_eq!(parent("127.0.0.1:8042"), None);
    }

    #[test]
    fn locations_are_built_from_parsed_parts() {
        let l = locator();
        let gateway = Gateway {
            name: "localhost",
            port: Some(8042),
            loopback: true,
        };
        let host = origin_name(&l, "localhost");
        assert_eq!(
            gateway.location(&l, "/a/b.html", Some("x=1")),
            format!("//{host}:8042/a/b.html?x=1")
        );
        assert_eq!(gateway.location(&l, "", None), format!("//{host}:8042/"));
        let bare = Gateway {
            port: None,
            ..gateway
        };
        assert_eq!(
            bare.location(&l, "//evil.example/", None),
            format!("//{host}//evil.example/")
        );
        assert!(host.len() <= MAX_HOST_LEN);
        assert!(host.split('.').all(|label| label.len() < 64));
    }

    #[test]
    fn navigations_and_proxies() {
        let mut h = HeaderMap::new();
        assert!(!is_navigation(&h));
        h.insert(header::ACCEPT, "*/*".parse().unwrap());
        assert!(!is_navigation(&h));
        h.insert(
            header::ACCEPT,
            "text/html,application/xhtml+xml,*/*;q=0.8".parse().unwrap(),
        );
        assert!(is_navigation(&h));
        h.insert("sec-fetch-mode", "no-cors".parse().unwrap());
        assert!(!is_navigation(&h), "a subresource asking for HTML");
        h.insert("sec-fetch-mode", "navigate".parse().unwrap());
        assert!(is_navigation(&h));
        assert!(!is_proxied(&h));
        h.insert("x-forwarded-for", "192.0.2.1".parse().unwrap());
        assert!(is_proxied(&h));
    }
}
