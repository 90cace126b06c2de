-- Multi-node: sessions of the nodes, per-actor leases with fencing epochs, and replies to
-- callers on other nodes. Times here are the database server's clock (timestamptz), so that
-- nodes with skewed clocks agree on who is live.

-- A node's session: live while expires_at is in the future. Its channel is where the node
-- LISTENs for wake-ups. Session numbers are never reused.
CREATE SEQUENCE session_ids;
CREATE TABLE sessions (
    session    bigint PRIMARY KEY,
    node       text NOT NULL,
    channel    text NOT NULL,
    joined_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL
);

-- Who runs an actor: the session holding its lease, at an epoch that grows every time the
-- actor changes hands (epochs come from one sequence: never reused, never smaller). A lease
-- whose session is not live may be taken by any node.
CREATE SEQUENCE lease_epochs;
CREATE TABLE leases (
    entity  text COLLATE "C" NOT NULL,
    key     text COLLATE "C" NOT NULL,
    session bigint NOT NULL,
    epoch   bigint NOT NULL,
    PRIMARY KEY (entity, key)
);
CREATE INDEX leases_session ON leases (session);

-- The session whose caller waits for a message's reply.
ALTER TABLE messages ADD COLUMN reply_to bigint;

-- Replies for callers on other nodes, taken (deleted) by their session.
CREATE TABLE replies (
    message    bigint PRIMARY KEY,
    session    bigint NOT NULL,
    handler    text,
    reply      bytea,
    error      bytea,
    error_kind text,
    adopt      bigint,
    forward    bigint,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX replies_session ON replies (session);
