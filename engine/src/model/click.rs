//! Where a click may send its visitor (`GET /click/{id}?url=…`): beacon must never be an open
//! redirect. A target is an absolute `http`/`https` URL without user info whose host is allowed
//! by `[tracking] redirect_domains` (exact hosts or `*.example.com`) or is the host of the
//! campaign's own landing URL; without `url` the click goes to that landing URL. No I/O; the
//! fuzz target `click` drives `target` directly.

use url::Url;

/// Why a click target was refused (the 400's reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadTarget {
    /// No `url` and the campaign has no landing URL.
    Missing,
    /// Whitespace, a control character or a backslash: never part of a URL beacon sends on.
    BadChar,
    /// Not an absolute URL.
    NotAbsolute,
    /// A scheme other than http and https (`javascript:`, `data:`, ...).
    Scheme,
    /// `user:password@` before the host.
    UserInfo,
    /// A host neither `redirect_domains` nor the campaign's landing URL allows.
    HostNotAllowed,
}

impl BadTarget {
    pub fn reason(self) -> &'static str {
        match self {
            BadTarget::Missing => "no url given and the campaign has no landing URL",
            BadTarget::BadChar => "url holds whitespace, a control character or a backslash",
            BadTarget::NotAbsolute => "url is not an absolute URL",
            BadTarget::Scheme => "url must be http or https",
            BadTarget::UserInfo => "url must not hold user info (user@host)",
            BadTarget::HostNotAllowed => {
                "url's host is not in tracking.redirect_domains nor the campaign's landing host"
            }
        }
    }
}

/// The URL to send a click to: `requested` (the decoded `url` parameter, empty when absent)
/// when `allowed` or the campaign's `landing` URL allows its host, else `landing` itself when
/// nothing was requested. The result is the URL's serialization (ASCII, percent-encoded).
pub fn target(
    requested: &str,
    landing: Option<&str>,
    allowed: &[String],
) -> Result<String, BadTarget> {
    let landing = landing.and_then(|l| checked(l).ok());
    if requested.is_empty() {
        return landing.map(|l| l.to_string()).ok_or(BadTarget::Missing);
    }
    let url = checked(requested)?;
    let host = url.host_str().unwrap_or_default();
    let landing_host = landing.as_ref().and_then(|l| l.host_str());
    if allowed.iter().any(|p| host_matches(p, host)) || landing_host == Some(host) {
        Ok(url.to_string())
    } else {
        Err(BadTarget::HostNotAllowed)
    }
}

/// `text` parsed as an absolute http(s) URL with a host and without user info.
fn checked(text: &str) -> Result<Url, BadTarget> {
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(BadTarget::BadChar);
    }
    let url = Url::parse(text).map_err(|_| BadTarget::NotAbsolute)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BadTarget::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BadTarget::UserInfo);
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(BadTarget::NotAbsolute);
    }
    Ok(url)
}

/// Whether `host` (as the URL parser serialized it: lowercase, punycode) matches `pattern`: an
/// exact host or `*.example.com` (a subdomain of it).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Why `pattern` is not a `redirect_domains` entry, if it is not.
pub fn check_domain_pattern(pattern: &str) -> Result<(), String> {
    let domain = pattern.strip_prefix("*.").unwrap_or(pattern);
    if domain.is_empty()
        || domain.contains(['/', ':', '*', '@', '\\'])
        || domain.chars().any(char::is_whitespace)
    {
        return Err("a host (`shop.example.com`) or `*.` and a domain (`*.example.com`)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["shop.example.com".into(), "*.brand.example".into()]
    }

    #[test]
    fn allowed_hosts_and_the_landing_host_are_redirected_to() {
        let a = allowed();
        let t = |u: &str| target(u, Some("https://landing.example/ad?id=1"), &a);
        assert_eq!(
            t("https://shop.example.com/p?x=1").unwrap(),
            "https://shop.example.com/p?x=1"
        );
        assert_eq!(
            t("http://a.b.brand.example/").unwrap(),
            "http://a.b.brand.example/"
        );
        assert_eq!(
            t("https://landing.example/other").unwrap(),
            "https://landing.example/other"
        );
        assert_eq!(t("").unwrap(), "https://landing.example/ad?id=1");
        assert_eq!(target("", None, &a), Err(BadTarget::Missing));
        assert_eq!(
            t("https://SHOP.example.com/").unwrap(),
            "https://shop.example.com/"
        );
    }

    #[test]
    fn nothing_else_is_ever_a_redirect() {
        let a = allowed();
        for (bad, why) in [
            ("https://evil.com/", BadTarget::HostNotAllowed),
            ("https://shop.example.com@evil.com/", BadTarget::UserInfo),
            ("https://user:pw@shop.example.com/", BadTarget::UserInfo),
            (
                "https://shop.example.com.evil.com/",
                BadTarget::HostNotAllowed,
            ),
            ("https://evilshop.example.com/", BadTarget::HostNotAllowed),
            ("https://brand.example/", BadTarget::HostNotAllowed),
            ("https:evil.com", BadTarget::HostNotAllowed),
            ("//evil.com/", BadTarget::NotAbsolute),
            ("/relative", BadTarget::NotAbsolute),
            ("javascript:alert(1)", BadTarget::Scheme),
            ("data:text/html,x", BadTarget::Scheme),
            ("ftp://shop.example.com/", BadTarget::Scheme),
            ("https://evil.com\\@shop.example.com/", BadTarget::BadChar),
            ("https:\\\\evil.com", BadTarget::BadChar),
            (
                "https://shop.example.com/\r\nSet-Cookie: x=1",
                BadTarget::BadChar,
            ),
            ("https://shop.example.com/ x", BadTarget::BadChar),
            ("https://shop.example.com\t.evil.com/", BadTarget::BadChar),
            ("https://evil.com%2f@shop.example.com/", BadTarget::UserInfo),
            (
                "https://evil.com#@shop.example.com/",
                BadTarget::HostNotAllowed,
            ),
            (
                "https://evil.com?@shop.example.com/",
                BadTarget::HostNotAllowed,
            ),
        ] {
            assert_eq!(target(bad, None, &a), Err(why), "{bad:?}");
        }
    }

    #[test]
    fn domain_patterns_are_checked() {
        for good in ["shop.example.com", "*.example.com", "localhost"] {
            assert!(check_domain_pattern(good).is_ok(), "{good}");
        }
        for bad in ["", "*.", "https://x.com", "x.com/", "a b", "*.*.x"] {
            assert!(check_domain_pattern(bad).is_err(), "{bad}");
        }
    }
}
