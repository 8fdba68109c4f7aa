//! What an upload body must be: one `file` part, its type by magic number, complete.

use super::*;

#[tokio::test]
async fn an_upload_is_stored_with_its_hash_size_and_metadata() {
    let dir = TempDir::new();
    let store = store(&dir, limits(10_000, 100_000));
    let data = png(5_000);
    // 7-byte chunks: the type is decided across two chunks.
    let asset = store
        .receive(
            &headers(),
            chunked(&form(&[file_part("logo.png", &data)]), 7),
        )
        .await
        .unwrap();

    assert!(valid_asset_id(&asset.id));
    assert_eq!(
        (asset.name.as_str(), asset.mime.as_str()),
        ("logo.png", "image/png")
    );
    assert_eq!(asset.size, 5_000);
    assert_eq!(asset.sha256, sha256_hex(&data));
    assert_eq!(
        dir.files(),
        vec![asset.id.clone(), format!("{}.json", asset.id)]
    );
    assert_eq!(std::fs::read(dir.0.join(&asset.id)).unwrap(), data);
    assert_eq!(store.info(&asset.id).await, Some(asset.clone()));
    assert_eq!((store.used_bytes(), store.count()), (5_000, 1));
}

/// multer 3.1 answers `IncompleteStream` when the body's first poll is pending and the next
/// one delivers all of it and its end (see `late_end`); this is that body.
#[tokio::test]
async fn a_whole_body_arriving_after_a_pending_poll_is_accepted() {
    let dir = TempDir::new();
    let store = store(&dir, limits(10_000, 100_000));
    for _ in 0..20 {
        let body = form(&[file_part("a.png", &png(64))]);
        store
            .receive(&headers(), chunked(&body, body.len()))
            .await
            .unwrap();
    }
    assert_eq!(store.count(), 20);
}

#[tokio::test]
async fn a_slowly_delivered_body_is_stored_whole() {
    let dir = TempDir::new();
    let store = store(&dir, limits(10_000, 100_000));
    let data = png(3_000);
    let body = form(&[
        part("name", None, "text/plain", b"slow one"),
        file_part("a.png", &data),
    ]);
    let chunks: Vec<Bytes> = body.chunks(100).map(Bytes::copy_from_slice).collect();
    let frames = stream::unfold(chunks.into_iter(), |mut rest| async move {
        let chunk = rest.next()?;
        tokio::time::sleep(Duration::from_millis(1)).await;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), rest))
    });
    let asset = store
        .receive(&headers(), StreamBody::new(Box::pin(frames)))
        .await
        .unwrap();
    assert_eq!((asset.name.as_str(), asset.size), ("slow one", 3_000));
    assert_eq!(asset.sha256, sha256_hex(&data));
}
#[tokio::test]
async fn exactly_the_limit_is_accepted() {
    let dir = TempDir::new();
    let store = store(&dir, limits(1_000, 100_000));
    let asset = upload(&store, &form(&[file_part("edge.png", &png(1_000))]))
        .await
        .unwrap();
    assert_eq!(asset.size, 1_000);
}

#[tokio::test]
async fn the_type_comes_from_the_bytes_never_the_name() {
    let dir = TempDir::new();
    let store = store(&dir, limits(10_000, 100_000));
    let png_as_jpg = part("file", Some("x.jpg"), "image/jpeg", &png(100));
    assert_eq!(
        upload(&store, &form(&[png_as_jpg])).await.unwrap().mime,
        "image/png"
    );

    let html = b"<!DOCTYPE html><script>alert(1)</script>".repeat(10);
    let html_as_png = part("file", Some("evil.png"), "image/png", &html);
    let err = upload(&store, &form(&[html_as_png])).await.unwrap_err();
    assert!(matches!(err, AssetError::UnsupportedType), "{err:?}");
    assert_eq!(
        (err.status(), err.code()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_ASSET_TYPE")
    );
    assert_eq!(dir.files().len(), 2, "only the PNG: {:?}", dir.files());

    let glb = b"glTF\x02\0\0\0\x20\0\0\0JSONpadding".to_vec();
    assert_eq!(
        upload(&store, &form(&[file_part("m.bin", &glb)]))
            .await
            .unwrap()
            .mime,
        "model/gltf-binary"
    );
    let tiny = upload(&store, &form(&[file_part("t.png", b"\x89PNG")]))
        .await
        .unwrap_err();
    assert!(
        matches!(tiny, AssetError::UnsupportedType),
        "fewer than 12 bytes: {tiny:?}"
    );
}

#[tokio::test]
async fn a_wrong_type_is_refused_before_the_rest_arrives() {
    let dir = TempDir::new();
    let store = store(&dir, limits(10_000, 100_000));
    let (tx, body) = channel_body();
    let start = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n<html><body>"
    );
    tx.send(Bytes::from(start)).await.unwrap();
    // The sender stays open: the answer must not wait for more of the body.
    let answer =
        tokio::time::timeout(Duration::from_secs(5), store.receive(&headers(), body)).await;
    assert!(
        matches!(answer, Ok(Err(AssetError::UnsupportedType))),
        "{answer:?}"
    );
    assert!(dir.files().is_empty());
    drop(tx);
}

#[tokio::test]
async fn a_body_cut_before_its_closing_boundary_is_400_and_leaves_nothing() {
    let dir = TempDir::new();
    let store = store(&dir, limits(10_000, 100_000));
    let whole = form(&[file_part("a.png", &png(2_000))]);
    let closing = BOUNDARY.len() + 6;
    for cut in [whole.len() - closing, whole.len() - closing - 2, 1_000, 60] {
        let err = store
            .receive(&headers(), chunked(&whole[..cut], 100))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AssetError::Multipart(_)),
            "cut at {cut}: {err:?}"
        );
        assert_eq!(
            (err.status(), err.code()),
            (StatusCode::BAD_REQUEST, "INVALID_MULTIPART")
        );
        assert!(dir.files().is_empty(), "cut at {cut}: {:?}", dir.files());
    }
    assert_eq!(store.used_bytes(), 0);
}

#[tokio::test]
async fn the_form_must_have_exactly_one_file_part_and_no_others() {
    let dir = TempDir::new();
    let store = store(&dir, limits(10_000, 100_000));
    let cases = [
        (
            "two files",
            form(&[file_part("a.png", &png(50)), file_part("b.png", &png(50))]),
        ),
        (
            "no file",
            form(&[part("name", None, "text/plain", b"just a name")]),
        ),
        ("empty form", form(&[])),
        (
            "unknown part",
            form(&[
                file_part("a.png", &png(50)),
                part("extra", None, "text/plain", b"x"),
            ]),
        ),
        ("empty file", form(&[file_part("a.png", b"")])),
        (
            "two names",
            form(&[
                part("name", None, "text/plain", b"a"),
                part("name", None, "text/plain", b"b"),
                file_part("a.png", &png(50)),
            ]),
        ),
        (
            "long name part",
            form(&[
                part("name", None, "text/plain", &[b'n'; 1_100]),
                file_part("a.png", &png(50)),
            ]),
        ),
    ];
    for (what, body) in cases {
        let err = upload(&store, &body).await.unwrap_err();
        assert!(matches!(err, AssetError::Multipart(_)), "{what}: {err:?}");
        assert!(dir.files().is_empty(), "{what}: {:?}", dir.files());
    }
    assert_eq!((store.used_bytes(), store.count()), (0, 0));
}

#[tokio::test]
async fn the_content_type_must_be_form_data_with_a_boundary() {
    let dir = TempDir::new();
    let store = store(&dir, limits(10_000, 100_000));
    let body = form(&[file_part("a.png", &png(50))]);
    for (value, expected) in [
        (None, "UNSUPPORTED_MEDIA_TYPE"),
        (Some("application/json"), "UNSUPPORTED_MEDIA_TYPE"),
        (
            Some("multipart/mixed; boundary=abc"),
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (Some("multipart/form-data"), "INVALID_MULTIPART"),
        (Some("multipart/form-data; boundary="), "INVALID_MULTIPART"),
        (
            Some("multipart/form-data; boundary=\"unterminated"),
            "INVALID_MULTIPART",
        ),
    ] {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(value));
        }
        let err = store
            .receive(&headers, chunked(&body, 4096))
            .await
            .unwrap_err();
        assert_eq!(err.code(), expected, "{value:?}: {err:?}");
    }
    let long = format!("multipart/form-data; boundary={}", "b".repeat(71));
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_str(&long).unwrap(),
    );
    let err = store
        .receive(&headers, chunked(&body, 4096))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_MULTIPART");
}

#[test]
fn display_names_are_cleaned_cut_and_never_empty() {
    use crate::stream_manager::assets::form::display_name;
    assert_eq!(
        display_name(None, Some("../../etc/passwd")),
        ".._.._etc_passwd"
    );
    assert_eq!(display_name(None, Some("a\\b\u{0}c\nd")), "a_b_c_d");
    assert_eq!(display_name(None, Some("gnp\u{202E}.exe")), "gnp_.exe");
    assert_eq!(display_name(Some("  shown  "), Some("file.png")), "shown");
    assert_eq!(display_name(Some(" "), Some("file.png")), "file.png");
    assert_eq!(display_name(Some(""), None), "asset");
    assert_eq!(display_name(None, None), "asset");
    let long = display_name(None, Some(&"é".repeat(300)));
    assert_eq!(long.chars().count(), 255);
    assert!(long.chars().all(|c| c == 'é'));
}
