//! Reading a share API request body within its route's limit.

use crate::share::ShareError;
use bytes::{Bytes, BytesMut};
use warp::http::HeaderMap;

/// Reads a request body up to `limit` bytes, whether it came with a Content-Length or
/// chunked (as .NET's `PostAsJsonAsync` sends it). A declared length over the limit is
/// refused before reading anything.
pub async fn read_body<S, B>(
    headers: &HeaderMap,
    mut body: S,
    limit: usize,
) -> Result<Bytes, ShareError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: bytes::Buf,
{
    use futures_util::StreamExt;
    let too_large = || {
        ShareError::TooLarge(format!(
            "request bodies on this route are at most {limit} bytes"
        ))
    };
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut out = BytesMut::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|e| ShareError::InvalidBody(format!("reading the body failed: {e}")))?;
        if out.len() + chunk.remaining() > limit {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}
