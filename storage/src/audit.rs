//! The audit log: one JSON line per change to a store, appended and never rewritten.
//!
//! Every change that adds, removes, pins or re-points content is recorded with the
//! time, what happened, the digest, the repository and tag where there is one, and
//! who did it (`proxy` for the node's own fills and evictions, `cli:<user>` for the
//! admin commands). Lines are written with one `write` on a file opened for append,
//! so concurrent writers never interleave within a line, and the file is reopened
//! for every event, so `logrotate` may simply move it away.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::Digest;

/// What happened to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A pull-through fill was verified and committed.
    Fill,
    /// Least-recently-used content was evicted.
    Evict,
    /// Content was removed by a repair or a prune.
    Delete,
    Pin,
    Unpin,
    /// Content copied in by `ferry sync`.
    Promote,
    /// Content loaded from a bundle by `ferry import`.
    Import,
    /// A promoted (immutable) tag was set.
    Tag,
    /// A promoted tag was removed by `--prune`.
    Untag,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub action: AuditAction,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub actor: String,
}

impl AuditEvent {
    pub fn new(action: AuditAction, digest: &Digest) -> Self {
        Self {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            action,
            digest: digest.to_string(),
            size: None,
            upstream: None,
            repo: None,
            tag: None,
            actor: String::new(),
        }
    }

    pub fn size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    /// The repository (on `upstream`) the change concerns.
    pub fn repo(mut self, upstream: &str, repo: &str) -> Self {
        self.upstream = Some(upstream.to_owned());
        self.repo = Some(repo.to_owned());
        self
    }

    pub fn tag(mut self, tag: &str) -> Self {
        self.tag = Some(tag.to_owned());
        self
    }
}

/// Appends [`AuditEvent`]s to a file, as one actor.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    actor: String,
}

impl AuditLog {
    /// Checks that the log can be appended to (creating it and its directory).
    pub fn open(path: &Path, actor: &str) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        Self::append_file(path)?;
        Ok(Self {
            path: path.to_owned(),
            actor: actor.to_owned(),
        })
    }

    fn append_file(path: &Path) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    }

    /// Appends one event as this log's actor.
    pub fn record(&self, mut event: AuditEvent) -> std::io::Result<()> {
        event.actor.clone_from(&self.actor);
        let mut line = serde_json::to_vec(&event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        Self::append_file(&self.path)?.write_all(&line)
    }

    /// Appends an event where a failure must not stop the change it records (a fill
    /// or an eviction that already happened): the failure is logged instead.
    pub fn record_or_warn(&self, event: AuditEvent) {
        if let Err(e) = self.record(event) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not append to the audit log");
        }
    }

    /// Every event in a log file; lines that do not parse are reported by number.
    pub fn read(path: &Path) -> std::io::Result<(Vec<AuditEvent>, Vec<usize>)> {
        let text = std::fs::read_to_string(path)?;
        let mut events = Vec::new();
        let mut bad = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
            match serde_json::from_str(line) {
                Ok(e) => events.push(e),
                Err(_) => bad.push(i + 1),
            }
        }
        Ok((events, bad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_one_parseable_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.jsonl");
        let log = AuditLog::open(&path, "cli:test").unwrap();
        let d = Digest::of(b"x");
        log.record(AuditEvent::new(AuditAction::Pin, &d).repo("hub", "library/x"))
            .unwrap();
        // Rotated away between events: the next event starts a new file.
        std::fs::rename(&path, dir.path().join("old")).unwrap();
        log.record(AuditEvent::new(AuditAction::Tag, &d).tag("v1").size(1))
            .unwrap();
        let (events, bad) = AuditLog::read(&path).unwrap();
        assert!(bad.is_empty());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, AuditAction::Tag);
        assert_eq!(events[0].actor, "cli:test");
        assert_eq!(events[0].tag.as_deref(), Some("v1"));
        let old = std::fs::read_to_string(dir.path().join("old")).unwrap();
        assert!(old.contains(r#""action":"pin""#), "{old}");
        assert!(old.contains(r#""repo":"library/x""#), "{old}");
        assert!(old.ends_with('\n'));
    }
}
