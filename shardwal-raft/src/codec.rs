//! The records a [`crate::ShardLogStore`] writes into its shard: Raft log entries and the
//! store's own state changes (vote, committed id, truncation, purge), all in one ordered log.
//!
//! ```text
//! byte 0      MAGIC (0xA7): a record of this store, not something else in the shard
//! byte 1      FORMAT_VERSION of the encoding (1)
//! byte 2      kind (KIND_*)
//! bytes 3..   the body: bincode (serde) of the entry, vote or log id
//! ```
//!
//! A record of a newer format version is refused with a clear error instead of being
//! misread; so is a record that is not ours or whose body does not decode.

use std::io;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// First byte of every record of this store.
pub const MAGIC: u8 = 0xA7;
/// The version this build writes, and the newest it reads.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes before the body.
pub const HEADER_BYTES: usize = 3;

const KIND_ENTRY: u8 = 1;
const KIND_VOTE: u8 = 2;
const KIND_COMMITTED: u8 = 3;
const KIND_TRUNCATE_AFTER: u8 = 4;
const KIND_PURGE: u8 = 5;

/// One record of the store, generic over the entry (`E`), vote (`V`) and log id (`L`)
/// types of the Raft type configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum LogRecord<E, V, L> {
    /// A Raft log entry. Replay: a later entry at index i replaces every entry from i on.
    Entry(E),
    /// The vote, saved durably.
    Vote(V),
    /// The committed log id, saved (optional for openraft).
    Committed(Option<L>),
    /// Every entry after this log id (all of them for `None`) is gone.
    TruncateAfter(Option<L>),
    /// Every entry up to and including this log id is purged.
    Purge(L),
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn body<T: Serialize>(kind: u8, value: &T) -> io::Result<Vec<u8>> {
    let mut out = vec![MAGIC, FORMAT_VERSION, kind];
    bincode::serialize_into(&mut out, value).map_err(|e| invalid(format!("encoding: {e}")))?;
    debug_assert!(out.len() > HEADER_BYTES);
    Ok(out)
}

/// Encodes `record` (header + body).
pub fn encode<E: Serialize, V: Serialize, L: Serialize>(
    record: &LogRecord<E, V, L>,
) -> io::Result<Vec<u8>> {
    match record {
        LogRecord::Entry(e) => body(KIND_ENTRY, e),
        LogRecord::Vote(v) => body(KIND_VOTE, v),
        LogRecord::Committed(c) => body(KIND_COMMITTED, c),
        LogRecord::TruncateAfter(t) => body(KIND_TRUNCATE_AFTER, t),
        LogRecord::Purge(p) => body(KIND_PURGE, p),
    }
}

/// Decodes one record. Errors (`InvalidData`): not a record of this store, a newer
/// format version than this build reads, an unknown kind, a body that does not decode.
pub fn decode<E: DeserializeOwned, V: DeserializeOwned, L: DeserializeOwned>(
    bytes: &[u8],
) -> io::Result<LogRecord<E, V, L>> {
    if bytes.len() < HEADER_BYTES || bytes[0] != MAGIC {
        return Err(invalid(format!(
            "not a shardwal-raft record ({} bytes, first byte {:?})",
            bytes.len(),
            bytes.first()
        )));
    }
    if bytes[1] > FORMAT_VERSION {
        return Err(invalid(format!(
            "a shardwal-raft record of format version {} (this build reads up to {FORMAT_VERSION}): upgrade shardwal-raft",
            bytes[1]
        )));
    }
    let body = &bytes[HEADER_BYTES..];
    let de = |what: &str| invalid(format!("a damaged shardwal-raft {what} record"));
    Ok(match bytes[2] {
        KIND_ENTRY => LogRecord::Entry(bincode::deserialize(body).map_err(|_| de("entry"))?),
        KIND_VOTE => LogRecord::Vote(bincode::deserialize(body).map_err(|_| de("vote"))?),
        KIND_COMMITTED => {
            LogRecord::Committed(bincode::deserialize(body).map_err(|_| de("committed"))?)
        }
        KIND_TRUNCATE_AFTER => {
            LogRecord::TruncateAfter(bincode::deserialize(body).map_err(|_| de("truncate"))?)
        }
        KIND_PURGE => LogRecord::Purge(bincode::deserialize(body).map_err(|_| de("purge"))?),
        other => {
            return Err(invalid(format!(
                "unknown shardwal-raft record kind {other}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rec = LogRecord<(u64, String), (u64, bool), u64>;

    #[test]
    fn every_kind_round_trips() {
        for r in [
            Rec::Entry((7, "seven".into())),
            Rec::Vote((3, true)),
            Rec::Committed(Some(9)),
            Rec::Committed(None),
            Rec::TruncateAfter(None),
            Rec::TruncateAfter(Some(4)),
            Rec::Purge(2),
        ] {
            let bytes = encode(&r).unwrap();
            assert_eq!(&bytes[..2], &[MAGIC, FORMAT_VERSION]);
            assert_eq!(
                decode::<(u64, String), (u64, bool), u64>(&bytes).unwrap(),
                r
            );
        }
    }

    #[test]
    fn newer_foreign_unknown_and_damaged_records_are_refused_by_name() {
        let good = encode(&Rec::Entry((1, "x".into()))).unwrap();
        let refuse = |bytes: &[u8], needle: &str| {
            let e = decode::<(u64, String), (u64, bool), u64>(bytes).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(e.to_string().contains(needle), "{e}");
        };
        let mut newer = good.clone();
        newer[1] = FORMAT_VERSION + 1;
        refuse(&newer, "format version 2");
        refuse(b"hello", "not a shardwal-raft record");
        refuse(&[], "not a shardwal-raft record");
        let mut unknown = good.clone();
        unknown[2] = 99;
        refuse(&unknown, "unknown shardwal-raft record kind 99");
        refuse(&good[..good.len() - 1], "damaged shardwal-raft entry");
    }
}
