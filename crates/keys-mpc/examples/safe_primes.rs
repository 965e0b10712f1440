//! Finds safe primes for `N` signer nodes' CGGMP auxiliary information and
//! prints them as JSON (one array of four per node): how the primes kept
//! as test data (`tests/data/cggmp-primes.json`) were made. Never use
//! published primes for real keys: a node's Paillier secret is made of them.
//!
//! `cargo run -p keys-mpc --example safe_primes -- 3 > primes.json`

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let threads: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(|| {
                let mut kept = Vec::new();
                keys_mpc::ecdsa::find_primes(Vec::new(), |have| {
                    kept = have.to_vec();
                    Ok(())
                })
                .expect("safe primes");
                kept
            })
        })
        .collect();
    let all: Vec<Vec<String>> = threads
        .into_iter()
        .map(|t| t.join().expect("a search thread"))
        .collect();
    println!("{}", serde_json::to_string_pretty(&all).expect("JSON"));
}
