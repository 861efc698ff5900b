use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::VerifyError;

/// The JOSE header shared by both token formats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// RFC 7515 §4.1.11: a token naming critical extensions we do not implement must be refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit: Option<serde_json::Value>,
}

/// The signed claims of a license key.
///
/// Times are NumericDate (whole seconds since the epoch); `grace` and `warn` are whole seconds.
/// Claims this type does not name are kept in `extra` and shown, never interpreted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Licensee.
    pub sub: String,
    /// Product the key is for: one, or several (RFC 7519 §4.1.3 allows a string or an array).
    pub aud: Audience,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Absent for a perpetual license.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// License id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// Absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<u64>,
    /// Vendor's grace period after expiry, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<u64>,
    /// Vendor's warning window before expiry, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<u64>,
    #[serde(flatten)]
    pub extra: ExtraClaims,
}

/// Names [`Claims`] interprets; an extra claim may not reuse one.
pub const REGISTERED_CLAIMS: &[&str] = &[
    "sub", "aud", "iss", "iat", "nbf", "exp", "jti", "tier", "features", "seats", "grace", "warn",
];

/// The latest instant a license may name (9999-12-30). Every accepted value must convert to a
/// [`Timestamp`]: an `exp` that did not would read as "no expiry", i.e. perpetual.
pub const MAX_NUMERIC_DATE: i64 = 253_402_207_200;
/// Ten years: longer policy windows are a mistake, not a policy.
pub const MAX_POLICY_SECONDS: u64 = 10 * 366 * 86_400;

impl Claims {
    /// Checks what serde cannot: non-empty identity claims, times in range and in order.
    pub fn validate(&self) -> Result<(), VerifyError> {
        if self.sub.trim().is_empty() {
            return Err(VerifyError::malformed("claim \"sub\" (licensee) is empty"));
        }
        self.aud.validate()?;
        for (name, value) in [("iat", self.iat), ("nbf", self.nbf), ("exp", self.exp)] {
            if let Some(v) = value
                && !(1..=MAX_NUMERIC_DATE).contains(&v)
            {
                return Err(VerifyError::malformed(format!(
                    "claim {name:?} is {v}, outside 1..={MAX_NUMERIC_DATE} (a Unix time in seconds)"
                )));
            }
        }
        if let (Some(exp), Some(start)) = (self.exp, self.nbf.or(self.iat))
            && exp <= start
        {
            return Err(VerifyError::malformed(format!(
                "claim \"exp\" ({exp}) is not after the start of validity ({start})"
            )));
        }
        for (name, value) in [("grace", self.grace), ("warn", self.warn)] {
            if let Some(v) = value
                && v > MAX_POLICY_SECONDS
            {
                return Err(VerifyError::malformed(format!(
                    "claim {name:?} is {v} seconds, over the {MAX_POLICY_SECONDS}-second maximum"
                )));
            }
        }
        Ok(())
    }

    pub fn issued_at(&self) -> Option<Timestamp> {
        self.iat.and_then(timestamp)
    }
    pub fn not_before(&self) -> Option<Timestamp> {
        self.nbf.and_then(timestamp)
    }
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.exp.and_then(timestamp)
    }
    /// When the license starts to be valid: `nbf`, else `iat`.
    pub fn valid_from(&self) -> Option<Timestamp> {
        self.not_before().or_else(|| self.issued_at())
    }
}

/// The `aud` claim: the product, or products, a key is for. Written back the way it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn entries(&self) -> &[String] {
        match self {
            Audience::One(one) => std::slice::from_ref(one),
            Audience::Many(many) => many,
        }
    }

    /// A key is for a product when any entry equals it.
    pub fn contains(&self, product: &str) -> bool {
        self.entries().iter().any(|p| p == product)
    }

    fn validate(&self) -> Result<(), VerifyError> {
        if self.entries().is_empty() {
            return Err(VerifyError::malformed("claim \"aud\" (product) is an empty array"));
        }
        if self.entries().iter().any(|p| p.trim().is_empty()) {
            return Err(VerifyError::malformed("claim \"aud\" (product) is empty"));
        }
        Ok(())
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.entries().join(", "))
    }
}

impl From<&str> for Audience {
    fn from(product: &str) -> Self {
        Audience::One(product.to_string())
    }
}

impl From<String> for Audience {
    fn from(product: String) -> Self {
        Audience::One(product)
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AudienceVisitor;
        impl<'de> Visitor<'de> for AudienceVisitor {
            type Value = Audience;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("claim \"aud\" as a string or an array of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                let mut out = Vec::new();
                while let Some(product) = seq.next_element::<String>()? {
                    out.push(product);
                }
                Ok(Audience::Many(out))
            }
        }
        deserializer.deserialize_any(AudienceVisitor)
    }
}

fn timestamp(seconds: i64) -> Option<Timestamp> {
    Timestamp::from_second(seconds).ok()
}

/// Claims beyond the registered ones, kept verbatim. Deserialization refuses a repeated name so
/// that two parsers can never disagree about which value was signed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ExtraClaims(pub BTreeMap<String, serde_json::Value>);

impl<'de> Deserialize<'de> for ExtraClaims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueMap;
        impl<'de> Visitor<'de> for UniqueMap {
            type Value = ExtraClaims;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExtraClaims, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format_args!("duplicate field `{k}`")));
                    }
                    out.insert(k, v);
                }
                Ok(ExtraClaims(out))
            }
        }
        deserializer.deserialize_map(UniqueMap)
    }
}

/// Parses a JSON object, refusing duplicate names anywhere at its top level (serde's derive
/// already refuses duplicates of named fields; [`ExtraClaims`] covers the rest).
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, VerifyError> {
    serde_json::from_slice(bytes).map_err(|e| VerifyError::malformed(format!("{what} is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Claims, VerifyError> {
        let c: Claims = from_json("claims", json.as_bytes())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn every_accepted_time_is_a_timestamp() {
        assert_eq!(MAX_NUMERIC_DATE, Timestamp::MAX.as_second());
        let c = parse(&format!(r#"{{"sub":"a","aud":"p","exp":{MAX_NUMERIC_DATE}}}"#)).unwrap();
        assert!(c.expires_at().is_some());
    }

    #[test]
    fn keeps_unknown_claims() {
        let c = parse(r#"{"sub":"a","aud":"p","entitlements":{"max_queues":5},"region":"eu"}"#).unwrap();
        assert_eq!(c.extra.0["entitlements"]["max_queues"], 5);
        assert_eq!(c.extra.0["region"], "eu");
    }

    #[test]
    fn refuses_duplicate_registered_claim() {
        let e = parse(r#"{"sub":"a","aud":"p","exp":10,"exp":99999999999}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate field"), "{e}");
    }

    #[test]
    fn refuses_duplicate_extra_claim() {
        let e = parse(r#"{"sub":"a","aud":"p","x":1,"x":2}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate field `x`"), "{e}");
    }

    #[test]
    fn refuses_out_of_range_times() {
        for json in [
            r#"{"sub":"a","aud":"p","exp":-1}"#,
            r#"{"sub":"a","aud":"p","exp":0}"#,
            r#"{"sub":"a","aud":"p","exp":999999999999999}"#,
            r#"{"sub":"a","aud":"p","iat":-5}"#,
        ] {
            assert_eq!(parse(json).unwrap_err().reason(), "Malformed", "{json}");
        }
    }

    #[test]
    fn refuses_huge_and_fractional_numbers() {
        for json in [
            r#"{"sub":"a","aud":"p","exp":1e300}"#,
            r#"{"sub":"a","aud":"p","exp":1700000000.5}"#,
            r#"{"sub":"a","aud":"p","seats":-1}"#,
            r#"{"sub":"a","aud":"p","seats":184467440737095516150}"#,
            r#"{"sub":"a","aud":"p","grace":999999999999}"#,
        ] {
            assert_eq!(parse(json).unwrap_err().reason(), "Malformed", "{json}");
        }
    }

    #[test]
    fn refuses_expiry_before_start() {
        let e = parse(r#"{"sub":"a","aud":"p","iat":2000000000,"exp":1000000000}"#).unwrap_err();
        assert!(e.to_string().contains("not after"), "{e}");
    }

    #[test]
    fn aud_is_a_string_or_an_array_of_strings() {
        let one = parse(r#"{"sub":"a","aud":"zizq"}"#).unwrap();
        assert_eq!(one.aud, Audience::One("zizq".into()));
        let many = parse(r#"{"sub":"a","aud":["other","zizq"]}"#).unwrap();
        assert!(many.aud.contains("zizq") && many.aud.contains("other") && !many.aud.contains("zi"));
        assert_eq!(many.aud.to_string(), "other, zizq");
        assert_eq!(
            serde_json::to_value(&many.aud).unwrap(),
            serde_json::json!(["other", "zizq"])
        );
        assert_eq!(serde_json::to_value(&one.aud).unwrap(), serde_json::json!("zizq"));
        for json in [
            r#"{"sub":"a","aud":[]}"#,
            r#"{"sub":"a","aud":["zizq",""]}"#,
            r#"{"sub":"a","aud":["zizq",1]}"#,
            r#"{"sub":"a","aud":{"p":"zizq"}}"#,
            r#"{"sub":"a","aud":7}"#,
            r#"{"sub":"a","aud":null}"#,
        ] {
            assert_eq!(parse(json).unwrap_err().reason(), "Malformed", "{json}");
        }
    }

    #[test]
    fn refuses_missing_identity() {
        assert!(parse(r#"{"aud":"p"}"#).is_err());
        assert!(parse(r#"{"sub":" ","aud":"p"}"#).is_err());
        assert!(parse(r#"{"sub":"a","aud":""}"#).is_err());
        assert!(parse(r#"[1,2]"#).is_err());
    }
}
