-- How far each connected IMAP mailbox has been read: a UIDVALIDITY change starts over (and
-- Message-ID de-duplication keeps what was stored), UIDs at or below last_uid are done.
CREATE TABLE mailbox_sync (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    channel_account_id TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    uid_validity BIGINT NOT NULL,
    last_uid BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (channel_account_id, mailbox)
);
