//! Static content from a folder (`serve --webroot DIR`): the device's own
//! pages, snapshots, manuals. Content types, strong ETags and Last-Modified,
//! conditional requests (RFC 9110 §13: 304, and 412 for `If-Match` and
//! `If-Unmodified-Since`), single byte ranges; nothing outside the folder is
//! ever served (no `..`, no dotfiles, no symlink leading out, checked after
//! resolving every link).
//!
//! A request path is resolved (every link followed, the result checked to be
//! inside the folder) and the result remembered for 2 s; but a file's content
//! is only ever read from a descriptor opened relative to the folder without
//! following any link (`openat2` with `RESOLVE_BENEATH` and
//! `RESOLVE_NO_SYMLINKS`, or component by component with `O_NOFOLLOW` where
//! `openat2` is missing). So a folder swapped for a link after it was
//! resolved leads nowhere: what the link points at is never opened.
//!
//! What a file's answer needs (ETag, Last-Modified, type, length) is kept
//! per file, taken from the opened descriptor, and checked against the file
//! the path leads to on every request (one `stat`: device, inode, size,
//! modification time); small files are kept in memory too, so the common
//! case costs that `stat` and no open or read. A `stat` that finds another
//! file (a new version, or whatever a swapped link leads to) makes the file
//! be opened again, beneath the folder.

use portcullis_core::ErrorCode;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::conditional::Precondition;
use crate::error::ApiError;

/// Files up to this size are cached in memory.
pub const CACHE_FILE_LIMIT: u64 = 256 * 1024;
/// Total bytes the cache may hold; beyond, it is emptied and refilled.
pub const CACHE_TOTAL_LIMIT: usize = 16 * 1024 * 1024;
/// Files whose answer headers are remembered at most.
const FILES_REMEMBERED: usize = 4096;
/// Chunk size when streaming large files: below glibc's threshold for
/// giving each allocation its own mapping (128 KiB), which would cost a page
/// fault per 4 KiB on every chunk.
const CHUNK: usize = 124 * 1024;

/// One file as last seen: its validators and answer headers, made once per
/// version of the file instead of once per request.
#[derive(Clone)]
struct FileInfo {
    /// The file it describes (device and inode, from the descriptor opened
    /// beneath the folder): a path that leads to another file since is not
    /// answered from here.
    id: FileId,
    len: u64,
    modified: SystemTime,
    etag: HeaderValue,
    last_modified: HeaderValue,
    content_type: HeaderValue,
    /// The headers of the whole file's answer (200), made once: a copy per
    /// request costs less than the inserts.
    whole: HeaderMap,
    /// The content, for small files once read.
    data: Option<Bytes>,
}

/// Device and inode of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

/// What a `stat` says of a file: which file, whether it is a regular file,
/// its size and modification time.
#[derive(Clone, Copy, Debug)]
struct Seen {
    id: FileId,
    regular: bool,
    len: u64,
    modified: SystemTime,
}

impl Seen {
    fn of(st: &rustix::fs::Stat) -> Self {
        let modified = u64::try_from(st.st_mtime)
            .ok()
            .and_then(|secs| UNIX_EPOCH.checked_add(std::time::Duration::new(secs, st.st_mtime_nsec as u32)))
            .unwrap_or(UNIX_EPOCH);
        Self {
            id: FileId { dev: st.st_dev, ino: st.st_ino },
            regular: rustix::fs::FileType::from_raw_mode(st.st_mode).is_file(),
            len: st.st_size as u64,
            modified,
        }
    }
}

impl FileInfo {
    fn new(file: &Path, seen: Seen) -> Self {
        let Seen { id, len, modified, .. } = seen;
        let mtime_ns = modified.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let mime = mime_guess::from_path(file).first_or_octet_stream();
        let etag = hv(&format!("\"{len:x}-{mtime_ns:x}\""));
        let last_modified = hv(&httpdate::fmt_http_date(modified));
        let content_type = hv(mime.as_ref());
        let mut whole = base_headers(&etag, &last_modified);
        whole.insert(header::CONTENT_TYPE, content_type.clone());
        whole.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        Self { id, len, modified, etag, last_modified, content_type, whole, data: None }
    }

    /// Whether this describes the file `seen` (same file, same version).
    fn describes(&self, seen: &Seen) -> bool {
        self.id == seen.id && self.len == seen.len && self.modified == seen.modified
    }

    fn etag(&self) -> &str {
        self.etag.to_str().unwrap_or("")
    }

    /// The headers every answer about this file carries.
    fn base_headers(&self) -> HeaderMap {
        base_headers(&self.etag, &self.last_modified)
    }
}

fn base_headers(etag: &HeaderValue, last_modified: &HeaderValue) -> HeaderMap {
    // Room for these, the body headers and the front layer's: no growth (a
    // reallocation) on the way.
    let mut h = HeaderMap::with_capacity(16);
    h.insert(header::ETAG, etag.clone());
    h.insert(header::LAST_MODIFIED, last_modified.clone());
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Present already, the front layer's inserts replace instead of adding
    // (which could grow a copied map's storage); the values are the same.
    for (name, value) in crate::headers::SECURITY_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    h
}

/// A webroot's answer to a request.
pub(crate) enum Answer {
    /// Complete.
    Ready(Response),
    /// The content must be read first ([`Webroot::read`]).
    Read(Read),
}

/// Content to read for an answer: which bytes of which file, and the answer's
/// status and headers.
pub(crate) struct Read {
    target: Arc<Target>,
    info: Arc<FileInfo>,
    /// The file, when it was opened already (beneath the folder).
    file: Option<std::fs::File>,
    start: u64,
    end: u64,
    status: StatusCode,
    headers: HeaderMap,
}

/// A file inside the folder that request paths resolved to; paths naming the
/// same file (`/dir/` and `/dir/index.html`, links) share one.
struct Target {
    /// Its real path.
    path: PathBuf,
    /// The same, relative to the folder (no link in it), ready for `statat`
    /// and [`open_beneath`].
    rel: CString,
    /// What is known of it, as last seen. Written only with the cache's
    /// write lock held, which keeps the byte count right.
    info: RwLock<Option<Arc<FileInfo>>>,
}

/// Request paths resolved, and the files they lead to.
#[derive(Default)]
struct Cache {
    /// Request path → the file it resolved to (or none), and when (coarse
    /// milliseconds). Resolving follows every link of every component (a
    /// readlink each): too costly per request. Safe to reuse: the file is
    /// opened by its resolved path without following links, so a link
    /// swapped in since is refused, and the path resolved again.
    resolved: HashMap<String, (Option<Arc<Target>>, u64)>,
    /// Real path → its target.
    targets: HashMap<PathBuf, Arc<Target>>,
    /// Bytes of content held by the targets in `targets`.
    bytes: usize,
}

/// How long a resolved request path is reused before it is resolved again
/// (every link followed and checked against the folder), in milliseconds.
const RESOLVE_TTL_MS: u64 = 2000;
/// Resolved paths remembered at most.
const RESOLVE_CACHE: usize = 4096;

/// A folder served at `/`.
pub struct Webroot {
    root: PathBuf,
    /// The folder, open: files are looked up relative to it, so a `stat`
    /// walks one or two path components instead of the folder's whole path.
    dir: std::fs::File,
    cache: RwLock<Cache>,
    /// Whether `openat2` works here (false on kernels before 5.6, under
    /// qemu-user or a seccomp filter that refuses it: then files are opened
    /// component by component).
    openat2: AtomicBool,
}

impl std::fmt::Debug for Webroot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webroot").field("root", &self.root).finish_non_exhaustive()
    }
}

/// Why a webroot cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("webroot {path}: {reason}")]
pub struct WebrootError {
    /// The folder given.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

impl Webroot {
    /// Serves `dir`, which must be an existing folder.
    pub fn new(dir: &Path) -> Result<Arc<Self>, WebrootError> {
        let err = |reason: String| WebrootError { path: dir.to_path_buf(), reason };
        let root = dir.canonicalize().map_err(|e| err(e.to_string()))?;
        if !root.is_dir() {
            return Err(err("not a folder".into()));
        }
        let dir = std::fs::File::open(&root).map_err(|e| err(e.to_string()))?;
        Ok(Arc::new(Self {
            root,
            dir,
            cache: RwLock::default(),
            openat2: AtomicBool::new(cfg!(target_os = "linux")),
        }))
    }

    fn cache_read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn cache_write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    /// [`Webroot::resolve`], remembered for [`RESOLVE_TTL_MS`].
    fn resolve_cached(&self, raw_path: &str) -> Option<Arc<Target>> {
        let now = crate::conn::coarse_now_ms();
        if let Some((target, at)) = self.cache_read().resolved.get(raw_path)
            && now.saturating_sub(*at) < RESOLVE_TTL_MS
        {
            return target.clone();
        }
        self.resolve_now(raw_path, now)
    }

    /// [`Webroot::resolve`] now, whatever is remembered, and remembered.
    fn resolve_now(&self, raw_path: &str, now: u64) -> Option<Arc<Target>> {
        let found = self.resolve(raw_path).and_then(|real| {
            let rel = real.strip_prefix(&self.root).ok()?.as_os_str().as_bytes().to_vec();
            Some((CString::new(rel).ok()?, real))
        });
        let mut cache = self.cache_write();
        if cache.resolved.len() >= RESOLVE_CACHE {
            cache.resolved.retain(|_, (_, at)| now.saturating_sub(*at) < RESOLVE_TTL_MS);
            if cache.resolved.len() >= RESOLVE_CACHE {
                cache.resolved.clear();
            }
        }
        let target = found.map(|(rel, real)| match cache.targets.get(&real) {
            Some(t) => t.clone(),
            None => {
                if cache.targets.len() >= FILES_REMEMBERED {
                    // Start over; requests under way keep their targets.
                    *cache = Cache::default();
                }
                let t = Arc::new(Target { path: real.clone(), rel, info: RwLock::new(None) });
                cache.targets.insert(real, t.clone());
                t
            }
        });
        cache.resolved.insert(raw_path.to_string(), (target.clone(), now));
        target
    }

    /// The file a request path names, if it is inside the folder.
    fn resolve(&self, raw_path: &str) -> Option<PathBuf> {
        let decoded = percent_encoding::percent_decode_str(raw_path).decode_utf8().ok()?;
        if decoded.contains('\0') || decoded.contains('\\') {
            return None;
        }
        let mut path = self.root.clone();
        for segment in decoded.split('/') {
            if segment.is_empty() {
                continue;
            }
            // Dotfiles (.htpasswd, .git) and "." / ".." are never served.
            if segment.starts_with('.') {
                return None;
            }
            match Path::new(segment).components().next() {
                Some(Component::Normal(_)) => path.push(segment),
                _ => return None,
            }
        }
        let mut real = path.canonicalize().ok()?;
        if real.is_dir() {
            real = real.join("index.html").canonicalize().ok()?;
        }
        // Checked after every symlink is resolved: a link may not lead out.
        real.starts_with(&self.root).then_some(real)
    }

    /// What the folder's path `target` leads to now. One `statat`, on the
    /// worker (a stat of a local file takes microseconds; a thread hop per
    /// request costs more). It follows links, so it only tells whether the
    /// file seen last is still there: content is never read by this path.
    fn stat(&self, target: &Target) -> Option<Seen> {
        let st = rustix::fs::statat(&self.dir, target.rel.as_c_str(), rustix::fs::AtFlags::empty()).ok()?;
        Some(Seen::of(&st))
    }

    /// Opens the file `target` names, beneath the folder and through no
    /// link, and says what it is.
    fn open(&self, target: &Target) -> Option<(std::fs::File, Seen)> {
        let fd = self.open_beneath(target.rel.as_c_str()).ok()?;
        let seen = Seen::of(&rustix::fs::fstat(&fd).ok()?);
        seen.regular.then(|| (std::fs::File::from(fd), seen))
    }

    /// Opens `rel` for reading, beneath the folder and through no link
    /// ([`open_beneath`]; component by component where `openat2` is missing).
    fn open_beneath(&self, rel: &CStr) -> rustix::io::Result<OwnedFd> {
        if self.openat2.load(Ordering::Relaxed) {
            match open_beneath(self.dir.as_fd(), rel) {
                // Not there (an old kernel, qemu-user) or refused by a seccomp
                // filter: the component-wise way, from now on if it works.
                Err(e) if e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::PERM => {
                    let fd = open_by_components(self.dir.as_fd(), rel)?;
                    self.openat2.store(false, Ordering::Relaxed);
                    tracing::debug!(error = %e, "openat2 unavailable; webroot files are opened component by component");
                    return Ok(fd);
                }
                r => return r,
            }
        }
        open_by_components(self.dir.as_fd(), rel)
    }

    /// The file `raw_path` names, opened beneath the folder, with what is
    /// known of it. When the remembered resolution fails (a folder of the
    /// path is a link now, or gone), the path is resolved once more: a
    /// legitimate change is served at once, and a link leading out resolves
    /// to nothing.
    fn open_fresh(
        &self,
        raw_path: &str,
        target: Arc<Target>,
    ) -> Option<(Arc<Target>, std::fs::File, Arc<FileInfo>)> {
        let (target, file, seen) = match self.open(&target) {
            Some((file, seen)) => (target, file, seen),
            None => {
                let again = self.resolve_now(raw_path, crate::conn::coarse_now_ms())?;
                if Arc::ptr_eq(&again, &target) {
                    return None;
                }
                let (file, seen) = self.open(&again)?;
                (again, file, seen)
            }
        };
        let info = self.info(&target, seen);
        Some((target, file, info))
    }

    /// What is known of the file `seen` (a descriptor's `fstat`).
    fn info(&self, target: &Arc<Target>, seen: Seen) -> Arc<FileInfo> {
        if let Some(i) = self.known(target, &seen) {
            return i;
        }
        let info = Arc::new(FileInfo::new(&target.path, seen));
        self.remember(target, info.clone());
        info
    }

    /// What is known of `target`, if it describes the file `seen`.
    fn known(&self, target: &Target, seen: &Seen) -> Option<Arc<FileInfo>> {
        target.info.read().unwrap_or_else(|e| e.into_inner()).as_ref().filter(|i| i.describes(seen)).cloned()
    }

    fn remember(&self, target: &Arc<Target>, info: Arc<FileInfo>) {
        let mut cache = self.cache_write();
        let add = info.data.as_ref().map_or(0, Bytes::len);
        if cache.bytes + add > CACHE_TOTAL_LIMIT {
            for t in cache.targets.values() {
                *t.info.write().unwrap_or_else(|e| e.into_inner()) = None;
            }
            cache.bytes = 0;
        }
        let old = target.info.write().unwrap_or_else(|e| e.into_inner()).replace(info);
        // A target no longer in the map (the cache started over meanwhile)
        // is not counted.
        if cache.targets.get(&target.path).is_some_and(|t| Arc::ptr_eq(t, target)) {
            let old = old.and_then(|o| o.data.as_ref().map(Bytes::len)).unwrap_or(0);
            cache.bytes = (cache.bytes + add).saturating_sub(old);
        }
    }

    /// Answers a GET or HEAD for `path`.
    pub async fn serve(self: &Arc<Self>, method: &Method, path: &str, headers: &HeaderMap) -> Response {
        match self.answer(method, path, headers) {
            Answer::Ready(r) => r,
            Answer::Read(read) => self.read(read).await,
        }
    }

    /// The answer, when it needs no wait: everything but content still to be
    /// read from the file (the common case, a small file held in memory, is
    /// ready).
    pub(crate) fn answer(&self, method: &Method, path: &str, headers: &HeaderMap) -> Answer {
        if method != Method::GET && method != Method::HEAD {
            let mut r = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "static content is read-only",
            )
            .into_response();
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Answer::Ready(r);
        }
        let Some(target) = self.resolve_cached(path) else { return Answer::Ready(not_found()) };
        // The common case: the path still leads to the file last opened
        // beneath the folder, unchanged; what is known of it answers.
        let (target, file, info) = match self.stat(&target).and_then(|seen| self.known(&target, &seen)) {
            Some(info) => (target, None, info),
            None => match self.open_fresh(path, target) {
                Some((target, file, info)) => (target, Some(file), info),
                None => return Answer::Ready(not_found()),
            },
        };
        let (len, modified) = (info.len, info.modified);

        // The preconditions, in the order of RFC 9110 §13.2.2.
        match crate::conditional::evaluate(headers, info.etag(), Some(modified)) {
            Precondition::Proceed => {}
            Precondition::NotModified => {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                *r.headers_mut() = info.base_headers();
                return Answer::Ready(r);
            }
            Precondition::Failed => {
                let last_modified = info.last_modified.to_str().unwrap_or("");
                let mut r = ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    portcullis_core::ErrorCode::PreconditionFailed,
                    format!(
                        "the file is not the version the request names (If-Match or If-Unmodified-Since): \
                         its entity tag is {}, last modified {last_modified}",
                        info.etag()
                    ),
                )
                .into_response();
                r.headers_mut().extend(info.base_headers());
                return Answer::Ready(r);
            }
        }
        let range = headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .filter(|_| if_range_holds(headers, info.etag(), modified))
            .map(|r| parse_range(r, len));
        let (status, start, end) = match range {
            None | Some(RangeSpec::Ignore) => (StatusCode::OK, 0, len),
            Some(RangeSpec::Unsatisfiable) => {
                let mut r = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    portcullis_core::ErrorCode::RangeNotSatisfiable,
                    format!("the range asked for lies beyond the end of the file ({len} bytes)"),
                )
                .into_response();
                r.headers_mut().extend(info.base_headers());
                r.headers_mut().insert(header::CONTENT_RANGE, hv(&format!("bytes */{len}")));
                return Answer::Ready(r);
            }
            Some(RangeSpec::Bytes(a, b)) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        };
        let resp_headers = if status == StatusCode::PARTIAL_CONTENT {
            let mut h = info.base_headers();
            h.insert(header::CONTENT_TYPE, info.content_type.clone());
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
            h.insert(header::CONTENT_RANGE, hv(&format!("bytes {start}-{}/{len}", end - 1)));
            h
        } else {
            info.whole.clone()
        };
        let body = match &info.data {
            _ if method == Method::HEAD => Body::empty(),
            Some(data) => Body::from(data.slice(start as usize..end as usize)),
            None => {
                return Answer::Read(Read { target, info, file, start, end, status, headers: resp_headers });
            }
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        *r.headers_mut() = resp_headers;
        Answer::Ready(r)
    }

    /// Reads the content [`Webroot::answer`] could not answer with at once.
    pub(crate) async fn read(self: &Arc<Self>, read: Read) -> Response {
        let Read { target, info, file, start, end, status, headers } = read;
        let (file, same) = match file {
            Some(f) => (f, true),
            None => {
                let this = self.clone();
                let t = target.clone();
                match tokio::task::spawn_blocking(move || this.open(&t)).await {
                    // Another file since the stat (replaced meanwhile): served
                    // as read, but not kept for the old one's answers.
                    Ok(Some((f, seen))) => (f, info.describes(&seen)),
                    _ => return not_found(),
                }
            }
        };
        let body = if info.len <= CACHE_FILE_LIMIT {
            match self.small_file(&target, &info, file, same).await {
                Some(data) => Body::from(data.slice(start as usize..end as usize)),
                None => return not_found(),
            }
        } else {
            stream(file, start, end)
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        r
    }

    async fn small_file(
        &self,
        target: &Arc<Target>,
        info: &Arc<FileInfo>,
        mut file: std::fs::File,
        keep: bool,
    ) -> Option<Bytes> {
        if let Some(data) = &info.data {
            return Some(data.clone());
        }
        let len = info.len;
        let data = tokio::task::spawn_blocking(move || {
            use std::io::Read as _;
            // One byte more than promised tells a file that grew meanwhile.
            let mut data = Vec::with_capacity(len as usize + 1);
            (&mut file).take(len + 1).read_to_end(&mut data).map(|_| data)
        });
        let data = Bytes::from(data.await.ok()?.ok()?);
        if data.len() as u64 != len || !keep {
            // Changed while we read it: serve what we read, cache nothing.
            return (data.len() as u64 >= len).then(|| data.slice(..len as usize));
        }
        let with_data = FileInfo { data: Some(data.clone()), ..FileInfo::clone(info) };
        self.remember(target, Arc::new(with_data));
        Some(data)
    }
}

/// Streams bytes `start..end` of a large file. A chunk the page cache
/// holds is read at once on the worker (`RWF_NOWAIT`: no thread hop, no
/// context switch); what must come from the disk is read on a blocking
/// thread, which is not held between chunks (a slow client holds no thread).
fn stream(file: std::fs::File, start: u64, end: u64) -> Body {
    let chunks = futures_util::stream::try_unfold((Arc::new(file), start), move |(f, at)| async move {
        if at >= end {
            return Ok(None);
        }
        let want = (end - at).min(CHUNK as u64) as usize;
        let mut buf = vec![0; want];
        let cached = read_cached(&f, &mut buf, at);
        if cached < want {
            let file = f.clone();
            buf = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                // A file that shrank is an error: its length was promised in Content-Length.
                file.read_exact_at(&mut buf[cached..], at + cached as u64).map(|()| buf)
            })
            .await
            .map_err(std::io::Error::other)??;
        }
        Ok::<_, std::io::Error>(Some((Bytes::from(buf), (f, at + want as u64))))
    });
    Body::from_stream(chunks)
}

/// Flags of every open of a webroot file: read only, never a link as the
/// last component, and no wait on a FIFO (it is refused after `fstat`).
fn open_flags() -> rustix::fs::OFlags {
    use rustix::fs::OFlags;
    OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY
}

/// Opens `rel` (relative, no `..`) beneath `dir` without following any link:
/// one `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` (Linux 5.6+).
#[cfg(target_os = "linux")]
fn open_beneath(dir: BorrowedFd<'_>, rel: &CStr) -> rustix::io::Result<OwnedFd> {
    use rustix::fs::ResolveFlags;
    rustix::fs::openat2(
        dir,
        rel,
        open_flags(),
        rustix::fs::Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

#[cfg(not(target_os = "linux"))]
fn open_beneath(_dir: BorrowedFd<'_>, _rel: &CStr) -> rustix::io::Result<OwnedFd> {
    Err(rustix::io::Errno::NOSYS)
}

/// What [`open_beneath`] does, where `openat2` is missing: each folder of
/// `rel` opened from the one before with `O_NOFOLLOW | O_DIRECTORY` (a link
/// is refused, never followed), then the file with `O_NOFOLLOW`. `.` and
/// `..` are refused.
fn open_by_components(dir: BorrowedFd<'_>, rel: &CStr) -> rustix::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let mut parts = rel.to_bytes().split(|b| *b == b'/').filter(|p| !p.is_empty()).peekable();
    let mut folder: Option<OwnedFd> = None;
    while let Some(part) = parts.next() {
        if part == b"." || part == b".." {
            return Err(rustix::io::Errno::INVAL);
        }
        let at = folder.as_ref().map_or(dir, |f| f.as_fd());
        if parts.peek().is_none() {
            return rustix::fs::openat(at, part, open_flags(), Mode::empty());
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        folder = Some(rustix::fs::openat(at, part, flags, Mode::empty())?);
    }
    Err(rustix::io::Errno::NOENT)
}

/// Reads what the page cache holds of `buf.len()` bytes at `offset`,
/// without waiting for the disk; the number of bytes read (0 if none).
fn read_cached(f: &std::fs::File, buf: &mut [u8], offset: u64) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let mut slices = [std::io::IoSliceMut::new(&mut buf[done..])];
        match rustix::io::preadv2(f, &mut slices, offset + done as u64, rustix::io::ReadWriteFlags::NOWAIT) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n,
        }
    }
    done
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn not_found() -> Response {
    ApiError::not_found("no such file").into_response()
}

fn if_range_holds(headers: &HeaderMap, etag: &str, modified: SystemTime) -> bool {
    match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(v) if v.starts_with('"') => v == etag,
        Some(v) => httpdate::parse_http_date(v).is_ok_and(|d| {
            modified.duration_since(UNIX_EPOCH).map(|m| m.as_secs()).unwrap_or(0)
                == d.duration_since(UNIX_EPOCH).map(|m| m.as_secs()).unwrap_or(1)
        }),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    /// Serve the whole file (malformed or several ranges: RFC 9110 lets us ignore them).
    Ignore,
    Unsatisfiable,
    /// First and last byte, inclusive.
    Bytes(u64, u64),
}

fn parse_range(value: &str, len: u64) -> RangeSpec {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return RangeSpec::Ignore };
    if spec.contains(',') {
        return RangeSpec::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeSpec::Ignore };
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeSpec::Ignore,
        (true, false) => match b.parse::<u64>() {
            Ok(0) => RangeSpec::Unsatisfiable,
            Ok(n) if len > 0 => RangeSpec::Bytes(len.saturating_sub(n), len - 1),
            Ok(_) => RangeSpec::Unsatisfiable,
            Err(_) => RangeSpec::Ignore,
        },
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else { return RangeSpec::Ignore };
            let end = if b.is_empty() { Ok(len.saturating_sub(1)) } else { b.parse::<u64>() };
            match end {
                Err(_) => RangeSpec::Ignore,
                Ok(_) if start >= len => RangeSpec::Unsatisfiable,
                Ok(end) if end < start => RangeSpec::Ignore,
                Ok(end) => RangeSpec::Bytes(start, end.min(len - 1)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), RangeSpec::Bytes(0, 99));
        assert_eq!(parse_range("bytes=900-", 1000), RangeSpec::Bytes(900, 999));
        assert_eq!(parse_range("bytes=-100", 1000), RangeSpec::Bytes(900, 999));
        assert_eq!(parse_range("bytes=990-2000", 1000), RangeSpec::Bytes(990, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=5000-", 1024), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 1000), RangeSpec::Ignore);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), RangeSpec::Ignore);
        assert_eq!(parse_range("items=0-1", 1000), RangeSpec::Ignore);
        assert_eq!(parse_range("bytes=-0", 1000), RangeSpec::Unsatisfiable);
    }

    #[tokio::test]
    async fn a_large_file_is_streamed_whole_and_a_shrunk_one_is_an_error() {
        use http_body_util::BodyExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.bin");
        let content: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).expect("write");
        let open = || std::fs::File::open(&path).expect("open");
        let got = stream(open(), 1000, 300_000).collect().await.expect("whole body").to_bytes();
        assert_eq!(got.as_ref(), &content[1000..300_000]);
        // The length was promised in Content-Length: a file cut short meanwhile
        // ends the body with an error (the connection is closed), never with
        // fewer bytes passed off as the whole.
        let body = stream(open(), 0, 400_000);
        std::fs::write(&path, &content[..100_000]).expect("truncate");
        assert!(body.collect().await.is_err());
    }

    #[test]
    fn paths_to_one_file_share_what_is_known_of_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("www");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("index.html"), "home").expect("write");
        std::fs::write(root.join("sub/a.txt"), "nested").expect("write");
        std::os::unix::fs::symlink(root.join("index.html"), root.join("alias.html")).expect("symlink");
        let w = Webroot::new(&root).expect("webroot");
        let a = w.resolve_cached("/").expect("the folder's index");
        let b = w.resolve_cached("/index.html").expect("the file");
        let c = w.resolve_cached("/alias.html").expect("a link to it");
        assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&b, &c));
        assert!(w.resolve_cached("/missing.html").is_none());
        assert_eq!(w.stat(&a).map(|s| s.len), Some(4));
        let nested = w.resolve_cached("/sub/a.txt").expect("nested");
        assert_eq!(w.open(&nested).map(|(_, s)| s.len), Some(6), "opened relative to the folder");
        // Content kept for one path is kept for all, and counted once.
        let (_, seen) = w.open(&a).expect("open");
        let info = w.info(&a, seen);
        for t in [&a, &b, &c] {
            let with_data = FileInfo { data: Some(Bytes::from_static(b"home")), ..FileInfo::clone(&info) };
            w.remember(t, Arc::new(with_data));
        }
        assert_eq!(w.cache_read().bytes, 4);
        assert!(w.known(&c, &w.stat(&c).expect("stat")).is_some_and(|i| i.data.is_some()));
        // A new version of the file is seen through every path.
        std::fs::write(root.join("index.html"), "home, changed").expect("write");
        let seen = w.stat(&b).expect("stat");
        assert_eq!(seen.len, 13);
        assert!(w.known(&c, &seen).is_none(), "the old version does not answer");
        let (_, seen) = w.open(&c).expect("open");
        let info = w.info(&c, seen);
        assert!(info.data.is_none() && info.len == 13);
        assert_eq!(w.cache_read().bytes, 0, "the old content is no longer counted");
    }

    /// A folder of the webroot swapped for a link to a secret folder after
    /// its files were served: the link is never followed, whatever was
    /// remembered (content, headers, the resolved path), in both ways of
    /// opening.
    fn a_swapped_folder_leads_nowhere(openat2: bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (root, secret) = (dir.path().join("www"), dir.path().join("data"));
        std::fs::create_dir_all(root.join("sub/certs")).expect("mkdir");
        std::fs::create_dir_all(secret.join("certs")).expect("mkdir");
        let big: Vec<u8> = vec![b'p'; 300_000];
        std::fs::write(root.join("sub/certs/factory.pem"), "public").expect("write");
        std::fs::write(root.join("sub/big.bin"), &big).expect("write");
        std::fs::write(secret.join("certs/factory.pem"), "PRIVATE KEY").expect("write");
        std::fs::write(secret.join("big.bin"), vec![b'S'; 300_000]).expect("write");
        let w = Webroot::new(&root).expect("webroot");
        w.openat2.store(openat2, Ordering::Relaxed);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let get = |path: &str| -> (StatusCode, Vec<u8>) {
            rt.block_on(async {
                use http_body_util::BodyExt;
                let r = w.serve(&Method::GET, path, &HeaderMap::new()).await;
                let status = r.status();
                (status, r.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default())
            })
        };
        assert_eq!(get("/sub/certs/factory.pem"), (StatusCode::OK, b"public".to_vec()));
        assert_eq!(get("/sub/big.bin").1, big);
        // A link inside the folder is fine.
        std::fs::rename(root.join("sub"), root.join("real-sub")).expect("move");
        std::os::unix::fs::symlink(root.join("real-sub"), root.join("sub")).expect("symlink");
        assert_eq!(get("/sub/certs/factory.pem"), (StatusCode::OK, b"public".to_vec()));
        // A link out of it is never followed, whatever was remembered.
        std::fs::remove_file(root.join("sub")).expect("unlink");
        std::os::unix::fs::symlink(&secret, root.join("sub")).expect("symlink");
        for path in ["/sub/certs/factory.pem", "/sub/big.bin"] {
            let (status, body) = get(path);
            assert_eq!(status, StatusCode::NOT_FOUND, "{path} through the link (openat2: {openat2})");
            assert!(!body.contains(&b'S') && !body.windows(7).any(|b| b == b"PRIVATE"), "{path}");
        }
        assert_eq!(w.openat2.load(Ordering::Relaxed), openat2);
    }

    #[test]
    fn a_swapped_folder_leads_nowhere_with_openat2() {
        a_swapped_folder_leads_nowhere(true);
    }

    #[test]
    fn a_swapped_folder_leads_nowhere_component_by_component() {
        a_swapped_folder_leads_nowhere(false);
    }

    #[test]
    fn opening_beneath_refuses_every_link_and_dot_dot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("www");
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        std::fs::write(root.join("a/b/f.txt"), "f").expect("write");
        std::fs::write(dir.path().join("out.txt"), "o").expect("write");
        std::os::unix::fs::symlink(root.join("a"), root.join("link-dir")).expect("symlink");
        std::os::unix::fs::symlink("b/f.txt", root.join("a/rel-link.txt")).expect("symlink");
        std::os::unix::fs::symlink(dir.path().join("out.txt"), root.join("out-link.txt")).expect("symlink");
        let folder = std::fs::File::open(&root).expect("open");
        let c = |s: &str| CString::new(s).expect("c string");
        for open in [open_beneath, open_by_components] {
            assert!(open(folder.as_fd(), &c("a/b/f.txt")).is_ok());
            for bad in ["link-dir/b/f.txt", "a/rel-link.txt", "out-link.txt", "../out.txt", "a/../../out.txt"]
            {
                assert!(open(folder.as_fd(), &c(bad)).is_err(), "{bad}");
            }
        }
    }

    #[test]
    fn nothing_outside_the_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("www");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("index.html"), "home").expect("write");
        std::fs::write(root.join("sub/a.txt"), "a").expect("write");
        std::fs::write(root.join(".secret"), "s").expect("write");
        std::fs::write(dir.path().join("outside.txt"), "o").expect("write");
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), root.join("link.txt")).expect("symlink");
        std::os::unix::fs::symlink(root.join("sub/a.txt"), root.join("inner.txt")).expect("symlink");
        let w = Webroot::new(&root).expect("webroot");
        assert!(w.resolve("/").is_some_and(|p| p.ends_with("index.html")));
        assert!(w.resolve("/sub/a.txt").is_some());
        assert!(w.resolve("/inner.txt").is_some(), "links inside the folder are fine");
        for bad in [
            "/../outside.txt",
            "/sub/../../outside.txt",
            "/%2e%2e/outside.txt",
            "/sub/%2E%2E/%2E%2E/outside.txt",
            "/.secret",
            "/link.txt",
            "/sub%2f..%2f..%2foutside.txt",
            "/a%00.txt",
            "/..%5coutside.txt",
            "/%ff",
        ] {
            assert!(w.resolve(bad).is_none(), "{bad} must not resolve");
        }
    }
}
