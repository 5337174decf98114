-- The client that started a bulk job (when authorization is on): only it may poll, cancel or
-- download the job, whatever other tokens with bulk scopes exist.
ALTER TABLE bulk_job ADD COLUMN client_id TEXT;
