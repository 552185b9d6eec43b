// The event-gateway client, loaded from proto/ at run time with
// @grpc/proto-loader, and helpers for google.protobuf.Struct payloads.
// Options: --gateway host:port; --ca FILE connects over TLS, --cert FILE and
// --key FILE add a client certificate (mutual TLS); --token-file FILE sends
// `authorization: Bearer <token>` on every call.
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_ROOT = path.join(__dirname, "..", "..", "proto");

function credentials() {
  const ca = option("ca");
  if (!ca) return grpc.credentials.createInsecure();
  const cert = option("cert");
  const key = option("key");
  return grpc.credentials.createSsl(
    fs.readFileSync(ca),
    key ? fs.readFileSync(key) : null,
    cert ? fs.readFileSync(cert) : null,
  );
}

// The metadata every call carries: the bearer token, when there is one.
function metadata() {
  const md = new grpc.Metadata();
  const tokenFile = option("token-file");
  if (tokenFile) md.add("authorization", `Bearer ${fs.readFileSync(tokenFile, "utf8").trim()}`);
  return md;
}

function connect() {
  const definition = protoLoader.loadSync("eventgateway/v1/gateway.proto", {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const { EventGateway } = grpc.loadPackageDefinition(definition).eventgateway.v1;
  return new EventGateway(option("gateway", "localhost:50051"), credentials());
}

function toValue(value) {
  if (value === null || value === undefined) return { nullValue: "NULL_VALUE" };
  if (typeof value === "number") return { numberValue: value };
  if (typeof value === "string") return { stringValue: value };
  if (typeof value === "boolean") return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  return { structValue: toStruct(value) };
}

function toStruct(object) {
  const fields = {};
  for (const [key, value] of Object.entries(object)) fields[key] = toValue(value);
  return { fields };
}

function fromValue(value) {
  switch (value.kind) {
    case "numberValue": return value.numberValue;
    case "stringValue": return value.stringValue;
    case "boolValue": return value.boolValue;
    case "listValue": return value.listValue.values.map(fromValue);
    case "structValue": return fromStruct(value.structValue);
    default: return null;
  }
}

function fromStruct(struct) {
  const object = {};
  for (const [key, value] of Object.entries(struct.fields || {})) object[key] = fromValue(value);
  return object;
}

function option(name, fallback) {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? process.argv[index + 1] : fallback;
}

module.exports = { connect, metadata, toStruct, fromStruct, option };
