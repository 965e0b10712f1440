//! Signatures per second through the [`Signer`] seam next to the raw library
//! in the same run. `cargo bench -p keys --bench seam`.

#![allow(clippy::unwrap_used)] // A benchmark: a panic is the failure report.

use std::time::Instant;

use keys::{Algorithm, SignRequest, Signer, SoftwareSigner};

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: u32 = if quick { 100 } else { 20_000 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    // Raw k256: the same key, digests and low-S normalisation.
    let sk = k256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
    let t = Instant::now();
    for i in 0..n {
        let mut d = [0u8; 32];
        d[..4].copy_from_slice(&i.to_be_bytes());
        let (sig, _) = sk.sign_prehash_recoverable(&d).unwrap();
        std::hint::black_box(sig.normalize_s());
    }
    let raw = f64::from(n) / t.elapsed().as_secs_f64();

    let signer = SoftwareSigner::new();
    let key = rt
        .block_on(signer.generate(Algorithm::EcdsaSecp256k1))
        .unwrap();
    let t = Instant::now();
    for i in 0..n {
        let mut d = [0u8; 32];
        d[..4].copy_from_slice(&i.to_be_bytes());
        std::hint::black_box(
            rt.block_on(signer.sign(&key, SignRequest::EcdsaDigest(d)))
                .unwrap(),
        );
    }
    let seam = f64::from(n) / t.elapsed().as_secs_f64();
    println!("ECDSA secp256k1, {n} signatures");
    println!("raw k256 sign_prehash_recoverable  {raw:>9.0}/s");
    println!(
        "SoftwareSigner through the seam    {seam:>9.0}/s  ({:.1} % of raw)",
        seam / raw * 100.0
    );
}
