//! docker-compose.yml, checked statically (no Docker engine runs here): it
//! parses, has every service the binaries need, runs the Apache Kafka
//! version the suite tests with, sets only environment
//! variables the binaries accept (compared with their `--help`), its ports
//! and addresses line up, and start-up waits on health.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

use serde_norway::Value;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The environment variables a binary's `--help` documents, plus the ones
/// every binary reads without a flag.
fn accepted(binary: &PathBuf) -> HashSet<String> {
    let help = Command::new(binary).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let mut names: HashSet<String> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_owned)
        .collect();
    names.extend(["RUST_LOG", "LOG_FORMAT", "NO_COLOR"].map(String::from));
    names
}

fn environment(service: &Value) -> Vec<(String, String)> {
    service["environment"]
        .as_mapping()
        .expect("environment as a mapping")
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                other => serde_norway::to_string(other).unwrap().trim().to_owned(),
            };
            (k.as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn env_value(service: &Value, name: &str) -> String {
    environment(service)
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("{name} is not set"))
        .1
}

/// Container ports a service publishes ("host:container").
fn published(service: &Value) -> Vec<u16> {
    service["ports"]
        .as_sequence()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.as_str()?.rsplit(':').next()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("{addr} has no port"))
}

fn depends_on(service: &Value, other: &str) -> String {
    service["depends_on"][other]["condition"]
        .as_str()
        .unwrap_or_else(|| panic!("no depends_on condition on {other}"))
        .to_owned()
}

#[test]
fn docker_compose_wires_up_every_service_with_settings_the_binaries_accept() {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let compose: Value = serde_norway::from_str(&text).expect("docker-compose.yml parses");
    let services = &compose["services"];
    for name in [
        "kafka",
        "kafka-init",
        "gateway",
        "notifier",
        "mailpit",
        "jaeger",
    ] {
        assert!(services.get(name).is_some(), "service {name} is missing");
    }
    let (kafka, gateway, notifier) = (
        &services["kafka"],
        &services["gateway"],
        &services["notifier"],
    );
    let (mailpit, jaeger) = (&services["mailpit"], &services["jaeger"]);

    // The Kafka the suite tests with.
    for name in ["kafka", "kafka-init"] {
        assert_eq!(
            services[name]["image"].as_str(),
            Some(format!("apache/kafka:{}", testkit::kafka::VERSION).as_str()),
            "{name} runs another Kafka than the tests"
        );
    }

    // Only settings the binaries document.
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_notifier"))
        .parent()
        .unwrap()
        .to_owned();
    for (service, binary) in [
        (gateway, bin_dir.join("gateway")),
        (notifier, bin_dir.join("notifier")),
    ] {
        let accepted = accepted(&binary);
        for (name, _) in environment(service) {
            assert!(
                accepted.contains(&name) || name.starts_with("OTEL_"),
                "{name} is not a setting of {}",
                binary.display()
            );
        }
    }

    // Ports and addresses line up.
    let gateway_port = port_of(&env_value(gateway, "GATEWAY_ADDR"));
    assert!(
        published(gateway).contains(&gateway_port),
        "the gRPC port is published"
    );
    assert!(published(gateway).contains(&port_of(&env_value(gateway, "METRICS_ADDR"))));
    assert!(published(notifier).contains(&port_of(&env_value(notifier, "NOTIFIER_METRICS_ADDR"))));
    assert_eq!(
        env_value(notifier, "GATEWAY_URL"),
        format!("http://gateway:{gateway_port}")
    );
    let advertised = env_value(kafka, "KAFKA_ADVERTISED_LISTENERS");
    assert!(
        advertised.contains(&format!("://{}", env_value(gateway, "KAFKA_BROKERS"))),
        "the gateway's brokers are what Kafka advertises: {advertised}"
    );
    let smtp = env_value(notifier, "SMTP_URL");
    assert!(smtp.starts_with("smtp://mailpit:"), "{smtp}");
    assert!(
        published(mailpit).contains(&port_of(&smtp)),
        "Mailpit listens on the SMTP port"
    );
    for service in [gateway, notifier] {
        let otlp = env_value(service, "OTEL_EXPORTER_OTLP_ENDPOINT");
        assert!(otlp.starts_with("http://jaeger:"), "{otlp}");
        assert!(
            published(jaeger).contains(&port_of(&otlp)),
            "Jaeger takes OTLP on {otlp}"
        );
    }

    // Start-up waits on health.
    assert!(kafka.get("healthcheck").is_some() && mailpit.get("healthcheck").is_some());
    assert_eq!(depends_on(gateway, "kafka"), "service_healthy");
    assert_eq!(
        depends_on(gateway, "kafka-init"),
        "service_completed_successfully"
    );
    assert_eq!(depends_on(notifier, "mailpit"), "service_healthy");
    assert_eq!(depends_on(notifier, "gateway"), "service_started");
    let init = serde_norway::to_string(&services["kafka-init"]).unwrap();
    assert!(init.contains("--topic user-registered ") && init.contains("user-registered.dlq"));

    // Both services are built from the repository's multi-stage, non-root Dockerfile.
    for service in [gateway, notifier] {
        assert_eq!(service["build"].as_str(), Some("."));
    }
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")) >= 2
    );
    assert!(
        dockerfile.contains("\nUSER app\n"),
        "the runtime image runs as a non-root user"
    );
}
