//! A sharer over `/ws`: `share_start`, then binary audio frames.

use super::*;

pub(super) struct WsSharer {
    ws: Ws,
    id: String,
    session: usize,
}

/// Request ids of the WebSocket sharer's requests.
pub(super) const SHARE_START_ID: u64 = 2;
pub(super) const SHARE_STOP_ID: u64 = 3;

impl WsSharer {
    pub(super) async fn start(
        ep: &Endpoints,
        id: &str,
        session: usize,
        token: &str,
    ) -> anyhow::Result<Self> {
        let join = wire::join_text(id, Role::Follower);
        let ws = tokio::time::timeout(
            CONNECT_TIMEOUT,
            wire::connect_join_with(&ep.ws_url, &join, WebSocketConfig::default()),
        )
        .await
        .map_err(|_| anyhow!("sharer connect+join timed out"))?
        .map_err(|e| anyhow!("sharer of {id}: {e}"))?;
        let mut sharer = Self {
            ws,
            id: id.to_owned(),
            session,
        };
        let start = ClientEvent::ShareStart(ShareStart {
            token: token.to_owned(),
        });
        sharer
            .ws
            .send(Message::text(encode_client_frame(
                &start,
                Some(&RequestId::from(SHARE_START_ID)),
            )))
            .await
            .context("sending share_start")?;
        let reply = sharer.reply(SHARE_START_ID).await?;
        match reply.get("type").and_then(|t| t.as_str()) {
            Some("share_started") => Ok(sharer),
            _ => bail!("share_start {id} refused: {reply}"),
        }
    }

    /// Reads until the reply to request `id`, skipping everything else.
    pub(super) async fn reply(&mut self, id: u64) -> anyhow::Result<serde_json::Value> {
        let wait = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let value: serde_json::Value = serde_json::from_str(text.as_str())
                            .with_context(|| format!("non-JSON frame: {}", text.as_str()))?;
                        if value.get("id").and_then(|v| v.as_u64()) == Some(id) {
                            return Ok(value);
                        }
                    }
                    Some(Ok(Message::Close(frame))) => bail!("server closed the sharer: {frame:?}"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(anyhow::Error::new(e).context("sharer socket")),
                    None => bail!("sharer connection ended"),
                }
            }
        };
        tokio::time::timeout(REPLY_TIMEOUT, wait)
            .await
            .map_err(|_| anyhow!("no reply to request {id} from the server"))?
    }

    pub(super) async fn while_reading<T>(
        &mut self,
        run: &AudioRun,
        work: impl Future<Output = T>,
    ) -> anyhow::Result<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                msg = self.ws.next() => self.on_incoming(run, msg)?,
            }
        }
    }

    pub(super) fn on_incoming(
        &self,
        run: &AudioRun,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> anyhow::Result<()> {
        match msg {
            Some(Ok(Message::Text(text))) => {
                let Ok(frame) = serde_json::from_str::<Lite>(text.as_str()) else {
                    run.rec.undecodable.fetch_add(1, Relaxed);
                    return Ok(());
                };
                match &*frame.kind {
                    "rate_limit_exceeded" => {
                        // The chunk just sent was refused: it is not expected anywhere.
                        run.refused.fetch_add(1, Relaxed);
                        run.accepted.fetch_sub(1, Relaxed);
                        let receivers = run.joined[self.session].load(Relaxed);
                        run.rec.expected.fetch_sub(receivers, Relaxed);
                        run.rec.server_errors.fetch_add(1, Relaxed);
                        run.rec
                            .note_error(|| format!("sharer got {}", text.as_str()));
                    }
                    "error" => {
                        run.rec.server_errors.fetch_add(1, Relaxed);
                        run.rec
                            .note_error(|| format!("sharer got {}", text.as_str()));
                    }
                    _ => {}
                }
                Ok(())
            }
            Some(Ok(Message::Close(frame))) => bail!("server closed the sharer: {frame:?}"),
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(anyhow::Error::new(e).context("sharer socket")),
            None => bail!("sharer connection ended"),
        }
    }

    pub(super) async fn send(
        &mut self,
        run: &AudioRun,
        session: usize,
        seq: i64,
        payload: &Payload,
    ) -> anyhow::Result<bool> {
        let a = &run.settings;
        let header = AudioHeader {
            sequence: seq,
            timestamp: wall_clock_ms(),
            sample_rate: a.sample_rate,
            channels: a.channels,
            format: run.format,
        };
        let frame = header.encode(&payload.pcm);
        run.book.mark(session, seq, std::time::Instant::now());
        run.rec.sent.fetch_add(1, Relaxed);
        self.ws
            .send(Message::binary(frame))
            .await
            .context("sending an audio frame")?;
        run.chunk_accepted(session);
        Ok(true)
    }

    pub(super) async fn stop(mut self) -> anyhow::Result<()> {
        let stop = encode_client_frame(
            &ClientEvent::ShareStop,
            Some(&RequestId::from(SHARE_STOP_ID)),
        );
        self.ws
            .send(Message::text(stop))
            .await
            .context("sending share_stop")?;
        let reply = self.reply(SHARE_STOP_ID).await?;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
        match reply.get("type").and_then(|t| t.as_str()) {
            Some("share_ended") => Ok(()),
            _ => bail!("share_stop {} refused: {reply}", self.id),
        }
    }
}
