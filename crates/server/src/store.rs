//! The data folder: the only code that writes to it, and every write is
//! crash-safe (temporary file, fsync, rename, fsync of the folder), so a kill
//! at any instant leaves the old or the new file, never a torn one.
//!
//! Layout (documented in the README):
//! ```text
//! DATA/
//!   .lock                         advisory lock held by the running server
//!   config.json                   stored configuration
//!   config.json.bak               the previous good stored configuration
//!   config.json.broken-<time>     unreadable files moved aside, never deleted
//!   users.json            (0600)  accounts: argon2id hashes, second factors (TOTP secrets, recovery-code hashes)
//!   token.key             (0600)  key of the API tokens' keyed hashes (HMAC-SHA256)
//!   admin-password.txt    (0600)  generated first admin password, if one was generated
//!   certs/factory.pem     (0600)  this device's own factory certificate and key
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use portcullis_core::config::{Config, ParsedConfig};
use serde::Serialize;

/// File name of the stored configuration.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the previous good stored configuration.
pub const CONFIG_BACKUP_FILE: &str = "config.json.bak";
/// File name of the accounts file.
pub const USERS_FILE: &str = "users.json";
/// File name of a generated first admin password.
pub const ADMIN_PASSWORD_FILE: &str = "admin-password.txt";
/// File name of the lock held while a server runs on the folder.
pub const LOCK_FILE: &str = ".lock";
/// Mode of files that hold secrets (private keys, password hashes).
pub const SECRET_MODE: u32 = 0o600;
/// Mode of files that hold nothing secret.
pub const PUBLIC_MODE: u32 = 0o644;

/// Errors of the data folder.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The operating system refused an operation on a file of the folder.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Which file.
        path: PathBuf,
        /// The system's reason.
        source: io::Error,
    },
    /// Another process (a running server) holds the folder's lock.
    #[error("the data folder {0} is in use by a running portcullis server; stop it first")]
    Locked(PathBuf),
    /// The folder's lock was still held after waiting for it.
    #[error(
        "the data folder {dir} is in use: its lock {lock} is held by {holder} and was not released within {waited_seconds} s; stop that process first"
    )]
    StillLocked {
        /// The folder.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// Who holds it (`process 1234 (portcullis)`, or `another process`).
        holder: String,
        /// How long the server waited.
        waited_seconds: u64,
    },
}

/// The process holding an `flock` on `path`, from `/proc/locks` (whose
/// lines read `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`: the pid,
/// then the file's device as major:minor in hex and its inode).
fn lock_holder(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = fs::metadata(path).ok()?;
    let (dev, ino) = (meta.dev(), meta.ino());
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let locks = fs::read_to_string("/proc/locks").ok()?;
    let pid = locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Processes waiting for a lock are listed after it with "->".
        if fields.get(1) == Some(&"->") {
            return None;
        }
        let (kind, pid, file) = (fields.get(1)?, fields.get(4)?, fields.get(5)?);
        let mut parts = file.split(':');
        let (maj, min, inode) = (parts.next()?, parts.next()?, parts.next()?);
        let same = *kind == "FLOCK"
            && u32::from_str_radix(maj, 16).ok()? == major
            && u32::from_str_radix(min, 16).ok()? == minor
            && inode.parse::<u64>().ok()? == ino;
        same.then(|| pid.parse::<u32>().ok()).flatten()
    })?;
    let name =
        fs::read_to_string(format!("/proc/{pid}/comm")).map(|n| n.trim().to_string()).unwrap_or_default();
    Some(if name.is_empty() { format!("process {pid}") } else { format!("process {pid} ({name})") })
}

impl StoreError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io { action, path: path.to_path_buf(), source }
    }

    /// Whether the data folder's file system is full (ENOSPC, or the
    /// account's quota, EDQUOT): a device's flash filled up, not a fault of
    /// the software, and said so to the operator.
    pub fn is_storage_full(&self) -> bool {
        match self {
            Self::Io { source, .. } => io_is_storage_full(source),
            _ => false,
        }
    }
}

/// Whether `e` says the file system is full: ENOSPC or EDQUOT, which the
/// standard library reports as these kinds.
pub fn io_is_storage_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// Where the running configuration was loaded from at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfigSource {
    /// `config.json`, as stored.
    Stored,
    /// `config.json` was unreadable; the previous good copy was used.
    Backup,
    /// Nothing usable was stored; factory settings are running.
    Factory,
}

/// What happened when the stored configuration was loaded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConfigLoadReport {
    /// Where the configuration came from.
    pub source: ConfigSource,
    /// Problems met on the way (unreadable files and where they were moved), empty when all was well.
    pub problems: Vec<String>,
    /// Keys in the stored file that this version does not know (ignored).
    pub unknown_keys: Vec<String>,
}

/// The data folder.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// The lock on a data folder; released when dropped.
#[derive(Debug)]
pub struct DataLock {
    _file: File,
}

impl Store {
    /// Opens (creating, mode 0700) the data folder `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(|e| StoreError::io("create folder", &dir, e))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| StoreError::io("set mode of", &dir, e))?;
        }
        Ok(Self { dir })
    }

    /// The folder's path.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Full path of `name` inside the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Takes the folder's advisory lock, so two servers (or a server and an
    /// offline command) never write the same folder.
    pub fn lock(&self) -> Result<DataLock, StoreError> {
        let path = self.path(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(PUBLIC_MODE)
            .open(&path)
            .map_err(|e| StoreError::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(DataLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked(self.dir.clone())),
            Err(fs::TryLockError::Error(e)) => Err(StoreError::io("lock", &path, e)),
        }
    }

    /// Who holds the folder's lock, as the kernel lists it in `/proc/locks`
    /// (`process 1234 (portcullis)`), or `another process` when that cannot
    /// be told.
    pub fn lock_holder(&self) -> String {
        lock_holder(&self.path(LOCK_FILE)).unwrap_or_else(|| "another process".to_string())
    }

    /// Reads `name`, or `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(name);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", &path, e)),
        }
    }

    /// Replaces `name` with `bytes` atomically and durably, with file mode `mode`.
    pub fn write_atomic(&self, name: &str, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
        let path = self.path(name);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        if !parent.exists() {
            fs::create_dir_all(&parent).map_err(|e| StoreError::io("create folder", &parent, e))?;
            fs::set_permissions(&parent, fs::Permissions::from_mode(0o700))
                .map_err(|e| StoreError::io("set mode of", &parent, e))?;
        }
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = parent.join(format!(".{file_name}.tmp-{}", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&tmp)
                .map_err(|e| StoreError::io("create", &tmp, e))?;
            // The mode given to open() is masked by the umask; secrets must be 0600 whatever it is.
            f.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| StoreError::io("set mode of", &tmp, e))?;
            f.write_all(bytes).map_err(|e| StoreError::io("write", &tmp, e))?;
            f.sync_all().map_err(|e| StoreError::io("sync", &tmp, e))?;
            fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename into place", &path, e))?;
            sync_dir(&parent)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Replaces `name` with `value` as pretty JSON, atomically.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T, mode: u32) -> Result<(), StoreError> {
        let mut text = serde_json::to_vec_pretty(value)
            .map_err(|e| StoreError::io("serialise", &self.path(name), io::Error::other(e)))?;
        text.push(b'\n');
        self.write_atomic(name, &text, mode)
    }

    /// Removes `name` durably; a missing file is not an error.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().unwrap_or(&self.dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove", &path, e)),
        }
    }

    /// Moves an unreadable file aside (never deletes it) and says where it went.
    pub fn move_aside(&self, name: &str, now_unix: i64) -> Result<PathBuf, StoreError> {
        let from = self.path(name);
        let mut to = self.path(&format!("{name}.broken-{now_unix}"));
        let mut n = 1;
        while to.exists() {
            to = self.path(&format!("{name}.broken-{now_unix}-{n}"));
            n += 1;
        }
        fs::rename(&from, &to).map_err(|e| StoreError::io("move aside", &from, e))?;
        sync_dir(&self.dir)?;
        Ok(to)
    }

    /// Loads the stored configuration: `config.json`, else its backup, else
    /// factory settings. Unreadable files are moved aside and reported.
    pub fn load_config(&self, now_unix: i64) -> Result<(Config, ConfigLoadReport), StoreError> {
        let mut problems = Vec::new();
        for (name, source) in
            [(CONFIG_FILE, ConfigSource::Stored), (CONFIG_BACKUP_FILE, ConfigSource::Backup)]
        {
            let Some(bytes) = self.read(name)? else { continue };
            match parse_config(&bytes) {
                Ok(parsed) => {
                    let report = ConfigLoadReport { source, problems, unknown_keys: parsed.unknown_keys };
                    return Ok((parsed.config, report));
                }
                Err(reason) => {
                    let moved = self.move_aside(name, now_unix)?;
                    problems
                        .push(format!("{name} is unreadable ({reason}); moved aside to {}", moved.display()));
                }
            }
        }
        Ok((
            Config::default(),
            ConfigLoadReport { source: ConfigSource::Factory, problems, unknown_keys: Vec::new() },
        ))
    }

    /// Stores `config` permanently, keeping the previous good file as the backup.
    pub fn store_config(&self, config: &Config) -> Result<(), StoreError> {
        if let Some(current) = self.read(CONFIG_FILE)?
            && parse_config(&current).is_ok()
        {
            self.write_atomic(CONFIG_BACKUP_FILE, &current, SECRET_MODE)?;
        }
        // Notification profiles hold SMTP and SIP passwords.
        self.write_atomic(CONFIG_FILE, config.to_file_text().as_bytes(), SECRET_MODE)
    }
}

/// Parses and validates a stored configuration file.
pub fn parse_config(bytes: &[u8]) -> Result<ParsedConfig, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let parsed = Config::parse(text).map_err(|e| e.message)?;
    parsed.config.validate().map_err(|e| e.to_string())?;
    Ok(parsed)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io("sync folder", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (c, report) = store.load_config(0).expect("load");
        assert_eq!(report.source, ConfigSource::Factory);
        let mut changed = c.clone();
        changed.webserver.http_ports = vec![8080.into(), 8081.into()];
        store.store_config(&changed).expect("store");
        let (loaded, report) = store.load_config(0).expect("load");
        assert_eq!(loaded, changed);
        assert_eq!(report.source, ConfigSource::Stored);
    }

    #[test]
    fn torn_file_falls_back_to_backup_and_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let mut first = Config::default();
        first.webserver.http_ports = vec![8001.into()];
        store.store_config(&first).expect("store");
        let mut second = first.clone();
        second.webserver.http_ports = vec![8002.into()];
        store.store_config(&second).expect("store");
        fs::write(store.path(CONFIG_FILE), b"{\"version\":1,\"webs").expect("tear");
        let (loaded, report) = store.load_config(42).expect("load");
        assert_eq!(loaded, first);
        assert_eq!(report.source, ConfigSource::Backup);
        assert_eq!(report.problems.len(), 1);
        assert!(store.path("config.json.broken-42").exists());
    }

    #[test]
    fn secrets_are_0600_whatever_the_umask() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.write_atomic("certs/k.pem", b"secret", SECRET_MODE).expect("write");
        let mode = fs::metadata(store.path("certs/k.pem")).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn second_lock_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let _held = store.lock().expect("first lock");
        assert!(matches!(store.lock(), Err(StoreError::Locked(_))));
    }
}
