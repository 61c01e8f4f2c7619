//! The shared mapping of the header file, seen only as aligned `AtomicU64` words.
//!
//! No byte slice is ever formed over the mapping: other processes write it concurrently,
//! and a Rust slice over memory that changes under it is undefined behaviour. Every access
//! goes through [`ShmMap::word`], one 8-byte atomic at a time.

use std::fs::File;
use std::sync::atomic::AtomicU64;

use memmap2::{MmapOptions, MmapRaw};

use super::layout::WORD_BYTES;

/// A `MAP_SHARED` mapping of the first `words` words of the header file.
pub(crate) struct ShmMap {
    raw: MmapRaw,
    words: usize,
    writable: bool,
}

impl ShmMap {
    /// Maps `words` words of `file`, read-write when `writable`. The file must be at least
    /// that long (checked here, so no access can fault past its end).
    pub fn new(file: &File, words: usize, writable: bool) -> std::io::Result<ShmMap> {
        let len = (words * WORD_BYTES) as u64;
        let file_len = file.metadata()?.len();
        if file_len < len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("header file holds {file_len} bytes, {len} are needed"),
            ));
        }
        let mut opts = MmapOptions::new();
        opts.len(len as usize);
        let raw = if writable {
            opts.map_raw(file)?
        } else {
            opts.map_raw_read_only(file)?
        };
        assert_eq!(
            raw.as_ptr() as usize % WORD_BYTES,
            0,
            "mmap is page aligned"
        );
        Ok(ShmMap {
            raw,
            words,
            writable,
        })
    }

    /// Whether the mapping may be written (stores through [`ShmMap::word`] are allowed).
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Word `index` as an atomic. Panics when `index` is outside the mapping.
    ///
    /// On a read-only mapping the caller may only load, with `Relaxed` ordering (ordering
    /// comes from fences): the standard library allows relaxed loads of lock-free atomics
    /// of register width on read-only memory, and nothing else.
    #[inline]
    pub fn word(&self, index: usize) -> &AtomicU64 {
        assert!(
            index < self.words,
            "header word {index} is outside the mapping"
        );
        // SAFETY: the mapping is page aligned (checked in `new`) and `index * 8` is a
        // multiple of 8, so the pointer is aligned for `AtomicU64`; `index < words` keeps
        // the 8 bytes inside the mapping, which `new` checked the file covers, and shardwal
        // never shrinks the file. The memory stays mapped for as long as `self` (and so the
        // returned reference) lives. Every process accesses these bytes only as 8-byte
        // atomics at the same offsets, so there is no mixed-size or non-atomic access. On a
        // read-only mapping the reference is only used for relaxed loads (see above), which
        // never write.
        unsafe { &*(self.raw.as_mut_ptr().add(index * WORD_BYTES) as *const AtomicU64) }
    }
}
