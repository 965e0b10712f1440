//! Share refresh on a node (FROST keys): the node takes part in a refresh
//! ceremony among the key's members, keeps the new share staged beside the
//! current one, and swaps it in only when the coordinator — having seen
//! every member report the same new public package, and recorded it —
//! says so. The old share is then gone from this node: with the others'
//! new shares it no longer combines, so a member left out is removed.

use std::fs::File;
use std::path::PathBuf;

use crate::dkg_impl::{Dkg, KeyShare};
use crate::envelope::{Abort, Envelope, PartyIndex, SessionId};
use crate::net::{self, Fingerprint};
use crate::wire::{Response, check_key_id};
use crate::{Ed25519, Suite, Taproot};

use super::{AnyDkg, Node, Open, lock, party, purge};

impl Node {
    fn staged_path(&self, key_id: &str, session: SessionId) -> PathBuf {
        self.dir
            .join("shares")
            .join(format!("{key_id}.refresh-{}", String::from(session)))
    }

    /// The session of the last refresh committed for `key_id`.
    fn refreshed_path(&self, key_id: &str) -> PathBuf {
        self.dir.join("shares").join(format!("{key_id}.refreshed"))
    }

    /// Round one of a refresh of `key_id`'s share among `parties`.
    pub(super) fn refresh_start(
        &self,
        from: Fingerprint,
        suite: String,
        key_id: String,
        session: SessionId,
        parties: Vec<u16>,
    ) -> Result<Response, Abort> {
        check_key_id(&key_id)?;
        let members = parties
            .iter()
            .map(|i| party(*i))
            .collect::<Result<Vec<PartyIndex>, Abort>>()?;
        let mut dkgs = lock(&self.dkgs);
        purge(&mut dkgs);
        if dkgs.len() >= super::MAX_OPEN {
            return Err(Abort::Parameters("too many ceremonies open".into()));
        }
        if dkgs.values().any(|o| o.key_id == key_id) {
            return Err(Abort::Parameters(format!(
                "key {key_id} is in a ceremony already"
            )));
        }
        self.once(b"refresh-session", &session)?;
        let (wallet, dkg, msg) = match suite.as_str() {
            s if s == Taproot::NAME => {
                self.refresh_round0::<Taproot>(&key_id, session, &members)?
            }
            s if s == Ed25519::NAME => {
                self.refresh_round0::<Ed25519>(&key_id, session, &members)?
            }
            s => return Err(Abort::Parameters(format!("unknown suite {s:?}"))),
        };
        let relayed = self.keys.seal(&msg, None)?;
        self.audit(
            "mpc.refresh.started",
            &format!("mpc-key:{key_id}"),
            serde_json::json!({ "suite": suite, "members": parties, "session": String::from(session),
                "server": from.to_string() }),
        )?;
        dkgs.insert(session, Open::new(key_id, wallet, dkg));
        Ok(Response::Messages {
            messages: vec![relayed],
        })
    }

    fn refresh_round0<C: Suite + super::Erase>(
        &self,
        key_id: &str,
        session: SessionId,
        members: &[PartyIndex],
    ) -> Result<(String, AnyDkg, Envelope), Abort> {
        let (share, wallet) = self.load::<C>(key_id)?;
        let context = format!("{key_id}\n{wallet}");
        let (d, m) = Dkg::<C>::refresh(
            session,
            share,
            members,
            context.as_bytes(),
            &mut crate::os_rng(),
        )?;
        Ok((wallet, C::dkg_in(d), m))
    }

    /// The end of a ceremony: a new key is kept; a refreshed share is
    /// staged until the coordinator commits it.
    pub(super) fn finish<C: Suite>(
        &self,
        key_id: &str,
        wallet: &str,
        session: SessionId,
        dkg: Dkg<C>,
        envelopes: &[Envelope],
    ) -> Result<Response, Abort> {
        let refresh = dkg.is_refresh();
        let share = dkg.round2(envelopes)?;
        if !refresh {
            return self.keep(key_id, wallet, &share);
        }
        let plain = share.to_secret_bytes()?;
        let sealed_share = self.seal_share(key_id, wallet, &plain)?;
        let mut bytes = format!("{wallet}\n").into_bytes();
        bytes.extend_from_slice(&sealed_share);
        net::write_private(&self.staged_path(key_id, session), &bytes)
            .map_err(|e| Abort::Internal(format!("staging the refreshed share: {e}")))?;
        self.sync_shares()?;
        answer(key_id, &share)
    }

    /// Makes the refresh `session` staged for `key_id` its share; answers
    /// with the key's public parts. Done again, it answers the same.
    pub(super) fn refresh_commit(
        &self,
        suite: &str,
        key_id: &str,
        session: SessionId,
    ) -> Result<Response, Abort> {
        check_key_id(key_id)?;
        let staged = self.staged_path(key_id, session);
        let marker = self.refreshed_path(key_id);
        let id = String::from(session);
        if staged.exists() {
            // The staged share must open before it replaces the one that
            // works.
            self.open_file(key_id, &staged)?;
            // The session first: a crash between the two leaves a staged
            // share and the marker, and the commit is done again.
            let tmp = marker.with_extension("refreshed.tmp");
            let _ = std::fs::remove_file(&tmp);
            net::write_private(&tmp, id.as_bytes())
                .and_then(|()| std::fs::rename(&tmp, &marker).map_err(Into::into))
                .map_err(|e| Abort::Internal(format!("recording the refresh: {e}")))?;
            self.sync_shares()?;
            std::fs::rename(&staged, self.share_path(key_id))
                .map_err(|e| Abort::Internal(format!("swapping the share in: {e}")))?;
            self.sync_shares()?;
            self.forget_staged(key_id);
            self.audit(
                "mpc.key.refreshed",
                &format!("mpc-key:{key_id}"),
                serde_json::json!({ "suite": suite, "session": id }),
            )?;
        } else if std::fs::read_to_string(&marker).ok().as_deref() != Some(id.as_str()) {
            return Err(Abort::Parameters(format!(
                "no refresh {id} of key {key_id} is staged here"
            )));
        }
        match suite {
            s if s == Taproot::NAME => answer(key_id, &self.load::<Taproot>(key_id)?.0),
            s if s == Ed25519::NAME => answer(key_id, &self.load::<Ed25519>(key_id)?.0),
            s => Err(Abort::Parameters(format!("unknown suite {s:?}"))),
        }
    }

    /// Removes the key's staged shares of other (abandoned) refreshes.
    fn forget_staged(&self, key_id: &str) {
        let prefix = format!("{key_id}.refresh-");
        if let Ok(entries) = std::fs::read_dir(self.dir.join("shares")) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    fn sync_shares(&self) -> Result<(), Abort> {
        File::open(self.dir.join("shares"))
            .and_then(|d| d.sync_all())
            .map_err(|e| Abort::Internal(e.to_string()))
    }
}

/// A key's public parts, as every member must report them alike.
fn answer<C: Suite>(key_id: &str, share: &KeyShare<C>) -> Result<Response, Abort> {
    Ok(Response::Key {
        key_id: key_id.to_owned(),
        group_key: hex::encode(share.group_key()?),
        public: hex::encode(share.public().to_bytes()?),
    })
}
