//! cfssl's wire types: the sign request and the answer, with hints for the errors
//! operators meet.

use serde::{Deserialize, Serialize};

/// cfssl's answer: `{"success", "result": {"certificate"}, "errors": [{"code",
/// "message"}], "messages"}`.
#[derive(Debug, Deserialize)]
pub(super) struct CfsslResponse {
    pub success: bool,
    #[serde(default)]
    pub result: Option<CfsslResult>,
    #[serde(default)]
    errors: Vec<CfsslMessage>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CfsslResult {
    #[serde(default)]
    pub certificate: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CfsslMessage {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

impl CfsslResponse {
    pub fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "no error message".into();
        }
        self.errors
            .iter()
            .map(|e| {
                let hint = match e.message.as_str() {
                    "invalid token" => " (wrong auth key?)",
                    "authentication required" => {
                        " (the profile needs an auth key: set auth_key_file)"
                    }
                    "no authentication provider" => {
                        " (the profile has no auth key: unset auth_key_file)"
                    }
                    _ => "",
                };
                format!("{} (code {}){hint}", e.message, e.code)
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// cfssl's sign request.
#[derive(Debug, Serialize)]
pub struct CfsslSignRequest<'a> {
    pub certificate_request: &'a str,
    pub profile: &'a str,
    pub label: &'a str,
    pub hosts: &'a [String],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_hints_for_what_operators_meet() {
        let r: CfsslResponse = serde_json::from_str(
            r#"{"success": false, "errors": [{"code": 400, "message": "invalid token"}], "messages": []}"#,
        )
        .unwrap();
        assert!(!r.success);
        assert_eq!(
            r.errors_text(),
            "invalid token (code 400) (wrong auth key?)"
        );
        let r: CfsslResponse = serde_json::from_str(r#"{"success": false}"#).unwrap();
        assert_eq!(r.errors_text(), "no error message");
        let body = serde_json::to_value(CfsslSignRequest {
            certificate_request: "PEM",
            profile: "kubelet",
            label: "",
            hosts: &["w1".into(), "10.0.0.21".into()],
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"certificate_request": "PEM", "profile": "kubelet", "label": "", "hosts": ["w1", "10.0.0.21"]})
        );
    }
}
