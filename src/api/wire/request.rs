//! Reading a REST request the way PHP and Moodle's REST server do: query string and form body
//! (url-encoded or multipart) are decoded into raw request variables, PHP's bracket syntax turns
//! them into a parameter tree, GET and POST are merged like `array_merge($_GET, $_POST)`, and the
//! reserved variables (`wstoken`, `wsfunction`, `moodlewsrestformat`, `moodlewssetting*`) are
//! taken out. Values stay raw bytes: invalid UTF-8 must survive until parameter validation
//! rejects it with Moodle's own message.

use std::borrow::Cow;
use std::fmt;

use super::encode::WsError;

/// PHP's `max_input_vars`; the ledger counts every request variable of GET and POST together,
/// `wstoken` and `wsfunction` included, and refuses more instead of truncating.
pub const REQUEST_VARIABLES_MAX: usize = 1000;

/// Largest request body the caller should accept (1 MiB); bigger bodies are refused.
pub const REQUEST_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Longest multipart boundary (RFC 2046 §5.1.1: 1 to 70 characters). A longer one is refused
/// before the body is searched, which keeps the boundary search linear in the body size.
pub const MULTIPART_BOUNDARY_BYTES_MAX: usize = 70;

/// PHP's `max_input_nesting_level`: a variable with more bracket levels is dropped, together
/// with everything already stored under its top-level name.
pub const INPUT_NESTING_LEVELS_MAX: usize = 64;

/// The web-service settings Moodle reads (leniently) and removes before building the function
/// parameters. Only these five are removed; any other `moodlewssetting…` name stays a
/// parameter, as in Moodle.
pub const WS_SETTING_NAMES: [&str; 5] = [
    "moodlewssettingraw",
    "moodlewssettingfileurl",
    "moodlewssettingfilter",
    "moodlewssettinglang",
    "moodlewssettingtimezone",
];

/// One decoded request variable: raw name and raw value, both possibly invalid UTF-8.
pub type RawVar = (Vec<u8>, Vec<u8>);

/// A request value exactly as sent: bytes that may or may not be valid UTF-8.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RawValue(Vec<u8>);

impl RawValue {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The value as text, invalid sequences replaced by U+FFFD (for messages only).
    pub fn to_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_lossy(), f)
    }
}

/// PHP's view of the request variables: a scalar string or an ordered array. Entries keep
/// insertion order; an overwritten key keeps its first position, like a PHP array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamTree {
    Scalar(RawValue),
    Map(Vec<(String, ParamTree)>),
}

impl ParamTree {
    /// This node as an array, turning a scalar into an empty array first (PHP does the same
    /// when `a=1` is followed by `a[b]=2`).
    fn make_map(&mut self) -> &mut Vec<(String, ParamTree)> {
        if let ParamTree::Scalar(_) = self {
            *self = ParamTree::Map(Vec::new());
        }
        match self {
            ParamTree::Map(entries) => entries,
            ParamTree::Scalar(_) => unreachable!("replaced by a map just above"),
        }
    }
}

/// Response format asked for by `moodlewsrestformat`: exactly `json` selects JSON, anything
/// else (or nothing) XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Xml,
    Json,
}

/// A REST call after the reserved variables were taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsRequest {
    /// `wstoken`, if sent as a scalar (an empty value is `Some("")`).
    pub token: Option<String>,
    /// `wsfunction`, if sent as a scalar. Moodle treats `""` and `"0"` alike as "Missing
    /// function name" (PHP `empty()`); that check belongs to the caller.
    pub function: Option<String>,
    pub format: Format,
    /// The function parameters, top-level names in request order.
    pub params: Vec<(String, ParamTree)>,
}

/// Why a request could not be read. Every variant is reported as Moodle's `invalidparameter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// A body whose length is known to be over [`REQUEST_BODY_BYTES_MAX`].
    BodyTooLarge {
        bytes: usize,
    },
    /// The body stream went past [`REQUEST_BODY_BYTES_MAX`] while it was being read.
    BodyOverLimit,
    /// The body could not be read: the client aborted, or sent a malformed chunk.
    BodyUnreadable,
    /// The body did not arrive within the body read timeout.
    BodyTimedOut,
    TooManyVariables,
    MissingBoundary,
    /// A multipart boundary longer than [`MULTIPART_BOUNDARY_BYTES_MAX`].
    BoundaryTooLong,
}

impl ReadError {
    /// The text put in `debuginfo`.
    pub fn debuginfo(&self) -> String {
        self.to_string()
    }

    /// The error document to send: an `invalid_parameter_exception`.
    pub fn to_ws_error(&self) -> WsError {
        WsError::invalid_parameter(self.debuginfo())
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::BodyTooLarge { bytes } => {
                write!(f, "The request body has {bytes} bytes, more than the {REQUEST_BODY_BYTES_MAX} allowed.")
            }
            ReadError::BodyOverLimit => {
                write!(f, "The request body is larger than the {REQUEST_BODY_BYTES_MAX} bytes allowed.")
            }
            ReadError::BodyUnreadable => {
                write!(f, "The request body could not be read (connection closed or malformed chunked encoding).")
            }
            ReadError::BodyTimedOut => write!(f, "The request body did not arrive in time."),
            ReadError::BoundaryTooLong => write!(
                f,
                "The multipart/form-data boundary is longer than the {MULTIPART_BOUNDARY_BYTES_MAX} characters allowed."
            ),
            ReadError::TooManyVariables => write!(f, "The request has more than {REQUEST_VARIABLES_MAX} variables."),
            ReadError::MissingBoundary => {
                write!(f, "The multipart/form-data request names no boundary.")
            }
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads a REST call. `query` is the raw query string (without `?`); `content_type` and `body`
/// are the POST body, to be passed only for POST requests (PHP fills `$_POST` only then). Bodies
/// of other content types (JSON among them) are ignored, as in Moodle.
///
/// # Errors
/// A body over [`REQUEST_BODY_BYTES_MAX`], more than [`REQUEST_VARIABLES_MAX`] variables, or a
/// multipart content type without boundary.
pub fn read_request(query: &[u8], content_type: Option<&str>, body: &[u8]) -> Result<WsRequest, ReadError> {
    if body.len() > REQUEST_BODY_BYTES_MAX {
        return Err(ReadError::BodyTooLarge { bytes: body.len() });
    }
    let get_vars = parse_urlencoded(query)?;
    let post_vars = match content_type.map(media_type) {
        Some(kind) if kind == "application/x-www-form-urlencoded" => parse_urlencoded(body)?,
        Some(kind) if kind == "multipart/form-data" => parse_multipart(content_type.unwrap_or_default(), body)?,
        _ => Vec::new(),
    };
    if get_vars.len() + post_vars.len() > REQUEST_VARIABLES_MAX {
        return Err(ReadError::TooManyVariables);
    }
    let mut get = build_tree(get_vars);
    let mut post = build_tree(post_vars);
    for name in WS_SETTING_NAMES {
        take(&mut get, name);
        take(&mut post, name);
    }
    let mut params = php_array_merge(get, post);
    let format = match take(&mut params, "moodlewsrestformat") {
        Some(ParamTree::Scalar(value)) if value.as_bytes() == b"json" => Format::Json,
        _ => Format::Xml,
    };
    let token = scalar_text(take(&mut params, "wstoken"));
    let function = scalar_text(take(&mut params, "wsfunction"));
    Ok(WsRequest { token, function, format, params })
}

/// The format a query string asks for, for reporting a request that could not be read.
pub fn format_from_query(query: &[u8]) -> Format {
    let mut format = Format::Xml;
    for segment in query.split(|&b| b == b'&') {
        let (name, value) = split_pair(segment);
        if url_decode(name) == b"moodlewsrestformat" {
            format = if url_decode(value) == b"json" { Format::Json } else { Format::Xml };
        }
    }
    format
}

/// Decodes `application/x-www-form-urlencoded` data (also a query string) into raw variables:
/// `+` is a space, `%XX` a byte, a malformed escape stays as written, a name without `=` gets an
/// empty value, empty segments are skipped.
///
/// # Errors
/// [`ReadError::TooManyVariables`] past [`REQUEST_VARIABLES_MAX`] variables.
pub fn parse_urlencoded(bytes: &[u8]) -> Result<Vec<RawVar>, ReadError> {
    let mut vars = Vec::new();
    for segment in bytes.split(|&b| b == b'&').filter(|s| !s.is_empty()) {
        if vars.len() == REQUEST_VARIABLES_MAX {
            return Err(ReadError::TooManyVariables);
        }
        let (name, value) = split_pair(segment);
        vars.push((url_decode(name), url_decode(value)));
    }
    Ok(vars)
}

/// Decodes a `multipart/form-data` body into raw variables. Only form fields are kept: parts
/// with a `filename` are file uploads and are skipped. A part cut off before its closing
/// boundary is dropped.
///
/// # Errors
/// [`ReadError::MissingBoundary`] if the content type names no boundary,
/// [`ReadError::BoundaryTooLong`] past [`MULTIPART_BOUNDARY_BYTES_MAX`],
/// [`ReadError::TooManyVariables`] past [`REQUEST_VARIABLES_MAX`] fields.
///
/// # Cost
/// Linear in the body: the delimiter is searched with `memchr::memmem` (Two-Way, no
/// backtracking) as `\n--boundary`, so every match starts a line and the search never restarts
/// inside text it has already scanned; the cursor only moves forward.
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Result<Vec<RawVar>, ReadError> {
    let boundary = multipart_boundary(content_type).ok_or(ReadError::MissingBoundary)?;
    if boundary.len() > MULTIPART_BOUNDARY_BYTES_MAX {
        return Err(ReadError::BoundaryTooLong);
    }
    let delimiter = Delimiter::new(boundary.as_bytes());
    let mut vars = Vec::new();
    let Some(mut at) = delimiter.find(body, 0) else {
        return Ok(vars);
    };
    loop {
        let after = at + delimiter.len();
        if body.get(after..after + 2) == Some(b"--".as_slice()) {
            break;
        }
        let Some(part) = read_part(body, &delimiter, after) else {
            break;
        };
        if let Some(name) = part.field_name {
            if vars.len() == REQUEST_VARIABLES_MAX {
                return Err(ReadError::TooManyVariables);
            }
            vars.push((name, part.content.to_vec()));
        }
        at = part.next_delimiter;
    }
    Ok(vars)
}

/// Builds PHP's array of request variables from raw variables, in order; a later variable
/// overwrites an earlier one with the same name.
pub fn build_tree(vars: Vec<RawVar>) -> Vec<(String, ParamTree)> {
    let mut root = Vec::new();
    for (name, value) in vars {
        insert_var(&mut root, &name, RawValue(value));
    }
    root
}

/// Parses an integer the way PHP recognises an integer array key (and the only form that
/// survives `PARAM_INT` strictness): `0` or `-?[1-9][0-9]*` within `i64`.
pub(super) fn canonical_int(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = match digits {
        [b'0'] => bytes.len() == 1,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn split_pair(segment: &[u8]) -> (&[u8], &[u8]) {
    match segment.iter().position(|&b| b == b'=') {
        Some(eq) => (&segment[..eq], &segment[eq + 1..]),
        None => (segment, &[]),
    }
}

fn url_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'+' => out.push(b' '),
            b'%' => match tail {
                [high, low, ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                    out.push(hex_value(*high) << 4 | hex_value(*low));
                    rest = &tail[2..];
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
    }
    out
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

/// The media type of a `Content-Type` value, lowercased (PHP matches it case-insensitively).
fn media_type(content_type: &str) -> String {
    let end =
        content_type.find(|c: char| c == ';' || c == ',' || c.is_ascii_whitespace()).unwrap_or(content_type.len());
    content_type[..end].to_ascii_lowercase()
}

/// The `boundary` parameter of a multipart content type, quoted or not.
fn multipart_boundary(content_type: &str) -> Option<&str> {
    let at = content_type.to_ascii_lowercase().find("boundary")?;
    let after = &content_type[at..];
    let raw = &after[after.find('=')? + 1..];
    let boundary = match raw.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"')?],
        None => &raw[..raw.find([',', ';']).unwrap_or(raw.len())],
    };
    (!boundary.is_empty()).then_some(boundary)
}

/// `--boundary` at the start of a line, found in linear time.
struct Delimiter {
    /// `\n--boundary`: a match of this is always a delimiter at the start of a line.
    line: memchr::memmem::Finder<'static>,
    len: usize,
}

impl Delimiter {
    fn new(boundary: &[u8]) -> Self {
        let line = [b"\n--", boundary].concat();
        Self { len: line.len() - 1, line: memchr::memmem::Finder::new(&line).into_owned() }
    }

    /// Length of `--boundary`.
    fn len(&self) -> usize {
        self.len
    }

    /// Position of the next delimiter at `from` or later that starts a line.
    fn find(&self, body: &[u8], from: usize) -> Option<usize> {
        if from == 0 && body.get(..self.len) == Some(&self.line.needle()[1..]) {
            return Some(0);
        }
        // Start one byte early so that a delimiter right at `from` is seen with its `\n`.
        let start = from.saturating_sub(1).min(body.len());
        Some(start + self.line.find(&body[start..])? + 1)
    }
}

struct Part<'a> {
    /// `None` for file uploads and parts without a name.
    field_name: Option<Vec<u8>>,
    content: &'a [u8],
    next_delimiter: usize,
}

/// Reads the part that starts right after a delimiter at `after`.
fn read_part<'a>(body: &'a [u8], delimiter: &Delimiter, after: usize) -> Option<Part<'a>> {
    let headers_start = after + body.get(after..)?.iter().position(|&b| b == b'\n')? + 1;
    let mut pos = headers_start;
    let mut disposition = None;
    loop {
        let line_end = pos + body.get(pos..)?.iter().position(|&b| b == b'\n')?;
        let line = trim_cr(&body[pos..line_end]);
        pos = line_end + 1;
        if line.is_empty() {
            break;
        }
        if let Some(value) = header_value(line, b"content-disposition") {
            disposition = Some(value);
        }
    }
    let next_delimiter = delimiter.find(body, pos)?;
    // The line break before the delimiter belongs to the delimiter, not to the content.
    let content = trim_cr(body.get(pos..next_delimiter.checked_sub(1)?)?);
    Some(Part { field_name: disposition.and_then(form_field_name), content, next_delimiter })
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    line[..colon].trim_ascii().eq_ignore_ascii_case(name).then(|| line[colon + 1..].trim_ascii())
}

/// The `name` of a `form-data` disposition, or `None` for a file part or a nameless part.
fn form_field_name(disposition: &[u8]) -> Option<Vec<u8>> {
    let mut name = None;
    for (key, value) in disposition_params(disposition) {
        if key.eq_ignore_ascii_case(b"filename") {
            return None;
        }
        if key.eq_ignore_ascii_case(b"name") {
            name = Some(value);
        }
    }
    name
}

/// The `key=value` parameters of a `Content-Disposition` value; quoted values may escape `"`
/// and `\` with a backslash.
fn disposition_params(mut rest: &[u8]) -> Vec<(&[u8], Vec<u8>)> {
    let mut params = Vec::new();
    loop {
        rest = rest.trim_ascii_start();
        while let Some(tail) = rest.strip_prefix(b";") {
            rest = tail.trim_ascii_start();
        }
        if rest.is_empty() {
            return params;
        }
        let key_end = rest.iter().position(|&b| b == b'=' || b == b';').unwrap_or(rest.len());
        let key = rest[..key_end].trim_ascii();
        rest = &rest[key_end..];
        let Some(value_part) = rest.strip_prefix(b"=") else {
            continue;
        };
        let (value, tail) = disposition_value(value_part.trim_ascii_start());
        params.push((key, value));
        rest = tail;
    }
}

fn disposition_value(input: &[u8]) -> (Vec<u8>, &[u8]) {
    let Some(quoted) = input.strip_prefix(b"\"") else {
        let end = input.iter().position(|&b| b == b';').unwrap_or(input.len());
        return (input[..end].trim_ascii_end().to_vec(), &input[end..]);
    };
    let mut value = Vec::new();
    let mut i = 0;
    while let Some(&byte) = quoted.get(i) {
        match (byte, quoted.get(i + 1)) {
            (b'"', _) => return (value, &quoted[i + 1..]),
            (b'\\', Some(&next)) if next == b'\\' || next == b'"' => {
                value.push(next);
                i += 2;
            }
            _ => {
                value.push(byte);
                i += 1;
            }
        }
    }
    (value, &[])
}

/// Where one variable lands, decoded from its name like PHP's `php_register_variable_ex`.
#[derive(Debug, PartialEq, Eq)]
enum VarName {
    /// `name=v`, or a name whose first `[` is never closed.
    Plain(String),
    /// `base[k1][]…=v`; `None` is `[]`, append with the next integer key.
    Nested { base: String, path: Vec<Option<String>> },
    /// More than [`INPUT_NESTING_LEVELS_MAX`] bracket levels: `base` is dropped entirely.
    TooDeep(String),
}

fn parse_var_name(raw: &[u8]) -> Option<VarName> {
    // PHP handles the name as a C string and skips leading spaces.
    let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
    let name = &raw[raw.iter().position(|&b| b != b' ').unwrap_or(raw.len())..];
    let open = name.iter().position(|&b| b == b'[');
    let mut base: Vec<u8> =
        name[..open.unwrap_or(name.len())].iter().map(|&b| if b == b' ' || b == b'.' { b'_' } else { b }).collect();
    if base.is_empty() {
        return None;
    }
    let Some(mut bracket) = open else {
        return Some(VarName::Plain(lossy(base)));
    };
    let mut path = Vec::new();
    loop {
        if path.len() >= INPUT_NESTING_LEVELS_MAX {
            return Some(VarName::TooDeep(lossy(base)));
        }
        let index_start = bracket + 1;
        // `[ ]` (one space) appends like `[]`; otherwise the key keeps its leading space.
        let probe = index_start + usize::from(name.get(index_start) == Some(&b' '));
        let close = if name.get(probe) == Some(&b']') {
            path.push(None);
            probe
        } else if let Some(offset) = name[probe.min(name.len())..].iter().position(|&b| b == b']') {
            let close = probe + offset;
            path.push(Some(lossy(name[index_start..close].to_vec())));
            close
        } else if path.is_empty() {
            // An unclosed first bracket is no array: PHP makes the whole name plain.
            base.push(b'_');
            base.extend(name[index_start..].iter().map(|&b| match b {
                b' ' | b'.' | b'[' => b'_',
                other => other,
            }));
            return Some(VarName::Plain(lossy(base)));
        } else {
            // A later unclosed bracket is ignored along with the rest of the name.
            break;
        };
        // Anything after `]` other than another `[` ends the name.
        if name.get(close + 1) == Some(&b'[') {
            bracket = close + 1;
        } else {
            break;
        }
    }
    Some(VarName::Nested { base: lossy(base), path })
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn insert_var(root: &mut Vec<(String, ParamTree)>, name: &[u8], value: RawValue) {
    match parse_var_name(name) {
        None => {}
        Some(VarName::Plain(base)) => upsert(root, base, ParamTree::Scalar(value)),
        Some(VarName::TooDeep(base)) => {
            take(root, &base);
        }
        Some(VarName::Nested { base, path }) => {
            let mut table = root;
            let mut key = Some(base);
            for next in path {
                let Some(child) = child_map(table, key) else {
                    return;
                };
                table = child;
                key = next;
            }
            let leaf = ParamTree::Scalar(value);
            match key {
                Some(key) => upsert(table, key, leaf),
                None => {
                    if let Some(key) = next_index(table) {
                        table.push((key, leaf));
                    }
                }
            }
        }
    }
}

/// The array stored under `key` (`None`: a new one appended), created or made an array.
/// `None` when no integer key is left to append with.
fn child_map(table: &mut Vec<(String, ParamTree)>, key: Option<String>) -> Option<&mut Vec<(String, ParamTree)>> {
    let key = match key {
        Some(key) => key,
        None => next_index(table)?,
    };
    let index = match table.iter().position(|(name, _)| *name == key) {
        Some(index) => index,
        None => {
            table.push((key, ParamTree::Map(Vec::new())));
            table.len() - 1
        }
    };
    Some(table[index].1.make_map())
}

/// PHP's next free integer key: one past the largest integer key, at least 0.
fn next_index(table: &[(String, ParamTree)]) -> Option<String> {
    let largest = table.iter().filter_map(|(key, _)| canonical_int(key.as_bytes())).max();
    match largest {
        None => Some("0".to_owned()),
        Some(n) => Some(n.checked_add(1)?.max(0).to_string()),
    }
}

fn upsert(table: &mut Vec<(String, ParamTree)>, key: String, value: ParamTree) {
    match table.iter_mut().find(|(name, _)| *name == key) {
        Some(entry) => entry.1 = value,
        None => table.push((key, value)),
    }
}

fn take(table: &mut Vec<(String, ParamTree)>, key: &str) -> Option<ParamTree> {
    let index = table.iter().position(|(name, _)| name == key)?;
    Some(table.remove(index).1)
}

/// `array_merge($_GET, $_POST)`: string keys of POST overwrite GET's in place, integer keys of
/// both are renumbered from 0 and appended.
fn php_array_merge(get: Vec<(String, ParamTree)>, post: Vec<(String, ParamTree)>) -> Vec<(String, ParamTree)> {
    let mut merged = Vec::with_capacity(get.len() + post.len());
    let mut next = 0u64;
    for (key, value) in get.into_iter().chain(post) {
        if canonical_int(key.as_bytes()).is_some() {
            merged.push((next.to_string(), value));
            next += 1;
        } else {
            upsert(&mut merged, key, value);
        }
    }
    merged
}

fn scalar_text(tree: Option<ParamTree>) -> Option<String> {
    match tree? {
        ParamTree::Scalar(value) => Some(value.to_lossy().into_owned()),
        ParamTree::Map(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(text: &str) -> ParamTree {
        ParamTree::Scalar(RawValue::new(text))
    }

    fn map(entries: Vec<(&str, ParamTree)>) -> ParamTree {
        ParamTree::Map(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn tree(query: &str) -> Vec<(String, ParamTree)> {
        build_tree(parse_urlencoded(query.as_bytes()).expect("within limits"))
    }

    fn entries(entries: Vec<(&str, ParamTree)>) -> Vec<(String, ParamTree)> {
        match map(entries) {
            ParamTree::Map(e) => e,
            ParamTree::Scalar(_) => unreachable!(),
        }
    }

    #[test]
    fn urlencoded_decodes_plus_percent_and_keeps_malformed_escapes() {
        let vars = parse_urlencoded(b"a=1&b=%41+c&&d&=x&%zz=1%&e=%4&f=%e2%82%ac").unwrap();
        let expected: Vec<RawVar> = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"A c".to_vec()),
            (b"d".to_vec(), b"".to_vec()),
            (b"".to_vec(), b"x".to_vec()),
            (b"%zz".to_vec(), b"1%".to_vec()),
            (b"e".to_vec(), b"%4".to_vec()),
            (b"f".to_vec(), "€".as_bytes().to_vec()),
        ];
        assert_eq!(vars, expected);
    }

    #[test]
    fn invalid_utf8_values_survive() {
        let t = tree("a=%FF%FE");
        assert_eq!(t, entries(vec![("a", ParamTree::Scalar(RawValue::new(vec![0xff, 0xfe])))]));
    }

    #[test]
    fn brackets_build_nested_arrays() {
        let t = tree(
            "users[0][username]=kn-1&users[0][customfields][0][type]=semco_userid\
             &users[0][customfields][0][value]=7&enrolmentids[]=12&enrolmentids[]=13",
        );
        let expected = entries(vec![
            (
                "users",
                map(vec![(
                    "0",
                    map(vec![
                        ("username", s("kn-1")),
                        ("customfields", map(vec![("0", map(vec![("type", s("semco_userid")), ("value", s("7"))]))])),
                    ]),
                )]),
            ),
            ("enrolmentids", map(vec![("0", s("12")), ("1", s("13"))])),
        ]);
        assert_eq!(t, expected);
    }

    #[test]
    fn append_uses_next_integer_key() {
        assert_eq!(
            tree("a[5]=x&a[]=y&a[b]=z&a[]=w"),
            entries(vec![("a", map(vec![("5", s("x")), ("6", s("y")), ("b", s("z")), ("7", s("w"))]))])
        );
        assert_eq!(tree("a[-3]=x&a[]=y"), entries(vec![("a", map(vec![("-3", s("x")), ("0", s("y"))]))]));
        assert_eq!(tree("a[ ]=x&a[ b]=y"), entries(vec![("a", map(vec![("0", s("x")), (" b", s("y"))]))]));
    }

    #[test]
    fn top_level_names_are_mangled_like_php() {
        assert_eq!(
            tree("a.b=1&c d=2&%20%20e=3&f[g.h]=4"),
            entries(vec![("a_b", s("1")), ("c_d", s("2")), ("e", s("3")), ("f", map(vec![("g.h", s("4"))])),])
        );
    }

    #[test]
    fn unclosed_brackets_follow_php() {
        assert_eq!(tree("a[b=1"), entries(vec![("a_b", s("1"))]));
        assert_eq!(tree("a.b[c.d[e=1"), entries(vec![("a_b_c_d_e", s("1"))]));
        assert_eq!(tree("a[x][b=1"), entries(vec![("a", map(vec![("x", s("1"))]))]));
        assert_eq!(tree("a[b]c=1"), entries(vec![("a", map(vec![("b", s("1"))]))]));
        assert_eq!(tree("a[b[c]=1"), entries(vec![("a", map(vec![("b[c", s("1"))]))]));
    }

    #[test]
    fn nameless_and_nul_names() {
        assert_eq!(tree("[x]=1&=2&%20=3"), Vec::new());
        assert_eq!(tree("a%00b=1"), entries(vec![("a", s("1"))]));
    }

    #[test]
    fn later_duplicates_overwrite_in_place() {
        assert_eq!(tree("a=1&b=2&a=3"), entries(vec![("a", s("3")), ("b", s("2"))]));
        assert_eq!(tree("a=1&b=2&a[x]=3"), entries(vec![("a", map(vec![("x", s("3"))])), ("b", s("2"))]));
        assert_eq!(tree("a[x]=3&a=1"), entries(vec![("a", s("1"))]));
    }

    #[test]
    fn nesting_deeper_than_php_allows_drops_the_variable() {
        let deep_ok = format!("a{}=1", "[x]".repeat(INPUT_NESTING_LEVELS_MAX));
        let t = tree(&deep_ok);
        assert_eq!(t.len(), 1);
        let too_deep = format!("b=0&a[y]=2&a{}=1", "[x]".repeat(INPUT_NESTING_LEVELS_MAX + 1));
        assert_eq!(tree(&too_deep), entries(vec![("b", s("0"))]));
    }

    #[test]
    fn post_wins_and_integer_keys_are_renumbered() {
        let req = read_request(b"a=1&b=2&5=g", Some("application/x-www-form-urlencoded"), b"b=3&c=4&5=p").unwrap();
        assert_eq!(
            req.params,
            entries(vec![("a", s("1")), ("b", s("3")), ("0", s("g")), ("c", s("4")), ("1", s("p")),])
        );
    }

    #[test]
    fn reserved_variables_are_extracted() {
        let req = read_request(
            b"wstoken=abc&moodlewssettingfilter=1&moodlewssettingfoo=1",
            Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
            b"wsfunction=enrol_semco_enrol_user&moodlewsrestformat=json&userid=42",
        )
        .unwrap();
        assert_eq!(req.token.as_deref(), Some("abc"));
        assert_eq!(req.function.as_deref(), Some("enrol_semco_enrol_user"));
        assert_eq!(req.format, Format::Json);
        assert_eq!(req.params, entries(vec![("moodlewssettingfoo", s("1")), ("userid", s("42"))]));
    }

    #[test]
    fn only_exact_json_selects_json() {
        for (query, format) in [
            ("moodlewsrestformat=json", Format::Json),
            ("moodlewsrestformat=JSON", Format::Xml),
            ("moodlewsrestformat=xml", Format::Xml),
            ("moodlewsrestformat[]=json", Format::Xml),
            ("x=1", Format::Xml),
        ] {
            let req = read_request(query.as_bytes(), None, b"").unwrap();
            assert_eq!(req.format, format, "{query}");
            assert!(req.params.iter().all(|(k, _)| k != "moodlewsrestformat"));
        }
        assert_eq!(format_from_query(b"a=1&moodlewsrestformat=json"), Format::Json);
        assert_eq!(format_from_query(b"moodlewsrestformat=json&moodlewsrestformat=x"), Format::Xml);
    }

    #[test]
    fn non_form_bodies_are_ignored() {
        let req = read_request(b"wstoken=t", Some("application/json"), b"{\"a\":1}").unwrap();
        assert!(req.params.is_empty());
        assert_eq!(req.function, None);
    }

    #[test]
    fn variable_limit_counts_get_and_post_together() {
        let mut query = String::from("wstoken=t&wsfunction=f");
        for i in 0..(REQUEST_VARIABLES_MAX - 3) {
            query.push_str(&format!("&v{i}=1"));
        }
        let ct = Some("application/x-www-form-urlencoded");
        assert!(read_request(query.as_bytes(), ct, b"last=1").is_ok());
        assert_eq!(read_request(query.as_bytes(), ct, b"last=1&one_more=1"), Err(ReadError::TooManyVariables));
        let long: String = (0..=REQUEST_VARIABLES_MAX).map(|i| format!("v{i}=1&")).collect();
        assert_eq!(parse_urlencoded(long.as_bytes()), Err(ReadError::TooManyVariables));
        let err = ReadError::TooManyVariables.to_ws_error();
        assert_eq!(err.errorcode.as_deref(), Some("invalidparameter"));
    }

    #[test]
    fn oversized_body_is_refused() {
        let body = vec![b'a'; REQUEST_BODY_BYTES_MAX + 1];
        assert_eq!(
            read_request(b"", Some("application/x-www-form-urlencoded"), &body),
            Err(ReadError::BodyTooLarge { bytes: REQUEST_BODY_BYTES_MAX + 1 })
        );
    }

    #[test]
    fn multipart_fields_are_read_and_files_skipped() {
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"wstoken\"\r\n\r\nabc\r\n\
--XyZ\r\ncontent-disposition: form-data; name=\"users[0][username]\"\r\nContent-Type: text/plain\r\n\r\nline1\r\nline2\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"a.txt\"\r\n\r\nFILE\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"q\\\"x\"\r\n\r\n\xff\r\n\
--XyZ--\r\n";
        let vars = parse_multipart("multipart/form-data; boundary=XyZ", body).unwrap();
        let expected: Vec<RawVar> = vec![
            (b"wstoken".to_vec(), b"abc".to_vec()),
            (b"users[0][username]".to_vec(), b"line1\r\nline2".to_vec()),
            (b"q\"x".to_vec(), vec![0xff]),
        ];
        assert_eq!(vars, expected);
        let req = read_request(b"", Some("multipart/form-data; boundary=\"XyZ\""), body).unwrap();
        assert_eq!(req.token.as_deref(), Some("abc"));
        assert_eq!(req.params.len(), 2);
    }

    #[test]
    fn multipart_accepts_bare_newlines_and_drops_a_cut_part() {
        let body =
            b"--b\nContent-Disposition: form-data; name=a\n\n1\n--b\nContent-Disposition: form-data; name=c\n\n2";
        let vars = parse_multipart("multipart/form-data;boundary=b", body).unwrap();
        assert_eq!(vars, vec![(b"a".to_vec(), b"1".to_vec())]);
    }

    #[test]
    fn multipart_without_boundary_is_an_error() {
        assert_eq!(parse_multipart("multipart/form-data", b"--x\r\n"), Err(ReadError::MissingBoundary));
        assert_eq!(read_request(b"", Some("multipart/form-data; boundary="), b""), Err(ReadError::MissingBoundary));
    }

    #[test]
    fn canonical_int_matches_php_integer_keys() {
        for ok in ["0", "-5", "12", "9223372036854775807", "-9223372036854775808"] {
            assert!(canonical_int(ok.as_bytes()).is_some(), "{ok}");
        }
        for bad in ["", "-0", "01", "+1", " 1", "1 ", "1.0", "1e3", "-", "9223372036854775808"] {
            assert!(canonical_int(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    fn name_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(b"ab0 .[]]-%+=&\x00\xff".to_vec()), 0..40)
    }

    proptest! {
        #[test]
        fn urlencoded_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(vars) = parse_urlencoded(&bytes) {
                let _ = build_tree(vars);
            }
        }

        #[test]
        fn names_never_panic(names in prop::collection::vec(name_strategy(), 0..20)) {
            let vars = names.into_iter().map(|n| (n, b"v".to_vec())).collect();
            let _ = build_tree(vars);
        }

        #[test]
        fn read_request_never_panics(
            query in prop::collection::vec(any::<u8>(), 0..200),
            body in prop::collection::vec(any::<u8>(), 0..400),
            multipart in any::<bool>(),
        ) {
            let ct = if multipart { "multipart/form-data; boundary=ab" } else { "application/x-www-form-urlencoded" };
            let _ = read_request(&query, Some(ct), &body);
            let _ = format_from_query(&query);
        }

        #[test]
        fn multipart_never_panics(
            parts in prop::collection::vec(prop::collection::vec(
                prop::sample::select(b"--ab\r\n\"; =name:Content-Disposition\\x\xff".to_vec()), 0..60), 0..8),
        ) {
            let body: Vec<u8> = parts.join(&b"\r\n--ab\r\n"[..]);
            let _ = parse_multipart("multipart/form-data; boundary=ab", &body);
        }
    }
}
