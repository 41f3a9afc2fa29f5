//! Dockerfile parsing: parser directives (`# escape=`), comments, line continuations, JSON exec
//! form vs shell form, instruction flags (`--from=`, `--chown=`, `--interval=`...), and the word
//! lexer that performs `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alt}` substitution.
//!
//! Parsing keeps arguments raw; substitution happens while building, when ARG and ENV values
//! are known (see [`expand_words`]).

use std::collections::HashMap;

/// A parse error, with the 1-based line of the instruction.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("Dockerfile line {line}: {message}")]
pub struct ParseError {
    /// Line number (1-based) where the instruction starts.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A command in exec (JSON array) or shell form.
#[derive(Clone, Debug, PartialEq)]
pub enum CommandForm {
    /// `["prog", "arg"]`: run directly.
    Exec(Vec<String>),
    /// `prog arg`: run with `/bin/sh -c`.
    Shell(String),
}

impl CommandForm {
    fn parse(rest: &str) -> Self {
        let t = rest.trim();
        if t.starts_with('[')
            && let Ok(v) = serde_json::from_str::<Vec<String>>(t)
        {
            return CommandForm::Exec(v);
        }
        CommandForm::Shell(t.to_string())
    }

    /// The argv stored in an image config (shell form wrapped in `/bin/sh -c`).
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandForm::Exec(v) => v.clone(),
            CommandForm::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        }
    }
}

/// HEALTHCHECK settings (durations as written, e.g. `30s`).
#[derive(Clone, Debug, PartialEq)]
pub struct Healthcheck {
    /// The probe command; `None` means `HEALTHCHECK NONE`.
    pub command: Option<CommandForm>,
    /// `--interval`.
    pub interval: Option<String>,
    /// `--timeout`.
    pub timeout: Option<String>,
    /// `--start-period`.
    pub start_period: Option<String>,
    /// `--retries`.
    pub retries: Option<u32>,
}

/// One instruction; word arguments are raw (unexpanded) strings.
#[derive(Clone, Debug, PartialEq)]
pub enum Instruction {
    /// `FROM image [AS name]`.
    From {
        /// Image reference (or `scratch`, or an earlier stage's name).
        image: String,
        /// Stage name.
        alias: Option<String>,
    },
    /// `COPY` / `ADD` (`add` set for ADD).
    Copy {
        /// Whether this is ADD (auto-extracts local tar archives).
        add: bool,
        /// Sources (raw words).
        sources: Vec<String>,
        /// Destination (raw word).
        dest: String,
        /// `--from=stage|image`.
        from: Option<String>,
        /// `--chown=uid[:gid]`.
        chown: Option<String>,
    },
    /// `WORKDIR path`.
    Workdir(String),
    /// `ENV k=v ...` or `ENV k v`.
    Env(String),
    /// `ARG name[=default]`.
    Arg(String),
    /// `LABEL k=v ...`.
    Label(String),
    /// `EXPOSE 80/tcp ...`.
    Expose(String),
    /// `USER user[:group]`.
    User(String),
    /// `CMD`.
    Cmd(CommandForm),
    /// `ENTRYPOINT`.
    Entrypoint(CommandForm),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `STOPSIGNAL sig`.
    StopSignal(String),
    /// `RUN` (parsed so the builder can refuse it with a clear error).
    Run(String),
}

/// An instruction with its source line.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// 1-based line where it starts.
    pub line: usize,
    /// The instruction.
    pub instruction: Instruction,
    /// Its text after continuation joining (used in build cache keys and history).
    pub text: String,
}

/// Parses a whole Dockerfile.
pub fn parse(src: &str) -> Result<Vec<Line>, ParseError> {
    let escape = escape_char(src)?;
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in src.lines().enumerate() {
        let n = i + 1;
        let trimmed = raw.trim_start();
        // Comments are whole lines only; inside a continuation they are dropped too.
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_none()) {
            continue;
        }
        let (start, mut text) = pending.take().unwrap_or((n, String::new()));
        let body = raw.trim_end();
        if let Some(cut) = body.strip_suffix(escape) {
            text.push_str(cut);
            pending = Some((start, text));
            continue;
        }
        text.push_str(body);
        if !text.trim().is_empty() {
            out.push(parse_instruction(start, text.trim())?);
        }
    }
    if let Some((start, text)) = pending
        && !text.trim().is_empty()
    {
        out.push(parse_instruction(start, text.trim())?);
    }
    if !out
        .iter()
        .any(|l| matches!(l.instruction, Instruction::From { .. }))
    {
        return Err(ParseError {
            line: 1,
            message: "no FROM instruction".into(),
        });
    }
    Ok(out)
}

/// Reads the `# escape=` parser directive (default `\`).
fn escape_char(src: &str) -> Result<char, ParseError> {
    for (i, line) in src.lines().enumerate() {
        let Some(c) = line.trim().strip_prefix('#') else {
            break;
        };
        let Some((k, v)) = c.split_once('=') else {
            break;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "escape" => {
                return match v.trim() {
                    "\\" => Ok('\\'),
                    "`" => Ok('`'),
                    other => Err(ParseError {
                        line: i + 1,
                        message: format!("invalid escape directive {other:?}; use \\ or `"),
                    }),
                };
            }
            "syntax" | "check" => {}
            _ => break,
        }
    }
    Ok('\\')
}

fn parse_instruction(line: usize, text: &str) -> Result<Line, ParseError> {
    let err = |m: String| ParseError { line, message: m };
    let (word, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let rest = rest.trim();
    let keyword = word.to_ascii_uppercase();
    let need_args = |r: &str| {
        if r.is_empty() {
            Err(err(format!("{keyword} requires arguments")))
        } else {
            Ok(())
        }
    };
    let (flags, after_flags) = split_flags(rest);
    let instruction = match keyword.as_str() {
        "FROM" => {
            need_args(after_flags)?;
            let words: Vec<&str> = after_flags.split_whitespace().collect();
            match words.as_slice() {
                [img] => Instruction::From {
                    image: img.to_string(),
                    alias: None,
                },
                [img, as_, name] if as_.eq_ignore_ascii_case("as") => Instruction::From {
                    image: img.to_string(),
                    alias: Some(name.to_ascii_lowercase()),
                },
                _ => return Err(err("FROM takes IMAGE [AS NAME]".into())),
            }
        }
        "COPY" | "ADD" => {
            let mut from = None;
            let mut chown = None;
            for (k, v) in &flags {
                match (k.as_str(), v) {
                    ("from", Some(v)) if keyword == "COPY" => from = Some(v.clone()),
                    ("chown", Some(v)) => chown = Some(v.clone()),
                    ("chmod" | "link", _) => {
                        return Err(err(format!(
                            "{keyword} --{k} is not supported by berth build"
                        )));
                    }
                    _ => return Err(err(format!("unknown flag --{k} for {keyword}"))),
                }
            }
            let mut words = match CommandForm::parse(after_flags) {
                CommandForm::Exec(v) => v,
                CommandForm::Shell(s) => split_raw_words(&s),
            };
            if words.len() < 2 {
                return Err(err(format!(
                    "{keyword} requires at least one source and a destination"
                )));
            }
            let dest = words.pop().unwrap_or_default();
            Instruction::Copy {
                add: keyword == "ADD",
                sources: words,
                dest,
                from,
                chown,
            }
        }
        "WORKDIR" => {
            need_args(rest)?;
            Instruction::Workdir(rest.into())
        }
        "ENV" => {
            need_args(rest)?;
            Instruction::Env(rest.into())
        }
        "ARG" => {
            need_args(rest)?;
            Instruction::Arg(rest.into())
        }
        "LABEL" => {
            need_args(rest)?;
            Instruction::Label(rest.into())
        }
        "EXPOSE" => {
            need_args(rest)?;
            Instruction::Expose(rest.into())
        }
        "USER" => {
            need_args(rest)?;
            Instruction::User(rest.into())
        }
        "STOPSIGNAL" => {
            need_args(rest)?;
            Instruction::StopSignal(rest.into())
        }
        "CMD" => {
            need_args(rest)?;
            Instruction::Cmd(CommandForm::parse(rest))
        }
        "ENTRYPOINT" => {
            need_args(rest)?;
            Instruction::Entrypoint(CommandForm::parse(rest))
        }
        "RUN" => {
            need_args(rest)?;
            Instruction::Run(rest.into())
        }
        "HEALTHCHECK" => {
            Instruction::Healthcheck(parse_healthcheck(&flags, after_flags).map_err(err)?)
        }
        "MAINTAINER" | "ONBUILD" | "SHELL" | "VOLUME" => {
            return Err(err(format!("{keyword} is not supported by berth build")));
        }
        other => return Err(err(format!("unknown instruction {other}"))),
    };
    Ok(Line {
        line,
        instruction,
        text: text.to_string(),
    })
}

fn parse_healthcheck(
    flags: &[(String, Option<String>)],
    rest: &str,
) -> Result<Healthcheck, String> {
    let mut hc = Healthcheck {
        command: None,
        interval: None,
        timeout: None,
        start_period: None,
        retries: None,
    };
    for (k, v) in flags {
        let v = v
            .clone()
            .ok_or_else(|| format!("HEALTHCHECK --{k} needs a value"))?;
        match k.as_str() {
            "interval" => hc.interval = Some(v),
            "timeout" => hc.timeout = Some(v),
            "start-period" => hc.start_period = Some(v),
            "retries" => {
                hc.retries = Some(
                    v.parse()
                        .map_err(|_| format!("HEALTHCHECK --retries {v:?} is not a number"))?,
                )
            }
            _ => return Err(format!("unknown flag --{k} for HEALTHCHECK")),
        }
    }
    let (word, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    match word.to_ascii_uppercase().as_str() {
        "NONE" if cmd.trim().is_empty() => Ok(hc),
        "CMD" if !cmd.trim().is_empty() => {
            hc.command = Some(CommandForm::parse(cmd));
            Ok(hc)
        }
        _ => Err("HEALTHCHECK takes NONE or [OPTIONS] CMD command".into()),
    }
}

/// Splits leading `--name[=value]` flags off an argument string.
fn split_flags(rest: &str) -> (Vec<(String, Option<String>)>, &str) {
    let mut flags = Vec::new();
    let mut r = rest;
    while let Some(f) = r.strip_prefix("--") {
        let (word, tail) = f.split_once(char::is_whitespace).unwrap_or((f, ""));
        match word.split_once('=') {
            Some((k, v)) => flags.push((k.to_ascii_lowercase(), Some(v.to_string()))),
            None => flags.push((word.to_ascii_lowercase(), None)),
        }
        r = tail.trim_start();
    }
    (flags, r)
}

/// Splits on whitespace keeping quotes and `$` intact (expansion happens later per word).
fn split_raw_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', _) => {
                cur.push(c);
                cur.extend(chars.next());
            }
            ('"' | '\'', None) => {
                quote = Some(c);
                cur.push(c);
            }
            (c, Some(q)) if c == q => {
                quote = None;
                cur.push(c);
            }
            (c, None) if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            (c, _) => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Lexes `s` into words like a shell: whitespace splits words (outside quotes), single quotes
/// are literal, double quotes and bare text expand variables from `env`, `\` escapes the next
/// character. Unset variables expand to the empty string.
pub fn expand_words(s: &str, env: &HashMap<String, String>) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$')) => cur.push(e),
                            Some(e) => {
                                cur.push('\\');
                                cur.push(e);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some('$') => cur.push_str(&expand_var(&mut chars, env)?),
                        Some(ch) => cur.push(ch),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.extend(chars.next());
            }
            '$' => {
                in_word = true;
                cur.push_str(&expand_var(&mut chars, env)?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Expands one word (the whole string as a single word, spaces kept).
pub fn expand_one(s: &str, env: &HashMap<String, String>) -> Result<String, String> {
    Ok(expand_words(s, env)?.join(" "))
}

/// Expands the variable after a `$` (already consumed).
fn expand_var(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    env: &HashMap<String, String>,
) -> Result<String, String> {
    let get = |name: &str| env.get(name).cloned().unwrap_or_default();
    if chars.peek() == Some(&'{') {
        chars.next();
        let mut inner = String::new();
        loop {
            match chars.next() {
                Some('}') => break,
                Some(c) => inner.push(c),
                None => return Err("missing '}' in variable reference".into()),
            }
        }
        if let Some((name, default)) = inner.split_once(":-") {
            let v = get(name);
            return Ok(if v.is_empty() {
                expand_one(default, env)?
            } else {
                v
            });
        }
        if let Some((name, alt)) = inner.split_once(":+") {
            return Ok(if get(name).is_empty() {
                String::new()
            } else {
                expand_one(alt, env)?
            });
        }
        if !inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || inner.is_empty() {
            return Err(format!("unsupported variable reference ${{{inner}}}"));
        }
        return Ok(get(&inner));
    }
    let mut name = String::new();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_alphanumeric() || c == '_' {
            name.push(c);
            chars.next();
        } else {
            break;
        }
    }
    if name.is_empty() {
        return Ok("$".into());
    }
    Ok(get(&name))
}

/// Parses `k=v k2="v 2"` (or the legacy `k v` form when `legacy` and no `=` in the first word).
pub fn key_values(s: &str, env: &HashMap<String, String>) -> Result<Vec<(String, String)>, String> {
    let raw = split_raw_words(s);
    if let Some(first) = raw.first()
        && !first.contains('=')
    {
        let key = expand_one(first, env)?;
        let value = s.trim_start()[first.len()..].trim();
        return Ok(vec![(key, expand_one(value, env)?)]);
    }
    raw.iter()
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| format!("expected KEY=VALUE, got {w:?}"))?;
            Ok((expand_one(k, env)?, expand_one(v, env)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_all_forms_with_continuations_and_comments() {
        let src = "# syntax=docker/dockerfile:1\n\
                   FROM scratch AS Build\n\
                   # a comment\n\
                   COPY --chown=1:2 a.txt \\\n\
                   # comment inside a continuation\n\
                   \x20   b/ /dst/\n\
                   ENV A=1 B=\"two words\"\n\
                   CMD [\"/bin/app\", \"--flag\"]\n\
                   ENTRYPOINT /bin/app run\n\
                   HEALTHCHECK --interval=5s --retries=3 CMD [\"/app\", \"-h\"]\n\
                   COPY --from=build /x /y\n";
        let lines = parse(src).unwrap();
        assert_eq!(
            lines[0].instruction,
            Instruction::From {
                image: "scratch".into(),
                alias: Some("build".into())
            }
        );
        assert_eq!(lines[0].line, 2);
        assert_eq!(
            lines[1].instruction,
            Instruction::Copy {
                add: false,
                sources: vec!["a.txt".into(), "b/".into()],
                dest: "/dst/".into(),
                from: None,
                chown: Some("1:2".into())
            }
        );
        assert_eq!(lines[1].line, 4);
        assert_eq!(lines[2].line, 7);
        assert_eq!(
            lines[3].instruction,
            Instruction::Cmd(CommandForm::Exec(vec!["/bin/app".into(), "--flag".into()]))
        );
        assert_eq!(
            lines[4].instruction,
            Instruction::Entrypoint(CommandForm::Shell("/bin/app run".into()))
        );
        assert_eq!(
            CommandForm::Shell("x y".into()).argv(),
            vec!["/bin/sh", "-c", "x y"]
        );
        let Instruction::Healthcheck(hc) = &lines[5].instruction else {
            panic!("not a healthcheck")
        };
        assert_eq!((hc.interval.as_deref(), hc.retries), (Some("5s"), Some(3)));
        assert_eq!(
            hc.command,
            Some(CommandForm::Exec(vec!["/app".into(), "-h".into()]))
        );
        assert!(
            matches!(&lines[6].instruction, Instruction::Copy { from: Some(f), .. } if f == "build")
        );
    }

    #[test]
    fn escape_directive_and_errors_carry_line_numbers() {
        let lines = parse("# escape=`\nFROM scratch\nLABEL a=b `\n  c=d\n").unwrap();
        assert_eq!(lines[1].instruction, Instruction::Label("a=b   c=d".into()));
        assert_eq!(
            parse("FROM scratch\n\nFROBNICATE x\n").unwrap_err(),
            ParseError {
                line: 3,
                message: "unknown instruction FROBNICATE".into()
            }
        );
        assert_eq!(parse("FROM scratch\nCOPY onlyone\n").unwrap_err().line, 2);
        assert_eq!(
            parse("FROM scratch\nHEALTHCHECK --retries=x CMD a\n")
                .unwrap_err()
                .line,
            2
        );
        assert_eq!(parse("# escape=x\nFROM scratch\n").unwrap_err().line, 1);
        assert_eq!(
            parse("LABEL a=b\n").unwrap_err().message,
            "no FROM instruction"
        );
        // Invalid JSON falls back to shell form, as Docker does.
        let l = parse("FROM scratch\nCMD [\"a\", b]\n").unwrap();
        assert_eq!(
            l[1].instruction,
            Instruction::Cmd(CommandForm::Shell("[\"a\", b]".into()))
        );
    }

    #[test]
    fn substitution_forms() {
        let e = env(&[("A", "x"), ("EMPTY", ""), ("SP", "a b")]);
        assert_eq!(
            expand_words("$A ${A}y ${B:-def} ${A:-def} ${A:+alt} ${B:+alt}", &e).unwrap(),
            vec!["x", "xy", "def", "x", "alt", ""]
        );
        assert_eq!(
            expand_words("'$A' \"$A z\" \\$A ${EMPTY:-e}", &e).unwrap(),
            vec!["$A", "x z", "$A", "e"]
        );
        assert_eq!(expand_one("/opt/$A/bin", &e).unwrap(), "/opt/x/bin");
        assert!(expand_words("${A", &e).is_err());
        assert!(expand_words("'open", &e).is_err());
        assert_eq!(
            key_values("K=$A L=\"$SP c\"", &e).unwrap(),
            vec![("K".into(), "x".into()), ("L".into(), "a b c".into())]
        );
        assert_eq!(
            key_values("K legacy value", &e).unwrap(),
            vec![("K".into(), "legacy value".into())]
        );
    }
}
