//! Acks at any replica: three gateway processes on one broker serve one
//! consumer group, one MANUAL Subscribe stream on each, and every delivery
//! is acked by a unary Settle sent to a replica chosen at random for the
//! call, as a round-robin balancer would. Each is answered as its owner
//! answers it (no NOT_FOUND), and every event is handled.
//!
//! Then the owner of some held deliveries hangs (SIGSTOP): a Settle for
//! them at another replica is answered STALE once `--forward-timeout`
//! passed; it is killed (SIGKILL): STALE at once; it comes back at the same
//! addresses: STALE from the new process. Its events come again through
//! the group, none lost. Forged and altered ids are refused by every
//! replica and settle nothing; the internal listener refuses a client.

mod edges;
mod members;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventgateway::v1::{
    AckMode, AcknowledgeRequest, SettleOutcome, SettleRequest, StartFrom, SubscribeRequest,
};
use testkit::*;
use tonic::Code;

use members::{clients, handled, member, settle_one, Tally};

const REPLICAS: usize = 3;
/// Events before the owner of the held deliveries hangs, and after.
const FIRST: i64 = 150;
const SECOND: i64 = 150;
/// The replicas' --forward-timeout (the default).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// What a call's round trip may add to it on a busy machine.
const SLACK: Duration = Duration::from_millis(1500);

/// A --route-key-file of one key, in a directory of its own.
pub(crate) fn route_key_file(test: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("gateway-{test}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("route.keys");
    std::fs::write(&keys, format!("{}\n", uuid::Uuid::new_v4().simple())).unwrap();
    keys
}

/// `id` with one character of its signature changed.
fn altered(id: &str) -> String {
    let mut bytes = id.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settles_sent_to_any_replica_are_answered_as_their_owner_would() {
    let broker = Broker::start().await;
    let topic = topic("any-replica");
    broker.create_topic(&topic, 3).await;
    let keys = route_key_file("any-replica");
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_gateway"));
    let mut replicas: Vec<Replica> = (0..REPLICAS).map(|_| Replica::new(binary)).collect();
    let internal: Vec<u16> = (0..REPLICAS).map(|_| free_port()).collect();
    let flags = |port: u16| -> Vec<String> {
        [
            "--internal-addr",
            &format!("127.0.0.1:{port}"),
            "--route-key-file",
            keys.to_str().unwrap(),
            "--forward-timeout",
            "2s",
            "--commit-interval",
            "500ms",
            "--group-protocol",
            "classic",
            // A killed replica's partitions move once its session ends.
            "--kafka-property",
            "session.timeout.ms=6000",
            "--kafka-property",
            "heartbeat.interval.ms=1000",
        ]
        .map(String::from)
        .to_vec()
    };
    for (replica, port) in replicas.iter_mut().zip(&internal) {
        let flags = flags(*port);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        replica.start(&broker.brokers(), &flags).await;
    }
    let addrs: Vec<SocketAddr> = replicas.iter().map(Replica::addr).collect();
    let request = SubscribeRequest {
        topics: vec![topic.clone()],
        group: format!("{topic}.g"),
        start_from: StartFrom::Earliest as i32,
        ack_mode: AckMode::Manual as i32,
        max_unacked: 20,
        ..SubscribeRequest::default()
    };
    let (tally, hold) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
    let members: Vec<_> = (0..REPLICAS)
        .map(|home| {
            let state = (tally.clone(), hold.clone());
            tokio::spawn(member(home, addrs.clone(), request.clone(), state))
        })
        .collect();
    eventually("each member holds a partition", || async {
        let holds = tally.holds.lock().unwrap();
        (0..REPLICAS).all(|home| holds.get(&home).is_some_and(|held| held.len() == 1))
    })
    .await;
    produce_numbered(&broker.brokers(), &topic, None, 0..FIRST, Duration::ZERO).await;
    eventually("the first events handled", || async {
        handled(&tally, 0..FIRST) == FIRST as usize
    })
    .await;
    assert_eq!(tally.not_found.load(Ordering::SeqCst), 0);
    // Committed too: what an owner answers for these ids holds still.
    let group = request.group.clone();
    eventually("what was handled is committed", || {
        let (brokers, group, topic) = (broker.brokers(), group.clone(), topic.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                (0..REPLICAS as i32)
                    .map(|p| committed_offset(&brokers, &group, &topic, p).unwrap_or(0))
                    .sum::<i64>()
                    == FIRST
            })
            .await
            .unwrap()
        }
    })
    .await;

    // Per id, every replica gives the owner's answer: an ack settled
    // already is one, and the same one wherever it is sent.
    let mut clients = clients(&addrs).await;
    let sample = tally.sample.lock().unwrap().clone();
    assert!(sample.iter().any(|(_, _, home)| *home == 0), "{sample:?}");
    for (id, ack, home) in &sample {
        let direct = settle_one(&mut clients[*home], id, ack).await.unwrap();
        for (via, client) in clients.iter_mut().enumerate() {
            let answer = settle_one(client, id, ack).await.unwrap();
            assert_eq!(answer, direct, "replica {via} for an id of replica {home}");
        }
        // Forged and altered ids: refused by every replica.
        let (uuid, _) = id.split_once('.').unwrap();
        let other_uuid = uuid.replace(&uuid[..4], "0000");
        for (bad_id, bad_ack) in [
            (id.clone(), altered(ack)),
            (id.clone(), ack.replacen(':', ":1", 2)),
            (altered(id), ack.clone()),
            (id.replacen(uuid, &other_uuid, 1), ack.clone()),
        ] {
            for client in clients.iter_mut() {
                let refused = settle_one(client, &bad_id, &bad_ack).await.unwrap_err();
                assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
                assert!(
                    refused.message().contains("signature does not match"),
                    "{refused:?}"
                );
            }
        }
    }

    // A client at the internal listener is refused, whatever it calls.
    let mut inside = client(format!("127.0.0.1:{}", internal[1]).parse().unwrap()).await;
    let (id, ack, _) = &sample[0];
    let refused = settle_one(&mut inside, id, ack).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let mut forged = tonic::Request::new(SettleRequest {
        subscription_id: id.clone(),
        acks: vec![ack.clone()],
        ..SettleRequest::default()
    });
    forged
        .metadata_mut()
        .insert("x-eventgateway-replica", "guessed".parse().unwrap());
    let refused = inside.settle(forged).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let refused = inside
        .publish_event(eventgateway::v1::PublishEventRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    // Replica 0's member holds what comes next.
    hold.store(true, Ordering::SeqCst);
    produce_numbered(
        &broker.brokers(),
        &topic,
        None,
        FIRST..FIRST + SECOND,
        Duration::ZERO,
    )
    .await;
    eventually("replica 0's member holds five deliveries", || async {
        tally.held.lock().unwrap().len() >= 5
    })
    .await;
    let held = tally.held.lock().unwrap().clone();
    // A forged variant of a held ack id settles nothing: the real one is
    // still out, and accepted.
    let (id, ack) = &held[3];
    let refused = settle_one(&mut clients[1], id, &altered(ack))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let real = settle_one(&mut clients[2], id, ack).await.unwrap();
    assert_eq!(real.outcome, SettleOutcome::Accepted as i32, "{real:?}");

    // The owner hangs: no answer within --forward-timeout is STALE. The
    // members send no Settle to it meanwhile, and none is left in flight.
    tally.spare_zero.store(true, Ordering::SeqCst);
    eventually("no member's Settle in flight at replica 0", || async {
        tally.at_zero.load(Ordering::SeqCst) == 0
    })
    .await;
    sigstop(replicas[0].child.as_ref().unwrap());
    let (id, ack) = &held[0];
    let began = Instant::now();
    let stale = settle_one(&mut clients[1], id, ack).await.unwrap();
    let took = began.elapsed();
    assert_eq!(stale.outcome, SettleOutcome::Stale as i32, "{stale:?}");
    assert!(stale.detail.contains("--forward-timeout"), "{stale:?}");
    assert!(
        took >= FORWARD_TIMEOUT && took < FORWARD_TIMEOUT + SLACK,
        "a hung owner answered for after {took:?}"
    );
    eprintln!("any replica: a hung owner's ack answered STALE after {took:?}");

    // Killed: the connection is refused, STALE at once.
    let mut child = replicas[0].child.take().unwrap();
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let (id, ack) = &held[1];
    let began = Instant::now();
    let stale = settle_one(&mut clients[2], id, ack).await.unwrap();
    let took = began.elapsed();
    assert_eq!(stale.outcome, SettleOutcome::Stale as i32, "{stale:?}");
    assert!(
        took < FORWARD_TIMEOUT,
        "a dead owner answered for after {took:?}"
    );
    eprintln!("any replica: a killed owner's ack answered STALE after {took:?}");
    // Acknowledge, which answers for all of its ids at once: NOT_FOUND, as
    // for a subscription that ended.
    let (id, ack) = &held[4];
    let gone = clients[2]
        .acknowledge(AcknowledgeRequest {
            subscription_id: id.clone(),
            ack_ids: vec![ack.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    assert!(gone.message().contains("is gone"), "{gone:?}");

    // Another process at the same addresses: STALE from it, directly or
    // through another replica, the same answer.
    let flags = flags(internal[0]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    replicas[0].start(&broker.brokers(), &flags).await;
    let mut restarted = client(addrs[0]).await;
    let (id, ack) = &held[2];
    let direct = settle_one(&mut restarted, id, ack).await.unwrap();
    let through = settle_one(&mut clients[1], id, ack).await.unwrap();
    assert_eq!(direct.outcome, SettleOutcome::Stale as i32, "{direct:?}");
    assert!(direct.detail.contains("another process"), "{direct:?}");
    assert_eq!(through, direct);
    tally.spare_zero.store(false, Ordering::SeqCst);

    // Its events come again through the group: none lost.
    let all = 0..FIRST + SECOND;
    let every = within(PATIENCE, || async {
        handled(&tally, all.clone()) == all.clone().count()
    })
    .await;
    let accepted = tally.accepted.lock().unwrap().clone();
    let missing: Vec<i64> = all.filter(|n| !accepted.contains_key(n)).collect();
    let odd = tally.odd.lock().unwrap().clone();
    assert!(
        every,
        "events never settled: {missing:?}; other answers: {odd:?}"
    );
    assert_eq!(tally.not_found.load(Ordering::SeqCst), 0, "no NOT_FOUND");
    let odd = tally.odd.lock().unwrap().clone();
    assert!(odd.is_empty(), "answers no owner gives: {odd:?}");
    for member in members {
        member.abort();
    }
    eprintln!(
        "any replica: {} events, {} accepted by a settle at a random replica ({} of all settles sent to another replica than the stream's), 0 NOT_FOUND",
        FIRST + SECOND,
        tally.accepted.lock().unwrap().values().sum::<usize>(),
        tally.elsewhere.load(Ordering::SeqCst),
    );
}
