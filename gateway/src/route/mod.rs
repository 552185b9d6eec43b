//! Acks at any replica: subscription ids that name the replica holding
//! the subscription, signed so that no client can forge a route, and the
//! one hop that takes a unary Acknowledge or Settle there.
//!
//! With `--internal-addr` set, a subscription id is
//! `<uuid>.<route>.<mac>`: the route is the owner's instance id (8 random
//! bytes drawn at start) and its advertised internal address, base64url;
//! the mac signs both with the first key of `--route-key-file`. An ack id
//! is `<topic>:<partition>:<offset>:<attempt>.<mac>`, signed with the
//! owner's instance id: it can be settled at any replica, with its
//! subscription id, and an altered one is refused before it reaches any
//! subscription. Either key of the file verifies (rotation).
//!
//! - `forward`: the client that takes a call to its owner's internal
//!   listener, and what an owner that is gone is answered.
//! - `internal`: the layer in front of the internal listener: only
//!   replicas (the shared secret) and only Acknowledge and Settle.
//!
//! Without `--internal-addr`, ids are as they always were (a UUID, and an
//! ack id without a signature), and nothing here runs.

mod forward;
mod internal;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64;
use base64::Engine as _;
use ring::hmac;

pub(crate) use self::forward::{Forward, Forwarded, MtlsFiles};
pub(crate) use self::internal::{FromReplica, InternalOnly};
use crate::error::Error;
use crate::text::clip;

/// The header a forwarded call proves it comes from a replica with.
const SECRET_HEADER: &str = "x-eventgateway-replica";
/// The header carrying a forwarded call's principal (base64url).
const PRINCIPAL_HEADER: &str = "x-eventgateway-principal";

/// Bytes of a signature kept (96 bits: a forgery takes about 2^95
/// calls).
const MAC_BYTES: usize = 12;
/// Bytes of an instance id.
const INSTANCE_BYTES: usize = 8;
/// The shortest key `--route-key-file` may hold.
pub(crate) const MIN_KEY_BYTES: usize = 32;

/// One replica as a route names it: which process, and where its
/// internal listener is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    /// Drawn at the process's start: another process at the same address
    /// is another owner.
    instance: [u8; INSTANCE_BYTES],
    /// Its advertised internal address, `host:port`.
    pub(crate) address: String,
}

/// The keys of `--route-key-file`: the first signs, each verifies.
struct Keys {
    keys: Vec<hmac::Key>,
}

impl Keys {
    fn sign(&self, parts: &[&[u8]]) -> [u8; MAC_BYTES] {
        mac(&self.keys[0], parts)
    }

    fn verifies(&self, parts: &[&[u8]], given: &[u8]) -> bool {
        given.len() == MAC_BYTES
            && self.keys.iter().any(|key| {
                let expected = mac(key, parts);
                same(&expected, given)
            })
    }
}

/// Whether `a` and `b` are equal, in a time that depends on their
/// lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn mac(key: &hmac::Key, parts: &[&[u8]]) -> [u8; MAC_BYTES] {
    let mut context = hmac::Context::with_key(key);
    for part in parts {
        // Each part's length first: no two splits of the same bytes sign
        // alike.
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let tag = context.sign();
    let mut out = [0; MAC_BYTES];
    out.copy_from_slice(&tag.as_ref()[..MAC_BYTES]);
    out
}

/// This replica's routing: its keys, who it is, and the way to the others.
#[derive(Clone)]
pub(crate) struct Routing(Arc<Inner>);

struct Inner {
    keys: Keys,
    /// This replica.
    me: Owner,
    /// Its route, encoded, as its subscription ids carry it.
    route: String,
    /// What a forwarded call proves it comes from a replica with, one per
    /// key (the first is sent).
    secrets: Vec<String>,
    /// The way to the other replicas.
    forward: forward::Forwarder,
}

/// What `Routing::new` takes.
pub(crate) struct RouteSettings {
    /// The keys of `--route-key-file`, the signing one first.
    pub(crate) keys: Vec<Vec<u8>>,
    /// `--advertised-internal-addr`.
    pub(crate) advertised: String,
    /// `--forward-timeout`.
    pub(crate) forward_timeout: Duration,
    /// With TLS: the replicas' certificates and the CA they chain to.
    pub(crate) mtls: Option<MtlsFiles>,
}

impl Routing {
    /// This replica's routing, as `settings` say, with a new instance id.
    pub(crate) fn new(settings: RouteSettings) -> Result<Self, String> {
        let mut instance = [0; INSTANCE_BYTES];
        instance.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..INSTANCE_BYTES]);
        let me = Owner {
            instance,
            address: settings.advertised,
        };
        let keys: Vec<hmac::Key> = settings
            .keys
            .iter()
            .map(|key| hmac::Key::new(hmac::HMAC_SHA256, key))
            .collect();
        let secrets = keys
            .iter()
            .map(|key| BASE64.encode(hmac::sign(key, b"event-gateway internal listener v1")))
            .collect();
        let forward = forward::Forwarder::new(settings.forward_timeout, settings.mtls)?;
        Ok(Self(Arc::new(Inner {
            route: encode_route(&me),
            keys: Keys { keys },
            me,
            secrets,
            forward,
        })))
    }

    /// This replica.
    pub(crate) fn me(&self) -> &Owner {
        &self.0.me
    }

    /// A new subscription's id: `uuid` with this replica's signed route.
    pub(crate) fn subscription_id(&self, uuid: &str) -> String {
        let route = &self.0.route;
        let mac = self
            .0
            .keys
            .sign(&[b"subscription", uuid.as_bytes(), route.as_bytes()]);
        format!("{uuid}.{route}.{}", BASE64.encode(mac))
    }

    /// Signs ack id `id` (one of this replica's) in place.
    pub(crate) fn seal_ack(&self, id: &mut String) {
        let mac = self
            .0
            .keys
            .sign(&[b"ack", &self.0.me.instance, id.as_bytes()]);
        id.push('.');
        BASE64.encode_string(mac, id);
    }

    /// The replica that holds subscription `id`, once its signature
    /// checks out.
    pub(crate) fn owner(&self, id: &str) -> Result<Owner, Error> {
        let forged = || {
            Error::InvalidArgument(format!(
                "subscription id {} is not one this gateway's replicas handed out (its signature does not match); pass the id from the stream's Subscribed message as it is",
                clip(id)
            ))
        };
        let mut parts = id.splitn(3, '.');
        let (Some(uuid), Some(route), Some(mac)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(forged());
        };
        let mac = BASE64.decode(mac).map_err(|_| forged())?;
        if !self
            .0
            .keys
            .verifies(&[b"subscription", uuid.as_bytes(), route.as_bytes()], &mac)
        {
            return Err(forged());
        }
        decode_route(route).ok_or_else(forged)
    }

    /// The ack id inside `id` once its signature by `owner` checks out.
    pub(crate) fn open_ack<'a>(&self, owner: &Owner, id: &'a str) -> Result<&'a str, Error> {
        let forged = || {
            Error::InvalidArgument(format!(
                "ack id {} is not one this subscription's replica handed out (its signature does not match); nothing of this call was applied",
                clip(id)
            ))
        };
        let (body, mac) = id.rsplit_once('.').ok_or_else(forged)?;
        let mac = BASE64.decode(mac).map_err(|_| forged())?;
        match self
            .0
            .keys
            .verifies(&[b"ack", &owner.instance, body.as_bytes()], &mac)
        {
            true => Ok(body),
            false => Err(forged()),
        }
    }

    /// Whether `owner` is this replica.
    pub(crate) fn is_me(&self, owner: &Owner) -> bool {
        *owner == self.0.me
    }

    /// Whether `given` is what a replica proves itself with.
    pub(crate) fn accepts_secret(&self, given: &[u8]) -> bool {
        self.0
            .secrets
            .iter()
            .any(|secret| same(secret.as_bytes(), given))
    }

    /// The way to the other replicas.
    pub(crate) fn forward(&self) -> Forward<'_> {
        Forward {
            forwarder: &self.0.forward,
            secret: &self.0.secrets[0],
        }
    }
}

fn encode_route(owner: &Owner) -> String {
    let mut bytes = owner.instance.to_vec();
    bytes.extend_from_slice(owner.address.as_bytes());
    BASE64.encode(bytes)
}

fn decode_route(route: &str) -> Option<Owner> {
    let bytes = BASE64.decode(route).ok()?;
    if bytes.len() <= INSTANCE_BYTES {
        return None;
    }
    let (instance, address) = bytes.split_at(INSTANCE_BYTES);
    Some(Owner {
        instance: instance.try_into().ok()?,
        address: String::from_utf8(address.to_vec()).ok()?,
    })
}

/// How the ack ids of a call are read: as they are (no routing), or
/// checked against the signature of the replica that holds their
/// subscription.
#[derive(Clone, Copy)]
pub(crate) enum AckIds<'a> {
    /// Ack ids carry no signature.
    Plain,
    /// Ack ids are signed by `owner`.
    Signed(&'a Routing, &'a Owner),
}

impl AckIds<'_> {
    /// Ack ids signed by this replica, when `routing` is on.
    pub(crate) fn mine(routing: Option<&Routing>) -> AckIds<'_> {
        match routing {
            Some(routing) => AckIds::Signed(routing, routing.me()),
            None => AckIds::Plain,
        }
    }

    /// The ack id inside `id`, once its signature (if any is due) checks
    /// out.
    pub(crate) fn open<'b>(&self, id: &'b str) -> Result<&'b str, Error> {
        match self {
            AckIds::Plain => Ok(id),
            AckIds::Signed(routing, owner) => routing.open_ack(owner, id),
        }
    }
}

#[cfg(test)]
mod tests;
