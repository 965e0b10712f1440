//! The words policies are written in: tiers, destination kinds, transaction
//! types, rolling windows, weekdays, actions, and the error every policy
//! check returns.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest policy document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Why a policy document or a value in it is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("the policy document does not parse: {0}")]
    Syntax(String),
    #[error("the policy document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn invalid(msg: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(msg.into())
}

/// A wallet's tier: how exposed its keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Hot,
    Warm,
    Cold,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
        }
    }
}

impl FromStr for Tier {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        match s {
            "hot" => Ok(Tier::Hot),
            "warm" => Ok(Tier::Warm),
            "cold" => Ok(Tier::Cold),
            _ => Err(invalid(format!(
                "unknown tier {s:?}: expected hot, warm or cold"
            ))),
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of destination a transfer goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// An address-book entry past its cooling-off period.
    Whitelisted,
    /// Another wallet of this custodian.
    Internal,
    /// Anything else: an address seen for this transfer only.
    OneTime,
}

/// What the transaction does on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxType {
    /// A plain payment of a coin or token.
    Transfer,
    /// A call of an allow-listed contract function.
    ContractCall,
    /// A call that changes who controls a contract (upgrades, roles, approvals).
    AdminCall,
    /// The funds of a rotated or compromised key moved to its successor's
    /// address in the same wallet, or of a deposit address to its wallet's
    /// sender (a rule may allow these alone).
    Sweep,
    /// A wallet's small Bitcoin outputs spent into one of its own while
    /// fees are low (a rule may allow these alone).
    Consolidation,
    /// Ether from a wallet's sender to one of its own deposit addresses, to
    /// pay the gas of that address's token sweep (a rule may allow these
    /// alone).
    GasTopUp,
}

/// Whose outflow a rolling window adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowPer {
    Wallet,
    Initiator,
    Destination,
}

/// The unit a window's limit is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowUnit {
    /// The transfer's own asset (only transfers of that asset count).
    Asset,
    /// US dollars (every asset counts, at its recorded value).
    Usd,
}

/// A rolling window the service must total for the evaluator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowSpec {
    pub per: WindowPer,
    pub seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Monday is 0.
    pub fn from_index(i: u8) -> Weekday {
        match i % 7 {
            0 => Weekday::Mon,
            1 => Weekday::Tue,
            2 => Weekday::Wed,
            3 => Weekday::Thu,
            4 => Weekday::Fri,
            5 => Weekday::Sat,
            _ => Weekday::Sun,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Allow,
    Block,
    RequireApproval,
}
