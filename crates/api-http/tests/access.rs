//! Who may call what: every endpoint against every role (a snapshot),
//! signed requests and sessions over HTTP, limits.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;
use std::time::Duration;

use api_http::{Limits, Rate, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use domain::{Actor, Grant, Role, Scope};
use ed25519_dalek::{Signer, SigningKey};
use http_body_util::BodyExt;
use service::identity::{request_message, request_message_v1};
use service::{Checkpointer, Service, SystemClock};
use storage::testing::TestDb;
use tower::ServiceExt;

struct App {
    router: axum::Router,
    svc: Service,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

async fn app(limits: Limits) -> App {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let cp = Checkpointer::for_tests(dir.path(), 5, 10_000);
    let svc = Service::new(db.store.clone(), Arc::new(SystemClock), cp);
    svc.set_governance(service::governance::GovernanceConfig::single_admin());
    let root: Actor = "operator:root".parse().unwrap();
    for s in &svc.init_keystore(&root, 2, 2).await.unwrap() {
        svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    svc.bootstrap_admin(&root, "alice", "correct horse battery".into(), None)
        .await
        .unwrap();
    App {
        router: router(svc.clone(), limits),
        svc,
        _db: db,
        _dir: dir,
    }
}

fn roomy() -> Limits {
    Limits {
        per_address: Rate {
            per_second: 10_000,
            burst: 10_000,
        },
        per_principal: Rate {
            per_second: 10_000,
            burst: 10_000,
        },
        ..Limits::new(64 * 1024, Duration::from_secs(10))
    }
}

struct Key {
    id: String,
    key: SigningKey,
}

static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Key {
    fn request(&self, method: &str, uri: &str, body: Option<&serde_json::Value>) -> Request<Body> {
        self.request_with(method, uri, body, Sign::V2(None))
    }

    fn request_with(
        &self,
        method: &str,
        uri: &str,
        body: Option<&serde_json::Value>,
        sign: Sign<'_>,
    ) -> Request<Body> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            .to_string();
        let nonce = format!(
            "test-nonce-{:012}",
            NONCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let (m, sent) = match sign {
            Sign::V2(idem) => (
                request_message(
                    method,
                    path,
                    query,
                    body.as_bytes(),
                    &ts,
                    &nonce,
                    idem.unwrap_or(""),
                ),
                idem.map(|k| vec![k]).unwrap_or_default(),
            ),
            Sign::V2Sent { signed, sent } => (
                request_message(method, path, query, body.as_bytes(), &ts, &nonce, signed),
                sent.to_vec(),
            ),
            Sign::V1(idem) => (
                request_message_v1(method, path, query, body.as_bytes(), &ts, &nonce),
                idem.map(|k| vec![k]).unwrap_or_default(),
            ),
        };
        let sig = data_encoding::BASE64.encode(&self.key.sign(&m).to_bytes());
        let mut r = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(api_http::KEY_HEADER, &self.id)
            .header(api_http::TIMESTAMP_HEADER, ts)
            .header(api_http::NONCE_HEADER, nonce)
            .header(api_http::SIGNATURE_HEADER, sig);
        for k in sent {
            r = r.header(api_http::IDEMPOTENCY_HEADER, k);
        }
        r.body(Body::from(body)).unwrap()
    }
}

/// How a test request is signed, and the `Idempotency-Key` values it carries.
#[derive(Clone, Copy)]
enum Sign<'a> {
    /// v2 over the key it carries (if any).
    V2(Option<&'a str>),
    /// v2 over `signed`, carrying `sent`.
    V2Sent {
        signed: &'a str,
        sent: &'a [&'a str],
    },
    /// The legacy v1 message, carrying the key (if any).
    V1(Option<&'a str>),
}

async fn key(app: &App, seed: u8, grant: Grant) -> Key {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let row = app
        .svc
        .console_register_api_key(
            &"operator:root".parse().unwrap(),
            "test",
            &key.verifying_key().to_bytes(),
            &[grant],
            30,
            None,
        )
        .await
        .unwrap();
    Key {
        id: row.id.to_string(),
        key,
    }
}

fn plain(method: &str, uri: &str, body: Option<&serde_json::Value>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
        .unwrap()
}

async fn send(
    app: &App,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_against_every_role() {
    let app = app(roomy()).await;
    let root: Actor = "operator:root".parse().unwrap();
    let wallet = app.svc.console_create_wallet(&root, "hot").await.unwrap();
    let mut principals: Vec<(String, Option<Key>)> = vec![("anonymous".into(), None)];
    for (i, role) in Role::ALL.iter().enumerate() {
        let k = key(&app, 10 + i as u8, Grant::global(*role)).await;
        principals.push((role.as_str().into(), Some(k)));
    }
    let scoped = key(
        &app,
        40,
        Grant::new(Role::Viewer, Scope::Wallet(wallet.id)).unwrap(),
    )
    .await;
    principals.push(("viewer@wallet".into(), Some(scoped)));
    // Things for the admin-only rows to act on.
    let victim = key(&app, 41, Grant::global(Role::Viewer)).await;
    let spare = SigningKey::from_bytes(&[42; 32]).verifying_key().to_bytes();
    let grant = serde_json::json!({"principal": format!("api-key:{}", victim.id), "role": "auditor", "scope": "global"});

    let none = "01900000-0000-7000-8000-000000000000";
    let transfer = serde_json::json!({"wallet": wallet.id.to_string(), "asset": "eip155:1/native", "amount": "1", "destination": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"});
    let rows: Vec<(&str, String, Option<serde_json::Value>)> = vec![
        ("GET", "/v1/health".into(), None),
        ("GET", "/v1/status".into(), None),
        ("GET", "/v1/sys/seal-status".into(), None),
        ("GET", "/v1/me".into(), None),
        ("GET", "/v1/users".into(), None),
        (
            "POST",
            "/v1/users".into(),
            Some(
                serde_json::json!({"name": "bob", "password": "a long enough password", "grants": [{"role": "viewer", "scope": "global"}]}),
            ),
        ),
        ("POST", "/v1/grants".into(), Some(grant.clone())),
        ("POST", "/v1/grants/revoke".into(), Some(grant)),
        ("GET", "/v1/api-keys".into(), None),
        (
            "POST",
            "/v1/api-keys".into(),
            Some(
                serde_json::json!({"name": "ci", "public_key": hex::encode(spare), "grants": [{"role": "initiator", "scope": format!("wallet:{}", wallet.id)}], "valid_days": 30}),
            ),
        ),
        ("POST", format!("/v1/api-keys/{}/revoke", victim.id), None),
        ("GET", "/v1/audit?limit=5".into(), None),
        (
            "POST",
            "/v1/wallets".into(),
            Some(serde_json::json!({"name": "cold"})),
        ),
        (
            "GET",
            "/v1/eth/sends/00000000-0000-0000-0000-000000000000".into(),
            None,
        ),
        ("POST", "/v1/auth/totp/enrol".into(), None),
        ("GET", "/v1/webhooks".into(), None),
        (
            "POST",
            "/v1/webhooks".into(),
            Some(serde_json::json!({"url": "https://203.0.113.10:9/hook", "events": ["*"]})),
        ),
        ("GET", "/v1/webhooks/wh_none/deliveries".into(), None),
        ("POST", "/v1/webhook-deliveries/none/resend".into(), None),
        ("GET", "/v1/policy".into(), None),
        ("POST", "/v1/policy/dry-run".into(), Some(transfer.clone())),
        ("GET", "/v1/proposals".into(), None),
        (
            "POST",
            "/v1/proposals".into(),
            Some(serde_json::json!({"change": {"kind": "set_policy", "document": "rules = []"}})),
        ),
        ("GET", format!("/v1/proposals/{none}"), None),
        (
            "POST",
            format!("/v1/proposals/{none}/votes"),
            Some(serde_json::json!({"vote": "approve"})),
        ),
        ("GET", "/v1/transfers".into(), None),
        (
            "GET",
            format!("/v1/transfers?wallet={}&state=queued", wallet.id),
            None,
        ),
        ("POST", "/v1/transfers".into(), Some(transfer)),
        ("GET", format!("/v1/transfers/{none}"), None),
        (
            "POST",
            format!("/v1/transfers/{none}/approvals"),
            Some(
                serde_json::json!({"vote": "approve", "expires_at_ms": 1, "signature": "00".repeat(64)}),
            ),
        ),
        ("POST", format!("/v1/transfers/{none}/cancel"), None),
        ("POST", format!("/v1/transfers/{none}/retry"), None),
        ("GET", format!("/v1/transfers/{none}/unsigned"), None),
        (
            "POST",
            format!("/v1/transfers/{none}/signed"),
            Some(serde_json::json!({"psbt": "cHNidP8="})),
        ),
        (
            "POST",
            format!("/v1/transfers/{none}/replace"),
            Some(serde_json::json!({"how": "cancel"})),
        ),
        ("GET", "/v1/transfers/stuck".into(), None),
        ("GET", "/v1/address-book".into(), None),
        ("GET", "/v1/deny-list".into(), None),
        ("GET", "/v1/wallets".into(), None),
        ("GET", format!("/v1/wallets/{}/balances", wallet.id), None),
        ("GET", format!("/v1/wallets/{}", wallet.id), None),
        ("GET", format!("/v1/wallets/{}/deposits", wallet.id), None),
        ("GET", format!("/v1/wallets/{}/ledger", wallet.id), None),
        (
            "POST",
            format!("/v1/wallets/{}/consolidate", wallet.id),
            Some(serde_json::json!({"network": "bitcoin:regtest"})),
        ),
        (
            "POST",
            format!("/v1/wallets/{}/sweep", wallet.id),
            Some(serde_json::json!({"network": "eip155:31337"})),
        ),
        (
            "GET",
            format!(
                "/v1/wallets/{}/balances/history?asset=eip155:31337/slip44:60",
                wallet.id
            ),
            None,
        ),
        (
            "GET",
            format!("/v1/wallets/{}/statement?format=csv", wallet.id),
            None,
        ),
        (
            "POST",
            format!("/v1/wallets/{}/addresses", wallet.id),
            Some(serde_json::json!({"network": "bitcoin:regtest"})),
        ),
        ("GET", format!("/v1/btc/sends/{none}"), None),
        (
            "POST",
            format!("/v1/wallets/{}/accounts", wallet.id),
            Some(serde_json::json!({"network": "eip155:31337"})),
        ),
        ("GET", "/v1/freezes".into(), None),
        (
            "POST",
            "/v1/freezes".into(),
            Some(serde_json::json!({"scope": format!("wallet:{}", wallet.id), "reason": "drill"})),
        ),
    ];
    let mut out = String::new();
    for (method, uri, body) in &rows {
        let label = uri
            .replace(&victim.id, "{id}")
            .replace(&wallet.id.to_string(), "{wallet}");
        out.push_str(&format!("{method:4} {label}\n   "));
        for (name, k) in &principals {
            let req = match k {
                Some(k) => k.request(method, uri, body.as_ref()),
                None => plain(method, uri, body.as_ref()),
            };
            let (s, _, _) = send(&app, req).await;
            out.push_str(&format!(" {name}={}", s.as_u16()));
        }
        out.push('\n');
    }
    // Sealing last: it stops everything after it.
    out.push_str("POST /v1/sys/seal\n   ");
    for (name, k) in principals.iter().rev() {
        let req = match k {
            Some(k) => k.request("POST", "/v1/sys/seal", None),
            None => plain("POST", "/v1/sys/seal", None),
        };
        let (s, _, _) = send(&app, req).await;
        out.push_str(&format!(" {name}={}", s.as_u16()));
    }
    out.push('\n');
    expect_test::expect_file!["rbac.snapshot"].assert_eq(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_requests_over_http() {
    let app = app(roomy()).await;
    let k = key(&app, 1, Grant::global(Role::Auditor)).await;
    let req = k.request("GET", "/v1/audit?limit=2", None);
    let again = {
        let mut r = Request::get("/v1/audit?limit=2");
        for (n, v) in req.headers() {
            r = r.header(n, v);
        }
        r.body(Body::empty()).unwrap()
    };
    let (s, _, body) = send(&app, req).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 2);
    let (s, _, body) = send(&app, again).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("replayed_request"))
    );
    // The query is signed too.
    let mut req = k.request("GET", "/v1/audit?limit=2", None);
    *req.uri_mut() = "/v1/audit?limit=900".parse().unwrap();
    let (s, _, body) = send(&app, req).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("bad_signature"))
    );
    let mut req = k.request("GET", "/v1/me", None);
    req.headers_mut()
        .insert(api_http::TIMESTAMP_HEADER, "1000".parse().unwrap());
    let (s, _, body) = send(&app, req).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("stale_request"))
    );
    let mut req = k.request("GET", "/v1/me", None);
    req.headers_mut().remove(api_http::NONCE_HEADER);
    let (s, _, body) = send(&app, req).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("malformed_auth"))
    );
}

fn cookie_of(h: &axum::http::HeaderMap) -> String {
    let c = h
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(c.contains(attr), "{c}");
    }
    c.split(';').next().unwrap().to_owned()
}

/// `strongroom-request-v2` signs the `Idempotency-Key`: a key swapped in
/// transit, or a v1 signature with one, is refused (and spends no nonce);
/// v1 without one is still accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idempotency_key_is_signed() {
    let app = app(Limits::new(1 << 20, std::time::Duration::from_secs(10))).await;
    let k = key(&app, 41, Grant::new(Role::Viewer, Scope::Global).unwrap()).await;
    let code = |sign| {
        let r = k.request_with("GET", "/v1/status", None, sign);
        async { send(&app, r).await }
    };
    let (s, _, body) = code(Sign::V2(Some("order-1"))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // A principal sees more of the status than an anonymous caller; a
    // viewer, who may not read the audit log, not its length.
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["database"]["backend"], "sqlite");
    assert!(body.get("audit_records").is_none(), "{body}");
    let (s, _, body) = code(Sign::V1(None)).await;
    assert_eq!(s, StatusCode::OK, "legacy v1 without a key: {body}");
    for (sign, want) in [
        (Sign::V1(Some("order-2")), "signature_upgrade_required"),
        (
            Sign::V2Sent {
                signed: "order-3",
                sent: &["order-4"],
            },
            "bad_signature",
        ),
        (
            Sign::V2Sent {
                signed: "order-5",
                sent: &[],
            },
            "bad_signature",
        ),
        (
            Sign::V2Sent {
                signed: "order-6",
                sent: &["order-6", "order-6"],
            },
            "malformed_auth",
        ),
    ] {
        let (s, _, body) = code(sign).await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some(want))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_csrf_lockout_and_limits() {
    let app = app(roomy()).await;
    let login = |password: &str| {
        plain(
            "POST",
            "/v1/auth/login",
            Some(&serde_json::json!({"username": "alice", "password": password})),
        )
    };
    let (s, h, body) = send(&app, login("correct horse battery")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["enrol_totp"], true);
    let cookie = cookie_of(&h);
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let with_cookie = |method: &str, uri: &str, csrf: Option<&str>| {
        let mut r = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::COOKIE, &cookie);
        if let Some(c) = csrf {
            r = r.header(api_http::CSRF_HEADER, c);
        }
        r.body(Body::empty()).unwrap()
    };
    let (s, _, body) = send(&app, with_cookie("GET", "/v1/me", None)).await;
    assert_eq!((s, body["mfa"].as_bool()), (StatusCode::OK, Some(false)));
    // Admin rights wait for TOTP.
    let (s, _, body) = send(&app, with_cookie("GET", "/v1/users", None)).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("mfa_required"))
    );
    // A state change without the CSRF token is refused.
    let (s, _, body) = send(&app, with_cookie("POST", "/v1/auth/totp/enrol", None)).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("csrf"))
    );
    let (s, _, body) = send(
        &app,
        with_cookie("POST", "/v1/auth/totp/enrol", Some(&csrf)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(
        body["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    let (s, h, _) = send(&app, with_cookie("POST", "/v1/auth/logout", Some(&csrf))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(
        h.get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (s, _, body) = send(&app, with_cookie("GET", "/v1/me", None)).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("no_session"))
    );

    // Five wrong passwords lock the account; the answer while locked is
    // the answer of every other failure, for an unknown name too.
    for _ in 0..5 {
        let (s, _, body) = send(&app, login("wrong horse battery")).await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
        );
    }
    let (s, h, locked) = send(&app, login("correct horse battery")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(h.get(header::RETRY_AFTER).is_none());
    let unknown = plain(
        "POST",
        "/v1/auth/login",
        Some(&serde_json::json!({"username": "nobody", "password": "correct horse battery"})),
    );
    let (s, _, nobody) = send(&app, unknown).await;
    assert_eq!((s, &locked), (StatusCode::UNAUTHORIZED, &nobody));

    // Bodies: unknown fields and deep nesting are 400s.
    let (s, _, body) = send(
        &app,
        plain(
            "POST",
            "/v1/auth/login",
            Some(&serde_json::json!({"username": "a", "password": "b", "admin": true})),
        ),
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_body"))
    );
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let req = Request::post("/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(deep))
        .unwrap();
    let (s, _, body) = send(&app, req).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("json_too_deep"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let app = app(Limits {
        per_address: Rate {
            per_second: 1000,
            burst: 1000,
        },
        per_principal: Rate {
            per_second: 1,
            burst: 3,
        },
        ..Limits::new(64 * 1024, Duration::from_secs(10))
    })
    .await;
    let a = key(&app, 1, Grant::global(Role::Viewer)).await;
    let b = key(&app, 2, Grant::global(Role::Viewer)).await;
    for _ in 0..3 {
        let (s, _, _) = send(&app, a.request("GET", "/v1/me", None)).await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, h, body) = send(&app, a.request("GET", "/v1/me", None)).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    assert_eq!(h.get(header::RETRY_AFTER).unwrap(), "1");
    // Another principal has its own bucket.
    let (s, _, _) = send(&app, b.request("GET", "/v1/me", None)).await;
    assert_eq!(s, StatusCode::OK);

    let per_address = app_with_address_limit().await;
    for _ in 0..2 {
        let (s, _, _) = send(&per_address, plain("GET", "/v1/health", None)).await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, _, _) = send(&per_address, plain("GET", "/v1/health", None)).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
}

/// Behind a trusted proxy each client has its own bucket (an untrusted
/// peer's `X-Forwarded-For` is ignored); with the ordinary budget spent, a
/// freeze still goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_behind_proxies_and_leave_room_for_emergencies() {
    let app = app(Limits {
        per_address: Rate {
            per_second: 1,
            burst: 2,
        },
        trusted_proxies: std::sync::Arc::from(vec!["10.0.0.0/8".parse().unwrap()]),
        ..Limits::new(64 * 1024, Duration::from_secs(10))
    })
    .await;
    let from = |peer: &str, forwarded: Option<&str>, mut r: Request<Body>| {
        let peer: std::net::SocketAddr = format!("{peer}:40000").parse().unwrap();
        r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        if let Some(f) = forwarded {
            r.headers_mut()
                .insert("x-forwarded-for", f.parse().unwrap());
        }
        r
    };
    let health = || plain("GET", "/v1/health", None);
    for client in ["1.1.1.1", "2.2.2.2"] {
        for _ in 0..2 {
            let r = from("10.0.0.1", Some(&format!("{client}, 10.0.0.2")), health());
            assert_eq!(send(&app, r).await.0, StatusCode::OK, "{client}");
        }
    }
    let r = from("10.0.0.1", Some("1.1.1.1"), health());
    assert_eq!(send(&app, r).await.0, StatusCode::TOO_MANY_REQUESTS);
    // Not a trusted proxy: its own address counts, whatever it forwards.
    for (i, forwarded) in ["3.3.3.3", "4.4.4.4", "5.5.5.5"].into_iter().enumerate() {
        let r = from("192.0.2.7", Some(forwarded), health());
        let want = if i < 2 {
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(send(&app, r).await.0, want);
    }
    // That address has spent its budget; its security officer still freezes.
    let officer = key(&app, 9, Grant::global(Role::SecurityOfficer)).await;
    let body = serde_json::json!({"scope": "global", "reason": "drill"});
    let r = from(
        "192.0.2.7",
        None,
        officer.request("POST", "/v1/freezes", Some(&body)),
    );
    let (s, _, body) = send(&app, r).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["may_have_reached"], serde_json::json!([]));
}

async fn app_with_address_limit() -> App {
    app(Limits {
        per_address: Rate {
            per_second: 1,
            burst: 2,
        },
        ..Limits::new(64 * 1024, Duration::from_secs(10))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_come_as_json_or_csv_and_bad_queries_change_nothing() {
    let app = app(roomy()).await;
    let root: Actor = "operator:root".parse().unwrap();
    let wallet = app.svc.console_create_wallet(&root, "books").await.unwrap();
    let auditor = key(&app, 61, Grant::global(Role::Auditor)).await;
    let base = format!("/v1/wallets/{}", wallet.id);
    let (s, _, body) = send(
        &app,
        auditor.request("GET", &format!("{base}/statement?from_ms=0"), None),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["wallet"], wallet.id.to_string());
    assert_eq!(body["movements"], serde_json::json!([]));
    // CSV, for an accountant.
    let resp = app
        .router
        .clone()
        .oneshot(auditor.request("GET", &format!("{base}/statement?format=csv"), None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(bytes.starts_with(b"kind,at_ms,asset,"));
    // Bad queries: a clear 400 each.
    for uri in [
        format!("{base}/statement?format=xml"),
        format!("{base}/statement?from_ms=10&to_ms=10"),
        format!("{base}/ledger?colour=red"),
        format!("{base}/ledger?limit=-1"),
        format!("{base}/balances/history"),
    ] {
        let (s, _, body) = send(&app, auditor.request("GET", &uri, None)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {body}");
    }
    // A wallet that is not there.
    let (s, _, _) = send(
        &app,
        auditor.request(
            "GET",
            "/v1/wallets/01900000-0000-7000-8000-000000000000/ledger",
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_schemathesis_found_is_a_plain_4xx() {
    let app = app(roomy()).await;
    let admin = key(&app, 62, Grant::global(Role::Admin)).await;
    let ask = |method: &'static str, uri: &str, body: Option<serde_json::Value>| {
        let req = admin.request(method, uri, body.as_ref());
        let app = &app;
        async move { send(app, req).await }
    };
    // A sequence past the database's range, ids that are not ids.
    let (s, _, body) = ask("GET", "/v1/audit?after=9223372036854775808", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    for uri in [
        "/v1/webhooks/%C3%A9t%C3%A9/deactivate",
        "/v1/webhook-deliveries/%01%02/resend",
        "/v1/webhooks/not-an-id/deliveries",
    ] {
        let method = if uri.ends_with("deliveries") {
            "GET"
        } else {
            "POST"
        };
        let (s, _, body) = ask(method, uri, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}: {body}");
    }
    // Filters and limits outside what is documented.
    for uri in [
        "/v1/transfers?state=nope",
        "/v1/transfers?limit=0",
        "/v1/transfers?limit=501",
        "/v1/audit?limit=1001",
        "/v1/reconciliation/runs?limit=0",
    ] {
        let (s, _, body) = ask("GET", uri, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {body}");
    }
    let (s, _, _) = ask("GET", "/v1/transfers?limit=500&state=queued", None).await;
    assert_eq!(s, StatusCode::OK);
    // A body that does not fit names the field, never the value.
    let (s, _, body) = ask(
        "POST",
        "/v1/wallets",
        Some(serde_json::json!({"name": 918273645})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_body");
    let m = body["message"].as_str().unwrap();
    assert!(m.contains("`name`") && !m.contains("918273645"), "{m}");
    let (s, _, body) = ask("POST", "/v1/wallets", Some(serde_json::json!({"nme": "x"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("nme"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallets_are_listed_within_the_callers_scope_a_page_at_a_time() {
    let app = app(roomy()).await;
    let root: Actor = "operator:root".parse().unwrap();
    let mut ids = Vec::new();
    for name in ["one", "two", "three"] {
        ids.push(app.svc.console_create_wallet(&root, name).await.unwrap().id);
    }
    let admin = key(&app, 63, Grant::global(Role::Admin)).await;
    let scoped = key(
        &app,
        64,
        Grant::new(Role::Viewer, Scope::Wallet(ids[1])).unwrap(),
    )
    .await;
    let names = |body: &serde_json::Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|w| w["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (s, _, body) = send(&app, admin.request("GET", "/v1/wallets", None)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(names(&body), ["one", "two", "three"]);
    let (_, _, body) = send(&app, admin.request("GET", "/v1/wallets?limit=2", None)).await;
    assert_eq!(names(&body), ["one", "two"]);
    let last = body[1]["id"].as_str().unwrap().to_owned();
    let (_, _, body) = send(
        &app,
        admin.request("GET", &format!("/v1/wallets?after={last}"), None),
    )
    .await;
    assert_eq!(names(&body), ["three"]);
    let (s, _, body) = send(&app, scoped.request("GET", "/v1/wallets", None)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(names(&body), ["two"], "only what it may read");
    let (s, _, _) = send(&app, admin.request("GET", "/v1/wallets?after=x", None)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// Every list pages the same way: `limit`, and `after` the last id of the
/// previous page; the pages put together are the whole list, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_pages_by_the_last_id_of_the_previous_page() {
    let app = app(roomy()).await;
    let admin = key(&app, 65, Grant::global(Role::Admin)).await;
    for seed in 66..70 {
        key(&app, seed, Grant::global(Role::Viewer)).await;
    }
    for n in 0..3 {
        let body = serde_json::json!({"url": format!("https://hooks.example.com/{n}"), "events": ["transfer.state_changed"]});
        let (s, _, b) = send(&app, admin.request("POST", "/v1/webhooks", Some(&body))).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    for list in [
        "/v1/api-keys",
        "/v1/webhooks",
        "/v1/users",
        "/v1/freezes",
        "/v1/proposals",
    ] {
        let (s, _, whole) = send(&app, admin.request("GET", list, None)).await;
        assert_eq!(s, StatusCode::OK, "{list}: {whole}");
        let whole: Vec<String> = whole
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect();
        let mut paged: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let uri = match &after {
                Some(a) => format!("{list}?limit=2&after={a}"),
                None => format!("{list}?limit=2"),
            };
            let (s, _, page) = send(&app, admin.request("GET", &uri, None)).await;
            assert_eq!(s, StatusCode::OK, "{uri}: {page}");
            let ids: Vec<String> = page
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned())
                .collect();
            assert!(ids.len() <= 2);
            let Some(last) = ids.last().cloned() else {
                break;
            };
            paged.extend(ids);
            after = Some(last);
        }
        assert_eq!(paged, whole, "{list}");
        let (s, _, b) = send(
            &app,
            admin.request("GET", &format!("{list}?limit=501"), None),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{list}: {b}");
    }
}

/// An answer of the console: status, headers and the HTML text.
async fn page(app: &App, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    // Every console answer: the strict policy, never framed, no inline script.
    let csp = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    // Scripts only by reference to the console's own file, empty.
    for (i, _) in text.match_indices("<script") {
        assert!(
            text[i..].starts_with(r#"<script src="/ui/static/console.js" defer></script>"#),
            "{text}"
        );
    }
    assert!(!text.contains(" style="), "{text}");
    assert!(!text.contains(" onclick="), "{text}");
    (status, headers, text)
}

fn form(uri: &str, cookies: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookies)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// The console under `/ui/`: sign-in with the API's sessions, pages from
/// the person's capabilities, forms bound to the session's CSRF token, and
/// the same security headers on every answer, errors in HTML too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_and_shows_its_pages() {
    let app = app(roomy()).await;
    let get = |uri: &str, cookies: &str| {
        Request::get(uri)
            .header(header::COOKIE, cookies)
            .body(Body::empty())
            .unwrap()
    };
    let (s, h, _) = page(&app, get("/ui/", "")).await;
    assert_eq!(
        (s, h[header::LOCATION].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/ui/login")
    );
    let (s, _, text) = page(&app, get("/ui/login", "")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(text.contains(r#"action="/ui/login""#), "{text}");
    let (s, _, css) = page(&app, get("/ui/static/console.css", "")).await;
    assert!(s.is_success() && css.contains("prefers-color-scheme"));

    // A wrong password: the same page again, in HTML, nothing set.
    let (s, h, text) = page(
        &app,
        form(
            "/ui/login",
            "",
            "username=alice&password=wrong+horse+battery",
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(text.contains("Sign-in failed"), "{text}");
    assert!(h.get(header::SET_COOKIE).is_none());

    // The admin enrols TOTP (through the API), then signs in to the
    // console with a code: privileged reads need the second factor.
    let code = enrol_totp(&app).await;
    let (s, h, _) = page(
        &app,
        form(
            "/ui/login",
            "",
            &format!("username=alice&password=correct+horse+battery&totp={code}"),
        ),
    )
    .await;
    assert_eq!(
        (s, h[header::LOCATION].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/ui/")
    );
    let cookies: Vec<String> = h
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for c in &cookies {
        for attr in ["HttpOnly", "Secure", "SameSite=Strict"] {
            assert!(c.contains(attr), "{c}");
        }
    }
    let jar = cookies
        .iter()
        .map(|c| c.split(';').next().unwrap())
        .collect::<Vec<_>>()
        .join("; ");
    let csrf = cookies
        .iter()
        .find_map(|c| c.split(';').next().unwrap().strip_prefix("sr_csrf="))
        .unwrap()
        .to_owned();

    let (s, _, text) = page(&app, get("/ui/", &jar)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(text.contains(r#"data-fact="seal">unsealed"#), "{text}");
    // Past the second factor: no warning, the freezes shown (an overseer).
    assert!(!text.contains(r#"data-fact="mfa""#), "{text}");
    assert!(text.contains("Freezes in force"), "{text}");
    // The queue, as its operators see it.
    assert!(
        text.contains(r#"data-fact="queued">0 transfer(s) queued"#),
        "{text}"
    );
    assert!(text.contains("Nothing stuck."), "{text}");
    assert!(text.contains("<li>admin — everywhere</li>"), "{text}");
    assert!(text.contains("Sign out"), "{text}");
    assert!(text.contains(&format!(r#"value="{csrf}""#)), "{text}");
    let (s, _, text) = page(&app, get("/ui/transfers", &jar)).await;
    assert!(s == StatusCode::OK || s == StatusCode::FORBIDDEN, "{s}");
    assert!(text.contains("<h1>Transfers</h1>"), "{text}");

    // A transfer as an approver reads it: decoded from its intent bytes,
    // the digest in groups of four; one whose bytes do not read back to
    // its digest is shown as such, with nothing to approve.
    let good = stored_transfer(&app, false).await;
    let (s, _, text) = page(&app, get(&format!("/ui/transfers/{}", good.0), &jar)).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert!(text.contains("0.0015 BTC (150000 base units)"), "{text}");
    assert!(
        text.contains("bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw"),
        "{text}"
    );
    let groups = good
        .1
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(text.contains(&groups), "{text}");
    let (_, _, list) = page(&app, get("/ui/transfers", &jar)).await;
    assert!(
        list.contains(&format!("/ui/transfers/{}", good.0)),
        "{list}"
    );
    // Filtered by state, asset and day; a filter that reads as nothing is
    // refused, not ignored.
    let listed = async |query: &str| {
        let (s, _, list) = page(&app, get(&format!("/ui/transfers?{query}"), &jar)).await;
        (s, list.contains(&format!("/ui/transfers/{}", good.0)))
    };
    assert_eq!(
        listed("state=pending_approval").await,
        (StatusCode::OK, true)
    );
    assert_eq!(listed("state=completed").await, (StatusCode::OK, false));
    assert_eq!(
        listed("asset=bitcoin:regtest/native&since=2026-01-01").await,
        (StatusCode::OK, true)
    );
    assert_eq!(listed("since=2030-01-01").await, (StatusCode::OK, false));
    assert_eq!(listed("state=paid").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(listed("since=yesterday").await.0, StatusCode::BAD_REQUEST);
    // The wallets, one wallet's balances; the audit log, searched, its
    // chain checked on the page.
    let (s, _, list) = page(&app, get("/ui/wallets", &jar)).await;
    assert_eq!(s, StatusCode::OK);
    let wallet = app.svc.transfer_wallet(good.0).await.unwrap();
    assert!(list.contains(&format!("/ui/wallets/{wallet}")), "{list}");
    let (s, _, text) = page(&app, get(&format!("/ui/wallets/{wallet}"), &jar)).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert!(
        text.contains("Balances") && text.contains("No accounts yet"),
        "{text}"
    );
    let (s, _, _) = page(&app, get("/ui/wallets/not-a-wallet", &jar)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, text) = page(&app, get("/ui/audit?q=transfer.stored", &jar)).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert!(
        text.contains(r#"data-fact="chain""#) && !text.contains("does not hold"),
        "{text}"
    );
    assert!(
        text.contains("transfer.stored") && !text.contains("auth.login<"),
        "{text}"
    );
    // No approver: no buttons to sign with, and the vote posted anyway
    // (with the session's own CSRF token) is refused.
    assert!(!text.contains("passkey-vote"), "{text}");
    let vote = Request::post(format!("/ui/transfers/{}/vote", good.0))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::COOKIE, &jar)
        .body(Body::from(
            serde_json::json!({"csrf": csrf, "vote": "approve", "expires_at_ms": 1_900_000_000_000i64,
                "signature": format!("webauthn:{}.{}.{}", "AA", "AA", "AA")})
            .to_string(),
        ))
        .unwrap();
    let (s, _, _) = page(&app, vote).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, h, js) = page(&app, get("/ui/static/console.js", "")).await;
    assert!(s.is_success() && js.contains("navigator.credentials.get"));
    assert!(
        h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    // An admin initiates nothing: no form, and a posted one is refused.
    let (s, _, text) = page(&app, get("/ui/initiate", &jar)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{text}");
    assert!(!text.contains("request-button"), "{text}");
    let (s, _, text) = page(
        &app,
        form(
            "/ui/initiate",
            &jar,
            &format!("csrf={csrf}&wallet={}&asset=bitcoin:regtest/native&amount=1&destination=x&action=request&idempotency_key=k", good.0),
        ),
    )
    .await;
    assert!(!s.is_success(), "{s} {text}");
    // Passkeys are made only where the server names its relying party.
    let (s, _, text) = page(&app, get("/ui/passkeys", &jar)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(text.contains("passkeys cannot be made"), "{text}");
    let bad = stored_transfer(&app, true).await;
    let (s, _, text) = page(&app, get(&format!("/ui/transfers/{}", bad.0), &jar)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(text.contains(r#"data-fact="refused""#), "{text}");
    assert!(!text.contains(r#"data-fact="amount""#), "{text}");
    let (s, _, _) = page(&app, get("/ui/transfers/not-an-id", &jar)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A form posted from another site is refused, sign-in too.
    let mut cross = form("/ui/login", "", "username=alice&password=x");
    cross
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    let (s, _, _) = page(&app, cross).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let mut cross = form("/ui/logout", &jar, &format!("csrf={csrf}"));
    cross
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    cross
        .headers_mut()
        .insert(header::HOST, "localhost:8200".parse().unwrap());
    let (s, _, _) = page(&app, cross).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Governance: the freeze button (confirmed), the freeze in force, and
    // its release proposed for the quorum.
    let (s, _, text) = page(&app, get("/ui/governance", &jar)).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert!(
        text.contains("freeze-button") && text.contains("Address book"),
        "{text}"
    );
    let (s, _, _) = page(
        &app,
        form(
            "/ui/governance/freeze",
            &jar,
            &format!("csrf={csrf}&reason=drill"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "not confirmed: nothing frozen");
    assert!(app.svc.freezes().await.unwrap().is_empty());
    let (s, h, _) = page(
        &app,
        form(
            "/ui/governance/freeze",
            &jar,
            &format!("csrf={csrf}&reason=drill&confirm=yes"),
        ),
    )
    .await;
    assert_eq!(
        (s, h[header::LOCATION].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/ui/governance")
    );
    let frozen = app.svc.freezes().await.unwrap();
    assert_eq!(frozen.len(), 1);
    let (_, _, text) = page(&app, get("/ui/governance", &jar)).await;
    assert!(
        text.contains(&format!(r#"data-freeze="{}""#, frozen[0].id)),
        "{text}"
    );
    let (s, _, text) = page(
        &app,
        form(
            "/ui/governance/release",
            &jar,
            &format!("csrf={csrf}&freeze={}", frozen[0].id),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{text}");
    let proposals = app.svc.proposals(None, 10).await.unwrap();
    let release = proposals
        .iter()
        .find(|p| p.kind == "release_freeze")
        .unwrap();
    let (_, _, text) = page(&app, get("/ui/governance", &jar)).await;
    assert!(
        text.contains(&format!(r#"data-proposal="{}""#, release.id)),
        "{text}"
    );
    // Signing out needs the session's own token; a forged form is refused.
    let (s, _, _) = page(&app, form("/ui/logout", &jar, "csrf=forged")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = page(&app, get("/ui/", &jar)).await;
    assert_eq!(s, StatusCode::OK, "still signed in");
    let (s, h, _) = page(&app, form("/ui/logout", &jar, &format!("csrf={csrf}"))).await;
    assert_eq!(
        (s, h[header::LOCATION].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/ui/login")
    );
    let (s, h, _) = page(&app, get("/ui/", &jar)).await;
    assert_eq!(
        (s, h[header::LOCATION].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/ui/login")
    );
}

/// A transfer stored as the service stores one (its intent's bytes and
/// digest), or with a digest that is not its bytes' (`tampered`): (id,
/// stored digest).
async fn stored_transfer(app: &App, tampered: bool) -> (domain::TransferId, String) {
    use domain::intent::{IntentParts, TransferIntent};
    let now = domain::Timestamp::from_millis(1_796_600_000_000);
    let actor: Actor = "operator:root".parse().unwrap();
    let wallet = domain::WalletId::from_uuid(uuid::Uuid::now_v7());
    let id = domain::TransferId::from_uuid(uuid::Uuid::now_v7());
    // A network configured here (no node needed): the page reads intents
    // with the server's own assets.
    app.svc.add_btc_network(service::btc::BtcNetwork {
        network: domain::BitcoinNetwork::Regtest,
        fee_caps: chain_btc::FeeCaps {
            max_fee_rate: 50,
            max_fee: 20_000,
        },
        fee_rate: 5,
        batch: service::btc::BatchRule::default(),
        confirmations: 1,
        bump_after_blocks: 2,
        consolidation: None,
        client: None,
    });
    let asset = domain::Asset::bitcoin(domain::BitcoinNetwork::Regtest);
    let destination = "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw";
    let intent = TransferIntent::new(IntentParts {
        id,
        kind: domain::TransferKind::Withdrawal,
        account: domain::AccountId::from_uuid(*wallet.as_uuid()),
        wallet,
        amount: domain::Amount::from_units(asset.clone(), 150_000),
        destination: domain::intent::Address::new(asset.network(), destination).unwrap(),
        reference: Some("invoice 42".into()),
        initiator: actor.clone(),
        created_at: now,
    })
    .unwrap();
    let digest = if tampered {
        hex::encode([7u8; 32])
    } else {
        intent.digest().to_string()
    };
    let mut tx = app.svc.store().begin().await.unwrap();
    tx.insert_wallet(&storage::WalletRow {
        id: wallet,
        name: format!("w{}", id),
        created_at: now,
        created_by: actor.clone(),
    })
    .await
    .unwrap();
    tx.insert_transfer(&storage::TransferRow {
        id,
        wallet,
        initiator: actor.clone(),
        asset: asset.id().to_string(),
        amount: 150_000,
        destination: destination.to_owned(),
        intent: intent.canonical_bytes(),
        digest: digest.clone(),
        policy_version: 1,
        decision_id: uuid::Uuid::now_v7().to_string(),
        decision: r#"{"outcome":{"verdict":"require_approval"},"rule":"big","trace":[{"subject":"rule 1 big","why":"every condition holds"}]}"#.into(),
        state: "pending_approval".into(),
        usd_micro: None,
        expires_at: None,
        unlock_at: None,
        eth_send_id: None,
        btc_send_id: None,
        external_id: None,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
        priority: 1,
        depends_on: None,
        held_at: None,
        finished_at: None,
        created_at: now,
        updated_at: now,
        judgment_mac: None,
    })
    .await
    .unwrap();
    let e = audit::Entry::new(
        actor,
        "transfer.stored",
        format!("transfer:{id}"),
        audit::Details::none(),
    )
    .unwrap();
    tx.commit(&[e], now).await.unwrap();
    (id, digest)
}

/// Enrols TOTP for alice through the API (confirmed with the previous
/// step's code) and returns the current step's code, for a sign-in.
async fn enrol_totp(app: &App) -> String {
    let (s, h, body) = send(
        app,
        plain(
            "POST",
            "/v1/auth/login",
            Some(&serde_json::json!({"username": "alice", "password": "correct horse battery"})),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let cookie = cookie_of(&h);
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let post = |uri: &str, body: Option<serde_json::Value>| {
        Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::COOKIE, &cookie)
            .header(api_http::CSRF_HEADER, &csrf)
            .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
            .unwrap()
    };
    let (s, _, body) = send(app, post("/v1/auth/totp/enrol", None)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let uri = body["otpauth_uri"].as_str().unwrap();
    let secret = uri
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("secret="))
        .unwrap();
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let step = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / service::totp::STEP
    };
    let code = |step: u64| format!("{:06}", service::totp::code(&secret, step, 6).unwrap());
    let (s, _, body) = send(
        app,
        post(
            "/v1/auth/totp/confirm",
            Some(serde_json::json!({"code": code(step() - 1)})),
        ),
    )
    .await;
    assert!(s.is_success(), "{s} {body}");
    code(step())
}

/// Bybit, 2025: the signers were shown a transfer and signed calldata
/// they never saw. No request here can carry calldata, a call type or a
/// contract to call: a withdrawal names a wallet, an asset, an amount and
/// a destination, and the server builds the transaction itself (what it
/// builds must then be exactly that payment: `chain-eth`'s
/// `bybit_2025_a_plan_that_is_not_the_approved_payment_is_refused`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bybit_2025_no_request_carries_calldata() {
    let app = app(roomy()).await;
    let k = key(&app, 9, Grant::global(Role::Initiator)).await;
    for field in [
        "data",
        "calldata",
        "input",
        "operation",
        "to",
        "value",
        "gas",
    ] {
        let mut body = serde_json::json!({
            "wallet": "01900000-0000-7000-8000-000000000001",
            "asset": "eip155:1/native",
            "amount": "1",
            "destination": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        });
        body[field] = serde_json::json!("0x6a761202");
        for path in ["/v1/transfers", "/v1/policy/dry-run"] {
            let (s, _, b) = send(&app, k.request("POST", path, Some(&body))).await;
            assert_eq!(
                (s, b["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_body")),
                "{field} at {path}: {b}"
            );
        }
    }
    // The contract says the same: a withdrawal's fields, nothing more.
    let (s, _, doc) = send(&app, plain("GET", "/v1/openapi.json", None)).await;
    assert_eq!(s, StatusCode::OK);
    let fields: Vec<&str> = doc["components"]["schemas"]["TransferBody"]["properties"]
        .as_object()
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let allowed = [
        "wallet",
        "asset",
        "amount",
        "destination",
        "reference",
        "external_id",
        "priority",
        "depends_on",
    ];
    assert!(!fields.is_empty());
    assert!(fields.iter().all(|f| allowed.contains(f)), "{fields:?}");
}

/// An API key may name the user who holds it (`owner`, `user:<uuid>` of
/// an existing, active user): it is shown with the key, and a quorum
/// counts that user once however many keys they hold. Anything else as
/// an owner is refused and registers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_names_the_user_who_holds_it() {
    let app = app(roomy()).await;
    let admin = key(&app, 61, Grant::global(Role::Admin)).await;
    let body =
        serde_json::json!({"name": "erin", "password": "a long enough password", "grants": []});
    let (s, _, user) = send(&app, admin.request("POST", "/v1/users", Some(&body))).await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let owner = format!("user:{}", user["id"].as_str().unwrap());
    let new = |seed: u8, owner: serde_json::Value| {
        let pk = SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .to_bytes();
        serde_json::json!({"name": "erin's", "public_key": hex::encode(pk), "grants": [{"role": "viewer", "scope": "global"}], "valid_days": 30, "owner": owner})
    };
    let (s, _, k) = send(
        &app,
        admin.request("POST", "/v1/api-keys", Some(&new(62, owner.clone().into()))),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    assert_eq!(k["owner"], owner.as_str(), "{k}");
    let (_, _, listed) = send(&app, admin.request("GET", "/v1/api-keys", None)).await;
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == k["id"])
        .unwrap();
    assert_eq!(mine["owner"], owner.as_str());
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["owner"].is_null())
    );
    let before = listed.as_array().unwrap().len();
    for bad in [
        serde_json::json!(format!("api-key:{}", k["id"].as_str().unwrap())),
        serde_json::json!("erin"),
        serde_json::json!(format!("user:{}", uuid::Uuid::now_v7())),
    ] {
        let (s, _, b) = send(
            &app,
            admin.request("POST", "/v1/api-keys", Some(&new(63, bad.clone()))),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
        assert!(b["code"].is_string(), "{b}");
    }
    let (_, _, listed) = send(&app, admin.request("GET", "/v1/api-keys", None)).await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        before,
        "nothing registered"
    );
}
