-- Reconciliation runs: each pass compares what Strongroom signed with what
-- the chains show, and keeps what it found (a run that could not ask a node
-- is kept too, failed, with why).
CREATE TABLE reconciliation_runs (
    id              TEXT    PRIMARY KEY,
    started_at_ms   INTEGER NOT NULL,
    finished_at_ms  INTEGER NOT NULL,
    -- 1: every account was compared; 0: the run failed (see error).
    complete        INTEGER NOT NULL CHECK (complete IN (0, 1)),
    error           TEXT,
    accounts        INTEGER NOT NULL CHECK (accounts >= 0),
    -- JSON array of findings.
    findings        TEXT    NOT NULL
) STRICT;
CREATE INDEX reconciliation_runs_started ON reconciliation_runs (started_at_ms DESC, id DESC);
