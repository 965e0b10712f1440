//! The request a change comes from. The HTTP layer runs each request in
//! [`with_request_id`]; every audit record committed in that task carries
//! the id in its details (`request_id`), as every webhook event it causes
//! does, so an operator can go from a client's request to what it did.
//! Work the server does by itself (the queue, the watchers) has none.

use std::future::Future;
use std::sync::Arc;

use audit::{Details, Entry};

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// Runs `f` as the work of request `id`.
pub async fn with_request_id<F: Future>(id: Arc<str>, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

/// The request this task serves, if it serves one.
pub fn request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// `entries` with the request's id in their details (unchanged outside a
/// request, or where the details already name one).
pub(crate) fn tagged(entries: &[Entry]) -> Vec<Entry> {
    let Some(id) = request_id() else {
        return entries.to_vec();
    };
    entries
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if let Ok(serde_json::Value::Object(mut d)) =
                serde_json::from_str::<serde_json::Value>(e.details.as_str())
                && !d.contains_key("request_id")
            {
                d.insert("request_id".into(), serde_json::Value::from(&*id));
                // Details at their size limit keep their size: the id is
                // left out rather than the change refused.
                if let Ok(tagged) = Details::new(&serde_json::Value::Object(d)) {
                    e.details = tagged;
                }
            }
            e
        })
        .collect()
}
