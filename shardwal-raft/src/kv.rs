//! [`KvStateMachine`]: a small in-memory key-value state machine for [`KvConfig`], enough
//! for openraft's storage suite, the tests and the cluster example. Snapshots are the whole
//! map, bincode-encoded.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Cursor};
use std::rc::Rc;

use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};

use crate::types::{KvConfig, Previous};

/// What the state machine holds (and a snapshot contains).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KvState {
    /// The last entry applied.
    pub last_applied: Option<LogIdOf<KvConfig>>,
    /// The membership in force.
    pub membership: StoredMembershipOf<KvConfig>,
    /// The data.
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// The last snapshot built or installed: its metadata and its bytes.
type StoredSnapshot = (SnapshotMetaOf<KvConfig>, Vec<u8>);

/// The in-memory KV state machine. Clones share the state.
#[derive(Clone, Default)]
pub struct KvStateMachine {
    state: Rc<RefCell<KvState>>,
    snapshot: Rc<RefCell<Option<StoredSnapshot>>>,
}

impl KvStateMachine {
    /// A copy of the current state (to compare state machines across nodes).
    pub fn state(&self) -> KvState {
        self.state.borrow().clone()
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl RaftSnapshotBuilder<KvConfig> for KvStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(
        &mut self,
    ) -> Result<SnapshotOf<KvConfig, Self::SnapshotData>, io::Error> {
        let state = self.state.borrow().clone();
        let data = bincode::serialize(&state).map_err(invalid)?;
        let meta = SnapshotMetaOf::<KvConfig> {
            last_log_id: state.last_applied,
            last_membership: state.membership,
        };
        *self.snapshot.borrow_mut() = Some((meta.clone(), data.clone()));
        Ok(SnapshotOf::<KvConfig, Self::SnapshotData> {
            meta,
            snapshot: Cursor::new(data),
        })
    }
}

impl RaftStateMachine<KvConfig> for KvStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<KvConfig>>, StoredMembershipOf<KvConfig>), io::Error> {
        let s = self.state.borrow();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<KvConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let response = {
                let mut s = self.state.borrow_mut();
                s.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => Previous(None),
                    EntryPayload::Normal(put) => Previous(s.map.insert(put.key, put.value)),
                    EntryPayload::Membership(m) => {
                        s.membership = StoredMembershipOf::<KvConfig>::new(Some(entry.log_id), m);
                        Previous(None)
                    }
                }
            };
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
        meta: &SnapshotMetaOf<KvConfig>,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let state: KvState = bincode::deserialize(&data).map_err(invalid)?;
        *self.state.borrow_mut() = state;
        *self.snapshot.borrow_mut() = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<KvConfig, Self::SnapshotData>>, io::Error> {
        Ok(self
            .snapshot
            .borrow()
            .as_ref()
            .map(|(meta, data)| SnapshotOf::<KvConfig, Self::SnapshotData> {
                meta: meta.clone(),
                snapshot: Cursor::new(data.clone()),
            }))
    }
}
