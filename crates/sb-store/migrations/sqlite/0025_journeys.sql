-- Journeys: versioned definitions, instances that are their own timers, and one table of
-- deliveries for every automated message (journeys now; campaigns and announcements later).

-- `state`: draft, active, paused (instances wait), archived. `trigger_event` is the active
-- version's, so an event finds the journeys it starts with one indexed lookup.
CREATE TABLE journeys (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    current_version BIGINT NOT NULL,
    trigger_event TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX journeys_trigger ON journeys (workspace_id, trigger_event, state);
CREATE INDEX journeys_workspace ON journeys (workspace_id, created_at);

-- Saved versions never change: an edit is a new version; instances keep theirs.
CREATE TABLE journey_versions (
    journey_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    workspace_id TEXT NOT NULL,
    definition_json TEXT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (journey_id, version)
);

-- One customer's run through one version. `state`: active (a step is due), waiting (a delay
-- or a wait), exited (an exit rule), completed. `fence` grows with every change, and every
-- write to a row says which fence it read, so a late timer or a stale worker changes nothing.
-- `wake_at` is the instance's timer: the step (or the wait's timeout) runs then.
CREATE TABLE journey_instances (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    journey_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    customer_id TEXT NOT NULL,
    correlation TEXT NOT NULL,
    state TEXT NOT NULL,
    step BIGINT NOT NULL,
    -- How many times a wait restarted (part of each send's idempotency key).
    loop_count BIGINT NOT NULL,
    fence BIGINT NOT NULL,
    wake_at BIGINT,
    -- The trigger event's properties and time, for templates and late-event checks.
    context_json TEXT NOT NULL,
    trigger_at BIGINT NOT NULL,
    -- The event time of the last restart of the current wait.
    restarted_at BIGINT,
    -- On the exit path: the exit rule whose `then` is sent.
    exit_rule BIGINT,
    entered_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT,
    converted_at BIGINT
);
CREATE UNIQUE INDEX journey_instances_live ON journey_instances (workspace_id, journey_id, customer_id, correlation)
    WHERE state IN ('active', 'waiting');
CREATE INDEX journey_instances_due ON journey_instances (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX journey_instances_customer ON journey_instances (workspace_id, customer_id, state);
CREATE INDEX journey_instances_journey ON journey_instances (journey_id, state, step);

-- Every automated message. `idempotency_key` (instance, step, loop) makes a second planning
-- of the same send a no-op. `state`: planned, deferred (quiet hours), queued (handed to the
-- outbox as `message_id`), suppressed (consent, exit), capped, failed (no channel).
CREATE TABLE deliveries (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    origin TEXT NOT NULL,
    journey_id TEXT,
    instance_id TEXT,
    step_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    state TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    channel TEXT,
    channel_account_id TEXT,
    message_id TEXT,
    -- Why this channel (or why none), and why a send was held or refused.
    reason_code TEXT,
    reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    queued_at BIGINT,
    UNIQUE (workspace_id, idempotency_key)
);
CREATE INDEX deliveries_due ON deliveries (not_before) WHERE state IN ('planned', 'deferred');
CREATE INDEX deliveries_customer ON deliveries (workspace_id, customer_id, created_at);
CREATE INDEX deliveries_instance ON deliveries (instance_id);
