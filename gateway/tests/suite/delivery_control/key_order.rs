//! Order by key: one event of a key out at a time through random nacks,
//! while other keys flow.

use super::*;

#[tokio::test]
async fn order_within_a_key_holds_through_random_nacks_while_other_keys_flow() {
    let (broker, topic, gateway, mut client) = fixture("ordered", 2).await;
    const KEYS: usize = 20;
    const EVENTS: usize = 2000;
    let published = produce_keyed(&broker.brokers(), &topic, EVENTS, KEYS).await;
    let request = SubscribeRequest {
        ordered_by_key: true,
        max_unacked: 50,
        ..manual(&topic, "")
    };
    let mut stream = Streamer::open(&mut client, request).await;
    // A deterministic generator: about one delivery in seven is nacked.
    let mut random = 0x2545_f491_4f6c_dd1d_u64;
    let mut nack_next = || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % 7 == 0
    };
    let mut handled: HashMap<String, Vec<i64>> = HashMap::new();
    let mut out: HashMap<String, Delivery> = HashMap::new();
    let mut first_of_k0_nacks = 0;
    let mut others_while_k0_held = 0;
    let mut done = 0;
    let mut pending: Vec<(Delivery, bool)> = Vec::new();
    while done < EVENTS {
        // Work on up to 8 deliveries at once; settle them when 8 are in
        // hand or no more come for a moment (with order by key, the next
        // events of these keys wait on them).
        let wait = if pending.is_empty() {
            PATIENCE
        } else {
            Duration::from_millis(50)
        };
        let next = stream.next_delivery_within(wait).await;
        assert!(
            next.is_some() || !pending.is_empty(),
            "no delivery for {PATIENCE:?} with {done} of {EVENTS} handled"
        );
        if let Some(delivery) = next {
            let key = delivery.key.clone();
            assert!(
                out.insert(key.clone(), delivery.clone()).is_none(),
                "two events of {key} out at once: {delivery:?}"
            );
            // key-0's first event is nacked twice before it is handled.
            let nack = if n(&delivery) == 0 && first_of_k0_nacks < 2 {
                first_of_k0_nacks += 1;
                true
            } else {
                nack_next()
            };
            if key != "key-0" && first_of_k0_nacks > 0 && !handled.contains_key("key-0") {
                others_while_k0_held += 1;
            }
            pending.push((delivery, nack));
            if pending.len() < 8 {
                continue;
            }
        }
        let mut request = SettleRequest::default();
        for (delivery, nack) in pending.drain(..) {
            out.remove(&delivery.key);
            if nack {
                request.nacks.push(eventgateway::v1::Nack {
                    ack_id: delivery.ack_id.clone(),
                    delay: None,
                });
            } else {
                handled
                    .entry(delivery.key.clone())
                    .or_default()
                    .push(n(&delivery));
                request.acks.push(delivery.ack_id.clone());
                done += 1;
            }
        }
        let answer = stream.settle(request).await;
        assert!(
            outcomes(&answer).iter().all(|o| *o == Accepted),
            "{answer:?}"
        );
    }
    assert_eq!(handled, published, "every key handled in publish order");
    assert!(
        others_while_k0_held > 0,
        "other keys flowed while key-0's first event was being retried"
    );
    gateway.shutdown().await.unwrap();
}
