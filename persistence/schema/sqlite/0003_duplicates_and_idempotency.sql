-- Duplicate metadata, and per-message idempotency: a handled message with an idempotency key
-- is kept (done = 1) with its reply until expires_at, so that a repeat gets the same reply.
ALTER TABLE messages ADD COLUMN meta BLOB;
ALTER TABLE messages ADD COLUMN idempotency_key TEXT;
ALTER TABLE messages ADD COLUMN done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN reply BLOB;
ALTER TABLE messages ADD COLUMN reply_error BLOB;
ALTER TABLE messages ADD COLUMN expires_at REAL;

CREATE UNIQUE INDEX messages_idempotency ON messages (entity, key, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_expiry ON messages (expires_at) WHERE expires_at IS NOT NULL;
