// The event-gateway client, loaded from proto/ at run time with
// @grpc/proto-loader, and helpers for google.protobuf.Struct payloads.
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_ROOT = path.join(__dirname, "..", "..", "proto");

function connect(address) {
  const definition = protoLoader.loadSync("eventgateway/v1/gateway.proto", {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const { EventGateway } = grpc.loadPackageDefinition(definition).eventgateway.v1;
  return new EventGateway(address, grpc.credentials.createInsecure());
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

module.exports = { connect, toStruct, fromStruct, option };
