//! A lock file so two runners never train the same trials at once.
//!
//! `vaelab run` holds `<sweep>/.lock` (or `<trial>/.lock` with `--trial K`, so a Slurm array's tasks run side by
//! side); the file names the owner's pid and host. A second runner refuses with that owner; a lock whose
//! process is gone (same host, no such pid) is stale and taken over.

use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct DirLock {
    path: PathBuf,
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl DirLock {
    pub fn acquire(dir: &Path) -> anyhow::Result<DirLock> {
        let path = dir.join(".lock");
        let me = format!("pid {} host {}\n", std::process::id(), host());
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(me.as_bytes())?;
                    f.sync_all()?;
                    return Ok(DirLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path).unwrap_or_default();
                    let mut it = owner.split_whitespace();
                    let (pid, h) = match (it.next(), it.next(), it.next(), it.next()) {
                        (Some("pid"), Some(p), Some("host"), Some(h)) => (p.parse::<u32>().ok(), h.to_string()),
                        _ => (None, String::new()),
                    };
                    match pid {
                        Some(p) if h == host() && !alive(p) => {
                            eprintln!("vaelab: taking over the stale lock {} (pid {p} is gone)", path.display());
                            std::fs::remove_file(&path).ok();
                        }
                        Some(p) => anyhow::bail!(
                            "{} is in use by another vaelab run (pid {p} on host {h}); wait for it to finish, or delete {} if that run is dead",
                            dir.display(),
                            path.display()
                        ),
                        None => anyhow::bail!("{} holds an unreadable lock {}; delete it if no run is using the directory", dir.display(), path.display()),
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        anyhow::bail!("could not take the lock {}", path.display())
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
