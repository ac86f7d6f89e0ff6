-- A replay (the same signed bytes again) always repeats the provider's message id, so the
-- (channel account, dedupe key) row already says whether a request is a replay: the
-- signature index only cost every webhook a write to a random page.
DROP INDEX inbound_requests_signature;
