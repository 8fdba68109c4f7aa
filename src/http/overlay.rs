//! The Stream Manager's two pages: the overlay (`GET /overlay`, what a streaming tool's browser
//! source shows on air) and the operator page (`GET /operator`, where a band manages its
//! stream), with their scripts and style sheets. Both are static: each reads its stream from
//! its own query (`?session=`, `?token=`) and talks to `/stream/...` and `/ws/stream`.
//!
//! Compiled into the binary like the sync page, so a deployment is one file and neither page
//! has a network dependency.
//!
//! Each page sends its own Content-Security-Policy (the server-wide one is only set when a
//! response has none, see `service::service`):
//!
//! - The overlay may be framed by this origin (`frame-ancestors 'self'`, and
//!   `X-Frame-Options: SAMEORIGIN` for browsers that only know that header), because the
//!   operator page previews it in an `<iframe>`. Streaming tools load it as a top-level page,
//!   so they need nothing more; no other site can frame it.
//! - The overlay allows `img-src https:`: a character layer's `modelUrl` may be any `https://`
//!   URL (section 17), and the overlay shows it as an `<img>` when it names an image. The
//!   overlay runs no script but its own (`script-src` stays `'self'`), so a remote image can
//!   only be drawn, not run. Plain `http://` model URLs are not allowed (they would be mixed
//!   content on an HTTPS deployment, and an on-air page should not fetch cleartext); the page
//!   shows those as a labelled box, as it does models that are not images.
//! - `connect-src 'self'`: each page only opens its own origin's `/ws/stream` (CSP 3 matches
//!   `ws:`/`wss:` of the same host to `'self'`) and calls its REST routes.
//! - The operator page keeps `frame-ancestors 'none'` (it carries the bearer token's
//!   buttons and must not be clickjacked) and frames only `'self'` (the overlay preview).
//!   Its images are the asset library's thumbnails, from this origin.

use warp::http::header::{HeaderValue, CONTENT_SECURITY_POLICY, X_FRAME_OPTIONS};
use warp::reply::Response;
use warp::{Filter, Rejection};

const OVERLAY_HTML: &str = include_str!("../../static/overlay.html");
const OVERLAY_JS: &str = include_str!("../../static/overlay.js");
const OVERLAY_CSS: &str = include_str!("../../static/overlay.css");
const OPERATOR_HTML: &str = include_str!("../../static/operator.html");
const OPERATOR_JS: &str = include_str!("../../static/operator.js");
const OPERATOR_CSS: &str = include_str!("../../static/operator.css");

/// The overlay's policy; see the module doc for each deviation from the server-wide one.
const OVERLAY_CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data: https:; \
    frame-ancestors 'self'";
/// The operator page's policy; see the module doc.
const OPERATOR_CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
    frame-src 'self'; frame-ancestors 'none'";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The two pages and their assets; GET and HEAD (the caller adds the method filter). The
/// pages ignore their query here: the script reads and validates it, and an unknown session
/// is simply a fresh stream (section 17).
pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let overlay = warp::path!("overlay").map(|| {
        let mut response = super::with_type(OVERLAY_HTML, HTML);
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(OVERLAY_CSP),
        );
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
        response
    });
    let operator = warp::path!("operator").map(|| {
        let mut response = super::with_type(OPERATOR_HTML, HTML);
        response.headers_mut().insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(OPERATOR_CSP),
        );
        response
    });
    let asset = |name: &'static str, body: &'static str, content_type: &'static str| {
        warp::path(name)
            .and(warp::path::end())
            .map(move || super::with_type(body, content_type))
    };
    overlay
        .or(operator)
        .unify()
        .or(asset("overlay.js", OVERLAY_JS, JS))
        .unify()
        .or(asset("overlay.css", OVERLAY_CSS, CSS))
        .unify()
        .or(asset("operator.js", OPERATOR_JS, JS))
        .unify()
        .or(asset("operator.css", OPERATOR_CSS, CSS))
        .unify()
}

#[cfg(test)]
mod tests;
