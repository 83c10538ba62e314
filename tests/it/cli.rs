//! The command line as a shell uses it: `kinlink … | head` closes the pipe early,
//! and the command ends quietly (exit 0, no panic message).

use std::process::{Command, Stdio};

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
    let config = dir.path().join("kinlink.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n\n[[source]]\nname = \"police\"\nkind = \"police_da\"\n\
         format = \"csv\"\ntransport = { type = \"dir\", path = \"inbox\" }\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinlink"))
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .env_remove("KINLINK_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kinlink");
    // The reader goes away before the command prints anything, as `head` does
    // once it has its lines.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for kinlink");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
