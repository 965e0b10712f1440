//! Approval requirements and the statements approvers sign.

mod common;

use std::collections::BTreeSet;

use common::*;
use domain::{IntentDigest, Timestamp};
use ed25519_dalek::{Signer, SigningKey};
use policy::{ApprovalStatement, Outcome, Policy, StatementError, Vote, evaluate};

fn requirement(doc: &str) -> policy::Resolved {
    let p = Policy::from_toml(doc).expect("policy");
    match evaluate(&p, &facts(&p)).outcome {
        Outcome::RequireApproval { requirement, .. } => requirement,
        o => panic!("unexpected {o}"),
    }
}

const GROUPS: &str = r#"
[[groups]]
name = "finance"
members = ["user:00000000-0000-7000-8000-00000000000b", "user:00000000-0000-7000-8000-00000000000c"]
[[groups]]
name = "security"
members = ["user:00000000-0000-7000-8000-00000000000d"]
"#;

#[test]
fn all_of_needs_every_group_any_of_one() {
    let all = requirement(&format!(
        "{GROUPS}[[rules]]\nname = \"r\"\naction = \"require_approval\"\napprovals = {{ all_of = [{{ group = \"finance\", threshold = 2 }}, {{ group = \"security\", threshold = 1 }}] }}\n"
    ));
    let set = |v: &[&str]| v.iter().map(|u| user(u)).collect::<BTreeSet<_>>();
    assert!(!all.satisfied(&set(&[BOB, CAROL])));
    assert!(!all.satisfied(&set(&[BOB, DAVE])));
    assert!(all.satisfied(&set(&[BOB, CAROL, DAVE])));
    // Someone outside every group adds nothing.
    assert!(!all.satisfied(&set(&[BOB, DAVE, ALICE])));
    assert!(all.eligible(&user(DAVE)) && !all.eligible(&user(ALICE)));

    let any = requirement(&format!(
        "{GROUPS}[[rules]]\nname = \"r\"\naction = \"require_approval\"\napprovals = {{ any_of = [{{ group = \"finance\", threshold = 2 }}, {{ group = \"security\", threshold = 1 }}] }}\n"
    ));
    assert!(any.satisfied(&set(&[DAVE])));
    assert!(!any.satisfied(&set(&[BOB])));
    assert!(any.satisfied(&set(&[BOB, CAROL])));
}

#[test]
fn the_members_are_pinned_at_judgment() {
    let r = requirement(&format!(
        "{GROUPS}[[rules]]\nname = \"r\"\naction = \"require_approval\"\napprovals = {{ group = \"security\", threshold = 1 }}\n"
    ));
    let json = serde_json::to_string(&r).expect("json");
    expect_test::expect![[r#"{"group":{"group":"security","threshold":1,"members":["user:00000000-0000-7000-8000-00000000000d"]}}"#]]
        .assert_eq(&json);
    let back: policy::Resolved = serde_json::from_str(&json).expect("back");
    assert_eq!(back, r);
}

#[test]
fn members_who_left_their_group_no_longer_count() {
    let r = requirement(&format!(
        "{GROUPS}[[rules]]\nname = \"r\"\naction = \"require_approval\"\napprovals = {{ group = \"finance\", threshold = 2 }}\n"
    ));
    let set = |v: &[&str]| v.iter().map(|u| user(u)).collect::<BTreeSet<_>>();
    assert!(r.satisfied(&set(&[BOB, CAROL])));
    // Carol left finance; Dave joined it (he was not pinned, so he never counts).
    let now = Policy::from_toml(
        "rules = []\n[[groups]]\nname = \"finance\"\nmembers = [\"user:00000000-0000-7000-8000-00000000000b\", \"user:00000000-0000-7000-8000-00000000000d\"]\n",
    )
    .expect("policy");
    let cut = r.within(now.groups());
    assert!(!cut.satisfied(&set(&[BOB, CAROL])));
    assert!(!cut.satisfied(&set(&[BOB, DAVE])));
    assert!(!cut.eligible(&user(CAROL)) && cut.eligible(&user(BOB)));
    // The group is gone: no one counts (fail closed).
    let gone = Policy::from_toml(
        "rules = []\n[[groups]]\nname = \"other\"\nmembers = [\"user:00000000-0000-7000-8000-00000000000b\"]\n",
    )
    .expect("policy");
    assert!(!r.within(gone.groups()).satisfied(&set(&[BOB, CAROL])));
}

fn statement() -> ApprovalStatement {
    ApprovalStatement {
        intent: IntentDigest([7; 32]),
        policy_version: 3,
        decision_id: [9; 16],
        expires_at: Timestamp::from_millis(WED_10 + 3_600_000),
        vote: Vote::Approve,
    }
}

#[test]
fn the_statement_encoding_is_fixed() {
    expect_test::expect!["5352415000010707070707070707070707070707070707070707070707070707070707070707000000000000000309090909090909090909090909090909000001a2125cc78001"]
        .assert_eq(&hex::encode(statement().message()));
}

#[test]
fn a_signature_binds_every_field() {
    let sk = SigningKey::from_bytes(&[42; 32]);
    let pk = sk.verifying_key().to_bytes();
    let s = statement();
    let sig = sk.sign(&s.message()).to_bytes();
    assert_eq!(s.verify(&pk, &sig), Ok(()));

    let others = [
        ApprovalStatement {
            intent: IntentDigest([8; 32]),
            ..s
        },
        ApprovalStatement {
            policy_version: 4,
            ..s
        },
        ApprovalStatement {
            decision_id: [1; 16],
            ..s
        },
        ApprovalStatement {
            expires_at: Timestamp::from_millis(WED_10 + 7_200_000),
            ..s
        },
        ApprovalStatement {
            vote: Vote::Reject,
            ..s
        },
    ];
    for o in others {
        assert_eq!(o.verify(&pk, &sig), Err(StatementError::BadSignature));
    }
    let other_key = SigningKey::from_bytes(&[43; 32]).verifying_key().to_bytes();
    assert_eq!(
        s.verify(&other_key, &sig),
        Err(StatementError::BadSignature)
    );
    // The identity point is a weak key: refused whatever the signature.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(s.verify(&identity, &sig), Err(StatementError::BadKey));
}
