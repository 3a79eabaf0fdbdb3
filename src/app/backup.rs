//! Backups, the operator's (DESIGN.md: the operator writes "tokens, configuration, migrations,
//! backups"): a consistent copy of the whole database, taken while the service keeps serving,
//! named, hashed and described by a manifest, so that it can be checked and restored years later.
//!
//! # Model
//!
//! - A backup has a **name** (1 to 64 of `A-Z a-z 0-9 . _ -`, beginning with a letter or digit)
//!   and lives in the backup directory (`serve --backup-dir`, `loanledger-backups` by default)
//!   as two files: the copy, `NAME.db` (SQLite: a database file, ready to serve) or
//!   `NAME.dump` (PostgreSQL: `pg_dump`'s custom format, for `pg_restore`), and its manifest
//!   `NAME.json` ([`Manifest`]).
//! - The manifest names the copy's file, its size and SHA-256 (a copy moved or stored elsewhere
//!   can be checked against it), the time it was taken, the backend, the request id that made
//!   it, and the **head of every chain** in the copy ([`ChainHead`]: ledger, seq, hash): the
//!   journal the copy holds ends there, which an auditor compares with a checkpoint of the
//!   same seq (`GetCheckpoint` signs the same head hash).
//! - The copy is readable by its owner alone from its first byte (it holds households' identity
//!   numbers in full), and a backup directory the service makes is its owner's alone.
//! - The copy is of one instant ([`crate::store::backup`]): writes committed after it are not in
//!   it, and no write is half in it.
//! - A backup exists once its manifest does: the copy is written under `NAME.<ext>.partial`
//!   and synced; its manifest is written and synced as `NAME.json.partial`; then the copy is
//!   renamed into place, the manifest after it, and the directory synced. What a backup that
//!   stopped half-way left: a partial copy is made again by the next of that name (one whose
//!   copy failed removes it at once, since 2026-12-07); a copy in
//!   place whose waiting manifest describes it (file, size, SHA-256) is finished, its manifest
//!   put in place; a file the waiting manifest does not describe is never touched.
//! - A backup waits 10 s at most for another in its directory to finish, then answers
//!   `UNAVAILABLE` (retry: the same request then finds the backup taken).
//! - Idempotent by name and request id: a retry (the same name and request id) answers the
//!   manifest again and copies nothing; a name taken by another request is `ALREADY_EXISTS`.
//! - One at a time in a backup directory, whichever process takes it (a lock file,
//!   `.loanledger-backup.lock`, held throughout). A request id that took another backup is
//!   `ALREADY_EXISTS` (`REQUEST_ID_REUSED`); a file where the copy would go, without a manifest,
//!   is never replaced (`ALREADY_EXISTS`): with the backup directory the database's own and a
//!   backup named after it, that file is the database.
//!
//! # Errors
//!
//! `INVALID_ARGUMENT` naming `name`; `ALREADY_EXISTS` for a name taken; `FAILED_PRECONDITION`
//! `BACKUP_NOT_CONFIGURED` for a server started without a backup directory (the bench's);
//! `INTERNAL` (the detail in the server log) when the copy cannot be written or `pg_dump`
//! fails; `UNAVAILABLE` when the database is away.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::AppError;
use crate::domain::error::{DomainError, Reason};
use crate::store::Db;
pub use crate::store::backup::ChainHead;

/// Where backups go and what dumps a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// The backup directory, made at the first backup if missing.
    pub dir: PathBuf,
    /// The `pg_dump` program (PostgreSQL only): its major version must be the server's or
    /// later.
    pub pg_dump: PathBuf,
}

/// [`BackupSettings::dir`] of `serve` and `backup`.
pub const BACKUP_DIR_DEFAULT: &str = "loanledger-backups";

/// The longest backup name.
pub const NAME_LEN_MAX: usize = 64;

/// A backup's description, stored beside it as `NAME.json` and answered by `Backup`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub name: String,
    pub request_id: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The copy's file name, in the backup directory.
    pub file: String,
    /// When the copy was finished (microseconds since the Unix epoch, UTC).
    pub taken_at_us: i64,
    pub size_bytes: u64,
    /// SHA-256 of the copy's bytes, 64 hex digits.
    pub sha256: String,
    /// Every chain's last transaction in the copy, in ledger id order.
    pub heads: Vec<ChainHead>,
}

/// Refuses a name that is not 1 to 64 of `A-Z a-z 0-9 . _ -` beginning with a letter or digit
/// (so that it names a file in the backup directory and nothing else).
pub fn check_name(name: &str) -> Result<(), DomainError> {
    if name.is_empty() {
        return Err(DomainError::invalid("name", "is required"));
    }
    if name.len() > NAME_LEN_MAX {
        return Err(DomainError::invalid(
            "name",
            format!("is longer than {NAME_LEN_MAX} characters"),
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(DomainError::invalid(
            "name",
            "may hold only letters A-Z a-z, digits, '.', '_' and '-' (it names a file)",
        ));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(DomainError::invalid("name", "must begin with a letter or a digit"));
    }
    Ok(())
}

/// The refusal of a server without a backup directory.
pub fn not_configured() -> DomainError {
    DomainError::refused(
        Reason::BackupNotConfigured,
        "this server takes no backups: it was started without a backup directory",
    )
}

/// Whether a backup in `settings.dir` was taken under `request_id` (its manifest names it).
pub async fn request_used(settings: &BackupSettings, request_id: &str) -> Result<bool, AppError> {
    let (dir, request) = (settings.dir.clone(), request_id.to_string());
    blocking(move || Ok(request_used_in(&dir, &request)?)).await
}

/// Whether a manifest in `dir` names `request_id`.
fn request_used_in(dir: &Path, request_id: &str) -> std::io::Result<bool> {
    Ok(list_in(dir, "", usize::MAX, false)?
        .into_iter()
        .any(|listed| listed.manifest.is_some_and(|m| m.request_id == request_id)))
}

/// Takes the backup `name` of the database at `url` (whose open pool is `db`) into
/// `settings.dir`, or answers the manifest of the one `request_id` took under that name before.
pub async fn take(
    db: &Db,
    url: &str,
    settings: &BackupSettings,
    name: &str,
    request_id: &str,
) -> Result<Manifest, AppError> {
    check_name(name)?;
    let dir = std::path::absolute(&settings.dir)
        .map_err(|e| AppError::Internal(format!("backup directory: {e}")))?;
    // Held to the end: one backup at a time in the directory, whichever process takes it (a
    // server, the `backup` command beside it).
    let _lock = locked(&dir).await?;
    let manifest_path = dir.join(format!("{name}.json"));
    match read_manifest(&manifest_path).await? {
        Some(Ok(manifest)) if manifest.name == name && manifest.request_id == request_id => {
            return Ok(manifest);
        }
        Some(Ok(manifest)) if manifest.name == name => {
            return Err(DomainError::Exists { what: "backup", id: name.to_string() }.into());
        }
        // Not a manifest of ours (another program's NAME.json): not ours to replace.
        Some(_) => {
            let id = manifest_path.display().to_string();
            return Err(DomainError::Exists { what: "file", id }.into());
        }
        None => {}
    }
    let backend = db.backend().to_string();
    let file = format!("{name}.{}", if backend == "sqlite" { "db" } else { "dump" });
    let (final_path, partial) = (dir.join(&file), dir.join(format!("{file}.partial")));
    let (request, prepared) = (request_id.to_string(), dir.clone());
    let pending_path = dir.join(format!("{name}.json.partial"));
    let (pending_copy, name_owned) = (pending_path.clone(), name.to_string());
    let (final_copy, partial_copy) = (final_path.clone(), partial.clone());
    let finished_path = manifest_path.clone();
    let next = blocking(move || {
        // The request id of another backup (DESIGN.md: same id, other content).
        if request_used_in(&prepared, &request)? {
            return Ok(Next::Refused(AppError::RequestIdReused(request)));
        }
        // A file of that name without a manifest is not ours to replace (the database itself,
        // with the backup directory its directory and the backup named after it). Unless it
        // is the copy the manifest waiting beside it describes (its file, size and SHA-256):
        // a backup stopped between its two renames, finished now.
        if final_copy.try_exists()? {
            if let Some(manifest) = pending_manifest_of(&pending_copy, &name_owned, &final_copy) {
                std::fs::rename(&pending_copy, &finished_path)?;
                std::fs::File::open(&prepared)?.sync_all()?;
                return Ok(Next::Finished(manifest));
            }
            let id = final_copy.display().to_string();
            return Ok(Next::Refused(DomainError::Exists { what: "file", id }.into()));
        }
        // What a backup stopped half-way left, and an empty file of the owner's alone for
        // the copy (VACUUM INTO writes into an empty file; pg_dump truncates it).
        remove_partial(&partial_copy)?;
        create_private(&partial_copy)?;
        Ok(Next::Copy)
    })
    .await?;
    match next {
        Next::Copy => {}
        Next::Refused(refusal) => return Err(refusal),
        Next::Finished(manifest) if manifest.request_id == request_id => return Ok(manifest),
        Next::Finished(_) => {
            return Err(DomainError::Exists { what: "backup", id: name.to_string() }.into());
        }
    }
    // The time the copy holds the books of (at the latest): taken before its snapshot, so that
    // what changed outside the journal since (a token revoked) is after it (since 2026-12-07
    // evening it was taken once the copy was done, after a long dump's changes).
    let taken_at_us = chrono::Utc::now().timestamp_micros();
    let heads = match db.backup_to(&partial, url, &settings.pg_dump).await {
        Ok(heads) => heads,
        Err(e) => {
            return Err(removed_after_failure(partial, pending_path, e.into()).await);
        }
    };
    let (name, request_id) = (name.to_string(), request_id.to_string());
    let (kept, kept_pending) = (partial.clone(), pending_path.clone());
    let manifest = blocking(move || {
        let (size_bytes, sha256) = synced_digest(&partial)?;
        let manifest =
            Manifest { name, request_id, backend, file, taken_at_us, size_bytes, sha256, heads };
        // The manifest waits beside the copy before the copy takes its name, so that a copy
        // in place without its manifest is known for ours (above), then takes its own.
        write_new_synced(&pending_path, &serde_json::to_vec_pretty(&manifest)?)?;
        std::fs::rename(&partial, &final_path)?;
        std::fs::rename(&pending_path, &manifest_path)?;
        std::fs::File::open(final_path.parent().unwrap_or(Path::new(".")))?.sync_all()?;
        Ok(manifest)
    })
    .await;
    let manifest = match manifest {
        Ok(manifest) => manifest,
        Err(e) => return Err(removed_after_failure(kept, kept_pending, e).await),
    };
    tracing::info!(
        name = manifest.name,
        file = %dir.join(&manifest.file).display(),
        size_bytes = manifest.size_bytes,
        sha256 = manifest.sha256,
        "backup taken"
    );
    Ok(manifest)
}

/// What would make this server's backups fail, found at its start (since 2026-12-07: found by
/// the first backup, a night later, as `INTERNAL`): on PostgreSQL a `pg_dump` that does not run
/// or is of an older major version than the server (it refuses to dump it); a backup directory
/// that exists and cannot be written. Warnings, not refusals: the books are served either way.
pub async fn check_settings(settings: &BackupSettings, db: &Db) -> Vec<String> {
    let mut found = Vec::new();
    if db.backend() == "postgres" {
        let program = settings.pg_dump.display().to_string();
        let version = tokio::process::Command::new(&settings.pg_dump)
            .arg("--version")
            .kill_on_drop(true)
            .output();
        // A program that does not answer in seconds is not waited for: the start goes on.
        let version = tokio::time::timeout(std::time::Duration::from_secs(5), version).await;
        let version = version.unwrap_or_else(|_| Err(std::io::Error::other("no answer in 5 s")));
        match version {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                // "pg_dump (PostgreSQL) 15.14 (Debian 15.14-1)": the first number's major.
                let major =
                    text.split_whitespace().find_map(|w| w.split('.').next()?.parse::<u32>().ok());
                let server = db.query_texts("select current_setting('server_version_num')").await;
                let server = server.ok().and_then(|v| v.first()?.parse::<u32>().ok());
                if let (Some(major), Some(server)) = (major, server.map(|n| n / 10_000))
                    && major < server
                {
                    found.push(format!(
                        "pg_dump {program} is of PostgreSQL {major}, older than the server's \
                         {server}: it refuses to dump it (--pg-dump)"
                    ));
                }
            }
            Ok(out) => found.push(format!(
                "pg_dump {program} --version failed ({}): backups will fail (--pg-dump)",
                out.status
            )),
            Err(e) => found.push(format!(
                "pg_dump {program} cannot be run ({e}): backups will fail (--pg-dump)"
            )),
        }
    }
    let dir = settings.dir.clone();
    let writable = blocking(move || {
        if !dir.is_dir() {
            // Made at the first backup when missing; a file or a link to nothing in its place
            // fails every backup.
            return Ok(match std::fs::symlink_metadata(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => Some(Err(e.to_string())),
                Ok(_) => Some(Err("it is not a directory".to_string())),
            });
        }
        // A name of this check's own: servers of one process (the tests') may check at once.
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = dir.join(format!(".loanledger-probe-{}-{n}", std::process::id()));
        Ok(Some(match create_private(&probe) {
            Ok(_) => std::fs::remove_file(&probe).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }))
    });
    if let Ok(Some(Err(e))) = writable.await {
        let dir = settings.dir.display();
        found.push(format!(
            "the backup directory {dir} cannot be written ({e}): backups will fail (--backup-dir)"
        ));
    }
    found
}

/// Removes what a copy at `partial` left: the copy and SQLite's files beside it.
fn remove_partial(partial: &Path) -> std::io::Result<()> {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut leftover = partial.as_os_str().to_owned();
        leftover.push(suffix);
        remove_if_exists(Path::new(&leftover))?;
    }
    Ok(())
}

/// Removes the file `path`, if there is one.
fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `failure` of a backup, once the copy it left half-made at `partial` is removed, with the
/// manifest `pending` beside it when the copy was not in place yet (since
/// 2026-12-07: a copy that failed for want of space no longer keeps the space taken, a file of
/// `ListBackups`' directory that it does not list). A copy that cannot be removed is logged;
/// the failure is the answer either way.
async fn removed_after_failure(partial: PathBuf, pending: PathBuf, failure: AppError) -> AppError {
    let shown = partial.display().to_string();
    let removed = blocking(move || {
        // The manifest waiting beside a copy not yet in place goes with it; once the copy is in
        // place, it stays: the next backup of the name finishes the two.
        if partial.try_exists()? {
            remove_if_exists(&pending)?;
        }
        Ok(remove_partial(&partial)?)
    });
    if let Err(e) = removed.await {
        tracing::warn!(file = shown, error = %e, "a failed backup's copy is left");
    }
    failure
}

/// The lock file of a backup directory ([`take`]).
const LOCK_FILE: &str = ".loanledger-backup.lock";

/// How long a backup waits for another in its directory to finish before it answers
/// `UNAVAILABLE` (retry: a retry of the same request then finds the backup taken).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The backup directory `dir`, made if missing, locked for one backup ([`LOCK_FILE`]): the
/// lock is held until the file is dropped. Waits [`LOCK_WAIT`] at most, asleep, not on a
/// thread: a server stopping does not wait for it.
async fn locked(dir: &Path) -> Result<std::fs::File, AppError> {
    let opened = {
        let dir = dir.to_path_buf();
        blocking(move || {
            make_private_dir(&dir)?;
            Ok(std::fs::File::create(dir.join(LOCK_FILE))?)
        })
        .await?
    };
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match opened.try_lock() {
            Ok(()) => return Ok(opened),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AppError::Unavailable(format!(
                    "another backup is being taken in {}: retry later",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(AppError::Internal(format!("backup directory lock: {e}")));
            }
        }
    }
}

/// The manifest waiting at `path` (`NAME.json.partial`), if it is of the backup `name` and
/// describes the file at `copy` (its name, size and SHA-256).
fn pending_manifest_of(path: &Path, name: &str, copy: &Path) -> Option<Manifest> {
    let manifest = serde_json::from_slice::<Manifest>(&std::fs::read(path).ok()?).ok()?;
    let file = copy.file_name()?.to_str()?;
    let ours = manifest.name == name
        && manifest.file == file
        && digest(copy).ok()? == (manifest.size_bytes, manifest.sha256.clone());
    ours.then_some(manifest)
}

/// What [`take`] does once its directory is locked and checked.
enum Next {
    /// Copy the database.
    Copy,
    /// Refuse the request.
    Refused(AppError),
    /// A backup of this name was stopped between its renames, and is finished now.
    Finished(Manifest),
}

/// The manifest at `path`, if a backup of that name was finished.
async fn read_manifest(
    path: &Path,
) -> Result<Option<Result<Manifest, serde_json::Error>>, AppError> {
    let path = path.to_path_buf();
    blocking(move || match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    })
    .await
}

/// What a check of a listed backup's copy found ([`list`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyState {
    /// Not checked.
    Unchecked,
    /// The copy's size and SHA-256 are the manifest's.
    Intact,
    /// The manifest's copy is not there.
    Missing,
    /// The copy's size or SHA-256 is not the manifest's.
    Altered,
    /// `NAME.json` is no manifest of this service's (unreadable, or naming another file).
    ManifestUnreadable,
    /// The manifest's copy is there but cannot be read (its error logged).
    Unreadable,
}

/// A backup as [`list`] finds it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub manifest: Option<Manifest>,
    pub state: CopyState,
}

/// The backups of `settings.dir` named after `after`, by name, `limit` at most; with `check`,
/// each copy read again and compared with its manifest. A directory not made yet has none.
pub async fn list(
    settings: &BackupSettings,
    after: &str,
    limit: usize,
    check: bool,
) -> Result<Vec<Listed>, AppError> {
    let (dir, after) = (settings.dir.clone(), after.to_string());
    blocking(move || Ok(list_in(&dir, &after, limit, check)?)).await
}

/// [`list`] on the blocking thread it runs on.
fn list_in(dir: &Path, after: &str, limit: usize, check: bool) -> std::io::Result<Vec<Listed>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let file_name = entry?.file_name();
        let Some(name) = file_name.to_str().and_then(|f| f.strip_suffix(".json")) else {
            continue;
        };
        if check_name(name).is_ok() && name > after {
            names.push(name.to_string());
        }
    }
    names.sort_unstable();
    names.truncate(limit);
    let mut listed = Vec::with_capacity(names.len());
    for name in names {
        let manifest = std::fs::read(dir.join(format!("{name}.json")))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Manifest>(&bytes).ok())
            .filter(|m| {
                m.name == name && [".db", ".dump"].map(|e| format!("{name}{e}")).contains(&m.file)
            });
        let state = match &manifest {
            None => CopyState::ManifestUnreadable,
            Some(_) if !check => CopyState::Unchecked,
            Some(m) => match digest(&dir.join(&m.file)) {
                Ok(found) if found == (m.size_bytes, m.sha256.clone()) => CopyState::Intact,
                Ok(_) => CopyState::Altered,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => CopyState::Missing,
                // A copy that cannot be read (a bad sector, another owner after a hand restore)
                // is what the check is for: marked, the others listed (since 2026-12-07 the
                // whole page was `INTERNAL`).
                Err(e) => {
                    tracing::warn!(copy = m.file, error = %e, "a backup copy cannot be read");
                    CopyState::Unreadable
                }
            },
        };
        listed.push(Listed { name, manifest, state });
    }
    Ok(listed)
}

/// Makes the directory `dir`, if missing, its owner's alone (the copies hold every household's
/// identity numbers in full, and the tokens' hashes). One that exists is left as it is.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    // One that existed is the operator's to keep as they chose; said, since others may then
    // list the backups (their copies stay the owner's alone).
    if let Some(mode) = super::open_to_others(dir) {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:o}"),
            "the backup directory is open to others than its owner"
        );
    }
    Ok(())
}

/// Creates the empty file `path` (which must not exist) readable by its owner alone, from its
/// first byte on.
fn create_private(path: &Path) -> std::io::Result<()> {
    crate::store::create_private(path)?.sync_all()
}

/// Syncs the file at `path` to disk and answers its size and SHA-256 (hex).
fn synced_digest(path: &Path) -> std::io::Result<(u64, String)> {
    let file = std::fs::File::open(path)?;
    file.sync_all()?;
    digest_of(file)
}

/// The size and SHA-256 (hex) of the file at `path`.
fn digest(path: &Path) -> std::io::Result<(u64, String)> {
    digest_of(std::fs::File::open(path)?)
}

/// The size and SHA-256 (hex) of `file`, read from its start.
fn digest_of(mut file: std::fs::File) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    Ok((size, hex::encode(hasher.finalize())))
}

/// Writes `bytes` to the file `path`, made or emptied, and syncs it.
fn write_new_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Runs file work on a blocking thread; its failures are the service's (`INTERNAL`).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
) -> Result<T, AppError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(AppError::Internal(format!("backup: {e}"))),
        Err(e) => Err(AppError::Internal(format!("backup: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_file_names_of_the_backup_directory_only() {
        for good in ["nightly", "2026-12-05", "a", "before_migration.v2", &"x".repeat(64)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "../etc/passwd", "a/b", ".hidden", "-rf", "two words", "备份", "a\\b"] {
            let Err(DomainError::Invalid { field, .. }) = check_name(bad) else {
                panic!("{bad:?} accepted");
            };
            assert_eq!(field, "name");
        }
        assert!(check_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn a_digest_is_of_the_bytes_and_a_manifest_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            synced_digest(&path).unwrap(),
            (3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_string())
        );
        let manifest = Manifest {
            name: "b".into(),
            request_id: "r1".into(),
            backend: "sqlite".into(),
            file: "b.db".into(),
            taken_at_us: 1,
            size_bytes: 3,
            sha256: "ba78".into(),
            heads: vec![ChainHead { ledger_id: "450121".into(), seq: 7, hash: "ab".into() }],
        };
        let at = dir.path().join("b.json");
        write_new_synced(&at, &serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
        let read: Manifest = serde_json::from_slice(&std::fs::read(&at).unwrap()).unwrap();
        assert_eq!(read, manifest);
    }
}
