//! Accounts: the client, desk or treasury that wallets, balances and policies belong to.

use serde::Serialize;

use crate::id::AccountId;
use crate::principal::Actor;
use crate::time::Timestamp;

/// An account's display name: 1 to 100 characters, no control characters,
/// no leading or trailing whitespace. Unique among accounts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AccountName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid account name: 1 to 100 characters, no control characters, no surrounding whitespace"
)]
pub struct AccountNameError;

impl AccountName {
    pub fn new(s: &str) -> Result<Self, AccountNameError> {
        let n = s.chars().count();
        let ok = (1..=100).contains(&n) && s.trim() == s && !s.chars().any(char::is_control);
        if !ok {
            return Err(AccountNameError);
        }
        Ok(AccountName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub name: AccountName,
    pub created_at: Timestamp,
    pub created_by: Actor,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(AccountName::new("Treasury — EU").is_ok());
        for bad in ["", " x", "x ", "a\tb", &"x".repeat(101)] {
            assert!(AccountName::new(bad).is_err(), "{bad:?}");
        }
    }
}
