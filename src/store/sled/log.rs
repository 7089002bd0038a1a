//! The event log: append-only segment files that hold each accepted event's body, written once.
//!
//! Keeping bodies out of sled's tree matters: sled rewrites a leaf (up to 16 entries) every ten
//! updates, so a body stored in the tree is written three to four times, and every sled flush wakes
//! its whole I/O thread pool. Here a body is written once, in a batch with the others of its group
//! commit, and made durable by one `fdatasync` of the segment. The log is also the accept path's
//! write-ahead log: each record carries what its sled batch writes, so that records which sled had not
//! yet persisted at a crash are applied again when the store opens (see `sled.rs`).
//!
//! A segment is `<dir>/<id as 16 hex digits>.log`, preallocated to [`SEGMENT_BYTES`] (or to the size of
//! a larger record) so that appending and syncing touch no file metadata; on a volume without room for
//! that, to half the space available (see [`new_segment_bytes`]). A segment that cannot be made (the
//! volume is full) fails the accepts that need it, and leaves no file behind, so that the next accept
//! tries again and succeeds once space is freed. It holds records back to back:
//!
//! | bytes | content                                  |
//! |-------|------------------------------------------|
//! | 4     | payload length (u32 LE), never 0         |
//! | 4     | CRC-32 of the payload (u32 LE)           |
//! | n     | payload                                  |
//!
//! Unwritten space is zeros, so a zero length ends a segment's records.
//!
//! **Torn or corrupt.** A record that fails its check (CRC mismatch, a length past the segment's end,
//! or a half-written header) is one of two things. A crash (of the machine, not the process) during
//! the last write of the last segment can leave that write partly on disk, in any order of its
//! sectors: such a record was never synced, so neither it nor anything after it was acknowledged, and
//! reopening clears it and the rest of the segment ("a torn tail"). Anything else is corruption of what
//! was written and synced, and opening stops with [`CorruptRecord`], which names the file and offset and
//! says how to recover: the log is left as it was, since cutting it there would drop acknowledged events.
//! A bad record is torn only if it is in the last segment (the log syncs a segment before it starts the
//! next), and either one of its sectors is still blank (a sector the write never reached) or no intact
//! record follows it. A checked record followed by an intact one, with every sector written, is not
//! what a cut-short write leaves.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{self, IoSlice},
    os::unix::fs::{FileExt, MetadataExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::place::Moved;

/// A segment's preallocated size, on a volume with room for it (see [`new_segment_bytes`]).
pub(super) const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// The smallest segment made on a volume short of space: below it, the log refuses to start a
/// segment (and the accepts that need one get 503) until space is freed.
const MIN_SEGMENT_BYTES: u64 = 1024 * 1024;
const HEADER: u64 = 8;
/// How many segments' read handles are kept open.
const OPEN_READERS: usize = 16;

/// Where a record is: its segment and the offset of its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Position {
    pub(super) segment: u64,
    pub(super) offset: u64,
}

/// A record's position and payload length: enough to read it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RecordRef {
    pub(super) at: Position,
    pub(super) len: u32,
}

impl RecordRef {
    /// The encoded size of a [`RecordRef`].
    pub(super) const ENCODED: usize = 20;

    pub(super) fn encode(&self) -> [u8; Self::ENCODED] {
        let mut out = [0u8; Self::ENCODED];
        out[..8].copy_from_slice(&self.at.segment.to_be_bytes());
        out[8..16].copy_from_slice(&self.at.offset.to_be_bytes());
        out[16..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..Self::ENCODED)?;
        Some(Self {
            at: Position {
                segment: u64::from_be_bytes(bytes[..8].try_into().ok()?),
                offset: u64::from_be_bytes(bytes[8..16].try_into().ok()?),
            },
            len: u32::from_be_bytes(bytes[16..].try_into().ok()?),
        })
    }
}

impl Position {
    pub(super) fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.segment.to_be_bytes());
        out[8..].copy_from_slice(&self.offset.to_be_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            segment: u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?),
            offset: u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?),
        })
    }
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:016x}.log"))
}

/// The segment ids in `dir`, ascending.
pub(super) fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        if stem.len() == 16 {
            if let Ok(id) = u64::from_str_radix(stem, 16) {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Reserves `len` bytes for `file` on disk, so that writes within them change no metadata.
fn preallocate(file: &File, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use nix::fcntl::{fallocate, FallocateFlags};
        use std::os::unix::io::AsRawFd;
        let end = i64::try_from(len).map_err(|_| io::Error::other("segment too large"))?;
        match fallocate(file.as_raw_fd(), FallocateFlags::empty(), 0, end) {
            Ok(()) => return Ok(()),
            // Filesystems without fallocate: fall back to a sparse file.
            Err(nix::errno::Errno::EOPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    file.set_len(len)
}

/// There is no room on the log's volume for a new segment.
#[derive(Debug, thiserror::Error)]
#[error("no room for a new event-log segment in {dir}: {available} bytes available, and a segment takes {needed} bytes and leaves as much to the index; free space on that volume")]
pub(crate) struct NoRoom {
    /// The log's directory.
    pub(crate) dir: String,
    /// What the volume has available to hookgate.
    pub(crate) available: u64,
    /// The smallest segment that would do.
    pub(crate) needed: u64,
}

/// The bytes available to unprivileged writers on `dir`'s volume.
fn available_bytes(dir: &Path) -> io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir)?;
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    Ok(u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size())))
}

/// The size of a new segment for a first record of `record` bytes: `segment_bytes` (or the record's
/// size, if larger) where the volume has room for twice that, else half the space available (the
/// other half is left to the index), rounded down to 4 KiB. A volume with less than twice
/// [`MIN_SEGMENT_BYTES`] (or twice the record) available gets no segment: [`NoRoom`].
fn new_segment_bytes(dir: &Path, segment_bytes: u64, record: u64) -> io::Result<u64> {
    let wanted = segment_bytes.max(record);
    let available = available_bytes(dir)?;
    let size = wanted.min(available / 2 / 4096 * 4096);
    let needed = record.max(MIN_SEGMENT_BYTES.min(segment_bytes));
    if size < needed {
        return Err(io::Error::other(NoRoom {
            dir: dir.display().to_string(),
            available,
            needed,
        }));
    }
    Ok(size)
}

/// The appending side, used by one thread at a time (the commit thread, or the store's opening).
pub(super) struct LogWriter {
    dir: PathBuf,
    file: Arc<File>,
    segment: u64,
    capacity: u64,
    /// The size of new segments.
    segment_bytes: u64,
    /// Where the next record goes in the segment.
    offset: u64,
    /// Where the pending records start in the segment.
    pending_at: u64,
    /// Records appended but not yet written to the file.
    pending: Pending,
    /// How many writes reached the file: each write's number, counting from 1.
    writes: u64,
    /// What the syncs, on whichever thread, found.
    syncs: Arc<Syncs>,
}

/// What the log's syncs found: shared by the writer and the syncs it hands out.
#[derive(Default)]
struct Syncs {
    /// The number of the last write known durable.
    synced: AtomicU64,
    /// Whether a sync failed. The kernel may then have dropped the writes it could not make durable,
    /// and a later sync that succeeds says nothing about them: the log takes no more records (see
    /// [`LogWriter::sync_later`]).
    failed: AtomicBool,
    /// Makes the next sync fail, as a disk error would.
    #[cfg(test)]
    fail_next: AtomicBool,
    /// The segment being appended to, for checks from other threads.
    current: Mutex<Option<Current>>,
    /// Where the next record goes in it.
    offset: AtomicU64,
    /// When the sync under way started, if one is.
    syncing_since: Mutex<Option<Instant>>,
    /// The size of the last record refused for want of room in this segment (0: none).
    refused: AtomicU64,
}

/// The segment being appended to, as [`LogHealth`] sees it.
struct Current {
    path: PathBuf,
    file: Arc<File>,
    capacity: u64,
    /// The size of new segments.
    segment_bytes: u64,
}

/// Whether a sync of the log failed ([`LogWriter::has_failed`]), readable without the writer.
pub(super) struct LogHealth(Arc<Syncs>);

impl LogHealth {
    pub(super) fn has_failed(&self) -> bool {
        self.0.failed.load(Ordering::Acquire)
    }

    /// [`LogWriter::is_durable`], for readers that do not hold the writer.
    pub(super) fn is_durable(&self, write: u64) -> bool {
        self.0.synced.load(Ordering::Acquire) >= write
    }

    /// Whether the segment being appended to is still the file its path names (not deleted, not
    /// replaced): see `place.rs`.
    pub(super) fn check_segment(&self) -> Result<(), Moved> {
        let current = self.0.current.lock().unwrap_or_else(|e| e.into_inner());
        let Some(current) = current.as_ref() else {
            return Ok(());
        };
        let open = current
            .file
            .metadata()
            .map_err(|_| Moved::new(&current.path, "the open segment cannot be read"))?;
        if open.nlink() == 0 {
            return Err(Moved::new(&current.path, "it was removed"));
        }
        match std::fs::metadata(&current.path) {
            Ok(named) if (named.dev(), named.ino()) == (open.dev(), open.ino()) => Ok(()),
            Ok(_) => Err(Moved::new(&current.path, "another file is there now")),
            Err(_) => Err(Moved::new(&current.path, "it was removed")),
        }
    }

    /// Whether the log can take a record now: the current segment has room left for one of
    /// [`READY_ROOM`] bytes (or of the size of the last one refused for want of room), or the
    /// volume has room for a new segment.
    pub(super) fn check_room(&self) -> Result<(), NoRoom> {
        let current = self.0.current.lock().unwrap_or_else(|e| e.into_inner());
        let Some(current) = current.as_ref() else {
            return Ok(());
        };
        // A record of the size just refused must fit, whatever the room a smaller one needs.
        let record = READY_ROOM.max(self.0.refused.load(Ordering::Acquire));
        let offset = self.0.offset.load(Ordering::Acquire);
        if offset + record <= current.capacity {
            return Ok(());
        }
        let dir = current.path.parent().unwrap_or(Path::new("."));
        match new_segment_bytes(dir, current.segment_bytes, record) {
            Ok(_) => Ok(()),
            Err(e) => match e.into_inner().map(|inner| inner.downcast::<NoRoom>()) {
                Some(Ok(no_room)) => Err(*no_room),
                // statvfs failed: the segment check says why, if anything is wrong.
                _ => Ok(()),
            },
        }
    }

    /// How long the sync under way has run, if one is.
    pub(super) fn syncing_for(&self) -> Option<Duration> {
        let since = *self.0.syncing_since.lock().unwrap_or_else(|e| e.into_inner());
        since.map(|since| since.elapsed())
    }
}

/// The room a record needs for `/readyz` to say the log can take one.
const READY_ROOM: u64 = 64 * 1024;

/// A sync of the log's current segment up to a given write, which may run on another thread while
/// the log goes on appending and writing ([`LogWriter::sync_later`]).
pub(super) struct LogSync {
    file: Arc<File>,
    write: u64,
    syncs: Arc<Syncs>,
}

impl LogSync {
    /// Makes every write up to this sync's durable.
    pub(super) fn run(self) -> io::Result<()> {
        #[cfg(test)]
        if self.syncs.fail_next.swap(false, Ordering::AcqRel) {
            self.syncs.failed.store(true, Ordering::Release);
            return Err(io::Error::other("injected sync failure"));
        }
        let since = |at| *self.syncs.syncing_since.lock().unwrap_or_else(|e| e.into_inner()) = at;
        since(Some(Instant::now()));
        let synced = self.file.sync_data();
        since(None);
        if let Err(e) = synced {
            self.syncs.failed.store(true, Ordering::Release);
            return Err(e);
        }
        self.syncs.synced.fetch_max(self.write, Ordering::AcqRel);
        Ok(())
    }
}

impl LogWriter {
    /// Opens the log in `dir` and passes every record from `from` on to `visit` (the records a crash
    /// may have kept from the store's index), one at a time, so that none needs to stay in memory;
    /// appending resumes after the last intact record. Each segment read is synced first. New segments
    /// are preallocated to `segment_bytes`.
    pub(super) fn open(
        dir: &Path,
        from: Position,
        segment_bytes: u64,
        visit: &mut dyn FnMut(RecordRef, &[u8]),
    ) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ids = segments(dir)?;
        let mut last: Option<(u64, u64, u64)> = None; // segment, end of records, capacity
        let newest = ids.last().copied();
        for &id in ids.iter().filter(|&&id| id >= from.segment) {
            let path = segment_path(dir, id);
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let capacity = file.metadata()?.len();
            let start = if id == from.segment { from.offset } else { 0 };
            let end = match scan(&file, id, start, capacity, visit)? {
                ScanEnd::Clean(end) => end,
                ScanEnd::Bad(bad) if Some(id) == newest && (bad.blank || !bad.followed) => {
                    tracing::warn!(
                        segment = %path.display(),
                        offset = bad.at,
                        "the event log ends in a record that a crash cut short (never acknowledged); clearing it and the rest of the segment"
                    );
                    zero(&file, bad.at, capacity)?;
                    bad.at
                }
                ScanEnd::Bad(bad) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        CorruptRecord {
                            segment: path,
                            offset: bad.at,
                        },
                    ))
                }
            };
            // What was read may be in the page cache only (a process that died, not a machine, or a
            // sync that failed): make it durable before the store re-applies its marks.
            file.sync_data()?;
            last = Some((id, end, capacity));
        }
        let writer = match last {
            Some((segment, offset, capacity)) => Self {
                dir: dir.to_owned(),
                file: Arc::new(
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(segment_path(dir, segment))?,
                ),
                segment,
                capacity,
                segment_bytes,
                offset,
                pending_at: offset,
                pending: Pending::default(),
                writes: 0,
                syncs: Arc::default(),
            },
            None => {
                let segment = ids.last().map_or(from.segment, |&id| id.max(from.segment) + 1);
                Self::create(dir, segment, 0, segment_bytes)?
            }
        };
        writer.publish();
        Ok(writer)
    }

    /// Shows the current segment to [`LogHealth`].
    fn publish(&self) {
        *self.syncs.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Current {
            path: segment_path(&self.dir, self.segment),
            file: self.file.clone(),
            capacity: self.capacity,
            segment_bytes: self.segment_bytes,
        });
        self.syncs.offset.store(self.offset, Ordering::Release);
        self.syncs.refused.store(0, Ordering::Release);
    }

    /// Starts segment `segment`, sized for a first record of `record` bytes (see
    /// [`new_segment_bytes`]). A failure leaves no file behind, so that the next try starts afresh.
    fn create(dir: &Path, segment: u64, record: u64, segment_bytes: u64) -> io::Result<Self> {
        let capacity = new_segment_bytes(dir, segment_bytes, record)?;
        let path = segment_path(dir, segment);
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => file,
            // Left by a creation that failed and could not remove it either (or by a crash midway).
            // No record is there: segments are numbered upwards, so nothing ever referred to this one.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                tracing::warn!(segment = %path.display(), "replacing an event-log segment that an earlier, failed start of it left behind");
                std::fs::remove_file(&path)?;
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)?
            }
            Err(e) => return Err(e),
        };
        let made = preallocate(&file, capacity)
            .and_then(|()| file.sync_all())
            // The new file's name must survive a crash too.
            .and_then(|()| File::open(dir)?.sync_all());
        if let Err(e) = made {
            drop(file);
            if let Err(removing) = std::fs::remove_file(&path) {
                tracing::warn!(segment = %path.display(), error = %removing, "cannot remove a half-made event-log segment; the next start of it replaces it");
            }
            return Err(e);
        }
        Ok(Self {
            dir: dir.to_owned(),
            file: Arc::new(file),
            segment,
            capacity,
            segment_bytes,
            offset: 0,
            pending_at: 0,
            pending: Pending::default(),
            writes: 0,
            syncs: Arc::default(),
        })
    }

    /// Where the next record will go.
    pub(super) fn position(&self) -> Position {
        Position {
            segment: self.segment,
            offset: self.offset,
        }
    }

    /// Appends a record (buffered; [`LogWriter::write`] and [`LogWriter::sync`] make it durable).
    /// Moves to a new segment when the record does not fit in this one.
    #[cfg(test)]
    pub(super) fn append(&mut self, payload: &[u8]) -> io::Result<RecordRef> {
        self.append_parts(payload, &Bytes::new())
    }

    /// [`LogWriter::append`] of the payload `head` then `body`. A large body is not copied: the
    /// write hands the kernel the body's own bytes.
    pub(super) fn append_parts(&mut self, head: &[u8], body: &Bytes) -> io::Result<RecordRef> {
        let len = u32::try_from(head.len() + body.len())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| io::Error::other("a log record must be 1 byte to 4 GiB"))?;
        let size = HEADER + u64::from(len);
        if self.offset + size > self.capacity {
            // The current segment's records must be durable before the log moves on.
            self.sync()?;
            let mut next =
                Self::create(&self.dir, self.segment + 1, size, self.segment_bytes).inspect_err(|_| {
                    self.syncs.refused.fetch_max(size, Ordering::AcqRel);
                })?;
            // The numbering of writes goes on across segments: every write so far is durable.
            next.writes = self.writes;
            next.syncs = self.syncs.clone();
            *self = next;
            self.publish();
        }
        let at = self.position();
        let mut crc = crc32fast::Hasher::new();
        crc.update(head);
        crc.update(body);
        self.pending.push(&len.to_le_bytes());
        self.pending.push(&crc.finalize().to_le_bytes());
        self.pending.push(head);
        self.pending.push_shared(body);
        self.offset += size;
        self.syncs.offset.store(self.offset, Ordering::Release);
        Ok(RecordRef { at, len })
    }

    /// Writes the appended records to the file (not yet synced).
    pub(super) fn write(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = self.pending.write_at(&self.file, self.pending_at)?;
        self.pending_at += written;
        self.writes += 1;
        Ok(())
    }

    /// The number of the write that will take the records appended now: once
    /// [`LogWriter::is_durable`] says so for it, they are durable.
    pub(super) fn next_write(&self) -> u64 {
        self.writes + 1
    }

    /// Whether every write up to number `write` is durable.
    pub(super) fn is_durable(&self, write: u64) -> bool {
        self.syncs.synced.load(Ordering::Acquire) >= write
    }

    /// Whether a sync of the log failed: it takes no more records until the store is opened again.
    pub(super) fn has_failed(&self) -> bool {
        self.syncs.failed.load(Ordering::Acquire)
    }

    /// The error that every write meant to be durable gets once a sync has failed.
    pub(super) fn refuse_if_failed(&self) -> io::Result<()> {
        if self.has_failed() {
            return Err(io::Error::other(
                "an earlier sync of the event log failed, so what it held may not be on disk; restart hookgate to recover from what the disk holds",
            ));
        }
        Ok(())
    }

    /// A handle that tells, from any thread, whether a sync of this log failed.
    pub(super) fn health(&self) -> LogHealth {
        LogHealth(self.syncs.clone())
    }

    /// Makes the next sync fail.
    #[cfg(test)]
    pub(super) fn fail_next_sync(&self) {
        self.syncs.fail_next.store(true, Ordering::Release);
    }

    /// Whether some appended record is not durable yet.
    #[cfg(test)]
    pub(super) fn is_dirty(&self) -> bool {
        !self.pending.is_empty() || !self.is_durable(self.writes)
    }

    /// Writes and syncs every appended record.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        match self.sync_later()? {
            Some(sync) => sync.run(),
            None => Ok(()),
        }
    }

    /// Writes every appended record, and returns the sync that will make them durable, to run on
    /// any thread; `None` if every write is durable already. A sync covers the writes made before it
    /// was returned; the log may meanwhile append and write more.
    ///
    /// Once a sync has failed, this fails too: the writes that sync covered may be lost even if the
    /// next sync succeeds (Linux reports a failed writeback once, and may drop the pages), so no record
    /// written since can be called durable. Opening the store again reads what the disk holds.
    pub(super) fn sync_later(&mut self) -> io::Result<Option<LogSync>> {
        self.refuse_if_failed()?;
        self.write()?;
        Ok((!self.is_durable(self.writes)).then(|| LogSync {
            file: self.file.clone(),
            write: self.writes,
            syncs: self.syncs.clone(),
        }))
    }
}

/// Bodies at least this large are written from their own buffer rather than copied into `Pending`'s.
const SHARED_BODY_BYTES: usize = 4096;
/// The most slices one `pwritev` takes (Linux's `IOV_MAX`).
const MAX_SLICES: usize = 1024;

/// Appended records waiting to be written: their bytes in order, as runs of copied bytes (headers,
/// heads, small bodies) and shared large bodies.
#[derive(Default)]
struct Pending {
    copied: Vec<u8>,
    /// The shared bodies, each with the length of `copied` where it goes.
    shared: Vec<(usize, Bytes)>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.copied.is_empty() && self.shared.is_empty()
    }

    fn push(&mut self, bytes: &[u8]) {
        self.copied.extend_from_slice(bytes);
    }

    fn push_shared(&mut self, body: &Bytes) {
        if body.len() < SHARED_BODY_BYTES {
            self.push(body);
        } else {
            self.shared.push((self.copied.len(), body.clone()));
        }
    }

    /// Writes everything at `offset` in `file`, with as few calls as it takes, and empties itself.
    /// Returns how many bytes were written.
    fn write_at(&mut self, file: &File, offset: u64) -> io::Result<u64> {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * self.shared.len() + 1);
        let mut from = 0;
        for (at, body) in &self.shared {
            parts.push(&self.copied[from..*at]);
            parts.push(body);
            from = *at;
        }
        parts.push(&self.copied[from..]);
        parts.retain(|p| !p.is_empty());
        let total = write_all_vectored_at(file, &mut parts, offset)?;
        self.copied.clear();
        self.shared.clear();
        // Keep a large batch's buffer from pinning memory.
        if self.copied.capacity() > 4 * 1024 * 1024 {
            self.copied.shrink_to(1024 * 1024);
        }
        Ok(total)
    }
}

/// `pwritev` of `parts`, one after the other, until all are written: a call may write less than
/// asked, and takes at most [`MAX_SLICES`] parts. Returns how many bytes were written.
fn write_all_vectored_at(file: &File, parts: &mut [&[u8]], offset: u64) -> io::Result<u64> {
    let mut written = 0u64;
    let mut next = 0; // the first part not yet fully written
    while next < parts.len() {
        let slices: Vec<IoSlice<'_>> = parts[next..parts.len().min(next + MAX_SLICES)]
            .iter()
            .map(|p| IoSlice::new(p))
            .collect();
        let at = i64::try_from(offset + written).map_err(io::Error::other)?;
        let mut n = match nix::sys::uio::pwritev(file, &slices, at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        written += n as u64;
        while n > 0 {
            let part = &mut parts[next];
            if n >= part.len() {
                n -= part.len();
                next += 1;
            } else {
                *part = &part[n..];
                n = 0;
            }
        }
    }
    Ok(written)
}

/// A record header's payload length and CRC.
fn parse_header(header: &[u8]) -> (u32, u32) {
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    (word(0), word(4))
}

/// The smallest unit a disk writes whole: a torn write leaves each sector either written or not.
const SECTOR: u64 = 512;

/// A record in the event log that fails its check and is not a torn tail (see the module docs);
/// opening the store reports it as [`crate::store::StoreError::CorruptLog`].
#[derive(Debug, thiserror::Error)]
#[error("event log segment {} is corrupt at byte {offset}", segment.display())]
pub(crate) struct CorruptRecord {
    /// The segment file.
    pub(crate) segment: PathBuf,
    /// The offset of the bad record's header.
    pub(crate) offset: u64,
}

/// How [`scan`] ended.
enum ScanEnd {
    /// At the end of the records (zeros, or the segment's end).
    Clean(u64),
    /// At a record that fails its check.
    Bad(BadRecord),
}

/// A record that fails its check, and what tells a torn write from corruption.
struct BadRecord {
    /// Its header's offset.
    at: u64,
    /// Whether one of the sectors it spans is still blank (all zeros where it lies).
    blank: bool,
    /// Whether an intact record follows it, where its length says the next one starts.
    followed: bool,
}

/// Reads the records of `file` from `start`, passing each to `visit`; says where and how they end.
fn scan(
    file: &File,
    segment: u64,
    start: u64,
    capacity: u64,
    visit: &mut dyn FnMut(RecordRef, &[u8]),
) -> io::Result<ScanEnd> {
    let mut offset = start;
    let mut header = [0u8; HEADER as usize];
    let mut payload = Vec::new();
    while offset + HEADER <= capacity {
        file.read_exact_at(&mut header, offset)?;
        let (len, crc) = parse_header(&header);
        if len == 0 {
            if crc == 0 {
                return Ok(ScanEnd::Clean(offset));
            }
            // Half a header: its length's bytes are blank.
            return Ok(ScanEnd::Bad(BadRecord {
                at: offset,
                blank: true,
                followed: false,
            }));
        }
        let end = offset + HEADER + u64::from(len);
        if end > capacity {
            return Ok(ScanEnd::Bad(BadRecord {
                at: offset,
                blank: false,
                followed: false,
            }));
        }
        payload.resize(len as usize, 0);
        file.read_exact_at(&mut payload, offset + HEADER)?;
        if crc32fast::hash(&payload) != crc {
            return Ok(ScanEnd::Bad(BadRecord {
                at: offset,
                blank: has_blank_sector(offset, &header, &payload),
                followed: intact_at(file, end, capacity)?,
            }));
        }
        let at = Position { segment, offset };
        visit(RecordRef { at, len }, &payload);
        offset = end;
    }
    Ok(ScanEnd::Clean(offset))
}

/// Whether the part of some sector that the record at `at` (`header` then `payload`) covers is all zeros.
fn has_blank_sector(at: u64, header: &[u8], payload: &[u8]) -> bool {
    let byte = |i: u64| -> u8 {
        let i = i as usize;
        if i < header.len() {
            header[i]
        } else {
            payload[i - header.len()]
        }
    };
    let len = (header.len() + payload.len()) as u64;
    let mut from = 0;
    while from < len {
        // Up to the next sector boundary of the file.
        let to = ((at + from) / SECTOR + 1) * SECTOR - at;
        let to = to.min(len);
        if (from..to).all(|i| byte(i) == 0) {
            return true;
        }
        from = to;
    }
    false
}

/// Whether an intact record (a length, and a payload that matches its CRC) starts at `offset`.
fn intact_at(file: &File, offset: u64, capacity: u64) -> io::Result<bool> {
    if offset + HEADER > capacity {
        return Ok(false);
    }
    let mut header = [0u8; HEADER as usize];
    file.read_exact_at(&mut header, offset)?;
    let (len, crc) = parse_header(&header);
    if len == 0 || offset + HEADER + u64::from(len) > capacity {
        return Ok(false);
    }
    let mut payload = vec![0u8; len as usize];
    file.read_exact_at(&mut payload, offset + HEADER)?;
    Ok(crc32fast::hash(&payload) == crc)
}

/// Zeroes `file` from `from` to `to` (the remains of a torn write) and syncs it.
fn zero(file: &File, from: u64, to: u64) -> io::Result<()> {
    let chunk = vec![0u8; 1024 * 1024];
    let mut at = from;
    while at < to {
        let n = (to - at).min(chunk.len() as u64) as usize;
        file.write_all_at(&chunk[..n], at)?;
        at += n as u64;
    }
    file.sync_data()
}

/// The reading side: reads records by reference, keeping a few segments open. Thread-safe.
pub(super) struct LogReader {
    dir: PathBuf,
    open: Mutex<HashMap<u64, Arc<File>>>,
}

impl LogReader {
    pub(super) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            open: Mutex::default(),
        }
    }

    /// The log's directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The payload of the record at `at`, checked against its CRC.
    pub(super) fn read(&self, at: RecordRef) -> io::Result<Vec<u8>> {
        let file = self.file(at.at.segment)?;
        // One read for the header and the payload, whose length the reference gives.
        let mut record = vec![0u8; HEADER as usize + at.len as usize];
        file.read_exact_at(&mut record, at.at.offset)?;
        let (len, crc) = parse_header(&record[..HEADER as usize]);
        if len != at.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "log record length differs",
            ));
        }
        if crc32fast::hash(&record[HEADER as usize..]) != crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "log record CRC mismatch",
            ));
        }
        record.drain(..HEADER as usize);
        Ok(record)
    }

    fn file(&self, segment: u64) -> io::Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = open.get(&segment) {
            return Ok(file.clone());
        }
        let file = Arc::new(File::open(segment_path(&self.dir, segment))?);
        if open.len() >= OPEN_READERS {
            // Drop the oldest segment's handle: reads cluster on recent segments.
            if let Some(&oldest) = open.keys().min() {
                open.remove(&oldest);
            }
        }
        open.insert(segment, file.clone());
        Ok(file)
    }

    /// Deletes segment `segment` (nothing may reference it any more).
    pub(super) fn remove(&self, segment: u64) -> io::Result<()> {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&segment);
        std::fs::remove_file(segment_path(&self.dir, segment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: Position = Position {
        segment: 0,
        offset: 0,
    };
    const SMALL: u64 = 64 * 1024;

    /// Opens the log and collects the records it reads.
    fn open_log(dir: &Path, from: Position) -> (LogWriter, Vec<(RecordRef, Vec<u8>)>) {
        let mut records = Vec::new();
        let writer = LogWriter::open(dir, from, SMALL, &mut |at, payload| {
            records.push((at, payload.to_vec()))
        })
        .expect("open the log");
        (writer, records)
    }

    #[test]
    fn records_read_back_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, replay) = open_log(dir.path(), START);
        assert!(replay.is_empty());
        let a = w.append(b"first").expect("append");
        let b = w.append(&[7u8; 5000]).expect("append");
        w.sync().expect("sync");
        let r = LogReader::new(dir.path());
        assert_eq!(r.read(a).expect("read"), b"first");
        assert_eq!(r.read(b).expect("read"), vec![7u8; 5000]);
        drop(w);

        let (mut w, replay) = open_log(dir.path(), START);
        assert_eq!(replay.len(), 2);
        assert_eq!(replay[0], (a, b"first".to_vec()));
        assert_eq!(replay[1].0, b);
        // Appending resumes after the last record.
        let c = w.append(b"third").expect("append");
        assert_eq!(c.at.offset, b.at.offset + HEADER + 5000);
        w.sync().expect("sync");
        // Opening from a later position reads only what follows it.
        let (_, replay) = open_log(dir.path(), c.at);
        assert_eq!(replay, vec![(c, b"third".to_vec())]);
    }

    #[test]
    fn shared_bodies_are_written_in_order_past_the_slice_limit() {
        let dir = tempfile::tempdir().expect("temp dir");
        // One segment holds them all, so that they are written in one go.
        let mut w = LogWriter::open(dir.path(), START, 8 << 20, &mut |_, _| ()).expect("open the log");
        // Large bodies go to the kernel from their own buffers, small ones are copied: 700 records of
        // each kind, in one write, take more than one `pwritev`.
        let records: Vec<(Vec<u8>, Bytes)> = (0..1400u32)
            .map(|i| {
                let size = if i % 2 == 0 {
                    SHARED_BODY_BYTES + i as usize
                } else {
                    10 + i as usize % 7
                };
                let body: Vec<u8> = (0..size).map(|j| (i as usize * 31 + j) as u8).collect();
                (format!("head {i}:").into_bytes(), Bytes::from(body))
            })
            .collect();
        assert!(
            records
                .iter()
                .filter(|(_, b)| b.len() >= SHARED_BODY_BYTES)
                .count()
                * 2
                > MAX_SLICES
        );
        let refs: Vec<RecordRef> = records
            .iter()
            .map(|(head, body)| w.append_parts(head, body).expect("append"))
            .collect();
        w.sync().expect("sync");
        let whole = |(head, body): &(Vec<u8>, Bytes)| [head.as_slice(), body].concat();
        let r = LogReader::new(dir.path());
        for (at, record) in refs.iter().zip(&records) {
            assert_eq!(r.read(*at).expect("read"), whole(record));
        }
        drop(w);
        let (_, replay) = open_log(dir.path(), START);
        let expected: Vec<_> = refs.iter().copied().zip(records.iter().map(whole)).collect();
        assert_eq!(replay, expected);
    }

    #[test]
    fn a_torn_record_ends_the_log_and_is_overwritten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, _) = open_log(dir.path(), START);
        let a = w.append(b"kept").expect("append");
        let b = w.append(b"torn record").expect("append");
        w.sync().expect("sync");
        drop(w);
        // Corrupt the second record's payload, as a crash during its write would.
        let file = OpenOptions::new()
            .write(true)
            .open(segment_path(dir.path(), 0))
            .expect("open segment");
        file.write_all_at(b"X", b.at.offset + HEADER + 2)
            .expect("corrupt");
        drop(file);

        let (mut w, replay) = open_log(dir.path(), START);
        assert_eq!(replay, vec![(a, b"kept".to_vec())]);
        let c = w.append(b"new").expect("append");
        assert_eq!(c.at, b.at, "the torn record's place is reused");
        w.sync().expect("sync");
        drop(w);
        let (_, replay) = open_log(dir.path(), START);
        assert_eq!(replay, vec![(a, b"kept".to_vec()), (c, b"new".to_vec())]);
    }

    /// Writes `bytes` at `offset` of segment `segment`, as a disk that corrupts or a crash would.
    fn overwrite(dir: &Path, segment: u64, offset: u64, bytes: &[u8]) {
        let file = OpenOptions::new()
            .write(true)
            .open(segment_path(dir, segment))
            .expect("open segment");
        file.write_all_at(bytes, offset).expect("overwrite");
    }

    /// The error of opening the log in `dir`, which must fail.
    fn open_error(dir: &Path) -> CorruptRecord {
        let error = LogWriter::open(dir, START, SMALL, &mut |_, _| ())
            .err()
            .expect("the open fails");
        let inner = error.into_inner().expect("an error of our own");
        *inner.downcast::<CorruptRecord>().expect("a corrupt record")
    }

    #[test]
    fn a_corrupt_record_followed_by_intact_ones_stops_the_open_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, _) = open_log(dir.path(), START);
        let a = w.append(b"first").expect("append");
        let b = w.append(b"second, acknowledged").expect("append");
        let c = w.append(b"third, acknowledged").expect("append");
        w.sync().expect("sync");
        drop(w);
        // One bit of the middle record's payload flips on disk.
        overwrite(dir.path(), 0, b.at.offset + HEADER + 3, b"S");
        let before = std::fs::read(segment_path(dir.path(), 0)).expect("read");

        let corrupt = open_error(dir.path());
        assert_eq!(corrupt.segment, segment_path(dir.path(), 0));
        assert_eq!(corrupt.offset, b.at.offset);
        // Nothing was cut: the records on either side still read back, and so does a second open's error.
        assert_eq!(std::fs::read(segment_path(dir.path(), 0)).expect("read"), before);
        let r = LogReader::new(dir.path());
        assert_eq!(r.read(a).expect("read"), b"first");
        assert_eq!(r.read(c).expect("read"), b"third, acknowledged");
        assert_eq!(open_error(dir.path()).offset, b.at.offset);

        // The recovery the error suggests: cut the segment at the bad record. The records before it
        // stay, and the log goes on in a new segment.
        let file = OpenOptions::new()
            .write(true)
            .open(segment_path(dir.path(), 0))
            .expect("open");
        file.set_len(b.at.offset).expect("truncate");
        let (mut w, replay) = open_log(dir.path(), START);
        assert_eq!(replay, vec![(a, b"first".to_vec())]);
        let d = w.append(b"after the cut").expect("append");
        assert_eq!(d.at.segment, 1);
    }

    #[test]
    fn a_bad_record_in_a_segment_that_is_not_the_last_is_corruption() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, _) = open_log(dir.path(), START);
        let a = w.append(b"the last of segment 0").expect("append");
        // Fills segment 0, so the next record starts segment 1.
        let b = w.append(&vec![2u8; SMALL as usize - 48]).expect("append");
        let c = w.append(b"in segment 1").expect("append");
        w.sync().expect("sync");
        drop(w);
        assert_eq!((a.at.segment, b.at.segment, c.at.segment), (0, 0, 1));
        // Nothing follows b in its segment, but the log synced it before it moved on: not a torn tail.
        overwrite(dir.path(), 0, b.at.offset + HEADER + 100, b"X");
        let corrupt = open_error(dir.path());
        assert_eq!(
            (corrupt.segment, corrupt.offset),
            (segment_path(dir.path(), 0), b.at.offset)
        );
    }

    #[test]
    fn a_torn_write_whose_later_sectors_reached_the_disk_is_cleared() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, _) = open_log(dir.path(), START);
        let a = w.append(b"kept").expect("append");
        let b = w.append(&[5u8; 3000]).expect("append");
        w.append(b"written after b, in the same unsynced write")
            .expect("append");
        w.sync().expect("sync");
        drop(w);
        // A crash kept the write's later sectors but not one in the middle of b: that sector is still
        // blank, and the record after b is intact.
        let blank = (b.at.offset / SECTOR + 2) * SECTOR;
        overwrite(dir.path(), 0, blank, &[0u8; SECTOR as usize]);

        let (mut w, replay) = open_log(dir.path(), START);
        assert_eq!(replay, vec![(a, b"kept".to_vec())]);
        let c = w.append(b"new").expect("append");
        assert_eq!(c.at, b.at, "the torn record's place is reused");
        w.sync().expect("sync");
        drop(w);
        let (_, replay) = open_log(dir.path(), START);
        assert_eq!(replay, vec![(a, b"kept".to_vec()), (c, b"new".to_vec())]);
    }

    #[test]
    fn a_full_segment_moves_the_log_to_the_next_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, _) = open_log(dir.path(), START);
        // A record larger than a segment gets a segment of its own size.
        let big = vec![1u8; SMALL as usize];
        let a = w.append(b"small").expect("append");
        let b = w.append(&big).expect("append");
        let c = w.append(b"after").expect("append");
        w.sync().expect("sync");
        assert_eq!((a.at.segment, b.at.segment, c.at.segment), (0, 1, 2));
        assert_eq!(segments(dir.path()).expect("list"), vec![0, 1, 2]);
        let r = LogReader::new(dir.path());
        assert_eq!(r.read(b).expect("read").len(), big.len());
        drop(w);
        let (_, replay) = open_log(dir.path(), START);
        assert_eq!(
            replay.iter().map(|(at, _)| *at).collect::<Vec<_>>(),
            vec![a, b, c]
        );
        r.remove(0).expect("remove");
        assert_eq!(segments(dir.path()).expect("list"), vec![1, 2]);
    }

    #[test]
    fn a_segment_removed_or_replaced_under_the_writer_is_noticed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (w, _) = open_log(dir.path(), START);
        let health = w.health();
        assert_eq!(health.check_segment(), Ok(()));
        let path = segment_path(dir.path(), 0);
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(health.check_segment().map_err(|m| m.why), Err("it was removed"));
        std::fs::write(&path, b"").expect("another file");
        assert_eq!(
            health.check_segment().map_err(|m| m.why),
            Err("it was removed"),
            "the open one has no name left"
        );
        drop(w);
    }

    #[test]
    fn a_reference_round_trips() {
        let r = RecordRef {
            at: Position {
                segment: 3,
                offset: 1 << 40,
            },
            len: 77,
        };
        assert_eq!(RecordRef::decode(&r.encode()), Some(r));
        assert_eq!(RecordRef::decode(&[0u8; 5]), None);
    }
}
