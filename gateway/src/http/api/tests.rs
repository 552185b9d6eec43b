use std::collections::BTreeSet;

use prost_reflect::{DynamicMessage, Value};

use super::*;
use crate::http::json::Json;

/// A binding as written down: HTTP method, path template, whether the body
/// is the request, RPC name.
type Binding = (String, String, bool, String);

/// The bindings of `rule` (an HttpRule) and its additional bindings.
fn bindings(rpc: &str, rule: &DynamicMessage, into: &mut BTreeSet<Binding>) {
    for method in ["get", "put", "post", "delete", "patch"] {
        if rule.has_field_by_name(method) {
            let template = rule.get_field_by_name(method).unwrap();
            let body = rule.get_field_by_name("body").unwrap();
            assert!(
                matches!(body.as_str(), Some("" | "*")),
                "{rpc}: the routes take the whole request as the body or none of it"
            );
            into.insert((
                method.to_uppercase(),
                template.as_str().unwrap().to_owned(),
                body.as_str() == Some("*"),
                rpc.to_owned(),
            ));
        }
    }
    assert!(
        !rule.has_field_by_name("custom"),
        "{rpc}: no custom methods"
    );
    if let Some(Value::List(more)) = rule.get_field_by_name("additional_bindings").as_deref() {
        for more in more {
            bindings(rpc, more.as_message().unwrap(), into);
        }
    }
}

#[test]
fn every_annotation_has_a_route_and_every_route_an_annotation() {
    let json = Json::new().unwrap();
    let pool = json.pool();
    let http = pool.get_extension_by_name("google.api.http").unwrap();
    let service = pool
        .get_service_by_name("eventgateway.v1.EventGateway")
        .unwrap();
    let mut annotated = BTreeSet::new();
    for method in service.methods() {
        let options = method.options();
        if options.has_extension(&http) {
            let rule = options.get_extension(&http);
            bindings(method.name(), rule.as_message().unwrap(), &mut annotated);
        }
    }
    let routed: BTreeSet<Binding> = ROUTES
        .iter()
        .map(|route| {
            (
                route.method.to_string(),
                route.template.to_owned(),
                route.body,
                route.rpc.name().to_owned(),
            )
        })
        .collect();
    assert_eq!(routed.len(), ROUTES.len(), "a route is listed twice");
    assert_eq!(annotated, routed);
    // Every unary RPC has a route.
    for method in service.methods() {
        if !method.is_client_streaming() && !method.is_server_streaming() {
            assert!(
                routed.iter().any(|(_, _, _, rpc)| rpc == method.name()),
                "{} has no route",
                method.name()
            );
        }
    }
}

#[test]
fn paths_find_their_route_with_the_variable_decoded() {
    let found = |method: Method, path: &str| match find(&method, path) {
        Found::Route(route, bound) => format!("{} {bound:?}", route.rpc.name()),
        Found::OtherMethod(allowed) => format!("405 {allowed}"),
        Found::Nothing => "404".to_owned(),
    };
    assert_eq!(
        found(Method::POST, "/v1/topics/orders.v1:publish"),
        r#"PublishEvent [("topic", "orders.v1")]"#
    );
    assert_eq!(
        found(Method::POST, "/v1/subscriptions/a%2Db.c:settle"),
        r#"Settle [("subscription_id", "a-b.c")]"#
    );
    assert_eq!(
        found(Method::POST, "/v1/subscriptions/x:acknowledge"),
        r#"Acknowledge [("subscription_id", "x")]"#
    );
    assert_eq!(found(Method::GET, "/v1/subscriptions"), "Subscribe []");
    assert_eq!(found(Method::POST, "/v1/subscriptions"), "Subscribe []");
    assert_eq!(found(Method::DELETE, "/v1/subscriptions"), "405 GET, POST");
    assert_eq!(found(Method::GET, "/v1/topics/t:publish"), "405 POST");
    for missing in [
        "/v1/topics/:publish",
        "/v1/topics/a/b:publish",
        "/v1/topics/a:b:publish",
        "/v1/topics/%ZZ:publish",
        "/v1/subscriptions/x:delete",
        "/v1/nothing",
    ] {
        assert_eq!(found(Method::POST, missing), "404", "{missing}");
    }
}
