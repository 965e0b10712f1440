//! `strongroom cold`: the cold tier's round trip from the console, through
//! the API — a transfer's transaction handed out as a PSBT for an offline
//! signer (`strongroom offline sign`, any BIP-174 signer), and the signed
//! PSBT brought back.

use std::path::Path;

use anyhow::Context;

use crate::Failure;
use crate::govern::api_json;

/// `cold export`: shows what the transaction spends, pays and costs, and
/// writes its PSBT (base64) or unsigned Ethereum transaction (hex) to
/// `out`, or prints it.
pub(crate) fn export(
    addr: &str,
    key_file: &Path,
    transfer: &str,
    out: Option<&Path>,
) -> Result<(), Failure> {
    let id: domain::TransferId = transfer.parse().map_err(|e: domain::IdError| {
        Failure::Config(crate::config::ConfigError {
            key: "--transfer".into(),
            message: e.to_string(),
        })
    })?;
    let key = crate::apikey::KeyFile::load(key_file)?;
    let u = api_json(
        addr,
        &key,
        "GET",
        &format!("/v1/transfers/{id}/unsigned"),
        None,
    )?;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_owned();
    let (text, what) = if let Some(tx) = u["transaction"].as_str() {
        // Ethereum: what the sender's key signs, to compare on the signer.
        let e = &u["ethereum"];
        eprintln!(
            "Ethereum transaction on {} from {} (nonce {})",
            s(&u["network"]),
            s(&e["from"]),
            e["nonce"]
        );
        eprintln!(
            "  pays {} {} (base units) to {}",
            s(&e["amount"]),
            s(&e["asset"]),
            s(&e["recipient"])
        );
        eprintln!(
            "  calls {} with {} wei and data {}",
            s(&e["to"]),
            s(&e["value"]),
            s(&e["data"])
        );
        eprintln!(
            "  gas limit {}, at most {} wei per gas (tip {}); signing hash {}",
            e["gas_limit"],
            s(&e["max_fee_per_gas"]),
            s(&e["max_priority_fee_per_gas"]),
            s(&u["signing_hash"])
        );
        (tx.to_owned(), "unsigned transaction")
    } else {
        eprintln!("transaction {} on {}", s(&u["txid"]), s(&u["network"]));
        for i in u["inputs"].as_array().into_iter().flatten() {
            eprintln!(
                "  spends {}  {} BTC",
                s(&i["outpoint"]),
                s(&i["value_decimal"])
            );
        }
        for o in u["outputs"].as_array().into_iter().flatten() {
            let what = if o["change"].as_bool() == Some(true) {
                "change"
            } else {
                "pays"
            };
            eprintln!(
                "  {what} {}  {} BTC",
                s(&o["address"]),
                s(&o["value_decimal"])
            );
        }
        eprintln!("  fee {} BTC", s(&u["fee_decimal"]));
        let psbt = u["psbt"].as_str().ok_or_else(|| {
            Failure::Runtime(anyhow::anyhow!("the server's answer lacks the PSBT"))
        })?;
        (psbt.to_owned(), "PSBT")
    };
    eprintln!(
        "  lapses unless signed by {} (ms since the epoch)",
        u["expires_at_ms"]
    );
    match out {
        Some(path) => {
            std::fs::write(path, format!("{text}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("{what} written to {}", path.display());
        }
        None => println!("{text}"),
    }
    Ok(())
}

/// `cold import`: sends a PSBT signed offline (base64, hex, or BIP-174
/// binary), or a signed Ethereum transaction (hex), back for its transfer.
pub(crate) fn import(
    addr: &str,
    key_file: &Path,
    transfer: &str,
    file: &Path,
) -> Result<(), Failure> {
    let id: domain::TransferId = transfer.parse().map_err(|e: domain::IdError| {
        Failure::Config(crate::config::ConfigError {
            key: "--transfer".into(),
            message: e.to_string(),
        })
    })?;
    let key = crate::apikey::KeyFile::load(key_file)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let text = if bytes.starts_with(b"psbt\xff") {
        service::cold::encode_psbt(&bytes)
    } else {
        String::from_utf8(bytes)
            .map_err(|_| Failure::Runtime(anyhow::anyhow!("not a PSBT (base64, hex or binary)")))?
            .trim()
            .to_owned()
    };
    // A PSBT (binary, base64, or hex of `psbt\xff…`), else an Ethereum
    // transaction in hex.
    let eth = text.starts_with("0x")
        || (text.bytes().all(|b| b.is_ascii_hexdigit()) && !text.starts_with("70736274ff"));
    let body = if eth {
        serde_json::json!({ "transaction": text })
    } else {
        serde_json::json!({ "psbt": text })
    }
    .to_string();
    let r = api_json(
        addr,
        &key,
        "POST",
        &format!("/v1/transfers/{id}/signed"),
        Some(&body),
    )?;
    println!(
        "accepted: transaction {} ({})",
        r["txid"].as_str().unwrap_or("?"),
        r["state"].as_str().unwrap_or("?")
    );
    Ok(())
}
