//! Amounts of money: integer base units of one asset, never floating point.
//!
//! Every arithmetic operation is checked and fails on overflow or on a mix of
//! assets. Decimal strings are parsed exactly; a JSON number is refused so
//! that no client ever sends a float that was rounded on its way here.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::asset::{Asset, Decimals};

/// An amount of one asset in its base units (satoshi, wei, token units).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Amount {
    asset: Asset,
    units: u128,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error(
        "amount {0:?} is not a plain decimal number (digits, optionally one '.' and more digits)"
    )]
    Malformed(String),
    #[error("amount {0:?} is negative")]
    Negative(String),
    #[error("amount {given:?} has more decimal places than the asset's {allowed}")]
    TooManyDecimals { given: String, allowed: u8 },
    #[error("amount {0:?} is too large")]
    Overflow(String),
    #[error("arithmetic overflow")]
    ArithmeticOverflow,
    #[error("arithmetic underflow: result would be negative")]
    Underflow,
    #[error("cannot combine amounts of different assets ({left} and {right})")]
    AssetMismatch { left: String, right: String },
}

impl Amount {
    pub fn from_units(asset: Asset, units: u128) -> Self {
        Amount { asset, units }
    }

    pub fn zero(asset: Asset) -> Self {
        Amount { asset, units: 0 }
    }

    /// Parses a decimal string in display units ("1.5" BTC is 150 000 000 sat).
    ///
    /// Accepted: `0`, `12`, `0.5`, `12.345`. Refused: signs, exponents,
    /// separators, whitespace, leading zeros (`01`), a bare or trailing `.`,
    /// more decimal places than the asset has (even if they are zeros), and
    /// anything that overflows `u128` base units.
    pub fn parse(s: &str, asset: &Asset) -> Result<Self, AmountError> {
        let units = parse_units(s, asset.decimals())?;
        Ok(Amount {
            asset: asset.clone(),
            units,
        })
    }

    pub fn asset(&self) -> &Asset {
        &self.asset
    }

    pub fn units(&self) -> u128 {
        self.units
    }

    pub fn is_zero(&self) -> bool {
        self.units == 0
    }

    pub fn checked_add(&self, other: &Amount) -> Result<Amount, AmountError> {
        self.same_asset(other)?;
        let units = self
            .units
            .checked_add(other.units)
            .ok_or(AmountError::ArithmeticOverflow)?;
        Ok(Amount {
            asset: self.asset.clone(),
            units,
        })
    }

    pub fn checked_sub(&self, other: &Amount) -> Result<Amount, AmountError> {
        self.same_asset(other)?;
        let units = self
            .units
            .checked_sub(other.units)
            .ok_or(AmountError::Underflow)?;
        Ok(Amount {
            asset: self.asset.clone(),
            units,
        })
    }

    pub fn checked_mul(&self, factor: u128) -> Result<Amount, AmountError> {
        let units = self
            .units
            .checked_mul(factor)
            .ok_or(AmountError::ArithmeticOverflow)?;
        Ok(Amount {
            asset: self.asset.clone(),
            units,
        })
    }

    /// Shortest exact decimal form: `1.5`, `0.00000001`, `0`.
    pub fn to_decimal_string(&self) -> String {
        format_units(self.units, self.asset.decimals(), false)
    }

    /// Every decimal place written out: `1.50000000` for 1.5 BTC.
    pub fn to_fixed_string(&self) -> String {
        format_units(self.units, self.asset.decimals(), true)
    }

    /// Same id, symbol and decimals: an asset configured two ways is two assets.
    fn same_asset(&self, other: &Amount) -> Result<(), AmountError> {
        if self.asset != other.asset {
            return Err(AmountError::AssetMismatch {
                left: self.asset.id().to_string(),
                right: other.asset.id().to_string(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.to_decimal_string(),
            self.asset.symbol().as_str()
        )
    }
}

/// Parses a display-unit decimal string into base units for `decimals`.
pub fn parse_units(s: &str, decimals: Decimals) -> Result<u128, AmountError> {
    if s.is_empty() {
        return Err(AmountError::Empty);
    }
    if s.starts_with('-') {
        return Err(AmountError::Negative(s.to_owned()));
    }
    let malformed = || AmountError::Malformed(s.to_owned());
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || (int.len() > 1 && int.starts_with('0')) {
        return Err(malformed());
    }
    let frac = match frac {
        Some(f) if !all_digits(f) => return Err(malformed()),
        Some(f) => f,
        None => "",
    };
    let places = usize::from(decimals.get());
    if frac.len() > places {
        return Err(AmountError::TooManyDecimals {
            given: s.to_owned(),
            allowed: decimals.get(),
        });
    }
    let overflow = || AmountError::Overflow(s.to_owned());
    let mut units: u128 = 0;
    let padding = places - frac.len();
    for b in int.bytes().chain(frac.bytes()) {
        units = units
            .checked_mul(10)
            .and_then(|u| u.checked_add(u128::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    for _ in 0..padding {
        units = units.checked_mul(10).ok_or_else(overflow)?;
    }
    Ok(units)
}

/// Formats base units as a display-unit decimal string.
pub fn format_units(units: u128, decimals: Decimals, fixed: bool) -> String {
    let places = usize::from(decimals.get());
    let digits = units.to_string();
    if places == 0 {
        return digits;
    }
    let padded = format!("{digits:0>width$}", width = places + 1);
    let (int, frac) = padded.split_at(padded.len() - places);
    let frac = if fixed {
        frac
    } else {
        frac.trim_end_matches('0')
    };
    if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    }
}

/// A decimal amount as it arrives in JSON: always a string.
///
/// JSON numbers are refused at deserialisation, whatever their value, because
/// a client library may already have rounded them through a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DecimalString(String);

impl DecimalString {
    pub fn new(s: impl Into<String>) -> Self {
        DecimalString(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn to_amount(&self, asset: &Asset) -> Result<Amount, AmountError> {
        Amount::parse(&self.0, asset)
    }
}

impl<'de> Deserialize<'de> for DecimalString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DecimalString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount as a decimal string, such as \"1.5\" (numbers are refused)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(DecimalString(v.to_owned()))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BitcoinNetwork;

    fn btc() -> Asset {
        Asset::bitcoin(BitcoinNetwork::Mainnet)
    }

    fn check(input: &str, asset: &Asset) -> String {
        match Amount::parse(input, asset) {
            Ok(a) => format!("{} = {} units", a.to_fixed_string(), a.units()),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn parses_exactly() {
        let eth = Asset::ether(1);
        let cases = [
            ("0", btc()),
            ("1", btc()),
            ("1.5", btc()),
            ("0.00000001", btc()),
            ("20999999.97690000", btc()),
            ("0.000000000000000001", eth.clone()),
            ("340282366920938463463.374607431768211455", eth.clone()),
        ];
        let out: Vec<String> = cases
            .iter()
            .map(|(s, a)| format!("{s} -> {}", check(s, a)))
            .collect();
        expect_test::expect![[r#"
            0 -> 0.00000000 = 0 units
            1 -> 1.00000000 = 100000000 units
            1.5 -> 1.50000000 = 150000000 units
            0.00000001 -> 0.00000001 = 1 units
            20999999.97690000 -> 20999999.97690000 = 2099999997690000 units
            0.000000000000000001 -> 0.000000000000000001 = 1 units
            340282366920938463463.374607431768211455 -> 340282366920938463463.374607431768211455 = 340282366920938463463374607431768211455 units"#]]
        .assert_eq(&out.join("\n"));
    }

    #[test]
    fn refuses_bad_input() {
        let eth = Asset::ether(1);
        let cases = [
            "",
            "-1",
            "+1",
            "1e8",
            "1.",
            ".5",
            "01",
            "00.1",
            "1,5",
            " 1",
            "1 ",
            "0x10",
            "NaN",
            "inf",
            "1.000000001",
            "1.500000000",
            "\u{0661}",
            "340282366920938463463.374607431768211456",
            "99999999999999999999999999999999999999999",
        ];
        let out: Vec<String> = cases
            .iter()
            .map(|s| {
                let a = if s.starts_with("3402") || s.starts_with("9999") {
                    eth.clone()
                } else {
                    btc()
                };
                format!("{s:?} -> {}", check(s, &a))
            })
            .collect();
        expect_test::expect![[r#"
            "" -> error: amount is empty
            "-1" -> error: amount "-1" is negative
            "+1" -> error: amount "+1" is not a plain decimal number (digits, optionally one '.' and more digits)
            "1e8" -> error: amount "1e8" is not a plain decimal number (digits, optionally one '.' and more digits)
            "1." -> error: amount "1." is not a plain decimal number (digits, optionally one '.' and more digits)
            ".5" -> error: amount ".5" is not a plain decimal number (digits, optionally one '.' and more digits)
            "01" -> error: amount "01" is not a plain decimal number (digits, optionally one '.' and more digits)
            "00.1" -> error: amount "00.1" is not a plain decimal number (digits, optionally one '.' and more digits)
            "1,5" -> error: amount "1,5" is not a plain decimal number (digits, optionally one '.' and more digits)
            " 1" -> error: amount " 1" is not a plain decimal number (digits, optionally one '.' and more digits)
            "1 " -> error: amount "1 " is not a plain decimal number (digits, optionally one '.' and more digits)
            "0x10" -> error: amount "0x10" is not a plain decimal number (digits, optionally one '.' and more digits)
            "NaN" -> error: amount "NaN" is not a plain decimal number (digits, optionally one '.' and more digits)
            "inf" -> error: amount "inf" is not a plain decimal number (digits, optionally one '.' and more digits)
            "1.000000001" -> error: amount "1.000000001" has more decimal places than the asset's 8
            "1.500000000" -> error: amount "1.500000000" has more decimal places than the asset's 8
            "١" -> error: amount "١" is not a plain decimal number (digits, optionally one '.' and more digits)
            "340282366920938463463.374607431768211456" -> error: amount "340282366920938463463.374607431768211456" is too large
            "99999999999999999999999999999999999999999" -> error: amount "99999999999999999999999999999999999999999" is too large"#]]
        .assert_eq(&out.join("\n"));
    }

    #[test]
    fn formats_shortest() {
        let a = Amount::from_units(btc(), 150_000_000);
        assert_eq!(a.to_decimal_string(), "1.5");
        assert_eq!(a.to_string(), "1.5 BTC");
        assert_eq!(
            Amount::from_units(btc(), 1).to_decimal_string(),
            "0.00000001"
        );
        assert_eq!(Amount::zero(btc()).to_decimal_string(), "0");
        assert_eq!(
            Amount::from_units(btc(), 100_000_000).to_decimal_string(),
            "1"
        );
        let d0 = Decimals::new(0).unwrap();
        assert_eq!(format_units(42, d0, true), "42");
    }

    #[test]
    fn format_then_parse_is_identity() {
        let eth = Asset::ether(1);
        for units in [
            0u128,
            1,
            9,
            10,
            999_999_999_999_999_999,
            10u128.pow(18),
            u128::MAX,
        ] {
            let a = Amount::from_units(eth.clone(), units);
            assert_eq!(Amount::parse(&a.to_decimal_string(), &eth).unwrap(), a);
            assert_eq!(Amount::parse(&a.to_fixed_string(), &eth).unwrap(), a);
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        let a = Amount::from_units(btc(), u128::MAX);
        let one = Amount::from_units(btc(), 1);
        assert_eq!(a.checked_add(&one), Err(AmountError::ArithmeticOverflow));
        assert_eq!(one.checked_sub(&a), Err(AmountError::Underflow));
        assert_eq!(a.checked_mul(2), Err(AmountError::ArithmeticOverflow));
        assert_eq!(one.checked_add(&one).unwrap().units(), 2);
        let eth = Amount::from_units(Asset::ether(1), 1);
        assert!(matches!(
            one.checked_add(&eth),
            Err(AmountError::AssetMismatch { .. })
        ));
        // The same token id configured with other decimals does not mix either.
        let usdc: crate::AssetId = "eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
            .parse()
            .unwrap();
        let six = Asset::new(
            usdc.clone(),
            crate::Symbol::new("USDC").unwrap(),
            Decimals::new(6).unwrap(),
        )
        .unwrap();
        let eighteen = Asset::new(
            usdc,
            crate::Symbol::new("USDC").unwrap(),
            Decimals::new(18).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            Amount::from_units(six, 1).checked_add(&Amount::from_units(eighteen, 1)),
            Err(AmountError::AssetMismatch { .. })
        ));
    }

    #[test]
    fn json_numbers_are_refused() {
        #[derive(Debug, Deserialize)]
        struct Req {
            #[allow(dead_code)]
            amount: DecimalString,
        }
        assert!(serde_json::from_str::<Req>(r#"{"amount":"1.5"}"#).is_ok());
        for bad in [
            r#"{"amount":1.5}"#,
            r#"{"amount":1}"#,
            r#"{"amount":1e3}"#,
            r#"{"amount":null}"#,
        ] {
            let e = serde_json::from_str::<Req>(bad).unwrap_err().to_string();
            assert!(e.contains("decimal string"), "{bad}: {e}");
        }
    }
}
