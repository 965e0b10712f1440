//! Cursor pagination, one convention on every list: `?limit=` (1 to the
//! list's maximum) and `?after=` — the id of the last item of the previous
//! page. Each list documents its order (creation order unless it says
//! newest first), and an item's id places it in that order, so a page
//! never repeats or skips an item that existed when the first was read.

use serde::Deserialize;

use crate::error::{ApiError, page_limit};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// The id of the last item of the previous page.
    #[param(min_length = 1)]
    after: Option<String>,
    /// At most this many (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

impl PageQuery {
    pub(crate) fn after(&self) -> Option<&str> {
        self.after.as_deref()
    }

    pub(crate) fn limit(&self) -> Result<u32, ApiError> {
        page_limit(self.limit, 100, 500)
    }
}

/// One page of a whole list held in memory (a list a few hundred long at
/// most: users, keys, subscriptions), in ascending order of `key`.
pub(crate) fn page<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> &str,
    q: &PageQuery,
) -> Result<Vec<T>, ApiError> {
    let limit = usize::try_from(q.limit()?).unwrap_or(usize::MAX);
    items.sort_by(|a, b| key(a).cmp(key(b)));
    let start = q
        .after()
        .map_or(0, |after| items.partition_point(|x| key(x) <= after));
    Ok(items.into_iter().skip(start).take(limit).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(after: Option<&str>, limit: Option<u32>) -> PageQuery {
        PageQuery {
            after: after.map(str::to_owned),
            limit,
        }
    }

    #[test]
    fn pages_follow_each_other_without_gaps() {
        let items: Vec<String> = ["c", "a", "e", "b", "d"].map(str::to_owned).to_vec();
        fn id(s: &String) -> &str {
            s
        }
        assert_eq!(
            page(items.clone(), id, &q(None, Some(2))).unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            page(items.clone(), id, &q(Some("b"), Some(2))).unwrap(),
            ["c", "d"]
        );
        assert_eq!(
            page(items.clone(), id, &q(Some("d"), Some(2))).unwrap(),
            ["e"]
        );
        assert!(
            page(items.clone(), id, &q(Some("e"), None))
                .unwrap()
                .is_empty()
        );
        // A cursor whose item went away still places the page.
        assert_eq!(
            page(items.clone(), id, &q(Some("bb"), Some(1))).unwrap(),
            ["c"]
        );
        assert!(page(items, id, &q(None, Some(0))).is_err());
    }
}
