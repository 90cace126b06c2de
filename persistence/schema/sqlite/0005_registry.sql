-- Registry queries (find / count).

-- Datetime attributes were epoch seconds as floats, which cannot hold a microsecond far from
-- 1970; they are integer microseconds since the epoch from now on.
UPDATE attributes SET value = CAST(round(value * 1000000) AS INTEGER)
WHERE value_type = 'datetime';
--
-- Ordering by a time column reads one of these indexes in order and stops at the page's limit
-- instead of sorting every actor of the entity; ties break by key, which the entries end with.
-- completed_at orders only the actors that have one, hence a partial index. updated_at has
-- no index: every turn changes it, and such an index made each update about 30% dearer.
CREATE INDEX actors_created ON actors (entity, created_at, key);
CREATE INDEX actors_completed ON actors (entity, completed_at, key)
    WHERE completed_at IS NOT NULL;

-- Planner statistics, written by hand (https://sqlite.org/optoverview.html#manctrl). Without
-- them SQLite guesses that `entity = ?` alone finds about ten rows, so it scans every actor of
-- an entity rather than seek attributes_lookup for `name = ? AND value = ?`. These describe
-- a large store (many actors per entity, few sharing one attribute value), which is the case
-- the plans must suit; a small store is fast either way. Running ANALYZE replaces them with
-- measured figures. Each row: rows in the index, then rows per distinct value of each prefix
-- of its columns.
ANALYZE sqlite_schema;  -- creates sqlite_stat1 if it does not exist; analyzes no table
DELETE FROM sqlite_stat1 WHERE tbl IN ('actors', 'attributes');
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
    ('actors', 'actors', '1000000 100000 1'),
    ('actors', 'actors_expiry', '500000 10'),
    ('actors', 'actors_created', '1000000 100000 10 1'),
    ('actors', 'actors_completed', '500000 50000 10 1'),
    ('attributes', 'attributes', '4000000 400000 4 1'),
    ('attributes', 'attributes_lookup', '4000000 400000 100000 10');
ANALYZE sqlite_schema;  -- loads them into this connection's planner
