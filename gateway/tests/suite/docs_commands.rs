//! Every `cargo run` command the docs give picks a binary that exists: each
//! is run as written (in a debug build, with `--help` instead of its own
//! arguments), from the workspace root.

use std::path::Path;
use std::process::Command;

/// The `cargo run` arguments (before ` -- `) of every command in `text`.
fn cargo_runs(text: &str) -> Vec<Vec<String>> {
    text.match_indices("cargo run")
        .map(|(at, _)| {
            let rest = &text[at + "cargo run".len()..];
            let end = rest.find(['\n', '`', ')']).unwrap_or(rest.len());
            let args = rest[..end].split(" -- ").next().unwrap_or_default();
            args.split_whitespace()
                .filter(|a| *a != "--release")
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn the_documented_cargo_run_commands_find_their_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut seen = 0;
    for doc in [
        "README.md",
        "BENCHMARKS.md",
        "examples/python/README.md",
        "examples/node/README.md",
    ] {
        let text = std::fs::read_to_string(root.join(doc)).expect("the doc exists");
        for args in cargo_runs(&text) {
            seen += 1;
            let output = Command::new(env!("CARGO"))
                .current_dir(&root)
                .arg("run")
                .args(&args)
                .args(["--", "--help"])
                .output()
                .expect("cargo runs");
            assert!(
                output.status.success(),
                "{doc}: `cargo run {}` failed:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                String::from_utf8_lossy(&output.stdout).contains("Usage:"),
                "{doc}: `cargo run {}` printed no help",
                args.join(" ")
            );
        }
    }
    assert!(seen >= 4, "the docs give {seen} cargo run commands");
}
