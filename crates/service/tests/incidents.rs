//! The losses that made this field's reputation, replayed against the
//! service on a real anvil node (SQLite and PostgreSQL). Each ends with the
//! loss prevented, an audit trail and an alert (a freeze, a webhook event,
//! a history line). The pure halves are in `chain-eth/tests/incidents.rs`
//! (Bybit, WazirX) and `keys-mpc/tests/incidents.rs` (TSSHOCK).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use chain_eth::fees::Urgency;
use domain::intent::IntentParts;
use domain::{Address, Grant, Role, Scope, Timestamp, TransferIntent};
use ed25519_dalek::{Signer as _, SigningKey};
use policy::Vote;
use service::ServiceError;
use service::governance::Change;
use service::transfers::state;

#[path = "support/custody.rs"]
mod custody;
use custody::*;

storage::on_both!(
    fixture;
    dmm_2024_a_destination_rewritten_in_the_database_after_approval_is_never_paid,
    dmm_2024_an_allowed_transfer_rewritten_in_the_database_is_never_paid,
    dmm_2024_a_decision_rewritten_to_allow_in_the_database_signs_nothing,
    ronin_2022_approvals_under_a_delegation_that_ended_sign_nothing,
    ronin_2022_one_person_holding_two_keys_supplies_one_approval,
    ronin_2022_one_person_holding_two_admin_keys_is_one_vote_of_the_quorum,
    harmony_2022_many_withdrawals_in_minutes_trip_the_breaker_before_any_value_limit,
);

/// Two approvers (B and C), a threshold of two for everything, no time
/// lock.
fn two_of_two(members: &[&Person]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|p| format!("\"{}\"", Fixture::actor(p)))
        .collect();
    format!(
        "[[groups]]\nname = \"approvers\"\nmembers = [{}]\n\n[[rules]]\nname = \"two\"\n\
         action = \"require_approval\"\napprovals = {{ group = \"approvers\", threshold = 2 }}\n",
        members.join(", ")
    )
}

/// How many webhook events of `kind` wait in the outbox.
async fn events(f: &Fixture, kind: &str) -> String {
    f.db.store
        .query_text(&format!(
            "SELECT CAST(COUNT(*) AS TEXT) FROM webhook_events WHERE event_type = '{kind}'"
        ))
        .await
        .unwrap()
}

/// DMM Bitcoin, 2024: the payment's destination was changed between its
/// approval and its signature. Here someone with write access to the
/// database rewrites an approved transfer's intent (and its digest, so the
/// two agree) to pay another address, before it is planned. The approvals
/// recorded were signed over the original intent: the gate checks each
/// again against the transfer as stored, refuses, freezes the wallet and
/// says so; nothing reaches the chain.
async fn dmm_2024_a_destination_rewritten_in_the_database_after_approval_is_never_paid(f: Fixture) {
    f.register_approvers().await;
    f.set_policy(&two_of_two(&[&f.b, &f.c])).await;
    let t = f.submit(&f.initiator, BOB, "2").await.unwrap();
    f.vote_as(&f.b, &t, Vote::Approve, f.soon(), None)
        .await
        .unwrap();
    let t = f
        .vote_as(&f.c, &t, Vote::Approve, f.soon(), None)
        .await
        .unwrap();
    assert_eq!(t.state, state::QUEUED);

    // The attacker's edit: the intent, its digest and the destination
    // column, all consistent with one another.
    rewrite_destination(&f, &t, CAROL).await;

    // Refused before anything is planned or signed.
    let refused = f.svc.execute_transfer(t.id, Urgency::Normal).await;
    assert!(
        matches!(&refused, Err(ServiceError::NotApproved(why)) if why.contains("does not verify")),
        "{refused:?}"
    );
    let now = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(now.eth_send_id, None, "nothing planned");
    let carol: chain_eth::EthAddress = CAROL.parse().unwrap();
    assert_eq!(f.client.balance(carol).await.unwrap(), 0, "nothing paid");
    // The alert: the wallet frozen, the refusal audited and announced.
    refused_and_frozen(&f, &t, "does not verify").await;
    // And the wallet pays nothing more until a person looks.
    assert!(matches!(
        f.submit(&f.initiator, BOB, "0.1").await,
        Err(ServiceError::Frozen(_))
    ));
}

/// The attacker's edit of `t` as stored: its intent, the intent's digest
/// and the destination column, all consistent with one another, to pay
/// `to`.
async fn rewrite_destination(f: &Fixture, t: &storage::TransferRow, to: &str) {
    let original = TransferIntent::decode_as_written(&t.intent).unwrap();
    let forged = TransferIntent::new(IntentParts {
        id: original.id(),
        kind: original.kind(),
        account: original.account(),
        wallet: original.wallet(),
        amount: original.amount().clone(),
        destination: Address::new(original.amount().asset().network(), to).unwrap(),
        reference: original.reference().map(str::to_owned),
        initiator: original.initiator().clone(),
        created_at: original.created_at(),
    })
    .unwrap();
    let bytes = hex::encode(forged.canonical_bytes());
    let blob = match f.db.sqlite_path {
        Some(_) => format!("X'{bytes}'"),
        None => format!("'\\x{bytes}'::bytea"),
    };
    f.db.store
        .execute_unchecked(&format!(
            "UPDATE transfers SET intent = {blob}, digest = '{}', destination = '{to}' \
             WHERE id = '{}'",
            forged.digest(),
            t.id
        ))
        .await
        .unwrap();
}

/// The alert of a refusal: the wallet frozen, the refusal audited and
/// announced, the transfer's history saying why (`why` in it).
async fn refused_and_frozen(f: &Fixture, t: &storage::TransferRow, why: &str) {
    let frozen = f.svc.frozen(Some(f.wallet), None).await.unwrap().unwrap();
    assert!(
        frozen.reason.contains("signing refused"),
        "{}",
        frozen.reason
    );
    let actions = f.actions().await;
    for a in ["transfer.sign_refused", "freeze.placed"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    assert_eq!(events(f, "transfer.sign_refused").await, "1");
    let history = f.db.store.transfer_history(t.id).await.unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.why.starts_with("signing refused") && h.why.contains(why)),
        "{history:?}"
    );
}

/// DMM Bitcoin, 2024, where no approval stands in the way: a transfer the
/// policy allowed outright has its intent, digest and destination
/// rewritten in the database before it is planned. No approver signed
/// anything to check it against, but the judgment's authenticator (made
/// under the keystore when it was judged) no longer verifies: nothing is
/// planned or signed, the wallet is frozen, the refusal announced.
async fn dmm_2024_an_allowed_transfer_rewritten_in_the_database_is_never_paid(f: Fixture) {
    f.set_policy("[[rules]]\nname = \"all\"\naction = \"allow\"\n")
        .await;
    let t = f.submit(&f.initiator, BOB, "2").await.unwrap();
    assert_eq!(t.state, state::QUEUED);
    rewrite_destination(&f, &t, CAROL).await;
    let refused = f.svc.execute_transfer(t.id, Urgency::Normal).await;
    assert!(
        matches!(&refused, Err(ServiceError::NotApproved(why)) if why.contains("judgment")),
        "{refused:?}"
    );
    assert_eq!(
        f.db.store.transfer(t.id).await.unwrap().eth_send_id,
        None,
        "nothing planned"
    );
    let carol: chain_eth::EthAddress = CAROL.parse().unwrap();
    assert_eq!(f.client.balance(carol).await.unwrap(), 0, "nothing paid");
    refused_and_frozen(&f, &t, "judgment").await;
}

/// The same attacker leaves the destination alone and rewrites the
/// decision instead: a transfer waiting for two approvals becomes one the
/// policy allowed, and queued. Nothing is signed for it.
async fn dmm_2024_a_decision_rewritten_to_allow_in_the_database_signs_nothing(f: Fixture) {
    f.register_approvers().await;
    f.set_policy(&two_of_two(&[&f.b, &f.c])).await;
    let t = f.submit(&f.initiator, BOB, "2").await.unwrap();
    assert_eq!(t.state, state::PENDING_APPROVAL);
    let mut decision: serde_json::Value = serde_json::from_str(&t.decision).unwrap();
    decision["outcome"] = serde_json::to_value(policy::Outcome::Allow { time_lock_s: 0 }).unwrap();
    f.db.store
        .execute_unchecked(&format!(
            "UPDATE transfers SET decision = '{decision}', state = 'queued' WHERE id = '{}'",
            t.id
        ))
        .await
        .unwrap();
    let refused = f.svc.execute_transfer(t.id, Urgency::Normal).await;
    assert!(
        matches!(&refused, Err(ServiceError::NotApproved(why)) if why.contains("judgment")),
        "{refused:?}"
    );
    let bob: chain_eth::EthAddress = BOB.parse().unwrap();
    assert_eq!(f.client.balance(bob).await.unwrap(), 0, "nothing paid");
    refused_and_frozen(&f, &t, "judgment").await;
}

/// Ronin, 2022: an approver's delegation was never withdrawn, and the
/// attacker used it. Here a delegate holds the approver role for an hour;
/// the approvals they gave count only while it lasts: a transfer they
/// approved that reaches the signing gate after the hour signs nothing and
/// goes back for approval, with a history line saying why. One person
/// approves once (a second vote is refused), and one approver key serves
/// one person.
async fn ronin_2022_approvals_under_a_delegation_that_ended_sign_nothing(f: Fixture) {
    // D: an API key whose only approver role is a delegation of an hour.
    let d_key = SigningKey::from_bytes(&[91; 32]);
    let row = f
        .svc
        .console_register_api_key(
            &console(),
            "delegate",
            &d_key.verifying_key().to_bytes(),
            &[Grant::global(Role::Viewer)],
            30,
            None,
        )
        .await
        .unwrap();
    let d = Person {
        key: d_key,
        id: row.id.to_string(),
        approver: SigningKey::from_bytes(&[191; 32]),
    };
    let until = f.now().as_millis() + 3_600_000;
    let granted = f
        .govern(
            &f.admin1,
            Change::Grant {
                principal: Fixture::actor(&d),
                role: "approver".into(),
                scope: Scope::Wallet(f.wallet).to_string(),
                until_ms: Some(until),
            },
        )
        .await;
    assert_eq!(granted.state, "applied");
    f.register_approvers().await;
    let registered = f
        .govern(
            &f.admin1,
            Change::RegisterApproverKey {
                principal: Fixture::actor(&d),
                public_key: hex::encode(d.approver.verifying_key().to_bytes()),
            },
        )
        .await;
    assert_eq!(registered.state, "applied");
    // B's approver key cannot be registered for D as well.
    let admin = f.who(&f.admin1).await;
    let twice = f
        .svc
        .propose(
            &admin,
            Change::RegisterApproverKey {
                principal: Fixture::actor(&d),
                public_key: hex::encode(f.b.approver.verifying_key().to_bytes()),
            },
        )
        .await;
    assert!(twice.is_err(), "one key, two people: {twice:?}");

    f.set_policy(&two_of_two(&[&f.b, &d])).await;
    let t = f.submit(&f.initiator, BOB, "2").await.unwrap();
    let day = Timestamp::from_millis(f.now().as_millis() + 86_400_000);
    f.vote_as(&f.b, &t, Vote::Approve, day, None).await.unwrap();
    // One person, one approval: B's second vote is refused.
    assert!(f.vote_as(&f.b, &t, Vote::Approve, day, None).await.is_err());
    let t = f.vote_as(&d, &t, Vote::Approve, day, None).await.unwrap();
    assert_eq!(t.state, state::QUEUED, "B and D make the quorum");

    // The delegation ends before the transfer reaches the gate.
    f.advance(3_600_001);
    let refused = f.svc.execute_transfer(t.id, Urgency::Normal).await;
    assert!(refused.is_err(), "{refused:?}");
    let now = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(now.state, state::PENDING_APPROVAL);
    assert_eq!(now.eth_send_id, None, "nothing planned, nothing signed");
    let bob: chain_eth::EthAddress = BOB.parse().unwrap();
    assert_eq!(f.client.balance(bob).await.unwrap(), 0, "nothing paid");
    let history = f.db.store.transfer_history(t.id).await.unwrap();
    let last = &history.last().unwrap().why;
    assert!(
        last.contains("may no longer approve this wallet's transfers"),
        "{last}"
    );
    // D can no longer approve at all.
    let who = f.who(&d).await;
    assert!(
        f.svc
            .authorize::<service::identity::perm::ApproveTransfer>(&who, Some(f.wallet))
            .is_err()
    );
    assert!(
        f.actions()
            .await
            .iter()
            .any(|a| a == "transfer.state_changed"),
        "the return to approval is audited"
    );
}

/// A user with no roles, and `seeds.len()` API keys they hold, each with
/// `role` from the console (an admin key's approver key is itself).
async fn one_person_keys(
    f: &Fixture,
    name: &str,
    seeds: &[u8],
    role: Role,
) -> (domain::UserId, Vec<Person>) {
    let admin = f.who(&f.admin1).await;
    let (user, _) = f
        .svc
        .authorize::<service::identity::perm::ManageUsers>(&admin, None)
        .unwrap()
        .create_user(name, "a long enough password".into(), &[])
        .await
        .unwrap();
    let mut keys = Vec::new();
    for &seed in seeds {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let row = f
            .svc
            .console_register_api_key(
                &console(),
                &format!("{name}-{seed}"),
                &key.verifying_key().to_bytes(),
                &[Grant::global(role)],
                30,
                Some(user.id),
            )
            .await
            .unwrap();
        assert_eq!(row.owner, Some(domain::Actor::User(user.id)));
        let approver = match role {
            Role::Admin => key.clone(),
            _ => SigningKey::from_bytes(&[seed.wrapping_add(100); 32]),
        };
        keys.push(Person {
            key,
            id: row.id.to_string(),
            approver,
        });
    }
    (user.id, keys)
}

/// Ronin, 2022: five of nine validator keys were in the hands of one
/// party, so "five signatures" was one decision. Here one user, Carol,
/// holds two API keys, each an approver with a registered approver key,
/// and the policy asks two approvals of the group both keys are in. The
/// second key's vote is refused (`already_voted`: one person, one vote);
/// a vote written straight into the database for it is not counted at the
/// signing gate either: nothing is planned, the transfer goes back for
/// approval and its history says why. A key with no owner still counts as
/// a person of its own (B, below, completes the quorum).
async fn ronin_2022_one_person_holding_two_keys_supplies_one_approval(f: Fixture) {
    let (carol, keys) = one_person_keys(&f, "carol", &[81, 82], Role::Viewer).await;
    for p in &keys {
        for change in [
            Change::Grant {
                principal: Fixture::actor(p),
                role: "approver".into(),
                scope: Scope::Wallet(f.wallet).to_string(),
                until_ms: None,
            },
            Change::RegisterApproverKey {
                principal: Fixture::actor(p),
                public_key: hex::encode(p.approver.verifying_key().to_bytes()),
            },
        ] {
            assert_eq!(f.govern(&f.admin1, change).await.state, "applied");
        }
    }
    // An owner must be a user who exists.
    let nobody = domain::UserId::from_uuid(uuid::Uuid::now_v7());
    let refused = f
        .svc
        .console_register_api_key(
            &console(),
            "nobody's",
            &SigningKey::from_bytes(&[83; 32]).verifying_key().to_bytes(),
            &[Grant::global(Role::Viewer)],
            30,
            Some(nobody),
        )
        .await;
    assert!(
        matches!(refused, Err(ServiceError::Invalid(_))),
        "{refused:?}"
    );
    f.register_approvers().await;
    f.set_policy(&two_of_two(&[&keys[0], &keys[1], &f.b])).await;

    // Through the service: the second key of the same person is refused.
    let t = f.submit(&f.initiator, BOB, "2").await.unwrap();
    let day = Timestamp::from_millis(f.now().as_millis() + 86_400_000);
    f.vote_as(&keys[0], &t, Vote::Approve, day, None)
        .await
        .unwrap();
    let second = f.vote_as(&keys[1], &t, Vote::Approve, day, None).await;
    assert!(
        matches!(
            &second,
            Err(ServiceError::Approval(service::transfers::ApprovalError::SamePerson(by)))
                if by == &Fixture::actor(&keys[0])
        ),
        "{second:?}"
    );
    let now = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(now.state, state::PENDING_APPROVAL, "one person is one vote");

    // Past the service: the second key's vote written into the database,
    // validly signed, and the transfer moved on by hand.
    let st = service::transfers::statement_of(&t, Vote::Approve, day).unwrap();
    let sig = keys[1].approver.sign(&st.message()).to_bytes();
    f.db.store
        .execute_unchecked(&format!(
            "INSERT INTO transfer_approvals (transfer_id, approver, public_key, vote, signature, \
             expires_at_ms, at_ms) VALUES ('{}', '{}', '{}', 'approve', '{}', {}, {})",
            t.id,
            Fixture::actor(&keys[1]),
            hex::encode(keys[1].approver.verifying_key().to_bytes()),
            policy::ApprovalSignature::Ed25519(sig),
            day.as_millis(),
            f.now().as_millis()
        ))
        .await
        .unwrap();
    f.db.store
        .execute_unchecked(&format!(
            "UPDATE transfers SET state = 'queued' WHERE id = '{}'",
            t.id
        ))
        .await
        .unwrap();
    let refused = f.svc.execute_transfer(t.id, Urgency::Normal).await;
    assert!(refused.is_err(), "{refused:?}");
    let now = f.db.store.transfer(t.id).await.unwrap();
    assert_eq!(now.state, state::PENDING_APPROVAL);
    assert_eq!(now.eth_send_id, None, "nothing planned, nothing signed");
    let bob: chain_eth::EthAddress = BOB.parse().unwrap();
    assert_eq!(f.client.balance(bob).await.unwrap(), 0, "nothing paid");
    let history = f.db.store.transfer_history(t.id).await.unwrap();
    let last = &history.last().unwrap().why;
    assert!(last.contains("are one person"), "{last}");

    // The votes that stood were voided with the quorum: Carol votes again
    // (once), and another person completes the quorum.
    let t = f.db.store.transfer(t.id).await.unwrap();
    f.vote_as(&keys[1], &t, Vote::Approve, day, None)
        .await
        .unwrap();
    assert!(
        f.vote_as(&keys[0], &t, Vote::Approve, day, None)
            .await
            .is_err()
    );
    let t = f.vote_as(&f.b, &t, Vote::Approve, day, None).await.unwrap();
    assert_eq!(t.state, state::QUEUED, "Carol and B are two people");

    // An owner rewritten in the database shows nothing: the list gives
    // the owner the governance log recorded.
    f.db.store
        .execute_unchecked(&format!(
            "UPDATE api_keys SET owner = NULL WHERE id = '{}'",
            keys[0].id
        ))
        .await
        .unwrap();
    let admin = f.who(&f.admin1).await;
    let listed = f
        .svc
        .authorize::<service::identity::perm::ManageApiKeys>(&admin, None)
        .unwrap()
        .api_keys()
        .await
        .unwrap();
    let shown = listed
        .iter()
        .find(|k| k.id.to_string() == keys[0].id)
        .unwrap();
    assert_eq!(shown.owner, Some(domain::Actor::User(carol)));
}

/// Ronin, 2022, at the admin quorum: one user holding two admin keys
/// (made at the bootstrap, both theirs) is one vote of the two the quorum
/// needs; an admin who is someone else completes it.
async fn ronin_2022_one_person_holding_two_admin_keys_is_one_vote_of_the_quorum(f: Fixture) {
    let (dana, keys) = one_person_keys(&f, "dana", &[71, 72], Role::Admin).await;
    let admin = f.who(&f.admin1).await;
    let d1 = f.who(&keys[0]).await;
    let p = f
        .svc
        .propose(
            &d1,
            Change::Grant {
                principal: format!("user:{dana}"),
                role: "viewer".into(),
                scope: "global".into(),
                until_ms: None,
            },
        )
        .await
        .unwrap();
    f.gov_vote(&keys[0], &d1, &p.proposal.id, true)
        .await
        .unwrap();
    let d2 = f.who(&keys[1]).await;
    let again = f.gov_vote(&keys[1], &d2, &p.proposal.id, true).await;
    assert!(
        matches!(&again, Err(ServiceError::Conflict(m)) if m.contains("one person")),
        "{again:?}"
    );
    assert_eq!(
        f.svc.proposal(&p.proposal.id).await.unwrap().proposal.state,
        "open"
    );
    let v = f
        .gov_vote(&f.admin1, &admin, &p.proposal.id, true)
        .await
        .unwrap();
    assert_eq!(
        v.proposal.state, "applied",
        "Dana and admin1 are two people"
    );

    // Governance keeps enough *people* to act: with admin2's key revoked,
    // admin1 and Dana are the two the quorum needs, and Dana's two keys
    // do not make admin1's revocation safe.
    let keys_admin = f
        .svc
        .authorize::<service::identity::perm::ManageApiKeys>(&admin, None)
        .unwrap();
    keys_admin
        .revoke_api_key(f.admin2.id.parse().unwrap())
        .await
        .unwrap();
    let refused = keys_admin
        .revoke_api_key(f.admin1.id.parse().unwrap())
        .await;
    assert!(
        matches!(&refused, Err(ServiceError::Conflict(m)) if m.contains("quorum")),
        "{refused:?}"
    );
}

/// Harmony, 2022: the bridge was drained in a dozen withdrawals within
/// minutes. A count breaker (four transfers in ten minutes here) freezes
/// the wallet at the fourth, while the value breaker (100 ETH) and the
/// rules would still have allowed it: the transfer is blocked, the wallet
/// frozen, the breaker announced (webhook event, metric), and nothing more
/// leaves the wallet until a person releases it.
async fn harmony_2022_many_withdrawals_in_minutes_trip_the_breaker_before_any_value_limit(
    f: Fixture,
) {
    f.set_policy(
        "[[breakers]]\nname = \"drain\"\nseconds = 600\nasset = \"eip155:31337/native\"\nmax = \"100\"\n\n\
         [[breakers]]\nname = \"many in minutes\"\nseconds = 600\nmax_count = 3\n\n\
         [[rules]]\nname = \"all\"\naction = \"allow\"\n",
    )
    .await;
    for _ in 0..3 {
        let t = f.submit(&f.initiator, BOB, "0.5").await.unwrap();
        assert_eq!(t.state, state::QUEUED);
    }
    let fourth = f.submit(&f.initiator, BOB, "0.5").await.unwrap();
    assert_eq!(fourth.state, state::BLOCKED);
    assert!(
        fourth
            .decision
            .contains("wallet made 4 transfers over 600 s, more than 3"),
        "{}",
        fourth.decision
    );
    let frozen = f.svc.frozen(Some(f.wallet), None).await.unwrap().unwrap();
    assert!(
        frozen.reason.contains("many in minutes"),
        "{}",
        frozen.reason
    );
    assert!(matches!(
        f.submit(&f.initiator, BOB, "0.5").await,
        Err(ServiceError::Frozen(_))
    ));
    // 1.5 ETH counted: far below the value breaker.
    assert_eq!(events(&f, "circuit_breaker").await, "1");
    assert!(f.actions().await.iter().any(|a| a == "freeze.placed"));
    let registry = f
        .svc
        .metrics_registry(std::time::Duration::from_secs(5))
        .await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("strongroom_circuit_breaker_trips_total") && l.ends_with(" 1")),
        "{text}"
    );
}
