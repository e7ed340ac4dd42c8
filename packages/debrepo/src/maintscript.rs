//! What a .deb's maintainer scripts do that the OS needs, read from the scripts.
//!
//! The scripts themselves are not carried: they call dpkg's tools and expect
//! dpkg's state. Their effects that matter become declarative files or
//! scriptlets in the RPM (see docs/debian-packages.md):
//! - `deb-systemd-helper enable UNIT…` (debhelper's generated snippet) becomes a
//!   systemd preset;
//! - `update-alternatives --install LINK NAME PATH PRIO [--slave LINK NAME PATH]…`
//!   becomes the symlinks, shipped by the closure's highest-priority provider;
//! - creating users or groups (adduser, useradd, addgroup, groupadd) must be
//!   declared as sysusers.d lines in the closure's definition: it is an error
//!   to leave it undeclared, since a guessed account is worse than none.

/// One `update-alternatives --install` group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    pub name: String,
    pub link: String,
    pub path: String,
    pub priority: i64,
    /// (link, name, path) of each `--slave`.
    pub slaves: Vec<(String, String, String)>,
}

/// What the scripts of one package do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub enable: Vec<String>,
    pub alternatives: Vec<Alternative>,
    /// The first command line that creates an account, if any.
    pub creates_accounts: Option<String>,
    /// `update-alternatives --install` lines cosa cannot read (they use shell
    /// variables): the caller must not guess.
    pub unreadable: Vec<String>,
}

/// Shell words of a script with `\`-continued lines joined, quotes removed.
fn logical_lines(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    joined
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split([';', '&', '|']))
        .map(|l| {
            l.split_whitespace()
                .map(|w| w.trim_matches(|c| c == '\'' || c == '"').to_string())
                .collect::<Vec<_>>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Read the effects from a package's scripts (preinst, postinst).
pub fn scan(scripts: &[&str]) -> Effects {
    let mut fx = Effects::default();
    for script in scripts {
        for words in logical_lines(script) {
            let Some(start) = words
                .iter()
                .position(|w| !matches!(w.as_str(), "if" | "then" | "!" | "else"))
            else {
                continue;
            };
            let w = &words[start..];
            match w[0].as_str() {
                "deb-systemd-helper" if w.get(1).map(String::as_str) == Some("enable") => {
                    for u in &w[2..] {
                        if u.starts_with('>') || u.starts_with("2>") {
                            break;
                        }
                        if !fx.enable.contains(u) {
                            fx.enable.push(u.clone());
                        }
                    }
                }
                "update-alternatives" if w.iter().any(|x| x == "--install") => {
                    match parse_alternative(w) {
                        Some(a) => fx.alternatives.push(a),
                        None => fx.unreadable.push(w.join(" ")),
                    }
                }
                "adduser" | "useradd" | "addgroup" | "groupadd" => {
                    fx.creates_accounts.get_or_insert_with(|| w.join(" "));
                }
                _ => {}
            }
        }
    }
    fx
}

fn parse_alternative(w: &[String]) -> Option<Alternative> {
    let i = w.iter().position(|x| x == "--install")?;
    let [link, name, path, prio] = w.get(i + 1..i + 5)? else {
        return None;
    };
    let mut alt = Alternative {
        name: name.clone(),
        link: link.clone(),
        path: path.clone(),
        priority: prio.parse().ok()?,
        slaves: Vec::new(),
    };
    let mut rest = &w[i + 5..];
    while let [flag, link, name, path, tail @ ..] = rest {
        if flag != "--slave" {
            break;
        }
        alt.slaves.push((link.clone(), name.clone(), path.clone()));
        rest = tail;
    }
    // A variable in any word: the script computes it, we cannot.
    let words = [&alt.name, &alt.link, &alt.path];
    if words.iter().any(|w| w.contains('$'))
        || alt
            .slaves
            .iter()
            .any(|(a, b, c)| [a, b, c].iter().any(|w| w.contains('$')))
    {
        return None;
    }
    Some(alt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_debhelper_enable_alternatives_and_account_creation() {
        let postinst = r#"#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
    update-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \
        --slave /usr/share/man/man1/awk.1.gz awk.1.gz /usr/share/man/man1/mawk.1.gz
    adduser --system --group --no-create-home sshd
fi
# Automatically added by dh_installsystemd/13.11.4
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ]; then
	if deb-systemd-helper --quiet was-enabled 'ssh.service'; then
		deb-systemd-helper enable 'ssh.service' >/dev/null || true
	fi
fi
"#;
        let fx = scan(&[postinst]);
        assert_eq!(fx.enable, ["ssh.service"]);
        assert_eq!(
            fx.alternatives,
            [Alternative {
                name: "awk".into(),
                link: "/usr/bin/awk".into(),
                path: "/usr/bin/mawk".into(),
                priority: 5,
                slaves: vec![(
                    "/usr/share/man/man1/awk.1.gz".into(),
                    "awk.1.gz".into(),
                    "/usr/share/man/man1/mawk.1.gz".into()
                )],
            }]
        );
        assert_eq!(
            fx.creates_accounts.as_deref(),
            Some("adduser --system --group --no-create-home sshd")
        );
    }

    #[test]
    fn an_alternative_built_from_variables_is_not_guessed() {
        let fx = scan(&["update-alternatives --install /usr/bin/x x \"$BIN\" 10\n"]);
        assert!(fx.alternatives.is_empty());
        assert_eq!(
            fx.unreadable,
            ["update-alternatives --install /usr/bin/x x $BIN 10"]
        );
    }
}
