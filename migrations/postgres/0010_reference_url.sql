-- A reference that names a resource (`Type/id`, relative or absolute) is found by its target
-- (idx_reference_id, then its URL from the row); only the others (urn:uuid:…, URLs that name
-- no resource) need their URL indexed. The full URL index was an eighth of the pages an HL7
-- message's commit wrote.
DROP INDEX idx_reference_url;
CREATE INDEX idx_reference_url ON idx_reference (pid, url, rkey) WHERE target_id IS NULL;
