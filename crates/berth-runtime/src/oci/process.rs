//! Command, environment and working directory of the container process, merged from the image
//! config and the CRI container config by the Kubernetes rules.

use super::OciError;

/// The `PATH` added when neither the image nor the CRI config sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process argv: a CRI `command` replaces the image Entrypoint *and* drops the image Cmd;
/// CRI `args` replace the image Cmd.
pub fn merge_argv(
    image_entrypoint: &[String],
    image_cmd: &[String],
    command: &[String],
    args: &[String],
) -> Result<Vec<String>, OciError> {
    let mut argv: Vec<String> = if command.is_empty() { image_entrypoint.to_vec() } else { command.to_vec() };
    if !args.is_empty() {
        argv.extend(args.iter().cloned());
    } else if command.is_empty() {
        argv.extend(image_cmd.iter().cloned());
    }
    if argv.is_empty() {
        return Err(OciError::NoCommand);
    }
    Ok(argv)
}

/// `KEY=VALUE` list: image env overridden key by key by the CRI envs (order of first
/// appearance kept), plus a default `PATH`.
pub fn merge_env(image_env: &[String], cri_envs: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match out.iter_mut().find(|(key, _)| key == k) {
        Some(slot) => slot.1 = v.to_string(),
        None => out.push((k.to_string(), v.to_string())),
    };
    for entry in image_env {
        let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        set(k, v);
    }
    for (k, v) in cri_envs {
        set(k, v);
    }
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Working directory: CRI `working_dir` > image WorkingDir > `/`.
pub fn merge_cwd(image_working_dir: Option<&str>, working_dir: &str) -> String {
    [working_dir, image_working_dir.unwrap_or("")]
        .into_iter()
        .find(|d| !d.is_empty())
        .unwrap_or("/")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn argv_follows_kubernetes_rules() {
        let ep = s(&["/entry"]);
        let cmd = s(&["serve", "--port=1"]);
        assert_eq!(merge_argv(&ep, &cmd, &[], &[]).unwrap(), s(&["/entry", "serve", "--port=1"]));
        assert_eq!(merge_argv(&ep, &cmd, &[], &s(&["x"])).unwrap(), s(&["/entry", "x"]));
        assert_eq!(merge_argv(&ep, &cmd, &s(&["/bin/sh"]), &[]).unwrap(), s(&["/bin/sh"]));
        assert_eq!(merge_argv(&ep, &cmd, &s(&["/bin/sh"]), &s(&["-c", "id"])).unwrap(), s(&["/bin/sh", "-c", "id"]));
        assert_eq!(merge_argv(&[], &cmd, &[], &[]).unwrap(), cmd);
        assert!(matches!(merge_argv(&[], &[], &[], &[]), Err(OciError::NoCommand)));
    }

    #[test]
    fn env_is_overridden_by_key_and_gets_a_path() {
        let env = merge_env(&s(&["A=1", "B=2"]), &[("B".into(), "3".into()), ("C".into(), "x=y".into())]);
        assert_eq!(env, s(&["A=1", "B=3", "C=x=y", &format!("PATH={DEFAULT_PATH}")]));
        let env = merge_env(&s(&["PATH=/bin"]), &[]);
        assert_eq!(env, s(&["PATH=/bin"]));
    }

    #[test]
    fn cwd_falls_back() {
        assert_eq!(merge_cwd(Some("/app"), "/work"), "/work");
        assert_eq!(merge_cwd(Some("/app"), ""), "/app");
        assert_eq!(merge_cwd(None, ""), "/");
    }
}
