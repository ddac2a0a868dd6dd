//! The answer to the `/healthz` request, as bytes off the TLS stream: HTTP/1.x status
//! and body, enough for a component's health endpoint and nothing more (the request is
//! HTTP/1.0, so no chunked encoding comes back).

fn split_head(resp: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&resp[..i], &resp[i + 4..]))
}

fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

/// Whether the whole answer is in (its Content-Length reached); without one the
/// server's close ends it.
pub(super) fn response_complete(resp: &[u8]) -> bool {
    split_head(resp)
        .is_some_and(|(head, body)| content_length(head).is_some_and(|n| body.len() >= n))
}

/// Why an answer is not HTTP. Local to the `/healthz` request: it becomes the message
/// of a [`VerifyError::Unhealthy`](super::VerifyError::Unhealthy), which names the
/// endpoint.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum BadAnswer {
    #[error("the server closed the connection without an answer")]
    Empty,
    #[error("not an HTTP answer: {0}")]
    NotHttp(String),
    #[error("not an HTTP status line: {0}")]
    BadStatusLine(String),
}

/// Status code and body of an HTTP/1.x answer.
pub(super) fn parse_response(resp: &[u8]) -> Result<(u16, String), BadAnswer> {
    let (head, body) = split_head(resp).ok_or_else(|| {
        if resp.is_empty() {
            BadAnswer::Empty
        } else {
            BadAnswer::NotHttp(excerpt(&String::from_utf8_lossy(resp)))
        }
    })?;
    let head = String::from_utf8_lossy(head);
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let code = match (parts.next(), parts.next()) {
        (Some(v), Some(c)) if v.starts_with("HTTP/") => c.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| BadAnswer::BadStatusLine(excerpt(status_line)))?;
    let body = match content_length(head.as_bytes()) {
        Some(n) if n < body.len() => &body[..n],
        _ => body,
    };
    Ok((code, String::from_utf8_lossy(body).into_owned()))
}

pub(super) fn excerpt(s: &str) -> String {
    let one_line: String = s
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers_are_parsed() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA").unwrap(),
            (200, "ok".to_string())
        );
        assert!(response_complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        ));
        assert!(!response_complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\no"
        ));
        assert_eq!(parse_response(b"HTTP/1.0 500 x\r\n\r\nbad").unwrap().0, 500);
        assert_eq!(parse_response(b"").unwrap_err(), BadAnswer::Empty);
        assert_eq!(
            parse_response(b"SSH-2.0\r\n\r\n").unwrap_err().to_string(),
            "not an HTTP status line: SSH-2.0"
        );
        assert_eq!(
            parse_response(b"garbage").unwrap_err().to_string(),
            "not an HTTP answer: garbage"
        );
    }
}
