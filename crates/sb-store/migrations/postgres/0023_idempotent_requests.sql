-- Mutating API requests sent with an `Idempotency-Key` header: the first answer is kept, so a
-- retry gets it again instead of running the request twice.
CREATE TABLE idempotent_requests (
    credential_digest TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    body_digest TEXT NOT NULL,
    status INTEGER,
    response_body BYTEA,
    content_type TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (credential_digest, idempotency_key)
);
CREATE INDEX idempotent_requests_created ON idempotent_requests (created_at);
