//! Calldata: ERC-20 transfers built and decoded, and every other call
//! classified so that policy can tell a payment from an admin action.

use alloy_primitives::{Address, U256};
use alloy_sol_types::{SolCall, sol};

use crate::address::EthAddress;

sol! {
    function transfer(address to, uint256 amount) returns (bool);
    function approve(address spender, uint256 amount) returns (bool);
    function increaseAllowance(address spender, uint256 addedValue) returns (bool);
    function setApprovalForAll(address operator, bool approved);
    function transferOwnership(address newOwner);
    function renounceOwnership();
    function acceptOwnership();
    function upgradeTo(address newImplementation);
    function upgradeToAndCall(address newImplementation, bytes data);
    function changeAdmin(address newAdmin);
    function grantRole(bytes32 role, address account);
    function multicall(bytes[] data);
    function execTransaction(
        address to, uint256 value, bytes data, uint8 operation,
        uint256 safeTxGas, uint256 baseGas, uint256 gasPrice,
        address gasToken, address refundReceiver, bytes signatures
    ) returns (bool);
    function addOwnerWithThreshold(address owner, uint256 threshold);
    function removeOwner(address prevOwner, address owner, uint256 threshold);
    function swapOwner(address prevOwner, address oldOwner, address newOwner);
    function changeThreshold(uint256 threshold);
    function enableModule(address module);
    function setGuard(address guard);
}

/// A 4-byte function selector.
pub type Selector = [u8; 4];

/// The ERC-20 `transfer(address,uint256)` selector.
pub const ERC20_TRANSFER: Selector = transferCall::SELECTOR;

/// The calldata of `transfer(recipient, amount)`.
pub fn erc20_transfer(recipient: EthAddress, amount: u128) -> Vec<u8> {
    transferCall {
        to: recipient.alloy(),
        amount: U256::from(amount),
    }
    .abi_encode()
}

/// Whether a token's answer to `transfer` says it moved the tokens: `true`,
/// strictly ABI-encoded, or no answer at all (tokens written before
/// ERC-20 settled, USDT among them, return nothing). `false`, or anything
/// else, moved nothing although the transaction succeeds.
pub fn erc20_transfer_succeeded(answer: &[u8]) -> bool {
    answer.is_empty() || transferCall::abi_decode_returns_validate(answer).is_ok_and(|ok| ok)
}

/// Decodes `transfer(recipient, amount)` calldata strictly: the exact
/// length, clean padding, an amount that fits Strongroom's `u128`.
pub fn decode_erc20_transfer(data: &[u8]) -> Result<(EthAddress, u128), CallError> {
    if data.len() != 4 + 64 || data[..4] != ERC20_TRANSFER {
        return Err(CallError::NotTokenTransfer);
    }
    let call = transferCall::abi_decode_validate(data).map_err(|_| CallError::NotTokenTransfer)?;
    let amount = u128::try_from(call.amount).map_err(|_| CallError::AmountTooLarge)?;
    Ok((EthAddress::from_alloy(call.to), amount))
}

/// What an admin-surface call would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminKind {
    /// A proxy upgrade or admin change: new code behind the same address.
    Upgrade,
    /// Ownership or role changes of a contract.
    Ownership,
    /// An allowance to a spender that is not configured as known.
    ApproveUnknownSpender,
    /// Operator rights over every token of a collection.
    ApprovalForAll,
    /// A call that can run other code in the caller's context: Safe
    /// `execTransaction` with `operation = 1`, multicall.
    DelegateCall,
    /// Changes to a multisig's owners, threshold, modules or guard (the
    /// Bybit attack rewrote a Safe's implementation through one of these).
    MultisigConfig,
}

/// What a transaction does, read from its destination, value and calldata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallClass {
    /// Ether to an address, no calldata.
    Native,
    /// `transfer(recipient, amount)` on a configured token.
    TokenTransfer {
        token: EthAddress,
        recipient: EthAddress,
        amount: u128,
    },
    /// `approve` to a spender configured as known.
    KnownApprove {
        token: EthAddress,
        spender: EthAddress,
        amount: U256,
    },
    /// An admin-surface call: policy treats these apart.
    Admin {
        kind: AdminKind,
        target: EthAddress,
        selector: Selector,
    },
    /// Any other call.
    Other {
        target: EthAddress,
        selector: Selector,
    },
}

/// What the operators configured about contracts on one network.
#[derive(Debug, Clone, Default)]
pub struct ContractRules {
    /// Token contracts Strongroom knows (and their decimals live in the asset config).
    pub tokens: Vec<EthAddress>,
    /// Spenders an `approve` may name without being an admin action.
    pub known_spenders: Vec<EthAddress>,
    /// (target, selector) pairs allowed beyond token transfers.
    pub allowlist: Vec<(EthAddress, Selector)>,
}

/// A classified call and whether the configuration lets it be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub class: CallClass,
    pub allowlisted: bool,
}

impl Classified {
    /// Refuses a call that is neither a payment nor allowlisted.
    pub fn permitted(self) -> Result<CallClass, CallError> {
        match &self.class {
            CallClass::Native | CallClass::TokenTransfer { .. } => Ok(self.class),
            _ if self.allowlisted => Ok(self.class),
            CallClass::Admin {
                kind,
                target,
                selector,
            } => Err(CallError::AdminNotAllowlisted {
                kind: *kind,
                target: *target,
                selector: hex::encode(selector),
            }),
            CallClass::KnownApprove { token, .. } => Err(CallError::NotAllowlisted {
                target: *token,
                selector: hex::encode(approveCall::SELECTOR),
            }),
            CallClass::Other { target, selector } => Err(CallError::NotAllowlisted {
                target: *target,
                selector: hex::encode(selector),
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("the calldata is not a well-formed ERC-20 transfer")]
    NotTokenTransfer,
    #[error("the token amount does not fit 128 bits")]
    AmountTooLarge,
    #[error("calldata shorter than a selector")]
    Truncated,
    #[error("a token transfer that also sends ether")]
    ValueWithCall,
    #[error("a call to {target} (selector {selector}) is not allowlisted")]
    NotAllowlisted {
        target: EthAddress,
        selector: String,
    },
    #[error("an admin call ({kind:?}) to {target} (selector {selector}) is not allowlisted")]
    AdminNotAllowlisted {
        kind: AdminKind,
        target: EthAddress,
        selector: String,
    },
}

/// Classifies a call by its target, value and calldata.
pub fn classify(
    rules: &ContractRules,
    to: EthAddress,
    value: u128,
    data: &[u8],
) -> Result<Classified, CallError> {
    if data.is_empty() {
        return Ok(Classified {
            class: CallClass::Native,
            allowlisted: true,
        });
    }
    let selector: Selector = data
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .ok_or(CallError::Truncated)?;
    let allowlisted = rules.allowlist.contains(&(to, selector));
    let admin = |kind| CallClass::Admin {
        kind,
        target: to,
        selector,
    };
    let class = match selector {
        ERC20_TRANSFER if rules.tokens.contains(&to) => {
            if value != 0 {
                return Err(CallError::ValueWithCall);
            }
            let (recipient, amount) = decode_erc20_transfer(data)?;
            CallClass::TokenTransfer {
                token: to,
                recipient,
                amount,
            }
        }
        approveCall::SELECTOR | increaseAllowanceCall::SELECTOR => {
            let spender = spender_of(data);
            match spender {
                Some((spender, amount)) if rules.known_spenders.contains(&spender) => {
                    CallClass::KnownApprove {
                        token: to,
                        spender,
                        amount,
                    }
                }
                _ => admin(AdminKind::ApproveUnknownSpender),
            }
        }
        setApprovalForAllCall::SELECTOR => admin(AdminKind::ApprovalForAll),
        upgradeToCall::SELECTOR | upgradeToAndCallCall::SELECTOR | changeAdminCall::SELECTOR => {
            admin(AdminKind::Upgrade)
        }
        transferOwnershipCall::SELECTOR
        | renounceOwnershipCall::SELECTOR
        | acceptOwnershipCall::SELECTOR
        | grantRoleCall::SELECTOR => admin(AdminKind::Ownership),
        multicallCall::SELECTOR => admin(AdminKind::DelegateCall),
        execTransactionCall::SELECTOR => match execTransactionCall::abi_decode(data) {
            Ok(call) if call.operation == 0 => CallClass::Other {
                target: to,
                selector,
            },
            // operation 1 is delegatecall; undecodable is treated as the worst case.
            _ => admin(AdminKind::DelegateCall),
        },
        addOwnerWithThresholdCall::SELECTOR
        | removeOwnerCall::SELECTOR
        | swapOwnerCall::SELECTOR
        | changeThresholdCall::SELECTOR
        | enableModuleCall::SELECTOR
        | setGuardCall::SELECTOR => admin(AdminKind::MultisigConfig),
        _ => CallClass::Other {
            target: to,
            selector,
        },
    };
    Ok(Classified { class, allowlisted })
}

fn spender_of(data: &[u8]) -> Option<(EthAddress, U256)> {
    let (spender, amount): (Address, U256) = if data[..4] == approveCall::SELECTOR {
        let c = approveCall::abi_decode_validate(data).ok()?;
        (c.spender, c.amount)
    } else {
        let c = increaseAllowanceCall::abi_decode_validate(data).ok()?;
        (c.spender, c.addedValue)
    };
    Some((EthAddress::from_alloy(spender), amount))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_succeeds_only_on_true_or_no_answer() {
        let word = |last: u8| {
            let mut w = [0u8; 32];
            w[31] = last;
            w
        };
        assert!(erc20_transfer_succeeded(&word(1)));
        assert!(erc20_transfer_succeeded(&[]), "tokens that return nothing");
        assert!(!erc20_transfer_succeeded(&word(0)), "false");
        assert!(!erc20_transfer_succeeded(&word(2)), "not a bool");
        assert!(!erc20_transfer_succeeded(&[1]), "too short");
        let mut dirty = word(1);
        dirty[0] = 1;
        assert!(!erc20_transfer_succeeded(&dirty), "dirty padding");
    }
}
