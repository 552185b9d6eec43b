//! The gateway's integration tests, one binary: every module below runs
//! against real parts (Apache Kafka, grpcurl, Python, Java and Node
//! clients, a browser) that testkit starts. One binary links librdkafka
//! once and starts the shared Kafka node once; its tests keep apart by
//! topics and groups of their own. A test that breaks brokers takes a node
//! or a cluster of its own (testkit's `Broker::own`, `Cluster`, one cluster
//! at a time).

mod acknowledge;
mod any_replica;
mod audit;
mod cluster;
mod compression;
mod delivery_control;
mod docs_commands;
mod edge;
mod errors;
mod examples;
mod fanout;
mod faults;
mod flow_control;
mod grpc_web;
mod grpcurl;
mod health;
mod hostile;
mod http_api;
mod http_publish;
mod java_peer;
mod kafka_tls;
mod limits;
mod metrics;
mod poison;
mod policy;
mod publish_stream;
mod publish_subscribe;
mod rebalance;
mod reflection;
mod replicas;
mod securing;
mod shares;
mod shutdown;
mod tls;
mod tokens;
mod viewer;
