//! Threshold-signing incidents replayed as tests.
//!
//! TSSHOCK (Verichains, 2023): implementations of GG18/GG20/CGGMP ran their
//! zero-knowledge proofs with too few iterations or weak moduli, and a
//! single malicious party extracted the whole key. The parameters this
//! build runs are pinned here to the values of the protocols'
//! specifications, so that a dependency update or a local "optimisation"
//! that weakens them fails the suite.
//!
//! BitForge (Fireblocks, 2023): a party published a Paillier modulus with
//! small factors in its auxiliary information, and implementations that
//! skipped the proofs of its well-formedness leaked every other party's
//! share. Here a signer node sends a modulus with a factor 3 (a test
//! fault), and the others refuse the ceremony and blame it. The fault
//! changes the modulus after the node committed to it, so the honest nodes
//! catch it at the decommitment; the proofs of a committed modulus (Π^mod,
//! Π^fac, inside cggmp24) are not reached by it.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use cggmp24::security_level::{KeygenSecurityLevel, M, SecurityLevel};
use frost_core::Ciphersuite;
use keys_mpc::cluster::ClusterError;
use keys_mpc::ecdsa::{Level, primes_from};
use keys_mpc::node::Fault;
use keys_mpc::testing::{Loopback, policy};

/// CGGMP24 (Canetti, Gennaro, Goldfeder, Makriyannis, Peled), at 128-bit
/// security over secp256k1: κ = 256; ℓ = κ, ℓ' = 5κ, ε = 2κ; Paillier
/// moduli of at least 3072 bits from 1536-bit safe primes; and m = 128
/// repetitions of the modulus and ring-Pedersen proofs (Π^mod, Π^prm),
/// each with soundness error at most 1/2, so 2^-128 in all — TSSHOCK's
/// "c-guess" attack needed implementations that ran far fewer.
#[test]
fn tsshock_2023_the_threshold_protocols_run_at_their_specified_security() {
    assert_eq!(<Level as KeygenSecurityLevel>::KAPPA_BITS, 256, "κ");
    assert_eq!(<Level as SecurityLevel>::ELL, 256, "ℓ = κ");
    assert_eq!(<Level as SecurityLevel>::ELL_PRIME, 5 * 256, "ℓ' = 5κ");
    assert_eq!(<Level as SecurityLevel>::EPSILON, 2 * 256, "ε = 2κ");
    assert_eq!(
        <Level as SecurityLevel>::RSA_PRIME_BITLEN,
        1536,
        "safe primes"
    );
    // At least 3072 bits: the product of two 1536-bit primes may have 3071.
    assert_eq!(
        <Level as SecurityLevel>::RSA_PUBKEY_BITLEN,
        3071,
        "Paillier moduli"
    );
    assert_eq!(M, 128, "repetitions of Π^mod and Π^prm");
    // Primes below the level are refused before any ceremony starts.
    let small = r#"{"radix":16,"value":"ffffffffffffffc5"}"#.to_owned();
    assert_eq!(
        primes_from(&[small.clone(), small.clone(), small.clone(), small]).err(),
        Some("a kept prime is too small".to_owned())
    );
    // FROST has no tunable parameters: the ciphersuites are RFC 9591's
    // (and BIP-340's for Taproot), pinned by their context strings.
    assert_eq!(
        <frost_secp256k1_tr::Secp256K1Sha256TR as Ciphersuite>::ID,
        "FROST-secp256k1-SHA256-TR-v1"
    );
    assert_eq!(
        <frost_ed25519::Ed25519Sha512 as Ciphersuite>::ID,
        "FROST-ED25519-SHA512-v1"
    );
}

/// BitForge: node 2 publishes its modulus times 3 in the auxiliary
/// information ceremony. The honest nodes refuse it (it is not the modulus
/// node 2 committed to), the ceremony ends with node 2 blamed by name, and
/// no node keeps auxiliary information (so no ECDSA key can be made on
/// what it would have given).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitforge_2023_a_modulus_with_small_factors_is_refused_and_its_sender_blamed() {
    let l = Loopback::start_with(&[1, 2, 3], policy(false), |i, n| {
        if i == 2 {
            n.with_fault(Fault::BadAuxModulus)
        } else {
            n
        }
    })
    .await;
    let refused = l.cluster.ecdsa_aux().await;
    let blamed: Vec<u16> = match &refused {
        Err(ClusterError::Refused { culprits, .. }) => culprits.clone(),
        other => panic!("the ceremony was not refused with a culprit: {other:?}"),
    };
    assert_eq!(blamed, [2], "{refused:?}");
    for n in &l.nodes {
        assert!(
            !n.ecdsa_status().unwrap().0,
            "no auxiliary information kept"
        );
    }
    // Each honest node wrote its refusal, naming the culprit.
    let logs: Vec<String> = [1, 3]
        .iter()
        .map(|i| {
            std::fs::read_to_string(l.dir.path().join(format!("n{i}/audit.log")))
                .unwrap_or_default()
        })
        .collect();
    assert!(
        logs.iter()
            .all(|log| log.contains("mpc.request.refused") && log.contains("blaming [party 2]")),
        "{logs:?}"
    );
}
