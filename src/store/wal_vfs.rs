//! The writer's SQLite VFS: a commit's WAL frames reach the kernel in a few writes, not two a page.
//!
//! SQLite writes each WAL frame with two `pwrite` calls, its 24-byte header and then its page,
//! so with 4 KiB pages every page of the WAL file is written by two or three calls through the
//! kernel's buffered write path. Profiled under single repayments (BENCHMARKS-HISTORY.md, change 43),
//! those calls were 40% of SQLite's thread, more than the B-tree work of the commit. SQLite has
//! no option to gather them, so the writer's connection opens the database through this VFS:
//!
//! - **Every file but the WAL** is opened by SQLite's own `unix` VFS, untouched: the database
//!   file, its locks, its shared memory (the wal-index) and its memory map are `unix`'s own, so
//!   the writer shares them with the readers' connections (on the default VFS) as before.
//! - **The WAL file** is wrapped ([`WalFile`]): a write that continues the bytes held so far is
//!   copied into a buffer instead of being written; the buffer is written, in one call, before
//!   anything else touches the file (a sync, a read, a truncation, its size, a file control),
//!   before a write that does not continue it or would take it past 124 KiB
//!   ([`MAX_WRITE`]), and right after a commit frame's header (a 24-byte frame header whose
//!   "database size after commit" field is not zero) and again right after the write that
//!   follows it (its page). So a commit costs two writes and a few more per 124 KiB, and the
//!   last write of a commit is never left in the buffer, whether it is the commit frame's page
//!   or, after SQLite has rewritten frames in place, the commit frame's header with its
//!   checksums redone.
//! - **What a transaction leaves in the buffer without committing** (frames spilled from a
//!   cache too small for it) is dropped, never written: at a rollback (the connection's
//!   rollback hook, [`watch_rollbacks`]) and when the file is closed. Written later, it could
//!   land on frames another connection (a migration, another process) committed after SQLite
//!   gave up the write lock.
//! - **Only with powersafe overwrite** (SQLite's and `unix`'s default): without it SQLite pads a
//!   commit to the disk's sector with copies of the commit frame and syncs in the middle of
//!   one, and the rest of that frame would wait in the buffer; a WAL file without it is opened
//!   as `unix` opens it. (Turning it off later through `SQLITE_FCNTL_POWERSAFE_OVERWRITE` is
//!   not supported; the writer never does.)
//!
//! Why this keeps SQLite's guarantees:
//! - A commit is durable when SQLite has synced the WAL after its last frame; the sync writes
//!   the buffer first, so the same bytes are on disk, in the same places, when it returns.
//! - Other connections (readers, the checkpoint) read WAL frames only once the wal-index says
//!   they are committed, and SQLite updates the wal-index only after writing (and, with
//!   `synchronous = FULL`, syncing) the commit frame: by then the buffer has been written. The
//!   writes at a commit frame keep this true without a sync (`synchronous = NORMAL`).
//! - Frames still in the buffer when the process dies belong to a transaction that was not
//!   committed: SQLite's recovery ignores frames after the last valid commit frame, just as if
//!   the process had died before writing them.
//! - A failed write reaches SQLite as the error of the call that wrote the buffer (a sync, a
//!   read, a write), so the transaction fails as it would have on the write itself. The
//!   buffer is dropped then: those frames are past the last commit, so they do not count.
//!
//! Registered once per process ([`register`]) under [`NAME`]; only the writer's connection asks
//! for it (`Db::connect`), and installs the rollback hook whenever it is opened. Should SQLite
//! have no `unix` VFS, the writer uses the default.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

use rusqlite::ffi;

/// The name the writer's connection asks for.
pub const NAME: &str = "loanledger-wal";
const NAME_C: &CStr = c"loanledger-wal";

/// The most the buffer holds: `unix`'s xWrite writes at most 128 KiB less one byte in a call
/// (`seekAndWriteFd` masks the length with 0x1ffff). A commit of 32 single repayments writes
/// some 700 KB of WAL: about eight writes (two of them at the commit frame) instead of about
/// 340; a batch of 1,000, 11 MiB.
const MAX_WRITE: usize = 124 * 1024;

/// The size of a WAL frame's header; bytes 4..8 are the database's size after the commit for
/// a commit frame, zero otherwise (SQLite's file format, "WAL file format").
const FRAME_HEADER: usize = 24;

/// The `unix` VFS every call is handed on to.
static UNIX: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(ptr::null_mut());

/// Registers the VFS (once per process). Returns whether the writer may ask for it.
pub fn register() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        // SAFETY: SQLite's VFS API as documented; the VFS object is leaked, so it lives as
        // long as the process, as SQLite requires of a registered VFS.
        let result = unsafe { register_once() };
        if let Err(reason) = &result {
            tracing::warn!(reason, "the writer's WAL writes are not gathered");
        }
        result.is_ok()
    })
}

unsafe fn register_once() -> Result<(), String> {
    // SAFETY (whole function): `sqlite3_vfs_find` returns a registered VFS that SQLite keeps
    // for the life of the process; the copy below is leaked and never freed.
    unsafe {
        let unix = ffi::sqlite3_vfs_find(c"unix".as_ptr());
        if unix.is_null() {
            return Err("SQLite has no unix VFS".into());
        }
        UNIX.store(unix, Ordering::Release);
        // Every method but xOpen is `unix`'s own: none of them looks at the VFS pointer it is
        // given (SQLite 3.51's os_unix.c), so they serve this VFS as they are.
        let mut vfs = *unix;
        vfs.szOsFile = c_int::try_from(INNER_AT)
            .ok()
            .and_then(|at| at.checked_add((*unix).szOsFile))
            .ok_or("the unix VFS's file object is too large")?;
        vfs.zName = NAME_C.as_ptr();
        vfs.pNext = ptr::null_mut();
        vfs.xOpen = Some(open);
        let rc = ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0);
        if rc != ffi::SQLITE_OK {
            return Err(format!("sqlite3_vfs_register failed with code {rc}"));
        }
        Ok(())
    }
}

/// A WAL file opened through this VFS: SQLite's file object (its methods are [`WAL_METHODS`]),
/// the buffer, and, in the same allocation from [`INNER_AT`] on, `unix`'s own file object.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    /// Bytes written by SQLite and not yet by the kernel, from file offset `pending_at` on.
    pending: Vec<u8>,
    pending_at: i64,
    /// The last write was a commit frame's header: write the buffer after the next write too
    /// (the frame's page).
    commit_frame: bool,
}

/// Where `unix`'s file object starts within ours.
const INNER_AT: usize = size_of::<WalFile>().next_multiple_of(16);

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: `file` points at `szOsFile` bytes owned by SQLite (ours: room for a `WalFile`
    // and `unix`'s object after it), `UNIX` was set before this VFS was registered.
    unsafe {
        let unix = UNIX.load(Ordering::Acquire);
        let Some(unix_open) = (*unix).xOpen else { return ffi::SQLITE_CANTOPEN };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Not the WAL: `unix`'s file object, at the start of ours, untouched.
            return unix_open(unix, name, file, flags, out_flags);
        }
        let inner = file.cast::<u8>().add(INNER_AT).cast::<ffi::sqlite3_file>();
        (*inner).pMethods = ptr::null();
        let rc = unix_open(unix, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            if let Some(close) = (*inner).pMethods.as_ref().and_then(|m| m.xClose) {
                close(inner);
            }
            // No methods: SQLite does not close a file it failed to open.
            (*file).pMethods = ptr::null();
            return rc;
        }
        // The database's setting, which is SQLite's (`sqlite3WalOpen` asks the database file):
        // its URI's `psow` (the WAL's name carries the database's URI parameters), else the
        // build's default (which the WAL file, opened without the URI flag, reports).
        let characteristics =
            (*(*inner).pMethods).xDeviceCharacteristics.map_or(0, |device| device(inner));
        let powersafe = characteristics & ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE != 0
            && ffi::sqlite3_uri_boolean(name, c"psow".as_ptr(), 1) != 0;
        if !powersafe {
            // Without powersafe overwrite SQLite pads a commit to the sector and syncs in the
            // middle of a frame: not gathered (see the module's doc). Opened again as it is.
            if let Some(close) = (*(*inner).pMethods).xClose {
                close(inner);
            }
            return unix_open(unix, name, file, flags, out_flags);
        }
        file.cast::<WalFile>().write(WalFile {
            base: ffi::sqlite3_file { pMethods: &WAL_METHODS },
            inner,
            pending: Vec::new(),
            pending_at: 0,
            commit_frame: false,
        });
        ffi::SQLITE_OK
    }
}

/// The `WalFile` behind a file object whose methods are [`WAL_METHODS`], and `unix`'s methods
/// for its inner file.
///
/// # Safety
/// `file` was opened by [`open`] as a WAL file and not closed; SQLite calls a file's methods
/// from one thread at a time.
unsafe fn wal<'a>(file: *mut ffi::sqlite3_file) -> (&'a mut WalFile, &'a ffi::sqlite3_io_methods) {
    // SAFETY: as the function's contract says.
    unsafe {
        let wal = &mut *file.cast::<WalFile>();
        let methods = &*(*wal.inner).pMethods;
        (wal, methods)
    }
}

impl WalFile {
    /// Writes the buffer, in one call. On failure the buffer is dropped all the same (its
    /// frames follow the last commit, so SQLite's recovery would not count them); the error is
    /// SQLite's code for the call that wrote it.
    unsafe fn flush(&mut self, methods: &ffi::sqlite3_io_methods) -> Result<(), c_int> {
        self.commit_frame = false;
        if self.pending.is_empty() {
            return Ok(());
        }
        let Ok(amount) = c_int::try_from(self.pending.len()) else {
            self.pending.clear();
            return Err(ffi::SQLITE_IOERR_WRITE);
        };
        let Some(write) = methods.xWrite else { return Err(ffi::SQLITE_IOERR_WRITE) };
        // SAFETY: `inner` is `unix`'s open file; the buffer lives through the call.
        let rc =
            unsafe { write(self.inner, self.pending.as_ptr().cast(), amount, self.pending_at) };
        self.pending.clear();
        if rc == ffi::SQLITE_OK { Ok(()) } else { Err(rc) }
    }

    /// SQLite's write of `bytes` at `offset`, buffered or written as the module's doc says.
    unsafe fn write(
        &mut self,
        methods: &ffi::sqlite3_io_methods,
        bytes: &[u8],
        offset: i64,
    ) -> Result<(), c_int> {
        let after_commit_header = self.commit_frame;
        if !self.pending.is_empty()
            && (offset != self.pending_end() || self.pending.len() + bytes.len() > MAX_WRITE)
        {
            // SAFETY: as the caller's.
            unsafe { self.flush(methods)? };
        }
        if self.pending.is_empty() {
            self.pending_at = offset;
        }
        self.pending.try_reserve(bytes.len()).map_err(|_| ffi::SQLITE_IOERR_NOMEM)?;
        self.pending.extend_from_slice(bytes);
        let commit_header = bytes.len() == FRAME_HEADER && bytes[4..8] != [0; 4];
        if commit_header || after_commit_header {
            // SAFETY: as the caller's.
            unsafe { self.flush(methods)? };
        }
        self.commit_frame = commit_header;
        Ok(())
    }

    fn pending_end(&self) -> i64 {
        self.pending_at + self.pending.len() as i64
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite hands `amount` readable bytes at `data`; see `wal`.
    unsafe {
        let (wal, methods) = wal(file);
        let Ok(len) = usize::try_from(amount) else { return ffi::SQLITE_IOERR_WRITE };
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
        wal.write(methods, bytes, offset).err().unwrap_or(ffi::SQLITE_OK)
    }
}

/// Writes the buffer, then hands the call on to `unix`'s method.
macro_rules! flush_then {
    ($file:ident, $method:ident ( $($arg:expr),* )) => {{
        // SAFETY: see `wal`; `unix`'s methods are called on its own open file.
        unsafe {
            let (wal, methods) = wal($file);
            if let Err(rc) = wal.flush(methods) {
                return rc;
            }
            match methods.$method {
                Some(method) => method(wal.inner, $($arg),*),
                None => ffi::SQLITE_IOERR,
            }
        }
    }};
}

/// Hands the call on to `unix`'s method, the buffer left as it is.
macro_rules! hand_on {
    ($file:ident, $method:ident ( $($arg:expr),* ), $none:expr) => {{
        // SAFETY: see `wal`; `unix`'s methods are called on its own open file.
        unsafe {
            let (wal, methods) = wal($file);
            match methods.$method {
                Some(method) => method(wal.inner, $($arg),*),
                None => $none,
            }
        }
    }};
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    flush_then!(file, xRead(data, amount, offset))
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    flush_then!(file, xTruncate(size))
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    flush_then!(file, xSync(flags))
}

unsafe extern "C" fn file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    flush_then!(file, xFileSize(size))
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    flush_then!(file, xFileControl(op, arg))
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    hand_on!(file, xLock(level), ffi::SQLITE_IOERR_LOCK)
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    hand_on!(file, xUnlock(level), ffi::SQLITE_IOERR_UNLOCK)
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    hand_on!(file, xCheckReservedLock(out), ffi::SQLITE_IOERR_CHECKRESERVEDLOCK)
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    hand_on!(file, xSectorSize(), 4096)
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    hand_on!(file, xDeviceCharacteristics(), 0)
}

/// Closes the file, the buffer dropped unwritten: every commit's frames were written at its
/// commit frame, so what the buffer still holds belongs to a transaction that did not commit
/// (the connection rolls it back as it closes, and writing it now could land on frames another
/// connection has committed since).
unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: see `wal`; after this SQLite no longer uses the file, so the `WalFile` (its
    // buffer) is dropped in place.
    unsafe {
        let (wal, methods) = wal(file);
        let closed = methods.xClose.map_or(ffi::SQLITE_OK, |close| close(wal.inner));
        ptr::drop_in_place(file.cast::<WalFile>());
        (*file).pMethods = ptr::null();
        closed
    }
}

/// Connection `db`'s WAL file when it is open and gathered by this VFS.
///
/// # Safety
/// `db` is an open connection, used by the calling thread alone while the result lives.
unsafe fn gathered_wal<'a>(db: *mut ffi::sqlite3) -> Option<&'a mut WalFile> {
    let mut file: *mut ffi::sqlite3_file = ptr::null_mut();
    // SAFETY: SQLITE_FCNTL_JOURNAL_POINTER writes the connection's WAL (or rollback journal)
    // file object into `file`; it is ours when its methods are [`WAL_METHODS`].
    unsafe {
        let rc = ffi::sqlite3_file_control(
            db,
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_JOURNAL_POINTER,
            (&raw mut file).cast(),
        );
        if rc != ffi::SQLITE_OK || file.is_null() || !ptr::eq((*file).pMethods, &WAL_METHODS) {
            return None;
        }
        Some(wal(file).0)
    }
}

/// Drops the WAL buffer of connection `db` after a rollback: the frames in it belong to the
/// transaction rolled back (spilled from a cache too small for it), and written later they
/// could land on frames another connection has committed since SQLite gave up the write lock.
/// Called by the connection's rollback hook ([`watch_rollbacks`]).
///
/// # Safety
/// `db` is an open connection, called from its rollback hook (so on the thread using it).
pub unsafe fn discard_after_rollback(db: *mut ffi::sqlite3) {
    // SAFETY: as the function's contract says.
    if let Some(wal) = unsafe { gathered_wal(db) } {
        wal.pending.clear();
        wal.commit_frame = false;
    }
}

/// Whether connection `db`'s WAL file is open and gathered by this VFS (for tests).
///
/// # Safety
/// `db` is an open connection, not in use by another thread.
#[cfg(test)]
pub(crate) unsafe fn wal_is_wrapped(db: *mut ffi::sqlite3) -> bool {
    // SAFETY: as the function's contract says.
    unsafe { gathered_wal(db).is_some() }
}

/// Installs [`discard_after_rollback`] as the rollback hook of the writer's connection.
pub async fn watch_rollbacks(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr() as usize;
    // SAFETY: the hook runs on the connection's own thread while it rolls back, and the
    // connection (the pointer) lives as long as the hook.
    handle.set_rollback_hook(move || unsafe { discard_after_rollback(db as *mut ffi::sqlite3) });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use rusqlite::{Connection, OpenFlags, params};

    use super::*;

    /// Opens `path` in WAL mode, through this VFS (as the writer does) or the default one (as
    /// the readers do).
    fn open(path: &Path, ours: bool, synchronous: &str) -> Connection {
        assert!(register(), "the VFS registers");
        let conn = if ours {
            Connection::open_with_flags_and_vfs(path, OpenFlags::default(), NAME)
        } else {
            Connection::open(path)
        }
        .expect("the database opens");
        if ours {
            // As `watch_rollbacks` does for the writer's sqlx connection.
            unsafe extern "C" fn on_rollback(db: *mut c_void) {
                // SAFETY: `db` is the connection whose hook this is.
                unsafe { discard_after_rollback(db.cast()) }
            }
            // SAFETY: the hook's argument is the connection itself, which outlives it.
            unsafe {
                let db = conn.handle();
                ffi::sqlite3_rollback_hook(db, Some(on_rollback), db.cast());
            }
        }
        conn.pragma_update(None, "journal_mode", "wal").unwrap();
        conn.pragma_update(None, "synchronous", synchronous).unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn
    }

    /// A row's body: `len` bytes that differ from row to row and from version to version.
    fn body(id: i64, version: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| (id as usize * 31 + i * 7 + version as usize * 13) as u8).collect()
    }

    /// The rows of a copy of database `name` in `dir` and its WAL (what a crash would leave),
    /// which SQLite recovers from the WAL's checksums; the copy must pass its integrity check.
    fn recovered_rows(dir: &Path, name: &str) -> BTreeMap<i64, (usize, u64)> {
        let copy = tempfile::tempdir().unwrap();
        for file in [name.to_string(), format!("{name}-wal")] {
            std::fs::copy(dir.join(&file), copy.path().join(&file)).unwrap();
        }
        let recovered = open(&copy.path().join(name), false, "full");
        let check: String =
            recovered.query_row("pragma integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
        rows(&recovered)
    }

    /// Every row as `conn` sees it: each id with the length and a digest of its body.
    fn rows(conn: &Connection) -> BTreeMap<i64, (usize, u64)> {
        let mut stmt = conn.prepare("select id, body from t order by id").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, digest(&r.get::<_, Vec<u8>>(1)?))))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn digest(body: &[u8]) -> (usize, u64) {
        let sum = body.iter().enumerate().fold(0u64, |h, (i, &b)| {
            h.wrapping_mul(1_099_511_628_211).wrapping_add(b as u64 ^ i as u64)
        });
        (body.len(), sum)
    }

    /// Writes through the VFS, in commits of one small row, of 200 KB (more than one write of
    /// the buffer), of one 300 KB row (overflow pages), and in one transaction larger than the
    /// writer's cache that rewrites pages it has already spilled to the WAL (SQLite then reads
    /// them back from the WAL, writes frames in place and reads them again to redo their
    /// checksums). After every commit a
    /// connection on the default VFS must read exactly what was written; so must a copy of the
    /// files taken after the last commit (what a crash would leave), which SQLite recovers from
    /// the WAL's checksums; and so must the database after a checkpoint.
    fn writes_read_back_everywhere(synchronous: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let writer = open(&path, true, synchronous);
        writer
            .execute_batch("create table t (id integer primary key, body blob not null)")
            .unwrap();
        let reader = open(&path, false, synchronous);
        let mut model = BTreeMap::new();
        let mut commit = |writer: &Connection, written: Vec<(i64, Vec<u8>)>| {
            let tx = writer.unchecked_transaction().unwrap();
            for (id, body) in written {
                tx.execute("insert or replace into t values (?1, ?2)", params![id, body]).unwrap();
                model.insert(id, digest(&body));
            }
            tx.commit().unwrap();
            assert_eq!(rows(&reader), model, "a reader on the default VFS sees the commit");
        };
        commit(&writer, vec![(1, body(1, 0, 100))]);
        commit(&writer, (2..52).map(|id| (id, body(id, 0, 4_000))).collect());
        commit(&writer, vec![(52, body(52, 0, 300_000))]);
        for id in 53..60 {
            commit(&writer, vec![(id, body(id, 0, 10))]);
        }
        // Larger than a cache of 20 pages: spilled, then the first rows rewritten.
        writer.pragma_update(None, "cache_size", 20).unwrap();
        let mut spill: Vec<_> = (100..400).map(|id| (id, body(id, 0, 2_000))).collect();
        spill.extend((100..200).map(|id| (id, body(id, 1, 2_000))));
        // Pages spilled a moment ago, still in the buffer when SQLite reads them back.
        spill.extend((300..400).map(|id| (id, body(id, 1, 2_000))));
        commit(&writer, spill);

        assert_eq!(recovered_rows(dir.path(), "w.db"), model, "the WAL recovers every commit");

        let (busy, _, _): (i64, i64, i64) = writer
            .query_row("pragma wal_checkpoint(truncate)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(busy, 0, "the checkpoint ran");
        assert_eq!(rows(&reader), model, "the checkpoint copied every commit");
        let check: String = reader.query_row("pragma integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
    }

    /// The WAL file object itself, driven as SQLite drives it: whatever was written is what a
    /// read, the file's size, a truncation, and another reader of the file after a sync see,
    /// though the writes in between sit in the buffer; what was written after the last sync is
    /// dropped when the file is closed.
    #[test]
    fn the_wal_file_shows_every_byte_written_before_each_call() {
        assert!(register());
        let dir = tempfile::tempdir().unwrap();
        // `unix` gives a WAL file its database's permissions: the database must exist.
        std::fs::write(dir.path().join("f.db"), b"").unwrap();
        let wal_path = dir.path().join("f.db-wal");
        let name = std::ffi::CString::new(wal_path.to_str().unwrap()).unwrap();
        // SAFETY: the VFS's methods as SQLite calls them: one object of `szOsFile` bytes,
        // 16-aligned, opened, used and closed on one thread; `name` outlives the file.
        unsafe {
            let vfs = ffi::sqlite3_vfs_find(NAME_C.as_ptr());
            assert!(!vfs.is_null());
            let mut object = vec![0u128; ((*vfs).szOsFile as usize).div_ceil(16)];
            let file = object.as_mut_ptr().cast::<ffi::sqlite3_file>();
            let flags = ffi::SQLITE_OPEN_WAL | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_READWRITE;
            let mut out = 0;
            assert_eq!((*vfs).xOpen.unwrap()(vfs, name.as_ptr(), file, flags, &mut out), 0);
            let m = &*(*file).pMethods;
            let write = |at: i64, bytes: &[u8]| {
                assert_eq!(
                    m.xWrite.unwrap()(file, bytes.as_ptr().cast(), bytes.len() as c_int, at),
                    0
                )
            };
            let read = |at: i64, len: usize| {
                let mut buf = vec![0u8; len];
                assert_eq!(m.xRead.unwrap()(file, buf.as_mut_ptr().cast(), len as c_int, at), 0);
                buf
            };
            let size = || {
                let mut size = 0;
                assert_eq!(m.xFileSize.unwrap()(file, &mut size), 0);
                size
            };
            let mut expected: Vec<u8> = (0..32u8).collect();
            write(0, &expected);
            let page: Vec<u8> = (0..4_120u32).map(|i| (i % 251) as u8).collect();
            write(32, &page);
            expected.extend(&page);
            assert_eq!(read(0, expected.len()), expected, "a read sees the buffered bytes");
            write(expected.len() as i64, &page);
            expected.extend(&page);
            assert_eq!(size(), expected.len() as i64, "the size counts the buffered bytes");
            write(expected.len() as i64, &page);
            assert_eq!(m.xTruncate.unwrap()(file, expected.len() as i64), 0);
            assert_eq!(size(), expected.len() as i64, "a truncation is not undone by the buffer");
            write(expected.len() as i64, &page[..100]);
            expected.extend(&page[..100]);
            assert_eq!(m.xSync.unwrap()(file, ffi::SQLITE_SYNC_NORMAL), 0);
            assert_eq!(std::fs::read(&wal_path).unwrap(), expected, "a sync writes the buffer");
            write(expected.len() as i64, &page[..200]);
            assert_eq!(m.xClose.unwrap()(file), 0);
            assert_eq!(std::fs::read(&wal_path).unwrap(), expected, "closing drops the buffer");
        }
    }

    /// Whether `conn`'s WAL file is this VFS's (wrapped) one.
    fn wal_is_wrapped(conn: &Connection) -> bool {
        // SAFETY: an open connection, used by this thread alone.
        unsafe { super::wal_is_wrapped(conn.handle()) }
    }

    /// Without powersafe overwrite (`psow=0`) SQLite pads commits and syncs in the middle of a
    /// frame: the WAL is opened as `unix` opens it, and works as ever.
    #[test]
    fn without_powersafe_overwrite_the_wal_is_not_wrapped() {
        let dir = tempfile::tempdir().unwrap();
        let wrapped = open(&dir.path().join("p.db"), true, "full");
        wrapped.execute_batch("create table t (x)").unwrap();
        assert!(wal_is_wrapped(&wrapped));
        let uri = format!("file:{}?psow=0", dir.path().join("q.db").display());
        let plain = open(Path::new(&uri), true, "full");
        plain.execute_batch("create table t (x); insert into t values (1)").unwrap();
        assert!(!wal_is_wrapped(&plain));
        let n: i64 = plain.query_row("select count(*) from t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
    }

    /// A transaction larger than the writer's cache spills frames into the buffer and rolls
    /// back; another connection then commits frames at the same places in the WAL, and the
    /// writer commits again. The rolled-back frames must never be written over the other
    /// connection's.
    #[test]
    fn a_rolled_back_transaction_leaves_nothing_to_write_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let writer = open(&path, true, "full");
        writer
            .execute_batch("create table t (id integer primary key, body blob not null)")
            .unwrap();
        let other = open(&path, false, "full");
        // An empty WAL: the rollback then reloads its pages from the database file, not from
        // the WAL (a read of the WAL would write the buffer first, while SQLite still holds the
        // write lock).
        writer.query_row("pragma wal_checkpoint(truncate)", [], |_| Ok(())).unwrap();
        writer.pragma_update(None, "cache_size", 20).unwrap();
        writer.execute_batch("begin").unwrap();
        for id in 0..200 {
            writer
                .execute("insert into t values (?1, ?2)", params![id, body(id, 9, 2_000)])
                .unwrap();
        }
        writer.execute_batch("rollback").unwrap();
        let mut model = BTreeMap::new();
        other.execute_batch("begin").unwrap();
        for id in 1_000..1_300 {
            other
                .execute("insert into t values (?1, ?2)", params![id, body(id, 0, 2_000)])
                .unwrap();
            model.insert(id, digest(&body(id, 0, 2_000)));
        }
        other.execute_batch("commit").unwrap();
        writer.execute("insert into t values (?1, ?2)", params![5, body(5, 0, 100)]).unwrap();
        model.insert(5, digest(&body(5, 0, 100)));
        assert_eq!(rows(&other), model, "the other connection's commit is intact");
        assert_eq!(recovered_rows(dir.path(), "r.db"), model, "the WAL recovers both commits");
    }

    #[test]
    fn writes_read_back_everywhere_synchronous_full() {
        writes_read_back_everywhere("full");
    }

    /// Without a sync at each commit, the write after a commit frame's page is what puts the
    /// frames in the file before the readers are told of them.
    #[test]
    fn writes_read_back_everywhere_synchronous_normal() {
        writes_read_back_everywhere("normal");
    }
}
