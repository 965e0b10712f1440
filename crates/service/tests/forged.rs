//! Governance state a database write cannot forge: rows inserted or edited
//! by SQL (grants, API keys, approver keys, policies, the address book,
//! prices, tiers, the governance log itself) are ignored, audited,
//! announced and frozen, and nothing is signed because of them. On SQLite
//! and PostgreSQL.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;

use chain_eth::fees::Urgency;
use chain_eth::{EthAddress, FeeCaps, TxPlan};
use chain_eth_client::testing::{Anvil, CHAIN_ID, DevWallet};
use chain_eth_client::{ClientOptions, EthClient};
use domain::{Actor, AssetId, Grant, KeyAlgorithm, KeyBackend, KeyPurpose, Role, Timestamp};
use ed25519_dalek::{Signer, SigningKey};
use policy::Vote;
use service::eth::{EthNetwork, EthNetworkConfig};
use service::governance::Change;
use service::identity::perm;
use service::testing::Payer;
use service::transfers::VoteRequest;
use service::{Checkpointer, NewKey, Service, ServiceError, SystemClock};
use storage::testing::TestDb;

storage::on_both!(
    fixture;
    grant_rows_inserted_by_sql_are_ignored_and_freeze,
    an_edited_policy_is_ignored_and_nothing_is_signed,
    a_swapped_approver_key_approves_nothing,
    every_governed_table_is_compared_with_the_log,
    a_forged_log_record_stops_the_replay_and_freezes_everything,
    a_mac_alone_makes_no_record_count,
    a_rolled_back_log_is_caught_at_the_next_unseal,
    governance_keeps_enough_signing_keys_to_act,
    a_change_the_log_would_refuse_is_not_applied,
);

const ETHER: u128 = 1_000_000_000_000_000_000;
const BOB: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

fn alice() -> Actor {
    "operator:alice".parse().unwrap()
}

struct Fixture {
    db: TestDb,
    svc: Service,
    payer: Payer,
    shares: Vec<keys::shamir::UnsealShare>,
    _anvil: Anvil,
    _dir: tempfile::TempDir,
}

async fn fixture(db: TestDb) -> Fixture {
    let anvil = Anvil::start();
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::new(
        db.store.clone(),
        Arc::new(SystemClock),
        Checkpointer::for_tests(dir.path(), 8, 1000),
    );
    let shares = svc.init_keystore(&alice(), 2, 2).await.unwrap();
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
    let key = svc
        .create_key(
            &alice(),
            NewKey {
                purpose: KeyPurpose::TransferSigning,
                algorithm: KeyAlgorithm::EcdsaSecp256k1,
                backend: KeyBackend::Keystore,
                cryptoperiod_days: 30,
            },
        )
        .await
        .unwrap();
    let sender = svc
        .register_eth_sender(&alice(), key.id, CHAIN_ID)
        .await
        .unwrap();
    let from: EthAddress = sender.address.parse().unwrap();
    DevWallet::new(0)
        .await
        .transact(&client, |nonce, fees| {
            TxPlan::native(CHAIN_ID, nonce, from, 10 * ETHER, fees)
        })
        .await;
    let payer = Payer::open(&svc, &alice(), "treasury", &[(CHAIN_ID, from)]).await;
    Fixture {
        db,
        svc,
        payer,
        shares,
        _anvil: anvil,
        _dir: dir,
    }
}

impl Fixture {
    fn sql(&self) -> &storage::Store {
        &self.db.store
    }

    async fn exec(&self, sql: &str) {
        self.db.store.execute_unchecked(sql).await.unwrap();
    }

    async fn actions(&self) -> Vec<String> {
        let page = self.db.store.audit_page(0, 100_000).await.unwrap();
        page.into_iter().map(|r| r.action).collect()
    }

    async fn forged_tables(&self) -> Vec<String> {
        let page = self.db.store.audit_page(0, 100_000).await.unwrap();
        page.into_iter()
            .filter(|r| r.action == "governance.forged_row")
            .map(|r| {
                let d: serde_json::Value = serde_json::from_str(&r.details).unwrap();
                d["table"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// A key the console registers now (governance has acted: a viewer).
    async fn viewer(&self, seed: u8) -> (SigningKey, String) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let row = self
            .svc
            .console_register_api_key(
                &alice(),
                &format!("viewer{seed}"),
                &key.verifying_key().to_bytes(),
                &[Grant::global(Role::Viewer)],
                30,
                None,
            )
            .await
            .unwrap();
        (key, row.id.to_string())
    }

    async fn wallet_frozen(&self) -> bool {
        self.svc
            .frozen(Some(self.payer.wallet()), None)
            .await
            .unwrap()
            .is_some()
    }

    async fn globally_frozen(&self) -> bool {
        self.db
            .store
            .active_freezes(service::Clock::now(&SystemClock))
            .await
            .unwrap()
            .iter()
            .any(|f| f.scope == "global")
    }

    fn ether(&self) -> AssetId {
        format!("eip155:{CHAIN_ID}/native").parse().unwrap()
    }

    async fn sent(&self) -> String {
        self.sql()
            .query_text("SELECT CAST(COUNT(*) AS TEXT) FROM eth_attempts WHERE raw IS NOT NULL")
            .await
            .unwrap()
    }
}

impl Fixture {
    /// Appends a record after the head by SQL, chained correctly, with the
    /// MAC given; returns its hash.
    async fn append_record(&self, authority: &str, content: &str, mac: Option<String>) {
        let (seq, head) = self.sql().governance_head().await.unwrap();
        let prev: [u8; 32] = hex::decode(&head).unwrap().try_into().unwrap();
        let fields = policy::RecordFields {
            seq: seq + 1,
            prev_hash: prev,
            time_ms: 0,
            authority,
            actor: "system",
            content,
            approvals: "[]",
        };
        let hash = fields.hash();
        let mac = match mac.or_else(|| service::testing::governance_mac(&self.svc, &hash)) {
            Some(m) if authority != "bootstrap" => format!("'{m}'"),
            _ => "NULL".into(),
        };
        self.exec(&format!(
            "INSERT INTO governance_log (seq, time_ms, authority, actor, content, approvals, \
             prev_hash, hash, mac) VALUES ({}, 0, '{authority}', 'system', '{content}', '[]', \
             '{head}', '{}', {mac})",
            seq + 1,
            hex::encode(hash)
        ))
        .await;
        self.exec(&format!(
            "UPDATE governance_head SET seq = {}, hash = '{}' WHERE id = 1",
            seq + 1,
            hex::encode(hash)
        ))
        .await;
    }
}

fn grant_sql(principal: &str, role: &str, scope: &str) -> String {
    format!(
        "INSERT INTO grants (principal, role, scope, expires_at_ms, created_at_ms, created_by) \
         VALUES ('{principal}', '{role}', '{scope}', NULL, 0, 'operator:mallory')"
    )
}

async fn grant_rows_inserted_by_sql_are_ignored_and_freeze(f: Fixture) {
    let wallet = f.payer.wallet();
    let (key, id) = f.viewer(9).await;
    // An initiator grant for the wallet, written straight into the table.
    f.exec(&grant_sql(
        &format!("api-key:{id}"),
        "initiator",
        &format!("wallet:{wallet}"),
    ))
    .await;
    let who = f.payer.signed_as(&key, &id).await.unwrap();
    assert_eq!(who.grants(), [Grant::global(Role::Viewer)], "ignored");
    assert!(
        f.svc
            .authorize::<perm::InitiateTransfer>(&who, Some(wallet))
            .is_err()
    );
    assert_eq!(f.forged_tables().await, ["grants"]);
    assert!(f.actions().await.iter().any(|a| a == "freeze.placed"));
    assert!(f.wallet_frozen().await, "the wallet it names is frozen");
    assert!(!f.globally_frozen().await);
    assert_ne!(
        f.sql()
            .query_text(
                "SELECT CAST(COUNT(*) AS TEXT) FROM webhook_events \
                 WHERE event_type = 'governance.forged_row'"
            )
            .await
            .unwrap(),
        "0",
        "announced to webhook subscribers"
    );
    // Nothing is signed for the wallet now.
    assert!(matches!(
        f.payer
            .pay_eth(&f.ether(), BOB, "0.1", Urgency::Normal)
            .await,
        Err(ServiceError::Frozen(_))
    ));
    assert_eq!(f.sent().await, "0");

    // An admin grant: every wallet freezes, and the key governs nothing.
    f.exec(&grant_sql(&format!("api-key:{id}"), "admin", "global"))
        .await;
    let who = f.payer.signed_as(&key, &id).await.unwrap();
    assert!(who.grants().iter().all(|g| g.role() == Role::Viewer));
    assert!(
        f.svc
            .propose(
                &who,
                Change::SetPrice {
                    asset: f.ether().to_string(),
                    usd: "1".into(),
                }
            )
            .await
            .is_err()
    );
    assert!(f.globally_frozen().await);

    // Deleting every admin's grant by SQL does not reopen the console's
    // door: the bootstrap is over for good.
    f.exec("DELETE FROM grants WHERE role = 'admin'").await;
    let admin = SigningKey::from_bytes(&[77; 32]);
    assert!(matches!(
        f.svc
            .console_register_api_key(
                &alice(),
                "late-admin",
                &admin.verifying_key().to_bytes(),
                &[Grant::global(Role::Admin)],
                30,
                None,
            )
            .await,
        Err(ServiceError::GovernanceInForce(_))
    ));
}

async fn an_edited_policy_is_ignored_and_nothing_is_signed(f: Fixture) {
    // Version 2 requires an approval for everything.
    let strict = "[[groups]]\nname = \"approvers\"\nmembers = [\"user:00000000-0000-0000-0000-000000000001\"]\n\
                  [[rules]]\nname = \"all\"\naction = \"require_approval\"\n\
                  approvals = { group = \"approvers\", threshold = 1 }\n";
    let v = f
        .payer
        .govern(Change::SetPolicy {
            document: strict.into(),
        })
        .await;
    assert_eq!(v.proposal.state, "applied");
    // Someone with the database makes version 2 say "allow everything".
    f.exec(
        "UPDATE policies SET document = (SELECT document FROM policies WHERE version = 1), \
         digest = (SELECT digest FROM policies WHERE version = 1) WHERE version = 2",
    )
    .await;
    let t = f.payer.submit(&f.ether(), BOB, "0.1").await.unwrap();
    assert_eq!(
        t.state, "pending_approval",
        "judged under the logged policy"
    );
    assert_eq!(t.policy_version, 2);
    assert!(f.svc.execute_transfer(t.id, Urgency::Normal).await.is_err());
    assert_eq!(f.sent().await, "0");
    f.svc.governance_sweep().await.unwrap();
    assert!(f.forged_tables().await.iter().any(|t| t == "policies"));
    assert!(f.globally_frozen().await);
    // The policy shown is the logged one.
    let shown = f.svc.current_policy().await.unwrap().unwrap();
    assert!(shown.document.contains("require_approval"), "{shown:?}");
}

async fn a_swapped_approver_key_approves_nothing(f: Fixture) {
    let wallet = f.payer.wallet();
    let (approver, id) = f.viewer(11).await;
    let principal = format!("api-key:{id}");
    f.payer
        .govern(Change::Grant {
            principal: principal.clone(),
            role: "approver".into(),
            scope: format!("wallet:{wallet}"),
            until_ms: None,
        })
        .await;
    let signer = SigningKey::from_bytes(&[12; 32]);
    f.payer
        .govern(Change::RegisterApproverKey {
            principal: principal.clone(),
            public_key: hex::encode(signer.verifying_key().to_bytes()),
        })
        .await;
    let strict = format!(
        "[[groups]]\nname = \"approvers\"\nmembers = [\"{principal}\"]\n\
         [[rules]]\nname = \"all\"\naction = \"require_approval\"\n\
         approvals = {{ group = \"approvers\", threshold = 1 }}\n"
    );
    f.payer.govern(Change::SetPolicy { document: strict }).await;
    let t = f.payer.submit(&f.ether(), BOB, "0.1").await.unwrap();
    assert_eq!(t.state, "pending_approval");
    // The database now names the attacker's key as the approver's.
    let mallory = SigningKey::from_bytes(&[13; 32]);
    f.exec(&format!(
        "UPDATE approver_keys SET public_key = '{}' WHERE principal = '{principal}'",
        hex::encode(mallory.verifying_key().to_bytes())
    ))
    .await;
    let who = f.payer.signed_as(&approver, &id).await.unwrap();
    let can = f
        .svc
        .authorize::<perm::ApproveTransfer>(&who, Some(wallet))
        .unwrap();
    let expires_at =
        Timestamp::from_millis(service::Clock::now(&SystemClock).as_millis() + 600_000);
    let statement = can
        .statement(t.id, Vote::Approve, expires_at)
        .await
        .unwrap();
    let forged = VoteRequest {
        vote: Vote::Approve,
        expires_at,
        signature: policy::ApprovalSignature::Ed25519(
            mallory.sign(&statement.message()).to_bytes(),
        ),
        reason: None,
    };
    assert!(can.vote(t.id, &forged).await.is_err());
    // The approver's real key is refused too while the row is wrong (the
    // row and the log must agree), and nothing is signed.
    let real = VoteRequest {
        vote: Vote::Approve,
        expires_at,
        signature: policy::ApprovalSignature::Ed25519(signer.sign(&statement.message()).to_bytes()),
        reason: None,
    };
    assert!(can.vote(t.id, &real).await.is_err());
    assert_eq!(
        f.sql().transfer(t.id).await.unwrap().state,
        "pending_approval"
    );
    assert_eq!(f.sent().await, "0");
    f.svc.governance_sweep().await.unwrap();
    assert!(f.forged_tables().await.iter().any(|t| t == "approver_keys"));
}

async fn every_governed_table_is_compared_with_the_log(f: Fixture) {
    let wallet = f.payer.wallet();
    // An address-book entry, usable at once; a price; a tier; a revoked
    // key brought back; a key that was never registered.
    f.exec(&format!(
        "INSERT INTO whitelist (id, network, address, label, address_group, usable_from_ms, \
         created_at_ms, removed_at_ms) VALUES ('01900000-0000-7000-8000-000000000001', \
         'eip155:{CHAIN_ID}', '{}', 'mallory', NULL, 0, 0, NULL)",
        BOB.to_lowercase()
    ))
    .await;
    f.exec(&format!(
        "INSERT INTO prices (asset, micro_usd, as_of_ms, set_by) VALUES ('{}', '1', 0, 'operator:mallory')",
        f.ether()
    ))
    .await;
    f.exec(&format!(
        "UPDATE wallets SET tier = 'cold' WHERE id = '{wallet}'"
    ))
    .await;
    let (key, id) = f.viewer(21).await;
    let revoker = f.payer.admin().await;
    f.svc
        .authorize::<perm::ManageApiKeys>(&revoker, None)
        .unwrap()
        .revoke_api_key(id.parse().unwrap())
        .await
        .unwrap();
    f.exec(&format!(
        "UPDATE api_keys SET revoked_at_ms = NULL WHERE id = '{id}'"
    ))
    .await;
    assert!(matches!(
        f.payer.signed_as(&key, &id).await,
        Err(ServiceError::Auth(_))
    ));
    let stranger = SigningKey::from_bytes(&[22; 32]);
    let stranger_id = "01900000-0000-7000-8000-0000000000aa";
    f.exec(&format!(
        "INSERT INTO api_keys (id, name, public_key, expires_at_ms, revoked_at_ms, created_at_ms, \
         created_by) VALUES ('{stranger_id}', 'mallory', '{}', 9000000000000, NULL, 0, 'operator:mallory')",
        hex::encode(stranger.verifying_key().to_bytes())
    ))
    .await;
    f.exec(&grant_sql(
        &format!("api-key:{stranger_id}"),
        "admin",
        "global",
    ))
    .await;
    assert!(matches!(
        f.payer.signed_as(&stranger, stranger_id).await,
        Err(ServiceError::Auth(_))
    ));
    // The address book shown leaves the forged entry out.
    assert!(f.svc.address_book().await.unwrap().is_empty());
    f.svc.governance_sweep().await.unwrap();
    let mut tables = f.forged_tables().await;
    tables.sort();
    tables.dedup();
    for t in ["api_keys", "grants", "prices", "wallets", "whitelist"] {
        assert!(tables.iter().any(|x| x == t), "{t} in {tables:?}");
    }
    assert!(f.wallet_frozen().await);
    assert!(f.globally_frozen().await);
    assert_eq!(f.sent().await, "0");
}

async fn a_forged_log_record_stops_the_replay_and_freezes_everything(f: Fixture) {
    // A record that makes a stranger admin, chained correctly after the
    // head, written as the console during the bootstrap (no MAC needed):
    // the bootstrap closed with the first applied proposal, so it counts
    // for nothing.
    let (_, id) = f.viewer(32).await;
    let content = format!(
        r#"{{"grant":{{"principal":"api-key:{id}","role":"admin","scope":"global","until_ms":null}}}}"#
    );
    f.append_record("bootstrap", &content, None).await;
    f.exec(&grant_sql(&format!("api-key:{id}"), "admin", "global"))
        .await;
    let who = f
        .payer
        .signed_as(&SigningKey::from_bytes(&[32; 32]), &id)
        .await
        .unwrap();
    assert!(who.grants().iter().all(|g| g.role() == Role::Viewer));
    assert!(f.globally_frozen().await);
    assert!(
        f.forged_tables()
            .await
            .iter()
            .any(|t| t == "governance_log")
    );
    // Nothing more is signed anywhere.
    assert!(matches!(
        f.payer
            .pay_eth(&f.ether(), BOB, "0.1", Urgency::Normal)
            .await,
        Err(ServiceError::Frozen(_))
    ));
    assert_eq!(f.sent().await, "0");
    // The governance log refuses edits and deletions.
    assert!(
        f.db.store
            .execute_unchecked("DELETE FROM governance_log")
            .await
            .is_err()
    );
}

async fn a_mac_alone_makes_no_record_count(f: Fixture) {
    // Whoever holds the MAC key (the console, the database and the HSM PIN
    // of an auto-unsealed server) writes a quorum record with a valid MAC
    // and no admin's signature: it counts for nothing.
    let (key, id) = f.viewer(41).await;
    let (seq, head) = f.sql().governance_head().await.unwrap();
    let content = format!(
        r#"{{"proposal":{{"id":"01900000-0000-7000-8000-0000000000bb","change":{{"kind":"grant","principal":"api-key:{id}","role":"admin","scope":"global","until_ms":null}},"base_seq":{seq},"base_hash":"{head}","quorum":1,"effects":{{}}}}}}"#
    );
    f.append_record("quorum", &content, None).await;
    f.exec(&grant_sql(&format!("api-key:{id}"), "admin", "global"))
        .await;
    let who = f.payer.signed_as(&key, &id).await.unwrap();
    assert!(who.grants().iter().all(|g| g.role() == Role::Viewer));
    assert!(f.globally_frozen().await);
    assert!(
        f.forged_tables()
            .await
            .iter()
            .any(|t| t == "governance_log")
    );
}

async fn a_rolled_back_log_is_caught_at_the_next_unseal(f: Fixture) {
    // A revocation, then someone with the database removes it from the log
    // (and the table), the head rewound.
    let (key, id) = f.viewer(51).await;
    let revoker = f.payer.admin().await;
    f.svc
        .authorize::<perm::ManageApiKeys>(&revoker, None)
        .unwrap()
        .revoke_api_key(id.parse().unwrap())
        .await
        .unwrap();
    assert!(f.payer.signed_as(&key, &id).await.is_err(), "revoked");
    let (seq, _) = f.sql().governance_head().await.unwrap();
    let before: String = f
        .sql()
        .query_text(&format!(
            "SELECT hash FROM governance_log WHERE seq = {}",
            seq - 1
        ))
        .await
        .unwrap();
    let unlock = match f.sql().backend() {
        storage::Backend::Sqlite => "DROP TRIGGER governance_log_append_only_delete",
        storage::Backend::Postgres => "ALTER TABLE governance_log DISABLE TRIGGER USER",
    };
    f.exec(unlock).await;
    f.exec(&format!("DELETE FROM governance_log WHERE seq = {seq}"))
        .await;
    f.exec(&format!(
        "UPDATE governance_head SET seq = {}, hash = '{before}' WHERE id = 1",
        seq - 1
    ))
    .await;
    f.exec(&format!(
        "UPDATE api_keys SET revoked_at_ms = NULL WHERE id = '{id}'"
    ))
    .await;
    // A server that saw the revocation refuses the rewound head.
    assert!(f.payer.signed_as(&key, &id).await.is_err());
    assert!(f.globally_frozen().await);
    // So does a server started afterwards: the audit log's anchor names
    // the head the log had.
    let dir = tempfile::tempdir().unwrap();
    let fresh = Service::new(
        f.db.store.clone(),
        Arc::new(SystemClock),
        Checkpointer::for_tests(dir.path(), 8, 1000),
    );
    for s in &f.shares {
        fresh.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    let anchors = f
        .forged_tables()
        .await
        .iter()
        .filter(|t| *t == "governance_log")
        .count();
    assert!(anchors >= 2, "{anchors}");
}

async fn governance_keeps_enough_signing_keys_to_act(f: Fixture) {
    // The one admin's signing key (the quorum is one): revoking it, or the
    // admin role itself, would leave governance unable to act again.
    let admin = f.payer.admin().await;
    for change in [
        Change::RevokeApproverKey {
            principal: admin.actor().to_string(),
        },
        Change::Revoke {
            principal: admin.actor().to_string(),
            role: "admin".into(),
            scope: "global".into(),
        },
    ] {
        assert!(matches!(
            f.svc.propose(&admin, change).await,
            Err(ServiceError::Conflict(m)) if m.contains("quorum")
        ));
    }
}

async fn a_change_the_log_would_refuse_is_not_applied(f: Fixture) {
    // A grant applied, then its row deleted by SQL: granting it again
    // would succeed in the table but the log holds it already. The change
    // is refused (nothing written), and the log stays whole.
    let (_, id) = f.viewer(61).await;
    let grant = Change::Grant {
        principal: format!("api-key:{id}"),
        role: "auditor".into(),
        scope: "global".into(),
        until_ms: None,
    };
    assert_eq!(
        f.payer.govern(grant.clone()).await.proposal.state,
        "applied"
    );
    f.exec(&format!(
        "DELETE FROM grants WHERE principal = 'api-key:{id}' AND role = 'auditor'"
    ))
    .await;
    let (head, _) = f.sql().governance_head().await.unwrap();
    let admin = f.payer.admin().await;
    let p = f.svc.propose(&admin, grant).await.unwrap();
    let view = f.svc.proposal(&p.proposal.id).await.unwrap();
    let sig = service::testing::sign_vote(&f.payer.admin_key(), &view, true);
    assert!(matches!(
        f.svc.vote(&admin, &p.proposal.id, true, Some(sig)).await,
        Err(ServiceError::Conflict(m)) if m.contains("governance log would refuse")
    ));
    assert_eq!(f.sql().governance_head().await.unwrap().0, head);
    assert_eq!(
        f.svc.proposal(&p.proposal.id).await.unwrap().proposal.state,
        "open"
    );
    // Replay is whole: the next request verifies the log without alarm.
    assert!(
        f.payer
            .signed_as(&SigningKey::from_bytes(&[61; 32]), &id)
            .await
            .is_ok()
    );
    assert!(
        !f.forged_tables()
            .await
            .iter()
            .any(|t| t == "governance_log")
    );
}
