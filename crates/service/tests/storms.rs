//! Conflict storms: the same thing done twice at once, many rounds over.
//! On SQLite one server races itself; on PostgreSQL two servers (two
//! services, two connection pools, one database) race each other. Each
//! round ends with exactly one success, and the loser gets its typed error
//! (never a raw database error, never a second effect). Rounds per storm:
//! `STRONGROOM_STORM_ROUNDS` (25 in CI; `scripts/soak storms` runs 1000).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;

use domain::{Actor, Grant, Role, Scope, Timestamp};
use ed25519_dalek::{Signer as _, SigningKey};
use policy::Vote;
use service::governance::Change;
use service::identity::perm;
use service::transfers::{TransferRequest, VoteRequest};
use service::{Checkpointer, Service, ServiceError, SystemClock};
use storage::StorageError;
use storage::testing::TestDb;

#[path = "support/bitcoin.rs"]
mod bitcoin_fixture;
use bitcoin_fixture::*;

storage::on_both!(
    storm_fixture;
    storm_of_idempotent_retries_makes_one_transfer,
    storm_of_double_votes_counts_one_approval,
    storm_of_double_proposal_votes_counts_one,
    storm_of_one_deposit_credited_twice_credits_it_once,
    storm_of_payouts_racing_for_one_output_spends_it_once,
    storm_of_one_unseal_share_given_twice_counts_it_once,
);

fn rounds() -> u64 {
    std::env::var("STRONGROOM_STORM_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
}

/// The fixture, a second server (on PostgreSQL: its own pool on the same
/// database; on SQLite the same server, racing itself) and the shares.
struct Storm {
    f: Fixture,
    other: Service,
    shares: Vec<keys::shamir::UnsealShare>,
    started: std::time::Instant,
}

async fn storm_fixture(db: TestDb) -> Storm {
    let dir = tempfile::tempdir().unwrap();
    let cp = Checkpointer::for_tests(dir.path(), 9, 10_000);
    let svc = Service::new(db.store.clone(), Arc::new(SystemClock), cp);
    let shares = svc.init_keystore(&alice(), 2, 2).await.unwrap();
    drop(svc);
    let postgres = db.sqlite_path.is_none();
    let config = db.config();
    let f = fixture_on(db, dir, &shares).await;
    let other = if postgres {
        let store = storage::Store::connect(&config).await.unwrap();
        let cp = Checkpointer::for_tests(f._dir.path().join("second").as_path(), 9, 10_000);
        let other = Service::new(store, Arc::new(SystemClock), cp);
        other.set_instance("second-server").unwrap();
        for s in &shares {
            other.unseal(&Actor::Anonymous, s).await.unwrap();
        }
        other.add_btc_network(regtest(None));
        other.set_governance(service::governance::GovernanceConfig::single_admin());
        other
    } else {
        f.svc.clone()
    };
    Storm {
        f,
        other,
        shares,
        started: std::time::Instant::now(),
    }
}

impl Storm {
    fn servers(&self) -> &'static str {
        if self.f.db.sqlite_path.is_some() {
            "sqlite, one server"
        } else {
            "postgres, two servers"
        }
    }

    fn report(&self, storm: &str, rounds: u64) {
        eprintln!(
            "storm {storm} on {}: {rounds} rounds, {rounds} single successes, 0 violations, {:.1} s",
            self.servers(),
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Exactly one of the two succeeded; the other failed with a typed error
/// (not a raw database error). Returns the success.
fn one_of<T: std::fmt::Debug>(
    what: &str,
    a: Result<T, ServiceError>,
    b: Result<T, ServiceError>,
) -> (T, ServiceError) {
    let (won, lost) = match (a, b) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        (a, b) => panic!("{what}: not exactly one success: {a:?} / {b:?}"),
    };
    assert!(
        !matches!(
            lost,
            ServiceError::Storage(StorageError::Database(_) | StorageError::Corrupt(_))
        ),
        "{what}: the loser got an untyped error: {lost:?}"
    );
    (won, lost)
}

fn request(f: &Fixture, amount: &str, external_id: Option<String>) -> TransferRequest {
    TransferRequest {
        wallet: f.payer.wallet(),
        asset: btc(),
        amount: amount.into(),
        destination: PAYEE.into(),
        reference: None,
        external_id,
        priority: Default::default(),
        depends_on: None,
        kind: domain::TransferKind::Withdrawal,
        source: None,
    }
}

/// Funds the wallet well past what a storm's payouts need.
async fn fund(s: &Storm) {
    s.f.svc
        .btc_record_deposit(
            &alice(),
            REGTEST,
            s.f.ecdsa,
            &"f0".repeat(32),
            0,
            2_000_000_000,
        )
        .await
        .unwrap();
}

/// The same request with the same `Idempotency-Key`, twice at once: one
/// transfer, made once and replayed once.
async fn storm_of_idempotent_retries_makes_one_transfer(s: Storm) {
    let n = rounds();
    fund(&s).await;
    let who = s.f.payer.initiator().await;
    let a =
        s.f.svc
            .authorize::<perm::InitiateTransfer>(&who, Some(s.f.payer.wallet()))
            .unwrap();
    let b = s
        .other
        .authorize::<perm::InitiateTransfer>(&who, Some(s.f.payer.wallet()))
        .unwrap();
    for round in 0..n {
        let req = request(&s.f, "0.0001", None);
        let key = format!("storm-{round}");
        let (x, y) = tokio::join!(
            a.submit_once(&req, Some(&key)),
            b.submit_once(&req, Some(&key))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x.transfer.id, y.transfer.id, "round {round}: one transfer");
        assert!(
            x.replayed != y.replayed,
            "round {round}: made once, replayed once"
        );
    }
    let made =
        s.f.db
            .store
            .query_text("SELECT CAST(COUNT(*) AS TEXT) FROM transfers")
            .await
            .unwrap();
    assert_eq!(made, n.to_string());
    s.report("idempotency_key", n);
}

/// An approver registered for the wallet and a policy that needs their
/// approval for everything: their key, their API key's id.
async fn approver(s: &Storm) -> (SigningKey, SigningKey, String) {
    let key = SigningKey::from_bytes(&[61; 32]);
    let row =
        s.f.svc
            .console_register_api_key(
                &alice(),
                "approver",
                &key.verifying_key().to_bytes(),
                &[Grant::global(Role::Viewer)],
                30,
                None,
            )
            .await
            .unwrap();
    let principal = format!("api-key:{}", row.id);
    let wallet = Scope::Wallet(s.f.payer.wallet()).to_string();
    for change in [
        Change::Grant {
            principal: principal.clone(),
            role: "approver".into(),
            scope: wallet,
            until_ms: None,
        },
        Change::RegisterApproverKey {
            principal: principal.clone(),
            public_key: hex::encode(SigningKey::from_bytes(&[62; 32]).verifying_key().to_bytes()),
        },
        Change::SetPolicy {
            document: format!(
                "[[groups]]\nname = \"approvers\"\nmembers = [\"{principal}\"]\n\n[[rules]]\n\
                 name = \"all\"\naction = \"require_approval\"\n\
                 approvals = {{ group = \"approvers\", threshold = 1 }}\n"
            ),
        },
    ] {
        assert_eq!(s.f.payer.govern(change).await.proposal.state, "applied");
    }
    (key, SigningKey::from_bytes(&[62; 32]), row.id.to_string())
}

/// One approver approves the same transfer twice at once: one approval
/// counts, the other is `already voted`.
async fn storm_of_double_votes_counts_one_approval(s: Storm) {
    let n = rounds();
    fund(&s).await;
    let (key, signing, id) = approver(&s).await;
    let who = s.f.payer.signed_as(&key, &id).await.unwrap();
    let wallet = Some(s.f.payer.wallet());
    let a =
        s.f.svc
            .authorize::<perm::ApproveTransfer>(&who, wallet)
            .unwrap();
    let b = s
        .other
        .authorize::<perm::ApproveTransfer>(&who, wallet)
        .unwrap();
    for round in 0..n {
        let t = s.f.payer.submit(&btc(), PAYEE, "0.0001").await.unwrap();
        let expires = Timestamp::from_millis(s.f.svc.now().as_millis() + 3_600_000);
        let statement = service::transfers::statement_of(&t, Vote::Approve, expires).unwrap();
        let vote = VoteRequest {
            vote: Vote::Approve,
            expires_at: expires,
            signature: policy::ApprovalSignature::Ed25519(
                signing.sign(&statement.message()).to_bytes(),
            ),
            reason: None,
        };
        let (x, y) = tokio::join!(a.vote(t.id, &vote), b.vote(t.id, &vote));
        let (won, _) = one_of(&format!("vote {round}"), x, y);
        assert_eq!(won.state, service::transfers::state::QUEUED);
    }
    let approvals =
        s.f.db
            .store
            .query_text("SELECT CAST(COUNT(*) AS TEXT) FROM transfer_approvals")
            .await
            .unwrap();
    assert_eq!(approvals, n.to_string(), "one approval per transfer");
    s.report("approval", n);
}

/// The admin's vote on a proposal, twice at once: it counts once.
async fn storm_of_double_proposal_votes_counts_one(s: Storm) {
    let n = rounds();
    let admin = s.f.payer.admin().await;
    let writer = s.f.payer.policy_admin().await;
    let key = s.f.payer.admin_key();
    for round in 0..n {
        let p =
            s.f.svc
                .propose(
                    &writer,
                    Change::SetPrice {
                        asset: btc().to_string(),
                        usd: format!("{}.5", 60_000 + round),
                    },
                )
                .await;
        let p = match p {
            Ok(p) => p,
            Err(e) => panic!("propose: {e}"),
        };
        let sig = service::testing::sign_vote(&key, &p, true);
        let (x, y) = tokio::join!(
            s.f.svc.vote(&admin, &p.proposal.id, true, Some(sig)),
            s.other.vote(&admin, &p.proposal.id, true, Some(sig))
        );
        let (won, _) = one_of(&format!("proposal vote {round}"), x, y);
        assert_eq!(won.proposal.state, "applied");
    }
    s.report("proposal_vote", n);
}

/// One deposit recorded by two servers at once: credited once; the other
/// is a conflict.
async fn storm_of_one_deposit_credited_twice_credits_it_once(s: Storm) {
    let n = rounds();
    for round in 0..n {
        let txid = format!("{:064x}", 0xd000_0000u64 + round);
        let who = alice();
        let (x, y) = tokio::join!(
            s.f.svc
                .btc_record_deposit(&who, REGTEST, s.f.ecdsa, &txid, 0, 10_000),
            s.other
                .btc_record_deposit(&who, REGTEST, s.f.ecdsa, &txid, 0, 10_000)
        );
        let (_, lost) = one_of(&format!("deposit {round}"), x, y);
        assert!(
            matches!(lost, ServiceError::Storage(StorageError::Conflict { .. })),
            "{lost:?}"
        );
    }
    let (utxos, sum) = (
        s.f.db
            .store
            .query_text("SELECT CAST(COUNT(*) AS TEXT) FROM btc_utxos")
            .await
            .unwrap(),
        s.f.db
            .store
            .query_text("SELECT CAST(SUM(value_sat) AS TEXT) FROM btc_utxos")
            .await
            .unwrap(),
    );
    assert_eq!(utxos, n.to_string());
    assert_eq!(sum, (n * 10_000).to_string(), "each credited once");
    s.report("deposit", n);
}

/// Two payouts planned by two servers at once, each wanting the wallet's
/// larger output first: every output is reserved by one send only (each
/// planner wins a different output, or one batch takes both); a payout
/// whose planner lost the race is back in the queue with why, to be tried
/// again — nothing spent twice, nothing lost.
async fn storm_of_payouts_racing_for_one_output_spends_it_once(s: Storm) {
    let n = rounds();
    let mut lost = std::collections::BTreeSet::new();
    for round in 0..n {
        let txid = |k: u64| format!("{:064x}", 0xe000_0000u64 + 2 * round + k);
        for (k, sat) in [(0, 60_001), (1, 60_000)] {
            s.f.svc
                .btc_record_deposit(&alice(), REGTEST, s.f.ecdsa, &txid(k), 0, sat)
                .await
                .unwrap();
        }
        let first = s.f.payer.submit(&btc(), PAYEE, "0.0004").await.unwrap();
        let second = s.f.payer.submit(&btc(), PAYEE, "0.0004").await.unwrap();
        let (x, y) = tokio::join!(s.f.svc.execute_due(), s.other.execute_due());
        x.unwrap();
        y.unwrap();
        let mut sends = std::collections::BTreeSet::new();
        for id in [first.id, second.id] {
            let t = s.f.db.store.transfer(id).await.unwrap();
            match t.btc_send_id {
                Some(send) => {
                    sends.insert(send);
                }
                None => {
                    // Lost the race for its inputs: back in the queue with
                    // why, to be tried again after its backoff.
                    assert_eq!(t.state, service::transfers::state::QUEUED, "round {round}");
                    let why = t.last_error.unwrap_or_default();
                    assert!(!why.is_empty(), "round {round}: {id} unplanned, no reason");
                    lost.insert(why);
                }
            }
        }
        assert!(!sends.is_empty(), "round {round}: one payout planned");
        for k in [0, 1] {
            let holder =
                s.f.db
                    .store
                    .query_text(&format!(
                        "SELECT COALESCE(reserved_by, '') FROM btc_utxos WHERE txid = '{}'",
                        txid(k)
                    ))
                    .await
                    .unwrap();
            assert!(
                holder.is_empty() || sends.contains(&holder),
                "round {round}: output {k} held by {holder:?}, not one of {sends:?}"
            );
        }
        if sends.len() == 2 {
            // Two sends: each took one output of its own.
            for send in &sends {
                let held = s
                    .f
                    .db
                    .store
                    .query_text(&format!(
                        "SELECT CAST(COUNT(*) AS TEXT) FROM btc_utxos WHERE reserved_by = '{send}'"
                    ))
                    .await
                    .unwrap();
                assert_eq!(held, "1", "round {round}: {send}");
            }
        }
        for id in [first.id, second.id] {
            if s.f
                .db
                .store
                .transfer(id)
                .await
                .unwrap()
                .btc_send_id
                .is_none()
            {
                let who = s.f.payer.initiator().await;
                let can =
                    s.f.svc
                        .authorize::<perm::InitiateTransfer>(&who, Some(s.f.payer.wallet()))
                        .unwrap();
                can.cancel_own(id).await.unwrap();
            }
        }
    }
    if !lost.is_empty() {
        eprintln!("storm outpoint: the losers' reasons: {lost:?}");
    }
    s.report("outpoint", n);
}

/// The same unseal share given twice at once (a sealed server): it counts
/// once — the other is refused as a share already given — and the second
/// holder's share then unseals. Each server keeps its own unseal progress,
/// so this storm is one server's on both databases.
async fn storm_of_one_unseal_share_given_twice_counts_it_once(s: Storm) {
    let n = rounds();
    let svc = &s.f.svc;
    for round in 0..n {
        svc.seal(&alice()).await.unwrap();
        let share = &s.shares[usize::try_from(round % 2).unwrap()];
        let (x, y) = tokio::join!(
            svc.unseal(&Actor::Anonymous, share),
            svc.unseal(&Actor::Anonymous, share)
        );
        let (won, _) = one_of(&format!("unseal {round}"), x, y);
        assert_eq!(won, service::SealStatus::Sealed { have: 1, need: 2 });
        let other = &s.shares[usize::try_from((round + 1) % 2).unwrap()];
        assert_eq!(
            svc.unseal(&Actor::Anonymous, other).await.unwrap(),
            service::SealStatus::Unsealed
        );
    }
    s.report("unseal_share", n);
}
