//! PSBTs: built from a plan, signed input by input through digests (the
//! signer seam never sees a transaction), combined across cosigners,
//! finalised with miniscript, extracted, and verified by Bitcoin Core's
//! interpreter against every output they spend.

use std::collections::BTreeMap;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::key::{PublicKey, TapTweak, UntweakedPublicKey, XOnlyPublicKey};
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{self, Message, Secp256k1};
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Weight, Witness, ecdsa,
    taproot,
};
use miniscript::psbt::PsbtExt;

/// How an output Strongroom holds is spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spend {
    /// P2WPKH: one ECDSA key.
    P2wpkh { pubkey: [u8; 33] },
    /// P2TR key path (BIP-86: no script tree): one BIP-340 key, tweaked.
    P2tr { internal_key: [u8; 32] },
    /// P2TR key path of an output key no one holds an internal key for: a
    /// threshold key whose key generation tweaked it (BIP-86) already.
    /// Signed under the output key itself.
    P2trOutput { output_key: [u8; 32] },
    /// P2WSH `sortedmulti(threshold, keys…)`: cosigners sign independently.
    P2wshMulti {
        threshold: usize,
        pubkeys: Vec<[u8; 33]>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BtcError {
    #[error("not a valid public key")]
    BadKey,
    #[error("a multisig needs 1 ≤ threshold ≤ keys ≤ 20")]
    BadMultisig,
    #[error("the transaction has no inputs or no outputs")]
    Empty,
    #[error("amount arithmetic overflowed")]
    Overflow,
    #[error("the inputs ({inputs} sat) do not cover the outputs and fee ({needed} sat)")]
    InsufficientFunds { inputs: u64, needed: u64 },
    #[error("output {index} of {value} sat is dust")]
    Dust { index: usize, value: u64 },
    #[error("input {0} does not exist or is not ours")]
    NoSuchInput(usize),
    #[error(
        "input {0}: no output it spends (PSBT_IN_WITNESS_UTXO), or a previous transaction \
         (PSBT_IN_NON_WITNESS_UTXO) that is not the one it names or disagrees with it"
    )]
    NoPrevout(usize),
    #[error("the signature does not verify for input {0}")]
    BadSignature(usize),
    #[error("the PSBT cannot be finalised: {0}")]
    Finalize(String),
    #[error("the PSBTs are for different transactions")]
    Mismatch,
    #[error("Bitcoin Core's interpreter refuses input {index}: {reason}")]
    Consensus { index: usize, reason: String },
    #[error("sighash: {0}")]
    Sighash(String),
    #[error("input {0}: a signature by a key that does not spend it")]
    ForeignSignature(usize),
    #[error(
        "input {0}: a signature of another sighash type (only SIGHASH_ALL, or SIGHASH_DEFAULT \
         for Taproot, is accepted)"
    )]
    SighashType(usize),
}

impl Spend {
    fn secp_key(k: &[u8; 33]) -> Result<PublicKey, BtcError> {
        PublicKey::from_slice(k).map_err(|_| BtcError::BadKey)
    }

    /// The witness script of a P2WSH multisig (keys sorted, BIP-67).
    pub fn witness_script(&self) -> Result<Option<ScriptBuf>, BtcError> {
        let Spend::P2wshMulti { threshold, pubkeys } = self else {
            return Ok(None);
        };
        if *threshold == 0 || *threshold > pubkeys.len() || pubkeys.len() > 20 {
            return Err(BtcError::BadMultisig);
        }
        let mut keys = pubkeys.clone();
        keys.sort();
        let mut b = bitcoin::script::Builder::new().push_int(*threshold as i64);
        for k in &keys {
            b = b.push_key(&Self::secp_key(k)?);
        }
        Ok(Some(
            b.push_int(keys.len() as i64)
                .push_opcode(bitcoin::opcodes::all::OP_CHECKMULTISIG)
                .into_script(),
        ))
    }

    pub fn script_pubkey(&self) -> Result<ScriptBuf, BtcError> {
        let secp = Secp256k1::verification_only();
        Ok(match self {
            Spend::P2wpkh { pubkey } => {
                let pk = Self::secp_key(pubkey)?;
                let wpkh = pk.wpubkey_hash().map_err(|_| BtcError::BadKey)?;
                ScriptBuf::new_p2wpkh(&wpkh)
            }
            Spend::P2tr { internal_key } => {
                let k =
                    UntweakedPublicKey::from_slice(internal_key).map_err(|_| BtcError::BadKey)?;
                ScriptBuf::new_p2tr(&secp, k, None)
            }
            Spend::P2trOutput { output_key } => {
                let q = XOnlyPublicKey::from_slice(output_key).map_err(|_| BtcError::BadKey)?;
                ScriptBuf::new_p2tr_tweaked(
                    bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(q),
                )
            }
            Spend::P2wshMulti { .. } => {
                let ws = self.witness_script()?.ok_or(BtcError::BadMultisig)?;
                ScriptBuf::new_p2wsh(&ws.wscript_hash())
            }
        })
    }

    /// The largest witness this input can have once signed (73-byte DER
    /// signatures), for fee estimates that never fall short.
    pub fn max_witness_weight(&self) -> Result<Weight, BtcError> {
        let wu = match self {
            // count, sig (1 + 73), key (1 + 33)
            Spend::P2wpkh { .. } => 1 + 74 + 34,
            // count, sig (1 + 64)
            Spend::P2tr { .. } | Spend::P2trOutput { .. } => 1 + 65,
            Spend::P2wshMulti { threshold, .. } => {
                let ws = self.witness_script()?.ok_or(BtcError::BadMultisig)?.len() as u64;
                // count, empty dummy, m sigs, script with its length prefix
                1 + 1 + 74 * (*threshold as u64) + 3 + ws
            }
        };
        Ok(Weight::from_wu(wu))
    }
}

/// An output Strongroom holds and may spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utxo {
    pub outpoint: OutPoint,
    pub value_sat: u64,
    pub spend: Spend,
}

/// An output of the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    pub script_pubkey: ScriptBuf,
    pub value_sat: u64,
}

/// What is approved: inputs, payouts, change, and so the fee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtcPlan {
    pub inputs: Vec<Utxo>,
    pub payouts: Vec<Payout>,
    pub change: Option<Payout>,
    /// Signal BIP-125 replaceability.
    pub rbf: bool,
}

impl BtcPlan {
    pub fn input_total(&self) -> Result<u64, BtcError> {
        self.inputs
            .iter()
            .try_fold(0u64, |a, u| a.checked_add(u.value_sat))
            .ok_or(BtcError::Overflow)
    }

    pub fn output_total(&self) -> Result<u64, BtcError> {
        self.payouts
            .iter()
            .chain(self.change.iter())
            .try_fold(0u64, |a, p| a.checked_add(p.value_sat))
            .ok_or(BtcError::Overflow)
    }

    /// Input total less output total.
    pub fn fee_sat(&self) -> Result<u64, BtcError> {
        let (i, o) = (self.input_total()?, self.output_total()?);
        i.checked_sub(o).ok_or(BtcError::InsufficientFunds {
            inputs: i,
            needed: o,
        })
    }

    fn outputs(&self) -> Vec<TxOut> {
        self.payouts
            .iter()
            .chain(self.change.iter())
            .map(|p| TxOut {
                value: Amount::from_sat(p.value_sat),
                script_pubkey: p.script_pubkey.clone(),
            })
            .collect()
    }

    fn unsigned_tx(&self) -> Transaction {
        let sequence = if self.rbf {
            Sequence::ENABLE_RBF_NO_LOCKTIME
        } else {
            Sequence::MAX
        };
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: self
                .inputs
                .iter()
                .map(|u| TxIn {
                    previous_output: u.outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence,
                    witness: Witness::new(),
                })
                .collect(),
            output: self.outputs(),
        }
    }

    /// The most this transaction can weigh once signed.
    pub fn max_weight(&self) -> Result<Weight, BtcError> {
        // Non-witness bytes count four times (`base_size`, which also keeps a
        // transaction without inputs comparable); the segwit marker and flag
        // add 2 weight units once any witness exists.
        let base = self.unsigned_tx().base_size() as u64;
        let mut w = base * 4 + 2;
        for u in &self.inputs {
            w += u.spend.max_witness_weight()?.to_wu();
        }
        Ok(Weight::from_wu(w))
    }

    /// The largest virtual size, rounded up.
    pub fn max_vsize(&self) -> Result<u64, BtcError> {
        Ok(self.max_weight()?.to_vbytes_ceil())
    }

    /// Checks the plan: inputs, outputs, no dust, inputs cover outputs.
    pub fn check(&self) -> Result<(), BtcError> {
        if self.inputs.is_empty() || self.payouts.is_empty() {
            return Err(BtcError::Empty);
        }
        for (index, p) in self.payouts.iter().chain(self.change.iter()).enumerate() {
            if p.value_sat < p.script_pubkey.minimal_non_dust().to_sat() {
                return Err(BtcError::Dust {
                    index,
                    value: p.value_sat,
                });
            }
        }
        self.fee_sat()?;
        Ok(())
    }

    /// The spent outputs, in input order.
    pub fn prevouts(&self) -> Result<Vec<TxOut>, BtcError> {
        self.inputs
            .iter()
            .map(|u| {
                Ok(TxOut {
                    value: Amount::from_sat(u.value_sat),
                    script_pubkey: u.spend.script_pubkey()?,
                })
            })
            .collect()
    }

    /// The PSBT to sign: witness UTXOs, witness scripts, Taproot internal keys.
    pub fn psbt(&self) -> Result<Psbt, BtcError> {
        self.check()?;
        let mut psbt = Psbt::from_unsigned_tx(self.unsigned_tx())
            .map_err(|e| BtcError::Finalize(e.to_string()))?;
        for ((input, u), prev) in psbt
            .inputs
            .iter_mut()
            .zip(&self.inputs)
            .zip(self.prevouts()?)
        {
            input.witness_utxo = Some(prev);
            input.witness_script = u.spend.witness_script()?;
            if let Spend::P2tr { internal_key } = &u.spend {
                input.tap_internal_key =
                    Some(XOnlyPublicKey::from_slice(internal_key).map_err(|_| BtcError::BadKey)?);
            }
        }
        Ok(psbt)
    }
}

/// One signature a key must make for a PSBT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningTask {
    /// ECDSA over a segwit v0 sighash (SIGHASH_ALL), for `pubkey`.
    Ecdsa {
        input: usize,
        pubkey: [u8; 33],
        digest: [u8; 32],
    },
    /// BIP-340 over a Taproot key-path sighash (SIGHASH_DEFAULT), by the
    /// internal key tweaked per BIP-86.
    Schnorr {
        input: usize,
        internal_key: [u8; 32],
        digest: [u8; 32],
    },
    /// BIP-340 over a Taproot key-path sighash (SIGHASH_DEFAULT), by the
    /// output key itself ([`Spend::P2trOutput`]).
    SchnorrOutput {
        input: usize,
        output_key: [u8; 32],
        digest: [u8; 32],
    },
}

impl SigningTask {
    /// The input the signature is for.
    pub fn input(&self) -> usize {
        match *self {
            SigningTask::Ecdsa { input, .. }
            | SigningTask::Schnorr { input, .. }
            | SigningTask::SchnorrOutput { input, .. } => input,
        }
    }
}

/// The output each input spends: its `witness_utxo`, or else (a legacy
/// input, BIP-44 P2PKH) the output of its previous transaction, whose id
/// must be the one the input names.
pub fn prevouts_of(psbt: &Psbt) -> Result<Vec<TxOut>, BtcError> {
    psbt.inputs
        .iter()
        .zip(&psbt.unsigned_tx.input)
        .enumerate()
        .map(|(i, (inp, txin))| {
            let outpoint = txin.previous_output;
            // A previous transaction given must be the one the input names;
            // its output is what is spent, and a `witness_utxo` beside it
            // must agree.
            let proven = match &inp.non_witness_utxo {
                Some(prev) => Some(
                    Some(prev)
                        .filter(|p| p.compute_txid() == outpoint.txid)
                        .and_then(|p| p.output.get(outpoint.vout as usize).cloned())
                        .ok_or(BtcError::NoPrevout(i))?,
                ),
                None => None,
            };
            match (proven, &inp.witness_utxo) {
                (Some(p), Some(w)) if p != *w => Err(BtcError::NoPrevout(i)),
                (Some(p), _) => Ok(p),
                (None, Some(w)) => Ok(w.clone()),
                (None, None) => Err(BtcError::NoPrevout(i)),
            }
        })
        .collect()
}

/// What each of our keys must sign in `psbt`, given how each input is spent.
pub fn signing_tasks(psbt: &Psbt, spends: &[Spend]) -> Result<Vec<SigningTask>, BtcError> {
    if spends.len() != psbt.inputs.len() {
        return Err(BtcError::Mismatch);
    }
    let prevouts = prevouts_of(psbt)?;
    let mut cache = SighashCache::new(&psbt.unsigned_tx);
    let mut tasks = Vec::new();
    for (input, spend) in spends.iter().enumerate() {
        if prevouts[input].script_pubkey != spend.script_pubkey()? {
            return Err(BtcError::NoSuchInput(input));
        }
        tasks.extend(tasks_of(&mut cache, &prevouts, input, spend, None)?);
    }
    Ok(tasks)
}

/// The signatures input `input` needs, for every key of `spend` or only `only`.
fn tasks_of(
    cache: &mut SighashCache<&Transaction>,
    prevouts: &[TxOut],
    input: usize,
    spend: &Spend,
    only: Option<&[u8; 33]>,
) -> Result<Vec<SigningTask>, BtcError> {
    let prev = &prevouts[input];
    let ecdsa = |digest: [u8; 32], keys: &[[u8; 33]]| -> Vec<SigningTask> {
        keys.iter()
            .filter(|k| only.is_none_or(|o| o == *k))
            .map(|pubkey| SigningTask::Ecdsa {
                input,
                pubkey: *pubkey,
                digest,
            })
            .collect()
    };
    Ok(match spend {
        Spend::P2wpkh { pubkey } => {
            let h = cache
                .p2wpkh_signature_hash(
                    input,
                    &prev.script_pubkey,
                    prev.value,
                    EcdsaSighashType::All,
                )
                .map_err(|e| BtcError::Sighash(e.to_string()))?;
            ecdsa(h.to_byte_array(), std::slice::from_ref(pubkey))
        }
        Spend::P2wshMulti { pubkeys, .. } => {
            let ws = spend.witness_script()?.ok_or(BtcError::BadMultisig)?;
            let h = cache
                .p2wsh_signature_hash(input, &ws, prev.value, EcdsaSighashType::All)
                .map_err(|e| BtcError::Sighash(e.to_string()))?;
            ecdsa(h.to_byte_array(), pubkeys)
        }
        Spend::P2tr { .. } | Spend::P2trOutput { .. } => {
            let digest = cache
                .taproot_key_spend_signature_hash(
                    input,
                    &Prevouts::All(prevouts),
                    TapSighashType::Default,
                )
                .map_err(|e| BtcError::Sighash(e.to_string()))?
                .to_byte_array();
            vec![match spend {
                Spend::P2tr { internal_key } => SigningTask::Schnorr {
                    input,
                    internal_key: *internal_key,
                    digest,
                },
                _ => SigningTask::SchnorrOutput {
                    input,
                    output_key: match spend {
                        Spend::P2trOutput { output_key } => *output_key,
                        _ => return Err(BtcError::Mismatch),
                    },
                    digest,
                },
            }]
        }
    })
}

/// Adds an ECDSA signature (compact r ‖ s, low S) after checking it.
pub fn add_ecdsa(psbt: &mut Psbt, task: &SigningTask, rs: &[u8; 64]) -> Result<(), BtcError> {
    let SigningTask::Ecdsa {
        input,
        pubkey,
        digest,
    } = *task
    else {
        return Err(BtcError::Mismatch);
    };
    let secp = Secp256k1::verification_only();
    let pk = PublicKey::from_slice(&pubkey).map_err(|_| BtcError::BadKey)?;
    let sig =
        secp256k1::ecdsa::Signature::from_compact(rs).map_err(|_| BtcError::BadSignature(input))?;
    secp.verify_ecdsa(&Message::from_digest(digest), &sig, &pk.inner)
        .map_err(|_| BtcError::BadSignature(input))?;
    let slot = psbt
        .inputs
        .get_mut(input)
        .ok_or(BtcError::NoSuchInput(input))?;
    slot.partial_sigs.insert(
        pk,
        ecdsa::Signature {
            signature: sig,
            sighash_type: EcdsaSighashType::All,
        },
    );
    Ok(())
}

/// Adds a Taproot key-path signature after checking it against the tweaked key.
pub fn add_schnorr(psbt: &mut Psbt, task: &SigningTask, sig64: &[u8; 64]) -> Result<(), BtcError> {
    let secp = Secp256k1::verification_only();
    let (input, output_key, digest) = match *task {
        SigningTask::Schnorr {
            input,
            internal_key,
            digest,
        } => {
            let internal =
                UntweakedPublicKey::from_slice(&internal_key).map_err(|_| BtcError::BadKey)?;
            (input, internal.tap_tweak(&secp, None).0, digest)
        }
        SigningTask::SchnorrOutput {
            input,
            output_key,
            digest,
        } => (
            input,
            bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(
                XOnlyPublicKey::from_slice(&output_key).map_err(|_| BtcError::BadKey)?,
            ),
            digest,
        ),
        SigningTask::Ecdsa { .. } => return Err(BtcError::Mismatch),
    };
    let sig = secp256k1::schnorr::Signature::from_slice(sig64)
        .map_err(|_| BtcError::BadSignature(input))?;
    secp.verify_schnorr(
        &sig,
        &Message::from_digest(digest),
        &output_key.to_x_only_public_key(),
    )
    .map_err(|_| BtcError::BadSignature(input))?;
    let slot = psbt
        .inputs
        .get_mut(input)
        .ok_or(BtcError::NoSuchInput(input))?;
    slot.tap_key_sig = Some(taproot::Signature {
        signature: sig,
        sighash_type: TapSighashType::Default,
    });
    Ok(())
}

/// Merges a cosigner's PSBT of the same transaction into `ours`.
pub fn combine(ours: &mut Psbt, theirs: Psbt) -> Result<(), BtcError> {
    if ours.unsigned_tx != theirs.unsigned_tx {
        return Err(BtcError::Mismatch);
    }
    ours.combine(theirs).map_err(|_| BtcError::Mismatch)
}

/// Finalises every input, extracts the transaction, and has Bitcoin Core's
/// interpreter verify each input against all the outputs spent.
pub fn finalize(mut psbt: Psbt) -> Result<Transaction, BtcError> {
    finalize_in_place(&mut psbt)
}

/// [`finalize`], leaving the finalised PSBT in `psbt` (BIP-174's finaliser
/// and extractor roles, for a signer that hands on the finalised PSBT).
pub fn finalize_in_place(psbt: &mut Psbt) -> Result<Transaction, BtcError> {
    let prevouts = prevouts_of(psbt)?;
    let secp = Secp256k1::verification_only();
    // Key-path spends of an output key with no internal key on record
    // (`Spend::P2trOutput`): the witness is the signature alone; the
    // finaliser, which looks for an internal key, keeps inputs finished.
    for (input, prev) in psbt.inputs.iter_mut().zip(&prevouts) {
        if prev.script_pubkey.is_p2tr()
            && input.tap_internal_key.is_none()
            && input.final_script_witness.is_none()
            && let Some(sig) = input.tap_key_sig.take()
        {
            input.final_script_witness = Some(Witness::from_slice(&[sig.to_vec()]));
        }
    }
    psbt.finalize_mut(&secp).map_err(|errs| {
        BtcError::Finalize(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let tx = psbt
        .clone()
        .extract_tx()
        .map_err(|e| BtcError::Finalize(e.to_string()))?;
    verify_with_core(&tx, &prevouts)?;
    Ok(tx)
}

/// Verifies every input of `tx` with `bitcoinconsensus` (Bitcoin Core 26,
/// all pre-Taproot rules and Taproot), listing the prevouts of all inputs.
pub fn verify_with_core(tx: &Transaction, prevouts: &[TxOut]) -> Result<(), BtcError> {
    if prevouts.len() != tx.input.len() {
        return Err(BtcError::Mismatch);
    }
    let bytes = bitcoin::consensus::serialize(tx);
    let scripts: Vec<Vec<u8>> = prevouts
        .iter()
        .map(|p| p.script_pubkey.to_bytes())
        .collect();
    let utxos: Vec<bitcoinconsensus::Utxo> = prevouts
        .iter()
        .zip(&scripts)
        .map(|(p, s)| bitcoinconsensus::Utxo {
            script_pubkey: s.as_ptr(),
            script_pubkey_len: s.len() as u32,
            value: i64::try_from(p.value.to_sat()).unwrap_or(i64::MAX),
        })
        .collect();
    for (index, (p, s)) in prevouts.iter().zip(&scripts).enumerate() {
        bitcoinconsensus::verify_with_flags(
            s,
            p.value.to_sat(),
            &bytes,
            Some(&utxos),
            index,
            bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT | bitcoinconsensus::VERIFY_TAPROOT,
        )
        .map_err(|e| BtcError::Consensus {
            index,
            reason: format!("{e:?}"),
        })?;
    }
    Ok(())
}

/// A signed transaction read back: what it pays, to whom, and its fee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub outpoints: Vec<OutPoint>,
    pub outputs: BTreeMap<usize, (ScriptBuf, u64)>,
    pub fee_sat: u64,
    pub vsize: u64,
}

/// Reads a transaction back so it can be compared with its plan.
pub fn summarize(tx: &Transaction, prevouts: &[TxOut]) -> Result<Summary, BtcError> {
    let inputs = prevouts
        .iter()
        .try_fold(0u64, |a, p| a.checked_add(p.value.to_sat()))
        .ok_or(BtcError::Overflow)?;
    let outputs = tx
        .output
        .iter()
        .try_fold(0u64, |a, o| a.checked_add(o.value.to_sat()))
        .ok_or(BtcError::Overflow)?;
    Ok(Summary {
        outpoints: tx.input.iter().map(|i| i.previous_output).collect(),
        outputs: tx
            .output
            .iter()
            .enumerate()
            .map(|(i, o)| (i, (o.script_pubkey.clone(), o.value.to_sat())))
            .collect(),
        fee_sat: inputs
            .checked_sub(outputs)
            .ok_or(BtcError::InsufficientFunds {
                inputs,
                needed: outputs,
            })?,
        vsize: tx.vsize() as u64,
    })
}

impl BtcPlan {
    /// Whether `tx` spends exactly this plan's inputs and pays exactly its
    /// outputs (and so its fee): what was signed is what was approved.
    pub fn matches(&self, tx: &Transaction) -> Result<bool, BtcError> {
        let s = summarize(tx, &self.prevouts()?)?;
        let expected: BTreeMap<usize, (ScriptBuf, u64)> = self
            .outputs()
            .into_iter()
            .enumerate()
            .map(|(i, o)| (i, (o.script_pubkey, o.value.to_sat())))
            .collect();
        Ok(
            s.outpoints == self.inputs.iter().map(|u| u.outpoint).collect::<Vec<_>>()
                && s.outputs == expected
                && s.fee_sat == self.fee_sat()?,
        )
    }
}

/// The signing tasks in `psbt` that one key can do, recognised from the
/// PSBT alone (for an offline signer that knows only its key): P2WPKH
/// outputs of the key, P2WSH multisig scripts that name it, and Taproot
/// key-path outputs whose internal key is its x-only form (BIP-86).
pub fn tasks_for_key(psbt: &Psbt, pubkey: &[u8; 33]) -> Result<Vec<SigningTask>, BtcError> {
    let pk = PublicKey::from_slice(pubkey).map_err(|_| BtcError::BadKey)?;
    let xonly = pk.inner.x_only_public_key().0.serialize();
    let prevouts = prevouts_of(psbt)?;
    let p2pkh = ScriptBuf::new_p2pkh(&pk.pubkey_hash());
    let mut spends = Vec::with_capacity(psbt.inputs.len());
    let mut mine = Vec::with_capacity(psbt.inputs.len());
    let mut legacy = Vec::new();
    for (i, (input, prev)) in psbt.inputs.iter().zip(&prevouts).enumerate() {
        if prev.script_pubkey == p2pkh {
            // BIP-44: a legacy input, signed over the legacy sighash.
            legacy.push(i);
            mine.push(false);
            spends.push(Spend::P2wpkh { pubkey: *pubkey });
            continue;
        }
        let candidates = [
            Some(Spend::P2wpkh { pubkey: *pubkey }),
            input
                .tap_internal_key
                .filter(|k| k.serialize() == xonly)
                .map(|_| Spend::P2tr {
                    internal_key: xonly,
                }),
            input.witness_script.as_ref().and_then(multisig_of),
        ];
        let found = candidates
            .into_iter()
            .flatten()
            .find(|s| s.script_pubkey().is_ok_and(|spk| spk == prev.script_pubkey));
        let ours = match &found {
            Some(Spend::P2wshMulti { pubkeys, .. }) => pubkeys.contains(pubkey),
            Some(_) => true,
            None => false,
        };
        mine.push(ours);
        // Inputs that are not ours still need a description for the
        // sighash machinery: any that matches their script will do.
        spends.push(found.unwrap_or(Spend::P2wpkh { pubkey: *pubkey }));
    }
    let mut cache = SighashCache::new(&psbt.unsigned_tx);
    let mut tasks = Vec::new();
    for (input, spend) in spends.iter().enumerate() {
        if mine[input] {
            tasks.extend(tasks_of(&mut cache, &prevouts, input, spend, Some(pubkey))?);
        } else if legacy.contains(&input) {
            let h = cache
                .legacy_signature_hash(input, &p2pkh, EcdsaSighashType::All.to_u32())
                .map_err(|e| BtcError::Sighash(e.to_string()))?;
            tasks.push(SigningTask::Ecdsa {
                input,
                pubkey: *pubkey,
                digest: h.to_byte_array(),
            });
        }
    }
    tasks.sort_by_key(SigningTask::input);
    Ok(tasks)
}

/// Reads `OP_m <keys…> OP_n OP_CHECKMULTISIG` (keys sorted) back into a spend.
fn multisig_of(script: &ScriptBuf) -> Option<Spend> {
    use bitcoin::opcodes::all::OP_CHECKMULTISIG;
    use bitcoin::script::Instruction;
    let ins: Vec<Instruction<'_>> = script.instructions().collect::<Result<_, _>>().ok()?;
    let (first, rest) = ins.split_first()?;
    let (last, rest) = rest.split_last()?;
    let (count, keys) = rest.split_last()?;
    if *last != Instruction::Op(OP_CHECKMULTISIG) {
        return None;
    }
    let small = |i: &Instruction<'_>| match i {
        Instruction::Op(op) => {
            let c = op.to_u8();
            (0x51..=0x60).contains(&c).then(|| usize::from(c - 0x50))
        }
        _ => None,
    };
    let threshold = small(first)?;
    let n = small(count)?;
    let pubkeys: Vec<[u8; 33]> = keys
        .iter()
        .map(|k| match k {
            Instruction::PushBytes(b) => b.as_bytes().try_into().ok(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let spend = Spend::P2wshMulti { threshold, pubkeys };
    // Only the exact script Strongroom would write (sorted keys) is recognised.
    (n == spend_len(&spend) && spend.witness_script().ok()?.as_ref() == Some(script))
        .then_some(spend)
}

fn spend_len(s: &Spend) -> usize {
    match s {
        Spend::P2wshMulti { pubkeys, .. } => pubkeys.len(),
        _ => 0,
    }
}

/// Checks a PSBT signed elsewhere (a cosigner, an offline signer) against
/// the plan that was approved. Nothing of it is trusted but its
/// signatures: the same unsigned transaction is required, then each
/// signature is taken into a PSBT rebuilt from the plan only if it is by a
/// key that spends its input, of SIGHASH_ALL (SIGHASH_DEFAULT for a Taproot
/// key path), low S, and verifies (libsecp256k1) over the sighash computed
/// here; what else it carries (final witnesses, scripts, other spent
/// outputs, unknown fields) is dropped. The rebuilt PSBT is finalised,
/// verified input by input by Bitcoin Core's interpreter, and compared
/// output by output with the plan.
pub fn accept_signed(plan: &BtcPlan, signed: Psbt) -> Result<Transaction, BtcError> {
    let mut clean = plan.psbt()?;
    if signed.unsigned_tx != clean.unsigned_tx || signed.inputs.len() != clean.inputs.len() {
        return Err(BtcError::Mismatch);
    }
    let spends: Vec<Spend> = plan.inputs.iter().map(|u| u.spend.clone()).collect();
    let tasks = signing_tasks(&clean, &spends)?;
    for (i, input) in signed.inputs.iter().enumerate() {
        for (pk, sig) in &input.partial_sigs {
            if sig.sighash_type != EcdsaSighashType::All {
                return Err(BtcError::SighashType(i));
            }
            let key = pk.inner.serialize();
            let task = tasks
                .iter()
                .find(|t| matches!(t, SigningTask::Ecdsa { input, pubkey, .. } if *input == i && *pubkey == key))
                .ok_or(BtcError::ForeignSignature(i))?;
            add_ecdsa(&mut clean, task, &sig.signature.serialize_compact())?;
        }
        if let Some(sig) = &input.tap_key_sig {
            if sig.sighash_type != TapSighashType::Default {
                return Err(BtcError::SighashType(i));
            }
            let task = tasks
                .iter()
                .find(|t| {
                    matches!(
                        t,
                        SigningTask::Schnorr { .. } | SigningTask::SchnorrOutput { .. }
                    ) && t.input() == i
                })
                .ok_or(BtcError::ForeignSignature(i))?;
            add_schnorr(&mut clean, task, &sig.signature.serialize())?;
        }
    }
    let tx = finalize(clean)?;
    verify_with_core(&tx, &plan.prevouts()?)?;
    if !plan.matches(&tx)? {
        return Err(BtcError::Mismatch);
    }
    Ok(tx)
}
