//! System calls portcullis needs that its dependencies wrap only as unsafe
//! functions. The rest of the workspace forbids `unsafe`; here it is denied
//! except on the two items below (`advise`, `trim_glibc`), each saying why
//! it is sound.

use std::io::{self, BufRead};

/// What [`trim_executable_pages`] handed back to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trimmed {
    /// Mappings of the executable that were advised.
    pub mappings: usize,
    /// Their resident size before, in bytes.
    pub resident_before: u64,
}

/// One read-only, unmodified mapping of the executable file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    rss_kib: u64,
}

/// Gives the executable's resident code and read-only data back to the
/// kernel, so that only the pages used from then on come back.
///
/// Why: start-up runs code that never runs again (argument parsing,
/// configuration, certificate generation), and the kernel maps the binary in
/// whole page-cache folios (up to 2 MiB when the file was written or read
/// ahead in large pieces), so after start the resident set holds most of the
/// binary. After this call the pages are unmapped and, where no one else maps
/// them, dropped from the page cache; a later use reads them back in small
/// folios, and only the neighbourhood of what runs is mapped again.
///
/// The pages are clean copies of the file, so no data changes; the cost is a
/// read from the file the next time a dropped page is used. A folio still
/// mapped (by another thread running in it meanwhile, or by another process
/// running the same binary) stays; calling this again once start-up has
/// settled gives the first kind back too. Needs no privilege.
///
/// Linux only: elsewhere it returns an error of kind `Unsupported` and
/// changes nothing.
pub fn trim_executable_pages() -> io::Result<Trimmed> {
    #[cfg(target_os = "linux")]
    return trim_linux();
    #[cfg(not(target_os = "linux"))]
    return Err(io::Error::new(io::ErrorKind::Unsupported, "only on Linux"));
}

#[cfg(target_os = "linux")]
fn trim_linux() -> io::Result<Trimmed> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_str().ok_or_else(|| io::Error::other("the executable's path is not UTF-8"))?;
    // Read line by line: the whole text would be this call's largest allocation.
    let smaps = io::BufReader::new(std::fs::File::open("/proc/self/smaps")?);
    let mappings = file_mappings(smaps, exe)?;
    let mut trimmed = Trimmed::default();
    for m in mappings {
        advise(m)?;
        trimmed.mappings += 1;
        trimmed.resident_before += m.rss_kib * 1024;
    }
    // Unmapping leaves the pages in the page cache, in the large folios a
    // later fault would map whole again; dropping the file's unmapped pages
    // from the cache makes later faults read small ones.
    let file = std::fs::File::open("/proc/self/exe")?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(trimmed)
}

/// Advises one mapping: random access (no read-ahead on later faults, where
/// the kernel honours it for code), then "don't need" (unmap its pages).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn advise(m: Mapping) -> io::Result<()> {
    use rustix::mm::{Advice, madvise};
    let (addr, len) = (m.start as *mut std::ffi::c_void, m.end - m.start);
    // SAFETY: the range is exactly one mapping the kernel listed for this
    // process in /proc/self/smaps: private, not writable, backed by the
    // executable file and with no anonymous (copied-on-write) page. Neither
    // advice changes what the range reads: MADV_RANDOM only turns off
    // read-ahead, and MADV_DONTNEED on a private file mapping drops its
    // pages, which a later access maps again from the file: the same bytes,
    // since the range holds no copied page and a running executable cannot
    // be written (ETXTBSY). Nothing in this program unmaps or remaps its own
    // executable, so the range stays valid.
    unsafe { madvise(addr, len, Advice::Random) }?;
    // SAFETY: as above.
    unsafe { madvise(addr, len, Advice::LinuxDontNeed) }?;
    Ok(())
}

/// Hands the heap's free memory back to the kernel; `Ok(true)` when some
/// was returned.
///
/// Why: glibc keeps memory that was freed in its arenas for reuse, and
/// returns on its own only what lies at the top of an arena. After a burst
/// — a thousand connections that closed, or went idle and gave back their
/// buffers — most of the freed memory lies between blocks still in use and
/// would stay resident for good. `malloc_trim(0)` walks every arena and
/// returns each free page (`MADV_DONTNEED`), whatever its place. It costs
/// a walk of the heap under the allocator's locks (well under a
/// millisecond for a few MiB): call it after such a burst, not per request.
///
/// With glibc only: elsewhere it returns an error of kind `Unsupported` and
/// changes nothing (musl's allocator unmaps freed memory by itself).
pub fn trim_heap() -> io::Result<bool> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    return Ok(trim_glibc());
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    return Err(io::Error::new(io::ErrorKind::Unsupported, "only with glibc"));
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim_glibc() -> bool {
    // SAFETY: malloc_trim takes a number (the padding to keep at the top of
    // the heap) and no pointer; it works on the allocator's own structures
    // under their locks, so any thread may call it at any time (glibc marks
    // it MT-Safe), and it frees no block in use: it only returns pages that
    // lie wholly inside free chunks.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// The mappings in `smaps` of the file `exe` that are private, not writable
/// and hold no anonymous page: code and read-only data as the file has them.
/// The relocated read-only data (RELRO) is left alone: its pages are copies.
fn file_mappings(smaps: impl BufRead, exe: &str) -> io::Result<Vec<Mapping>> {
    let mut out = Vec::new();
    let mut current: Option<(Mapping, bool)> = None;
    for line in smaps.lines() {
        let line = line?;
        let line = line.as_str();
        if let Some((m, path)) = header(line) {
            let ok = path.is_some_and(|(perms, path)| eligible(perms, path, exe));
            if let Some((done, true)) = current.replace((m, ok)) {
                out.push(done);
            }
            continue;
        }
        let Some((m, ok)) = current.as_mut() else { continue };
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next().and_then(|v| v.parse::<u64>().ok())) {
            (Some("Rss:"), Some(kib)) => m.rss_kib = kib,
            (Some("Anonymous:"), Some(kib)) if kib > 0 => *ok = false,
            _ => {}
        }
    }
    if let Some((done, true)) = current {
        out.push(done);
    }
    Ok(out)
}

/// A mapping's header line: its range, and its permissions and path when it has a path.
fn header(line: &str) -> Option<(Mapping, Option<(&str, &str)>)> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    if perms.len() != 4 || end <= start {
        return None;
    }
    // offset, device, inode, then the path after the padding.
    let (_, _, _) = (fields.next()?, fields.next()?, fields.next()?);
    let path = fields.next().map(str::trim_start).filter(|p| !p.is_empty());
    Some((Mapping { start, end, rss_kib: 0 }, path.map(|p| (perms, p))))
}

fn eligible(perms: &str, path: &str, exe: &str) -> bool {
    let p = perms.as_bytes();
    path == exe && p[0] == b'r' && p[1] == b'-' && p[3] == b'p'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mappings(smaps: &str, exe: &str) -> Vec<Mapping> {
        file_mappings(smaps.as_bytes(), exe).expect("parse")
    }

    const SMAPS: &str = "\
55bea75b5000-55bea7859000 r--p 00000000 fd:00 1234                       /opt/portcullis/bin/portcullis
Size:               2704 kB
Rss:                1196 kB
Anonymous:             0 kB
55bea7859000-55bea8179000 r-xp 002a3000 fd:00 1234                       /opt/portcullis/bin/portcullis
Size:               9344 kB
Rss:                6208 kB
Anonymous:             0 kB
55bea8179000-55bea81be000 r--p 00bc2000 fd:00 1234                       /opt/portcullis/bin/portcullis
Size:                276 kB
Rss:                 276 kB
Anonymous:           276 kB
55bea81be000-55bea81c2000 rw-p 00c06000 fd:00 1234                       /opt/portcullis/bin/portcullis
Rss:                  16 kB
Anonymous:            16 kB
55bea81c2000-55bea81c6000 rw-p 00000000 00:00 0 
Rss:                  16 kB
Anonymous:            16 kB
7fcfb1301000-7fcfb1457000 r-xp 00028000 fd:00 99                         /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1020 kB
Anonymous:             0 kB
7fcfb1500000-7fcfb1501000 r-xp 00000000 fd:00 1234                       /opt/portcullis/bin/portcullis
Rss:                   4 kB
Anonymous:             4 kB
";

    #[test]
    fn only_the_executables_clean_read_only_mappings() {
        let got = mappings(SMAPS, "/opt/portcullis/bin/portcullis");
        assert_eq!(
            got,
            vec![
                Mapping { start: 0x55bea75b5000, end: 0x55bea7859000, rss_kib: 1196 },
                Mapping { start: 0x55bea7859000, end: 0x55bea8179000, rss_kib: 6208 },
            ]
        );
    }

    #[test]
    fn another_path_or_a_path_with_spaces_is_matched_whole() {
        assert!(mappings(SMAPS, "/opt/portcullis/bin/portcullis2").is_empty());
        let spaced =
            "1000-2000 r-xp 00000000 fd:00 7    /opt/my dir/portcullis\nRss: 4 kB\nAnonymous: 0 kB\n";
        assert_eq!(mappings(spaced, "/opt/my dir/portcullis").len(), 1);
        assert!(mappings(spaced, "/opt/my").is_empty());
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "zzzz-2000 r-xp 0 0 0 /x\n2000-1000 r-xp 0 0 0 /x\n1000-2000 rx 0 0 0 /x\nRss: 4 kB\n";
        assert!(mappings(text, "/x").is_empty());
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_heap_memory_goes_back_and_the_heap_still_works() {
        // Many blocks freed while one later block stays: the freed memory
        // sits below a block in use, where glibc does not trim by itself.
        let mut blocks: Vec<Vec<u8>> = (0..2048).map(|i| vec![i as u8; 16 * 1024]).collect();
        let keep = vec![7u8; 1024];
        blocks.truncate(1);
        assert!(trim_heap().expect("malloc_trim"), "32 MiB lay free below a block in use");
        // Nothing in use was touched, and the heap still serves.
        assert!(keep.iter().all(|&b| b == 7));
        assert!(blocks[0].iter().all(|&b| b == 0));
        let again: Vec<u8> = vec![9; 64 * 1024];
        assert_eq!(again.iter().map(|&b| u64::from(b)).sum::<u64>(), 9 * 64 * 1024);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn trims_this_test_binary_and_it_still_runs() {
        let first = trim_executable_pages().expect("trim");
        assert!(first.mappings >= 1, "{first:?}");
        assert!(first.resident_before > 0, "{first:?}");
        // Code and constants still read the same after the pages went back.
        assert_eq!(format!("{:x}", 0xdead_beef_u32), "deadbeef");
        let second = trim_executable_pages().expect("trim again");
        assert_eq!(second.mappings, first.mappings);
    }
}
