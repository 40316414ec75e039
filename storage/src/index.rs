//! The cache index: what the store holds, how big it is, when each blob was last
//! used, what is pinned, and which repositories' manifests and tags point where.
//!
//! Kept in RocksDB beside the blobs. Column families:
//! - `blobs`: digest (32 bytes) → [`BlobEntry`]
//! - `lru`: last access (8 bytes BE, ms) ‖ digest → (), so the least recently used
//!   blobs are the first keys: eviction reads from the front, never walks the disk
//! - `tags`: `upstream \0 repo \0 tag` → digest ‖ checked-at (8 bytes BE, s) ‖ pinned
//! - `manifests`: `upstream \0 repo \0` ‖ digest → ()
//! - `refs`: digest ‖ kind ‖ `upstream \0 repo [\0 tag]` → (), the reverse of the two
//!   above, so evicting a manifest finds the records that point at it
//!
//! Access times are not written on the hit path: [`Index::touch`] records them in
//! memory and [`Index::flush`] writes them in one batch (every second, and at shutdown).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, DB};

use crate::meta::{MetaStore, TagKey, TagRecord};
use crate::{Digest, StoreError};

/// Bumped when the key or value layout changes; checked at open.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_KEY: &[u8] = b"format_version";
const STATS_KEY: &[u8] = b"stats";

const CF_BLOBS: &str = "blobs";
const CF_LRU: &str = "lru";
const CF_TAGS: &str = "tags";
const CF_MANIFESTS: &str = "manifests";
const CF_REFS: &str = "refs";
const ALL_CFS: [&str; 5] = [CF_BLOBS, CF_LRU, CF_TAGS, CF_MANIFESTS, CF_REFS];

const REF_TAG: u8 = b't';
const REF_MANIFEST: u8 = b'm';

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cache index at {path}: {source}")]
    Db {
        path: String,
        source: rocksdb::Error,
    },
    #[error("cache index at {path} has format version {found}, this ferry reads version {expected}; move it aside and let ferry rebuild it from the store")]
    Version {
        path: String,
        found: u32,
        expected: u32,
    },
    #[error("cache index is locked by another process (a running ferry node?): {0}")]
    Locked(String),
    #[error("cache index: {0}")]
    Other(String),
}

impl From<IndexError> for StoreError {
    fn from(e: IndexError) -> Self {
        StoreError::Backend(e.to_string())
    }
}

fn db_err(e: rocksdb::Error) -> IndexError {
    IndexError::Other(e.to_string())
}

/// What the index knows about one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    pub size: u64,
    /// Unix seconds when the blob was first stored.
    pub first_stored: u64,
    /// Unix milliseconds of the last read (as of the last flush).
    pub last_access: u64,
    pub pinned: bool,
    pub media_type: Option<String>,
}

impl BlobEntry {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(25 + self.media_type.as_ref().map_or(0, String::len));
        v.extend_from_slice(&self.size.to_be_bytes());
        v.extend_from_slice(&self.first_stored.to_be_bytes());
        v.extend_from_slice(&self.last_access.to_be_bytes());
        v.push(u8::from(self.pinned));
        if let Some(mt) = &self.media_type {
            v.extend_from_slice(mt.as_bytes());
        }
        v
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < 25 {
            return None;
        }
        let u = |i: usize| {
            b.get(i..i + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_be_bytes)
        };
        let media_type = std::str::from_utf8(&b[25..])
            .ok()
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        Some(Self {
            size: u(0)?,
            first_stored: u(8)?,
            last_access: u(16)?,
            pinned: b[24] == 1,
            media_type,
        })
    }
}

/// Totals kept in memory (recomputed at open, maintained on every change).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub bytes: u64,
    pub blobs: u64,
    pub pinned_bytes: u64,
}

/// Hit/miss counters a node persists so `ferry index stats` can report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub started_at: u64,
    pub hits: u64,
    pub misses: u64,
}

/// An eviction candidate, in least-recently-used order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub digest: Digest,
    pub size: u64,
    pub pinned: bool,
    /// Being read or written right now.
    pub in_use: bool,
}

/// The LRU policy as a pure function: walking candidates from least to most recently
/// used, picks unpinned, unused blobs until `bytes_to_free` is reached.
pub fn select_victims(
    candidates: impl IntoIterator<Item = Candidate>,
    bytes_to_free: u64,
) -> Vec<(Digest, u64)> {
    let mut freed = 0u64;
    let mut victims = Vec::new();
    for c in candidates {
        if freed >= bytes_to_free {
            break;
        }
        if c.pinned || c.in_use {
            continue;
        }
        freed += c.size;
        victims.push((c.digest, c.size));
    }
    victims
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub struct Index {
    db: DB,
    path: String,
    read_only: bool,
    /// Access times not yet written: digest → unix ms.
    pending: Mutex<HashMap<Digest, u64>>,
    totals: Mutex<Totals>,
    /// Readers and writers per digest; a leased blob is never evicted.
    leases: Mutex<HashMap<Digest, usize>>,
}

/// Keeps a blob from eviction while alive.
pub struct Lease {
    index: Arc<Index>,
    digest: Digest,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut leases = self.index.leases.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = leases.get_mut(&self.digest) {
            *n -= 1;
            if *n == 0 {
                leases.remove(&self.digest);
            }
        }
    }
}

/// `upstream \0 repo \0`: what every tag and manifest key of a repository starts with.
fn repo_prefix(upstream: &str, repo: &str) -> Vec<u8> {
    [upstream.as_bytes(), b"\0", repo.as_bytes(), b"\0"].concat()
}

fn tag_key(k: &TagKey) -> Vec<u8> {
    [
        k.upstream.as_bytes(),
        b"\0",
        k.repo.as_bytes(),
        b"\0",
        k.tag.as_bytes(),
    ]
    .concat()
}

fn lru_key(last_access: u64, digest: &Digest) -> Vec<u8> {
    [&last_access.to_be_bytes()[..], &digest.to_bytes()].concat()
}

impl Index {
    /// Opens (creating if needed) the index for writing. Fails clearly when another
    /// process holds it or when its format version is not ours.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(3);
        opts.set_max_log_file_size(4 << 20);
        let cfs = ALL_CFS
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(*n, Options::default()));
        let display = path.display().to_string();
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| {
            if e.to_string().contains("lock") {
                IndexError::Locked(format!("{display}: {e}"))
            } else {
                IndexError::Db {
                    path: display.clone(),
                    source: e,
                }
            }
        })?;
        Self::finish_open(db, display, false)
    }

    /// Opens an existing index read-only; works while a node is running.
    pub fn open_read_only(path: &Path) -> Result<Self, IndexError> {
        let display = path.display().to_string();
        let db =
            DB::open_cf_for_read_only(&Options::default(), path, ALL_CFS, false).map_err(|e| {
                IndexError::Db {
                    path: display.clone(),
                    source: e,
                }
            })?;
        Self::finish_open(db, display, true)
    }

    fn finish_open(db: DB, path: String, read_only: bool) -> Result<Self, IndexError> {
        match db.get(FORMAT_KEY).map_err(db_err)? {
            Some(v) => {
                let found = v.as_slice().try_into().map(u32::from_be_bytes).unwrap_or(0);
                if found != FORMAT_VERSION {
                    return Err(IndexError::Version {
                        path,
                        found,
                        expected: FORMAT_VERSION,
                    });
                }
            }
            None if read_only => {
                return Err(IndexError::Other(format!("{path} is not a ferry index")))
            }
            None => db
                .put(FORMAT_KEY, FORMAT_VERSION.to_be_bytes())
                .map_err(db_err)?,
        }
        let index = Self {
            db,
            path,
            read_only,
            pending: Mutex::default(),
            totals: Mutex::default(),
            leases: Mutex::default(),
        };
        let mut totals = Totals::default();
        for (_, e) in index.blobs()? {
            totals.bytes += e.size;
            totals.blobs += 1;
            if e.pinned {
                totals.pinned_bytes += e.size;
            }
        }
        *index.totals.lock().unwrap_or_else(|p| p.into_inner()) = totals;
        Ok(index)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, IndexError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| IndexError::Other(format!("missing column family {name}")))
    }

    pub fn totals(&self) -> Totals {
        *self.totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn entry(&self, digest: &Digest) -> Result<Option<BlobEntry>, IndexError> {
        let v = self
            .db
            .get_cf(self.cf(CF_BLOBS)?, digest.to_bytes())
            .map_err(db_err)?;
        Ok(v.and_then(|v| BlobEntry::decode(&v)))
    }

    /// Records a committed blob. A blob already present keeps its pin and first-stored time.
    pub fn insert_blob(
        &self,
        digest: &Digest,
        size: u64,
        media_type: Option<&str>,
    ) -> Result<(), IndexError> {
        let now = now_ms();
        let old = self.entry(digest)?;
        let entry = BlobEntry {
            size,
            first_stored: old.as_ref().map_or(now / 1000, |o| o.first_stored),
            last_access: now,
            pinned: old.as_ref().is_some_and(|o| o.pinned),
            media_type: media_type
                .map(str::to_owned)
                .or_else(|| old.as_ref().and_then(|o| o.media_type.clone())),
        };
        let mut batch = WriteBatch::default();
        if let Some(o) = &old {
            batch.delete_cf(self.cf(CF_LRU)?, lru_key(o.last_access, digest));
        }
        batch.put_cf(self.cf(CF_BLOBS)?, digest.to_bytes(), entry.encode());
        batch.put_cf(self.cf(CF_LRU)?, lru_key(now, digest), []);
        self.db.write(batch).map_err(db_err)?;
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = old {
            t.bytes -= o.size;
            t.blobs -= 1;
            if o.pinned {
                t.pinned_bytes -= o.size;
            }
        }
        t.bytes += entry.size;
        t.blobs += 1;
        if entry.pinned {
            t.pinned_bytes += entry.size;
        }
        Ok(())
    }

    /// Removes a blob and every manifest and tag record that points at it. Returns
    /// the entry that was removed.
    pub fn remove_blob(&self, digest: &Digest) -> Result<Option<BlobEntry>, IndexError> {
        let Some(old) = self.entry(digest)? else {
            return Ok(None);
        };
        let key = digest.to_bytes();
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_BLOBS)?, key);
        batch.delete_cf(self.cf(CF_LRU)?, lru_key(old.last_access, digest));
        let refs = self.cf(CF_REFS)?;
        for item in self.db.prefix_iterator_cf(refs, key) {
            let (k, _) = item.map_err(db_err)?;
            if !k.starts_with(&key) {
                break;
            }
            let (kind, rest) = (k[32], &k[33..]);
            match kind {
                REF_TAG => batch.delete_cf(self.cf(CF_TAGS)?, rest),
                REF_MANIFEST => {
                    batch.delete_cf(self.cf(CF_MANIFESTS)?, [rest, &b"\0"[..], &key].concat())
                }
                _ => {}
            }
            batch.delete_cf(refs, &k);
        }
        self.db.write(batch).map_err(db_err)?;
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        t.bytes -= old.size;
        t.blobs -= 1;
        if old.pinned {
            t.pinned_bytes -= old.size;
        }
        Ok(Some(old))
    }

    /// Pins or unpins a blob; `Ok(false)` when the index does not have it.
    pub fn set_pinned(&self, digest: &Digest, pinned: bool) -> Result<bool, IndexError> {
        let Some(mut e) = self.entry(digest)? else {
            return Ok(false);
        };
        if e.pinned != pinned {
            e.pinned = pinned;
            self.db
                .put_cf(self.cf(CF_BLOBS)?, digest.to_bytes(), e.encode())
                .map_err(db_err)?;
            let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
            if pinned {
                t.pinned_bytes += e.size;
            } else {
                t.pinned_bytes -= e.size;
            }
        }
        Ok(true)
    }

    /// Notes a read, in memory only.
    pub fn touch(&self, digest: &Digest) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.clone(), now_ms());
    }

    /// Writes pending access times in one batch; returns how many.
    pub fn flush(&self) -> Result<usize, IndexError> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if pending.is_empty() || self.read_only {
            return Ok(0);
        }
        let (blobs, lru) = (self.cf(CF_BLOBS)?, self.cf(CF_LRU)?);
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for (digest, at) in pending {
            // A blob evicted since its touch has no entry: nothing to update.
            let Some(mut e) = self.entry(&digest)? else {
                continue;
            };
            if at <= e.last_access {
                continue;
            }
            batch.delete_cf(lru, lru_key(e.last_access, &digest));
            e.last_access = at;
            batch.put_cf(blobs, digest.to_bytes(), e.encode());
            batch.put_cf(lru, lru_key(at, &digest), []);
            n += 1;
        }
        self.db.write(batch).map_err(db_err)?;
        Ok(n)
    }

    pub fn lease(self: &Arc<Self>, digest: &Digest) -> Lease {
        *self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(digest.clone())
            .or_default() += 1;
        Lease {
            index: self.clone(),
            digest: digest.clone(),
        }
    }

    pub fn leased(&self) -> HashSet<Digest> {
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Victims to free `bytes_to_free`, least recently used first (flush first for
    /// fresh access times). Reads only as far into the LRU order as it needs.
    pub fn plan_eviction(&self, bytes_to_free: u64) -> Result<Vec<(Digest, u64)>, IndexError> {
        if bytes_to_free == 0 {
            return Ok(Vec::new());
        }
        let in_use = self.leased();
        let blobs = self.cf(CF_BLOBS)?;
        let mut error = None;
        let candidates = self
            .db
            .iterator_cf(self.cf(CF_LRU)?, IteratorMode::Start)
            .map_while(|item| match item {
                Ok((k, _)) => Some(k),
                Err(e) => {
                    error = Some(e);
                    None
                }
            })
            .filter_map(|k| {
                let digest = Digest::from_bytes(k.get(8..)?)?;
                let entry = self.db.get_cf(blobs, digest.to_bytes()).ok().flatten()?;
                let entry = BlobEntry::decode(&entry)?;
                let in_use = in_use.contains(&digest);
                Some(Candidate {
                    digest,
                    size: entry.size,
                    pinned: entry.pinned,
                    in_use,
                })
            });
        let victims = select_victims(candidates, bytes_to_free);
        match error {
            Some(e) => Err(db_err(e)),
            None => Ok(victims),
        }
    }

    /// Every blob entry (for reconciliation, checks and listings).
    pub fn blobs(&self) -> Result<Vec<(Digest, BlobEntry)>, IndexError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_BLOBS)?, IteratorMode::Start) {
            let (k, v) = item.map_err(db_err)?;
            if let (Some(d), Some(e)) = (Digest::from_bytes(&k), BlobEntry::decode(&v)) {
                out.push((d, e));
            }
        }
        Ok(out)
    }

    /// Records that a repository has a manifest.
    pub fn add_manifest(
        &self,
        upstream: &str,
        repo: &str,
        digest: &Digest,
    ) -> Result<(), IndexError> {
        let name = [upstream.as_bytes(), b"\0", repo.as_bytes()].concat();
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_MANIFESTS)?,
            [&name[..], b"\0", &digest.to_bytes()].concat(),
            [],
        );
        batch.put_cf(
            self.cf(CF_REFS)?,
            [&digest.to_bytes()[..], &[REF_MANIFEST], &name].concat(),
            [],
        );
        self.db.write(batch).map_err(db_err)
    }

    /// (manifest records, distinct repositories).
    pub fn manifest_counts(&self) -> Result<(u64, u64), IndexError> {
        let mut manifests = 0;
        let mut repos = HashSet::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_MANIFESTS)?, IteratorMode::Start)
        {
            let (k, _) = item.map_err(db_err)?;
            manifests += 1;
            if k.len() > 33 {
                repos.insert(k[..k.len() - 33].to_vec());
            }
        }
        Ok((manifests, repos.len() as u64))
    }

    /// Every tag record as (key, record).
    pub fn tags(&self) -> Result<Vec<(TagKey, TagRecord)>, IndexError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_TAGS)?, IteratorMode::Start) {
            let (k, v) = item.map_err(db_err)?;
            let parts: Vec<&[u8]> = k.splitn(3, |b| *b == 0).collect();
            if let ([u, r, t], Some(rec)) = (parts.as_slice(), decode_tag(&v)) {
                let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                out.push((
                    TagKey {
                        upstream: s(u),
                        repo: s(r),
                        tag: s(t),
                    },
                    rec,
                ));
            }
        }
        Ok(out)
    }

    pub fn get_tag_sync(&self, key: &TagKey) -> Result<Option<TagRecord>, IndexError> {
        let v = self
            .db
            .get_cf(self.cf(CF_TAGS)?, tag_key(key))
            .map_err(db_err)?;
        Ok(v.and_then(|v| decode_tag(&v)))
    }

    pub fn put_tag_sync(&self, key: &TagKey, record: &TagRecord) -> Result<(), IndexError> {
        let k = tag_key(key);
        let refs = self.cf(CF_REFS)?;
        let mut batch = WriteBatch::default();
        if let Some(old) = self.get_tag_sync(key)? {
            if old.digest != record.digest {
                batch.delete_cf(refs, [&old.digest.to_bytes()[..], &[REF_TAG], &k].concat());
            }
        }
        let secs = record
            .checked_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        batch.put_cf(
            self.cf(CF_TAGS)?,
            &k,
            [
                &record.digest.to_bytes()[..],
                &secs.to_be_bytes(),
                &[u8::from(record.pinned)],
            ]
            .concat(),
        );
        batch.put_cf(
            refs,
            [&record.digest.to_bytes()[..], &[REF_TAG], &k].concat(),
            [],
        );
        self.db.write(batch).map_err(db_err)
    }

    /// The tags recorded for one repository of one upstream, with their records,
    /// in tag order.
    pub fn repo_tags(
        &self,
        upstream: &str,
        repo: &str,
    ) -> Result<Vec<(String, TagRecord)>, IndexError> {
        let prefix = repo_prefix(upstream, repo);
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(self.cf(CF_TAGS)?, &prefix) {
            let (k, v) = item.map_err(db_err)?;
            let Some(tag) = k.strip_prefix(prefix.as_slice()) else {
                break;
            };
            if let Some(record) = decode_tag(&v) {
                out.push((String::from_utf8_lossy(tag).into_owned(), record));
            }
        }
        Ok(out)
    }

    /// The manifests recorded for one repository of one upstream.
    pub fn repo_manifests(&self, upstream: &str, repo: &str) -> Result<Vec<Digest>, IndexError> {
        let prefix = repo_prefix(upstream, repo);
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(self.cf(CF_MANIFESTS)?, &prefix) {
            let (k, _) = item.map_err(db_err)?;
            let Some(digest) = k.strip_prefix(prefix.as_slice()) else {
                break;
            };
            if let Some(d) = Digest::from_bytes(digest) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Removes a tag record; `Ok(false)` when there was none.
    pub fn remove_tag(&self, key: &TagKey) -> Result<bool, IndexError> {
        let Some(old) = self.get_tag_sync(key)? else {
            return Ok(false);
        };
        let k = tag_key(key);
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_TAGS)?, &k);
        batch.delete_cf(
            self.cf(CF_REFS)?,
            [&old.digest.to_bytes()[..], &[REF_TAG], &k].concat(),
        );
        self.db.write(batch).map_err(db_err)?;
        Ok(true)
    }

    pub fn save_node_stats(&self, stats: NodeStats) -> Result<(), IndexError> {
        let v = [
            stats.started_at.to_be_bytes(),
            stats.hits.to_be_bytes(),
            stats.misses.to_be_bytes(),
        ]
        .concat();
        self.db.put(STATS_KEY, v).map_err(db_err)
    }

    pub fn node_stats(&self) -> Result<Option<NodeStats>, IndexError> {
        let Some(v) = self.db.get(STATS_KEY).map_err(db_err)? else {
            return Ok(None);
        };
        let u = |i: usize| {
            v.get(i..i + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_be_bytes)
        };
        Ok(match (u(0), u(8), u(16)) {
            (Some(started_at), Some(hits), Some(misses)) => Some(NodeStats {
                started_at,
                hits,
                misses,
            }),
            _ => None,
        })
    }

    /// Makes recent writes durable (the WAL is otherwise synced by the OS).
    pub fn sync(&self) -> Result<(), IndexError> {
        if self.read_only {
            return Ok(());
        }
        self.db.flush_wal(true).map_err(db_err)
    }
}

/// A tag value: digest ‖ checked-at ‖ pinned (one byte; absent in records written
/// before promotion existed, which are not pinned).
fn decode_tag(v: &[u8]) -> Option<TagRecord> {
    let digest = Digest::from_bytes(v.get(..32)?)?;
    let secs = u64::from_be_bytes(v.get(32..40)?.try_into().ok()?);
    Some(TagRecord {
        digest,
        checked_at: UNIX_EPOCH + Duration::from_secs(secs),
        pinned: v.get(40) == Some(&1),
    })
}

#[async_trait]
impl MetaStore for Index {
    async fn get_tag(&self, key: &TagKey) -> Result<Option<TagRecord>, StoreError> {
        Ok(self.get_tag_sync(key)?)
    }
    async fn put_tag(&self, key: &TagKey, record: &TagRecord) -> Result<(), StoreError> {
        Ok(self.put_tag_sync(key, record)?)
    }
    async fn add_manifest(
        &self,
        upstream: &str,
        repo: &str,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        Ok(Index::add_manifest(self, upstream, repo, digest)?)
    }
    async fn repo_manifests(&self, upstream: &str, repo: &str) -> Result<Vec<Digest>, StoreError> {
        Ok(Index::repo_manifests(self, upstream, repo)?)
    }
    async fn repo_tags(&self, upstream: &str, repo: &str) -> Result<Vec<String>, StoreError> {
        Ok(Index::repo_tags(self, upstream, repo)?
            .into_iter()
            .map(|(tag, _)| tag)
            .collect())
    }
}

#[cfg(test)]
mod tests;
