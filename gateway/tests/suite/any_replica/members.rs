//! The group's members in the any-replica test: each reads its stream and
//! settles what it gets at a replica chosen at random, and tells what it
//! saw in a [`Tally`].

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::subscribe_response::Kind;
use eventgateway::v1::{SettleOutcome, SettleRequest, SettleResult, SubscribeRequest};
use testkit::*;
use tonic::transport::Channel;
use tonic::Code;

use super::REPLICAS;

/// What the members saw.
#[derive(Default)]
pub(super) struct Tally {
    /// Per event number, how many times its ack was answered ACCEPTED.
    pub(super) accepted: Mutex<HashMap<i64, usize>>,
    /// Calls answered NOT_FOUND.
    pub(super) not_found: AtomicUsize,
    /// Settles sent to a replica other than the stream's.
    pub(super) elsewhere: AtomicUsize,
    /// Any other status, or an outcome a healthy group does not give.
    pub(super) odd: Mutex<Vec<String>>,
    /// (subscription id, ack id, home replica) of acks answered ACCEPTED,
    /// the first few of each member.
    pub(super) sample: Mutex<Vec<(String, String, usize)>>,
    /// Deliveries replica 0's member holds back, unsettled.
    pub(super) held: Mutex<Vec<(String, String)>>,
    /// The partitions each member holds, as its Rebalance notices say.
    pub(super) holds: Mutex<HashMap<usize, HashSet<i32>>>,
    /// Set while replica 0 is to be frozen: members send no Settle there
    /// (one would hang until the kill, then fail as no owner answers).
    pub(super) spare_zero: AtomicBool,
    /// Settles in flight at replica 0.
    pub(super) at_zero: AtomicUsize,
}

impl Tally {
    /// A replica to send one Settle to, chosen at random, and counted as in
    /// flight at replica 0 when it is that one: the caller calls
    /// [`Tally::sent`] after the call.
    pub(super) fn pick(&self) -> usize {
        let random = uuid::Uuid::new_v4().as_u128();
        let via = (random % REPLICAS as u128) as usize;
        if via != 0 {
            return via;
        }
        // Counted first, then the flag read: the test sets the flag, then
        // waits for the count to reach zero, so no call slips between.
        self.at_zero.fetch_add(1, Ordering::SeqCst);
        if !self.spare_zero.load(Ordering::SeqCst) {
            return 0;
        }
        self.at_zero.fetch_sub(1, Ordering::SeqCst);
        1 + (random >> 64) as usize % (REPLICAS - 1)
    }

    pub(super) fn sent(&self, via: usize) {
        if via == 0 {
            self.at_zero.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

pub(super) async fn clients(addrs: &[SocketAddr]) -> Vec<EventGatewayClient<Channel>> {
    let mut clients = Vec::new();
    for addr in addrs {
        clients.push(client(*addr).await);
    }
    clients
}

/// One Settle of `ack` for `id` at `client`: its one result, or the status.
pub(super) async fn settle_one(
    client: &mut EventGatewayClient<Channel>,
    id: &str,
    ack: &str,
) -> Result<SettleResult, tonic::Status> {
    let request = SettleRequest {
        subscription_id: id.to_owned(),
        acks: vec![ack.to_owned()],
        ..SettleRequest::default()
    };
    let mut answer = client.settle(request).await?.into_inner();
    assert_eq!(answer.results.len(), 1, "{answer:?}");
    Ok(answer.results.remove(0))
}

/// A member on replica `home`: reads its stream and acks each delivery
/// at a random replica, or (on replica 0, once `hold` is set) holds it.
pub(super) async fn member(
    home: usize,
    addrs: Vec<SocketAddr>,
    request: SubscribeRequest,
    (tally, hold): (Arc<Tally>, Arc<AtomicBool>),
) {
    let mut clients = clients(&addrs).await;
    let (id, mut stream) = subscribe(&mut clients[home], request).await;
    let mut sampled = 0;
    while let Ok(Some(message)) = stream.message().await {
        let delivery = match message.kind {
            Some(Kind::Delivery(delivery)) => delivery,
            Some(Kind::Rebalance(notice)) => {
                let mut holds = tally.holds.lock().unwrap();
                let holds = holds.entry(home).or_default();
                for revoked in notice.revoked {
                    holds.remove(&revoked.partition);
                }
                holds.extend(notice.assigned.iter().map(|tp| tp.partition));
                continue;
            }
            _ => continue,
        };
        if home == 0 && hold.load(Ordering::SeqCst) {
            tally
                .held
                .lock()
                .unwrap()
                .push((id.clone(), delivery.ack_id));
            continue;
        }
        let via = tally.pick();
        if via != home {
            tally.elsewhere.fetch_add(1, Ordering::SeqCst);
        }
        let settled = settle_one(&mut clients[via], &id, &delivery.ack_id).await;
        tally.sent(via);
        match settled {
            Ok(result) if result.outcome == SettleOutcome::Accepted as i32 => {
                *tally
                    .accepted
                    .lock()
                    .unwrap()
                    .entry(n(&delivery))
                    .or_default() += 1;
                if sampled < 5 {
                    sampled += 1;
                    let sample = (id.clone(), delivery.ack_id, home);
                    tally.sample.lock().unwrap().push(sample);
                }
            }
            // A partition revoked meanwhile: the owner says STALE too.
            Ok(result) if result.outcome == SettleOutcome::Stale as i32 => {}
            Ok(result) => tally.odd.lock().unwrap().push(format!("{result:?}")),
            Err(status) if status.code() == Code::NotFound => {
                tally.not_found.fetch_add(1, Ordering::SeqCst);
            }
            Err(status) => tally.odd.lock().unwrap().push(format!("{status:?}")),
        }
    }
}

pub(super) fn handled(tally: &Tally, range: std::ops::Range<i64>) -> usize {
    let accepted = tally.accepted.lock().unwrap();
    range.filter(|n| accepted.contains_key(n)).count()
}
