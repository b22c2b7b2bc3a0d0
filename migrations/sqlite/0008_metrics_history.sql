-- Metrics history (the metrics role writes both tables every 60 s; see server/src/metrics/rollup.rs).
--
-- Minute rollups: one row per instance and minute (UTC, start of the minute). Figures are
-- sums over the samples taken in that minute, so that a minute written in two parts (by a
-- process that stopped mid-minute and by the one that followed) merges by adding:
-- means are sum / seconds, maxima are the larger of the two.
CREATE TABLE metrics_minutes (
    instance_id TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    minute_ms INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    -- Seconds the samples cover (the sum of their intervals).
    seconds REAL NOT NULL,
    -- CPU time used, core-seconds; the mean CPU % is cpu_seconds / seconds * 100.
    cpu_seconds REAL NOT NULL,
    -- The highest one-second CPU % of the minute (percent of one core).
    cpu_percent_max REAL NOT NULL,
    -- Memory in use integrated over the seconds, byte-seconds.
    memory_byte_seconds REAL NOT NULL,
    memory_bytes_max INTEGER NOT NULL,
    memory_limit_bytes INTEGER NOT NULL,
    net_rx_bytes INTEGER NOT NULL,
    net_tx_bytes INTEGER NOT NULL,
    block_read_bytes INTEGER NOT NULL,
    block_write_bytes INTEGER NOT NULL,
    pids_max INTEGER NOT NULL,
    PRIMARY KEY (instance_id, minute_ms)
);

CREATE INDEX metrics_minutes_deployment ON metrics_minutes (deployment_id, minute_ms);
CREATE INDEX metrics_minutes_age ON metrics_minutes (minute_ms);

-- Hourly usage per deployment (UTC hours), for billing: added to in the same transaction as
-- the minutes it comes from. No foreign key: usage outlives a deleted deployment.
CREATE TABLE metrics_usage_hours (
    deployment_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    hour_ms INTEGER NOT NULL,
    cpu_seconds REAL NOT NULL,
    memory_byte_hours REAL NOT NULL,
    net_rx_bytes INTEGER NOT NULL,
    net_tx_bytes INTEGER NOT NULL,
    block_read_bytes INTEGER NOT NULL,
    block_write_bytes INTEGER NOT NULL,
    PRIMARY KEY (deployment_id, hour_ms)
);

CREATE INDEX metrics_usage_hours_project ON metrics_usage_hours (project_id, hour_ms);
CREATE INDEX metrics_usage_hours_age ON metrics_usage_hours (hour_ms);
