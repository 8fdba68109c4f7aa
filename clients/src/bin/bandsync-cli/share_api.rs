//! The Music Share REST API (`/api/share/...`) as `share` and `receive` call it: one
//! `reqwest` client, the `Authorization` header on every request, and the answers kept
//! as status + body so each caller decides what a status means for it (a 429 is retried
//! by the sharer; a 404 ends a receiver).

use anyhow::Context as _;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// Connecting may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request (sending the body, the whole answer) may take this long. Audio chunks are
/// at most 1 MB, so this is generous on any link that can carry the stream at all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// What a 429 without a usable `Retry-After` waits.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The session id the share API accepts: exactly six ASCII digits (checked before any
/// request, for a clearer message than the server's 400).
pub fn parse_share_id(s: &str) -> Result<String, String> {
    if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a share session id (exactly 6 digits)"
        ))
    }
}

/// `http://host:port` (trailing slashes dropped) -> `ws://host:port/ws`.
pub fn ws_url(base: &str) -> anyhow::Result<String> {
    let base = base.trim_end_matches('/');
    let rest = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        anyhow::bail!("--url must be the server's http:// base URL, got {base:?}");
    };
    Ok(format!("{rest}/ws"))
}

/// One answer: status, body, and `Retry-After` (seconds, as the server sends it).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub retry_after: Option<Duration>,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "HTTP {}: the body is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The error format's `code` (`SESSION_ENDED`, `NO_METADATA`, …), when there is one.
    pub fn code(&self) -> Option<String> {
        let value: Value = serde_json::from_slice(&self.body).ok()?;
        value.get("code")?.as_str().map(str::to_owned)
    }

    /// How long a 429 asks to wait.
    pub fn wait(&self) -> Duration {
        self.retry_after.unwrap_or(DEFAULT_RETRY_AFTER)
    }

    /// `404 SESSION_ENDED: Session has ended`, from the error format.
    pub fn describe(&self) -> String {
        let value: Option<Value> = serde_json::from_slice(&self.body).ok();
        let field = |k: &str| {
            value
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match (field("code"), field("error")) {
            (Some(code), Some(error)) => format!("{} {code}: {error}", self.status.as_u16()),
            (None, Some(error)) => format!("{}: {error}", self.status.as_u16()),
            _ => self.status.to_string(),
        }
    }
}

/// The share API of one server, for one session, with one token.
pub struct ShareApi {
    http: reqwest::Client,
    base: String,
    token: String,
    session: String,
}

impl ShareApi {
    pub fn new(base: &str, token: &str, session: &str) -> anyhow::Result<Self> {
        ws_url(base)?; // the same scheme check, so a ws:// URL fails before any request
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            session: session.to_owned(),
        })
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    /// `{base}/api/share/{session}/{what}`.
    fn url(&self, what: &str) -> String {
        format!("{}/api/share/{}/{what}", self.base, self.session)
    }

    async fn call(
        &self,
        method: Method,
        url: String,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Reply> {
        let mut request = self
            .http
            .request(method.clone(), &url)
            .header(reqwest::header::AUTHORIZATION, &self.token);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok());
        let body = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer to {method} {url}"))?
            .to_vec();
        Ok(Reply {
            status,
            body,
            retry_after,
        })
    }

    fn json_body(value: &Value) -> Option<Vec<u8>> {
        Some(serde_json::to_vec(value).expect("a Value always serializes"))
    }

    pub async fn start(&self) -> anyhow::Result<Reply> {
        let url = format!("{}/api/share/start", self.base);
        let body = serde_json::json!({ "sessionId": self.session });
        self.call(Method::POST, url, Self::json_body(&body)).await
    }

    pub async fn post_metadata(&self, metadata: &Value) -> anyhow::Result<Reply> {
        let url = self.url("metadata");
        self.call(Method::POST, url, Self::json_body(metadata))
            .await
    }

    pub async fn post_audio(&self, chunk: &Value) -> anyhow::Result<Reply> {
        let url = self.url("audio");
        self.call(Method::POST, url, Self::json_body(chunk)).await
    }

    pub async fn stop(&self) -> anyhow::Result<Reply> {
        self.call(Method::POST, self.url("stop"), None).await
    }

    pub async fn status(&self) -> anyhow::Result<Reply> {
        self.call(Method::GET, self.url("status"), None).await
    }

    pub async fn get_metadata(&self) -> anyhow::Result<Reply> {
        self.call(Method::GET, self.url("metadata"), None).await
    }

    pub async fn get_audio(&self, since: i64) -> anyhow::Result<Reply> {
        let url = format!("{}?since={since}", self.url("audio"));
        self.call(Method::GET, url, None).await
    }

    /// The error for a refusal that ends the run, worded for what the user can do.
    pub fn refusal(&self, doing: &str, reply: &Reply) -> anyhow::Error {
        self.explain(doing, reply.status.as_u16(), &reply.describe())
    }

    /// [`Self::refusal`] from a status (or the status a WebSocket error code stands for)
    /// and the server's own words.
    pub fn explain(&self, doing: &str, status: u16, what: &str) -> anyhow::Error {
        let session = &self.session;
        match status {
            401 => anyhow::anyhow!(
                "{doing}: the server refused the token ({what}); --token must be the \
                 server's BEARER_TOKEN, sent as the whole Authorization header"
            ),
            404 => anyhow::anyhow!("{doing}: no active share in session {session} ({what})"),
            409 => anyhow::anyhow!(
                "{doing}: session {session} is already being shared ({what}); \
                 choose another --session or stop the other share"
            ),
            503 => anyhow::anyhow!(
                "{doing}: the server cannot take another share now ({what}); try again later"
            ),
            _ => anyhow::anyhow!("{doing}: {what}"),
        }
    }
}

/// The HTTP status a share error code of the WebSocket API stands for (the REST API's
/// codes, so both transports explain a refusal the same way).
pub fn status_of_code(code: &str) -> u16 {
    match code {
        "UNAUTHORIZED" => 401,
        "SESSION_NOT_FOUND" | "SESSION_ENDED" => 404,
        "SESSION_CONFLICT" => 409,
        "RATE_LIMITED" => 429,
        "SESSION_LIMIT" => 503,
        _ => 400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_ids_are_six_digits() {
        assert_eq!(parse_share_id("123456"), Ok("123456".into()));
        for bad in ["12345", "1234567", "12a456", "", "band"] {
            assert!(parse_share_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_websocket_url_follows_the_http_base() {
        assert_eq!(
            ws_url("http://127.0.0.1:3001").unwrap(),
            "ws://127.0.0.1:3001/ws"
        );
        assert_eq!(
            ws_url("https://band.example/").unwrap(),
            "wss://band.example/ws"
        );
        assert!(ws_url("ws://127.0.0.1:3001/ws").is_err());
    }

    #[test]
    fn replies_describe_the_error_format() {
        let reply = Reply {
            status: StatusCode::NOT_FOUND,
            body: br#"{"success":false,"error":"Session has ended","code":"SESSION_ENDED"}"#
                .to_vec(),
            retry_after: None,
        };
        assert_eq!(reply.describe(), "404 SESSION_ENDED: Session has ended");
        assert_eq!(reply.code().as_deref(), Some("SESSION_ENDED"));
        assert_eq!(reply.wait(), DEFAULT_RETRY_AFTER);
        let bare = Reply {
            status: StatusCode::BAD_GATEWAY,
            body: b"<html>".to_vec(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(bare.describe(), "502 Bad Gateway");
        assert_eq!(bare.code(), None);
        assert_eq!(bare.wait(), Duration::from_secs(2));
    }

    #[test]
    fn refusals_say_what_to_do() {
        let api = ShareApi::new("http://127.0.0.1:1", "Bearer Token", "123456").unwrap();
        let reply = |status: u16| Reply {
            status: StatusCode::from_u16(status).unwrap(),
            body: Vec::new(),
            retry_after: None,
        };
        assert!(api
            .refusal("starting", &reply(401))
            .to_string()
            .contains("BEARER_TOKEN"));
        assert!(api
            .refusal("starting", &reply(409))
            .to_string()
            .contains("already being shared"));
        assert!(api
            .refusal("starting", &reply(503))
            .to_string()
            .contains("try again later"));
    }
}
