//! A fault-injecting [`redb::StorageBackend`] for crash tests: an in-memory disk that
//! remembers what has been synced, builds the images a power cut could leave behind, and
//! makes writes or syncs fail on demand.
//!
//! # The disk model
//!
//! Every `write` and `set_len` lands in the *current* image at once; that is what a process
//! crash leaves, since the operating system's page cache survives it. Each one is also
//! *pending* until the next successful `sync_data`, which folds the pending operations into
//! the *durable* image. A power cut keeps the durable image and any subset of the pending
//! operations:
//!
//! - data writes land independently of each other, so any subset of them survives, applied
//!   in the order they were issued. A torn write lands only in part: a prefix of it, cut on a
//!   512-byte sector boundary (counted from the write's offset) or at any byte;
//! - the length of the file is metadata that file systems journal in order, so the length
//!   after a power cut is the one some prefix of the pending length changes (`set_len` calls
//!   and writes past the end) left. Bytes past that length are gone, and grown space whose
//!   data did not land reads as zeros.
//!
//! A failed `write` changes nothing; a failed `sync_data` leaves every pending operation
//! pending.
//!
//! A *full disk* ([`fill_after`](FaultyStorage::fill_after)) refuses every write and every
//! `set_len` that grows the file with `ENOSPC`, as a file system with no free blocks (or a
//! copy-on-write one, which needs new blocks even to overwrite) does, until
//! [`free_space`](FaultyStorage::free_space). Reads, shrinking and syncs still work.
//!
//! # Examples
//!
//! Take a crash image at every sync point and check that redb recovers from it:
//!
//! ```
//! use herald_testkit::faulty_storage::FaultyStorage;
//! use redb::{ReadableDatabase, TableDefinition};
//!
//! const TABLE: TableDefinition<'_, u64, u64> = TableDefinition::new("numbers");
//!
//! let storage = FaultyStorage::new();
//! let db = redb::Builder::new().create_with_backend(storage.clone())?;
//! storage.set_sync_hook(|storage, _sync| {
//!     let mut rng = fastrand::Rng::with_seed(7);
//!     let image = storage.crash_image(&mut rng, true);
//!     let recovered = redb::Builder::new().create_with_backend(FaultyStorage::from_image(image));
//!     assert!(recovered.is_ok());
//! });
//! let txn = db.begin_write()?;
//! txn.open_table(TABLE)?.insert(1, 10)?;
//! txn.commit()?;
//! assert!(storage.sync_count() > 0);
//! # Ok::<(), redb::Error>(())
//! ```

use std::fmt;
use std::io;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redb::StorageBackend;

/// 512 bytes: the smallest unit a disk writes atomically, so the usual place for a write
/// interrupted by a power cut to stop.
const SECTOR: usize = 512;

/// What a sync hook is given: the storage, and the number of the `sync_data` call (from 1).
type SyncHook = dyn Fn(&FaultyStorage, u64) + Send + Sync;

/// One operation issued since the last successful sync.
enum Pending {
    Write { offset: usize, data: Vec<u8> },
    SetLen(usize),
}

/// The bytes, the pending operations and the armed faults, behind one lock.
#[derive(Default)]
struct Disk {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
    syncs: u64,
    /// How many `sync_data` calls succeeded.
    durable_syncs: u64,
    /// Writes that still succeed before one fails.
    writes_before_failure: Option<u64>,
    /// Syncs that still succeed before one fails.
    syncs_before_failure: Option<u64>,
    /// Writes that still succeed before the disk is full.
    writes_before_full: Option<u64>,
    full: bool,
    /// How many `write` calls were made, failed ones included.
    writes: u64,
    dead: bool,
}

impl Disk {
    fn check_alive(&self) -> io::Result<()> {
        if self.dead {
            return Err(io::Error::other("faulty storage: the disk is dead"));
        }
        Ok(())
    }

    /// Fails with `ENOSPC` if the disk is full, or fills up now.
    fn check_space(&mut self) -> io::Result<()> {
        if Disk::countdown_fires(&mut self.writes_before_full) {
            self.full = true;
        }
        if self.full {
            return Err(no_space());
        }
        Ok(())
    }

    /// Whether an armed countdown fires now; counts one success down otherwise.
    fn countdown_fires(countdown: &mut Option<u64>) -> bool {
        match countdown {
            Some(0) => {
                *countdown = None;
                true
            }
            Some(left) => {
                *left -= 1;
                false
            }
            None => false,
        }
    }

    /// Folds every pending operation into the durable image.
    fn make_durable(&mut self) {
        for op in self.pending.drain(..) {
            match op {
                Pending::Write { offset, data } => write_growing(&mut self.durable, offset, &data),
                Pending::SetLen(len) => self.durable.resize(len, 0),
            }
        }
        debug_assert!(
            self.durable == self.current,
            "replaying the pending operations must rebuild the current image"
        );
    }

    /// What a power cut could leave now; see the module docs for the model.
    fn crash_image(&self, rng: &mut fastrand::Rng, torn: bool) -> Vec<u8> {
        let writes = self
            .pending
            .iter()
            .filter(|op| matches!(op, Pending::Write { .. }))
            .count();
        // Three ways of choosing the surviving writes, so that the images a test draws cover
        // the extremes (everything or nothing landed) as often as a random mix.
        let landed: Vec<bool> = match rng.u8(0..3) {
            0 => (0..writes).map(|_| rng.bool()).collect(),
            1 => {
                let cut = rng.usize(0..=writes);
                (0..writes).map(|i| i < cut).collect()
            }
            _ => vec![true; writes],
        };
        let torn_write = if torn {
            self.choose_torn_write(rng, &landed)
        } else {
            None
        };
        let kept_length_changes = rng.usize(0..=self.length_changes());

        let mut image = self.durable.clone();
        // The length the file had as redb saw it, to tell which writes grew it.
        let mut issued_len = self.durable.len();
        let mut length_changes = 0;
        let mut write_index = 0;
        for op in &self.pending {
            match op {
                Pending::SetLen(len) => {
                    if length_changes < kept_length_changes {
                        image.resize(*len, 0);
                    }
                    length_changes += 1;
                    issued_len = *len;
                }
                Pending::Write { offset, data } => {
                    let end = offset + data.len();
                    if end > issued_len {
                        if length_changes < kept_length_changes {
                            image.resize(image.len().max(end), 0);
                        }
                        length_changes += 1;
                        issued_len = end;
                    }
                    if landed[write_index] {
                        let data = match torn_write {
                            Some((index, cut)) if index == write_index => &data[..cut],
                            _ => &data[..],
                        };
                        write_clipped(&mut image, *offset, data);
                    }
                    write_index += 1;
                }
            }
        }
        image
    }

    /// Picks one landed write of at least two bytes and where it stops: `(write index, cut)`.
    fn choose_torn_write(&self, rng: &mut fastrand::Rng, landed: &[bool]) -> Option<(usize, usize)> {
        let tearable: Vec<(usize, usize)> = self
            .pending
            .iter()
            .filter_map(|op| match op {
                Pending::Write { data, .. } => Some(data.len()),
                Pending::SetLen(_) => None,
            })
            .enumerate()
            .filter(|&(index, len)| landed[index] && len >= 2)
            .collect();
        if tearable.is_empty() {
            return None;
        }
        let (index, len) = tearable[rng.usize(0..tearable.len())];
        // Sector boundaries strictly inside the write, counted from its offset.
        let inner_boundaries = (len - 1) / SECTOR;
        let cut = if inner_boundaries > 0 && rng.bool() {
            rng.usize(1..=inner_boundaries) * SECTOR
        } else {
            rng.usize(1..len)
        };
        Some((index, cut))
    }

    /// How many pending operations change the file's length, in the order they were issued.
    fn length_changes(&self) -> usize {
        let mut len = self.durable.len();
        let mut changes = 0;
        for op in &self.pending {
            match op {
                Pending::SetLen(new_len) => {
                    changes += 1;
                    len = *new_len;
                }
                Pending::Write { offset, data } if offset + data.len() > len => {
                    changes += 1;
                    len = offset + data.len();
                }
                Pending::Write { .. } => {}
            }
        }
        changes
    }
}

/// Writes `data` at `offset`, growing `image` with zeros first if it is too short.
fn write_growing(image: &mut Vec<u8>, offset: usize, data: &[u8]) {
    let end = offset + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[offset..end].copy_from_slice(data);
}

/// Writes the part of `data` that falls inside `image`, leaving its length alone.
fn write_clipped(image: &mut [u8], offset: usize, data: &[u8]) {
    let end = image.len().min(offset + data.len());
    if offset < end {
        image[offset..end].copy_from_slice(&data[..end - offset]);
    }
}

/// What a full disk answers: `ENOSPC`, as the operating system reports it.
fn no_space() -> io::Error {
    const ENOSPC: i32 = 28;
    io::Error::from_raw_os_error(ENOSPC)
}

/// The in-memory range of `len` bytes at `offset`, or an error if it does not fit in memory.
fn byte_range(offset: u64, len: usize) -> io::Result<Range<usize>> {
    let offset = usize::try_from(offset).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "faulty storage: offset does not fit in memory",
        )
    })?;
    let end = offset
        .checked_add(len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "faulty storage: range end overflows"))?;
    Ok(offset..end)
}

struct Shared {
    disk: Mutex<Disk>,
    /// Kept apart from `disk`, and cloned out before it is called, so that a hook may call
    /// back into the storage (take images, arm faults, even replace the hook).
    hook: Mutex<Option<Arc<SyncHook>>>,
    /// Notified after every successful sync.
    synced: Condvar,
}

/// An in-memory [`StorageBackend`] that records what is durable and injects faults.
///
/// Cheap to clone: clones share the same disk, so a test keeps a handle after giving one to
/// [`redb::Builder::create_with_backend`]. Locking is not implemented (redb's defaults report
/// it unsupported), so redb runs it in its default `ExclusiveWriter` mode.
#[derive(Clone)]
pub struct FaultyStorage {
    shared: Arc<Shared>,
}

impl FaultyStorage {
    /// An empty disk with no faults armed; redb creates a new database on it.
    pub fn new() -> Self {
        Self::from_image(Vec::new())
    }

    /// A disk holding `bytes`, all of them durable: a crash image taken from another
    /// `FaultyStorage`, ready for redb to open (and recover) as a database.
    pub fn from_image(bytes: Vec<u8>) -> Self {
        let disk = Disk {
            current: bytes.clone(),
            durable: bytes,
            ..Disk::default()
        };
        FaultyStorage {
            shared: Arc::new(Shared {
                disk: Mutex::new(disk),
                hook: Mutex::new(None),
                synced: Condvar::new(),
            }),
        }
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        // A panicking test thread must not hide the bytes from the others.
        self.shared.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes one write fail, after `successes` more writes have succeeded (`0`: the next
    /// write). The failed write changes nothing; later writes succeed again. Replaces any
    /// write failure armed before.
    pub fn fail_write_after(&self, successes: u64) {
        self.disk().writes_before_failure = Some(successes);
    }

    /// Makes the next write fail; the same as [`fail_write_after(0)`](Self::fail_write_after).
    pub fn fail_next_write(&self) {
        self.fail_write_after(0);
    }

    /// Makes one `sync_data` fail, after `successes` more syncs have succeeded (`0`: the next
    /// sync). The pending operations stay pending, not durable; later syncs succeed again.
    /// Replaces any sync failure armed before. The sync hook still runs for the failing sync.
    pub fn fail_sync_after(&self, successes: u64) {
        self.disk().syncs_before_failure = Some(successes);
    }

    /// Makes the next `sync_data` fail; the same as
    /// [`fail_sync_after(0)`](Self::fail_sync_after).
    pub fn fail_next_sync(&self) {
        self.fail_sync_after(0);
    }

    /// Fills the disk after `successes` more writes have succeeded (`0`: at once): from then
    /// on every write, and every `set_len` that grows the file, fails with `ENOSPC` and
    /// changes nothing, until [`free_space`](Self::free_space). Replaces any countdown to a
    /// full disk armed before.
    pub fn fill_after(&self, successes: u64) {
        self.disk().writes_before_full = Some(successes);
    }

    /// Frees space on a [full](Self::fill_after) disk, and disarms a countdown to one:
    /// writes succeed again.
    pub fn free_space(&self) {
        let mut disk = self.disk();
        disk.full = false;
        disk.writes_before_full = None;
    }

    /// Disarms every injected fault: the write and sync countdowns, a full disk, a dead disk.
    pub fn clear_faults(&self) {
        let mut disk = self.disk();
        disk.writes_before_failure = None;
        disk.syncs_before_failure = None;
        disk.writes_before_full = None;
        disk.full = false;
        disk.dead = false;
    }

    /// How many times `write` has been called, failed calls included.
    pub fn write_count(&self) -> u64 {
        self.disk().writes
    }

    /// Kills the disk: from now on every `len`, `read`, `write`, `set_len` and `sync_data`
    /// fails with an I/O error, until [`heal`](Self::heal). The images stay readable.
    pub fn kill(&self) {
        self.disk().dead = true;
    }

    /// Brings a [killed](Self::kill) disk back: I/O succeeds again, on the bytes it held.
    /// Write or sync failures armed with the `fail_*` methods stay armed.
    pub fn heal(&self) {
        self.disk().dead = false;
    }

    /// Runs `hook` at the start of every `sync_data` call, failing ones included: before the
    /// pending operations become durable and before an injected fault or a dead disk fails
    /// the call. The hook is given this storage and the number of that call (the first is
    /// 1). Replaces any hook set before.
    ///
    /// No lock is held while the hook runs, so it may take images or arm faults through the
    /// storage it is given. Use that argument rather than capturing a clone of the storage:
    /// a captured clone would keep the storage alive forever (a reference cycle).
    pub fn set_sync_hook(&self, hook: impl Fn(&FaultyStorage, u64) + Send + Sync + 'static) {
        *self.shared.hook.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(hook));
    }

    /// Removes the sync hook, if any.
    pub fn clear_sync_hook(&self) {
        *self.shared.hook.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// How many times `sync_data` has been called, failed calls included.
    pub fn sync_count(&self) -> u64 {
        self.disk().syncs
    }

    /// How many `sync_data` calls have succeeded.
    pub fn durable_sync_count(&self) -> u64 {
        self.disk().durable_syncs
    }

    /// Blocks until at least `n` syncs have succeeded or `timeout` passes; returns
    /// whether they did. Lets a test wait for a flush without sleeping.
    pub fn wait_for_durable_syncs(&self, n: u64, timeout: Duration) -> bool {
        let disk = self.disk();
        let (disk, _) = self
            .shared
            .synced
            .wait_timeout_while(disk, timeout, |d| d.durable_syncs < n)
            .unwrap_or_else(PoisonError::into_inner);
        disk.durable_syncs >= n
    }

    /// How many writes and length changes were issued since the last successful sync.
    pub fn pending_ops(&self) -> usize {
        self.disk().pending.len()
    }

    /// The storage as of the last successful sync: what a power cut leaves if every pending
    /// operation is lost.
    pub fn durable_image(&self) -> Vec<u8> {
        self.disk().durable.clone()
    }

    /// Everything written so far, synced or not: what a process crash (without a power cut)
    /// leaves.
    pub fn current_image(&self) -> Vec<u8> {
        self.disk().current.clone()
    }

    /// One image a power cut right now could leave, drawn with `rng`: the durable image plus
    /// a random subset of the pending writes, in order, with the file length after a random
    /// prefix of the pending length changes. With `torn`, one of the writes that land is torn:
    /// only a prefix of it (cut on a 512-byte boundary from its offset, or at any byte) lands,
    /// and the rest keeps the bytes that were there. See the module docs for the model.
    pub fn crash_image(&self, rng: &mut fastrand::Rng, torn: bool) -> Vec<u8> {
        self.disk().crash_image(rng, torn)
    }
}

impl Default for FaultyStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FaultyStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let disk = self.disk();
        f.debug_struct("FaultyStorage")
            .field("len", &disk.current.len())
            .field("durable_len", &disk.durable.len())
            .field("pending_ops", &disk.pending.len())
            .field("syncs", &disk.syncs)
            .field("dead", &disk.dead)
            .finish_non_exhaustive()
    }
}

impl StorageBackend for FaultyStorage {
    fn len(&self) -> io::Result<u64> {
        let disk = self.disk();
        disk.check_alive()?;
        Ok(disk.current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let disk = self.disk();
        disk.check_alive()?;
        let range = byte_range(offset, out.len())?;
        let bytes = disk.current.get(range).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "faulty storage: read past the end of the storage",
            )
        })?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut disk = self.disk();
        disk.check_alive()?;
        let len = usize::try_from(len).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "faulty storage: length does not fit in memory",
            )
        })?;
        if len > disk.current.len() && disk.full {
            return Err(no_space());
        }
        disk.current.resize(len, 0);
        disk.pending.push(Pending::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let number = {
            let mut disk = self.disk();
            disk.syncs += 1;
            disk.syncs
        };
        let hook = self.shared.hook.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(hook) = hook {
            hook(self, number);
        }
        let mut disk = self.disk();
        disk.check_alive()?;
        if Disk::countdown_fires(&mut disk.syncs_before_failure) {
            return Err(io::Error::other("faulty storage: injected sync failure"));
        }
        disk.make_durable();
        disk.durable_syncs += 1;
        self.shared.synced.notify_all();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut disk = self.disk();
        disk.check_alive()?;
        disk.writes += 1;
        let offset = byte_range(offset, data.len())?.start;
        if Disk::countdown_fires(&mut disk.writes_before_failure) {
            return Err(io::Error::other("faulty storage: injected write failure"));
        }
        disk.check_space()?;
        write_growing(&mut disk.current, offset, data);
        disk.pending.push(Pending::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::ops::RangeInclusive;
    use std::sync::atomic::{AtomicU64, Ordering};

    use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableError};

    use super::*;

    const TABLE: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");

    /// The value stored under `key`: a few hundred bytes, so that commits span several pages.
    fn value(key: u64) -> Vec<u8> {
        vec![key as u8; 200 + (key % 7) as usize * 100]
    }

    fn commit_key(db: &Database, key: u64, durability: Durability) -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_durability(durability)?;
        txn.open_table(TABLE)?.insert(key, value(key).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Opens `image` as a database and returns its keys, checking each value.
    fn keys_in(image: Vec<u8>) -> Result<Vec<u64>, String> {
        let db = redb::Builder::new()
            .create_with_backend(FaultyStorage::from_image(image))
            .map_err(|e| format!("open failed: {e}"))?;
        let txn = db.begin_read().map_err(|e| format!("begin_read failed: {e}"))?;
        let table = match txn.open_table(TABLE) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(format!("open_table failed: {e}")),
        };
        let mut keys = Vec::new();
        for entry in table.iter().map_err(|e| format!("iter failed: {e}"))? {
            let (key, stored) = entry.map_err(|e| format!("entry failed: {e}"))?;
            if stored.value() != value(key.value()).as_slice() {
                return Err(format!("key {} holds a wrong value", key.value()));
            }
            keys.push(key.value());
        }
        Ok(keys)
    }

    /// The number of commits `image` holds, if its keys are exactly `0..k`.
    fn committed_prefix(image: Vec<u8>) -> Result<u64, String> {
        let keys = keys_in(image)?;
        let k = keys.len() as u64;
        if keys.iter().copied().eq(0..k) {
            Ok(k)
        } else {
            Err(format!("keys are not a prefix: {keys:?}"))
        }
    }

    #[test]
    fn reads_back_writes_and_zero_fills_growth() {
        let storage = FaultyStorage::new();
        storage.write(4, b"abcd").unwrap();
        assert_eq!(storage.len().unwrap(), 8);
        storage.set_len(12).unwrap();
        let mut out = [0xff; 12];
        storage.read(0, &mut out).unwrap();
        assert_eq!(&out, b"\0\0\0\0abcd\0\0\0\0");
        storage.set_len(6).unwrap();
        storage.set_len(8).unwrap();
        let mut out = [0xff; 8];
        storage.read(0, &mut out).unwrap();
        assert_eq!(
            &out, b"\0\0\0\0ab\0\0",
            "shrinking then growing must zero the regrown bytes"
        );
    }

    #[test]
    fn reading_past_the_end_is_an_error() {
        let storage = FaultyStorage::from_image(vec![1; 10]);
        let mut out = [0; 4];
        assert!(storage.read(8, &mut out).is_err());
        assert!(storage.read(u64::MAX, &mut out).is_err());
        storage.read(6, &mut out).unwrap();
        assert_eq!(out, [1; 4]);
    }

    #[test]
    fn only_a_successful_sync_makes_pending_operations_durable() {
        let storage = FaultyStorage::from_image(vec![1; 4]);
        storage.write(2, &[2; 4]).unwrap();
        storage.set_len(8).unwrap();
        assert_eq!(storage.durable_image(), vec![1; 4]);
        assert_eq!(storage.current_image(), vec![1, 1, 2, 2, 2, 2, 0, 0]);
        assert_eq!(storage.pending_ops(), 2);

        storage.fail_next_sync();
        assert!(storage.sync_data().is_err());
        assert_eq!(
            storage.durable_image(),
            vec![1; 4],
            "a failed sync must not make anything durable"
        );
        assert_eq!(storage.pending_ops(), 2);

        storage.sync_data().unwrap();
        assert_eq!(storage.durable_image(), vec![1, 1, 2, 2, 2, 2, 0, 0]);
        assert_eq!(storage.pending_ops(), 0);
        assert_eq!(storage.sync_count(), 2);
    }

    #[test]
    fn fail_write_after_fails_exactly_that_write_and_it_changes_nothing() {
        let storage = FaultyStorage::new();
        storage.fail_write_after(2);
        storage.write(0, &[1]).unwrap();
        storage.write(1, &[2]).unwrap();
        assert!(storage.write(2, &[3]).is_err());
        storage.write(3, &[4]).unwrap();
        assert_eq!(storage.current_image(), vec![1, 2, 0, 4]);
        assert_eq!(storage.pending_ops(), 3);
    }

    #[test]
    fn a_full_disk_refuses_writes_and_growth_with_enospc_until_space_is_freed() {
        let storage = FaultyStorage::from_image(vec![7; 4]);
        storage.fill_after(1);
        storage.write(0, &[1]).unwrap();
        let refused = storage.write(1, &[2]).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::StorageFull, "{refused}");
        assert_eq!(refused.raw_os_error(), Some(28));
        assert_eq!(storage.set_len(8).unwrap_err().kind(), io::ErrorKind::StorageFull);
        // Shrinking, reading and syncing need no space.
        storage.set_len(3).unwrap();
        storage.sync_data().unwrap();
        assert_eq!(storage.durable_image(), vec![1, 7, 7]);
        assert_eq!(storage.write_count(), 2);
        storage.free_space();
        storage.write(3, &[4]).unwrap();
        assert_eq!(storage.current_image(), vec![1, 7, 7, 4]);
    }

    #[test]
    fn a_full_disk_fails_the_commit_with_enospc_and_the_database_reopens() {
        let storage = FaultyStorage::new();
        let db = redb::Builder::new().create_with_backend(storage.clone()).unwrap();
        commit_key(&db, 0, Durability::Immediate).unwrap();
        storage.fill_after(0);
        let err = commit_key(&db, 1, Durability::Immediate).unwrap_err();
        assert!(err.to_string().contains("No space left on device"), "{err}");
        drop(db);
        storage.clear_faults();
        assert_eq!(keys_in(storage.current_image()).unwrap(), vec![0]);
    }

    #[test]
    fn a_dead_disk_fails_all_io_until_healed() {
        let storage = FaultyStorage::from_image(vec![7; 8]);
        storage.kill();
        let mut out = [0; 1];
        assert!(storage.len().is_err());
        assert!(storage.read(0, &mut out).is_err());
        assert!(storage.write(0, &[1]).is_err());
        assert!(storage.set_len(1).is_err());
        assert!(storage.sync_data().is_err());
        assert_eq!(storage.current_image(), vec![7; 8]);
        storage.heal();
        storage.write(0, &[1]).unwrap();
        storage.sync_data().unwrap();
        assert_eq!(storage.durable_image()[0], 1);
    }

    #[test]
    fn crash_images_keep_the_durable_bytes_and_any_subset_of_pending_writes() {
        let storage = FaultyStorage::from_image(vec![b'a'; 1024]);
        storage.write(0, &[b'b'; 1024]).unwrap();
        storage.write(1024, &[b'c'; 1024]).unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let image = storage.crash_image(&mut rng, false);
            let first = image[0];
            assert!(image[..1024].iter().all(|&b| b == first), "an untorn write lands whole");
            let second = match image.len() {
                1024 => None,
                2048 => Some(image[1024]),
                len => panic!("length {len} is not one the file ever had"),
            };
            if let Some(second) = second {
                assert!(image[1024..].iter().all(|&b| b == second));
                assert!(second == b'c' || second == 0, "grown space holds the write or zeros");
            }
            seen.insert((first, second));
        }
        let expected = [
            (b'a', None),
            (b'b', None),
            (b'a', Some(0)),
            (b'a', Some(b'c')),
            (b'b', Some(0)),
            (b'b', Some(b'c')),
        ];
        assert_eq!(
            seen,
            expected.into_iter().collect(),
            "every combination of lost writes turns up"
        );
    }

    #[test]
    fn torn_writes_land_a_prefix_cut_on_sectors_or_at_any_byte() {
        let storage = FaultyStorage::from_image(vec![b'a'; 4096]);
        storage.write(0, &[b'b'; 4096]).unwrap();
        let mut rng = fastrand::Rng::with_seed(2);
        let (mut on_sector, mut off_sector) = (0, 0);
        for _ in 0..200 {
            let image = storage.crash_image(&mut rng, true);
            assert_eq!(image.len(), 4096);
            let cut = image.iter().position(|&b| b == b'a').unwrap_or(4096);
            assert!(image[..cut].iter().all(|&b| b == b'b') && image[cut..].iter().all(|&b| b == b'a'));
            match cut {
                0 => {}
                4096 => panic!("a torn write must not land whole"),
                cut if cut % SECTOR == 0 => on_sector += 1,
                _ => off_sector += 1,
            }
        }
        assert!(
            on_sector > 20 && off_sector > 20,
            "cuts: {on_sector} on sectors, {off_sector} elsewhere"
        );
    }

    #[test]
    fn the_sync_hook_runs_before_the_sync_and_may_call_back_into_the_storage() {
        let storage = FaultyStorage::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        storage.set_sync_hook(move |storage, number| {
            let mut rng = fastrand::Rng::with_seed(number);
            let crash = storage.crash_image(&mut rng, true);
            assert!(crash.len() <= storage.current_image().len());
            record
                .lock()
                .unwrap()
                .push((number, storage.durable_image(), storage.sync_count()));
            if number == 2 {
                storage.clear_sync_hook();
            }
        });
        storage.write(0, &[1]).unwrap();
        storage.sync_data().unwrap();
        storage.write(0, &[2]).unwrap();
        storage.sync_data().unwrap();
        storage.sync_data().unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![(1, vec![], 1), (2, vec![1], 2)],
            "the hook ran before each sync until it removed itself"
        );
        assert_eq!(storage.durable_image(), vec![2]);
        assert_eq!(storage.sync_count(), 3);
    }

    /// What the images taken at the sync points showed.
    #[derive(Default)]
    struct Findings {
        failures: Vec<String>,
        /// Crash images taken while a commit was in flight that left it out, and that held it.
        /// Both must occur, or the images are not exploring the sync point.
        without_in_flight: u32,
        with_in_flight: u32,
    }

    impl Findings {
        /// Opens `image` and checks that it holds a prefix of `allowed` length; returns the length.
        fn check(&mut self, at: &str, what: &str, image: Vec<u8>, allowed: RangeInclusive<u64>) -> Option<u64> {
            match committed_prefix(image) {
                Ok(k) if allowed.contains(&k) => Some(k),
                Ok(k) => {
                    self.failures
                        .push(format!("{at}: {what} image holds {k} commits, expected {allowed:?}"));
                    None
                }
                Err(e) => {
                    self.failures.push(format!("{at}: {what} image: {e}"));
                    None
                }
            }
        }
    }

    /// Commits keys `0..COMMITS` one per transaction with `Durability::Immediate` and, at every
    /// sync point, checks the durable, the current and some crash images of the disk; returns
    /// what went wrong.
    fn check_crash_images_at_every_sync_point(torn: bool, two_phase: bool) -> Vec<String> {
        const COMMITS: u64 = 50;
        const CRASH_IMAGES_PER_SYNC: usize = 10;
        let storage = FaultyStorage::new();
        let db = redb::Builder::new().create_with_backend(storage.clone()).unwrap();
        let returned = Arc::new(AtomicU64::new(0));
        let findings = Arc::new(Mutex::new(Findings::default()));
        let rng = Mutex::new(fastrand::Rng::with_seed(if torn { 11 } else { 10 }));
        let (hook_returned, hook_findings) = (Arc::clone(&returned), Arc::clone(&findings));
        storage.set_sync_hook(move |storage, sync| {
            let returned = hook_returned.load(Ordering::SeqCst);
            let at = format!("sync {sync} after {returned} commits returned");
            let mut findings = hook_findings.lock().unwrap();
            // Nothing of the commit in flight may be durable before its sync.
            findings.check(&at, "durable", storage.durable_image(), returned..=returned);
            let current = findings.check(&at, "current", storage.current_image(), returned..=returned + 1);
            let in_flight = current == Some(returned + 1);
            for _ in 0..CRASH_IMAGES_PER_SYNC {
                let image = storage.crash_image(&mut rng.lock().unwrap(), torn);
                match findings.check(&at, "crash", image, returned..=returned + 1) {
                    Some(k) if in_flight && k == returned => findings.without_in_flight += 1,
                    Some(_) if in_flight => findings.with_in_flight += 1,
                    _ => {}
                }
            }
        });
        let syncs_before = storage.sync_count();
        for key in 0..COMMITS {
            let mut txn = db.begin_write().unwrap();
            txn.set_two_phase_commit(two_phase);
            txn.open_table(TABLE)
                .unwrap()
                .insert(key, value(key).as_slice())
                .unwrap();
            txn.commit().unwrap();
            returned.store(key + 1, Ordering::SeqCst);
        }
        // Closing syncs too; its sync points are checked like the others.
        drop(db);
        let syncs = storage.sync_count() - syncs_before;
        let mut findings = findings.lock().unwrap();
        if syncs < COMMITS {
            findings
                .failures
                .push(format!("only {syncs} syncs for {COMMITS} commits"));
        }
        if findings.without_in_flight == 0 || findings.with_in_flight == 0 {
            let (without, with) = (findings.without_in_flight, findings.with_in_flight);
            findings.failures.push(format!(
                "crash images: {without} without the commit in flight, {with} with it"
            ));
        }
        std::mem::take(&mut findings.failures)
    }

    #[test]
    fn every_crash_image_at_every_sync_point_holds_a_prefix_of_the_returned_commits() {
        let failures = check_crash_images_at_every_sync_point(false, false);
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn every_torn_crash_image_at_every_sync_point_holds_a_prefix_of_the_returned_commits() {
        let failures = check_crash_images_at_every_sync_point(true, false);
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn a_failed_sync_fails_the_commit_and_leaves_it_out_of_the_durable_image() {
        let storage = FaultyStorage::new();
        let db = redb::Builder::new().create_with_backend(storage.clone()).unwrap();
        commit_key(&db, 0, Durability::Immediate).unwrap();
        storage.fail_next_sync();
        assert!(commit_key(&db, 1, Durability::Immediate).is_err());
        assert!(storage.pending_ops() > 0, "the failed commit's writes stay pending");
        assert_eq!(keys_in(storage.durable_image()).unwrap(), vec![0]);
    }

    #[test]
    fn a_failed_write_fails_the_commit() {
        let storage = FaultyStorage::new();
        let db = redb::Builder::new().create_with_backend(storage.clone()).unwrap();
        commit_key(&db, 0, Durability::Immediate).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TABLE).unwrap().insert(1, value(1).as_slice()).unwrap();
        storage.fail_next_write();
        assert!(txn.commit().is_err());
        assert_eq!(keys_in(storage.durable_image()).unwrap(), vec![0]);
    }

    #[test]
    fn non_durable_commits_become_durable_with_the_next_immediate_commit() {
        let storage = FaultyStorage::new();
        let db = redb::Builder::new().create_with_backend(storage.clone()).unwrap();
        commit_key(&db, 0, Durability::Immediate).unwrap();
        commit_key(&db, 1, Durability::None).unwrap();
        assert_eq!(keys_in(storage.durable_image()).unwrap(), vec![0]);
        commit_key(&db, 2, Durability::Immediate).unwrap();
        assert_eq!(keys_in(storage.durable_image()).unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn a_dead_disk_fails_commits_and_after_healing_the_database_reopens() {
        let storage = FaultyStorage::new();
        let db = redb::Builder::new().create_with_backend(storage.clone()).unwrap();
        commit_key(&db, 0, Durability::Immediate).unwrap();
        storage.kill();
        assert!(commit_key(&db, 1, Durability::Immediate).is_err());
        drop(db);
        storage.heal();
        let db = redb::Builder::new().create_with_backend(storage.clone()).unwrap();
        commit_key(&db, 2, Durability::Immediate).unwrap();
        drop(db);
        assert_eq!(keys_in(storage.durable_image()).unwrap(), vec![0, 2]);
    }

    #[test]
    fn a_closed_database_is_wholly_durable_and_reopens_from_its_image() {
        let storage = FaultyStorage::new();
        let db = redb::Builder::new().create_with_backend(storage.clone()).unwrap();
        for key in 0..3 {
            commit_key(&db, key, Durability::Immediate).unwrap();
        }
        drop(db);
        assert_eq!(storage.durable_image(), storage.current_image());
        assert_eq!(keys_in(storage.durable_image()).unwrap(), vec![0, 1, 2]);
    }
}
