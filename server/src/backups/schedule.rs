//! Backup schedules: cron expressions (parsed by `croner`, evaluated in UTC) and the loop
//! that queues a deployment's backup when its schedule is due.
//!
//! Every controller may run the loop: a firing is claimed by moving the schedule's
//! `next_run_at_ms` on with a compare-and-set (`store::BackupSchedules::fire`), so one due
//! time queues exactly one backup however many controllers look at it.

use std::{sync::Arc, time::Duration};

use croner::{
    parser::{CronParser, Seconds},
    Cron,
};
use rustic_core::jiff::{Timestamp, Zoned};
use tokio::sync::Notify;

use crate::store::{BackupScheduleRecord, Store};

/// The shortest time allowed between two runs of one schedule.
pub const MIN_INTERVAL_MS: i64 = 15 * 60 * 1000;
/// How often the loop looks for due schedules.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Occurrences counted as missed at most, after a long outage.
const MISSED_CAP: i64 = 1000;

/// Parses a five-field cron expression (minute hour day-of-month month day-of-week, with
/// ranges, steps, lists, names and `L`/`W`/`#` as croner reads them; no seconds field) and
/// checks that its runs are at least [`MIN_INTERVAL_MS`] apart (over its next 48 runs).
///
/// # Errors
/// A sentence saying what is wrong and what is accepted.
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .build()
        .parse(expression.trim())
        .map_err(|e| {
            format!(
                "'{}' is not a cron expression ({e}); use five fields: minute hour \
                 day-of-month month day-of-week, e.g. '0 3 * * *' for 03:00 UTC daily",
                expression.trim()
            )
        })?;
    let start = Zoned::now().with_time_zone(rustic_core::jiff::tz::TimeZone::UTC);
    let mut previous: Option<i64> = None;
    for at in cron.iter_after(start).take(48) {
        let ms = at.timestamp().as_millisecond();
        if let Some(p) = previous {
            if ms - p < MIN_INTERVAL_MS {
                return Err(format!(
                    "'{}' runs more often than every {} minutes; backups can run at most that often",
                    expression.trim(),
                    MIN_INTERVAL_MS / 60_000
                ));
            }
        }
        previous = Some(ms);
    }
    if previous.is_none() {
        return Err(format!("'{}' never runs", expression.trim()));
    }
    Ok(cron)
}

/// The first run of `cron` strictly after `after_ms` (milliseconds since the epoch, UTC);
/// `None` when it never runs again.
pub fn next_run_ms(cron: &Cron, after_ms: i64) -> Option<i64> {
    let after = Timestamp::from_millisecond(after_ms)
        .ok()?
        .to_zoned(rustic_core::jiff::tz::TimeZone::UTC);
    cron.find_next_occurrence(&after, false)
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

/// How many runs of `cron` fell after `due_ms` up to `now_ms` (capped): the runs a backup
/// taken now stands in for, which count as missed.
pub fn runs_between(cron: &Cron, due_ms: i64, now_ms: i64) -> i64 {
    let mut count = 0;
    let mut at = due_ms;
    while count < MISSED_CAP {
        match next_run_ms(cron, at) {
            Some(next) if next <= now_ms => {
                count += 1;
                at = next;
            }
            _ => break,
        }
    }
    count
}

/// Queues the backups of every due schedule; returns how many were queued.
///
/// # Errors
/// A store failure reading the schedules (each schedule's own failure is logged and the
/// others go on).
pub async fn fire_due(store: &Store, now_ms: i64) -> Result<usize, crate::store::StoreError> {
    let due = store.backup_schedules().due(now_ms).await?;
    let mut queued = 0;
    for s in due {
        match fire_one(store, &s, now_ms).await {
            Ok(true) => queued += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(deployment.id = %s.deployment_id, error = %e, "cannot fire a backup schedule");
            }
        }
    }
    Ok(queued)
}

async fn fire_one(store: &Store, s: &BackupScheduleRecord, now_ms: i64) -> Result<bool, String> {
    let cron = parse_cron(&s.cron)?;
    let next = next_run_ms(&cron, now_ms).unwrap_or(i64::MAX);
    let mut missed = runs_between(&cron, s.next_run_at_ms, now_ms);
    // A backup still queued or running from before: this run is missed, not piled up.
    let busy = store
        .backups()
        .has_unfinished(&s.deployment_id)
        .await
        .map_err(|e| e.to_string())?;
    if busy {
        missed += 1;
    }
    store
        .backup_schedules()
        .fire(s, next, missed, !busy)
        .await
        .map_err(|e| e.to_string())
}

/// How repositories' scheduled checks are queued (see [`super::fire_due_checks`]).
#[derive(Debug, Clone, Copy)]
pub struct CheckSchedule {
    /// Time between two checks of a repository, milliseconds.
    pub interval_ms: i64,
    /// Share of the pack files each check reads, percent.
    pub read_data_percent: u8,
}

/// Runs [`fire_due`] and the repositories' due checks every [`POLL_INTERVAL`] until the task
/// is aborted, waking `workers` after queueing.
pub async fn run_scheduler(store: Store, workers: Arc<Notify>, checks: CheckSchedule) {
    loop {
        let now = crate::store::now_ms();
        match fire_due(&store, now).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(backups = n, "scheduled backups queued");
                workers.notify_waiters();
            }
            Err(e) => tracing::warn!(error = %e, "cannot read backup schedules"),
        }
        match super::fire_due_checks(&store, now, checks.interval_ms, checks.read_data_percent)
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(checks = n, "scheduled repository checks queued");
                workers.notify_waiters();
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the repositories' check times"),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn parses_five_fields_and_refuses_the_rest() {
        assert!(parse_cron("0 3 * * *").is_ok());
        assert!(parse_cron("30 */6 * * mon-fri").is_ok());
        let e = parse_cron("every day").unwrap_err();
        assert!(e.contains("five fields"), "{e}");
        // Six fields would be seconds: refused.
        assert!(parse_cron("0 0 3 * * *").is_err());
        let e = parse_cron("*/5 * * * *").unwrap_err();
        assert!(e.contains("15 minutes"), "{e}");
        assert!(
            parse_cron("0,10 * * * *").is_err(),
            "a short gap inside the hour"
        );
        assert!(parse_cron("*/15 * * * *").is_ok());
    }

    #[test]
    fn next_run_and_missed_runs_are_counted_in_utc() {
        let cron = parse_cron("0 3 * * *").unwrap();
        // 2026-01-01T00:00:00Z
        let start = 1_767_225_600_000;
        assert_eq!(next_run_ms(&cron, start), Some(start + 3 * HOUR_MS));
        // Exactly at a run: the next one is a day later.
        assert_eq!(
            next_run_ms(&cron, start + 3 * HOUR_MS),
            Some(start + 27 * HOUR_MS)
        );
        // Due at day 1 03:00, looked at on day 4 12:00: the runs of days 2, 3 and 4 passed.
        let due = start + 3 * HOUR_MS;
        assert_eq!(
            runs_between(&cron, due, start + 3 * 24 * HOUR_MS + 12 * HOUR_MS),
            3
        );
        assert_eq!(runs_between(&cron, due, due + HOUR_MS), 0);
    }
}
