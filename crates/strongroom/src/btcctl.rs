//! `strongroom btc`: Bitcoin from the console (the server's own files).
//! `record-deposit` states that an output pays one of a wallet's keys,
//! where no node watches the network for them: it is audited, and a
//! payout spending an output that does not exist is simply refused by the
//! network (nothing is signed that spends more than the outputs recorded).

use domain::{BitcoinNetwork, KeyId, Network};
use service::ServiceError;

use crate::Failure;
use crate::config::{Config, ConfigError};
use crate::keyctl::console_actor;
use crate::serve::{build_service, connect_bitcoin, runtime};

fn usage(key: &str, message: impl Into<String>) -> Failure {
    Failure::Config(ConfigError {
        key: key.into(),
        message: message.into(),
    })
}

fn failure(e: ServiceError) -> Failure {
    match e {
        ServiceError::Btc(service::btc::BtcServiceError::NetworkNotConfigured(n)) => usage(
            "--network",
            format!("{n} has no [[bitcoin]] section in the configuration"),
        ),
        other => Failure::Runtime(anyhow::Error::new(other)),
    }
}

/// What a recorded output pays.
#[derive(Debug)]
pub(crate) enum PaidTo {
    /// A single key's account.
    Key(String),
    /// An address Strongroom issued.
    Address(String),
}

/// `strongroom btc record-deposit`.
pub(crate) fn record_deposit(
    c: Config,
    network: &str,
    to: &PaidTo,
    txid: &str,
    vout: u32,
    sat: u64,
) -> Result<(), Failure> {
    let network: BitcoinNetwork = match format!("bitcoin:{network}").parse::<Network>() {
        Ok(Network::Bitcoin(n)) => n,
        _ => return Err(usage("--network", "mainnet, testnet, signet or regtest")),
    };
    let key: Option<KeyId> = match to {
        PaidTo::Key(k) => Some(
            k.parse()
                .map_err(|e: domain::IdError| usage("--key", e.to_string()))?,
        ),
        PaidTo::Address(_) => None,
    };
    if sat == 0 {
        return Err(usage("--sat", "must be above 0"));
    }
    runtime()?.block_on(async move {
        let (svc, store) = build_service(&c).await?;
        connect_bitcoin(&svc, &c).await?;
        let r = match (key, to) {
            (Some(key), _) => {
                svc.btc_record_deposit(&console_actor(), network, key, txid, vout, sat)
                    .await
            }
            (None, PaidTo::Address(a)) => {
                svc.btc_record_deposit_to(&console_actor(), network, a, txid, vout, sat)
                    .await
            }
            (None, PaidTo::Key(_)) => Err(ServiceError::Invalid("--key or --address".into())),
        }
        .map_err(|e| match e {
            ServiceError::Invalid(m) => usage("--txid", m),
            other => failure(other),
        });
        store.close().await;
        let row = r?;
        match row.wallet {
            Some(w) => println!(
                "recorded {}:{} ({sat} sat) for wallet {w}",
                row.txid, row.vout
            ),
            None => println!(
                "recorded {}:{} ({sat} sat), outside any wallet",
                row.txid, row.vout
            ),
        }
        Ok(())
    })
}
