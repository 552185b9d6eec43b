#!/usr/bin/env python3
"""Makes docs/openapi.json from what protoc-gen-openapiv2 generates from
proto/ (Swagger 2.0, from the google.api.http annotations) and the
checked-in overlay docs/openapi.overlay.json.

The generated document is carried over to OpenAPI 3.1 (paths, parameters,
bodies, responses and schemas as they are, references moved to
components), so that the overlay can say in JSON Schema 2020-12 what
Swagger 2.0 cannot: one member of a oneof at most, attribute names, and the
CloudEvents and streaming routes that annotations cannot describe; and
that the proto3 JSON mapping reads null as any field's default. The
overlay is a JSON Merge Patch (RFC 7396): objects merge, `null` removes,
anything else replaces.

Usage: openapi.py GENERATED OVERLAY OUT
"""

import json
import sys


def references(value):
    """`value` with every #/definitions/ reference moved to components."""
    if isinstance(value, dict):
        return {
            key: (
                item.replace("#/definitions/", "#/components/schemas/")
                if key == "$ref"
                else references(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [references(item) for item in value]
    return value


def parameter(generated):
    """A Swagger 2.0 path or query parameter as OpenAPI 3.1 writes it."""
    schema = {
        key: generated[key]
        for key in ("type", "format", "items", "enum", "default", "pattern")
        if key in generated
    }
    converted = {
        "name": generated["name"],
        "in": generated["in"],
        "required": generated.get("required", False),
        "schema": schema,
    }
    if "description" in generated:
        converted["description"] = generated["description"]
    if generated.get("collectionFormat") == "multi":
        converted["style"] = "form"
        converted["explode"] = True
    return converted


def operation(generated, consumes, produces):
    """A Swagger 2.0 operation as OpenAPI 3.1 writes it."""
    converted = {
        key: generated[key]
        for key in ("summary", "description", "operationId", "tags")
        if key in generated
    }
    parameters = []
    for item in generated.get("parameters", []):
        if item["in"] == "body":
            converted["requestBody"] = {
                "required": item.get("required", False),
                "content": {kind: {"schema": item["schema"]} for kind in consumes},
            }
        else:
            parameters.append(parameter(item))
    if parameters:
        converted["parameters"] = parameters
    converted["responses"] = {
        status: {
            "description": response.get("description", ""),
            "content": {kind: {"schema": response["schema"]} for kind in produces},
        }
        for status, response in generated["responses"].items()
    }
    return converted


def nullable(schemas):
    """Every optional property of the API's messages in `schemas` (those
    generated: `v1...`, `EventGateway...Body`) also taking null: the proto3
    JSON mapping reads null as a field's default."""
    for name, schema in schemas.items():
        if not name.startswith(("v1", "EventGateway")):
            continue
        required = set(schema.get("required", []))
        for field, prop in schema.get("properties", {}).items():
            if field in required:
                continue
            if "$ref" in prop:
                schema["properties"][field] = {"anyOf": [prop, {"type": "null"}]}
            elif isinstance(prop.get("type"), str):
                prop["type"] = [prop["type"], "null"]


def merge(target, patch):
    """RFC 7396: `patch` merged into `target`."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge(merged.get(key), value)
    return merged


def main():
    generated_path, overlay_path, out_path = sys.argv[1:4]
    with open(generated_path, encoding="utf-8") as file:
        generated = json.load(file)
    with open(overlay_path, encoding="utf-8") as file:
        overlay = json.load(file)
    consumes = generated.get("consumes", ["application/json"])
    produces = generated.get("produces", ["application/json"])
    document = {
        "openapi": "3.1.0",
        "info": generated["info"],
        "tags": generated.get("tags", []),
        "paths": {
            path: {
                method: operation(item, consumes, produces)
                for method, item in methods.items()
            }
            for path, methods in generated["paths"].items()
        },
        "components": {"schemas": generated.get("definitions", {})},
    }
    document = merge(references(document), overlay)
    nullable(document["components"]["schemas"])
    with open(out_path, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2, sort_keys=True, ensure_ascii=False)
        file.write("\n")


if __name__ == "__main__":
    main()
