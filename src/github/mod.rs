//! GitHub webhooks (`POST /webhooks/github`) as far as the domain goes: everything from the
//! request's headers and raw body to what a repository stream should play. No I/O and no
//! async: the route reads the body (under its own size cap), calls [`parse_delivery`],
//! checks [`RecentDeliveries::first_time`], and hands a [`ParsedAction::Play`] to the
//! renderer.
//!
//! One delivery goes through three steps, in this order, each refusing with its own
//! [`WebhookError`]:
//! 1. **Signature** (`signature`): with a secret configured, `X-Hub-Signature-256` must be
//!    the HMAC-SHA256 of the raw body, checked before anything else is read, so an
//!    unsigned caller learns nothing about what the server accepts. Without a secret every
//!    delivery is accepted (the route warns at startup).
//! 2. **Parse**: `X-GitHub-Event` and `X-GitHub-Delivery` are required and bounded; the body
//!    is `application/json`, or GitHub's `application/x-www-form-urlencoded` form whose
//!    `payload` field holds the JSON (both are supported); the repository is
//!    `repository.full_name`, checked with the stream routes' rule.
//! 3. **Map** (`mapper`): event and payload to musical parameters, or a reason to play
//!    nothing.

mod deliveries;
mod error;
pub mod mapper;
pub mod payload;
pub mod signature;
pub mod theory;

pub use deliveries::RecentDeliveries;
pub use error::WebhookError;

use bandsync_protocol::repo::{validate_repo_id, MusicalParams, Trigger};
use http::header::{HeaderMap, CONTENT_TYPE};
use mapper::Mapping;
use payload::Payload;
use std::borrow::Cow;
use theory::one_line;

/// GitHub caps a delivery at 25 MB; nothing larger is a GitHub delivery, whatever the
/// route's own (smaller) cap is.
pub const MAX_PAYLOAD_BYTES: usize = 25 * 1024 * 1024;
/// `X-GitHub-Delivery` is a GUID (36 characters); anything up to this many of
/// `A-Z a-z 0-9 -` is accepted.
pub const MAX_DELIVERY_ID_CHARS: usize = 100;
/// Event names are short snake_case words (`pull_request_review_comment` is 28).
pub const MAX_EVENT_CHARS: usize = 64;
/// Longest ping `zen` kept.
const MAX_ZEN_CHARS: usize = 200;

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const EVENT_HEADER: &str = "x-github-event";
pub const DELIVERY_HEADER: &str = "x-github-delivery";

/// Everything the route needs from one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// `X-GitHub-Delivery`: the dedupe key, and the composition's seed.
    pub id: String,
    /// `X-GitHub-Event`.
    pub event: String,
    pub action: ParsedAction,
}

/// What the delivery asks of the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedAction {
    /// GitHub's `ping`, sent when a webhook is created: answer it, play nothing.
    Ping {
        zen: Option<String>,
        repo: Option<String>,
    },
    /// Render `params` and broadcast to `repo`'s listeners; `trigger` says why.
    Play {
        /// `repository.full_name`, e.g. `octocat/Hello-World` (validated).
        repo: String,
        params: MusicalParams,
        trigger: Trigger,
    },
    /// A valid delivery that plays nothing (answered 200 so GitHub does not retry it).
    Ignored {
        repo: Option<String>,
        reason: String,
    },
}

/// Signature, then headers and body, then the mapping. `secret` is `GITHUB_WEBHOOK_SECRET`.
pub fn parse_delivery(
    headers: &HeaderMap,
    body: &[u8],
    secret: Option<&[u8]>,
) -> Result<Delivery, WebhookError> {
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err(WebhookError::TooLarge(MAX_PAYLOAD_BYTES));
    }
    if let Some(secret) = secret {
        let header = single(headers, SIGNATURE_HEADER)
            .map_err(|()| WebhookError::InvalidSignature("X-Hub-Signature-256 must appear once"))?;
        signature::verify(secret, header, body)?;
    }
    let event = event_name(headers)?;
    let id = delivery_id(headers)?;
    let json = json_body(headers, body)?;
    // serde would also fill the struct from an array of its fields in order: only an
    // object is an event.
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(WebhookError::InvalidPayload(
            "the payload must be a JSON object".to_owned(),
        ));
    }
    let payload: Payload = serde_json::from_slice(&json).map_err(|e| {
        WebhookError::InvalidPayload(format!(
            "the payload is not a GitHub event object: {}",
            one_line(&e.to_string(), 160)
        ))
    })?;
    let action = interpret(&event, &id, &payload)?;
    Ok(Delivery { id, event, action })
}

fn interpret(event: &str, id: &str, payload: &Payload) -> Result<ParsedAction, WebhookError> {
    let repo = match payload
        .repository
        .as_ref()
        .and_then(|r| r.full_name.as_deref())
    {
        Some(name) => {
            validate_repo_id(name).map_err(|_| WebhookError::InvalidRepoId(one_line(name, 160)))?;
            Some(name.to_owned())
        }
        None => None,
    };
    if event == "ping" {
        let zen = payload.zen.as_deref().map(|z| one_line(z, MAX_ZEN_CHARS));
        return Ok(ParsedAction::Ping { zen, repo });
    }
    let Some(repo) = repo else {
        return Ok(ParsedAction::Ignored {
            repo: None,
            reason: format!("the {event} payload names no repository"),
        });
    };
    match mapper::map(event, id, &repo, payload) {
        Mapping::Play { params, trigger } => {
            params
                .validate()
                .map_err(|e| WebhookError::Internal(e.message))?;
            Ok(ParsedAction::Play {
                repo,
                params,
                trigger,
            })
        }
        Mapping::Ignore(reason) => Ok(ParsedAction::Ignored {
            repo: Some(repo),
            reason,
        }),
    }
}

/// The one value of header `name`: `Ok(None)` when absent, `Err` when repeated (two values
/// would leave it to chance which one is checked).
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h [u8]>, ()> {
    let mut values = headers.get_all(name).iter();
    let first = values.next().map(|v| v.as_bytes());
    match values.next() {
        Some(_) => Err(()),
        None => Ok(first),
    }
}

fn event_name(headers: &HeaderMap) -> Result<String, WebhookError> {
    let bad = WebhookError::MissingEvent(
        "X-GitHub-Event must appear once: an event name of 1-64 characters of a-z and _",
    );
    let value = single(headers, EVENT_HEADER).map_err(|()| bad.clone())?;
    match value {
        Some(v)
            if (1..=MAX_EVENT_CHARS).contains(&v.len())
                && v.iter().all(|b| b.is_ascii_lowercase() || *b == b'_') =>
        {
            Ok(String::from_utf8_lossy(v).into_owned())
        }
        _ => Err(bad),
    }
}

fn delivery_id(headers: &HeaderMap) -> Result<String, WebhookError> {
    let bad = WebhookError::MissingDelivery(
        "X-GitHub-Delivery must appear once: 1-100 characters of A-Z a-z 0-9 and -",
    );
    let value = single(headers, DELIVERY_HEADER).map_err(|()| bad.clone())?;
    match value {
        Some(v)
            if (1..=MAX_DELIVERY_ID_CHARS).contains(&v.len())
                && v.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-') =>
        {
            Ok(String::from_utf8_lossy(v).into_owned())
        }
        _ => Err(bad),
    }
}

/// The JSON text of the event: the body itself, or the `payload` field of a form body.
/// A missing `Content-Type` is taken as JSON (GitHub always sends one).
fn json_body<'b>(headers: &HeaderMap, body: &'b [u8]) -> Result<Cow<'b, [u8]>, WebhookError> {
    let media_type = match single(headers, CONTENT_TYPE.as_str()) {
        Err(()) => return Err(WebhookError::UnsupportedMediaType),
        Ok(None) => "application/json".to_owned(),
        Ok(Some(v)) => {
            let v = std::str::from_utf8(v).map_err(|_| WebhookError::UnsupportedMediaType)?;
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        }
    };
    match media_type.as_str() {
        "application/json" => Ok(Cow::Borrowed(body)),
        "application/x-www-form-urlencoded" => form_urlencoded::parse(body)
            .find(|(key, _)| key == "payload")
            .map(|(_, json)| Cow::Owned(json.into_owned().into_bytes()))
            .ok_or_else(|| {
                WebhookError::InvalidPayload("the form has no payload field".to_owned())
            }),
        _ => Err(WebhookError::UnsupportedMediaType),
    }
}

#[cfg(test)]
mod tests;
