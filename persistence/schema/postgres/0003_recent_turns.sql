-- The last few turns of each actor, for operators (`actors show`). The runtime encodes the
-- list and rewrites it with the turn's other changes, in the same UPDATE of the actor row.
ALTER TABLE actors ADD COLUMN recent_turns bytea;
