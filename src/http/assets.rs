//! The dashboard's files (`web/`), built into the binary: the node serves them with no
//! build step, no CDN and no file on disk to go missing. Only the names listed here are
//! served; everything else under `/web/` is a 404.

/// One dashboard file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    /// `/`: the page.
    Index,
    /// `/web/app.js`: its script.
    Script,
    /// `/web/style.css`: its styles.
    Style,
    /// `/web/favicon.svg`: its icon.
    Icon,
}

/// Where the page may load from and send to: itself only. No inline script or style, no
/// framing, no other origin. Bundles are served under a sandbox policy of their own.
pub const DASHBOARD_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

impl Asset {
    /// The asset at `path` (`/web/<name>`), if there is one.
    pub fn under_web(name: &str) -> Option<Asset> {
        match name {
            "app.js" => Some(Asset::Script),
            "style.css" => Some(Asset::Style),
            "favicon.svg" => Some(Asset::Icon),
            _ => None,
        }
    }

    /// Its `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Asset::Index => "text/html; charset=utf-8",
            Asset::Script => "text/javascript; charset=utf-8",
            Asset::Style => "text/css; charset=utf-8",
            Asset::Icon => "image/svg+xml",
        }
    }

    /// Its bytes.
    pub fn body(self) -> &'static str {
        match self {
            Asset::Index => include_str!("../../web/index.html"),
            Asset::Script => include_str!("../../web/app.js"),
            Asset::Style => include_str!("../../web/style.css"),
            Asset::Icon => include_str!("../../web/favicon.svg"),
        }
    }
}
