//! Verification of a stored chain against its signed checkpoints.

use std::collections::{BTreeMap, BTreeSet};

use crate::checkpoint::{AuditPublicKey, Checkpoint, CheckpointError};
use crate::record::{Hash, Head, RECORD_VERSION, Record};

/// The first thing found wrong with a log. Each variant names the record at
/// which the log stops being trustworthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Break {
    #[error(
        "record {expected} is missing (the next stored record is {found}): deleted or reordered"
    )]
    Missing { expected: u64, found: u64 },
    #[error("record {seq} does not match its hash: edited or moved")]
    Edited { seq: u64 },
    #[error("record {seq} does not link to record {prev}: records deleted, inserted or reordered")]
    Relinked { seq: u64, prev: u64 },
    #[error("record {seq} has unsupported version {version}")]
    Version { seq: u64, version: u16 },
    #[error("record {seq} differs from the signed checkpoint of that record: history rewritten")]
    CheckpointMismatch { seq: u64 },
    #[error(
        "the log ends at record {last} but a signed checkpoint covers record {checkpoint}: records after {last} were deleted"
    )]
    Truncated { last: u64, checkpoint: u64 },
    #[error(
        "the database head (record {head}) does not match the end of the log (record {last}): records were deleted or the head was edited"
    )]
    HeadMismatch { last: u64, head: u64 },
    #[error("checkpoint {line} is not valid: {reason}")]
    BadCheckpoint {
        line: usize,
        reason: CheckpointError,
    },
    #[error("checkpoint {line} disagrees with an earlier checkpoint for record {seq}")]
    ConflictingCheckpoints { line: usize, seq: u64 },
}

impl Break {
    /// The first record that cannot be trusted, when the break is in the log.
    pub fn first_broken_record(&self) -> Option<u64> {
        match *self {
            Break::Missing { expected, .. } => Some(expected),
            Break::Edited { seq }
            | Break::Relinked { seq, .. }
            | Break::Version { seq, .. }
            | Break::CheckpointMismatch { seq } => Some(seq),
            Break::Truncated { last, .. } | Break::HeadMismatch { last, .. } => Some(last + 1),
            Break::BadCheckpoint { .. } | Break::ConflictingCheckpoints { .. } => None,
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub records: u64,
    pub head: Head,
    pub checkpoints: usize,
    pub last_checkpoint: Option<u64>,
    /// Checkpoints of a lost copy of the log that a restore's epoch record
    /// names (and that therefore do not describe this one).
    pub superseded: usize,
}

/// Checks records one at a time, in sequence order, so that a log of any
/// length is verified in constant memory (plus the checkpoints).
#[derive(Debug)]
pub struct Verifier {
    prev: Head,
    /// Each checkpointed record's signed hashes, with the line of each and
    /// whether it comes from a lost copy of the log (only such a checkpoint
    /// may disagree with the log, and only where a restore's epoch record
    /// names it).
    checkpoints: BTreeMap<u64, Vec<(usize, Hash, bool)>>,
    checkpoint_count: usize,
    /// Checkpoints an epoch record (a restore) names as superseded: signed
    /// on the lost copy of the log, past the backup it was restored from.
    superseded: BTreeSet<(u64, Hash)>,
}

/// The action of the first record of a restored log's new epoch
/// ([`Verifier`] reads it: its `superseded_checkpoints` may disagree with
/// the log from that record on).
pub const EPOCH_ACTION: &str = "restore.epoch";

/// A checkpoint a restore's epoch record names, in its details'
/// `superseded_checkpoints` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Superseded {
    pub seq: u64,
    pub hash: Hash,
}

#[derive(serde::Deserialize)]
struct EpochDetails {
    #[serde(default)]
    superseded_checkpoints: Vec<Superseded>,
}

impl Verifier {
    /// Starts a verification with checkpoints from the file, each checked
    /// against the trusted audit key. `line` numbers in errors start at 1.
    pub fn new(checkpoints: &[Checkpoint], key: &AuditPublicKey) -> Result<Self, Break> {
        Verifier::with_lost(checkpoints, &[], key)
    }

    /// [`Verifier::new`], with the checkpoints a lost copy of the log was
    /// signed with past the backup a restore came from (`lost`, kept apart
    /// by the restore; their lines follow `checkpoints`'). Only these may
    /// disagree with the log, and only where an epoch record names them: a
    /// record written into the database alone cannot excuse a checkpoint of
    /// this log.
    pub fn with_lost(
        checkpoints: &[Checkpoint],
        lost: &[Checkpoint],
        key: &AuditPublicKey,
    ) -> Result<Self, Break> {
        let mut map: BTreeMap<u64, Vec<(usize, Hash, bool)>> = BTreeMap::new();
        let all = checkpoints
            .iter()
            .map(|c| (c, false))
            .chain(lost.iter().map(|c| (c, true)));
        for (i, (cp, from_lost)) in all.enumerate() {
            let line = i + 1;
            let head = cp
                .verify(key)
                .map_err(|reason| Break::BadCheckpoint { line, reason })?;
            let at = map.entry(head.seq).or_default();
            match at.iter_mut().find(|(_, h, _)| *h == head.hash) {
                // A checkpoint of this log too: never excused.
                Some(seen) => seen.2 &= from_lost,
                None => at.push((line, head.hash, from_lost)),
            }
        }
        Ok(Verifier {
            prev: Head::GENESIS,
            checkpoint_count: checkpoints.len() + lost.len(),
            checkpoints: map,
            superseded: BTreeSet::new(),
        })
    }

    /// Whether a checkpoint at `seq` may disagree with the log: it comes
    /// from a lost copy and an epoch record names it.
    fn excused(&self, seq: u64, hash: Hash, from_lost: bool) -> bool {
        from_lost && self.superseded.contains(&(seq, hash))
    }

    /// Continues a chain from a head already trusted (a verified checkpoint),
    /// without checkpoints of its own: for checking a segment before signing it.
    pub fn resume(from: Head) -> Self {
        Verifier {
            prev: from,
            checkpoints: BTreeMap::new(),
            checkpoint_count: 0,
            superseded: BTreeSet::new(),
        }
    }

    /// The last record verified so far.
    pub fn head(&self) -> Head {
        self.prev
    }

    /// Checks the next record in sequence order.
    pub fn push(&mut self, r: &Record) -> Result<(), Break> {
        let expected = self.prev.seq + 1;
        if r.seq != expected {
            return Err(Break::Missing {
                expected,
                found: r.seq,
            });
        }
        if r.version != RECORD_VERSION {
            return Err(Break::Version {
                seq: r.seq,
                version: r.version,
            });
        }
        if r.computed_hash() != r.hash {
            return Err(Break::Edited { seq: r.seq });
        }
        if r.prev_hash != self.prev.hash {
            return Err(Break::Relinked {
                seq: r.seq,
                prev: self.prev.seq,
            });
        }
        if r.action == EPOCH_ACTION {
            // A restore: checkpoints signed on the lost copy of the log,
            // from this record on, no longer describe it — only those it
            // names, exactly.
            let named: EpochDetails =
                serde_json::from_str(&r.details).map_err(|_| Break::Edited { seq: r.seq })?;
            for s in named.superseded_checkpoints {
                if s.seq >= r.seq {
                    self.superseded.insert((s.seq, s.hash));
                }
            }
        }
        if let Some(at) = self.checkpoints.get(&r.seq) {
            let unexplained = at
                .iter()
                .filter(|(_, h, lost)| *h != r.hash && !self.excused(r.seq, *h, *lost))
                .map(|(line, _, _)| *line)
                .next();
            if let Some(line) = unexplained {
                return Err(if at.iter().any(|(_, h, _)| *h == r.hash) {
                    Break::ConflictingCheckpoints { line, seq: r.seq }
                } else {
                    Break::CheckpointMismatch { seq: r.seq }
                });
            }
        }
        self.prev = r.head();
        Ok(())
    }

    /// Ends the verification. `stored_head` is the head the database keeps
    /// beside the log, if any: a second, unsigned witness of its length.
    pub fn finish(self, stored_head: Option<Head>) -> Result<Report, Break> {
        let last = self.prev.seq;
        // Checkpoints past the end of the log: records deleted, unless a
        // restore's epoch record names them.
        let beyond = self
            .checkpoints
            .range(last.saturating_add(1)..)
            .rev()
            .flat_map(|(seq, at)| at.iter().map(move |(_, h, lost)| (*seq, *h, *lost)))
            .find(|(seq, h, lost)| !self.excused(*seq, *h, *lost));
        if let Some((cp, _, _)) = beyond {
            return Err(Break::Truncated {
                last,
                checkpoint: cp,
            });
        }
        let superseded = self
            .checkpoints
            .iter()
            .flat_map(|(seq, at)| at.iter().map(move |(_, h, lost)| (*seq, *h, *lost)))
            .filter(|(seq, h, lost)| self.excused(*seq, *h, *lost))
            .count();
        let last_checkpoint = self.checkpoints.range(..=last).next_back().map(|(s, _)| *s);
        if let Some(h) = stored_head
            && h != self.prev
        {
            return Err(Break::HeadMismatch { last, head: h.seq });
        }
        Ok(Report {
            records: last,
            head: self.prev,
            checkpoints: self.checkpoint_count,
            last_checkpoint,
            superseded,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditSigningKey, Details, Entry};
    use domain::{Actor, Timestamp};
    use zeroize::Zeroizing;

    fn chain(n: u64) -> Vec<Record> {
        let mut head = Head::GENESIS;
        (0..n)
            .map(|i| {
                let e = Entry::new(
                    Actor::System,
                    "test.event",
                    format!("n:{i}"),
                    Details::none(),
                )
                .unwrap();
                let r = Record::next(&head, &e, Timestamp::from_millis(i as i64)).unwrap();
                head = r.head();
                r
            })
            .collect()
    }

    fn key() -> AuditSigningKey {
        AuditSigningKey::from_seed(&Zeroizing::new([9; 32]))
    }

    fn check(records: &[Record], checkpoints: &[Checkpoint], head: Option<Head>) -> String {
        check_lost(records, checkpoints, &[], head)
    }

    fn check_lost(
        records: &[Record],
        checkpoints: &[Checkpoint],
        lost: &[Checkpoint],
        head: Option<Head>,
    ) -> String {
        let k = key();
        let run = || -> Result<Report, Break> {
            let mut v = Verifier::with_lost(checkpoints, lost, &k.public())?;
            for r in records {
                v.push(r)?;
            }
            v.finish(head)
        };
        match run() {
            Ok(r) => format!(
                "ok: {} records, last checkpoint {:?}",
                r.records, r.last_checkpoint
            ),
            Err(b) => format!("first broken {:?}: {b}", b.first_broken_record()),
        }
    }

    #[test]
    fn detects_every_kind_of_tampering() {
        let good = chain(10);
        let cp = key().sign_checkpoint(good[7].head(), Timestamp::UNIX_EPOCH);
        let cps = [cp];
        let mut out = vec![check(&good, &cps, Some(good[9].head()))];

        let mut edited = good.clone();
        edited[4].subject = "n:40".into();
        out.push(check(&edited, &cps, None));

        let mut rehashed = good.clone();
        rehashed[4].subject = "n:40".into();
        rehashed[4].hash = rehashed[4].computed_hash();
        out.push(check(&rehashed, &cps, None));

        let mut deleted = good.clone();
        deleted.remove(3);
        out.push(check(&deleted, &cps, None));

        let mut reordered = good.clone();
        reordered.swap(5, 6);
        out.push(check(&reordered, &cps, None));

        // Rewritten from record 6 on, each record re-hashed and re-linked:
        // only the signed checkpoint at 8 can tell.
        let mut rewritten = good[..5].to_vec();
        let mut head = rewritten[4].head();
        for i in 5..10 {
            let e = Entry::new(
                Actor::System,
                "test.event",
                format!("forged:{i}"),
                Details::none(),
            )
            .unwrap();
            let r = Record::next(&head, &e, Timestamp::from_millis(i)).unwrap();
            head = r.head();
            rewritten.push(r);
        }
        out.push(check(&rewritten, &cps, None));

        out.push(check(&good[..6], &cps, None));
        out.push(check(&good[..9], &[], Some(good[9].head())));

        let mut unreadable = good.clone();
        unreadable[0].mark_unreadable();
        out.push(check(&unreadable, &cps, None));

        let mut v = Verifier::resume(good[4].head());
        for r in &good[5..] {
            v.push(r).unwrap();
        }
        assert_eq!(v.head(), good[9].head());
        let mut v = Verifier::resume(good[4].head());
        assert!(matches!(
            v.push(&good[6]),
            Err(Break::Missing { expected: 6, .. })
        ));

        let mut bad_cp = cps[0].clone();
        bad_cp.seq = 9;
        out.push(check(&good, &[bad_cp], None));

        expect_test::expect![[r#"
            ok: 10 records, last checkpoint Some(8)
            first broken Some(5): record 5 does not match its hash: edited or moved
            first broken Some(6): record 6 does not link to record 5: records deleted, inserted or reordered
            first broken Some(4): record 4 is missing (the next stored record is 5): deleted or reordered
            first broken Some(6): record 6 is missing (the next stored record is 7): deleted or reordered
            first broken Some(8): record 8 differs from the signed checkpoint of that record: history rewritten
            first broken Some(7): the log ends at record 6 but a signed checkpoint covers record 8: records after 6 were deleted
            first broken Some(10): the database head (record 10) does not match the end of the log (record 9): records were deleted or the head was edited
            first broken Some(1): record 1 does not match its hash: edited or moved
            first broken None: checkpoint 1 is not valid: signature does not verify"#]].assert_eq(&out.join("\n"));
    }

    /// The log restored from a backup at record 5: record 6 opens a new
    /// epoch; the lost copy's checkpoint at 8 (and a newer one at 12)
    /// disagree with the restored log, and only the epoch record's naming
    /// them, exactly, explains it.
    #[test]
    fn a_restore_epoch_explains_only_the_checkpoints_it_names() {
        let lost = chain(12);
        let k = key();
        let lost_cps = [
            k.sign_checkpoint(lost[3].head(), Timestamp::UNIX_EPOCH),
            k.sign_checkpoint(lost[7].head(), Timestamp::UNIX_EPOCH),
            k.sign_checkpoint(lost[11].head(), Timestamp::UNIX_EPOCH),
        ];
        let restored = |named: &[(u64, Hash)]| {
            let mut log = lost[..5].to_vec();
            let mut head = log[4].head();
            let names: Vec<_> = named
                .iter()
                .map(|(seq, hash)| serde_json::json!({ "seq": seq, "hash": hash }))
                .collect();
            let epoch = Entry::new(
                Actor::System,
                EPOCH_ACTION,
                "backup",
                Details::new(&serde_json::json!({ "superseded_checkpoints": names })).unwrap(),
            )
            .unwrap();
            for i in 5..9 {
                let e = if i == 5 {
                    epoch.clone()
                } else {
                    Entry::new(
                        Actor::System,
                        "test.event",
                        format!("new:{i}"),
                        Details::none(),
                    )
                    .unwrap()
                };
                let r = Record::next(&head, &e, Timestamp::from_millis(i)).unwrap();
                head = r.head();
                log.push(r);
            }
            log
        };
        let both = [(8, lost[7].hash), (12, lost[11].hash)];
        let log = restored(&both);
        // The restored log's own checkpoint at 8, beside the lost one.
        let own = [k.sign_checkpoint(log[7].head(), Timestamp::UNIX_EPOCH)];
        let mut out = vec![check_lost(&log, &own, &lost_cps, Some(log[8].head()))];
        out.push(check_lost(&log, &[], &lost_cps, None));
        out.push(check_lost(&restored(&both[..1]), &[], &lost_cps, None));
        out.push(check_lost(&restored(&[]), &[], &lost_cps, None));
        // A wrong hash, or a checkpoint before the epoch, explains nothing.
        out.push(check_lost(
            &restored(&[(8, lost[6].hash), both[1]]),
            &[],
            &lost_cps,
            None,
        ));
        let mut before = lost_cps.to_vec();
        before.push(k.sign_checkpoint(lost[1].head(), Timestamp::from_millis(1)));
        let mut forged = lost[1].clone();
        forged.subject = "other".into();
        forged.hash = forged.computed_hash();
        before.push(k.sign_checkpoint(forged.head(), Timestamp::from_millis(2)));
        out.push(check_lost(
            &restored(&[(2, forged.hash), both[0], both[1]]),
            &[],
            &before,
            None,
        ));
        // Nor does an epoch record excuse a checkpoint of this log's own
        // file: a record written into the database cannot hide a truncation.
        out.push(check(&log, &lost_cps, None));
        expect_test::expect![[r#"
            ok: 9 records, last checkpoint Some(8)
            ok: 9 records, last checkpoint Some(8)
            first broken Some(10): the log ends at record 9 but a signed checkpoint covers record 12: records after 9 were deleted
            first broken Some(8): record 8 differs from the signed checkpoint of that record: history rewritten
            first broken Some(8): record 8 differs from the signed checkpoint of that record: history rewritten
            first broken None: checkpoint 5 disagrees with an earlier checkpoint for record 2
            first broken Some(8): record 8 differs from the signed checkpoint of that record: history rewritten"#]]
        .assert_eq(&out.join("\n"));
    }
}
