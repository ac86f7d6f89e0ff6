-- Providers whose signature covers a token and a timestamp but not the body (Mailgun) ask
-- receivers to remember each token for the signature's window: a token seen again is a
-- replay, whatever body it comes with.
CREATE TABLE signed_tokens (
    channel_account_id TEXT NOT NULL,
    token_digest TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (channel_account_id, token_digest)
);
CREATE INDEX signed_tokens_expiry ON signed_tokens (expires_at);
