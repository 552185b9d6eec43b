//! The welcome email: a subject, a plain-text body and an HTML alternative,
//! from templates an operator can replace (see `--templates-dir`).

use std::path::Path;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::Message;

use crate::registration::Registration;

/// The three templates of the welcome email.
#[derive(Debug, Clone)]
pub(crate) struct Templates {
    /// Subject line.
    subject: String,
    /// Plain-text body.
    text: String,
    /// HTML body.
    html: String,
}

impl Templates {
    /// The built-in templates, with any of `subject.txt`, `welcome.txt` and
    /// `welcome.html` in `dir` taking their place.
    pub(crate) fn load(dir: Option<&Path>) -> std::io::Result<Self> {
        let pick = |file: &str, builtin: &str| -> std::io::Result<String> {
            match dir.map(|d| d.join(file)) {
                Some(path) if path.exists() => std::fs::read_to_string(path),
                _ => Ok(builtin.to_owned()),
            }
        };
        Ok(Self {
            subject: pick("subject.txt", include_str!("../templates/subject.txt"))?
                .trim()
                .to_owned(),
            text: pick("welcome.txt", include_str!("../templates/welcome.txt"))?,
            html: pick("welcome.html", include_str!("../templates/welcome.html"))?,
        })
    }

    /// The welcome email for `user`, from `from`.
    pub(crate) fn render(
        &self,
        from: &Mailbox,
        user: &Registration,
    ) -> Result<Message, lettre::error::Error> {
        let fill = |template: &str, escape: fn(&str) -> String| {
            template
                .replace("{{name}}", &escape(&user.name))
                .replace("{{email}}", &escape(user.email.as_ref()))
                .replace("{{user_id}}", &escape(&user.user_id))
        };
        let subject = fill(&self.subject, |s| s.replace(['\r', '\n'], " "));
        Message::builder()
            .from(from.clone())
            .to(Mailbox::new(Some(user.name.clone()), user.email.clone()))
            .subject(subject)
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(fill(&self.text, str::to_owned)),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(fill(&self.html, html_escape)),
                    ),
            )
    }
}

/// Escapes text for HTML.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_email_has_a_welcome_subject_and_both_parts_with_escaped_html() {
        let user = Registration {
            user_id: "7".into(),
            email: "ada@example.com".parse().unwrap(),
            name: "Ada <script>".into(),
        };
        let from: Mailbox = "Welcome <welcome@example.com>".parse().unwrap();
        let message = Templates::load(None).unwrap().render(&from, &user).unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        assert!(raw.contains("Subject: Welcome"), "{raw}");
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain"));
        assert!(raw.contains("text/html"));
        assert!(raw.contains("&lt;script&gt;"));
    }

    #[test]
    fn an_operator_can_replace_a_template() {
        let dir = std::env::temp_dir().join(format!("notifier-templates-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("subject.txt"), "Welcome, {{user_id}}").unwrap();
        let templates = Templates::load(Some(&dir)).unwrap();
        let user = Registration {
            user_id: "42".into(),
            email: "a@example.com".parse().unwrap(),
            name: "A".into(),
        };
        let from: Mailbox = "w@example.com".parse().unwrap();
        let raw = String::from_utf8(templates.render(&from, &user).unwrap().formatted()).unwrap();
        assert!(raw.contains("Subject: Welcome, 42"), "{raw}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
