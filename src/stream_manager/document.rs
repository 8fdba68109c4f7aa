//! One stream's document (state, layers, asset metadata) and the pure changes made to it.
//!
//! Every write is an [`Action`] applied to a copy of the current document; the result is
//! the next document (its `version` one higher) and the events that tell clients what
//! changed. Nothing here does I/O, so the state machine and the layer rules are tested
//! without a server, and the same code runs whichever store commits the result.

use super::error::ManagerError;
use bandsync_protocol::stream_manager::events::{
    AssetChange, LayerChange, QualityChange, StreamSnapshot, VisibilityChange,
};
use bandsync_protocol::stream_manager::layers::{
    default_layers, validate_name, validate_z, LayerContent, LayerCreate, LayerUpdate,
};
use bandsync_protocol::stream_manager::{
    asset_url, AssetInfo, Control, Layer, Quality, StageEvent, StreamState, StreamStatus,
};
use serde::{Deserialize, Serialize};

/// What one stream holds, as stored (a file, or a Redis key) and cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamDoc {
    pub session: Option<String>,
    pub state: StreamState,
    pub quality: Quality,
    pub started_at: Option<f64>,
    pub paused_at: Option<f64>,
    pub stopped_at: Option<f64>,
    /// Milliseconds live before the current live stretch (pauses excluded).
    pub live_before_ms: f64,
    /// When the current live stretch began.
    pub live_since: Option<f64>,
    pub updated_at: f64,
    /// 0 for a stream never written.
    pub version: u64,
    pub layers: Vec<Layer>,
    pub assets: Vec<AssetInfo>,
}

/// One write to a stream.
#[derive(Debug, Clone)]
pub enum Action {
    Control {
        control: Control,
        quality: Option<Quality>,
    },
    SetQuality(Quality),
    CreateLayer {
        id: String,
        body: LayerCreate,
    },
    UpdateLayer {
        id: String,
        body: LayerUpdate,
    },
    DeleteLayer(String),
    SetVisibility {
        id: String,
        visible: Option<bool>,
    },
    AddAsset(AssetInfo),
    RemoveAsset(String),
}

/// Per-stream bounds the document enforces.
#[derive(Debug, Clone, Copy)]
pub struct DocLimits {
    pub max_layers: usize,
    pub max_assets: usize,
}

impl StreamDoc {
    /// A stream never written: idle, the default layers, no assets.
    pub fn fresh(session: Option<String>, now_ms: f64) -> StreamDoc {
        StreamDoc {
            session,
            state: StreamState::Idle,
            quality: Quality::default(),
            started_at: None,
            paused_at: None,
            stopped_at: None,
            live_before_ms: 0.0,
            live_since: None,
            updated_at: now_ms,
            version: 0,
            layers: default_layers(now_ms),
            assets: Vec::new(),
        }
    }

    /// The status as answered at `now_ms`, with this instance's socket counts.
    pub fn status(&self, now_ms: f64, viewers: usize, producer: bool) -> StreamStatus {
        let live_now = self
            .live_since
            .map_or(0.0, |since| (now_ms - since).max(0.0));
        StreamStatus {
            session: self.session.clone(),
            state: self.state,
            quality: self.quality,
            started_at: self.started_at,
            paused_at: self.paused_at,
            stopped_at: self.stopped_at,
            updated_at: self.updated_at,
            live_ms: (self.live_before_ms + live_now) as u64,
            version: self.version,
            layers: self.layers.len(),
            visible_layers: self.layers.iter().filter(|l| l.visible).count(),
            assets: self.assets.len(),
            viewers,
            producer,
        }
    }

    pub fn snapshot(&self, now_ms: f64, viewers: usize, producer: bool) -> StreamSnapshot {
        StreamSnapshot {
            status: self.status(now_ms, viewers, producer),
            layers: self.layers_in_order(),
            assets: self.assets.clone(),
        }
    }

    /// Bottom to top: by `zIndex`, then by creation.
    pub fn layers_in_order(&self) -> Vec<Layer> {
        let mut layers = self.layers.clone();
        layers.sort_by(|a, b| {
            a.z_index
                .cmp(&b.z_index)
                .then(a.created_at.total_cmp(&b.created_at))
        });
        layers
    }

    pub fn layer(&self, id: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.id == id)
    }

    pub fn asset(&self, id: &str) -> Option<&AssetInfo> {
        self.assets.iter().find(|a| a.id == id)
    }

    /// Applies `action` at `now_ms`: the document moves one version on and the events say
    /// what changed (the status events carry no viewer counts: the pusher fills them in).
    pub fn apply(
        &mut self,
        action: Action,
        now_ms: f64,
        limits: DocLimits,
    ) -> Result<Vec<StageEvent>, ManagerError> {
        let events = match action {
            Action::Control { control, quality } => self.control(control, quality, now_ms)?,
            Action::SetQuality(quality) => {
                self.quality = quality;
                vec![StageEvent::Quality(QualityChange { quality })]
            }
            Action::CreateLayer { id, body } => self.create_layer(id, body, now_ms, limits)?,
            Action::UpdateLayer { id, body } => self.update_layer(&id, body, now_ms)?,
            Action::DeleteLayer(id) => {
                let before = self.layers.len();
                self.layers.retain(|l| l.id != id);
                if self.layers.len() == before {
                    return Err(ManagerError::LayerNotFound);
                }
                vec![StageEvent::LayerUpdate(LayerChange::deleted(id))]
            }
            Action::SetVisibility { id, visible } => {
                let layer = self
                    .layers
                    .iter_mut()
                    .find(|l| l.id == id)
                    .ok_or(ManagerError::LayerNotFound)?;
                layer.visible = visible.unwrap_or(!layer.visible);
                layer.updated_at = now_ms;
                vec![StageEvent::LayerVisibility(VisibilityChange {
                    id,
                    visible: layer.visible,
                })]
            }
            Action::AddAsset(asset) => {
                if self.assets.len() >= limits.max_assets {
                    return Err(ManagerError::AssetLimit(limits.max_assets));
                }
                self.assets.push(asset.clone());
                vec![StageEvent::AssetUpdate(AssetChange::Added {
                    asset: Box::new(asset),
                    deleted: false,
                })]
            }
            Action::RemoveAsset(id) => {
                if self.asset(&id).is_none() {
                    return Err(ManagerError::AssetNotFound);
                }
                let users: Vec<String> = self
                    .layers
                    .iter()
                    .filter(|l| l.content.asset_id() == Some(id.as_str()))
                    .map(|l| l.id.clone())
                    .collect();
                if !users.is_empty() {
                    return Err(ManagerError::AssetInUse(users));
                }
                self.assets.retain(|a| a.id != id);
                vec![StageEvent::AssetUpdate(AssetChange::Deleted {
                    id,
                    deleted: true,
                })]
            }
        };
        self.version += 1;
        self.updated_at = now_ms;
        let mut events = events;
        // Status-bearing events describe the document as committed, new version included.
        for event in &mut events {
            match event {
                StageEvent::StateUpdate(status) => *status = self.status(now_ms, 0, false),
                StageEvent::StreamState(snapshot) => *snapshot = self.snapshot(now_ms, 0, false),
                _ => {}
            }
        }
        Ok(events)
    }

    fn control(
        &mut self,
        control: Control,
        quality: Option<Quality>,
        now_ms: f64,
    ) -> Result<Vec<StageEvent>, ManagerError> {
        let from = self.state;
        let to = control
            .next(from)
            .ok_or(ManagerError::InvalidTransition { control, from })?;
        if control == Control::Reset {
            let assets = std::mem::take(&mut self.assets);
            let (session, version) = (self.session.take(), self.version);
            *self = StreamDoc::fresh(session, now_ms);
            self.assets = assets;
            self.version = version;
            // Filled in by `apply` once the version has moved on.
            return Ok(vec![StageEvent::StreamState(
                self.snapshot(now_ms, 0, false),
            )]);
        }
        match (from, to) {
            (StreamState::Paused, StreamState::Live) => self.paused_at = None,
            (_, StreamState::Live) => {
                self.started_at = Some(now_ms);
                self.live_before_ms = 0.0;
                self.paused_at = None;
                self.stopped_at = None;
            }
            (_, StreamState::Paused) => self.paused_at = Some(now_ms),
            (_, StreamState::Stopped) => self.stopped_at = Some(now_ms),
            _ => {}
        }
        if let Some(since) = self.live_since.take() {
            self.live_before_ms += (now_ms - since).max(0.0);
        }
        if to == StreamState::Live {
            self.live_since = Some(now_ms);
        }
        self.state = to;
        if let Some(quality) = quality {
            self.quality = quality;
        }
        Ok(vec![StageEvent::StateUpdate(self.status(now_ms, 0, false))])
    }

    fn create_layer(
        &mut self,
        id: String,
        body: LayerCreate,
        now_ms: f64,
        limits: DocLimits,
    ) -> Result<Vec<StageEvent>, ManagerError> {
        if self.layers.len() >= limits.max_layers {
            return Err(ManagerError::LayerLimit(limits.max_layers));
        }
        let mut content = body.content;
        self.check_content(&mut content)?;
        let name = body.name.unwrap_or_else(|| kind_name(&content).to_string());
        validate_name(&name)?;
        let position = body.position.unwrap_or_default();
        position.validate()?;
        let top = self.layers.iter().map(|l| l.z_index).max();
        let z_index = match body.z_index {
            Some(z) => z,
            None => top.map_or(0, |z| (z + 1).min(1000)),
        };
        validate_z(z_index)?;
        let layer = Layer {
            id,
            name,
            kind: content.kind(),
            visible: body.visible.unwrap_or(true),
            z_index,
            position,
            content,
            created_at: now_ms,
            updated_at: now_ms,
        };
        self.layers.push(layer.clone());
        Ok(vec![StageEvent::LayerUpdate(LayerChange::upserted(layer))])
    }

    fn update_layer(
        &mut self,
        id: &str,
        body: LayerUpdate,
        now_ms: f64,
    ) -> Result<Vec<StageEvent>, ManagerError> {
        let index = self
            .layers
            .iter()
            .position(|l| l.id == id)
            .ok_or(ManagerError::LayerNotFound)?;
        let content = match body.content {
            Some(mut content) => {
                self.check_content(&mut content)?;
                Some(content)
            }
            None => None,
        };
        if let Some(name) = &body.name {
            validate_name(name)?;
        }
        if let Some(position) = &body.position {
            position.validate()?;
        }
        if let Some(z) = body.z_index {
            validate_z(z)?;
        }
        let layer = &mut self.layers[index];
        if let Some(content) = content {
            layer.kind = content.kind();
            layer.content = content;
        }
        if let Some(name) = body.name {
            layer.name = name;
        }
        if let Some(position) = body.position {
            layer.position = position;
        }
        if let Some(z) = body.z_index {
            layer.z_index = z;
        }
        if let Some(visible) = body.visible {
            layer.visible = visible;
        }
        layer.updated_at = now_ms;
        Ok(vec![StageEvent::LayerUpdate(LayerChange::upserted(
            layer.clone(),
        ))])
    }

    /// Validates content and resolves an image's asset against this stream's assets.
    fn check_content(&self, content: &mut LayerContent) -> Result<(), ManagerError> {
        content.validate()?;
        if let LayerContent::Image(image) = content {
            let asset = self.asset(&image.asset_id).ok_or_else(|| {
                ManagerError::field("content.assetId", "no such asset in this stream")
            })?;
            if !asset.is_image() {
                return Err(ManagerError::field(
                    "content.assetId",
                    "the asset is not an image",
                ));
            }
            image.url = Some(asset_url(&asset.id));
        }
        Ok(())
    }
}

fn kind_name(content: &LayerContent) -> &'static str {
    match content {
        LayerContent::Text(_) => "text",
        LayerContent::Image(_) => "image",
        LayerContent::Character(_) => "character",
    }
}

#[cfg(test)]
mod tests;
