//! The Stream Manager's assets over real sockets: uploads and what they store, the content
//! route's caching headers, every refusal (size, type, form shape, storage, count, token,
//! rate) leaving nothing on disk, deletion guarded by the layers that use an asset, path
//! tricks that must never reach the file system, and the asset metrics.

mod common;
mod stage_support;

use common::TestServer;
use futures_util::future::join_all;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use stage_support::{multipart, png, Api, TOKEN};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server with the bearer token, `adjust` on top; also its asset directory (a scratch
/// directory of its own, removed when the server stops).
async fn server_with(adjust: impl FnOnce(&mut bandsync::Config)) -> (TestServer, Api, PathBuf) {
    let mut dir = PathBuf::new();
    let server = TestServer::start_with(|c| {
        c.share.bearer_token = Some(TOKEN.into());
        adjust(c);
        dir = c.stream_manager.asset_storage_path.clone();
    })
    .await;
    let api = Api::new(server.base_url());
    (server, api, dir)
}

/// Every file name in `dir`, hidden ones (temporary uploads) included, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The files a stored asset has: its data and its metadata.
fn files_of(ids: &[impl AsRef<str>]) -> Vec<String> {
    let mut names: Vec<String> = ids
        .iter()
        .map(AsRef::as_ref)
        .flat_map(|id| [id.to_owned(), format!("{id}.json")])
        .collect();
    names.sort();
    names
}

/// Polls until `dir` holds exactly `want` (a dropped upload is cleaned up by its task).
async fn until_files(dir: &Path, want: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while files(dir) != want {
        assert!(Instant::now() < deadline, "{:?} != {want:?}", files(dir));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A PNG signature followed by `len - 8` padding bytes: only the magic number is checked.
fn png_of(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..len - 8).map(|i| (i % 251) as u8));
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn assert_error(status: u16, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["code"], code, "{body}");
}

/// One HTTP/1.1 request over a plain socket with the path exactly as written (reqwest would
/// normalise `..`); the status line's code, the head and the body.
async fn raw(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String, Vec<u8>) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        (&mut socket).take(1 << 20).read_to_end(&mut response),
    )
    .await
    .expect("an answer in time")
    .unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let body = response[split + 4..].to_vec();
    let status = head[9..12].parse().unwrap();
    (status, head, body)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test]
async fn an_upload_is_stored_listed_and_looked_up_in_its_own_stream() {
    let (server, api, dir) = server_with(|_| {}).await;
    let bytes = png();
    let (status, body) = api.upload("?session=band", "logo.png", &bytes).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], true);
    let asset = &body["asset"];
    let id = asset["id"].as_str().unwrap();
    assert!(
        id.len() == 36
            && id.starts_with("ast_")
            && id[4..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id}"
    );
    assert_eq!(asset["name"], "logo.png");
    assert_eq!(asset["type"], "image/png");
    assert_eq!(asset["size"], bytes.len());
    assert_eq!(asset["sha256"], sha256_hex(&bytes));
    assert_eq!(asset["url"], format!("/stream/assets/{id}/content"));
    assert!(asset["createdAt"].as_f64().is_some_and(|t| t > 0.0));
    assert_eq!(asset["session"], "band");
    assert_eq!(
        files(&dir),
        files_of(&[id]),
        "the data and metadata, under the id"
    );

    let (status, list) = api.get("/stream/assets?session=band").await;
    assert_eq!(status, 200);
    assert_eq!(list["assets"], json!([asset]));
    let (status, info) = api.get(&format!("/stream/assets/{id}?session=band")).await;
    assert_eq!((status, &info["asset"]), (200, asset));
    let (_, status_body) = api.get("/stream/status?session=band").await;
    assert_eq!(status_body["assets"], 1);

    // Another stream (the default one, another band) does not have it.
    for query in ["", "?session=other-band"] {
        let (status, body) = api.get(&format!("/stream/assets/{id}{query}")).await;
        assert_error(status, &body, 404, "ASSET_NOT_FOUND");
        let (_, list) = api.get(&format!("/stream/assets{query}")).await;
        assert_eq!(list["assets"], json!([]), "{query}");
    }
    // Reads are open in the open mode.
    let anonymous = Api::anonymous(server.base_url());
    let (status, _) = anonymous
        .get(&format!("/stream/assets/{id}?session=band"))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn content_is_served_with_validators_and_head_has_the_length_without_the_body() {
    let (server, api, _dir) = server_with(|_| {}).await;
    let bytes = png_of(70_000);
    let (status, body) = api.upload("?session=band", "big.png", &bytes).await;
    assert_eq!(status, 201, "{body}");
    let url = body["asset"]["url"].as_str().unwrap().to_owned();
    let etag = format!("\"{}\"", sha256_hex(&bytes));

    // Content is open: no token needed, whichever stream.
    let client = reqwest::Client::new();
    let response = client.get(server.http_url(&url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let value = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(value("content-type"), "image/png");
    assert_eq!(value("content-length"), bytes.len().to_string());
    assert_eq!(value("etag"), etag);
    assert_eq!(
        value("cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(value("x-content-type-options"), "nosniff");
    assert_eq!(value("content-disposition"), "inline");
    assert_eq!(response.bytes().await.unwrap(), bytes, "the same bytes");

    for validator in [etag.clone(), format!("W/{etag}"), format!("\"x\", {etag}")] {
        let response = client
            .get(server.http_url(&url))
            .header("if-none-match", &validator)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 304, "{validator}");
        assert_eq!(response.headers()["etag"], etag.as_str());
        assert!(response.bytes().await.unwrap().is_empty());
    }
    let response = client
        .get(server.http_url(&url))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "another tag gets the bytes");

    // HEAD over a raw socket: hyper must keep the explicit length, and send no body.
    let (status, head, rest) = raw(server.addr, "HEAD", &url).await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-length"),
        Some(bytes.len().to_string().as_str()),
        "{head}"
    );
    assert_eq!(header(&head, "etag"), Some(etag.as_str()));
    assert!(rest.is_empty(), "HEAD sent {} body bytes", rest.len());
    // And GET over the same kind of socket sends them all.
    let (status, _, body) = raw(server.addr, "GET", &url).await;
    assert_eq!((status, body.len()), (200, bytes.len()));
}

#[tokio::test]
async fn an_oversized_upload_is_413_and_leaves_no_file() {
    let (_server, api, dir) = server_with(|c| c.stream_manager.max_upload_size = 1024).await;
    let (status, body) = api.upload("", "exact.png", &png_of(1024)).await;
    assert_eq!(status, 201, "exactly the limit is accepted: {body}");
    let kept = body["asset"]["id"].as_str().unwrap().to_owned();
    for len in [1025, 200_000] {
        let (status, body) = api.upload("", "big.png", &png_of(len)).await;
        assert_error(status, &body, 413, "PAYLOAD_TOO_LARGE");
        assert_eq!(files(&dir), files_of(&[&kept]), "{len} bytes left nothing");
    }
}

#[tokio::test]
async fn the_type_comes_from_the_bytes_never_the_name() {
    let (_server, api, dir) = server_with(|_| {}).await;
    let html = b"<!DOCTYPE html><html><script>alert(1)</script></html>";
    let (status, body) = api.upload("", "x.png", html).await;
    assert_error(status, &body, 415, "UNSUPPORTED_ASSET_TYPE");
    let (status, body) = api.upload("", "short.png", b"\x89PNG").await;
    assert_error(status, &body, 415, "UNSUPPORTED_ASSET_TYPE");
    assert_eq!(files(&dir), Vec::<String>::new());

    let (status, body) = api.upload("", "x.jpg", &png()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["asset"]["type"], "image/png");
    assert_eq!(body["asset"]["name"], "x.jpg");
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec();
    let (status, body) = api.upload("", "anim.png", &gif).await;
    assert_eq!((status, &body["asset"]["type"]), (201, &json!("image/gif")));
}

#[tokio::test]
async fn a_truncated_body_is_400_and_a_dropped_connection_leaves_nothing() {
    let (server, api, dir) = server_with(|_| {}).await;
    let (content_type, body) = multipart(&[("file", Some("a.png"), &png_of(5000))], false);
    let (status, answer) = api.post_form("", &content_type, body).await;
    assert_error(status, &answer, 400, "INVALID_MULTIPART");
    assert_eq!(files(&dir), Vec::<String>::new());

    // Half a body, then the connection closes: the temporary file goes with the request.
    let (content_type, body) = multipart(&[("file", Some("a.png"), &png_of(400_000))], true);
    let socket = stall_upload(server.addr, &dir, &content_type, &body, 1).await;
    drop(socket);
    until_files(&dir, &[]).await;
    // The server took nothing for it: a full-size upload still fits the defaults.
    let (status, body) = api.upload("", "after.png", &png_of(400_000)).await;
    assert_eq!(status, 201, "{body}");
}

/// Sends the head and half the body of an upload over a raw socket, and returns (the
/// socket, still open) once `uploads` temporary files exist: the upload is under way.
async fn stall_upload(
    addr: std::net::SocketAddr,
    dir: &Path,
    content_type: &str,
    body: &[u8],
    uploads: usize,
) -> tokio::net::TcpStream {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /stream/assets/upload HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&body[..body.len() / 2]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while files(dir)
        .iter()
        .filter(|f| f.starts_with(".upload-"))
        .count()
        < uploads
    {
        assert!(
            Instant::now() < deadline,
            "no temporary file: {:?}",
            files(dir)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    socket
}

/// A form part for [`multipart`]: its name, file name, bytes.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

#[tokio::test]
async fn a_form_of_the_wrong_shape_is_refused() {
    let (_server, api, dir) = server_with(|_| {}).await;
    let file = png();
    let cases: [(&str, &[Part]); 4] = [
        (
            "two files",
            &[
                ("file", Some("a.png"), &file),
                ("file", Some("b.png"), &file),
            ],
        ),
        ("no file", &[("name", None, b"logo")]),
        ("empty file", &[("file", Some("a.png"), b"")]),
        (
            "another part",
            &[("other", None, b"x"), ("file", Some("a.png"), &file)],
        ),
    ];
    for (what, parts) in cases {
        let (content_type, body) = multipart(parts, true);
        let (status, answer) = api.post_form("", &content_type, body).await;
        assert_error(status, &answer, 400, "INVALID_MULTIPART");
        assert_eq!(files(&dir), Vec::<String>::new(), "{what}");
    }
    let (status, answer) = api.post_form("", "application/json", b"{}".to_vec()).await;
    assert_error(status, &answer, 415, "UNSUPPORTED_MEDIA_TYPE");
    let (status, answer) = api.post_form("", "image/png", file.clone()).await;
    assert_error(status, &answer, 415, "UNSUPPORTED_MEDIA_TYPE");

    // A `name` part names the asset, cleaned of path separators and control characters.
    let (content_type, body) = multipart(
        &[
            ("name", None, b"band/logo\x07"),
            ("file", Some("f.png"), &file),
        ],
        true,
    );
    let (status, answer) = api.post_form("", &content_type, body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["asset"]["name"], "band_logo_");
}

#[tokio::test]
async fn eight_uploads_at_once_all_succeed() {
    let (_server, api, dir) = server_with(|_| {}).await;
    let bodies: Vec<Vec<u8>> = (0..8).map(|i| png_of(20_000 + i * 1000)).collect();
    let answers = join_all(bodies.iter().enumerate().map(|(i, bytes)| {
        api.upload(
            "?session=band",
            if i % 2 == 0 { "a.png" } else { "b.png" },
            bytes,
        )
    }))
    .await;
    let mut ids = Vec::new();
    for ((status, body), bytes) in answers.iter().zip(&bodies) {
        assert_eq!(*status, 201, "{body}");
        assert_eq!(body["asset"]["sha256"], sha256_hex(bytes));
        ids.push(body["asset"]["id"].as_str().unwrap());
    }
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "{ids:?}");
    assert_eq!(files(&dir), files_of(&ids));
    let (_, list) = api.get("/stream/assets?session=band").await;
    assert_eq!(list["assets"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn racing_uploads_never_pass_the_storage_cap() {
    let (_server, api, dir) = server_with(|c| c.stream_manager.asset_storage_max_mb = 1).await;
    let size = 300 * 1024;
    let bodies: Vec<Vec<u8>> = (0..8).map(|_| png_of(size)).collect();
    let answers = join_all(bodies.iter().map(|b| api.upload("", "big.png", b))).await;
    let mut stored = Vec::new();
    for (status, body) in &answers {
        match status {
            201 => stored.push(body["asset"]["id"].as_str().unwrap()),
            _ => assert_error(*status, body, 507, "STORAGE_FULL"),
        }
    }
    assert!(
        (1..=3).contains(&stored.len()),
        "{} stored of 300 KiB each under 1 MiB",
        stored.len()
    );
    let on_disk: u64 = stored
        .iter()
        .map(|id| std::fs::metadata(dir.join(id)).unwrap().len())
        .sum();
    assert!(on_disk <= 1024 * 1024, "{on_disk}");
    assert_eq!(files(&dir), files_of(&stored), "only the stored ones");
}

#[tokio::test]
async fn a_stream_holds_at_most_stream_max_assets() {
    let (_server, api, dir) = server_with(|c| c.stream_manager.stream_max_assets = 2).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, body) = api.upload("?session=band", "a.png", &png()).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["asset"]["id"].as_str().unwrap().to_owned());
    }
    let (status, body) = api.upload("?session=band", "a.png", &png()).await;
    assert_error(status, &body, 409, "ASSET_LIMIT");
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(files(&dir), files_of(&ids));

    // Racing past the pre-check: another stream, four at once, two land.
    let answers =
        join_all((0..4).map(|_| async { api.upload("?session=race", "r.png", &png()).await }))
            .await;
    let mut stored: Vec<&str> = ids.clone();
    for (status, body) in &answers {
        match status {
            201 => stored.push(body["asset"]["id"].as_str().unwrap()),
            _ => assert_error(*status, body, 409, "ASSET_LIMIT"),
        }
    }
    assert_eq!(stored.len(), 4, "{answers:?}");
    until_files(&dir, &files_of(&stored)).await;
}

#[tokio::test]
async fn an_asset_in_use_is_not_deleted_until_its_layer_is() {
    let (server, api, dir) = server_with(|_| {}).await;
    let (_, body) = api.upload("?session=band", "logo.png", &png()).await;
    let asset = body["asset"]["id"].as_str().unwrap().to_owned();
    let url = body["asset"]["url"].as_str().unwrap().to_owned();
    let (status, body) = api
        .post(
            "/stream/layers?session=band",
            json!({"name": "logo", "content": {"type": "image", "assetId": asset}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["layer"]["content"]["url"], url);
    let layer = body["layer"]["id"].as_str().unwrap().to_owned();

    let path = format!("/stream/assets/{asset}?session=band");
    let (status, body) = api.call("DELETE", &path, None).await;
    assert_error(status, &body, 409, "ASSET_IN_USE");
    assert_eq!(body["layers"], json!([layer]));
    assert_eq!(files(&dir), files_of(&[&asset]));
    // From another stream it is not found (and not deleted).
    let (status, body) = api
        .call("DELETE", &format!("/stream/assets/{asset}"), None)
        .await;
    assert_error(status, &body, 404, "ASSET_NOT_FOUND");
    assert_eq!(files(&dir), files_of(&[&asset]));

    let (status, _) = api
        .call(
            "DELETE",
            &format!("/stream/layers/{layer}?session=band"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = api.call("DELETE", &path, None).await;
    assert_eq!((status, &body["id"]), (200, &json!(asset)), "{body}");
    assert_eq!(files(&dir), Vec::<String>::new(), "its files are gone");
    let response = reqwest::get(server.http_url(&url)).await.unwrap();
    assert_eq!(response.status(), 404);
    let (status, body) = api.get(&path).await;
    assert_error(status, &body, 404, "ASSET_NOT_FOUND");
    let (status, body) = api.call("DELETE", &path, None).await;
    assert_error(status, &body, 404, "ASSET_NOT_FOUND");
}

#[tokio::test]
async fn uploads_need_the_token_and_count_toward_the_rate_limit() {
    let (server, api, dir) = server_with(|c| c.stream_manager.stream_rate_limit_max = 4).await;
    let anonymous = Api::anonymous(server.base_url());
    let (status, body) = anonymous.upload("", "a.png", &png()).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let wrong = Api {
        token: Some("not-the-token".into()),
        ..Api::new(server.base_url())
    };
    let (status, body) = wrong.upload("", "a.png", &png()).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    assert_eq!(files(&dir), Vec::<String>::new());

    let (status, body) = api.upload("", "a.png", &png()).await;
    assert_eq!(status, 201, "{body}");
    let url = body["asset"]["url"].as_str().unwrap().to_owned();
    let (status, _) = api.upload("", "b.png", &png()).await;
    assert_eq!(status, 201, "the fourth request of four");
    let (content_type, form) = multipart(&[("file", Some("c.png"), &png())], true);
    let response = api
        .request(reqwest::Method::POST, "/stream/assets/upload")
        .header("content-type", content_type)
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMITED");
    assert_eq!(
        files(&dir).len(),
        4,
        "two assets, nothing of the refused one"
    );
    // Content is not counted.
    for _ in 0..10 {
        let response = reqwest::get(server.http_url(&url)).await.unwrap();
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test]
async fn paths_and_names_never_reach_the_file_system() {
    let (server, api, dir) = server_with(|_| {}).await;
    let (status, body) = api.upload("", "../../evil.png", &png()).await;
    assert_eq!(status, 201, "{body}");
    let id = body["asset"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["asset"]["name"], ".._.._evil.png");
    assert_eq!(files(&dir), files_of(&[&id]), "stored under its id alone");
    let parent = dir.parent().unwrap();
    assert!(!parent.join("evil.png").exists());
    assert!(!parent.parent().unwrap().join("evil.png").exists());

    let upper = id.to_ascii_uppercase().replacen("AST_", "ast_", 1);
    let encoded = format!("%61st_{}", &id[4..]);
    let cases = [
        ("/stream/assets/../../etc/passwd/content".to_owned(), 404),
        (
            "/stream/assets/..%2F..%2Fetc%2Fpasswd/content".to_owned(),
            400,
        ),
        ("/stream/assets/ast_..%2F..%2Fetc/content".to_owned(), 400),
        (format!("/stream/assets/{encoded}/content"), 400),
        (format!("/stream/assets/{upper}/content"), 400),
        (format!("/stream/assets/{id}%2Fcontent"), 400),
        (format!("/stream/assets/{id}/content/extra"), 404),
        (format!("/stream/assets/{id}.json/content"), 400),
        (
            "/stream/assets/ast_00000000000000000000000000000000/content".to_owned(),
            404,
        ),
    ];
    for (path, want) in cases {
        let (status, head, body) = raw(server.addr, "GET", &path).await;
        assert_eq!(status, want, "{path}: {head}");
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("root:"), "{path}: {text}");
        assert!(
            text.contains("\"success\":false"),
            "{path}: a JSON error, not a file: {text}"
        );
    }
    let (status, _, body) = raw(server.addr, "GET", &format!("/stream/assets/{id}/content")).await;
    assert_eq!((status, body), (200, png()));
}

/// The value of the sample `name` (with its labels, as written) in a metrics page.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn the_asset_metrics_follow_uploads_and_deletions() {
    let (server, api, _dir) = server_with(|_| {}).await;
    let scrape = || async {
        reqwest::get(server.http_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = scrape().await;
    assert!(before.contains("bandsync_assets "), "{before}");
    assert_eq!(sample(&before, "bandsync_assets"), 0.0);
    assert_eq!(sample(&before, "bandsync_asset_storage_bytes"), 0.0);

    let bytes = png_of(5000);
    let (_, body) = api.upload("", "a.png", &bytes).await;
    let id = body["asset"]["id"].as_str().unwrap().to_owned();
    let (status, _) = api.upload("", "x.png", b"<html>not an image</html>").await;
    assert_eq!(status, 415);
    let after = scrape().await;
    assert_eq!(sample(&after, "bandsync_assets"), 1.0);
    assert_eq!(
        sample(&after, "bandsync_asset_storage_bytes"),
        bytes.len() as f64
    );
    assert_eq!(
        sample(&after, "bandsync_asset_uploads_total{outcome=\"stored\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "bandsync_asset_uploads_total{outcome=\"unsupported_asset_type\"}"
        ),
        1.0
    );

    let (status, _) = api
        .call("DELETE", &format!("/stream/assets/{id}"), None)
        .await;
    assert_eq!(status, 200);
    let gone = scrape().await;
    assert_eq!(sample(&gone, "bandsync_assets"), 0.0);
    assert_eq!(sample(&gone, "bandsync_asset_storage_bytes"), 0.0);
}

#[tokio::test]
async fn uploads_past_max_concurrent_uploads_are_503_until_one_ends() {
    let (server, api, dir) = server_with(|c| c.stream_manager.max_concurrent_uploads = 2).await;
    let (content_type, body) = multipart(&[("file", Some("a.png"), &png_of(400_000))], true);
    // Two uploads under way, each stalled halfway through its body.
    let mut stalled = Vec::new();
    for n in 1..=2 {
        stalled.push(stall_upload(server.addr, &dir, &content_type, &body, n).await);
    }
    let (status, answer) = api.upload("", "third.png", &png_of(1000)).await;
    assert_error(status, &answer, 503, "UPLOADS_BUSY");
    // One ends (its client leaves): the next upload is taken.
    drop(stalled.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, answer) = api.upload("", "fourth.png", &png_of(1000)).await;
        if status == 201 {
            break;
        }
        assert_error(status, &answer, 503, "UPLOADS_BUSY");
        assert!(Instant::now() < deadline, "the freed slot was not reused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stalled);
}
