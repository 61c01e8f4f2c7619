//! [`KvStateMachine`]: a small in-memory key-value state machine for any type configuration
//! whose data is [`Put`] and whose response is [`Previous`] ([`KvConfig`] on glommio,
//! [`KvTokioConfig`] on tokio), enough for openraft's storage suite, the tests and the
//! examples; with feature `memstore`, also for openraft-memstore's `TypeConfig` (a
//! `ClientRequest` puts `status` at key `client`; the response is the previous value as
//! text). Snapshots are the whole map, bincode-encoded.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Cursor};
use std::rc::Rc;

use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftTypeConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::types::Previous;
#[cfg(doc)]
use crate::types::{KvConfig, KvTokioConfig, Put};

/// What the state machine holds (and a snapshot contains).
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "LogIdOf<C>: Serialize, StoredMembershipOf<C>: Serialize",
    deserialize = "LogIdOf<C>: DeserializeOwned, StoredMembershipOf<C>: DeserializeOwned"
))]
pub struct KvState<C: RaftTypeConfig> {
    /// The last entry applied.
    pub last_applied: Option<LogIdOf<C>>,
    /// The membership in force.
    pub membership: StoredMembershipOf<C>,
    /// The data.
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl<C: RaftTypeConfig> Clone for KvState<C> {
    fn clone(&self) -> Self {
        KvState {
            last_applied: self.last_applied.clone(),
            membership: self.membership.clone(),
            map: self.map.clone(),
        }
    }
}

impl<C: RaftTypeConfig> Default for KvState<C> {
    fn default() -> Self {
        KvState {
            last_applied: None,
            membership: Default::default(),
            map: BTreeMap::new(),
        }
    }
}

/// The last snapshot built or installed: its metadata and its bytes.
type StoredSnapshot<C> = (SnapshotMetaOf<C>, Vec<u8>);

/// The in-memory KV state machine. Clones share the state.
pub struct KvStateMachine<C: RaftTypeConfig> {
    state: Rc<RefCell<KvState<C>>>,
    snapshot: Rc<RefCell<Option<StoredSnapshot<C>>>>,
}

impl<C: RaftTypeConfig> Clone for KvStateMachine<C> {
    fn clone(&self) -> Self {
        KvStateMachine {
            state: self.state.clone(),
            snapshot: self.snapshot.clone(),
        }
    }
}

impl<C: RaftTypeConfig> Default for KvStateMachine<C> {
    fn default() -> Self {
        KvStateMachine {
            state: Rc::default(),
            snapshot: Rc::default(),
        }
    }
}

impl<C: RaftTypeConfig> KvStateMachine<C> {
    /// A copy of the current state (to compare state machines across nodes).
    pub fn state(&self) -> KvState<C> {
        self.state.borrow().clone()
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The state machine's openraft traits for one concrete type configuration (the entry type
/// differs per configuration, so the impls are written once and stamped out per config):
/// `$put` turns the data into (key, value), `$answer` the previous value into the response.
macro_rules! kv_state_machine_for {
    ($c:ty, $put:expr, $answer:expr) => {
        impl RaftSnapshotBuilder<$c> for KvStateMachine<$c> {
            type SnapshotData = Cursor<Vec<u8>>;

            async fn build_snapshot(
                &mut self,
            ) -> Result<SnapshotOf<$c, Self::SnapshotData>, io::Error> {
                let state = self.state.borrow().clone();
                let data = bincode::serialize(&state).map_err(invalid)?;
                let meta = SnapshotMetaOf::<$c> {
                    last_log_id: state.last_applied,
                    last_membership: state.membership,
                };
                *self.snapshot.borrow_mut() = Some((meta.clone(), data.clone()));
                Ok(SnapshotOf::<$c, Self::SnapshotData> {
                    meta,
                    snapshot: Cursor::new(data),
                })
            }
        }

        impl RaftStateMachine<$c> for KvStateMachine<$c> {
            type SnapshotData = Cursor<Vec<u8>>;
            type SnapshotBuilder = Self;

            async fn applied_state(
                &mut self,
            ) -> Result<(Option<LogIdOf<$c>>, StoredMembershipOf<$c>), io::Error> {
                let s = self.state.borrow();
                Ok((s.last_applied, s.membership.clone()))
            }

            async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
            where
                Strm: Stream<Item = Result<EntryResponder<$c>, io::Error>> + Unpin + OptionalSend,
            {
                while let Some((entry, responder)) = entries.try_next().await? {
                    let previous = {
                        let mut s = self.state.borrow_mut();
                        s.last_applied = Some(entry.log_id);
                        match entry.payload {
                            EntryPayload::Blank => None,
                            EntryPayload::Normal(data) => {
                                let (key, value) = $put(data);
                                s.map.insert(key, value)
                            }
                            EntryPayload::Membership(m) => {
                                s.membership = StoredMembershipOf::<$c>::new(Some(entry.log_id), m);
                                None
                            }
                        }
                    };
                    let response = $answer(previous);
                    if let Some(responder) = responder {
                        responder.send(response);
                    }
                }
                Ok(())
            }

            async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
                self.clone()
            }

            async fn install_snapshot(
                &mut self,
                meta: &SnapshotMetaOf<$c>,
                snapshot: Self::SnapshotData,
            ) -> Result<(), io::Error> {
                let data = snapshot.into_inner();
                let state: KvState<$c> = bincode::deserialize(&data).map_err(invalid)?;
                *self.state.borrow_mut() = state;
                *self.snapshot.borrow_mut() = Some((meta.clone(), data));
                Ok(())
            }

            async fn get_current_snapshot(
                &mut self,
            ) -> Result<Option<SnapshotOf<$c, Self::SnapshotData>>, io::Error> {
                Ok(self
                    .snapshot
                    .borrow()
                    .as_ref()
                    .map(|(meta, data)| SnapshotOf::<$c, Self::SnapshotData> {
                        meta: meta.clone(),
                        snapshot: Cursor::new(data.clone()),
                    }))
            }
        }
    };
}

fn put_key_value(put: crate::types::Put) -> (Vec<u8>, Vec<u8>) {
    (put.key, put.value)
}

kv_state_machine_for!(crate::types::KvConfig, put_key_value, Previous);
kv_state_machine_for!(crate::types::KvTokioConfig, put_key_value, Previous);

#[cfg(feature = "memstore")]
kv_state_machine_for!(
    openraft_memstore::TypeConfig,
    |r: openraft_memstore::ClientRequest| (r.client.into_bytes(), r.status.into_bytes()),
    |previous: Option<Vec<u8>>| openraft_memstore::ClientResponse(
        previous.map(|v| String::from_utf8_lossy(&v).into_owned())
    )
);
