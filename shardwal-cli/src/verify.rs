//! `shardwal verify DIR`: reads every record of every shard of a closed log back with the
//! offline reader, checking every checksum, and prints a count per shard.

use std::path::Path;

use shardwal::{Lsn, ShardId};

use crate::AnyResult;

/// Reads every shard of `dir` back with the offline reader.
pub fn run(dir: &Path) -> AnyResult<()> {
    let mut shard = 0u32;
    let mut total = 0u64;
    loop {
        let sdir = shardwal::format::shard_dir(dir, ShardId(shard));
        if !sdir.is_dir() {
            break;
        }
        let mut count = 0u64;
        let mut first = None;
        let mut last = Lsn::ZERO;
        for record in shardwal::LogReader::open_all(dir, ShardId(shard))? {
            let record = record?;
            first.get_or_insert(record.lsn);
            last = record.lsn;
            count += 1;
        }
        println!(
            "shard {shard}: {count} records, lsn {} ..= {last}",
            first.unwrap_or(Lsn::ZERO)
        );
        total += count;
        shard += 1;
    }
    if shard == 0 {
        return Err(format!("{}: no shard directories (shard-NNNN) found", dir.display()).into());
    }
    println!("{shard} shard(s), {total} records, all checksums valid");
    Ok(())
}
