//! Helpers for tests and benches (feature `testing`, never in a release
//! build) that move money the only way the server does: a wallet, an
//! initiator's signed request, a judged transfer, the queue's plan and the
//! signing gate. Nothing here signs around the pipeline.

use std::sync::atomic::{AtomicU64, Ordering};

use chain_eth::{EthAddress, Urgency};
use domain::{Actor, AssetId, Grant, Role, Scope, WalletId};
use ed25519_dalek::{Signer as _, SigningKey};
use storage::{EthSendRow, TransferRow};

use crate::governance::{Change, GovernanceConfig, ProposalView};
use crate::identity::{Principal, SignedRequest, perm, request_message};
use crate::transfers::TransferRequest;
use crate::{Service, ServiceError};

/// The policy of a payer's installation: every transfer allowed.
pub const ALLOW_ALL: &str = "[[rules]]\nname = \"all\"\naction = \"allow\"\n";

/// A wallet whose transfers an initiator requests and a policy allows.
pub struct Payer {
    svc: Service,
    wallet: WalletId,
    initiator: (SigningKey, String),
    admin: (SigningKey, String),
    /// A policy admin.
    writer: (SigningKey, String),
    nonce: AtomicU64,
}

fn random_key() -> SigningKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap_or_else(|e| panic!("randomness: {e}"));
    SigningKey::from_bytes(&seed)
}

async fn api_key(
    svc: &Service,
    console: &Actor,
    name: &str,
    grants: &[Grant],
) -> (SigningKey, String) {
    let key = random_key();
    let row = svc
        .console_register_api_key(
            console,
            name,
            &key.verifying_key().to_bytes(),
            grants,
            30,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("api key {name}: {e}"));
    (key, row.id.to_string())
}

impl std::fmt::Debug for Payer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payer")
            .field("wallet", &self.wallet)
            .finish_non_exhaustive()
    }
}

/// The governance MAC of a record hash, as the unsealed server computes
/// it: for tests that show a MAC alone does not make a record count.
pub fn governance_mac(svc: &Service, hash: &[u8; 32]) -> Option<String> {
    svc.governance_mac_for_tests(hash)
}

/// An admin's signature over their vote on a proposal.
pub fn sign_vote(key: &SigningKey, view: &ProposalView, approve: bool) -> [u8; 64] {
    let statement = view
        .statement(approve)
        .unwrap_or_else(|e| panic!("statement: {e}"));
    key.sign(&statement.message()).to_bytes()
}

/// An admin approves a proposal with their signing key.
pub async fn approve(svc: &Service, who: &Principal, key: &SigningKey, id: &str) -> ProposalView {
    let view = svc
        .proposal(id)
        .await
        .unwrap_or_else(|e| panic!("proposal: {e}"));
    svc.vote(who, id, true, Some(sign_vote(key, &view, true)))
        .await
        .unwrap_or_else(|e| panic!("vote: {e}"))
}

impl Payer {
    /// A wallet named `name` holding the Ethereum senders `senders` (chain
    /// id, address): single-admin governance (if none is set), an
    /// allow-all policy applied by proposal, and an initiator for it.
    pub async fn open(
        svc: &Service,
        console: &Actor,
        name: &str,
        senders: &[(u64, EthAddress)],
    ) -> Payer {
        let wallet = svc
            .console_create_wallet(console, name)
            .await
            .unwrap_or_else(|e| panic!("wallet: {e}"))
            .id;
        for (chain_id, from) in senders {
            svc.console_assign_eth_sender(console, *chain_id, *from, wallet)
                .await
                .unwrap_or_else(|e| panic!("sender: {e}"));
        }
        if svc.governance().is_err() {
            svc.set_governance(GovernanceConfig::single_admin());
        }
        let admin = api_key(
            svc,
            console,
            &format!("{name}-admin"),
            &[Grant::global(Role::Admin)],
        )
        .await;
        let writer = api_key(
            svc,
            console,
            &format!("{name}-policy"),
            &[Grant::global(Role::PolicyAdmin)],
        )
        .await;
        let initiator = api_key(
            svc,
            console,
            &format!("{name}-initiator"),
            &[Grant::new(Role::Initiator, Scope::Wallet(wallet))
                .unwrap_or_else(|e| panic!("grant: {e}"))],
        )
        .await;
        let payer = Payer {
            svc: svc.clone(),
            wallet,
            initiator,
            admin,
            writer,
            nonce: AtomicU64::new(0),
        };
        let who = payer.principal(&payer.writer).await;
        let p = svc
            .propose(
                &who,
                Change::SetPolicy {
                    document: ALLOW_ALL.into(),
                },
            )
            .await
            .unwrap_or_else(|e| panic!("policy: {e}"))
            .proposal;
        let who = payer.principal(&payer.admin).await;
        let v = approve(svc, &who, &payer.admin.0, &p.id).await;
        assert_eq!(v.proposal.state, "applied", "one admin is the quorum here");
        payer
    }

    pub fn wallet(&self) -> WalletId {
        self.wallet
    }

    /// The principal behind a freshly signed request of `key`, as the HTTP
    /// layer authenticates it.
    async fn principal(&self, key: &(SigningKey, String)) -> Principal {
        let n = self.nonce.fetch_add(1, Ordering::SeqCst);
        let nonce = format!("payer-{n:016}");
        let ts = self.svc.now().as_millis().to_string();
        let m = request_message("POST", "/v1/transfers", "", b"", &ts, &nonce, "");
        let sig = data_encoding::BASE64.encode(&key.0.sign(&m).to_bytes());
        self.svc
            .authenticate_request(&SignedRequest {
                key_id: &key.1,
                timestamp_ms: &ts,
                nonce: &nonce,
                signature: &sig,
                method: "POST",
                path: "/v1/transfers",
                query: "",
                body: b"",
                idempotency_key: None,
            })
            .await
            .unwrap_or_else(|e| panic!("authentication: {e}"))
    }

    /// The principal of a request signed with `key` (API key `id`), as
    /// the HTTP layer authenticates it.
    pub async fn signed_as(&self, key: &SigningKey, id: &str) -> Result<Principal, ServiceError> {
        let n = self.nonce.fetch_add(1, Ordering::SeqCst);
        let nonce = format!("payer-{n:016}");
        let ts = self.svc.now().as_millis().to_string();
        let m = request_message("POST", "/v1/x", "", b"", &ts, &nonce, "");
        let sig = data_encoding::BASE64.encode(&key.sign(&m).to_bytes());
        self.svc
            .authenticate_request(&SignedRequest {
                key_id: id,
                timestamp_ms: &ts,
                nonce: &nonce,
                signature: &sig,
                method: "POST",
                path: "/v1/x",
                query: "",
                body: b"",
                idempotency_key: None,
            })
            .await
    }

    /// A change proposed (by the policy admin, or the admin for roles and
    /// keys) and approved by the admin (the quorum here).
    pub async fn govern(&self, change: Change) -> ProposalView {
        let admin = self.admin().await;
        let proposer = match change {
            Change::SetPolicy { .. }
            | Change::AddAddress { .. }
            | Change::RemoveAddress { .. }
            | Change::SetPrice { .. } => self.principal(&self.writer).await,
            _ => admin.clone(),
        };
        let p = self
            .svc
            .propose(&proposer, change)
            .await
            .unwrap_or_else(|e| panic!("propose: {e}"));
        approve(&self.svc, &admin, &self.admin.0, &p.proposal.id).await
    }

    /// The admin's signing key (their API key, enrolled at bootstrap).
    pub fn admin_key(&self) -> SigningKey {
        self.admin.0.clone()
    }

    /// The initiator's API key id.
    pub fn initiator_id(&self) -> &str {
        &self.initiator.1
    }

    /// The initiator's principal.
    pub async fn initiator(&self) -> Principal {
        self.principal(&self.initiator).await
    }

    /// The policy admin's principal.
    pub async fn policy_admin(&self) -> Principal {
        self.principal(&self.writer).await
    }

    /// The admin's principal (made at bootstrap: once governance has
    /// acted, further keys with governing roles are proposals).
    pub async fn admin(&self) -> Principal {
        self.principal(&self.admin).await
    }

    /// Requests a withdrawal of `amount` (decimal) of `asset` to `to`.
    pub async fn submit(
        &self,
        asset: &AssetId,
        to: &str,
        amount: &str,
    ) -> Result<TransferRow, ServiceError> {
        let who = self.initiator().await;
        let can = self
            .svc
            .authorize::<perm::InitiateTransfer>(&who, Some(self.wallet))?;
        can.submit(&TransferRequest {
            wallet: self.wallet,
            asset: asset.clone(),
            amount: amount.into(),
            destination: to.into(),
            reference: None,
            external_id: None,
            priority: Default::default(),
            depends_on: None,
            kind: domain::TransferKind::Withdrawal,
            source: None,
        })
        .await
    }

    /// Requests a withdrawal and carries it out on Ethereum at once: judged,
    /// planned, signed through the gate and broadcast.
    pub async fn pay_eth(
        &self,
        asset: &AssetId,
        to: &str,
        amount: &str,
        urgency: Urgency,
    ) -> Result<EthSendRow, ServiceError> {
        let t = self.submit(asset, to, amount).await?;
        self.svc.execute_transfer(t.id, urgency).await
    }

    /// [`Payer::pay_eth`], sealed by `sealer` between the request (judged
    /// and authenticated while unsealed) and the plan: the send is planned
    /// and waits in `signing`.
    pub async fn pay_eth_sealed(
        &self,
        asset: &AssetId,
        to: &str,
        amount: &str,
        urgency: Urgency,
        sealer: &domain::Actor,
    ) -> Result<EthSendRow, ServiceError> {
        let t = self.submit(asset, to, amount).await?;
        self.svc.seal(sealer).await?;
        self.svc.execute_transfer(t.id, urgency).await
    }
}

/// A Bitcoin HD account (BIP-84) for `wallet`, opened as the API opens one,
/// with its first receive address issued — and its words, which the API
/// never shows: the paper backup a thief may find. For the tests of what
/// the reconciliation finds when a key is used outside Strongroom. Its
/// backup is waived.
pub async fn hd_account_with_words(
    svc: &Service,
    actor: &Actor,
    wallet: WalletId,
    n: domain::BitcoinNetwork,
) -> Result<(domain::KeyId, String, keys::hd::Mnemonic), ServiceError> {
    let (key, words) = svc
        .create_bitcoin_hd_key(actor, n, domain::KeyAlgorithm::EcdsaSecp256k1)
        .await?;
    svc.waive_key_backup(actor, key.id).await?;
    svc.register_btc_account(actor, n, key.id, wallet).await?;
    let address = svc.next_deposit_address(actor, wallet, n).await?;
    Ok((key.id, address, words))
}
