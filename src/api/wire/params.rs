//! External-function descriptions and Moodle's strict parameter validation. A description is a
//! tree of values (`external_value`), single structures (named keys) and multiple structures
//! (lists); [`validate`] checks a request's parameter tree against it the way Moodle 4.5's
//! `validate_parameters` does — same order of checks, same cleaning rules, same `debuginfo`
//! texts — and returns a typed value tree with defaults filled in.

use super::encode::php_float_string;
use super::request::{canonical_int, ParamTree};
// `PARAM_AUTH` and `PARAM_EMAIL` clean with the registry's one list and one validator.
use crate::registry::rules::{auth_plugin, is_host_label, valid_email};

/// Installed language packs; `PARAM_LANG` accepts only these (or `""`).
pub use crate::registry::INSTALLED_LANGS;

/// Installed themes; `PARAM_THEME` accepts only these (or `""`).
pub const THEMES: [&str; 2] = ["boost", "classic"];

/// The message of `invalid_parameter_exception`, also used inside nested `debuginfo`.
pub const INVALID_PARAMETER_MESSAGE: &str = "Invalid parameter value detected";

/// Moodle's `PARAM_*` cleaning types used by web-service descriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamType {
    Int,
    Bool,
    Float,
    Text,
    Raw,
    RawTrimmed,
    NoTags,
    Alpha,
    AlphaExt,
    AlphaNum,
    AlphaNumExt,
    Sequence,
    Username,
    Auth,
    Lang,
    Theme,
    Email,
    Timezone,
    Url,
}

impl ParamType {
    /// The constant's value, as Moodle prints it in `debuginfo`.
    pub const fn name(self) -> &'static str {
        match self {
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::Float => "float",
            ParamType::Text => "text",
            ParamType::Raw => "raw",
            ParamType::RawTrimmed => "raw_trimmed",
            ParamType::NoTags => "notags",
            ParamType::Alpha => "alpha",
            ParamType::AlphaExt => "alphaext",
            ParamType::AlphaNum => "alphanum",
            ParamType::AlphaNumExt => "alphanumext",
            ParamType::Sequence => "sequence",
            ParamType::Username => "username",
            ParamType::Auth => "auth",
            ParamType::Lang => "lang",
            ParamType::Theme => "theme",
            ParamType::Email => "email",
            ParamType::Timezone => "timezone",
            ParamType::Url => "url",
        }
    }
}

/// Moodle's `VALUE_REQUIRED`, `VALUE_DEFAULT` (with its default) and `VALUE_OPTIONAL`.
/// A default is itself validated when used; it may be a scalar, `Null`, or an empty list or
/// structure.
#[derive(Debug, Clone, PartialEq)]
pub enum Required {
    Required,
    Default(Value),
    Optional,
}

/// A parameter or return description. Moodle refuses `Optional` for top-level scalar
/// parameters when the description is built; that is a programming rule, not checked here.
#[derive(Debug, Clone, PartialEq)]
pub enum Desc {
    Value { ty: ParamType, required: Required, allow_null: bool, desc: &'static str },
    Single(Vec<(&'static str, Desc)>, Required),
    Multiple(Box<Desc>, Required),
}

impl Desc {
    /// A required value that allows null (Moodle's defaults for `external_value`).
    pub fn value(ty: ParamType, desc: &'static str) -> Self {
        Desc::Value { ty, required: Required::Required, allow_null: true, desc }
    }

    pub fn single(keys: Vec<(&'static str, Desc)>) -> Self {
        Desc::Single(keys, Required::Required)
    }

    pub fn multiple(content: Desc) -> Self {
        Desc::Multiple(Box::new(content), Required::Required)
    }

    pub fn with_default(self, default: Value) -> Self {
        self.with_required(Required::Default(default))
    }

    pub fn optional(self) -> Self {
        self.with_required(Required::Optional)
    }

    /// Refuses null for a value (`NULL_NOT_ALLOWED`).
    pub fn not_null(self) -> Self {
        match self {
            Desc::Value { ty, required, desc, .. } => Desc::Value { ty, required, allow_null: false, desc },
            other => other,
        }
    }

    pub fn required(&self) -> &Required {
        match self {
            Desc::Value { required, .. } | Desc::Single(_, required) | Desc::Multiple(_, required) => required,
        }
    }

    fn with_required(mut self, new: Required) -> Self {
        match &mut self {
            Desc::Value { required, .. } | Desc::Single(_, required) | Desc::Multiple(_, required) => {
                *required = new;
            }
        }
        self
    }
}

/// A validated (or returned) value. `Struct` keeps description order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Struct(Vec<(String, Value)>),
}

impl Value {
    /// The entry `key` of a structure; `None` for absent keys and non-structures.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Struct(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// Looks up `key` in a validated structure (see [`Value::get`]).
pub fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.get(key)
}

/// Validates request parameters against a function's parameter description (a top-level single
/// structure) and returns the cleaned structure.
///
/// # Errors
/// Moodle's `debuginfo` for the first problem found: description keys are checked in order
/// (missing required key, or the key's own error with `KEY => Invalid parameter value
/// detected: ` in front), then leftover keys are reported as unexpected.
pub fn validate(desc: &[(&str, Desc)], params: Vec<(String, ParamTree)>) -> Result<Value, String> {
    let entries = params.into_iter().map(|(k, t)| (k, Node::from(t))).collect();
    validate_single(desc, Node::Map(entries))
}

/// A value as PHP holds it before cleaning: request data is always text or arrays, defaults
/// and function results can be any PHP scalar.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(Vec<u8>),
    Map(Vec<(String, Node)>),
}

impl From<ParamTree> for Node {
    fn from(tree: ParamTree) -> Self {
        match tree {
            ParamTree::Scalar(raw) => Node::Text(raw.into_bytes()),
            ParamTree::Map(entries) => Node::Map(entries.into_iter().map(|(k, t)| (k, t.into())).collect()),
        }
    }
}

impl From<&Value> for Node {
    fn from(value: &Value) -> Self {
        match value {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Int(n) => Node::Int(*n),
            Value::Float(f) => Node::Float(*f),
            Value::Str(s) => Node::Text(s.as_bytes().to_vec()),
            Value::List(items) => Node::Map(items.iter().enumerate().map(|(i, v)| (i.to_string(), v.into())).collect()),
            Value::Struct(entries) => Node::Map(entries.iter().map(|(k, v)| (k.clone(), v.into())).collect()),
        }
    }
}

impl Node {
    /// PHP's string conversion of a scalar (`print_r` gives the same); arrays print `Array`.
    pub(super) fn php_string(&self) -> String {
        String::from_utf8_lossy(&self.php_bytes()).into_owned()
    }

    /// PHP's `gettype()`.
    pub(super) fn php_type(&self) -> &'static str {
        match self {
            Node::Null => "NULL",
            Node::Bool(_) => "boolean",
            Node::Int(_) => "integer",
            Node::Float(_) => "double",
            Node::Text(_) => "string",
            Node::Map(_) => "array",
        }
    }

    fn php_bytes(&self) -> Vec<u8> {
        match self {
            Node::Null | Node::Bool(false) => Vec::new(),
            Node::Bool(true) => b"1".to_vec(),
            Node::Int(n) => n.to_string().into_bytes(),
            Node::Float(f) => php_float_string(*f).into_bytes(),
            Node::Text(bytes) => bytes.clone(),
            Node::Map(_) => b"Array".to_vec(),
        }
    }
}

/// Why a scalar was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScalarError {
    /// An array where a scalar was expected.
    NotScalar,
    /// Cleaning changed the value (or null where null is not allowed).
    Invalid,
}

/// Moodle's handling of one `external_value`: arrays refused, the `PARAM_BOOL` shortcut, then
/// `validate_param`, which cleans the value and refuses it if its string form changed.
pub(super) fn clean_scalar(ty: ParamType, allow_null: bool, node: &Node) -> Result<Value, ScalarError> {
    match node {
        Node::Map(_) => Err(ScalarError::NotScalar),
        Node::Null if allow_null => Ok(Value::Null),
        Node::Null => Err(ScalarError::Invalid),
        _ => clean_present_scalar(ty, node).ok_or(ScalarError::Invalid),
    }
}

fn clean_present_scalar(ty: ParamType, node: &Node) -> Option<Value> {
    match ty {
        ParamType::Int => clean_int(node),
        ParamType::Bool => clean_bool(node),
        ParamType::Float => clean_float(node),
        // PARAM_RAW leaves non-strings untouched, so a PHP int stays an int.
        ParamType::Raw => match node {
            Node::Bool(b) => Some(Value::Bool(*b)),
            Node::Int(n) => Some(Value::Int(*n)),
            Node::Float(f) => Some(Value::Float(*f)),
            _ => clean_string(ty, node),
        },
        _ => clean_string(ty, node),
    }
}

/// `(int)` cast, kept only when it prints the same as the input.
fn clean_int(node: &Node) -> Option<Value> {
    let cleaned = match node {
        Node::Text(bytes) => return canonical_int(bytes).map(Value::Int),
        Node::Int(n) => *n,
        Node::Bool(b) => i64::from(*b),
        Node::Float(f) => php_int_cast(*f),
        Node::Null | Node::Map(_) => return None,
    };
    (node.php_bytes() == cleaned.to_string().into_bytes()).then_some(Value::Int(cleaned))
}

/// PHP's float-to-int cast: truncation, 0 when out of range or not finite.
fn php_int_cast(f: f64) -> i64 {
    // `i64::MAX as f64` is 2^63, the first value out of range.
    if f.is_finite() && f >= i64::MIN as f64 && f < i64::MAX as f64 {
        f.trunc() as i64
    } else {
        0
    }
}

/// Booleans, 0/1 and "0"/"1" pass; every other value cleans to 0 or 1 and then fails the
/// string comparison unless it already printed as "0" or "1".
fn clean_bool(node: &Node) -> Option<Value> {
    if let Node::Bool(b) = node {
        return Some(Value::Bool(*b));
    }
    match node.php_bytes().as_slice() {
        b"0" => Some(Value::Bool(false)),
        b"1" => Some(Value::Bool(true)),
        _ => None,
    }
}

/// `PARAM_FLOAT` has no strictness check, only a numeric pattern: optional sign, digits with an
/// optional decimal point (at least one digit), optional exponent.
fn clean_float(node: &Node) -> Option<Value> {
    match node {
        Node::Int(n) => Some(Value::Float(*n as f64)),
        Node::Float(f) => Some(Value::Float(*f)),
        Node::Text(bytes) => {
            // PCRE's `$` also matches before one final newline, and PHP ignores it when
            // converting, so "1.5\n" is accepted as 1.5.
            let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            if !is_float_text(bytes) {
                return None;
            }
            std::str::from_utf8(bytes).ok()?.parse().ok().map(Value::Float)
        }
        Node::Null | Node::Bool(_) | Node::Map(_) => None,
    }
}

fn is_float_text(bytes: &[u8]) -> bool {
    let unsigned = bytes.strip_prefix(b"+").or_else(|| bytes.strip_prefix(b"-"));
    let body = unsigned.unwrap_or(bytes);
    let mantissa_end = body.iter().position(|&b| b == b'e' || b == b'E').unwrap_or(body.len());
    let (mantissa, exponent) = body.split_at(mantissa_end);
    let mut parts = mantissa.splitn(2, |&b| b == b'.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next().unwrap_or_default();
    let digits_only = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let mantissa_ok = digits_only(whole) && digits_only(fraction) && !(whole.is_empty() && fraction.is_empty());
    let exponent_ok = match exponent.split_first() {
        None => true,
        Some((_, rest)) => {
            let digits = rest.strip_prefix(b"+").or_else(|| rest.strip_prefix(b"-")).unwrap_or(rest);
            !digits.is_empty() && digits_only(digits)
        }
    };
    mantissa_ok && exponent_ok
}

/// The string types: the value's PHP string form must come out of cleaning unchanged. None of
/// them keeps invalid UTF-8 (either `fix_utf8` drops it or the character class does).
fn clean_string(ty: ParamType, node: &Node) -> Option<Value> {
    let text = String::from_utf8(node.php_bytes()).ok()?;
    string_is_clean(ty, &text).then_some(Value::Str(text))
}

fn string_is_clean(ty: ParamType, s: &str) -> bool {
    let all = |allowed: fn(u8) -> bool| s.bytes().all(allowed);
    match ty {
        ParamType::Raw => utf8_is_clean(s),
        ParamType::RawTrimmed => utf8_is_clean(s) && s.trim_matches(is_php_trim_char) == s,
        ParamType::Text => utf8_is_clean(s) && text_survives_tag_stripping(s),
        ParamType::NoTags => utf8_is_clean(s) && !has_strippable_tag(s.as_bytes()),
        ParamType::Alpha => all(|b| b.is_ascii_alphabetic()),
        ParamType::AlphaExt => all(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'-'),
        ParamType::AlphaNum => all(|b| b.is_ascii_alphanumeric()),
        ParamType::AlphaNumExt => all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        ParamType::Sequence => all(|b| b.is_ascii_digit() || b == b','),
        // Trimming and lowercasing are part of the cleaning, so strictness refuses any
        // whitespace or uppercase; `extendedusernamechars` is taken as off.
        ParamType::Username => {
            all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_' | b'@'))
        }
        ParamType::Auth => s.is_empty() || auth_plugin(s).is_some(),
        ParamType::Lang => s.is_empty() || INSTALLED_LANGS.contains(&s),
        ParamType::Theme => s.is_empty() || THEMES.contains(&s),
        ParamType::Email => utf8_is_clean(s) && (s.is_empty() || valid_email(s)),
        ParamType::Timezone => s.is_empty() || is_timezone(s),
        // PHP `empty()` also covers "0", which cleans to "".
        ParamType::Url => utf8_is_clean(s) && (s.is_empty() || (s != "0" && is_url(s))),
        ParamType::Int | ParamType::Bool | ParamType::Float => false,
    }
}

/// `fix_utf8` leaves the text alone: no NUL, no U+FFFE / U+FFFF (invalid UTF-8 never gets
/// this far).
fn utf8_is_clean(s: &str) -> bool {
    !s.contains(['\0', '\u{FFFE}', '\u{FFFF}'])
}

fn is_php_trim_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\0' | '\u{0B}')
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Whether PHP `strip_tags` (no allowed tags) would change the text: it does exactly when some
/// `<` is followed by a non-space character or ends the text.
fn has_strippable_tag(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| b == b'<' && !bytes.get(i + 1).copied().is_some_and(is_c_space))
}

/// `PARAM_TEXT` keeps well-formed multilang markup and strips every other tag. Text that
/// contains `</lang>` (or else `</span>`) is kept only if every `<…>` in it is an opening
/// multilang tag or the matching closing tag, closes are never unmatched, the last tag is a
/// close, and no `<` is left without a `>`.
fn text_survives_tag_stripping(s: &str) -> bool {
    if s.contains("</lang>") {
        multilang_is_well_formed(s, "</lang>", is_lang_open_tag)
    } else if s.contains("</span>") {
        multilang_is_well_formed(s, "</span>", is_span_open_tag)
    } else {
        !has_strippable_tag(s.as_bytes())
    }
}

fn multilang_is_well_formed(s: &str, close: &str, is_open: fn(&str) -> bool) -> bool {
    let mut open = false;
    let mut rest = s;
    while let Some(lt) = rest.find('<') {
        let Some(length) = rest[lt..].find('>') else {
            return false;
        };
        let tag = &rest[lt..=lt + length];
        if tag == close {
            if !open {
                return false;
            }
            open = false;
        } else if is_open(tag) {
            open = true;
        } else {
            return false;
        }
        rest = &rest[lt + length + 1..];
    }
    !open
}

fn is_pcre_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r')
}

fn is_lang_code(code: &str) -> bool {
    !code.is_empty() && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Rest of `input` after `lang="CODE"`, if it starts with that.
fn strip_lang_attribute(input: &str) -> Option<&str> {
    let (code, rest) = input.strip_prefix("lang=\"")?.split_once('"')?;
    is_lang_code(code).then_some(rest)
}

fn ends_tag(rest: &str) -> bool {
    rest.strip_suffix('>').is_some_and(|spaces| spaces.chars().all(is_pcre_space))
}

/// `<lang lang="xx">`, optional spaces before `>`.
fn is_lang_open_tag(tag: &str) -> bool {
    tag.strip_prefix("<lang ").and_then(strip_lang_attribute).is_some_and(ends_tag)
}

/// `<span` with exactly two attributes, each `lang="xx"` or `class="multilang"` (Moodle's
/// pattern allows the same one twice), optional spaces before `>`.
fn is_span_open_tag(tag: &str) -> bool {
    let Some(mut rest) = tag.strip_prefix("<span") else {
        return false;
    };
    for _ in 0..2 {
        let attribute = rest.trim_start_matches(is_pcre_space);
        if attribute.len() == rest.len() {
            return false;
        }
        rest = match attribute.strip_prefix("class=\"multilang\"") {
            Some(after) => after,
            None => match strip_lang_attribute(attribute) {
                Some(after) => after,
                None => return false,
            },
        };
    }
    ends_tag(rest)
}

/// Moodle's timezone pattern: an hour offset (`-5`, `+5.5`, `13.0`), `99`, or a name such as
/// `Europe/Berlin` (alphanumerics, then letters, `_`, `-` and single `/`).
fn is_timezone(s: &str) -> bool {
    // PCRE's `$` also matches before one final newline.
    let s = s.strip_suffix('\n').unwrap_or(s);
    is_timezone_offset(s) || s == "99" || is_timezone_name(s)
}

fn is_timezone_offset(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (hours, fraction) = match s.split_once('.') {
        Some((hours, fraction)) => (hours, Some(fraction)),
        None => (s, None),
    };
    let single = matches!(hours.as_bytes(), [d] | [b'0', d] if d.is_ascii_digit());
    let teen = |last: u8| matches!(hours.as_bytes(), [b'1', d] if (b'0'..=last).contains(d));
    // The pattern's `[5|0]` character class lets `|` through as well.
    (single && matches!(fraction, None | Some("5" | "0" | "|")))
        || (teen(b'3') && matches!(fraction, None | Some("0")))
        || (teen(b'2') && fraction == Some("5"))
}

fn is_timezone_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    let tail_char = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b == b'-';
    let (Some(first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if bytes.len() < 2 || !first.is_ascii_alphanumeric() || !tail_char(last) {
        return false;
    }
    // Digits belong to the leading alphanumeric run, so none may follow `_`, `-` or `/`.
    let mut in_tail = false;
    bytes.iter().enumerate().all(|(i, &b)| match b {
        b'0'..=b'9' => !in_tail,
        b'a'..=b'z' | b'A'..=b'Z' => true,
        b'_' | b'-' => {
            in_tail = true;
            true
        }
        b'/' => {
            in_tail = true;
            bytes.get(i + 1).copied().is_some_and(tail_char)
        }
        _ => false,
    })
}

/// An approximation of Moodle's URL syntax check for `PARAM_URL`: printable URL characters,
/// and if a scheme is given it is http, https or ftp with a host (no user or password).
fn is_url(s: &str) -> bool {
    let url_char = |b: u8| b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b);
    if !s.bytes().all(url_char) {
        return false;
    }
    match s.split_once("://") {
        Some((scheme, rest)) => {
            let known = ["http", "https", "ftp"].iter().any(|k| scheme.eq_ignore_ascii_case(k));
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            known && is_host_port(authority)
        }
        None => !s.split(['/', '?', '#']).next().unwrap_or_default().contains([':', '@']),
    }
}

fn is_host_port(authority: &str) -> bool {
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && !host.is_empty() && host.split('.').all(is_host_label)
}

fn nest(key: &str, inner: &str) -> String {
    format!("{key} => {INVALID_PARAMETER_MESSAGE}: {inner}")
}

fn only_arrays(node: &Node) -> String {
    format!("Only arrays accepted. The bad value is: '{}'", node.php_string())
}

fn validate_node(desc: &Desc, node: Node) -> Result<Value, String> {
    match desc {
        Desc::Value { ty, allow_null, .. } => validate_scalar(*ty, *allow_null, &node),
        Desc::Single(keys, _) => validate_single(keys, node),
        Desc::Multiple(content, _) => validate_multiple(content, node),
    }
}

fn validate_scalar(ty: ParamType, allow_null: bool, node: &Node) -> Result<Value, String> {
    clean_scalar(ty, allow_null, node).map_err(|error| match error {
        ScalarError::NotScalar => "Scalar type expected, array or object received.".to_owned(),
        ScalarError::Invalid => format!(
            "Invalid external api parameter: the value is \"{}\", the server was expecting \"{}\" type",
            node.php_string(),
            ty.name()
        ),
    })
}

fn validate_single(keys: &[(&str, Desc)], node: Node) -> Result<Value, String> {
    let Node::Map(mut entries) = node else {
        return Err(only_arrays(&node));
    };
    let mut out = Vec::with_capacity(keys.len());
    for (key, sub) in keys {
        let given = entries.iter().position(|(k, _)| k == key).map(|i| entries.remove(i).1);
        let input = match (given, sub.required()) {
            (Some(node), _) => node,
            (None, Required::Required) => {
                return Err(format!("Missing required key in single structure: {key}"));
            }
            (None, Required::Default(default)) => Node::from(default),
            (None, Required::Optional) => continue,
        };
        let value = validate_node(sub, input).map_err(|inner| nest(key, &inner))?;
        out.push(((*key).to_owned(), value));
    }
    if !entries.is_empty() {
        let names: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        return Err(format!("Unexpected keys ({}) detected in parameter array.", names.join(", ")));
    }
    Ok(Value::Struct(out))
}

/// List items are taken in request order; their keys do not matter.
fn validate_multiple(content: &Desc, node: Node) -> Result<Value, String> {
    let Node::Map(entries) = node else {
        return Err(only_arrays(&node));
    };
    entries.into_iter().map(|(_, item)| validate_node(content, item)).collect::<Result<Vec<_>, _>>().map(Value::List)
}

#[cfg(test)]
mod tests {
    use super::super::request::{build_tree, parse_urlencoded, RawValue};
    use super::*;
    use proptest::prelude::*;

    fn params(query: &str) -> Vec<(String, ParamTree)> {
        build_tree(parse_urlencoded(query.as_bytes()).expect("within limits"))
    }

    fn check(ty: ParamType, raw: &[u8]) -> Option<Value> {
        clean_scalar(ty, true, &Node::Text(raw.to_vec())).ok()
    }

    fn accepts(ty: ParamType, raw: &str) -> bool {
        check(ty, raw.as_bytes()).is_some()
    }

    fn enrol_user_desc() -> Vec<(&'static str, Desc)> {
        vec![
            ("userid", Desc::value(ParamType::Int, "user id")),
            ("courseid", Desc::value(ParamType::Int, "course id")),
            ("semcobookingid", Desc::value(ParamType::Text, "booking id")),
            ("timestart", Desc::value(ParamType::Int, "start").with_default(Value::Int(0))),
            ("timeend", Desc::value(ParamType::Int, "end").with_default(Value::Int(0))),
            ("suspend", Desc::value(ParamType::Bool, "suspend").with_default(Value::Bool(false))),
            ("requirerecompletion", Desc::value(ParamType::Bool, "recompletion").with_default(Value::Bool(false))),
        ]
    }

    fn create_users_desc() -> Vec<(&'static str, Desc)> {
        vec![(
            "users",
            Desc::multiple(Desc::single(vec![
                ("username", Desc::value(ParamType::Username, "username")),
                ("auth", Desc::value(ParamType::Auth, "auth").with_default(Value::Str("manual".into()))),
                ("firstname", Desc::value(ParamType::NoTags, "first name")),
                ("city", Desc::value(ParamType::NoTags, "city").optional()),
                (
                    "customfields",
                    Desc::multiple(Desc::single(vec![
                        ("type", Desc::value(ParamType::AlphaNumExt, "shortname")),
                        ("value", Desc::value(ParamType::Raw, "value")),
                    ]))
                    .optional(),
                ),
            ])),
        )]
    }

    #[test]
    fn type_names_match_moodle() {
        let names: Vec<&str> = [
            ParamType::Int,
            ParamType::Bool,
            ParamType::Float,
            ParamType::Text,
            ParamType::Raw,
            ParamType::RawTrimmed,
            ParamType::NoTags,
            ParamType::AlphaNumExt,
            ParamType::Username,
            ParamType::Timezone,
        ]
        .iter()
        .map(|t| t.name())
        .collect();
        assert_eq!(
            names,
            ["int", "bool", "float", "text", "raw", "raw_trimmed", "notags", "alphanumext", "username", "timezone"]
        );
    }

    #[test]
    fn int_accepts_only_canonical_decimals() {
        assert_eq!(check(ParamType::Int, b"0"), Some(Value::Int(0)));
        assert_eq!(check(ParamType::Int, b"-5"), Some(Value::Int(-5)));
        assert_eq!(check(ParamType::Int, b"9223372036854775807"), Some(Value::Int(i64::MAX)));
        for bad in ["", " 1", "1 ", "01", "+1", "1.0", "1e3", "-0", "12abc", "0x1A", "9223372036854775808"] {
            assert!(!accepts(ParamType::Int, bad), "{bad:?}");
        }
    }

    #[test]
    fn int_from_php_values() {
        let clean = |node: Node| clean_scalar(ParamType::Int, true, &node).ok();
        assert_eq!(clean(Node::Int(7)), Some(Value::Int(7)));
        assert_eq!(clean(Node::Float(3.0)), Some(Value::Int(3)));
        assert_eq!(clean(Node::Float(3.5)), None);
        assert_eq!(clean(Node::Float(1e15)), None, "prints as 1.0E+15");
        assert_eq!(clean(Node::Bool(true)), Some(Value::Int(1)));
        assert_eq!(clean(Node::Bool(false)), None);
    }

    #[test]
    fn bool_accepts_only_zero_and_one() {
        assert_eq!(check(ParamType::Bool, b"1"), Some(Value::Bool(true)));
        assert_eq!(check(ParamType::Bool, b"0"), Some(Value::Bool(false)));
        for bad in ["true", "false", "yes", "on", "", "2", " 1", "01"] {
            assert!(!accepts(ParamType::Bool, bad), "{bad:?}");
        }
        let clean = |node: Node| clean_scalar(ParamType::Bool, true, &node).ok();
        assert_eq!(clean(Node::Int(1)), Some(Value::Bool(true)));
        assert_eq!(clean(Node::Int(2)), None);
        assert_eq!(clean(Node::Bool(false)), Some(Value::Bool(false)));
    }

    #[test]
    fn float_follows_the_numeric_pattern() {
        assert_eq!(check(ParamType::Float, b"1.5"), Some(Value::Float(1.5)));
        assert_eq!(check(ParamType::Float, b"-.5"), Some(Value::Float(-0.5)));
        assert_eq!(check(ParamType::Float, b"5."), Some(Value::Float(5.0)));
        assert_eq!(check(ParamType::Float, b"+1E3"), Some(Value::Float(1000.0)));
        assert_eq!(check(ParamType::Float, b"007"), Some(Value::Float(7.0)));
        assert_eq!(check(ParamType::Float, b"1.5\n"), Some(Value::Float(1.5)));
        for bad in ["", ".", "1,5", " 1", "1 ", "1e", "e5", "1.2.3", "inf", "NaN", "0x10", "1e+"] {
            assert!(!accepts(ParamType::Float, bad), "{bad:?}");
        }
    }

    #[test]
    fn text_rejects_tags_but_keeps_multilang() {
        for ok in [
            "",
            "B-1001",
            "a < b",
            "a <\tb",
            "x > y",
            "Grüße \"quoted\" & 'single'",
            "<lang lang=\"en\">Hi</lang><lang lang=\"de\" >Hallo</lang>",
            "<span lang=\"en\" class=\"multilang\">Hi</span> <span class=\"multilang\" lang=\"de\">Hallo</span>",
            "<lang lang=\"en\"><lang lang=\"de\">x</lang>",
        ] {
            assert!(accepts(ParamType::Text, ok), "{ok:?}");
        }
        for bad in [
            "<b>x</b>",
            "a<b",
            "x<",
            "1<2",
            "<!-- c -->",
            "<lang lang=\"en\">Hi",
            "</lang>",
            "<lang lang=\"en\">Hi</lang> <b>x</b>",
            "<lang lang=\"en\">Hi</lang> <",
            "<lang lang=\"e n\">Hi</lang>",
            "<span lang=\"en\">Hi</span>",
            "<span lang=\"en\" class=\"multilang\">Hi</span></span>",
            "a\0b",
            "\u{FFFF}",
        ] {
            assert!(!accepts(ParamType::Text, bad), "{bad:?}");
        }
        assert!(check(ParamType::Text, b"caf\xe9").is_none());
        assert!(check(ParamType::Text, b"\xed\xa0\x80").is_none(), "surrogate");
    }

    #[test]
    fn raw_types() {
        assert!(accepts(ParamType::Raw, "<b>any</b> text\n"));
        assert!(check(ParamType::Raw, b"\xff").is_none());
        assert!(!accepts(ParamType::Raw, "a\0"));
        assert!(accepts(ParamType::RawTrimmed, "a b"));
        for bad in [" a", "a ", "a\n", "\ta", "a\u{0B}"] {
            assert!(!accepts(ParamType::RawTrimmed, bad), "{bad:?}");
        }
        assert!(accepts(ParamType::NoTags, "Anna-Lena"));
        assert!(!accepts(ParamType::NoTags, "<i>Anna</i>"));
        assert!(!accepts(ParamType::NoTags, "<span lang=\"en\" class=\"multilang\">x</span>"));
    }

    #[test]
    fn character_classes() {
        assert!(accepts(ParamType::Alpha, "abcXYZ"));
        assert!(!accepts(ParamType::Alpha, "ab1"));
        assert!(accepts(ParamType::AlphaExt, "a_b-c"));
        assert!(accepts(ParamType::AlphaNum, "a1"));
        assert!(!accepts(ParamType::AlphaNum, "a_1"));
        assert!(accepts(ParamType::AlphaNumExt, "semco_userid-2"));
        assert!(!accepts(ParamType::AlphaNumExt, "semco userid"));
        assert!(accepts(ParamType::Sequence, "1,2,,3"));
        assert!(!accepts(ParamType::Sequence, "1, 2"));
        assert!(accepts(ParamType::Alpha, ""));
    }

    #[test]
    fn usernames_must_already_be_clean() {
        assert!(accepts(ParamType::Username, "kn-1.x_y@z"));
        for bad in ["Kn-1", " kn", "kn ", "k n", "kü", "kn+1"] {
            assert!(!accepts(ParamType::Username, bad), "{bad:?}");
        }
    }

    #[test]
    fn installed_things() {
        assert!(accepts(ParamType::Auth, "manual"));
        assert!(accepts(ParamType::Auth, ""));
        assert!(!accepts(ParamType::Auth, "magic"));
        assert!(accepts(ParamType::Lang, "en"));
        assert!(!accepts(ParamType::Lang, "xx"));
        assert!(accepts(ParamType::Theme, "boost"));
        assert!(!accepts(ParamType::Theme, "Boost"));
    }

    #[test]
    fn emails() {
        for ok in ["", "a@example.com", "first.last+tag@sub.example.de", "o'neil@x.org"] {
            assert!(accepts(ParamType::Email, ok), "{ok:?}");
        }
        for bad in [
            "a",
            "a@",
            "@x.de",
            "a@localhost",
            "a..b@x.de",
            ".a@x.de",
            "a@-x.de",
            "a@x.1",
            "a b@x.de",
            "<a@x.de>",
            "a@x.de ",
            "ä@x.de",
        ] {
            assert!(!accepts(ParamType::Email, bad), "{bad:?}");
        }
    }

    #[test]
    fn timezones() {
        for ok in [
            "",
            "99",
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "UTC",
            "5",
            "-5",
            "+05.5",
            "13.0",
            "12.5",
            "Europe/Berlin\n",
        ] {
            assert!(accepts(ParamType::Timezone, ok), "{ok:?}");
        }
        for bad in ["Z", "13.5", "14", "Etc/GMT+1", "Etc/GMT-3", "Europe//Berlin", "/Europe", "x1", "\n"] {
            assert!(!accepts(ParamType::Timezone, bad), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        for ok in ["", "https://example.com/a?b=1#c", "http://h:8080", "www.example.com/x", "/local"] {
            assert!(accepts(ParamType::Url, ok), "{ok:?}");
        }
        for bad in ["0", "javascript:alert(1)", "http://u:p@h/", "http://", "a b", "mailto:a@b.de"] {
            assert!(!accepts(ParamType::Url, bad), "{bad:?}");
        }
    }

    #[test]
    fn enrol_user_validates_and_fills_defaults() {
        let got = validate(
            &enrol_user_desc(),
            params("userid=42&courseid=7&semcobookingid=B-1001&timestart=1700000000&suspend=1"),
        )
        .unwrap();
        assert_eq!(
            got,
            Value::Struct(vec![
                ("userid".into(), Value::Int(42)),
                ("courseid".into(), Value::Int(7)),
                ("semcobookingid".into(), Value::Str("B-1001".into())),
                ("timestart".into(), Value::Int(1_700_000_000)),
                ("timeend".into(), Value::Int(0)),
                ("suspend".into(), Value::Bool(true)),
                ("requirerecompletion".into(), Value::Bool(false)),
            ])
        );
        assert_eq!(field(&got, "courseid"), Some(&Value::Int(7)));
        assert_eq!(got.get("nope"), None);
    }

    #[test]
    fn reference_error_examples() {
        let desc = enrol_user_desc();
        assert_eq!(
            validate(&desc, params("userid=42&courseid=7&semcobookingid=B&timestart=")),
            Err("timestart => Invalid parameter value detected: Invalid external api parameter: \
                 the value is \"\", the server was expecting \"int\" type"
                .into())
        );
        assert_eq!(
            validate(&desc, params("userid=42&courseid=7&semcobookingid=B&foo=1")),
            Err("Unexpected keys (foo) detected in parameter array.".into())
        );
        assert_eq!(
            validate(&create_users_desc(), params("users[0][username]=Kn&users[0][firstname]=A")),
            Err("users => Invalid parameter value detected: username => Invalid parameter value \
                 detected: Invalid external api parameter: the value is \"Kn\", the server was \
                 expecting \"username\" type"
                .into())
        );
    }

    #[test]
    fn check_order_follows_description_keys() {
        let desc = enrol_user_desc();
        // A bad earlier key wins over a missing later key and over unexpected keys.
        assert_eq!(
            validate(&desc, params("userid=x&zzz=1")),
            Err("userid => Invalid parameter value detected: Invalid external api parameter: \
                 the value is \"x\", the server was expecting \"int\" type"
                .into())
        );
        // A missing key wins over unexpected keys, and carries no prefix.
        assert_eq!(
            validate(&desc, params("userid=1&zzz=1&aaa=2")),
            Err("Missing required key in single structure: courseid".into())
        );
        assert_eq!(
            validate(&desc, params("zzz=1&userid=1&courseid=2&semcobookingid=x&aaa=2&0=z")),
            Err("Unexpected keys (zzz, aaa, 0) detected in parameter array.".into())
        );
    }

    #[test]
    fn structure_shape_errors() {
        let desc = enrol_user_desc();
        assert_eq!(
            validate(&desc, params("userid[]=1")),
            Err("userid => Invalid parameter value detected: Scalar type expected, array or \
                 object received."
                .into())
        );
        let users = create_users_desc();
        assert_eq!(
            validate(&users, params("users=abc")),
            Err("users => Invalid parameter value detected: Only arrays accepted. The bad value \
                 is: 'abc'"
                .into())
        );
        assert_eq!(
            validate(&users, params("users[0]=abc")),
            Err("users => Invalid parameter value detected: Only arrays accepted. The bad value \
                 is: 'abc'"
                .into())
        );
        assert_eq!(
            validate(&users, params("users[0][username]=a&users[0][firstname]=A&users[0][x]=1")),
            Err("users => Invalid parameter value detected: Unexpected keys (x) detected in \
                 parameter array."
                .into())
        );
        assert_eq!(
            validate(&users, params("users[0][username]=a")),
            Err("users => Invalid parameter value detected: Missing required key in single \
                 structure: firstname"
                .into())
        );
    }

    #[test]
    fn lists_ignore_keys_and_optional_keys_stay_absent() {
        let got = validate(
            &create_users_desc(),
            params(
                "users[7][username]=b&users[7][firstname]=B&users[7][customfields][9][type]=semco_userid\
                 &users[7][customfields][9][value]=%FF1&users[2][username]=a&users[2][firstname]=A",
            ),
        );
        assert_eq!(
            got,
            Err("users => Invalid parameter value detected: customfields => Invalid parameter \
                 value detected: value => Invalid parameter value detected: Invalid external api \
                 parameter: the value is \"\u{FFFD}1\", the server was expecting \"raw\" type"
                .into())
        );
        let got = validate(
            &create_users_desc(),
            params("users[7][username]=b&users[7][firstname]=B&users[2][username]=a&users[2][firstname]=A"),
        )
        .unwrap();
        let user = |name: &str, first: &str| {
            Value::Struct(vec![
                ("username".into(), Value::Str(name.into())),
                ("auth".into(), Value::Str("manual".into())),
                ("firstname".into(), Value::Str(first.into())),
            ])
        };
        assert_eq!(got, Value::Struct(vec![("users".into(), Value::List(vec![user("b", "B"), user("a", "A")]))]));
    }

    #[test]
    fn defaults_are_validated_too() {
        let desc = vec![
            ("timestart", Desc::value(ParamType::Int, "").with_default(Value::Null)),
            ("ids", Desc::multiple(Desc::value(ParamType::Int, "")).with_default(Value::List(vec![]))),
            (
                "options",
                Desc::single(vec![("x", Desc::value(ParamType::Int, "").optional())])
                    .with_default(Value::Struct(vec![])),
            ),
            ("strict", Desc::value(ParamType::Int, "").not_null().with_default(Value::Null)),
        ];
        assert_eq!(
            validate(&desc, params("strict=3")).unwrap(),
            Value::Struct(vec![
                ("timestart".into(), Value::Null),
                ("ids".into(), Value::List(vec![])),
                ("options".into(), Value::Struct(vec![])),
                ("strict".into(), Value::Int(3)),
            ])
        );
        assert_eq!(
            validate(&desc, params("")),
            Err("strict => Invalid parameter value detected: Invalid external api parameter: \
                 the value is \"\", the server was expecting \"int\" type"
                .into())
        );
    }

    fn tree_strategy() -> impl Strategy<Value = ParamTree> {
        let leaf = prop::collection::vec(any::<u8>(), 0..12).prop_map(|b| ParamTree::Scalar(RawValue::new(b)));
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop::collection::vec(
                (prop::sample::select(vec!["users", "username", "0", "1", "x", "value", "type"]), inner),
                0..6,
            )
            .prop_map(|entries| ParamTree::Map(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
        })
    }

    proptest! {
        #[test]
        fn validation_never_panics(
            entries in prop::collection::vec(
                (prop::sample::select(vec!["users", "userid", "timestart", "foo"]), tree_strategy()),
                0..5,
            )
        ) {
            let params: Vec<(String, ParamTree)> =
                entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            let _ = validate(&enrol_user_desc(), params.clone());
            let _ = validate(&create_users_desc(), params);
        }

        #[test]
        fn every_type_handles_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..24)) {
            for ty in [
                ParamType::Int, ParamType::Bool, ParamType::Float, ParamType::Text, ParamType::Raw,
                ParamType::RawTrimmed, ParamType::NoTags, ParamType::Alpha, ParamType::AlphaExt,
                ParamType::AlphaNum, ParamType::AlphaNumExt, ParamType::Sequence,
                ParamType::Username, ParamType::Auth, ParamType::Lang, ParamType::Theme,
                ParamType::Email, ParamType::Timezone, ParamType::Url,
            ] {
                if let Some(Value::Str(s)) = check(ty, &bytes) {
                    prop_assert_eq!(s.as_bytes(), bytes.as_slice());
                }
            }
        }

        #[test]
        fn canonical_ints_round_trip(n in any::<i64>()) {
            prop_assert_eq!(check(ParamType::Int, n.to_string().as_bytes()), Some(Value::Int(n)));
        }
    }
}
