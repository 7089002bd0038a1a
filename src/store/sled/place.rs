//! Whether the store's files are still the ones it opened.
//!
//! A store directory removed (or unmounted, or replaced) under a running gateway does not stop it:
//! the files it holds open still take writes, which land in files nobody will read again, and the
//! events are gone at the next start. So before it takes events, the commit thread compares the
//! device and inode of the store's directories, as their paths name them now, with those it opened
//! (a few `stat` calls per group commit), and the event log does the same for its open segment
//! (see `LogHealth::check_segment`). A difference refuses the accepts (503) until it is gone.
//!
//! A directory removed for good may leave its inode number free for the next one made, so that a
//! store made again in its place can look the same here; the open segment cannot, since hookgate
//! holds it open, and its link count says that it was removed.

use std::{
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// The identity (device, inode) of each of the store's directories, as opened.
#[derive(Debug)]
pub(super) struct Place {
    dirs: Vec<(PathBuf, u64, u64)>,
}

impl Place {
    /// Records `dirs` as they are now.
    pub(super) fn record(dirs: &[&Path]) -> io::Result<Self> {
        let dirs = dirs
            .iter()
            .map(|dir| {
                let meta = std::fs::metadata(dir)?;
                Ok((dir.to_path_buf(), meta.dev(), meta.ino()))
            })
            .collect::<io::Result<_>>()?;
        Ok(Self { dirs })
    }

    /// Whether every directory's path still names the directory opened.
    pub(super) fn check(&self) -> Result<(), Moved> {
        for (path, dev, ino) in &self.dirs {
            match std::fs::metadata(path) {
                Ok(meta) if (meta.dev(), meta.ino()) == (*dev, *ino) => {}
                Ok(_) => return Err(Moved::new(path, "another directory is there now")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Moved::new(path, "it was removed"))
                }
                Err(_) => return Err(Moved::new(path, "it cannot be read")),
            }
        }
        Ok(())
    }
}

/// A file or directory of the store that is gone, or is not the one opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} is not the store hookgate opened: {why}")]
pub struct Moved {
    /// The path.
    pub path: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl Moved {
    pub(super) fn new(path: &Path, why: &'static str) -> Self {
        Self {
            path: path.display().to_string(),
            why,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_removed_or_replaced_is_noticed() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("store");
        std::fs::create_dir(&dir).expect("create");
        let place = Place::record(&[&dir]).expect("record");
        assert_eq!(place.check(), Ok(()));
        // Moved aside: the directory opened lives on, so its inode number cannot be reused.
        std::fs::rename(&dir, root.path().join("aside")).expect("move aside");
        assert_eq!(place.check().map_err(|m| m.why), Err("it was removed"));
        std::fs::create_dir(&dir).expect("create another");
        assert_eq!(
            place.check().map_err(|m| m.why),
            Err("another directory is there now")
        );
    }
}
