//! Which `/stream/...` paths are repository streams, and which repository they name.
//!
//! Two systems share the `/stream/` prefix: the Stream Manager owns a few fixed first
//! segments (`/stream/status`, `/stream/layers/...`), repository streams take everything
//! else (`/stream/{repoId}`, `/stream/{repoId}/test`). The reserved words are matched against
//! the raw path, before percent-decoding, so a repository whose owner (or name) is one of
//! them stays reachable percent-encoded: `/stream/status%2Fsite` or `/stream/%73tatus/site`
//! is the repository `status/site`.

use bandsync_protocol::repo::validate_repo_id;
use percent_encoding::percent_decode_str;

/// First segments of `/stream/...` that belong to the Stream Manager.
pub const RESERVED: [&str; 7] = [
    "status", "start", "stop", "pause", "reset", "layers", "assets",
];

/// What a path under `/stream/` addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamPath {
    /// A Stream Manager route (its first segment is reserved).
    StreamManager,
    /// A repository: listen with GET, `.../test` with POST.
    Repo { repo: String, test: bool },
    /// Not a valid repository id; the message says why.
    Invalid(String),
}

/// Classifies `rest`, the raw path after `/stream/`. A POST whose last segment is `test`
/// asks for a test render of the repository before it; anything else names a repository
/// to listen to (so `GET /stream/owner/test` listens to the repository `owner/test`).
pub fn classify(rest: &str, post: bool) -> StreamPath {
    if is_stream_manager(rest) {
        return StreamPath::StreamManager;
    }
    let (raw, test) = match rest.strip_suffix("/test") {
        Some(repo) if post => (repo, true),
        _ => (rest, false),
    };
    match decode_repo_id(raw) {
        Ok(repo) => StreamPath::Repo { repo, test },
        Err(message) => StreamPath::Invalid(message),
    }
}

/// Whether `rest`, the raw path after `/stream/`, belongs to the Stream Manager (its first
/// segment is a reserved word). Decodes and allocates nothing, so the HTTP metrics can ask it
/// of every request.
pub fn is_stream_manager(rest: &str) -> bool {
    let first = rest.split('/').next().unwrap_or_default();
    RESERVED.contains(&first)
}

/// Percent-decodes a raw repository id and checks it (`name` or `owner/name`).
pub fn decode_repo_id(raw: &str) -> Result<String, String> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| "repoId is not valid UTF-8 once percent-decoded".to_string())?;
    validate_repo_id(&decoded)?;
    Ok(decoded.into_owned())
}

/// The key repositories are grouped by: GitHub names are case-insensitive, so
/// `Octocat/Hello-World` and `octocat/hello-world` are one repository.
pub fn repo_key(repo: &str) -> String {
    repo.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(repo: &str, test: bool) -> StreamPath {
        StreamPath::Repo {
            repo: repo.into(),
            test,
        }
    }

    #[test]
    fn one_or_two_segments_name_a_repository() {
        assert_eq!(
            classify("octocat/hello-world", false),
            repo("octocat/hello-world", false)
        );
        assert_eq!(classify("solo", false), repo("solo", false));
        assert_eq!(
            classify("octocat/hello-world/test", true),
            repo("octocat/hello-world", true)
        );
        assert_eq!(classify("solo/test", true), repo("solo", true));
        // Listening to a repository called `test`.
        assert_eq!(classify("owner/test", false), repo("owner/test", false));
    }

    #[test]
    fn reserved_first_segments_belong_to_the_stream_manager() {
        for path in [
            "status",
            "layers",
            "layers/7/visibility",
            "assets/upload",
            "start",
        ] {
            assert_eq!(classify(path, false), StreamPath::StreamManager, "{path}");
            assert_eq!(classify(path, true), StreamPath::StreamManager, "{path}");
        }
    }

    #[test]
    fn a_reserved_owner_is_reachable_percent_encoded() {
        assert_eq!(classify("status%2Fsite", false), repo("status/site", false));
        assert_eq!(classify("%73tatus/site", false), repo("status/site", false));
        assert_eq!(classify("%6Cayers/x/test", true), repo("layers/x", true));
        // A one-segment repository named like a reserved word.
        assert_eq!(classify("%73tatus", false), repo("status", false));
    }

    #[test]
    fn invalid_ids_are_refused_with_a_reason() {
        for bad in ["", "a/b/c", "a/", "..", "a%2F..", "a%20b", "%FF"] {
            assert!(
                matches!(classify(bad, false), StreamPath::Invalid(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_ignore_case() {
        assert_eq!(repo_key("Octocat/Hello-World"), "octocat/hello-world");
    }
}
