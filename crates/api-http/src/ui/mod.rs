//! The web console under `/ui/`: pages rendered on the server from the
//! same capabilities the API uses (a viewer sees, an initiator initiates,
//! an approver approves), one script served from the binary (the passkey
//! ceremonies) and a strict Content-Security-Policy on every answer
//! (ADR 0018). Sign-in is the
//! API's session (password, then TOTP where the role needs it): the
//! session cookie, and a CSRF token kept in its own cookie and echoed by
//! every form.

mod audit;
mod governance;
mod initiate;
mod pages;
mod passkeys;
mod sent;
mod wallets;

use axum::Router;
use axum::extract::{Extension, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use service::Service;
use service::identity::{Principal, SecondFactor};

use crate::auth::{MaybeAuthed, SESSION_COOKIE, Source, cookie};
use service::ServiceError;
use service::identity::AuthError;

/// The cookie holding the session's CSRF token for the console's forms.
const CSRF_COOKIE: &str = "sr_csrf";

/// Every console answer: nothing but the server's own files, no inline
/// script or style, never framed, forms only to the server itself.
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; \
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
        .route("/ui/transfers/{id}/vote", post(passkeys::vote))
        .route("/ui/initiate", get(initiate::show).post(initiate::submit))
        .route("/ui/wallets", get(wallets::list))
        .route("/ui/wallets/{id}", get(wallets::show))
        .route("/ui/audit", get(audit::show))
        .route("/ui/governance", get(governance::show))
        .route("/ui/governance/freeze", post(governance::freeze))
        .route("/ui/governance/release", post(governance::release))
        .route("/ui/passkeys", get(passkeys_page))
        .route("/ui/passkeys/options", post(passkeys::start))
        .route("/ui/passkeys/register", post(passkeys::finish))
        .route("/ui/passkeys/remove", post(passkeys::remove))
        .route("/ui/login/challenge", post(passkeys::login_challenge))
        .route("/ui/static/console.css", get(stylesheet))
        .route("/ui/static/console.js", get(script))
        .layer(axum::Extension(passkeys::Shared::default()))
        .layer(axum::Extension(passkeys::SharedChallenges::default()))
        .layer(axum::middleware::from_fn(same_origin_posts))
        .layer(axum::middleware::map_response(secured))
}

/// A form posted from another site is refused before anything reads it
/// (sign-in included: no one is signed in to someone else's account by a
/// page elsewhere): the browser's `Sec-Fetch-Site` must say same-origin,
/// and an `Origin` must name this host.
async fn same_origin_posts(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.method() != axum::http::Method::GET && req.method() != axum::http::Method::HEAD {
        let h = req.headers();
        let site_ok = h
            .get("sec-fetch-site")
            .is_none_or(|v| v.as_bytes() == b"same-origin");
        let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
        let origin_ok = match h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            None => true,
            Some(o) => host.is_some_and(|host| {
                o.strip_prefix("http://")
                    .or_else(|| o.strip_prefix("https://"))
                    .is_some_and(|rest| rest == host)
            }),
        };
        if !(site_ok && origin_ok) {
            return (StatusCode::FORBIDDEN, Html(pages::refused())).into_response();
        }
    }
    next.run(req).await
}

/// What every console page is while the keystore is not unsealed: a 503
/// page saying so and what operators do (the seal gate answers it, with
/// the console's headers).
pub(crate) fn sealed(status: &service::SealStatus) -> Response {
    let resp = (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "30")],
        Html(pages::sealed(status)),
    )
        .into_response();
    with_headers(resp)
}

/// The security headers of every console answer.
async fn secured(resp: Response) -> Response {
    with_headers(resp)
}

fn with_headers(mut resp: Response) -> Response {
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
        // Nothing leaves for other sites; the console's own forms keep their
        // Origin (under `no-referrer` browsers send `Origin: null`).
        HeaderValue::from_static("same-origin"),
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

/// The console's one script (no inline script anywhere: the CSP forbids
/// it): the passkey ceremonies, reading what it signs from the page the
/// server rendered.
async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("console.js"),
    )
}

async fn passkeys_page(State(svc): State<Service>, Reader { who, csrf }: Reader) -> Response {
    answer(pages::passkeys(&svc, &who, &csrf).await)
}

/// A page, or why it could not be made.
fn answer(page: Result<String, pages::Failed>) -> Response {
    match page {
        Ok(p) => Html(p).into_response(),
        Err(pages::Failed::Page(status, page)) => (status, Html(page)).into_response(),
        Err(pages::Failed::Service(e)) => unavailable(&e),
    }
}

/// The person a page is for (signed in, or the page is the sign-in page),
/// and the CSRF token its forms carry.
pub(crate) struct Reader {
    who: Principal,
    csrf: String,
}

impl axum::extract::FromRequestParts<Service> for Reader {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        svc: &Service,
    ) -> Result<Self, Response> {
        let MaybeAuthed(caller) = MaybeAuthed::from_request_parts(parts, svc)
            .await
            .map_err(IntoResponse::into_response)?;
        let who = signed_in(svc, &parts.headers, caller).await?;
        let csrf = cookie(&parts.headers, CSRF_COOKIE).unwrap_or_default();
        Ok(Reader { who, csrf })
    }
}

/// The signed-in person behind the session cookie (reads only): the one
/// the authentication layer found; without one, the sign-in page, or a 503
/// when the database could not answer (the session read again to tell).
async fn signed_in(
    svc: &Service,
    headers: &HeaderMap,
    caller: Option<Principal>,
) -> Result<Principal, Response> {
    if let Some(p) = caller {
        return Ok(p);
    }
    let token = cookie(headers, SESSION_COOKIE).ok_or_else(to_login)?;
    svc.authenticate_session(&token, None, false)
        .await
        .map_err(|e| match e {
            ServiceError::Auth(_) => to_login(),
            e => unavailable(&e),
        })
}

/// What a failure that is not the person's gets: a 503 page (the reason
/// is logged, not shown).
fn unavailable(e: &ServiceError) -> Response {
    tracing::info!(error = %e, "console page unavailable");
    (StatusCode::SERVICE_UNAVAILABLE, Html(pages::unavailable())).into_response()
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
        .map_err(|e| match e {
            ServiceError::Auth(_) => {
                (StatusCode::FORBIDDEN, Html(pages::refused())).into_response()
            }
            e => unavailable(&e),
        })
}

fn to_login() -> Response {
    Redirect::to("/ui/login").into_response()
}

async fn overview(State(svc): State<Service>, Reader { who, csrf }: Reader) -> Response {
    let status = svc.status().await;
    Html(pages::overview(&svc, &who, &status, &csrf).await).into_response()
}

async fn transfers(
    State(svc): State<Service>,
    Reader { who, csrf }: Reader,
    axum::extract::Query(filter): axum::extract::Query<pages::TransferFilter>,
) -> Response {
    answer(pages::transfers(&svc, &who, &csrf, &filter).await)
}

async fn transfer(
    State(svc): State<Service>,
    Reader { who, csrf }: Reader,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    // Outside the person's scope, as unknown: not found.
    let page = match id.parse() {
        Ok(id) => pages::transfer(&svc, &who, id, &csrf).await,
        Err(_) => Err(pages::not_found()),
    };
    answer(page)
}

async fn login_page(State(svc): State<Service>) -> Html<String> {
    Html(pages::login(None, svc.relying_party().is_some()))
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    totp: String,
    /// A passkey's assertion (`webauthn:…`) over a challenge from
    /// `/ui/login/challenge`, instead of the code.
    #[serde(default)]
    passkey: String,
    /// Its credential id, base64url.
    #[serde(default)]
    credential: String,
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
    Extension(challenges): Extension<passkeys::SharedChallenges>,
    Source(address): Source,
    Form(form): Form<LoginForm>,
) -> Response {
    let LoginForm {
        username,
        password,
        totp,
        passkey,
        credential,
    } = form;
    let totp = Some(totp.trim()).filter(|t| !t.is_empty());
    let passkey = passkeys::sign_in_answer(&challenges, &passkey, &credential);
    let factor = match &passkey {
        Some((assertion, credential_id, challenge)) => SecondFactor::Passkey {
            credential_id,
            assertion,
            challenge: *challenge,
        },
        None => SecondFactor::Totp(totp),
    };
    let passkeys = svc.relying_party().is_some();
    match svc.login_with(&username, password, factor, &address).await {
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
        Err(ServiceError::Auth(AuthError::Throttled { retry_after_s })) => {
            let mut resp = (
                StatusCode::TOO_MANY_REQUESTS,
                Html(pages::login(
                    Some("Too many attempts: try again a little later."),
                    passkeys,
                )),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Err(e @ (ServiceError::Storage(_) | ServiceError::Sealed)) => unavailable(&e),
        // One answer for every other failure, as the API gives.
        Err(_) => (
            StatusCode::UNAUTHORIZED,
            Html(pages::login(
                Some("Sign-in failed: check the name, the password and the code or passkey."),
                passkeys,
            )),
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
