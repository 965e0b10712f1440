//! Principals: who did something. Every audit record and every intent names one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::{ApiKeyId, UserId};

/// Who acts. Written as a short canonical string in audit records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Actor {
    /// Strongroom itself: workers, start-up, shutdown.
    System,
    /// Someone at the server's own console (the CLI), by operating-system user.
    Operator(OperatorName),
    /// A person signed in to the API or dashboard.
    User(UserId),
    /// An integrator's API key.
    ApiKey(ApiKeyId),
    /// An API caller who presented no identity (health checks, unseal shares).
    Anonymous,
}

/// A console operator's name: 1 to 64 of `a-z A-Z 0-9 . _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperatorName(String);

impl OperatorName {
    pub fn new(s: &str) -> Result<Self, ActorError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(ActorError(s.to_owned()));
        }
        Ok(OperatorName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid actor {0:?}: expected system, anonymous, operator:<name>, user:<uuid> or api-key:<uuid>"
)]
pub struct ActorError(pub String);

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::System => f.write_str("system"),
            Actor::Operator(n) => write!(f, "operator:{}", n.0),
            Actor::User(id) => write!(f, "user:{id}"),
            Actor::ApiKey(id) => write!(f, "api-key:{id}"),
            Actor::Anonymous => f.write_str("anonymous"),
        }
    }
}

impl FromStr for Actor {
    type Err = ActorError;

    fn from_str(s: &str) -> Result<Self, ActorError> {
        let err = || ActorError(s.to_owned());
        match s {
            "system" => return Ok(Actor::System),
            "anonymous" => return Ok(Actor::Anonymous),
            _ => {}
        }
        let (kind, rest) = s.split_once(':').ok_or_else(err)?;
        match kind {
            "operator" => OperatorName::new(rest)
                .map(Actor::Operator)
                .map_err(|_| err()),
            "user" => rest.parse().map(Actor::User).map_err(|_| err()),
            "api-key" => rest.parse().map(Actor::ApiKey).map_err(|_| err()),
            _ => Err(err()),
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for s in [
            "system",
            "anonymous",
            "operator:root",
            "operator:alice.b-c_d",
            "user:0190b5a8-7a3e-7cc1-9d3e-3f1c2a4b5c6d",
            "api-key:0190b5a8-7a3e-7cc1-9d3e-3f1c2a4b5c6d",
        ] {
            assert_eq!(s.parse::<Actor>().unwrap().to_string(), s);
        }
        for bad in ["", "System", "operator:", "operator:a b", "user:x", "root"] {
            assert!(bad.parse::<Actor>().is_err(), "{bad:?}");
        }
    }
}
