//! `POST /stream/assets/upload`: the asset store receives the file (streamed to disk,
//! checked as it arrives), then the stream's document records it. A stream that is full,
//! or a commit that fails, removes the stored file again: nothing refused stays on disk.

use super::document::Action;
use super::error::ManagerError;
use super::{StreamKey, StreamManager};
use bandsync_protocol::stream_manager::{asset_url, AssetInfo};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

pub async fn upload(
    manager: &StreamManager,
    stream: &StreamKey,
    req: Request<Incoming>,
) -> Result<(StatusCode, Value), ManagerError> {
    let max_assets = manager.config.stream_max_assets;
    // Refused before a byte of the file is read.
    if manager.read(stream).await?.assets.len() >= max_assets {
        return Err(ManagerError::AssetLimit(max_assets));
    }
    let (parts, body) = req.into_parts();
    let uploads = &manager.metrics.stream_manager.uploads;
    let stored = match manager.assets.receive(&parts.headers, body).await {
        Ok(stored) => stored,
        Err(e) => {
            uploads
                .with_label_values(&[&e.code().to_ascii_lowercase()])
                .inc();
            return Err(ManagerError::Upload {
                status: e.status(),
                code: e.code(),
                message: e.to_string(),
            });
        }
    };
    let asset = AssetInfo {
        url: asset_url(&stored.id),
        id: stored.id,
        name: stored.name,
        mime: stored.mime,
        size: stored.size,
        sha256: stored.sha256,
        created_at: stored.created_at,
        session: stream.0.clone(),
    };
    match manager
        .change(stream, Action::AddAsset(asset.clone()))
        .await
    {
        Ok(_) => {
            uploads.with_label_values(&["stored"]).inc();
            Ok((
                StatusCode::CREATED,
                json!({"success": true, "asset": asset}),
            ))
        }
        Err(e) => {
            if let Err(io) = manager.assets.remove(&asset.id).await {
                tracing::warn!(error = %io, "removing a refused upload failed");
            }
            Err(e)
        }
    }
}
