//! `GET|HEAD /stream/assets/{id}/content`: an asset's bytes, streamed from disk.
//!
//! An id's content never changes (ids are never reused, and an asset cannot be edited), so
//! the response is cacheable forever and validated by its SHA-256: a browser source that
//! reloads the overlay asks with `If-None-Match` and gets a `304` without the bytes.

use super::{valid_asset_id, AssetStore};
use crate::http::errors::{error_response, full, Body};
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use tokio_util::io::ReaderStream;

/// Read size when streaming a file out: large enough to keep syscalls few for a 10 MiB
/// model, small enough that a slow reader pins little memory.
const READ_CHUNK: usize = 64 * 1024;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

impl AssetStore {
    /// `GET|HEAD /stream/assets/{id}/content`: the response (200 with the file streamed, 304
    /// on a matching If-None-Match, 404 JSON error ASSET_NOT_FOUND, 400 INVALID_ASSET_ID for
    /// anything that is not an id). HEAD has the same headers and no body.
    pub async fn serve(&self, id: &str, request_headers: &HeaderMap, head: bool) -> Response<Body> {
        if !valid_asset_id(id) {
            return error_response(
                StatusCode::BAD_REQUEST,
                "INVALID_ASSET_ID",
                "asset ids are `ast_` and 32 hex digits",
            );
        }
        let Some(asset) = self.info(id).await else {
            return not_found();
        };
        let etag = format!("\"{}\"", asset.sha256);
        if none_match(request_headers, &etag) {
            let mut response = Response::new(full(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            validators(response.headers_mut(), &etag);
            return response;
        }
        // Removed between `info` and here: gone. Once open, a concurrent removal no longer
        // matters (the open file outlives its name).
        let file = match tokio::fs::File::open(self.data_path(id)).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return not_found(),
            Err(e) => return storage_error(&e),
        };
        let length = match file.metadata().await {
            Ok(meta) => meta.len(),
            Err(e) => return storage_error(&e),
        };
        let body = if head {
            full(Bytes::new())
        } else {
            let frames = ReaderStream::with_capacity(file, READ_CHUNK).map(|read| {
                read.map(http_body::Frame::data)
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            });
            StreamBody::new(frames).boxed_unsync()
        };
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        validators(headers, &etag);
        // The stored type is one of five fixed strings; fall back rather than panic if the
        // metadata file was edited by hand.
        let mime = HeaderValue::from_str(&asset.mime)
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        headers.insert(header::CONTENT_TYPE, mime);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("inline"),
        );
        response
    }
}

/// `ETag` and `Cache-Control`, on both the `200` and the `304` (RFC 9110 15.4.5).
fn validators(headers: &mut HeaderMap, etag: &str) {
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
}

/// Whether `If-None-Match` (every such header, each a comma-separated list) names `etag` or
/// is `*`. The comparison is weak, as RFC 9110 13.1.2 asks: a `W/` prefix is ignored.
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn not_found() -> Response<Body> {
    error_response(
        StatusCode::NOT_FOUND,
        "ASSET_NOT_FOUND",
        "there is no such asset",
    )
}

fn storage_error(error: &std::io::Error) -> Response<Body> {
    tracing::warn!(%error, "asset content could not be read");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "STORAGE_ERROR",
        "the asset could not be read",
    )
}
