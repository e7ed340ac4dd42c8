//! Treefile variables: their values, the `if:` expressions of
//! `conditional-include`, and `${var}` substitution.
//!
//! The grammar follows rpm-ostree: `<var> <op> <value>` where `<var>` is made of
//! letters, digits and `_`; `<op>` is one of `== != < <= > >=`; `<value>` is
//! `true`, `false`, a non-negative integer, or a string in double quotes (no
//! escapes). Both sides must have the same type; ordering applies to integers only.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{anyhow, bail, Result};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// A variable's value: rpm-ostree allows booleans, non-negative integers and strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum VarValue {
    Bool(bool),
    Number(u64),
    String(String),
}

impl VarValue {
    fn type_name(&self) -> &'static str {
        match self {
            VarValue::Bool(_) => "boolean",
            VarValue::Number(_) => "integer",
            VarValue::String(_) => "string",
        }
    }

    pub(super) fn to_json(&self) -> serde_json::Value {
        match self {
            VarValue::Bool(b) => (*b).into(),
            VarValue::Number(n) => (*n).into(),
            VarValue::String(s) => s.clone().into(),
        }
    }
}

impl fmt::Display for VarValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VarValue::Bool(b) => write!(f, "{b}"),
            VarValue::Number(n) => write!(f, "{n}"),
            VarValue::String(s) => f.write_str(s),
        }
    }
}

struct VarValueVisitor {
    allow_bool: bool,
}

impl Visitor<'_> for VarValueVisitor {
    type Value = VarValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allow_bool {
            f.write_str("a boolean, a non-negative integer or a string")
        } else {
            f.write_str("a non-negative integer or a string")
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<VarValue, E> {
        if self.allow_bool {
            Ok(VarValue::Bool(v))
        } else {
            Err(E::invalid_type(de::Unexpected::Bool(v), &self))
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<VarValue, E> {
        Ok(VarValue::Number(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<VarValue, E> {
        u64::try_from(v)
            .map(VarValue::Number)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<VarValue, E> {
        Ok(VarValue::String(v.to_string()))
    }
}

impl<'de> Deserialize<'de> for VarValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(VarValueVisitor { allow_bool: true })
    }
}

/// The `releasever` key: an integer or a string, kept typed for conditionals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ReleaseVer(pub(super) VarValue);

impl<'de> Deserialize<'de> for ReleaseVer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(VarValueVisitor { allow_bool: false })
            .map(ReleaseVer)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One `<var> <op> <value>` expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Condition {
    var: String,
    op: Op,
    value: VarValue,
}

impl std::str::FromStr for Condition {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = || anyhow!("invalid condition `{s}`: expected `<variable> <op> <value>`");
        let rest = s.trim_start();
        let var_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if var_len == 0 {
            return Err(invalid());
        }
        let (var, rest) = rest.split_at(var_len);
        let rest = rest.trim_start();
        let op_len = rest
            .find(|c: char| c.is_whitespace() || c.is_ascii_alphanumeric() || "_\"".contains(c))
            .unwrap_or(rest.len());
        let (op, rest) = rest.split_at(op_len);
        let op = match op {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "" => return Err(invalid()),
            o => {
                bail!("invalid condition `{s}`: expected one of ==, !=, <, <=, >, >= but got `{o}`")
            }
        };
        let literal = rest.trim();
        let value = if literal == "true" {
            VarValue::Bool(true)
        } else if literal == "false" {
            VarValue::Bool(false)
        } else if !literal.is_empty() && literal.bytes().all(|b| b.is_ascii_digit()) {
            VarValue::Number(
                literal
                    .parse()
                    .map_err(|e| anyhow!("invalid condition `{s}`: {e}"))?,
            )
        } else if let Some(inner) = literal.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
            VarValue::String(inner.to_string())
        } else {
            bail!(
                "invalid condition `{s}`: value must be true, false, an integer or a \"quoted string\""
            );
        };
        Ok(Condition {
            var: var.to_string(),
            op,
            value,
        })
    }
}

impl Condition {
    pub(super) fn evaluate(&self, vars: &BTreeMap<String, VarValue>) -> Result<bool> {
        let val = vars
            .get(&self.var)
            .ok_or_else(|| anyhow!("undefined variable `{}`", self.var))?;
        if std::mem::discriminant(val) != std::mem::discriminant(&self.value) {
            bail!(
                "variable `{}` is a {} ({val}) but is compared with a {} ({})",
                self.var,
                val.type_name(),
                self.value.type_name(),
                self.value
            );
        }
        Ok(match (self.op, val, &self.value) {
            (Op::Eq, a, b) => a == b,
            (Op::Ne, a, b) => a != b,
            (op, VarValue::Number(a), VarValue::Number(b)) => match op {
                Op::Lt => a < b,
                Op::Le => a <= b,
                Op::Gt => a > b,
                _ => a >= b,
            },
            _ => bail!(
                "variable `{}` is a {}: only == and != apply to it",
                self.var,
                val.type_name()
            ),
        })
    }
}

/// The `if:` of a conditional include: one expression, or a list that must all hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Conditions(Vec<Condition>);

impl Conditions {
    /// Evaluate every expression (so that errors surface even after a false one).
    pub(super) fn evaluate(&self, vars: &BTreeMap<String, VarValue>) -> Result<bool> {
        self.0.iter().try_fold(true, |all, c| {
            let holds = c.evaluate(vars)?;
            Ok(all && holds)
        })
    }
}

struct ConditionsVisitor;

impl<'de> Visitor<'de> for ConditionsVisitor {
    type Value = Conditions;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a condition string or a list of condition strings")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Conditions, E> {
        let c = v.parse().map_err(|e| E::custom(format!("{e:#}")))?;
        Ok(Conditions(vec![c]))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Conditions, A::Error> {
        let mut v = Vec::new();
        while let Some(s) = seq.next_element::<String>()? {
            v.push(s.parse().map_err(|e| de::Error::custom(format!("{e:#}")))?);
        }
        Ok(Conditions(v))
    }
}

impl<'de> Deserialize<'de> for Conditions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ConditionsVisitor)
    }
}

/// The variables as the strings substituted for `${name}`; like rpm-ostree,
/// refuse names and values containing `$`, `{` or `}`.
pub(super) fn substitution_map(
    vars: &BTreeMap<String, VarValue>,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in vars {
        let v = v.to_string();
        for (what, s) in [("name", k.as_str()), ("value", v.as_str())] {
            if s.contains(['$', '{', '}']) {
                bail!("variable `{k}`: its {what} `{s}` must not contain `$`, `{{` or `}}`");
            }
        }
        out.insert(k.clone(), v);
    }
    Ok(out)
}

/// Replace every `${name}` in `s`; a reference to an undefined variable is an error.
pub(super) fn substitute(s: &str, vars: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + 2 + len];
        let value = vars
            .get(name)
            .ok_or_else(|| anyhow!("undefined variable `{name}` in `{s}`"))?;
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}
