-- Durable timers. At due_at a timer is deleted and its message stored in the mailbox, in one
-- transaction (it fires once). name is unique per actor; id orders timers due together.
CREATE TABLE timers (
    id         INTEGER PRIMARY KEY,
    entity     TEXT NOT NULL,
    key        TEXT NOT NULL,
    name       TEXT NOT NULL,
    generation INTEGER NOT NULL,
    due_at     REAL NOT NULL,
    handler    TEXT NOT NULL,
    payload    BLOB NOT NULL,
    created_at REAL NOT NULL
);

CREATE UNIQUE INDEX timers_name ON timers (entity, key, name);
CREATE INDEX timers_due ON timers (due_at, id);

-- A fired timer's message keeps the timer's name, so that cancelling the timer drops it too.
ALTER TABLE messages ADD COLUMN timer TEXT;
CREATE INDEX messages_timer ON messages (entity, key, timer) WHERE timer IS NOT NULL;
