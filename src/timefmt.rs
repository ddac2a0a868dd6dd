//! Time as operators read it: RFC 3339 for machines and logs, kubeadm's short forms for
//! the table.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `Nov 23, 2027 09:00 UTC`, kubeadm's format.
pub fn human_date(t: OffsetDateTime) -> String {
    let f =
        time::macros::format_description!("[month repr:short] [day], [year] [hour]:[minute] UTC");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_else(|_| t.to_string())
}

/// kubeadm's short residual time (`364d`, `23h`, `9y`), or `expired`.
pub fn human_residual(secs: i64) -> String {
    if secs <= 0 {
        return "expired".into();
    }
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86_400);
    if secs < 60 {
        format!("{secs}s")
    } else if m < 60 {
        format!("{m}m")
    } else if h < 48 {
        format!("{h}h")
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}
