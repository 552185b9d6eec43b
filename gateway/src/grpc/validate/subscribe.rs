//! Subscribe: topics, group, start position, and the ACK_MODE_MANUAL
//! settings (window, ack timeout, retry and dead-letter policies).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use eventgateway::record::timestamp_to_millis;
use eventgateway::v1::{AckMode, StartFrom, SubscribeRequest};

use crate::error::Error;
use crate::subscribe::{
    Backoff, DeadLetterPolicy, ManualAcks, StartPosition, SubscriptionSpec, TopicPartition,
    MAX_ACK_TIMEOUT, MAX_DELAY, MAX_UNACKED, MIN_ACK_TIMEOUT,
};
use crate::text::clip;
use eventgateway::bounds::*;

use super::*;

/// Checks a subscribe request and turns it into what the consumer needs;
/// `defaults` fill what a MANUAL subscription leaves unset.
pub(crate) fn subscribe_request(
    request: &SubscribeRequest,
    defaults: &ManualAcks,
) -> Result<SubscriptionSpec, Error> {
    if request.topics.is_empty() {
        return Err(Error::InvalidArgument(
            "topics is empty: name at least one topic".into(),
        ));
    }
    if request.topics.len() > MAX_TOPICS {
        return Err(Error::InvalidArgument(format!(
            "{} topics; a subscription reads at most {MAX_TOPICS}",
            request.topics.len()
        )));
    }
    let mut seen = HashSet::with_capacity(request.topics.len());
    let mut topics: Vec<String> = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        topic_name(topic)?;
        if seen.insert(topic.as_str()) {
            topics.push(topic.clone());
        }
    }
    if !request.group.is_empty() {
        group_name(&request.group)?;
    }
    let ack_mode = AckMode::try_from(request.ack_mode).map_err(|_| {
        Error::InvalidArgument(format!("ack_mode {} is not an AckMode", request.ack_mode))
    })?;
    let manual = if ack_mode == AckMode::Manual {
        Some(manual_acks(request, defaults, &topics)?)
    } else {
        if request.ack_timeout.is_some()
            || request.max_unacked != 0
            || request.retry_policy.is_some()
            || request.dead_letter_policy.is_some()
            || request.ordered_by_key
        {
            return Err(Error::InvalidArgument(
                "ack_timeout, max_unacked, retry_policy, dead_letter_policy and ordered_by_key apply only to ACK_MODE_MANUAL".into(),
            ));
        }
        None
    };
    let share = (!request.share.is_empty())
        .then(|| share_name(request, manual.is_some()))
        .transpose()?;
    Ok(SubscriptionSpec {
        start: start_position(request, &seen)?,
        topics,
        group: (!request.group.is_empty()).then(|| request.group.clone()),
        manual,
        share,
    })
}

/// Checks a share name: it needs a group and ACK_MODE_MANUAL, whose leases
/// are what the share spreads over its streams.
fn share_name(request: &SubscribeRequest, manual: bool) -> Result<String, Error> {
    if request.group.is_empty() || !manual {
        return Err(Error::InvalidArgument(
            "share needs a group and ACK_MODE_MANUAL: a share spreads one group member's leases over its streams".into(),
        ));
    }
    if request.share.len() > MAX_TOPIC_LEN || request.share.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "share must be at most {MAX_TOPIC_LEN} bytes without control characters"
        )));
    }
    Ok(request.share.clone())
}

/// The acknowledgement settings of a MANUAL subscription, within bounds.
fn manual_acks(
    request: &SubscribeRequest,
    defaults: &ManualAcks,
    topics: &[String],
) -> Result<ManualAcks, Error> {
    let ack_timeout = match &request.ack_timeout {
        None => defaults.ack_timeout,
        Some(timeout) => Duration::try_from(*timeout)
            .ok()
            .filter(|t| (MIN_ACK_TIMEOUT..=MAX_ACK_TIMEOUT).contains(t))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "ack_timeout must be {MIN_ACK_TIMEOUT:?} to {MAX_ACK_TIMEOUT:?}"
                ))
            })?,
    };
    let max_unacked = match request.max_unacked {
        0 => defaults.max_unacked,
        n if n <= MAX_UNACKED => n as usize,
        n => {
            return Err(Error::InvalidArgument(format!(
                "max_unacked is {n}; at most {MAX_UNACKED} deliveries can be out at once"
            )))
        }
    };
    Ok(ManualAcks {
        ack_timeout,
        max_unacked,
        retry: request
            .retry_policy
            .as_ref()
            .map(retry_policy)
            .transpose()?,
        dead_letter: request
            .dead_letter_policy
            .as_ref()
            .map(|policy| dead_letter_policy(policy, topics))
            .transpose()?,
        ordered_by_key: request.ordered_by_key,
    })
}

/// A retry policy within bounds.
fn retry_policy(policy: &eventgateway::v1::RetryPolicy) -> Result<Backoff, Error> {
    let min = policy.minimum_backoff.map_or(Ok(Duration::ZERO), |d| {
        delay("retry_policy.minimum_backoff", d)
    })?;
    let max = policy
        .maximum_backoff
        .map_or(Ok(MAX_DELAY), |d| delay("retry_policy.maximum_backoff", d))?;
    if min > max {
        return Err(Error::InvalidArgument(format!(
            "retry_policy.minimum_backoff ({min:?}) is longer than maximum_backoff ({max:?})"
        )));
    }
    Ok(Backoff { min, max })
}

/// A dead-letter policy for `topics`: a legal dead-letter topic for each,
/// none of them a topic it reads.
fn dead_letter_policy(
    policy: &eventgateway::v1::DeadLetterPolicy,
    topics: &[String],
) -> Result<DeadLetterPolicy, Error> {
    if policy.max_delivery_attempts > MAX_DELIVERY_ATTEMPTS {
        return Err(Error::InvalidArgument(format!(
            "dead_letter_policy.max_delivery_attempts is {}; at most {MAX_DELIVERY_ATTEMPTS}",
            policy.max_delivery_attempts
        )));
    }
    let dead_letters = DeadLetterPolicy {
        topic: (!policy.topic.is_empty()).then(|| policy.topic.clone()),
        max_attempts: policy.max_delivery_attempts,
    };
    for topic in topics {
        let target = dead_letters.topic_for(topic);
        topic_name(&target).map_err(|error| {
            Error::InvalidArgument(format!("dead-letter topic of {}: {error}", clip(topic)))
        })?;
        if topics.contains(&target) {
            return Err(Error::InvalidArgument(format!(
                "the dead-letter topic {} is one of the subscription's topics",
                clip(&target)
            )));
        }
    }
    Ok(dead_letters)
}

/// Where a subscription starts; `topics` are its (checked) topics.
fn start_position(
    request: &SubscribeRequest,
    topics: &HashSet<&str>,
) -> Result<StartPosition, Error> {
    let start_from = StartFrom::try_from(request.start_from).map_err(|_| {
        Error::InvalidArgument(format!(
            "start_from {} is not a StartFrom",
            request.start_from
        ))
    })?;
    if start_from != StartFrom::Timestamp && request.start_time.is_some() {
        return Err(Error::InvalidArgument(
            "start_time is set, but start_from is not START_FROM_TIMESTAMP".into(),
        ));
    }
    if start_from != StartFrom::Offsets && !request.start_offsets.is_empty() {
        return Err(Error::InvalidArgument(
            "start_offsets is set, but start_from is not START_FROM_OFFSETS".into(),
        ));
    }
    Ok(match start_from {
        StartFrom::Unspecified | StartFrom::Latest => StartPosition::Latest,
        StartFrom::Earliest => StartPosition::Earliest,
        StartFrom::Timestamp => {
            let time = request.start_time.as_ref().ok_or_else(|| {
                Error::InvalidArgument("START_FROM_TIMESTAMP needs start_time".into())
            })?;
            StartPosition::Timestamp(timestamp_to_millis(time).max(0))
        }
        StartFrom::Offsets => {
            if request.start_offsets.is_empty() {
                return Err(Error::InvalidArgument(
                    "START_FROM_OFFSETS needs start_offsets".into(),
                ));
            }
            if request.start_offsets.len() > MAX_START_OFFSETS {
                return Err(Error::InvalidArgument(format!(
                    "start_offsets names {} partitions; at most {MAX_START_OFFSETS}",
                    request.start_offsets.len()
                )));
            }
            let mut offsets = HashMap::with_capacity(request.start_offsets.len());
            for position in &request.start_offsets {
                if !topics.contains(position.topic.as_str()) {
                    return Err(Error::InvalidArgument(format!(
                        "start_offsets names topic {}, which is not in topics",
                        clip(&position.topic)
                    )));
                }
                if position.partition < 0 || position.offset < 0 {
                    return Err(Error::InvalidArgument(format!(
                        "start_offsets has a negative partition or offset for topic {}",
                        clip(&position.topic)
                    )));
                }
                offsets.insert(
                    TopicPartition::new(position.topic.as_str(), position.partition),
                    position.offset,
                );
            }
            StartPosition::Offsets(offsets)
        }
    })
}

/// Checks a consumer group name.
fn group_name(group: &str) -> Result<(), Error> {
    if group.len() > MAX_TOPIC_LEN || group.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "group must be at most {MAX_TOPIC_LEN} bytes without control characters"
        )));
    }
    Ok(())
}
