//! JSON-RPC values as the node writes them: quantities (`0x`-hex without
//! leading zeros beyond what fits), data and hashes, read strictly.

use serde_json::Value;

use crate::error::ClientError;

pub(crate) fn malformed(method: &str, detail: &str) -> ClientError {
    ClientError::Malformed {
        method: method.to_owned(),
        detail: detail.to_owned(),
    }
}

pub(crate) fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

pub(crate) fn quantity_u128(method: &str, v: &Value) -> Result<u128, ClientError> {
    let s = v
        .as_str()
        .ok_or_else(|| malformed(method, "a quantity is not a string"))?;
    let digits = s
        .strip_prefix("0x")
        .filter(|d| !d.is_empty() && d.len() <= 32 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| malformed(method, &format!("bad quantity `{s}`")))?;
    u128::from_str_radix(digits, 16).map_err(|_| malformed(method, &format!("bad quantity `{s}`")))
}

pub(crate) fn quantity_u64(method: &str, v: &Value) -> Result<u64, ClientError> {
    u64::try_from(quantity_u128(method, v)?)
        .map_err(|_| malformed(method, "a quantity does not fit 64 bits"))
}

pub(crate) fn data_bytes(method: &str, v: &Value) -> Result<Vec<u8>, ClientError> {
    let s = v
        .as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .ok_or_else(|| malformed(method, "data is not 0x-hex"))?;
    hex::decode(s).map_err(|_| malformed(method, "data is not 0x-hex"))
}

pub(crate) fn hash32(method: &str, v: &Value) -> Result<[u8; 32], ClientError> {
    data_bytes(method, v)?
        .try_into()
        .map_err(|_| malformed(method, "a hash is not 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_are_strict() {
        assert_eq!(quantity_u128("m", &json!("0x0")).unwrap(), 0);
        assert_eq!(quantity_u128("m", &json!("0xff")).unwrap(), 255);
        for bad in [
            json!("ff"),
            json!("0x"),
            json!(255),
            json!("0x-1"),
            json!("0x+1"),
            json!("0xg"),
        ] {
            assert!(quantity_u128("m", &bad).is_err(), "{bad}");
        }
        assert!(quantity_u128("m", &json!(format!("0x1{}", "0".repeat(32)))).is_err());
        assert!(quantity_u64("m", &json!("0x10000000000000000")).is_err());
    }
}
