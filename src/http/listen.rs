//! The listening page of a repository stream: `GET /listen/{name}` and
//! `GET /listen/{owner}/{name}` serve one static page (`static/listen.html`) that reads the
//! repository id from its own path, listens to `/stream/{repoId}` and plays each composition.
//! Its script, its style sheet and the vendored Tone.js are served here too.
//!
//! Everything is compiled into the binary (as the sync page is), so a deployment is one file
//! and the page has no network dependency: Tone.js comes from `static/vendor/`, not a CDN.

use super::json_error;
use bandsync_protocol::repo::validate_repo_id;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

const LISTEN_HTML: &str = include_str!("../../static/listen.html");
const LISTEN_JS: &str = include_str!("../../static/listen.js");
const LISTEN_CSS: &str = include_str!("../../static/listen.css");
/// Tone.js 14.7.77 as npm publishes it (`build/Tone.js`, its UMD build): the version the
/// original streaming server's browser client loads. See `static/vendor/README.md`.
const TONE_JS: &[u8] = include_bytes!("../../static/vendor/tone.js");

/// The server-wide policy (see `service::service`) with two changes for this page.
/// `worker-src blob:`: Tone.js runs its clock in a Web Worker made from a `blob:` URL, so that
/// its timing survives the throttling of timers in a background tab (where a listening page
/// spends most of its life); without it the browser reports a violation and Tone.js falls
/// back to `setTimeout`. Only script already allowed on the page can create such a worker.
/// `connect-src 'self'`: the page only reads its stream and posts tests to this origin, so it
/// needs no WebSocket origins.
const LISTEN_CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
    worker-src 'self' blob:; frame-ancestors 'none'";

/// A week: the vendored file only changes with a bandsync release that bumps the pinned
/// version, and 350 KB is worth not fetching again on every visit. Not `immutable`, because
/// the URL carries no version.
const TONE_CACHE_CONTROL: &str = "public, max-age=604800";

/// The page, its assets and Tone.js; GET and HEAD (the caller adds the method filter).
pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let page = warp::path("listen").and(warp::path::tail()).map(page);
    let script = warp::path!("listen.js")
        .map(|| super::with_type(LISTEN_JS, "text/javascript; charset=utf-8"));
    let style =
        warp::path!("listen.css").map(|| super::with_type(LISTEN_CSS, "text/css; charset=utf-8"));
    let tone = warp::path!("vendor" / "tone.js").map(|| {
        let mut response =
            warp::reply::with_header(TONE_JS, "content-type", "text/javascript; charset=utf-8")
                .into_response();
        response.headers_mut().insert(
            warp::http::header::CACHE_CONTROL,
            warp::http::HeaderValue::from_static(TONE_CACHE_CONTROL),
        );
        response
    });
    page.or(script).unify().or(style).unify().or(tone).unify()
}

/// The same page for every valid repository id; the page takes the id from its URL. An
/// invalid id is refused here so that a mistyped link says why instead of showing a page
/// whose stream can never connect.
fn page(tail: warp::path::Tail) -> Response {
    match validate_repo_id(tail.as_str()) {
        Ok(()) => {
            let mut response = super::with_type(LISTEN_HTML, "text/html; charset=utf-8");
            response.headers_mut().insert(
                warp::http::header::CONTENT_SECURITY_POLICY,
                warp::http::HeaderValue::from_static(LISTEN_CSP),
            );
            response
        }
        Err(message) => json_error(StatusCode::BAD_REQUEST, "INVALID_REPO_ID", &message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page loads exactly the files served above, from this origin, and nothing inline
    /// (its policy is `default-src 'self'`).
    #[test]
    fn the_page_loads_only_local_scripts_and_styles() {
        for needed in [
            r#"<script src="/vendor/tone.js" defer></script>"#,
            r#"<script src="/listen.js" defer></script>"#,
            r#"<link rel="stylesheet" href="/style.css">"#,
            r#"<link rel="stylesheet" href="/listen.css">"#,
        ] {
            assert!(LISTEN_HTML.contains(needed), "listen.html lacks {needed}");
        }
        assert_eq!(LISTEN_HTML.matches("<script").count(), 2);
        assert!(!LISTEN_HTML.contains("style="));
        // The meta policy is the header's (frame-ancestors only works as a header).
        let meta = LISTEN_CSP.replace("; frame-ancestors 'none'", "");
        assert!(LISTEN_HTML.contains(&format!(r#"content="{meta}""#)));
        assert!(!LISTEN_HTML.contains("http://") && !LISTEN_HTML.contains("https://"));
        assert!(std::str::from_utf8(TONE_JS).is_ok_and(|s| s.contains("14.7.77")));
    }
}
