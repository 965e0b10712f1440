//! Key rotation with a sweep: the successor key made, the wallet's accounts
//! re-pointed to it, and every balance under the old key moved to the
//! successor's address by sweep transfers through the ordinary pipeline
//! (policy — a rule may allow `sweep` transactions alone —, approvals,
//! queue, confirmations).
//!
//! The old key is deactivated (or stays compromised) and from then on
//! signs only sweeps to its successor (the vault's `Permit::Sweep`), so a
//! leaked key cannot be made to sign anything else through Strongroom,
//! while the funds it still holds can leave to safety.
//!
//! Ethereum: per network, the successor registered as the wallet's sender
//! (with its chain nonce), the old sender retired (it names the successor's
//! address), then one sweep per configured token it holds and one of its
//! ether, less what their fees may cost at the network's cap (a dust
//! remainder stays when the fees cost less). Bitcoin, per network: the
//! successor becomes the wallet's account there (deposit and change
//! addresses), the old account is retired naming the successor's address,
//! and one sweep takes every output of the old key, less the network's fee
//! cap, to it — planned alone, from the old key's outputs only, its change
//! to the same address (`chain_btc::approve` holds a sweep to that), and
//! signed by the old key under `Permit::Sweep`. Ordinary payouts never
//! spend a retired key's outputs. An HD account rotates to a new HD account
//! (a new seed on the same path, its mnemonic returned to be shown once):
//! the sweep goes to the new account's first receive address and spends
//! every child output of the old one.
//!
//! Threshold ECDSA keys (CGGMP24 0.7 has no share refresh) rotate the
//! same way: the successor is a new key among the signer nodes for the
//! same wallet; the nodes check each sweep and its approvals like any
//! other transaction. Threshold Taproot keys are refreshed instead
//! (`service::key_refresh`).

use domain::{
    Actor, Asset, Grant, KeyBackend, KeyId, KeyState, Network, Role, Scope, TransferKind, WalletId,
};
use serde::Serialize;
use serde_json::json;
use storage::KeyRow;

use crate::NewKey;
use crate::access::{Principal, perm};
use crate::eth::EthError;
use crate::record::entry;
use crate::requests::{Priority, TransferRequest};
use crate::service::{Service, ServiceError};

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct Rotation {
    pub successor: KeyId,
    pub successor_version: u32,
    pub successor_public_key: String,
    /// Accounts moved to the successor.
    pub accounts: Vec<Repointed>,
    /// The sweep transfers made, in the order they go.
    pub sweeps: Vec<String>,
    /// Balances left where they are, and why.
    pub left: Vec<String>,
    /// A rotation interrupted earlier was taken up where it stopped (its
    /// successor kept; accounts and sweeps already made not made again).
    pub resumed: bool,
    /// An HD successor's mnemonic, to show once (never serialised or
    /// printed by `Debug`; none when the successor was made before).
    #[serde(skip)]
    pub successor_mnemonic: Option<std::sync::Arc<keys::hd::Mnemonic>>,
}

/// A wallet's account on a network, moved from the old key's address to
/// the successor's.
#[derive(Debug, Clone, Serialize)]
pub struct Repointed {
    pub wallet: WalletId,
    pub network: String,
    pub from: String,
    pub to: String,
}

impl Service {
    /// Rotates a transfer-signing key: its successor (same algorithm and
    /// backend), the wallet's Ethereum accounts re-pointed to it, and sweep
    /// transfers of every balance under the old key to the successor's
    /// addresses. A compromised key stays compromised (and signs only
    /// those sweeps); any other becomes deactivated.
    pub async fn rotate_with_sweep(
        &self,
        actor: &Actor,
        id: KeyId,
        cryptoperiod_days: u32,
    ) -> Result<Rotation, ServiceError> {
        let old = self.store().key(id).await?;
        // Done again (after a crash, or to see what it made), a rotation
        // goes on from where it stopped: each step is recorded before the
        // next, and each sweep carries an external id naming the key and
        // asset, so none is made twice.
        let (successor, mnemonic, resumed) = match self.store().key_successor(id).await? {
            Some(s) => (self.store().key(s).await?, None, true),
            None => {
                let (s, m) = self.make_successor(actor, &old, cryptoperiod_days).await?;
                (s, m, false)
            }
        };
        let mut rotation = Rotation {
            successor: successor.id,
            successor_version: successor.version,
            successor_public_key: successor.public_key.clone(),
            accounts: Vec::new(),
            sweeps: Vec::new(),
            left: Vec::new(),
            resumed,
            successor_mnemonic: mnemonic.map(std::sync::Arc::new),
        };
        for s in self.store().eth_senders_of_key(id).await? {
            let Some(wallet) = s.wallet else {
                continue;
            };
            // An HD account's deposit addresses are retired: no longer
            // handed out (their labels get the successor's); their sweeps go
            // to the wallet's account sender, the successor's from now on,
            // which the retired key may still sign.
            if s.sender.hd_index.is_some_and(|i| i > 0) {
                self.retire_deposit_address(actor, &s.sender).await?;
                continue;
            }
            if let Some(to) = &s.successor_address {
                rotation.accounts.push(Repointed {
                    wallet,
                    network: s.sender.network.clone(),
                    from: s.sender.address.clone(),
                    to: to.clone(),
                });
                continue;
            }
            let network: Network = s
                .sender
                .network
                .parse()
                .map_err(|_| ServiceError::Invalid(format!("network {}", s.sender.network)))?;
            let Network::Evm { chain_id } = network else {
                continue;
            };
            let new = self.successor_sender(actor, &successor, chain_id).await?;
            let to: chain_eth::EthAddress = new
                .address
                .parse()
                .map_err(|_| ServiceError::Invalid(format!("address {}", new.address)))?;
            let current = self
                .store()
                .wallet_eth_sender(wallet, &s.sender.network)
                .await?;
            if current.as_deref() != Some(new.address.as_str()) {
                crate::wallets::assign_eth_sender(self, actor, chain_id, to, wallet).await?;
            }
            let now = self.now();
            let mut tx = self.store().begin().await?;
            tx.retire_eth_sender(&s.sender.network, &s.sender.address, &new.address, now)
                .await?;
            let e = entry(
                actor,
                "eth.sender.retired",
                &format!("eth:{}:{}", s.sender.network, s.sender.address),
                json!({ "key": id.to_string(), "successor": new.address,
                        "successor_key": successor.id.to_string(), "wallet": wallet.to_string() }),
            )?;
            self.commit(tx, &[e], now).await?;
            rotation.accounts.push(Repointed {
                wallet,
                network: s.sender.network.clone(),
                from: s.sender.address.clone(),
                to: new.address.clone(),
            });
        }
        for a in self.store().btc_accounts_of_key(id).await? {
            let Ok(Network::Bitcoin(n)) = a.network.parse::<Network>() else {
                continue;
            };
            let from = match &old.hd_path {
                Some(path) => format!("HD account {path} of key {id}"),
                None => self.btc_address(id, n).await?,
            };
            let to = match &a.successor_address {
                Some(to) => to.clone(),
                None => {
                    self.retire_btc_account(actor, id, &successor, n, a.wallet)
                        .await?
                }
            };
            rotation.accounts.push(Repointed {
                wallet: a.wallet,
                network: a.network.clone(),
                from,
                to,
            });
        }
        for a in rotation.accounts.clone() {
            match a.network.parse::<Network>() {
                Ok(Network::Bitcoin(n)) => {
                    self.sweep_btc_account(actor, id, n, &a, &mut rotation)
                        .await?
                }
                _ => self.sweep_account(actor, &a, &mut rotation).await?,
            }
        }
        Ok(rotation)
    }

    /// Moves a wallet's Bitcoin account from `old` to its successor: the
    /// successor receives and takes change from now on, the old account
    /// names the successor's address (its outputs go there only). Returns
    /// that address.
    async fn retire_btc_account(
        &self,
        actor: &Actor,
        old: KeyId,
        successor: &KeyRow,
        n: domain::BitcoinNetwork,
        wallet: WalletId,
    ) -> Result<String, ServiceError> {
        let network = Network::Bitcoin(n).to_string();
        if !self
            .store()
            .btc_account_keys(wallet, &network)
            .await?
            .contains(&successor.id)
        {
            self.register_btc_account(actor, n, successor.id, wallet)
                .await?;
        }
        // A single key's one address; an HD account's first receive
        // address, issued to the wallet now.
        let to = match successor.hd_path {
            None => self.btc_address(successor.id, n).await?,
            Some(_) => {
                let issued = self
                    .store()
                    .btc_addresses_of_key(&network, successor.id, 0)
                    .await?;
                match issued.last() {
                    Some(a) => a.address.clone(),
                    None => {
                        self.issue_btc_address(actor, wallet, n, successor.id, None)
                            .await?
                    }
                }
            }
        };
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.retire_btc_account(&network, old, &to, now).await?;
        let e = entry(
            actor,
            "btc.account.retired",
            &format!("key:{old}"),
            json!({ "network": network, "wallet": wallet.to_string(),
                    "successor": to, "successor_key": successor.id.to_string() }),
        )?;
        self.commit(tx, &[e], now).await?;
        Ok(to)
    }

    /// A sweep of every output of `old` the wallet holds on `n` to the
    /// successor's address, less the network's fee cap (what the fee does
    /// not use goes there too, as the sweep's change).
    async fn sweep_btc_account(
        &self,
        actor: &Actor,
        old: KeyId,
        n: domain::BitcoinNetwork,
        a: &Repointed,
        rotation: &mut Rotation,
    ) -> Result<(), ServiceError> {
        let net = self.btc_network(n)?;
        let mut held: u64 = 0;
        for u in self
            .store()
            .wallet_btc_utxos(a.wallet, &a.network, "available")
            .await?
        {
            if crate::btc::spend_of(&u.spend)?.1 == old {
                held = held.saturating_add(u.value_sat);
            }
        }
        // The least an output to the successor may carry.
        let dust = chain_btc::BtcAddress::parse(&a.to, n)
            .map_err(|e| ServiceError::Invalid(format!("address {}: {e}", a.to)))?
            .script_pubkey()
            .minimal_non_dust()
            .to_sat();
        match held.checked_sub(net.fee_caps.max_fee) {
            Some(rest) if rest >= dust => {
                let asset = Asset::bitcoin(n);
                let amount =
                    domain::amount::format_units(u128::from(rest), asset.decimals(), false);
                self.submit_sweep(actor, a, &asset, amount, a.to.clone(), rotation)
                    .await
            }
            _ => {
                rotation.left.push(format!(
                    "{held} sat at {} on {}: no more than the sweep's fee cap",
                    a.from, a.network
                ));
                Ok(())
            }
        }
    }

    /// The successor's sender on a network: registered now, or by an
    /// interrupted run of the same rotation.
    async fn successor_sender(
        &self,
        actor: &Actor,
        successor: &KeyRow,
        chain_id: u64,
    ) -> Result<storage::EthSenderRow, ServiceError> {
        // An HD successor sends from its child 0/0, as any HD account.
        let index = successor.hd_path.is_some().then_some(0);
        let pk = crate::gate::sender_public_key(successor, &crate::gate::child_at(index))?;
        let address = chain_eth::EthAddress::from_public_key(&pk).map_err(EthError::Address)?;
        let network = Network::Evm { chain_id }.to_string();
        match self
            .store()
            .eth_sender(&network, &crate::eth::addr_key(address))
            .await
        {
            Ok(row) => Ok(row),
            Err(storage::StorageError::NotFound { .. }) => {
                self.register_eth_sender_unchecked(actor, successor.id, chain_id, index)
                    .await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The successor of `old`, on its backend, linked to it; `old`
    /// deactivated unless it is compromised.
    async fn make_successor(
        &self,
        actor: &Actor,
        old: &KeyRow,
        cryptoperiod_days: u32,
    ) -> Result<(KeyRow, Option<keys::hd::Mnemonic>), ServiceError> {
        if old.purpose != domain::KeyPurpose::TransferSigning {
            return Err(ServiceError::Invalid(format!(
                "key {} is for {}: only transfer-signing keys rotate with a sweep",
                old.id, old.purpose
            )));
        }
        if !matches!(
            old.state,
            KeyState::Active | KeyState::Suspended | KeyState::Compromised
        ) {
            return Err(ServiceError::Invalid(format!(
                "key {} is {}: only an active, suspended or compromised key rotates",
                old.id, old.state
            )));
        }
        let new = match old.backend {
            // In place: the next version, the old one deactivated (or left
            // compromised) and linked, in one transaction.
            KeyBackend::Keystore if old.hd_path.is_none() => {
                return Ok((
                    self.rotate_key(actor, old.id, cryptoperiod_days).await?,
                    None,
                ));
            }
            // A new HD account (a new seed, its mnemonic shown once) on the
            // same account path, then sweeps.
            KeyBackend::Keystore => {
                let (new, mnemonic) = self
                    .create_hd_key(
                        actor,
                        crate::NewHdKey {
                            purpose: old.purpose,
                            algorithm: old.algorithm,
                            account_path: old.hd_path.clone().unwrap_or_default(),
                            cryptoperiod_days,
                        },
                    )
                    .await?;
                self.link_successor(actor, old, &new).await?;
                return Ok((new, Some(mnemonic)));
            }
            KeyBackend::Pkcs11 => {
                let new = self
                    .create_key(
                        actor,
                        NewKey {
                            purpose: old.purpose,
                            algorithm: old.algorithm,
                            backend: KeyBackend::Pkcs11,
                            cryptoperiod_days,
                        },
                    )
                    .await?;
                self.link_successor(actor, old, &new).await?;
                new
            }
            // Made among the signer nodes for one wallet (CGGMP24 has no
            // share refresh): a new key for the same wallet, then sweeps.
            // FROST keys keep their address with a share refresh instead.
            KeyBackend::Threshold if old.algorithm == domain::KeyAlgorithm::EcdsaSecp256k1 => {
                let wallet = self
                    .store()
                    .eth_senders_of_key(old.id)
                    .await?
                    .into_iter()
                    .find_map(|s| s.wallet)
                    .ok_or_else(|| {
                        ServiceError::Invalid(format!(
                            "threshold key {} sends for no wallet's account: nothing to rotate",
                            old.id
                        ))
                    })?;
                let new = self
                    .create_key_for(
                        actor,
                        NewKey {
                            purpose: old.purpose,
                            algorithm: old.algorithm,
                            backend: KeyBackend::Threshold,
                            cryptoperiod_days,
                        },
                        Some(wallet),
                    )
                    .await?;
                self.link_successor(actor, old, &new).await?;
                new
            }
            KeyBackend::Threshold => {
                return Err(ServiceError::Invalid(format!(
                    "key {} is a threshold Taproot key: refresh its shares (`key refresh`, \
                     --remove for a signer node to leave out); its address stays",
                    old.id
                )));
            }
            KeyBackend::External | KeyBackend::Multisig => {
                return Err(ServiceError::Invalid(format!(
                    "key {} is {}: its holders make a new key offline, and a new account \
                     (open one with the new key among its cosigners) receives a sweep",
                    old.id, old.backend
                )));
            }
        };
        Ok((new, None))
    }

    /// Links a successor made apart from its predecessor (HSM keys).
    async fn link_successor(
        &self,
        actor: &Actor,
        old: &KeyRow,
        new: &KeyRow,
    ) -> Result<(), ServiceError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.set_key_successor(old.id, new.id).await?;
        let mut entries = Vec::new();
        if old.state != KeyState::Compromised {
            tx.set_key_state(old.id, old.state, KeyState::Deactivated)
                .await?;
            entries.push(entry(
                actor,
                "key.state_changed",
                &format!("key:{}", old.id),
                json!({ "from": old.state.as_str(), "to": KeyState::Deactivated.as_str(),
                        "reason": "rotated", "successor": new.id.to_string() }),
            )?);
        }
        entries.push(entry(
            actor,
            "key.rotated",
            &format!("key:{}", old.id),
            json!({ "successor": new.id.to_string() }),
        )?);
        self.commit(tx, &entries, now).await
    }

    /// Retires a deposit address of a rotated key, audited (once). Its
    /// sweeps (and gas top-ups) not yet planned are cancelled: they pay the
    /// retired sender, which the old key may no longer be paid to; the next
    /// sweep pays the successor's. One already planned goes on as it is.
    async fn retire_deposit_address(
        &self,
        actor: &Actor,
        sender: &storage::EthSenderRow,
    ) -> Result<(), ServiceError> {
        if let Some(d) = self
            .store()
            .eth_deposit_address_at(&sender.network, &sender.address)
            .await?
        {
            for id in self.store().open_transfers_of_deposit(&d).await? {
                let why = "its deposit address's key was rotated: swept again to the new sender";
                match crate::queue::cancel(self, actor, id, |_| Ok(()), why).await {
                    Ok(_) | Err(ServiceError::Approval(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
        if !tx
            .retire_eth_deposit_address(&sender.network, &sender.address, now)
            .await?
        {
            return Ok(());
        }
        let e = entry(
            actor,
            "eth.deposit_address.retired",
            &format!("eth:{}:{}", sender.network, sender.address),
            json!({ "key": sender.key_id.to_string(), "reason": "rotated" }),
        )?;
        self.commit(tx, &[e], now).await
    }

    /// Sweep transfers of everything the retired address `a.from` holds on
    /// its network to `a.to`: each configured token it holds, then its
    /// ether less the fees of them all at the network's cap.
    async fn sweep_account(
        &self,
        actor: &Actor,
        a: &Repointed,
        rotation: &mut Rotation,
    ) -> Result<(), ServiceError> {
        let Ok(Network::Evm { chain_id }) = a.network.parse::<Network>() else {
            return Ok(());
        };
        let net = self.eth_network(chain_id)?;
        let from: chain_eth::EthAddress = a
            .from
            .parse()
            .map_err(|_| ServiceError::Invalid(format!("address {}", a.from)))?;
        let to: chain_eth::EthAddress =
            a.to.parse()
                .map_err(|_| ServiceError::Invalid(format!("address {}", a.to)))?;
        let mut sweeps: Vec<(Asset, u128)> = Vec::new();
        for t in &net.config.tokens {
            let held = net
                .client
                .erc20_balance(t.contract, from)
                .await
                .map_err(EthError::Node)?;
            if held > 0 {
                sweeps.push((t.asset.clone(), held));
            }
        }
        let ether = Asset::ether(chain_id);
        let held = net.client.balance(from).await.map_err(EthError::Node)?;
        // What each sweep may pay in fees, the ether one's included.
        let fees = sweeps
            .iter()
            .map(|(asset, _)| net.config.fee_reserve(&asset.id().to_string()))
            .fold(
                net.config.fee_reserve(&ether.id().to_string()),
                u128::saturating_add,
            );
        match held.checked_sub(fees) {
            Some(rest) if rest > 0 => sweeps.push((ether.clone(), rest)),
            _ => rotation.left.push(format!(
                "{} wei of ether at {} on {}: no more than the sweeps' fees may be",
                held, a.from, a.network
            )),
        }
        // Each sweep leaves what the others' fees need (the ether one keeps
        // them all back), so they do not wait on each other.
        for (asset, units) in sweeps {
            let amount = domain::amount::format_units(units, asset.decimals(), false);
            // Checksummed, as the destination check requires.
            self.submit_sweep(actor, a, &asset, amount, to.to_string(), rotation)
                .await?;
        }
        Ok(())
    }

    /// One sweep transfer of `amount` of `asset` from the retired account
    /// `a` to its successor's address, asked for on the rotating person's
    /// behalf (unless an interrupted run made it already).
    async fn submit_sweep(
        &self,
        actor: &Actor,
        a: &Repointed,
        asset: &Asset,
        amount: String,
        destination: String,
        rotation: &mut Rotation,
    ) -> Result<(), ServiceError> {
        // The sweep is asked for on the rotating person's behalf, as an
        // initiator of this wallet only: it can pay nothing but the
        // wallet's own successor address (checked again when it is made).
        let who = Principal {
            actor: actor.clone(),
            grants: vec![
                Grant::new(Role::Initiator, Scope::Wallet(a.wallet))
                    .map_err(|e| ServiceError::Invalid(e.to_string()))?,
            ],
            mfa: true,
            session: None,
        };
        let can = self
            .authorize::<perm::InitiateTransfer>(&who, Some(a.wallet))
            .map_err(ServiceError::from)?;
        // One open sweep per successor and asset: one still under way (made
        // by anyone, an interrupted run say) is the sweep; once the earlier
        // ones have ended, what is left gets a new one (`…:2`, `…:3`).
        let base = format!("sweep:{}:{}", rotation.successor, asset.id());
        let mut external_id = base.clone();
        for n in 2u32.. {
            let made = self.store().sweeps_by_external_id(&external_id).await?;
            let Some((id, state)) = made.first() else {
                break;
            };
            let ended = state
                .parse::<lifecycle::State>()
                .map_err(|e| ServiceError::Invalid(format!("transfer {id}: {e}")))?
                .is_final();
            if !ended {
                rotation.sweeps.push(id.to_string());
                return Ok(());
            }
            external_id = format!("{base}:{n}");
        }
        let t = can
            .submit(&TransferRequest {
                wallet: a.wallet,
                asset: asset.id().clone(),
                amount,
                destination,
                reference: Some(format!("sweep of rotated key to {}", rotation.successor)),
                external_id: Some(external_id),
                priority: Priority::High,
                depends_on: None,
                kind: TransferKind::Sweep,
                source: None,
            })
            .await?;
        rotation.sweeps.push(t.id.to_string());
        Ok(())
    }
}
