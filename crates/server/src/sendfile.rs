//! Large static files over plain HTTP/1 sent with `sendfile(2)`: the kernel
//! moves the file's pages to the socket, with no copy through the server.
//!
//! hyper owns the connection's writes, so the body cannot write the file
//! itself. Instead its frames are *placeholders*: slices of [`MARK`], a
//! static region nobody reads or writes. The body records, for each
//! placeholder it yields, which bytes of which file it stands for (a
//! [`Segment`] in the connection's [`Lane`]); when hyper hands a placeholder
//! to the connection's stream to write, the stream sends those bytes of the
//! file instead ([`Lane::poll_send`]). hyper queues body frames without
//! copying them when it writes vectored (its `writev` setting, forced on for
//! these connections), so a placeholder reaches the stream as the very slice
//! the body made: its address says which segment it is. A placeholder that
//! matches no segment, or a file that ends early, ends the connection with an
//! error: a client never gets the placeholder's bytes.
//!
//! Only plain HTTP/1 connections have a lane (TLS encrypts in user space,
//! HTTP/2 frames its data itself). Like nginx's and lighttpd's `sendfile`, a
//! page the page cache does not hold is read from the disk while the worker
//! waits; a device's webroot is small and its pages stay cached.
//!
//! A leaf: it imports nothing of this crate.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// The most bytes one placeholder stands for.
#[cfg(feature = "webroot")]
const CHUNK: usize = 1024 * 1024;

/// The placeholders' region: twice [`CHUNK`], so that consecutive
/// placeholders can start at different places and end at different
/// addresses. A read-only mapping nothing touches: it takes no memory, and
/// no room in the binary (a zeroed `static` would be read-only data).
/// `None` when it could not be mapped: large files are then read and copied.
static MARK: std::sync::OnceLock<Option<&'static [u8]>> = std::sync::OnceLock::new();

/// The placeholders' region, mapped at first use.
#[cfg(feature = "webroot")]
fn mark() -> Option<&'static [u8]> {
    *MARK.get_or_init(|| match portcullis_sys::untouched_region(2 * CHUNK) {
        Ok(region) => Some(region),
        Err(e) => {
            tracing::warn!(error = %e, "large files are copied: no region for sendfile's placeholders");
            None
        }
    })
}

/// Whether `slice` lies in the placeholders' region.
fn is_placeholder(slice: &[u8]) -> bool {
    // Not mapped yet: no placeholder exists (and none is mapped for asking).
    let Some(Some(region)) = MARK.get() else { return false };
    let region = region.as_ptr_range();
    let (start, end) = (slice.as_ptr(), slice.as_ptr().wrapping_add(slice.len()));
    !slice.is_empty() && start >= region.start && end <= region.end
}

/// Bytes of a file that a placeholder stands for.
struct Segment {
    file: Arc<File>,
    /// The file offset of the segment's first byte.
    start: u64,
    /// The file offset of the next byte to send.
    offset: u64,
    /// Bytes still to send.
    left: usize,
    /// The address where the placeholder ends in [`MARK`]: what hyper
    /// still has to write of it always ends there.
    end: usize,
}

/// A plain HTTP/1 connection's queue of file segments, in the order of
/// their placeholders.
#[derive(Default)]
pub struct Lane {
    segments: Mutex<VecDeque<Segment>>,
    /// Where the next placeholder starts in [`MARK`] (alternating halves).
    #[cfg(feature = "webroot")]
    next_start: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane").finish_non_exhaustive()
    }
}

impl Lane {
    /// A new, empty lane.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn segments(&self) -> std::sync::MutexGuard<'_, VecDeque<Segment>> {
        self.segments.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A placeholder for `len` (≤ [`CHUNK`]) bytes of `file` at `offset`.
    #[cfg(feature = "webroot")]
    fn placeholder(&self, mark: &'static [u8], file: &Arc<File>, offset: u64, len: usize) -> bytes::Bytes {
        use std::sync::atomic::Ordering;
        // Starts alternate between the region's halves (and move by a byte
        // each time), so that no two queued placeholders end at the same
        // address.
        let n = self.next_start.fetch_add(1, Ordering::Relaxed);
        let start = (n % 2) * CHUNK + (n / 2) % 64;
        let start = start.min(mark.len() - len);
        let slice = &mark[start..start + len];
        self.segments().push_back(Segment {
            file: file.clone(),
            start: offset,
            offset,
            left: len,
            end: slice.as_ptr_range().end as usize,
        });
        bytes::Bytes::from_static(slice)
    }

    /// Whether any of `bufs` is a placeholder: `Some(i)` for the first.
    pub fn first_placeholder(bufs: &[io::IoSlice<'_>]) -> Option<usize> {
        bufs.iter().position(|b| is_placeholder(b))
    }

    /// Whether `buf` is a placeholder.
    pub fn is_placeholder(buf: &[u8]) -> bool {
        is_placeholder(buf)
    }

    /// Sends the file bytes that `placeholder` (what hyper still has to
    /// write of one) stands for, as far as the socket takes them now: the
    /// number of bytes sent, to be reported to hyper as written.
    pub fn poll_send(
        &self,
        socket: &TcpStream,
        cx: &mut Context<'_>,
        placeholder: &[u8],
    ) -> Poll<io::Result<usize>> {
        let end = placeholder.as_ptr_range().end as usize;
        loop {
            std::task::ready!(socket.poll_write_ready(cx))?;
            let mut segments = self.segments();
            let Some(seg) = segments.front_mut() else {
                return Poll::Ready(Err(io::Error::other("a file placeholder with no file behind it")));
            };
            if seg.end != end || seg.left != placeholder.len() {
                return Poll::Ready(Err(io::Error::other("a file placeholder out of order")));
            }
            let sent = socket.try_io(Interest::WRITABLE, || {
                let mut offset = seg.offset;
                rustix::fs::sendfile(socket, &*seg.file, Some(&mut offset), seg.left).map_err(io::Error::from)
            });
            match sent {
                // The file is shorter than its Content-Length promised.
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank")));
                }
                Ok(n) => {
                    seg.offset += n as u64;
                    seg.left -= n;
                    if seg.left == 0 {
                        tracing::debug!(from = seg.start, to = seg.offset, "file bytes sent with sendfile");
                        segments.pop_front();
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// The body of bytes `start..end` of `file`, as placeholders on `lane`;
/// the file back when placeholders cannot be made.
#[cfg(feature = "webroot")]
pub fn body(lane: Arc<Lane>, file: File, start: u64, end: u64) -> Result<axum::body::Body, File> {
    let Some(mark) = mark() else { return Err(file) };
    let file = Arc::new(file);
    let chunks = futures_util::stream::unfold(start, move |at| {
        let (lane, file) = (lane.clone(), file.clone());
        async move {
            if at >= end {
                return None;
            }
            let len = (end - at).min(CHUNK as u64) as usize;
            Some((Ok::<_, io::Error>(lane.placeholder(mark, &file, at, len)), at + len as u64))
        }
    });
    Ok(axum::body::Body::from_stream(chunks))
}

#[cfg(all(test, feature = "webroot"))]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_recognised_by_address_and_end_apart() {
        let lane = Lane::new();
        let file = Arc::new(File::open("/dev/null").expect("/dev/null"));
        let mark = mark().expect("the region");
        let a = lane.placeholder(mark, &file, 0, CHUNK);
        let b = lane.placeholder(mark, &file, CHUNK as u64, 10);
        assert!(is_placeholder(&a) && is_placeholder(&b[3..]));
        assert_ne!(a.as_ptr_range().end, b.as_ptr_range().end);
        // The same bytes elsewhere are not a placeholder.
        assert!(!is_placeholder(&[0u8; 10]));
        assert!(!is_placeholder(&[]));
        let bufs = [io::IoSlice::new(b"HTTP/1.1 200 OK\r\n"), io::IoSlice::new(&a)];
        assert_eq!(Lane::first_placeholder(&bufs), Some(1));
        assert_eq!(lane.segments().len(), 2);
    }
}
