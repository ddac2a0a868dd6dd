//! Distinguished names as text, in the form `status --json` has always printed them.
//!
//! The form: RDNs in the order the certificate stores them (not RFC 4514's reversed
//! order), joined by `", "`; the values of a multi-valued RDN in their stored order,
//! joined by `" + "`; each value as `TYPE=value` with OpenSSL's short type names (CN, O,
//! OU, C, ST, L, DC, Email) or the attribute's registered name (`serialNumber`, `uid`,
//! ...), and `OID(1.2.3)` for a type without a name. Values are not escaped. Text types
//! print their characters, others the upper-case hex of their content octets, and a text
//! value that does not decode turns the whole name into `<X509Error: Invalid X.509 name>`.
//! Scripts match these strings, so the form is kept exactly, quirks included.

use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode, Reader, SliceReader, Tag, Tagged};

/// What a name prints as when one of its text values does not decode.
const INVALID_NAME: &str = "<X509Error: Invalid X.509 name>";

/// The text of a DER `Name`. An error when it is not a SEQUENCE OF non-empty SET OF
/// AttributeTypeAndValue; a value that does not decode is not an error (see the module).
pub fn name_to_string(name: AnyRef<'_>) -> Result<String, der::Error> {
    let rdns = rdns(name)?;
    if rdns.iter().flatten().any(|(_, v)| v.is_none()) {
        return Ok(INVALID_NAME.into());
    }
    let rdns: Vec<String> = rdns
        .into_iter()
        .map(|rdn| {
            rdn.into_iter()
                .map(|(t, v)| format!("{t}={}", v.unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" + ")
        })
        .collect();
    Ok(rdns.join(", "))
}

/// The attributes of a DER `Name` (the TLV, as `CertFacts::raw_subject` holds it) in
/// stored order, RDN after RDN: the type's printed name (`CN`, `O`, `OU`, `C`, `ST`,
/// `L`, ...) and the value's text. Values that do not decode are left out. For label
/// sets that pick single fields (the Prometheus metrics' `subject_CN`, `subject_O`).
pub fn name_attributes(der: &[u8]) -> Result<Vec<(String, String)>, der::Error> {
    Ok(name_values(der)?
        .into_iter()
        .filter_map(|(t, v)| Some((t, v?)))
        .collect())
}

/// Every attribute of a DER `Name` as [`name_attributes`] reads it, a value that does not
/// decode as `None` rather than left out: for a reader that must refuse what it cannot
/// read. Multi-valued RDNs in any order (no SET OF sorting is required of the DER).
pub fn name_values(der: &[u8]) -> Result<Vec<(String, Option<String>)>, der::Error> {
    let name = AnyRef::from_der(der)?;
    Ok(rdns(name)?.into_iter().flatten().collect())
}

/// A Name's RDNs in stored order, each its attributes in stored order: the type's printed
/// name and the value's text, `None` when a text value does not decode.
type Rdns = Vec<Vec<(String, Option<String>)>>;

fn rdns(name: AnyRef<'_>) -> Result<Rdns, der::Error> {
    if name.tag() != Tag::Sequence {
        return Err(name.tag().unexpected_error(Some(Tag::Sequence)));
    }
    let mut rdns = Vec::new();
    let mut seq = SliceReader::new(name.value())?;
    while !seq.is_finished() {
        let set = AnyRef::decode(&mut seq)?;
        if set.tag() != Tag::Set {
            return Err(set.tag().unexpected_error(Some(Tag::Set)));
        }
        let mut values = Vec::new();
        let mut atvs = SliceReader::new(set.value())?;
        while !atvs.is_finished() {
            // Decoded one by one, not as a SET OF: that would re-sort the values and
            // refuse duplicates, and the stored order is what is printed.
            let atv = AnyRef::decode(&mut atvs)?;
            if atv.tag() != Tag::Sequence {
                return Err(atv.tag().unexpected_error(Some(Tag::Sequence)));
            }
            let mut fields = SliceReader::new(atv.value())?;
            let oid = ObjectIdentifier::decode(&mut fields)?;
            let rest = fields.read_slice(fields.remaining_len())?;
            let (tag, content) = value_tlv(rest)?;
            values.push((type_name(&oid), value_text(tag, content)));
        }
        if values.is_empty() {
            // An RDN holds at least one attribute (X.501); an empty SET is malformed.
            return Err(der::ErrorKind::Length { tag: Tag::Set }.into());
        }
        rdns.push(values);
    }
    Ok(rdns)
}

/// A value's text: the characters of a text type (tag numbers compared regardless of
/// class, as the printer this mirrors did), hex of the content octets otherwise, `None`
/// when a text value does not decode.
fn value_text(tag: u32, content: &[u8]) -> Option<String> {
    const NUMERIC: u32 = 18;
    const PRINTABLE: u32 = 19;
    const T61: u32 = 20;
    const VIDEOTEX: u32 = 21;
    const IA5: u32 = 22;
    const GRAPHIC: u32 = 25;
    const VISIBLE: u32 = 26;
    const GENERAL: u32 = 27;
    const BMP: u32 = 30;
    const OBJECT_DESCRIPTOR: u32 = 7;
    const UTF8: u32 = 12;
    match tag {
        NUMERIC | PRINTABLE | T61 | VIDEOTEX | IA5 | GRAPHIC | VISIBLE | GENERAL
        | OBJECT_DESCRIPTOR | UTF8 => std::str::from_utf8(content).ok().map(str::to_owned),
        BMP => {
            // UTF-16BE; a trailing odd octet counts as a code unit of its own.
            let units: Vec<u16> = content
                .chunks(2)
                .map(|c| match c {
                    [a, b] => u16::from_be_bytes([*a, *b]),
                    [a] => u16::from(*a),
                    _ => 0,
                })
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => Some(content.iter().map(|b| format!("{b:02X}")).collect()),
    }
}

/// The tag number and content octets of an attribute value, which must fill `bytes`.
/// Parsed by hand because the `der` crate's tag type has no UniversalString,
/// GraphicString or GeneralString, which names may still hold.
fn value_tlv(bytes: &[u8]) -> Result<(u32, &[u8]), der::Error> {
    use der::ErrorKind;
    let malformed = || der::Error::from(ErrorKind::Length { tag: Tag::Sequence });
    let (&first, mut rest) = bytes.split_first().ok_or_else(malformed)?;
    let mut number = u32::from(first & 0x1f);
    if number == 0x1f {
        // High tag number form: base-128 digits, the last without its top bit.
        number = 0;
        loop {
            let (&b, r) = rest.split_first().ok_or_else(malformed)?;
            rest = r;
            number =
                number.checked_mul(128).ok_or(ErrorKind::TagNumberInvalid)? | u32::from(b & 0x7f);
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    let (&len0, mut rest) = rest.split_first().ok_or_else(malformed)?;
    let len = match len0 {
        0..=0x7f => usize::from(len0),
        0x80 => return Err(ErrorKind::IndefiniteLength.into()),
        _ => {
            let n = usize::from(len0 & 0x7f);
            if n > 4 || rest.len() < n {
                return Err(malformed());
            }
            let (digits, r) = rest.split_at(n);
            rest = r;
            let len = digits.iter().fold(0usize, |a, d| a << 8 | usize::from(*d));
            if digits[0] == 0 || len < 0x80 {
                // DER: the shortest length form.
                return Err(ErrorKind::Noncanonical { tag: Tag::Sequence }.into());
            }
            len
        }
    };
    if rest.len() != len {
        return Err(malformed());
    }
    Ok((number, rest))
}

/// The printed name of an attribute type.
fn type_name(oid: &ObjectIdentifier) -> String {
    let dotted = oid.to_string();
    match ATTRIBUTE_NAMES.iter().find(|(o, _)| *o == dotted) {
        Some((_, name)) => (*name).to_string(),
        None => format!("OID({dotted})"),
    }
}

/// Short names first (OpenSSL's), then the registered names of the X.520, PKCS#9, RFC 4519
/// and Microsoft EV attribute types: the names the previous printer knew for attributes.
const ATTRIBUTE_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("1.2.840.113549.1.9.1", "Email"),
    ("2.5.4.0", "objectClass"),
    ("2.5.4.1", "aliasedEntryName"),
    ("2.5.4.2", "knowledgeInformation"),
    ("2.5.4.4", "surname"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.9", "streetAddress"),
    ("2.5.4.12", "title"),
    ("2.5.4.13", "description"),
    ("2.5.4.14", "searchGuide"),
    ("2.5.4.15", "businessCategory"),
    ("2.5.4.16", "postalAddress"),
    ("2.5.4.17", "postalCode"),
    ("2.5.4.41", "name"),
    ("2.5.4.42", "givenName"),
    ("2.5.4.43", "initials"),
    ("2.5.4.44", "generationQualifier"),
    ("2.5.4.45", "uniqueIdentifier"),
    ("2.5.4.46", "dnQualifier"),
    ("0.9.2342.19200300.100.1.1", "uid"),
    ("1.2.840.113549.1.9.2", "unstructuredName"),
    ("1.2.840.113549.1.9.3", "contentType"),
    ("1.2.840.113549.1.9.4", "id-messageDigest"),
    ("1.2.840.113549.1.9.5", "signing-time"),
    ("1.2.840.113549.1.9.7", "challengePassword"),
    ("1.2.840.113549.1.9.14", "extensionRequest"),
    ("1.2.840.113549.1.9.15", "smimeCapabilities"),
    ("1.2.840.113549.1.9.20", "friendlyName"),
    ("1.3.6.1.4.1.311.60.2.1.1", "msJurisdictionLocality"),
    ("1.3.6.1.4.1.311.60.2.1.2", "msJurisdictionStateOrProvince"),
    ("1.3.6.1.4.1.311.60.2.1.3", "msJurisdictionCountry"),
];
