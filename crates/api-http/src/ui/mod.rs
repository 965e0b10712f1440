//! The web console under `/ui/`: pages rendered on the server from the
//! same capabilities the API uses (a viewer sees, an initiator initiates,
//! an approver approves), with no script of its own yet and a strict
//! Content-Security-Policy on every answer (ADR 0018). Sign-in is the
//! API's session (password, then TOTP where the role needs it): the
//! session cookie, and a CSRF token kept in its own cookie and echoed by
//! every form.

mod pages;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use service::Service;
use service::identity::Principal;

use crate::auth::{SESSION_COOKIE, Source};

/// The cookie holding the session's CSRF token for the console's forms.
const CSRF_COOKIE: &str = "sr_csrf";

/// Every console answer: nothing but the server's own files, no inline
/// script or style, never framed, forms only to the server itself.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, merged into the API's router: its rate limits,
/// seal gate, body limits and timeouts apply; its session cookie is read
/// here (forms carry the CSRF token in a field, not a header), and its
/// answers stay HTML.
pub(crate) fn routes() -> Router<Service> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(overview))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/transfers", get(transfers))
        .route("/ui/transfers/{id}", get(transfer))
        .route("/ui/static/console.css", get(stylesheet))
        .layer(axum::middleware::map_response(secured))
}

/// The security headers of every console answer.
async fn secured(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The signed-in person behind the session cookie (reads only), or none.
async fn signed_in(svc: &Service, headers: &HeaderMap) -> Option<Principal> {
    let token = cookie(headers, SESSION_COOKIE)?;
    svc.authenticate_session(&token, None, false).await.ok()
}

/// The person behind a form that changes something: the session, and the
/// form's CSRF token, which must be the session's.
async fn signed_in_to_change(
    svc: &Service,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Principal, Response> {
    let token = cookie(headers, SESSION_COOKIE).ok_or_else(to_login)?;
    svc.authenticate_session(&token, Some(csrf), true)
        .await
        .map_err(|_| (StatusCode::FORBIDDEN, Html(pages::refused())).into_response())
}

fn to_login() -> Response {
    Redirect::to("/ui/login").into_response()
}

async fn overview(State(svc): State<Service>, headers: HeaderMap) -> Response {
    let Some(who) = signed_in(&svc, &headers).await else {
        return to_login();
    };
    let csrf = cookie(&headers, CSRF_COOKIE).unwrap_or_default();
    let status = svc.status().await;
    Html(pages::overview(&svc, &who, &status, &csrf).await).into_response()
}

async fn transfers(State(svc): State<Service>, headers: HeaderMap) -> Response {
    let Some(who) = signed_in(&svc, &headers).await else {
        return to_login();
    };
    let csrf = cookie(&headers, CSRF_COOKIE).unwrap_or_default();
    match pages::transfers(&svc, &who, &csrf).await {
        Ok(page) => Html(page).into_response(),
        Err(page) => (StatusCode::FORBIDDEN, Html(page)).into_response(),
    }
}

async fn transfer(
    State(svc): State<Service>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let Some(who) = signed_in(&svc, &headers).await else {
        return to_login();
    };
    let csrf = cookie(&headers, CSRF_COOKIE).unwrap_or_default();
    // Outside the person's scope, as unknown: not found.
    let page = match id.parse() {
        Ok(id) => pages::transfer(&svc, &who, id, &csrf).await,
        Err(_) => None,
    };
    match page {
        Some(p) => Html(p).into_response(),
        None => (StatusCode::NOT_FOUND, Html(pages::not_found())).into_response(),
    }
}

async fn login_page() -> Html<String> {
    Html(pages::login(None))
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    totp: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

async fn login(
    State(svc): State<Service>,
    Source(address): Source,
    Form(form): Form<LoginForm>,
) -> Response {
    let LoginForm {
        username,
        password,
        totp,
    } = form;
    let totp = Some(totp.trim()).filter(|t| !t.is_empty());
    match svc.login(&username, password, totp, &address).await {
        Ok(out) => {
            let max_age = service::identity::SESSION_MS / 1000;
            let mut resp = Redirect::to("/ui/").into_response();
            for c in [
                format!(
                    "{SESSION_COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}",
                    out.session_token
                ),
                format!(
                    "{CSRF_COOKIE}={}; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}",
                    out.csrf_token
                ),
            ] {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    resp.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            resp
        }
        // One answer for every failure, as the API gives.
        Err(_) => (
            StatusCode::UNAUTHORIZED,
            Html(pages::login(Some(
                "Sign-in failed: check the name, the password and the code.",
            ))),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(svc): State<Service>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let who = match signed_in_to_change(&svc, &headers, &form.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if svc.logout(&who).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, Html(pages::refused())).into_response();
    }
    let mut resp = Redirect::to("/ui/login").into_response();
    for c in [
        format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0"),
        format!("{CSRF_COOKIE}=; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age=0"),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}
