//! The SEMCO enrolment report over HTTP: `/api/v1/report` (bearer token of `ledger_audit` or
//! `ledger_admin`, JSON pages with a `next` cursor) and the downloads of exactly the filtered
//! rows (CSV, JSON, XLSX) that the `/report` page links to (`crate::web::report`).
//!
//! Downloads read the rows in keyset batches (`app::report::Batches`) and stream CSV and JSON
//! batch by batch; the XLSX workbook keeps its rows in temporary files (rust_xlsxwriter's
//! constant-memory mode) and is sent once complete.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::audit_api::{authorise, json, peer_ip, ApiError};
use super::AppState;
use crate::app::report::{self, Batches, Cell, Column, DisplaySettings, Filters, ReportParams, ReportRow};
use crate::store::{Db, StoreError};

/// The route, merged into `audit_api::routes()`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/report", get(report_page))
}

/// `GET /api/v1/report?<filters>&sort=COLUMN&dir=asc|desc&page_size=N&cursor=C`: one page of
/// the report, every column, with the cursors of the next and previous pages (docs/API.md).
/// One page of the report (`GET /api/v1/report`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ReportPage {
    /// The sort used: `{column, direction}`.
    pub sort: ReportSortBody,
    pub page_size: i64,
    /// The filters as understood (absent ones null).
    #[schema(value_type = Object)]
    pub filters: serde_json::Value,
    /// With "as known at": the last log position the answer read.
    pub known_position: Option<i64>,
    /// The rows, every column keyed by its name (docs/AUDIT.md, "The SEMCO enrolment report").
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Value>,
    /// The cursor of the next page (null on the last).
    pub next: Option<String>,
    /// The cursor of the previous page (null on the first).
    pub prev: Option<String>,
}

/// The report's sort.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ReportSortBody {
    pub column: String,
    pub direction: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/report",
    tag = "report",
    description = "One page of the SEMCO enrolment report with the page's filters, every column, keyset-paged: \
                   give `next` or `prev` as `cursor` with the same sort and filters.",
    params(ReportParams),
    responses(
        (status = 200, description = "A page of the report", body = ReportPage),
        (status = 400, description = "A bad parameter", body = super::audit_api::ApiErrorBody),
        (status = 401, description = "No or unknown token", body = super::audit_api::ApiErrorBody),
        (status = 403, description = "A token of another service", body = super::audit_api::ApiErrorBody),
        (status = 429, description = "Too many unknown tokens from this address", body = super::audit_api::ApiErrorBody),
        (status = 503, description = "The database did not answer", body = super::audit_api::ApiErrorBody),
    )
)]
pub async fn report_page(
    State(state): State<AppState>,
    Query(params): Query<ReportParams>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let ip = peer_ip(&state, request.extensions(), request.headers());
    authorise(&state, request.headers(), ip).await?;
    let settings = report::display_settings_of(&state.ledger.db).await.map_err(ApiError::store)?;
    let query = params.parse(settings.sort).map_err(|e| ApiError::bad_parameter(e.0))?;
    let page = report::page(&state.ledger.db, &query).await.map_err(ApiError::store)?;
    let rows: Vec<serde_json::Value> = page.rows.iter().map(|row| row.json(Column::ALL)).collect();
    let body = ReportPage {
        sort: ReportSortBody { column: query.sort.0.as_str().into(), direction: query.sort.1.as_str().into() },
        page_size: query.page_size,
        filters: serde_json::to_value(&query.filters).map_err(ApiError::store)?,
        known_position: page.known_position,
        rows,
        next: page.next,
        prev: page.prev,
    };
    let body = serde_json::to_value(&body).map_err(ApiError::store)?;
    Ok(json(StatusCode::OK, &body))
}

/// A download format of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    Xlsx,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Xlsx => "xlsx",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

/// Every row of the filtered report in its sort as a file named `semco-enrolreport.EXT`,
/// with the page's columns.
pub async fn download(
    db: &Db,
    filters: Filters,
    settings: &DisplaySettings,
    sort: (report::Column, report::Direction),
    format: Format,
) -> Result<Response, StoreError> {
    let batches = Batches::new(db, filters, sort).await?;
    let columns = settings.columns.clone();
    let body = match format {
        Format::Csv => Body::from_stream(text_stream(batches, columns, Format::Csv)),
        Format::Json => Body::from_stream(text_stream(batches, columns, Format::Json)),
        Format::Xlsx => Body::from(xlsx(batches, columns).await?),
    };
    let disposition = format!("attachment; filename=\"{}.{}\"", report::FILE_NAME, format.extension());
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}

/// CSV or JSON, one chunk per batch: the header (`[` for JSON) first, the closing `]` last.
fn text_stream(
    batches: Batches,
    columns: Vec<Column>,
    format: Format,
) -> impl futures_util::Stream<Item = Result<Bytes, StoreError>> + Send {
    enum Step {
        Head,
        Rows { first: bool },
        Done,
    }
    futures_util::stream::unfold((batches, Step::Head), move |(mut batches, step)| {
        let columns = columns.clone();
        async move {
            match step {
                Step::Head => {
                    let head = match format {
                        Format::Csv => csv_bytes(&columns, None),
                        _ => b"[".to_vec(),
                    };
                    Some((Ok(Bytes::from(head)), (batches, Step::Rows { first: true })))
                }
                Step::Rows { first } => match batches.next().await {
                    Err(error) => {
                        tracing::error!(%error, "report download failed");
                        Some((Err(error), (batches, Step::Done)))
                    }
                    Ok(None) => {
                        let tail = if format == Format::Csv { Vec::new() } else { b"\n]\n".to_vec() };
                        Some((Ok(Bytes::from(tail)), (batches, Step::Done)))
                    }
                    Ok(Some(rows)) => {
                        let chunk = match format {
                            Format::Csv => csv_bytes(&columns, Some(&rows)),
                            _ => json_bytes(&columns, &rows, first),
                        };
                        Some((Ok(Bytes::from(chunk)), (batches, Step::Rows { first: false })))
                    }
                },
                Step::Done => None,
            }
        }
    })
}

/// The header line (`rows` = None) or the rows as CSV, every cell neutralised against
/// formula injection (`report::csv_cell`).
pub fn csv_bytes(columns: &[Column], rows: Option<&[ReportRow]>) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let result = match rows {
        None => writer.write_record(columns.iter().map(|c| report::csv_cell(c.header()).into_owned())),
        Some(rows) => rows.iter().try_for_each(|row| {
            writer.write_record(columns.iter().map(|&c| report::csv_cell(&row.display(c)).into_owned()))
        }),
    };
    // Writing into a Vec cannot fail.
    debug_assert!(result.is_ok());
    writer.into_inner().unwrap_or_default()
}

fn json_bytes(columns: &[Column], rows: &[ReportRow], first: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        out.extend_from_slice(if first && i == 0 { b"\n" } else { b",\n" });
        out.extend_from_slice(row.json(columns).to_string().as_bytes());
    }
    out
}

/// The workbook: one sheet "SEMCO enrolments", a header row, numbers as numbers, dates and
/// text as text (strings are never formulas in XLSX).
async fn xlsx(mut batches: Batches, columns: Vec<Column>) -> Result<Vec<u8>, StoreError> {
    let failed =
        |e: rust_xlsxwriter::XlsxError| StoreError::Database(sqlx::Error::Io(std::io::Error::other(e.to_string())));
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet_with_constant_memory().map_err(failed)?;
    sheet.set_name("SEMCO enrolments").map_err(failed)?;
    let bold = rust_xlsxwriter::Format::new().set_bold();
    for (i, column) in columns.iter().enumerate() {
        sheet.write_string_with_format(0, i as u16, column.header(), &bold).map_err(failed)?;
    }
    let mut line: u32 = 1;
    while let Some(rows) = batches.next().await? {
        for row in rows {
            for (i, &column) in columns.iter().enumerate() {
                let col = i as u16;
                match row.cell(column) {
                    Cell::Int(_) if column.is_date() => sheet.write_string(line, col, row.display(column)).map(drop),
                    Cell::Int(v) => sheet.write_number(line, col, v as f64).map(drop),
                    Cell::Real(v) => sheet.write_number(line, col, v).map(drop),
                    Cell::Text(v) => sheet.write_string(line, col, v).map(drop),
                    Cell::Empty => Ok(()),
                }
                .map_err(failed)?;
            }
            line += 1;
        }
    }
    tokio::task::spawn_blocking(move || workbook.save_to_buffer())
        .await
        .map_err(|e| StoreError::Database(sqlx::Error::Io(std::io::Error::other(e.to_string()))))?
        .map_err(failed)
}
