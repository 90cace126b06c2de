-- Actors, their mailboxes, and the counters the store keeps for itself.
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO meta (name, value) VALUES ('next_message_id', 1), ('max_purged_generation', 0);

-- One row per key: its current generation. Purged rows are deleted; meta keeps the largest
-- purged generation so that a key created again gets a larger one (no ABA).
CREATE TABLE actors (
    entity       TEXT NOT NULL,
    key          TEXT NOT NULL,
    generation   INTEGER NOT NULL,
    status       TEXT NOT NULL,
    state        BLOB,
    result       BLOB,
    error        BLOB,
    retention    REAL NOT NULL,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    completed_at REAL,
    expires_at   REAL,
    PRIMARY KEY (entity, key)
) WITHOUT ROWID;

CREATE INDEX actors_expiry ON actors (expires_at) WHERE expires_at IS NOT NULL;

-- Accepted, not yet handled messages. A handled message is deleted in the turn that consumes it.
CREATE TABLE messages (
    id         INTEGER PRIMARY KEY,
    entity     TEXT NOT NULL,
    key        TEXT NOT NULL,
    generation INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    handler    TEXT NOT NULL,
    payload    BLOB NOT NULL,
    created_at REAL NOT NULL
);

CREATE INDEX messages_mailbox ON messages (entity, key, id);
