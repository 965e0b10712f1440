//! HSM signatures through the seam next to a raw `C_Sign` loop, and with
//! 1, 2 and 4 sessions signing in parallel. `cargo bench -p keys-pkcs11 --bench hsm`
//! (SoftHSM2 must be installed).

#![allow(clippy::unwrap_used)] // A benchmark: a panic is the failure report.

use std::time::Instant;

use keys::{Algorithm, KeyRef, SignRequest, Signer};
use keys_pkcs11::Pkcs11Signer;
use keys_pkcs11::testing::{SoftHsm, USER_PIN};
use zeroize::Zeroizing;

fn digest(i: u32) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..4].copy_from_slice(&i.to_be_bytes());
    d
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: u32 = if quick { 40 } else { 4_000 };
    let hsm = SoftHsm::new("bench");
    let signer = Pkcs11Signer::open(
        &SoftHsm::module(),
        &hsm.label,
        &Zeroizing::new(USER_PIN.to_owned()),
        4,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let key = rt
        .block_on(signer.generate(Algorithm::EcdsaSecp256k1))
        .unwrap();

    let t = Instant::now();
    for i in 0..n {
        std::hint::black_box(signer.raw_ecdsa(&key, &digest(i)).unwrap());
    }
    let raw = f64::from(n) / t.elapsed().as_secs_f64();

    let t = Instant::now();
    for i in 0..n {
        std::hint::black_box(
            rt.block_on(signer.sign(&key, SignRequest::EcdsaDigest(digest(i))))
                .unwrap(),
        );
    }
    let seam = f64::from(n) / t.elapsed().as_secs_f64();
    println!("SoftHSM2 ECDSA secp256k1, {n} signatures");
    println!("raw C_Sign (CKM_ECDSA), 1 session          {raw:>8.0}/s");
    println!(
        "through the seam (+ low-S, recovery id)    {seam:>8.0}/s  ({:.1} % of raw)",
        seam / raw * 100.0
    );

    for threads in [1u32, 2, 4] {
        let rate = callers(&signer, &key, n, threads);
        println!("through the seam, {threads} parallel sessions       {rate:>8.0}/s");
    }

    // One session, two callers (pipelined): while one caller finds its
    // signature's recovery id, its session back in the pool, the other's
    // `C_Sign` may run on that session. Whether that hides the recovery is
    // what this measures (on SoftHSM it does not: the hand-off between
    // threads costs more; docs/BENCHMARKS.md). Last, because it opens a
    // second context on the module and dropping either finalises the
    // module for both.
    let single = Pkcs11Signer::open(
        &SoftHsm::module(),
        &hsm.label,
        &Zeroizing::new(USER_PIN.to_owned()),
        1,
    )
    .unwrap();
    let pipelined = callers(&single, &key, n, 2);
    println!(
        "through the seam, 1 session, 2 callers      {pipelined:>8.0}/s  ({:.1} % of raw)",
        pipelined / raw * 100.0
    );
}

/// Signatures per second with `threads` callers sharing `n` signatures.
fn callers(signer: &Pkcs11Signer, key: &KeyRef, n: u32, threads: u32) -> f64 {
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads {
            s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                for i in (k..n).step_by(threads as usize) {
                    rt.block_on(signer.sign(key, SignRequest::EcdsaDigest(digest(i))))
                        .unwrap();
                }
            });
        }
    });
    f64::from(n) / t.elapsed().as_secs_f64()
}
