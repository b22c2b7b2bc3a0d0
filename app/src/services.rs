//! The platform as the portal and the REST API see it: service traits that `server`
//! implements and places in the Leptos context (and in axum state). Every method receives the
//! [`RequestContext`] and checks the caller itself, so server functions and REST handlers stay
//! thin and share one set of authorization rules.

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::*;

/// Per-request facts resolved by the server's middleware before any handler runs.
#[derive(Clone)]
pub struct RequestContext {
    /// The signed-in user (by session cookie or bearer token), if any.
    pub caller: Option<UserView>,
    /// The client's IP address as seen by the listener.
    pub client_addr: Option<String>,
    /// The id logged with every line of this request and shown with unexpected errors.
    pub request_id: String,
    /// The browser session, absent for bearer-token requests.
    pub session: Option<Arc<dyn SessionControl>>,
}

impl RequestContext {
    /// The signed-in user, who has replaced any one-time password.
    ///
    /// # Errors
    /// `ApiError` 401 `unauthenticated` when nobody is signed in; 403
    /// `password_change_required` while the user still has a generated one-time password
    /// (only [`RequestContext::signed_in`] callers work until it is changed).
    pub fn user(&self) -> Result<&UserView, ApiError> {
        let user = self.signed_in()?;
        if user.must_change_password {
            return Err(ApiError::new(
                403,
                "password_change_required",
                "You signed in with a one-time password. Choose your own password on the Account page first.",
            ));
        }
        Ok(user)
    }

    /// The signed-in user, even one who still has to replace a one-time password (for
    /// reading one's own account, changing the password and signing out).
    ///
    /// # Errors
    /// `ApiError` 401 `unauthenticated` when nobody is signed in.
    pub fn signed_in(&self) -> Result<&UserView, ApiError> {
        self.caller.as_ref().ok_or_else(ApiError::unauthenticated)
    }

    /// The signed-in user if they are an admin.
    ///
    /// # Errors
    /// 401 when nobody is signed in, 403 `forbidden` for a customer.
    pub fn admin(&self) -> Result<&UserView, ApiError> {
        let user = self.user()?;
        if user.role == UserRole::Admin {
            Ok(user)
        } else {
            Err(ApiError::forbidden("Only administrators may do this."))
        }
    }
}

/// The browser session of the current request.
#[async_trait]
pub trait SessionControl: Send + Sync {
    /// Binds the session to `user`, issuing a new session id (defeats session fixation).
    async fn sign_in(&self, user: &UserId) -> Result<(), ApiError>;
    /// Ends the session and deletes it from the store.
    async fn sign_out(&self) -> Result<(), ApiError>;
}

/// Accounts: signing in and out, the caller's password and API tokens.
#[async_trait]
pub trait AccountService: Send + Sync {
    /// Checks the password (argon2id) and signs the session in.
    /// Errors: 401 `invalid_credentials` (same message for unknown email and wrong password),
    /// 429 `too_many_attempts` while rate-limited.
    async fn sign_in(
        &self,
        ctx: &RequestContext,
        email: &str,
        password: &str,
    ) -> Result<UserView, ApiError>;
    /// Ends the caller's session.
    async fn sign_out(&self, ctx: &RequestContext) -> Result<(), ApiError>;
    /// What the sign-in page offers.
    fn sign_in_options(&self) -> SignInOptions;
    /// Replaces the caller's password after checking the current one.
    async fn change_password(
        &self,
        ctx: &RequestContext,
        req: ChangePassword,
    ) -> Result<(), ApiError>;
    /// The caller's API tokens, newest first.
    async fn list_tokens(&self, ctx: &RequestContext) -> Result<Vec<ApiTokenView>, ApiError>;
    /// Creates a token; the secret is in the answer and nowhere else.
    async fn create_token(
        &self,
        ctx: &RequestContext,
        req: CreateApiToken,
    ) -> Result<NewApiToken, ApiError>;
    /// Revokes one of the caller's tokens. 404 `token_not_found` for someone else's.
    async fn revoke_token(&self, ctx: &RequestContext, id: &ApiTokenId) -> Result<(), ApiError>;
}

/// Projects and their members. Customers see only projects they belong to; admins see all.
#[async_trait]
pub trait ProjectService: Send + Sync {
    async fn list_projects(&self, ctx: &RequestContext) -> Result<Vec<ProjectView>, ApiError>;
    /// 404 `project_not_found` also for projects the caller may not see.
    async fn get_project(
        &self,
        ctx: &RequestContext,
        id: &ProjectId,
    ) -> Result<ProjectView, ApiError>;
    /// The caller becomes the owner. 409 `name_taken` when the name is used platform-wide.
    async fn create_project(
        &self,
        ctx: &RequestContext,
        req: CreateProject,
    ) -> Result<ProjectView, ApiError>;
    /// Owners (and admins) only.
    async fn rename_project(
        &self,
        ctx: &RequestContext,
        id: &ProjectId,
        req: RenameProject,
    ) -> Result<ProjectView, ApiError>;
    /// Owners (and admins) only; `confirm_name` must equal the name (400 `confirmation_mismatch`).
    async fn delete_project(
        &self,
        ctx: &RequestContext,
        id: &ProjectId,
        req: DeleteProject,
    ) -> Result<(), ApiError>;
    async fn list_members(
        &self,
        ctx: &RequestContext,
        id: &ProjectId,
    ) -> Result<Vec<MemberView>, ApiError>;
    /// Owners (and admins) only; the user must exist (404 `user_not_found`).
    async fn add_member(
        &self,
        ctx: &RequestContext,
        id: &ProjectId,
        req: AddMember,
    ) -> Result<MemberView, ApiError>;
    /// Owners (and admins) only; the last owner cannot be removed (409 `last_owner`).
    async fn remove_member(
        &self,
        ctx: &RequestContext,
        id: &ProjectId,
        user: &UserId,
    ) -> Result<(), ApiError>;
}

/// The management console: users and the audit log. Admins only.
#[async_trait]
pub trait AdminService: Send + Sync {
    async fn list_users(&self, ctx: &RequestContext) -> Result<Vec<UserView>, ApiError>;
    /// 409 `email_taken` when the email exists.
    async fn create_user(
        &self,
        ctx: &RequestContext,
        req: CreateUser,
    ) -> Result<UserView, ApiError>;
    /// Newest first, at most `limit` (capped at 500).
    async fn list_audit_events(
        &self,
        ctx: &RequestContext,
        limit: u32,
    ) -> Result<Vec<AuditEventView>, ApiError>;
}

/// Regions, zones, nodes and plans. Plans are visible to every signed-in user (they choose
/// one per deployment); everything else is for admins.
#[async_trait]
pub trait TopologyService: Send + Sync {
    async fn list_plans(&self, ctx: &RequestContext) -> Result<Vec<PlanView>, ApiError>;
    /// 409 `name_taken` for a used name.
    async fn create_plan(&self, ctx: &RequestContext, spec: PlanSpec)
        -> Result<PlanView, ApiError>;
    /// 404 `plan_not_found`, 409 `name_taken`.
    async fn update_plan(
        &self,
        ctx: &RequestContext,
        id: &PlanId,
        spec: PlanSpec,
    ) -> Result<PlanView, ApiError>;
    async fn list_nodes(&self, ctx: &RequestContext) -> Result<Vec<NodeView>, ApiError>;
    /// Regions with their placement strategy (admins).
    async fn list_regions(&self, ctx: &RequestContext) -> Result<Vec<RegionView>, ApiError>;
    /// Sets the placement strategy of region `name` (admins). 404 `region_not_found`.
    async fn set_placement_strategy(
        &self,
        ctx: &RequestContext,
        name: &str,
        strategy: PlacementStrategy,
    ) -> Result<RegionView, ApiError>;
    /// Drains (`draining`), re-activates or marks a node down. 404 `node_not_found`.
    async fn set_node_state(
        &self,
        ctx: &RequestContext,
        id: &NodeId,
        state: NodeState,
    ) -> Result<NodeView, ApiError>;
    /// Connects to a Docker engine and adds it as a node (admins). 400 for a bad field (the
    /// message says what is accepted), 409 `name_taken`, 422 `engine_unreachable` when Berth
    /// cannot connect (nothing is stored then).
    async fn add_node(&self, ctx: &RequestContext, node: AddNode) -> Result<NodeView, ApiError>;
}

/// Deployments of a project and their lifecycle. Members of the project (and admins) may use
/// every operation; anyone else gets 404 `project_not_found` / `deployment_not_found`.
#[async_trait]
pub trait DeploymentService: Send + Sync {
    /// The project's deployments by name.
    async fn list_deployments(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
    ) -> Result<Vec<DeploymentView>, ApiError>;
    /// Validates, records the deployment and its first release, and queues the rollout.
    /// 400 naming the field; 409 `name_taken` / `volume_taken`; 404 `plan_not_found`.
    async fn create_deployment(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
        req: CreateDeployment,
    ) -> Result<DeploymentDetail, ApiError>;
    /// The deployment with releases, instances and recent jobs.
    async fn get_deployment(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
    ) -> Result<DeploymentDetail, ApiError>;
    /// Queues a lifecycle action; the answer is the queued job.
    async fn act(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
        action: DeploymentAction,
    ) -> Result<JobView, ApiError>;
    /// One job of a deployment the caller may see. 404 `job_not_found`.
    async fn get_job(&self, ctx: &RequestContext, id: &JobId) -> Result<JobView, ApiError>;
    /// The last `tail` lines (at most 5000) of every instance's output, oldest first.
    async fn instance_logs(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
        tail: u32,
    ) -> Result<Vec<LogLine>, ApiError>;
    /// A deployment's custom domains.
    async fn list_domains(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
    ) -> Result<Vec<DomainView>, ApiError>;
    /// Adds a custom domain (pending until DNS proves control). 400 `invalid_domain` /
    /// `wildcard_needs_dns01`, 409 `domain_taken` (used by this or another project).
    async fn add_domain(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
        domain: AddDomain,
    ) -> Result<DomainView, ApiError>;
    /// Checks a pending domain's DNS at the next tick instead of after its backoff.
    async fn verify_domain(
        &self,
        ctx: &RequestContext,
        id: &DomainId,
    ) -> Result<DomainView, ApiError>;
    /// Removes a custom domain; it stops being routed at once. 404 `domain_not_found`.
    async fn remove_domain(&self, ctx: &RequestContext, id: &DomainId) -> Result<(), ApiError>;
    /// Changes a domain's settings (the HTTP -> HTTPS redirect). 404 `domain_not_found`.
    async fn update_domain(
        &self,
        ctx: &RequestContext,
        id: &DomainId,
        update: UpdateDomain,
    ) -> Result<DomainView, ApiError>;
    /// The path routes a deployment serves, by hostname and prefix.
    async fn list_path_routes(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
    ) -> Result<Vec<PathRouteView>, ApiError>;
    /// Serves the deployment under a path of a custom domain of its project. 400
    /// `invalid_path_prefix`, 404 `domain_not_found` (no such domain in the project), 409
    /// `path_taken` (the domain already routes this prefix).
    async fn add_path_route(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
        route: AddPathRoute,
    ) -> Result<PathRouteView, ApiError>;
    /// Removes a path route; the domain's own deployment serves the path again. 404
    /// `path_route_not_found`.
    async fn remove_path_route(
        &self,
        ctx: &RequestContext,
        id: &PathRouteId,
    ) -> Result<(), ApiError>;
    /// The live window: the cached samples (up to 15 minutes) of every instance, oldest
    /// first. 503 `metrics_unavailable` where no streamer runs.
    async fn live_metrics(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
    ) -> Result<Vec<MetricsSample>, ApiError>;
    /// The deployment's history over the last hour, day or week, from the minute rollups.
    async fn metrics_history(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
        range: HistoryRange,
    ) -> Result<MetricsHistory, ApiError>;
    /// What each of a project's deployments uses right now (the newest samples of its
    /// running instances, added up); deployments with none are left out. 503
    /// `metrics_unavailable` where no streamer runs.
    async fn project_metrics_now(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
    ) -> Result<Vec<DeploymentNow>, ApiError>;
    /// A project's usage over the hours that started in `[from_ms, to_ms)` (epoch ms):
    /// totals per deployment and, when `hourly`, the hourly rows (at most 62 days). 400
    /// `invalid_span`.
    async fn project_usage(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
        from_ms: i64,
        to_ms: i64,
        hourly: bool,
    ) -> Result<ProjectUsage, ApiError>;
}

/// Git sources, builds and webhook deliveries of deployments. Every method checks that the
/// caller may see the deployment's project (404 otherwise).
#[async_trait]
pub trait BuildService: Send + Sync {
    /// The deployment's git source, if it has one.
    async fn get_git_source(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<Option<GitSourceView>, ApiError>;
    /// Connects (or changes) the git source; the webhook secret is in the answer the first
    /// time only.
    async fn set_git_source(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
        req: SetGitSource,
    ) -> Result<GitSourceCreated, ApiError>;
    /// Disconnects the repository; builds and deliveries stay listed.
    async fn remove_git_source(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<(), ApiError>;
    /// A new webhook secret, shown in the answer once; the old one stops working.
    async fn rotate_webhook_secret(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<GitSourceCreated, ApiError>;
    /// A new SSH deploy key (the old one stops working once removed at the git host); the
    /// answer shows its public half.
    async fn rotate_deploy_key(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<GitSourceView, ApiError>;
    /// Queues a build of the branch head or of `req.commit`.
    async fn trigger_build(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
        req: TriggerBuild,
    ) -> Result<BuildView, ApiError>;
    /// The deployment's builds, newest first.
    async fn list_builds(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<Vec<BuildView>, ApiError>;
    /// One build and its log.
    async fn get_build(&self, ctx: &RequestContext, id: &BuildId) -> Result<BuildDetail, ApiError>;
    /// Stops a queued or running build.
    async fn cancel_build(&self, ctx: &RequestContext, id: &BuildId)
        -> Result<BuildView, ApiError>;
    /// The deployment's webhook deliveries, newest first.
    async fn list_deliveries(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<Vec<WebhookDeliveryView>, ApiError>;
}

/// Backups of deployments' named volumes and restores from them.
#[async_trait]
pub trait BackupService: Send + Sync {
    /// Queues a backup of the deployment's named volumes now. 400 `no_volumes` when it has
    /// none.
    async fn create_backup(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<BackupView, ApiError>;
    /// The deployment's backups, newest first.
    async fn list_backups(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<Vec<BackupView>, ApiError>;
    /// One backup.
    async fn get_backup(&self, ctx: &RequestContext, id: &BackupId)
        -> Result<BackupView, ApiError>;
    /// Queues a restore of the backup into its deployment, or into `request`'s target
    /// deployment of the same project: the volumes are filled anew and switched while the
    /// deployment is stopped. 409 `backup_not_restorable` unless the backup succeeded; 400
    /// `invalid_restore_target` for a target outside the project or volumes that do not
    /// match (the message says which are accepted).
    async fn restore_backup(
        &self,
        ctx: &RequestContext,
        id: &BackupId,
        request: RestoreRequest,
    ) -> Result<RestoreView, ApiError>;
    /// The entries of directory `path` (e.g. `/volumes/data`) of a backup's snapshot.
    /// 400 `invalid_path` for a path outside `/volumes` and `/databases` or with `..`;
    /// 409 `backup_not_readable` when the backup has no snapshot (any more).
    async fn list_backup_files(
        &self,
        ctx: &RequestContext,
        id: &BackupId,
        path: &str,
    ) -> Result<Vec<SnapshotEntry>, ApiError>;
    /// One restore.
    async fn get_restore(
        &self,
        ctx: &RequestContext,
        id: &RestoreId,
    ) -> Result<RestoreView, ApiError>;
    /// The deployment's restores, newest first.
    async fn list_restores(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<Vec<RestoreView>, ApiError>;
    /// The deployment's backup schedule, if it has one.
    async fn get_backup_schedule(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<Option<BackupScheduleView>, ApiError>;
    /// Sets (or replaces) the deployment's backup schedule and retention. 400 on `cron` or
    /// a `keep_*` field when it is not accepted.
    async fn set_backup_schedule(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
        policy: BackupPolicy,
    ) -> Result<BackupScheduleView, ApiError>;
    /// Removes the schedule (backups taken stay). 404 `backup_schedule_not_found`.
    async fn remove_backup_schedule(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<(), ApiError>;
}

/// Backup repositories: where they are (admins set each region's destination), how to open
/// them with stock `restic`, and their verification (checks and restore drills). Same
/// authorization as the backups: members of the project, or admins.
#[async_trait]
pub trait RepositoryService: Send + Sync {
    /// The project's backup repository (404 `backup_repository_not_found` before its first
    /// backup). With `reveal_password` (project owners and admins only; audited) the answer
    /// holds the password stock `restic` needs, and for an S3 repository, to admins only, the
    /// region's access keys.
    async fn backup_repository(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
        reveal_password: bool,
    ) -> Result<BackupRepositoryView, ApiError>;
    /// Admins: where the region's new backup repositories are made (`local` unless set).
    /// 404 `region_not_found`.
    async fn backup_destination(
        &self,
        ctx: &RequestContext,
        region: &str,
    ) -> Result<BackupDestinationView, ApiError>;
    /// Admins: keep the region's new repositories in an S3-compatible bucket. The settings
    /// are validated and the bucket is listed once with them (400 `invalid_backup_destination`
    /// naming the field, 400 `backup_destination_unreachable` with the server's answer);
    /// existing repositories stay where they are. Audited, without the secret.
    async fn set_backup_destination(
        &self,
        ctx: &RequestContext,
        region: &str,
        destination: S3Destination,
    ) -> Result<BackupDestinationView, ApiError>;
    /// Admins: back to local directories for the region's new repositories.
    async fn remove_backup_destination(
        &self,
        ctx: &RequestContext,
        region: &str,
    ) -> Result<BackupDestinationView, ApiError>;
    /// Queues a check of the project's repository now (restic's `check` reading the
    /// configured share of the data), with a restore drill when asked. 202-style: follow it
    /// by its id or job.
    async fn start_backup_check(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
        restore_drill: bool,
    ) -> Result<BackupCheckView, ApiError>;
    /// The project's checks, newest first.
    async fn list_backup_checks(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
    ) -> Result<Vec<BackupCheckView>, ApiError>;
    /// One check. 404 `backup_check_not_found` when it is not visible to the caller.
    async fn get_backup_check(
        &self,
        ctx: &RequestContext,
        id: &BackupCheckId,
    ) -> Result<BackupCheckView, ApiError>;
    /// Whether the project's scheduled checks include a restore drill (owners and admins).
    async fn set_restore_drill(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
        restore_drill: bool,
    ) -> Result<BackupRepositoryView, ApiError>;
}

/// The handles `server` provides to server functions (Leptos context) and REST handlers.
#[derive(Clone)]
pub struct Services {
    pub accounts: Arc<dyn AccountService>,
    pub projects: Arc<dyn ProjectService>,
    pub admin: Arc<dyn AdminService>,
    pub topology: Arc<dyn TopologyService>,
    pub deployments: Arc<dyn DeploymentService>,
    pub builds: Arc<dyn BuildService>,
    pub backups: Arc<dyn BackupService>,
    pub repositories: Arc<dyn RepositoryService>,
}
