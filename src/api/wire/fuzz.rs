//! Property-based fuzzing of everything a request touches before the database: the request
//! reader (query string, url-encoded and multipart bodies), the parameter validator against
//! every function's description, and both writers. Properties: nothing panics; every answer
//! is a Moodle result or error envelope; XML always parses back with a real XML parser; JSON
//! always parses back.
//!
//! Short by default (`FUZZ_CASES_DEFAULT` per property, a few seconds in the normal suite).
//! The long mode: `ENROL_LEDGER_FUZZ_CASES=10000000 cargo test --release --lib wire::fuzz`
//! (docs/SECURITY.md records a run's figures).

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

use super::encode::{clean_return, error_body, success_body, WsError};
use super::params::{validate, Desc, ParamType, Required, Value};
use super::request::{self, Format, ReadError, MULTIPART_BOUNDARY_BYTES_MAX};
use crate::api::functions;

/// Cases per property in the normal suite.
const FUZZ_CASES_DEFAULT: u32 = 512;

fn config() -> Config {
    let cases =
        std::env::var("ENROL_LEDGER_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(FUZZ_CASES_DEFAULT);
    Config { cases, failure_persistence: Some(Box::new(FileFailurePersistence::Off)), ..Config::default() }
}

/// An XML document that a conforming parser accepts, or the test fails with it.
fn assert_well_formed(xml: &str) -> Result<(), TestCaseError> {
    match roxmltree::Document::parse(xml) {
        Ok(_) => Ok(()),
        Err(error) => Err(TestCaseError::fail(format!("not well-formed ({error}): {xml:?}"))),
    }
}

fn assert_json(json: &str) -> Result<serde_json::Value, TestCaseError> {
    serde_json::from_str(json).map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {json:?}")))
}

/// An error envelope, in both formats, with and without debuginfo.
fn assert_envelope(error: &WsError) -> Result<(), TestCaseError> {
    for debug in [false, true] {
        let json = assert_json(&error_body(Format::Json, error, debug))?;
        for key in ["exception", "message"] {
            prop_assert!(json.get(key).is_some_and(serde_json::Value::is_string), "{key} in {json}");
        }
        let xml = error_body(Format::Xml, error, debug);
        assert_well_formed(&xml)?;
        prop_assert!(xml.contains("<EXCEPTION class="));
    }
    Ok(())
}

/// A successful answer, in both formats.
fn assert_result(desc: &Desc, value: &Value) -> Result<(), TestCaseError> {
    assert_json(&success_body(Format::Json, Some(desc), value))?;
    let xml = success_body(Format::Xml, Some(desc), value);
    assert_well_formed(&xml)?;
    prop_assert!(xml.contains("<RESPONSE>"));
    Ok(())
}

/// What a request gets before the database: a read error, or, for each function, a
/// validation error or validated parameters (which, as a structure, must encode too).
fn answer_request(query: &[u8], content_type: Option<&str>, body: &[u8]) -> Result<(), TestCaseError> {
    let ws = match request::read_request(query, content_type, body) {
        Ok(ws) => ws,
        Err(error) => return assert_envelope(&error.to_ws_error()),
    };
    for function in functions::all() {
        let params = function.params().to_vec();
        match validate(&params, ws.params.clone()) {
            Err(debuginfo) => assert_envelope(&WsError::invalid_parameter(debuginfo))?,
            Ok(value) => {
                let desc = Desc::Single(params, Required::Required);
                match clean_return(&desc, &value) {
                    Ok(cleaned) => assert_result(&desc, &cleaned)?,
                    Err(debuginfo) => assert_envelope(&WsError::invalid_response(debuginfo))?,
                }
            }
        }
    }
    Ok(())
}

/// Names SEMCO and the ledger's functions use, with PHP's bracket syntax around them.
fn name_strategy() -> impl Strategy<Value = String> {
    let base = prop::sample::select(vec![
        "userid",
        "courseid",
        "timestart",
        "timeend",
        "enrolmentid",
        "enrolmentids",
        "users",
        "courses",
        "field",
        "value",
        "values",
        "id",
        "username",
        "customfields",
        "type",
        "name",
        "wstoken",
        "wsfunction",
        "moodlewsrestformat",
        "grade",
        "timecompleted",
        "config",
        "criteria",
        "recompletionperiod",
    ]);
    let suffix = prop::sample::select(vec![
        "",
        "[]",
        "[0]",
        "[1]",
        "[0][username]",
        "[0][customfields][0][type]",
        "[0][customfields][0][value]",
        "[0][id]",
        "[x]",
        "[",
        "]",
        "[0][",
        "[][]",
        "[-1]",
        "[9223372036854775807]",
    ]);
    (base, suffix).prop_map(|(b, s)| format!("{b}{s}"))
}

/// Values that probe each `PARAM_*` check: numbers at and past the limits, text with
/// controls and markup, invalid UTF-8 as percent escapes.
fn value_text_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "0",
            "1",
            "-1",
            "2147483647",
            "2147483648",
            "9223372036854775807",
            "99999999999999999999",
            "1e3",
            "1.5",
            "NaN",
            "",
            " ",
            "true",
            "json",
            "xml",
            "a%00b",
            "%FF%FE",
            "%EF%BF%BE",
            "%01%0B%1F",
            "<b>x</b>",
            "&amp;",
            "x@y.z",
            "kn-1",
            "semco_userid",
            "id",
            "shortname",
            "username",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'%' | b'[' | b']' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn form_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec((name_strategy(), value_text_strategy()), 0..12).prop_map(|pairs| {
        pairs.iter().map(|(n, v)| format!("{}={}", percent_encode(n), percent_encode(v))).collect::<Vec<_>>().join("&")
    })
}

/// A boundary of RFC 2046's `bchars`, 1 to 70 of them (not ending in a space).
fn boundary_strategy() -> impl Strategy<Value = String> {
    prop::string::string_regex(&format!("[0-9A-Za-z'()+_,./:=?-]{{1,{MULTIPART_BOUNDARY_BYTES_MAX}}}")).unwrap()
}

fn multipart_body(boundary: &str, fields: &[(Vec<u8>, Vec<u8>)], newline: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(b"--");
        body.extend_from_slice(boundary.as_bytes());
        body.extend_from_slice(newline);
        body.extend_from_slice(b"Content-Disposition: form-data; name=\"");
        for &byte in name {
            if byte == b'"' || byte == b'\\' {
                body.push(b'\\');
            }
            body.push(byte);
        }
        body.extend_from_slice(b"\"");
        body.extend_from_slice(newline);
        body.extend_from_slice(newline);
        body.extend_from_slice(value);
        body.extend_from_slice(newline);
    }
    body.extend_from_slice(b"--");
    body.extend_from_slice(boundary.as_bytes());
    body.extend_from_slice(b"--");
    body.extend_from_slice(newline);
    body
}

fn desc_strategy() -> impl Strategy<Value = Desc> {
    let ty = prop::sample::select(vec![
        ParamType::Int,
        ParamType::Bool,
        ParamType::Float,
        ParamType::Text,
        ParamType::Raw,
        ParamType::NoTags,
        ParamType::AlphaNumExt,
        ParamType::Username,
        ParamType::Email,
        ParamType::Url,
    ]);
    let required =
        prop_oneof![Just(Required::Required), Just(Required::Optional), Just(Required::Default(Value::Null))];
    let leaf = (ty, required.clone(), any::<bool>()).prop_map(|(ty, required, allow_null)| Desc::Value {
        ty,
        required,
        allow_null,
        desc: "",
    });
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            (
                prop::collection::vec(
                    (prop::sample::select(vec!["id", "name", "value", "warnings", "x"]), inner.clone()),
                    0..4
                ),
                required.clone()
            )
                .prop_map(|(keys, required)| Desc::Single(keys, required)),
            (inner, required.clone()).prop_map(|(d, required)| Desc::Multiple(Box::new(d), required)),
        ]
    })
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop::sample::select(vec![
                '\u{0}',
                '\u{1}',
                '\u{b}',
                '\u{1f}',
                '<',
                '&',
                '"',
                '\'',
                ']',
                '\u{fffe}',
                '\u{ffff}',
                '\u{d7ff}',
                '\u{e000}',
                '\u{10ffff}',
                'a',
                '\n',
                '\r',
                '\t'
            ]),
            0..16
        )
        .prop_map(|chars| chars.into_iter().collect()),
    ]
}

fn value_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        hostile_string().prop_map(Value::Str),
    ];
    leaf.prop_recursive(3, 30, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::List),
            prop::collection::vec((prop::sample::select(vec!["id", "name", "value", "warnings", "x"]), inner), 0..5)
                .prop_map(|e| Value::Struct(e.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes as query and body, each content type.
    #[test]
    fn fuzz_request_bytes_always_answer(
        query in prop::collection::vec(any::<u8>(), 0..200),
        body in prop::collection::vec(any::<u8>(), 0..400),
        kind in 0..4usize,
    ) {
        let content_type = ["application/x-www-form-urlencoded", "multipart/form-data; boundary=ab", "multipart/form-data", "text/plain"][kind];
        answer_request(&query, Some(content_type), &body)?;
        let _ = request::format_from_query(&query);
    }

    /// Well-formed forms of the real parameter names with hostile values: reaches deep into
    /// the validator of every function.
    #[test]
    fn fuzz_forms_through_every_validator(query in form_strategy(), body in form_strategy()) {
        answer_request(query.as_bytes(), Some("application/x-www-form-urlencoded"), body.as_bytes())?;
    }

    /// Multipart with any boundary allowed: the fields come back exactly (a field whose value
    /// holds the delimiter is cut there, as in PHP, so such values are left out), CRLF or LF.
    #[test]
    fn fuzz_multipart_round_trip(
        boundary in boundary_strategy(),
        fields in prop::collection::vec((prop::collection::vec(any::<u8>(), 1..12), prop::collection::vec(any::<u8>(), 0..40)), 0..8),
        crlf in any::<bool>(),
    ) {
        let newline: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let delimiter = [b"\n--", boundary.as_bytes()].concat();
        let fields: Vec<_> = fields
            .into_iter()
            .filter(|(name, value)| {
                !name.contains(&0) && !name.iter().any(|b| *b == b'\n' || *b == b'\r')
                    && !value.windows(delimiter.len()).any(|w| w == delimiter.as_slice())
                    && !value.starts_with(&delimiter[1..])
                    && !value.ends_with(b"\r")
            })
            .collect();
        let body = multipart_body(&boundary, &fields, newline);
        let content_type = format!("multipart/form-data; boundary=\"{boundary}\"");
        let parsed = request::parse_multipart(&content_type, &body);
        prop_assert_eq!(parsed, Ok(fields.clone()), "{:?}", String::from_utf8_lossy(&body));
        answer_request(b"", Some(&content_type), &body)?;
    }

    /// Multipart bodies cut and spliced anywhere never panic and always answer.
    #[test]
    fn fuzz_multipart_garbage(
        boundary in boundary_strategy(),
        chunks in prop::collection::vec(prop::collection::vec(prop::sample::select(b"-\r\n\"; =name:Content-Disposition\\x\xffab".to_vec()), 0..40), 0..10),
    ) {
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let separator = [b"\r\n--".as_slice(), boundary.as_bytes(), b"\r\n"].concat();
        let body = chunks.join(separator.as_slice());
        answer_request(b"", Some(&content_type), &body)?;
    }

    /// A boundary over the limit is refused before any search.
    #[test]
    fn fuzz_long_boundaries_are_refused(extra in 1..2000usize) {
        let content_type = format!("multipart/form-data; boundary={}", "b".repeat(MULTIPART_BOUNDARY_BYTES_MAX + extra));
        prop_assert_eq!(request::parse_multipart(&content_type, b"--b\r\n"), Err(ReadError::BoundaryTooLong));
    }

    /// Both writers on any description and any value, hostile text included: a cleaned value
    /// encodes to valid JSON and well-formed XML; a value that cannot be cleaned is an
    /// `invalidresponse` envelope.
    #[test]
    fn fuzz_writers_are_well_formed(desc in desc_strategy(), value in value_strategy(), message in hostile_string()) {
        match clean_return(&desc, &value) {
            Ok(cleaned) => assert_result(&desc, &cleaned)?,
            Err(debuginfo) => assert_envelope(&WsError::invalid_response(debuginfo))?,
        }
        assert_envelope(&WsError::invalid_parameter(message.clone()))?;
        assert_envelope(&WsError::new("moodle_exception", "x", message))?;
    }

    /// Every function's own return description against random values.
    #[test]
    fn fuzz_function_returns(index in 0..functions::all().count(), value in value_strategy()) {
        let function = functions::all().nth(index).expect("described");
        if let Some(desc) = function.returns() {
            match clean_return(desc, &value) {
                Ok(cleaned) => assert_result(desc, &cleaned)?,
                Err(debuginfo) => assert_envelope(&WsError::invalid_response(debuginfo))?,
            }
        }
    }
}
