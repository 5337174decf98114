-- Lookups by resource key also name the parameter (sort keys, includes). With an index on
-- rkey alone, SQLite preferred the (pid, value, …) index and walked every row of the parameter
-- for each resource; (rkey, pid) serves both the per-resource deletes and those lookups.
DROP INDEX idx_token_rkey;
DROP INDEX idx_string_rkey;
DROP INDEX idx_reference_rkey;
DROP INDEX idx_date_rkey;
DROP INDEX idx_number_rkey;
DROP INDEX idx_uri_rkey;
DROP INDEX idx_composite_rkey;
CREATE INDEX idx_token_rkey ON idx_token (rkey, pid);
CREATE INDEX idx_string_rkey ON idx_string (rkey, pid);
CREATE INDEX idx_reference_rkey ON idx_reference (rkey, pid);
CREATE INDEX idx_date_rkey ON idx_date (rkey, pid);
CREATE INDEX idx_number_rkey ON idx_number (rkey, pid);
CREATE INDEX idx_uri_rkey ON idx_uri (rkey, pid);
CREATE INDEX idx_composite_rkey ON idx_composite (rkey, pid);
