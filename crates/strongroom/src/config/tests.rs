//! The configuration's rules, case by case: what parses, and the error
//! (its key and why) for what does not.

use super::EXAMPLE as GOOD;
use super::*;

fn check(text: &str) -> String {
    match Config::parse(text, Path::new("/etc/strongroom")) {
        Ok(c) => format!("ok: {:?} {:?}", c.listen, c.database),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn good_config_resolves_paths() {
    let c = Config::parse(GOOD, Path::new("/etc/strongroom")).unwrap();
    assert_eq!(
        c.database,
        Database::Sqlite {
            path: "/etc/strongroom/data/strongroom.db".into()
        }
    );
    assert_eq!(
        c.audit_key,
        AuditKey::File("/etc/strongroom/audit.key".into())
    );
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.max_body_bytes, 1024 * 1024);
    assert!(
        Config::parse(
            &dev_config("127.0.0.1:1".parse().unwrap(), None),
            Path::new(".")
        )
        .is_ok()
    );
    let with_eth = Config::parse(
        &dev_config(
            "127.0.0.1:1".parse().unwrap(),
            Some("http://127.0.0.1:8545"),
        ),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(with_eth.ethereum.len(), 1);
    assert_eq!(with_eth.ethereum[0].network.chain_id, 31337);
}

#[test]
fn errors_name_the_key() {
    let cases = [
        GOOD.replace("listen = ", "lisen = "),
        GOOD.replace("\"127.0.0.1:8200\"", "\"localhost\""),
        GOOD.replace("\"127.0.0.1:8200\"", "8200"),
        GOOD.replace(
            "listen = \"127.0.0.1:8200\"",
            "listen = \"127.0.0.1:8200\"\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]",
        ),
        GOOD.replace(
            "checkpoint_every_records = 100",
            "checkpoint_every_records = 0",
        ),
        GOOD.replace(
            "checkpoint_every_records = 100",
            "checkpoint_every_records = -1",
        ),
        GOOD.replace("checkpoint_every_seconds = 60\n", ""),
        GOOD.replace("sqlite://data/strongroom.db", "postgres://sr:hunter2@db/sr"),
        GOOD.replace(
            "sqlite://data/strongroom.db",
            "postgres://sr@db/sr?password=hunter2",
        ),
        GOOD.replace("sqlite://data/strongroom.db", "mysql://db"),
        GOOD.replace("[audit]", "[audit]\nextra = 1"),
        GOOD.replace(
            "url = \"sqlite://data/strongroom.db\"",
            "url = \"sqlite://x.db\"\npassword_env = \"PW\"",
        ),
        format!("{GOOD}\n[log]\nformat = \"xml\""),
        format!("{GOOD}\n[log]\nlevel = \"[\""),
        format!("{GOOD}\n[unknown]\n"),
        GOOD.replace(
            "signing_key_file = \"audit.key\"",
            "hsm_key = \"pkcs11:00\"",
        ),
        GOOD.replace(
            "signing_key_file = \"audit.key\"",
            "signing_key_file = \"a\"\nhsm_key = \"pkcs11:00\"",
        ),
        format!(
            "{GOOD}\n[hsm]\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"t\"\n"
        ),
        format!("{GOOD}\n[hsm]\nmodule = \"m.so\"\ntoken_label = \"t\"\npin = \"1234\"\n"),
        "[server\n".to_owned(),
        format!(
            "{GOOD}\n[console]\nrp_id = \"127.0.0.1\"\norigins = [\"http://127.0.0.1:8200\"]\n"
        ),
        format!(
            "{GOOD}\n[console]\nrp_id = \"custody.example\"\norigins = [\"http://custody.example\"]\n"
        ),
        format!(
            "{GOOD}\n[console]\nrp_id = \"custody.example\"\norigins = [\"https://evil.example\"]\n"
        ),
        format!("{GOOD}\n[console]\nrp_id = \"custody.example\"\norigins = []\n"),
    ];
    let eth = |body: &str| format!("{GOOD}\n[[ethereum]]\n{body}");
    let btc = |body: &str| format!("{GOOD}\n[[bitcoin]]\n{body}");
    const BTC: &str = "network = \"regtest\"\nmax_fee_rate_sat_vb = 50\nmax_fee_sat = 20000\n";
    const NET: &str = "chain_id = 1\nendpoints = [\"http://127.0.0.1:8545\"]\nconfirmations = 12\nmax_fee_per_gas_wei = \"200000000000\"\nmax_total_fee_wei = \"50000000000000000\"\n";
    const FP: &str = "abababababababababababababababababababababababababababababababab";
    let thr = |t: u16, n: u16, fp: &str| {
        let mut c = format!("{GOOD}\n[threshold]\nidentity_dir = \"signers\"\nthreshold = {t}\n");
        for i in 1..=n {
            c.push_str(&format!(
                "[[threshold.signers]]\nindex = {i}\naddr = \"127.0.0.1:{}\"\nfingerprint = \"{fp}\"\n",
                9000 + i
            ));
        }
        c
    };
    let cases: Vec<String> = cases
        .into_iter()
        .chain([
            eth(NET),
            eth(&NET.replace("\"200000000000\"", "200000000000")),
            eth(&NET.replace("\"200000000000\"", "\"2e11\"")),
            eth(&NET.replace("\"200000000000\"", "\"200000000000.5\"")),
            eth(&NET.replace("http://127.0.0.1:8545", "http://mainnet.example")),
            eth(&NET.replace("endpoints = [\"http://127.0.0.1:8545\"]", "endpoints = []")),
            eth(&NET.replace("chain_id = 1", "chain_id = 0")),
            eth(&NET.replace("confirmations = 12", "confirmations = 0")),
            eth(&format!("{NET}bump_after_blocks = 0\n")),
            eth(&format!("{NET}[[ethereum.tokens]]\nsymbol = \"USDC\"\ncontract = \"0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48\"\ndecimals = 6\nmax_gas = 100000\n")),
            eth(&format!("{NET}[[ethereum.tokens]]\nsymbol = \"USDC\"\ncontract = \"0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48\"\ndecimals = 6\nmax_gas = 100000\n")),
            eth(&format!("{NET}[[ethereum.tokens]]\nsymbol = \"USDC\"\ncontract = \"0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48\"\ndecimals = 6\nmax_gas = 1\n")),
            format!("{}\n[[ethereum]]\n{NET}", eth(NET)),
            btc(BTC),
            btc(&BTC.replace("regtest", "regtest2")),
            btc(&BTC.replace("max_fee_sat = 20000", "max_fee_sat = 0")),
            btc(&format!("{BTC}fee_rate_sat_vb = 60\n")),
            btc(&format!("{BTC}batch_max_payouts = 0\n")),
            btc(&format!("{BTC}[[bitcoin.endpoints]]\nkind = \"electrum\"\nurl = \"http://127.0.0.1:3000\"\n")),
            btc(&format!("{BTC}[[bitcoin.endpoints]]\nkind = \"core\"\nurl = \"http://u:p@127.0.0.1:8332\"\n")),
            btc(&format!("{BTC}[[bitcoin.endpoints]]\nkind = \"esplora\"\nurl = \"http://10.1.1.1:3000\"\n")),
            format!("{GOOD}\n[tls]\nca_file = \"missing.pem\"\n"),
            format!("{}\n[[bitcoin]]\n{BTC}", btc(BTC)),
            thr(2, 3, FP),
            thr(1, 3, FP),
            thr(2, 3, "not-a-fingerprint"),
            thr(2, 3, FP).replace("index = 3", "index = 2"),
            thr(2, 3, FP).replace("threshold = 2", "threshold = 2\ntimeout_seconds = 0"),
            format!("\"\" = 115\n{GOOD}"),
        ])
        .collect();
    let out: Vec<String> = cases.iter().map(|c| check(c)).collect();
    expect_test::expect![[r#"
        error: server.lisen: unknown field `lisen`, expected one of `listen`, `max_body_bytes`, `request_timeout_seconds`, `trusted_proxies`, `tls_cert_file`, `tls_key_file`, `tls_client_ca_file` (line 3, column 1)
        error: server.listen: "localhost" is not an address:port such as 127.0.0.1:8200
        error: server.listen: invalid type: integer `8200`, expected a string (line 3, column 10)
        error: server.trusted_proxies[1]: prefix length 33 is longer than 32
        error: audit.checkpoint_every_records: must be at least 1
        error: audit.checkpoint_every_records: invalid value: integer `-1`, expected u64 (line 9, column 28)
        error: audit: missing field `checkpoint_every_seconds` (line 6, column 1)
        error: database.url: must not contain a password; use database.password_file or database.password_env
        error: database.url: must not contain a password; use database.password_file or database.password_env
        error: database.url: expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE
        error: audit.extra: unknown field `extra`, expected one of `signing_key_file`, `hsm_key`, `checkpoint_file`, `checkpoint_every_records`, `checkpoint_every_seconds` (line 7, column 1)
        error: database.password_env: applies to PostgreSQL only
        error: log.format: unknown variant `xml`, expected `json` or `text` (line 16, column 10)
        error: log.level: "[" is not a log filter such as info or strongroom=debug
        error: unknown: unknown field `unknown`, expected one of `server`, `database`, `audit`, `log`, `hsm`, `threshold`, `governance`, `ethereum`, `bitcoin`, `webhooks`, `tls`, `backup`, `reconciliation`, `console`, `operations` (line 15, column 2)
        error: audit.hsm_key: needs an [hsm] section
        error: audit.hsm_key: set either signing_key_file or hsm_key, not both
        error: hsm.pin_file: the PIN comes from pin_file or pin_env, never from the configuration
        error: hsm.pin: unknown field `pin`, expected one of `module`, `token_label`, `pin_file`, `pin_env`, `sessions` (line 18, column 1)
        error: (syntax): unclosed table, expected `]` (line 1, column 8)
        error: console.rp_id: rp_id "127.0.0.1": a domain name (passkeys are not scoped to IP addresses)
        error: console.origins: origin "http://custody.example": https://host[:port] on custody.example, lowercase, without a default port or a path (http only for localhost)
        error: console.origins: origin "https://evil.example": https://host[:port] on custody.example, lowercase, without a default port or a path (http only for localhost)
        error: console.origins: origins: at least one (https://host[:port])
        ok: 127.0.0.1:8200 Sqlite { path: "/etc/strongroom/data/strongroom.db" }
        error: ethereum[0].max_fee_per_gas_wei: invalid type: integer `200000000000`, expected a string (line 19, column 23)
        error: ethereum[0].max_fee_per_gas_wei: must be a whole number of wei, in digits
        error: ethereum[0].max_fee_per_gas_wei: must be a whole number of wei, in digits
        error: ethereum[0].endpoints[0]: http:// to mainnet.example would travel in clear: use https:// (`allow_http = true` on the endpoint allows it)
        error: ethereum[0].endpoints: at least one node URL
        error: ethereum[0].chain_id: must not be 0
        error: ethereum[0].confirmations: must be between 1 and 1000
        error: ethereum[0].bump_after_blocks: must be between 1 and 1000
        error: ethereum[0].tokens[0].contract: `0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48` carries no checksum (all one case); write it checksummed or whitelist it exactly
        ok: 127.0.0.1:8200 Sqlite { path: "/etc/strongroom/data/strongroom.db" }
        error: ethereum[0].tokens[0].max_gas: must be between 21000 and 10000000
        error: ethereum[1].chain_id: configured twice
        ok: 127.0.0.1:8200 Sqlite { path: "/etc/strongroom/data/strongroom.db" }
        error: bitcoin[0].network: mainnet, testnet, signet or regtest
        error: bitcoin[0].max_fee_sat: fee caps must be above 0
        error: bitcoin[0].fee_rate_sat_vb: must be between 1 and max_fee_rate_sat_vb
        error: bitcoin[0].batch_max_payouts: must be between 1 and 1000
        error: bitcoin[0].endpoints[0].kind: core or esplora
        error: bitcoin[0].endpoints[0].url: a URL without credentials (they go in auth_file)
        error: bitcoin[0].endpoints[0].url: http:// to 10.1.1.1 would travel in clear: use https:// (`allow_http = true` on the endpoint allows it)
        error: tls.ca_file: /etc/strongroom/missing.pem: I/O error: No such file or directory (os error 2)
        error: bitcoin[1].network: configured twice
        ok: 127.0.0.1:8200 Sqlite { path: "/etc/strongroom/data/strongroom.db" }
        error: threshold.threshold: more than half of the 3 signers, and at most all of them
        error: threshold.signers[0].fingerprint: identity: "not-a-fingerprint" is not a 64-hex-digit fingerprint
        error: threshold.signers[2].index: used twice
        error: threshold.timeout_seconds: must be between 1 and 600
        error: "" (an empty key): unknown field ``, expected one of `server`, `database`, `audit`, `log`, `hsm`, `threshold`, `governance`, `ethereum`, `bitcoin`, `webhooks`, `tls`, `backup`, `reconciliation`, `console`, `operations` (line 1, column 1)"#]].assert_eq(&out.join("\n"));
}
