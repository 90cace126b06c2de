-- The whole PostgreSQL schema, as the SQLite migrations 0001-0006 left theirs.
--
-- Text columns that hold callers' strings (entity, key, names, idempotency keys, string
-- attribute values) use the "C" collation: they compare and sort by code point, as SQLite's
-- do. PostgreSQL text cannot hold NUL, so the store escapes those strings in an
-- order-preserving way (persistence/postgres.py, _escape) before they reach these columns.

-- Counters the store keeps for itself. Message ids come from a sequence instead.
CREATE TABLE meta (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);

INSERT INTO meta (name, value) VALUES ('max_purged_generation', 0);

-- Ids of messages, increasing per actor in commit order: a batch takes them only while it
-- holds the advisory locks of every actor it writes.
CREATE SEQUENCE message_ids;

-- One row per key: its current generation. Purged rows are deleted; meta keeps the largest
-- purged generation so that a key created again gets a larger one (no ABA).
CREATE TABLE actors (
    entity       text COLLATE "C" NOT NULL,
    key          text COLLATE "C" NOT NULL,
    generation   bigint NOT NULL,
    status       text NOT NULL,
    state        bytea,
    result       bytea,
    error        bytea,
    retention    double precision NOT NULL,
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL,
    completed_at double precision,
    expires_at   double precision,
    PRIMARY KEY (entity, key)
);

CREATE INDEX actors_expiry ON actors (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX actors_created ON actors (entity, created_at, key);
CREATE INDEX actors_completed ON actors (entity, completed_at, key)
    WHERE completed_at IS NOT NULL;

-- Accepted messages. A handled one is deleted in the turn that consumes it, unless it has an
-- idempotency key: then it is kept (done) with its reply until expires_at.
CREATE TABLE messages (
    id              bigint PRIMARY KEY,
    entity          text COLLATE "C" NOT NULL,
    key             text COLLATE "C" NOT NULL,
    generation      bigint NOT NULL,
    kind            text NOT NULL,
    handler         text NOT NULL,
    payload         bytea NOT NULL,
    created_at      double precision NOT NULL,
    meta            bytea,
    idempotency_key text COLLATE "C",
    timer           text COLLATE "C",
    attempts        integer NOT NULL DEFAULT 0,
    done            boolean NOT NULL DEFAULT false,
    reply           bytea,
    reply_error     bytea,
    expires_at      double precision
);

CREATE INDEX messages_mailbox ON messages (entity, key, id);
CREATE UNIQUE INDEX messages_idempotency ON messages (entity, key, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_expiry ON messages (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX messages_timer ON messages (entity, key, timer) WHERE timer IS NOT NULL;

-- Actor attributes for the registry. value_type keeps the Python type. Numbers, booleans
-- (0/1) and datetimes (integer microseconds since the Unix epoch) are exact in num, strings
-- are in str; the other column holds 0 or ''. A query orders by (value_type = 'str', num,
-- str): every kind in one total order, numbers first as in SQLite.
CREATE TABLE attributes (
    entity     text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    name       text COLLATE "C" NOT NULL,
    value_type text NOT NULL,
    num        numeric NOT NULL,
    str        text COLLATE "C" NOT NULL,
    PRIMARY KEY (entity, key, name)
);

CREATE INDEX attributes_num ON attributes (entity, name, num, key);
CREATE INDEX attributes_str ON attributes (entity, name, str, key);

-- Durable timers. At due_at a timer is deleted and its message stored, in one transaction (it
-- fires once). name is unique per actor; id orders timers due together.
CREATE TABLE timers (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity     text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    name       text COLLATE "C" NOT NULL,
    generation bigint NOT NULL,
    due_at     double precision NOT NULL,
    handler    text NOT NULL,
    payload    bytea NOT NULL,
    created_at double precision NOT NULL
);

CREATE UNIQUE INDEX timers_name ON timers (entity, key, name);
CREATE INDEX timers_due ON timers (due_at, id);

-- Messages given up after max_attempts, kept until an operator retries or discards them.
-- A dead letter keeps its message's id (message ids are never reused).
CREATE TABLE dead_letters (
    id              bigint PRIMARY KEY,
    entity          text COLLATE "C" NOT NULL,
    key             text COLLATE "C" NOT NULL,
    generation      bigint NOT NULL,
    kind            text NOT NULL,
    handler         text NOT NULL,
    payload         bytea NOT NULL,
    created_at      double precision NOT NULL,
    meta            bytea,
    idempotency_key text COLLATE "C",
    timer           text COLLATE "C",
    attempts        integer NOT NULL,
    error           text NOT NULL,
    dead_at         double precision NOT NULL
);

CREATE INDEX dead_letters_entity ON dead_letters (entity, id);
