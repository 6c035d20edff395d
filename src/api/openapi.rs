//! The audit API's OpenAPI 3.1 document, generated from the code with `utoipa` (the handlers'
//! `#[utoipa::path]`, the response types' `ToSchema`), served at `/api/v1/openapi.json`, and
//! its rendered reference at `/api/v1/docs` (server-rendered HTML, no script). Both are public:
//! they describe the API, they hold no data.
//!
//! To add a path: give its handler a `#[utoipa::path(...)]` and add the handler to `paths(...)`
//! below (one line); its schemas are collected from it.

use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{audit_api, audit_integrity, AppState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "enrol-ledger audit API",
        description = "The read-only audit API of enrol-ledger (docs/AUDIT.md): the event log by position, the \
                       history of a booking, user or course, enrolments as of a time or position, verification, \
                       signed checkpoints and proofs, the SEMCO enrolment report and the health check. Every path needs `Authorization: Bearer TOKEN` with a token of \
                       the `ledger_audit` or `ledger_admin` service; errors are `{error, message}` with the HTTP \
                       status that says what went wrong.",
        license(name = "MIT", identifier = "MIT")
    ),
    paths(
        audit_api::events,
        audit_api::booking_history,
        audit_api::user_history,
        audit_api::course_history,
        audit_api::as_of,
        audit_integrity::verification,
        audit_integrity::verify,
        audit_integrity::checkpoints,
        audit_integrity::latest_checkpoint,
        audit_integrity::public_key,
        audit_integrity::inclusion,
        audit_integrity::consistency,
        super::report_api::report_page,
        super::health_api::health,
    ),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    tags(
        (name = "log", description = "The event log itself"),
        (name = "history", description = "Who changed what, when and why"),
        (name = "as-of", description = "Who was enrolled and active when"),
        (name = "integrity", description = "Verification, signed checkpoints and proofs"),
        (name = "report", description = "The SEMCO enrolment report"),
        (name = "health", description = "The health check"),
    )
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token of the ledger_audit or ledger_admin service (enrol-ledger token create)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as JSON.
pub fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serialises")
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(openapi_json)).route("/api/v1/docs", get(docs))
}

async fn openapi_json() -> Response {
    audit_api::json_of(StatusCode::OK, &document())
}

async fn docs() -> Response {
    crate::web::layout::html_response(StatusCode::OK, render(&document()))
}

/// A schema's type in words: `$ref`s link to their section, arrays name their items.
fn type_of(schema: &Value) -> Markup {
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let name = target.rsplit('/').next().unwrap_or(target);
        return html! { a href={ "#schema-" (name) } { (name) } };
    }
    for combiner in ["oneOf", "anyOf", "allOf"] {
        if let Some(list) = schema.get(combiner).and_then(Value::as_array) {
            let word = if combiner == "allOf" { " and " } else { " or " };
            return html! {
                @for (i, item) in list.iter().enumerate() {
                    @if i > 0 { (word) }
                    (type_of(item))
                }
            };
        }
    }
    let types: Vec<String> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let format = schema.get("format").and_then(Value::as_str);
    html! {
        @if types.is_empty() && schema.get("properties").is_none() { "any JSON value" }
        @for (i, t) in types.iter().enumerate() {
            @if i > 0 { " or " }
            @if t == "array" {
                "array of " (schema.get("items").map(type_of).unwrap_or_else(|| html! { "any" }))
            } @else {
                (t)
            }
        }
        @if let Some(format) = format { " (" (format) ")" }
        @if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            ": one of "
            @for (i, v) in values.iter().enumerate() {
                @if i > 0 { ", " }
                code { (v) }
            }
        }
    }
}

fn limits(schema: &Value) -> String {
    let mut out = Vec::new();
    if let Some(min) = schema.get("minimum") {
        out.push(format!("≥ {min}"));
    }
    if let Some(max) = schema.get("maximum") {
        out.push(format!("≤ {max}"));
    }
    out.join(", ")
}

fn text(value: Option<&Value>) -> &str {
    value.and_then(Value::as_str).unwrap_or("")
}

/// The reference page: every path with its parameters and responses, then every schema.
pub fn render(doc: &Value) -> Markup {
    let info = &doc["info"];
    let empty = serde_json::Map::new();
    let paths = doc["paths"].as_object().unwrap_or(&empty);
    let schemas = doc["components"]["schemas"].as_object().unwrap_or(&empty);
    let title = format!("{} — reference", text(info.get("title")));
    crate::web::layout::bare(
        &title,
        html! {
            h1 { (text(info.get("title"))) " " small { "version " (text(info.get("version"))) } }
            p { (text(info.get("description"))) }
            p {
                "OpenAPI " (text(doc.get("openapi"))) " document: "
                a href="/api/v1/openapi.json" { "/api/v1/openapi.json" }
                ". Authentication: " code { "Authorization: Bearer TOKEN" } "."
            }
            nav aria-label="Paths" {
                h2 { "Paths" }
                ul {
                    @for (path, item) in paths {
                        @for (method, op) in item.as_object().unwrap_or(&empty) {
                            li { a href={ "#" (op_id(method, op, path)) } { code { (method.to_uppercase()) " " (path) } } }
                        }
                    }
                }
            }
            @for (path, item) in paths {
                @for (method, op) in item.as_object().unwrap_or(&empty) {
                    (operation(path, method, op))
                }
            }
            section aria-labelledby="schemas" {
                h2 id="schemas" { "Schemas" }
                @for (name, schema) in schemas {
                    (schema_section(name, schema))
                }
            }
        },
    )
}

fn op_id(method: &str, op: &Value, path: &str) -> String {
    match op.get("operationId").and_then(Value::as_str) {
        Some(id) => format!("op-{id}"),
        None => format!("op-{method}-{}", path.replace(['/', '{', '}'], "-")),
    }
}

fn operation(path: &str, method: &str, op: &Value) -> Markup {
    let params = op.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
    let responses = op.get("responses").and_then(Value::as_object).cloned().unwrap_or_default();
    let id = op_id(method, op, path);
    html! {
        section aria-labelledby=(id) {
            h2 id=(id) { code { (method.to_uppercase()) " " (path) } }
            @if let Some(summary) = op.get("summary").and_then(Value::as_str) { p { (summary) } }
            @if let Some(description) = op.get("description").and_then(Value::as_str) { p { (description) } }
            h3 { "Parameters" }
            @if params.is_empty() {
                p { "None." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "name" } th scope="col" { "in" } th scope="col" { "required" }
                        th scope="col" { "type" } th scope="col" { "description" }
                    } }
                    tbody {
                        @for p in &params {
                            tr {
                                th scope="row" { code { (text(p.get("name"))) } }
                                td { (text(p.get("in"))) }
                                td { @if p.get("required").and_then(Value::as_bool) == Some(true) { "yes" } @else { "no" } }
                                td {
                                    (p.get("schema").map(type_of).unwrap_or_else(|| html! { "string" }))
                                    @let l = p.get("schema").map(limits).unwrap_or_default();
                                    @if !l.is_empty() { " " (l) }
                                }
                                td { (text(p.get("description"))) }
                            }
                        }
                    }
                }
            }
            h3 { "Responses" }
            table {
                thead { tr { th scope="col" { "status" } th scope="col" { "description" } th scope="col" { "body" } } }
                tbody {
                    @for (status, response) in &responses {
                        tr {
                            th scope="row" { (status) }
                            td { (text(response.get("description"))) }
                            td {
                                @if let Some(schema) = response.pointer("/content/application~1json/schema") {
                                    (type_of(schema))
                                } @else { "none" }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn schema_section(name: &str, schema: &Value) -> Markup {
    let empty = serde_json::Map::new();
    let properties = schema.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    html! {
        section aria-labelledby={ "schema-" (name) } {
            h3 id={ "schema-" (name) } { (name) }
            @if let Some(description) = schema.get("description").and_then(Value::as_str) { p { (description) } }
            @if properties.is_empty() {
                p { "Type: " (type_of(schema)) }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "field" } th scope="col" { "type" } th scope="col" { "required" }
                        th scope="col" { "description" }
                    } }
                    tbody {
                        @for (field, property) in properties {
                            tr {
                                th scope="row" { code { (field) } }
                                td { (type_of(property)) }
                                td { @if required.contains(&field.as_str()) { "yes" } @else { "no" } }
                                td { (text(property.get("description"))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_openapi_3_1_with_bearer_security() {
        let doc = super::document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
        if let Ok(path) = std::env::var("DUMP_OPENAPI") {
            std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        }
    }
}
