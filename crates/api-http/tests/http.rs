//! The router in-process: status codes, JSON error bodies, limits, OpenAPI.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;
use std::time::Duration;

use api_http::{Limits, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use service::{Checkpointer, Service, SystemClock};
use storage::testing::TestDb;
use tower::ServiceExt;

struct App {
    router: axum::Router,
    svc: Service,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

async fn app() -> App {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let cp = Checkpointer::for_tests(dir.path(), 3, 100);
    let svc = Service::new(db.store.clone(), Arc::new(SystemClock), cp);
    svc.set_governance(service::governance::GovernanceConfig::single_admin());
    let limits = Limits::new(1024, Duration::from_secs(5));
    App {
        router: router(svc.clone(), limits),
        svc,
        _db: db,
        _dir: dir,
    }
}

async fn call(
    app: &App,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("non-JSON body ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, headers, json)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn health_and_status() {
    let app = app().await;
    let (s, h, body) = call(&app, get("/v1/health")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, serde_json::json!({"status": "ok"}));
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");

    // Anonymous callers learn liveness only: no version, backend, schema,
    // audit length or networks.
    let (s, _, body) = call(&app, get("/v1/status")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({"seal": "uninitialized", "database": {"reachable": true}})
    );
    let st = app.svc.status().await;
    assert_eq!(st.database.schema_version, Some(33));
    assert_eq!(st.audit_records, Some(0));
}

#[tokio::test]
async fn errors_are_json_with_stable_codes() {
    let app = app().await;
    // Before a keystore exists, everything but the open endpoints is sealed.
    let (s, _, body) = call(&app, get("/v1/nope")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], "sealed");

    let req = Request::delete("/v1/health").body(Body::empty()).unwrap();
    let (s, h, body) = call(&app, req).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["code"], "method_not_allowed");
    assert!(h.contains_key(header::ALLOW));

    let req = Request::post("/v1/health")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "4096")
        .body(Body::from(vec![b' '; 4096]))
        .unwrap();
    let (s, _, body) = call(&app, req).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["code"], "payload_too_large");
}

#[tokio::test]
async fn database_outage_is_a_503() {
    let app = app().await;
    app._db.store.close().await;
    // The process lives; it is not ready.
    let (s, _, body) = call(&app, get("/v1/health")).await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, _, body) = call(&app, get("/v1/ready")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"]["database"], false, "{body}");
    let (s, _, body) = call(&app, get("/v1/status")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["database"]["reachable"], false);
}

#[tokio::test]
async fn openapi_document_describes_the_routes() {
    let app = app().await;
    let (s, _, doc) = call(&app, get("/v1/openapi.json")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(doc["info"]["title"], "Strongroom");
    let mut paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/v1/address-book",
            "/v1/api-keys",
            "/v1/api-keys/{id}/revoke",
            "/v1/audit",
            "/v1/auth/login",
            "/v1/auth/logout",
            "/v1/auth/totp/confirm",
            "/v1/auth/totp/enrol",
            "/v1/btc/sends/{id}",
            "/v1/deny-list",
            "/v1/eth/sends/{id}",
            "/v1/freezes",
            "/v1/grants",
            "/v1/grants/revoke",
            "/v1/health",
            "/v1/me",
            "/v1/policy",
            "/v1/policy/dry-run",
            "/v1/proposals",
            "/v1/proposals/{id}",
            "/v1/proposals/{id}/votes",
            "/v1/ready",
            "/v1/reconciliation/runs",
            "/v1/status",
            "/v1/sys/seal",
            "/v1/sys/seal-status",
            "/v1/sys/unseal",
            "/v1/sys/unseal/reset",
            "/v1/transfers",
            "/v1/transfers/stuck",
            "/v1/transfers/{id}",
            "/v1/transfers/{id}/approvals",
            "/v1/transfers/{id}/cancel",
            "/v1/transfers/{id}/replace",
            "/v1/transfers/{id}/retry",
            "/v1/transfers/{id}/signed",
            "/v1/transfers/{id}/unsigned",
            "/v1/users",
            "/v1/wallets",
            "/v1/wallets/{id}",
            "/v1/wallets/{id}/accounts",
            "/v1/wallets/{id}/addresses",
            "/v1/wallets/{id}/balances",
            "/v1/wallets/{id}/balances/history",
            "/v1/wallets/{id}/consolidate",
            "/v1/wallets/{id}/deposits",
            "/v1/wallets/{id}/ledger",
            "/v1/wallets/{id}/statement",
            "/v1/wallets/{id}/sweep",
            "/v1/webhook-deliveries/{id}/resend",
            "/v1/webhooks",
            "/v1/webhooks/{id}/deactivate",
            "/v1/webhooks/{id}/deliveries"
        ]
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    // The document's role names are exactly the roles the server parses.
    let roles: Vec<String> = doc["components"]["schemas"]["RoleName"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let known: Vec<String> = domain::Role::ALL
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    assert_eq!(roles, known);
    assert_eq!(doc, serde_json::to_value(api_http::openapi()).unwrap());
}

fn post(uri: &str, body: serde_json::Value) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// A request's id (the client's, or a new one) is answered back and
/// written into the audit records it causes.
#[tokio::test]
async fn a_request_id_reaches_the_audit_record() {
    let app = app().await;
    let shares = app
        .svc
        .init_keystore(&"operator:root".parse().unwrap(), 2, 3)
        .await
        .unwrap();
    let unseal = |i: usize, id: Option<&str>| {
        let mut r = post(
            "/v1/sys/unseal",
            serde_json::json!({"share": shares[i].as_str()}),
        );
        if let Some(id) = id {
            r.headers_mut().insert("x-request-id", id.parse().unwrap());
        }
        r
    };
    let (s, headers, _) = call(&app, unseal(0, Some("client-42"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers["x-request-id"], "client-42");
    let last = |records: Vec<audit::Record>| {
        serde_json::from_str::<serde_json::Value>(&records.last().unwrap().details).unwrap()
    };
    let records = app.svc.store().audit_page(0, 1000).await.unwrap();
    assert_eq!(last(records)["request_id"], "client-42");
    // Not a plain token: a new id instead.
    let (s, headers, _) = call(&app, unseal(1, Some("no spaces please"))).await;
    assert_eq!(s, StatusCode::OK);
    let id = headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(id.starts_with("req_"), "{id}");
    let records = app.svc.store().audit_page(0, 1000).await.unwrap();
    assert_eq!(last(records)["request_id"], id.as_str());
}

#[tokio::test]
async fn unseal_over_http_one_share_at_a_time() {
    let app = app().await;
    let (s, _, body) = call(
        &app,
        post(
            "/v1/sys/unseal",
            serde_json::json!({"share": "srshare1-00"}),
        ),
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_initialized"))
    );

    let shares = app
        .svc
        .init_keystore(&"operator:root".parse().unwrap(), 2, 3)
        .await
        .unwrap();
    let (s, _, body) = call(&app, get("/v1/sys/seal-status")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({"state": "sealed", "progress": 0, "threshold": 2})
    );

    let share = |i: usize| serde_json::json!({"share": shares[i].as_str()});
    let (s, _, body) = call(&app, post("/v1/sys/unseal", share(0))).await;
    assert_eq!((s, body["progress"].as_u64()), (StatusCode::OK, Some(1)));
    // The console says so, in a page under its own policy.
    let resp = app.router.clone().oneshot(get("/ui/")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let page = resp.into_body().collect().await.unwrap().to_bytes();
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("1 of 2 unseal shares given"), "{page}");
    let token = body["reset_token"].as_str().unwrap().to_owned();
    // A stranger cannot start the round over; the first share's holder can.
    let (s, _, body) = call(&app, post("/v1/sys/unseal/reset", serde_json::json!(null))).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );
    let with_token = |t: &str| {
        Request::post("/v1/sys/unseal/reset")
            .header("x-strongroom-unseal-token", t)
            .body(Body::empty())
            .unwrap()
    };
    let (s, _, body) = call(&app, with_token("00ff00ff00ff00ff")).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (_, _, body) = call(&app, get("/v1/sys/seal-status")).await;
    assert_eq!(body["progress"], 1, "progress survives a stranger");
    let (s, _, body) = call(&app, with_token(&token)).await;
    assert_eq!((s, body["progress"].as_u64()), (StatusCode::OK, Some(0)));
    let (s, _, body) = call(&app, post("/v1/sys/unseal", share(0))).await;
    assert_eq!((s, body["progress"].as_u64()), (StatusCode::OK, Some(1)));
    let (s, _, body) = call(&app, post("/v1/sys/unseal", share(0))).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("duplicate_share"))
    );
    let mut damaged = shares[1].as_str().to_owned();
    damaged.replace_range(20..21, if &damaged[20..21] == "a" { "b" } else { "a" });
    let (s, _, body) = call(
        &app,
        post("/v1/sys/unseal", serde_json::json!({"share": damaged})),
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_share"))
    );
    // Sealed: not ready, and it says why.
    let (s, _, body) = call(&app, get("/v1/ready")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        serde_json::json!({"ready": false, "checks": {"unsealed": false, "database": true, "schema": true, "disk": true, "checkpoints": true}})
    );
    // Still sealed: the gate answers for everything else.
    let (s, _, body) = call(&app, get("/v1/anything")).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("sealed"))
    );

    let (s, _, body) = call(&app, post("/v1/sys/unseal", share(2))).await;
    assert_eq!(
        (s, body["state"].as_str()),
        (StatusCode::OK, Some("unsealed"))
    );
    let (s, _, body) = call(&app, get("/v1/anything")).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (_, _, body) = call(&app, get("/v1/status")).await;
    assert_eq!(body["seal"], "unsealed");
    let (s, _, body) = call(&app, get("/v1/ready")).await;
    assert_eq!(
        (s, body["ready"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{body}"
    );

    // Sealing takes an authorised person.
    let (s, _, body) = call(&app, post("/v1/sys/seal", serde_json::json!(null))).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );
    app.svc
        .seal(&"operator:root".parse().unwrap())
        .await
        .unwrap();
    let (_, _, body) = call(&app, get("/v1/sys/seal-status")).await;
    assert_eq!(body["state"], "sealed");

    // Unknown fields are refused, as everywhere.
    let (s, _, body) = call(
        &app,
        post(
            "/v1/sys/unseal",
            serde_json::json!({"share": "x", "extra": 1}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_body");
}

/// Past `max_in_flight` requests at once, the next is refused at once with
/// 503 `overloaded` and `Retry-After` (never queued); liveness is never
/// refused; once the request in flight ends, requests are taken again.
#[tokio::test]
async fn requests_past_the_bound_are_shed_with_a_retry_after() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::new(
        db.store.clone(),
        Arc::new(SystemClock),
        Checkpointer::for_tests(dir.path(), 3, 100),
    );
    let limits = Limits {
        max_in_flight: 1,
        ..Limits::new(1024, Duration::from_secs(30))
    };
    let app = App {
        router: router(svc.clone(), limits),
        svc,
        _db: db,
        _dir: dir,
    };
    // One request in flight: its body never finishes arriving.
    let (mut sender, body) = http_body_util::Channel::<axum::body::Bytes>::new(1);
    sender
        .send_data(axum::body::Bytes::from_static(b"{\"a\":"))
        .await
        .unwrap();
    let held = Request::post("/v1/wallets")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::new(body))
        .unwrap();
    let first = tokio::spawn(app.router.clone().oneshot(held));
    // The channel holds one frame: this one goes in once the first was
    // read, so the request is past the bound's check, holding its turn.
    sender
        .send_data(axum::body::Bytes::from_static(b" 1"))
        .await
        .unwrap();
    let (status, headers, body) = call(&app, get("/v1/status")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], "overloaded", "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    // A busy server is alive.
    let (status, _, _) = call(&app, get("/v1/health")).await;
    assert_eq!(status, StatusCode::OK);
    // The held request ends (its client goes away): taken again.
    drop(sender);
    let answered = first.await.unwrap().unwrap();
    let bytes = answered.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_ne!(body["code"], "overloaded", "it was taken: {body}");
    let (status, _, body) = call(&app, get("/v1/status")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
