-- Actor attributes for the registry. value_type keeps the Python type that SQLite's
-- dynamic typing would lose (bool as integer, datetime as UTC epoch seconds). The value column
-- is declared BLOB so that it has no affinity: "007" stays a string, never the number 7.
CREATE TABLE attributes (
    entity     TEXT NOT NULL,
    key        TEXT NOT NULL,
    name       TEXT NOT NULL,
    value_type TEXT NOT NULL,
    value      BLOB,  -- no affinity: a value keeps the storage class it was written with
    PRIMARY KEY (entity, key, name)
) WITHOUT ROWID;

CREATE INDEX attributes_lookup ON attributes (entity, name, value);
