//! A real SMTP server (Python aiosmtpd, `testkit/smtp_server.py`) that
//! stores each message it accepts as an .eml file, can refuse chosen
//! recipients with 550, and can hold chosen recipients' answers until the
//! test releases them (a slow server).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::ports::free_port;
use crate::wait::eventually;

/// A real SMTP server process on a free port.
pub struct SmtpServer {
    port: u16,
    dir: PathBuf,
    rejected: Vec<String>,
    held: Vec<String>,
    child: Option<Child>,
}

impl SmtpServer {
    /// Starts a server that refuses the `rejected` recipients.
    pub fn start(rejected: &[&str]) -> Self {
        let mut server = Self::stopped(rejected);
        server.restart();
        server
    }

    /// A server that is not running yet: its port refuses connections.
    pub fn stopped(rejected: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("smtp-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            port: free_port(),
            dir,
            rejected: rejected.iter().map(|r| r.to_string()).collect(),
            held: Vec::new(),
            child: None,
        }
    }

    /// Starts a server that answers for the `held` recipients only once
    /// [`Self::release`]d.
    pub fn start_holding(held: &[&str]) -> Self {
        let mut server = Self::stopped(&[]);
        server.held = held.iter().map(|h| h.to_string()).collect();
        server.restart();
        server
    }

    /// How many sends to `address` the server is holding (or held).
    pub fn holding(&self, address: &str) -> usize {
        let prefix = format!("holding-{address}-");
        std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .count()
    }

    /// Lets the server answer for `address` from now on.
    pub fn release(&self, address: &str) {
        std::fs::write(self.dir.join(format!("release-{address}")), b"").unwrap();
    }

    /// Starts the server (again) and waits until it is ready.
    pub fn restart(&mut self) {
        self.stop();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/smtp_server.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir);
        for address in &self.rejected {
            command.args(["--reject", address]);
        }
        for address in &self.held {
            command.args(["--hold", address]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the SMTP server (scripts/test.sh installs aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP server did not start");
        self.child = Some(child);
    }

    /// Stops the server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect()
    }

    /// How many messages each envelope recipient got.
    pub fn per_recipient(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for message in self.messages() {
            let to = message
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("X-Envelope-To: "))
                .unwrap_or_default()
                .to_owned();
            *counts.entry(to).or_default() += 1;
        }
        counts
    }

    /// Waits until `count` recipients got a message.
    pub async fn wait_for_recipients(&self, count: usize) {
        eventually(&format!("{count} recipients got an email"), || async {
            self.per_recipient().len() >= count
        })
        .await;
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
