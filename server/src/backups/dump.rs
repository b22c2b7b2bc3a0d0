//! Database dumps: for a deployment marked as a database server (`DeploymentSpec::database`),
//! a backup runs the engine's dump tool inside a running instance (by exec, as an argument
//! list: `pg_dump`, or `mysqldump --single-transaction` for MySQL and MariaDB) and stores its
//! output as `/databases/<database>.sql`; a restore pipes that file into `psql` / `mysql` in
//! a running instance. The dump is written to a file under the staging directory first:
//! restic's tree records each file's size, which a stream knows only at its end, and a
//! dump that fails (exit code ≠ 0) then never reaches the repository.

use std::{path::Path, sync::atomic::Ordering, sync::Arc};

use app::model::{DatabaseDump, DatabaseEngine, DeploymentSpec};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{human_bytes, repo, report_while, BackupError, BackupRunner};
use crate::{
    jobs::Progress,
    runtime::{Engine, ExecCommand},
    store::{BackupRecord, DeploymentRecord, ReleaseRecord, RestoreRecord},
};

/// The dump tool's command line for `db`, with the password (if any) in its environment.
pub fn dump_command(db: &DatabaseDump, password: Option<&str>) -> ExecCommand {
    let (argv, env_name): (Vec<&str>, &str) = match db.engine {
        DatabaseEngine::Postgres => (
            vec![
                "pg_dump",
                "--clean",
                "--if-exists",
                "--no-password",
                "--username",
                &db.user,
                "--dbname",
                &db.database,
            ],
            "PGPASSWORD",
        ),
        DatabaseEngine::Mysql | DatabaseEngine::Mariadb => (
            vec![
                "mysqldump",
                "--single-transaction",
                "--routines",
                "--triggers",
                "--user",
                &db.user,
                &db.database,
            ],
            "MYSQL_PWD",
        ),
    };
    ExecCommand {
        argv: argv.into_iter().map(str::to_owned).collect(),
        env: password
            .map(|p| vec![format!("{env_name}={p}")])
            .unwrap_or_default(),
    }
}

/// The client's command line that loads a dump of `db` from standard input, stopping at
/// the first error (PostgreSQL: in one transaction).
pub fn load_command(db: &DatabaseDump, password: Option<&str>) -> ExecCommand {
    let (argv, env_name): (Vec<&str>, &str) = match db.engine {
        DatabaseEngine::Postgres => (
            vec![
                "psql",
                "--no-password",
                "--quiet",
                "--set",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "--username",
                &db.user,
                "--dbname",
                &db.database,
            ],
            "PGPASSWORD",
        ),
        DatabaseEngine::Mysql | DatabaseEngine::Mariadb => {
            (vec!["mysql", "--user", &db.user, &db.database], "MYSQL_PWD")
        }
    };
    ExecCommand {
        argv: argv.into_iter().map(str::to_owned).collect(),
        env: password
            .map(|p| vec![format!("{env_name}={p}")])
            .unwrap_or_default(),
    }
}

impl BackupRunner {
    /// The password the spec's `password_env` names, opened if it is a secret.
    fn database_password(
        &self,
        spec: &DeploymentSpec,
        db: &DatabaseDump,
    ) -> Result<Option<String>, BackupError> {
        let Some(name) = &db.password_env else {
            return Ok(None);
        };
        let var = spec.env.iter().find(|v| &v.name == name).ok_or_else(|| {
            BackupError::Invalid(format!("the deployment has no variable {name}"))
        })?;
        match (&var.value, var.secret) {
            (Some(sealed), true) => self.secrets.open(sealed).map(Some).map_err(|e| {
                BackupError::Invalid(format!("the secret {name} cannot be read: {e}"))
            }),
            (value, _) => Ok(value.clone()),
        }
    }

    /// A running instance of the deployment: (node id, engine, container id).
    async fn running_instance(
        &self,
        deployment: &DeploymentRecord,
    ) -> Result<(String, Arc<Engine>, String), BackupError> {
        let locations = self
            .store
            .locations()
            .for_deployment(&deployment.id)
            .await?;
        let loc = locations
            .iter()
            .filter(|l| l.status == "running" && l.container_id.is_some())
            .min_by_key(|l| l.slot)
            .ok_or_else(|| {
                BackupError::Invalid(
                    "the database has no running instance to dump (start it first)".into(),
                )
            })?;
        let engine = self.orchestrator.engine(&loc.node_id)?;
        Ok((
            loc.node_id.clone(),
            engine,
            loc.container_id.clone().unwrap_or_default(),
        ))
    }

    /// Dumps the deployment's database into a snapshot `/databases/<database>.sql`.
    pub(super) async fn take_dump(
        &self,
        backup: &BackupRecord,
        deployment: &DeploymentRecord,
        release: &ReleaseRecord,
        spec: &DeploymentSpec,
        db: &DatabaseDump,
        progress: &Progress,
    ) -> Result<repo::BackupSummary, BackupError> {
        let (node_id, engine, container) = self.running_instance(deployment).await?;
        self.store
            .backups()
            .start_backup(&backup.id, &node_id, "database", "[]")
            .await?;
        let password = self.database_password(spec, db)?;
        let command = dump_command(db, password.as_deref());
        progress
            .begin(
                "dump database",
                format!("{} of {} on node {node_id}", command.argv[0], db.database),
            )
            .await;
        let work_dir = self
            .settings
            .staging_root
            .join(format!("backup-{}", backup.id));
        let result = async {
            tokio::fs::create_dir_all(&work_dir).await.map_err(|e| {
                BackupError::Invalid(format!("cannot create {}: {e}", work_dir.display()))
            })?;
            let path = work_dir.join("dump.sql");
            let written = write_dump(&engine, &container, command, &path, progress).await?;
            progress
                .begin("store dump", format!("{} dumped", human_bytes(written)))
                .await;
            let file = std::fs::File::open(&path)
                .map_err(|e| BackupError::Invalid(format!("cannot read the dump back: {e}")))?;
            let access = self.access(&deployment.project_id).await?;
            let tags = repo::SnapshotTags {
                label: deployment.id.clone(),
                tags: vec![
                    format!("project:{}", deployment.project_id),
                    format!("deployment:{}", deployment.id),
                    format!("release:{}", release.id),
                    "kind:database".into(),
                ],
            };
            let name = format!("{}.sql", db.database);
            let spill = work_dir.clone();
            let work = tokio::task::spawn_blocking(move || {
                let repository =
                    repo::open_or_init(&access.location, &access.password, access.may_init)?;
                let input = super::tar_source::SourceInput::File { name, file };
                repo::backup(repository, input, repo::DUMP_ROOT, &spill, &tags, &|_| {})
            });
            report_while(work, progress, || None).await
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&work_dir).await;
        result
    }

    /// Loads the backup's dump into the deployment's database (its current settings), in a
    /// running instance. Returns (files, bytes).
    pub(super) async fn restore_dump(
        &self,
        restore: &RestoreRecord,
        snapshot_id: &str,
        deployment: &DeploymentRecord,
        progress: &Progress,
    ) -> Result<(u64, u64), BackupError> {
        let (_, spec) = self.orchestrator.current_release(deployment).await?;
        let db = spec.database.clone().ok_or_else(|| {
            BackupError::Invalid(format!(
                "the backup is a database dump, and deployment '{}' is not marked as a \
                     database server (its spec has no `database`)",
                deployment.name
            ))
        })?;
        let (node_id, engine, container) = self.running_instance(deployment).await?;
        progress
            .begin(
                "restore snapshot",
                format!("snapshot {}", &snapshot_id[..8]),
            )
            .await;
        let staging = self.fresh_staging(&format!("restore-{}", restore.id))?;
        let result = async {
            let access = self.access(&deployment.project_id).await?;
            let (snap, dest) = (snapshot_id.to_owned(), staging.clone());
            let counts = tokio::task::spawn_blocking(move || {
                let repository = repo::open(&access.location, &access.password)?;
                repo::restore_to(repository, &snap, repo::DUMP_ROOT, &dest)
            })
            .await
            .map_err(|e| BackupError::Invalid(format!("the restore task failed: {e}")))??;
            let dump = single_dump(&staging)?;
            let password = self.database_password(&spec, &db)?;
            let command = load_command(&db, password.as_deref());
            progress
                .begin(
                    "load dump",
                    format!("{} into {} on node {node_id}", command.argv[0], db.database),
                )
                .await;
            let file = tokio::fs::File::open(&dump)
                .await
                .map_err(|e| BackupError::Invalid(format!("cannot read the restored dump: {e}")))?;
            engine
                .exec_input(&container, &command, file_chunks(file))
                .await?;
            Ok(counts)
        }
        .await;
        let _ = std::fs::remove_dir_all(&staging);
        result
    }
}

/// Runs the dump and writes its output to `path`; returns the bytes written. Notes the
/// progress every second.
async fn write_dump(
    engine: &Engine,
    container: &str,
    command: ExecCommand,
    path: &Path,
    progress: &Progress,
) -> Result<u64, BackupError> {
    let mut out = tokio::fs::File::create(path)
        .await
        .map_err(|e| BackupError::Invalid(format!("cannot write the dump: {e}")))?;
    let mut stream = std::pin::pin!(engine.exec_output(container, command));
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut last_note = std::time::Instant::now();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BackupError::Source(e.to_string()))?;
        out.write_all(&chunk)
            .await
            .map_err(|e| BackupError::Invalid(format!("cannot write the dump: {e}")))?;
        let total = written.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
        if last_note.elapsed().as_secs() >= 1 {
            progress
                .note(format!("{} dumped", human_bytes(total)))
                .await;
            last_note = std::time::Instant::now();
        }
    }
    out.flush()
        .await
        .map_err(|e| BackupError::Invalid(format!("cannot write the dump: {e}")))?;
    Ok(written.load(Ordering::Relaxed))
}

/// The one `.sql` file a dump snapshot restores to.
fn single_dump(dir: &Path) -> Result<std::path::PathBuf, BackupError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)
        .map_err(|e| BackupError::Invalid(format!("cannot read the restored dump: {e}")))?
    {
        let entry = entry
            .map_err(|e| BackupError::Invalid(format!("cannot read the restored dump: {e}")))?;
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && entry.path().extension().is_some_and(|e| e == "sql") {
            found.push(entry.path());
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(BackupError::Invalid(format!(
            "the snapshot holds {n} dump files, not one"
        ))),
    }
}

/// The file as a stream of 256 KiB chunks.
fn file_chunks(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(engine: DatabaseEngine) -> DatabaseDump {
        DatabaseDump {
            engine,
            database: "shop".into(),
            user: "app".into(),
            password_env: Some("DB_PASSWORD".into()),
        }
    }

    #[test]
    fn commands_are_argument_lists_with_the_password_in_the_environment() {
        let c = dump_command(&db(DatabaseEngine::Postgres), Some("s3cret; rm -rf /"));
        assert_eq!(c.argv[0], "pg_dump");
        assert!(c.argv.windows(2).any(|w| w == ["--dbname", "shop"]));
        assert_eq!(c.env, vec!["PGPASSWORD=s3cret; rm -rf /".to_owned()]);
        assert!(!c.argv.iter().any(|a| a.contains("s3cret")));
        let c = dump_command(&db(DatabaseEngine::Mariadb), None);
        assert_eq!(&c.argv[..2], ["mysqldump", "--single-transaction"]);
        assert!(c.env.is_empty());
        let c = load_command(&db(DatabaseEngine::Postgres), None);
        assert!(c.argv.contains(&"ON_ERROR_STOP=1".to_owned()));
        let c = load_command(&db(DatabaseEngine::Mysql), Some("pw"));
        assert_eq!(c.env, vec!["MYSQL_PWD=pw".to_owned()]);
    }
}
