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
async fn report_page(
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
    let body = serde_json::json!({
        "sort": { "column": query.sort.0.as_str(), "direction": query.sort.1.as_str() },
        "page_size": query.page_size,
        "filters": query.filters,
        "known_position": page.known_position,
        "rows": rows,
        "next": page.next,
        "prev": page.prev,
    });
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
