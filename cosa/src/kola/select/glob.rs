//! Test name globs with Go's `filepath.Match` semantics, as kola uses for
//! patterns and denylist entries: `*`, `?`, `[a-z]`, `[^x]`, `\` escapes.

use anyhow::{bail, Result};

/// A validated glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
    text: String,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Self> {
        let p: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        while i < p.len() {
            match p[i] {
                '\\' => {
                    if i + 1 >= p.len() {
                        bail!("bad pattern `{pattern}`: trailing `\\`");
                    }
                    i += 2;
                }
                '[' => match class_end(&p, i) {
                    Some(end) => i = end,
                    None => bail!("bad pattern `{pattern}`: unterminated or empty `[...]`"),
                },
                _ => i += 1,
            }
        }
        Ok(Glob {
            pattern: p,
            text: pattern.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, name: &str) -> bool {
        let s: Vec<char> = name.chars().collect();
        let p = &self.pattern;
        let (mut pi, mut si) = (0, 0);
        // Where to resume after the last `*`: (pattern index, name index).
        let mut star: Option<(usize, usize)> = None;
        loop {
            if pi < p.len() {
                let step = match p[pi] {
                    '*' => {
                        star = Some((pi + 1, si));
                        pi += 1;
                        continue;
                    }
                    '?' => (si < s.len() && s[si] != '/').then_some(pi + 1),
                    '[' => {
                        let end = class_end(p, pi).unwrap_or(p.len());
                        (si < s.len() && class_matches(&p[pi + 1..end - 1], s[si])).then_some(end)
                    }
                    '\\' => (s.get(si) == p.get(pi + 1)).then_some(pi + 2),
                    c => (s.get(si) == Some(&c)).then_some(pi + 1),
                };
                if let Some(next) = step {
                    pi = next;
                    si += 1;
                    continue;
                }
            } else if si == s.len() {
                return true;
            }
            match star {
                Some((sp, ss)) if ss < s.len() && s[ss] != '/' => {
                    star = Some((sp, ss + 1));
                    pi = sp;
                    si = ss + 1;
                }
                _ => return false,
            }
        }
    }
}

/// The index just past the `]` closing the class that opens at `p[start]`.
fn class_end(p: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if matches!(p.get(i), Some('^') | Some('!')) {
        i += 1;
    }
    let first = i;
    while i < p.len() {
        match p[i] {
            ']' if i > first => return Some(i + 1),
            ']' => return None,
            '\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// `body` is the class without its brackets.
fn class_matches(body: &[char], c: char) -> bool {
    let (negated, body) = match body.first() {
        Some('^') | Some('!') => (true, &body[1..]),
        _ => (false, body),
    };
    let mut i = 0;
    let mut hit = false;
    while i < body.len() {
        let (lo, next) = if body[i] == '\\' && i + 1 < body.len() {
            (body[i + 1], i + 2)
        } else {
            (body[i], i + 1)
        };
        let (hi, next) = if body.get(next) == Some(&'-') && next + 1 < body.len() {
            match body[next + 1] {
                '\\' if next + 2 < body.len() => (body[next + 2], next + 3),
                h => (h, next + 2),
            }
        } else {
            (lo, next)
        };
        hit |= lo <= c && c <= hi;
        i = next;
    }
    hit != negated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p).unwrap().matches(s)
    }

    #[test]
    fn globs() {
        assert!(m("basic*", "basic"));
        assert!(m("basic*", "basic.foo"));
        assert!(!m("basic*", "ext.basic"));
        assert!(m("*", "ext.config.x"));
        assert!(m("ext.*.files", "ext.config.files"));
        assert!(!m("ext.*.files", "ext.config.files.x"));
        assert!(m("ext.config.?oot", "ext.config.boot"));
        assert!(!m("ext.config.?oot", "ext.config.oot"));
        assert!(m("*.multi.*", "ext.config.multi.test.sh"));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "aXbYbZ"));
        assert!(m("re[bc]oot", "reboot"));
        assert!(!m("re[^b]oot", "reboot"));
        assert!(m("v[0-9]", "v7"));
        assert!(m("a\\*", "a*"));
        assert!(!m("a\\*", "ab"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exactly"));
    }

    #[test]
    fn bad_patterns() {
        assert!(Glob::new("a[").is_err());
        assert!(Glob::new("a[]").is_err());
        assert!(Glob::new("a\\").is_err());
    }
}
