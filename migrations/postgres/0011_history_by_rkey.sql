-- An instance's versions are found by its resource key and version (the UNIQUE (rkey, version)
-- index), the key looked up in `resource` by type and id: every version has its resource row,
-- which is never deleted. The (rtype, id, hkey) index on the history was a fifth B-tree for every
-- version written.
DROP INDEX resource_history_id;
