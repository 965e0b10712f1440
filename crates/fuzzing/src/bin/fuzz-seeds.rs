//! Writes each fuzz target's seed inputs under `fuzz/corpus/<target>/`
//! (`cargo run -p fuzzing --bin fuzz-seeds [dir]`): valid and nearly valid
//! inputs from the fixtures and the official vectors, so the fuzzer starts
//! past each parser's first checks.

use std::path::{Path, PathBuf};

use fuzzing::known;

fn main() -> std::io::Result<()> {
    let root: PathBuf = std::env::args_os().nth(1).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus"),
        PathBuf::from,
    );
    let mut written = 0;
    for (target, seeds) in seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), s)?;
            written += 1;
        }
    }
    println!("{written} seeds under {}", root.display());
    Ok(())
}

fn text(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

fn seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let intent = known::intent().canonical_bytes();
    let psbt = known::signed_psbt().serialize();
    let unsigned = known::btc_plan()
        .psbt()
        .map(|p| p.serialize())
        .unwrap_or_default();
    let eth = known::signed_eth().raw;
    let approval = format!("{}\n{}", known::approver_key(), known::approval_signature());
    let checkpoint = serde_json::to_vec(&known::checkpoint()).unwrap_or_default();
    let mut request = Vec::new();
    for part in [
        "POST",
        "/v1/transfers",
        "a=1&b=2",
        "1700000000000",
        "n0nce-n0nce-n0nce",
        "order-17",
    ] {
        request.extend_from_slice(part.as_bytes());
        request.push(0xff);
    }
    request.extend_from_slice(br#"{"amount":"1.5"}"#);
    vec![
        (
            "amount",
            text(&[
                "0",
                "1.5",
                "0.000000000000000001",
                "340282366920938463463.374607431768211455",
                "01",
                "1.",
                ".5",
                "-1",
                "1e5",
            ]),
        ),
        (
            "btc_address",
            text(&[
                "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
                "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
                "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
                "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
                "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
                "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw",
                "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
            ]),
        ),
        (
            "eth_address",
            text(&[
                "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
                "0x52908400098527886E0F7030069857D2E4169EE7",
                "0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED",
                "0x0000000000000000000000000000000000000000",
            ]),
        ),
        (
            "descriptor",
            text(&[
                "wpkh([d34db33f/84h/0h/0h]xpub6DJ2dNUysrn5Vt36jH2KLBT2i1auw1tTSSomg8PhqNiUtx8QX2SvC9nrHu81fT41fvDUnhMjEzQgXnQjKEu3oaqMSzhSrHMxyyoEAmUHQbY/0/*)#cjjspncu",
                "tr(xpub6DJ2dNUysrn5Vt36jH2KLBT2i1auw1tTSSomg8PhqNiUtx8QX2SvC9nrHu81fT41fvDUnhMjEzQgXnQjKEu3oaqMSzhSrHMxyyoEAmUHQbY/0/*)",
            ]),
        ),
        (
            "policy",
            text(&[
                "[[rules]]\nname = \"all\"\naction = \"allow\"\n",
                "[[groups]]\nname = \"approvers\"\nmembers = [\"user:alice\", \"user:bob\"]\n\n[[rules]]\nname = \"small\"\namount = { at_most = \"1\" }\naction = \"allow\"\n\n[[rules]]\nname = \"large\"\naction = \"require_approval\"\napprovals = { group = \"approvers\", threshold = 2 }\ntime_lock_seconds = 60\n",
                "[[breakers]]\nname = \"drain\"\nasset = \"eip155:1/native\"\nmax = \"10\"\nseconds = 3600\n\n[[rules]]\nname = \"all\"\naction = \"allow\"\n",
                "{\"rules\":[{\"name\":\"all\",\"action\":\"allow\"}]}",
            ]),
        ),
        ("request_message", vec![request]),
        (
            "intent",
            vec![intent.clone(), intent[..intent.len() / 2].to_vec()],
        ),
        ("approval", vec![approval.into_bytes()]),
        ("psbt", vec![psbt, unsigned]),
        ("eth_tx", vec![eth]),
        ("signer_wire", fuzzing::wire::signer_wire_seeds()),
        (
            "envelope",
            vec![{
                let mut v = vec![0, 2];
                v.extend_from_slice(br#"{"suite":"frost-secp256k1-tr","session":"00000000000000000000000000000000","round":"commit","from":2,"to":null,"body":"00","echo":null}"#);
                v
            }],
        ),
        ("checkpoint", vec![checkpoint]),
        ("config", {
            let networks = "[[ethereum]]\nchain_id = 1\nendpoints = [\"https://eth.example.com\", { url = \"http://10.0.0.5:8545\", allow_http = true }]\nconfirmations = 12\nmax_fee_per_gas_wei = \"200000000000\"\nmax_total_fee_wei = \"50000000000000000\"\n[[bitcoin]]\nnetwork = \"regtest\"\nmax_fee_rate_sat_vb = 50\nmax_fee_sat = 20000\nbatch_window_seconds = 60\n";
            let dev = strongroom::config::dev_config(
                std::net::SocketAddr::from(([127, 0, 0, 1], 8200)),
                Some("http://127.0.0.1:8545"),
            );
            vec![
                strongroom::config::EXAMPLE.as_bytes().to_vec(),
                format!("{}{networks}", strongroom::config::EXAMPLE).into_bytes(),
                dev.into_bytes(),
            ]
        }),
        (
            "webhook_url",
            [
                "\0https://hooks.example.com/strongroom?x=1",
                "\0https://[2001:db8::1]:8443/h",
                "\0https://10.0.0.1/h",
                "\0http://hooks.example.com/h",
                "\0https://user:pw@hooks.example.com/",
                "\u{1}http://127.0.0.1:9000/h",
                "\u{1}http://[::1]/h",
                "\0https://0x7f.1/h",
                "\0https://[64:ff9b::a9fe:a9fe]/",
            ]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect(),
        ),
        ("backup_manifest", {
            let (bytes, sig) = known::signed_backup_manifest();
            let mut head = vec![0];
            head.extend(audit::backup::head_bytes(&bytes, &sig).unwrap_or_default());
            head.extend_from_slice(b"abc");
            let mut alone = vec![1];
            alone.extend_from_slice(&bytes);
            vec![head, alone]
        }),
    ]
}
