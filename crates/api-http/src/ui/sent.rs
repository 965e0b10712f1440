//! A transfer's transaction on its page: an Ethereum send's latest attempt
//! or a Bitcoin batch, decoded as the server holds it, with a link to a
//! public explorer where the chain has one.

use maud::{Markup, html};
use service::identity::perm;
use service::storage::TransferRow;

/// Where a public explorer shows a transaction of `network` (none for
/// development chains).
fn explorer(network: &str, hash: &str) -> Option<String> {
    let base = match network {
        "eip155:1" => "https://etherscan.io/tx/",
        "eip155:11155111" => "https://sepolia.etherscan.io/tx/",
        "eip155:17000" => "https://holesky.etherscan.io/tx/",
        "bitcoin:mainnet" => "https://mempool.space/tx/",
        "bitcoin:testnet" => "https://mempool.space/testnet/tx/",
        "bitcoin:signet" => "https://mempool.space/signet/tx/",
        _ => return None,
    };
    let hash = hash.trim_start_matches("0x");
    hash.bytes().all(|b| b.is_ascii_hexdigit()).then(|| {
        format!(
            "{base}{}{hash}",
            if network.starts_with("eip155") {
                "0x"
            } else {
                ""
            }
        )
    })
}

fn hash_shown(network: &str, hash: &str) -> Markup {
    html! {
        code { (hash) }
        @if let Some(url) = explorer(network, hash) {
            " " a href=(url) rel="noopener noreferrer" { "on an explorer" }
        }
    }
}

/// The transaction built for a transfer, decoded as the server holds it
/// (an Ethereum send's latest attempt, a Bitcoin batch), once there is
/// one.
pub(super) async fn sent(
    can: &service::identity::Can<'_, perm::ReadWallet>,
    t: &TransferRow,
) -> Result<Option<Markup>, service::ServiceError> {
    if let Some(id) = &t.eth_send_id {
        let (send, attempt, fee) = can.eth_send_detail(id).await?;
        return Ok(Some(html! {
            dl class="facts" {
                dt { "Network" } dd { (send.network) }
                dt { "From" } dd { code { (send.address) } }
                dt { "Nonce" } dd { (send.nonce) }
                dt { "State" } dd { (send.state) }
                @if let Some(a) = &attempt {
                    dt { "Calls" } dd { code { (a.to_address) } }
                    dt { "Value" } dd { (a.value) " wei" }
                    dt { "Call data" } dd { (a.data.len()) " bytes" @if !a.data.is_empty() { ": " code { (hex::encode(a.data.get(..4).unwrap_or(&a.data))) "…" } } }
                    dt { "Gas" } dd { "limit " (a.gas_limit) ", max fee " (a.max_fee_per_gas) " wei/gas, priority " (a.max_priority_fee_per_gas) " wei/gas" }
                    @if let Some(h) = &a.tx_hash { dt { "Hash" } dd { (hash_shown(&send.network, h)) } }
                }
                @if let Some(b) = send.block_number { dt { "Block" } dd { (b) } }
                @if let Some(f) = fee { dt { "Fee paid" } dd { (f) " wei" } }
            }
        }));
    }
    if let Some(id) = &t.btc_send_id {
        let (send, paid) = can.btc_send(id).await?;
        return Ok(Some(html! {
            dl class="facts" {
                dt { "Network" } dd { (send.network) }
                dt { "State" } dd { (send.state) }
                dt { "Fee" } dd { (send.fee_sat) " sat" }
                dt { "Pays" } dd { (paid.len()) " transfer(s) in one transaction" }
                @if let Some(h) = &send.txid { dt { "Txid" } dd { (hash_shown(&send.network, h)) } }
                @if let Some((height, _)) = &send.block { dt { "Block" } dd { (height) } }
            }
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explorers_by_chain_and_none_for_development_chains() {
        assert_eq!(
            explorer("eip155:1", "0xabcd").as_deref(),
            Some("https://etherscan.io/tx/0xabcd")
        );
        assert_eq!(
            explorer("bitcoin:mainnet", "ab12").as_deref(),
            Some("https://mempool.space/tx/ab12")
        );
        assert_eq!(explorer("eip155:31337", "0xabcd"), None);
        assert_eq!(explorer("bitcoin:regtest", "ab12"), None);
        assert_eq!(explorer("eip155:1", "0xab\"><script>"), None);
    }
}
