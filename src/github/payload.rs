//! The parts of a GitHub event payload the mapper reads, and nothing else.
//!
//! Every field is optional (`#[serde(default)]`): one struct serves every event, and a
//! payload that lacks a field maps with its documented fallback instead of failing. Fields
//! the mapper does not read are skipped by serde without being stored, and lists the mapper
//! only counts (`commits`, the files of each commit, release assets) are counted as they are
//! read ([`Count`], [`CommitStats`]), so a hostile payload costs memory in proportion to the
//! few strings kept, not to its size. Numbers are unsigned integers, as GitHub sends them;
//! anything else is an invalid payload.

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Payload {
    pub action: Option<String>,
    /// `ping`: one of GitHub's aphorisms.
    pub zen: Option<String>,
    pub repository: Option<Repository>,
    pub sender: Option<Account>,
    /// `push`: `refs/heads/<branch>` or `refs/tags/<tag>`; `create`/`delete`: the bare name.
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// `create`/`delete`: `branch` or `tag`.
    pub ref_type: Option<String>,
    /// `push`: the ref was deleted (no commits) / force-pushed.
    pub deleted: Option<bool>,
    pub forced: Option<bool>,
    pub commits: CommitStats,
    pub pull_request: Option<PullRequest>,
    pub issue: Option<Issue>,
    pub comment: Option<Comment>,
    pub review: Option<Review>,
    pub release: Option<Release>,
    /// `fork`: the new repository.
    pub forkee: Option<Repository>,
    pub workflow_run: Option<WorkflowRun>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Repository {
    pub full_name: Option<String>,
    pub default_branch: Option<String>,
    pub stargazers_count: Option<u64>,
    pub forks_count: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Account {
    pub login: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PullRequest {
    pub number: Option<u64>,
    pub title: Option<String>,
    pub merged: Option<bool>,
    pub commits: Option<u64>,
    pub additions: Option<u64>,
    pub deletions: Option<u64>,
    pub changed_files: Option<u64>,
    pub base: Option<BranchRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BranchRef {
    #[serde(rename = "ref")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Issue {
    pub number: Option<u64>,
    pub title: Option<String>,
    pub comments: Option<u64>,
    /// `completed` or `not_planned` when closed.
    pub state_reason: Option<String>,
    pub labels: Labels,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Comment {
    pub body: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Review {
    /// `approved`, `changes_requested` or `commented` (GitHub sends them in lower case).
    pub state: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Release {
    pub tag_name: Option<String>,
    pub prerelease: Option<bool>,
    pub assets: Count,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WorkflowRun {
    pub name: Option<String>,
    /// `success`, `failure`, `cancelled`, `timed_out`, ... or null while running.
    pub conclusion: Option<String>,
    pub head_branch: Option<String>,
    pub run_number: Option<u64>,
    pub run_attempt: Option<u64>,
}

/// The length of a JSON array (or 0 for `null`), counted without keeping its elements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count(pub u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl<'de> Visitor<'de> for CountVisitor {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array or null")
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_none<E>(self) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                let mut n = 0u64;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n = n.saturating_add(1);
                }
                Ok(Count(n))
            }
        }
        d.deserialize_any(CountVisitor)
    }
}

/// Issue labels: how many, and whether one of them names a bug.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Labels {
    pub count: u64,
    pub bug: bool,
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Label {
            name: Option<String>,
        }
        struct LabelsVisitor;
        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of labels or null")
            }
            fn visit_unit<E>(self) -> Result<Labels, E> {
                Ok(Labels::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Labels, A::Error> {
                let mut labels = Labels::default();
                while let Some(label) = seq.next_element::<Label>()? {
                    labels.count = labels.count.saturating_add(1);
                    let name = label.name.unwrap_or_default().to_ascii_lowercase();
                    labels.bug |= name.contains("bug");
                }
                Ok(labels)
            }
        }
        d.deserialize_any(LabelsVisitor)
    }
}

/// A push's `commits`, summed as they are read: how many, and how many files they added,
/// removed and modified (GitHub's push payload has file lists, not line counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub count: u64,
    pub added: u64,
    pub removed: u64,
    pub modified: u64,
}

impl<'de> Deserialize<'de> for CommitStats {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Commit {
            added: Count,
            removed: Count,
            modified: Count,
        }
        struct CommitsVisitor;
        impl<'de> Visitor<'de> for CommitsVisitor {
            type Value = CommitStats;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of commits or null")
            }
            fn visit_unit<E>(self) -> Result<CommitStats, E> {
                Ok(CommitStats::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CommitStats, A::Error> {
                let mut stats = CommitStats::default();
                while let Some(commit) = seq.next_element::<Commit>()? {
                    stats.count = stats.count.saturating_add(1);
                    stats.added = stats.added.saturating_add(commit.added.0);
                    stats.removed = stats.removed.saturating_add(commit.removed.0);
                    stats.modified = stats.modified.saturating_add(commit.modified.0);
                }
                Ok(stats)
            }
        }
        d.deserialize_any(CommitsVisitor)
    }
}
