//! Batching and signing, measured. `cargo bench -p chain-btc --bench batching`
//!
//! - vbytes per payout for batches of 1, 10 and 100 P2WPKH payouts from one
//!   P2WPKH input with change, signed and verified by Bitcoin Core's
//!   interpreter, against the theoretical minimum (10.5 vB of overhead, a
//!   67.75 vB input with a 71-byte signature, 31 vB per output);
//! - the fee saved against sending the same payouts one by one;
//! - signing (software key through the seam, second verification included)
//!   and finalising + Core verification time per input, for 100 inputs.

#![allow(clippy::unwrap_used)] // A benchmark: a panic is the failure report.

use std::time::Instant;

use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, Txid};
use chain_btc::*;
use keys::{Algorithm, PublicKey, Secret32, SignRequest, Signature, Signer};

struct Wallet {
    signer: keys::SoftwareSigner,
    key: keys::KeyRef,
    public: PublicKey,
    pubkey: [u8; 33],
}

async fn wallet(seed: u8) -> Wallet {
    let signer = keys::SoftwareSigner::new();
    let key = signer
        .import(
            Algorithm::EcdsaSecp256k1,
            Secret32::from_bytes(&mut [seed; 32]),
        )
        .unwrap();
    let public = signer.public_key(&key).await.unwrap();
    let PublicKey::Secp256k1(pubkey) = public else {
        panic!()
    };
    Wallet {
        signer,
        key,
        public,
        pubkey,
    }
}

async fn sign_all(w: &Wallet, plan: &BtcPlan) -> bitcoin::Transaction {
    let mut psbt = plan.psbt().unwrap();
    let spends: Vec<Spend> = plan.inputs.iter().map(|u| u.spend.clone()).collect();
    for t in signing_tasks(&psbt, &spends).unwrap() {
        let SigningTask::Ecdsa { digest, .. } = t else {
            panic!()
        };
        let req = SignRequest::EcdsaDigest(digest);
        let sig = w.signer.sign(&w.key, req.clone()).await.unwrap();
        keys::verify::verify(&w.public, &req, &sig).unwrap();
        let Signature::Ecdsa(e) = sig else { panic!() };
        let mut rs = [0u8; 64];
        rs[..32].copy_from_slice(&e.r);
        rs[32..].copy_from_slice(&e.s);
        add_ecdsa(&mut psbt, &t, &rs).unwrap();
    }
    finalize(psbt).unwrap()
}

fn outpoint(n: u32) -> OutPoint {
    OutPoint {
        txid: Txid::from_byte_array([9; 32]),
        vout: n,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let w = wallet(1).await;
        let spend = Spend::P2wpkh { pubkey: w.pubkey };
        let change = spend.script_pubkey().unwrap();
        let payee = Spend::P2wpkh {
            pubkey: wallet(2).await.pubkey,
        }
        .script_pubkey()
        .unwrap();
        let rate = 10;
        println!("batching, P2WPKH payouts of 10 000 sat at {rate} sat/vB, one P2WPKH input:");
        println!("  payouts  vB/payout  minimum  over min  fee batched  fee one by one  saved");
        for n in [1u32, 10, 100] {
            let plan = select(
                &[Utxo {
                    outpoint: outpoint(0),
                    value_sat: 100_000_000,
                    spend: spend.clone(),
                }],
                &vec![
                    Payout {
                        script_pubkey: payee.clone(),
                        value_sat: 10_000,
                    };
                    n as usize
                ],
                &change,
                rate,
                true,
            )
            .unwrap();
            let tx = sign_all(&w, &plan).await;
            assert!(plan.matches(&tx).unwrap());
            let vsize = tx.vsize() as f64;
            let min = 10.5 + 67.75 + 31.0 * f64::from(n + 1);
            let batched_fee = plan.fee_sat().unwrap();
            // The same payouts one by one: n transactions of one payout and change.
            let single = select(
                &[Utxo {
                    outpoint: outpoint(0),
                    value_sat: 100_000_000,
                    spend: spend.clone(),
                }],
                &[Payout {
                    script_pubkey: payee.clone(),
                    value_sat: 10_000,
                }],
                &change,
                rate,
                true,
            )
            .unwrap();
            let unbatched_fee = single.fee_sat().unwrap() * u64::from(n);
            println!(
                "  {n:7}  {:9.2}  {:7.2}  {:7.2} %  {batched_fee:11}  {unbatched_fee:14}  {:5.1} %",
                vsize / f64::from(n),
                min / f64::from(n),
                100.0 * (vsize - min) / min,
                100.0 * (1.0 - batched_fee as f64 / unbatched_fee as f64),
            );
        }

        // Signing and finalising, per input.
        let inputs: Vec<Utxo> = (0..100)
            .map(|i| Utxo {
                outpoint: outpoint(i),
                value_sat: 100_000,
                spend: spend.clone(),
            })
            .collect();
        let plan = select(
            &inputs,
            &[Payout {
                script_pubkey: payee.clone(),
                value_sat: 9_800_000,
            }],
            &change,
            1,
            true,
        )
        .unwrap();
        let n = plan.inputs.len();
        let mut psbt = plan.psbt().unwrap();
        let spends: Vec<Spend> = plan.inputs.iter().map(|u| u.spend.clone()).collect();
        let t = Instant::now();
        for task in signing_tasks(&psbt, &spends).unwrap() {
            let SigningTask::Ecdsa { digest, .. } = task else { panic!() };
            let req = SignRequest::EcdsaDigest(digest);
            let sig = w.signer.sign(&w.key, req.clone()).await.unwrap();
            keys::verify::verify(&w.public, &req, &sig).unwrap();
            let Signature::Ecdsa(e) = sig else { panic!() };
            let mut rs = [0u8; 64];
            rs[..32].copy_from_slice(&e.r);
            rs[32..].copy_from_slice(&e.s);
            add_ecdsa(&mut psbt, &task, &rs).unwrap();
        }
        let signing = t.elapsed();
        let t = Instant::now();
        let tx = finalize(psbt).unwrap();
        let finalising = t.elapsed();
        assert!(plan.matches(&tx).unwrap());
        println!(
            "{n} P2WPKH inputs: sighash + sign + verify {:.1} µs/input; finalise + extract + Core verification {:.1} µs/input",
            signing.as_secs_f64() * 1e6 / n as f64,
            finalising.as_secs_f64() * 1e6 / n as f64
        );
    });
}
