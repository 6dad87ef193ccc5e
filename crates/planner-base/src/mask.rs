//! Secret masking: every line planner prints or writes passes through [`mask`].
//!
//! Secrets (the git token) are registered once when read from the environment; from then
//! on any occurrence of them, and any credentials embedded in a URL, are replaced by `***`.

use std::borrow::Cow;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret so that [`mask`] hides it. Empty strings are ignored.
pub fn register_secret(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_owned());
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Returns `text` with every registered secret and every URL userinfo replaced by `***`.
pub fn mask(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), "***"));
        }
    }
    match mask_userinfo(&out) {
        Some(masked) => Cow::Owned(masked),
        None => out,
    }
}

/// Replaces `scheme://user:pass@` with `scheme://***@`; `None` when there is nothing to mask.
fn mask_userinfo(text: &str) -> Option<String> {
    if !text.contains("://") || !text.contains('@') {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) if at > 0 => {
                out.push_str("***");
                out.push_str(&authority[at..]);
                changed = true;
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// A URL for display: credentials removed.
pub fn display_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_registered_secret_everywhere() {
        register_secret("s3cr3t-token-value");
        let text = "fatal: auth s3cr3t-token-value failed; again s3cr3t-token-value";
        assert_eq!(mask(text), "fatal: auth *** failed; again ***");
    }

    #[test]
    fn masks_userinfo_in_urls() {
        let text = "clone https://oauth2:abc@git.example.com/org/x failed, see http://u@h/p";
        assert_eq!(
            mask(text),
            "clone https://***@git.example.com/org/x failed, see http://***@h/p"
        );
    }

    #[test]
    fn leaves_plain_text_alone() {
        let text = "mail me at dev@example.com about https://git.example.com/x";
        assert!(matches!(mask(text), Cow::Borrowed(_)));
    }

    #[test]
    fn display_url_drops_credentials() {
        let url = url::Url::parse("https://a:b@host/x").unwrap();
        assert_eq!(display_url(&url), "https://host/x");
    }
}
