//! Layers: what the overlay draws, their typed content, and the checks every write passes.
//!
//! Request bodies deserialize into [`LayerCreate`] / [`LayerUpdate`] with the defaults filled
//! in, then [`LayerContent::validate`] and [`Position::validate`] check every range and name
//! the bad field by its dotted path, so an operator sees `content.style.fontSize` rather than
//! "invalid layer".

use super::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest text on a text layer, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Longest layer name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest character model URL.
pub const MAX_MODEL_URL_CHARS: usize = 2048;
/// Animations a character may list.
pub const MAX_ANIMATIONS: usize = 16;
/// Lowest and highest `zIndex`.
pub const Z_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;

/// One layer of the scene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    pub id: String,
    pub name: String,
    /// The content's type, repeated at the top for clients that list layers.
    #[serde(rename = "type")]
    pub kind: LayerKind,
    pub visible: bool,
    pub z_index: i32,
    pub position: Position,
    pub content: LayerContent,
    pub created_at: f64,
    pub updated_at: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    Text,
    Image,
    Character,
}

/// Where a layer sits, in percent of the overlay; no width or height means the content's
/// own size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    #[serde(default)]
    pub x: f64,
    #[serde(default)]
    pub y: f64,
    #[serde(default)]
    pub width: Option<f64>,
    #[serde(default)]
    pub height: Option<f64>,
}

impl Position {
    pub fn validate(&self) -> Result<(), FieldError> {
        let percent = |name: &str, v: f64| {
            if (0.0..=100.0).contains(&v) {
                Ok(())
            } else {
                Err(FieldError::new(
                    format!("position.{name}"),
                    "must be 0 to 100 (percent of the overlay)",
                ))
            }
        };
        percent("x", self.x)?;
        percent("y", self.y)?;
        if let Some(w) = self.width {
            percent("width", w)?;
        }
        if let Some(h) = self.height {
            percent("height", h)?;
        }
        Ok(())
    }
}

/// A layer's content, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LayerContent {
    Text(TextContent),
    Image(ImageContent),
    Character(CharacterContent),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TextContent {
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub style: TextStyle,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TextStyle {
    #[serde(default = "default_font")]
    pub font: String,
    #[serde(default = "default_font_size")]
    pub font_size: f64,
    #[serde(default = "default_color")]
    pub color: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub align: Align,
    #[serde(default, skip_serializing_if = "is_default")]
    pub weight: Weight,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn default_font() -> String {
    "Arial".into()
}

fn default_font_size() -> f64 {
    24.0
}

fn default_color() -> String {
    "#ffffff".into()
}

impl Default for TextStyle {
    fn default() -> Self {
        TextStyle {
            font: default_font(),
            font_size: default_font_size(),
            color: default_color(),
            background: None,
            align: Align::default(),
            weight: Weight::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Align {
    #[default]
    Left,
    Center,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Weight {
    #[default]
    Normal,
    Bold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    #[default]
    Contain,
    Cover,
    Fill,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageContent {
    pub asset_id: String,
    #[serde(default)]
    pub alt: String,
    #[serde(default)]
    pub fit: Fit,
    #[serde(default = "one")]
    pub opacity: f64,
    /// The asset's content URL, set by the server (a client's value is ignored).
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CharacterContent {
    pub model_url: String,
    pub animations: BTreeMap<String, String>,
    /// The playing animation: a key of `animations` (the server fills it in).
    #[serde(default)]
    pub animation: Option<String>,
}

impl LayerContent {
    pub fn kind(&self) -> LayerKind {
        match self {
            LayerContent::Text(_) => LayerKind::Text,
            LayerContent::Image(_) => LayerKind::Image,
            LayerContent::Character(_) => LayerKind::Character,
        }
    }

    /// The asset an image layer shows.
    pub fn asset_id(&self) -> Option<&str> {
        match self {
            LayerContent::Image(image) => Some(&image.asset_id),
            _ => None,
        }
    }

    /// Checks every field and fills in what the server decides (a character's current
    /// animation). Whether an image's asset exists is the caller's check: it needs the
    /// stream's assets.
    pub fn validate(&mut self) -> Result<(), FieldError> {
        match self {
            LayerContent::Text(text) => {
                if text.content.chars().count() > MAX_TEXT_CHARS {
                    return Err(FieldError::new(
                        "content.content",
                        format!("at most {MAX_TEXT_CHARS} characters"),
                    ));
                }
                let style = &text.style;
                let font_ok = (1..=64).contains(&style.font.chars().count())
                    && style
                        .font
                        .chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'));
                if !font_ok {
                    return Err(FieldError::new(
                        "content.style.font",
                        "1 to 64 letters, digits, spaces, - or _",
                    ));
                }
                if !(1.0..=500.0).contains(&style.font_size) {
                    return Err(FieldError::new(
                        "content.style.fontSize",
                        "must be 1 to 500",
                    ));
                }
                if !is_color(&style.color) {
                    return Err(FieldError::new(
                        "content.style.color",
                        "must be #rgb, #rrggbb or #rrggbbaa",
                    ));
                }
                if style.background.as_deref().is_some_and(|c| !is_color(c)) {
                    return Err(FieldError::new(
                        "content.style.background",
                        "must be #rgb, #rrggbb or #rrggbbaa",
                    ));
                }
            }
            LayerContent::Image(image) => {
                if image.alt.chars().count() > 256 {
                    return Err(FieldError::new("content.alt", "at most 256 characters"));
                }
                if !(0.0..=1.0).contains(&image.opacity) {
                    return Err(FieldError::new("content.opacity", "must be 0 to 1"));
                }
            }
            LayerContent::Character(character) => validate_character(character)?,
        }
        Ok(())
    }
}

fn validate_character(character: &mut CharacterContent) -> Result<(), FieldError> {
    if !is_model_url(&character.model_url) {
        return Err(FieldError::new(
            "content.modelUrl",
            "an http(s):// URL or a relative path of A-Z a-z 0-9 . _ - / without .., at most 2048 characters",
        ));
    }
    if character.animations.is_empty() || character.animations.len() > MAX_ANIMATIONS {
        return Err(FieldError::new(
            "content.animations",
            format!("1 to {MAX_ANIMATIONS} animations"),
        ));
    }
    let short = |s: &str| (1..=64).contains(&s.chars().count()) && !s.chars().any(char::is_control);
    for (name, clip) in &character.animations {
        if !short(name) || !short(clip) {
            return Err(FieldError::new(
                format!("content.animations.{name}"),
                "names and clips are 1 to 64 characters",
            ));
        }
    }
    match &character.animation {
        Some(current) if !character.animations.contains_key(current) => Err(FieldError::new(
            "content.animation",
            "must be one of the animations' names",
        )),
        Some(_) => Ok(()),
        None => {
            let first = if character.animations.contains_key("idle") {
                "idle".to_string()
            } else {
                character
                    .animations
                    .keys()
                    .next()
                    .cloned()
                    .unwrap_or_default()
            };
            character.animation = Some(first);
            Ok(())
        }
    }
}

/// `#rgb`, `#rrggbb` or `#rrggbbaa`.
pub fn is_color(s: &str) -> bool {
    s.strip_prefix('#').is_some_and(|hex| {
        matches!(hex.len(), 3 | 6 | 8) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// An `http(s)://` URL without spaces or quotes, or a relative path that cannot climb.
pub fn is_model_url(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_MODEL_URL_CHARS {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return s
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'<' | b'>' | b'\\'));
    }
    let path_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/');
    s.bytes().all(path_char) && !s.split('/').any(|segment| segment == "..")
}

/// A layer name: 1 to 64 characters, no control characters.
pub fn validate_name(name: &str) -> Result<(), FieldError> {
    let count = name.chars().count();
    if count == 0 || count > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(FieldError::new(
            "name",
            format!("1 to {MAX_NAME_CHARS} characters, no control characters"),
        ));
    }
    Ok(())
}

/// A layer id in a path: 1 to 64 characters of `A-Z a-z 0-9 _ -`.
pub fn valid_layer_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// `POST /stream/layers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerCreate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub visible: Option<bool>,
    #[serde(default)]
    pub z_index: Option<i32>,
    #[serde(default)]
    pub position: Option<Position>,
    pub content: LayerContent,
}

/// `PUT /stream/layers/{id}`: the fields given replace the layer's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub visible: Option<bool>,
    #[serde(default)]
    pub z_index: Option<i32>,
    #[serde(default)]
    pub position: Option<Position>,
    #[serde(default)]
    pub content: Option<LayerContent>,
}

/// `PATCH /stream/layers/{id}/visibility`: `visible`, or nothing to toggle.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VisibilityBody {
    #[serde(default)]
    pub visible: Option<bool>,
}

/// Checks a z-index.
pub fn validate_z(z: i32) -> Result<(), FieldError> {
    if Z_RANGE.contains(&z) {
        Ok(())
    } else {
        Err(FieldError::new("zIndex", "must be -1000 to 1000"))
    }
}

/// The seed's default layer templates: the host character and the bid overlay.
pub fn default_layers(now_ms: f64) -> Vec<Layer> {
    let host = CharacterContent {
        model_url: "assets/characters/auctioneer.png".into(),
        animations: BTreeMap::from([
            ("idle".to_string(), "idle-animation".to_string()),
            ("talking".to_string(), "talking-animation".to_string()),
        ]),
        animation: Some("idle".into()),
    };
    let overlay = TextContent {
        content: "Current Bid: 1.5 ETH".into(),
        style: TextStyle::default(),
    };
    let layer = |id: &str, z: i32, position: Position, content: LayerContent| Layer {
        id: id.into(),
        name: id.into(),
        kind: content.kind(),
        visible: true,
        z_index: z,
        position,
        content,
        created_at: now_ms,
        updated_at: now_ms,
    };
    vec![
        layer(
            "host",
            0,
            Position {
                x: 2.0,
                y: 55.0,
                width: Some(20.0),
                height: Some(40.0),
            },
            LayerContent::Character(host),
        ),
        layer(
            "overlay",
            1,
            Position {
                x: 60.0,
                y: 5.0,
                width: Some(35.0),
                height: None,
            },
            LayerContent::Text(overlay),
        ),
    ]
}

#[cfg(test)]
mod tests;
