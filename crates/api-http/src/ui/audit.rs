//! The audit log in the console (auditors, security officers, admins): the
//! latest records, searchable by action, actor or subject, each checked on
//! the page (its hash recomputed, its link to the record before it), and
//! how to verify the whole chain against the signed checkpoints.

use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use service::Service;
use service::identity::{Principal, perm};

use super::pages::{self, Failed};
use super::{Reader, answer};

/// Records on a page.
const PAGE: u32 = 200;

#[derive(Debug, Default, Deserialize)]
pub(super) struct Search {
    /// Words every shown record has in its action, actor or subject.
    #[serde(default)]
    q: String,
    /// Records up to this sequence number (the newest when absent).
    #[serde(default)]
    until: Option<u64>,
}

pub(super) async fn show(
    State(svc): State<Service>,
    Reader { who, csrf }: Reader,
    Query(search): Query<Search>,
) -> Response {
    answer(page(&svc, &who, &csrf, &search).await)
}

async fn page(
    svc: &Service,
    who: &Principal,
    csrf: &str,
    search: &Search,
) -> Result<String, Failed> {
    let can = svc
        .authorize::<perm::ReadAudit>(who, None)
        .map_err(|e| pages::not_allowed(who, csrf, "Audit log", &e))?;
    let head = svc
        .store()
        .audit_head()
        .await
        .map_err(service::ServiceError::from)?
        .seq;
    let until = search.until.unwrap_or(head).min(head);
    let after = until.saturating_sub(u64::from(PAGE));
    // Records after..=until, whatever `until` (a short first page too).
    let count = u32::try_from(until - after).unwrap_or(PAGE);
    let records = if count == 0 {
        Vec::new()
    } else {
        can.audit_page(after, count).await?
    };
    // Each record as stored: its hash is its bytes', and it names the one
    // before it (the first shown is checked against the record before the
    // page when there is one).
    let before = if after > 0 {
        can.audit_page(after - 1, 1).await?.into_iter().next()
    } else {
        None
    };
    let mut broken = Vec::new();
    let mut prev = before.as_ref().map(|r| r.hash);
    for r in &records {
        if r.computed_hash() != r.hash || prev.is_some_and(|p| p != r.prev_hash) {
            broken.push(r.seq);
        }
        prev = Some(r.hash);
    }
    let words: Vec<String> = search.q.split_whitespace().map(str::to_lowercase).collect();
    let shown: Vec<&audit::Record> = records
        .iter()
        .rev()
        .filter(|r| {
            let text = format!("{} {} {}", r.action, r.actor, r.subject).to_lowercase();
            words.iter().all(|w| text.contains(w.as_str()))
        })
        .collect();
    let body = html! {
        form method="get" action="/ui/audit" class="filters" {
            label for="q" { "Search these records (action, actor, subject)" }
            input id="q" name="q" value=(search.q);
            button type="submit" { "Search" }
        }
        @if broken.is_empty() {
            p data-fact="chain" {
                "Records " (after + 1) " to " (until) " of " (head) ": each hash recomputed and linked to the one before "
                "(a check of what this page read: it cannot tell a rewritten database). "
                "The whole chain against the signed checkpoints: " code { "strongroom audit verify --config <file>" } "."
            }
        } @else {
            p role="alert" class="error" data-fact="chain" {
                "The chain does not hold at record " (broken.iter().map(u64::to_string).collect::<Vec<_>>().join(", "))
                ": tell a security officer; run " code { "strongroom audit verify" } "."
            }
        }
        table class="audit" {
            thead { tr { th { "#" } th { "When" } th { "Actor" } th { "Action" } th { "Subject" } th { "Details" } } }
            tbody {
                @for r in &shown {
                    tr data-seq=(r.seq) {
                        td class="num" { (r.seq) }
                        td { (pages::when(r.time)) }
                        td { (r.actor) }
                        td { (r.action) }
                        td { code { (r.subject) } }
                        td { code class="details" { (r.details) } }
                    }
                }
            }
        }
        @if after > 0 {
            p { a href=(format!("/ui/audit?until={after}&q={}", query_text(&search.q))) { "Older records" } }
        }
    };
    Ok(pages::layout("Audit log", Some(who), csrf, body))
}

/// `text` as a query string value (RFC 3986 unreserved characters kept,
/// everything else percent-encoded).
fn query_text(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
