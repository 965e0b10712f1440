-- The person who holds an API key: a user (`user:<id>`), fixed when the key
-- is registered. An approval quorum counts people, not principals: a key
-- and its owner's session, or two keys of one owner, supply one approval.
-- NULL: a key with no owner is a person of its own.
ALTER TABLE api_keys ADD COLUMN owner TEXT;
