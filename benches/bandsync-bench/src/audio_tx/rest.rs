//! A sharer over the REST API: base64 f32 JSON POSTs, as the seed's client sends them.

use super::*;

pub(super) struct RestSharer {
    http: reqwest::Client,
    base: String,
    id: String,
    token: String,
}

impl RestSharer {
    pub(super) async fn start(ep: &Endpoints, id: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        let sharer = Self {
            http,
            base: ep.http_base.clone(),
            id: id.to_owned(),
            token: token.to_owned(),
        };
        let body = format!("{{\"sessionId\":\"{id}\"}}");
        let (status, text) = sharer
            .post(format!("{}/api/share/start", sharer.base), body)
            .await?;
        if status != 200 {
            bail!(
                "POST /api/share/start {id}: HTTP {status}: {text}{}",
                if status == 401 {
                    " (--token must equal the server's BEARER_TOKEN)"
                } else {
                    ""
                }
            );
        }
        Ok(sharer)
    }

    pub(super) async fn post(&self, url: String, body: String) -> anyhow::Result<(u16, String)> {
        let response = self
            .http
            .post(&url)
            .header(reqwest::header::AUTHORIZATION, &self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok((status, text))
    }

    pub(super) async fn send(
        &mut self,
        run: &AudioRun,
        session: usize,
        seq: i64,
        payload: &Payload,
    ) -> anyhow::Result<bool> {
        let a = &run.settings;
        let body = rest_chunk_body(
            &payload.base64,
            a.sample_rate,
            a.channels,
            wall_clock_ms() as u64,
            seq,
        );
        let url = format!("{}/api/share/{}/audio", self.base, self.id);
        let sent = std::time::Instant::now();
        run.book.mark(session, seq, sent);
        run.rec.sent.fetch_add(1, Relaxed);
        let result = self.post(url, body).await;
        run.post_us
            .record(session, sent.elapsed().as_micros() as u64);
        match result {
            Ok((200, _)) => {
                run.chunk_accepted(session);
                Ok(true)
            }
            Ok((status, text)) => {
                run.refused.fetch_add(1, Relaxed);
                run.rec
                    .note_error(|| format!("POST audio refused: HTTP {status}: {text}"));
                Ok(false)
            }
            Err(e) => {
                run.refused.fetch_add(1, Relaxed);
                run.rec.note_error(|| format!("{e:#}"));
                Ok(false)
            }
        }
    }

    pub(super) async fn stop(self) -> anyhow::Result<()> {
        let url = format!("{}/api/share/{}/stop", self.base, self.id);
        let (status, text) = self.post(url, String::new()).await?;
        if status != 200 {
            bail!("POST /api/share/{}/stop: HTTP {status}: {text}", self.id);
        }
        Ok(())
    }
}
