//! Typed identifiers: a `WalletId` cannot be passed where a `TransferId` is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {given:?}: expected a UUID in lower-case hyphenated form")]
pub struct IdError {
    pub kind: &'static str,
    pub given: String,
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID made by the caller (the service uses time-ordered v7).
            pub fn from_uuid(u: Uuid) -> Self {
                $name(u)
            }

            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                let err = || IdError { kind: $kind, given: s.to_owned() };
                let u = Uuid::try_parse(s).map_err(|_| err())?;
                // One spelling per id, so ids compare equal as strings too.
                if u.hyphenated().to_string() != s || u.is_nil() {
                    return Err(err());
                }
                Ok($name(u))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// An account: a client, desk or treasury that wallets belong to.
    AccountId,
    "account"
);
typed_id!(
    /// A wallet on one network, backed by one key arrangement.
    WalletId,
    "wallet"
);
typed_id!(
    /// A transfer: withdrawal, internal move or sweep.
    TransferId,
    "transfer"
);
typed_id!(
    /// A key in the key inventory.
    KeyId,
    "key"
);
typed_id!(
    /// A person with a login.
    UserId,
    "user"
);
typed_id!(
    /// An integrator's API key.
    ApiKeyId,
    "api key"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling() {
        let s = "0190b5a8-7a3e-7cc1-9d3e-3f1c2a4b5c6d";
        assert_eq!(s.parse::<WalletId>().unwrap().to_string(), s);
        for bad in [
            "0190B5A8-7A3E-7CC1-9D3E-3F1C2A4B5C6D",
            "0190b5a87a3e7cc19d3e3f1c2a4b5c6d",
            "{0190b5a8-7a3e-7cc1-9d3e-3f1c2a4b5c6d}",
            "00000000-0000-0000-0000-000000000000",
            "wallet",
        ] {
            let e = bad.parse::<WalletId>().unwrap_err();
            assert_eq!(e.kind, "wallet");
        }
    }
}
