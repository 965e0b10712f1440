//! Wallets in the console: the person's wallets; one wallet's accounts
//! (the address deposits go to, with a QR code drawn by the server), its
//! balances per asset (formatted from base units by the server) and its
//! recent deposits.

use axum::extract::{Path, State};
use axum::response::Response;
use domain::{Permission, WalletId, permits};
use maud::{Markup, html};
use service::Service;
use service::identity::{Principal, perm};

use super::pages::{self, Failed};
use super::{Reader, answer};

/// Deposits shown on a wallet's page.
const DEPOSITS: u32 = 20;

/// A QR code of `text` as an SVG image (a `data:` URI the CSP allows).
fn qr(text: &str) -> Option<String> {
    use base64::Engine as _;
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(176, 176)
        .quiet_zone(true)
        .build();
    Some(format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    ))
}

fn amount(v: Option<u128>, decimals: u8) -> String {
    match v {
        Some(v) => crate::amounts::decimal(v, Some(decimals)).unwrap_or_else(|| v.to_string()),
        None => "—".into(),
    }
}

/// A read handle on `wallet` (or on every wallet, `None`), as a page error
/// when the person's roles do not reach it.
fn reading<'a>(
    svc: &'a Service,
    who: &'a Principal,
    wallet: Option<WalletId>,
) -> Result<service::identity::Can<'a, perm::ReadWallet>, Failed> {
    svc.authorize::<perm::ReadWallet>(who, wallet)
        .map_err(|_| pages::not_found())
}

pub(super) async fn list(State(svc): State<Service>, Reader { who, csrf }: Reader) -> Response {
    answer(list_page(&svc, &who, &csrf).await)
}

async fn list_page(svc: &Service, who: &Principal, csrf: &str) -> Result<String, Failed> {
    let can = pages::wallet_reader(svc, who).ok_or_else(pages::not_found)?;
    let wallets = can.wallets(None, 500).await?;
    let body = html! {
        @if wallets.is_empty() { p { "No wallets." } }
        ul class="wallets" {
            @for w in &wallets {
                li { a href=(format!("/ui/wallets/{}", w.id)) { (w.name) } " " code { (w.id.to_string()) } }
            }
        }
    };
    Ok(pages::layout("Wallets", Some(who), csrf, body))
}

pub(super) async fn show(
    State(svc): State<Service>,
    Reader { who, csrf }: Reader,
    Path(id): Path<String>,
) -> Response {
    let page = match id.parse::<WalletId>() {
        Ok(id) => wallet_page(&svc, &who, &csrf, id).await,
        Err(_) => Err(pages::not_found()),
    };
    answer(page)
}

async fn wallet_page(
    svc: &Service,
    who: &Principal,
    csrf: &str,
    id: WalletId,
) -> Result<String, Failed> {
    // Outside the person's wallets, as unknown.
    if !permits(who.grants(), Permission::ReadWallet, Some(id)) {
        return Err(pages::not_found());
    }
    let can = reading(svc, who, Some(id))?;
    let wallet = match svc.store().wallet(id).await {
        Ok(w) => w,
        Err(service::storage::StorageError::NotFound { .. }) => return Err(pages::not_found()),
        Err(e) => return Err(Failed::Service(e.into())),
    };
    let accounts = svc.wallet_accounts(id).await?;
    let balances = can.balances(id).await?;
    let deposits = can.deposits(id, DEPOSITS).await?;
    let account_rows: Vec<(service::wallets::WalletAccount, Option<String>)> = accounts
        .into_iter()
        .map(|a| {
            let code = qr(&a.address);
            (a, code)
        })
        .collect();
    let body: Markup = html! {
        p { "Wallet " code { (id.to_string()) } ". " a href=(format!("/ui/transfers?wallet={id}")) { "Its transfers" } }
        section aria-labelledby="accounts" {
            h2 id="accounts" { "Where deposits go" }
            @if account_rows.is_empty() { p { "No accounts yet." } }
            div class="accounts" {
                @for (a, code) in &account_rows {
                    figure class="card account" data-address=(a.address) {
                        @if let Some(src) = code {
                            img src=(src) width="176" height="176" alt=(format!("QR code of {}", a.address));
                        }
                        figcaption {
                            (a.network.to_string()) br;
                            code class="key" { (a.address) }
                        }
                    }
                }
            }
        }
        section aria-labelledby="balances" {
            h2 id="balances" { "Balances" }
            table {
                thead { tr {
                    th { "Asset" } th class="num" { "On chain" } th class="num" { "Credited" }
                    th class="num" { "Incoming" } th class="num" { "Reserved" }
                    th class="num" { "Awaiting approval" } th class="num" { "Available" }
                } }
                tbody {
                    @for b in &balances {
                        @let d = b.asset.decimals().get();
                        tr data-asset=(b.asset.id().to_string()) {
                            td { (b.asset.symbol().as_str()) " " code { (b.asset.id().to_string()) } }
                            td class="num" { (amount(b.on_chain, d)) }
                            td class="num" { (amount(b.credited, d)) }
                            td class="num" { (amount(Some(b.incoming), d)) }
                            td class="num" { (amount(Some(b.reserved), d)) }
                            td class="num" { (amount(Some(b.awaiting), d)) }
                            td class="num" data-fact="available" { (amount(b.available, d)) }
                        }
                    }
                }
            }
        }
        section aria-labelledby="deposits" {
            h2 id="deposits" { "Recent deposits" }
            @if deposits.is_empty() { p { "None seen." } }
            table {
                thead { tr { th { "Seen" } th { "Asset" } th class="num" { "Amount" } th { "From" } th { "State" } } }
                tbody {
                    @for d in &deposits {
                        tr {
                            td { (pages::when(d.seen_at)) }
                            td { (d.asset) }
                            td class="num" { (crate::amounts::decimal(d.amount, svc.asset_decimals(&d.asset)).unwrap_or_else(|| d.amount.to_string())) }
                            td { code { (d.from) } }
                            td { (d.state) }
                        }
                    }
                }
            }
        }
    };
    Ok(pages::layout(
        &format!("Wallet {}", wallet.name),
        Some(who),
        csrf,
        body,
    ))
}
