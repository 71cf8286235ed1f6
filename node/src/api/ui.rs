//! The web explorer (`GET /ui`, `GET /ui/{asset}`): static HTML, CSS and JavaScript modules
//! under `node/ui/`, embedded in the binary at compile time (no build step, no CDN, works
//! offline). The assets are public, like `/v1/health`; the data the pages show comes from
//! the public read API, called by the browser under the same read policy as any client.
//!
//! Architecture invariant: the explorer adds no route that answers data; it is a client of
//! `/v1/*` and nothing else.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};

/// The explorer's Content-Security-Policy: everything from this origin, nothing inline,
/// nothing from elsewhere, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'; object-src 'none'";

/// `(name, content type, bytes)` of every asset.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../ui/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../ui/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/app.js"),
    ),
    (
        "verify.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/verify.js"),
    ),
    (
        "diff.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/diff.js"),
    ),
];

/// Whether `path` is one of the explorer's (so the read policy lets it load unsigned).
pub fn is_ui_path(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::REFERRER_POLICY, "no-referrer"),
                // Assets change with the binary; a restart with a new one must show it.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => ApiError::new(
            ErrorCode::NotFound,
            format!("the explorer has no asset {name:?}"),
        )
        .into_response(),
    }
}

pub(super) async fn index() -> Response {
    asset("index.html")
}

pub(super) async fn file(Path(name): Path<String>) -> Response {
    if name.is_empty() {
        return asset("index.html");
    }
    asset(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_its_type_and_the_policy() {
        for (name, content_type, bytes) in ASSETS {
            assert!(!bytes.is_empty(), "{name} is empty");
            let response = asset(name);
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], *content_type, "{name}");
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY,
                "{name}"
            );
        }
        assert_eq!(
            asset("../Cargo.toml").status(),
            axum::http::StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn the_page_loads_nothing_inline() {
        // The policy refuses inline scripts and styles: the page must not need them.
        let html = std::str::from_utf8(ASSETS[0].2).expect("utf-8");
        assert!(
            !html.contains("<script>") && !html.contains("style="),
            "{html}"
        );
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );
    }
}
