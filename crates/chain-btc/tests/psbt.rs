//! PSBTs signed through the signer seam (software keys and a SoftHSM
//! cosigner), finalised, and verified by Bitcoin Core's interpreter.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, ScriptBuf, Txid};
use chain_btc::*;
use domain::BitcoinNetwork;
use keys::{Algorithm, KeyRef, PublicKey, Secret32, SignRequest, Signature, Signer, TapTweak};

struct Key {
    signer: Box<dyn Signer>,
    key: KeyRef,
    public: PublicKey,
}

async fn software(seed: u8, algorithm: Algorithm) -> Key {
    let signer = keys::SoftwareSigner::new();
    let key = signer
        .import(algorithm, Secret32::from_bytes(&mut [seed; 32]))
        .unwrap();
    let public = signer.public_key(&key).await.unwrap();
    Key {
        signer: Box::new(signer),
        key,
        public,
    }
}

impl Key {
    fn ecdsa_pub(&self) -> [u8; 33] {
        match self.public {
            PublicKey::Secp256k1(p) => p,
            _ => panic!("not ECDSA"),
        }
    }

    fn xonly(&self) -> [u8; 32] {
        match self.public {
            PublicKey::XOnly(p) => p,
            _ => panic!("not Schnorr"),
        }
    }

    /// Signs the tasks that are this key's, checking each signature with
    /// the independent verifier first.
    async fn sign(&self, psbt: &mut bitcoin::Psbt, tasks: &[SigningTask]) -> usize {
        let mut n = 0;
        for t in tasks {
            match *t {
                SigningTask::Ecdsa { pubkey, digest, .. } if pubkey == self.ecdsa_pub_opt() => {
                    let req = SignRequest::EcdsaDigest(digest);
                    let sig = self.signer.sign(&self.key, req.clone()).await.unwrap();
                    keys::verify::verify(&self.public, &req, &sig).unwrap();
                    let Signature::Ecdsa(e) = sig else { panic!() };
                    let mut rs = [0u8; 64];
                    rs[..32].copy_from_slice(&e.r);
                    rs[32..].copy_from_slice(&e.s);
                    add_ecdsa(psbt, t, &rs).unwrap();
                    n += 1;
                }
                SigningTask::Schnorr {
                    internal_key,
                    digest,
                    ..
                } if Some(internal_key) == self.xonly_opt() => {
                    let req = SignRequest::SchnorrDigest {
                        digest,
                        tweak: Some(TapTweak::NoScripts),
                    };
                    let sig = self.signer.sign(&self.key, req.clone()).await.unwrap();
                    keys::verify::verify(&self.public, &req, &sig).unwrap();
                    let Signature::Schnorr(s) = sig else { panic!() };
                    add_schnorr(psbt, t, &s).unwrap();
                    n += 1;
                }
                _ => {}
            }
        }
        n
    }

    /// This key's ECDSA signature (r ‖ s) over an ECDSA task's digest.
    async fn compact_signature(&self, task: &SigningTask) -> [u8; 64] {
        let SigningTask::Ecdsa { digest, .. } = *task else {
            panic!("not an ECDSA task")
        };
        let Signature::Ecdsa(e) = self
            .signer
            .sign(&self.key, SignRequest::EcdsaDigest(digest))
            .await
            .unwrap()
        else {
            panic!("not an ECDSA key")
        };
        let mut rs = [0u8; 64];
        rs[..32].copy_from_slice(&e.r);
        rs[32..].copy_from_slice(&e.s);
        rs
    }

    fn ecdsa_pub_opt(&self) -> [u8; 33] {
        match self.public {
            PublicKey::Secp256k1(p) => p,
            _ => [0; 33],
        }
    }

    fn xonly_opt(&self) -> Option<[u8; 32]> {
        match self.public {
            PublicKey::XOnly(p) => Some(p),
            _ => None,
        }
    }
}

fn outpoint(n: u8) -> OutPoint {
    OutPoint {
        txid: Txid::from_byte_array([n; 32]),
        vout: u32::from(n),
    }
}

fn payee() -> ScriptBuf {
    BtcAddress::parse(
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        BitcoinNetwork::Mainnet,
    )
    .unwrap()
    .script_pubkey()
}

#[tokio::test]
async fn every_input_type_in_one_transaction_passes_bitcoin_core() {
    let wpkh = software(1, Algorithm::EcdsaSecp256k1).await;
    let tr = software(2, Algorithm::SchnorrBip340).await;
    let cos: Vec<Key> = vec![
        software(3, Algorithm::EcdsaSecp256k1).await,
        software(4, Algorithm::EcdsaSecp256k1).await,
        software(5, Algorithm::EcdsaSecp256k1).await,
    ];
    let multi = Spend::P2wshMulti {
        threshold: 2,
        pubkeys: cos.iter().map(Key::ecdsa_pub).collect(),
    };
    let change = Spend::P2wpkh {
        pubkey: wpkh.ecdsa_pub(),
    };
    let plan = BtcPlan {
        inputs: vec![
            Utxo {
                outpoint: outpoint(1),
                value_sat: 50_000,
                spend: Spend::P2wpkh {
                    pubkey: wpkh.ecdsa_pub(),
                },
            },
            Utxo {
                outpoint: outpoint(2),
                value_sat: 70_000,
                spend: Spend::P2tr {
                    internal_key: tr.xonly(),
                },
            },
            Utxo {
                outpoint: outpoint(3),
                value_sat: 90_000,
                spend: multi.clone(),
            },
        ],
        payouts: vec![Payout {
            script_pubkey: payee(),
            value_sat: 150_000,
        }],
        change: Some(Payout {
            script_pubkey: change.script_pubkey().unwrap(),
            value_sat: 58_000,
        }),
        rbf: true,
    };
    assert_eq!(plan.fee_sat().unwrap(), 2_000);
    let mut psbt = plan.psbt().unwrap();
    let spends: Vec<Spend> = plan.inputs.iter().map(|u| u.spend.clone()).collect();
    let tasks = signing_tasks(&psbt, &spends).unwrap();
    assert_eq!(tasks.len(), 1 + 1 + 3, "each multisig key may sign");
    assert_eq!(wpkh.sign(&mut psbt, &tasks).await, 1);
    assert_eq!(tr.sign(&mut psbt, &tasks).await, 1);

    // Cosigners sign their own copies, independently; the PSBTs are combined.
    let mut other = psbt.clone();
    assert_eq!(cos[0].sign(&mut psbt, &tasks).await, 1);
    // One signature of two: not final.
    assert!(matches!(finalize(psbt.clone()), Err(BtcError::Finalize(_))));
    assert_eq!(cos[2].sign(&mut other, &tasks).await, 1);
    combine(&mut psbt, other).unwrap();

    let tx = finalize(psbt).unwrap();
    assert!(
        plan.matches(&tx).unwrap(),
        "what was signed is what was approved"
    );
    assert!(tx.vsize() as u64 <= plan.max_vsize().unwrap());
    assert!(tx.input.iter().all(|i| i.sequence.is_rbf()));

    // Anything changed after signing is refused by Core.
    let prevouts = plan.prevouts().unwrap();
    let mut tampered = tx.clone();
    tampered.output[0].value = bitcoin::Amount::from_sat(151_000);
    assert!(matches!(
        verify_with_core(&tampered, &prevouts),
        Err(BtcError::Consensus { .. })
    ));
    assert!(!plan.matches(&tampered).unwrap());
    // Claiming a different amount for a spent output breaks every segwit signature.
    let mut lied = prevouts.clone();
    lied[1].value = bitcoin::Amount::from_sat(70_001);
    assert!(verify_with_core(&tx, &lied).is_err());
}

#[tokio::test]
async fn a_cosigner_in_an_hsm_signs_its_part() {
    use keys_pkcs11::Pkcs11Signer;
    use keys_pkcs11::testing::{SoftHsm, USER_PIN};
    let token = SoftHsm::new("btc");
    let hsm = Pkcs11Signer::open(
        &SoftHsm::module(),
        &token.label,
        &zeroize::Zeroizing::new(USER_PIN.into()),
        1,
    )
    .unwrap();
    let hkey = hsm.generate(Algorithm::EcdsaSecp256k1).await.unwrap();
    let hpub = hsm.public_key(&hkey).await.unwrap();
    let in_hsm = Key {
        signer: Box::new(hsm),
        key: hkey,
        public: hpub,
    };
    let soft = software(9, Algorithm::EcdsaSecp256k1).await;
    let spend = Spend::P2wshMulti {
        threshold: 2,
        pubkeys: vec![soft.ecdsa_pub(), in_hsm.ecdsa_pub()],
    };
    let plan = BtcPlan {
        inputs: vec![Utxo {
            outpoint: outpoint(7),
            value_sat: 100_000,
            spend: spend.clone(),
        }],
        payouts: vec![Payout {
            script_pubkey: payee(),
            value_sat: 98_000,
        }],
        change: None,
        rbf: false,
    };
    let base = plan.psbt().unwrap();
    let tasks = signing_tasks(&base, &[spend]).unwrap();
    let (mut a, mut b) = (base.clone(), base);
    assert_eq!(soft.sign(&mut a, &tasks).await, 1);
    assert_eq!(in_hsm.sign(&mut b, &tasks).await, 1);
    combine(&mut a, b).unwrap();
    let tx = finalize(a).unwrap();
    assert!(plan.matches(&tx).unwrap());
}

#[tokio::test]
async fn bad_plans_and_foreign_signatures_are_refused() {
    let k = software(1, Algorithm::EcdsaSecp256k1).await;
    let other = software(2, Algorithm::EcdsaSecp256k1).await;
    let spend = Spend::P2wpkh {
        pubkey: k.ecdsa_pub(),
    };
    let utxo = Utxo {
        outpoint: outpoint(1),
        value_sat: 10_000,
        spend: spend.clone(),
    };
    let plan = |value: u64| BtcPlan {
        inputs: vec![utxo.clone()],
        payouts: vec![Payout {
            script_pubkey: payee(),
            value_sat: value,
        }],
        change: None,
        rbf: true,
    };
    assert!(
        matches!(plan(293).check(), Err(BtcError::Dust { .. })),
        "P2WPKH dust is 294 sat"
    );
    assert!(plan(294).check().is_ok());
    assert!(matches!(
        plan(10_001).check(),
        Err(BtcError::InsufficientFunds { .. })
    ));
    let no_outputs = BtcPlan {
        payouts: vec![],
        ..plan(1)
    };
    assert_eq!(no_outputs.check(), Err(BtcError::Empty));

    let good = plan(9_000);
    let mut psbt = good.psbt().unwrap();
    let tasks = signing_tasks(&psbt, std::slice::from_ref(&spend)).unwrap();
    // Another key's signature over the right digest is refused before it enters the PSBT.
    let rs = other.compact_signature(&tasks[0]).await;
    assert_eq!(
        add_ecdsa(&mut psbt, &tasks[0], &rs),
        Err(BtcError::BadSignature(0))
    );
    // A spend description that does not match the UTXO is refused.
    assert!(
        signing_tasks(
            &psbt,
            &[Spend::P2wpkh {
                pubkey: other.ecdsa_pub()
            }]
        )
        .is_err()
    );
    // A PSBT of another transaction does not combine.
    let mut a = good.psbt().unwrap();
    assert_eq!(
        combine(&mut a, plan(8_000).psbt().unwrap()),
        Err(BtcError::Mismatch)
    );
    // Unsigned: nothing to finalise.
    assert!(finalize(good.psbt().unwrap()).is_err());
    // Signed by the right key, then the PSBT's claim about the spent output
    // is swapped for one anyone can spend: the plan's outputs are what Core
    // checks, so the swap neither passes nor changes anything.
    let mut signed = good.psbt().unwrap();
    let rs = k.compact_signature(&tasks[0]).await;
    add_ecdsa(&mut signed, &tasks[0], &rs).unwrap();
    let mut swapped = signed.clone();
    swapped.inputs[0].witness_utxo = Some(bitcoin::TxOut {
        value: bitcoin::Amount::from_sat(1),
        script_pubkey: ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::hash(&[0x51])),
    });
    swapped.inputs[0].witness_script = Some(ScriptBuf::from_bytes(vec![0x51]));
    let tx = accept_signed(&good, swapped).unwrap();
    assert!(good.matches(&tx).unwrap());
    assert_eq!(tx, accept_signed(&good, signed).unwrap());
    assert!(
        Spend::P2wshMulti {
            threshold: 3,
            pubkeys: vec![k.ecdsa_pub(); 2]
        }
        .script_pubkey()
        .is_err()
    );
}

#[test]
fn addresses_are_checked_for_their_network_and_type() {
    use BitcoinNetwork::*;
    for (a, n, kind) in [
        (
            "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
            Mainnet,
            AddressKind::P2pkh,
        ),
        (
            "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
            Mainnet,
            AddressKind::P2sh,
        ),
        (
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            Mainnet,
            AddressKind::P2wpkh,
        ),
        (
            "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3",
            Mainnet,
            AddressKind::P2wsh,
        ),
        (
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
            Mainnet,
            AddressKind::P2tr,
        ),
        (
            "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
            Testnet,
            AddressKind::P2wpkh,
        ),
        (
            "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
            Signet,
            AddressKind::P2wpkh,
        ),
        (
            "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw",
            Regtest,
            AddressKind::P2wpkh,
        ),
    ] {
        let parsed = BtcAddress::parse(a, n).unwrap_or_else(|e| panic!("{a}: {e}"));
        assert_eq!(parsed.kind(), kind, "{a}");
        assert_eq!(parsed.to_string(), a);
    }
    // A testnet address on mainnet, and the reverse.
    assert!(matches!(
        BtcAddress::parse("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", Mainnet),
        Err(AddressError::WrongNetwork { .. })
    ));
    assert!(matches!(
        BtcAddress::parse("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", Testnet),
        Err(AddressError::WrongNetwork { .. })
    ));
    for bad in [
        "",
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdr",
        "BC1QAR0SRRR7xfkvy5l643lydnw9re59gtzzwf5mdq",
        "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3",
        "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs",
    ] {
        assert!(BtcAddress::parse(bad, Mainnet).is_err(), "{bad:?}");
    }
}
