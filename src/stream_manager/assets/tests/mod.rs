//! The asset store against a real directory, with multipart bodies built in memory and
//! delivered in chunks (tiny, slow, cut short, or stalled and then dropped).
//!
//! `form`: what a body must be; `limits`: sizes, the storage total, concurrency and
//! disconnects; `store`: removal, serving, `open`, ids and errors.

mod form;
mod limits;
mod store;

use super::*;
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

const BOUNDARY: &str = "bandsync-test-boundary-7f3a";

/// A fresh directory under the system temp dir, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("bandsync-assets-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// The directory's file names, sorted.
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn bytes_on_disk(&self) -> u64 {
        let data = self.files().into_iter().filter(|name| valid_asset_id(name));
        data.map(|name| std::fs::metadata(self.0.join(name)).unwrap().len())
            .sum()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn limits(max_upload_bytes: u64, max_total_bytes: u64) -> AssetLimits {
    AssetLimits {
        max_upload_bytes,
        max_total_bytes,
        max_uploads_in_flight: 8,
    }
}

fn store(dir: &TempDir, limits: AssetLimits) -> AssetStore {
    AssetStore::open(&dir.0, limits).unwrap()
}

/// A PNG signature followed by `len - 8` bytes of a pattern (not a valid image: only the
/// magic number matters).
fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..len.saturating_sub(8)).map(|i| (i * 31 % 251) as u8));
    bytes.truncate(len);
    bytes
}

fn part(name: &str, file_name: Option<&str>, content_type: &str, data: &[u8]) -> Vec<u8> {
    let mut out = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"");
    if let Some(file_name) = file_name {
        out.push_str(&format!("; filename=\"{file_name}\""));
    }
    out.push_str(&format!("\r\nContent-Type: {content_type}\r\n\r\n"));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(data);
    bytes.extend_from_slice(b"\r\n");
    bytes
}

fn file_part(file_name: &str, data: &[u8]) -> Vec<u8> {
    part("file", Some(file_name), "application/octet-stream", data)
}

fn form(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut body = parts.concat();
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = format!("multipart/form-data; boundary={BOUNDARY}");
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_str(&value).unwrap(),
    );
    headers
}

type Frames =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>>;

/// `body` as a request body delivered `chunk` bytes at a time, as a socket would: the
/// stream is pending once between chunks, so multer cannot take the whole body in one poll
/// (it reads all that is ready) and the store sees the chunks one by one.
fn chunked(body: &[u8], chunk: usize) -> StreamBody<Frames> {
    let chunks: Vec<Bytes> = body.chunks(chunk).map(Bytes::copy_from_slice).collect();
    let frames = stream::unfold(chunks.into_iter(), |mut rest| async move {
        let chunk = rest.next()?;
        tokio::task::yield_now().await;
        Some((Ok(Frame::data(chunk)), rest))
    });
    StreamBody::new(Box::pin(frames))
}

async fn upload(store: &AssetStore, body: &[u8]) -> Result<StoredAsset, AssetError> {
    store.receive(&headers(), chunked(body, 4096)).await
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A body fed from a channel: it stalls while the sender is idle and ends when it is dropped.
fn channel_body() -> (
    tokio::sync::mpsc::Sender<Bytes>,
    StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Unpin>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let frames = stream::poll_fn(move |cx| rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))));
    (tx, StreamBody::new(frames))
}

async fn wait_for_temp_file(dir: &TempDir) {
    for _ in 0..500 {
        if dir.files().iter().any(|name| name.starts_with(TEMP_PREFIX)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("no temporary file appeared");
}
