//! What a node needs on this machine: Java, the broker's jars, and
//! directories of its own (swept of what killed runs left).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::*;

/// The `java` to run: `$JAVA_HOME/bin/java`, or the one on PATH.
pub fn java() -> Result<PathBuf, String> {
    find_java(
        std::env::var_os("JAVA_HOME").map(PathBuf::from),
        std::env::var_os("PATH"),
    )
}

/// `java` under `java_home`, or in a folder of `path`; else what to install.
pub(super) fn find_java(
    java_home: Option<PathBuf>,
    path: Option<std::ffi::OsString>,
) -> Result<PathBuf, String> {
    let from_home = java_home.map(|home| home.join("bin/java"));
    let on_path = path
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("java"));
    from_home
        .into_iter()
        .chain(on_path)
        .find(|java| java.is_file())
        .ok_or_else(|| {
            "Java is not installed, and Apache Kafka runs on it: install a Java 17 (or later) \
             runtime, e.g. Debian's openjdk-17-jre-headless, or set JAVA_HOME"
                .to_owned()
        })
}

/// The project's cache: `EVENT_GATEWAY_CACHE`, or `~/.cache/event-gateway`.
pub(super) fn cache() -> PathBuf {
    std::env::var_os("EVENT_GATEWAY_CACHE").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/event-gateway")
        },
        PathBuf::from,
    )
}

/// The classpath of Apache Kafka [`VERSION`], as `scripts/kafka.sh` wrote
/// it into the cache.
pub fn classpath() -> Result<String, String> {
    let file = cache().join(format!("kafka-{VERSION}.classpath"));
    let resolved_from =
        std::fs::read_to_string(cache().join(format!("kafka-{VERSION}.classpath.pom")));
    if resolved_from.is_ok_and(|pom| pom != include_str!("../../kafka/pom.xml")) {
        return Err(format!(
            "{} was resolved from another testkit/kafka/pom.xml: run scripts/kafka.sh again",
            file.display()
        ));
    }
    let classpath = std::fs::read_to_string(&file).map_err(|_| {
        format!(
            "Apache Kafka {VERSION}'s jars are not resolved yet ({} is missing): run \
             scripts/kafka.sh once (it needs Java 17 and Maven), or scripts/test.sh, which \
             runs it",
            file.display()
        )
    })?;
    Ok(classpath.trim().to_owned())
}

/// A new Kafka cluster id: 16 random bytes, base64url without padding,
/// never starting with `-` (the storage tool would take it for an option,
/// which is why Kafka's own ids never do).
pub(super) fn cluster_id() -> String {
    use base64::Engine as _;
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// Where the nodes of this machine's test runs live (`scripts/test.sh`
/// clears it when it starts).
pub fn nodes_root() -> PathBuf {
    std::env::temp_dir().join("event-gateway-kafka")
}

/// A new directory for one node of this process, `<pid>-<n>`; the first
/// call of a process removes what processes that are gone left behind.
pub(super) fn node_dir() -> Result<PathBuf, String> {
    static NEXT: Mutex<u32> = Mutex::new(0);
    let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
    if *next == 0 {
        sweep(&nodes_root());
    }
    *next += 1;
    let dir = nodes_root().join(format!("{}-{}", std::process::id(), *next));
    std::fs::create_dir_all(&dir)
        .map_err(|error| format!("cannot make {}: {error}", dir.display()))?;
    Ok(dir)
}

/// Kills the JVMs of nodes whose test process is gone, and removes their
/// data (their logs stay, for the story of a failed run; scripts/test.sh
/// clears them when it starts).
pub(super) fn sweep(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() || !entry.path().join("pid").exists() {
            continue;
        }
        if let Some(pid) = std::fs::read_to_string(entry.path().join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("kafka.Kafka") {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        let _ = std::fs::remove_dir_all(entry.path().join("data"));
        let _ = std::fs::remove_file(entry.path().join("pid"));
    }
}
