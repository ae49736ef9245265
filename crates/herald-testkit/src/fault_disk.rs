//! A fault-injecting redb storage backend: an in-memory disk that remembers
//! what has been fsynced, so tests can build the images a power cut could
//! leave, and make writes or fsyncs fail on demand.
//!
//! redb writes through [`StorageBackend`]; every `write` and `set_len` since the
//! last successful `sync_data` is *pending*. A crash image is the last synced
//! state plus any subset of the pending operations, in order, optionally with
//! one of them torn (only a prefix of its bytes landed).

use std::fmt;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use redb::StorageBackend;

/// 512 bytes: the sector size a torn write is cut on.
const SECTOR: usize = 512;

#[derive(Clone)]
enum Op {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Default)]
struct Disk {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Op>,
    syncs: u64,
    fail_syncs: u64,
    fail_write_in: Option<u64>,
    dead: bool,
}

type SyncHook = Box<dyn Fn(&FaultyDisk, u64) + Send + Sync>;

/// The fault-injecting disk. Cheap to clone: clones share the same bytes, so a
/// test keeps a handle after giving one to redb.
#[derive(Clone, Default)]
pub struct FaultyDisk {
    disk: Arc<Mutex<Disk>>,
    hook: Arc<Mutex<Option<Arc<SyncHook>>>>,
    synced: Arc<Condvar>,
}

impl fmt::Debug for FaultyDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let disk = self.lock();
        f.debug_struct("FaultyDisk")
            .field("len", &disk.current.len())
            .field("pending", &disk.pending.len())
            .field("syncs", &disk.syncs)
            .finish()
    }
}

fn failure(what: &str) -> io::Error {
    io::Error::other(format!("injected fault: {what}"))
}

impl FaultyDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// A disk holding `image`, all of it durable (to reopen a crash image).
    pub fn from_image(image: Vec<u8>) -> Self {
        let disk = Disk {
            durable: image.clone(),
            current: image,
            ..Disk::default()
        };
        Self {
            disk: Arc::new(Mutex::new(disk)),
            hook: Arc::default(),
            synced: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls `hook` at the start of every `sync_data`, before the pending writes
    /// become durable, with the number of syncs completed so far.
    pub fn set_sync_hook(&self, hook: impl Fn(&FaultyDisk, u64) + Send + Sync + 'static) {
        *self.hook.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(Box::new(hook)));
    }

    /// How many `sync_data` calls have succeeded.
    pub fn sync_count(&self) -> u64 {
        self.lock().syncs
    }

    /// Blocks until at least `n` syncs have succeeded, or `timeout` passes;
    /// returns whether they did.
    pub fn wait_for_syncs(&self, n: u64, timeout: Duration) -> bool {
        let disk = self.lock();
        let (disk, _) = self
            .synced
            .wait_timeout_while(disk, timeout, |d| d.syncs < n)
            .unwrap_or_else(|e| e.into_inner());
        disk.syncs >= n
    }

    /// Makes the next `n` `sync_data` calls fail; their writes stay pending.
    pub fn fail_next_syncs(&self, n: u64) {
        self.lock().fail_syncs = n;
    }

    /// Makes the write after the next `n` writes fail.
    pub fn fail_write_after(&self, n: u64) {
        self.lock().fail_write_in = Some(n);
    }

    /// Makes every operation fail until [`heal`](FaultyDisk::heal).
    pub fn kill(&self) {
        self.lock().dead = true;
    }

    /// Undoes [`kill`](FaultyDisk::kill) and clears pending injected faults.
    pub fn heal(&self) {
        let mut disk = self.lock();
        disk.dead = false;
        disk.fail_syncs = 0;
        disk.fail_write_in = None;
    }

    /// What survives a power cut with every pending write lost.
    pub fn durable_image(&self) -> Vec<u8> {
        self.lock().durable.clone()
    }

    /// What survives a process crash with the OS intact: everything written.
    pub fn current_image(&self) -> Vec<u8> {
        self.lock().current.clone()
    }

    /// What a power cut right now could leave: the durable state plus a random
    /// subset of the pending operations, in order, and with `torn`, one of the
    /// kept writes cut short at a sector boundary.
    pub fn crash_image(&self, rng: &mut fastrand::Rng, torn: bool) -> Vec<u8> {
        let disk = self.lock();
        let mut image = disk.durable.clone();
        let kept: Vec<&Op> = disk.pending.iter().filter(|_| rng.bool()).collect();
        let writes = kept.iter().filter(|op| matches!(op, Op::Write { .. })).count();
        let tear = (torn && writes > 0).then(|| rng.usize(..writes));
        let mut write_index = 0;
        for op in kept {
            match op {
                Op::SetLen(len) => image.resize(usize::try_from(*len).expect("test images fit in memory"), 0),
                Op::Write { offset, data } => {
                    let landed = if tear == Some(write_index) {
                        let sectors = data.len().div_ceil(SECTOR);
                        (rng.usize(..sectors.max(1)) * SECTOR).min(data.len())
                    } else {
                        data.len()
                    };
                    write_index += 1;
                    put(&mut image, *offset, &data[..landed]);
                }
            }
        }
        image
    }
}

fn put(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = usize::try_from(offset).expect("test images fit in memory");
    let end = start + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
}

impl StorageBackend for FaultyDisk {
    fn len(&self) -> Result<u64, io::Error> {
        let disk = self.lock();
        if disk.dead {
            return Err(failure("disk is dead"));
        }
        Ok(disk.current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let disk = self.lock();
        if disk.dead {
            return Err(failure("disk is dead"));
        }
        let start = usize::try_from(offset).map_err(|_| failure("offset out of range"))?;
        let end = start
            .checked_add(out.len())
            .filter(|&end| end <= disk.current.len())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("read of {} bytes at {offset} past the end", out.len()),
                )
            })?;
        out.copy_from_slice(&disk.current[start..end]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut disk = self.lock();
        if disk.dead {
            return Err(failure("disk is dead"));
        }
        disk.current
            .resize(usize::try_from(len).map_err(|_| failure("length out of range"))?, 0);
        disk.pending.push(Op::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let hook = self.hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(hook) = hook {
            let syncs = self.sync_count();
            hook(self, syncs);
        }
        let mut disk = self.lock();
        if disk.dead {
            return Err(failure("disk is dead"));
        }
        if disk.fail_syncs > 0 {
            disk.fail_syncs -= 1;
            return Err(failure("fsync failed"));
        }
        disk.durable = disk.current.clone();
        disk.pending.clear();
        disk.syncs += 1;
        self.synced.notify_all();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut disk = self.lock();
        if disk.dead {
            return Err(failure("disk is dead"));
        }
        if let Some(n) = disk.fail_write_in {
            if n == 0 {
                disk.fail_write_in = None;
                return Err(failure("write failed"));
            }
            disk.fail_write_in = Some(n - 1);
        }
        put(&mut disk.current, offset, data);
        disk.pending.push(Op::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
    use std::sync::atomic::{AtomicU64, Ordering};

    const T: TableDefinition<'_, u64, u64> = TableDefinition::new("t");

    fn open(image: Vec<u8>) -> Database {
        redb::Builder::new()
            .create_with_backend(FaultyDisk::from_image(image))
            .unwrap()
    }

    fn keys(db: &Database) -> Vec<u64> {
        let txn = db.begin_read().unwrap();
        match txn.open_table(T) {
            Ok(t) => t.iter().unwrap().map(|e| e.unwrap().0.value()).collect(),
            Err(_) => Vec::new(),
        }
    }

    #[test]
    fn crash_images_of_raw_redb_hold_a_prefix_with_every_returned_commit() {
        let disk = FaultyDisk::new();
        let db = redb::Builder::new().create_with_backend(disk.clone()).unwrap();
        let committed = Arc::new(AtomicU64::new(0));
        type Images = Arc<Mutex<Vec<(Vec<u8>, u64)>>>;
        let images: Images = Arc::default();
        {
            let (committed, images) = (committed.clone(), images.clone());
            disk.set_sync_hook(move |disk, _| {
                let mut rng = fastrand::Rng::with_seed(committed.load(Ordering::SeqCst));
                let floor = committed.load(Ordering::SeqCst);
                for torn in [false, true, true] {
                    images.lock().unwrap().push((disk.crash_image(&mut rng, torn), floor));
                }
            });
        }
        for i in 0..40u64 {
            let txn = db.begin_write().unwrap();
            txn.open_table(T).unwrap().insert(i, i).unwrap();
            txn.commit().unwrap();
            committed.store(i + 1, Ordering::SeqCst);
        }
        let images = std::mem::take(&mut *images.lock().unwrap());
        assert!(images.len() >= 120);
        for (image, floor) in images {
            let keys = keys(&open(image));
            assert_eq!(
                keys,
                (0..keys.len() as u64).collect::<Vec<_>>(),
                "a prefix of the commits"
            );
            assert!(
                keys.len() as u64 >= floor,
                "lost a commit that had returned: {} < {floor}",
                keys.len()
            );
        }
    }

    #[test]
    fn a_failed_fsync_fails_the_commit_and_leaves_it_out_of_the_durable_image() {
        let disk = FaultyDisk::new();
        let db = redb::Builder::new().create_with_backend(disk.clone()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(T).unwrap().insert(1, 1).unwrap();
        txn.commit().unwrap();
        disk.fail_next_syncs(1);
        let txn = db.begin_write().unwrap();
        txn.open_table(T).unwrap().insert(2, 2).unwrap();
        assert!(txn.commit().is_err());
        assert_eq!(keys(&open(disk.durable_image())), [1]);
    }

    #[test]
    fn a_failed_write_fails_the_commit() {
        let disk = FaultyDisk::new();
        let db = redb::Builder::new().create_with_backend(disk.clone()).unwrap();
        disk.fail_write_after(0);
        let txn = db.begin_write().unwrap();
        txn.open_table(T).unwrap().insert(1, vec![0u8; 1].len() as u64).unwrap();
        assert!(txn.commit().is_err());
    }

    #[test]
    fn unsynced_commits_are_not_durable_until_an_fsynced_one() {
        let disk = FaultyDisk::new();
        let db = redb::Builder::new().create_with_backend(disk.clone()).unwrap();
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(redb::Durability::None).unwrap();
        txn.open_table(T).unwrap().insert(1, 1).unwrap();
        txn.commit().unwrap();
        assert!(keys(&open(disk.durable_image())).is_empty());
        let txn = db.begin_write().unwrap();
        txn.open_table(T).unwrap().insert(2, 2).unwrap();
        txn.commit().unwrap();
        assert_eq!(keys(&open(disk.durable_image())), [1, 2]);
    }
}
