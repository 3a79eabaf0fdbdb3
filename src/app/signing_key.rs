//! The service's checkpoint signing key ([`crate::ledger::checkpoint`]).
//!
//! `serve` keeps it in a file of its own, outside the database (`--signing-key`, by default
//! `loanledger-signing.key` in the working directory): whoever can change the database cannot
//! sign with it, nor have the service sign another history than the one it signed (its marks,
//! kept beside the file: [`super::signed_marks`]). The file holds the Ed25519 secret key (its 32-byte seed) as 64 hex digits and
//! a line break. On the first start the file is created, readable by its owner alone (a file
//! found readable by others is warned about at each start), and the public key is logged: the
//! one that auditors pin (`loanledger public-key` prints it from the file). Back it up with the database; losing it means
//! new checkpoints under a new key, which auditors must be told of. A key changed on purpose
//! ([`rotate`]) comes with a handover statement signed by the old key and the new, which an
//! auditor who pinned the old one follows to the new ([`crate::offline::follow_handovers`]).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use ed25519_dalek::SigningKey;

/// The key in the file at `path`, made and written there first if there is no such file (`true`
/// with it then). Two servers starting at once on one path end with one key: the file appears
/// whole or not at all, and the second reads the first's.
pub fn load_or_create(path: &Path) -> anyhow::Result<(SigningKey, bool)> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok((load(path)?, false));
    }
    let key = generate();
    match write_new(path, &key) {
        Ok(()) => Ok((key, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((load(path)?, false)),
        Err(e) => Err(e).with_context(|| {
            format!("Failed to create the checkpoint signing key file {}", path.display())
        }),
    }
}

/// The key in the file at `path` (warned about if others than its owner may read it).
pub fn load(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| bad_file(path))?;
    warn_if_readable_by_others(path);
    parse(&text).with_context(|| bad_file(path))
}

fn bad_file(path: &Path) -> String {
    format!(
        "Failed to read the checkpoint signing key file {} (64 hex digits, the Ed25519 seed)",
        path.display()
    )
}

/// A new key from the operating system's random source.
pub fn generate() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

/// The key written as 64 hex digits (any case), surrounding white space allowed.
fn parse(text: &str) -> anyhow::Result<SigningKey> {
    let seed: [u8; 32] = hex::decode(text.trim())
        .context("not hex digits")?
        .try_into()
        .map_err(|b: Vec<u8>| anyhow::anyhow!("{} bytes, not 32", b.len()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes `key` to a new file at `path`, readable and writable by its owner only: written whole
/// and synced under a name of its own beside it, then linked to `path`, which fails
/// (`AlreadyExists`) rather than replace a file there.
fn write_new(path: &Path, key: &SigningKey) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".new-{}-{:016x}", std::process::id(), rand::random::<u64>()));
    let staged = path.with_file_name(name);
    let written = crate::store::create_private(&staged).and_then(|mut file| {
        writeln!(file, "{}", hex::encode(key.to_bytes()))?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&staged, path));
    let _ = std::fs::remove_file(&staged);
    linked?;
    // The new name made durable: a key whose public half is logged (and whose checkpoints may
    // be with auditors) must not vanish with a power cut.
    sync_parent(path)
}

/// Warns when the key file may be read by others than its owner (restored from a backup, or
/// copied, with wider permissions): whoever reads it can sign checkpoints.
fn warn_if_readable_by_others(path: &Path) {
    if let Some(mode) = super::open_to_others(path) {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "the checkpoint signing key file can be read by others than its owner: whoever \
             reads it can sign checkpoints (chmod 600 it)"
        );
    }
}

/// The service's key changed (`loanledger rotate-signing-key`): the key in the file at `old`
/// handed over to a new key, written to a new file at `new` (refused if there is one: an
/// existing key is never replaced), the handover signed by both
/// ([`crate::ledger::checkpoint::Handover`]) and written to the new file `statement` as
/// [`crate::offline::handover_json`] has it, pretty-printed (its text returned); the old key's
/// signed marks ([`crate::app::signed_marks`]) carried over to the new key's, so that it signs
/// no history the old one would refuse. Then the old file is renamed `<old>.handed-over`: a
/// server started again without the new path finds no key and refuses to start (the database
/// has ledgers), rather than sign with a key handed over; the operator destroys it, and its
/// copies in backups. Nothing is left half done: the statement's file is made first, and the
/// new key's removed should the statement or the rename fail.
pub fn rotate(old: &Path, new: &Path, statement: &Path, at: String) -> anyhow::Result<String> {
    let old_key = load(old)?;
    let retired = handed_over(old);
    if std::fs::symlink_metadata(&retired).is_ok() {
        anyhow::bail!("{} exists: destroy it first", retired.display());
    }
    // The old key is moved there: a new key or a statement written there would be replaced by
    // it, the command done all the same (since 2026-12-07: the new key's secret was lost, or
    // the statement became the old secret).
    let at_retired = |path: &Path| {
        std::path::absolute(path)
            .ok()
            .zip(std::path::absolute(&retired).ok())
            .is_some_and(|(a, b)| a == b)
    };
    for (what, path) in [("--new-key-file", new), ("--handover", statement)] {
        if at_retired(path) {
            anyhow::bail!(
                "{what} {} is where the old key is moved once handed over: name another file",
                path.display()
            );
        }
    }
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).open(statement).with_context(
            || format!("Failed to create {} (it must not exist)", statement.display()),
        )?;
    let new_key = generate();
    if let Err(e) = write_new(new, &new_key) {
        let _ = std::fs::remove_file(statement);
        return Err(e).with_context(|| {
            format!(
                "Failed to create the new signing key file {} (it must not exist)",
                new.display()
            )
        });
    }
    // What the old key signed binds the new one: it refuses what the old one would.
    let new_marks = crate::app::signed_marks::marks_file(new, &public_hex(&new_key));
    // The new key's files removed on a failure from here on (its marks file and their lock
    // file too since 2026-12-08: they were left behind).
    let discard_new = || {
        let _ = std::fs::remove_file(new);
        let _ = std::fs::remove_file(statement);
        crate::app::signed_marks::discard(&new_marks);
    };
    let carried = crate::app::signed_marks::carry_over(
        &crate::app::signed_marks::marks_file(old, &public_hex(&old_key)),
        &new_marks,
    );
    if let Err(e) = carried {
        discard_new();
        return Err(e.context("Failed to carry the old key's signed marks over to the new key"));
    }
    let (h, by_old, by_new) = crate::ledger::checkpoint::Handover::sign(&old_key, &new_key, at);
    let json = crate::offline::handover_json(&h, &by_old, &by_new);
    // (A JSON value always serialises.)
    let text = serde_json::to_string_pretty(&json).unwrap_or_default() + "\n";
    let done = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| retire(old, &retired))
        .and_then(|()| sync_parent(statement))
        .and_then(|()| sync_parent(old));
    if let Err(e) = done {
        discard_new();
        let _ = std::fs::rename(&retired, old);
        return Err(e).context("Failed to write the handover statement or retire the old key");
    }
    Ok(text)
}

/// Moves the key file `old` to `retired`, never over a file there (a link made, which fails
/// if the name is taken, then the old name removed).
fn retire(old: &Path, retired: &Path) -> std::io::Result<()> {
    std::fs::hard_link(old, retired)?;
    std::fs::remove_file(old).inspect_err(|_| {
        let _ = std::fs::remove_file(retired);
    })
}

/// Where [`rotate`] moves a key handed over: `<path>.handed-over`.
pub fn handed_over(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".handed-over");
    path.with_file_name(name)
}

/// Syncs the directory of `path` (its names made durable).
fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The public key as hex, as auditors pin it.
pub fn public_hex(key: &SigningKey) -> String {
    hex::encode(key.verifying_key().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_made_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!("ll-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("signing.key");
        let _ = std::fs::remove_file(&path);
        let (made, created) = load_or_create(&path).unwrap();
        assert!(created);
        let (read, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(read.to_bytes(), made.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A second start racing the first finds its file and keeps its key.
        let racing = write_new(&path, &generate()).unwrap_err();
        assert_eq!(racing.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(load_or_create(&path).unwrap().0.to_bytes(), made.to_bytes());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no staged file is left");
        std::fs::write(&path, "abcd\n").unwrap();
        let e = load_or_create(&path).unwrap_err();
        assert!(format!("{e:#}").contains("2 bytes, not 32"), "{e:#}");
        std::fs::write(&path, "not hex").unwrap();
        assert!(load_or_create(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A rotation naming, for its new key or its statement, the file the old key is moved to is
    /// refused before anything is written: the old key stays in place, nothing is made (until
    /// 2026-12-07 the old key was moved over the new one, or over the statement, and the
    /// command succeeded).
    #[test]
    fn a_rotation_never_moves_the_old_key_over_what_it_wrote() {
        let dir = std::env::temp_dir().join(format!("ll-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let old = dir.join("signing.key");
        let (key, _) = load_or_create(&old).unwrap();
        let retired = handed_over(&old);
        let (new, statement) = (dir.join("next.key"), dir.join("handover.json"));
        for (n, st) in [(&retired, &statement), (&new, &retired)] {
            let e = rotate(&old, n, st, "2026-12-07T00:00:00Z".into()).unwrap_err();
            assert!(format!("{e:#}").contains("is where the old key is moved"), "{e:#}");
            assert_eq!(load(&old).unwrap().to_bytes(), key.to_bytes(), "the old key in place");
            assert!(!retired.exists() && !new.exists() && !statement.exists());
        }
        // Named apart, it hands over.
        rotate(&old, &new, &statement, "2026-12-07T00:00:00Z".into()).unwrap();
        assert_eq!(load(&retired).unwrap().to_bytes(), key.to_bytes());
        assert!(!old.exists() && new.exists() && statement.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_are_parsed_from_hex_with_spaces() {
        let key = parse(&format!("  {}\n", "07".repeat(32))).unwrap();
        assert_eq!(key.to_bytes(), [7; 32]);
        assert_ne!(generate().to_bytes(), generate().to_bytes());
    }
}
