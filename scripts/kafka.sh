#!/usr/bin/env bash
# Resolves Apache Kafka's broker, as Maven Central publishes it, for the test
# suite and the benchmark: the exact versions testkit/kafka/pom.xml pins,
# with what they depend on, checksums checked (-C), into the project's cache
# (~/.cache/event-gateway, or EVENT_GATEWAY_CACHE), and writes the classpath
# the tests start `java ... kafka.Kafka` with. Once resolved it does nothing.
# Needs Java 17 (or later) and Maven; running the gateway never needs Java.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${EVENT_GATEWAY_CACHE:-$HOME/.cache/event-gateway}"
pom=testkit/kafka/pom.xml
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
classpath="$cache/kafka-$version.classpath"

if ! command -v java >/dev/null 2>&1 && [ ! -x "${JAVA_HOME:-/nonexistent}/bin/java" ]; then
  echo "scripts/kafka.sh: Java is not installed, and Apache Kafka runs on it: install a Java 17" \
    "(or later) runtime, e.g. Debian's openjdk-17-jre-headless" >&2
  exit 1
fi
# Resolved already, from this very pom.
if [ -s "$classpath" ] && cmp -s "$pom" "$classpath.pom"; then
  exit 0
fi
if ! command -v mvn >/dev/null 2>&1; then
  echo "scripts/kafka.sh: Maven is not installed, and it resolves Apache Kafka's jars:" \
    "install it, e.g. Debian's maven" >&2
  exit 1
fi
echo "== resolving Apache Kafka $version from Maven Central into $cache/maven"
mkdir -p "$cache"
mvn --batch-mode --quiet -Dstyle.color=never -C -Dmaven.repo.local="$cache/maven" -f "$pom" \
  dependency:build-classpath -Dmdep.includeScope=runtime -Dmdep.outputFile="$classpath.tmp"
mv "$classpath.tmp" "$classpath"
cp "$pom" "$classpath.pom"
