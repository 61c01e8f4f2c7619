//! A ready-made type configuration: byte keys and values for a small KV state machine
//! ([`crate::kv`]), on the glommio runtime. The store is generic; services bring their own.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A write: set `key` to `value`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Put {
    /// The key.
    pub key: Vec<u8>,
    /// The new value.
    pub value: Vec<u8>,
}

impl fmt::Display for Put {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "put({} key bytes, {} value bytes)",
            self.key.len(),
            self.value.len()
        )
    }
}

/// The answer to a [`Put`]: the value it replaced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous(pub Option<Vec<u8>>);

openraft::declare_raft_types!(
    /// KV writes on the glommio runtime; node ids `u64`, no node metadata.
    pub KvConfig:
        D = Put,
        R = Previous,
        Node = (),
        AsyncRuntime = crate::GlommioRuntime,
);

openraft::declare_raft_types!(
    /// KV writes on openraft's tokio runtime (in a `LocalSet`: the build is single-threaded),
    /// through the `Send` client.
    pub KvTokioConfig:
        D = Put,
        R = Previous,
        Node = (),
        AsyncRuntime = openraft_rt_tokio::TokioRuntime,
);
