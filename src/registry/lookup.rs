//! `enrol_semco_check_user_existence_by_field`'s checks (MOODLE-REFERENCE.md §3.8), pure: which
//! user column a field names and whether the value survives that column's cleaning.

/// The user columns the function may search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupField {
    IdNumber,
    Username,
    Email,
}

impl LookupField {
    pub const fn column(self) -> &'static str {
        match self {
            LookupField::IdNumber => "idnumber",
            LookupField::Username => "username",
            LookupField::Email => "email",
        }
    }
}

/// Why a lookup is refused, in the plugin's check order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The field is none of `idnumber`, `username`, `email`.
    InvalidField(String),
    /// Cleaning the value with the field's type changed it.
    ValueNotClean { field: &'static str, value: String, cleaned: String },
    /// `core_user_get_users_by_field`: cleaning a value with the field's type changed it
    /// (Moodle words it without the space before the parenthesis).
    UsersByFieldValueNotClean { field: &'static str, value: String, cleaned: String },
}

/// The fields `core_user_get_users_by_field` searches, with the user property's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsersByField {
    Id,
    IdNumber,
    Username,
    Email,
}

impl UsersByField {
    pub fn parse(field: &str) -> Option<Self> {
        Some(match field {
            "id" => Self::Id,
            "idnumber" => Self::IdNumber,
            "username" => Self::Username,
            "email" => Self::Email,
            _ => return None,
        })
    }

    pub const fn column(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::IdNumber => "idnumber",
            Self::Username => "username",
            Self::Email => "email",
        }
    }
}

/// A value of `core_user_get_users_by_field`, cleaned with the user property's type (`id`
/// PARAM_INT, `idnumber` PARAM_RAW, `username` PARAM_USERNAME, `email` PARAM_RAW_TRIMMED) and
/// refused when PHP's `!=` says cleaning changed it; the cleaned value is what is searched.
///
/// # Errors
/// [`LookupError::UsersByFieldValueNotClean`].
pub fn check_users_by_field_value(field: UsersByField, value: &str) -> Result<String, LookupError> {
    let (cleaned, same) = match field {
        UsersByField::Id => {
            let cleaned = php_int_cast(value);
            // PHP 8: a numeric string is compared with the int as a number, any other as text.
            let same = match php_numeric(value) {
                Some(number) => number == cleaned as f64,
                None => value == cleaned.to_string(),
            };
            (cleaned.to_string(), same)
        }
        UsersByField::IdNumber => {
            let cleaned = clean_raw(value);
            let same = cleaned == value;
            (cleaned, same)
        }
        UsersByField::Username => {
            let cleaned = clean_username(value);
            let same = cleaned == value;
            (cleaned, same)
        }
        UsersByField::Email => {
            let cleaned = clean_raw_trimmed(value);
            let same = cleaned == value;
            (cleaned, same)
        }
    };
    if same {
        return Ok(cleaned);
    }
    Err(LookupError::UsersByFieldValueNotClean { field: field.column(), value: value.to_owned(), cleaned })
}

/// PHP's `(int)` of a string: leading whitespace, a sign and digits (0 when there are none);
/// a numeric string with a fraction or exponent is cast through its float value.
fn php_int_cast(value: &str) -> i64 {
    if let Some(number) = php_numeric(value) {
        if number.is_finite() && number.abs() < 9.2e18 {
            return number.trunc() as i64;
        }
    }
    let rest = value.trim_start_matches([' ', '\t', '\n', '\r', '\u{0B}', '\u{0C}']);
    let (sign, digits) = match rest.as_bytes().first() {
        Some(b'-') => (-1, &rest[1..]),
        Some(b'+') => (1, &rest[1..]),
        _ => (1, rest),
    };
    let digits: String = digits.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<i64>().map_or(0, |n| sign * n)
}

/// PHP 8's `is_numeric` (leading and trailing whitespace allowed), as its value.
fn php_numeric(value: &str) -> Option<f64> {
    let trimmed = value.trim_matches([' ', '\t', '\n', '\r', '\u{0B}', '\u{0C}']);
    let body = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    let plain = body.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if trimmed.is_empty() || !plain || !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    trimmed.parse::<f64>().ok()
}

/// Checks a lookup: the field first, then the value cleaned with the field's type
/// (`idnumber` PARAM_RAW, `username` PARAM_USERNAME, `email` PARAM_RAW_TRIMMED).
///
/// # Errors
/// The first refusal, as [`LookupError`].
pub fn check_lookup(field: &str, value: &str) -> Result<LookupField, LookupError> {
    let field = match field {
        "idnumber" => LookupField::IdNumber,
        "username" => LookupField::Username,
        "email" => LookupField::Email,
        other => return Err(LookupError::InvalidField(other.to_owned())),
    };
    let cleaned = match field {
        LookupField::IdNumber => clean_raw(value),
        LookupField::Username => clean_username(value),
        LookupField::Email => clean_raw_trimmed(value),
    };
    if cleaned != value {
        return Err(LookupError::ValueNotClean { field: field.column(), value: value.to_owned(), cleaned });
    }
    Ok(field)
}

/// `fix_utf8`: drops NUL and the non-characters U+FFFE / U+FFFF.
fn clean_raw(value: &str) -> String {
    value.chars().filter(|c| !matches!(c, '\0' | '\u{FFFE}' | '\u{FFFF}')).collect()
}

/// PHP's `trim()` characters.
fn is_php_trim_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\0' | '\u{0B}')
}

fn clean_raw_trimmed(value: &str) -> String {
    clean_raw(value).trim_matches(is_php_trim_char).to_owned()
}

/// PARAM_USERNAME with `extendedusernamechars` off: trimmed, lowercased, then every character
/// but `a-z 0-9 - . @ _` removed.
fn clean_username(value: &str) -> String {
    clean_raw(value)
        .trim_matches(is_php_trim_char)
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '@' | '_'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_an_id_that_is_not_an_integer_when_cleaned_then_it_is_refused_with_php_cast() {
        let refused = |value: &str, cleaned: &str| {
            Err(LookupError::UsersByFieldValueNotClean { field: "id", value: value.into(), cleaned: cleaned.into() })
        };
        assert_eq!(check_users_by_field_value(UsersByField::Id, "abc"), refused("abc", "0"));
        assert_eq!(check_users_by_field_value(UsersByField::Id, "1.5"), refused("1.5", "1"));
        assert_eq!(check_users_by_field_value(UsersByField::Id, "4x"), refused("4x", "4"));
        assert_eq!(check_users_by_field_value(UsersByField::Id, "4"), Ok("4".into()));
        assert_eq!(check_users_by_field_value(UsersByField::Id, "-3"), Ok("-3".into()));
    }

    #[test]
    fn given_text_fields_when_cleaned_then_each_uses_its_property_type() {
        assert_eq!(check_users_by_field_value(UsersByField::IdNumber, " A b "), Ok(" A b ".into()));
        assert_eq!(check_users_by_field_value(UsersByField::Username, "anna"), Ok("anna".into()));
        assert!(check_users_by_field_value(UsersByField::Username, "Anna").is_err());
        assert!(check_users_by_field_value(UsersByField::Email, " a@b.c").is_err());
    }

    #[test]
    fn given_a_known_field_and_a_clean_value_when_checked_then_it_names_the_column() {
        assert_eq!(check_lookup("username", "anna.b@x_1-2"), Ok(LookupField::Username));
        assert_eq!(check_lookup("email", "Anna@Example.org"), Ok(LookupField::Email));
        assert_eq!(check_lookup("idnumber", " Any Thing "), Ok(LookupField::IdNumber));
    }

    #[test]
    fn given_an_unknown_field_when_checked_then_it_is_refused_before_the_value() {
        assert_eq!(check_lookup("id", " X "), Err(LookupError::InvalidField("id".into())));
        assert_eq!(check_lookup("", ""), Err(LookupError::InvalidField(String::new())));
    }

    #[test]
    fn given_a_value_its_type_changes_when_checked_then_the_cleaned_value_is_named() {
        let refused = |field: &'static str, value: &str, cleaned: &str| {
            Err(LookupError::ValueNotClean { field, value: value.into(), cleaned: cleaned.into() })
        };
        assert_eq!(check_lookup("username", "Anna"), refused("username", "Anna", "anna"));
        assert_eq!(check_lookup("username", " anna "), refused("username", " anna ", "anna"));
        assert_eq!(check_lookup("username", "an na!"), refused("username", "an na!", "anna"));
        assert_eq!(check_lookup("email", " a@b.c"), refused("email", " a@b.c", "a@b.c"));
    }
}
