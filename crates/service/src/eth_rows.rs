//! A plan's stored form: the attempt row a plan is kept as, and the plan
//! read back from a send and its attempt (what the gate checks again
//! before it signs).

use chain_eth::{EthAddress, Fees, TxPlan};
use domain::Timestamp;
use storage::{EthAttemptRow, EthSendRow, StorageError};

use crate::service::ServiceError;

/// A 32-byte hash as `0x…` hex.
pub(crate) fn hex32(h: &[u8; 32]) -> String {
    format!("0x{}", hex::encode(h))
}

/// A stored address, read back.
pub(crate) fn parse_addr(s: &str) -> Result<EthAddress, ServiceError> {
    s.parse()
        .map_err(|e| ServiceError::Storage(StorageError::Corrupt(format!("stored address: {e}"))))
}

/// The plan an attempt of `send` stores.
pub(crate) fn plan_of(
    send: &EthSendRow,
    a: &EthAttemptRow,
    chain_id: u64,
) -> Result<TxPlan, ServiceError> {
    Ok(TxPlan {
        chain_id,
        nonce: send.nonce,
        to: parse_addr(&a.to_address)?,
        value: a.value,
        data: a.data.clone(),
        gas_limit: a.gas_limit,
        fees: if a.legacy {
            Fees::Legacy {
                gas_price: a.max_fee_per_gas,
            }
        } else {
            Fees::Eip1559 {
                max_fee_per_gas: a.max_fee_per_gas,
                max_priority_fee_per_gas: a.max_priority_fee_per_gas,
            }
        },
    })
}

/// The row attempt `n` of a send is stored as, unsigned.
pub(crate) fn attempt_row(
    send_id: &str,
    n: u32,
    kind: &str,
    plan: &TxPlan,
    now: Timestamp,
) -> EthAttemptRow {
    let (legacy, max_fee, tip) = match plan.fees {
        Fees::Eip1559 {
            max_fee_per_gas,
            max_priority_fee_per_gas,
        } => (false, max_fee_per_gas, max_priority_fee_per_gas),
        Fees::Legacy { gas_price } => (true, gas_price, gas_price),
    };
    EthAttemptRow {
        send_id: send_id.to_owned(),
        attempt: n,
        kind: kind.to_owned(),
        to_address: plan.to.to_lower_hex(),
        value: plan.value,
        data: plan.data.clone(),
        gas_limit: plan.gas_limit,
        legacy,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
        signing_hash: hex32(&plan.signing_hash()),
        raw: None,
        tx_hash: None,
        state: "signing".into(),
        created_at: now,
    }
}

/// The chain id of an EVM network's name.
pub(crate) fn chain_of(network: &str) -> Result<u64, ServiceError> {
    match network.parse::<domain::Network>() {
        Ok(domain::Network::Evm { chain_id }) => Ok(chain_id),
        _ => Err(storage::StorageError::Corrupt(format!("network {network}")).into()),
    }
}
