//! Which events already got their email: an embedded database under
//! `STATE_DIR`, written before the event is acknowledged, so that a
//! redelivery after a crash (even kill -9) is skipped.

use std::path::Path;

use redb::{Database, TableDefinition};

/// Event ids that were emailed, with the time (ms since the epoch).
const SENT: TableDefinition<'_, &str, u64> = TableDefinition::new("sent");

/// The store of emailed event ids.
pub struct SentStore {
    /// The database file.
    db: Database,
}

impl SentStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let db = Database::create(dir.join("sent.redb"))?;
        let tx = db.begin_write()?;
        tx.open_table(SENT)?;
        tx.commit()?;
        Ok(Self { db })
    }

    /// Whether the event already got its email.
    pub fn contains(&self, event_id: &str) -> anyhow::Result<bool> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(SENT)?.get(event_id)?.is_some())
    }

    /// Remembers that the event got its email (durably, before returning).
    pub fn insert(&self, event_id: &str) -> anyhow::Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let tx = self.db.begin_write()?;
        tx.open_table(SENT)?.insert(event_id, now)?;
        tx.commit()?;
        Ok(())
    }
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
