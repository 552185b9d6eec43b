//! The reference Java client as a peer of the gateway: the programs of
//! `testkit/java/`, run by java's source launcher with Apache Kafka's
//! classpath (`kafka-clients` among it), as a Java service would use Kafka.

use std::process::{Command, Stdio};

use crate::kafka;

/// Runs `testkit/java/<program>.java` with `args` to its end (blocking);
/// what it printed, or why it failed.
pub fn run_java(program: &str, args: &[&str]) -> Result<String, String> {
    let source = format!("{}/java/{program}.java", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(kafka::java()?)
        .args(["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp"])
        .arg(kafka::classpath()?)
        .arg(&source)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {source}: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program}.java failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
