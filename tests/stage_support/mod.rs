//! Talking to the Stream Manager in tests: REST calls with or without the bearer token,
//! and a stream WebSocket client that reads the seed's envelope.

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub const TOKEN: &str = "stage-secret";
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    pub token: Option<String>,
}

impl Api {
    pub fn new(base: String) -> Api {
        Api {
            base,
            client: reqwest::Client::new(),
            token: Some(TOKEN.into()),
        }
    }

    pub fn anonymous(base: String) -> Api {
        Api {
            token: None,
            ..Api::new(base)
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.header("authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    /// Sends a request with an optional JSON body; the status and the parsed body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    /// Creates a text layer and returns its id.
    pub async fn text_layer(&self, query: &str, text: &str) -> String {
        let (status, body) = self
            .post(
                &format!("/stream/layers{query}"),
                json!({"name": "lyrics", "content": {"type": "text", "content": text}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["layer"]["id"].as_str().unwrap().to_owned()
    }
}

/// A multipart body with one part per `(name, filename, bytes)`; `close` false leaves out
/// the closing boundary (a truncated upload).
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])], close: bool) -> (String, Vec<u8>) {
    let boundary = "bandsyncBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(file) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    if close {
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    }
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A tiny valid PNG (1x1, opaque red).
pub fn png() -> Vec<u8> {
    let hex = "89504e470d0a1a0a0000000d49484452000000010000000108020000009077\
               53de0000000c49444154789c63f8cfc000000301010018dd8db00000000049454e44ae426082";
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

impl Api {
    /// Uploads `bytes` as `filename`; the status and body.
    pub async fn upload(&self, query: &str, filename: &str, bytes: &[u8]) -> (u16, Value) {
        let (content_type, body) = multipart(&[("file", Some(filename), bytes)], true);
        self.post_form(query, &content_type, body).await
    }

    /// Sends a raw body to the upload route (content type and bytes as given).
    pub async fn post_form(&self, query: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .request(
                reqwest::Method::POST,
                &format!("/stream/assets/upload{query}"),
            )
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct StageSocket {
    pub socket: Socket,
}

impl StageSocket {
    /// Connects to `/ws/stream{query}` and returns with the first message (`streamState`).
    pub async fn open(addr: std::net::SocketAddr, query: &str) -> (StageSocket, Value) {
        let url = format!("ws://{addr}/ws/stream{query}");
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        let mut socket = StageSocket { socket };
        let first = socket.next().await;
        assert_eq!(first["type"], "streamState", "{first}");
        (socket, first)
    }

    /// The next JSON text message; panics after [`WAIT`].
    pub async fn next(&mut self) -> Value {
        self.try_next(WAIT).await.expect("a message in time")
    }

    pub async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??;
            match message.expect("socket error") {
                Message::Text(text) => return Some(serde_json::from_str(text.as_str()).unwrap()),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next message of type `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let message = self.next().await;
            if message["type"] == kind {
                return message;
            }
        }
    }

    pub async fn send(&mut self, value: Value) {
        self.socket
            .send(Message::Text(value.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::Text(text.into())).await.unwrap();
    }
}
