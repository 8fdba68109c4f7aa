//! The Stream Manager's HTTP routes (`/stream/status`, `/stream/{start|pause|stop|reset}`,
//! `/stream/layers...`, `/stream/assets...`) and its WebSocket (`/ws/stream`).
//!
//! Served ahead of warp, like the repository streams they share `/stream/` with: the upload
//! streams its body to disk, which warp's body filters would buffer. Each request is
//! matched on its path first (unknown: 404, wrong method: 405 with `Allow`), then checked:
//! the stream (`?session=`), the rate limit, the token, and only then the body is read.

use super::access::{admit, authorize_read, authorize_write};
use super::document::Action;
use super::error::ManagerError;
use super::{StreamKey, StreamManager};
use crate::context::AppContext;
use crate::http::errors::{error_response, Body};
use crate::repo::routes::json_response;
use bandsync_protocol::stream_manager::layers::{
    valid_layer_id, LayerCreate, LayerUpdate, VisibilityBody,
};
use bandsync_protocol::stream_manager::Control;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;

/// Largest JSON body of a Stream Manager route.
pub const MAX_JSON_BODY_BYTES: usize = 64 * 1024;

/// A matched Stream Manager path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageRoute {
    Status,
    Control(Control),
    Layers,
    Layer(String),
    Visibility(String),
    Upload,
    Assets,
    Asset(String),
    AssetContent(String),
    Socket,
    /// Under a Stream Manager word, but no route.
    Unknown,
}

impl StageRoute {
    /// The route of `path`, when it is the Stream Manager's: `/ws/stream`, or `/stream/`
    /// followed by one of its reserved words.
    pub fn of(path: &str) -> Option<StageRoute> {
        if path == "/ws/stream" {
            return Some(StageRoute::Socket);
        }
        let rest = path.strip_prefix("/stream/")?;
        if !crate::repo::path::is_stream_manager(rest) {
            return None;
        }
        let segments: Vec<&str> = rest.split('/').collect();
        Some(match segments.as_slice() {
            ["status"] => StageRoute::Status,
            ["start"] => StageRoute::Control(Control::Start),
            ["pause"] => StageRoute::Control(Control::Pause),
            ["stop"] => StageRoute::Control(Control::Stop),
            ["reset"] => StageRoute::Control(Control::Reset),
            ["layers"] => StageRoute::Layers,
            ["layers", id] => StageRoute::Layer((*id).to_owned()),
            ["layers", id, "visibility"] => StageRoute::Visibility((*id).to_owned()),
            ["assets"] => StageRoute::Assets,
            ["assets", "upload"] => StageRoute::Upload,
            ["assets", id] => StageRoute::Asset((*id).to_owned()),
            ["assets", id, "content"] => StageRoute::AssetContent((*id).to_owned()),
            _ => StageRoute::Unknown,
        })
    }

    /// The methods the route answers (`HEAD` wherever `GET`).
    fn allowed(&self) -> &'static [Method] {
        const READ: &[Method] = &[Method::GET, Method::HEAD];
        const POST: &[Method] = &[Method::POST];
        match self {
            StageRoute::Status | StageRoute::Assets | StageRoute::AssetContent(_) => READ,
            StageRoute::Socket => &[Method::GET],
            StageRoute::Control(_) | StageRoute::Upload => POST,
            StageRoute::Layers => &[Method::GET, Method::HEAD, Method::POST],
            StageRoute::Layer(_) => &[Method::PUT, Method::DELETE],
            StageRoute::Visibility(_) => &[Method::PATCH],
            StageRoute::Asset(_) => &[Method::GET, Method::HEAD, Method::DELETE],
            StageRoute::Unknown => &[],
        }
    }

    pub async fn serve(self, req: Request<Incoming>, ctx: Arc<AppContext>) -> Response<Body> {
        match self.checked(&req) {
            Ok(()) => {}
            Err(response) => return *response,
        }
        if let StageRoute::AssetContent(id) = &self {
            let head = req.method() == Method::HEAD;
            return ctx
                .stream_manager
                .assets
                .serve(id, req.headers(), head)
                .await;
        }
        if self == StageRoute::Socket {
            return super::socket::handle(req, ctx);
        }
        let (client, stream) = match admit(&ctx, &req) {
            Ok(admitted) => admitted,
            Err(response) => return *response,
        };
        let write = !matches!(*req.method(), Method::GET | Method::HEAD);
        let allowed = if write {
            authorize_write(&ctx, req.headers(), client)
        } else {
            authorize_read(&ctx, req.uri().query(), req.headers(), &stream, client)
        };
        if let Err(response) = allowed {
            return *response;
        }
        let manager = ctx.stream_manager.clone();
        let head = req.method() == Method::HEAD;
        let result = match (self, req.method().clone()) {
            (StageRoute::Upload, _) => super::upload::upload(&manager, &stream, req).await,
            (route, method) => dispatch(&manager, &stream, route, method, req).await,
        };
        let mut response = match result {
            Ok((status, body)) => json_response(status, &body),
            Err(error) => json_response(error.status(), &error.body()),
        };
        if head {
            *response.body_mut() = crate::http::errors::full(Bytes::new());
        }
        response
    }

    /// Path-level checks: the route exists, takes this method, and its id has a valid shape.
    fn checked<B>(&self, req: &Request<B>) -> Result<(), Box<Response<Body>>> {
        if *self == StageRoute::Unknown {
            return Err(Box::new(error_response(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "no such Stream Manager route",
            )));
        }
        let allowed = self.allowed();
        if !allowed.contains(req.method()) {
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "method not allowed on this route",
            );
            let list: Vec<&str> = allowed.iter().map(Method::as_str).collect();
            if let Ok(value) = HeaderValue::from_str(&list.join(", ")) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            return Err(Box::new(response));
        }
        let bad = |code: &str, what: &str| {
            Err(Box::new(error_response(
                StatusCode::BAD_REQUEST,
                code,
                what,
            )))
        };
        match self {
            StageRoute::Layer(id) | StageRoute::Visibility(id) if !valid_layer_id(id) => bad(
                "INVALID_LAYER_ID",
                "layer ids are 1 to 64 characters of A-Z a-z 0-9 _ -",
            ),
            StageRoute::Asset(id) | StageRoute::AssetContent(id)
                if !super::assets::valid_asset_id(id) =>
            {
                bad("INVALID_ASSET_ID", "asset ids are ast_ and 32 hex digits")
            }
            _ => Ok(()),
        }
    }
}

type Answer = Result<(StatusCode, Value), ManagerError>;

async fn dispatch(
    manager: &StreamManager,
    stream: &StreamKey,
    route: StageRoute,
    method: Method,
    req: Request<Incoming>,
) -> Answer {
    let now = crate::http::errors::now_ms;
    let (viewers, producer) = manager.hub.counts(stream.key());
    let status_of = |doc: &super::document::StreamDoc| {
        let mut body =
            serde_json::to_value(doc.status(now(), viewers, producer)).expect("statuses serialize");
        body["success"] = true.into();
        body
    };
    match (route, method) {
        (StageRoute::Status, _) => Ok((StatusCode::OK, status_of(&*manager.read(stream).await?))),
        (StageRoute::Control(control), _) => {
            #[derive(serde::Deserialize, Default)]
            struct StartBody {
                #[serde(default)]
                quality: Option<bandsync_protocol::stream_manager::Quality>,
            }
            let body: StartBody = read_json(req, true).await?.unwrap_or_default();
            let action = Action::Control {
                control,
                quality: body.quality,
            };
            let doc = manager.change(stream, action).await?;
            let mut body = status_of(&doc);
            if control == Control::Reset {
                // `layers` is the status's count; the restored layers come as `layerList`.
                body["layerList"] = serde_json::to_value(doc.layers_in_order()).expect("layers");
            }
            Ok((StatusCode::OK, body))
        }
        (StageRoute::Layers, Method::POST) => {
            let body: LayerCreate = read_json(req, false).await?.expect("required");
            let id = format!("lyr_{:012x}", rand::random::<u64>() >> 16);
            let doc = manager
                .change(
                    stream,
                    Action::CreateLayer {
                        id: id.clone(),
                        body,
                    },
                )
                .await?;
            let layer = doc.layer(&id).expect("just created");
            Ok((
                StatusCode::CREATED,
                json!({"success": true, "layer": layer}),
            ))
        }
        (StageRoute::Layers, _) => {
            let doc = manager.read(stream).await?;
            Ok((
                StatusCode::OK,
                json!({"success": true, "layers": doc.layers_in_order()}),
            ))
        }
        (StageRoute::Layer(id), Method::PUT) => {
            let body: LayerUpdate = read_json(req, true).await?.unwrap_or_default();
            let doc = manager
                .change(
                    stream,
                    Action::UpdateLayer {
                        id: id.clone(),
                        body,
                    },
                )
                .await?;
            Ok((
                StatusCode::OK,
                json!({"success": true, "layer": doc.layer(&id)}),
            ))
        }
        (StageRoute::Layer(id), _) => {
            manager
                .change(stream, Action::DeleteLayer(id.clone()))
                .await?;
            Ok((StatusCode::OK, json!({"success": true, "id": id})))
        }
        (StageRoute::Visibility(id), _) => {
            let body: VisibilityBody = read_json(req, true).await?.unwrap_or_default();
            let action = Action::SetVisibility {
                id: id.clone(),
                visible: body.visible,
            };
            let doc = manager.change(stream, action).await?;
            Ok((
                StatusCode::OK,
                json!({"success": true, "layer": doc.layer(&id)}),
            ))
        }
        (StageRoute::Assets, _) => {
            let doc = manager.read(stream).await?;
            Ok((
                StatusCode::OK,
                json!({"success": true, "assets": doc.assets}),
            ))
        }
        (StageRoute::Asset(id), Method::DELETE) => {
            manager
                .change(stream, Action::RemoveAsset(id.clone()))
                .await?;
            if let Err(e) = manager.assets.remove(&id).await {
                tracing::warn!(error = %e, asset = %id, "removing an asset's file failed");
            }
            // `change` set the gauges while the file was still there.
            manager.update_resource_gauges();
            Ok((StatusCode::OK, json!({"success": true, "id": id})))
        }
        (StageRoute::Asset(id), _) => {
            let doc = manager.read(stream).await?;
            let asset = doc.asset(&id).ok_or(ManagerError::AssetNotFound)?;
            Ok((StatusCode::OK, json!({"success": true, "asset": asset})))
        }
        (route, method) => unreachable!("{route:?} {method} passed the method check"),
    }
}

/// Reads a JSON body of at most [`MAX_JSON_BODY_BYTES`]. An empty body is `None` when
/// `optional`, else a `400`. A parse error names the field by its dotted path.
async fn read_json<T: DeserializeOwned>(
    req: Request<Incoming>,
    optional: bool,
) -> Result<Option<T>, ManagerError> {
    use serde::Deserialize as _;
    let json_type = crate::repo::routes::is_json(req.headers());
    let bytes = match Limited::new(req.into_body(), MAX_JSON_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ManagerError::TooLarge(MAX_JSON_BODY_BYTES))
        }
        Err(e) => {
            return Err(ManagerError::InvalidBody(format!(
                "reading the body failed: {e}"
            )))
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return if optional {
            Ok(None)
        } else {
            Err(ManagerError::InvalidBody("a JSON body is required".into()))
        };
    }
    if !json_type {
        return Err(ManagerError::UnsupportedMediaType);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    let value: Value = serde_json::Value::deserialize(&mut deserializer)
        .map_err(|e| ManagerError::InvalidBody(e.to_string()))?;
    check_content(&value)?;
    tracked(value, "").map(Some)
}

/// Checks a layer body's `content` against its type's fields first: serde reads a tagged
/// enum through a buffer that forgets where in it an error was, so this is where
/// `content.style.fontSize` gets its path.
fn check_content(body: &Value) -> Result<(), ManagerError> {
    use bandsync_protocol::stream_manager::layers::{CharacterContent, ImageContent, TextContent};
    let Some(content) = body.get("content").filter(|c| c.is_object()) else {
        return Ok(());
    };
    let fields = {
        let mut fields = content.clone();
        fields.as_object_mut().map(|f| f.remove("type"));
        fields
    };
    match content.get("type").and_then(Value::as_str) {
        Some("text") => tracked::<TextContent>(fields, "content.").map(drop),
        Some("image") => tracked::<ImageContent>(fields, "content.").map(drop),
        Some("character") => tracked::<CharacterContent>(fields, "content.").map(drop),
        _ => Ok(()),
    }
}

/// Deserializes `value`, naming the field of an error by its dotted path after `prefix`.
fn tracked<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, ManagerError> {
    match serde_path_to_error::deserialize(value) {
        Ok(value) => Ok(value),
        Err(e) => {
            let mut path = e.path().to_string();
            let message = e.into_inner().to_string();
            // serde names a missing field in its message, at the path of its parent.
            if let Some(missing) = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                path = match path.as_str() {
                    "." | "" => missing.to_owned(),
                    parent => format!("{parent}.{missing}"),
                };
            }
            if path == "." || path.is_empty() {
                match prefix.strip_suffix('.') {
                    Some(parent) => Err(ManagerError::InvalidField {
                        field: parent.to_owned(),
                        message,
                    }),
                    None => Err(ManagerError::InvalidBody(message)),
                }
            } else {
                Err(ManagerError::InvalidField {
                    field: format!("{prefix}{path}"),
                    message,
                })
            }
        }
    }
}
