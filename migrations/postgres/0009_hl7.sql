-- Every HL7 v2 message received, by sender (MSH-3^MSH-4) and control id (MSH-10): a message
-- sent again gets its first ACK back without being processed twice.
CREATE TABLE hl7_message (
    sender        TEXT    NOT NULL,
    control_id    TEXT    NOT NULL,
    message_type  TEXT    NOT NULL,
    received      BIGINT  NOT NULL, -- ms since the Unix epoch
    status        TEXT    NOT NULL, -- 'AA' | 'AE' | 'AR'
    ack           TEXT    NOT NULL,
    raw           TEXT    NOT NULL,
    PRIMARY KEY (sender, control_id)
);
