-- Bulk data jobs ($export, $import): queued by a request, run in the background by whichever
-- node claims them, resumable after a restart. A running job whose heartbeat is older than the
-- claim timeout is orphaned and may be claimed again.
CREATE TABLE bulk_job (
    id          TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL, -- 'export' | 'import'
    status      TEXT    NOT NULL, -- 'uploading' | 'queued' | 'running' | 'complete' | 'failed'
    request     TEXT    NOT NULL, -- the kick-off URL as the client sent it
    params      TEXT    NOT NULL, -- the checked job parameters (JSON)
    created     BIGINT  NOT NULL, -- ms since the Unix epoch
    heartbeat   BIGINT  NOT NULL,
    owner       TEXT,
    progress    TEXT,
    finished    BIGINT,
    outcome     TEXT              -- OperationOutcome JSON of a failed job
);
CREATE INDEX bulk_job_status ON bulk_job (status, created);

-- The files of a job (output, errors, uploaded input), each stored as numbered chunks so that
-- neither writing nor downloading holds a whole file in memory. A file has its bulk_file row
-- only once it is complete.
CREATE TABLE bulk_file (
    job_id   TEXT    NOT NULL,
    file_no  INTEGER NOT NULL,
    role     TEXT    NOT NULL, -- 'output' | 'error' | 'input'
    rtype    TEXT    NOT NULL,
    count    BIGINT  NOT NULL,
    bytes    BIGINT  NOT NULL,
    PRIMARY KEY (job_id, file_no)
);
CREATE TABLE bulk_chunk (
    job_id   TEXT    NOT NULL,
    file_no  INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    data     BYTEA   NOT NULL,
    PRIMARY KEY (job_id, file_no, seq)
);

-- Export walks one type in key order.
CREATE INDEX resource_type_key ON resource (rtype, rkey);
