//! The README's "Securing the gateway" as written: its openssl commands make
//! the certificates, its policy file is the policy, its gateway commands
//! start the gateway binary (on a free port, in front of a test broker), and
//! its grpcurl calls publish, with a client certificate and with a token.

use std::path::Path;
use std::process::{Command, Stdio};

use testkit::*;

/// The README's "Securing the gateway" section.
fn section() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme
        .find("## Securing the gateway")
        .expect("the README has the section");
    let rest = &readme[start + 3..];
    let end = rest.find("\n## ").map_or(rest.len(), |at| at);
    rest[..end].to_owned()
}

/// The fenced blocks of `text` in `language`, each as its text.
fn blocks(text: &str, language: &str) -> Vec<String> {
    let fence = format!("```{language}\n");
    text.match_indices(&fence)
        .map(|(at, _)| {
            let body = &text[at + fence.len()..];
            body[..body.find("```").expect("a closed fence")].to_owned()
        })
        .collect()
}

/// A child process, killed if the test fails before it stopped it.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `line` with bash in `dir`; fails the test unless it succeeds.
fn shell(dir: &Path, line: &str, env: &[(&str, &str)]) -> String {
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", line])
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "`{line}` failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// grpcurl and openssl run as blocking child processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_securing_commands_work_as_written() {
    let text = section();
    let dir = std::env::temp_dir().join(format!("gateway-securing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let commands: Vec<String> = blocks(&text, "sh")
        .iter()
        .flat_map(|block| block.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| !line.trim().is_empty())
        .collect();
    let policy = blocks(&text, "toml");
    assert_eq!(policy.len(), 1, "one policy file in the section");
    std::fs::write(dir.join("policy.toml"), &policy[0]).unwrap();

    // The certificates, as the README makes them.
    for line in commands
        .iter()
        .filter(|l| l.starts_with("openssl ") || l.starts_with("printf "))
    {
        shell(&dir, line, &[]);
    }
    // What an identity provider would serve and sign.
    let signer = Signer::es256("idp-key");
    std::fs::write(dir.join("jwks.json"), jwks(&[&signer])).unwrap();
    let token = signer.sign(&claims(
        "orders-service",
        "https://issuer.example",
        "event-gateway",
    ));

    let broker = Broker::start().await;
    // The README's commands name the topic.
    broker.ensure_topic("orders", 1).await;
    let gateways: Vec<&String> = commands
        .iter()
        .filter(|l| l.starts_with("cargo run --release --bin gateway -- "))
        .collect();
    let calls: Vec<&String> = commands
        .iter()
        .filter(|l| l.starts_with("grpcurl "))
        .collect();
    assert_eq!((gateways.len(), calls.len()), (2, 2), "{commands:#?}");
    let binary = env!("CARGO_BIN_EXE_gateway");
    for (start, call) in gateways.iter().zip(calls) {
        let port = free_port();
        let line = start.replacen("cargo run --release --bin gateway --", binary, 1);
        let gateway = Command::new("bash")
            .args(["-c", &format!("exec {line}")])
            .current_dir(&dir)
            .env("GATEWAY_ADDR", format!("127.0.0.1:{port}"))
            .env("KAFKA_BROKERS", broker.brokers())
            .env("METRICS_ADDR", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the gateway starts");
        let mut gateway = Running(gateway);
        let call = call
            .replacen("grpcurl", &grpcurl().display().to_string(), 1)
            .replace("localhost:50051", &format!("localhost:{port}"));
        eventually("the gateway accepts TLS connections", || async {
            testkit::accepts(port)
        })
        .await;
        // Until the gateway is ready (health on Kafka), a call can fail.
        let answer = std::sync::Mutex::new(String::new());
        eventually("the README's call succeeds", || async {
            let output = Command::new("bash")
                .args(["-c", &call])
                .current_dir(&dir)
                .env("TOKEN", &token)
                .output()
                .unwrap();
            *answer.lock().unwrap() = String::from_utf8_lossy(&output.stdout).into_owned();
            output.status.success()
        })
        .await;
        let answer = answer.into_inner().unwrap();
        assert!(
            answer.contains("\"eventId\"") && answer.contains("\"topic\": \"orders\""),
            "{answer}"
        );
        sigterm(&gateway.0);
        gateway.0.wait().unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
