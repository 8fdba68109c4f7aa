use super::*;
use http_body_util::{BodyExt, Empty};
use tower::ServiceExt;
use warp::http::{Method, Request, StatusCode};

/// Serves one request through `routes()` (GET and HEAD, as `http::routes` mounts it), the
/// way the server does, without a socket.
async fn serve(method: Method, path: &str) -> (warp::http::response::Parts, String) {
    let filter = warp::get().or(warp::head()).unify().and(routes());
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Empty::<bytes::Bytes>::new())
        .expect("request");
    let response = warp::service(filter)
        .oneshot(request)
        .await
        .expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (parts, String::from_utf8(bytes.to_vec()).expect("utf-8"))
}

fn header<'a>(parts: &'a warp::http::response::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn every_file_is_served_with_its_content_type() {
    for (path, content_type, body) in [
        ("/overlay?session=my-band&token=x", HTML, OVERLAY_HTML),
        ("/overlay.js", JS, OVERLAY_JS),
        ("/overlay.css", CSS, OVERLAY_CSS),
        ("/operator", HTML, OPERATOR_HTML),
        ("/operator.js", JS, OPERATOR_JS),
        ("/operator.css", CSS, OPERATOR_CSS),
    ] {
        let (parts, text) = serve(Method::GET, path).await;
        assert_eq!(parts.status, StatusCode::OK, "{path}");
        assert_eq!(header(&parts, "content-type"), Some(content_type), "{path}");
        assert_eq!(text, body, "{path}");
        let (head, _) = serve(Method::HEAD, path).await;
        assert_eq!(head.status, StatusCode::OK, "HEAD {path}");
    }
}

#[tokio::test]
async fn the_overlay_may_be_framed_by_this_origin_only_and_the_operator_by_nobody() {
    let (overlay, _) = serve(Method::GET, "/overlay").await;
    assert_eq!(
        header(&overlay, "content-security-policy"),
        Some(OVERLAY_CSP)
    );
    assert_eq!(header(&overlay, "x-frame-options"), Some("SAMEORIGIN"));
    assert!(OVERLAY_CSP.contains("frame-ancestors 'self'"));

    let (operator, _) = serve(Method::GET, "/operator").await;
    assert_eq!(
        header(&operator, "content-security-policy"),
        Some(OPERATOR_CSP)
    );
    // No header of its own: the server-wide `X-Frame-Options: DENY` applies.
    assert_eq!(header(&operator, "x-frame-options"), None);
    assert!(OPERATOR_CSP.contains("frame-ancestors 'none'"));
}

#[tokio::test]
async fn other_paths_are_not_these_routes() {
    for path in ["/overlay/x", "/overlays", "/operator.html", "/overlay.js/x"] {
        let filter = warp::get().and(routes());
        let request = Request::get(path)
            .body(Empty::<bytes::Bytes>::new())
            .expect("request");
        let response = warp::service(filter).oneshot(request).await.expect("ok");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

/// Each page loads exactly its files, from this origin, with nothing inline (`default-src
/// 'self'` would refuse inline script and style), and repeats its header policy in a meta
/// tag (minus `frame-ancestors`, which only works as a header).
#[test]
fn the_pages_load_only_their_own_scripts_and_styles() {
    for (html, csp, files) in [
        (
            OVERLAY_HTML,
            OVERLAY_CSP,
            &[
                r#"<link rel="stylesheet" href="/overlay.css">"#,
                r#"<script src="/overlay.js" defer></script>"#,
            ][..],
        ),
        (
            OPERATOR_HTML,
            OPERATOR_CSP,
            &[
                r#"<link rel="stylesheet" href="/style.css">"#,
                r#"<link rel="stylesheet" href="/operator.css">"#,
                r#"<script src="/operator.js" defer></script>"#,
            ][..],
        ),
    ] {
        for needed in files {
            assert!(html.contains(needed), "page lacks {needed}");
        }
        assert_eq!(html.matches("<script").count(), 1);
        assert!(!html.contains("style=") && !html.contains("<style"));
        for handler in [
            "onclick=",
            "onload=",
            "onerror=",
            "onsubmit=",
            "onchange=",
            "oninput=",
        ] {
            assert!(!html.contains(handler), "inline handler {handler}");
        }
        let meta = csp
            .split("; ")
            .filter(|d| !d.starts_with("frame-ancestors"))
            .collect::<Vec<_>>()
            .join("; ");
        assert!(
            html.contains(&format!(r#"content="{meta}""#)),
            "meta {meta}"
        );
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}

/// The scripts never parse markup from data: text goes in with `textContent`.
#[test]
fn the_scripts_never_write_markup() {
    for script in [OVERLAY_JS, OPERATOR_JS] {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!script.contains(sink), "a script uses {sink}");
        }
    }
}
