//! FROST end to end in one process: key generation without a dealer,
//! signing by a threshold of parties with one down, every signature
//! checked by a second implementation (libsecp256k1 and Bitcoin Core's
//! interpreter for Taproot, ed25519-dalek for Ed25519), and every fault the
//! protocol can name.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use keys_mpc::dkg::{Dkg, KeyShare};
use keys_mpc::sign::{Coordinator, commit, sign};
use keys_mpc::{
    Abort, Ed25519, Envelope, NonceJournal, PartyIndex, Round, SessionId, Suite, Taproot,
};

fn p(i: u16) -> PartyIndex {
    PartyIndex::new(i).unwrap()
}

fn session() -> SessionId {
    SessionId::random(&mut keys_mpc::os_rng())
}

/// Round 1 of a ceremony: each party's state and its broadcast.
fn start<C: Suite>(s: SessionId, n: u16, t: u16) -> (Vec<Dkg<C>>, Vec<Envelope>) {
    let mut rng = keys_mpc::os_rng();
    (1..=n)
        .map(|i| Dkg::<C>::start(s, p(i), n, t, &mut rng).unwrap())
        .unzip()
}

fn others(msgs: &[Envelope], me: u16) -> Vec<Envelope> {
    msgs.iter().filter(|m| m.from != me).cloned().collect()
}

fn to(msgs: &[Envelope], me: u16) -> Vec<Envelope> {
    msgs.iter().filter(|m| m.to == Some(me)).cloned().collect()
}

/// A whole ceremony, every message delivered as sent.
fn dkg<C: Suite>(n: u16, t: u16) -> Vec<KeyShare<C>> {
    let (mut parties, r1) = start::<C>(session(), n, t);
    let r2: Vec<Envelope> = parties
        .iter_mut()
        .enumerate()
        .flat_map(|(i, d)| d.round1(&others(&r1, i as u16 + 1)).unwrap())
        .collect();
    parties
        .into_iter()
        .enumerate()
        .map(|(i, d)| d.round2(&to(&r2, i as u16 + 1)).unwrap())
        .collect()
}

struct Journals {
    _dir: tempfile::TempDir,
    j: Vec<NonceJournal>,
}

fn journals(n: usize) -> Journals {
    let dir = tempfile::tempdir().unwrap();
    let j = (0..n)
        .map(|i| NonceJournal::open(&dir.path().join(format!("nonces-{i}"))).unwrap())
        .collect();
    Journals { _dir: dir, j }
}

/// `signers` (indices into `shares`) sign `message`; the coordinator
/// aggregates.
fn threshold_sign<C: Suite>(
    shares: &[KeyShare<C>],
    signers: &[usize],
    message: &[u8],
    journals: &mut Journals,
) -> Result<[u8; 64], Abort> {
    let s = session();
    let mut rng = keys_mpc::os_rng();
    let mut coordinator = Coordinator::new(s, shares[0].public(), message);
    let mut pending = Vec::new();
    let mut commitments = Vec::new();
    for &i in signers {
        let (n, m) = commit(&shares[i], s, &mut rng)?;
        pending.push((i, n));
        commitments.push(m);
    }
    let packages = coordinator.package(&commitments)?;
    let mut out = Vec::new();
    for (i, n) in pending {
        let me = shares[i].me().get();
        let pkg = packages.iter().find(|m| m.to == Some(me)).unwrap();
        out.push(sign(&shares[i], n, pkg, message, &mut journals.j[i])?);
    }
    coordinator.aggregate(&out)
}

#[test]
fn taproot_two_of_three_signs_with_one_party_down_checked_by_libsecp256k1_and_core() {
    use bitcoin::hashes::Hash as _;
    use bitcoin::key::{TweakedPublicKey, XOnlyPublicKey};
    use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
    use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};

    let shares = dkg::<Taproot>(3, 2);
    let key = shares[0].group_key().unwrap();
    assert!(shares.iter().all(|s| s.group_key().unwrap() == key));

    // A Taproot output paying the group's output key, spent by key path.
    let q = XOnlyPublicKey::from_slice(&key).unwrap();
    let spk = ScriptBuf::new_p2tr_tweaked(TweakedPublicKey::dangerous_assume_tweaked(q));
    let prevout = TxOut {
        value: Amount::from_sat(100_000),
        script_pubkey: spk.clone(),
    };
    let mut tx = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array([7; 32]),
                vout: 1,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(99_000),
            script_pubkey: spk,
        }],
    };
    let sighash = SighashCache::new(&tx)
        .taproot_key_spend_signature_hash(
            0,
            &Prevouts::All(std::slice::from_ref(&prevout)),
            TapSighashType::Default,
        )
        .unwrap()
        .to_byte_array();

    let mut j = journals(3);
    // Parties 1 and 3 sign; party 2 is down.
    let sig = threshold_sign(&shares, &[0, 2], &sighash, &mut j).unwrap();

    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    secp.verify_schnorr(
        &bitcoin::secp256k1::schnorr::Signature::from_slice(&sig).unwrap(),
        &bitcoin::secp256k1::Message::from_digest(sighash),
        &q,
    )
    .unwrap();
    tx.input[0].witness.push(sig);
    chain_btc::verify_with_core(&tx, std::slice::from_ref(&prevout)).unwrap();

    // The interpreter is not a rubber stamp: another output key fails.
    let mut other = prevout;
    let k2 = dkg::<Taproot>(3, 2)[0].group_key().unwrap();
    other.script_pubkey = ScriptBuf::new_p2tr_tweaked(TweakedPublicKey::dangerous_assume_tweaked(
        XOnlyPublicKey::from_slice(&k2).unwrap(),
    ));
    assert!(chain_btc::verify_with_core(&tx, &[other]).is_err());
}

#[test]
fn ed25519_two_of_three_signs_checked_by_ed25519_dalek() {
    let shares = dkg::<Ed25519>(3, 2);
    let key = shares[1].group_key().unwrap();
    let mut j = journals(3);
    let message = b"an Ed25519 message of any length";
    let sig = threshold_sign(&shares, &[1, 2], message, &mut j).unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
    vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
        .unwrap();
    assert!(
        vk.verify_strict(b"another", &ed25519_dalek::Signature::from_bytes(&sig))
            .is_err()
    );
}

#[test]
fn three_of_five_and_every_pair_of_a_two_of_three() {
    let shares = dkg::<Taproot>(5, 3);
    let mut j = journals(5);
    let m = [9u8; 32];
    threshold_sign(&shares, &[0, 2, 4], &m, &mut j).unwrap();
    threshold_sign(&shares, &[1, 2, 3, 4], &m, &mut j).unwrap();
    assert!(matches!(
        threshold_sign(&shares, &[0, 1], &m, &mut j),
        Err(Abort::Missing { .. })
    ));

    let shares = dkg::<Ed25519>(3, 2);
    let mut j = journals(3);
    for pair in [[0, 1], [0, 2], [1, 2]] {
        threshold_sign(&shares, &pair, b"m", &mut j).unwrap();
    }
}

#[test]
fn a_key_share_survives_storage_and_never_prints_its_secret() {
    let shares = dkg::<Taproot>(3, 2);
    let bytes = shares[2].to_secret_bytes().unwrap();
    let back = KeyShare::<Taproot>::from_secret_bytes(&bytes).unwrap();
    assert_eq!(back.group_key().unwrap(), shares[2].group_key().unwrap());
    assert_eq!(back.me(), p(3));
    let mut j = journals(3);
    let restored = [
        KeyShare::<Taproot>::from_secret_bytes(&shares[0].to_secret_bytes().unwrap()).unwrap(),
        back,
    ];
    threshold_sign(&restored, &[0, 1], &[1; 32], &mut j).unwrap();

    let stored: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let secret = stored["key"].as_str().unwrap();
    let shown = format!("{:?}", shares[2]);
    assert!(!shown.contains(secret) && !shown.contains(&secret[..16]));
    assert!(shown.contains("group_key"));
    assert!(KeyShare::<Ed25519>::from_secret_bytes(&bytes).is_err());
    let mut tampered = stored.clone();
    tampered["me"] = 2.into();
    assert!(
        KeyShare::<Taproot>::from_secret_bytes(&serde_json::to_vec(&tampered).unwrap()).is_err()
    );
}

// ---------------------------------------------------------------- faults

/// Runs round 1 of a 2-of-3 ceremony with `tamper` applied to what party 1
/// receives; returns party 1's result.
fn dkg_round1_with(tamper: impl FnOnce(&mut Vec<Envelope>)) -> Result<Vec<Envelope>, Abort> {
    let (mut parties, r1) = start::<Taproot>(session(), 3, 2);
    let mut to_1 = others(&r1, 1);
    tamper(&mut to_1);
    parties[0].round1(&to_1)
}

#[test]
fn malformed_round_one_messages_abort_naming_the_sender() {
    // Wrong length: the body cut short.
    let e = dkg_round1_with(|m| {
        let b = m[0].body.clone();
        m[0].body = b[..b.len() - 10].to_owned();
    })
    .unwrap_err();
    assert!(matches!(e, Abort::Malformed { from: 2, .. }), "{e}");
    assert_eq!(e.culprits(), vec![p(2)]);

    // A point off the curve: the first commitment's x set to 2^256 - 1.
    let e = dkg_round1_with(|m| {
        let mut b = hex::decode(&m[1].body).unwrap();
        let at = b.len() - 33 - 64 - 32; // somewhere inside the commitments
        b[at..at + 32].fill(0xff);
        m[1].body = hex::encode(b);
    })
    .unwrap_err();
    assert_eq!(e.culprits(), vec![p(3)], "{e}");

    // Not hex, not even an envelope.
    let e = dkg_round1_with(|m| m[0].body = "zz".into()).unwrap_err();
    assert!(matches!(e, Abort::Malformed { from: 2, .. }));
    assert!(matches!(
        Envelope::from_bytes(3, b"{\"nonsense\": 1}"),
        Err(Abort::Malformed { from: 3, .. })
    ));
    let mut real = start::<Taproot>(session(), 3, 2).1.remove(1);
    assert!(
        matches!(
            Envelope::from_bytes(3, &real.to_bytes()),
            Err(Abort::Malformed { from: 3, .. })
        ),
        "party 3 cannot pass off party 2's message"
    );
    real.suite = Ed25519::NAME.into();
    let e = dkg_round1_with(|m| m[0] = real.clone()).unwrap_err();
    assert!(matches!(
        e,
        Abort::Malformed { from: 2, .. } | Abort::WrongSession { from: 2 }
    ));
}

#[test]
fn strangers_duplicates_zero_indices_and_other_sessions_are_refused() {
    let e = dkg_round1_with(|m| m[0].from = 0).unwrap_err();
    assert!(matches!(e, Abort::NotAParty { from: 0 }));
    assert!(e.culprits().is_empty());
    let e = dkg_round1_with(|m| m[0].from = 9).unwrap_err();
    assert!(matches!(e, Abort::NotAParty { from: 9 }));
    let e = dkg_round1_with(|m| m.push(m[0].clone())).unwrap_err();
    assert!(matches!(e, Abort::Duplicate { from: 2 }));
    assert!(e.culprits().is_empty());
    let e = dkg_round1_with(|m| {
        m.pop();
    })
    .unwrap_err();
    assert_eq!(
        e,
        Abort::Missing {
            parties: vec![p(3)]
        }
    );
    // A message replayed from an earlier ceremony.
    let old = start::<Taproot>(session(), 3, 2).1;
    let e = dkg_round1_with(|m| m[1] = old[2].clone()).unwrap_err();
    assert_eq!(e, Abort::WrongSession { from: 3 });
    // Signed by party 3, but a relay could have replayed it: no blame.
    assert!(e.culprits().is_empty());
    // A round-2 message where round 1 is due.
    let e = dkg_round1_with(|m| m[0].round = Round::Dkg2).unwrap_err();
    assert!(matches!(e, Abort::OutOfOrder { from: 2, .. }));
    assert!(PartyIndex::new(0).is_none());
    assert!(serde_json::from_str::<PartyIndex>("0").is_err());
    // Parameters.
    let mut rng = keys_mpc::os_rng();
    for (me, n, t) in [(1, 3, 1), (1, 3, 4), (4, 3, 2), (1, 1, 1), (1, 65, 2)] {
        assert!(matches!(
            Dkg::<Ed25519>::start(session(), p(me), n, t, &mut rng),
            Err(Abort::Parameters(_))
        ));
    }
}

#[test]
fn a_proof_of_knowledge_for_another_party_is_caught() {
    // Party 3 passes off party 2's round-1 package (commitments and proof)
    // as its own: the proof is bound to the sender's identifier.
    let e = dkg_round1_with(|m| m[1].body = m[0].body.clone()).unwrap_err();
    assert_eq!(e, Abort::InvalidProof { culprit: p(3) });
}

#[test]
fn different_round_one_messages_to_different_parties_abort_before_any_share_is_kept() {
    let s = session();
    let (mut parties, r1) = start::<Taproot>(s, 3, 2);
    // Party 3 runs round 1 twice and shows party 1 the second version.
    let mut rng = keys_mpc::os_rng();
    let (mut three_b, alt) = Dkg::<Taproot>::start(s, p(3), 3, 2, &mut rng).unwrap();
    let mut to_1 = others(&r1, 1);
    to_1[1] = alt.clone();
    let r2_1 = parties[0].round1(&to_1).unwrap();
    let r2_2 = parties[1].round1(&others(&r1, 2)).unwrap();
    let mut to_3 = others(&r1, 3);
    to_3.retain(|m| m.from != 3);
    let r2_3 = three_b.round1(&to_3).unwrap();
    let all: Vec<Envelope> = [r2_1, r2_2, r2_3].concat();
    let mut parties = parties.into_iter();
    let one = parties.next().unwrap();
    let e = one.round2(&to(&all, 1)).unwrap_err();
    assert_eq!(
        e,
        Abort::Equivocation {
            sender: p(3),
            reported_by: p(2)
        }
    );
    // Party 3 equivocated or party 2 lies about it: the session stops
    // before any share is looked at, and no one is blamed on one word.
    assert!(e.culprits().is_empty());
    let two = parties.next().unwrap();
    let e = two.round2(&to(&all, 2)).unwrap_err();
    assert!(
        matches!(e, Abort::Equivocation { sender, .. } if sender == p(3)),
        "{e}"
    );
}

#[test]
fn a_secret_share_that_does_not_match_its_commitments_names_its_sender() {
    let (mut parties, r1) = start::<Ed25519>(session(), 3, 2);
    let r2: Vec<Envelope> = parties
        .iter_mut()
        .enumerate()
        .flat_map(|(i, d)| d.round1(&others(&r1, i as u16 + 1)).unwrap())
        .collect();
    // Party 2 sends party 1 the share it made for party 3.
    let mut to_1 = to(&r2, 1);
    let for_3 = r2
        .iter()
        .find(|m| m.from == 2 && m.to == Some(3))
        .unwrap()
        .body
        .clone();
    to_1.iter_mut().find(|m| m.from == 2).unwrap().body = for_3;
    let e = parties.remove(0).round2(&to_1).unwrap_err();
    assert_eq!(e, Abort::InvalidSecretShare { culprit: p(2) });

    // Without its echo of round 1, a round-2 message is malformed.
    let mut to_2 = to(&r2, 2);
    to_2[0].echo = None;
    let e = parties.remove(0).round2(&to_2).unwrap_err();
    assert!(matches!(e, Abort::Malformed { from: 1, .. }));
}

#[test]
fn bad_signature_shares_are_named_at_aggregation() {
    let shares = dkg::<Taproot>(3, 2);
    let mut j = journals(3);
    let s = session();
    let mut rng = keys_mpc::os_rng();
    let message = [5u8; 32];
    let mut c = Coordinator::new(s, shares[0].public(), &message);
    let (n1, c1) = commit(&shares[0], s, &mut rng).unwrap();
    let (n2, c2) = commit(&shares[1], s, &mut rng).unwrap();
    let (n3, c3) = commit(&shares[2], s, &mut rng).unwrap();
    let pk = c.package(&[c1, c2, c3]).unwrap();
    let s1 = sign(&shares[0], n1, &pk[0], &message, &mut j.j[0]).unwrap();
    let s2 = sign(&shares[1], n2, &pk[1], &message, &mut j.j[1]).unwrap();
    let s3 = sign(&shares[2], n3, &pk[2], &message, &mut j.j[2]).unwrap();

    // Party 3 sends party 1's share as its own.
    let mut forged = s3.clone();
    forged.body = s1.body.clone();
    let e = c.aggregate(&[s1.clone(), s2.clone(), forged]).unwrap_err();
    assert_eq!(
        e,
        Abort::InvalidShares {
            culprits: vec![p(3)]
        }
    );
    // An out-of-range scalar (≥ the group order).
    let mut big = s2.clone();
    big.body = "ff".repeat(32);
    let e = c.aggregate(&[s1.clone(), big, s3.clone()]).unwrap_err();
    assert!(matches!(e, Abort::Malformed { from: 2, .. }), "{e}");
    // A share missing: the session cannot finish (the party is down).
    assert!(matches!(
        c.aggregate(&[s1.clone(), s3.clone()]),
        Err(Abort::Missing { .. })
    ));
    // The honest shares still make a valid signature.
    c.aggregate(&[s1, s2, s3]).unwrap();
}

#[test]
fn signers_refuse_packages_for_another_message_or_without_their_commitment() {
    let shares = dkg::<Ed25519>(3, 2);
    let mut j = journals(3);
    let s = session();
    let mut rng = keys_mpc::os_rng();
    let (n1, c1) = commit(&shares[0], s, &mut rng).unwrap();
    let (_n2, c2) = commit(&shares[1], s, &mut rng).unwrap();

    // The coordinator asks for a signature over bytes the signer did not
    // check (the co-signer derived `approved` from the transaction).
    let mut c = Coordinator::new(s, shares[0].public(), b"pay the attacker");
    let pk = c.package(&[c1.clone(), c2.clone()]).unwrap();
    let e = sign(&shares[0], n1, &pk[0], b"pay the customer", &mut j.j[0]).unwrap_err();
    assert!(matches!(e, Abort::PackageRefused(_)), "{e}");
    assert!(e.culprits().is_empty());

    // A package that does not carry this signer's commitment.
    let (n1, c1b) = commit(&shares[0], s, &mut rng).unwrap();
    let mut c = Coordinator::new(s, shares[0].public(), b"m");
    let pk = c.package(&[c1, c2.clone()]).unwrap(); // the first commitment
    let e = sign(&shares[0], n1, &pk[0], b"m", &mut j.j[0]).unwrap_err();
    assert!(matches!(e, Abort::PackageRefused(_)), "{e}");

    // A package from a party rather than the coordinator, and one of
    // another session.
    let (n1, _) = commit(&shares[0], s, &mut rng).unwrap();
    let mut from_party = pk[0].clone();
    from_party.from = 2;
    assert!(matches!(
        sign(&shares[0], n1, &from_party, b"m", &mut j.j[0]),
        Err(Abort::NotAParty { from: 2 })
    ));
    let (n1, c1c) = commit(&shares[0], s, &mut rng).unwrap();
    let mut c = Coordinator::new(session(), shares[0].public(), b"m");
    assert!(matches!(
        c.package(&[c1c, c2]),
        Err(Abort::WrongSession { from: 1 })
    ));
    drop((n1, c1b));
}

#[test]
fn a_used_nonce_is_on_disk_before_the_share_and_never_used_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces");
    let id = [3u8; 32];
    {
        let mut j = NonceJournal::open(&path).unwrap();
        j.consume(&id).unwrap();
        assert!(matches!(j.consume(&id), Err(keys_mpc::JournalError::Used)));
    }
    // Reopened (a restart, or a share restored from a backup): still used.
    let mut j = NonceJournal::open(&path).unwrap();
    assert!(j.is_used(&id));
    assert!(j.consume(&id).is_err());
    j.consume(&[4; 32]).unwrap();
    drop(j);
    // A line torn by a crash was never synced (no share left): ignored and
    // cut off; a corrupt complete line is an error.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"abcd");
    std::fs::write(&path, &bytes).unwrap();
    let mut j = NonceJournal::open(&path).unwrap();
    assert!(j.is_used(&[4; 32]));
    j.consume(&[5; 32]).unwrap();
    drop(j);
    assert!(NonceJournal::open(&path).unwrap().is_used(&[5; 32]));
    std::fs::write(&path, b"not hex\n").unwrap();
    assert!(matches!(
        NonceJournal::open(&path),
        Err(keys_mpc::JournalError::Corrupt { line: 1, .. })
    ));

    // In a session: the journal is written before the share exists.
    let shares = dkg::<Taproot>(3, 2);
    let s = session();
    let mut rng = keys_mpc::os_rng();
    let (n1, c1) = commit(&shares[0], s, &mut rng).unwrap();
    let (_, c2) = commit(&shares[1], s, &mut rng).unwrap();
    let id = n1.id();
    let mut c = Coordinator::new(s, shares[0].public(), &[1; 32]);
    let pk = c.package(&[c1, c2]).unwrap();
    let mut j = NonceJournal::open(&dir.path().join("signer1")).unwrap();
    sign(&shares[0], n1, &pk[0], &[1; 32], &mut j).unwrap();
    drop(j);
    assert!(
        NonceJournal::open(&dir.path().join("signer1"))
            .unwrap()
            .is_used(&id)
    );
}

#[test]
fn secret_shares_in_flight_are_never_printed() {
    let (mut parties, r1) = start::<Ed25519>(session(), 3, 2);
    let r2 = parties[0].round1(&others(&r1, 1)).unwrap();
    let shown = format!("{:?}", r2[0]);
    assert!(shown.contains("<secret share>"), "{shown}");
    assert!(!shown.contains(&r2[0].body[..16]));
}

#[test]
fn parties_told_different_wallets_stop_before_keeping_a_share() {
    let s = session();
    let mut rng = keys_mpc::os_rng();
    let (mut parties, r1): (Vec<Dkg<Taproot>>, Vec<Envelope>) = (1..=3u16)
        .map(|i| {
            let context: &[u8] = if i == 3 {
                b"k\nwallet-B"
            } else {
                b"k\nwallet-A"
            };
            Dkg::<Taproot>::start_for(s, p(i), 3, 2, context, &mut rng).unwrap()
        })
        .unzip();
    let r2: Vec<Envelope> = parties
        .iter_mut()
        .enumerate()
        .flat_map(|(i, d)| d.round1(&others(&r1, i as u16 + 1)).unwrap())
        .collect();
    for (i, d) in parties.into_iter().enumerate() {
        let e = d.round2(&to(&r2, i as u16 + 1)).unwrap_err();
        assert!(
            matches!(&e, Abort::Parameters(r) if r.contains("wallet")),
            "{e}"
        );
        assert!(e.culprits().is_empty());
    }
}

/// A refresh among `members` (parties, 1-based), every message delivered:
/// the members' new shares, in member order.
fn refresh<C: Suite>(shares: Vec<KeyShare<C>>, members: &[u16]) -> Vec<KeyShare<C>> {
    let s = session();
    let mut rng = keys_mpc::os_rng();
    let ps: Vec<PartyIndex> = members.iter().map(|i| p(*i)).collect();
    let (mut parties, r1): (Vec<Dkg<C>>, Vec<Envelope>) = shares
        .into_iter()
        .filter(|sh| members.contains(&sh.me().get()))
        .map(|sh| Dkg::<C>::refresh(s, sh, &ps, b"key-1\nwallet-1", &mut rng).unwrap())
        .unzip();
    let r2: Vec<Envelope> = parties
        .iter_mut()
        .zip(members)
        .flat_map(|(d, me)| d.round1(&others(&r1, *me)).unwrap())
        .collect();
    parties
        .into_iter()
        .zip(members)
        .map(|(d, me)| d.round2(&to(&r2, *me)).unwrap())
        .collect()
}

fn copy<C: Suite>(shares: &[KeyShare<C>]) -> Vec<KeyShare<C>> {
    shares
        .iter()
        .map(|s| KeyShare::from_secret_bytes(&s.to_secret_bytes().unwrap()).unwrap())
        .collect()
}

#[test]
fn a_refresh_keeps_the_group_key_and_the_old_shares_no_longer_combine() {
    let old = dkg::<Taproot>(3, 2);
    let key = old[0].group_key().unwrap();
    let new = refresh(copy(&old), &[1, 2, 3]);
    assert!(new.iter().all(|s| s.group_key().unwrap() == key));
    assert!(
        new.iter()
            .all(|s| s.parties().len() == 3 && s.threshold() == 2)
    );
    // Every pair of new shares signs for the same key (libsecp256k1).
    let mut j = journals(3);
    let q = bitcoin::secp256k1::XOnlyPublicKey::from_slice(&key).unwrap();
    for pair in [[0, 1], [0, 2], [1, 2]] {
        let sig = threshold_sign(&new, &pair, &[5; 32], &mut j).unwrap();
        bitcoin::secp256k1::Secp256k1::verification_only()
            .verify_schnorr(
                &bitcoin::secp256k1::schnorr::Signature::from_slice(&sig).unwrap(),
                &bitcoin::secp256k1::Message::from_digest([5; 32]),
                &q,
            )
            .unwrap();
    }
    // An old share with a new one: the old share does not verify against
    // the new verifying shares, and the coordinator names its party.
    let mut mixed = copy(&new);
    mixed[1] = copy(&old).remove(1);
    match threshold_sign(&mixed, &[0, 1], &[5; 32], &mut j) {
        Err(Abort::InvalidShares { culprits }) => assert_eq!(culprits, vec![p(2)]),
        other => panic!("a mixed pair signed: {other:?}"),
    }
}

#[test]
fn a_refresh_without_a_party_removes_it() {
    let old = dkg::<Ed25519>(3, 2);
    let key = old[0].group_key().unwrap();
    let stale = copy(&old).remove(1);
    let new = refresh(copy(&old), &[1, 3]);
    assert_eq!(new.len(), 2);
    assert!(new.iter().all(|s| s.group_key().unwrap() == key));
    let members: Vec<u16> = new[0].parties().iter().map(|p| p.get()).collect();
    assert_eq!(members, vec![1, 3]);
    assert_eq!(new[1].public().parties(), new[0].parties());
    // The member list survives storage, for the share and the package.
    let again = copy(&new);
    assert_eq!(again[1].parties(), new[1].parties());
    let group =
        keys_mpc::dkg::GroupPublic::<Ed25519>::from_bytes(&new[0].public().to_bytes().unwrap())
            .unwrap();
    assert_eq!(group.parties(), new[0].parties());
    // The two that remain sign (checked by ed25519-dalek).
    let mut j = journals(3);
    let sig = threshold_sign(&new, &[0, 1], b"after", &mut j).unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&key)
        .unwrap()
        .verify_strict(b"after", &ed25519_dalek::Signature::from_bytes(&sig))
        .unwrap();
    // The removed party's share is no party of the new group: a session
    // with it is refused before any share is made.
    let with_removed = vec![copy(&new).remove(0), stale];
    match threshold_sign(&with_removed, &[0, 1], b"after", &mut j) {
        Err(Abort::NotAParty { from: 2 }) => {}
        other => panic!("the removed party took part: {other:?}"),
    }
    // A refresh below the threshold, or with a stranger, is refused.
    let mut rng = keys_mpc::os_rng();
    let one = copy(&new).remove(0);
    assert!(matches!(
        Dkg::<Ed25519>::refresh(session(), one, &[p(1)], b"k", &mut rng),
        Err(Abort::Parameters(_))
    ));
    let one = copy(&new).remove(0);
    assert!(matches!(
        Dkg::<Ed25519>::refresh(session(), one, &[p(1), p(2)], b"k", &mut rng),
        Err(Abort::Parameters(_))
    ));
}

#[test]
fn members_told_different_member_lists_stop_before_keeping_a_share() {
    let old = dkg::<Taproot>(3, 2);
    let s = session();
    let mut rng = keys_mpc::os_rng();
    let mut shares = copy(&old).into_iter();
    let (mut a, m1) =
        Dkg::<Taproot>::refresh(s, shares.next().unwrap(), &[p(1), p(2)], b"k", &mut rng).unwrap();
    // Party 2 was told 1, 2 and 3 would refresh: it waits for party 3.
    let (mut b, m2) = Dkg::<Taproot>::refresh(
        s,
        shares.next().unwrap(),
        &[p(1), p(2), p(3)],
        b"k",
        &mut rng,
    )
    .unwrap();
    match b.round1(std::slice::from_ref(&m1)) {
        Err(Abort::Missing { parties }) => assert_eq!(parties, vec![p(3)]),
        other => panic!("party 2 went on without party 3: {other:?}"),
    }
    // Party 1 goes on, but never gets party 2's round two: no share is kept.
    assert_eq!(a.round1(&[m2]).unwrap().len(), 1);
    assert!(matches!(a.round2(&[]), Err(Abort::Missing { .. })));
}
