//! Every Redis key and channel bandsync uses, under `REDIS_PREFIX` (default `bandsync`).
//! `ARCHITECTURE.md` lists each with its type, TTL and writer.

/// The names, for one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// HASH `version`, `record` (JSON), `leader`, `epoch`: the session's committed state.
    pub fn state(&self, session: &str) -> String {
        format!("{}:session:{session}", self.prefix)
    }

    /// STREAM of commit envelopes, id `<version>-0`, capped near `RESUME_HISTORY`.
    pub fn log(&self, session: &str) -> String {
        format!("{}:session:{session}:log", self.prefix)
    }

    /// STRING: the leader's `clientId` while an instance keeps its seat.
    pub fn lease(&self, session: &str) -> String {
        format!("{}:session:{session}:lease", self.prefix)
    }

    /// HASH instance -> presence JSON: each instance's audience of the session.
    pub fn presence(&self, session: &str) -> String {
        format!("{}:session:{session}:presence", self.prefix)
    }

    /// Pub/sub channel of the session's commits, presence and claims.
    pub fn channel(&self, session: &str) -> String {
        format!("{}:session:{session}", self.prefix)
    }

    /// STRING: a resume token's identity (JSON).
    pub fn resume(&self, token: &str) -> String {
        format!("{}:resume:{token}", self.prefix)
    }

    /// ZSET instance -> last heartbeat (ms).
    pub fn instances(&self) -> String {
        format!("{}:instances", self.prefix)
    }

    /// SET of the sessions live on one instance.
    pub fn live(&self, instance: &str) -> String {
        format!("{}:instance:{instance}:sessions", self.prefix)
    }

    /// LIST of one instance's per-minute metric rollups (newest first).
    pub fn history(&self, instance: &str) -> String {
        format!("{}:instance:{instance}:history", self.prefix)
    }

    /// Music Share (the seed's schema, under the prefix): the session HASH.
    pub fn share(&self, id: &str) -> String {
        format!("{}:share:{id}", self.prefix)
    }

    /// HASH of the now-playing metadata (30 s).
    pub fn share_metadata(&self, id: &str) -> String {
        format!("{}:share:{id}:metadata", self.prefix)
    }

    /// STREAM of the last seconds of audio (10 s).
    pub fn share_audio(&self, id: &str) -> String {
        format!("{}:share:{id}:audio", self.prefix)
    }

    /// Pub/sub channel of repository compositions (header line + samples), every instance.
    pub fn repo_channel(&self) -> String {
        format!("{}:repo", self.prefix)
    }

    /// STRING: a repository's latest composition (as published), for late listeners; 1 h.
    pub fn repo_latest(&self, repo_key: &str) -> String {
        format!("{}:repo:{repo_key}:latest", self.prefix)
    }

    /// STRING: the instance that claimed a webhook delivery (`X-GitHub-Delivery`); 24 h.
    pub fn repo_delivery(&self, delivery: &str) -> String {
        format!("{}:repo:delivery:{delivery}", self.prefix)
    }

    /// HASH `version`, `doc` (JSON): a Stream Manager stream's document (`key` is the
    /// session id, `""` for the default stream).
    pub fn stage(&self, key: &str) -> String {
        if key.is_empty() {
            format!("{}:stage:default", self.prefix)
        } else {
            format!("{}:stage:s:{key}", self.prefix)
        }
    }

    /// SET of the streams with a document: the cluster-wide `STREAM_MAX_STREAMS`.
    pub fn stages(&self) -> String {
        format!("{}:stages", self.prefix)
    }

    /// The channel of every Stream Manager change (document and events).
    pub fn stage_channel(&self) -> String {
        format!("{}:stage", self.prefix)
    }

    /// STRING (JSON, TTL `RECOVERY_WINDOW_MS`): a dropped Socket.IO socket's recovery
    /// record, by its private id (`pid`); taken (GETDEL) by the instance it reconnects to.
    pub fn socket(&self, pid: &str) -> String {
        format!("{}:sio:{pid}", self.prefix)
    }

    /// ZSET of active share ids by last activity: the cluster-wide cap.
    pub fn shares(&self) -> String {
        format!("{}:shares", self.prefix)
    }

    /// The channel of every share change.
    pub fn share_channel(&self) -> String {
        format!("{}:share", self.prefix)
    }

    /// The session a channel name belongs to.
    pub fn session_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":session:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_map_back_to_their_session() {
        let keys = Keys::new("bs");
        assert_eq!(
            keys.session_of_channel(&keys.channel("band-1")),
            Some("band-1")
        );
        assert_eq!(keys.session_of_channel("other:session:x"), None);
    }
}
