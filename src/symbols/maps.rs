//! `/proc/PID/maps`.
use std::path::PathBuf;

use crate::addr::{FileOffset, Pid, RuntimeAddr};
use crate::error::Result;

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First byte.
    pub start: RuntimeAddr,
    /// One past the last byte.
    pub end: RuntimeAddr,
    /// `r` permission.
    pub read: bool,
    /// `w` permission.
    pub write: bool,
    /// `x` permission.
    pub exec: bool,
    /// File offset of `start`.
    pub offset: FileOffset,
    /// Device, as printed (`fd:01`).
    pub dev: String,
    /// Inode (0 for anonymous mappings).
    pub inode: u64,
    /// The pathname column, as printed (`/usr/lib/…/libc.so.6`, `[stack]`, empty …),
    /// with a ` (deleted)` suffix removed.
    pub name: String,
}

impl Mapping {
    /// The file behind the mapping, for file-backed mappings (inode != 0, absolute path).
    pub fn path(&self) -> Option<PathBuf> {
        todo!()
    }
}

/// Parses the text of a maps file. Malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Mapping> {
    todo!("{text}")
}

/// Reads and parses `/proc/PID/maps`.
pub fn read(pid: Pid) -> Result<Vec<Mapping>> {
    todo!("{pid}")
}
