//! The registration event the notifier understands.
//!
//! A `user-registered` event carries a JSON object (the `json` payload, or a
//! `text` / `binary` payload holding JSON):
//!
//! ```json
//! {"user_id": 123, "email": "ada@example.com", "name": "Ada"}
//! ```
//!
//! `user_id` (number or string) and `email` are required; `name` is optional
//! (the greeting falls back to the part of the address before '@').

use eventgateway::json::struct_to_json;
use eventgateway::v1::{event::Data, Event};
use lettre::Address;
use serde_json::Value;

/// A new user to welcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    /// The user's id, as text.
    pub user_id: String,
    /// Where the welcome email goes.
    pub email: Address,
    /// How to greet the user.
    pub name: String,
}

/// Reads a registration out of an event; the error says why it is unusable.
pub(crate) fn parse(event: &Event) -> Result<Registration, String> {
    let json: Value = match &event.data {
        Some(Data::Json(object)) => serde_json::from_slice(&struct_to_json(object)),
        Some(Data::Text(text)) => serde_json::from_str(text),
        Some(Data::Binary(bytes)) => serde_json::from_slice(bytes),
        None => return Err("the event has no payload".into()),
    }
    .map_err(|error| format!("the payload is not JSON: {error}"))?;
    let user_id = match json.get("user_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => return Err("user_id is missing".into()),
    };
    let email = match json.get("email") {
        Some(Value::String(email)) if !email.trim().is_empty() => email.trim(),
        _ => return Err("email is missing".into()),
    };
    let email: Address = email
        .parse()
        .map_err(|error| format!("email {email:?} is not a usable address: {error}"))?;
    let name = match json.get("name") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.trim().to_owned(),
        _ => email.user().to_owned(),
    };
    Ok(Registration {
        user_id,
        email,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Event {
        Event {
            data: eventgateway::json::json_to_struct(json.as_bytes()).map(Data::Json),
            ..Event::default()
        }
    }

    #[test]
    fn a_registration_needs_a_user_id_and_a_usable_email() {
        let ok = parse(&event(
            r#"{"user_id": 123, "email": "ada@example.com", "name": "Ada"}"#,
        ))
        .unwrap();
        assert_eq!(ok.user_id, "123");
        assert_eq!(ok.email.to_string(), "ada@example.com");
        assert_eq!(ok.name, "Ada");
        let nameless = parse(&event(r#"{"user_id": "u-1", "email": "bob@example.com"}"#)).unwrap();
        assert_eq!(nameless.name, "bob");
        for (bad, why) in [
            (r#"{"email": "a@example.com"}"#, "user_id"),
            (r#"{"user_id": 1}"#, "email is missing"),
            (
                r#"{"user_id": 1, "email": "not-an-address"}"#,
                "not a usable address",
            ),
        ] {
            assert!(parse(&event(bad)).unwrap_err().contains(why), "{bad}");
        }
        let text = Event {
            data: Some(Data::Text("{oops".into())),
            ..Event::default()
        };
        assert!(parse(&text).unwrap_err().contains("not JSON"));
        assert!(parse(&Event::default()).unwrap_err().contains("no payload"));
    }
}
