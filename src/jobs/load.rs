//! Loads the jobs folder: every `*.toml` in it is one job (docs/config.md). Every problem
//! in every file is reported at once, with the job file's path and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::walk::{Section, Sink};
use super::{check_schedule, JobSpec, Step};
use crate::domain::Problem;

const JOB_KEYS: &[&str] = &["name", "schedule", "steps", "catch_up"];

/// Loads every `*.toml` in a folder, in file-name order. Job names must be unique
/// across files.
pub fn load_dir(dir: &Path) -> (Vec<JobSpec>, Vec<Problem>) {
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(Problem {
                file: dir.to_path_buf(),
                line: 0,
                message: format!("cannot read the jobs folder: {e}"),
                fix: "create the folder, or point `jobs_dir` in the config at the folder that holds the job files".into(),
            });
            return (Vec::new(), problems);
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();

    let mut jobs = Vec::new();
    // name → the file that defined it first
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let (job, name_line, file_problems) = load_one(&file);
        problems.extend(file_problems);
        let Some(job) = job else { continue };
        if let Some(first) = seen.get(&job.name) {
            problems.push(Problem {
                file: file.clone(),
                line: name_line,
                message: format!(
                    "job name {:?} is already used by {}",
                    job.name,
                    first.display()
                ),
                fix: "give each job file its own `name`".into(),
            });
            continue;
        }
        seen.insert(job.name.clone(), file);
        jobs.push(job);
    }
    (jobs, problems)
}

/// Loads one job file.
pub fn load_file(path: &Path) -> Result<JobSpec, Vec<Problem>> {
    match load_one(path) {
        (Some(job), _, problems) if problems.is_empty() => Ok(job),
        (_, _, problems) => Err(problems),
    }
}

/// Parses one job file text as if read from `path`.
pub fn load_job_str(text: &str, path: &Path) -> Result<JobSpec, Vec<Problem>> {
    match parse_job(text, path) {
        (Some(job), _, problems) if problems.is_empty() => Ok(job),
        (_, _, problems) => Err(problems),
    }
}

/// The job (when it is sound), the line of its name, and its problems.
fn load_one(path: &Path) -> (Option<JobSpec>, usize, Vec<Problem>) {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_job(&text, path),
        Err(e) => (
            None,
            0,
            vec![Problem {
                file: path.to_path_buf(),
                line: 0,
                message: format!("cannot read job file: {e}"),
                fix: "make the file readable by the kinlink user, or remove it".into(),
            }],
        ),
    }
}

fn parse_job(text: &str, path: &Path) -> (Option<JobSpec>, usize, Vec<Problem>) {
    let mut sink = Sink::new(path, text);
    let doc = match sink.parse(text) {
        Ok(doc) => doc,
        Err(line) => {
            return (None, line, sink.problems);
        }
    };
    let root = Section::new("the job file", doc.as_table(), 1, &sink);
    root.check_keys(&mut sink, JOB_KEYS);

    let name = if root.require(&mut sink, "name", "the job's name, e.g. \"nightly\"") {
        root.string(&mut sink, "name").and_then(|(name, line)| {
            if is_name(&name) {
                Some(name)
            } else {
                sink.push(
                    line,
                    format!("job name {name:?} is not a usable name"),
                    "use letters, digits, `-` and `_` only, e.g. \"nightly\"",
                );
                None
            }
        })
    } else {
        None
    };
    let name_line = root.line_of("name");

    let schedule = if root.require(
        &mut sink,
        "schedule",
        "six cron fields `sec min hour dom mon dow`, e.g. \"0 30 1 * * *\"",
    ) {
        root.string(&mut sink, "schedule").and_then(|(schedule, line)| {
            let errors = check_schedule(&schedule);
            let ok = errors.is_empty();
            for error in errors {
                sink.push(
                    line,
                    format!("schedule {schedule:?}: {error}"),
                    "write six cron fields `sec min hour dom mon dow`, e.g. \"0 30 1 * * *\" for 01:30 daily or \"0 0 7 * * MON-FRI\"",
                );
            }
            ok.then_some(schedule)
        })
    } else {
        None
    };

    let steps = if root.require(
        &mut sink,
        "steps",
        "the steps to run in order, e.g. [\"ingest\", \"link\"]",
    ) {
        root.strings(&mut sink, "steps").and_then(|names| {
            if names.is_empty() {
                sink.push(
                    root.line_of("steps"),
                    "`steps` is empty: the job would do nothing",
                    format!("list one or more steps: {}", step_names()),
                );
                return None;
            }
            let mut steps = Vec::new();
            let mut ok = true;
            for (name, line) in names {
                match name.parse::<Step>() {
                    Ok(step) if steps.contains(&step) => {
                        sink.push(
                            line,
                            format!("step {step} is listed twice"),
                            "list each step once",
                        );
                        ok = false;
                    }
                    Ok(step) => steps.push(step),
                    Err(message) => {
                        let suggestion =
                            super::walk::closest(name.trim(), Step::ALL.iter().map(|s| s.as_str()));
                        sink.push(
                            line,
                            message,
                            match suggestion {
                                Some(s) => format!("did you mean {s:?}?"),
                                None => format!("use one of: {}", step_names()),
                            },
                        );
                        ok = false;
                    }
                }
            }
            ok.then_some(steps)
        })
    } else {
        None
    };

    let catch_up = root.boolean(&mut sink, "catch_up").is_some_and(|(b, _)| b);

    let job = match (name, schedule, steps) {
        (Some(name), Some(schedule), Some(steps)) if sink.problems.is_empty() => Some(JobSpec {
            name,
            schedule,
            steps,
            catch_up,
            file: path.to_path_buf(),
        }),
        _ => None,
    };
    (job, name_line, sink.problems)
}

fn step_names() -> String {
    Step::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Letters, digits, `-` and `_`: safe in file names, log fields and the command line.
pub(crate) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_sound_job_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "nightly.toml",
            "name = \"nightly\"\nschedule = \"0 30 1 * * *\"\nsteps = [\"ingest\", \"link\", \"evaluate\", \"send\"]\ncatch_up = true\n",
        );
        let job = load_file(&path).unwrap();
        assert_eq!(job.name, "nightly");
        assert_eq!(job.schedule, "0 30 1 * * *");
        assert_eq!(
            job.steps,
            vec![Step::Ingest, Step::Link, Step::Evaluate, Step::Send]
        );
        assert!(job.catch_up);
        assert_eq!(job.file, path);
    }

    #[test]
    fn catch_up_defaults_to_false() {
        let job = load_job_str(
            "name = \"dv\"\nschedule = \"0 0 7 * * MON-FRI\"\nsteps = [\"send\"]\n",
            Path::new("dv.toml"),
        )
        .unwrap();
        assert!(!job.catch_up);
    }

    #[test]
    fn unknown_step_is_reported_with_its_line_and_the_valid_steps() {
        let problems = load_job_str(
            "name = \"x\"\nschedule = \"0 0 1 * * *\"\nsteps = [\n  \"ingest\",\n  \"evalute\",\n]\n",
            Path::new("jobs/x.toml"),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, 5);
        assert_eq!(problems[0].file, Path::new("jobs/x.toml"));
        assert!(problems[0].message.contains("evalute"));
        assert!(problems[0]
            .message
            .contains("ingest, link, evaluate, send, manager-digest, purge"));
        assert!(
            problems[0].fix.contains("\"evaluate\""),
            "{}",
            problems[0].fix
        );
    }

    #[test]
    fn every_problem_in_a_job_file_is_reported() {
        let problems = load_job_str(
            "name = \"bad name\"\nschedule = \"0 61 25 * * *\"\nsteps = []\ncatchup = true\n",
            Path::new("j.toml"),
        )
        .unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        // name, two bad cron fields, empty steps, unknown key
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(lines.contains(&1) && lines.contains(&2) && lines.contains(&3));
        let unknown = problems.iter().find(|p| p.line == 4).unwrap();
        assert!(unknown.message.contains("catchup"));
        assert!(unknown.fix.contains("catch_up"));
    }

    #[test]
    fn missing_keys_are_reported() {
        let problems = load_job_str("catch_up = \"yes\"\n", Path::new("j.toml")).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
        assert!(text.iter().any(|m| m.contains("no `name`")), "{text:?}");
        assert!(text.iter().any(|m| m.contains("no `schedule`")), "{text:?}");
        assert!(text.iter().any(|m| m.contains("no `steps`")), "{text:?}");
        assert!(text.iter().any(|m| m.contains("true or false")), "{text:?}");
    }

    #[test]
    fn duplicate_names_across_files_are_reported_on_the_later_file() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.toml",
            "name = \"nightly\"\nschedule = \"0 30 1 * * *\"\nsteps = [\"ingest\"]\n",
        );
        let b = write(
            dir.path(),
            "b.toml",
            "# copy\nname = \"nightly\"\nschedule = \"0 30 2 * * *\"\nsteps = [\"send\"]\n",
        );
        write(dir.path(), "notes.txt", "not a job");
        let (jobs, problems) = load_dir(dir.path());
        assert_eq!(jobs.len(), 1);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].file, b);
        assert_eq!(problems[0].line, 2);
        assert!(problems[0].message.contains("a.toml"));
    }

    #[test]
    fn a_missing_folder_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let (jobs, problems) = load_dir(&dir.path().join("nope"));
        assert!(jobs.is_empty());
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn invalid_toml_is_reported_with_its_line() {
        let problems =
            load_job_str("name = \"x\"\nschedule = \n", Path::new("j.toml")).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 2, "{problems:?}");
    }

    #[test]
    fn the_shipped_jobs_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
        let (jobs, problems) = load_dir(&dir);
        assert!(problems.is_empty(), "{problems:#?}");
        let mut names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            ["dv-morning", "nightly", "retention", "weekly-managers"]
        );
    }
}
