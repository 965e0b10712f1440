//! Policy, approvals, governance by quorum and freezes, end to end on a real
//! anvil node, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::atomic::Ordering;

use chain_eth::fees::Urgency;
use chain_eth::{EthAddress, FeeCaps, TxPlan};
use chain_eth_client::testing::{CHAIN_ID, DevWallet};
use domain::{Actor, AssetId, Grant, KeyAlgorithm, KeyBackend, KeyPurpose, Role, Scope, Timestamp};
use ed25519_dalek::SigningKey;
use policy::Vote;
use service::eth::{EthNetwork, EthNetworkConfig};
use service::governance::{Change, FreezeScope};
use service::identity::{Principal, perm};
use service::transfers::{ApprovalError, Priority, TransferRequest, state};
use service::{Checkpointer, NewKey, Service, ServiceError};

#[path = "support/custody.rs"]
mod custody;
use custody::*;

storage::on_both!(
    fixture;
    approvals_governance_and_freeze,
    a_freeze_between_approval_and_signing_stops_the_signature,
    approvals_that_no_longer_stand_are_caught_before_signing,
    a_policy_change_racing_transfers_never_reaches_judged_ones,
    the_circuit_breaker_freezes_the_wallet,
    new_addresses_cool_off_before_the_policy_trusts_them,
    only_current_admins_make_the_quorum,
    retries_with_one_idempotency_key_make_one_transfer,
    approved_transfers_are_carried_out_to_completion,
    concurrent_withdrawals_never_commit_more_than_the_wallet_holds,
    the_queue_orders_waits_holds_and_retries,
    a_plan_that_differs_from_the_approval_is_never_signed,
    bitcoin_payouts_are_batched_signed_and_verified,
    a_restore_reconciles_before_signing_and_holds_what_the_chain_cannot_settle,
    a_sped_up_or_cancelled_transfer_follows_its_replacement,
    deposits_count_only_at_the_confirmation_depth,
    wallets_open_accounts_with_deposit_addresses,
    deposits_are_seen_then_credited_or_reorged,
    hd_accounts_hand_out_fresh_deposit_addresses,
    taproot_hd_accounts_pay_out_under_core,
    a_payout_denied_while_it_waits_for_its_batch_is_never_paid,
    an_hd_account_rotates_to_a_new_one_and_sweeps_every_child_output,
    destinations_are_screened_against_the_deny_list_and_look_alikes,
    small_outputs_are_consolidated_under_policy_while_fees_are_low,
    ethereum_hd_deposit_addresses_are_swept_into_their_sender,
    fee_caps_and_endpoints_are_governed,
);

storage::on_both!(
    fixture_hsm;
    a_cold_multisig_withdrawal_needs_its_offline_signature,
);

storage::on_both!(
    fixture_cold_eth;
    a_cold_ether_withdrawal_is_signed_offline_and_broadcast,
);

async fn approvals_governance_and_freeze(f: Fixture) {
    // Governance: a policy admin proposes, two admins make the quorum.
    let who = f.who(&f.policy_admin).await;
    let p = f
        .svc
        .propose(
            &who,
            Change::SetPolicy {
                document: policy_doc(&f.b, &f.c),
            },
        )
        .await
        .unwrap();
    assert_eq!(p.proposal.state, "open");
    // Only admins vote; the policy admin cannot approve their own proposal.
    assert!(
        f.gov_vote(&f.policy_admin, &who, &p.proposal.id, true)
            .await
            .is_err()
    );
    let a1 = f.who(&f.admin1).await;
    assert_eq!(
        f.gov_vote(&f.admin1, &a1, &p.proposal.id, true)
            .await
            .unwrap()
            .proposal
            .state,
        "open"
    );
    // The same admin counts once.
    assert!(
        f.gov_vote(&f.admin1, &a1, &p.proposal.id, true)
            .await
            .is_err()
    );
    assert!(f.db.store.current_policy().await.unwrap().is_none());
    let a2 = f.who(&f.admin2).await;
    assert_eq!(
        f.gov_vote(&f.admin2, &a2, &p.proposal.id, true)
            .await
            .unwrap()
            .proposal
            .state,
        "applied"
    );
    assert_eq!(
        f.db.store.current_policy().await.unwrap().unwrap().version,
        1
    );

    // Any admin can veto.
    let p = f
        .svc
        .propose(
            &f.who(&f.policy_admin).await,
            Change::SetPolicy {
                document: "rules = []".into(),
            },
        )
        .await
        .unwrap();
    let v = f
        .gov_vote(&f.admin2, &f.who(&f.admin2).await, &p.proposal.id, false)
        .await
        .unwrap();
    assert_eq!(v.proposal.state, "vetoed");
    assert!(
        f.gov_vote(&f.admin1, &f.who(&f.admin1).await, &p.proposal.id, true)
            .await
            .is_err()
    );
    assert_eq!(
        f.db.store.current_policy().await.unwrap().unwrap().version,
        1
    );
    // An initiator cannot propose a role change.
    let i = f.who(&f.initiator).await;
    assert!(
        f.svc
            .propose(
                &i,
                Change::Grant {
                    principal: Fixture::actor(&f.initiator),
                    role: "admin".into(),
                    scope: "global".into(),
                    until_ms: None
                }
            )
            .await
            .is_err()
    );

    f.register_approvers().await;

    // Small: allowed at once. Large: two approvals, then a time lock.
    let small = f.submit(&f.initiator, BOB, "0.5").await.unwrap();
    assert_eq!(small.state, state::QUEUED);
    let who = f.who(&f.initiator).await;
    let dry = f
        .svc
        .authorize::<perm::InitiateTransfer>(&who, Some(f.wallet))
        .unwrap()
        .dry_run(&f.request(BOB, "5"))
        .await
        .unwrap();
    assert_eq!(dry.policy_version, Some(1));
    assert_eq!(dry.decision.rule.as_deref(), Some("large"));
    // Dry-run refuses what the request would refuse: the wallet's own sender.
    let own = f
        .svc
        .authorize::<perm::InitiateTransfer>(&who, Some(f.wallet))
        .unwrap()
        .dry_run(&f.request(&f.from.to_string(), "1"))
        .await;
    assert!(
        matches!(&own, Err(ServiceError::Invalid(m)) if m.contains("own sender")),
        "{own:?}"
    );
    assert_eq!(
        f.db.store
            .transfers_in(state::PENDING_APPROVAL, 10)
            .await
            .unwrap()
            .len(),
        0,
        "a dry run stores nothing"
    );

    let t = f.submit(&f.initiator, BOB, "5").await.unwrap();
    assert_eq!(t.state, state::PENDING_APPROVAL);
    let other = f.submit(&f.initiator, BOB, "6").await.unwrap();

    // The initiator holds no approver role at all.
    let i = f.who(&f.initiator).await;
    assert!(
        f.svc
            .authorize::<perm::ApproveTransfer>(&i, Some(f.wallet))
            .is_err()
    );
    // A signature made for another transfer is not an approval of this one.
    assert_eq!(
        approval_err(
            f.vote_as(&f.b, &t, Vote::Approve, f.soon(), Some(&other))
                .await
        ),
        ApprovalError::BadSignature
    );
    // Expired, or too far ahead.
    let past = Timestamp::from_millis(f.now().as_millis() - 1);
    assert_eq!(
        approval_err(f.vote_as(&f.b, &t, Vote::Approve, past, None).await),
        ApprovalError::Expired
    );
    let far = Timestamp::from_millis(f.now().as_millis() + 48 * 3_600_000);
    assert!(matches!(
        f.vote_as(&f.b, &t, Vote::Approve, far, None).await,
        Err(ServiceError::Invalid(_))
    ));

    let after_b = f
        .vote_as(&f.b, &t, Vote::Approve, f.soon(), None)
        .await
        .unwrap();
    assert_eq!(after_b.state, state::PENDING_APPROVAL);
    assert_eq!(
        approval_err(f.vote_as(&f.b, &t, Vote::Approve, f.soon(), None).await),
        ApprovalError::AlreadyVoted
    );
    let after_c = f
        .vote_as(&f.c, &t, Vote::Approve, f.soon(), None)
        .await
        .unwrap();
    assert_eq!(after_c.state, state::TIME_LOCKED);
    // Not yet: the lock holds.
    assert_eq!(f.svc.advance_transfers().await.unwrap(), 0);
    assert!(f.svc.execute_transfer(t.id, Urgency::Normal).await.is_err());
    f.advance(61_000);
    assert_eq!(f.svc.advance_transfers().await.unwrap(), 1);
    assert_eq!(
        f.db.store.transfer(t.id).await.unwrap().state,
        state::QUEUED
    );

    // Frozen: nothing is sent. One security officer suffices.
    let so = f.who(&f.officer).await;
    let freeze = f
        .svc
        .authorize::<perm::Freeze>(&so, None)
        .unwrap()
        .freeze(FreezeScope::Global, "incident drill")
        .await
        .unwrap();
    assert!(matches!(
        f.svc.execute_transfer(t.id, Urgency::Normal).await,
        Err(ServiceError::Frozen(_))
    ));
    assert!(matches!(
        f.submit(&f.initiator, BOB, "0.1").await,
        Err(ServiceError::Frozen(_))
    ));
    assert_eq!(
        f.db.store.transfer(t.id).await.unwrap().state,
        state::QUEUED
    );
    // The queue meets the freeze: the attempt backs off.
    f.svc.execute_due().await.unwrap();
    let held = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(held.state, state::QUEUED);
    assert!(
        held.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("frozen (")),
        "{held:?}"
    );
    assert!(held.next_attempt_at > f.svc.now(), "{held:?}");
    // The officer cannot release it alone: release is a proposal under quorum.
    let rel = f
        .svc
        .propose(
            &f.who(&f.officer).await,
            Change::ReleaseFreeze {
                freeze_id: freeze.freeze.id.clone(),
                cool_down_s: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(rel.proposal.state, "open");
    assert!(f.svc.frozen(Some(f.wallet), None).await.unwrap().is_some());
    f.gov_vote(&f.admin1, &f.who(&f.admin1).await, &rel.proposal.id, true)
        .await
        .unwrap();
    f.gov_vote(&f.admin2, &f.who(&f.admin2).await, &rel.proposal.id, true)
        .await
        .unwrap();
    assert!(f.svc.frozen(Some(f.wallet), None).await.unwrap().is_none());
    // Released: the transfer it held is due at once (not after its
    // backoff), and the next worker pass sends it.
    assert!(f.db.store.transfer(t.id).await.unwrap().next_attempt_at <= f.svc.now());
    assert!(f.svc.execute_due().await.unwrap().submitted >= 1);
    let sent = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(sent.state, state::BROADCASTING);
    let send =
        f.db.store
            .eth_send(sent.eth_send_id.as_deref().unwrap())
            .await
            .unwrap();
    assert_eq!(send.amount, 5 * ETHER);
    // Sent once only.
    assert!(f.svc.execute_transfer(t.id, Urgency::Normal).await.is_err());

    // Any single rejection ends a transfer.
    f.vote_as(&f.b, &other, Vote::Approve, f.soon(), None)
        .await
        .unwrap();
    assert_eq!(
        f.vote_as(&f.c, &other, Vote::Reject, f.soon(), None)
            .await
            .unwrap()
            .state,
        state::REJECTED
    );
    // Why, in its history.
    let history = f.db.store.transfer_history(other.id).await.unwrap();
    assert!(
        history
            .last()
            .is_some_and(|h| h.why == "rejected by an approver: not the invoice we agreed"),
        "{history:?}"
    );

    // Revoking an approver voids their pending approvals.
    let t3 = f.submit(&f.initiator, BOB, "7").await.unwrap();
    f.vote_as(&f.b, &t3, Vote::Approve, f.soon(), None)
        .await
        .unwrap();
    let row = f
        .govern(
            &f.admin1,
            Change::RevokeApproverKey {
                principal: Fixture::actor(&f.b),
            },
        )
        .await;
    assert_eq!(row.state, "applied");
    assert!(
        f.db.store.approvals(t3.id).await.unwrap()[0]
            .voided_at
            .is_some()
    );
    assert_eq!(
        f.vote_as(&f.c, &t3, Vote::Approve, f.soon(), None)
            .await
            .unwrap()
            .state,
        state::PENDING_APPROVAL
    );
    assert_eq!(
        approval_err(f.vote_as(&f.b, &t3, Vote::Approve, f.soon(), None).await),
        ApprovalError::NoApproverKey
    );

    // Self-approval: C initiates (given the role by governance) and may not approve.
    f.govern(
        &f.admin1,
        Change::Grant {
            principal: Fixture::actor(&f.c),
            role: "initiator".into(),
            scope: "global".into(),
            until_ms: None,
        },
    )
    .await;
    let own = f.submit(&f.c, BOB, "3").await.unwrap();
    assert_eq!(
        approval_err(f.vote_as(&f.c, &own, Vote::Approve, f.soon(), None).await),
        ApprovalError::OwnTransfer
    );

    // B registers a new key (a rotation, by proposal) and may vote again:
    // the voided vote is replaced, and t3 has its two approvals.
    let rotated = SigningKey::from_bytes(&[99; 32]);
    let row = f
        .govern(
            &f.admin1,
            Change::RegisterApproverKey {
                principal: Fixture::actor(&f.b),
                public_key: hex::encode(rotated.verifying_key().to_bytes()),
            },
        )
        .await;
    assert_eq!(row.state, "applied");
    // B's key is B's alone: registered for C as well, under any spelling,
    // it would count twice.
    let admin = f.who(&f.admin1).await;
    let again = f
        .svc
        .propose(
            &admin,
            Change::RegisterApproverKey {
                principal: Fixture::actor(&f.c),
                public_key: hex::encode(rotated.verifying_key().to_bytes()).to_uppercase(),
            },
        )
        .await;
    assert!(
        matches!(&again, Err(ServiceError::Conflict(m)) if m.contains("another principal")),
        "{again:?}"
    );
    // The old key no longer signs for B.
    assert_eq!(
        approval_err(f.vote_as(&f.b, &t3, Vote::Approve, f.soon(), None).await),
        ApprovalError::BadSignature
    );
    let t3_now = f
        .vote_with(&f.b, &rotated, &t3, Vote::Approve, f.soon(), None)
        .await
        .unwrap();
    assert_eq!(t3_now.state, state::TIME_LOCKED);
    // A transfer whose approval window has passed takes no vote, even
    // before the worker marks it lapsed.
    let late = f.submit(&f.initiator, BOB, "4").await.unwrap();
    f.advance(25 * 3_600_000);
    assert_eq!(
        approval_err(f.vote_as(&f.c, &late, Vote::Approve, f.soon(), None).await),
        ApprovalError::NotAwaiting("lapsed".into())
    );

    // Approvals that do not arrive in time: the transfer lapses.
    assert!(f.svc.advance_transfers().await.unwrap() >= 2);
    assert_eq!(
        f.db.store.transfer(late.id).await.unwrap().state,
        state::EXPIRED
    );
    assert_eq!(
        f.db.store.transfer(own.id).await.unwrap().state,
        state::EXPIRED
    );
    // t3 had its approvals: its time lock ended instead.
    assert_eq!(
        f.db.store.transfer(t3.id).await.unwrap().state,
        state::QUEUED
    );
    // Its approvals (an hour) ended long ago, but were in force when its
    // time lock began: the delay they agreed to does not expire them.
    let send = f
        .svc
        .execute_transfer(t3.id, Urgency::Normal)
        .await
        .unwrap();
    assert_ne!(send.state, service::eth::state::SIGNING);
    let actions = f.actions().await;
    for a in [
        "proposal.created",
        "proposal.vetoed",
        "proposal.applied",
        "transfer.judged",
        "transfer.approved",
        "transfer.rejected",
        "freeze.placed",
        "eth.send.planned",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
}

async fn a_freeze_between_approval_and_signing_stops_the_signature(f: Fixture) {
    f.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
        .await;
    let t = f.submit(&f.initiator, BOB, "1").await.unwrap();
    assert_eq!(t.state, state::QUEUED);
    // Sealed: the send is planned (and the transfer marked submitted) but
    // cannot be signed yet.
    f.svc.seal(&console()).await.unwrap();
    let send = f.svc.execute_transfer(t.id, Urgency::Normal).await.unwrap();
    assert_eq!(send.state, service::eth::state::SIGNING);
    // The freeze arrives now, between approval and signature.
    let freeze = f
        .svc
        .console_freeze(
            &console(),
            FreezeScope::Wallet(f.wallet),
            "suspicious destination",
        )
        .await
        .unwrap();
    for s in &f.shares {
        f.svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    // The resumer tries: the check right before signing refuses.
    assert_eq!(f.svc.eth_resume().await.unwrap(), 0);
    assert_eq!(
        f.db.store.eth_send(&send.id).await.unwrap().state,
        service::eth::state::SIGNING
    );
    // Released by the quorum (with no cool-down): it is signed and sent.
    let rel = f
        .govern(
            &f.officer,
            Change::ReleaseFreeze {
                freeze_id: freeze.freeze.id,
                cool_down_s: 0,
            },
        )
        .await;
    assert_eq!(rel.state, "applied");
    f.svc.eth_resume().await.unwrap();
    assert_ne!(
        f.db.store.eth_send(&send.id).await.unwrap().state,
        service::eth::state::SIGNING
    );
}

/// Approvals are checked again by the signing gate, whatever the state: a
/// transfer in `signing` whose approver key is revoked, whose approval
/// expired, or whose approver left the group, is not signed; its nonce is
/// given back and it waits for approvals again.
async fn approvals_that_no_longer_stand_are_caught_before_signing(f: Fixture) {
    f.register_approvers().await;
    let doc = |members: &[&Person]| {
        let members: Vec<String> = members
            .iter()
            .map(|p| format!("\"{}\"", Fixture::actor(p)))
            .collect();
        format!(
            "[[groups]]\nname = \"approvers\"\nmembers = [{}]\n\n[[rules]]\nname = \"two\"\naction = \"require_approval\"\napprovals = {{ group = \"approvers\", threshold = 2 }}\n",
            members.join(", ")
        )
    };
    f.set_policy(&doc(&[&f.b, &f.c])).await;
    let hours = |h: i64| Timestamp::from_millis(f.now().as_millis() + h * 3_600_000);
    let c_key = SigningKey::from_bytes(&[77; 32]);
    let approve = async |t: &storage::TransferRow, b_until: Timestamp, c: &SigningKey| {
        f.vote_as(&f.b, t, Vote::Approve, b_until, None)
            .await
            .unwrap();
        f.vote_with(&f.c, c, t, Vote::Approve, hours(12), None)
            .await
            .unwrap()
    };
    let t = f.submit(&f.initiator, BOB, "2").await.unwrap();
    assert_eq!(t.state, state::PENDING_APPROVAL);
    assert_eq!(
        approve(&t, hours(12), &f.c.approver).await.state,
        state::QUEUED
    );

    // 1. Planned while sealed (its nonce reserved; unsealed again, it waits
    //    in `signing` for the gate), then C's key is revoked.
    f.svc.seal(&console()).await.unwrap();
    let first = f.svc.execute_transfer(t.id, Urgency::Normal).await.unwrap();
    assert_eq!(first.state, service::eth::state::SIGNING);
    for s in &f.shares {
        f.svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    let revoked = f
        .govern(
            &f.admin1,
            Change::RevokeApproverKey {
                principal: Fixture::actor(&f.c),
            },
        )
        .await;
    assert_eq!(revoked.state, "applied");
    let now = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(now.state, state::PENDING_APPROVAL);
    assert_eq!(now.eth_send_id, None);
    assert_eq!(
        f.db.store.eth_send(&first.id).await.unwrap().state,
        "released"
    );
    let history = f.db.store.transfer_history(t.id).await.unwrap();
    let last = &history.last().unwrap().why;
    assert!(
        last.contains("nonce") && last.contains("given back"),
        "{last}"
    );

    // 2. Approved again (C's key back), planned again: the same nonce. Then
    //    B's approval expires before the gate signs.
    let row = f
        .govern(
            &f.admin1,
            Change::RegisterApproverKey {
                principal: Fixture::actor(&f.c),
                public_key: hex::encode(c_key.verifying_key().to_bytes()),
            },
        )
        .await;
    assert_eq!(row.state, "applied");
    assert_eq!(approve(&t, hours(1), &c_key).await.state, state::QUEUED);
    f.svc.seal(&console()).await.unwrap();
    let second = f.svc.execute_transfer(t.id, Urgency::Normal).await.unwrap();
    assert_eq!(second.nonce, first.nonce);
    f.advance(2 * 3_600_000);
    for s in &f.shares {
        f.svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    assert_eq!(f.svc.eth_resume().await.unwrap(), 0);
    let now = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(now.state, state::PENDING_APPROVAL);
    assert_eq!(
        f.db.store.eth_send(&second.id).await.unwrap().state,
        "released"
    );
    let history = f.db.store.transfer_history(t.id).await.unwrap();
    let last = &history.last().unwrap().why;
    assert!(last.contains("approval expired"), "{last}");
    // A new round: every earlier vote was voided with the quorum.
    assert!(
        f.db.store
            .approvals(t.id)
            .await
            .unwrap()
            .iter()
            .all(|a| a.voided_at.is_some())
    );

    // 3. Approved again; C leaves the group before the gate signs.
    assert_eq!(approve(&t, hours(12), &c_key).await.state, state::QUEUED);
    f.svc.seal(&console()).await.unwrap();
    let third = f.svc.execute_transfer(t.id, Urgency::Normal).await.unwrap();
    assert_eq!(third.nonce, first.nonce);
    for s in &f.shares {
        f.svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    f.set_policy(&doc(&[&f.b, &f.initiator])).await;
    assert_eq!(f.svc.eth_resume().await.unwrap(), 0);
    let history = f.db.store.transfer_history(t.id).await.unwrap();
    let last = &history.last().unwrap().why;
    assert!(last.contains("no longer in the group"), "{last}");
    assert_eq!(
        f.db.store.transfer(t.id).await.unwrap().state,
        state::PENDING_APPROVAL
    );

    // 4. With the group back, approved and signed at the nonce given back.
    f.set_policy(&doc(&[&f.b, &f.c])).await;
    assert_eq!(approve(&t, hours(12), &c_key).await.state, state::QUEUED);
    let sent = f.svc.execute_transfer(t.id, Urgency::Normal).await.unwrap();
    assert_eq!(sent.nonce, first.nonce);
    assert_ne!(sent.state, service::eth::state::SIGNING);
    let actions = f.actions().await;
    assert_eq!(
        actions.iter().filter(|a| *a == "eth.send.released").count(),
        3
    );
    assert!(!actions.iter().any(|a| a == "transfer.sign_refused"));
}

async fn a_policy_change_racing_transfers_never_reaches_judged_ones(f: Fixture) {
    f.set_policy("[[rules]]\nname = \"v1 allows\"\naction = \"allow\"\n")
        .await;
    f.register_approvers().await;
    let strict = policy_doc(&f.b, &f.c).replace("at_most = \"1\"", "at_most = \"0\"");
    let who = f.who(&f.policy_admin).await;
    let proposal = f
        .svc
        .propose(&who, Change::SetPolicy { document: strict })
        .await
        .unwrap();
    f.gov_vote(
        &f.admin1,
        &f.who(&f.admin1).await,
        &proposal.proposal.id,
        true,
    )
    .await
    .unwrap();
    let a2 = f.who(&f.admin2).await;
    let mut initiators = Vec::new();
    for _ in 0..8 {
        initiators.push(f.who(&f.initiator).await);
    }
    let svc = f.svc.clone();
    let pid = proposal.proposal.id.clone();
    let view = f.svc.proposal(&pid).await.unwrap();
    let sig = service::testing::sign_vote(&f.admin2.key, &view, true);
    let apply = tokio::spawn(async move { svc.vote(&a2, &pid, true, Some(sig)).await.unwrap() });
    let submits: Vec<_> = initiators
        .into_iter()
        .map(|who| {
            let svc = f.svc.clone();
            let (wallet, req) = (f.wallet, f.request(BOB, "2"));
            tokio::spawn(async move {
                let can = svc
                    .authorize::<perm::InitiateTransfer>(&who, Some(wallet))
                    .unwrap();
                can.submit(&req).await.unwrap()
            })
        })
        .collect();
    let applied = apply.await.unwrap();
    let mut rows = Vec::new();
    for s in submits {
        rows.push(s.await.unwrap());
    }
    assert_eq!(applied.proposal.state, "applied");
    // Each transfer was judged wholly under one version, and says which.
    for r in &rows {
        let expected = if r.policy_version == 1 {
            state::QUEUED
        } else {
            state::PENDING_APPROVAL
        };
        assert_eq!(r.state, expected, "{r:?}");
        assert_eq!(
            f.db.store.transfer(r.id).await.unwrap().state,
            expected,
            "the change never reaches a judged transfer"
        );
    }
    // And after the change, new transfers meet the new version.
    assert_eq!(
        f.submit(&f.initiator, BOB, "2")
            .await
            .unwrap()
            .policy_version,
        2
    );
}

async fn the_circuit_breaker_freezes_the_wallet(f: Fixture) {
    f.set_policy(
        "[[breakers]]\nname = \"hot eth\"\nseconds = 3600\nasset = \"eip155:31337/native\"\nmax = \"3\"\n\n[[rules]]\nname = \"all\"\naction = \"allow\"\n",
    )
    .await;
    assert_eq!(
        f.submit(&f.initiator, BOB, "2").await.unwrap().state,
        state::QUEUED
    );
    let tripped = f.submit(&f.initiator, BOB, "1.5").await.unwrap();
    assert_eq!(tripped.state, state::BLOCKED);
    assert!(tripped.decision.contains("hot eth"));
    let frozen = f.svc.frozen(Some(f.wallet), None).await.unwrap().unwrap();
    assert_eq!(frozen.scope, format!("wallet:{}", f.wallet));
    assert!(matches!(
        f.submit(&f.initiator, BOB, "0.1").await,
        Err(ServiceError::Frozen(_))
    ));
    assert!(f.actions().await.iter().any(|a| a == "freeze.placed"));
}

async fn new_addresses_cool_off_before_the_policy_trusts_them(f: Fixture) {
    f.set_policy(
        "[[rules]]\nname = \"address book only\"\ndestinations = [\"whitelisted\"]\naddress_groups = [\"payroll\"]\naction = \"allow\"\n",
    )
    .await;
    let row = f
        .govern(
            &f.policy_admin,
            Change::AddAddress {
                network: format!("eip155:{CHAIN_ID}"),
                address: CAROL.into(),
                label: "Carol".into(),
                group: Some("payroll".into()),
            },
        )
        .await;
    assert_eq!(row.state, "applied");
    // A one-case or mistyped address is refused at proposal time.
    let who = f.who(&f.policy_admin).await;
    assert!(matches!(
        f.svc
            .propose(
                &who,
                Change::AddAddress {
                    network: format!("eip155:{CHAIN_ID}"),
                    address: CAROL.to_lowercase(),
                    label: "x".into(),
                    group: None
                }
            )
            .await,
        Err(ServiceError::Invalid(_))
    ));
    assert_eq!(
        f.submit(&f.initiator, CAROL, "1").await.unwrap().state,
        state::BLOCKED
    );
    f.advance(24 * 3_600_000 + 1);
    // With a price known, each transfer's dollar value is recorded for
    // later USD windows, even under a policy that does not ask for it.
    let eth = AssetId::new(
        domain::Network::Evm { chain_id: CHAIN_ID },
        domain::AssetKind::Native,
    )
    .unwrap();
    // A price moves every USD limit: a proposal under the quorum, like the
    // policy (a zero price, which would switch USD limits off, is refused).
    let who = f.who(&f.policy_admin).await;
    assert!(
        f.svc
            .propose(
                &who,
                Change::SetPrice {
                    asset: eth.to_string(),
                    usd: "0".into(),
                },
            )
            .await
            .is_err()
    );
    let priced = f
        .govern(
            &f.policy_admin,
            Change::SetPrice {
                asset: eth.to_string(),
                usd: "3000.5".into(),
            },
        )
        .await;
    assert_eq!(priced.state, "applied");
    let priced = f.submit(&f.initiator, CAROL, "0.5").await.unwrap();
    assert_eq!(priced.usd_micro, Some(1_500_250_000));
    assert_eq!(
        f.submit(&f.initiator, CAROL, "1").await.unwrap().state,
        state::QUEUED
    );
    assert_eq!(
        f.submit(&f.initiator, BOB, "1").await.unwrap().state,
        state::BLOCKED
    );
    // One case (no checksum): taken only as the book holds the entry, byte
    // for byte (lower case); the same address in upper case, or one not
    // in the book, is refused before anything is recorded.
    let lower = f
        .submit(&f.initiator, &CAROL.to_lowercase(), "1")
        .await
        .unwrap();
    assert_eq!(lower.state, state::QUEUED);
    assert!(lower.destination.eq_ignore_ascii_case(CAROL));
    let upper = format!("0x{}", CAROL[2..].to_uppercase());
    for refused in [upper, BOB.to_lowercase()] {
        match f.submit(&f.initiator, &refused, "1").await {
            Err(ServiceError::Invalid(m)) => assert!(m.contains("no checksum"), "{m}"),
            other => panic!("{refused}: {other:?}"),
        }
    }
    // Proposals page newest first, after the last of each page.
    let all = f.svc.proposals(None, 500).await.unwrap();
    assert!(all.len() >= 3, "{}", all.len());
    let mut paged: Vec<String> = Vec::new();
    loop {
        let page = f
            .svc
            .proposals(paged.last().map(String::as_str), 2)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        paged.extend(page.into_iter().map(|p| p.id));
    }
    assert_eq!(paged, all.into_iter().map(|p| p.id).collect::<Vec<_>>());
}

async fn only_current_admins_make_the_quorum(f: Fixture) {
    // Unconfigured governance applies nothing and judges nothing.
    let bare = Service::new(
        f.db.store.clone(),
        f.clock.clone(),
        Checkpointer::for_tests(f._dir.path(), 8, 1000),
    );
    let who = f.who(&f.policy_admin).await;
    assert!(matches!(
        bare.propose(
            &who,
            Change::SetPolicy {
                document: "rules = []".into()
            }
        )
        .await,
        Err(ServiceError::GovernanceNotConfigured)
    ));
    let i = f.who(&f.initiator).await;
    let can = bare
        .authorize::<perm::InitiateTransfer>(&i, Some(f.wallet))
        .unwrap();
    assert!(matches!(
        can.submit(&f.request(BOB, "1")).await,
        Err(ServiceError::GovernanceNotConfigured)
    ));

    // A third admin (still the bootstrap: nothing has applied), so that
    // revoking admin1's key leaves the quorum's two signing keys.
    let third = SigningKey::from_bytes(&[33; 32]);
    let third = f
        .svc
        .console_register_api_key(
            &console(),
            "admin3",
            &third.verifying_key().to_bytes(),
            &[Grant::global(Role::Admin)],
            30,
            None,
        )
        .await
        .unwrap();
    // admin1 proposes and approves, then their key is revoked: admin2's
    // approval alone is one of two.
    let a1 = f.who(&f.admin1).await;
    let p = f
        .svc
        .propose(
            &a1,
            Change::RevokeApproverKey {
                principal: Fixture::actor(&f.b),
            },
        )
        .await
        .unwrap();
    assert_eq!(p.proposal.state, "open");
    f.gov_vote(&f.admin1, &a1, &p.proposal.id, true)
        .await
        .unwrap();
    let a2 = f.who(&f.admin2).await;
    let keys = f.svc.authorize::<perm::ManageApiKeys>(&a2, None).unwrap();
    keys.revoke_api_key(f.admin1.id.parse().unwrap())
        .await
        .unwrap();
    // Not the next one: governance could not act again.
    assert!(matches!(
        keys.revoke_api_key(third.id).await,
        Err(ServiceError::Conflict(m)) if m.contains("quorum")
    ));
    let v = f
        .gov_vote(&f.admin2, &a2, &p.proposal.id, true)
        .await
        .unwrap();
    assert_eq!(
        v.proposal.state, "open",
        "a revoked admin key's vote lapses"
    );
    // A decided proposal takes no more votes: a conflict.
    let v = f
        .gov_vote(&f.admin2, &a2, &p.proposal.id, false)
        .await
        .unwrap();
    assert_eq!(v.proposal.state, "vetoed");
    assert!(matches!(
        f.gov_vote(&f.admin2, &a2, &p.proposal.id, true).await,
        Err(ServiceError::Conflict(_))
    ));
}

async fn retries_with_one_idempotency_key_make_one_transfer(f: Fixture) {
    f.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
        .await;
    // 64 concurrent requests with one key: one transfer, the rest replays.
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let who = f.who(&f.initiator).await;
        let svc = f.svc.clone();
        let (wallet, req) = (f.wallet, f.request(BOB, "0.25"));
        tasks.push(tokio::spawn(async move {
            let can = svc
                .authorize::<perm::InitiateTransfer>(&who, Some(wallet))
                .unwrap();
            can.submit_once(&req, Some("order-1234")).await.unwrap()
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut fresh = 0;
    for t in tasks {
        let s = t.await.unwrap();
        ids.insert(s.transfer.id);
        fresh += usize::from(!s.replayed);
    }
    assert_eq!(ids.len(), 1, "one transfer");
    assert_eq!(fresh, 1, "made once, replayed 63 times");
    assert_eq!(
        f.db.store
            .transfers_in(state::QUEUED, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    // The same key with another request is refused, and stores nothing.
    let who = f.who(&f.initiator).await;
    let can = f
        .svc
        .authorize::<perm::InitiateTransfer>(&who, Some(f.wallet))
        .unwrap();
    assert!(matches!(
        can.submit_once(&f.request(BOB, "0.26"), Some("order-1234"))
            .await,
        Err(ServiceError::IdempotencyMismatch)
    ));
    assert!(matches!(
        can.submit_once(&f.request(BOB, "0.25"), Some("bad key with spaces"))
            .await,
        Err(ServiceError::Invalid(_))
    ));
    // External ids are unique per initiator.
    let mut req = f.request(BOB, "0.1");
    req.external_id = Some("payout-77".into());
    let first = can.submit(&req).await.unwrap();
    assert_eq!(first.external_id.as_deref(), Some("payout-77"));
    assert!(matches!(
        can.submit(&req).await,
        Err(ServiceError::Conflict(_))
    ));
    // Listed newest first, a page at a time, within the caller's wallets.
    let reader = f.who(&f.initiator).await;
    let read = f
        .svc
        .authorize::<perm::ReadWallet>(&reader, Some(f.wallet))
        .unwrap();
    let page = read
        .transfers(Some(f.wallet), Some(state::QUEUED), None, 1)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, first.id, "newest first");
    let next = read
        .transfers(Some(f.wallet), Some(state::QUEUED), Some(page[0].id), 10)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert!(next[0].id < first.id);
    assert!(matches!(
        read.transfers(None, None, None, 10).await,
        Err(ServiceError::Auth(_))
    ));
    // A retry is answered even once the wallet is frozen (the first request
    // may be what froze it): the client learns its transfer exists.
    f.svc
        .console_freeze(&console(), FreezeScope::Wallet(f.wallet), "drill")
        .await
        .unwrap();
    let again = can
        .submit_once(&f.request(BOB, "0.25"), Some("order-1234"))
        .await
        .unwrap();
    assert!(again.replayed);
    assert!(matches!(
        can.submit(&f.request(BOB, "0.25")).await,
        Err(ServiceError::Frozen(_))
    ));
    assert_eq!(
        f.db.store
            .transfers_in(state::QUEUED, 100)
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn approved_transfers_are_carried_out_to_completion(f: Fixture) {
    use service::transfers::ExecutePass;
    f.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
        .await;
    let t = f.submit(&f.initiator, BOB, "1").await.unwrap();
    assert_eq!(t.state, state::QUEUED);
    let reader = f.who(&f.initiator).await;
    let read = f
        .svc
        .authorize::<perm::ReadWallet>(&reader, Some(f.wallet))
        .unwrap();
    let b = &read.balances(f.wallet).await.unwrap()[0];
    assert_eq!(b.asset.symbol().as_str(), "ETH");
    assert_eq!(b.on_chain, Some(100 * ETHER));
    assert_eq!(b.reserved, ETHER, "approved, not yet sent: reserved");
    // Less the most the open transfer's fee and one more's may be: 21 000
    // gas at the capped 500 gwei (0.0105 ether), not the whole 0.1 cap.
    let reserve = 21_000 * 500_000_000_000;
    assert_eq!(b.fees_reserved, reserve);
    assert_eq!(b.available, Some(99 * ETHER - 2 * reserve));
    // Frozen: the attempt fails for now, is recorded, and waits its backoff.
    let freeze = f
        .svc
        .console_freeze(&console(), FreezeScope::Global, "drill")
        .await
        .unwrap();
    assert_eq!(
        f.svc.execute_due().await.unwrap(),
        ExecutePass {
            deferred: 1,
            ..ExecutePass::default()
        }
    );
    let waiting = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(waiting.state, state::QUEUED);
    assert_eq!(waiting.attempts, 1);
    assert!(waiting.last_error.as_deref().unwrap().contains("frozen"));
    assert_eq!(f.svc.execute_due().await.unwrap(), ExecutePass::default());
    f.govern(
        &f.officer,
        Change::ReleaseFreeze {
            freeze_id: freeze.freeze.id,
            cool_down_s: 0,
        },
    )
    .await;
    f.advance(10_001);
    // A transfer that could never be built (to the wallet's own sender) is
    // refused when requested, not failed later by the worker.
    let own = f.submit(&f.initiator, &f.from.to_string(), "1").await;
    assert!(
        matches!(&own, Err(ServiceError::Invalid(m)) if m.contains("own sender")),
        "{own:?}"
    );
    let pass = f.svc.execute_due().await.unwrap();
    assert_eq!(
        pass,
        ExecutePass {
            submitted: 1,
            ..ExecutePass::default()
        }
    );
    let sent = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(sent.state, state::BROADCASTING);
    // Confirmed on chain: the transfer completes with its send.
    chain_eth_client::testing::mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    assert_eq!(
        f.db.store.transfer(t.id).await.unwrap().state,
        state::COMPLETED
    );
    let send =
        f.db.store
            .eth_send(sent.eth_send_id.as_deref().unwrap())
            .await
            .unwrap();
    // In a block: the chain's balance shows it, nothing is reserved.
    let b = &read.balances(f.wallet).await.unwrap()[0];
    assert_eq!(b.reserved, 0);
    assert!(b.on_chain.unwrap() < 99 * ETHER, "paid 1 ETH and its fee");
    assert_eq!(send.state, service::eth::state::CONFIRMED);
    assert_eq!(send.amount, ETHER);
    // Its initiator may cancel one not yet handed to the chain; then the
    // worker leaves it alone, and a sent one cannot be cancelled.
    let mine = f.submit(&f.initiator, BOB, "0.2").await.unwrap();
    let who = f.who(&f.initiator).await;
    let can = f
        .svc
        .authorize::<perm::InitiateTransfer>(&who, Some(f.wallet))
        .unwrap();
    assert_eq!(
        can.cancel_own(mine.id).await.unwrap().state,
        state::CANCELLED
    );
    assert_eq!(f.svc.execute_due().await.unwrap(), ExecutePass::default());
    assert!(matches!(
        can.cancel_own(t.id).await,
        Err(ServiceError::Approval(ApprovalError::NotAwaiting(_)))
    ));
    // One that could not be sent for a week fails rather than go out late.
    let late = f.submit(&f.initiator, BOB, "0.1").await.unwrap();
    f.svc
        .console_freeze(&console(), FreezeScope::Wallet(f.wallet), "long outage")
        .await
        .unwrap();
    assert_eq!(f.svc.execute_due().await.unwrap().deferred, 1);
    f.advance(8 * 24 * 3_600_000);
    assert_eq!(f.svc.execute_due().await.unwrap().failed, 1);
    let late = f.db.store.transfer(late.id).await.unwrap();
    assert_eq!(late.state, state::FAILED);
    assert!(late.last_error.unwrap().contains("within 7 days"));
    let actions = f.actions().await;
    for a in [
        "transfer.attempt_failed",
        "transfer.state_changed",
        "eth.send.confirmed",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a}");
    }
}

async fn concurrent_withdrawals_never_commit_more_than_the_wallet_holds(f: Fixture) {
    f.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
        .await;
    // The sender holds 100 ETH; each withdrawal needs 9.9 ETH and the most
    // its fee may be (0.0105 ETH): funds for ten. Two hundred at once.
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let who = f.who(&f.initiator).await;
        let svc = f.svc.clone();
        let (wallet, req) = (f.wallet, f.request(BOB, "9.9"));
        tasks.push(tokio::spawn(async move {
            let can = svc
                .authorize::<perm::InitiateTransfer>(&who, Some(wallet))
                .unwrap();
            can.submit(&req).await
        }));
    }
    let (mut accepted, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(row) => {
                assert_eq!(row.state, state::QUEUED);
                accepted += 1;
            }
            Err(ServiceError::InsufficientFunds(_)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((accepted, refused), (10, 190));
    let reader = f.who(&f.initiator).await;
    let ether = || async {
        f.svc
            .authorize::<perm::ReadWallet>(&reader, Some(f.wallet))
            .unwrap()
            .balances(f.wallet)
            .await
            .unwrap()
            .remove(0)
    };
    let b = ether().await;
    assert_eq!(b.reserved, 99 * ETHER);
    let reserve = 21_000 * 500_000_000_000;
    assert_eq!(b.fees_reserved, 10 * reserve, "ten fees are reserved too");
    assert_eq!(b.available, Some(ETHER - 11 * reserve));
    // All ten go out and complete: the node accepts every one.
    assert_eq!(f.svc.execute_due().await.unwrap().submitted, 10);
    // Planned, each still reserves what a speed-up may pay: its gas limit
    // (21 000 for ether) at the capped price, not what its first attempt
    // offered.
    let b = ether().await;
    assert_eq!(b.fees_reserved, 10 * reserve);
    chain_eth_client::testing::mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    let done =
        f.db.store
            .transfers_in(state::COMPLETED, 500)
            .await
            .unwrap();
    assert_eq!(done.len(), 10);
    let held = f.client.balance(f.from).await.unwrap();
    assert!(held < ETHER, "99 ETH paid out, fees from the rest: {held}");
}

impl Fixture {
    /// Regtest (batches not held), an allow-all policy, and an HD account
    /// of the wallet opened by an admin.
    async fn hd_account(&self) -> service::wallets::WalletAccount {
        self.hd_account_of(service::wallets::AccountKey::Hd).await
    }

    async fn hd_account_of(
        &self,
        kind: service::wallets::AccountKey,
    ) -> service::wallets::WalletAccount {
        self.add_regtest(service::btc::BatchRule::default());
        self.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
            .await;
        let admin = self.who(&self.admin1).await;
        self.svc
            .authorize::<perm::ManageNetworks>(&admin, None)
            .unwrap()
            .open_account(
                self.wallet,
                domain::Network::Bitcoin(domain::BitcoinNetwork::Regtest),
                kind,
            )
            .await
            .unwrap()
    }

    /// Bitcoin regtest on this service (no node: sends stop at `signed`).
    fn add_regtest(&self, batch: service::btc::BatchRule) {
        self.svc.add_btc_network(service::btc::BtcNetwork {
            network: domain::BitcoinNetwork::Regtest,
            fee_caps: chain_btc::FeeCaps {
                max_fee_rate: 50,
                max_fee: 20_000,
            },
            fee_rate: 5,
            batch,
            confirmations: 1,
            bump_after_blocks: 2,
            consolidation: None,
            client: None,
        });
    }

    async fn submit_with(
        &self,
        amount: &str,
        priority: Priority,
        depends_on: Option<domain::TransferId>,
    ) -> Result<storage::TransferRow, ServiceError> {
        let who = self.who(&self.initiator).await;
        let can = self
            .svc
            .authorize::<perm::InitiateTransfer>(&who, Some(self.wallet))
            .unwrap();
        let mut req = self.request(BOB, amount);
        req.priority = priority;
        req.depends_on = depends_on;
        can.submit(&req).await
    }

    async fn nonce_of(&self, id: domain::TransferId) -> u64 {
        let t = self.db.store.transfer(id).await.unwrap();
        let send = t.eth_send_id.expect("planned");
        self.db.store.eth_send(&send).await.unwrap().nonce
    }

    async fn operator(&self) -> Principal {
        self.who(&self.admin1).await
    }
}

async fn the_queue_orders_waits_holds_and_retries(f: Fixture) {
    use service::transfers::ExecutePass;
    f.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
        .await;
    // Priority first, then age; a dependent waits for what it depends on.
    let low = f.submit_with("1", Priority::Low, None).await.unwrap();
    let after_low = f
        .submit_with("2", Priority::Urgent, Some(low.id))
        .await
        .unwrap();
    let urgent = f.submit_with("3", Priority::Urgent, None).await.unwrap();
    let pass = f.svc.execute_due().await.unwrap();
    assert_eq!(pass.submitted, 2);
    assert_eq!(f.nonce_of(urgent.id).await, 0, "urgent goes first");
    assert_eq!(f.nonce_of(low.id).await, 1);
    let waiting = f.db.store.transfer(after_low.id).await.unwrap();
    assert_eq!(waiting.state, state::QUEUED, "waits for its dependency");
    assert_eq!(f.svc.execute_due().await.unwrap(), ExecutePass::default());
    chain_eth_client::testing::mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    assert_eq!(
        f.db.store.transfer(low.id).await.unwrap().state,
        state::COMPLETED
    );
    assert_eq!(f.svc.execute_due().await.unwrap().submitted, 1);
    assert_eq!(f.nonce_of(after_low.id).await, 2);

    // A dependency that ends otherwise fails its dependents; one that has
    // already ended so, or does not exist, is refused at the request.
    let first = f.submit_with("0.1", Priority::Normal, None).await.unwrap();
    let second = f
        .submit_with("0.1", Priority::Normal, Some(first.id))
        .await
        .unwrap();
    let initiator = f.who(&f.initiator).await;
    let own = f
        .svc
        .authorize::<perm::InitiateTransfer>(&initiator, Some(f.wallet))
        .unwrap();
    own.cancel_own(first.id).await.unwrap();
    assert_eq!(f.svc.execute_due().await.unwrap().failed, 1);
    let second = f.db.store.transfer(second.id).await.unwrap();
    assert_eq!(second.state, state::FAILED);
    assert!(second.finished_at.is_some());
    let history = f.db.store.transfer_history(second.id).await.unwrap();
    assert_eq!(
        history.last().unwrap().why,
        "the transfer it depends on ended cancelled"
    );
    for dep in [
        first.id,
        domain::TransferId::from_uuid(uuid::Uuid::now_v7()),
    ] {
        assert!(matches!(
            f.submit_with("0.1", Priority::Normal, Some(dep)).await,
            Err(ServiceError::Invalid(m)) if m.starts_with("depends_on")
        ));
    }

    // An error a person must mend holds the transfer: no retry by itself,
    // shown as stuck, retried by an operator once mended.
    f.db.store
        .execute_unchecked("UPDATE eth_senders SET wallet_id = NULL")
        .await
        .unwrap();
    let held = f.submit_with("0.1", Priority::Normal, None).await;
    assert!(held.is_err(), "no sender: refused at the request");
    f.db.store
        .execute_unchecked(&format!(
            "UPDATE eth_senders SET wallet_id = '{}'",
            f.wallet
        ))
        .await
        .unwrap();
    let held = f.submit_with("0.1", Priority::Normal, None).await.unwrap();
    f.db.store
        .execute_unchecked("UPDATE eth_senders SET wallet_id = NULL")
        .await
        .unwrap();
    assert_eq!(f.svc.execute_due().await.unwrap().deferred, 1);
    let row = f.db.store.transfer(held.id).await.unwrap();
    assert_eq!(row.state, state::QUEUED);
    assert!(row.held_at.is_some());
    f.advance(lifecycle_wait());
    assert_eq!(
        f.svc.execute_due().await.unwrap(),
        ExecutePass::default(),
        "held: not retried by itself"
    );
    let operator = f.operator().await;
    let queue = f
        .svc
        .authorize::<perm::OperateQueue>(&operator, Some(f.wallet))
        .unwrap();
    // Held, and one broadcast two hours ago that no block has taken.
    let stuck = queue.stuck(100).await.unwrap();
    let why = |id| {
        stuck
            .iter()
            .find(|s| s.transfer.id == id)
            .map(|s| s.why.clone())
            .unwrap()
    };
    assert_eq!(stuck.len(), 2);
    assert!(
        why(held.id).starts_with(
            "held for a person after 1 failed attempts: invalid input: the wallet has no sender"
        ),
        "{}",
        why(held.id)
    );
    assert!(
        why(after_low.id).starts_with("broadcasting for 7"),
        "{}",
        why(after_low.id)
    );
    f.db.store
        .execute_unchecked(&format!(
            "UPDATE eth_senders SET wallet_id = '{}'",
            f.wallet
        ))
        .await
        .unwrap();
    let retried = queue.retry(held.id).await.unwrap();
    assert_eq!((retried.attempts, retried.held_at), (0, None));
    assert_eq!(f.svc.execute_due().await.unwrap().submitted, 1);
    chain_eth_client::testing::mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    assert!(queue.stuck(100).await.unwrap().is_empty());
    // Only queued transfers are retried; an initiator cannot.
    assert!(queue.retry(held.id).await.is_err());
    assert!(
        f.svc
            .authorize::<perm::OperateQueue>(&initiator, Some(f.wallet))
            .is_err()
    );
    let actions = f.actions().await;
    for a in ["transfer.attempt_failed", "transfer.retried"] {
        assert!(actions.iter().any(|x| x == a), "{a}");
    }
}

/// Longer than any backoff.
fn lifecycle_wait() -> i64 {
    2 * 3_600_000
}

async fn a_plan_that_differs_from_the_approval_is_never_signed(f: Fixture) {
    f.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
        .await;
    let t = f.submit(&f.initiator, BOB, "1").await.unwrap();
    // Planned while sealed: the plan waits for its signature.
    f.svc.seal(&console()).await.unwrap();
    let send = f.svc.execute_transfer(t.id, Urgency::Normal).await.unwrap();
    assert_eq!(
        f.db.store.transfer(t.id).await.unwrap().state,
        state::SIGNING
    );
    // Someone with write access to the database redirects the payment and
    // makes the stored signing hash agree with it.
    let a = &f.db.store.eth_attempts(&send.id).await.unwrap()[0];
    let carol: EthAddress = CAROL.parse().unwrap();
    let plan = TxPlan {
        chain_id: CHAIN_ID,
        nonce: send.nonce,
        to: carol,
        value: a.value,
        data: a.data.clone(),
        gas_limit: a.gas_limit,
        fees: chain_eth::Fees::Eip1559 {
            max_fee_per_gas: a.max_fee_per_gas,
            max_priority_fee_per_gas: a.max_priority_fee_per_gas,
        },
    };
    let hash = format!("0x{}", hex::encode(plan.signing_hash()));
    f.db.store
        .execute_unchecked(&format!(
            "UPDATE eth_attempts SET to_address = '{}', signing_hash = '{hash}' WHERE send_id = '{}'",
            carol.to_lower_hex(),
            send.id
        ))
        .await
        .unwrap();
    for s in &f.shares {
        f.svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    // The resumer refuses to sign, the wallet is frozen, and it is audited.
    assert_eq!(f.svc.eth_resume().await.unwrap(), 0);
    let after = f.db.store.eth_send(&send.id).await.unwrap();
    assert_eq!(after.state, service::eth::state::SIGNING);
    assert!(
        f.db.store.eth_attempts(&send.id).await.unwrap()[0]
            .raw
            .is_none()
    );
    let frozen = f.svc.frozen(Some(f.wallet), None).await.unwrap().unwrap();
    assert!(
        frozen.reason.contains("differs from what was approved"),
        "{}",
        frozen.reason
    );
    let actions = f.actions().await;
    assert!(actions.iter().any(|a| a == "transfer.sign_refused"));
    let history = f.db.store.transfer_history(t.id).await.unwrap();
    assert!(
        history
            .last()
            .unwrap()
            .why
            .starts_with("signing refused: the plan pays"),
        "{history:?}"
    );
}

const PAYEE: &str = "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw";

async fn bitcoin_payouts_are_batched_signed_and_verified(f: Fixture) {
    use domain::{Asset, BitcoinNetwork};
    use service::btc::BatchRule;
    use service::transfers::ExecutePass;
    let regtest = BitcoinNetwork::Regtest;
    f.add_regtest(BatchRule {
        window_ms: 60_000,
        max_payouts: 3,
    });
    f.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
        .await;
    let key = |algorithm| NewKey {
        purpose: KeyPurpose::TransferSigning,
        algorithm,
        backend: KeyBackend::Keystore,
        cryptoperiod_days: 30,
    };
    let mut keys = Vec::new();
    for a in [
        KeyAlgorithm::EcdsaSecp256k1,
        KeyAlgorithm::SchnorrBip340,
        KeyAlgorithm::EcdsaSecp256k1,
    ] {
        keys.push(f.svc.create_key(&console(), key(a)).await.unwrap().id);
    }
    // Two keys in the wallet (P2WPKH and P2TR); the third pays someone else.
    let q = f
        .svc
        .register_btc_key(&console(), regtest, keys[0], f.wallet)
        .await
        .unwrap();
    let p = f
        .svc
        .register_btc_key(&console(), regtest, keys[1], f.wallet)
        .await
        .unwrap();
    assert!(
        q.starts_with("bcrt1q") && p.starts_with("bcrt1p"),
        "{q} {p}"
    );
    assert!(
        f.svc
            .register_btc_key(&console(), regtest, keys[0], f.wallet)
            .await
            .is_err(),
        "a key belongs to one wallet"
    );
    let other = f.svc.btc_address(keys[2], regtest).await.unwrap();
    for (i, (k, sat)) in [(keys[0], 60_000), (keys[1], 80_000)]
        .into_iter()
        .enumerate()
    {
        let row = f
            .svc
            .btc_record_deposit(
                &console(),
                regtest,
                k,
                &format!("{:02x}", i + 1).repeat(32),
                0,
                sat,
            )
            .await
            .unwrap();
        assert_eq!(row.wallet, Some(f.wallet));
    }
    let btc = |to: &str, amount: &str| TransferRequest {
        asset: Asset::bitcoin(regtest).id().clone(),
        destination: to.into(),
        ..f.request(BOB, amount)
    };
    let who = f.who(&f.initiator).await;
    let can = f
        .svc
        .authorize::<perm::InitiateTransfer>(&who, Some(f.wallet))
        .unwrap();
    // Bad input changes nothing: another network's address, dust-free but
    // beyond the wallet's outputs (with fee caps), too many decimals.
    for (to, amount) in [
        ("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "0.0001"),
        (PAYEE, "0.0013"),
        (PAYEE, "0.000000001"),
        (PAYEE, "0.00000100"),
    ] {
        assert!(can.submit(&btc(to, amount)).await.is_err(), "{to} {amount}");
    }
    assert!(matches!(
        can.submit(&btc(PAYEE, "0.0013")).await,
        Err(ServiceError::InsufficientFunds(_))
    ));
    // Two payouts wait for the batch's window; a third fills it.
    let a = can.submit(&btc(PAYEE, "0.0002")).await.unwrap();
    let b = can.submit(&btc(&other, "0.0003")).await.unwrap();
    assert_eq!(a.state, state::QUEUED);
    assert_eq!(f.svc.execute_due().await.unwrap(), ExecutePass::default());
    assert_eq!(
        f.db.store.transfer(a.id).await.unwrap().state,
        state::QUEUED,
        "waiting for the window"
    );
    let c = can.submit(&btc(PAYEE, "0.0001")).await.unwrap();
    let pass = f.svc.execute_due().await.unwrap();
    assert_eq!(pass.submitted, 3, "{pass:?}");
    let rows = [a.id, b.id, c.id].map(|id| f.db.store.transfer(id));
    let mut send = None;
    for r in rows {
        let t = r.await.unwrap();
        assert_eq!(t.state, state::SIGNED, "no node here: signed and kept");
        assert!(send.is_none() || send == t.btc_send_id, "one transaction");
        send = t.btc_send_id;
    }
    let send = f.db.store.btc_send(&send.unwrap()).await.unwrap();
    assert_eq!(send.state, "signed");
    assert_eq!(send.wallet, Some(f.wallet));
    // Bitcoin Core's interpreter verified it when it was signed; again here
    // from the stored bytes and the outputs it spends.
    let tx: bitcoin::Transaction =
        bitcoin::consensus::deserialize(send.raw.as_ref().unwrap()).unwrap();
    let spent = f.db.store.btc_utxos_of_send(&send.id).await.unwrap();
    assert_eq!(spent.len(), tx.input.len());
    let prevouts = spent_outputs(&tx, &spent);
    chain_btc::verify_with_core(&tx, &prevouts).unwrap();
    // Pays each approved amount to its destination, change to the wallet.
    let pays = |addr: &str, sat: u64| {
        let spk = chain_btc::BtcAddress::parse(addr, regtest)
            .unwrap()
            .script_pubkey();
        tx.output
            .iter()
            .filter(|o| o.script_pubkey == spk && o.value.to_sat() == sat)
            .count()
    };
    assert_eq!(pays(PAYEE, 20_000), 1);
    assert_eq!(pays(&other, 30_000), 1);
    assert_eq!(pays(PAYEE, 10_000), 1);
    assert_eq!(tx.output.len(), 4, "three payouts and change");
    // What is spoken for stays spoken for: the reserved outputs cover the
    // open payouts; more than the rest is refused.
    assert!(matches!(
        can.submit(&btc(PAYEE, "0.0008")).await,
        Err(ServiceError::InsufficientFunds(_))
    ));
    // A lone payout goes once the window has passed.
    f.svc
        .btc_record_deposit(&console(), regtest, keys[0], &"03".repeat(32), 1, 50_000)
        .await
        .unwrap();
    let d = can.submit(&btc(PAYEE, "0.0001")).await.unwrap();
    assert_eq!(f.svc.execute_due().await.unwrap(), ExecutePass::default());
    f.advance(61_000);
    assert_eq!(f.svc.execute_due().await.unwrap().submitted, 1);
    let d = f.db.store.transfer(d.id).await.unwrap();
    assert_eq!(d.state, state::SIGNED);
    assert_ne!(d.btc_send_id.as_ref(), Some(&send.id));
    let actions = f.actions().await;
    for a in ["btc.account.added", "btc.send.planned", "btc.tx.signed"] {
        assert!(actions.iter().any(|x| x == a), "{a}");
    }

    // A batch planned while sealed; one payout's approver key is revoked
    // before it is signed: the batch is released (its outputs available
    // again), that payout waits for approvals, the other goes back to the
    // queue and is paid alone.
    f.register_approvers().await;
    f.set_policy(&format!(
        "[[groups]]\nname = \"approvers\"\nmembers = [\"{}\", \"{}\"]\n\n[[rules]]\nname = \"one\"\naction = \"require_approval\"\napprovals = {{ group = \"approvers\", threshold = 1 }}\n",
        Fixture::actor(&f.b),
        Fixture::actor(&f.c)
    ))
    .await;
    for (i, k) in [(4, keys[0]), (5, keys[1])] {
        f.svc
            .btc_record_deposit(
                &console(),
                regtest,
                k,
                &format!("{i:02x}").repeat(32),
                0,
                50_000,
            )
            .await
            .unwrap();
    }
    let e = can.submit(&btc(PAYEE, "0.0001")).await.unwrap();
    let g = can.submit(&btc(&other, "0.0001")).await.unwrap();
    f.vote_as(&f.b, &e, Vote::Approve, f.soon(), None)
        .await
        .unwrap();
    f.vote_as(&f.c, &g, Vote::Approve, f.soon(), None)
        .await
        .unwrap();
    f.svc.seal(&console()).await.unwrap();
    f.advance(61_000);
    f.svc.execute_due().await.unwrap();
    let planned = f.db.store.transfer(e.id).await.unwrap();
    assert_eq!(planned.state, state::SIGNING);
    let batch = planned.btc_send_id.unwrap();
    assert_eq!(
        f.db.store.transfer(g.id).await.unwrap().btc_send_id,
        Some(batch.clone())
    );
    assert!(
        !f.db
            .store
            .btc_utxos_of_send(&batch)
            .await
            .unwrap()
            .is_empty()
    );
    // Unsealed again (governance is written only unsealed), the batch
    // waits in `signing` for the gate while the key is revoked.
    for s in &f.shares {
        f.svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    let row = f
        .govern(
            &f.admin1,
            Change::RevokeApproverKey {
                principal: Fixture::actor(&f.b),
            },
        )
        .await;
    assert_eq!(row.state, "applied");
    assert_eq!(f.db.store.btc_send(&batch).await.unwrap().state, "released");
    assert!(
        f.db.store
            .btc_utxos_of_send(&batch)
            .await
            .unwrap()
            .is_empty()
    );
    let e = f.db.store.transfer(e.id).await.unwrap();
    assert_eq!(
        (e.state.as_str(), e.btc_send_id),
        (state::PENDING_APPROVAL, None)
    );
    let g_now = f.db.store.transfer(g.id).await.unwrap();
    assert_eq!(
        (g_now.state.as_str(), g_now.btc_send_id),
        (state::QUEUED, None)
    );
    f.advance(61_000);
    assert_eq!(f.svc.execute_due().await.unwrap().submitted, 1);
    let g_now = f.db.store.transfer(g.id).await.unwrap();
    assert_eq!(g_now.state, state::SIGNED);
    assert_ne!(g_now.btc_send_id, Some(batch));
    assert!(f.actions().await.iter().any(|a| a == "btc.send.released"));
}

async fn a_sped_up_or_cancelled_transfer_follows_its_replacement(f: Fixture) {
    use service::eth::Replacement;
    f.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
        .await;
    let fast = f.submit(&f.initiator, BOB, "1").await.unwrap();
    let gone = f.submit(&f.initiator, BOB, "2").await.unwrap();
    assert_eq!(f.svc.execute_due().await.unwrap().submitted, 2);
    let store = &f.db.store;
    let fast_send = store.transfer(fast.id).await.unwrap().eth_send_id.unwrap();
    let gone_send = store.transfer(gone.id).await.unwrap().eth_send_id.unwrap();
    // Both replacements are signed (an operator asks): a speed-up pays what
    // was approved, a cancel pays nothing (zero ether to the sender itself).
    let operator = f.operator().await;
    let queue = f
        .svc
        .authorize::<perm::OperateQueue>(&operator, Some(f.wallet))
        .unwrap();
    let sped = queue
        .replace(fast.id, Replacement::SpeedUp(Urgency::Fast))
        .await
        .unwrap();
    assert_eq!(sped.id, fast_send);
    queue.replace(gone.id, Replacement::Cancel).await.unwrap();
    let waiting = f.submit(&f.initiator, BOB, "0.1").await.unwrap();
    assert!(matches!(
        queue.replace(waiting.id, Replacement::Cancel).await,
        Err(ServiceError::Approval(ApprovalError::NotAwaiting(_)))
    ));
    assert_eq!(f.db.store.eth_attempts(&gone_send).await.unwrap().len(), 2);
    assert!(f.svc.frozen(Some(f.wallet), None).await.unwrap().is_none());
    chain_eth_client::testing::mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    assert_eq!(
        f.db.store.transfer(fast.id).await.unwrap().state,
        state::COMPLETED
    );
    let gone = f.db.store.transfer(gone.id).await.unwrap();
    assert_eq!(gone.state, state::CANCELLED, "the cancel won its nonce");
    let history: Vec<String> =
        f.db.store
            .transfer_history(gone.id)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.state)
            .collect();
    assert_eq!(
        history,
        [
            "submitted",
            "pending_policy",
            "queued",
            "signing",
            "signed",
            "broadcasting",
            "broadcasting",
            "confirming",
            "cancelled"
        ],
        "the operator's request is a line of its own"
    );
}

async fn deposits_count_only_at_the_confirmation_depth(f: Fixture) {
    f.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
        .await;
    // Three confirmations on this network from now on.
    f.svc.add_eth_network(EthNetwork {
        config: EthNetworkConfig {
            chain_id: CHAIN_ID,
            legacy: false,
            confirmations: 3,
            bump_after_blocks: 3,
            fee_caps: FeeCaps {
                max_fee_per_gas: 500_000_000_000,
                max_total_fee: ETHER / 10,
            },
            min_priority_fee: 1_000_000_000,
            allow_unchecksummed: false,
            tokens: vec![],
        },
        client: f.client.clone(),
    });
    chain_eth_client::testing::mine(&f.client, 3).await;
    let r = f.submit(&f.initiator, BOB, "150").await;
    assert!(
        matches!(r, Err(ServiceError::InsufficientFunds(_))),
        "{r:?}"
    );
    // 100 ETH more arrive: in a block, not yet three deep.
    let from = f.from;
    DevWallet::new(3)
        .await
        .transact(&f.client, |n, fees| {
            TxPlan::native(CHAIN_ID, n, from, 100 * ETHER, fees)
        })
        .await;
    let reader = f.who(&f.initiator).await;
    let read = f
        .svc
        .authorize::<perm::ReadWallet>(&reader, Some(f.wallet))
        .unwrap();
    let b = &read.balances(f.wallet).await.unwrap()[0];
    assert_eq!(b.on_chain, Some(200 * ETHER));
    assert_eq!(
        b.credited,
        Some(100 * ETHER),
        "the deposit is not yet credited"
    );
    assert!(matches!(
        f.submit(&f.initiator, BOB, "150").await,
        Err(ServiceError::InsufficientFunds(_))
    ));
    chain_eth_client::testing::mine(&f.client, 2).await;
    let b = &read.balances(f.wallet).await.unwrap()[0];
    assert_eq!(b.credited, Some(200 * ETHER));
    let t = f.submit(&f.initiator, BOB, "150").await.unwrap();
    assert_eq!(t.state, state::QUEUED);
}

async fn wallets_open_accounts_with_deposit_addresses(f: Fixture) {
    use domain::{BitcoinNetwork, Network};
    use service::btc::BatchRule;
    use service::wallets::AccountKey;
    f.add_regtest(BatchRule::default());
    let admin = f.who(&f.admin1).await;
    let ops = f
        .svc
        .authorize::<perm::ManageNetworks>(&admin, None)
        .unwrap();
    let w = ops.create_wallet("payouts").await.unwrap().id;
    let eth = ops
        .open_account(
            w,
            Network::Evm { chain_id: CHAIN_ID },
            AccountKey::Single(KeyBackend::Keystore),
        )
        .await
        .unwrap();
    let btc = ops
        .open_account(
            w,
            Network::Bitcoin(BitcoinNetwork::Regtest),
            AccountKey::Single(KeyBackend::Keystore),
        )
        .await
        .unwrap();
    assert!(eth.address.starts_with("0x") && btc.address.starts_with("bcrt1q"));
    assert_ne!(eth.key, btc.key, "a key per account");
    // Bad input changes nothing: a network not configured here, an HSM
    // that is not configured.
    let before = f.actions().await.len();
    assert!(
        ops.open_account(
            w,
            Network::Evm { chain_id: 1 },
            AccountKey::Single(KeyBackend::Keystore)
        )
        .await
        .is_err()
    );
    assert!(
        ops.open_account(
            w,
            Network::Bitcoin(BitcoinNetwork::Mainnet),
            AccountKey::Single(KeyBackend::Keystore)
        )
        .await
        .is_err()
    );
    assert_eq!(f.actions().await.len(), before);
    assert!(
        ops.open_account(
            w,
            Network::Evm { chain_id: CHAIN_ID },
            AccountKey::Single(KeyBackend::Pkcs11)
        )
        .await
        .is_err()
    );
    // Read back by those who may read the wallet, with the addresses.
    let (row, accounts) = f
        .svc
        .authorize::<perm::ReadWallet>(&admin, Some(w))
        .unwrap()
        .wallet(w)
        .await
        .unwrap();
    assert_eq!(row.name, "payouts");
    assert_eq!(accounts, vec![eth.clone(), btc.clone()]);
    // One account per network: a second is refused and changes nothing.
    let before = f.actions().await.len();
    for network in [
        Network::Evm { chain_id: CHAIN_ID },
        Network::Bitcoin(BitcoinNetwork::Regtest),
    ] {
        for kind in [AccountKey::Single(KeyBackend::Keystore), AccountKey::Hd] {
            match ops.open_account(w, network, kind).await {
                Err(ServiceError::Conflict(m)) => assert!(m.contains("one account per network")),
                other => panic!("a second account on {network}: {other:?}"),
            }
        }
    }
    assert_eq!(f.actions().await.len(), before);
    // Watch-only: the single key's descriptor, with its checksum.
    let watch = btc.watch.clone().expect("a Bitcoin account can be watched");
    assert!(watch.descriptor.starts_with("wpkh(0") && watch.descriptor.contains(")#"));
    assert_eq!(watch.xpub, None);
    // An HD account's descriptors derive exactly the addresses it issues
    // (miniscript from the tpub, against the server's own derivation).
    let hd_wallet = ops.create_wallet("deposits").await.unwrap().id;
    let hd = ops
        .open_account(
            hd_wallet,
            Network::Bitcoin(BitcoinNetwork::Regtest),
            AccountKey::Hd,
        )
        .await
        .unwrap();
    let watch = hd.watch.clone().unwrap();
    assert!(
        watch.xpub.as_deref().unwrap().starts_with("tpub"),
        "{watch:?}"
    );
    assert!(
        watch.slip132.as_deref().unwrap().starts_with("vpub"),
        "{watch:?}"
    );
    assert_eq!(watch.account_path.as_deref(), Some("m/84'/1'/0'"));
    let receive = chain_btc::WalletDescriptor::parse(&watch.descriptor).unwrap();
    assert_eq!(
        receive
            .address_at(0, BitcoinNetwork::Regtest)
            .unwrap()
            .to_string(),
        hd.address
    );
    let change = chain_btc::WalletDescriptor::parse(&watch.change_descriptor.unwrap()).unwrap();
    assert_ne!(
        change
            .address_at(0, BitcoinNetwork::Regtest)
            .unwrap()
            .to_string(),
        hd.address
    );
    // Someone scoped to another wallet sees nothing.
    let other = f.who(&f.initiator).await;
    assert!(
        f.svc
            .authorize::<perm::ReadWallet>(&other, Some(w))
            .is_err()
    );
    // A deposit to the Bitcoin address is the wallet's; the Ethereum
    // account sends for the wallet.
    let dep = f
        .svc
        .btc_record_deposit(
            &console(),
            BitcoinNetwork::Regtest,
            btc.key,
            &"0a".repeat(32),
            0,
            10_000,
        )
        .await
        .unwrap();
    assert_eq!(dep.wallet, Some(w));
    assert_eq!(
        f.db.store
            .wallet_eth_sender(w, &format!("eip155:{CHAIN_ID}"))
            .await
            .unwrap()
            .map(|a| a.parse::<EthAddress>().unwrap().to_string()),
        Some(eth.address)
    );
}

async fn deposits_are_seen_then_credited_or_reorged(f: Fixture) {
    use chain_eth_client::testing::{deploy_test_token, mine};
    let alice = DevWallet::new(2).await;
    let token = deploy_test_token(&f.client, &alice).await;
    let usdt = domain::Asset::new(
        domain::AssetId::new(
            domain::Network::Evm { chain_id: CHAIN_ID },
            domain::AssetKind::Erc20(domain::ContractAddress::from_bytes(*token.as_bytes())),
        )
        .unwrap(),
        domain::Symbol::new("TT").unwrap(),
        domain::Decimals::new(6).unwrap(),
    )
    .unwrap();
    f.add_token_network(2, &usdt, token);
    // The first pass looks at the blocks not yet at the depth (the
    // fixture's funding may be one); let them settle.
    f.svc.eth_scan_deposits(CHAIN_ID).await.unwrap();
    mine(&f.client, 2).await;
    f.svc.eth_scan_deposits(CHAIN_ID).await.unwrap();
    let reader = f.who(&f.initiator).await;
    let read = f
        .svc
        .authorize::<perm::ReadWallet>(&reader, Some(f.wallet))
        .unwrap();
    let before = read.deposits(f.wallet, 100).await.unwrap();
    assert!(before.iter().all(|d| d.state == "credited"), "{before:?}");
    let from = f.from;
    // Ether and tokens arrive in one block.
    let fees = chain_eth::Fees::Eip1559 {
        max_fee_per_gas: 100_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
    };
    let nonce = f
        .client
        .nonce(alice.address, chain_eth_client::NonceTag::Pending)
        .await
        .unwrap();
    let ether = alice
        .sign(&TxPlan::native(CHAIN_ID, nonce, from, 5 * ETHER, fees))
        .await;
    f.client.send_raw(&ether.raw, ether.hash).await.unwrap();
    let nonce = nonce + 1;
    let plan = TxPlan::erc20(
        CHAIN_ID,
        nonce,
        token,
        from,
        7_000_000,
        100_000,
        chain_eth::Fees::Eip1559 {
            max_fee_per_gas: 100_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
        },
    );
    let signed = alice.sign(&plan).await;
    f.client.send_raw(&signed.raw, signed.hash).await.unwrap();
    mine(&f.client, 1).await;
    let pass = f.svc.eth_scan_deposits(CHAIN_ID).await.unwrap();
    assert_eq!((pass.seen, pass.credited), (2, 0), "{pass:?}");
    let deposits = read.deposits(f.wallet, 100).await.unwrap();
    assert_eq!(deposits.len(), before.len() + 2);
    assert_eq!(deposits.iter().filter(|d| d.state == "seen").count(), 2);
    // Paged one at a time, newest first, after the last of each page:
    // the same list, once each.
    let mut paged: Vec<storage::DepositRow> = Vec::new();
    loop {
        let after = paged.last().map(|d| (d.tx_hash.clone(), d.log_index));
        let page = read
            .deposits_page(f.wallet, after.as_ref().map(|(h, i)| (h.as_str(), *i)), 1)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    assert_eq!(paged, deposits);
    let balances = read.balances(f.wallet).await.unwrap();
    let of = |id: &domain::AssetId| {
        balances
            .iter()
            .find(|b| b.asset.id() == id)
            .unwrap()
            .clone()
    };
    assert_eq!(of(domain::Asset::ether(CHAIN_ID).id()).incoming, 5 * ETHER);
    assert_eq!(of(usdt.id()).incoming, 7_000_000);
    // A second pass finds nothing new; one block more and both are credited.
    assert_eq!(f.svc.eth_scan_deposits(CHAIN_ID).await.unwrap().seen, 0);
    mine(&f.client, 1).await;
    let pass = f.svc.eth_scan_deposits(CHAIN_ID).await.unwrap();
    assert_eq!(pass.credited, 2, "{pass:?}");

    let balances = read.balances(f.wallet).await.unwrap();
    assert!(balances.iter().all(|b| b.incoming == 0));

    // A deposit whose block is reorganised away is never credited.
    let snapshot = f
        .client
        .raw_call("evm_snapshot", serde_json::json!([]))
        .await
        .unwrap();
    alice
        .transact(&f.client, |n, fees| {
            TxPlan::native(CHAIN_ID, n, from, ETHER, fees)
        })
        .await;
    assert_eq!(f.svc.eth_scan_deposits(CHAIN_ID).await.unwrap().seen, 1);
    f.client
        .raw_call("evm_revert", serde_json::json!([snapshot]))
        .await
        .unwrap();
    mine(&f.client, 3).await;
    let pass = f.svc.eth_scan_deposits(CHAIN_ID).await.unwrap();
    assert_eq!((pass.credited, pass.reorged), (0, 1), "{pass:?}");
    // The ledger took it back: nothing pending; what is credited is kept.
    let ether_id = domain::Asset::ether(CHAIN_ID).id().to_string();
    let ledger = f.svc.store().ledger_balances(f.wallet).await.unwrap();
    let ether = ledger.iter().find(|(a, _)| *a == ether_id).unwrap().1;
    let credited: u128 = read
        .deposits(f.wallet, 100)
        .await
        .unwrap()
        .iter()
        .filter(|d| d.state == "credited" && d.asset == ether_id)
        .map(|d| d.amount)
        .sum();
    assert_eq!((ether.pending, ether.available), (0, credited as i128));
    let states: Vec<String> = read
        .deposits(f.wallet, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.state)
        .collect();
    assert_eq!(states.iter().filter(|s| *s == "reorged").count(), 1);
    assert_eq!(
        states.iter().filter(|s| *s == "credited").count(),
        before.len() + 2
    );
    let actions = f.actions().await;
    for a in ["deposit.seen", "deposit.credited", "deposit.reorged"] {
        assert!(actions.iter().any(|x| x == a), "{a}");
    }
}

async fn hd_accounts_hand_out_fresh_deposit_addresses(f: Fixture) {
    use domain::{Asset, BitcoinNetwork, Network};
    use service::transfers::ExecutePass;
    use service::wallets::AccountKey;
    let regtest = BitcoinNetwork::Regtest;
    let account = f.hd_account().await;
    assert!(account.address.starts_with("bcrt1q"));
    let admin = f.who(&f.admin1).await;
    let ops = f
        .svc
        .authorize::<perm::ManageNetworks>(&admin, None)
        .unwrap();
    assert!(
        ops.open_account(
            f.wallet,
            Network::Evm { chain_id: CHAIN_ID },
            AccountKey::Hd
        )
        .await
        .is_err(),
        "one account per network"
    );
    let who = f.who(&f.initiator).await;
    let can = f
        .svc
        .authorize::<perm::InitiateTransfer>(&who, Some(f.wallet))
        .unwrap();
    // No key without a backup: no deposit address until one holds the key
    // (or the risk is accepted for it, audited).
    assert!(matches!(
        can.deposit_address(f.wallet, regtest).await,
        Err(ServiceError::NotBackedUp(_))
    ));
    f.svc
        .waive_key_backup(&console(), account.key)
        .await
        .unwrap();
    assert!(f.actions().await.iter().any(|a| a == "key.backup_waived"));
    // The first address again until something pays it; then a fresh one.
    let a0 = can.deposit_address(f.wallet, regtest).await.unwrap();
    assert_eq!(a0, account.address);
    assert_eq!(can.deposit_address(f.wallet, regtest).await.unwrap(), a0);
    f.svc
        .btc_record_deposit_to(&console(), regtest, &a0, &"a0".repeat(32), 0, 40_000)
        .await
        .unwrap();
    let a1 = can.deposit_address(f.wallet, regtest).await.unwrap();
    assert_ne!(a1, a0);
    f.svc
        .btc_record_deposit_to(&console(), regtest, &a1, &"a1".repeat(32), 3, 50_000)
        .await
        .unwrap();
    assert!(
        f.svc
            .btc_record_deposit_to(&console(), regtest, PAYEE, &"a2".repeat(32), 0, 1_000)
            .await
            .is_err(),
        "not an address Strongroom issued"
    );
    // A payout spending both deposits: each input signed by its child key,
    // change to a fresh change address of the account; Core verifies.
    let t = can
        .submit(&TransferRequest {
            asset: Asset::bitcoin(regtest).id().clone(),
            destination: PAYEE.into(),
            ..f.request(BOB, "0.0006")
        })
        .await
        .unwrap();
    assert_eq!(
        f.svc.execute_due().await.unwrap(),
        ExecutePass {
            submitted: 1,
            ..ExecutePass::default()
        }
    );
    let t = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(t.state, state::SIGNED);
    let send = f.db.store.btc_send(&t.btc_send_id.unwrap()).await.unwrap();
    let tx: bitcoin::Transaction =
        bitcoin::consensus::deserialize(send.raw.as_ref().unwrap()).unwrap();
    let spent = f.db.store.btc_utxos_of_send(&send.id).await.unwrap();
    assert_eq!(spent.len(), 2);
    let prevouts = spent_outputs(&tx, &spent);
    chain_btc::verify_with_core(&tx, &prevouts).unwrap();
    let change =
        f.db.store
            .btc_addresses_of_key("bitcoin:regtest", account.key, 1)
            .await
            .unwrap();
    assert_eq!(
        change.len(),
        1,
        "one change address, recorded with the plan"
    );
    assert!(
        tx.output
            .iter()
            .any(|o| o.script_pubkey.to_hex_string() == change[0].script_pubkey)
    );
    let actions = f.actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "btc.address.issued")
            .count(),
        3,
        "two receive addresses, and the change address with the plan"
    );
}

/// After a restore (its epoch opened): nothing is submitted or signed
/// until the reconciliation; a Bitcoin payout not yet planned may have been
/// paid by the lost server from other outputs, so it goes to a person (its
/// wallet frozen, the transfer named); the restore's own freeze ends.
async fn a_restore_reconciles_before_signing_and_holds_what_the_chain_cannot_settle(f: Fixture) {
    use domain::{Asset, BitcoinNetwork};
    use service::btc::BatchRule;
    let regtest = BitcoinNetwork::Regtest;
    f.add_regtest(BatchRule {
        window_ms: 60_000,
        max_payouts: 3,
    });
    f.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
        .await;
    let key = f
        .svc
        .create_key(&console(), transfer_key())
        .await
        .unwrap()
        .id;
    f.svc
        .register_btc_key(&console(), regtest, key, f.wallet)
        .await
        .unwrap();
    f.svc
        .btc_record_deposit(&console(), regtest, key, &"07".repeat(32), 0, 60_000)
        .await
        .unwrap();
    let btc = TransferRequest {
        asset: Asset::bitcoin(regtest).id().clone(),
        destination: PAYEE.into(),
        ..f.request(BOB, "0.0002")
    };
    let who = f.who(&f.initiator).await;
    let can = f
        .svc
        .authorize::<perm::InitiateTransfer>(&who, Some(f.wallet))
        .unwrap();
    let queued = can.submit(&btc).await.unwrap();
    assert_eq!(queued.state, state::QUEUED);

    let r = f
        .svc
        .open_epoch(
            &console(),
            "00",
            7,
            serde_json::json!({ "from_audit_seq": 7 }),
        )
        .await
        .unwrap();
    assert!(matches!(
        can.submit(&btc).await,
        Err(ServiceError::Frozen(_))
    ));
    assert_eq!(f.svc.open_recovery().await.unwrap().unwrap().id, r.id);
    let found = f.svc.reconcile_restore().await.unwrap().unwrap();
    assert_eq!(found.frozen, [format!("wallet:{}", f.wallet)]);
    assert_eq!(found.review.len(), 1, "{found:?}");
    assert_eq!(found.review[0].subject, format!("transfer:{}", queued.id));
    let scopes: Vec<String> = f
        .svc
        .freezes()
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.scope)
        .collect();
    assert_eq!(
        scopes,
        [format!("wallet:{}", f.wallet)],
        "the restore's freeze ended"
    );
    assert!(f.svc.reconcile_restore().await.unwrap().is_none(), "once");
    let actions = f.actions().await;
    for a in ["restore.epoch", "restore.reconciled", "freeze.released"] {
        assert!(actions.iter().any(|x| x == a), "{a}");
    }
}

/// An HD account rotates like a single key: a new HD account (a new seed,
/// its mnemonic shown once) on the same path takes the wallet's account,
/// and one sweep spends every child output of the old one (each input
/// signed by its child key; Core verifies) to the new account's first
/// receive address.
async fn an_hd_account_rotates_to_a_new_one_and_sweeps_every_child_output(f: Fixture) {
    use domain::BitcoinNetwork;
    let regtest = BitcoinNetwork::Regtest;
    let account = f.hd_account().await;
    f.svc
        .waive_key_backup(&console(), account.key)
        .await
        .unwrap();
    let who = f.who(&f.initiator).await;
    let can = f
        .svc
        .authorize::<perm::InitiateTransfer>(&who, Some(f.wallet))
        .unwrap();
    let a0 = can.deposit_address(f.wallet, regtest).await.unwrap();
    f.svc
        .btc_record_deposit_to(&console(), regtest, &a0, &"b0".repeat(32), 0, 40_000)
        .await
        .unwrap();
    let a1 = can.deposit_address(f.wallet, regtest).await.unwrap();
    f.svc
        .btc_record_deposit_to(&console(), regtest, &a1, &"b1".repeat(32), 1, 50_000)
        .await
        .unwrap();

    let r = f
        .svc
        .rotate_with_sweep(&console(), account.key, 30)
        .await
        .unwrap();
    let words = r.successor_mnemonic.as_ref().unwrap().phrase();
    assert_eq!(words.split_whitespace().count(), 24);
    assert!(format!("{r:?}").contains("Mnemonic(<redacted>)"), "{r:?}");
    assert!(!serde_json::to_string(&r).unwrap().contains("mnemonic"));
    assert_eq!(r.accounts.len(), 1, "{r:?}");
    let to = r.accounts[0].to.clone();
    assert!(to.starts_with("bcrt1q") && to != a0 && to != a1, "{to}");
    let successor = f.db.store.key(r.successor).await.unwrap();
    assert_eq!(
        successor.hd_path,
        f.db.store.key(account.key).await.unwrap().hd_path
    );
    // Every child output of the old account, less the fee cap, to it.
    assert_eq!(r.sweeps.len(), 1, "{r:?}");
    let pass = f.svc.execute_due().await.unwrap();
    assert_eq!(pass.submitted, 1, "{pass:?}");
    let t =
        f.db.store
            .transfer(r.sweeps[0].parse().unwrap())
            .await
            .unwrap();
    assert_eq!(t.state, state::SIGNED);
    let send = f.db.store.btc_send(&t.btc_send_id.unwrap()).await.unwrap();
    let tx: bitcoin::Transaction =
        bitcoin::consensus::deserialize(send.raw.as_ref().unwrap()).unwrap();
    let spent = f.db.store.btc_utxos_of_send(&send.id).await.unwrap();
    assert_eq!(spent.len(), 2);
    let prevouts = spent_outputs(&tx, &spent);
    chain_btc::verify_with_core(&tx, &prevouts).unwrap();
    let dest = chain_btc::BtcAddress::parse(&to, regtest)
        .unwrap()
        .script_pubkey();
    assert!(tx.output.iter().all(|o| o.script_pubkey == dest));
    // New deposits go to the new account.
    let next = can.deposit_address(f.wallet, regtest).await;
    assert!(
        matches!(next, Err(ServiceError::NotBackedUp(ref k)) if *k == r.successor.to_string()),
        "{next:?}"
    );
}

/// The outputs `tx` spends, from the rows its send reserved.
fn spent_outputs(tx: &bitcoin::Transaction, spent: &[storage::BtcUtxoRow]) -> Vec<bitcoin::TxOut> {
    tx.input
        .iter()
        .map(|i| {
            let u = spent
                .iter()
                .find(|u| u.txid == i.previous_output.txid.to_string())
                .unwrap();
            bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(u.value_sat),
                script_pubkey: bitcoin::ScriptBuf::from_hex(&u.script_pubkey).unwrap(),
            }
        })
        .collect()
}

/// The deny list, governed: an address in any case is refused when
/// requested, when approved and before it is signed; a look-alike of an
/// address-book entry (address poisoning) is refused with the match; a
/// first-time destination is flagged in the decision.
async fn destinations_are_screened_against_the_deny_list_and_look_alikes(f: Fixture) {
    f.register_approvers().await;
    let approvals = |above: &str| {
        format!(
            "[[groups]]\nname = \"approvers\"\nmembers = [\"{}\", \"{}\"]\n\n\
             [[rules]]\nname = \"small\"\namount = {{ at_most = \"{above}\" }}\naction = \"allow\"\n\n\
             [[rules]]\nname = \"large\"\naction = \"require_approval\"\n\
             approvals = {{ group = \"approvers\", threshold = 1 }}\n",
            Fixture::actor(&f.b),
            Fixture::actor(&f.c)
        )
    };
    f.set_policy(&approvals("1")).await;
    let network = format!("eip155:{CHAIN_ID}");
    let deny = |address: &str, list: &str| Change::DenyAddresses {
        list: list.into(),
        entries: vec![service::governance::DeniedEntry {
            network: network.clone(),
            address: address.into(),
            reason: "stolen funds".into(),
        }],
    };
    let code = |r: Result<storage::TransferRow, ServiceError>| match r {
        Err(ServiceError::Screened { code, message }) => (code, message),
        other => panic!("not screened: {other:?}"),
    };
    // Before: a transfer to Carol waits for an approval, one to Bob (under
    // the limit) is queued; then both are denied (in lower case and in
    // upper case: any case matches).
    let waiting = f.submit(&f.initiator, CAROL, "2").await.unwrap();
    assert_eq!(waiting.state, state::PENDING_APPROVAL);
    let decision: serde_json::Value = serde_json::from_str(&waiting.decision).unwrap();
    assert_eq!(decision["first_time_destination"], true, "{decision}");
    let queued = f.submit(&f.initiator, BOB, "0.5").await.unwrap();
    assert_eq!(queued.state, state::QUEUED);
    let bob_upper = format!("0x{}", BOB[2..].to_uppercase());
    for (address, list) in [
        (CAROL.to_lowercase(), "incident 7"),
        (bob_upper, "OFAC SDN 2026-12-01"),
    ] {
        let row = f.govern(&f.policy_admin, deny(&address, list)).await;
        assert_eq!(row.state, "applied");
    }
    let listed = f.svc.deny_list().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|d| d.address == d.address.to_lowercase()));
    // Denied on another EVM chain: denied here too (one key, every chain).
    let elsewhere = "0x8617E340B3D01FA5F11F306F4090FD50E238070D";
    let row = f
        .govern(
            &f.policy_admin,
            Change::DenyAddresses {
                list: "mainnet incident".into(),
                entries: vec![service::governance::DeniedEntry {
                    network: "eip155:1".into(),
                    address: elsewhere.into(),
                    reason: "drained a bridge".into(),
                }],
            },
        )
        .await;
    assert_eq!(row.state, "applied");
    let (c, _) = code(f.submit(&f.initiator, elsewhere, "0.1").await);
    assert_eq!(c, "denied_destination");
    // Requested: refused, nothing recorded.
    let before = f.actions().await.len();
    let (c, m) = code(f.submit(&f.initiator, BOB, "0.1").await);
    assert_eq!(c, "denied_destination");
    assert!(
        m.contains("OFAC SDN 2026-12-01") && m.contains("stolen funds"),
        "{m}"
    );
    assert_eq!(f.actions().await.len(), before);
    // Approved: refused.
    let (c, _) = code(
        f.vote_as(&f.b, &waiting, Vote::Approve, f.soon(), None)
            .await,
    );
    assert_eq!(c, "denied_destination");
    // Before signing: the queued one fails with the reason; nothing signed.
    f.svc.execute_due().await.unwrap();
    let failed = f.db.store.transfer(queued.id).await.unwrap();
    assert_eq!(failed.state, state::FAILED);
    assert!(failed.last_error.unwrap().contains("deny list"));
    assert!(failed.eth_send_id.is_none());
    // Off the list again (a proposal too): Bob can be paid.
    let row = f
        .govern(
            &f.policy_admin,
            Change::UndenyAddress {
                network: network.clone(),
                address: BOB.to_lowercase(),
            },
        )
        .await;
    assert_eq!(row.state, "applied");
    let paid = f.submit(&f.initiator, BOB, "0.1").await.unwrap();
    assert_eq!(paid.state, state::QUEUED);
    // Carried out: Bob is now a recent destination, and no longer new.
    assert_eq!(f.svc.execute_due().await.unwrap().submitted, 1);
    chain_eth_client::testing::mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    let paid = f.db.store.transfer(paid.id).await.unwrap();
    assert_eq!(paid.state, state::COMPLETED);
    let again = f.submit(&f.initiator, BOB, "0.1").await.unwrap();
    let decision: serde_json::Value = serde_json::from_str(&again.decision).unwrap();
    assert_eq!(decision["first_time_destination"], false, "{decision}");
    let mut bytes = [0u8; 20];
    hex::decode_to_slice(&BOB[2..], &mut bytes).unwrap();
    bytes[9] ^= 0x55;
    let like_bob = chain_eth::EthAddress::from_bytes(bytes).to_string();
    let (c, m) = code(f.submit(&f.initiator, &like_bob, "0.1").await);
    assert_eq!(c, "lookalike_destination");
    assert!(m.contains("paid in the last 90 days"), "{m}");
    // Bad lists change nothing.
    let who = f.who(&f.policy_admin).await;
    for bad in [
        deny("0x1234", "short"),
        deny(BOB, ""),
        Change::UndenyAddress {
            network: network.clone(),
            address: BOB.into(),
        },
    ] {
        assert!(f.svc.propose(&who, bad).await.is_err());
    }

    // A look-alike of an address-book entry: the same first and last four
    // hex digits, the middle changed (an address poisoner's vanity address).
    let dave = "0x52908400098527886E0F7030069857D2E4169EE7";
    let row = f
        .govern(
            &f.policy_admin,
            Change::AddAddress {
                network: network.clone(),
                address: dave.into(),
                label: "Dave".into(),
                group: None,
            },
        )
        .await;
    assert_eq!(row.state, "applied");
    let mut bytes = [0u8; 20];
    hex::decode_to_slice(&dave[2..], &mut bytes).unwrap();
    bytes[5] ^= 0xff;
    bytes[12] ^= 0x0f;
    let poisoned = chain_eth::EthAddress::from_bytes(bytes).to_string();
    let (c, m) = code(f.submit(&f.initiator, &poisoned, "0.1").await);
    assert_eq!(c, "lookalike_destination");
    assert!(
        m.contains(&dave.to_lowercase()) && m.contains("Dave"),
        "{m}"
    );
    // The entry itself is no look-alike of itself.
    assert!(f.submit(&f.initiator, dave, "0.1").await.is_ok());
}

/// A BIP-86 HD account: Taproot deposit addresses derived from its xpub
/// (the watch-only descriptor `tr(tpub…/0/*)` derives the same), two
/// deposits spent by their child keys' key-path signatures, change to a
/// Taproot change address; Bitcoin Core's interpreter verifies.
async fn taproot_hd_accounts_pay_out_under_core(f: Fixture) {
    use domain::{Asset, BitcoinNetwork};
    let regtest = BitcoinNetwork::Regtest;
    let account = f
        .hd_account_of(service::wallets::AccountKey::HdTaproot)
        .await;
    assert!(account.address.starts_with("bcrt1p"), "{}", account.address);
    let watch = account.watch.clone().unwrap();
    assert_eq!(watch.account_path.as_deref(), Some("m/86'/1'/0'"));
    assert!(watch.descriptor.starts_with("tr(tpub"), "{watch:?}");
    assert_eq!(watch.slip132, None, "SLIP-132 has no Taproot prefix");
    let receive = chain_btc::WalletDescriptor::parse(&watch.descriptor).unwrap();
    assert_eq!(
        receive.address_at(0, regtest).unwrap().to_string(),
        account.address
    );
    f.svc
        .waive_key_backup(&console(), account.key)
        .await
        .unwrap();
    let who = f.who(&f.initiator).await;
    let can = f
        .svc
        .authorize::<perm::InitiateTransfer>(&who, Some(f.wallet))
        .unwrap();
    let a0 = can.deposit_address(f.wallet, regtest).await.unwrap();
    f.svc
        .btc_record_deposit_to(&console(), regtest, &a0, &"b0".repeat(32), 0, 40_000)
        .await
        .unwrap();
    let a1 = can.deposit_address(f.wallet, regtest).await.unwrap();
    assert!(a1.starts_with("bcrt1p") && a1 != a0);
    assert_eq!(receive.address_at(1, regtest).unwrap().to_string(), a1);
    f.svc
        .btc_record_deposit_to(&console(), regtest, &a1, &"b1".repeat(32), 1, 50_000)
        .await
        .unwrap();
    let t = can
        .submit(&TransferRequest {
            asset: Asset::bitcoin(regtest).id().clone(),
            destination: PAYEE.into(),
            ..f.request(BOB, "0.0006")
        })
        .await
        .unwrap();
    assert_eq!(f.svc.execute_due().await.unwrap().submitted, 1);
    let t = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(t.state, state::SIGNED);
    let send = f.db.store.btc_send(&t.btc_send_id.unwrap()).await.unwrap();
    let tx: bitcoin::Transaction =
        bitcoin::consensus::deserialize(send.raw.as_ref().unwrap()).unwrap();
    let spent = f.db.store.btc_utxos_of_send(&send.id).await.unwrap();
    assert_eq!(spent.len(), 2);
    chain_btc::verify_with_core(&tx, &spent_outputs(&tx, &spent)).unwrap();
    assert!(
        tx.input.iter().all(|i| i.witness.len() == 1),
        "key-path spends: one Schnorr signature each"
    );
    let change =
        f.db.store
            .btc_addresses_of_key("bitcoin:regtest", account.key, 1)
            .await
            .unwrap();
    assert_eq!(change.len(), 1);
    assert!(change[0].address.starts_with("bcrt1p"));
    assert!(
        tx.output
            .iter()
            .any(|o| o.script_pubkey.to_hex_string() == change[0].script_pubkey)
    );
}

/// A Bitcoin payout waiting for its batch's window when its destination is
/// denied: pulled into the batch another payout starts, it fails with the
/// reason, and the batch pays the other one alone.
async fn a_payout_denied_while_it_waits_for_its_batch_is_never_paid(f: Fixture) {
    use domain::{Asset, BitcoinNetwork};
    use service::btc::BatchRule;
    let regtest = BitcoinNetwork::Regtest;
    f.add_regtest(BatchRule {
        window_ms: 60_000,
        max_payouts: 2,
    });
    f.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
        .await;
    let mut keys = Vec::new();
    for _ in 0..2 {
        let k = NewKey {
            purpose: KeyPurpose::TransferSigning,
            algorithm: KeyAlgorithm::EcdsaSecp256k1,
            backend: KeyBackend::Keystore,
            cryptoperiod_days: 30,
        };
        keys.push(f.svc.create_key(&console(), k).await.unwrap().id);
    }
    f.svc
        .register_btc_key(&console(), regtest, keys[0], f.wallet)
        .await
        .unwrap();
    f.svc
        .btc_record_deposit(&console(), regtest, keys[0], &"c1".repeat(32), 0, 100_000)
        .await
        .unwrap();
    let other = f.svc.btc_address(keys[1], regtest).await.unwrap();
    let who = f.who(&f.initiator).await;
    let can = f
        .svc
        .authorize::<perm::InitiateTransfer>(&who, Some(f.wallet))
        .unwrap();
    let btc = |to: &str, amount: &str| TransferRequest {
        asset: Asset::bitcoin(regtest).id().clone(),
        destination: to.into(),
        ..f.request(BOB, amount)
    };
    let waiting = can.submit(&btc(PAYEE, "0.0002")).await.unwrap();
    f.svc.execute_due().await.unwrap();
    assert_eq!(
        f.db.store.transfer(waiting.id).await.unwrap().state,
        state::QUEUED,
        "waiting for the window"
    );
    let row = f
        .govern(
            &f.policy_admin,
            Change::DenyAddresses {
                list: "incident 9".into(),
                entries: vec![service::governance::DeniedEntry {
                    network: "bitcoin:regtest".into(),
                    address: PAYEE.to_uppercase(),
                    reason: "a thief's address".into(),
                }],
            },
        )
        .await;
    assert_eq!(row.state, "applied");
    let starter = can.submit(&btc(&other, "0.0003")).await.unwrap();
    f.svc.execute_due().await.unwrap();
    let denied = f.db.store.transfer(waiting.id).await.unwrap();
    assert_eq!(denied.state, state::FAILED);
    assert!(denied.last_error.unwrap().contains("deny list"));
    assert!(denied.btc_send_id.is_none());
    let paid = f.db.store.transfer(starter.id).await.unwrap();
    assert_eq!(paid.state, state::SIGNED);
    let send =
        f.db.store
            .btc_send(&paid.btc_send_id.unwrap())
            .await
            .unwrap();
    let tx: bitcoin::Transaction =
        bitcoin::consensus::deserialize(send.raw.as_ref().unwrap()).unwrap();
    let denied_script = chain_btc::BtcAddress::parse(PAYEE, regtest)
        .unwrap()
        .script_pubkey();
    assert!(tx.output.iter().all(|o| o.script_pubkey != denied_script));
}

/// Signs, as an offline signer holding `secret` would, every input of
/// `psbt` its key can sign (recognised from the PSBT alone).
fn sign_offline(psbt: &mut bitcoin::Psbt, secret: &bitcoin::secp256k1::SecretKey) {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let pk = bitcoin::secp256k1::PublicKey::from_secret_key(&secp, secret).serialize();
    let tasks = chain_btc::tasks_for_key(psbt, &pk).unwrap();
    assert!(!tasks.is_empty(), "the key signs nothing in this PSBT");
    for t in tasks {
        let chain_btc::SigningTask::Ecdsa { digest, .. } = t else {
            panic!("not an ECDSA task: {t:?}")
        };
        let sig = secp.sign_ecdsa(&bitcoin::secp256k1::Message::from_digest(digest), secret);
        chain_btc::add_ecdsa(psbt, &t, &sig.serialize_compact()).unwrap();
    }
}

/// A cold wallet's 2-of-3 multisig account (an HSM key, a keystore key, a
/// key held offline): an approved withdrawal is signed by the server as
/// far as the cold tier lets it (one signature), waits in
/// `awaiting_signature` with its PSBT handed out, and completes only with
/// the offline key's signature; a PSBT that pays otherwise, spends more,
/// pays another fee, or is signed by a foreign key changes nothing and is
/// audited. Cancelling an exported transfer, or its lapse, gives its
/// outputs back.
async fn a_cold_multisig_withdrawal_needs_its_offline_signature(f: Fixture) {
    use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
    use domain::{Asset, BitcoinNetwork};
    use service::cosigners::Cosigner;
    use service::wallets::AccountKey;
    let regtest = BitcoinNetwork::Regtest;
    f.add_regtest(service::btc::BatchRule::default());
    f.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
        .await;
    let cold = SecretKey::from_slice(&[0x42; 32]).unwrap();
    let cold_pub = hex::encode(PublicKey::from_secret_key(&Secp256k1::new(), &cold).serialize());
    let admin = f.who(&f.admin1).await;
    let manage = f
        .svc
        .authorize::<perm::ManageNetworks>(&admin, None)
        .unwrap();
    let open = |threshold, cosigners| {
        manage.open_account(
            f.wallet,
            domain::Network::Bitcoin(regtest),
            AccountKey::Multisig {
                threshold,
                cosigners,
            },
        )
    };
    let external = |k: &str| {
        Cosigner::External(service::cosigners::ExternalKey {
            public_key: k.into(),
            label: "vault-a".into(),
            origin: None,
        })
    };
    // Bad accounts are refused before any key is made.
    for (m, cosigners) in [
        (
            3,
            vec![Cosigner::New(KeyBackend::Keystore), external(&cold_pub)],
        ),
        (0, vec![external(&cold_pub)]),
        (
            1,
            vec![external(&cold_pub), external(&cold_pub.to_uppercase())],
        ),
        (1, vec![Cosigner::New(KeyBackend::Threshold)]),
        (1, vec![external("02aa")]),
    ] {
        let e = open(m, cosigners).await.unwrap_err();
        assert!(matches!(e, ServiceError::Invalid(_)), "{e:?}");
    }
    let bitcoin_accounts = |f: &Fixture| {
        let svc = f.svc.clone();
        let wallet = f.wallet;
        async move {
            svc.wallet_accounts(wallet)
                .await
                .unwrap()
                .into_iter()
                .filter(|a| a.network.is_bitcoin())
                .count()
        }
    };
    assert_eq!(bitcoin_accounts(&f).await, 0);
    let account = open(
        2,
        vec![
            Cosigner::New(KeyBackend::Pkcs11),
            Cosigner::New(KeyBackend::Keystore),
            external(&cold_pub),
        ],
    )
    .await
    .unwrap();
    assert!(account.address.starts_with("bcrt1q") && account.address.len() == 64);
    // The watch-only descriptor (with its checksum) derives the address.
    let watch = account.watch.clone().unwrap();
    assert!(
        watch.descriptor.starts_with("wsh(sortedmulti(2,") && watch.descriptor.contains('#'),
        "{watch:?}"
    );
    assert!(watch.descriptor.contains(&cold_pub));
    // Its checksum is BIP-380's, and its keys make the address.
    let (body, _) = watch.descriptor.split_once('#').unwrap();
    assert_eq!(chain_btc::checksummed(body).unwrap(), watch.descriptor);
    let keys = body
        .trim_start_matches("wsh(sortedmulti(2,")
        .trim_end_matches("))")
        .split(',')
        .map(|k| hex::decode(k).unwrap().try_into().unwrap())
        .collect();
    let spend = chain_btc::Spend::P2wshMulti {
        threshold: 2,
        pubkeys: keys,
    };
    assert_eq!(
        chain_btc::BtcAddress::parse(&account.address, regtest)
            .unwrap()
            .script_pubkey(),
        spend.script_pubkey().unwrap()
    );
    // Only a cold wallet's transactions wait for the offline key.
    let row = f
        .govern(
            &f.admin1,
            Change::SetWalletTier {
                wallet: f.wallet.to_string(),
                tier: "cold".into(),
            },
        )
        .await;
    assert_eq!(row.state, "applied");
    f.svc
        .waive_key_backup(&console(), account.key)
        .await
        .unwrap();
    for (i, value) in [(0u8, 60_000u64), (1, 70_000), (2, 80_000)] {
        f.svc
            .btc_record_deposit(
                &console(),
                regtest,
                account.key,
                &format!("{:02x}", 0xc0 + i).repeat(32),
                0,
                value,
            )
            .await
            .unwrap();
    }
    // A key of the server alone in the same wallet (registered from the
    // console): its output is never spent by the cold wallet's payouts.
    let hot = f.svc.create_key(&console(), transfer_key()).await.unwrap();
    f.svc
        .register_btc_key(&console(), regtest, hot.id, f.wallet)
        .await
        .unwrap();
    let hot_output = f
        .svc
        .btc_record_deposit(&console(), regtest, hot.id, &"cf".repeat(32), 0, 5_000_000)
        .await
        .unwrap();
    let who = f.who(&f.initiator).await;
    let can = f
        .svc
        .authorize::<perm::InitiateTransfer>(&who, Some(f.wallet))
        .unwrap();
    let pay = |amount: &str| TransferRequest {
        asset: Asset::bitcoin(regtest).id().clone(),
        destination: PAYEE.into(),
        ..f.request(BOB, amount)
    };
    let t = can.submit(&pay("0.0005")).await.unwrap();
    f.svc.execute_due().await.unwrap();
    let t = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(t.state, state::AWAITING_SIGNATURE);
    let send_id = t.btc_send_id.clone().unwrap();
    let viewer = f
        .svc
        .authorize::<perm::ReadWallet>(&admin, Some(f.wallet))
        .unwrap();
    let u = viewer.unsigned(t.id).await.unwrap();
    assert_eq!(u.transfers, vec![t.id]);
    let service::cold::UnsignedTx::Bitcoin { psbt, outputs, .. } = u.tx else {
        panic!("not a Bitcoin transaction")
    };
    assert!(
        outputs
            .iter()
            .any(|(a, v, change)| a == PAYEE && *v == 50_000 && !change)
    );
    let exported = bitcoin::Psbt::deserialize(&psbt).unwrap();
    // One signature made here (the HSM's), none by the keystore key: the
    // cold tier leaves the last one to the offline key.
    assert!(exported.inputs.iter().all(|i| i.partial_sigs.len() == 1));
    let before = f.actions().await;
    let operator = f
        .svc
        .authorize::<perm::OperateQueue>(&admin, Some(f.wallet))
        .unwrap();
    // What is brought back must be exactly what was handed out.
    let mut changed_output = exported.clone();
    changed_output.unsigned_tx.output[0].value = bitcoin::Amount::from_sat(49_000);
    let mut extra_input = exported.clone();
    extra_input.unsigned_tx.input.push(bitcoin::TxIn {
        previous_output: bitcoin::OutPoint::new("d0".repeat(32).parse().unwrap(), 1),
        ..exported.unsigned_tx.input[0].clone()
    });
    extra_input.inputs.push(exported.inputs[0].clone());
    let mut other_fee = exported.clone();
    let last = other_fee.unsigned_tx.output.len() - 1;
    other_fee.unsigned_tx.output[last].value -= bitcoin::Amount::from_sat(1_000);
    let foreign = exported.clone();
    for (mut bad, secret) in [
        (changed_output, cold),
        (extra_input, cold),
        (other_fee, cold),
        (foreign, SecretKey::from_slice(&[0x43; 32]).unwrap()),
    ] {
        // The foreign key is in no script: nothing to sign, it leaves it.
        let secp = Secp256k1::new();
        let pk = PublicKey::from_secret_key(&secp, &secret).serialize();
        if !chain_btc::tasks_for_key(&bad, &pk).unwrap().is_empty() {
            sign_offline(&mut bad, &secret);
        }
        let e = operator
            .import_signed(t.id, &bad.serialize())
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::SignatureRefused(_)), "{e:?}");
    }
    // Not a PSBT at all.
    assert!(matches!(
        service::cold::decode_psbt("bm90IGEgcHNidA=="),
        Err(ServiceError::Invalid(_))
    ));
    let after = f.actions().await;
    assert_eq!(
        after
            .iter()
            .filter(|a| *a == "transfer.signature_refused")
            .count(),
        before
            .iter()
            .filter(|a| *a == "transfer.signature_refused")
            .count()
            + 4
    );
    assert_eq!(
        f.db.store.transfer(t.id).await.unwrap().state,
        state::AWAITING_SIGNATURE
    );
    assert_eq!(
        f.db.store.btc_send(&send_id).await.unwrap().state,
        "exported"
    );
    // The offline key's signature (over the PSBT as handed out, in its
    // text form) completes it.
    let mut signed = bitcoin::Psbt::deserialize(
        &service::cold::decode_psbt(&service::cold::encode_psbt(&psbt)).unwrap(),
    )
    .unwrap();
    sign_offline(&mut signed, &cold);
    let (txid, st) = operator
        .import_signed(t.id, &signed.serialize())
        .await
        .unwrap();
    assert_eq!(st, state::SIGNED, "no node here: it waits signed");
    let send = f.db.store.btc_send(&send_id).await.unwrap();
    assert_eq!(send.txid.as_deref(), Some(txid.as_str()));
    let tx: bitcoin::Transaction =
        bitcoin::consensus::deserialize(send.raw.as_ref().unwrap()).unwrap();
    let spent = f.db.store.btc_utxos_of_send(&send.id).await.unwrap();
    chain_btc::verify_with_core(&tx, &spent_outputs(&tx, &spent)).unwrap();
    // Empty dummy, two signatures, the witness script.
    assert!(tx.input.iter().all(|i| i.witness.len() == 4));
    assert!(spent.iter().all(|u| u.txid != hot_output.txid));
    // The wallet's Ethereum sender is a key of the server: in a cold
    // wallet its transfers wait for a person, no nonce taken.
    let eth = f.submit(&f.initiator, BOB, "1").await.unwrap();
    f.svc.execute_due().await.unwrap();
    let eth = f.db.store.transfer(eth.id).await.unwrap();
    assert_eq!(eth.state, state::QUEUED);
    assert!(eth.eth_send_id.is_none());
    assert!(
        eth.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("signs offline"),
        "{eth:?}"
    );
    // Brought back twice: it is no longer waiting.
    assert!(matches!(
        operator.import_signed(t.id, &signed.serialize()).await,
        Err(ServiceError::Conflict(_))
    ));

    // Cancelled while handed out: its outputs go back.
    let available = |f: &Fixture| {
        let store = f.db.store.clone();
        let wallet = f.wallet;
        async move {
            store
                .wallet_btc_utxos(wallet, "bitcoin:regtest", "available")
                .await
                .unwrap()
                .len()
        }
    };
    let held = available(&f).await;
    let t2 = can.submit(&pay("0.0004")).await.unwrap();
    f.svc.execute_due().await.unwrap();
    assert_eq!(
        f.db.store.transfer(t2.id).await.unwrap().state,
        state::AWAITING_SIGNATURE
    );
    assert!(available(&f).await < held);
    let cancelled = operator.cancel(t2.id).await.unwrap();
    assert_eq!(cancelled.state, state::CANCELLED);
    assert_eq!(available(&f).await, held);
    // Not signed in time: it lapses, and its outputs go back too.
    let t3 = can.submit(&pay("0.0003")).await.unwrap();
    f.svc.execute_due().await.unwrap();
    assert_eq!(
        f.db.store.transfer(t3.id).await.unwrap().state,
        state::AWAITING_SIGNATURE
    );
    f.clock
        .0
        .fetch_add(service::cold::EXPORT_WINDOW_MS + 1, Ordering::SeqCst);
    f.svc.advance_transfers().await.unwrap();
    assert_eq!(
        f.db.store.transfer(t3.id).await.unwrap().state,
        state::EXPIRED
    );
    assert_eq!(available(&f).await, held);
}

/// Signs `plan` with `secret` as an offline signer would: libsecp256k1
/// over its signing hash, encoded (EIP-2718) for `from`.
fn sign_eth_offline(plan: &TxPlan, secret: [u8; 32]) -> Vec<u8> {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&secret).unwrap();
    let pk = bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk);
    let from = EthAddress::from_public_key(&pk.serialize()).unwrap();
    let msg = bitcoin::secp256k1::Message::from_digest(plan.signing_hash());
    let (id, compact) = secp.sign_ecdsa_recoverable(&msg, &sk).serialize_compact();
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    r.copy_from_slice(&compact[..32]);
    s.copy_from_slice(&compact[32..]);
    let parts = chain_eth::EcdsaParts {
        r,
        s,
        recovery_id: u8::try_from(id.to_i32()).unwrap(),
    };
    plan.into_signed(parts, from).unwrap().raw
}

/// A cold wallet's Ethereum sender is a key held outside: an approved
/// withdrawal waits in `awaiting_signature` with its nonce kept, handed out
/// as an unsigned EIP-1559 transaction; one signed by another key, or for
/// another plan, is refused and audited; the sender's signature is
/// accepted, broadcast and confirmed on anvil. Cancelling an exported
/// transfer gives its nonce back to the next.
async fn a_cold_ether_withdrawal_is_signed_offline_and_broadcast(f: Fixture) {
    use service::cold::UnsignedTx;
    f.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
        .await;
    let before = f.client.balance(BOB.parse().unwrap()).await.unwrap();
    let t = f.submit(&f.initiator, BOB, "1").await.unwrap();
    f.svc.execute_due().await.unwrap();
    let t = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(t.state, state::AWAITING_SIGNATURE);
    // Again: handed out once, nothing signed.
    f.svc.execute_due().await.unwrap();
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    assert_eq!(
        f.db.store.transfer(t.id).await.unwrap().state,
        state::AWAITING_SIGNATURE
    );
    let admin = f.who(&f.admin1).await;
    let viewer = f
        .svc
        .authorize::<perm::ReadWallet>(&admin, Some(f.wallet))
        .unwrap();
    let u = viewer.unsigned(t.id).await.unwrap();
    let UnsignedTx::Ethereum(e) = u.tx else {
        panic!("not an Ethereum transaction")
    };
    assert_eq!(e.plan.to, BOB.parse().unwrap());
    assert_eq!(e.plan.value, ETHER);
    assert_eq!(e.from, f.from.to_string());
    assert_eq!(e.signing_hash, e.plan.signing_hash());
    assert_eq!(e.payload.first(), Some(&2), "an EIP-1559 payload");
    let operator = f
        .svc
        .authorize::<perm::OperateQueue>(&admin, Some(f.wallet))
        .unwrap();
    let actions = f.actions().await;
    let refused = |a: &[String]| {
        a.iter()
            .filter(|a| *a == "transfer.signature_refused")
            .count()
    };
    let mut more = e.plan.clone();
    more.value += 1;
    for bad in [
        sign_eth_offline(&e.plan, [0x52; 32]),
        sign_eth_offline(&more, COLD_ETH_SECRET),
        vec![0x02, 0xc0],
    ] {
        let r = operator.import_signed(t.id, &bad).await;
        assert!(matches!(r, Err(ServiceError::SignatureRefused(_))), "{r:?}");
    }
    assert_eq!(refused(&f.actions().await), refused(&actions) + 3);
    assert_eq!(
        f.db.store.transfer(t.id).await.unwrap().state,
        state::AWAITING_SIGNATURE
    );
    // The sender's own signature: accepted, broadcast, confirmed.
    let raw = sign_eth_offline(&e.plan, COLD_ETH_SECRET);
    let text = format!("0x{}", hex::encode(&raw));
    let raw = service::cold::decode_transaction(&text).unwrap();
    let (hash, st) = operator.import_signed(t.id, &raw).await.unwrap();
    assert_eq!(st, state::BROADCASTING, "{hash}");
    chain_eth_client::testing::mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    assert_eq!(
        f.db.store.transfer(t.id).await.unwrap().state,
        state::COMPLETED
    );
    assert_eq!(
        f.client.balance(BOB.parse().unwrap()).await.unwrap(),
        before + ETHER
    );
    // Handed out, then cancelled: its nonce goes to the next transfer.
    let t2 = f.submit(&f.initiator, BOB, "0.5").await.unwrap();
    f.svc.execute_due().await.unwrap();
    let nonce = f.nonce_of(t2.id).await;
    let cancelled = operator.cancel(t2.id).await.unwrap();
    assert_eq!(cancelled.state, state::CANCELLED);
    let t3 = f.submit(&f.initiator, BOB, "0.25").await.unwrap();
    f.svc.execute_due().await.unwrap();
    assert_eq!(
        f.db.store.transfer(t3.id).await.unwrap().state,
        state::AWAITING_SIGNATURE
    );
    assert_eq!(f.nonce_of(t3.id).await, nonce);
    // Signed offline and sent by its holder before it is brought back: it
    // is not cancelled (its nonce is used), it is brought back and followed.
    let UnsignedTx::Ethereum(e3) = viewer.unsigned(t3.id).await.unwrap().tx else {
        panic!("not an Ethereum transaction")
    };
    let raw3 = sign_eth_offline(&e3.plan, COLD_ETH_SECRET);
    let hash3 = chain_eth::decode(&raw3).unwrap().hash;
    f.client.send_raw(&raw3, hash3).await.unwrap();
    let e = operator.cancel(t3.id).await.unwrap_err();
    assert!(
        matches!(&e, ServiceError::Conflict(m) if m.contains("used on the network")),
        "{e:?}"
    );
    assert_eq!(
        f.db.store.transfer(t3.id).await.unwrap().state,
        state::AWAITING_SIGNATURE
    );
    operator.import_signed(t3.id, &raw3).await.unwrap();
    chain_eth_client::testing::mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    assert_eq!(
        f.db.store.transfer(t3.id).await.unwrap().state,
        state::COMPLETED
    );
}

/// A consolidation is an ordinary transfer of its own kind: refused while
/// the fee rate is above the configured level or too few small outputs are
/// free; judged by the policy (a rule matches `types = ["consolidation"]`
/// where withdrawals are blocked); planned alone from the small outputs
/// only, paying the wallet itself; verified by Core's interpreter.
async fn small_outputs_are_consolidated_under_policy_while_fees_are_low(f: Fixture) {
    use domain::{Asset, BitcoinNetwork};
    let regtest = BitcoinNetwork::Regtest;
    let network = |fee_rate| service::btc::BtcNetwork {
        network: regtest,
        fee_caps: chain_btc::FeeCaps {
            max_fee_rate: 50,
            max_fee: 20_000,
        },
        fee_rate,
        batch: service::btc::BatchRule::default(),
        confirmations: 1,
        bump_after_blocks: 2,
        client: None,
        consolidation: Some(service::btc::ConsolidationRule {
            below_sat_vb: 10,
            max_output_sat: 20_000,
            min_outputs: 4,
            max_inputs: 10,
        }),
    };
    f.svc.add_btc_network(network(5));
    f.set_policy(
        "[[rules]]\nname = \"consolidations\"\ntypes = [\"consolidation\"]\naction = \"allow\"\n",
    )
    .await;
    let key = f.svc.create_key(&console(), transfer_key()).await.unwrap();
    f.svc
        .register_btc_key(&console(), regtest, key.id, f.wallet)
        .await
        .unwrap();
    f.svc.waive_key_backup(&console(), key.id).await.unwrap();
    let who = f.who(&f.initiator).await;
    let can = f
        .svc
        .authorize::<perm::InitiateTransfer>(&who, Some(f.wallet))
        .unwrap();
    let deposit = |i: u8, sat: u64| {
        let svc = f.svc.clone();
        let key = key.id;
        async move {
            let txid = format!("{:02x}", 0xa0 + i).repeat(32);
            svc.btc_record_deposit(&console(), regtest, key, &txid, 0, sat)
                .await
        }
    };
    for (i, sat) in [(1, 5_000), (2, 6_000), (3, 7_000)] {
        deposit(i, sat).await.unwrap();
    }
    // Three small outputs: fewer than the four a consolidation needs.
    let e = can.consolidate(f.wallet, regtest).await.unwrap_err();
    assert!(
        matches!(&e, ServiceError::Conflict(m) if m.contains("needs 4")),
        "{e:?}"
    );
    deposit(4, 8_000).await.unwrap();
    deposit(5, 9_000).await.unwrap();
    // Fees high: not now.
    f.svc.add_btc_network(network(20));
    let e = can.consolidate(f.wallet, regtest).await.unwrap_err();
    assert!(
        matches!(&e, ServiceError::Conflict(m) if m.contains("above")),
        "{e:?}"
    );
    f.svc.add_btc_network(network(5));
    // The policy allows consolidations only: a withdrawal is blocked.
    let w = can
        .submit(&TransferRequest {
            asset: Asset::bitcoin(regtest).id().clone(),
            destination: PAYEE.into(),
            ..f.request(BOB, "0.0001")
        })
        .await
        .unwrap();
    assert_eq!(w.state, state::BLOCKED);
    let t = can.consolidate(f.wallet, regtest).await.unwrap();
    assert_eq!(t.state, state::QUEUED);
    // One at a time.
    let e = can.consolidate(f.wallet, regtest).await.unwrap_err();
    assert!(
        matches!(&e, ServiceError::Conflict(m) if m.contains("under way")),
        "{e:?}"
    );
    // Asked for with small outputs only (they cover it: its fee is taken
    // off); a large one arriving before it is planned is not spent.
    deposit(0, 500_000).await.unwrap();
    f.svc.execute_due().await.unwrap();
    let t = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(t.state, state::SIGNED, "{:?}", t.last_error);
    let send = f.db.store.btc_send(&t.btc_send_id.unwrap()).await.unwrap();
    let tx: bitcoin::Transaction =
        bitcoin::consensus::deserialize(send.raw.as_ref().unwrap()).unwrap();
    let spent = f.db.store.btc_utxos_of_send(&send.id).await.unwrap();
    chain_btc::verify_with_core(&tx, &spent_outputs(&tx, &spent)).unwrap();
    // The small ones, not the large one; everything back to the wallet.
    assert_eq!(spent.len(), 5, "{spent:?}");
    assert!(spent.iter().all(|u| u.value_sat <= 20_000));
    let own = f.svc.btc_address(key.id, regtest).await.unwrap();
    let own = chain_btc::BtcAddress::parse(&own, regtest)
        .unwrap()
        .script_pubkey();
    assert!(tx.output.iter().all(|o| o.script_pubkey == own));
    assert_eq!(
        tx.output.len(),
        1,
        "one output: what the fee leaves is dust"
    );
}

/// BIP-44 Ethereum derivation agrees with a second implementation: the
/// accounts anvil derives from its test mnemonic (data file), also paid
/// here by the fixture's dev wallets.
async fn eth_hd_vectors(f: &Fixture) {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("vectors/bip44_eth.json")).unwrap();
    let mnemonic = keys::hd::Mnemonic::parse(v["mnemonic"].as_str().unwrap()).unwrap();
    let (key, _) = f
        .svc
        .create_hd_key_from(
            &console(),
            service::NewHdKey {
                purpose: KeyPurpose::TransferSigning,
                algorithm: KeyAlgorithm::EcdsaSecp256k1,
                account_path: v["account_path"].as_str().unwrap().into(),
                cryptoperiod_days: 30,
            },
            Some(mnemonic),
            "",
        )
        .await
        .unwrap();
    for (i, want) in v["addresses"].as_array().unwrap().iter().enumerate() {
        let pk = keys::hd::derive_from_xpub(&key.public_key, &[0, i as u32]).unwrap();
        let got = EthAddress::from_public_key(&pk).unwrap();
        assert_eq!(got.to_string(), want.as_str().unwrap());
        assert_eq!(got, DevWallet::new(i).await.address);
    }
}

/// An Ethereum HD account: its sender is child 0/0, each label gets its own
/// deposit address (0/i), kept for the label; deposits there are swept into
/// the sender under the policy (sweeps and gas top-ups allowed by kind while
/// withdrawals are not), a token's gas topped up from the sender first; each
/// sweep is signed by its address's child key.
async fn ethereum_hd_deposit_addresses_are_swept_into_their_sender(f: Fixture) {
    use chain_eth_client::testing::{deploy_test_token, mine};
    use service::wallets::AccountKey;
    eth_hd_vectors(&f).await;
    let alice = DevWallet::new(2).await;
    let token = deploy_test_token(&f.client, &alice).await;
    let tt = domain::Asset::new(
        AssetId::new(
            domain::Network::Evm { chain_id: CHAIN_ID },
            domain::AssetKind::Erc20(domain::ContractAddress::from_bytes(*token.as_bytes())),
        )
        .unwrap(),
        domain::Symbol::new("TT").unwrap(),
        domain::Decimals::new(6).unwrap(),
    )
    .unwrap();
    f.add_token_network(1, &tt, token);
    let wallet = f
        .svc
        .console_create_wallet(&console(), "deposits")
        .await
        .unwrap()
        .id;
    let key = SigningKey::from_bytes(&[42; 32]);
    let row = f
        .svc
        .console_register_api_key(
            &console(),
            "deposits-initiator",
            &key.verifying_key().to_bytes(),
            &[Grant::new(Role::Initiator, Scope::Wallet(wallet)).unwrap()],
            30,
            None,
        )
        .await
        .unwrap();
    let initiator = Person {
        key,
        id: row.id.to_string(),
        approver: SigningKey::from_bytes(&[43; 32]),
    };
    f.set_policy(
        "[[rules]]\nname = \"sweeps\"\ntypes = [\"sweep\", \"gas_top_up\"]\naction = \"allow\"\n",
    )
    .await;
    let admin = f.who(&f.admin1).await;
    let account = f
        .svc
        .authorize::<perm::ManageNetworks>(&admin, None)
        .unwrap()
        .open_account(
            wallet,
            domain::Network::Evm { chain_id: CHAIN_ID },
            AccountKey::Hd,
        )
        .await
        .unwrap();
    let xpub = f.db.store.key(account.key).await.unwrap().public_key;
    let child = |i: u32| {
        EthAddress::from_public_key(&keys::hd::derive_from_xpub(&xpub, &[0, i]).unwrap()).unwrap()
    };
    let sender = child(0);
    assert_eq!(account.address, sender.to_string());
    f.svc
        .waive_key_backup(&console(), account.key)
        .await
        .unwrap();
    let who = f.who(&initiator).await;
    let can = f
        .svc
        .authorize::<perm::InitiateTransfer>(&who, Some(wallet))
        .unwrap();
    // One address per label, kept for it; unlabelled, the last one until
    // something pays it.
    let issue = |label: Option<&'static str>| {
        let can = &can;
        async move {
            can.eth_deposit_address(wallet, CHAIN_ID, label)
                .await
                .map(|(a, d)| (a, d.unwrap()))
        }
    };
    let (a1, d1) = issue(Some("user-1")).await.unwrap();
    assert_eq!(d1.path, "m/44'/60'/0'/0/1");
    assert_eq!(a1, child(1).to_string());
    assert_eq!(issue(Some("user-1")).await.unwrap().0, a1);
    let (a2, d2) = issue(Some("user-2")).await.unwrap();
    assert_eq!((d2.index, a2.clone()), (2, child(2).to_string()));
    let (a3, _) = issue(None).await.unwrap();
    assert_eq!(issue(None).await.unwrap().0, a3);
    assert!(matches!(
        issue(Some("user 1!")).await,
        Err(ServiceError::Invalid(_))
    ));
    // A single-key account has one address: no labels.
    let single = f.who(&f.initiator).await;
    let r = f
        .svc
        .authorize::<perm::InitiateTransfer>(&single, Some(f.wallet))
        .unwrap()
        .eth_deposit_address(f.wallet, CHAIN_ID, Some("user-1"))
        .await;
    assert!(matches!(r, Err(ServiceError::Invalid(_))), "{r:?}");
    // Ether to the first user's address, tokens (no ether) to the second's,
    // ether to the sender for the gas it tops up.
    let (a1e, a2e): (EthAddress, EthAddress) = (a1.parse().unwrap(), a2.parse().unwrap());
    // The scanner's first pass starts at the head: from here on.
    f.svc.eth_scan_deposits(CHAIN_ID).await.unwrap();
    alice
        .transact(&f.client, |n, fees| {
            TxPlan::native(CHAIN_ID, n, a1e, 2 * ETHER, fees)
        })
        .await;
    alice
        .transact(&f.client, |n, fees| {
            TxPlan::erc20(CHAIN_ID, n, token, a2e, 5_000_000, 100_000, fees)
        })
        .await;
    alice
        .transact(&f.client, |n, fees| {
            TxPlan::native(CHAIN_ID, n, sender, ETHER, fees)
        })
        .await;
    mine(&f.client, 2).await;
    f.svc.eth_scan_deposits(CHAIN_ID).await.unwrap();
    mine(&f.client, 1).await;
    f.svc.eth_scan_deposits(CHAIN_ID).await.unwrap();
    let read = f
        .svc
        .authorize::<perm::ReadWallet>(&who, Some(wallet))
        .unwrap();
    let deposits = read.deposits(wallet, 100).await.unwrap();
    let to_deposit_addresses = deposits
        .iter()
        .filter(|d| {
            d.state == "credited"
                && (d.address == a1e.to_lower_hex() || d.address == a2e.to_lower_hex())
        })
        .count();
    assert_eq!(to_deposit_addresses, 2, "{deposits:?}");
    // Paid now: unlabelled, a fresh one.
    assert_eq!(
        issue(None).await.unwrap().0,
        a3,
        "the third is unpaid still"
    );
    // What is not a sweep of the wallet's own deposit address is refused.
    let deposit1 =
        f.db.store
            .eth_deposit_address_at(&format!("eip155:{CHAIN_ID}"), &a1e.to_lower_hex())
            .await
            .unwrap()
            .unwrap();
    let ether_id = domain::Asset::ether(CHAIN_ID).id().clone();
    let bad = |kind, destination: &str, source| TransferRequest {
        wallet,
        asset: ether_id.clone(),
        amount: "0.01".into(),
        destination: destination.into(),
        reference: None,
        external_id: None,
        priority: Default::default(),
        depends_on: None,
        kind,
        source,
    };
    let sender_text = sender.to_string();
    for (kind, to, source) in [
        (domain::TransferKind::Sweep, BOB, Some(deposit1.id)),
        (
            domain::TransferKind::Withdrawal,
            sender_text.as_str(),
            Some(deposit1.id),
        ),
        (domain::TransferKind::GasTopUp, BOB, None),
    ] {
        let r = can.submit(&bad(kind, to, source)).await;
        assert!(
            matches!(r, Err(ServiceError::Invalid(_))),
            "{kind:?}: {r:?}"
        );
    }
    let r = can
        .submit(&TransferRequest {
            amount: "0.5".into(),
            ..bad(domain::TransferKind::GasTopUp, &a1, None)
        })
        .await;
    assert!(
        matches!(r, Err(ServiceError::Invalid(_))),
        "too much: {r:?}"
    );

    let swept = can.sweep_deposits(wallet, CHAIN_ID).await.unwrap();
    assert_eq!(swept.transfers.len(), 3, "{swept:?}");
    assert!(swept.left.iter().any(|l| l.starts_with(&a3)), "{swept:?}");
    assert!(
        swept.transfers.iter().all(|t| t.state == state::QUEUED),
        "{swept:?}"
    );
    let [ether_sweep, top_up, token_sweep] = &swept.transfers[..] else {
        unreachable!()
    };
    assert_eq!(top_up.destination, a2e.to_lower_hex());
    assert_eq!(token_sweep.asset, tt.id().to_string());
    assert_eq!(token_sweep.amount, 5_000_000);
    // Each still under way: nothing more is made for them.
    let again = can.sweep_deposits(wallet, CHAIN_ID).await.unwrap();
    assert!(again.transfers.is_empty(), "{again:?}");
    let sender_before = f.client.balance(sender).await.unwrap();
    // The ether sweep and the top-up first; the token sweep waits for it.
    assert_eq!(f.svc.execute_due().await.unwrap().submitted, 2);
    mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    for t in [ether_sweep, top_up] {
        assert_eq!(
            f.db.store.transfer(t.id).await.unwrap().state,
            state::COMPLETED
        );
    }
    assert_eq!(f.svc.execute_due().await.unwrap().submitted, 1);
    mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    assert_eq!(
        f.db.store.transfer(token_sweep.id).await.unwrap().state,
        state::COMPLETED
    );
    assert_eq!(
        f.client.erc20_balance(token, sender).await.unwrap(),
        5_000_000
    );
    assert_eq!(f.client.erc20_balance(token, a2e).await.unwrap(), 0);
    let sender_after = f.client.balance(sender).await.unwrap();
    assert!(
        sender_after > sender_before + ETHER,
        "the sweep arrived, less the top-up: {sender_before} → {sender_after}"
    );
    // What is left at the first address is less than its sweep's fee.
    assert!(f.client.balance(a1e).await.unwrap() < ETHER / 50);
    // The sweeps and the top-up arrive as the wallet's own money moving,
    // not as payments to it.
    mine(&f.client, 1).await;
    f.svc.eth_scan_deposits(CHAIN_ID).await.unwrap();
    let internal: Vec<_> = read
        .deposits(wallet, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.from.starts_with("internal:"))
        .map(|d| (d.address, d.asset))
        .collect();
    assert!(
        internal.contains(&(a2e.to_lower_hex(), ether_id.to_string())),
        "{internal:?}"
    );
    assert!(
        internal.contains(&(sender.to_lower_hex(), tt.id().to_string())),
        "{internal:?}"
    );
    let actions = f.actions().await;
    assert!(actions.iter().any(|a| a == "eth.deposit_address.issued"));

    // The key rotates: its deposit addresses are retired (a label gets the
    // successor's child), and what reaches one later is still swept, by
    // the old key, into the new sender.
    let r = f
        .svc
        .rotate_with_sweep(&console(), account.key, 30)
        .await
        .unwrap();
    let new_sender: EthAddress = r.accounts[0].to.parse().unwrap();
    assert_ne!(new_sender, sender);
    f.svc
        .waive_key_backup(&console(), r.successor)
        .await
        .unwrap();
    let (b1, d) = issue(Some("user-1")).await.unwrap();
    assert_ne!(b1, a1);
    assert_eq!((d.key, d.index), (r.successor, 1));
    assert!(
        f.actions()
            .await
            .iter()
            .any(|a| a == "eth.deposit_address.retired")
    );
    while f.svc.execute_due().await.unwrap().submitted > 0 {
        mine(&f.client, 3).await;
        f.svc.eth_poll(CHAIN_ID).await.unwrap();
    }
    alice
        .transact(&f.client, |n, fees| {
            TxPlan::native(CHAIN_ID, n, a1e, ETHER, fees)
        })
        .await;
    mine(&f.client, 2).await;
    f.svc.eth_scan_deposits(CHAIN_ID).await.unwrap();
    // The late deposit, and what the top-up left at the second address.
    let swept = can.sweep_deposits(wallet, CHAIN_ID).await.unwrap();
    let late = &swept.transfers;
    assert_eq!(late.len(), 2, "{swept:?}");
    let of_first = format!("deposit:{}:", deposit1.id);
    assert!(late.iter().any(|t| {
        t.external_id
            .as_deref()
            .is_some_and(|e| e.starts_with(&of_first))
            && t.amount > ETHER * 99 / 100
    }));
    assert!(
        late.iter()
            .all(|t| t.destination == new_sender.to_lower_hex())
    );
    assert_eq!(f.svc.execute_due().await.unwrap().submitted, 2);
    mine(&f.client, 3).await;
    f.svc.eth_poll(CHAIN_ID).await.unwrap();
    for t in late {
        assert_eq!(
            f.db.store.transfer(t.id).await.unwrap().state,
            state::COMPLETED
        );
    }

    // After a restore, the next 20 children are kept back: the lost server
    // may have issued them; a new label gets one past them.
    f.svc
        .open_epoch(
            &console(),
            "00",
            7,
            serde_json::json!({ "from_audit_seq": 7 }),
        )
        .await
        .unwrap();
    // None new until the chains were asked.
    assert!(matches!(
        issue(Some("user-9")).await,
        Err(ServiceError::Conflict(_))
    ));
    f.svc.reconcile_restore().await.unwrap().unwrap();
    f.svc.reconcile_restore().await.unwrap();
    let (_, d) = issue(Some("user-9")).await.unwrap();
    assert_eq!(d.index, 2 + service::eth_hd::RESTORE_GAP);
    let reserved = f.actions().await;
    let reserved = reserved
        .iter()
        .filter(|a| *a == "eth.deposit_address.reserved")
        .count();
    assert_eq!(reserved, service::eth_hd::RESTORE_GAP as usize);
    // One label asked for twice at once: one address.
    let (x, y) = tokio::join!(issue(Some("user-10")), issue(Some("user-10")));
    assert_eq!(x.unwrap().0, y.unwrap().0);
}

impl Fixture {
    /// The fixture's network again, with `token` (of `asset`) configured
    /// and `confirmations` deep deposits.
    fn add_token_network(&self, confirmations: u64, asset: &domain::Asset, token: EthAddress) {
        self.svc.add_eth_network(EthNetwork {
            config: EthNetworkConfig {
                chain_id: CHAIN_ID,
                legacy: false,
                confirmations,
                bump_after_blocks: 3,
                fee_caps: FeeCaps {
                    max_fee_per_gas: 500_000_000_000,
                    max_total_fee: ETHER / 10,
                },
                min_priority_fee: 1_000_000_000,
                allow_unchecksummed: false,
                tokens: vec![service::eth::EthToken {
                    asset: asset.clone(),
                    contract: token,
                    max_gas: 100_000,
                }],
            },
            client: self.client.clone(),
        });
    }
}

/// Fee caps and endpoints: the configuration's first values recorded at
/// an unseal; a later file that raises a cap or names another endpoint
/// changes nothing; only the quorum changes them, and the values it sets
/// are in force at once; bad values are refused and change nothing.
async fn fee_caps_and_endpoints_are_governed(f: Fixture) {
    let net = format!("eip155:{CHAIN_ID}");
    let caps = |svc: &Service| svc.eth_network(CHAIN_ID).unwrap().config.fee_caps;
    let file = FeeCaps {
        max_fee_per_gas: 500_000_000_000,
        max_total_fee: ETHER / 10,
    };
    assert_eq!(caps(&f.svc), file);
    // The network was added after the fixture's unseal: the next unseal
    // records its values (as `serve` does, which adds networks first).
    f.svc.seal(&Actor::System).await.unwrap();
    for s in &f.shares {
        f.svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    let actions = f.actions().await;
    let count = |a: &[String], what: &str| a.iter().filter(|x| *x == what).count();
    assert_eq!(count(&actions, "fee_caps.configured"), 1, "{actions:?}");
    assert_eq!(count(&actions, "endpoints.configured"), 1, "{actions:?}");

    // A second server whose file raises the caps: the governed ones apply,
    // and nothing new is recorded.
    let dir = tempfile::tempdir().unwrap();
    let other = Service::new(
        f.db.store.clone(),
        f.clock.clone(),
        Checkpointer::for_tests(dir.path(), 8, 1000),
    );
    other.set_governance(service::governance::GovernanceConfig {
        admin_quorum: 2,
        ..service::governance::GovernanceConfig::single_admin()
    });
    other.add_eth_network(EthNetwork {
        config: EthNetworkConfig {
            chain_id: CHAIN_ID,
            legacy: false,
            confirmations: 1,
            bump_after_blocks: 3,
            fee_caps: FeeCaps {
                max_fee_per_gas: 50_000_000_000_000,
                max_total_fee: 100 * ETHER,
            },
            min_priority_fee: 1_000_000_000,
            allow_unchecksummed: false,
            tokens: vec![],
        },
        client: f.client.clone(),
    });
    for s in &f.shares {
        other.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    assert_eq!(caps(&other), file, "the file's raise is not in force");
    let actions = f.actions().await;
    assert_eq!(count(&actions, "fee_caps.configured"), 1, "{actions:?}");

    // Bad values: refused, typed, nothing proposed.
    let who = f.who(&f.admin1).await;
    for bad in [
        Change::SetFeeCaps {
            network: net.clone(),
            max_rate: "0".into(),
            max_total: "1".into(),
        },
        Change::SetFeeCaps {
            network: net.clone(),
            max_rate: "1.5".into(),
            max_total: "1".into(),
        },
        Change::SetFeeCaps {
            network: "eip155:999".into(),
            max_rate: "1".into(),
            max_total: "1".into(),
        },
        Change::SetEndpoints {
            network: net.clone(),
            origins: vec!["https://node.example/v3/secret-key".into()],
        },
        Change::SetEndpoints {
            network: net.clone(),
            origins: vec![],
        },
    ] {
        let e = f.svc.propose(&who, bad.clone()).await.unwrap_err();
        assert!(matches!(e, ServiceError::Invalid(_)), "{bad:?}: {e:?}");
    }

    // The quorum raises the caps: in force on both servers once they read
    // the log.
    let p = f
        .govern(
            &f.admin1,
            Change::SetFeeCaps {
                network: net.clone(),
                max_rate: "900000000000".into(),
                max_total: (ETHER / 5).to_string(),
            },
        )
        .await;
    assert_eq!(p.state, "applied");
    let raised = FeeCaps {
        max_fee_per_gas: 900_000_000_000,
        max_total_fee: ETHER / 5,
    };
    for svc in [&f.svc, &other] {
        svc.approver_key_in_force(&Actor::System).await.unwrap();
        assert_eq!(caps(svc), raised);
    }

    // Endpoints: a set without anvil's leaves the network nothing to ask.
    let anvil_origin = f.client.origins()[0].clone();
    let p = f
        .govern(
            &f.admin1,
            Change::SetEndpoints {
                network: net.clone(),
                origins: vec!["http://127.0.0.1:1".into()],
            },
        )
        .await;
    assert_eq!(p.state, "applied");
    f.svc.approver_key_in_force(&Actor::System).await.unwrap();
    let e = f.client.block_number().await.unwrap_err();
    assert!(e.to_string().contains("allowed by governance"), "{e}");
    assert!(f.client.health().iter().all(|h| !h.allowed));
    let st = f.svc.status().await;
    assert_eq!(st.ethereum[0].healthy, 0, "not ready: {st:?}");
    let p = f
        .govern(
            &f.admin1,
            Change::SetEndpoints {
                network: net.clone(),
                origins: vec![anvil_origin],
            },
        )
        .await;
    assert_eq!(p.state, "applied");
    f.svc.approver_key_in_force(&Actor::System).await.unwrap();
    assert!(f.client.block_number().await.is_ok());
    let actions = f.actions().await;
    assert_eq!(count(&actions, "fee_caps.set"), 1, "{actions:?}");
    assert_eq!(count(&actions, "endpoints.set"), 2, "{actions:?}");
}
