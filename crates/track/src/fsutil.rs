//! Atomic file writes: a reader sees the old file or the new one, never half of one.

use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` via a temporary sibling, fsync, then rename over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like [`write_atomic`], with the content produced by `fill` into the temporary file.
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        fill(&mut f)?;
        kill_point(name);
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Remove temporary files (`.NAME.tmpPID`) that a killed writer left in `dir`: those of other processes that
/// are no longer alive, and — with `all_foreign` (a directory this process holds the lock of) — those of any
/// other process. A crash mid-write leaves only such a file beside the intact old target.
pub fn remove_stale_temps(dir: &Path, all_foreign: bool) -> std::io::Result<usize> {
    let me = std::process::id();
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp")).and_then(|(_, pid)| pid.parse::<u32>().ok()) else {
            continue;
        };
        let alive = Path::new(&format!("/proc/{pid}")).exists();
        if pid != me && (all_foreign || !alive) {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Fault injection for the crash tests (`tests/runner.rs`): with `VAELAB_KILL_AT=SUBSTRING:N` set, the N-th
/// atomic write of a file whose name contains SUBSTRING SIGKILLs this process after the temporary file is
/// filled and before it is renamed — the worst moment to die. Read once; unset, it costs one branch.
fn kill_point(name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static TARGET: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
    static SEEN: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let v = std::env::var("VAELAB_KILL_AT").ok()?;
        let (what, n) = v.rsplit_once(':')?;
        Some((what.to_string(), n.parse().ok()?))
    });
    if let Some((what, n)) = target {
        if name.contains(what.as_str()) && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }
}
