-- Attempts: how many restarts found a message at the head of its mailbox (it may have been
-- running when the process stopped). The runtime gives up on a message after max_attempts.
ALTER TABLE messages ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;

-- Messages given up after max_attempts, kept until an operator retries or discards them.
-- A dead letter keeps its message's id (message ids are never reused).
CREATE TABLE dead_letters (
    id              INTEGER PRIMARY KEY,
    entity          TEXT NOT NULL,
    key             TEXT NOT NULL,
    generation      INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    handler         TEXT NOT NULL,
    payload         BLOB NOT NULL,
    created_at      REAL NOT NULL,
    meta            BLOB,
    idempotency_key TEXT,
    timer           TEXT,
    attempts        INTEGER NOT NULL,
    error           TEXT NOT NULL,
    dead_at         REAL NOT NULL
);

CREATE INDEX dead_letters_entity ON dead_letters (entity, id);
