//! Removal, serving, `open`, ids and error mapping.

use super::*;

#[tokio::test]
async fn remove_deletes_the_files_and_frees_the_bytes() {
    let dir = TempDir::new();
    let store = store(&dir, limits(10_000, 100_000));
    let keep = upload(&store, &form(&[file_part("keep.png", &png(700))]))
        .await
        .unwrap();
    let gone = upload(&store, &form(&[file_part("gone.png", &png(300))]))
        .await
        .unwrap();
    store.remove(&gone.id).await.unwrap();
    assert_eq!(store.info(&gone.id).await, None);
    assert_eq!(
        dir.files(),
        vec![keep.id.clone(), format!("{}.json", keep.id)]
    );
    assert_eq!((store.used_bytes(), store.count()), (700, 1));
    // Again, and an unknown id: nothing to do, nothing freed twice.
    store.remove(&gone.id).await.unwrap();
    assert_eq!(store.used_bytes(), 700);
    assert!(store.remove("../keep").await.is_err());
    assert_eq!(store.info("../etc/passwd").await, None);
}

#[tokio::test]
async fn serve_streams_the_content_with_its_headers() {
    let dir = TempDir::new();
    let store = store(&dir, limits(200_000, 1_000_000));
    let data = png(150_000); // more than one read chunk
    let asset = upload(&store, &form(&[file_part("big.png", &data)]))
        .await
        .unwrap();
    let etag = format!("\"{}\"", asset.sha256);

    let response = store.serve(&asset.id, &HeaderMap::new(), false).await;
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["content-length"], "150000");
    assert_eq!(h["etag"], etag.as_str());
    assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-disposition"], "inline");
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        data
    );

    let head = store.serve(&asset.id, &HeaderMap::new(), true).await;
    assert_eq!(
        (head.status(), &head.headers()["content-length"]),
        (StatusCode::OK, &HeaderValue::from(150_000u64))
    );
    assert!(head
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .is_empty());
}

#[tokio::test]
async fn serve_answers_304_to_a_matching_if_none_match() {
    let dir = TempDir::new();
    let store = store(&dir, limits(10_000, 100_000));
    let asset = upload(&store, &form(&[file_part("a.png", &png(500))]))
        .await
        .unwrap();
    let etag = format!("\"{}\"", asset.sha256);
    for (value, status) in [
        (etag.clone(), StatusCode::NOT_MODIFIED),
        (format!("W/{etag}"), StatusCode::NOT_MODIFIED),
        (format!("\"other\", {etag}"), StatusCode::NOT_MODIFIED),
        ("*".to_owned(), StatusCode::NOT_MODIFIED),
        ("\"other\"".to_owned(), StatusCode::OK),
        (asset.sha256.clone(), StatusCode::OK), // unquoted is not the tag
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::IF_NONE_MATCH,
            HeaderValue::from_str(&value).unwrap(),
        );
        let response = store.serve(&asset.id, &headers, false).await;
        assert_eq!(response.status(), status, "{value}");
        assert_eq!(response.headers()["etag"], etag.as_str());
        if status == StatusCode::NOT_MODIFIED {
            assert!(response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .is_empty());
        }
    }
}

#[tokio::test]
async fn serve_refuses_unknown_and_malformed_ids() {
    let dir = TempDir::new();
    let store = store(&dir, limits(10_000, 100_000));
    let unknown = format!("ast_{}", "0".repeat(32));
    for (id, status, code) in [
        (unknown.as_str(), StatusCode::NOT_FOUND, "ASSET_NOT_FOUND"),
        (
            "ast_../../etc/passwd",
            StatusCode::BAD_REQUEST,
            "INVALID_ASSET_ID",
        ),
        ("", StatusCode::BAD_REQUEST, "INVALID_ASSET_ID"),
    ] {
        let response = store.serve(id, &HeaderMap::new(), false).await;
        assert_eq!(response.status(), status);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["code"], code);
    }
}

#[test]
fn open_sweeps_stale_leftovers_and_sums_the_stored_assets() {
    let dir = TempDir::new();
    let id = |n: u8| format!("ast_{}", format!("{n:02x}").repeat(16));
    let write = |name: &str, len: usize, age: Duration| {
        let path = dir.0.join(name);
        std::fs::write(&path, vec![7u8; len]).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    };
    let old = Duration::from_secs(3_600);
    let new = Duration::ZERO;
    write(&id(1), 123, old); // a stored asset...
    write(&format!("{}.json", id(1)), 10, old); // ...with its metadata
    write(&id(2), 456, new);
    write(&format!("{}.json", id(2)), 10, new);
    write(".upload-0123", 999, old); // an upload a crash interrupted
    write(".upload-0123.json", 9, old);
    write(&id(3), 50, old); // data whose metadata rename never happened
    write(&format!("{}.json", id(4)), 9, old); // metadata whose data was removed
    write(".upload-fresh", 5, new); // maybe another instance's upload in progress
    write(&id(5), 5, new); // maybe another instance between its two renames
    write("README", 3, old); // not ours

    let store = store(&dir, limits(10, 10_000));
    assert_eq!((store.used_bytes(), store.count()), (123 + 456, 2));
    let mut expected = vec![
        id(1),
        format!("{}.json", id(1)),
        id(2),
        format!("{}.json", id(2)),
        ".upload-fresh".to_owned(),
        id(5),
        "README".to_owned(),
    ];
    expected.sort();
    assert_eq!(dir.files(), expected);

    // A directory that does not exist yet is created.
    let nested = dir.0.join("a/b");
    let fresh = AssetStore::open(&nested, limits(10, 10)).unwrap();
    assert!(nested.is_dir());
    assert_eq!((fresh.used_bytes(), fresh.count()), (0, 0));
}

#[test]
fn asset_ids_are_ast_and_32_lowercase_hex_digits() {
    assert!(valid_asset_id("ast_5be1f0c2a9d84e7f9c01b2a3d4e5f607"));
    assert!(valid_asset_id(&new_asset_id()));
    assert_ne!(new_asset_id(), new_asset_id());
    for bad in [
        "ast_5BE1F0C2A9D84E7F9C01B2A3D4E5F607",
        "ast_5be1f0c2a9d84e7f9c01b2a3d4e5f60",
        "ast_5be1f0c2a9d84e7f9c01b2a3d4e5f6077",
        "lyr_5be1f0c2a9d84e7f9c01b2a3d4e5f607",
        "ast_../../../../../../../etc/passwd",
        "ast_5be1f0c2a9d84e7f9c01b2a3d4e5f6é",
    ] {
        assert!(!valid_asset_id(bad), "{bad}");
    }
}

#[test]
fn a_storage_error_names_no_path() {
    let io = std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        "/srv/assets/.upload-1: denied",
    );
    let err = AssetError::from(io);
    assert_eq!(
        (err.status(), err.code()),
        (StatusCode::INTERNAL_SERVER_ERROR, "STORAGE_ERROR")
    );
    assert!(!err.to_string().contains('/'), "{err}");
    assert_eq!(err.response().status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[test]
fn the_upload_future_can_run_on_a_multithreaded_server() {
    fn assert_send<T: Send>(_: &T) {}
    let dir = TempDir::new();
    let store = store(&dir, limits(10, 10));
    assert_send(&store.receive(&headers(), chunked(b"", 1)));
    assert_send(&store.serve("x", &HeaderMap::new(), false));
}
