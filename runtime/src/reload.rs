//! Settings kept in files (certificates and keys, key sets, the policy,
//! tokens) that are read again when they change, so that they rotate
//! without a restart.
//!
//! The files are read once at start, where an error stops the program, then
//! every `interval`: when their bytes changed they are loaded again. A
//! change that does not load (a half-written file, a key that does not match
//! its certificate) keeps what was loaded before, is logged, and is tried
//! again at the next check.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::shutdown::Shutdown;

/// The largest settings file read; a larger one is an error.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The last loaded value of a set of watched files: cheap to clone, and to
/// read on every call.
#[derive(Debug)]
pub struct Reloaded<T> {
    current: watch::Receiver<Arc<T>>,
}

impl<T> Clone for Reloaded<T> {
    fn clone(&self) -> Self {
        Self {
            current: self.current.clone(),
        }
    }
}

impl<T> Reloaded<T> {
    /// Values sent on a channel (by a refresher of its own).
    pub fn new(current: watch::Receiver<Arc<T>>) -> Self {
        Self { current }
    }

    /// The value loaded last.
    pub fn current(&self) -> Arc<T> {
        self.current.borrow().clone()
    }

    /// A receiver that sees each newly loaded value.
    pub fn changes(&self) -> watch::Receiver<Arc<T>> {
        self.current.clone()
    }
}

/// How a set of files is watched.
pub struct Watch<'a> {
    /// What the files hold, for logs ("TLS certificate", "policy").
    pub what: &'static str,
    /// The files, read together.
    pub paths: Vec<PathBuf>,
    /// How often they are checked for changes.
    pub interval: Duration,
    /// Ends the checks.
    pub shutdown: &'a Shutdown,
}

/// Reads `path`, at most [`MAX_FILE_BYTES`]; the error names the file.
pub fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, String> {
    paths.iter().map(|path| read_file(path)).collect()
}

/// Files as loaded once: their bytes, and what they loaded into.
#[derive(Debug)]
pub struct Loaded<T> {
    bytes: Vec<Vec<u8>>,
    value: T,
}

/// Reads `paths` and loads them with `load` (the files' bytes, in the
/// order of the paths): what a start-up check reads, which
/// [`watch_loaded`] then keeps current without reading them again.
pub fn load<T>(
    paths: &[PathBuf],
    load: impl Fn(&[Vec<u8>]) -> Result<T, String>,
) -> Result<Loaded<T>, String> {
    let bytes = read_all(paths)?;
    let value = load(&bytes)?;
    Ok(Loaded { bytes, value })
}

/// Loads the files `watch` names with `load` (the files' bytes, in the
/// order of the paths), and loads them again whenever their bytes change
/// until the shutdown begins. `failed` is called for each change that does
/// not load. Returns the first load's error.
pub fn watch<T, L, F>(watch: Watch<'_>, load: L, failed: F) -> Result<Reloaded<T>, String>
where
    T: Send + Sync + 'static,
    L: Fn(&[Vec<u8>]) -> Result<T, String> + Send + 'static,
    F: Fn() + Send + 'static,
{
    let first = self::load(&watch.paths, &load)?;
    Ok(watch_loaded(watch, first, load, failed))
}

/// As [`watch`], from files loaded already (`first`).
pub fn watch_loaded<T, L, F>(watch: Watch<'_>, first: Loaded<T>, load: L, failed: F) -> Reloaded<T>
where
    T: Send + Sync + 'static,
    L: Fn(&[Vec<u8>]) -> Result<T, String> + Send + 'static,
    F: Fn() + Send + 'static,
{
    let Watch {
        what,
        paths,
        interval,
        shutdown,
    } = watch;
    let Loaded {
        bytes: mut seen,
        value: first,
    } = first;
    let (tx, current) = watch::channel(Arc::new(first));
    let mut ending = shutdown.clone();
    shutdown.spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = ending.started() => return,
                _ = ticks.tick() => {}
            }
            let bytes = match read_all(&paths) {
                Ok(bytes) if bytes == seen => continue,
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the {what}; keeping the one loaded before");
                    failed();
                    continue;
                }
            };
            match load(&bytes) {
                Ok(value) => {
                    tx.send_replace(Arc::new(value));
                    tracing::info!(files = ?paths, "reloaded the {what}");
                    seen = bytes;
                }
                Err(error) => {
                    tracing::warn!(%error, "the changed {what} does not load; keeping the one loaded before");
                    failed();
                    // Not remembered as seen: the next check tries again
                    // (the rest of a rotation may not have landed yet).
                }
            }
        }
    });
    Reloaded { current }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown;

    #[tokio::test]
    async fn a_change_is_loaded_and_a_bad_one_keeps_the_previous_value() {
        let dir = std::env::temp_dir().join(format!("reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("number");
        std::fs::write(&path, "1").unwrap();
        let (trigger, shutdown) = shutdown::channel();
        let (counted, mut failures) = watch::channel(0_u32);
        let number = watch(
            Watch {
                what: "number",
                paths: vec![path.clone()],
                interval: Duration::from_millis(10),
                shutdown: &shutdown,
            },
            |bytes| {
                std::str::from_utf8(&bytes[0])
                    .ok()
                    .and_then(|text| text.parse::<u32>().ok())
                    .ok_or_else(|| "not a number".to_string())
            },
            move || counted.send_modify(|failures| *failures += 1),
        )
        .unwrap();
        assert_eq!(*number.current(), 1);
        let mut changes = number.changes();
        std::fs::write(&path, "2").unwrap();
        changes.wait_for(|n| **n == 2).await.unwrap();
        std::fs::write(&path, "two").unwrap();
        failures.wait_for(|failures| *failures > 0).await.unwrap();
        assert_eq!(
            *number.current(),
            2,
            "a change that does not load is not taken"
        );
        std::fs::write(&path, "3").unwrap();
        changes.wait_for(|n| **n == 3).await.unwrap();
        assert_eq!(
            trigger.drain(Duration::from_secs(5)).await,
            0,
            "the watch ends"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_is_an_error_that_names_it() {
        let error = read_all(&[PathBuf::from("/nonexistent/tls.pem")]).unwrap_err();
        assert!(error.contains("/nonexistent/tls.pem"), "{error}");
    }
}
