use super::*;

fn routing(keys: &[&str], address: &str) -> Routing {
    Routing::new(RouteSettings {
        keys: keys.iter().map(|key| key.as_bytes().to_vec()).collect(),
        advertised: address.into(),
        forward_timeout: Duration::from_secs(2),
        mtls: None,
    })
    .unwrap()
}

const OLD: &str = "an old key of at least thirty-two bytes, for tests";
const NEW: &str = "a new key of at least thirty-two bytes, for tests!";

#[test]
fn a_subscription_id_names_its_replica_and_any_replica_with_the_key_reads_it() {
    let (owner, other) = (
        routing(&[OLD], "10.0.0.1:7001"),
        routing(&[OLD], "10.0.0.2:7001"),
    );
    let id = owner.subscription_id("5e0c3f2a-1111-4222-8333-444455556666");
    assert!(
        id.len() <= eventgateway::bounds::MAX_SUBSCRIPTION_ID_LEN,
        "{id}"
    );
    let read = other.owner(&id).unwrap();
    assert_eq!(read, *owner.me());
    assert_eq!(read.address, "10.0.0.1:7001");
    assert!(owner.is_me(&read) && !other.is_me(&read));
    // A restarted replica at the same address is another owner.
    let restarted = routing(&[OLD], "10.0.0.1:7001");
    assert!(!restarted.is_me(&restarted.owner(&id).unwrap()));
}

#[test]
fn a_forged_or_altered_subscription_id_is_refused() {
    let owner = routing(&[OLD], "10.0.0.1:7001");
    let id = owner.subscription_id("5e0c3f2a-1111-4222-8333-444455556666");
    let (uuid, rest) = id.split_once('.').unwrap();
    let (_, mac) = rest.split_once('.').unwrap();
    let elsewhere = encode_route(&Owner {
        instance: owner.me().instance,
        address: "10.6.6.6:7001".into(),
    });
    let mut flipped = id.clone().into_bytes();
    flipped[3] ^= 1;
    for forged in [
        format!("{uuid}.{elsewhere}.{mac}"),
        format!("aaaaaaaa{}", &id[8..]),
        String::from_utf8(flipped).unwrap(),
        uuid.to_owned(),
        format!("{uuid}.{elsewhere}"),
        format!("{id}x"),
        String::new(),
    ] {
        let error = owner.owner(&forged).unwrap_err();
        assert!(
            error.to_string().contains("signature does not match"),
            "{forged}: {error}"
        );
    }
    // Another key signs other ids.
    assert!(routing(&[NEW], "10.0.0.2:7001").owner(&id).is_err());
}

#[test]
fn an_ack_id_is_signed_for_its_owner_and_checked_anywhere() {
    let (owner, other) = (
        routing(&[OLD], "10.0.0.1:7001"),
        routing(&[OLD], "10.0.0.2:7001"),
    );
    let mut ack = "orders.v1:3:42:2".to_owned();
    owner.seal_ack(&mut ack);
    assert!(ack.len() <= "orders.v1:3:42:2".len() + 17, "{ack}");
    assert_eq!(
        other.open_ack(owner.me(), &ack).unwrap(),
        "orders.v1:3:42:2"
    );
    // Altered: another offset, another attempt, or signed for another owner.
    for altered in [
        ack.replace(":42:", ":43:"),
        ack.replace(":2.", ":3."),
        "orders.v1:3:42:2".to_owned(),
        format!("{ack}A"),
    ] {
        assert!(other.open_ack(owner.me(), &altered).is_err(), "{altered}");
    }
    assert!(owner.open_ack(other.me(), &ack).is_err());
    assert_eq!(
        AckIds::mine(None).open("orders.v1:3:42:2").unwrap(),
        "orders.v1:3:42:2",
        "without routing, ack ids are as they were"
    );
}

#[test]
fn two_keys_verify_while_the_first_signs_so_keys_rotate_without_a_gap() {
    let old = routing(&[OLD], "10.0.0.1:7001");
    let both = routing(&[NEW, OLD], "10.0.0.2:7001");
    let new = routing(&[NEW], "10.0.0.3:7001");
    let by_old = old.subscription_id("5e0c3f2a-1111-4222-8333-444455556666");
    let by_both = both.subscription_id("5e0c3f2a-1111-4222-8333-444455556666");
    assert!(both.owner(&by_old).is_ok(), "the second key verifies");
    assert!(new.owner(&by_both).is_ok(), "the first key signs");
    assert!(old.owner(&by_both).is_err());
    assert!(both.accepts_secret(old.forward().secret.as_bytes()));
    assert!(both.accepts_secret(new.forward().secret.as_bytes()));
    assert!(!old.accepts_secret(new.forward().secret.as_bytes()));
    assert!(!old.accepts_secret(b""));
}
