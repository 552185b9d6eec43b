#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need when they are
# missing: OpenSSL's headers and pkg-config (librdkafka is built with TLS,
# SCRAM and OAUTHBEARER), the openssl command (the tests and the README's
# "Securing the gateway" make keys and certificates with it), Chromium (the
# live event viewer's tests drive it headless), and Java 17 with Maven (the
# tests' Apache Kafka broker runs on Java; Maven resolves its jars), and
# curl (the README's plain HTTP commands, which the tests run), and Go
# (scripts/openapi.sh builds the OpenAPI generator with it) when no Go is
# installed.
set -euo pipefail

missing=()
if ! pkg-config --exists openssl 2>/dev/null; then
  missing+=(libssl-dev pkg-config)
fi
if ! command -v openssl >/dev/null 2>&1; then
  missing+=(openssl)
fi
if ! command -v chromium >/dev/null 2>&1; then
  missing+=(chromium)
fi
if ! command -v java >/dev/null 2>&1; then
  missing+=(openjdk-17-jre-headless)
fi
if ! command -v mvn >/dev/null 2>&1; then
  missing+=(maven)
fi
if ! command -v curl >/dev/null 2>&1; then
  missing+=(curl)
fi
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
  missing+=(golang-go)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
