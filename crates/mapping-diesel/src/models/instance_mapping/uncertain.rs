//! Instance-mapping creates whose outcome is unknown (a connection lost
//! around their commit), remembered per handle until settled.

use super::*;

/// An instance-mapping create whose connection was lost around its commit
/// (see [`Error::OutcomeUnknown`]): what it tried to write.
#[derive(Debug, Clone)]
pub(crate) struct PendingCreate {
    pub(super) instance_uuid: String,
    pub(super) cell_id: Option<i32>,
    pub(super) project_id: String,
    pub(super) user_id: String,
    pub(super) queued_for_delete: bool,
    /// The `created_at` it wrote: the mark of its own row.
    pub(super) created_at: NaiveDateTime,
}

impl PendingCreate {
    /// The instance it creates a mapping for.
    pub(crate) fn instance_uuid(&self) -> &str {
        &self.instance_uuid
    }

    /// Whether `found` is the row this create wrote, with the content that
    /// `new` asks for.
    fn is_own_row(&self, found: &InstanceMapping) -> bool {
        found.created_at == Some(self.created_at)
            && found.cell_mapping.as_ref().map(|c| c.id) == self.cell_id
            && found.project_id == self.project_id
            && found.user_id.as_deref() == Some(self.user_id.as_str())
            && found.queued_for_delete == self.queued_for_delete
    }

    fn same_request(&self, other: &PendingCreate) -> bool {
        self.cell_id == other.cell_id
            && self.project_id == other.project_id
            && self.user_id == other.user_id
            && self.queued_for_delete == other.queued_for_delete
    }
}

/// The creates of a [`crate::Database`] whose outcome is unknown, by
/// instance uuid, until a later create or a committed write of the same uuid
/// settles them (bounded).
///
/// An entry stays until it is settled, across every attempt of a re-run: on
/// a Galera cluster the row a lost node committed may reach the node a retry
/// reads from only after that read, so the retry's insert then fails on the
/// unique key (or its commit on certification) and the next look must still
/// know what it is looking for.
#[derive(Debug, Default)]
pub(crate) struct UncertainCreates {
    /// Non-zero while anything is remembered: the common path takes no lock.
    len: std::sync::atomic::AtomicUsize,
    map: std::sync::Mutex<std::collections::HashMap<String, Vec<PendingCreate>>>,
}

impl UncertainCreates {
    /// At most this many uuids are remembered (an arbitrary one is forgotten).
    const MAX: usize = 10_000;
    /// At most this many attempts per uuid (the oldest is forgotten).
    const MAX_PER_UUID: usize = 8;

    pub(crate) fn remember(&self, creates: Vec<PendingCreate>) {
        if creates.is_empty() {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            for c in creates {
                if map.len() >= Self::MAX && !map.contains_key(&c.instance_uuid) {
                    if let Some(k) = map.keys().next().cloned() {
                        map.remove(&k);
                    }
                }
                let attempts = map.entry(c.instance_uuid.clone()).or_default();
                if attempts.len() >= Self::MAX_PER_UUID {
                    attempts.remove(0);
                }
                attempts.push(c);
            }
            self.len
                .store(map.len(), std::sync::atomic::Ordering::Release);
        }
    }

    /// The creates of `instance_uuid` whose outcome is unknown.
    pub(super) fn pending(&self, instance_uuid: &str) -> Vec<PendingCreate> {
        if self.len.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return Vec::new();
        }
        self.map
            .lock()
            .ok()
            .and_then(|m| m.get(instance_uuid).cloned())
            .unwrap_or_default()
    }

    /// Settles every create of these uuids: a write of them committed.
    pub(crate) fn forget<'a>(&self, instance_uuids: impl IntoIterator<Item = &'a str>) {
        if self.len.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            for u in instance_uuids {
                map.remove(u);
            }
            self.len
                .store(map.len(), std::sync::atomic::Ordering::Release);
        }
    }
}

/// What an earlier create of unknown outcome means for a new create of the
/// same uuid, now that a row of that uuid is `found`.
pub(super) fn settle(
    tx: &mut Tx<'_>,
    earlier: &[PendingCreate],
    attempt: &PendingCreate,
    found: InstanceMapping,
) -> Result<InstanceMapping> {
    match earlier.iter().find(|e| e.is_own_row(&found)) {
        Some(own) if own.same_request(attempt) => {
            tracing::info!(instance_uuid = %attempt.instance_uuid, "create of unknown outcome had been applied");
            tx.shared.uncertain.forget([attempt.instance_uuid.as_str()]);
            Ok(found)
        }
        // Its own row, asked for with other content: the original request
        // may still come to claim it, so it stays remembered.
        Some(_) => Err(Error::InstanceMappingExists {
            instance_uuid: attempt.instance_uuid.clone(),
        }),
        None => {
            // Someone else's row: none of the earlier creates was applied.
            tx.shared.uncertain.forget([attempt.instance_uuid.as_str()]);
            Err(Error::InstanceMappingExists {
                instance_uuid: attempt.instance_uuid.clone(),
            })
        }
    }
}
