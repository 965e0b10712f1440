//! chain-eth against official vectors, bad input, and a second implementation.
#![allow(clippy::unwrap_used)]

use alloy_eips::eip2718::Encodable2718;
use chain_eth::calls::{self, AdminKind};
use chain_eth::fees::{self, FeeHistory};
use chain_eth::*;
use keys::{Algorithm, PublicKey, Secret32, SignRequest, Signature, Signer, SoftwareSigner};

fn eip55_vectors() -> Vec<String> {
    include_str!("vectors/eip55.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn eip55_reference_vectors_parse_and_display() {
    let vectors = eip55_vectors();
    assert_eq!(vectors.len(), 8);
    for v in &vectors {
        // Every vector is a valid checksum, the single-case ones included:
        // their checksum happens to be all one case.
        let (addr, casing) = EthAddress::parse(v).unwrap();
        assert_eq!(casing, Casing::Checksummed, "{v}");
        assert_eq!(addr.to_string(), *v, "display is the EIP-55 form");
        assert_eq!(EthAddress::parse_checksummed(v).unwrap(), addr);
        // Written in the other single case it carries no checksum.
        let digits = &v[2..];
        for other in [digits.to_lowercase(), digits.to_uppercase()] {
            let text = format!("0x{other}");
            if text != *v {
                assert_eq!(
                    EthAddress::parse(&text).unwrap(),
                    (addr, Casing::Unchecksummed)
                );
                assert!(EthAddress::parse_checksummed(&text).is_err());
            }
        }
    }
}

#[test]
fn one_flipped_letter_breaks_the_checksum() {
    for v in eip55_vectors().iter().filter(|v| {
        let d = &v[2..];
        d.to_lowercase() != d && d.to_uppercase() != d
    }) {
        for (i, c) in v
            .char_indices()
            .skip(2)
            .filter(|(_, c)| c.is_ascii_alphabetic())
        {
            let mut flipped = v.clone();
            let swapped = if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            flipped.replace_range(i..i + 1, &swapped.to_string());
            assert!(
                matches!(
                    EthAddress::parse(&flipped),
                    Err(AddressError::BadChecksum(_))
                ),
                "{flipped}"
            );
        }
    }
}

#[test]
fn malformed_addresses_are_refused() {
    for bad in [
        "",
        "0x",
        "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0X5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAedd",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg",
        " 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed ",
        "0x+aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0x５aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",
    ] {
        assert!(
            matches!(EthAddress::parse(bad), Err(AddressError::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn destinations_need_a_checksum_unless_allowed_or_whitelisted_exactly() {
    let lower = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";
    let rules = DestinationRules::default();
    assert!(matches!(
        rules.check(lower),
        Err(AddressError::Unchecksummed(_))
    ));
    let upper = "0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED";
    assert!(matches!(
        rules.check(upper),
        Err(AddressError::Unchecksummed(_))
    ));

    let whitelist = vec![lower.to_owned()];
    let listed = DestinationRules {
        allow_unchecksummed: false,
        whitelist: &whitelist,
    };
    assert!(
        listed.check(lower).is_ok(),
        "byte for byte equal to the whitelist"
    );
    assert!(
        listed.check(upper).is_err(),
        "same bytes, other spelling: not the whitelisted text"
    );

    let lax = DestinationRules {
        allow_unchecksummed: true,
        whitelist: &[],
    };
    assert!(lax.check(upper).is_ok());
    // A bad checksum is never excused.
    assert!(matches!(
        lax.check("0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
        Err(AddressError::BadChecksum(_))
    ));
}

#[test]
fn zero_precompiles_and_system_contracts_are_not_destinations() {
    let lax = DestinationRules {
        allow_unchecksummed: true,
        whitelist: &[],
    };
    assert!(matches!(
        lax.check("0x0000000000000000000000000000000000000000"),
        Err(AddressError::Zero(_))
    ));
    for reserved in [
        "0x0000000000000000000000000000000000000001", // ecrecover
        "0x000000000000000000000000000000000000000a", // point evaluation
        "0x0000000000000000000000000000000000000100", // P-256 verify
        "0x000000000000000000000000000000000000ffff",
        "0x000f3df6d732807ef1319fb7b8bb8522d0beac02", // EIP-4788
        "0x0000f90827f1c53a10cb7a02335b175320002935", // EIP-2935
    ] {
        assert!(
            matches!(lax.check(reserved), Err(AddressError::Reserved(_))),
            "{reserved}"
        );
    }
    assert!(
        lax.check("0x0000000000000000000000000000000000010000")
            .is_ok()
    );
}

// The key of anvil's first account (the published test mnemonic).
const ANVIL_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ANVIL_ADDR: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

async fn software_key(hex_key: &str) -> (SoftwareSigner, keys::KeyRef, EthAddress, [u8; 33]) {
    let signer = SoftwareSigner::new();
    let mut bytes: [u8; 32] = hex::decode(hex_key).unwrap().try_into().unwrap();
    let r = signer
        .import(Algorithm::EcdsaSecp256k1, Secret32::from_bytes(&mut bytes))
        .unwrap();
    let PublicKey::Secp256k1(pk) = signer.public_key(&r).await.unwrap() else {
        panic!("not an ECDSA key")
    };
    let addr = EthAddress::from_public_key(&pk).unwrap();
    (signer, r, addr, pk)
}

async fn sign(
    signer: &SoftwareSigner,
    key: &keys::KeyRef,
    pk: [u8; 33],
    plan: &TxPlan,
    from: EthAddress,
) -> SignedTx {
    let digest = plan.signing_hash();
    let request = SignRequest::EcdsaDigest(digest);
    let sig = signer.sign(key, request.clone()).await.unwrap();
    // A second implementation (libsecp256k1) checks the signature and its recovery id.
    keys::verify::verify(&PublicKey::Secp256k1(pk), &request, &sig).unwrap();
    let Signature::Ecdsa(e) = sig else {
        panic!("not ECDSA")
    };
    plan.into_signed(
        EcdsaParts {
            r: e.r,
            s: e.s,
            recovery_id: e.recovery_id,
        },
        from,
    )
    .unwrap()
}

fn eip1559(max: u128, tip: u128) -> Fees {
    Fees::Eip1559 {
        max_fee_per_gas: max,
        max_priority_fee_per_gas: tip,
    }
}

#[tokio::test]
async fn a_public_key_gives_its_address() {
    let (_, _, addr, _) = software_key(ANVIL_KEY).await;
    assert_eq!(addr.to_string(), ANVIL_ADDR);
}

/// The worked example of EIP-155: signing hash and signed bytes.
#[tokio::test]
async fn eip155_reference_example() {
    let (signer, key, from, pk) = software_key(&"46".repeat(32)).await;
    let to = EthAddress::parse_checksummed("0x3535353535353535353535353535353535353535")
        .or_else(|_| "0x3535353535353535353535353535353535353535".parse())
        .unwrap();
    let plan = TxPlan::native(
        1,
        9,
        to,
        1_000_000_000_000_000_000,
        Fees::Legacy {
            gas_price: 20_000_000_000,
        },
    );
    assert_eq!(
        hex::encode(plan.signing_hash()),
        "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53"
    );
    // EIP-155's own signing data, whose keccak-256 is the hash above.
    assert_eq!(
        hex::encode(plan.signing_payload()),
        "ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080"
    );
    assert_eq!(
        alloy_primitives::keccak256(plan.signing_payload()).0,
        plan.signing_hash()
    );
    let official = hex::decode(
        "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83",
    )
    .unwrap();
    let decoded = decode(&official).unwrap();
    assert_eq!(decoded.plan, plan);
    assert_eq!(decoded.from, from);
    // RFC 6979 nonces: our signature is the EIP's, byte for byte.
    let signed = sign(&signer, &key, pk, &plan, from).await;
    assert_eq!(signed.raw, official);
}

#[tokio::test]
async fn built_transactions_decode_to_what_was_approved() {
    let (signer, key, from, pk) = software_key(ANVIL_KEY).await;
    let to: EthAddress = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        .parse()
        .unwrap();
    let token: EthAddress = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
        .parse()
        .unwrap();
    let plans = [
        TxPlan::native(31337, 0, to, 12_345, eip1559(3_000_000_000, 1_000_000_000)),
        TxPlan::native(1, u64::MAX - 1, to, u128::MAX, eip1559(u128::MAX, 0)),
        TxPlan::erc20(
            11155111,
            7,
            token,
            to,
            1_000_000,
            65_000,
            eip1559(50_000_000_000, 2_000_000_000),
        ),
        TxPlan::native(
            56,
            3,
            to,
            1,
            Fees::Legacy {
                gas_price: 5_000_000_000,
            },
        ),
    ];
    for plan in plans {
        let signed = sign(&signer, &key, pk, &plan, from).await;
        let decoded = decode(&signed.raw).unwrap();
        assert_eq!(decoded.plan, plan);
        assert_eq!(decoded.from, from);
        assert_eq!(decoded.hash, signed.hash);
        if !plan.data.is_empty() {
            assert_eq!(
                calls::decode_erc20_transfer(&decoded.plan.data).unwrap(),
                (to, 1_000_000)
            );
        }
        // A signature over another chain's transaction does not pass as this one's.
        let mut other = plan.clone();
        other.chain_id += 1;
        let moved = decode(&signed.raw).unwrap();
        assert_ne!(moved.plan, other);
    }
}

#[tokio::test]
async fn a_signature_from_another_key_is_refused() {
    let (signer, key, _, _) = software_key(ANVIL_KEY).await;
    let wrong_from: EthAddress = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        .parse()
        .unwrap();
    let plan = TxPlan::native(1, 0, wrong_from, 1, eip1559(10, 1));
    let Signature::Ecdsa(e) = signer
        .sign(&key, SignRequest::EcdsaDigest(plan.signing_hash()))
        .await
        .unwrap()
    else {
        panic!()
    };
    let parts = EcdsaParts {
        r: e.r,
        s: e.s,
        recovery_id: e.recovery_id,
    };
    assert!(matches!(
        plan.into_signed(parts, wrong_from),
        Err(TxError::BadSignature(_))
    ));
    let bad_recid = EcdsaParts {
        recovery_id: 4,
        ..parts
    };
    assert!(plan.into_signed(bad_recid, wrong_from).is_err());
}

#[tokio::test]
async fn decoding_refuses_what_strongroom_never_signs() {
    let (signer, key, from, pk) = software_key(ANVIL_KEY).await;
    let to: EthAddress = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        .parse()
        .unwrap();
    let signed = sign(
        &signer,
        &key,
        pk,
        &TxPlan::native(1, 0, to, 1, eip1559(10, 1)),
        from,
    )
    .await;

    let mut trailing = signed.raw.clone();
    trailing.push(0);
    assert!(decode(&trailing).is_err());
    assert!(matches!(decode(&[]), Err(TxError::Undecodable(_))));
    assert!(decode(&signed.raw[..signed.raw.len() - 1]).is_err());
    // Any flipped byte either fails to decode or recovers someone else.
    for i in 0..signed.raw.len() {
        let mut flipped = signed.raw.clone();
        flipped[i] ^= 0x01;
        if let Ok(d) = decode(&flipped) {
            assert!(d.from != from || d.plan != decode(&signed.raw).unwrap().plan);
        }
    }
    // Pre-EIP-155 legacy (v = 27): replayable on every chain.
    let sig = alloy_primitives::Signature::test_signature();
    let pre155 = alloy_consensus::TxLegacy {
        chain_id: None,
        nonce: 0,
        gas_price: 1,
        gas_limit: 21_000,
        to: alloy_primitives::TxKind::Call(to.as_bytes().into()),
        value: alloy_primitives::U256::from(1),
        input: Default::default(),
    };
    let raw = alloy_consensus::TxEnvelope::from(alloy_consensus::SignableTransaction::into_signed(
        pre155.clone(),
        sig,
    ))
    .encoded_2718();
    assert_eq!(decode(&raw), Err(TxError::NoChainId));
    // A contract creation.
    let create = alloy_consensus::TxLegacy {
        chain_id: Some(1),
        to: alloy_primitives::TxKind::Create,
        ..pre155
    };
    let raw = alloy_consensus::TxEnvelope::from(alloy_consensus::SignableTransaction::into_signed(
        create, sig,
    ))
    .encoded_2718();
    assert_eq!(decode(&raw), Err(TxError::ContractCreation));
    // EIP-2930 (type 1): not a type Strongroom signs.
    let type1 = alloy_consensus::TxEip2930 {
        chain_id: 1,
        to: alloy_primitives::TxKind::Call(to.as_bytes().into()),
        ..Default::default()
    };
    let raw = alloy_consensus::TxEnvelope::from(alloy_consensus::SignableTransaction::into_signed(
        type1, sig,
    ))
    .encoded_2718();
    assert_eq!(decode(&raw), Err(TxError::UnsupportedType(1)));
}

#[test]
fn erc20_calldata_round_trips_and_refuses_sloppy_encodings() {
    let to: EthAddress = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        .parse()
        .unwrap();
    let data = calls::erc20_transfer(to, u128::MAX);
    assert_eq!(&data[..4], &[0xa9, 0x05, 0x9c, 0xbb]);
    assert_eq!(data.len(), 68);
    assert_eq!(
        calls::decode_erc20_transfer(&data).unwrap(),
        (to, u128::MAX)
    );

    let mut long = data.clone();
    long.push(0);
    assert!(calls::decode_erc20_transfer(&long).is_err());
    assert!(calls::decode_erc20_transfer(&data[..67]).is_err());
    let mut dirty = data.clone();
    dirty[4] = 1; // a non-zero byte in the address's padding
    assert!(calls::decode_erc20_transfer(&dirty).is_err());
    let mut huge = data.clone();
    huge[36 + 15] = 1; // bit 128 of the amount
    assert_eq!(
        calls::decode_erc20_transfer(&huge),
        Err(CallError::AmountTooLarge)
    );
    let mut other = data.clone();
    other[0] = 0;
    assert_eq!(
        calls::decode_erc20_transfer(&other),
        Err(CallError::NotTokenTransfer)
    );
}

fn selector(sig: &str) -> [u8; 4] {
    alloy_primitives::keccak256(sig.as_bytes())[..4]
        .try_into()
        .unwrap()
}

fn call(sig: &str, words: &[[u8; 32]]) -> Vec<u8> {
    let mut v = selector(sig).to_vec();
    for w in words {
        v.extend_from_slice(w);
    }
    v
}

fn word_addr(a: EthAddress) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(a.as_bytes());
    w
}

fn word(n: u8) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[31] = n;
    w
}

#[test]
fn calls_are_classified_and_only_payments_or_allowlisted_calls_pass() {
    let token: EthAddress = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
        .parse()
        .unwrap();
    let unknown_token: EthAddress = "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"
        .parse()
        .unwrap();
    let bob: EthAddress = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        .parse()
        .unwrap();
    let router: EthAddress = "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"
        .parse()
        .unwrap();
    let mut rules = ContractRules {
        tokens: vec![token],
        known_spenders: vec![router],
        allowlist: vec![],
    };
    let zero = 0u128;
    let c = |rules: &ContractRules, to, data: &[u8]| classify(rules, to, zero, data).unwrap();

    assert_eq!(c(&rules, bob, &[]).permitted().unwrap(), CallClass::Native);
    let pay = calls::erc20_transfer(bob, 5);
    assert_eq!(
        c(&rules, token, &pay).permitted().unwrap(),
        CallClass::TokenTransfer {
            token,
            recipient: bob,
            amount: 5
        }
    );
    // The same calldata to a token nobody configured is just a call.
    assert!(matches!(
        c(&rules, unknown_token, &pay).permitted(),
        Err(CallError::NotAllowlisted { .. })
    ));
    assert_eq!(
        classify(&rules, token, 1, &pay),
        Err(CallError::ValueWithCall)
    );

    let admin = |rules: &ContractRules, data: &[u8]| match c(rules, token, data).class {
        CallClass::Admin { kind, .. } => Some(kind),
        _ => None,
    };
    let approve_unknown = call("approve(address,uint256)", &[word_addr(bob), word(9)]);
    assert_eq!(
        admin(&rules, &approve_unknown),
        Some(AdminKind::ApproveUnknownSpender)
    );
    let approve_known = call("approve(address,uint256)", &[word_addr(router), word(9)]);
    assert!(matches!(
        c(&rules, token, &approve_known).class,
        CallClass::KnownApprove { .. }
    ));
    assert_eq!(
        admin(&rules, &call("upgradeTo(address)", &[word_addr(bob)])),
        Some(AdminKind::Upgrade)
    );
    assert_eq!(
        admin(
            &rules,
            &call("transferOwnership(address)", &[word_addr(bob)])
        ),
        Some(AdminKind::Ownership)
    );
    assert_eq!(
        admin(&rules, &call("changeThreshold(uint256)", &[word(1)])),
        Some(AdminKind::MultisigConfig)
    );
    assert_eq!(
        admin(
            &rules,
            &call(
                "setApprovalForAll(address,bool)",
                &[word_addr(bob), word(1)]
            )
        ),
        Some(AdminKind::ApprovalForAll)
    );
    // A Safe execTransaction whose calldata does not decode counts as delegatecall.
    assert_eq!(
        admin(
            &rules,
            &call(
                "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)",
                &[word(1)]
            )
        ),
        Some(AdminKind::DelegateCall)
    );
    assert!(matches!(
        c(&rules, token, &approve_unknown).permitted(),
        Err(CallError::AdminNotAllowlisted {
            kind: AdminKind::ApproveUnknownSpender,
            ..
        })
    ));
    assert_eq!(
        classify(&rules, token, zero, &[1, 2]),
        Err(CallError::Truncated)
    );

    // An allowlisted (target, selector) passes and keeps its class.
    let deposit = call("deposit()", &[]);
    assert!(c(&rules, router, &deposit).permitted().is_err());
    rules.allowlist.push((router, selector("deposit()")));
    assert!(matches!(
        c(&rules, router, &deposit).permitted().unwrap(),
        CallClass::Other { .. }
    ));
    rules
        .allowlist
        .push((token, selector("upgradeTo(address)")));
    assert!(matches!(
        c(
            &rules,
            token,
            &call("upgradeTo(address)", &[word_addr(bob)])
        )
        .permitted()
        .unwrap(),
        CallClass::Admin {
            kind: AdminKind::Upgrade,
            ..
        }
    ));
}

#[test]
fn fee_caps_refuse_before_signing() {
    let to: EthAddress = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        .parse()
        .unwrap();
    let caps = FeeCaps {
        max_fee_per_gas: 100_000_000_000,
        max_total_fee: 21_000 * 50_000_000_000,
    };
    let ok = TxPlan::native(1, 0, to, 1, eip1559(50_000_000_000, 1));
    assert!(caps.check(&ok).is_ok());
    let per_gas = TxPlan::native(1, 0, to, 1, eip1559(100_000_000_001, 1));
    assert!(matches!(
        caps.check(&per_gas),
        Err(FeeError::PerGasOverCap { .. })
    ));
    let total = TxPlan::native(1, 0, to, 1, eip1559(50_000_000_001, 1));
    assert!(matches!(
        caps.check(&total),
        Err(FeeError::TotalOverCap { .. })
    ));
    let mut huge_gas = ok.clone();
    huge_gas.gas_limit = u64::MAX;
    assert!(caps.check(&huge_gas).is_err());
    let overflow = TxPlan {
        gas_limit: u64::MAX,
        ..TxPlan::native(1, 0, to, 1, eip1559(u128::MAX, 1))
    };
    assert!(
        FeeCaps {
            max_fee_per_gas: u128::MAX,
            max_total_fee: u128::MAX
        }
        .check(&overflow)
        .is_err()
    );
}

#[test]
fn estimates_and_replacement_bumps() {
    let history = FeeHistory {
        base_fee_per_gas: vec![10, 12, 16],
        reward: vec![[1, 2, 9], [1, 4, 7], [3, 3, 3]],
    };
    assert_eq!(
        fees::estimate(&history, Urgency::Slow, 0).unwrap(),
        eip1559(16 + 2 + 1, 1)
    );
    assert_eq!(
        fees::estimate(&history, Urgency::Normal, 0).unwrap(),
        eip1559(32 + 3, 3)
    );
    assert_eq!(
        fees::estimate(&history, Urgency::Fast, 0).unwrap(),
        eip1559(32 + 7, 7)
    );
    assert_eq!(
        fees::estimate(&history, Urgency::Fast, 100).unwrap(),
        eip1559(132, 100)
    );
    let empty = FeeHistory {
        base_fee_per_gas: vec![],
        reward: vec![],
    };
    assert_eq!(
        fees::estimate(&empty, Urgency::Fast, 0),
        Err(FeeError::NoHistory)
    );

    // Nodes demand at least 10 % more on both fields.
    for (max, tip) in [
        (1u128, 0u128),
        (10, 10),
        (1_000_000_007, 999),
        (u128::MAX / 2, 5),
    ] {
        let Fees::Eip1559 {
            max_fee_per_gas: m,
            max_priority_fee_per_gas: t,
        } = fees::bump(eip1559(max, tip), eip1559(0, 0)).unwrap()
        else {
            panic!()
        };
        assert!(m >= max + max / 10 && m > max, "{max} -> {m}");
        assert!(t >= tip + tip / 10 && t > tip, "{tip} -> {t}");
        assert!(m >= t);
    }
    assert_eq!(
        fees::bump(eip1559(10, 1), eip1559(500, 50)).unwrap(),
        eip1559(500, 50),
        "never below the current estimate"
    );
    assert_eq!(
        fees::bump(eip1559(u128::MAX, 1), eip1559(0, 0)),
        Err(FeeError::Overflow)
    );
}
