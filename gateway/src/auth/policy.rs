//! The policy file: who may publish to and subscribe to which topics, with
//! which consumer groups, and at what rate. Once a policy is configured,
//! everything it does not grant is denied.
//!
//! ```toml
//! [[grant]]
//! principals = ["spiffe://example.org/orders"]   # exact, or glob: "svc-*", "*" = any
//! publish = ["orders", "orders.*"]                # topic patterns
//! subscribe = ["payments.*"]
//! groups = ["orders-*"]                           # optional: groups it may join
//! quota = { publish_events_per_second = 500, publish_bytes_per_second = 1_000_000, subscriptions = 20, max_share_percent = 50 }
//! ```
//!
//! Patterns are literal except for `*`, which matches any run of characters
//! (dots included). A principal's rights are the union of the grants that
//! match it; a subscription is allowed when every topic it names is granted
//! by a grant whose `groups` (when it has them) match its group. Its quota
//! is that of the first grant (in file order) that matches it and has one.
//!
//! `[[webhook]]` routes (see `webhook`) let a topic take plain bodies over
//! HTTP.

use serde::Deserialize;
use toml::Spanned;

use super::place::at;
use super::webhook::{Webhook, WebhookFile};

/// The longest pattern accepted.
const MAX_PATTERN_LEN: usize = 1024;

/// A literal-or-glob pattern: `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern(String);

impl Pattern {
    /// The pattern's text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` matches.
    pub(crate) fn matches(&self, text: &str) -> bool {
        glob(self.0.as_bytes(), text.as_bytes())
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of bytes:
/// linear backtracking over the last star.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// A principal's publish quota and subscription cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Quota {
    /// Events published per second, sustained.
    pub(crate) events_per_second: Option<f64>,
    /// Bytes published per second, sustained.
    pub(crate) bytes_per_second: Option<f64>,
    /// How many seconds of the rates may be spent at once (the bucket size).
    pub(crate) burst_seconds: f64,
    /// Subscriptions open at once.
    pub(crate) subscriptions: Option<u32>,
    /// The percent of each global cap (publish streams, subscriptions,
    /// consumers) the principal may hold, instead of the gateway's.
    pub(crate) max_share_percent: Option<u32>,
}

/// One `[[grant]]`.
#[derive(Debug, Clone)]
struct Grant {
    principals: Vec<Pattern>,
    publish: Vec<Pattern>,
    subscribe: Vec<Pattern>,
    groups: Option<Vec<Pattern>>,
    quota: Option<Quota>,
}

impl Grant {
    /// The pattern of this grant that names `principal`, if one does.
    fn names(&self, principal: &str) -> Option<&Pattern> {
        self.principals.iter().find(|p| p.matches(principal))
    }
}

/// What a principal asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Publish,
    Subscribe,
}

/// A loaded policy.
#[derive(Debug, Clone, Default)]
pub(crate) struct Policy {
    grants: Vec<Grant>,
    /// The webhook routes, one per topic at most.
    webhooks: Vec<Webhook>,
}

/// Why a subscription is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubscribeDenied {
    /// The topic is not granted.
    Topic(String),
    /// The topic is granted, but not with this group.
    Group { topic: String, group: String },
}

impl Policy {
    /// Whether `principal` may `operation` on `topic`.
    pub(crate) fn allows(&self, principal: &str, operation: Operation, topic: &str) -> bool {
        self.grants.iter().any(|grant| {
            let topics = match operation {
                Operation::Publish => &grant.publish,
                Operation::Subscribe => &grant.subscribe,
            };
            grant.names(principal).is_some() && topics.iter().any(|p| p.matches(topic))
        })
    }

    /// Whether some grant lets `principal` do `operation` on some topic.
    pub(crate) fn grants_any(&self, principal: &str, operation: Operation) -> bool {
        self.grants.iter().any(|grant| {
            let topics = match operation {
                Operation::Publish => &grant.publish,
                Operation::Subscribe => &grant.subscribe,
            };
            grant.names(principal).is_some() && !topics.is_empty()
        })
    }

    /// Whether `principal` may subscribe to `topics` with `group`; else the
    /// first thing that is not granted.
    pub(crate) fn allows_subscription(
        &self,
        principal: &str,
        topics: &[String],
        group: Option<&str>,
    ) -> Result<(), SubscribeDenied> {
        for topic in topics {
            if !self.allows(principal, Operation::Subscribe, topic) {
                return Err(SubscribeDenied::Topic(topic.clone()));
            }
            let Some(group) = group else { continue };
            let with_group = self.grants.iter().any(|grant| {
                grant.names(principal).is_some()
                    && grant.subscribe.iter().any(|p| p.matches(topic))
                    && grant
                        .groups
                        .as_ref()
                        .is_none_or(|groups| groups.iter().any(|p| p.matches(group)))
            });
            if !with_group {
                return Err(SubscribeDenied::Group {
                    topic: topic.clone(),
                    group: group.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The quota of `principal`, and the principal pattern of the grant it
    /// comes from (a bounded metric label).
    pub(crate) fn quota(&self, principal: &str) -> Option<(Quota, &str)> {
        self.grants.iter().find_map(|grant| {
            let quota = grant.quota?;
            grant.names(principal).map(|p| (quota, p.as_str()))
        })
    }

    /// The policy in `text` (TOML); an error says where (line and column)
    /// and what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|error| {
            let message = error.message().trim().to_owned();
            match error.span() {
                Some(span) => at(text, span, &message),
                None => message,
            }
        })?;
        let grants = file
            .grant
            .into_iter()
            .map(|grant| grant.check(text))
            .collect::<Result<_, _>>()?;
        let mut webhooks: Vec<Webhook> = Vec::new();
        for route in file.webhook {
            let route = route.check(text)?;
            if webhooks.iter().any(|other| other.topic == route.topic) {
                return Err(format!("two webhook routes for topic {}", route.topic));
            }
            webhooks.push(route);
        }
        Ok(Self { grants, webhooks })
    }

    /// The webhook route of `topic`, if the policy declares one.
    pub(crate) fn webhook(&self, topic: &str) -> Option<&Webhook> {
        self.webhooks.iter().find(|route| route.topic == topic)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    grant: Vec<GrantFile>,
    #[serde(default)]
    webhook: Vec<WebhookFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFile {
    principals: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    publish: Vec<Spanned<String>>,
    #[serde(default)]
    subscribe: Vec<Spanned<String>>,
    groups: Option<Vec<Spanned<String>>>,
    quota: Option<Spanned<QuotaFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaFile {
    publish_events_per_second: Option<f64>,
    publish_bytes_per_second: Option<f64>,
    burst_seconds: Option<f64>,
    subscriptions: Option<u32>,
    max_share_percent: Option<u32>,
}

fn patterns(text: &str, list: Vec<Spanned<String>>) -> Result<Vec<Pattern>, String> {
    list.into_iter()
        .map(|pattern| {
            let span = pattern.span();
            let pattern = pattern.into_inner();
            if pattern.is_empty() {
                return Err(at(text, span, "a pattern is empty"));
            }
            if pattern.len() > MAX_PATTERN_LEN {
                return Err(at(
                    text,
                    span,
                    &format!("a pattern is longer than {MAX_PATTERN_LEN} bytes"),
                ));
            }
            Ok(Pattern(pattern))
        })
        .collect()
}

impl GrantFile {
    fn check(self, text: &str) -> Result<Grant, String> {
        let span = self.principals.span();
        let principals = patterns(text, self.principals.into_inner())?;
        if principals.is_empty() {
            return Err(at(text, span, "a grant names no principal"));
        }
        let quota = match self.quota {
            Some(quota) => {
                let span = quota.span();
                let q = quota.into_inner();
                let positive = |rate: Option<f64>| rate.is_none_or(|r| r.is_finite() && r > 0.0);
                if !positive(q.publish_events_per_second)
                    || !positive(q.publish_bytes_per_second)
                    || !positive(q.burst_seconds)
                {
                    return Err(at(
                        text,
                        span,
                        "quota rates and burst_seconds must be above 0",
                    ));
                }
                if q.max_share_percent.is_some_and(|p| !(1..=100).contains(&p)) {
                    return Err(at(text, span, "max_share_percent must be 1 to 100"));
                }
                Some(Quota {
                    events_per_second: q.publish_events_per_second,
                    bytes_per_second: q.publish_bytes_per_second,
                    burst_seconds: q.burst_seconds.unwrap_or(1.0),
                    subscriptions: q.subscriptions,
                    max_share_percent: q.max_share_percent,
                })
            }
            None => None,
        };
        Ok(Grant {
            principals,
            publish: patterns(text, self.publish)?,
            subscribe: patterns(text, self.subscribe)?,
            groups: self.groups.map(|g| patterns(text, g)).transpose()?,
            quota,
        })
    }
}

/// The policy in a policy file's bytes (`files`: the one file), as the
/// file is loaded at start and reloaded.
pub(crate) fn load(files: &[Vec<u8>]) -> Result<Policy, String> {
    let bytes = files.first().map(Vec::as_slice).unwrap_or_default();
    let text = std::str::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_owned())?;
    Policy::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_literals_prefixes_and_any() {
        let cases = [
            ("orders", "orders", true),
            ("orders", "orders.eu", false),
            ("orders.*", "orders.eu", true),
            ("orders.*", "orders", false),
            ("orders*", "orders", true),
            ("*", "anything at all", true),
            ("svc-*-prod", "svc-a-b-prod", true),
            ("svc-*-prod", "svc-a-prod-x", false),
            ("*.dlq", "a.b.dlq", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXcYb", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                Pattern(pattern.into()).matches(text),
                expected,
                "{pattern} ~ {text}"
            );
        }
    }

    const POLICY: &str = r#"
[[grant]]
principals = ["orders-service"]
publish = ["orders", "orders.*"]
subscribe = ["payments.*"]
groups = ["orders-*"]
quota = { publish_events_per_second = 10, subscriptions = 2 }

[[grant]]
principals = ["*"]
subscribe = ["public"]
"#;

    #[test]
    fn grants_allow_only_what_they_name() {
        let policy = Policy::parse(POLICY).unwrap();
        assert!(policy.allows("orders-service", Operation::Publish, "orders.eu"));
        assert!(!policy.allows("orders-service", Operation::Publish, "payments.eu"));
        assert!(!policy.allows("billing", Operation::Publish, "orders"));
        assert!(policy.allows("billing", Operation::Subscribe, "public"));
        let topics = ["payments.eu".to_owned()];
        assert_eq!(
            policy.allows_subscription("orders-service", &topics, Some("orders-1")),
            Ok(())
        );
        assert_eq!(
            policy.allows_subscription("orders-service", &topics, Some("billing")),
            Err(SubscribeDenied::Group {
                topic: "payments.eu".into(),
                group: "billing".into()
            })
        );
        assert_eq!(
            policy.allows_subscription("orders-service", &["public".to_owned()], Some("any")),
            Ok(()),
            "the grant without groups allows any group"
        );
        let (quota, label) = policy.quota("orders-service").unwrap();
        assert_eq!(
            (quota.events_per_second, label),
            (Some(10.0), "orders-service")
        );
        assert!(policy.quota("billing").is_none());
        assert!(!Policy::default().allows("anyone", Operation::Publish, "orders"));
    }

    #[test]
    fn errors_say_where() {
        let error =
            Policy::parse("[[grant]]\nprincipals = [\"a\"]\npublish = \"orders\"\n").unwrap_err();
        assert!(error.starts_with("line 3, column 11:"), "{error}");
        let error = Policy::parse("[[grant]]\nprincipals = [\"a\"]\npublsh = []\n").unwrap_err();
        assert!(error.starts_with("line 3, column 1:"), "{error}");
        let error = Policy::parse("[[grant]]\nprincipals = [\"a\", \"\"]\n").unwrap_err();
        assert!(error.starts_with("line 2, column 20:"), "{error}");
        let error = Policy::parse(
            "[[grant]]\nprincipals = [\"a\"]\nquota = { publish_events_per_second = 0 }\n",
        )
        .unwrap_err();
        assert!(error.starts_with("line 3, column 9:"), "{error}");
    }

    #[test]
    fn a_policy_declares_one_route_per_topic_with_usable_secrets() {
        let policy = Policy::parse(
            "[[webhook]]\ntopic = \"a\"\ntype = \"t\"\nsource = \"/s\"\nid_header = \"Webhook-Id\"\n",
        )
        .unwrap();
        let route = policy.webhook("a").unwrap();
        assert_eq!(route.id_header.as_deref(), Some("webhook-id"));
        assert!(policy.webhook("b").is_none());
        let twice = "[[webhook]]\ntopic = \"a\"\ntype = \"t\"\nsource = \"/s\"\n".repeat(2);
        assert!(Policy::parse(&twice)
            .unwrap_err()
            .contains("two webhook routes"));
        let bad = "[[webhook]]\ntopic = \"a\"\ntype = \"t\"\nsource = \"/s\"\nsigning_secrets = [\"whsec_!!\"]\n";
        assert!(Policy::parse(bad).unwrap_err().contains("line 5"), "where");
        let no_type = "[[webhook]]\ntopic = \"a\"\ntype = \"\"\nsource = \"/s\"\n";
        assert!(Policy::parse(no_type)
            .unwrap_err()
            .contains("type and a source"));
    }
}
