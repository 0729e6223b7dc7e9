//! `serve --user NAME`: started as root, the server becomes an unprivileged
//! account before it opens its data folder or a port, and keeps one
//! capability, CAP_NET_BIND_SERVICE, so that it can bind ports below 1024 —
//! at start and at every later Set that opens one.
//!
//! Why switch first and bind afterwards (rather than bind as root, then
//! switch): every file the server creates in its data folder (accounts,
//! keys, configuration, logs) then belongs to the account that must write it
//! later, and a Set that moves HTTP to port 80 works the same after start as
//! at start. The capability allows nothing but binding low ports.
//!
//! It must run before any thread starts: capabilities and the keep-caps flag
//! are per thread in Linux, and threads started afterwards inherit them.

use std::ffi::CString;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::unistd::{Gid, Uid, User};
use rustix::thread::{CapabilitySet, CapabilitySets};

/// The account to become.
#[derive(Debug)]
pub struct Account {
    name: String,
    uid: Uid,
    gid: Gid,
}

/// Looks `name` up (the system's user database); refuses root and non-root callers.
pub fn account(name: &str) -> Result<Account> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "--user needs the server to be started as root (it runs as uid {}); to run unprivileged \
             from the start, give the binary the bind capability instead (see README: running as a service)",
            nix::unistd::geteuid()
        );
    }
    let user = User::from_name(name)
        .with_context(|| format!("cannot look up the user \"{name}\""))?
        .ok_or_else(|| anyhow::anyhow!("--user {name}: there is no such user"))?;
    if user.uid.is_root() {
        bail!("--user {name}: that account is root; name an unprivileged account");
    }
    Ok(Account { name: name.to_string(), uid: user.uid, gid: user.gid })
}

/// Makes sure the account can use the data folder: creates it (mode 0700,
/// owned by the account) when missing; refuses, naming the first file and
/// the command that fixes it, when something in it belongs to someone else
/// (say, a folder a root server used before). Nothing is chowned silently:
/// a data folder is not where a server should change ownership on its own.
pub fn prepare_data_dir(dir: &Path, account: &Account) -> Result<()> {
    if !dir.exists() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the data folder {}", dir.display()))?;
        std::os::unix::fs::chown(dir, Some(account.uid.as_raw()), Some(account.gid.as_raw()))
            .with_context(|| format!("cannot hand {} to {}", dir.display(), account.name))?;
        return Ok(());
    }
    if let Some((path, uid)) = foreign_file(dir, account.uid.as_raw())? {
        bail!(
            "--user {name}: {} belongs to uid {uid}, not to {name}; hand the data folder over first: chown -R {name}: {}",
            path.display(),
            dir.display(),
            name = account.name,
        );
    }
    Ok(())
}

/// The first file or folder under `dir` (itself included, links not
/// followed) that `uid` does not own.
fn foreign_file(dir: &Path, uid: u32) -> Result<Option<(PathBuf, u32)>> {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta =
            std::fs::symlink_metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.uid() != uid {
            return Ok(Some((path, meta.uid())));
        }
        if meta.is_dir() {
            for entry in
                std::fs::read_dir(&path).with_context(|| format!("cannot read {}", path.display()))?
            {
                todo.push(entry?.path());
            }
        }
    }
    Ok(None)
}

/// Becomes `account` for good (real, effective and saved ids, its groups),
/// keeping CAP_NET_BIND_SERVICE and no other capability. Call it before
/// any thread starts.
pub fn become_account(account: &Account) -> Result<()> {
    let bind = CapabilitySet::NET_BIND_SERVICE;
    // Without it, setuid from root clears every capability.
    rustix::thread::set_keep_capabilities(true).context("prctl(PR_SET_KEEPCAPS)")?;
    let name = CString::new(account.name.as_str()).context("user name")?;
    nix::unistd::initgroups(&name, account.gid).context("setting the user's groups")?;
    nix::unistd::setgid(account.gid).context("setgid")?;
    nix::unistd::setuid(account.uid).context("setuid")?;
    rustix::thread::set_keep_capabilities(false).context("prctl(PR_SET_KEEPCAPS)")?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets { effective: bind, permitted: bind, inheritable: CapabilitySet::empty() },
    )
    .context("keeping CAP_NET_BIND_SERVICE")?;
    // Root must be out of reach now, whatever the C library did.
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() || nix::unistd::getuid().is_root() {
        bail!("could not leave root");
    }
    Ok(())
}
