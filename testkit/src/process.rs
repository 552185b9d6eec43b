//! Child processes of a test: programs run to completion, SIGTERM and
//! SIGSTOP, and the lines one writes.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, OnceLock};

use rustix::process::{kill_process, Pid, Signal};
use tokio::sync::mpsc;

use crate::wait::PATIENCE;

/// How often a process told to stop is looked at again.
const EXIT_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// A command for `program` that starts from an empty environment but
/// `PATH` and `HOME`: what a test runs is configured by the test alone, not
/// by the environment the suite happens to run in.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    clean(&mut command);
    command
}

/// Leaves `command` only `PATH` and `HOME` of the suite's environment.
pub(crate) fn clean(command: &mut Command) {
    command
        .env_clear()
        .envs(std::env::vars_os().filter(|(name, _)| name == "PATH" || name == "HOME"));
}

/// A command for `program` that, where `setpriv` is there, is killed as
/// soon as the thread that started it ends (see [`spawn_kept`]).
pub(crate) fn kept(program: PathBuf) -> Command {
    if Path::new("/usr/bin/setpriv").exists() {
        let mut command = Command::new("/usr/bin/setpriv");
        command.args(["--pdeathsig", "KILL", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// A command handed to the keeper thread, and where its child goes.
type Spawn = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` from a thread that lives as long as this process: a
/// parent-death signal fires when the thread that spawned the child ends,
/// and a test's own thread ends with the test, while a broker shared by
/// the tests of a binary must live until the binary exits. Whatever is
/// spawned so dies with the test binary, even when a test fails.
pub(crate) fn spawn_kept(command: Command) -> std::io::Result<Child> {
    static KEEPER: OnceLock<Mutex<std::sync::mpsc::Sender<Spawn>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Spawn>();
        std::thread::Builder::new()
            .name("process-keeper".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the keeper thread starts");
        Mutex::new(tx)
    });
    let (reply, child) = std::sync::mpsc::channel();
    keeper
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((command, reply))
        .map_err(|_| std::io::Error::other("the keeper thread is gone"))?;
    child
        .recv()
        .map_err(|_| std::io::Error::other("the keeper thread is gone"))?
}

/// Runs `program` with `args` in `dir`, the repository-relative folder, as a
/// user would from a shell (with the suite's environment), and returns what
/// it printed; fails the test, showing both outputs, if it fails.
pub fn run_ok(dir: &str, program: &str, args: &[&str]) -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir);
    let output = Command::new(program)
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed in {}:\n{stdout}\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Sends SIGTERM to `child` (how orchestrators stop a service).
pub fn sigterm(child: &Child) {
    signal(child, Signal::TERM);
}

/// Sends SIGSTOP to `child`: it freezes as a hung process (or a dead host)
/// does, its sockets still open. Returns once every thread of it is
/// stopped (state `T` in /proc): the signal takes effect after `kill`
/// returns, and a call made in between would still be answered.
pub fn sigstop(child: &Child) {
    signal(child, Signal::STOP);
    let tasks = format!("/proc/{}/task", child.id());
    let began = std::time::Instant::now();
    while !all_stopped(Path::new(&tasks)) {
        assert!(
            began.elapsed() < PATIENCE,
            "process {} did not stop within {PATIENCE:?}",
            child.id()
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Whether every thread under `tasks` (a /proc/<pid>/task directory) is
/// stopped.
fn all_stopped(tasks: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(tasks) else {
        return false;
    };
    entries.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // "<pid> (<name>) <state> ...": the name may hold spaces and
            // parentheses, the state follows the last ')'.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                .is_some_and(|state| matches!(state, 'T' | 't'))
        })
    })
}

fn signal(child: &Child, signal: Signal) {
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .expect("a child has a valid pid");
    kill_process(pid, signal).expect("the signal is sent");
}

/// Sends SIGTERM to `child` and waits until it exits; fails the test (and
/// kills it) when it is still running [`PATIENCE`] later.
pub async fn sigterm_and_wait(mut child: Child) -> ExitStatus {
    sigterm(&child);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            return status;
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "process {} was still running {PATIENCE:?} after SIGTERM",
                child.id()
            );
        }
        tokio::time::sleep(EXIT_POLL).await;
    }
}

/// The lines a child process writes (to a pipe), read on a thread of their
/// own as they come.
pub struct Lines {
    /// Lines not yet taken.
    incoming: mpsc::UnboundedReceiver<String>,
    /// Lines taken so far.
    seen: Vec<String>,
}

impl Lines {
    /// Reads `pipe` line by line.
    pub fn of(pipe: impl Read + Send + 'static) -> Self {
        let (tx, incoming) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            incoming,
            seen: Vec::new(),
        }
    }

    /// Waits until a line containing `needle` comes and returns it; fails
    /// the test, showing every line, after [`PATIENCE`] or when the process
    /// closed the pipe first.
    pub async fn wait_for(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self.seen.iter().find(|line| line.contains(needle)) {
                return line.clone();
            }
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                Ok(None) => panic!(
                    "the process ended without a line with {needle:?}: {:#?}",
                    self.seen
                ),
                Err(_) => panic!(
                    "no line with {needle:?} within {PATIENCE:?}: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Every line written so far.
    pub fn so_far(&mut self) -> &[String] {
        while let Ok(line) = self.incoming.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// Every line, once the process closed the pipe (it exited).
    pub async fn to_end(&mut self) -> &[String] {
        while let Some(line) = self.incoming.recv().await {
            self.seen.push(line);
        }
        &self.seen
    }
}
