//! The integrity half of the audit API: verification (the last recorded run; a new run, one at
//! a time per ledger), signed checkpoints (list, latest, public key) and proofs against them
//! (the same JSON as `enrol-ledger prove`, so `enrol-ledger check-proof` accepts it).
//! Same authorisation and error shape as `audit_api`.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::audit_api::{json_of, parse_i64, ApiError, ApiErrorBody, Caller};
use super::AppState;
use crate::app::verification::{self, VerifyOutcome};
use crate::app::verify_run;
use crate::proof::check::{self, ConsistencyProof, InclusionProof};
use crate::proof::{store as proof_store, Checkpoint, ProofError};

/// Checkpoints per page of `/api/v1/checkpoints` unless `limit` says fewer.
pub const CHECKPOINTS_PAGE_MAX: i64 = 1000;
const CHECKPOINTS_PAGE_DEFAULT: i64 = 100;

/// Ledgers (database URLs) with a verification running in this process.
fn running() -> &'static Mutex<HashSet<String>> {
    static RUNNING: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    RUNNING.get_or_init(Default::default)
}

/// Proofs read every leaf hash up to their checkpoint (32 bytes an event): at most two at a
/// time, the others wait their turn.
fn proof_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| tokio::sync::Semaphore::new(2))
}

/// Takes the ledger's verification slot; `None` when a run holds it. Released on drop.
pub struct VerifySlot(String);

impl VerifySlot {
    pub fn take(url: &str) -> Option<Self> {
        let mut running = running().lock().unwrap_or_else(|p| p.into_inner());
        running.insert(url.to_owned()).then(|| Self(url.to_owned()))
    }
}

impl Drop for VerifySlot {
    fn drop(&mut self) {
        running().lock().unwrap_or_else(|p| p.into_inner()).remove(&self.0);
    }
}

fn proof_error(error: ProofError) -> ApiError {
    match error {
        ProofError::Invalid(why) => ApiError::new(StatusCode::CONFLICT, "checkpointmismatch", why),
        other => ApiError::store(other),
    }
}

/// A recorded verification run (`app::verification`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerificationRecord {
    /// When the run finished, RFC 3339 (UTC).
    pub finished_at: String,
    /// The same in microseconds since the epoch.
    pub finished_at_us: i64,
    /// How long ago it finished, in seconds (at the time of the answer).
    pub age_seconds: i64,
    /// No problem at all (hash chain, positions, versions, projections, checkpoints).
    pub ok: bool,
    /// `ok` or `failed`.
    pub result: String,
    /// How many problems it found.
    pub mismatches: i64,
    /// How many events it read.
    pub log_length: i64,
    /// The log's head position when it finished.
    pub head_position: i64,
    pub duration_ms: i64,
    /// Who ran it: `cli` (`enrol-ledger verify`), `api` (`POST /api/v1/verify`), `web`.
    pub source: String,
}

impl VerificationRecord {
    pub fn of(outcome: &VerifyOutcome) -> Self {
        let now = crate::store::Db::now_micros();
        Self {
            finished_at: crate::app::audit::rfc3339(outcome.time_us),
            finished_at_us: outcome.time_us,
            age_seconds: (now - outcome.time_us).max(0) / 1_000_000,
            ok: outcome.ok,
            result: outcome.result().to_owned(),
            mismatches: outcome.mismatches,
            log_length: outcome.log_length,
            head_position: outcome.head_position,
            duration_ms: outcome.duration_ms,
            source: outcome.source.clone(),
        }
    }
}

/// What `POST /api/v1/verify` answers: the run as recorded and what it found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerificationRun {
    pub record: VerificationRecord,
    /// Every event's hash matches its content and its predecessor's hash.
    pub chain_intact: bool,
    /// Stored checkpoints the log was compared with.
    pub checkpoints_checked: i64,
    /// The first 100 problems, one line each (`mismatches` counts them all).
    pub problems: Vec<String>,
}

/// At most this many problems are answered.
pub const PROBLEMS_SHOWN: usize = 100;

/// `GET /api/v1/verification`: the last recorded verification run.
#[utoipa::path(
    get,
    path = "/api/v1/verification",
    tag = "integrity",
    description = "The newest recorded verification run, whoever ran it (`enrol-ledger verify`, \
                   `POST /api/v1/verify`, the integrity page).",
    responses(
        (status = 200, description = "The newest recorded run", body = VerificationRecord),
        (status = 404, description = "No verification was recorded yet", body = ApiErrorBody),
        (status = 401, description = "No or unknown token", body = ApiErrorBody),
        (status = 403, description = "A token of another service", body = ApiErrorBody),
    )
)]
pub async fn verification(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    Caller::of(&state, request).authorise(&state).await?;
    match verification::last_verification(&state.ledger.db).await.map_err(ApiError::store)? {
        Some(outcome) => Ok(json_of(StatusCode::OK, &VerificationRecord::of(&outcome))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "notfound", "No verification has been recorded yet")),
    }
}

/// Runs one verification of the ledger and records it (with `source`); `Conflict` when one
/// already runs for this ledger in this process. The run goes on to its record even when the
/// caller goes away.
pub async fn verify_now(state: &AppState, source: &'static str) -> Result<VerificationRun, ApiError> {
    let db = state.ledger.db.clone();
    let Some(slot) = VerifySlot::take(&db.url) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "verificationrunning",
            "A verification of this ledger is already running; GET /api/v1/verification shows the last result",
        ));
    };
    // On a blocking thread of its own (the verify's fold is CPU work, and its future is not
    // `Send`), driven by this runtime's I/O.
    let runtime = tokio::runtime::Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        runtime.block_on(async move {
            let _slot = slot;
            verify_run::verify_and_record(&db, source).await
        })
    });
    let run = task.await.map_err(ApiError::store)?.map_err(proof_error)?;
    Ok(VerificationRun {
        record: VerificationRecord::of(&run.outcome),
        chain_intact: run.report.chain_intact,
        checkpoints_checked: run.checkpoints_checked,
        problems: run.report.problems.into_iter().take(PROBLEMS_SHOWN).collect(),
    })
}

/// `POST /api/v1/verify`: runs a verification now and records it.
#[utoipa::path(
    post,
    path = "/api/v1/verify",
    tag = "integrity",
    description = "Verifies the whole log (hash chain, positions, stream versions, every event against its \
                   stream, every projection row against a fresh fold) and the log against every stored signed \
                   checkpoint, then records the run. Bounded memory; one run per ledger at a time (409 while \
                   one runs). Reads only.",
    responses(
        (status = 200, description = "The run, as recorded (`ok` false names the problems)", body = VerificationRun),
        (status = 409, description = "A verification of this ledger is already running", body = ApiErrorBody),
        (status = 401, description = "No or unknown token", body = ApiErrorBody),
        (status = 403, description = "A token of another service", body = ApiErrorBody),
    )
)]
pub async fn verify(State(state): State<AppState>, request: axum::extract::Request) -> Result<Response, ApiError> {
    Caller::of(&state, request).authorise(&state).await?;
    let run = verify_now(&state, "api").await?;
    Ok(json_of(StatusCode::OK, &run))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckpointsQuery {
    /// Checkpoints of positions after this one (0: from the first).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub after: Option<String>,
    /// At most this many (1 to 1000, default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// A page of stored checkpoints.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckpointPage {
    pub after: i64,
    /// Give it as `after` for the next page (the last checkpoint's position, or `after`).
    pub next_after: i64,
    /// Oldest position first; a checkpoint's id is its `position`.
    pub checkpoints: Vec<Checkpoint>,
}

/// `GET /api/v1/checkpoints?after=P&limit=N`.
#[utoipa::path(
    get,
    path = "/api/v1/checkpoints",
    tag = "integrity",
    params(CheckpointsQuery),
    responses(
        (status = 200, description = "Stored checkpoints by position", body = CheckpointPage),
        (status = 400, description = "A bad parameter", body = ApiErrorBody),
        (status = 401, description = "No or unknown token", body = ApiErrorBody),
    )
)]
pub async fn checkpoints(
    State(state): State<AppState>,
    Query(query): Query<CheckpointsQuery>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    Caller::of(&state, request).authorise(&state).await?;
    let after = parse_i64("after", query.after.as_deref(), 0, 0..=i64::MAX)?;
    let limit = parse_i64("limit", query.limit.as_deref(), CHECKPOINTS_PAGE_DEFAULT, 1..=CHECKPOINTS_PAGE_MAX)?;
    let mut conn = state.ledger.db.pool.acquire().await.map_err(ApiError::store)?;
    let checkpoints = proof_store::page(&mut conn, after, limit).await.map_err(proof_error)?;
    let next_after = checkpoints.last().map_or(after, |c| c.position);
    Ok(json_of(StatusCode::OK, &CheckpointPage { after, next_after, checkpoints }))
}

/// `GET /api/v1/checkpoints/latest`.
#[utoipa::path(
    get,
    path = "/api/v1/checkpoints/latest",
    tag = "integrity",
    responses(
        (status = 200, description = "The newest stored checkpoint", body = Checkpoint),
        (status = 404, description = "No checkpoint was signed yet", body = ApiErrorBody),
        (status = 401, description = "No or unknown token", body = ApiErrorBody),
    )
)]
pub async fn latest_checkpoint(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    Caller::of(&state, request).authorise(&state).await?;
    let mut conn = state.ledger.db.pool.acquire().await.map_err(ApiError::store)?;
    match proof_store::latest(&mut conn).await.map_err(proof_error)? {
        Some(checkpoint) => Ok(json_of(StatusCode::OK, &checkpoint)),
        None => Err(no_checkpoint()),
    }
}

fn no_checkpoint() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "notfound", "No checkpoint has been signed yet")
}

/// The Ed25519 public key that signs checkpoints.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicKey {
    /// The first 16 hex digits of SHA-256 over the raw key: each checkpoint's `key_id`.
    pub key_id: String,
    /// The raw 32-byte key, 64 hex digits (what `check-proof --public-key` and
    /// `verify --public-key` take).
    pub public_key: String,
    /// Always `ed25519`.
    pub algorithm: String,
}

/// `GET /api/v1/checkpoints/public-key`: the key of the newest checkpoint.
#[utoipa::path(
    get,
    path = "/api/v1/checkpoints/public-key",
    tag = "integrity",
    description = "The public key recorded with the newest checkpoint. A convenience copy: compare it with the key \
                   held outside this machine (`enrol-ledger checkpoint --public-key` on the server).",
    responses(
        (status = 200, description = "The key", body = PublicKey),
        (status = 404, description = "No checkpoint, or its key was not recorded", body = ApiErrorBody),
        (status = 401, description = "No or unknown token", body = ApiErrorBody),
    )
)]
pub async fn public_key(State(state): State<AppState>, request: axum::extract::Request) -> Result<Response, ApiError> {
    Caller::of(&state, request).authorise(&state).await?;
    let mut conn = state.ledger.db.pool.acquire().await.map_err(ApiError::store)?;
    let Some(latest) = proof_store::latest(&mut conn).await.map_err(proof_error)? else { return Err(no_checkpoint()) };
    match proof_store::public_key(&mut conn, &latest.key_id).await.map_err(proof_error)? {
        Some(public_key) => {
            Ok(json_of(StatusCode::OK, &PublicKey { key_id: latest.key_id, public_key, algorithm: "ed25519".into() }))
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "notfound",
            format!("The public key of key {} was not recorded (it signed before migration 16)", latest.key_id),
        )),
    }
}

/// The stored checkpoint a parameter names (its position), or the newest when not given.
async fn checkpoint_named(
    conn: &mut sqlx::AnyConnection,
    name: &str,
    value: Option<&str>,
) -> Result<Checkpoint, ApiError> {
    let found = match value {
        Some(text) => {
            let position = parse_i64(name, Some(text), 0, 0..=i64::MAX)?;
            proof_store::at(conn, position).await.map_err(proof_error)?.ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, "notfound", format!("No checkpoint of position {position}"))
            })?
        }
        None => proof_store::latest(conn).await.map_err(proof_error)?.ok_or_else(no_checkpoint)?,
    };
    Ok(found)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    /// The event's log position.
    #[param(value_type = i64, minimum = 1, required = true)]
    pub position: Option<String>,
    /// The checkpoint's id (its position); default the newest.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub checkpoint: Option<String>,
}

/// `GET /api/v1/proofs/inclusion?position=P&checkpoint=ID`.
#[utoipa::path(
    get,
    path = "/api/v1/proofs/inclusion",
    tag = "integrity",
    description = "Proves that the event at `position` is in the log a checkpoint signed: the same JSON as \
                   `enrol-ledger prove --position P --checkpoint FILE`; `enrol-ledger check-proof` checks it with \
                   the public key alone.",
    params(InclusionQuery),
    responses(
        (status = 200, description = "The proof", body = InclusionProof),
        (status = 400, description = "A bad or missing parameter, or a position the checkpoint does not cover", body = ApiErrorBody),
        (status = 404, description = "No such checkpoint", body = ApiErrorBody),
        (status = 409, description = "The log does not match the checkpoint: no proof can be made", body = ApiErrorBody),
        (status = 401, description = "No or unknown token", body = ApiErrorBody),
    )
)]
pub async fn inclusion(
    State(state): State<AppState>,
    Query(query): Query<InclusionQuery>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    Caller::of(&state, request).authorise(&state).await?;
    let Some(position) = query.position.as_deref() else {
        return Err(ApiError::bad_parameter("position is required"));
    };
    let position = parse_i64("position", Some(position), 1, 1..=i64::MAX)?;
    let _permit = proof_permits().acquire().await.map_err(ApiError::store)?;
    let mut conn = state.ledger.db.pool.acquire().await.map_err(ApiError::store)?;
    let checkpoint = checkpoint_named(&mut conn, "checkpoint", query.checkpoint.as_deref()).await?;
    if position > checkpoint.position {
        return Err(ApiError::bad_parameter(format!(
            "position {position}: the checkpoint covers positions 1 to {}",
            checkpoint.position
        )));
    }
    let proof = check::prove_inclusion(&mut conn, position, &checkpoint).await.map_err(proof_error)?;
    Ok(json_of(StatusCode::OK, &proof))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// The older checkpoint's id (its position).
    #[param(value_type = i64, minimum = 0, required = true)]
    pub from: Option<String>,
    /// The newer checkpoint's id (its position); default the newest.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub to: Option<String>,
}

/// `GET /api/v1/proofs/consistency?from=ID&to=ID`.
#[utoipa::path(
    get,
    path = "/api/v1/proofs/consistency",
    tag = "integrity",
    description = "Proves that the log one checkpoint signed is a prefix of the log a later one signed: the same \
                   JSON as `enrol-ledger prove --from FILE1 --to FILE2`.",
    params(ConsistencyQuery),
    responses(
        (status = 200, description = "The proof", body = ConsistencyProof),
        (status = 400, description = "A bad or missing parameter, or `from` newer than `to`", body = ApiErrorBody),
        (status = 404, description = "No such checkpoint", body = ApiErrorBody),
        (status = 409, description = "The log does not match a checkpoint: no proof can be made", body = ApiErrorBody),
        (status = 401, description = "No or unknown token", body = ApiErrorBody),
    )
)]
pub async fn consistency(
    State(state): State<AppState>,
    Query(query): Query<ConsistencyQuery>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    Caller::of(&state, request).authorise(&state).await?;
    if query.from.is_none() {
        return Err(ApiError::bad_parameter("from is required"));
    }
    let _permit = proof_permits().acquire().await.map_err(ApiError::store)?;
    let mut conn = state.ledger.db.pool.acquire().await.map_err(ApiError::store)?;
    let from = checkpoint_named(&mut conn, "from", query.from.as_deref()).await?;
    let to = checkpoint_named(&mut conn, "to", query.to.as_deref()).await?;
    if from.position > to.position {
        return Err(ApiError::bad_parameter(format!(
            "from ({}) covers more events than to ({}): give the older checkpoint as from",
            from.position, to.position
        )));
    }
    let proof = check::prove_consistency(&mut conn, &from, &to).await.map_err(proof_error)?;
    Ok(json_of(StatusCode::OK, &proof))
}
