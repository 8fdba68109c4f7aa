//! Sizes, the storage total, uploads in flight, and clients that go away mid-body.

use super::*;

#[tokio::test]
async fn one_byte_over_the_limit_is_413_and_leaves_nothing() {
    let dir = TempDir::new();
    let store = store(&dir, limits(1_000, 100_000));
    // 100-byte chunks: the temporary file exists when the limit is crossed.
    let body = form(&[file_part("big.png", &png(1_001))]);
    let err = store
        .receive(&headers(), chunked(&body, 100))
        .await
        .unwrap_err();
    assert!(matches!(err, AssetError::TooLarge), "{err:?}");
    assert_eq!(
        (err.status(), err.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")
    );
    assert!(dir.files().is_empty(), "{:?}", dir.files());
    assert_eq!((store.used_bytes(), store.count()), (0, 0));

    // Far over: multer's whole-body limit refuses it too.
    let err = upload(&store, &form(&[file_part("huge.png", &png(500_000))]))
        .await
        .unwrap_err();
    assert!(matches!(err, AssetError::TooLarge), "{err:?}");
    assert!(dir.files().is_empty());
}
#[tokio::test]
async fn the_storage_total_is_never_exceeded() {
    let dir = TempDir::new();
    let store = store(&dir, limits(10_000, 3_000));
    let first = upload(&store, &form(&[file_part("a.png", &png(2_000))]))
        .await
        .unwrap();
    let err = upload(&store, &form(&[file_part("b.png", &png(2_000))]))
        .await
        .unwrap_err();
    assert!(matches!(err, AssetError::StorageFull), "{err:?}");
    assert_eq!(
        (err.status(), err.code()),
        (StatusCode::INSUFFICIENT_STORAGE, "STORAGE_FULL")
    );
    assert_eq!(
        dir.files(),
        vec![first.id.clone(), format!("{}.json", first.id)]
    );
    assert_eq!(store.used_bytes(), 2_000);
    // What fits still does.
    upload(&store, &form(&[file_part("c.png", &png(1_000))]))
        .await
        .unwrap();
    assert_eq!(store.used_bytes(), 3_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_never_overshoot_the_total_and_failures_leave_nothing() {
    let dir = TempDir::new();
    let cap = 10_000;
    let store = Arc::new(
        AssetStore::open(
            &dir.0,
            AssetLimits {
                max_upload_bytes: 5_000,
                max_total_bytes: cap,
                max_uploads_in_flight: 16,
            },
        )
        .unwrap(),
    );
    let watcher = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            for _ in 0..2_000 {
                peak = peak.max(store.used_bytes());
                tokio::task::yield_now().await;
            }
            peak
        })
    };
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            let body = form(&[file_part(&format!("{i}.png"), &png(3_000))]);
            tokio::spawn(async move { store.receive(&headers(), chunked(&body, 500)).await })
        })
        .collect();
    let mut stored = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(asset) => stored.push(asset),
            Err(err) => assert!(matches!(err, AssetError::StorageFull), "{err:?}"),
        }
    }
    assert!(
        stored.len() <= 3,
        "{} uploads of 3000 bytes fit in 10000",
        stored.len()
    );
    assert!(watcher.await.unwrap() <= cap);
    let total = stored.len() as u64 * 3_000;
    assert_eq!(
        (store.used_bytes(), store.count()),
        (total, stored.len() as u64)
    );
    assert_eq!(dir.bytes_on_disk(), total);
    assert_eq!(dir.files().len(), stored.len() * 2, "{:?}", dir.files());
}

#[tokio::test]
async fn one_upload_past_the_in_flight_limit_is_busy() {
    let dir = TempDir::new();
    let store = Arc::new(
        AssetStore::open(
            &dir.0,
            AssetLimits {
                max_upload_bytes: 10_000,
                max_total_bytes: 100_000,
                max_uploads_in_flight: 1,
            },
        )
        .unwrap(),
    );
    let (tx, body) = channel_body();
    let first = tokio::spawn({
        let store = store.clone();
        async move { store.receive(&headers(), body).await }
    });
    let head = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n");
    tx.send(Bytes::from(head)).await.unwrap();
    tx.send(Bytes::from(png(100))).await.unwrap();
    wait_for_temp_file(&dir).await;

    let err = upload(&store, &form(&[file_part("b.png", &png(50))]))
        .await
        .unwrap_err();
    assert!(matches!(err, AssetError::Busy), "{err:?}");
    assert_eq!(
        (err.status(), err.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "UPLOADS_BUSY")
    );

    drop(tx); // the first body ends without its closing boundary
    assert!(matches!(
        first.await.unwrap(),
        Err(AssetError::Multipart(_))
    ));
    assert!(dir.files().is_empty());
    upload(&store, &form(&[file_part("c.png", &png(50))]))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_client_that_disconnects_mid_body_leaves_nothing() {
    let dir = TempDir::new();
    let store = Arc::new(
        AssetStore::open(
            &dir.0,
            AssetLimits {
                max_upload_bytes: 10_000,
                max_total_bytes: 100_000,
                max_uploads_in_flight: 1,
            },
        )
        .unwrap(),
    );
    let (tx, body) = channel_body();
    let task = tokio::spawn({
        let store = store.clone();
        async move { store.receive(&headers(), body).await }
    });
    let head = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n");
    tx.send(Bytes::from(head)).await.unwrap();
    tx.send(Bytes::from(png(4_000))).await.unwrap();
    wait_for_temp_file(&dir).await;
    for _ in 0..500 {
        if store.used_bytes() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(store.used_bytes() > 0, "the bytes so far are reserved");

    // What hyper does when the connection goes: the request future is dropped.
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(dir.files().is_empty(), "{:?}", dir.files());
    assert_eq!(store.used_bytes(), 0);
    // The in-flight slot came back with it.
    upload(&store, &form(&[file_part("next.png", &png(50))]))
        .await
        .unwrap();
}
