//! What a connection to a signer node starts with — a hello in this
//! build's signer protocol, then the server's epoch if it has one — and one
//! request answered on it.

use super::Stream;
use crate::net::{self, NetError};
use crate::wire::{Request, Response};

/// Says hello in this build's signer protocol: the node's protocol, or
/// why not (its refusal, or an answer an older node gave).
pub(super) async fn hello(stream: &mut Stream) -> Result<Result<u16, String>, NetError> {
    let said = Request::Hello {
        protocol: crate::wire::PROTOCOL,
    };
    Ok(match exchange(stream, &said).await {
        Ok(Response::Hello { protocol }) if protocol == crate::wire::PROTOCOL => Ok(protocol),
        Ok(Response::Hello { protocol }) => Err(format!("it answered protocol {protocol}")),
        Ok(Response::Refused { reason, .. }) => Err(reason),
        Ok(_) => Err("it answered out of protocol".into()),
        // A connection closed or cut mid-hello (a node restarting, or one
        // too old to read it): unreachable, not a version named.
        Err(e) => return Err(e),
    })
}

/// Announces `epoch` on a connection: `None` when the node took it, its
/// refusal otherwise (a node that learned a higher epoch).
pub(super) async fn announce(
    stream: &mut Stream,
    epoch: u64,
) -> Result<Option<Response>, NetError> {
    match exchange(stream, &Request::Epoch { epoch }).await? {
        Response::Epoch { .. } => Ok(None),
        r @ Response::Refused { .. } => Ok(Some(r)),
        _ => Err(NetError::Malformed(
            "the signer answered an epoch out of protocol".into(),
        )),
    }
}

pub(super) async fn exchange(stream: &mut Stream, req: &Request) -> Result<Response, NetError> {
    net::write_frame(stream, req).await?;
    net::read_frame::<_, Response>(stream)
        .await?
        .ok_or_else(|| NetError::Malformed("the signer closed the connection".into()))
}
