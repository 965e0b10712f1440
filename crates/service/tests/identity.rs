//! People, API keys, sessions and capabilities, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use domain::{Actor, Grant, Role, Scope, Timestamp};
use ed25519_dalek::{Signer as _, SigningKey};
use service::identity::{AuthError, Principal, SignedRequest, perm, request_message};
use service::{Checkpointer, Clock, Service, ServiceError, totp};
use storage::testing::TestDb;

storage::on_both!(
    fixture;
    passwords_lock_out_with_backoff,
    totp_is_enrolled_then_required_and_never_replayed,
    signed_requests_are_fresh_unique_and_untampered,
    capabilities_follow_grants_scopes_and_expiry,
    passkeys_sign_in_once_per_challenge_and_the_last_factor_stays,
    ftx_2022_a_privileged_sign_in_without_its_second_factor_is_refused,
);

/// What an authenticator holding `sk` answers to `challenge` at counter
/// `count`.
fn passkey_answer(
    sk: &p256::ecdsa::SigningKey,
    challenge: &[u8; 32],
    count: u32,
) -> policy::Assertion {
    use base64::Engine as _;
    use p256::ecdsa::signature::Signer as _;
    use sha2::Digest as _;
    let mut data = sha2::Sha256::digest(b"localhost").to_vec();
    data.push(0x05);
    data.extend_from_slice(&count.to_be_bytes());
    let client = serde_json::to_vec(&serde_json::json!({
        "type": "webauthn.get",
        "challenge": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(challenge),
        "origin": "http://localhost:8080",
    }))
    .unwrap();
    let mut signed = data.clone();
    signed.extend_from_slice(&sha2::Sha256::digest(&client));
    let sig: p256::ecdsa::Signature = sk.sign(&signed);
    policy::Assertion {
        authenticator_data: data,
        client_data_json: client,
        signature: sig.to_der().as_bytes().to_vec(),
    }
}

async fn passkeys_sign_in_once_per_challenge_and_the_last_factor_stays(f: Fixture) {
    use service::identity::SecondFactor;
    f.svc.set_relying_party(Some(
        policy::RelyingParty::new("localhost", &["http://localhost:8080".to_owned()]).unwrap(),
    ));
    let out = f
        .svc
        .login("alice", "correct horse battery".into(), None, "10.0.0.1")
        .await
        .unwrap();
    let plain = f
        .svc
        .authenticate_session(&out.session_token, None, false)
        .await
        .unwrap();
    let sk = p256::ecdsa::SigningKey::from_bytes(&[0x42; 32].into()).unwrap();
    let cred = [0xab; 16];
    let key =
        policy::ApproverKey::passkey(&cred, sk.verifying_key().to_encoded_point(true).as_bytes())
            .unwrap();
    // Her first second factor, from a password-only session.
    f.svc.add_passkey(&plain, &key).await.unwrap();
    // A second one needs a session past a second factor.
    let other = p256::ecdsa::SigningKey::from_bytes(&[0x43; 32].into()).unwrap();
    let other_key = policy::ApproverKey::passkey(
        &[0xcd; 16],
        other.verifying_key().to_encoded_point(true).as_bytes(),
    )
    .unwrap();
    assert_eq!(
        auth_err(f.svc.add_passkey(&plain, &other_key).await.map(|_| ())),
        AuthError::MfaRequired
    );
    let sign_in = async |answer: &policy::Assertion, challenge: [u8; 32], password: &str| {
        f.svc
            .login_with(
                "alice",
                password.into(),
                SecondFactor::Passkey {
                    credential_id: &cred,
                    assertion: answer,
                    challenge,
                },
                "10.0.0.1",
            )
            .await
    };
    let first = passkey_answer(&sk, &[1; 32], 1);
    let ok = sign_in(&first, [1; 32], "correct horse battery")
        .await
        .unwrap();
    assert!(ok.mfa, "a passkey is a second factor");
    // The same answer again: its counter did not move (a replay).
    assert_eq!(
        auth_err(
            sign_in(&first, [1; 32], "correct horse battery")
                .await
                .map(|_| ())
        ),
        AuthError::InvalidCredentials
    );
    // An answer to another challenge than the one it is offered for.
    let stray = passkey_answer(&sk, &[2; 32], 2);
    assert_eq!(
        auth_err(
            sign_in(&stray, [3; 32], "correct horse battery")
                .await
                .map(|_| ())
        ),
        AuthError::InvalidCredentials
    );
    // A passkey never stands in for the password.
    let next = passkey_answer(&sk, &[4; 32], 3);
    assert_eq!(
        auth_err(
            sign_in(&next, [4; 32], "wrong horse battery")
                .await
                .map(|_| ())
        ),
        AuthError::InvalidCredentials
    );
    let strong = f
        .svc
        .authenticate_session(&ok.session_token, None, false)
        .await
        .unwrap();
    // Her passkey is now required: the password alone opens nothing, and
    // a password-only session enrols no TOTP.
    assert_eq!(
        auth_err(
            f.svc
                .login("alice", "correct horse battery".into(), None, "10.0.0.1")
                .await
                .map(|_| ())
        ),
        AuthError::InvalidCredentials
    );
    assert_eq!(
        auth_err(f.svc.totp_enrol(&plain, None).await.map(|_| ())),
        AuthError::MfaRequired
    );
    // Her last second factor while she is an admin: it stays.
    assert!(matches!(
        f.svc.remove_passkey(&strong, &hex::encode(cred)).await,
        Err(ServiceError::Conflict(_))
    ));
    // Not from a password-only session.
    assert_eq!(
        auth_err(f.svc.remove_passkey(&plain, &hex::encode(cred)).await),
        AuthError::MfaRequired
    );
    // A session older than ten minutes changes no factor (a cookie stolen
    // later cannot put the thief's passkey in); a fresh sign-in can.
    f.advance(service::identity::PASSKEY_RECENT_MS + 1);
    assert_eq!(
        auth_err(f.svc.add_passkey(&strong, &other_key).await),
        AuthError::MfaRequired
    );
    let again = passkey_answer(&sk, &[5; 32], 4);
    let ok = sign_in(&again, [5; 32], "correct horse battery")
        .await
        .unwrap();
    let strong = f
        .svc
        .authenticate_session(&ok.session_token, None, false)
        .await
        .unwrap();
    // With a second one added, the first goes.
    f.svc.add_passkey(&strong, &other_key).await.unwrap();
    f.svc
        .remove_passkey(&strong, &hex::encode(cred))
        .await
        .unwrap();
    assert_eq!(f.svc.passkeys(&strong).await.unwrap().len(), 1);
    // The sessions it may have opened are over; the one that removed it
    // goes on.
    assert_eq!(
        auth_err(
            f.svc
                .authenticate_session(&out.session_token, None, false)
                .await
        ),
        AuthError::NoSession
    );
    assert!(
        f.svc
            .authenticate_session(&ok.session_token, None, false)
            .await
            .is_ok()
    );
    let actions = f.actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "auth.passkey.added")
            .count(),
        2
    );
    assert!(actions.iter().any(|a| a == "auth.passkey.removed"));
}

#[derive(Debug)]
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

struct Fixture {
    db: TestDb,
    svc: Service,
    clock: Arc<TestClock>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn advance(&self, ms: i64) {
        self.clock.0.fetch_add(ms, Ordering::SeqCst);
    }

    fn unix(&self) -> u64 {
        u64::try_from(self.clock.now().as_millis() / 1000).unwrap()
    }

    async fn actions(&self) -> Vec<String> {
        let page = self.db.store.audit_page(0, 10_000).await.unwrap();
        page.into_iter().map(|r| r.action).collect()
    }
}

async fn fixture(db: TestDb) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cp = Checkpointer::for_tests(dir.path(), 3, 10_000);
    let clock = Arc::new(TestClock(AtomicI64::new(1_800_000_000_000)));
    let svc = Service::new(db.store.clone(), clock.clone(), cp);
    svc.set_governance(service::governance::GovernanceConfig::single_admin());
    let console: Actor = "operator:root".parse().unwrap();
    for s in &svc.init_keystore(&console, 2, 2).await.unwrap() {
        svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    svc.bootstrap_admin(
        &console,
        "alice",
        "correct horse battery".into(),
        Some(&hex::encode(alice_key().verifying_key().to_bytes())),
    )
    .await
    .unwrap();
    Fixture {
        db,
        svc,
        clock,
        _dir: dir,
    }
}

/// Alice's governance signing key (enrolled when she is made admin).
fn alice_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32])
}

/// Alice, the one admin (the quorum here), approves a proposal.
async fn alice_approves(
    f: &Fixture,
    alice: &service::identity::Principal,
    v: &service::governance::ProposalView,
) {
    let v = service::testing::approve(&f.svc, alice, &alice_key(), &v.proposal.id).await;
    assert_eq!(v.proposal.state, "applied");
}

fn denied<T>(r: Result<T, AuthError>) -> AuthError {
    r.map(|_| ()).unwrap_err()
}

fn auth_err<T: std::fmt::Debug>(r: Result<T, ServiceError>) -> AuthError {
    match r {
        Err(ServiceError::Auth(e)) => e,
        other => panic!("expected an authentication error, got {other:?}"),
    }
}

async fn passwords_lock_out_with_backoff(f: Fixture) {
    let console: Actor = "operator:root".parse().unwrap();
    // Once only.
    assert!(
        f.svc
            .bootstrap_admin(&console, "mallory", "another long password".into(), None)
            .await
            .is_err()
    );
    assert_eq!(
        auth_err(
            f.svc
                .login("nobody", "correct horse battery".into(), None, "10.0.0.1")
                .await
        ),
        AuthError::InvalidCredentials
    );
    for _ in 0..5 {
        assert_eq!(
            auth_err(
                f.svc
                    .login("alice", "wrong horse battery".into(), None, "10.0.0.1")
                    .await
            ),
            AuthError::InvalidCredentials
        );
    }
    // Locked: even the right password is refused, with the answer of any
    // other failure (no account enumeration); locked for a minute.
    let locked_for = async || {
        let u = f.db.store.user_by_name("alice").await.unwrap();
        (u.locked_until.as_millis() - service::Clock::now(&*f.clock).as_millis()) / 1000
    };
    let locked = auth_err(
        f.svc
            .login("alice", "correct horse battery".into(), None, "10.0.0.1")
            .await,
    );
    assert_eq!(locked, AuthError::InvalidCredentials);
    assert!((1..=60).contains(&locked_for().await));
    f.advance(61_000);
    // One more failure locks for twice as long.
    auth_err(
        f.svc
            .login("alice", "wrong horse battery".into(), None, "10.0.0.1")
            .await,
    );
    let locked = auth_err(
        f.svc
            .login("alice", "correct horse battery".into(), None, "10.0.0.1")
            .await,
    );
    assert_eq!(locked, AuthError::InvalidCredentials);
    assert!((61..=120).contains(&locked_for().await));
    f.advance(121_000);
    let ok = f
        .svc
        .login("alice", "correct horse battery".into(), None, "10.0.0.1")
        .await
        .unwrap();
    assert!(!ok.mfa && ok.enrol_totp, "an admin without TOTP must enrol");
    let actions = f.actions().await;
    assert_eq!(
        actions.iter().filter(|a| *a == "auth.login.failed").count(),
        6
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "auth.login.new_address")
            .count(),
        1
    );
    f.svc
        .login("alice", "correct horse battery".into(), None, "10.0.0.2")
        .await
        .unwrap();
    f.svc
        .login("alice", "correct horse battery".into(), None, "10.0.0.2")
        .await
        .unwrap();
    let actions = f.actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "auth.login.new_address")
            .count(),
        2,
        "10.0.0.2 flagged once"
    );
    // A budget per name (10 at once, 20 a minute), unknown names too: the
    // eleventh quick attempt is refused before any password work.
    for _ in 0..10 {
        let e = auth_err(
            f.svc
                .login("nobody", "x".repeat(12), None, "10.0.0.3")
                .await,
        );
        assert_eq!(e, AuthError::InvalidCredentials);
    }
    assert!(matches!(
        auth_err(
            f.svc
                .login("nobody", "x".repeat(12), None, "10.0.0.3")
                .await
        ),
        AuthError::Throttled {
            retry_after_s: 1..=3
        }
    ));
    f.advance(3_000);
    assert_eq!(
        auth_err(
            f.svc
                .login("nobody", "x".repeat(12), None, "10.0.0.3")
                .await
        ),
        AuthError::InvalidCredentials
    );
}

fn secret_of(uri: &str) -> Vec<u8> {
    let b32 = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    data_encoding::BASE32_NOPAD.decode(b32.as_bytes()).unwrap()
}

async fn totp_is_enrolled_then_required_and_never_replayed(f: Fixture) {
    let login = f
        .svc
        .login("alice", "correct horse battery".into(), None, "10.0.0.1")
        .await
        .unwrap();
    let who = f
        .svc
        .authenticate_session(&login.session_token, None, false)
        .await
        .unwrap();
    // Privileged capabilities wait for the second factor.
    assert_eq!(
        f.svc
            .authorize::<perm::ManageUsers>(&who, None)
            .unwrap_err(),
        AuthError::MfaRequired
    );
    // State changes need the CSRF token.
    assert_eq!(
        auth_err(
            f.svc
                .authenticate_session(&login.session_token, None, true)
                .await
        ),
        AuthError::Csrf
    );
    assert_eq!(
        auth_err(
            f.svc
                .authenticate_session(&login.session_token, Some("forged"), true)
                .await
        ),
        AuthError::Csrf
    );
    let who = f
        .svc
        .authenticate_session(&login.session_token, Some(&login.csrf_token), true)
        .await
        .unwrap();
    let uri = f.svc.totp_enrol(&who, None).await.unwrap();
    assert!(uri.starts_with("otpauth://totp/Strongroom:alice?secret="));
    let secret = secret_of(&uri);
    assert_eq!(
        auth_err(f.svc.totp_confirm(&who, "000000").await),
        AuthError::InvalidCredentials
    );
    let code = format!("{:06}", totp::code(&secret, f.unix() / 30, 6).unwrap());
    f.svc.totp_confirm(&who, &code).await.unwrap();
    let who = f
        .svc
        .authenticate_session(&login.session_token, None, false)
        .await
        .unwrap();
    assert!(who.mfa());
    f.svc.authorize::<perm::ManageUsers>(&who, None).unwrap();

    // From now on the code is required (a missing one is a failure like
    // any other), and each code works once.
    assert_eq!(
        auth_err(
            f.svc
                .login("alice", "correct horse battery".into(), None, "10.0.0.1")
                .await
        ),
        AuthError::InvalidCredentials
    );
    assert_eq!(
        auth_err(
            f.svc
                .login(
                    "alice",
                    "correct horse battery".into(),
                    Some(&code),
                    "10.0.0.1"
                )
                .await
        ),
        AuthError::InvalidCredentials,
        "the code used to confirm cannot sign in"
    );
    f.advance(30_000);
    let next = format!("{:06}", totp::code(&secret, f.unix() / 30, 6).unwrap());
    let ok = f
        .svc
        .login(
            "alice",
            "correct horse battery".into(),
            Some(&next),
            "10.0.0.1",
        )
        .await
        .unwrap();
    assert!(ok.mfa && !ok.enrol_totp);
    assert_eq!(
        auth_err(
            f.svc
                .login(
                    "alice",
                    "correct horse battery".into(),
                    Some(&next),
                    "10.0.0.1"
                )
                .await
        ),
        AuthError::InvalidCredentials,
        "replayed code"
    );
    // Replacing the enrolled factor takes a fresh code from it.
    let who_now = f
        .svc
        .authenticate_session(&ok.session_token, Some(&ok.csrf_token), true)
        .await
        .unwrap();
    assert_eq!(
        auth_err(f.svc.totp_enrol(&who_now, None).await),
        AuthError::TotpRequired
    );
    assert_eq!(
        auth_err(f.svc.totp_enrol(&who_now, Some(&next)).await),
        AuthError::InvalidCredentials,
        "a used code does not prove the factor again"
    );
    f.advance(30_000);
    let fresh = format!("{:06}", totp::code(&secret, f.unix() / 30, 6).unwrap());
    assert!(f.svc.totp_enrol(&who_now, Some(&fresh)).await.is_ok());
    // Sign-out ends the session.
    let who = f
        .svc
        .authenticate_session(&ok.session_token, None, false)
        .await
        .unwrap();
    f.svc.logout(&who).await.unwrap();
    assert_eq!(
        auth_err(
            f.svc
                .authenticate_session(&ok.session_token, None, false)
                .await
        ),
        AuthError::NoSession
    );
    // Sessions expire.
    f.advance(9 * 3600 * 1000);
    assert_eq!(
        auth_err(
            f.svc
                .authenticate_session(&login.session_token, None, false)
                .await
        ),
        AuthError::NoSession
    );
}

struct Client {
    key: SigningKey,
    id: String,
}

/// A signed request, owned, that can be altered before it is presented.
#[derive(Clone)]
struct Req {
    key_id: String,
    ts: String,
    nonce: String,
    sig: String,
    path: String,
    body: Vec<u8>,
}

impl Req {
    fn view(&self) -> SignedRequest<'_> {
        SignedRequest {
            key_id: &self.key_id,
            timestamp_ms: &self.ts,
            nonce: &self.nonce,
            signature: &self.sig,
            method: "POST",
            path: &self.path,
            query: "",
            body: &self.body,
            idempotency_key: None,
        }
    }
}

impl Client {
    fn sign(&self, f: &Fixture, nonce: &str, body: &[u8]) -> Req {
        let ts = f.clock.now().as_millis().to_string();
        let m = request_message("POST", "/v1/transfers", "", body, &ts, nonce, "");
        Req {
            key_id: self.id.clone(),
            ts,
            nonce: nonce.to_owned(),
            sig: data_encoding::BASE64.encode(&self.key.sign(&m).to_bytes()),
            path: "/v1/transfers".into(),
            body: body.to_vec(),
        }
    }
}

async fn register(f: &Fixture, seed: u8, grants: &[Grant], days: u32) -> Client {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let console: Actor = "operator:root".parse().unwrap();
    let row = f
        .svc
        .console_register_api_key(
            &console,
            "integrator",
            &key.verifying_key().to_bytes(),
            grants,
            days,
            None,
        )
        .await
        .unwrap();
    Client {
        key,
        id: row.id.to_string(),
    }
}

async fn signed_requests_are_fresh_unique_and_untampered(f: Fixture) {
    let c = register(&f, 7, &[Grant::global(Role::Initiator)], 90).await;
    let body = br#"{"amount":"1"}"#;
    let req = c.sign(&f, "nonce-0000000000001", body);
    let who: Principal = f.svc.authenticate_request(&req.view()).await.unwrap();
    assert_eq!(who.grants(), &[Grant::global(Role::Initiator)]);
    // The same request again: a replay (the nonce store is the database, shared by every server).
    assert_eq!(
        auth_err(f.svc.authenticate_request(&req.view()).await),
        AuthError::Replay
    );

    let genuine = c.sign(&f, "nonce-0000000000002", body);
    let mut tampered = genuine.clone();
    tampered.body = br#"{"amount":"9"}"#.to_vec();
    assert_eq!(
        auth_err(f.svc.authenticate_request(&tampered.view()).await),
        AuthError::BadSignature
    );
    // A bad signature does not burn the nonce: the genuine request still passes.
    f.svc.authenticate_request(&genuine.view()).await.unwrap();

    let mut other_path = c.sign(&f, "nonce-0000000000003", body);
    other_path.path = "/v1/api-keys".into();
    assert_eq!(
        auth_err(f.svc.authenticate_request(&other_path.view()).await),
        AuthError::BadSignature
    );

    let old = c.sign(&f, "nonce-0000000000004", body);
    f.advance(31_000);
    assert_eq!(
        auth_err(f.svc.authenticate_request(&old.view()).await),
        AuthError::Stale
    );
    let mut future = c.sign(&f, "nonce-0000000000005", body);
    future.ts = (f.clock.now().as_millis() + 31_000).to_string();
    assert_eq!(
        auth_err(f.svc.authenticate_request(&future.view()).await),
        AuthError::Stale
    );

    let short = c.sign(&f, "short", body);
    assert!(matches!(
        auth_err(f.svc.authenticate_request(&short.view()).await),
        AuthError::Malformed(_)
    ));

    let stranger = Client {
        key: SigningKey::from_bytes(&[9; 32]),
        id: c.id.clone(),
    };
    let forged = stranger.sign(&f, "nonce-0000000000006", body);
    assert_eq!(
        auth_err(f.svc.authenticate_request(&forged.view()).await),
        AuthError::BadSignature
    );

    // Expiry.
    let short_lived = register(&f, 8, &[Grant::global(Role::Viewer)], 1).await;
    f.advance(86_400_000 + 1);
    let req = short_lived.sign(&f, "nonce-0000000000007", body);
    assert_eq!(
        auth_err(f.svc.authenticate_request(&req.view()).await),
        AuthError::KeyInactive
    );
}

async fn capabilities_follow_grants_scopes_and_expiry(f: Fixture) {
    let console: Actor = "operator:root".parse().unwrap();
    let a = f
        .svc
        .console_create_wallet(&console, "hot-a")
        .await
        .unwrap();
    let b = f
        .svc
        .console_create_wallet(&console, "hot-b")
        .await
        .unwrap();
    let c = register(
        &f,
        11,
        &[
            Grant::new(Role::Initiator, Scope::Wallet(a.id)).unwrap(),
            Grant::new(Role::Viewer, Scope::Wallet(b.id)).unwrap(),
        ],
        30,
    )
    .await;
    let present = |n: &str| c.sign(&f, n, b"");
    let who = f
        .svc
        .authenticate_request(&present("nonce-1000000000001").view())
        .await
        .unwrap();
    f.svc
        .authorize::<perm::InitiateTransfer>(&who, Some(a.id))
        .unwrap();
    assert_eq!(
        denied(f.svc.authorize::<perm::InitiateTransfer>(&who, Some(b.id))),
        AuthError::Forbidden
    );
    f.svc
        .authorize::<perm::ReadWallet>(&who, Some(b.id))
        .unwrap();
    assert_eq!(
        denied(f.svc.authorize::<perm::ReadAudit>(&who, None)),
        AuthError::Forbidden
    );
    assert_eq!(
        denied(f.svc.authorize::<perm::ApproveTransfer>(&who, Some(a.id))),
        AuthError::Forbidden
    );
    assert_eq!(
        denied(f.svc.authorize::<perm::ReadWallet>(&who, None)),
        AuthError::Forbidden
    );

    // An admin passes MFA, then delegates approval for an hour.
    let login = f
        .svc
        .login("alice", "correct horse battery".into(), None, "10.0.0.1")
        .await
        .unwrap();
    let admin = f
        .svc
        .authenticate_session(&login.session_token, Some(&login.csrf_token), true)
        .await
        .unwrap();
    assert_eq!(
        denied(f.svc.authorize::<perm::ManageApiKeys>(&admin, None)),
        AuthError::MfaRequired
    );
    let uri = f.svc.totp_enrol(&admin, None).await.unwrap();
    let code = format!(
        "{:06}",
        totp::code(&secret_of(&uri), f.unix() / 30, 6).unwrap()
    );
    f.svc.totp_confirm(&admin, &code).await.unwrap();
    let admin = f
        .svc
        .authenticate_session(&login.session_token, None, false)
        .await
        .unwrap();
    let users = f.svc.authorize::<perm::ManageUsers>(&admin, None).unwrap();
    let until = Timestamp::from_millis(f.clock.now().as_millis() + 3_600_000);
    let v = users
        .grant(
            who.actor(),
            Grant::new(Role::Approver, Scope::Wallet(b.id)).unwrap(),
            Some(until),
        )
        .await
        .unwrap();
    alice_approves(&f, &admin, &v).await;
    let who = f
        .svc
        .authenticate_request(&present("nonce-1000000000002").view())
        .await
        .unwrap();
    f.svc
        .authorize::<perm::ApproveTransfer>(&who, Some(b.id))
        .unwrap();
    f.advance(3_600_001);
    let who = f
        .svc
        .authenticate_request(&present("nonce-1000000000003").view())
        .await
        .unwrap();
    assert_eq!(
        denied(f.svc.authorize::<perm::ApproveTransfer>(&who, Some(b.id))),
        AuthError::Forbidden
    );
    // An admin holds no transfer duties.
    assert_eq!(
        denied(
            f.svc
                .authorize::<perm::InitiateTransfer>(&admin, Some(a.id))
        ),
        AuthError::Forbidden
    );

    // A viewer signed in without TOTP, then made admin: the same session
    // does not carry admin rights until a second factor is verified.
    let (vic, proposed) = users
        .create_user(
            "vic",
            "a long enough password".into(),
            &[Grant::global(Role::Viewer)],
        )
        .await
        .unwrap();
    for v in &proposed {
        alice_approves(&f, &admin, v).await;
    }
    // Names differ by more than case: `VIC` is `vic`.
    for taken in ["VIC", "Vic"] {
        assert!(matches!(
            users
                .create_user(taken, "a long enough password".into(), &[])
                .await,
            Err(ServiceError::Conflict(m)) if m.contains("vic")
        ));
    }
    let vlogin = f
        .svc
        .login("vic", "a long enough password".into(), None, "10.0.0.9")
        .await
        .unwrap();
    assert!(
        !vlogin.mfa && !vlogin.enrol_totp,
        "a viewer needs no second factor"
    );
    let v = users
        .grant(&Actor::User(vic.id), Grant::global(Role::Admin), None)
        .await
        .unwrap();
    alice_approves(&f, &admin, &v).await;
    let vic_session = f
        .svc
        .authenticate_session(&vlogin.session_token, None, false)
        .await
        .unwrap();
    assert_eq!(
        denied(f.svc.authorize::<perm::ManageUsers>(&vic_session, None)),
        AuthError::MfaRequired
    );

    // Revoked keys stop at once.
    let admin = f
        .svc
        .authenticate_session(&login.session_token, None, false)
        .await
        .unwrap();
    let keys = f
        .svc
        .authorize::<perm::ManageApiKeys>(&admin, None)
        .unwrap();
    keys.revoke_api_key(c.id.parse().unwrap()).await.unwrap();
    let req = present("nonce-1000000000004");
    assert_eq!(
        auth_err(f.svc.authenticate_request(&req.view()).await),
        AuthError::KeyInactive
    );
    let actions = f.actions().await;
    for a in [
        "user.created",
        "api_key.created",
        "grant.added",
        "api_key.revoked",
        "auth.totp.enrolled",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a}");
    }
}

/// FTX, 2022: privileged access without a second factor. An admin signed
/// in with a password alone can do nothing privileged (no user, no
/// proposal); once a second factor is enrolled, the password alone (the
/// thief's) signs in to nothing: each attempt is refused and audited, and
/// after five the account locks, audited too.
async fn ftx_2022_a_privileged_sign_in_without_its_second_factor_is_refused(f: Fixture) {
    let pw = || "correct horse battery".to_owned();
    let login = f.svc.login("alice", pw(), None, "10.0.0.1").await.unwrap();
    let who = f
        .svc
        .authenticate_session(&login.session_token, Some(&login.csrf_token), true)
        .await
        .unwrap();
    assert!(!who.mfa());
    assert_eq!(
        denied(f.svc.authorize::<perm::ManageUsers>(&who, None)),
        AuthError::MfaRequired
    );
    let proposed = f
        .svc
        .propose(
            &who,
            service::governance::Change::Grant {
                principal: "operator:mallory".into(),
                role: "admin".into(),
                scope: "global".into(),
                until_ms: None,
            },
        )
        .await;
    assert_eq!(auth_err(proposed), AuthError::MfaRequired);
    // Alice enrols her factor.
    let uri = f.svc.totp_enrol(&who, None).await.unwrap();
    let code = format!(
        "{:06}",
        totp::code(&secret_of(&uri), f.unix() / 30, 6).unwrap()
    );
    f.svc.totp_confirm(&who, &code).await.unwrap();
    // The thief has her password, not her factor.
    for attempt in 1..=5 {
        let stolen = f.svc.login("alice", pw(), None, "203.0.113.9").await;
        assert_eq!(auth_err(stolen), AuthError::InvalidCredentials, "{attempt}");
    }
    let locked = f
        .svc
        .login("alice", pw(), Some("123456"), "203.0.113.9")
        .await;
    assert!(locked.is_err());
    let actions = f.actions().await;
    assert_eq!(
        actions.iter().filter(|a| *a == "auth.login.failed").count(),
        5,
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| a == "auth.login.refused"),
        "{actions:?}"
    );
}
