//! Which events already got their email: an embedded database under
//! `STATE_DIR`, written before the event is acknowledged, so that a
//! redelivery after a crash (even kill -9) is skipped.

use std::path::Path;

use redb::{Database, TableDefinition};

use crate::error::Error;

/// Event ids that were emailed, with the time (ms since the epoch).
const SENT: TableDefinition<'_, &str, u64> = TableDefinition::new("sent");

/// The store of emailed event ids.
pub(crate) struct SentStore {
    /// The database file.
    db: Database,
}

impl SentStore {
    /// Opens (or creates) the store in `dir`.
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let db = Database::create(dir.join("sent.redb"))?;
        let tx = db.begin_write()?;
        tx.open_table(SENT)?;
        tx.commit()?;
        Ok(Self { db })
    }

    /// Whether the event already got its email.
    pub(crate) fn contains(&self, event_id: &str) -> Result<bool, Error> {
        let tx = self.db.begin_read().map_err(failed)?;
        let table = tx.open_table(SENT).map_err(failed)?;
        Ok(table.get(event_id).map_err(failed)?.is_some())
    }

    /// Remembers that the event got its email (durably, before returning).
    pub(crate) fn insert(&self, event_id: &str) -> Result<(), Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let tx = self.db.begin_write().map_err(failed)?;
        tx.open_table(SENT)
            .map_err(failed)?
            .insert(event_id, now)
            .map_err(failed)?;
        tx.commit().map_err(failed)
    }
}

/// A failure of the store's database.
fn failed(error: impl Into<redb::Error>) -> Error {
    Error::Store(Box::new(error.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_sent_is_remembered_across_reopening() {
        let dir = std::env::temp_dir().join(format!("notifier-store-{}", std::process::id()));
        {
            let store = SentStore::open(&dir).unwrap();
            assert!(!store.contains("e1").unwrap());
            store.insert("e1").unwrap();
        }
        let store = SentStore::open(&dir).unwrap();
        assert!(store.contains("e1").unwrap());
        assert!(!store.contains("e2").unwrap());
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
