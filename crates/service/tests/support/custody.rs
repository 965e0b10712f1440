//! The custody fixture of the end-to-end service tests: a service on a real
//! anvil node with a funded Ethereum sender in a wallet, two admins, a
//! policy admin, a security officer, an initiator and two approvers (API
//! keys), governance by a quorum of two, and a clock the test moves.

#![allow(dead_code)] // Each test binary uses part of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chain_eth::{EthAddress, FeeCaps, TxPlan};
use chain_eth_client::testing::{Anvil, CHAIN_ID, DevWallet};
use chain_eth_client::{ClientOptions, EthClient};
use domain::{
    Actor, AssetId, Grant, KeyAlgorithm, KeyBackend, KeyPurpose, Role, Scope, Timestamp, WalletId,
};
use ed25519_dalek::{Signer as _, SigningKey};
use policy::Vote;
use service::eth::{EthNetwork, EthNetworkConfig};
use service::governance::{Change, GovernanceConfig};
use service::identity::{Principal, SignedRequest, perm, request_message};
use service::transfers::{ApprovalError, TransferRequest, VoteRequest};
use service::{Checkpointer, NewKey, Service, ServiceError, SystemClock};
use storage::testing::TestDb;

pub const ETHER: u128 = 1_000_000_000_000_000_000;
pub const BOB: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
pub const CAROL: &str = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";

#[derive(Debug, Default)]
pub struct ShiftedClock(pub AtomicI64);

impl service::Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        let now = service::Clock::now(&SystemClock).as_millis();
        Timestamp::from_millis(now + self.0.load(Ordering::SeqCst))
    }
}

/// An ECDSA transfer-signing key in the keystore, for 30 days.
pub fn transfer_key() -> NewKey {
    NewKey {
        purpose: KeyPurpose::TransferSigning,
        algorithm: KeyAlgorithm::EcdsaSecp256k1,
        backend: KeyBackend::Keystore,
        cryptoperiod_days: 30,
    }
}

pub fn console() -> Actor {
    "operator:root".parse().unwrap()
}

/// Someone with an API key: signs requests, and (if registered) approvals.
pub struct Person {
    pub key: SigningKey,
    pub id: String,
    pub approver: SigningKey,
}

pub struct Fixture {
    pub db: TestDb,
    pub svc: Service,
    pub clock: Arc<ShiftedClock>,
    pub shares: Vec<keys::shamir::UnsealShare>,
    pub wallet: WalletId,
    pub nonce: AtomicU64,
    pub admin1: Person,
    pub admin2: Person,
    pub policy_admin: Person,
    pub officer: Person,
    pub initiator: Person,
    pub b: Person,
    pub c: Person,
    pub from: EthAddress,
    pub client: Arc<EthClient>,
    pub _anvil: Anvil,
    pub _dir: tempfile::TempDir,
    pub _token: Option<keys_pkcs11::testing::SoftHsm>,
}

pub async fn fixture(db: TestDb) -> Fixture {
    fixture_with(db, None, None).await
}

/// The fixture with its Ethereum sender's key held outside (a cold
/// wallet's): the key of [`COLD_ETH_SECRET`], known by its public key.
pub async fn fixture_cold_eth(db: TestDb) -> Fixture {
    fixture_with(db, None, Some(COLD_ETH_SECRET)).await
}

pub const COLD_ETH_SECRET: [u8; 32] = [0x51; 32];

/// The fixture with a SoftHSM token as the service's HSM.
pub async fn fixture_hsm(db: TestDb) -> Fixture {
    use keys_pkcs11::Pkcs11Signer;
    use keys_pkcs11::testing::{SoftHsm, USER_PIN};
    let token = SoftHsm::new("cold");
    let hsm = Pkcs11Signer::open(
        &SoftHsm::module(),
        &token.label,
        &zeroize::Zeroizing::new(USER_PIN.into()),
        2,
    )
    .unwrap();
    let mut f = fixture_with(db, Some(Arc::new(hsm)), None).await;
    f._token = Some(token);
    f
}

pub async fn fixture_with(
    db: TestDb,
    hsm: Option<Arc<dyn keys::Signer>>,
    cold_sender: Option<[u8; 32]>,
) -> Fixture {
    let anvil = Anvil::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ShiftedClock::default());
    let svc = Service::with_hsm(
        db.store.clone(),
        clock.clone(),
        Checkpointer::for_tests(dir.path(), 8, 1000),
        hsm,
    );
    let shares = svc.init_keystore(&console(), 2, 2).await.unwrap();
    for s in &shares {
        svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    let client = Arc::new(
        EthClient::connect(
            CHAIN_ID,
            &[anvil.url().to_owned()],
            ClientOptions::default(),
        )
        .await
        .unwrap(),
    );
    svc.add_eth_network(EthNetwork {
        config: EthNetworkConfig {
            chain_id: CHAIN_ID,
            legacy: false,
            confirmations: 1,
            bump_after_blocks: 3,
            fee_caps: FeeCaps {
                max_fee_per_gas: 500_000_000_000,
                max_total_fee: ETHER / 10,
            },
            min_priority_fee: 1_000_000_000,
            allow_unchecksummed: false,
            tokens: vec![],
        },
        client: client.clone(),
    });
    let key = match cold_sender {
        Some(secret) => {
            let secp = bitcoin::secp256k1::Secp256k1::new();
            let sk = bitcoin::secp256k1::SecretKey::from_slice(&secret).unwrap();
            let pk = bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk);
            let key = service::cosigners::ExternalKey {
                public_key: hex::encode(pk.serialize()),
                label: "cold-eth".into(),
                origin: None,
            };
            svc.import_external_key(&console(), &key).await.unwrap()
        }
        None => svc.create_key(&console(), transfer_key()).await.unwrap(),
    };
    let sender = svc
        .register_eth_sender(&console(), key.id, CHAIN_ID)
        .await
        .unwrap();
    let from: EthAddress = sender.address.parse().unwrap();
    let wallet = svc
        .console_create_wallet(&console(), "treasury")
        .await
        .unwrap()
        .id;
    svc.console_assign_eth_sender(&console(), CHAIN_ID, from, wallet)
        .await
        .unwrap();
    DevWallet::new(0)
        .await
        .transact(&client, |nonce, fees| {
            TxPlan::native(CHAIN_ID, nonce, from, 100 * ETHER, fees)
        })
        .await;

    let person = |seed: u8, grants: Vec<Grant>| {
        let svc = svc.clone();
        async move {
            let key = SigningKey::from_bytes(&[seed; 32]);
            let row = svc
                .console_register_api_key(
                    &console(),
                    &format!("p{seed}"),
                    &key.verifying_key().to_bytes(),
                    &grants,
                    30,
                    None,
                )
                .await
                .unwrap();
            Person {
                key,
                id: row.id.to_string(),
                approver: SigningKey::from_bytes(&[seed.wrapping_add(100); 32]),
            }
        }
    };
    let f = Fixture {
        admin1: person(1, vec![Grant::global(Role::Admin)]).await,
        admin2: person(2, vec![Grant::global(Role::Admin)]).await,
        policy_admin: person(3, vec![Grant::global(Role::PolicyAdmin)]).await,
        officer: person(4, vec![Grant::global(Role::SecurityOfficer)]).await,
        initiator: person(
            5,
            vec![Grant::new(Role::Initiator, Scope::Wallet(wallet)).unwrap()],
        )
        .await,
        b: person(
            6,
            vec![Grant::new(Role::Approver, Scope::Wallet(wallet)).unwrap()],
        )
        .await,
        c: person(7, vec![Grant::global(Role::Approver)]).await,
        db,
        svc,
        clock,
        shares,
        wallet,
        from,
        client,
        nonce: AtomicU64::new(0),
        _anvil: anvil,
        _dir: dir,
        _token: None,
    };
    f.svc.set_governance(GovernanceConfig {
        admin_quorum: 2,
        ..GovernanceConfig::single_admin()
    });
    f
}

impl Fixture {
    /// The principal behind a freshly signed request of `p`.
    pub async fn who(&self, p: &Person) -> Principal {
        let n = self.nonce.fetch_add(1, Ordering::SeqCst);
        let nonce = format!("nonce-{n:016}");
        let ts = service::Clock::now(&*self.clock).as_millis().to_string();
        let m = request_message("POST", "/v1/x", "", b"", &ts, &nonce, "");
        let sig = data_encoding::BASE64.encode(&p.key.sign(&m).to_bytes());
        self.svc
            .authenticate_request(&SignedRequest {
                key_id: &p.id,
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
            .unwrap()
    }

    /// `who` (the principal of `p`) votes, signing with `p`'s key (an
    /// admin's API key is their signing key, enrolled at bootstrap).
    pub async fn gov_vote(
        &self,
        p: &Person,
        who: &Principal,
        id: &str,
        approve: bool,
    ) -> Result<service::governance::ProposalView, ServiceError> {
        let view = self.svc.proposal(id).await?;
        let sig = view
            .statement(approve)
            .map(|s| p.key.sign(&s.message()).to_bytes())
            .ok();
        self.svc.vote(who, id, approve, sig).await
    }

    pub fn actor(p: &Person) -> String {
        format!("api-key:{}", p.id)
    }

    pub fn advance(&self, ms: i64) {
        self.clock.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn now(&self) -> Timestamp {
        service::Clock::now(&*self.clock)
    }

    /// Proposed by `by`, then approved by the second admin if still open.
    pub async fn govern(&self, by: &Person, change: Change) -> storage::ProposalRow {
        let who = self.who(by).await;
        let p = self.svc.propose(&who, change).await.unwrap().proposal;
        if p.state == "open" {
            let a1 = self.who(&self.admin1).await;
            let p1 = self.gov_vote(&self.admin1, &a1, &p.id, true).await;
            let p1 = match p1 {
                Ok(v) => v.proposal,
                Err(_) => self.svc.proposal(&p.id).await.unwrap().proposal,
            };
            if p1.state == "open" {
                let a2 = self.who(&self.admin2).await;
                return self
                    .gov_vote(&self.admin2, &a2, &p.id, true)
                    .await
                    .unwrap()
                    .proposal;
            }
            return p1;
        }
        p
    }

    pub async fn set_policy(&self, doc: &str) {
        let p = self
            .govern(
                &self.policy_admin,
                Change::SetPolicy {
                    document: doc.into(),
                },
            )
            .await;
        assert_eq!(p.state, "applied");
    }

    pub async fn register_approvers(&self) {
        for p in [&self.b, &self.c] {
            let row = self
                .govern(
                    &self.admin1,
                    Change::RegisterApproverKey {
                        principal: Self::actor(p),
                        public_key: hex::encode(p.approver.verifying_key().to_bytes()),
                    },
                )
                .await;
            assert_eq!(row.state, "applied");
        }
    }

    pub fn request(&self, to: &str, amount: &str) -> TransferRequest {
        TransferRequest {
            wallet: self.wallet,
            asset: AssetId::new(
                domain::Network::Evm { chain_id: CHAIN_ID },
                domain::AssetKind::Native,
            )
            .unwrap(),
            amount: amount.into(),
            destination: to.into(),
            reference: None,
            external_id: None,
            priority: Default::default(),
            depends_on: None,
            kind: domain::TransferKind::Withdrawal,
            source: None,
        }
    }

    pub async fn submit(
        &self,
        by: &Person,
        to: &str,
        amount: &str,
    ) -> Result<storage::TransferRow, ServiceError> {
        let who = self.who(by).await;
        let can = self
            .svc
            .authorize::<perm::InitiateTransfer>(&who, Some(self.wallet))
            .unwrap();
        can.submit(&self.request(to, amount)).await
    }

    pub async fn vote_as(
        &self,
        p: &Person,
        t: &storage::TransferRow,
        vote: Vote,
        expires_at: Timestamp,
        signed_for: Option<&storage::TransferRow>,
    ) -> Result<storage::TransferRow, ServiceError> {
        self.vote_with(p, &p.approver, t, vote, expires_at, signed_for)
            .await
    }

    pub async fn vote_with(
        &self,
        p: &Person,
        key: &SigningKey,
        t: &storage::TransferRow,
        vote: Vote,
        expires_at: Timestamp,
        signed_for: Option<&storage::TransferRow>,
    ) -> Result<storage::TransferRow, ServiceError> {
        let st =
            service::transfers::statement_of(signed_for.unwrap_or(t), vote, expires_at).unwrap();
        let signature = key.sign(&st.message()).to_bytes();
        let who = self.who(p).await;
        let can = self
            .svc
            .authorize::<perm::ApproveTransfer>(&who, Some(t.wallet))
            .unwrap();
        can.vote(
            t.id,
            &VoteRequest {
                vote,
                expires_at,
                signature: policy::ApprovalSignature::Ed25519(signature),
                reason: (vote == Vote::Reject).then(|| "not the invoice we agreed".to_owned()),
            },
        )
        .await
    }

    pub fn soon(&self) -> Timestamp {
        Timestamp::from_millis(self.now().as_millis() + 3_600_000)
    }

    pub async fn actions(&self) -> Vec<String> {
        let page = self.db.store.audit_page(0, 10_000).await.unwrap();
        page.into_iter().map(|r| r.action).collect()
    }
}

pub fn approval_err(r: Result<storage::TransferRow, ServiceError>) -> ApprovalError {
    match r {
        Err(ServiceError::Approval(e)) => e,
        other => panic!("expected an approval error, got {other:?}"),
    }
}

pub fn policy_doc(b: &Person, c: &Person) -> String {
    format!(
        r#"
[[groups]]
name = "approvers"
members = ["api-key:{}", "api-key:{}"]

[[rules]]
name = "small"
amount = {{ at_most = "1" }}
action = "allow"

[[rules]]
name = "large"
action = "require_approval"
approvals = {{ group = "approvers", threshold = 2 }}
time_lock_seconds = 60
"#,
        b.id, c.id
    )
}
