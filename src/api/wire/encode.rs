//! Writing Moodle 4.5's REST responses byte for byte: return-value cleaning against the return
//! description, PHP `json_encode` (default flags) and Moodle's XML serialisation of values, the
//! exception documents, and the response headers. Everything here is a pure function of its
//! inputs; HTTP status is always 200.

use super::params::{clean_scalar, Desc, Node, ParamType, Required, ScalarError, Value};
use super::request::Format;

pub const MOODLE_EXCEPTION: &str = "core\\exception\\moodle_exception";
pub const INVALID_PARAMETER_EXCEPTION: &str = "core\\exception\\invalid_parameter_exception";
pub const INVALID_RESPONSE_EXCEPTION: &str = "core\\exception\\invalid_response_exception";
pub const REQUIRED_CAPABILITY_EXCEPTION: &str = "core\\exception\\required_capability_exception";
pub const REQUIRE_LOGIN_EXCEPTION: &str = "core\\exception\\require_login_exception";
pub const CODING_EXCEPTION: &str = "core\\exception\\coding_exception";
pub const RESTRICTED_CONTEXT_EXCEPTION: &str = "core_external\\restricted_context_exception";
pub const WEBSERVICE_ACCESS_EXCEPTION: &str = "webservice_access_exception";
pub const DML_MISSING_RECORD_EXCEPTION: &str = "dml_missing_record_exception";

/// The message of `invalid_response_exception`, also used inside nested `debuginfo`.
pub const INVALID_RESPONSE_MESSAGE: &str = "Invalid response value detected";

const XML_DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n";

/// An exception as the REST server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsError {
    /// The PHP class name, e.g. [`MOODLE_EXCEPTION`].
    pub class: &'static str,
    /// `None` for PHP errors that carry no error code.
    pub errorcode: Option<String>,
    pub message: String,
    pub debuginfo: Option<String>,
}

impl WsError {
    pub fn new(class: &'static str, errorcode: &str, message: impl Into<String>) -> Self {
        Self { class, errorcode: Some(errorcode.to_owned()), message: message.into(), debuginfo: None }
    }

    pub fn with_debuginfo(mut self, debuginfo: impl Into<String>) -> Self {
        self.debuginfo = Some(debuginfo.into());
        self
    }

    /// Moodle's `invalid_parameter_exception`.
    pub fn invalid_parameter(debuginfo: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMETER_EXCEPTION, "invalidparameter", super::params::INVALID_PARAMETER_MESSAGE)
            .with_debuginfo(debuginfo)
    }

    /// Moodle's `invalid_response_exception`.
    pub fn invalid_response(debuginfo: impl Into<String>) -> Self {
        Self::new(INVALID_RESPONSE_EXCEPTION, "invalidresponse", INVALID_RESPONSE_MESSAGE).with_debuginfo(debuginfo)
    }
}

/// Cleans a function's result against its return description, as Moodle's
/// `clean_returnvalue`: structure keys come out in description order, unknown keys are dropped,
/// a missing key gets its default if it is a value with `Default`, other missing non-required
/// keys are left out, scalars are cleaned strictly (so `Int(1)` for a bool becomes `true`, an
/// int for a text becomes a string).
///
/// # Errors
/// The `debuginfo` of Moodle's `invalidresponse` error, with `KEY => Invalid response value
/// detected: ` in front for each structure level.
pub fn clean_return(desc: &Desc, value: &Value) -> Result<Value, String> {
    clean_node(desc, &Node::from(value))
}

fn clean_node(desc: &Desc, node: &Node) -> Result<Value, String> {
    match desc {
        Desc::Value { ty, allow_null, .. } => clean_return_scalar(*ty, *allow_null, node),
        Desc::Single(keys, _) => clean_single(keys, node),
        Desc::Multiple(content, _) => {
            let Node::Map(entries) = node else {
                return Err(format!("Only arrays accepted. The bad value is: '{}'", node.php_string()));
            };
            entries.iter().map(|(_, item)| clean_node(content, item)).collect::<Result<Vec<_>, _>>().map(Value::List)
        }
    }
}

fn clean_return_scalar(ty: ParamType, allow_null: bool, node: &Node) -> Result<Value, String> {
    clean_scalar(ty, allow_null, node).map_err(|error| match error {
        ScalarError::NotScalar => "Scalar type expected, array or object received.".to_owned(),
        ScalarError::Invalid => format!(
            "Invalid external api response: the value is \"{}\" of PHP type \"{}\", the server \
             was expecting \"{}\" type",
            node.php_string(),
            node.php_type(),
            ty.name()
        ),
    })
}

fn clean_single(keys: &[(&str, Desc)], node: &Node) -> Result<Value, String> {
    let Node::Map(entries) = node else {
        return Err(format!("Only arrays/objects accepted. The bad value is: '{}'", node.php_string()));
    };
    let nest = |key: &str, inner: String| format!("{key} => {INVALID_RESPONSE_MESSAGE}: {inner}");
    let mut out = Vec::with_capacity(keys.len());
    for (key, sub) in keys {
        let given = entries.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let cleaned = match (given, sub.required(), sub) {
            (Some(value), _, _) => clean_node(sub, value),
            (None, Required::Required, _) => {
                return Err(format!(
                    "Error in response - Missing following required key in a single structure: \
                     {key}"
                ));
            }
            // Only plain values get their default filled in; structures are left out.
            (None, Required::Default(default), Desc::Value { .. }) => clean_node(sub, &Node::from(default)),
            (None, _, _) => continue,
        };
        out.push(((*key).to_owned(), cleaned.map_err(|inner| nest(key, inner))?));
    }
    Ok(Value::Struct(out))
}

/// The JSON body of a successful call: PHP `json_encode` of the cleaned value; `null` for a
/// function without return description. `value` should come from [`clean_return`].
pub fn to_json(desc: Option<&Desc>, value: &Value) -> String {
    let mut out = String::new();
    match desc {
        None => out.push_str("null"),
        Some(_) => write_json(&mut out, value),
    }
    out
}

fn write_json(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => out.push_str(&n.to_string()),
        Value::Float(f) => out.push_str(&json_float(*f)),
        Value::Str(s) => write_json_string(out, s),
        // An empty PHP array is a list, whatever it stood for.
        Value::List(_) | Value::Struct(_) if is_empty_array(value) => out.push_str("[]"),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Struct(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, key);
                out.push(':');
                write_json(out, item);
            }
            out.push('}');
        }
    }
}

fn is_empty_array(value: &Value) -> bool {
    match value {
        Value::List(items) => items.is_empty(),
        Value::Struct(entries) => entries.is_empty(),
        _ => false,
    }
}

/// A JSON string as PHP writes it by default: `/` escaped, everything outside ASCII as `\uXXXX`
/// (surrogate pairs above U+FFFF), lowercase hex.
fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            '\u{7F}' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// A float as `json_encode` writes it with `serialize_precision = -1`: the shortest digits
/// that read back the same, no `.0` on integral values, exponent form (`1.0e-5`, `1.0e+25`)
/// below 1e-4 and from 1e17 up. PHP refuses infinities and NaN; `0` is what it writes in
/// their place.
pub fn json_float(f: f64) -> String {
    if !f.is_finite() {
        return "0".to_owned();
    }
    let (digits, decpt) = shortest_digits(f);
    php_gcvt(f.is_sign_negative(), &digits, decpt, 17, 'e')
}

/// A float as PHP converts it to a string (`precision = 14`): at most 14 significant digits,
/// exponent form (`1.0E-5`, `1.0E+15`) below 1e-4 and from 1e15 up, `INF`, `-INF`, `NAN`.
pub fn php_float_string(f: f64) -> String {
    if f.is_nan() {
        return "NAN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "INF" } else { "-INF" }.to_owned();
    }
    let (digits, decpt) = rounded_digits(f, 14);
    php_gcvt(f.is_sign_negative(), &digits, decpt, 14, 'E')
}

/// Significant digits without trailing zeros and the decimal exponent `decpt` such that
/// `|f| = 0.DIGITS × 10^decpt`, from Rust's scientific formatting.
fn split_scientific(formatted: &str) -> (String, i32) {
    let (mantissa, exponent) = formatted.split_once('e').unwrap_or((formatted, "0"));
    let mut digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if digits == "0" {
        return (digits, 1);
    }
    (digits, exponent + 1)
}

fn shortest_digits(f: f64) -> (String, i32) {
    split_scientific(&format!("{:e}", f.abs()))
}

fn rounded_digits(f: f64, significant: usize) -> (String, i32) {
    let precision = significant.saturating_sub(1);
    split_scientific(&format!("{:.precision$e}", f.abs()))
}

/// PHP's `%G`-like layout of a digit string: plain notation unless the exponent is below -4
/// or beyond `precision`, and then one digit, a point, the rest (at least `0`) and the
/// exponent with its sign.
fn php_gcvt(negative: bool, digits: &str, decpt: i32, precision: i32, exp_char: char) -> String {
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if decpt < -3 || decpt > precision {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        out.push('.');
        out.push_str(if rest.is_empty() { "0" } else { rest });
        out.push(exp_char);
        let exponent = decpt - 1;
        out.push(if exponent < 0 { '-' } else { '+' });
        out.push_str(&exponent.unsigned_abs().to_string());
    } else if decpt <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat(decpt.unsigned_abs() as usize));
        out.push_str(digits);
    } else {
        let whole = decpt.unsigned_abs() as usize;
        if digits.len() <= whole {
            out.push_str(digits);
            out.push_str(&"0".repeat(whole - digits.len()));
        } else {
            out.push_str(&digits[..whole]);
            out.push('.');
            out.push_str(&digits[whole..]);
        }
    }
    out
}

/// The XML body of a successful call. Every key of a structure description is written, absent
/// ones as null, an empty list, or a structure of nulls. `value` should come from
/// [`clean_return`].
pub fn to_xml(desc: Option<&Desc>, value: &Value) -> String {
    let mut out = String::from(XML_DECLARATION);
    out.push_str("<RESPONSE>\n");
    if let Some(desc) = desc {
        write_xml(&mut out, desc, Some(value));
    }
    out.push_str("</RESPONSE>\n");
    out
}

fn write_xml(out: &mut String, desc: &Desc, value: Option<&Value>) {
    match desc {
        Desc::Value { .. } => match value {
            None | Some(Value::Null) => out.push_str("<VALUE null=\"null\"/>\n"),
            Some(scalar) => {
                out.push_str("<VALUE>");
                out.push_str(&xml_escape(&xml_scalar_text(scalar)));
                out.push_str("</VALUE>\n");
            }
        },
        Desc::Multiple(content, _) => {
            out.push_str("<MULTIPLE>\n");
            let items: Vec<&Value> = match value {
                Some(Value::List(items)) => items.iter().collect(),
                Some(Value::Struct(entries)) => entries.iter().map(|(_, v)| v).collect(),
                _ => Vec::new(),
            };
            for item in items {
                write_xml(out, content, Some(item));
            }
            out.push_str("</MULTIPLE>\n");
        }
        Desc::Single(keys, _) => {
            out.push_str("<SINGLE>\n");
            for (key, sub) in keys {
                out.push_str("<KEY name=\"");
                out.push_str(key);
                out.push_str("\">");
                write_xml(out, sub, value.and_then(|v| v.get(key)));
                out.push_str("</KEY>\n");
            }
            out.push_str("</SINGLE>\n");
        }
    }
}

/// PHP's string form of a scalar in XML: booleans as 1/0, floats with 14 digits.
fn xml_scalar_text(value: &Value) -> String {
    match value {
        Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        Value::Int(n) => n.to_string(),
        Value::Float(f) => php_float_string(*f),
        Value::Str(s) => s.clone(),
        // Arrays cannot stand where a value is described; cleaning prevents this.
        Value::Null | Value::List(_) | Value::Struct(_) => String::new(),
    }
}

/// `htmlspecialchars` with `ENT_COMPAT` (Moodle's REST writer): `&`, `<`, `>` and `"`, but not
/// `'`; and, unlike Moodle (which emits them raw and so a document no XML parser accepts),
/// every character XML 1.0 cannot carry replaced by U+FFFD, as PHP's `ENT_XML1 |
/// ENT_DISALLOWED` does. A Rust string holds no lone surrogates, so what is left to replace is
/// the C0 controls other than tab, line feed and carriage return, and U+FFFE / U+FFFF.
pub(crate) fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            other if xml_char_allowed(other) => out.push(other),
            _ => out.push(char::REPLACEMENT_CHARACTER),
        }
    }
    out
}

/// XML 1.0's `Char` production (§2.2).
fn xml_char_allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The JSON error document: `exception`, `errorcode` (if any), `message`, and `debuginfo` only
/// when debugging is on and there is one.
pub fn error_json(error: &WsError, include_debug: bool) -> String {
    let mut out = String::from("{\"exception\":");
    write_json_string(&mut out, error.class);
    if let Some(code) = &error.errorcode {
        out.push_str(",\"errorcode\":");
        write_json_string(&mut out, code);
    }
    out.push_str(",\"message\":");
    write_json_string(&mut out, &error.message);
    if let Some(debuginfo) = error.debuginfo.as_deref().filter(|_| include_debug) {
        out.push_str(",\"debuginfo\":");
        write_json_string(&mut out, debuginfo);
    }
    out.push('}');
    out
}

/// The XML error document; the class attribute is written as is, the texts escaped.
pub fn error_xml(error: &WsError, include_debug: bool) -> String {
    let mut out = String::from(XML_DECLARATION);
    out.push_str(&format!("<EXCEPTION class=\"{}\">\n", error.class));
    if let Some(code) = &error.errorcode {
        out.push_str(&format!("<ERRORCODE>{}</ERRORCODE>\n", xml_escape(code)));
    }
    out.push_str(&format!("<MESSAGE>{}</MESSAGE>\n", xml_escape(&error.message)));
    if let Some(debuginfo) = error.debuginfo.as_deref().filter(|_| include_debug) {
        out.push_str(&format!("<DEBUGINFO>{}</DEBUGINFO>\n", xml_escape(debuginfo)));
    }
    out.push_str("</EXCEPTION>\n");
    out
}

/// The body of a successful call in the requested format.
pub fn success_body(format: Format, desc: Option<&Desc>, value: &Value) -> String {
    match format {
        Format::Json => to_json(desc, value),
        Format::Xml => to_xml(desc, value),
    }
}

/// The body of an error in the requested format.
pub fn error_body(format: Format, error: &WsError, include_debug: bool) -> String {
    match format {
        Format::Json => error_json(error, include_debug),
        Format::Xml => error_xml(error, include_debug),
    }
}

/// The headers of every REST response, success or error, in Moodle's order and spelling.
/// No `Access-Control-Allow-Origin`: the REST handler adds it only for a configured origin.
pub fn response_headers(format: Format) -> Vec<(&'static str, &'static str)> {
    let mut headers = match format {
        Format::Json => vec![("Content-type", "application/json")],
        Format::Xml => vec![
            ("Content-Type", "application/xml; charset=utf-8"),
            ("Content-Disposition", "inline; filename=\"response.xml\""),
        ],
    };
    headers.extend([
        ("Cache-Control", "private, must-revalidate, pre-check=0, post-check=0, max-age=0"),
        ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ("Pragma", "no-cache"),
        ("Accept-Ranges", "none"),
    ]);
    headers
}

#[cfg(test)]
mod tests {
    use super::super::params::{validate, ParamType as T};
    use super::super::request::read_request;
    use super::*;
    use proptest::prelude::*;

    fn int(n: i64) -> Value {
        Value::Int(n)
    }

    fn text(s: &str) -> Value {
        Value::Str(s.to_owned())
    }

    fn obj(entries: Vec<(&str, Value)>) -> Value {
        Value::Struct(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn warnings_desc() -> Desc {
        Desc::multiple(Desc::single(vec![
            ("item", Desc::value(T::Text, "item").optional()),
            ("itemid", Desc::value(T::Int, "item id").optional()),
            ("warningcode", Desc::value(T::AlphaNum, "code")),
            ("message", Desc::value(T::Text, "message")),
        ]))
    }

    fn enrol_user_returns() -> Desc {
        Desc::single(vec![
            ("enrolid", Desc::value(T::Int, "user enrolment id")),
            ("userid", Desc::value(T::Int, "user id")),
            ("courseid", Desc::value(T::Int, "course id")),
            ("semcobookingid", Desc::value(T::Text, "booking id")),
            ("warnings", warnings_desc()),
        ])
    }

    fn result_returns() -> Desc {
        Desc::single(vec![("result", Desc::value(T::Bool, "result")), ("warnings", warnings_desc())])
    }

    fn completions_returns() -> Desc {
        Desc::multiple(Desc::single(vec![
            ("enrolid", Desc::value(T::Int, "")),
            ("userid", Desc::value(T::Int, "")),
            ("semcobookingid", Desc::value(T::Text, "")),
            ("canbecompleted", Desc::value(T::Bool, "")),
            ("completed", Desc::value(T::Bool, "")),
            ("timecompleted", Desc::value(T::Int, "")),
            ("finalgrade", Desc::value(T::Raw, "")),
            ("finalgraderaw", Desc::value(T::Raw, "")),
            ("grademinraw", Desc::value(T::Raw, "")),
            ("grademaxraw", Desc::value(T::Raw, "")),
            ("gradepassraw", Desc::value(T::Raw, "")),
            ("passed", Desc::value(T::Bool, "")),
        ]))
    }

    #[test]
    fn reference_enrol_user_json_round_trip() {
        let body = "wstoken=0123456789abcdef0123456789abcdef&wsfunction=enrol_semco_enrol_user\
                    &moodlewsrestformat=json&userid=42&courseid=7&semcobookingid=B-1001\
                    &timestart=1700000000&timeend=0&suspend=0";
        let req = read_request(b"", Some("application/x-www-form-urlencoded"), body.as_bytes()).unwrap();
        assert_eq!(req.format, Format::Json);
        let params_desc = vec![
            ("userid", Desc::value(T::Int, "")),
            ("courseid", Desc::value(T::Int, "")),
            ("semcobookingid", Desc::value(T::Text, "")),
            ("timestart", Desc::value(T::Int, "").with_default(int(0))),
            ("timeend", Desc::value(T::Int, "").with_default(int(0))),
            ("suspend", Desc::value(T::Bool, "").with_default(Value::Bool(false))),
            ("requirerecompletion", Desc::value(T::Bool, "").with_default(Value::Bool(false))),
        ];
        let params = validate(&params_desc, req.params).unwrap();
        let result = obj(vec![
            ("enrolid", int(13)),
            ("userid", params.get("userid").cloned().unwrap()),
            ("courseid", params.get("courseid").cloned().unwrap()),
            ("semcobookingid", params.get("semcobookingid").cloned().unwrap()),
            ("warnings", Value::List(vec![])),
        ]);
        let desc = enrol_user_returns();
        let cleaned = clean_return(&desc, &result).unwrap();
        assert_eq!(
            success_body(req.format, Some(&desc), &cleaned),
            r#"{"enrolid":13,"userid":42,"courseid":7,"semcobookingid":"B-1001","warnings":[]}"#
        );
        assert_eq!(
            to_xml(Some(&desc), &cleaned),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE>\n<SINGLE>\n\
             <KEY name=\"enrolid\"><VALUE>13</VALUE>\n</KEY>\n\
             <KEY name=\"userid\"><VALUE>42</VALUE>\n</KEY>\n\
             <KEY name=\"courseid\"><VALUE>7</VALUE>\n</KEY>\n\
             <KEY name=\"semcobookingid\"><VALUE>B-1001</VALUE>\n</KEY>\n\
             <KEY name=\"warnings\"><MULTIPLE>\n</MULTIPLE>\n</KEY>\n\
             </SINGLE>\n</RESPONSE>\n"
        );
    }

    #[test]
    fn reference_duplicate_booking_error_json() {
        let error = WsError::new(
            MOODLE_EXCEPTION,
            "bookingidduplicate",
            "There is already an enrolment instance with this SEMCO booking ID (B-1001).",
        );
        let expected = r#"{"exception":"core\\exception\\moodle_exception","errorcode":"bookingidduplicate","message":"There is already an enrolment instance with this SEMCO booking ID (B-1001)."}"#;
        assert_eq!(error_json(&error, false), expected);
        assert_eq!(error_json(&error, true), expected, "no debuginfo to show");
    }

    #[test]
    fn reference_completions_json() {
        let completed = obj(vec![
            ("enrolid", int(13)),
            ("userid", int(42)),
            ("semcobookingid", text("B-1001")),
            ("canbecompleted", Value::Bool(true)),
            ("completed", Value::Bool(true)),
            ("timecompleted", int(1_700_003_600)),
            ("finalgrade", text("30.00")),
            ("finalgraderaw", text("30.00000")),
            ("grademinraw", text("0.00000")),
            ("grademaxraw", text("100.00000")),
            ("gradepassraw", text("30.00000")),
            ("passed", Value::Bool(true)),
        ]);
        let open = obj(vec![
            ("enrolid", int(14)),
            ("userid", int(42)),
            ("semcobookingid", text("B-1002")),
            ("canbecompleted", int(1)),
            ("completed", int(0)),
            ("timecompleted", Value::Null),
            ("finalgrade", Value::Null),
            ("finalgraderaw", Value::Null),
            ("grademinraw", Value::Null),
            ("grademaxraw", Value::Null),
            ("gradepassraw", Value::Null),
            ("passed", Value::Null),
        ]);
        let desc = completions_returns();
        let cleaned = clean_return(&desc, &Value::List(vec![completed, open])).unwrap();
        assert_eq!(
            to_json(Some(&desc), &cleaned),
            "[{\"enrolid\":13,\"userid\":42,\"semcobookingid\":\"B-1001\",\"canbecompleted\":true,\
             \"completed\":true,\"timecompleted\":1700003600,\"finalgrade\":\"30.00\",\
             \"finalgraderaw\":\"30.00000\",\"grademinraw\":\"0.00000\",\"grademaxraw\":\"100.00000\",\
             \"gradepassraw\":\"30.00000\",\"passed\":true},\
             {\"enrolid\":14,\"userid\":42,\"semcobookingid\":\"B-1002\",\"canbecompleted\":true,\
             \"completed\":false,\"timecompleted\":null,\"finalgrade\":null,\"finalgraderaw\":null,\
             \"grademinraw\":null,\"grademaxraw\":null,\"gradepassraw\":null,\"passed\":null}]"
        );
    }

    #[test]
    fn reference_edit_enrolment_xml() {
        let desc = result_returns();
        let cleaned =
            clean_return(&desc, &obj(vec![("result", Value::Bool(true)), ("warnings", Value::List(vec![]))])).unwrap();
        assert_eq!(
            success_body(Format::Xml, Some(&desc), &cleaned),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE>\n<SINGLE>\n<KEY name=\"result\"><VALUE>1</VALUE>\n</KEY>\n<KEY name=\"warnings\"><MULTIPLE>\n</MULTIPLE>\n</KEY>\n</SINGLE>\n</RESPONSE>\n"
        );
        assert_eq!(to_json(Some(&desc), &cleaned), r#"{"result":true,"warnings":[]}"#);
    }

    #[test]
    fn reference_wrong_token_xml() {
        let error = WsError::new(MOODLE_EXCEPTION, "invalidtoken", "Invalid token - token not found");
        assert_eq!(
            error_body(Format::Xml, &error, true),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<EXCEPTION class=\"core\\exception\\moodle_exception\">\n<ERRORCODE>invalidtoken</ERRORCODE>\n<MESSAGE>Invalid token - token not found</MESSAGE>\n</EXCEPTION>\n"
        );
    }

    #[test]
    fn debuginfo_only_when_debugging() {
        let error = WsError::invalid_parameter("Unexpected keys (foo) detected in parameter array.");
        assert_eq!(
            error_json(&error, false),
            r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected"}"#
        );
        assert_eq!(
            error_json(&error, true),
            r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected","debuginfo":"Unexpected keys (foo) detected in parameter array."}"#
        );
        let escaped = WsError::invalid_parameter("the value is \"<b>&'\"");
        assert_eq!(
            error_xml(&escaped, true),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<EXCEPTION class=\"core\\exception\\invalid_parameter_exception\">\n<ERRORCODE>invalidparameter</ERRORCODE>\n<MESSAGE>Invalid parameter value detected</MESSAGE>\n<DEBUGINFO>the value is &quot;&lt;b&gt;&amp;'&quot;</DEBUGINFO>\n</EXCEPTION>\n"
        );
        assert!(!error_xml(&escaped, false).contains("DEBUGINFO"));
    }

    #[test]
    fn errors_without_code() {
        let error = WsError { class: "TypeError", errorcode: None, message: "x".into(), debuginfo: None };
        assert_eq!(error_json(&error, true), r#"{"exception":"TypeError","message":"x"}"#);
        assert_eq!(
            error_xml(&error, true),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<EXCEPTION class=\"TypeError\">\n<MESSAGE>x</MESSAGE>\n</EXCEPTION>\n"
        );
    }

    #[test]
    fn null_returns() {
        assert_eq!(to_json(None, &Value::Null), "null");
        assert_eq!(
            to_xml(None, &Value::Null),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE>\n</RESPONSE>\n"
        );
    }

    #[test]
    fn xml_renders_every_described_key() {
        let desc = Desc::single(vec![
            ("id", Desc::value(T::Int, "")),
            ("flag", Desc::value(T::Bool, "").optional()),
            ("name", Desc::value(T::Text, "").optional()),
            ("tags", Desc::multiple(Desc::value(T::Text, "")).optional()),
            (
                "inner",
                Desc::single(vec![("a", Desc::value(T::Int, "")), ("b", Desc::multiple(Desc::value(T::Int, "")))])
                    .optional(),
            ),
        ]);
        let cleaned = clean_return(&desc, &obj(vec![("id", int(1)), ("flag", Value::Bool(false))])).unwrap();
        assert_eq!(cleaned, obj(vec![("id", int(1)), ("flag", Value::Bool(false))]));
        assert_eq!(to_json(Some(&desc), &cleaned), r#"{"id":1,"flag":false}"#);
        assert_eq!(
            to_xml(Some(&desc), &cleaned),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE>\n<SINGLE>\n\
             <KEY name=\"id\"><VALUE>1</VALUE>\n</KEY>\n\
             <KEY name=\"flag\"><VALUE>0</VALUE>\n</KEY>\n\
             <KEY name=\"name\"><VALUE null=\"null\"/>\n</KEY>\n\
             <KEY name=\"tags\"><MULTIPLE>\n</MULTIPLE>\n</KEY>\n\
             <KEY name=\"inner\"><SINGLE>\n<KEY name=\"a\"><VALUE null=\"null\"/>\n</KEY>\n\
             <KEY name=\"b\"><MULTIPLE>\n</MULTIPLE>\n</KEY>\n</SINGLE>\n</KEY>\n\
             </SINGLE>\n</RESPONSE>\n"
        );
        let list = Value::List(vec![text("a"), text("b")]);
        assert_eq!(
            to_xml(Some(&Desc::multiple(Desc::value(T::Text, ""))), &list),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE>\n<MULTIPLE>\n<VALUE>a</VALUE>\n<VALUE>b</VALUE>\n</MULTIPLE>\n</RESPONSE>\n"
        );
    }

    #[test]
    fn escaping() {
        let value = text("a/b\"c\\d\n\r\t\u{8}\u{c}\u{1}\u{7f}é€😀<&>'");
        assert_eq!(
            to_json(Some(&Desc::value(T::Raw, "")), &value),
            r#""a\/b\"c\\d\n\r\t\b\f\u0001"#.to_owned() + "\u{7f}" + r#"\u00e9\u20ac\ud83d\ude00<&>'""#
        );
        assert_eq!(
            to_xml(Some(&Desc::value(T::Raw, "")), &text("<a href=\"x\">'&amp;</a>")),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE>\n<VALUE>&lt;a href=&quot;x&quot;&gt;'&amp;amp;&lt;/a&gt;</VALUE>\n</RESPONSE>\n"
        );
        let keyed = obj(vec![("k/ü", text("v"))]);
        assert_eq!(to_json(Some(&Desc::single(vec![])), &keyed), r#"{"k\/\u00fc":"v"}"#);
    }

    #[test]
    fn empty_structure_is_a_json_list() {
        let desc = Desc::single(vec![("x", Desc::value(T::Int, "").optional())]);
        let cleaned = clean_return(&desc, &obj(vec![])).unwrap();
        assert_eq!(to_json(Some(&desc), &cleaned), "[]");
    }

    #[test]
    fn json_floats_follow_php() {
        for (f, expected) in [
            (1.0, "1"),
            (0.1, "0.1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-2.5, "-2.5"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1e-4, "0.0001"),
            (1e-5, "1.0e-5"),
            (1.5e-7, "1.5e-7"),
            (1e16, "10000000000000000"),
            (1e17, "1.0e+17"),
            (1.5e300, "1.5e+300"),
            (123_456.789, "123456.789"),
            (f64::INFINITY, "0"),
        ] {
            assert_eq!(json_float(f), expected, "{f:e}");
        }
    }

    #[test]
    fn php_float_strings() {
        for (f, expected) in [
            (1.0, "1"),
            (0.1 + 0.2, "0.3"),
            (1.0 / 3.0, "0.33333333333333"),
            (2.0 / 3.0, "0.66666666666667"),
            (99_999_999_999_999.0, "99999999999999"),
            (1e14, "1.0E+14"),
            (123_456_789_012_345.0, "1.2345678901234E+14"),
            (1e15, "1.0E+15"),
            (1e-4, "0.0001"),
            (1e-5, "1.0E-5"),
            (-1.5, "-1.5"),
            (-0.0, "-0"),
            (30.0, "30"),
            (f64::INFINITY, "INF"),
            (f64::NEG_INFINITY, "-INF"),
            (f64::NAN, "NAN"),
        ] {
            assert_eq!(php_float_string(f), expected, "{f:e}");
        }
        let desc = Desc::value(T::Float, "");
        assert_eq!(
            to_xml(Some(&desc), &Value::Float(0.5)),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE>\n<VALUE>0.5</VALUE>\n</RESPONSE>\n"
        );
        assert_eq!(to_json(Some(&desc), &Value::Float(0.5)), "0.5");
    }

    #[test]
    fn return_cleaning_coerces_like_moodle() {
        let desc = Desc::single(vec![
            ("flag", Desc::value(T::Bool, "")),
            ("label", Desc::value(T::Text, "")),
            ("raw", Desc::value(T::Raw, "")),
            ("count", Desc::value(T::Int, "").with_default(int(5))),
            ("list", Desc::multiple(Desc::value(T::Int, "")).with_default(Value::List(vec![]))),
        ]);
        let got =
            clean_return(&desc, &obj(vec![("extra", int(9)), ("raw", int(13)), ("label", int(12)), ("flag", int(1))]))
                .unwrap();
        assert_eq!(
            got,
            obj(vec![("flag", Value::Bool(true)), ("label", text("12")), ("raw", int(13)), ("count", int(5)),])
        );
        assert_eq!(to_json(Some(&desc), &got), r#"{"flag":true,"label":"12","raw":13,"count":5}"#);
    }

    #[test]
    fn return_cleaning_errors() {
        let desc = enrol_user_returns();
        assert_eq!(
            clean_return(&desc, &obj(vec![("enrolid", int(1))])),
            Err("Error in response - Missing following required key in a single structure: userid".into())
        );
        let bad = obj(vec![
            ("enrolid", text("x")),
            ("userid", int(1)),
            ("courseid", int(1)),
            ("semcobookingid", text("b")),
            ("warnings", Value::List(vec![])),
        ]);
        assert_eq!(
            clean_return(&desc, &bad),
            Err("enrolid => Invalid response value detected: Invalid external api response: the \
                 value is \"x\" of PHP type \"string\", the server was expecting \"int\" type"
                .into())
        );
        let nested = obj(vec![
            ("enrolid", int(1)),
            ("userid", int(1)),
            ("courseid", int(1)),
            ("semcobookingid", text("b")),
            ("warnings", Value::List(vec![obj(vec![("message", text("m"))])])),
        ]);
        assert_eq!(
            clean_return(&desc, &nested),
            Err("warnings => Invalid response value detected: Error in response - Missing \
                 following required key in a single structure: warningcode"
                .into())
        );
        assert_eq!(clean_return(&desc, &int(3)), Err("Only arrays/objects accepted. The bad value is: '3'".into()));
        assert_eq!(
            clean_return(&warnings_desc(), &Value::Bool(true)),
            Err("Only arrays accepted. The bad value is: '1'".into())
        );
        assert_eq!(
            clean_return(&Desc::value(T::Int, ""), &Value::List(vec![])),
            Err("Scalar type expected, array or object received.".into())
        );
        assert_eq!(
            clean_return(&Desc::value(T::Bool, "").not_null(), &Value::Null),
            Err("Invalid external api response: the value is \"\" of PHP type \"NULL\", the \
                 server was expecting \"bool\" type"
                .into())
        );
        let error = WsError::invalid_response("x");
        assert_eq!(error.errorcode.as_deref(), Some("invalidresponse"));
        assert_eq!(error.message, "Invalid response value detected");
    }

    #[test]
    fn headers_per_format() {
        assert_eq!(
            response_headers(Format::Json),
            vec![
                ("Content-type", "application/json"),
                ("Cache-Control", "private, must-revalidate, pre-check=0, post-check=0, max-age=0"),
                ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
                ("Pragma", "no-cache"),
                ("Accept-Ranges", "none"),
            ]
        );
        let xml = response_headers(Format::Xml);
        assert_eq!(xml[0], ("Content-Type", "application/xml; charset=utf-8"));
        assert_eq!(xml[1], ("Content-Disposition", "inline; filename=\"response.xml\""));
        assert_eq!(xml.len(), 6);
        assert!(xml.iter().all(|(name, _)| !name.starts_with("Access-Control")), "CORS only when configured");
    }

    fn value_strategy() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            any::<String>().prop_map(Value::Str),
        ];
        leaf.prop_recursive(3, 30, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::List),
                prop::collection::vec((prop::sample::select(vec!["result", "warnings", "id", "x"]), inner), 0..5)
                    .prop_map(|e| Value::Struct(e.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn encoding_never_panics(value in value_strategy()) {
            for desc in [result_returns(), completions_returns(), Desc::value(T::Float, "")] {
                if let Ok(cleaned) = clean_return(&desc, &value) {
                    let json = to_json(Some(&desc), &cleaned);
                    prop_assert!(json.is_ascii());
                    let xml = to_xml(Some(&desc), &cleaned);
                    prop_assert!(xml.ends_with("</RESPONSE>\n"));
                }
                let _ = to_xml(Some(&desc), &value);
                let _ = to_json(Some(&desc), &value);
            }
        }

        #[test]
        fn json_floats_read_back(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let printed = json_float(f);
            prop_assert_eq!(printed.parse::<f64>().ok(), Some(f));
        }

        #[test]
        fn json_strings_are_ascii(s in any::<String>()) {
            let json = to_json(Some(&Desc::value(T::Raw, "")), &Value::Str(s));
            prop_assert!(json.is_ascii());
        }
    }
}
