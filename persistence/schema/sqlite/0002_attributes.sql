-- Actor attributes for the registry. value_type keeps the Python type that SQLite's
-- dynamic typing would lose (bool as integer, datetime as UTC epoch seconds).
CREATE TABLE attributes (
    entity     TEXT NOT NULL,
    key        TEXT NOT NULL,
    name       TEXT NOT NULL,
    value_type TEXT NOT NULL,
    value      ANY,
    PRIMARY KEY (entity, key, name)
) WITHOUT ROWID;

CREATE INDEX attributes_lookup ON attributes (entity, name, value);
