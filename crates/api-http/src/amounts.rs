//! Amounts in responses, one convention everywhere (docs/FORMATS.md,
//! "Amounts"): an amount field holds the base-unit integer (wei, satoshi,
//! a token's smallest unit) as a string of digits, since values exceed
//! 2^53; beside it `<field>_decimal` holds the same amount in the asset's
//! units (`"0.5"`), and the object's `decimals` says how many places
//! separate the two. A `_decimal` is absent only when the asset's decimals
//! are unknown (a token no longer configured).

use domain::Decimals;
use domain::amount::format_units;

/// `units` in the asset's units, shortest exact form (`1.5`, `0`).
pub(crate) fn decimal(units: u128, decimals: Option<u8>) -> Option<String> {
    let d = Decimals::new(decimals?).ok()?;
    Some(format_units(units, d, false))
}

/// A signed base-unit integer as text (a ledger delta, `-500`), in the
/// asset's units (`-0.0000005`).
pub(crate) fn signed_decimal(text: &str, decimals: Option<u8>) -> Option<String> {
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let units: u128 = digits.parse().ok()?;
    decimal(units, decimals).map(|d| format!("{sign}{d}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_units() {
        assert_eq!(
            decimal(500_000_000_000_000_000, Some(18)).as_deref(),
            Some("0.5")
        );
        assert_eq!(decimal(0, Some(8)).as_deref(), Some("0"));
        assert_eq!(decimal(1, Some(8)).as_deref(), Some("0.00000001"));
        assert_eq!(
            decimal(u128::MAX, Some(18)).as_deref(),
            Some("340282366920938463463.374607431768211455")
        );
        assert_eq!(decimal(5, None), None);
        assert_eq!(
            signed_decimal("-500", Some(9)).as_deref(),
            Some("-0.0000005")
        );
        assert_eq!(signed_decimal("1200", Some(2)).as_deref(), Some("12"));
        assert_eq!(signed_decimal("x", Some(2)), None);
    }
}
