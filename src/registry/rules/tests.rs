//! Given/when/then tests of the registry rules: given the registry after these changes, when
//! this rule is asked about this request, then this decision or this error. No I/O.
//!
//! Builders return a request that passes every check; a test changes only the fields its rule
//! is about. The `*_beats_*` tests break two rules at once and prove which one Moodle reports.

use super::*;
use crate::registry::{RegistryOp, UserEntry};

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

/// A fresh site: guest (1), admin (2) and the SEMCO service user (3), as the migrations make it.
fn fresh_site() -> Vec<RegistryOp> {
    [(1, "guest", "root@localhost"), (2, "admin", "admin@localhost"), (3, "semcowebservice", "semco@localhost")]
        .into_iter()
        .map(|(id, username, email)| user_created(id, username, email))
        .collect()
}

fn user_created(id: i64, username: &str, email: &str) -> RegistryOp {
    let user = NewUser { username: username.into(), email: email.into(), ..NewUser::default() };
    RegistryOp::CreateUser { id, user, now: 0 }
}

fn user_erased(id: i64) -> RegistryOp {
    RegistryOp::EraseUser { id, now: 0 }
}

fn course_created_op(id: i64, shortname: &str, idnumber: &str) -> RegistryOp {
    let course =
        NewCourse { shortname: shortname.into(), idnumber: idnumber.into(), categoryid: 1, ..NewCourse::default() };
    RegistryOp::CreateCourse { id, course, now: 0 }
}

/// The registry after the fresh site and then `ops`.
fn given(ops: Vec<RegistryOp>) -> RegistryIndex {
    let mut index = RegistryIndex::default();
    for op in fresh_site().into_iter().chain(ops) {
        op.apply_to_index(&mut index);
    }
    index
}

/// A new user every create rule accepts.
fn new_user() -> NewUser {
    NewUser {
        username: "anna".into(),
        auth: "manual".into(),
        firstname: "Anna".into(),
        lastname: "Berg".into(),
        email: "anna@example.org".into(),
        lang: "en".into(),
        ..NewUser::default()
    }
}

fn facts() -> NewUserFacts {
    NewUserFacts { createpassword: true, ..NewUserFacts::default() }
}

fn rename(id: i64, username: &str) -> UserUpdate {
    UserUpdate { id, username: Some(username.into()), ..UserUpdate::default() }
}

fn new_email(id: i64, email: &str) -> UserUpdate {
    UserUpdate { id, email: Some(email.into()), ..UserUpdate::default() }
}

// ---------------------------------------------------------------------------------------------
// One e-mail validator, one auth-plugin list
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_email_is_moodles_validate_email() {
    for ok in ["a@example.com", "first.last+tag@sub.example.de", "o'neil@x.org", "a@b.c1", "x@xn--bcher-kva.de"] {
        assert!(valid_email(ok), "{ok:?}");
    }
    for bad in [
        "",
        "a",
        "a@",
        "@x.de",
        "a@localhost",
        "a@b.1c",
        "a..b@x.de",
        ".a@x.de",
        "a.@x.de",
        "a@-x.de",
        "a@x-.de",
        "a@x..de",
        "a@x.de.",
        "a b@x.de",
        "<a@x.de>",
        "a@x.de ",
        "a@x.de\n",
        "ä@x.de",
        "a,b@x.de",
        "a@b@x.de",
    ] {
        assert!(!valid_email(bad), "{bad:?}");
    }
    let local = "a".repeat(65);
    assert!(!valid_email(&format!("{local}@x.de")), "a local part has at most 64 characters");
}

#[test]
fn auth_plugins_are_the_twelve_of_a_stock_moodle_and_two_are_not_creatable() {
    let names: Vec<&str> = AUTH_PLUGINS.iter().map(|p| p.name).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted, "sorted, no duplicates");
    assert_eq!(names.len(), 12);
    let refused: Vec<&str> = AUTH_PLUGINS.iter().filter(|p| !p.creatable).map(|p| p.name).collect();
    assert_eq!(refused, ["mnet", "webservice"]);
    assert_eq!(auth_plugin("magic"), None);
}

// ---------------------------------------------------------------------------------------------
// core_user_create_users
// ---------------------------------------------------------------------------------------------

#[test]
fn create_user_accepts_a_complete_user() {
    assert_eq!(check_new_user(&new_user(), &facts()), Ok(()));
}

#[test]
fn create_user_refuses_blank_names_after_trimming() {
    for field in ["username", "firstname", "lastname"] {
        let mut user = new_user();
        match field {
            "username" => user.username = " ".into(),
            "firstname" => user.firstname = "\t".into(),
            _ => user.lastname = String::new(),
        }
        assert_eq!(check_new_user(&user, &facts()), Err(RegistryError::FieldBlank(field)));
    }
}

#[test]
fn create_user_accepts_every_installed_creatable_auth_plugin() {
    for plugin in AUTH_PLUGINS.iter().filter(|p| p.creatable) {
        let user = NewUser { auth: plugin.name.into(), ..new_user() };
        assert_eq!(check_new_user(&user, &facts()), Ok(()), "{}", plugin.name);
    }
}

#[test]
fn create_user_refuses_mnet_webservice_and_unknown_auth() {
    for auth in ["mnet", "webservice", "magic", ""] {
        let user = NewUser { auth: auth.into(), ..new_user() };
        assert_eq!(check_new_user(&user, &facts()), Err(RegistryError::InvalidAuth(auth.into())));
    }
}

#[test]
fn create_user_refuses_a_taken_username() {
    let facts = NewUserFacts { username_taken: true, ..facts() };
    assert_eq!(check_new_user(&new_user(), &facts), Err(RegistryError::UsernameExists("anna".into())));
}

#[test]
fn create_user_refuses_a_language_that_is_not_installed() {
    let user = NewUser { lang: "de".into(), ..new_user() };
    assert_eq!(check_new_user(&user, &facts()), Err(RegistryError::InvalidLang("de".into())));
}

#[test]
fn create_user_needs_a_password_for_internal_auth_plugins_only() {
    let no_password = NewUserFacts { createpassword: false, password_given: false, ..facts() };
    for plugin in AUTH_PLUGINS.iter().filter(|p| p.creatable) {
        let user = NewUser { auth: plugin.name.into(), ..new_user() };
        let expected = if plugin.internal { Err(RegistryError::PasswordRequired) } else { Ok(()) };
        assert_eq!(check_new_user(&user, &no_password), expected, "{}", plugin.name);
    }
    let given = NewUserFacts { password_given: true, ..no_password };
    assert_eq!(check_new_user(&new_user(), &given), Ok(()));
}

#[test]
fn create_user_refuses_an_invalid_address() {
    let user = NewUser { email: "a@b.1c".into(), ..new_user() };
    assert_eq!(check_new_user(&user, &facts()), Err(RegistryError::EmailInvalid("a@b.1c".into())));
}

#[test]
fn create_user_refuses_a_taken_address_unless_allowaccountssameemail() {
    let taken = NewUserFacts { email_taken: true, ..facts() };
    assert_eq!(check_new_user(&new_user(), &taken), Err(RegistryError::EmailExists("anna@example.org".into())));
    let allowed = NewUserFacts { allow_accounts_same_email: true, ..taken };
    assert_eq!(check_new_user(&new_user(), &allowed), Ok(()));
}

#[test]
fn create_user_blank_name_beats_taken_username_beats_invalid_auth() {
    let taken = NewUserFacts { username_taken: true, ..facts() };
    let user = NewUser { auth: "mnet".into(), lastname: " ".into(), ..new_user() };
    assert_eq!(check_new_user(&user, &taken), Err(RegistryError::FieldBlank("lastname")));
    let user = NewUser { auth: "mnet".into(), ..new_user() };
    assert_eq!(check_new_user(&user, &taken), Err(RegistryError::UsernameExists("anna".into())));
    assert_eq!(check_new_user(&user, &facts()), Err(RegistryError::InvalidAuth("mnet".into())));
}

// ---------------------------------------------------------------------------------------------
// core_user_update_users
// ---------------------------------------------------------------------------------------------

#[test]
fn update_user_accepts_a_free_username_and_the_users_own() {
    let index = given(vec![user_created(4, "anna", "anna@x.org")]);
    assert_eq!(check_user_update(&index, &rename(4, "anne"), false), Ok(()));
    assert_eq!(check_user_update(&index, &rename(4, "anna"), false), Ok(()));
}

#[test]
fn update_user_refuses_another_live_users_username() {
    let index = given(vec![user_created(4, "anna", "anna@x.org"), user_created(5, "bert", "bert@x.org")]);
    assert_eq!(check_user_update(&index, &rename(5, "anna"), false), Err(RegistryError::UsernameExists("anna".into())));
    assert_eq!(
        check_user_update(&index, &rename(5, "admin"), false),
        Err(RegistryError::UsernameExists("admin".into())),
        "nor the administrator's"
    );
}

#[test]
fn update_user_may_take_a_deleted_users_former_username() {
    let index =
        given(vec![user_created(4, "anna", "anna@x.org"), user_created(5, "bert", "bert@x.org"), user_erased(4)]);
    assert_eq!(check_user_update(&index, &rename(5, "anna"), false), Ok(()));
}

#[test]
fn update_user_refuses_an_unknown_id() {
    assert_eq!(check_user_update(&given(vec![]), &rename(99, "x"), false), Err(RegistryError::UserMissing(99)));
}

#[test]
fn update_user_protects_the_administrator_and_the_guest() {
    let index = given(vec![]);
    assert_eq!(check_user_update(&index, &rename(2, "root"), false), Err(RegistryError::AdminProtected));
    assert_eq!(check_user_update(&index, &rename(1, "visitor"), false), Err(RegistryError::GuestProtected));
}

#[test]
fn update_user_refuses_a_deleted_user() {
    let index = given(vec![user_created(4, "anna", "anna@x.org"), user_erased(4)]);
    assert_eq!(check_user_update(&index, &rename(4, "anna"), false), Err(RegistryError::UserDeleted(4)));
}

#[test]
fn update_user_checks_a_changed_address_only() {
    let index = given(vec![user_created(4, "anna", "anna@x.org"), user_created(5, "bert", "bert@x.org")]);
    assert_eq!(
        check_user_update(&index, &new_email(4, "a@b.1c"), false),
        Err(RegistryError::EmailInvalid("a@b.1c".into()))
    );
    assert_eq!(
        check_user_update(&index, &new_email(4, "BERT@x.org"), false),
        Err(RegistryError::EmailExists("BERT@x.org".into())),
        "case-insensitive"
    );
    assert_eq!(check_user_update(&index, &new_email(4, "BERT@x.org"), true), Ok(()), "allowaccountssameemail");
    assert_eq!(check_user_update(&index, &new_email(4, "anna@x.org"), false), Ok(()), "unchanged");
    // An address stored before the rule existed is not re-checked while it stays.
    let old = given(vec![user_created(6, "carl", "carl@localhost")]);
    assert_eq!(check_user_update(&old, &new_email(6, "carl@localhost"), false), Ok(()));
}

#[test]
fn update_user_invalid_address_beats_taken_username() {
    let index = given(vec![user_created(4, "anna", "anna@x.org"), user_created(5, "bert", "bert@x.org")]);
    let update = UserUpdate { email: Some("nope".into()), ..rename(5, "anna") };
    assert_eq!(check_user_update(&index, &update, false), Err(RegistryError::EmailInvalid("nope".into())));
}

#[test]
fn update_user_administrator_beats_everything_else() {
    let index = given(vec![]);
    let update = UserUpdate { email: Some("nope".into()), ..rename(2, "guest") };
    assert_eq!(check_user_update(&index, &update, false), Err(RegistryError::AdminProtected));
}

// ---------------------------------------------------------------------------------------------
// core_user_delete_users
// ---------------------------------------------------------------------------------------------

#[test]
fn delete_user_erases_a_live_user() {
    let index = given(vec![user_created(4, "anna", "anna@x.org")]);
    assert_eq!(check_delete_user(&index, 4, false, Some(3)), Ok(Deletion::Erase));
}

#[test]
fn delete_user_keeps_the_guest_without_an_error() {
    assert_eq!(check_delete_user(&given(vec![]), GUEST_USER_ID, false, Some(3)), Ok(Deletion::KeepGuest));
}

#[test]
fn delete_user_refuses_unknown_deleted_and_twice_named_users() {
    let index =
        given(vec![user_created(4, "anna", "anna@x.org"), user_created(5, "bert", "bert@x.org"), user_erased(5)]);
    assert_eq!(check_delete_user(&index, 99, false, None), Err(RegistryError::UserMissing(99)));
    assert_eq!(check_delete_user(&index, 5, false, None), Err(RegistryError::UserMissing(5)));
    assert_eq!(check_delete_user(&index, 4, true, None), Err(RegistryError::UserMissing(4)));
}

#[test]
fn delete_user_refuses_the_administrator_and_the_caller() {
    let index = given(vec![]);
    assert_eq!(check_delete_user(&index, ADMIN_USER_ID, false, Some(3)), Err(RegistryError::AdminProtected));
    assert_eq!(check_delete_user(&index, 3, false, Some(3)), Err(RegistryError::SelfDelete));
}

#[test]
fn delete_user_administrator_beats_self() {
    let index = given(vec![]);
    assert_eq!(
        check_delete_user(&index, ADMIN_USER_ID, false, Some(ADMIN_USER_ID)),
        Err(RegistryError::AdminProtected)
    );
}

#[test]
fn delete_user_self_beats_guest() {
    let index = given(vec![]);
    assert_eq!(check_delete_user(&index, GUEST_USER_ID, false, Some(GUEST_USER_ID)), Err(RegistryError::SelfDelete));
}

// ---------------------------------------------------------------------------------------------
// core_course_create_courses, core_course_update_courses
// ---------------------------------------------------------------------------------------------

fn new_course(shortname: &str, idnumber: &str) -> NewCourse {
    NewCourse {
        fullname: "Course".into(),
        shortname: shortname.into(),
        idnumber: idnumber.into(),
        categoryid: 1,
        ..NewCourse::default()
    }
}

#[test]
fn create_course_refuses_an_unknown_category() {
    let course = NewCourse { categoryid: 7, ..new_course("C1", "") };
    assert_eq!(check_new_course(&given(vec![]), &course), Err(RegistryError::CategoryContextInvalid(7)));
}

#[test]
fn create_course_refuses_a_taken_shortname_or_idnumber_but_not_an_empty_one() {
    let index = given(vec![course_created_op(2, "C1", "ID-1"), course_created_op(3, "C2", "")]);
    assert_eq!(check_new_course(&index, &new_course("C1", "")), Err(RegistryError::ShortnameTaken("C1".into())));
    assert_eq!(check_new_course(&index, &new_course("C3", "ID-1")), Err(RegistryError::IdnumberTaken("ID-1".into())));
    assert_eq!(check_new_course(&index, &new_course("C3", "")), Ok(()));
}

#[test]
fn update_course_refuses_unknown_course_category_and_another_courses_names() {
    let index = given(vec![course_created_op(2, "C1", "ID-1"), course_created_op(3, "C2", "ID-2")]);
    let update = |id, f: fn(&mut CourseUpdate)| {
        let mut update = CourseUpdate { id, ..CourseUpdate::default() };
        f(&mut update);
        check_course_update(&index, &update)
    };
    assert_eq!(update(9, |_| {}), Err(RegistryError::CourseMissing(9)));
    assert_eq!(update(2, |u| u.categoryid = Some(4)), Err(RegistryError::CategoryMissing(4)));
    assert_eq!(update(2, |u| u.shortname = Some("C2".into())), Err(RegistryError::ShortnameTaken("C2".into())));
    assert_eq!(update(2, |u| u.idnumber = Some("ID-2".into())), Err(RegistryError::IdnumberTaken("ID-2".into())));
    assert_eq!(update(2, |u| u.shortname = Some("C1".into())), Ok(()), "its own short name");
    assert_eq!(update(2, |u| u.idnumber = Some(String::new())), Ok(()), "an empty ID number");
}

// The harness itself: a fresh site has the three users Moodle and the installer create.
#[test]
fn fresh_site_has_guest_admin_and_service_user() {
    let index = given(vec![]);
    let entry = |id| index.user(id).cloned();
    let guest = UserEntry::new("guest", "root@localhost", "", false, false);
    assert_eq!(entry(1), Some(guest));
    assert!(index.username_taken("admin") && index.username_taken("semcowebservice"));
}

// ---------------------------------------------------------------------------------------------
// core_user_update_users: one call's earlier updates, seen through an overlay (no index copy)
// ---------------------------------------------------------------------------------------------

/// The answers to a call's updates, each seeing the earlier accepted ones: through the
/// overlay, and through a copy of the index changed in place (the reference).
fn answers(index: &RegistryIndex, updates: &[UserUpdate], same_email: bool) -> [Vec<Result<(), RegistryError>>; 2] {
    let mut overlay = crate::registry::UserOverlay::new(index);
    let mut copy = index.clone();
    let mut through_overlay = Vec::new();
    let mut through_copy = Vec::new();
    for update in updates {
        let answer = check_user_update(&overlay, update, same_email);
        if answer.is_ok() {
            overlay.update(update);
        }
        through_overlay.push(answer);
        let answer = check_user_update(&copy, update, same_email);
        if answer.is_ok() {
            RegistryOp::UpdateUser { update: update.clone(), now: 0 }.apply_to_index(&mut copy);
        }
        through_copy.push(answer);
    }
    [through_overlay, through_copy]
}

// given anna, bert and carl, when one call renames and re-addresses them in turn, then each
// update sees the earlier ones exactly as a changed copy of the index would.
#[test]
fn update_users_overlay_answers_as_a_changed_copy_of_the_index() {
    let index = given(vec![
        user_created(4, "anna", "anna@x.org"),
        user_created(5, "bert", "bert@x.org"),
        user_created(6, "carl", "carl@x.org"),
    ]);
    let calls: Vec<Vec<UserUpdate>> = vec![
        // anna's username is freed by her rename, then taken by bert; carl cannot take bert's new one.
        vec![rename(4, "anne"), rename(5, "anna"), rename(6, "anna"), rename(6, "bert")],
        // an address moved by an earlier update is taken for the later ones, and the old one free.
        vec![new_email(4, "NEW@x.org"), new_email(5, "new@x.org"), new_email(5, "anna@x.org")],
        // a user renamed twice keeps only the last name.
        vec![rename(4, "a1"), rename(4, "a2"), rename(5, "a1"), rename(6, "a2")],
    ];
    for updates in &calls {
        for same_email in [false, true] {
            let [overlay, copy] = answers(&index, updates, same_email);
            assert_eq!(overlay, copy, "{updates:?}");
        }
    }
    let [overlay, _] = answers(&index, &calls[0], false);
    assert_eq!(overlay, vec![Ok(()), Ok(()), Err(RegistryError::UsernameExists("anna".into())), Ok(())]);
}

// ---------------------------------------------------------------------------------------------
// Which event each accepted registry change emits
// ---------------------------------------------------------------------------------------------

// given a new user with names, an e-mail and a profile field, when it is registered, then the
// event names the personal fields it filled and carries only auth and suspension as values.
#[test]
fn a_registered_user_emits_its_field_names_and_no_personal_value() {
    let mut user = new_user();
    user.profile.push(("semco_userbirthday".into(), "1970-01-01".into()));
    let event = user_registered(4, &user);
    let UserEvent::UserRegistered { user_id, auth, suspended, fields } = &event else { panic!("{event:?}") };
    assert_eq!((user_id.0, auth.as_str(), *suspended), (4, "manual", false));
    assert_eq!(fields, &["username", "firstname", "lastname", "email", "lang", "profile_field_semco_userbirthday"]);
    let payload = serde_json::to_string(&event).unwrap();
    for personal in ["anna", "Anna", "Berg", "example.org", "1970"] {
        assert!(!payload.contains(personal), "{personal} in {payload}");
    }
}

// given anna (manual, not suspended), when an update suspends her, changes her auth, renames
// her and sets her first name, then the event has auth and suspended old → new and the names
// of the personal fields only; an update that changes nothing emits no event.
#[test]
fn an_updated_user_emits_old_and_new_non_personal_values_and_field_names() {
    let before = UserEntry::new("anna", "anna@x.org", "manual", false, false);
    let update = UserUpdate {
        id: 4,
        username: Some("anne".into()),
        auth: Some("nologin".into()),
        firstname: Some("Anne".into()),
        email: Some("anna@x.org".into()),
        suspended: Some(true),
        ..UserUpdate::default()
    };
    let event = user_updated(&before, &update).unwrap();
    assert_eq!(
        event,
        UserEvent::UserUpdated {
            user_id: UserId(4),
            fields: vec!["username".into(), "firstname".into()],
            auth: Some(Change { old: "manual".into(), new: "nologin".into() }),
            suspended: Some(Change { old: false, new: true }),
        },
        "the unchanged e-mail is not named"
    );
    let same = UserUpdate { id: 4, suspended: Some(false), auth: Some("manual".into()), ..UserUpdate::default() };
    assert_eq!(user_updated(&before, &same), None);
    assert_eq!(user_deleted(4), UserEvent::UserDeleted { user_id: UserId(4) });
}

// given course 2, when an update flips enablecompletion and renames it, then the event carries
// exactly those fields with old and new values; an update to the same values emits none.
#[test]
fn an_updated_course_emits_every_changed_field_old_and_new() {
    let course = NewCourse {
        fullname: "Course".into(),
        shortname: "C1".into(),
        categoryid: 1,
        enablecompletion: false,
        ..NewCourse::default()
    };
    let CourseRecordEvent::CourseCreated { course_id, record } = course_created(2, &course) else { panic!() };
    assert_eq!((course_id.0, record.shortname.as_str(), record.enablecompletion), (2, "C1", false));
    let before = CourseEntry::of(&course);
    let update = CourseUpdate {
        id: 2,
        fullname: Some("Course 2".into()),
        shortname: Some("C1".into()),
        enablecompletion: Some(true),
        ..CourseUpdate::default()
    };
    let Some(CourseRecordEvent::CourseUpdated { fullname, shortname, enablecompletion, visible, .. }) =
        course_updated(&before, &update)
    else {
        panic!("an event")
    };
    assert_eq!(fullname, Some(Change { old: "Course".into(), new: "Course 2".into() }));
    assert_eq!(enablecompletion, Some(Change { old: false, new: true }));
    assert_eq!((shortname, visible), (None, None));
    let same =
        CourseUpdate { id: 2, shortname: Some("C1".into()), enablecompletion: Some(false), ..CourseUpdate::default() };
    assert_eq!(course_updated(&before, &same), None);
}
