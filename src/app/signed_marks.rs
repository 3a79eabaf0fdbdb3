//! What the checkpoint signing key has signed: for each ledger, the largest size it signed and
//! that prefix's Merkle root, kept beside the key's file (`<key file>.<the public key's first 16
//! hex digits>.signed`; in memory only for a key made for the run), outside the database (since
//! 2026-12-07).
//!
//! The signer refuses to sign a journal that is not an extension of what it signed before
//! ([`crate::app::checkpoints`]): the prefix through the size it signed must have the root it
//! signed. Before, whoever could rewrite the database (its triggers dropped, a transaction and
//! the hashes after it recomputed) or restore an older copy and write on could have the
//! service sign the other history under the same key, two checkpoints of one size that
//! differ, which auditors take for tampering ("A restore is a fork of the chain", README).
//! Refused `FAILED_PRECONDITION` `JOURNAL_BROKEN`, naming the size signed; nothing is signed.
//!
//! The file is JSON: `{"<ledger_id>": {"size": N, "root": "<64 hex>"}, ...}`, written whole to a
//! temporary file, synced and renamed over the old one; a size only grows (servers sharing the
//! key's file read it again before each write and keep the larger size of each ledger). A file
//! that cannot be read stops the start, naming it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::error::AppError;
use crate::ledger::hash::{Hash, from_hex, to_hex};

/// One ledger's largest signed size and that prefix's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Mark {
    size: u64,
    root: String,
}

/// The marks of one key ([`load`]).
#[derive(Debug, Default)]
pub struct SignedMarks {
    /// `None`: kept in memory only (a key made for the run, which no auditor holds after it).
    path: Option<PathBuf>,
    marks: Mutex<BTreeMap<String, Mark>>,
}

/// The file of the marks of the key in `key_file` whose public key is `public_hex`: named by
/// its first 16 hex digits, so that a new key in the same file (made anew, rotated) starts
/// with marks of its own.
pub fn marks_file(key_file: &Path, public_hex: &str) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(format!(".{}.signed", &public_hex[..public_hex.len().min(16)]));
    PathBuf::from(name)
}

impl SignedMarks {
    /// Marks kept in memory only.
    pub fn in_memory() -> SignedMarks {
        SignedMarks::default()
    }

    /// The marks of the file at `path` (none yet if there is no such file), written back at
    /// once: a directory the file cannot be written in stops the start, rather than every
    /// checkpoint of a new size later.
    pub fn load(path: &Path) -> anyhow::Result<SignedMarks> {
        let what = || format!("the checkpoint signing key's marks file {}", path.display());
        let _lock = lock(path).with_context(|| format!("Failed to lock {}", what()))?;
        let marks = read(path).with_context(|| format!("Failed to read {}", what()))?;
        write(path, &marks).with_context(|| {
            format!("Failed to write {} (its directory must be writable)", what())
        })?;
        Ok(SignedMarks { path: Some(path.to_path_buf()), marks: Mutex::new(marks) })
    }

    /// The largest size of `ledger_id` signed, and its root: as its file has it now, with the
    /// marks of other servers sharing the key's file.
    pub fn of(&self, ledger_id: &str) -> Result<Option<(u64, Hash)>, AppError> {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = &self.path {
            let on_file = read(path).map_err(|e| file_error("reading", path, &e))?;
            *marks = merged(std::mem::take(&mut *marks), on_file);
        }
        Ok(marks.get(ledger_id).and_then(|m| Some((m.size, from_hex(&m.root)?))))
    }

    /// Notes that `ledger_id`'s prefix of `size` with `root` was signed (kept if larger than
    /// the mark): written to the file and synced before the caller gives the signature, under
    /// a lock of the file that servers sharing it take in turn; the marks in memory change
    /// only once it is written.
    pub fn record(&self, ledger_id: &str, size: u64, root: &Hash) -> Result<(), AppError> {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        if marks.get(ledger_id).is_some_and(|m| m.size >= size) {
            return Ok(());
        }
        let mark = Mark { size, root: to_hex(root) };
        let Some(path) = &self.path else {
            marks.insert(ledger_id.to_string(), mark);
            return Ok(());
        };
        let _lock = lock(path).map_err(|e| file_error("locking", path, &e))?;
        // Another server with the same key file may have signed since this one read the mark
        // it checked its journal against ([`SignedMarks::of`]): that check no longer holds,
        // and signing now could give two checkpoints of one size that differ (another
        // database's journal, a copy restored and written on). Not signed: asked again, the
        // journal is checked against the mark as it is now. Until 2026-12-07 the larger size
        // was kept and the signature given.
        let on_file = read(path).map_err(|e| file_error("reading", path, &e))?;
        if let Some(theirs) = on_file.get(ledger_id)
            && marks.get(ledger_id) != Some(theirs)
            && marks.get(ledger_id).is_none_or(|ours| theirs.size >= ours.size)
        {
            *marks = merged(std::mem::take(&mut *marks), on_file);
            return Err(AppError::Unavailable(format!(
                "another server signed a checkpoint of ledger {ledger_id} with this key while \
                 this one read its journal: ask again"
            )));
        }
        let mut next = merged(marks.clone(), on_file);
        if next.get(ledger_id).is_none_or(|m| m.size < size) {
            next.insert(ledger_id.to_string(), mark);
        }
        write(path, &next).map_err(|e| file_error("writing", path, &e))?;
        *marks = next;
        Ok(())
    }
}

/// Carries the marks of the file `from` into the file `to` (each ledger's larger, with what `to`
/// has), for a key handed over to another ([`crate::app::signing_key::rotate`]): the new key
/// signs no history the old one would have refused. Before (2026-12-07) the new key started
/// with no marks and signed whatever the database held, a journal rewritten behind the old
/// key's refusals included.
pub fn carry_over(from: &Path, to: &Path) -> anyhow::Result<()> {
    let _from = lock(from).with_context(|| format!("Failed to lock {}", from.display()))?;
    let marks = read(from).with_context(|| format!("Failed to read {}", from.display()))?;
    let _to = lock(to).with_context(|| format!("Failed to lock {}", to.display()))?;
    let theirs = read(to).with_context(|| format!("Failed to read {}", to.display()))?;
    write(to, &merged(marks, theirs)).with_context(|| format!("Failed to write {}", to.display()))
}

fn file_error(doing: &str, path: &Path, e: &anyhow::Error) -> AppError {
    AppError::Internal(format!("{doing} the signed marks file {}: {e:#}", path.display()))
}

/// Both sets of marks, each ledger's larger.
fn merged(
    mut ours: BTreeMap<String, Mark>,
    theirs: BTreeMap<String, Mark>,
) -> BTreeMap<String, Mark> {
    for (ledger, mark) in theirs {
        match ours.get(&ledger) {
            Some(kept) if kept.size >= mark.size => {}
            _ => {
                ours.insert(ledger, mark);
            }
        }
    }
    ours
}

/// An exclusive lock of the marks file's lock file ([`lock_file`]), held until dropped.
fn lock(path: &Path) -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_file(path))?;
    file.lock()?;
    Ok(file)
}

/// The lock file of the marks file `path`: `<file>.lock`.
fn lock_file(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Removes a marks file and its lock file, those of a key discarded before it signed anything
/// (a rotation that failed after carrying the old key's marks over), whichever exist.
pub fn discard(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(lock_file(path));
}

fn read(path: &Path) -> anyhow::Result<BTreeMap<String, Mark>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let marks: BTreeMap<String, Mark> = serde_json::from_str(&text)?;
            if let Some((ledger, _)) = marks.iter().find(|(_, m)| from_hex(&m.root).is_none()) {
                anyhow::bail!("the root of ledger {ledger} is not 64 hex digits");
            }
            Ok(marks)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e.into()),
    }
}

/// Writes the marks whole to a temporary file of this process's, synced, renamed over the
/// file, the directory synced (the caller holds the lock).
fn write(path: &Path, marks: &BTreeMap<String, Mark>) -> anyhow::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(serde_json::to_string_pretty(marks)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two servers sharing the key's file, each having read the mark it checked its journal
    /// against: once one has signed past it, the other's signature is refused (`UNAVAILABLE`,
    /// ask again), of the same size or another, and it then holds the mark as signed, to check
    /// against. Until 2026-12-07 both signed, two checkpoints of size 101 that differ.
    #[test]
    fn a_mark_moved_by_another_server_since_it_was_read_is_not_signed_over() {
        for (size, root) in [(101, [2; 32]), (102, [3; 32])] {
            let dir = tempfile::tempdir().unwrap();
            let path = marks_file(&dir.path().join("signing.key"), &"cd".repeat(32));
            let (a, b) = (SignedMarks::load(&path).unwrap(), SignedMarks::load(&path).unwrap());
            b.record("L", 100, &[100; 32]).unwrap();
            for holder in [&a, &b] {
                assert_eq!(holder.of("L").unwrap(), Some((100, [100; 32])));
            }
            b.record("L", 101, &[1; 32]).unwrap();
            let refused = a.record("L", size, &root).unwrap_err();
            assert!(matches!(refused, AppError::Unavailable(_)), "{refused:?}");
            assert_eq!(a.of("L").unwrap(), Some((101, [1; 32])), "the mark as signed");
            // Its journal checked against that mark when asked again, it signs on from there.
            a.record("L", 102, &[3; 32]).unwrap();
            assert_eq!(b.of("L").unwrap(), Some((102, [3; 32])));
        }
    }

    /// A mark only grows, survives a new load of its file, and a second holder of the file
    /// keeps the larger of the two.
    #[test]
    fn marks_grow_and_are_kept_in_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = marks_file(&dir.path().join("signing.key"), &"ab".repeat(32));
        assert!(path.to_string_lossy().ends_with("signing.key.abababababababab.signed"));
        let first = SignedMarks::load(&path).unwrap();
        assert_eq!(first.of("L").unwrap(), None);
        first.record("L", 5, &[5; 32]).unwrap();
        first.record("L", 3, &[3; 32]).unwrap();
        assert_eq!(first.of("L").unwrap(), Some((5, [5; 32])));
        let second = SignedMarks::load(&path).unwrap();
        assert_eq!(second.of("L").unwrap(), Some((5, [5; 32])));
        first.record("L", 9, &[9; 32]).unwrap();
        second.record("M", 2, &[2; 32]).unwrap();
        let third = SignedMarks::load(&path).unwrap();
        assert_eq!(
            (third.of("L").unwrap(), third.of("M").unwrap()),
            (Some((9, [9; 32])), Some((2, [2; 32])))
        );
        // A server that loaded the file before reads another's marks at its next check.
        assert_eq!(second.of("L").unwrap(), Some((9, [9; 32])));
        // A mark that could not be written is not kept, so its signature is not given.
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(format!(".{}.tmp", std::process::id()));
        std::fs::create_dir(&temporary).unwrap();
        assert!(first.record("L", 12, &[12; 32]).is_err());
        assert_eq!(first.of("L").unwrap(), Some((9, [9; 32])));
        assert!(SignedMarks::load(&path).is_err(), "a file that cannot be written stops the start");
        std::fs::remove_dir(&temporary).unwrap();
        first.record("L", 12, &[12; 32]).unwrap();
        assert_eq!(second.of("L").unwrap(), Some((12, [12; 32])));
        std::fs::write(&path, "{\"L\": {\"size\": 1, \"root\": \"zz\"}}").unwrap();
        assert!(SignedMarks::load(&path).is_err());
        let memory = SignedMarks::in_memory();
        memory.record("L", 1, &[1; 32]).unwrap();
        assert_eq!(memory.of("L").unwrap(), Some((1, [1; 32])));
    }
}
