//! The OpenAPI document: `docs/openapi.json` is what scripts/openapi.sh
//! makes from proto/ and the overlay now (as the TypeScript client is
//! checked fresh), the gateway serves it, and schemathesis (pinned 4.x,
//! installed by scripts/test.sh) runs every non-streaming operation of it
//! against a gateway on the suite's broker with all its checks: no 5xx,
//! every response as the document says, valid requests taken and invalid
//! ones refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::*;
use tokio::process::Command;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("gateway-{test}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn the_document_is_the_generator_s_output_and_the_gateway_serves_it() {
    let dir = scratch("openapi-fresh");
    let made = dir.join("openapi.json");
    let status = Command::new("bash")
        .arg(root().join("scripts/openapi.sh"))
        .arg(&made)
        .status()
        .await
        .expect("scripts/openapi.sh runs");
    assert!(status.success());
    let committed = std::fs::read(root().join("docs/openapi.json")).unwrap();
    assert!(
        std::fs::read(&made).unwrap() == committed,
        "docs/openapi.json is not what scripts/openapi.sh makes from proto/ and docs/openapi.overlay.json: run it and commit the result"
    );

    let gateway = gateway(config(None)).await;
    let output = Command::new("curl")
        .args(["-sS", &format!("http://{}/v1/openapi.json", gateway.addr())])
        .output()
        .await
        .unwrap();
    assert!(
        output.stdout == committed,
        "the gateway serves another document"
    );
    let document: Value = serde_json::from_slice(&committed).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    for path in [
        "/v1/topics/{topic}:publish",
        "/v1/topics/{topic}/events",
        "/v1/subscriptions",
        "/v1/subscriptions/{subscriptionId}:acknowledge",
        "/v1/subscriptions/{subscriptionId}:settle",
        "/v1/openapi.json",
    ] {
        assert!(document["paths"].get(path).is_some(), "{path} is missing");
    }
    gateway.shutdown().await.unwrap();
}

/// The schemathesis command scripts/test.sh installed.
fn schemathesis() -> String {
    std::env::var("SCHEMATHESIS").expect(
        "SCHEMATHESIS names the schemathesis command: scripts/test.sh installs it (PyPI, pinned)",
    )
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let (_broker, topic, gateway, _client) = fixture("http-api-schemathesis", 3).await;
    let dir = scratch("schemathesis");
    // Half the generated topics are one that exists, so that stored events
    // (and their answers) are checked too, not only refusals.
    let config = dir.join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[dictionaries.topics]\nvalues = [\"{topic}\"]\n\n[parameters]\n\"path.topic\" = {{ dictionary = \"topics\", probability = 0.5 }}\n"
        ),
    )
    .unwrap();
    let report = dir.join("events.ndjson");
    let began = Instant::now();
    let run = Command::new(schemathesis())
        .current_dir(&dir)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(root().join("docs/openapi.json"))
        .args(["--url", &format!("http://{}", gateway.addr())])
        .args(["--checks", "all", "--max-examples", "100", "--workers", "1"])
        // The streaming operations, whose answers do not end.
        .args(["--exclude-operation-id", "EventGateway_Subscribe"])
        .args(["--exclude-operation-id", "EventGateway_Subscribe2"])
        .args(["--report", "ndjson", "--report-ndjson-path"])
        .arg(&report)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("schemathesis ends within 5 minutes")
        .expect("schemathesis runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis failed:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("schemathesis took {:?}", began.elapsed());

    // Cases per operation, and answers per operation and status.
    let mut cases: HashMap<String, usize> = HashMap::new();
    let mut statuses: HashMap<(String, u64), usize> = HashMap::new();
    for line in std::fs::read_to_string(&report).unwrap().lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        let Some(recorder) = event["ScenarioFinished"].get("recorder") else {
            continue;
        };
        let label = recorder["label"].as_str().unwrap().to_owned();
        let count = |field: &str| recorder[field].as_object().map(|all| all.len());
        *cases.entry(label.clone()).or_default() += count("cases").unwrap_or_default();
        let interactions = recorder["interactions"].as_object().into_iter().flatten();
        for (_, interaction) in interactions {
            if let Some(status) = interaction["response"]["status_code"].as_u64() {
                *statuses.entry((label.clone(), status)).or_default() += 1;
            }
        }
    }
    eprintln!("cases: {cases:?}\nanswers: {statuses:?}");
    for operation in [
        "POST /v1/topics/{topic}:publish",
        "POST /v1/topics/{topic}/events",
        "POST /v1/subscriptions/{subscriptionId}:acknowledge",
        "POST /v1/subscriptions/{subscriptionId}:settle",
    ] {
        let count = cases.get(operation).copied().unwrap_or_default();
        assert!(count >= 100, "{operation}: {count} cases");
    }
    assert!(cases.contains_key("GET /v1/openapi.json"), "{cases:?}");
    assert!(
        statuses.keys().all(|(_, status)| *status < 500),
        "{statuses:?}"
    );
    for stored in [
        "POST /v1/topics/{topic}:publish",
        "POST /v1/topics/{topic}/events",
    ] {
        assert!(
            statuses
                .get(&(stored.to_owned(), 200))
                .copied()
                .unwrap_or_default()
                >= 10,
            "{stored}: too few events stored to check their answers: {statuses:?}"
        );
    }
    gateway.shutdown().await.unwrap();
}
