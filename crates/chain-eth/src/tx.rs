//! Transactions: what is approved ([`TxPlan`]), its signing hash, the signed
//! EIP-2718 bytes, and the decoding that proves the bytes say what was approved.

use alloy_consensus::{
    SignableTransaction, Signed, TxEip1559, TxEnvelope, TxLegacy, transaction::RlpEcdsaEncodableTx,
};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{Bytes, Signature, TxKind, U256};

use crate::address::EthAddress;
use crate::calls;

/// How a transaction pays for gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fees {
    /// EIP-1559 (type 2).
    Eip1559 {
        max_fee_per_gas: u128,
        max_priority_fee_per_gas: u128,
    },
    /// Legacy with EIP-155 replay protection, for networks without EIP-1559.
    Legacy { gas_price: u128 },
}

impl Fees {
    /// The most one unit of gas can cost.
    pub fn max_per_gas(&self) -> u128 {
        match *self {
            Fees::Eip1559 {
                max_fee_per_gas, ..
            } => max_fee_per_gas,
            Fees::Legacy { gas_price } => gas_price,
        }
    }
}

/// Everything a signed transaction commits to. This is what approvers see
/// and what the signed bytes are decoded back into and compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxPlan {
    pub chain_id: u64,
    pub nonce: u64,
    pub to: EthAddress,
    /// Wei sent with the call.
    pub value: u128,
    pub data: Vec<u8>,
    pub gas_limit: u64,
    pub fees: Fees,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("the bytes are not a signed EIP-2718 transaction: {0}")]
    Undecodable(String),
    #[error("transaction type {0} is not one Strongroom signs")]
    UnsupportedType(u8),
    #[error("a legacy transaction without EIP-155 replay protection")]
    NoChainId,
    #[error("the transaction creates a contract")]
    ContractCreation,
    #[error("the transaction carries an access list")]
    AccessList,
    #[error("the value does not fit 128 bits")]
    ValueTooLarge,
    #[error("the signature is not valid for this transaction: {0}")]
    BadSignature(String),
    #[error("trailing bytes after the transaction")]
    Trailing,
}

/// A signed transaction: the bytes to broadcast, unchanged forever after.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedTx {
    pub raw: Vec<u8>,
    pub hash: [u8; 32],
}

impl std::fmt::Debug for SignedTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SignedTx(0x{}, {} bytes)",
            hex::encode(self.hash),
            self.raw.len()
        )
    }
}

/// A low-S ECDSA signature with its recovery id, as the signer seam returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcdsaParts {
    pub r: [u8; 32],
    pub s: [u8; 32],
    pub recovery_id: u8,
}

enum Unsigned {
    Eip1559(TxEip1559),
    Legacy(TxLegacy),
}

impl TxPlan {
    /// Ether to `to`.
    pub fn native(chain_id: u64, nonce: u64, to: EthAddress, wei: u128, fees: Fees) -> Self {
        TxPlan {
            chain_id,
            nonce,
            to,
            value: wei,
            data: Vec::new(),
            gas_limit: 21_000,
            fees,
        }
    }

    /// `amount` base units of `token` to `recipient`.
    pub fn erc20(
        chain_id: u64,
        nonce: u64,
        token: EthAddress,
        recipient: EthAddress,
        amount: u128,
        gas_limit: u64,
        fees: Fees,
    ) -> Self {
        TxPlan {
            chain_id,
            nonce,
            to: token,
            value: 0,
            data: calls::erc20_transfer(recipient, amount),
            gas_limit,
            fees,
        }
    }

    /// The most this transaction can cost in fees, in wei.
    pub fn max_fee(&self) -> Option<u128> {
        u128::from(self.gas_limit).checked_mul(self.fees.max_per_gas())
    }

    fn unsigned(&self) -> Unsigned {
        let to = TxKind::Call(self.to.alloy());
        let input = Bytes::from(self.data.clone());
        match self.fees {
            Fees::Eip1559 {
                max_fee_per_gas,
                max_priority_fee_per_gas,
            } => Unsigned::Eip1559(TxEip1559 {
                chain_id: self.chain_id,
                nonce: self.nonce,
                gas_limit: self.gas_limit,
                max_fee_per_gas,
                max_priority_fee_per_gas,
                to,
                value: U256::from(self.value),
                access_list: Default::default(),
                input,
            }),
            Fees::Legacy { gas_price } => Unsigned::Legacy(TxLegacy {
                chain_id: Some(self.chain_id),
                nonce: self.nonce,
                gas_price,
                gas_limit: self.gas_limit,
                to,
                value: U256::from(self.value),
                input,
            }),
        }
    }

    /// The 32 bytes the key signs (keccak-256 of the unsigned encoding).
    pub fn signing_hash(&self) -> [u8; 32] {
        match self.unsigned() {
            Unsigned::Eip1559(tx) => tx.signature_hash().0,
            Unsigned::Legacy(tx) => tx.signature_hash().0,
        }
    }

    /// The bytes whose keccak-256 is [`TxPlan::signing_hash`]: what a
    /// signer that hashes for itself (a threshold signer node) is given.
    pub fn signing_payload(&self) -> Vec<u8> {
        match self.unsigned() {
            Unsigned::Eip1559(tx) => tx.encoded_for_signing(),
            Unsigned::Legacy(tx) => tx.encoded_for_signing(),
        }
    }

    /// Attaches a signature and encodes the transaction for broadcast. The
    /// signature is checked: it must recover to `from`.
    pub fn into_signed(&self, sig: EcdsaParts, from: EthAddress) -> Result<SignedTx, TxError> {
        let signature = Signature::from_scalars_and_parity(
            sig.r.into(),
            sig.s.into(),
            match sig.recovery_id {
                0 => false,
                1 => true,
                other => return Err(TxError::BadSignature(format!("recovery id {other}"))),
            },
        );
        let envelope: TxEnvelope = match self.unsigned() {
            Unsigned::Eip1559(tx) => tx.into_signed(signature).into(),
            Unsigned::Legacy(tx) => tx.into_signed(signature).into(),
        };
        let raw = envelope.encoded_2718();
        let decoded = decode(&raw)?;
        if decoded.from != from {
            return Err(TxError::BadSignature(format!(
                "it recovers to {}, not {from}",
                decoded.from
            )));
        }
        Ok(SignedTx {
            raw,
            hash: decoded.hash,
        })
    }
}

/// A signed transaction read back from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedTx {
    pub plan: TxPlan,
    /// The address the signature recovers to.
    pub from: EthAddress,
    pub hash: [u8; 32],
    /// The signature itself (low S), for a second library to check.
    pub signature: EcdsaParts,
}

/// Decodes signed EIP-2718 bytes (type 2, or legacy with EIP-155) and
/// recovers the signer. Anything else Strongroom never signs is refused.
pub fn decode(raw: &[u8]) -> Result<DecodedTx, TxError> {
    let mut buf = raw;
    let envelope =
        TxEnvelope::decode_2718(&mut buf).map_err(|e| TxError::Undecodable(e.to_string()))?;
    if !buf.is_empty() {
        return Err(TxError::Trailing);
    }
    let hash = envelope.tx_hash().0;
    let ((plan, from), sig) = match &envelope {
        TxEnvelope::Eip1559(signed) => {
            let tx = signed.tx();
            if !tx.access_list.is_empty() {
                return Err(TxError::AccessList);
            }
            let plan = plan_of(
                tx.chain_id,
                tx.nonce,
                tx.to,
                tx.value,
                &tx.input,
                tx.gas_limit,
                Fees::Eip1559 {
                    max_fee_per_gas: tx.max_fee_per_gas,
                    max_priority_fee_per_gas: tx.max_priority_fee_per_gas,
                },
            )?;
            ((plan, recover(signed)?), *signed.signature())
        }
        TxEnvelope::Legacy(signed) => {
            let tx = signed.tx();
            let chain_id = tx.chain_id.ok_or(TxError::NoChainId)?;
            let plan = plan_of(
                chain_id,
                tx.nonce,
                tx.to,
                tx.value,
                &tx.input,
                tx.gas_limit,
                Fees::Legacy {
                    gas_price: tx.gas_price,
                },
            )?;
            ((plan, recover(signed)?), *signed.signature())
        }
        other => return Err(TxError::UnsupportedType(other.tx_type() as u8)),
    };
    Ok(DecodedTx {
        plan,
        from,
        hash,
        signature: EcdsaParts {
            r: sig.r().to_be_bytes(),
            s: sig.s().to_be_bytes(),
            recovery_id: u8::from(sig.v()),
        },
    })
}

fn plan_of(
    chain_id: u64,
    nonce: u64,
    to: TxKind,
    value: U256,
    input: &Bytes,
    gas_limit: u64,
    fees: Fees,
) -> Result<TxPlan, TxError> {
    let TxKind::Call(to) = to else {
        return Err(TxError::ContractCreation);
    };
    Ok(TxPlan {
        chain_id,
        nonce,
        to: EthAddress::from_alloy(to),
        value: u128::try_from(value).map_err(|_| TxError::ValueTooLarge)?,
        data: input.to_vec(),
        gas_limit,
        fees,
    })
}

fn recover<T>(signed: &Signed<T>) -> Result<EthAddress, TxError>
where
    T: SignableTransaction<Signature> + RlpEcdsaEncodableTx,
{
    let sighash = signed.signature_hash();
    let sig = signed.signature();
    // EIP-2: a high-S signature is malleable and never produced by Strongroom.
    if sig.normalize_s().is_some() {
        return Err(TxError::BadSignature("high S".into()));
    }
    sig.recover_address_from_prehash(&sighash)
        .map(EthAddress::from_alloy)
        .map_err(|e| TxError::BadSignature(e.to_string()))
}
