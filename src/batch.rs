//! What a batch of records may hold, checked before anything is appended.
//!
//! A batch ([`crate::Shard::append_batch`], [`crate::Client::append_batch`]) gets
//! contiguous LSNs, so while it is being copied into the ring no other append of the shard
//! may slip between its records. Its frames must therefore fit in the ring's flush buffers
//! together: `flush_buffer_count x (flush_buffer_bytes - FLUSH_BUFFER_OVERHEAD_BYTES)`
//! bytes, the room every buffer has after its marker, a segment header block and padding.
//! A larger batch could not be appended without waiting for its own first buffers to be
//! written, and it would hold every other writer of the shard back meanwhile. The check
//! runs on the caller's side of the client too, so a bad batch never crosses a thread.

use crate::config::{WalConfig, FLUSH_BUFFER_OVERHEAD_BYTES};
use crate::error::{Error, Result};
use crate::record::frame_bytes;

/// The size limits a batch is checked against, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchLimits {
    /// Largest record payload, in bytes.
    pub max_record_bytes: usize,
    /// Largest sum of the batch's frame lengths, in bytes.
    pub max_batch_bytes: usize,
}

impl BatchLimits {
    /// The limits of a shard opened with `config`.
    pub fn of(config: &WalConfig) -> BatchLimits {
        let per_buffer = config.flush_buffer_bytes() - FLUSH_BUFFER_OVERHEAD_BYTES;
        let limits = BatchLimits {
            max_record_bytes: config.max_record_bytes(),
            max_batch_bytes: config.flush_buffer_count() * per_buffer,
        };
        // A configuration that validated always admits a batch of one largest record.
        assert!(frame_bytes(limits.max_record_bytes) <= limits.max_batch_bytes);
        limits
    }

    /// Checks one record's payload length.
    ///
    /// Errors: [`Error::EmptyRecord`], [`Error::RecordTooLarge`].
    pub fn check_record(&self, len_bytes: usize) -> Result<()> {
        if len_bytes == 0 {
            return Err(Error::EmptyRecord);
        }
        if len_bytes > self.max_record_bytes {
            return Err(Error::RecordTooLarge {
                len_bytes,
                max_record_bytes: self.max_record_bytes,
            });
        }
        Ok(())
    }

    /// Checks a batch given its payload lengths; returns its frame bytes.
    ///
    /// Errors: [`Error::EmptyBatch`]; the first record's error from
    /// [`BatchLimits::check_record`]; [`Error::BatchTooLarge`].
    pub fn check_batch(&self, lens_bytes: impl Iterator<Item = usize>) -> Result<usize> {
        let mut total_bytes = 0usize;
        let mut count = 0usize;
        for len in lens_bytes {
            self.check_record(len)?;
            total_bytes = total_bytes.saturating_add(frame_bytes(len));
            count += 1;
        }
        if count == 0 {
            return Err(Error::EmptyBatch);
        }
        if total_bytes > self.max_batch_bytes {
            return Err(Error::BatchTooLarge {
                frame_bytes: total_bytes,
                max_batch_bytes: self.max_batch_bytes,
            });
        }
        Ok(total_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> BatchLimits {
        BatchLimits {
            max_record_bytes: 100,
            max_batch_bytes: 1000,
        }
    }

    #[test]
    fn each_bad_batch_gets_its_own_error() {
        let l = limits();
        assert!(matches!(
            l.check_batch([].into_iter()),
            Err(Error::EmptyBatch)
        ));
        assert!(matches!(
            l.check_batch([5, 0].into_iter()),
            Err(Error::EmptyRecord)
        ));
        assert!(matches!(
            l.check_batch([101].into_iter()),
            Err(Error::RecordTooLarge { len_bytes: 101, .. })
        ));
        // 8 frames of 24 + 100 -> 128 bytes each = 1024 > 1000.
        assert!(matches!(
            l.check_batch([100; 8].into_iter()),
            Err(Error::BatchTooLarge {
                frame_bytes: 1024,
                max_batch_bytes: 1000
            })
        ));
        assert_eq!(l.check_batch([100; 7].into_iter()).unwrap(), 7 * 128);
    }

    #[test]
    fn the_default_config_admits_a_ring_of_records() {
        let c = WalConfig::builder("/tmp/x").build().unwrap();
        let l = BatchLimits::of(&c);
        assert_eq!(
            l.max_batch_bytes,
            c.flush_buffer_count() * (c.flush_buffer_bytes() - FLUSH_BUFFER_OVERHEAD_BYTES)
        );
        assert!(l.check_batch([c.max_record_bytes(); 2].into_iter()).is_ok());
    }
}
