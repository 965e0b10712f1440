//! Amounts and fee rates as a node writes them (decimal BTC, BTC per kvB)
//! in integer sat, exactly: no floating point.

/// Rounds a non-negative decimal text (`"0.00012345"`) times 10^`shift` up
/// to an integer, exactly (no floating point).
pub(crate) fn decimal_ceil(text: &str, shift: u32) -> Option<u64> {
    let t = text.trim();
    if t.contains(['e', 'E', '-', '+']) {
        return None;
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let shift = shift as usize;
    let mut digits = String::from(int);
    let (kept, rest) = if frac.len() > shift {
        frac.split_at(shift)
    } else {
        (frac, "")
    };
    digits.push_str(kept);
    for _ in kept.len()..shift {
        digits.push('0');
    }
    let mut v: u64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    if rest.bytes().any(|b| b != b'0') {
        v = v.checked_add(1)?;
    }
    Some(v)
}

/// A BTC amount (decimal text, at most 8 places) in sat, exactly.
pub(crate) fn btc_to_sat(text: &str) -> Option<u64> {
    let (_, frac) = text.trim().split_once('.').unwrap_or((text, ""));
    if frac.len() > 8 {
        return None;
    }
    decimal_ceil(text, 8)
}

/// BTC per kvB (Core's unit) to sat per vB, rounded up: ×10^8 / 1000 = ×10^5.
pub(crate) fn btc_per_kvb_to_sat_per_vb(text: &str) -> Option<u64> {
    decimal_ceil(text, 5).map(|v| v.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_units_are_exact_and_round_up() {
        assert_eq!(btc_per_kvb_to_sat_per_vb("0.00012345"), Some(13));
        assert_eq!(btc_per_kvb_to_sat_per_vb("0.0001"), Some(10));
        assert_eq!(btc_per_kvb_to_sat_per_vb("0.00001"), Some(1));
        assert_eq!(btc_per_kvb_to_sat_per_vb("0.000001"), Some(1));
        assert_eq!(btc_per_kvb_to_sat_per_vb("1e-5"), None);
        assert_eq!(btc_per_kvb_to_sat_per_vb("-0.1"), None);
        assert_eq!(decimal_ceil("3.2", 0), Some(4));
        assert_eq!(decimal_ceil("7", 0), Some(7));
        assert_eq!(decimal_ceil("", 0), None);
        assert_eq!(btc_to_sat("0.00015529"), Some(15_529));
        assert_eq!(btc_to_sat("21000000"), Some(2_100_000_000_000_000));
        assert_eq!(btc_to_sat("0.000000001"), None);
    }
}
