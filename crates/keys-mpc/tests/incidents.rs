//! Threshold-signing incidents replayed as tests. TSSHOCK (Verichains,
//! 2023): implementations of GG18/GG20/CGGMP ran their zero-knowledge
//! proofs with too few iterations or weak moduli, and a single malicious
//! party extracted the whole key. The parameters this build runs are
//! pinned here to the values of the protocols' specifications, so that a
//! dependency update or a local "optimisation" that weakens them fails the
//! suite.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use cggmp24::security_level::{KeygenSecurityLevel, M, SecurityLevel};
use frost_core::Ciphersuite;
use keys_mpc::ecdsa::{Level, primes_from};

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
