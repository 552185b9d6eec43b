//! gRPC reflection answers in both protocol versions: v1, and v1alpha for
//! older tools (grpcurl 1.8 speaks only v1alpha; the grpcurl test covers it
//! with the real tool).

use testkit::*;
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

#[tokio::test]
async fn reflection_v1_lists_the_api_and_health() {
    let gateway = gateway(config(None)).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", gateway.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list, got {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["eventgateway.v1.EventGateway", "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    gateway.shutdown().await.unwrap();
}
