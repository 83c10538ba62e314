//! This process as a claim in the store names it, and whether a process named so
//! is still running on this machine.
//!
//! A message claimed for sending carries its claimer: `host:pid` for people, and a
//! key that pins the process down on its machine — the kernel's boot id, the pid
//! namespace, the pid and the process's start time. Another process can tell from
//! the key alone whether the claimer is certainly dead: same boot and same pid
//! namespace (so `/proc/<pid>` is the same process table), and `/proc/<pid>/stat`
//! gone or showing another start time (the pid was reused). Anything else — another
//! machine, another container, a key it cannot read — counts as alive, so the claim
//! waits for its lease as before.
//!
//! Invariant: [`ProcessKey::is_dead_here`] says `true` only for a process that has
//! certainly ended; two daemons on one PostgreSQL never take each other's live
//! claims through it.

use std::sync::OnceLock;

/// This process's names in claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessId {
    /// `host:pid`, for people (`outbox show`, logs).
    pub label: String,
    /// The key that tells on this machine whether the process still runs; `None`
    /// where `/proc` does not say (then nobody recovers its claims early).
    pub key: Option<ProcessKey>,
    /// `key`, encoded as stored.
    pub key_text: Option<String>,
}

/// Boot id, pid namespace, pid and start time of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessKey {
    pub boot_id: String,
    pub pid_namespace: String,
    pub pid: u32,
    /// Clock ticks after boot (`/proc/<pid>/stat`, field 22).
    pub start_time: u64,
}

impl ProcessKey {
    /// The process `pid` as seen from here, while it runs.
    pub fn of(pid: u32) -> Option<ProcessKey> {
        let (boot_id, pid_namespace) = machine()?;
        Some(ProcessKey {
            boot_id,
            pid_namespace,
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// `boot:pidns:pid:start`, as stored.
    pub fn encode(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.boot_id, self.pid_namespace, self.pid, self.start_time
        )
    }

    pub fn decode(s: &str) -> Option<ProcessKey> {
        let mut parts = s.rsplitn(3, ':');
        let start_time = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let (boot_id, pid_namespace) = parts.next()?.split_once(':')?;
        Some(ProcessKey {
            boot_id: boot_id.to_string(),
            pid_namespace: pid_namespace.to_string(),
            pid,
            start_time,
        })
    }

    /// The stored prefix shared by every process of this machine's boot and pid
    /// namespace (`boot:pidns:`): the claims this process can judge.
    pub fn machine_prefix(&self) -> String {
        format!("{}:{}:", self.boot_id, self.pid_namespace)
    }

    /// Whether the process is certainly gone: it ran in this boot and pid
    /// namespace, and its pid now names no process or one started at another time.
    pub fn is_dead_here(&self) -> bool {
        let Some((boot_id, pid_namespace)) = machine() else {
            return false;
        };
        if boot_id != self.boot_id || pid_namespace != self.pid_namespace {
            return false;
        }
        match start_time(self.pid) {
            None => !std::path::Path::new(&format!("/proc/{}", self.pid)).exists(),
            Some(t) => t != self.start_time,
        }
    }
}

/// This process.
pub fn current() -> &'static ProcessId {
    static ID: OnceLock<ProcessId> = OnceLock::new();
    ID.get_or_init(|| {
        let pid = std::process::id();
        let key = ProcessKey::of(pid);
        ProcessId {
            label: format!("{}:{pid}", host()),
            key_text: key.as_ref().map(ProcessKey::encode),
            key,
        }
    })
}

/// The host name (`localhost` where it cannot be read).
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The boot id and this process's pid namespace.
fn machine() -> Option<(String, String)> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let boot = boot.trim();
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    // `pid:[4026531836]` → `4026531836`
    let ns = ns.to_string_lossy();
    let ns = ns
        .trim_start_matches("pid:[")
        .trim_end_matches(']')
        .to_string();
    if boot.is_empty() || ns.is_empty() || boot.contains(':') || ns.contains(':') {
        return None;
    }
    Some((boot.to_string(), ns))
}

/// Field 22 of `/proc/<pid>/stat` (after the parenthesised command name, which
/// may hold spaces).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow the name; the start time is field 22.
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_finished_child_is_dead() {
        let me = current().key.clone().expect("a /proc here");
        assert_eq!(ProcessKey::decode(&me.encode()), Some(me.clone()));
        assert!(!me.is_dead_here());
        // The same pid started at another time is another process.
        let reused = ProcessKey {
            start_time: me.start_time + 1,
            ..me.clone()
        };
        assert!(reused.is_dead_here());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let key = ProcessKey::of(child.id()).unwrap();
        assert!(!key.is_dead_here());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(key.is_dead_here());
        // Another boot or another pid namespace: not ours to judge.
        let elsewhere = ProcessKey {
            boot_id: "another-boot".into(),
            ..key.clone()
        };
        assert!(!elsewhere.is_dead_here());
        let container = ProcessKey {
            pid_namespace: "1".into(),
            ..key
        };
        assert!(!container.is_dead_here());
    }
}
