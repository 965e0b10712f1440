//! `strongroom eth`: Ethereum sending addresses and their nonces, from the
//! command line. Neither needs the keystore open: registering reads a key's
//! public half, the report reads the database and the node.

use anyhow::Context;
use chain_eth::EthAddress;
use domain::KeyId;
use service::ServiceError;

use crate::Failure;
use crate::config::{Config, ConfigError};
use crate::keyctl::console_actor;
use crate::serve::{build_service, connect_ethereum, runtime};

fn usage(key: &str, message: impl Into<String>) -> Failure {
    Failure::Config(ConfigError {
        key: key.into(),
        message: message.into(),
    })
}

fn failure(e: ServiceError) -> Failure {
    match e {
        ServiceError::Eth(service::eth::EthError::NetworkNotConfigured(id)) => usage(
            "--chain-id",
            format!("eip155:{id} has no [[ethereum]] section in the configuration"),
        ),
        other => Failure::Runtime(anyhow::Error::new(other)),
    }
}

/// `strongroom eth register-sender`: the key's address sends on the
/// network; with `--wallet NAME`, in a new wallet of that name (grants and
/// policies reach it through the wallet).
pub(crate) fn register_sender(
    c: Config,
    key: &str,
    chain_id: u64,
    wallet: Option<&str>,
) -> Result<(), Failure> {
    let key: KeyId = key
        .parse()
        .map_err(|e: domain::IdError| usage("--key", e.to_string()))?;
    runtime()?.block_on(async move {
        let (svc, store) = build_service(&c).await?;
        connect_ethereum(&svc, &c).await?;
        let r = async {
            let row = svc
                .register_eth_sender(&console_actor(), key, chain_id)
                .await
                .map_err(failure)?;
            let address: EthAddress = row.address.parse().context("the stored address")?;
            let wallet = match wallet {
                Some(name) => {
                    let w = svc
                        .console_create_wallet(&console_actor(), name)
                        .await
                        .map_err(failure)?;
                    svc.console_assign_eth_sender(&console_actor(), chain_id, address, w.id)
                        .await
                        .map_err(failure)?;
                    Some(w.id)
                }
                None => None,
            };
            Ok::<_, Failure>((row, address, wallet))
        }
        .await;
        store.close().await;
        let (row, address, wallet) = r?;
        println!("address {address}");
        if let Some(w) = wallet {
            println!("wallet {w}");
        }
        println!("network {} first nonce {}", row.network, row.first_nonce);
        Ok(())
    })
}

/// `strongroom eth nonces`: the chain's nonces next to those handed out.
pub(crate) fn nonces(c: Config, chain_id: u64, address: &str) -> Result<(), Failure> {
    let address: EthAddress = address
        .parse()
        .map_err(|e: chain_eth::AddressError| usage("--address", e.to_string()))?;
    runtime()?.block_on(async move {
        let (svc, store) = build_service(&c).await?;
        connect_ethereum(&svc, &c).await?;
        let report = svc.eth_nonce_report(chain_id, address).await.map_err(failure);
        store.close().await;
        let r = report?;
        println!("chain latest {} pending {}", r.chain_latest, r.chain_pending);
        println!("next to hand out {}", r.next_allocated);
        println!("planned but unsigned {:?}", r.unsigned);
        println!("gaps (unknown to the node, later nonces waiting) {:?}", r.gaps);
        if r.foreign_use {
            println!("WARNING: the chain has nonces Strongroom never handed out: this key signs elsewhere");
        }
        Ok(())
    })
}
